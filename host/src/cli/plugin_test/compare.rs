//! What a case expected against what the plugin returned, as a readable difference.
//!
//! Findings are matched as a set (order is not part of the contract): each expected finding
//! takes the first unmatched reported one with the same rule, severity, object and path whose
//! message contains the expected text. Output objects are matched by identity and compared
//! field by field.

use super::case::{ErrorClass, ExpectedError, ExpectedFinding};
use crate::diagnostic::Diagnostic;
use crate::diff::{FieldChange, ObjectDiff};
use crate::object::Object;
use crate::plugin::{Error, ErrorKind};
use serde_json::Value;
use std::fmt::Write as _;

/// `None` when `reported` is exactly `expected`; otherwise the difference, one item per
/// line, with each reported finding's `file:line` from `locate`.
pub(super) fn findings(
    expected: &[ExpectedFinding],
    reported: &[Diagnostic],
    expected_file: &str,
    locate: impl Fn(&Diagnostic) -> Option<String>,
) -> Option<String> {
    let mut taken = vec![false; reported.len()];
    let mut missing = Vec::new();
    for want in expected {
        let found = reported
            .iter()
            .enumerate()
            .find(|(i, got)| !taken[*i] && matches(want, got));
        match found {
            Some((i, _)) => taken[i] = true,
            None => missing.push(want),
        }
    }
    let extra: Vec<&Diagnostic> = reported
        .iter()
        .zip(&taken)
        .filter(|(_, taken)| !**taken)
        .map(|(d, _)| d)
        .collect();
    if missing.is_empty() && extra.is_empty() {
        return None;
    }
    let mut out = format!(
        "findings differ: {} expected but not reported, {} reported but not expected",
        missing.len(),
        extra.len()
    );
    if !missing.is_empty() {
        let _ = write!(out, "\n--- expected, not reported ({expected_file}):");
        for want in missing {
            out.push_str(&finding_yaml(
                &want.rule,
                &want.severity.to_string(),
                want.object.as_ref().map(ToString::to_string),
                want.path.as_deref(),
                want.message.as_deref(),
                None,
            ));
        }
    }
    if !extra.is_empty() {
        out.push_str("\n+++ reported, not expected:");
        for got in extra {
            out.push_str(&finding_yaml(
                &got.rule,
                &got.severity.to_string(),
                got.object.as_ref().map(ToString::to_string),
                got.path.as_deref(),
                Some(&got.message),
                locate(got),
            ));
        }
    }
    Some(out)
}

fn matches(want: &ExpectedFinding, got: &Diagnostic) -> bool {
    want.rule == got.rule
        && want.severity == got.severity
        && want.object == got.object
        && want.path == got.path
        && want.message.as_deref().is_none_or(|m| got.message.contains(m))
}

/// One finding as an `expected.yaml` list item, so a reported one can be pasted in.
fn finding_yaml(
    rule: &str,
    severity: &str,
    object: Option<String>,
    path: Option<&str>,
    message: Option<&str>,
    location: Option<String>,
) -> String {
    let mut out = format!("\n- rule: {}\n  severity: {severity}", scalar(rule));
    if let Some(object) = object {
        let _ = write!(out, "\n  object: {}", scalar(&object));
    }
    if let Some(path) = path {
        let _ = write!(out, "\n  path: {}", scalar(path));
    }
    if let Some(message) = message {
        // Always quoted: messages are prose, full of `:` and `"`.
        let _ = write!(out, "\n  message: {}", quoted(message));
    }
    if let Some(location) = location {
        let _ = write!(out, "\n  # at {location}");
    }
    out
}

/// A YAML scalar: plain when that reads back as the same string, else double-quoted.
fn scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text.trim() == text
        && !text.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@`~".contains(c))
        && !text.contains(": ")
        && !text.contains(" #")
        && !matches!(text, "null" | "true" | "false" | "yes" | "no" | "on" | "off")
        && text.parse::<f64>().is_err();
    if plain { text.to_owned() } else { quoted(text) }
}

/// A double-quoted YAML scalar (JSON string syntax is valid YAML).
fn quoted(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// `None` when `produced` is exactly `expected` (in any order); otherwise the difference.
pub(super) fn output(expected: &[Object], produced: &[Object], output_file: &str) -> Option<String> {
    let changes = crate::diff::diff(expected, produced);
    if changes.is_empty() {
        return None;
    }
    let mut out = format!("output differs from {output_file}:");
    for change in changes {
        match change {
            ObjectDiff::Removed { object } => {
                let _ = write!(out, "\n- {object}: expected, not in the output");
            }
            ObjectDiff::Added { object } => {
                let _ = write!(out, "\n+ {object}: in the output, not expected");
            }
            ObjectDiff::Changed { object, fields } => {
                let _ = write!(out, "\n~ {object}:");
                for FieldChange { path, before, after } in fields {
                    let show = |v: Option<Value>| v.map_or_else(|| "nothing".to_owned(), |v| v.to_string());
                    let path = if path.is_empty() { "/" } else { &path };
                    let _ = write!(
                        out,
                        "\n    {path}: expected {}, got {}",
                        show(before),
                        show(after)
                    );
                }
            }
        }
    }
    Some(out)
}

/// `None` when `result` is the error a case expected; otherwise what happened instead.
pub(super) fn error(expected: &ExpectedError, result: Result<usize, &Error>) -> Option<String> {
    let want = match &expected.message {
        Some(m) => format!("{} containing {}", expected.kind.as_str(), quoted(m)),
        None => expected.kind.as_str().to_owned(),
    };
    let error = match result {
        Ok(findings) => {
            return Some(format!(
                "expected the plugin to refuse with {want}\ngot: success, {findings} findings"
            ));
        }
        Err(error) => error,
    };
    let (kind, message) = match &error.kind {
        ErrorKind::InvalidConfig(m) => (Some(ErrorClass::InvalidConfig), m.as_str()),
        ErrorKind::InvalidInput(m) => (Some(ErrorClass::InvalidInput), m.as_str()),
        ErrorKind::Internal(m) => (Some(ErrorClass::Internal), m.as_str()),
        _ => (None, ""),
    };
    let same = kind == Some(expected.kind) && expected.message.as_deref().is_none_or(|m| message.contains(m));
    (!same).then(|| format!("expected the plugin to refuse with {want}\ngot: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Severity;
    use crate::object::ObjectRef;

    fn web() -> ObjectRef {
        ObjectRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: None,
            name: "web".into(),
        }
    }

    fn reported(rule: &str, message: &str) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            rule: rule.into(),
            message: message.into(),
            object: Some(web()),
            path: Some("/metadata/labels".into()),
        }
    }

    fn expected(rule: &str, message: Option<&str>) -> ExpectedFinding {
        ExpectedFinding {
            rule: rule.into(),
            severity: Severity::Error,
            object: Some(web()),
            path: Some("/metadata/labels".into()),
            message: message.map(str::to_owned),
        }
    }

    #[test]
    fn findings_match_as_a_set_with_message_substrings() {
        let got = [reported("a/x", "missing \"team\""), reported("a/y", "other")];
        let want = [expected("a/y", None), expected("a/x", Some("\"team\""))];
        assert_eq!(findings(&want, &got, "e.yaml", |_| None), None);
    }

    #[test]
    fn a_difference_shows_both_sides_as_pasteable_yaml() {
        let got = [reported("a/x", "has: colon")];
        let want = [expected("a/z", None)];
        let diff =
            findings(&want, &got, "tests/c/expected.yaml", |_| Some("in.yaml:3".into())).expect("differs");
        assert!(
            diff.starts_with("findings differ: 1 expected but not reported, 1 reported but not expected")
        );
        assert!(diff.contains("--- expected, not reported (tests/c/expected.yaml):\n- rule: a/z\n  severity: error\n  object: apps/v1/Deployment web\n  path: /metadata/labels"), "{diff}");
        assert!(
            diff.contains("+++ reported, not expected:\n- rule: a/x"),
            "{diff}"
        );
        assert!(
            diff.contains("  message: \"has: colon\"\n  # at in.yaml:3"),
            "{diff}"
        );
    }

    #[test]
    fn scalars_are_quoted_only_when_needed() {
        assert_eq!(
            scalar("apps/v1/Deployment shop/web"),
            "apps/v1/Deployment shop/web"
        );
        assert_eq!(scalar("/spec/ports/0/port"), "/spec/ports/0/port");
        assert_eq!(scalar("yes"), "\"yes\"");
        assert_eq!(scalar("1.5"), "\"1.5\"");
        assert_eq!(scalar("a: b"), "\"a: b\"");
        assert_eq!(scalar(""), "\"\"");
    }
}
