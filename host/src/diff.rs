//! Object-level differences between two renders (or a render and the live cluster).

use crate::object::{Object, ObjectRef};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Shown instead of Secret values.
pub const REDACTED: &str = "<redacted>";

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// RFC 6901 pointer.
    pub path: String,
    /// Value before (absent when added).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// Value after (absent when removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// How one object differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "lowercase")]
pub enum ObjectDiff {
    /// Only in the new list.
    Added {
        /// The object.
        object: ObjectRef,
    },
    /// Only in the old list.
    Removed {
        /// The object.
        object: ObjectRef,
    },
    /// In both, with different content.
    Changed {
        /// The object.
        object: ObjectRef,
        /// The differing fields.
        fields: Vec<FieldChange>,
    },
}

fn key(id: &ObjectRef) -> (String, String, Option<String>, String) {
    let group = id.api_version.split_once('/').map_or("", |(g, _)| g).to_owned();
    (group, id.kind.clone(), id.namespace.clone(), id.name.clone())
}

/// Differences from `before` to `after`, in object order; Secret values are redacted.
pub fn diff(before: &[Object], after: &[Object]) -> Vec<ObjectDiff> {
    let old: BTreeMap<_, &Object> = before.iter().map(|o| (key(&o.id), o)).collect();
    let new: BTreeMap<_, &Object> = after.iter().map(|o| (key(&o.id), o)).collect();
    let mut out = Vec::new();
    for (k, object) in &new {
        match old.get(k) {
            None => out.push(ObjectDiff::Added {
                object: object.id.clone(),
            }),
            Some(previous) => {
                let mut fields = Vec::new();
                compare(
                    String::new(),
                    Some(&previous.value),
                    Some(&object.value),
                    &mut fields,
                );
                if !fields.is_empty() {
                    if object.id.kind == "Secret" {
                        redact(&mut fields);
                    }
                    out.push(ObjectDiff::Changed {
                        object: object.id.clone(),
                        fields,
                    });
                }
            }
        }
    }
    for (k, object) in &old {
        if !new.contains_key(k) {
            out.push(ObjectDiff::Removed {
                object: object.id.clone(),
            });
        }
    }
    out
}

fn redact(fields: &mut [FieldChange]) {
    for field in fields {
        if field.path.starts_with("/data") || field.path.starts_with("/stringData") {
            field.before = field.before.as_ref().map(|_| REDACTED.into());
            field.after = field.after.as_ref().map(|_| REDACTED.into());
        }
    }
}

fn compare(path: String, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<FieldChange>) {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let child = format!("{path}/{}", crate::manifest::escape_segment(k));
                compare(child, x.get(k), y.get(k), out);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                compare(format!("{path}/{i}"), Some(p), Some(q), out);
            }
        }
        (a, b) if a != b => out.push(FieldChange {
            path,
            before: a.cloned(),
            after: b.cloned(),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        Object::new(v, None).expect("identity")
    }

    #[test]
    fn added_removed_and_changed_fields() {
        let before = vec![
            obj(
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "vision"}, "spec": {"ports": [{"port": 6776}]}}),
            ),
            obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old"}})),
        ];
        let after = vec![
            obj(
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "vision"}, "spec": {"ports": [{"port": 5445}]}}),
            ),
            obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new"}})),
        ];
        let d = diff(&before, &after);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(matches!(&d[0], ObjectDiff::Added { object } if object.name == "new"));
        match &d[1] {
            ObjectDiff::Changed { fields, .. } => {
                assert_eq!(fields.len(), 1);
                assert_eq!(fields[0].path, "/spec/ports/0/port");
                assert_eq!(fields[0].before, Some(json!(6776)));
                assert_eq!(fields[0].after, Some(json!(5445)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&d[2], ObjectDiff::Removed { object } if object.name == "old"));
    }

    #[test]
    fn secret_values_never_show() {
        let before = vec![obj(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"password": "aHVudGVyMg=="}}),
        )];
        let after = vec![obj(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"password": "c2VjcmV0"}}),
        )];
        let text = serde_json::to_string(&diff(&before, &after)).expect("json");
        assert!(
            !text.contains("aHVudGVyMg==") && !text.contains("c2VjcmV0"),
            "{text}"
        );
        assert!(text.contains(REDACTED));
    }
}
