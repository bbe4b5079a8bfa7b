//! Repository-relative path rules: normalised, never absolute, never leaving the repository.

/// Normalises `path` relative to `base` (a repository-relative directory).
///
/// Refuses absolute paths, `..` that would climb above the repository root, empty paths
/// and backslashes. `./` segments are dropped.
pub fn normalize(base: &str, path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.starts_with('/') || path.contains('\\') || path.contains(':') && path.contains("://") {
        return Err(format!("{path:?} must be a relative path inside the repository"));
    }
    let mut parts: Vec<&str> = base.split('/').filter(|s| !s.is_empty()).collect();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("{path:?} leaves the repository"));
                }
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Err(format!("{path:?} names the repository root, not a file"));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn paths_stay_inside_the_repository() {
        assert_eq!(
            normalize("kits/a", "../../plugins/x.wasm"),
            Ok("plugins/x.wasm".into())
        );
        assert_eq!(normalize("", "./plugins//x.wasm"), Ok("plugins/x.wasm".into()));
        assert!(normalize("kits/a", "../../../etc/passwd").is_err());
        assert!(normalize("", "/etc/passwd").is_err());
        assert!(normalize("", "a\\b").is_err());
        assert!(normalize("", "").is_err());
    }
}
