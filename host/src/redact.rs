//! Secret values never leave where they belong: the values a kit's Secrets hold, and how to
//! strip them from any text kitsync shows (findings, snippets, plugin output, errors,
//! status, logs).
//!
//! The rule is by value: every `data` value of a `v1/Secret` (as written, base64, and
//! decoded), every `stringData` value, and its `kubectl.kubernetes.io/last-applied-configuration`
//! annotation are replaced by `<redacted>` wherever they appear. Values shorter than
//! [`MIN_LEN`] bytes are not matched as substrings (they would mangle unrelated text); the
//! lines that hold them are still hidden, since snippets of a Secret's fields are dropped whole.

use crate::object::Object;

/// What a redacted value is shown as.
pub const REDACTED: &str = "<redacted>";
/// Shortest value matched inside other text.
pub const MIN_LEN: usize = 4;
/// The annotation client-side `kubectl apply` keeps, holding a copy of the whole object.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The secret values of a set of objects, longest first (so a value that contains another
/// is replaced whole).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretValues {
    values: Vec<String>,
}

/// Whether `object` is a Kubernetes Secret.
pub fn is_secret(object: &Object) -> bool {
    object.id.kind == "Secret" && object.id.api_version == "v1"
}

impl SecretValues {
    /// The values of every Secret among `objects`.
    pub fn of<'a>(objects: impl IntoIterator<Item = &'a Object>) -> Self {
        let mut values = Vec::new();
        for object in objects.into_iter().filter(|o| is_secret(o)) {
            for field in ["data", "stringData"] {
                let Some(map) = object.value.get(field).and_then(|d| d.as_object()) else {
                    continue;
                };
                for value in map.values() {
                    let text = match value.as_str() {
                        Some(text) => text.to_owned(),
                        None => value.to_string(),
                    };
                    if field == "data"
                        && let Some(decoded) = decode_base64(&text)
                    {
                        values.push(decoded);
                    }
                    values.push(text);
                }
            }
            let annotation = format!("/metadata/annotations/{}", LAST_APPLIED.replace('/', "~1"));
            if let Some(text) = object.value.pointer(&annotation).and_then(|v| v.as_str()) {
                values.push(text.to_owned());
            }
        }
        values.retain(|v| v.trim().len() >= MIN_LEN);
        // The same value inside JSON text (an object echoed as JSON) is escaped: both forms,
        // computed once here rather than at every redaction.
        let escaped: Vec<String> = values
            .iter()
            .map(|v| {
                serde_json::Value::from(v.as_str())
                    .to_string()
                    .trim_matches('"')
                    .to_owned()
            })
            .collect();
        values.extend(escaped);
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        SecretValues { values }
    }

    /// Adds the values of `objects` (a transformer's output, say).
    pub fn extend<'a>(&mut self, objects: impl IntoIterator<Item = &'a Object>) {
        let more = SecretValues::of(objects);
        if more.values.iter().all(|v| self.values.contains(v)) {
            return;
        }
        self.values.extend(more.values);
        self.values
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        self.values.dedup();
    }

    /// Whether there is nothing to hide.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret value (and its JSON-escaped form) replaced by `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), REDACTED);
            }
        }
        out
    }
}

/// Standard base64 (with or without padding) to UTF-8 text; `None` when it is not both.
fn decode_base64(text: &str) -> Option<String> {
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim().bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b'\n' | b'\r' => continue,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from((bits >> count) & 0xff).ok()?);
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret() -> Object {
        Object::new(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db",
                "annotations": {LAST_APPLIED: "{\"data\":{\"password\":\"aHVudGVyMi1zZWNyZXQ=\"}}"}},
                "data": {"password": "aHVudGVyMi1zZWNyZXQ=", "pin": "MTI="},
                "stringData": {"token": "tok-\"quoted\"-value"}}),
            None,
        )
        .expect("object")
    }

    #[test]
    fn every_form_of_a_value_is_hidden() {
        let values = SecretValues::of([&secret()]);
        let text = "password aHVudGVyMi1zZWNyZXQ= is hunter2-secret; json {\"token\":\"tok-\\\"quoted\\\"-value\"} raw tok-\"quoted\"-value";
        let out = values.redact(text);
        assert!(!out.contains("aHVudGVyMi1zZWNyZXQ="), "{out}");
        assert!(!out.contains("hunter2-secret"), "{out}");
        assert!(!out.contains("quoted"), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 4, "{out}");
        // "12" (the pin) is too short to match inside other text.
        assert_eq!(values.redact("port 1234"), "port 1234");
    }

    #[test]
    fn objects_that_are_not_secrets_hold_nothing_secret() {
        let cm = Object::new(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "visible-value"}}),
            None,
        )
        .expect("object");
        assert!(SecretValues::of([&cm]).is_empty());
    }

    #[test]
    fn base64_decodes_only_text() {
        assert_eq!(decode_base64("aGVsbG8="), Some("hello".into()));
        assert_eq!(decode_base64("aGVsbG8"), Some("hello".into()));
        assert_eq!(decode_base64("not base64!"), None);
    }
}
