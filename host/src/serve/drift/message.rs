//! Drift in words: which field kitsync set differs, its live and Git values, and who
//! changed the object last.

use crate::apply::owned;
use kube::api::DynamicObject;
use serde_json::Value;

/// What differs, for people: the first field kitsync set whose live value is another, and
/// who changed the object last (from its managed fields).
pub(super) fn describe(desired: &Value, live: &Value, object: &DynamicObject) -> String {
    let projected = owned::project(desired, live);
    let field = first_difference(desired, &projected, String::new())
        .map(|(path, live, git)| format!("{path} is {live}, Git says {git}"))
        .unwrap_or_else(|| "a field kitsync set changed".into());
    let by = object
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() != Some(crate::apply::FIELD_MANAGER))
        .max_by_key(|m| m.time.as_ref().map(|t| t.0))
        .and_then(|m| m.manager.clone());
    match by {
        Some(manager) => format!("{field} (last changed by {manager})"),
        None => field,
    }
}

/// (JSON pointer, live value, Git's value) of the first field kitsync set that differs.
fn first_difference(desired: &Value, live: &Value, at: String) -> Option<(String, String, String)> {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d
            .iter()
            .find_map(|(k, v)| first_difference(v, l.get(k).unwrap_or(&Value::Null), format!("{at}/{k}"))),
        (Value::Array(d), Value::Array(l)) => d
            .iter()
            .enumerate()
            .find_map(|(i, v)| first_difference(v, l.get(i).unwrap_or(&Value::Null), format!("{at}/{i}"))),
        // Numbers and strings the server normalises (`0.5` vs `500m`) may differ harmlessly;
        // only a value of another type or text is named.
        (d, l) if d != l && !(d.is_string() && l.is_string() && quantity_like(d) && quantity_like(l)) => {
            let shown = if l.is_null() {
                "absent".to_owned()
            } else {
                l.to_string()
            };
            Some((if at.is_empty() { "/".into() } else { at }, shown, d.to_string()))
        }
        _ => None,
    }
}

fn quantity_like(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '.'))
}
