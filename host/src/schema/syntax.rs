//! The text rules the API server applies to names, label keys and values, annotation keys
//! and port names (k8s.io/apimachinery `pkg/util/validation`), as messages for a reviewer.

/// Why `name` is not a DNS-1123 subdomain (most objects' names): at most 253 characters,
/// lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit.
pub(super) fn dns_subdomain(name: &str) -> Option<String> {
    if name.len() > 253 {
        return Some(format!(
            "is {} characters long; at most 253 are allowed",
            name.len()
        ));
    }
    if name.is_empty() || !name.split('.').all(|part| dns_label(part).is_none()) {
        return Some(
            "must consist of lowercase letters, digits, '-' and '.', and start and end with a letter or digit"
                .into(),
        );
    }
    None
}

/// Why `name` is not a DNS-1123 label (Namespace names, Service port names): at most 63
/// lowercase letters, digits and `-`, starting and ending with a letter or digit.
pub(super) fn dns_label(name: &str) -> Option<String> {
    if name.len() > 63 {
        return Some(format!(
            "is {} characters long; at most 63 are allowed",
            name.len()
        ));
    }
    // The rule kit.yaml namespaces already follow.
    (!crate::kit::is_dns_label(name)).then(|| {
        "must consist of lowercase letters, digits and '-', and start and end with a letter or digit".into()
    })
}

/// Why `name` is not a DNS-1035 label (Service names): a DNS-1123 label that starts with a
/// letter.
pub(super) fn dns_1035_label(name: &str) -> Option<String> {
    dns_label(name).or_else(|| {
        (!name.starts_with(|c: char| c.is_ascii_lowercase()))
            .then(|| "must start with a lowercase letter".into())
    })
}

/// Why `name` is not a path segment name (RBAC objects, which allow `:`): not `.` or `..`,
/// no `/` or `%`.
pub(super) fn path_segment(name: &str) -> Option<String> {
    if name == "." || name == ".." {
        return Some(format!("may not be '{name}'"));
    }
    name.contains(['/', '%'])
        .then(|| "may not contain '/' or '%'".into())
}

/// Why `key` is not a label or annotation key: an optional DNS-1123 subdomain prefix and `/`,
/// then a name of at most 63 characters: letters, digits, `-`, `_` and `.`, starting and
/// ending with a letter or digit.
pub(super) fn qualified_name(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Some("has an empty prefix before '/'".into());
        }
        if let Some(why) = dns_subdomain(prefix) {
            return Some(format!("prefix '{prefix}' {why}"));
        }
    }
    if name.is_empty() {
        return Some("has an empty name".into());
    }
    if name.len() > 63 {
        return Some(format!(
            "name part is {} characters long; at most 63 are allowed",
            name.len()
        ));
    }
    if !name_characters(name) {
        return Some(
            "name part must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit"
                .into(),
        );
    }
    None
}

/// Why `value` is not a label value: empty, or at most 63 letters, digits, `-`, `_` and
/// `.`, starting and ending with a letter or digit.
pub(super) fn label_value(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if value.len() > 63 {
        return Some(format!(
            "is {} characters long; at most 63 are allowed",
            value.len()
        ));
    }
    (!name_characters(value)).then(|| {
        "must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit".into()
    })
}

fn name_characters(text: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    text.starts_with(alnum)
        && text.ends_with(alnum)
        && text.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// Why `name` is not a port name (`IANA_SVC_NAME`): at most 15 lowercase letters, digits and
/// `-`, with at least one letter, no `-` at either end and no `--`.
pub(super) fn port_name(name: &str) -> Option<String> {
    if name.len() > 15 {
        return Some(format!(
            "is {} characters long; at most 15 are allowed",
            name.len()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("must consist of lowercase letters, digits and '-'".into());
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        return Some(
            "must contain at least one letter (a number given as a string is taken as a name)".into(),
        );
    }
    if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return Some("may not start or end with '-' or contain '--'".into());
    }
    None
}

/// Whether `text` is a resource quantity (`k8s.io/apimachinery/pkg/api/resource`): a signed
/// decimal number, then an optional suffix (`Ki`..`Ei`, `m`, `k`, `M`..`E`, or an exponent).
pub(super) fn quantity(text: &str) -> bool {
    let rest = text.strip_prefix(['+', '-']).unwrap_or(text);
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(digits_end);
    let dots = number.matches('.').count();
    if number.is_empty() || number == "." || dots > 1 {
        return false;
    }
    match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        _ => {
            let Some(exponent) = suffix.strip_prefix(['e', 'E']) else {
                return false;
            };
            let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            !exponent.is_empty() && exponent.bytes().all(|b| b.is_ascii_digit())
        }
    }
}

/// Whether `text` is standard base64 with padding (line breaks ignored, as Go's decoder does).
pub(super) fn base64(text: &str) -> bool {
    let body: Vec<u8> = text.bytes().filter(|b| *b != b'\n' && *b != b'\r').collect();
    if !body.len().is_multiple_of(4) {
        return false;
    }
    let padding = body.iter().rev().take_while(|b| **b == b'=').count();
    padding <= 2
        && body[..body.len() - padding]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(dns_subdomain("web.example-1").is_none());
        assert!(dns_subdomain("Web").is_some());
        assert!(dns_subdomain("-web").is_some());
        assert!(dns_subdomain(&"a".repeat(254)).is_some());
        assert!(dns_label("a.b").is_some());
        assert!(dns_1035_label("1web").is_some());
        assert!(dns_1035_label("web1").is_none());
        assert!(path_segment("system:aggregate-to-view").is_none());
        assert!(path_segment("a/b").is_some());
    }

    #[test]
    fn label_keys_and_values() {
        assert!(qualified_name("app.kubernetes.io/name").is_none());
        assert!(qualified_name("team").is_none());
        assert!(qualified_name("Example.com/x").is_some());
        assert!(qualified_name("/x").is_some());
        assert!(qualified_name("a/b/c").is_some());
        assert!(label_value("").is_none());
        assert!(label_value("v1.10_rc-1").is_none());
        assert!(label_value("\"quoted\"").is_some());
        assert!(label_value(&"a".repeat(64)).is_some());
    }

    #[test]
    fn port_names_are_iana_service_names() {
        assert!(port_name("http").is_none());
        assert!(port_name("8080").is_some());
        assert!(port_name("HTTP").is_some());
        assert!(port_name("a--b").is_some());
        assert!(port_name("metrics-endpoint1").is_some());
    }

    #[test]
    fn quantities_and_base64() {
        for ok in ["1", "0.5", "500m", "1Gi", "1e3", "+2", ".5", "1.5E-2"] {
            assert!(quantity(ok), "{ok}");
        }
        for bad in ["1GB", "", "Gi", "1..2", "1e", "one"] {
            assert!(!quantity(bad), "{bad}");
        }
        assert!(base64("aGVsbG8="));
        assert!(base64("aGVs\nbG8="));
        assert!(!base64("hello"));
        assert!(!base64("aGVsbG8=="));
    }
}
