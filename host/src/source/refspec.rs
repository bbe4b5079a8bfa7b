//! Which revision of a source to follow: a branch, a tag, a semver range of tags, or a commit.

use super::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The reference a source follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefSpec {
    /// The tip of a branch (`branch:main`, or just `main`).
    Branch(String),
    /// A tag (`tag:v1.2.0`); a tag that moves is followed.
    Tag(String),
    /// The highest tag (`v1.2.3` or `1.2.3`) matching a range (`semver:>=1.0, <2`).
    Semver(semver::VersionReq),
    /// One commit, by full lowercase hex id (`commit:<hex>`).
    Commit(String),
}

impl RefSpec {
    /// Parses `branch:NAME`, `tag:NAME`, `semver:RANGE`, `commit:HEX`, or a bare branch name.
    ///
    /// # Errors
    /// [`Error::BadRef`] for an invalid name (including one starting with `-`), range or id.
    pub fn parse(text: &str) -> Result<RefSpec> {
        let bad = |reason: &str| Error::BadRef {
            reference: text.to_owned(),
            reason: reason.to_owned(),
        };
        let text = text.trim();
        let (kind, value) = match text.split_once(':') {
            Some((kind @ ("branch" | "tag" | "semver" | "commit"), value)) => (kind, value.trim()),
            Some(_) => return Err(bad("expected branch:, tag:, semver:, commit: or a branch name")),
            None => ("branch", text),
        };
        match kind {
            "branch" => Ok(RefSpec::Branch(
                checked_name(value, "refs/heads/").map_err(|r| bad(&r))?,
            )),
            "tag" => Ok(RefSpec::Tag(
                checked_name(value, "refs/tags/").map_err(|r| bad(&r))?,
            )),
            "semver" => semver::VersionReq::parse(value)
                .map(RefSpec::Semver)
                .map_err(|e| bad(&format!("not a semver range: {e}"))),
            _ => {
                let hex = value.to_ascii_lowercase();
                if matches!(hex.len(), 40 | 64) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(RefSpec::Commit(hex))
                } else {
                    Err(bad("a commit is its full hex id (40 characters)"))
                }
            }
        }
    }

    /// The full remote ref this spec names, for branches and tags.
    pub(crate) fn full_name(&self) -> Option<String> {
        match self {
            RefSpec::Branch(name) => Some(format!("refs/heads/{name}")),
            RefSpec::Tag(name) => Some(format!("refs/tags/{name}")),
            RefSpec::Semver(_) | RefSpec::Commit(_) => None,
        }
    }

    /// The fetch refspecs that bring this reference (and only what it needs) into the cache.
    pub(crate) fn fetch_refspecs(&self) -> Vec<String> {
        match self {
            RefSpec::Branch(_) | RefSpec::Tag(_) => {
                let full = self.full_name().unwrap_or_default();
                vec![format!("+{full}:{full}")]
            }
            RefSpec::Semver(_) => vec!["+refs/tags/*:refs/tags/*".into()],
            // Servers need not serve an arbitrary commit by id; fetching every branch and
            // tag finds any commit that is reachable from one.
            RefSpec::Commit(_) => vec![
                "+refs/heads/*:refs/heads/*".into(),
                "+refs/tags/*:refs/tags/*".into(),
            ],
        }
    }
}

/// Validates a branch or tag name as Git would (`git check-ref-format`), and refuses names
/// that could be read as an option.
fn checked_name(name: &str, prefix: &str) -> std::result::Result<String, String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.starts_with('-') {
        return Err("a name may not start with '-'".into());
    }
    if name.starts_with("refs/") {
        return Err(format!("give the short name, without {prefix}"));
    }
    // Refspec wildcards and separators are valid nowhere in a single name.
    if name.contains(['*', ':', '?', '[', '\\', '^', '~', ' ']) {
        return Err("a name may not contain *, :, ?, [, \\, ^, ~ or spaces".into());
    }
    let full = format!("{prefix}{name}");
    gix::validate::reference::name(full.as_str().into())
        .map(|_| name.to_owned())
        .map_err(|e| e.to_string())
}

/// The highest version among `tags` (short names) that matches `req`; `v1.2.3` and `1.2.3`
/// are both read as 1.2.3. Ties go to the first name in sort order, so the choice is stable.
pub(crate) fn best_tag<'a>(
    req: &semver::VersionReq,
    tags: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    tags.into_iter()
        .filter_map(|name| {
            let version = semver::Version::parse(name.strip_prefix(['v', 'V']).unwrap_or(name)).ok()?;
            req.matches(&version).then_some((version, name))
        })
        .max_by(|(va, na), (vb, nb)| va.cmp(vb).then_with(|| nb.cmp(na)))
        .map(|(_, name)| name)
}

impl fmt::Display for RefSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefSpec::Branch(name) => write!(f, "branch:{name}"),
            RefSpec::Tag(name) => write!(f, "tag:{name}"),
            RefSpec::Semver(req) => write!(f, "semver:{req}"),
            RefSpec::Commit(hex) => write!(f, "commit:{hex}"),
        }
    }
}

impl FromStr for RefSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        RefSpec::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        assert_eq!(
            RefSpec::parse("main").expect("ok"),
            RefSpec::Branch("main".into())
        );
        assert_eq!(
            RefSpec::parse("branch:release/1").expect("ok"),
            RefSpec::Branch("release/1".into())
        );
        assert_eq!(
            RefSpec::parse("tag:v1.2.0").expect("ok"),
            RefSpec::Tag("v1.2.0".into())
        );
        let hex = "A".repeat(40);
        assert_eq!(
            RefSpec::parse(&format!("commit:{hex}")).expect("ok"),
            RefSpec::Commit("a".repeat(40))
        );
        let RefSpec::Semver(req) = RefSpec::parse("semver:>=1.0, <2").expect("ok") else {
            panic!("semver")
        };
        assert!(req.matches(&semver::Version::new(1, 9, 0)));
        assert_eq!(
            RefSpec::parse("semver:>=1.0, <2").expect("ok").to_string(),
            "semver:>=1.0, <2"
        );
    }

    #[test]
    fn rejects_option_like_and_malformed_names() {
        for bad in [
            "-main",
            "branch:--upload-pack=x",
            "tag:-v1",
            "",
            "branch:a..b",
            "main:other",
            "branch:x*",
            "branch:refs/heads/main",
            "commit:abc",
            "semver:not a range",
            "branch:a.lock",
        ] {
            assert!(RefSpec::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn best_tag_picks_the_highest_match() {
        let req = semver::VersionReq::parse(">=1.0, <2").expect("range");
        let tags = ["v1.0.0", "v1.2.0", "v2.0.0", "latest", "v1.3.0-rc.1", "0.9.0"];
        assert_eq!(best_tag(&req, tags), Some("v1.2.0"));
        assert_eq!(best_tag(&req, ["v2.0.0"]), None);
    }
}
