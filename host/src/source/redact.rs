//! Removing credentials from URLs and from text that may quote them.

/// What replaces a removed credential.
const MASK: &str = "***";

/// `url` without the credentials it may carry: the user-info part (`user:pass@`) and the
/// query string are replaced by `***`. Text that is not a `scheme://` URL is returned as is
/// (scp-like `git@host:path` names a login, not a secret).
///
/// ```
/// use kitsync::source::redact_url;
/// assert_eq!(redact_url("https://u:p@host/r.git"), "https://***@host/r.git");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    // The authority ends at the first '/', '?' or '#'; a '@' inside it ends the user-info.
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..rest_start]);
    match rest[..authority_len].rfind('@') {
        Some(at) => {
            out.push_str(MASK);
            out.push_str(&rest[at..authority_len]);
        }
        None => out.push_str(&rest[..authority_len]),
    }
    let tail = &rest[authority_len..];
    match tail.find('?') {
        Some(q) => {
            out.push_str(&tail[..q]);
            out.push('?');
            out.push_str(MASK);
            // Keep a fragment, which never reaches the server.
            if let Some(hash) = tail[q..].find('#') {
                out.push_str(&tail[q + hash..]);
            }
        }
        None => out.push_str(tail),
    }
    out
}

/// `text` with every `scheme://…` URL in it redacted by [`redact_url`], and every one of
/// `secrets` (values read from a secret file or variable) replaced by `***`.
pub fn redact_text(text: &str, secrets: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        // Back up over the scheme letters.
        let start = rest[..pos]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[pos..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | ')' | ','))
            .map_or(rest.len(), |i| pos + i);
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    for secret in secrets.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        out = out.replace(secret, MASK);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_without_credentials_is_unchanged() {
        for url in [
            "https://example.com/org/repo.git",
            "git://127.0.0.1:9418/repo.git",
            "file:///tmp/repo",
            "/tmp/repo",
            "git@github.com:org/repo.git",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn text_redacts_each_url_and_secret() {
        let text = "fetching \"https://bob:hunter2@h/x\" then https://tok@h/y?private_token=abc failed; token hunter2";
        let out = redact_text(text, &["hunter2"]);
        assert_eq!(
            out,
            "fetching \"https://***@h/x\" then https://***@h/y?*** failed; token ***"
        );
    }
}
