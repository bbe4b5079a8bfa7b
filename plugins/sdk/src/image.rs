//! Container image references (`registry/repo/name:tag@digest`).

use std::fmt;

/// A parsed container image reference.
///
/// ```
/// use kitsync_plugin::image::ImageRef;
/// let i = ImageRef::parse("nginx:1.27").unwrap();
/// assert_eq!(i.name, "nginx");
/// assert_eq!(i.tag.as_deref(), Some("1.27"));
/// assert_eq!(i.normalized_name(), "docker.io/library/nginx");
/// let i = ImageRef::parse("localhost:5000/app@sha256:abc").unwrap();
/// assert_eq!((i.name.as_str(), i.tag, i.digest.as_deref()), ("localhost:5000/app", None, Some("sha256:abc")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Everything before the tag and digest, as written (`nginx`,
    /// `ghcr.io/acme/app`, `localhost:5000/app`).
    pub name: String,
    /// The tag, without `:`.
    pub tag: Option<String>,
    /// The digest, without `@` (`sha256:...`).
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses a reference. Fails (with a message) on an empty reference, an
    /// empty name, tag or digest, or whitespace.
    pub fn parse(reference: &str) -> Result<Self, String> {
        if reference.is_empty() {
            return Err("image reference is empty".into());
        }
        if reference.chars().any(char::is_whitespace) {
            return Err(format!("image reference {reference:?} contains whitespace"));
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (reference, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if name.is_empty() || name.starts_with('/') || name.ends_with('/') || name.contains("//") {
            return Err(format!("image reference {reference:?} has an invalid name"));
        }
        if tag.is_some_and(str::is_empty) {
            return Err(format!("image reference {reference:?} has an empty tag"));
        }
        if digest.is_some_and(|d| !d.contains(':') || d.starts_with(':') || d.ends_with(':')) {
            return Err(format!(
                "image reference {reference:?} has an invalid digest (expected algorithm:hex)"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            tag: tag.map(str::to_owned),
            digest: digest.map(str::to_owned),
        })
    }

    /// The registry host: the first path component if it looks like a host
    /// (contains `.` or `:`, or is `localhost`), else `docker.io`.
    pub fn registry(&self) -> &str {
        match self.name.split_once('/') {
            Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => {
                if first == "index.docker.io" {
                    "docker.io"
                } else {
                    first
                }
            }
            _ => "docker.io",
        }
    }

    /// The fully-qualified name: Docker Hub short names are expanded, so
    /// `nginx` becomes `docker.io/library/nginx` and `acme/app` becomes
    /// `docker.io/acme/app`.
    pub fn normalized_name(&self) -> String {
        let registry = self.registry();
        let path = match self.name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => path,
            _ => self.name.as_str(),
        };
        if registry == "docker.io" && !path.contains('/') {
            format!("docker.io/library/{path}")
        } else {
            format!("{registry}/{path}")
        }
    }

    /// The fully-qualified reference (normalized name plus tag and digest).
    pub fn normalized(&self) -> String {
        Self {
            name: self.normalized_name(),
            ..self.clone()
        }
        .to_string()
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_normalize() {
        let cases = [
            ("nginx", "nginx", None, None, "docker.io/library/nginx"),
            (
                "nginx:latest",
                "nginx",
                Some("latest"),
                None,
                "docker.io/library/nginx",
            ),
            ("acme/app:1", "acme/app", Some("1"), None, "docker.io/acme/app"),
            (
                "docker.io/nginx",
                "docker.io/nginx",
                None,
                None,
                "docker.io/library/nginx",
            ),
            (
                "index.docker.io/library/nginx",
                "index.docker.io/library/nginx",
                None,
                None,
                "docker.io/library/nginx",
            ),
            (
                "ghcr.io/acme/app:v2@sha256:ab",
                "ghcr.io/acme/app",
                Some("v2"),
                Some("sha256:ab"),
                "ghcr.io/acme/app",
            ),
            (
                "localhost:5000/app",
                "localhost:5000/app",
                None,
                None,
                "localhost:5000/app",
            ),
            (
                "localhost/app:1",
                "localhost/app",
                Some("1"),
                None,
                "localhost/app",
            ),
            (
                "registry:5000/a/b:c",
                "registry:5000/a/b",
                Some("c"),
                None,
                "registry:5000/a/b",
            ),
        ];
        for (input, name, tag, digest, normalized) in cases {
            let i = ImageRef::parse(input).unwrap();
            assert_eq!(i.name, name, "{input}");
            assert_eq!(i.tag.as_deref(), tag, "{input}");
            assert_eq!(i.digest.as_deref(), digest, "{input}");
            assert_eq!(i.normalized_name(), normalized, "{input}");
            assert_eq!(i.to_string(), input);
        }
        assert_eq!(
            ImageRef::parse("nginx:1").unwrap().normalized(),
            "docker.io/library/nginx:1"
        );
    }

    #[test]
    fn parse_errors() {
        for bad in ["", "nginx:", ":1", "a b", "x@sha256", "/x", "x/", "x@:"] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }
}
