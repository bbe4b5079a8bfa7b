//! Syntax checks for Kubernetes names, for validating plugin configuration.

/// Checks a label or annotation key: an optional DNS-subdomain prefix and
/// `/`, then a name of at most 63 characters (`[A-Za-z0-9]` at both ends,
/// `-`, `_`, `.` inside). Returns a message saying what is wrong.
///
/// ```
/// use kitsync_plugin::names::check_label_key;
/// assert!(check_label_key("app.kubernetes.io/name").is_ok());
/// assert!(check_label_key("-bad").is_err());
/// ```
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        check_dns_subdomain(prefix).map_err(|e| format!("key {key:?}: prefix {e}"))?;
    }
    check_qualified_name_part(name).map_err(|e| format!("key {key:?}: name {e}"))
}

/// Checks a label value: empty, or at most 63 characters with
/// `[A-Za-z0-9]` at both ends and `-`, `_`, `.` inside.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_qualified_name_part(value).map_err(|e| format!("value {value:?} {e}"))
}

fn check_qualified_name_part(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 63 {
        return Err("must be at most 63 characters".into());
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !name.chars().all(ok_char) {
        return Err("may only contain letters, digits, '-', '_' and '.'".into());
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(name.chars().next()) || !alnum(name.chars().last()) {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

fn check_dns_subdomain(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("must not be empty".into());
    }
    if prefix.len() > 253 {
        return Err("must be at most 253 characters".into());
    }
    for part in prefix.split('.') {
        let lower_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        let ok = !part.is_empty()
            && part.chars().all(|c| lower_alnum(c) || c == '-')
            && part.chars().next().is_some_and(lower_alnum)
            && part.chars().last().is_some_and(lower_alnum);
        if !ok {
            return Err(format!("{prefix:?} must be a lowercase DNS subdomain"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys() {
        assert!(check_label_key("app").is_ok());
        assert!(check_label_key("app.kubernetes.io/name").is_ok());
        assert!(check_label_key("example.com/a_b.c-d").is_ok());
        assert!(check_label_key("").is_err());
        assert!(check_label_key("/name").is_err());
        assert!(check_label_key("Example.com/name").is_err());
        assert!(check_label_key("a/b/c").is_err());
        assert!(check_label_key(&"x".repeat(64)).is_err());
        assert!(check_label_key("has space").is_err());
    }

    #[test]
    fn label_values() {
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("v1.2_3-x").is_ok());
        assert!(check_label_value("-x").is_err());
        assert!(check_label_value("a/b").is_err());
        assert!(check_label_value(&"x".repeat(64)).is_err());
    }
}
