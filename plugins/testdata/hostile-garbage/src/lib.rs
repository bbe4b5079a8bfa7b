//! Hostile test plugin `hostile-garbage`: a transformer that returns objects
//! the host must reject. It implements the raw WIT bindings so that the SDK's
//! safety nets (JSON re-serialization, identity recomputation) are bypassed.
//!
//! Config `{"mode": ...}` (default `bad-json`):
//! * `bad-json`: every returned object's JSON is `{not json`;
//! * `no-identity`: the returned object's JSON has no `metadata.name`;
//! * `id-mismatch`: the JSON names a different object than the `id` record;
//! * `non-canonical`: every object comes back as valid JSON the host reads as the object it
//!   sent, but not as the host writes it: spaced, and with a first `metadata` member that a
//!   later one overrides (`"labels": {"shown": "to-plugins"}`), which a plugin reading the
//!   text itself would see.
//!
//! For the host's sandbox tests only; never use it in a kit.

use kitsync_plugin::bindings::transformer::Guest;
use kitsync_plugin::bindings::types::{Metadata, Object, ObjectRef, PluginError, TransformOutput};

/// The hostile transformer (raw bindings).
pub struct Hostile;

/// What kind of garbage to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Object JSON that does not parse.
    BadJson,
    /// Object JSON without `metadata.name`.
    NoIdentity,
    /// Object JSON naming a different object than its `id`.
    IdMismatch,
    /// Every object, readable but not in the host's encoding (see the crate docs).
    NonCanonical,
}

/// Reads the mode from the config text.
pub fn mode(config: &str) -> Result<Mode, PluginError> {
    if config.trim().is_empty() {
        return Ok(Mode::BadJson);
    }
    let value: serde_json::Value = serde_json::from_str(config)
        .map_err(|e| PluginError::InvalidConfig(format!("config is not JSON: {e}")))?;
    match value.get("mode").and_then(serde_json::Value::as_str) {
        None if value.is_null() || value.as_object().is_some_and(|o| o.is_empty()) => Ok(Mode::BadJson),
        Some("bad-json") => Ok(Mode::BadJson),
        Some("no-identity") => Ok(Mode::NoIdentity),
        Some("id-mismatch") => Ok(Mode::IdMismatch),
        Some("non-canonical") => Ok(Mode::NonCanonical),
        _ => Err(PluginError::InvalidConfig(
            "expected {\"mode\": \"bad-json\" | \"no-identity\" | \"id-mismatch\" | \"non-canonical\"}"
                .to_owned(),
        )),
    }
}

fn fallback_id() -> ObjectRef {
    ObjectRef {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: None,
        name: "garbage".into(),
    }
}

/// Every object, readable as it was but not in the host's encoding (see the crate docs).
fn non_canonical(objects: Vec<Object>) -> TransformOutput {
    let objects = objects
        .into_iter()
        .map(|object| {
            let rest = object.json.strip_prefix('{').unwrap_or(&object.json);
            let json = format!("{{\"metadata\": {{\"labels\": {{\"shown\": \"to-plugins\"}}}}, {rest}");
            Object { json, ..object }
        })
        .collect();
    TransformOutput {
        objects,
        diagnostics: Vec::new(),
    }
}

impl Guest for Hostile {
    fn metadata() -> Metadata {
        Metadata {
            name: "hostile-garbage".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kinds: Vec::new(),
            config_schema: None,
        }
    }

    fn validate_config(config: String) -> Result<(), PluginError> {
        mode(&config).map(drop)
    }

    fn transform(config: String, objects: Vec<Object>) -> Result<TransformOutput, PluginError> {
        let mode = mode(&config)?;
        if mode == Mode::NonCanonical {
            return Ok(non_canonical(objects));
        }
        let template = objects.into_iter().next().unwrap_or_else(|| Object {
            id: fallback_id(),
            origin: None,
            json: String::new(),
        });
        let id = template.id.clone();
        let json = match mode {
            Mode::BadJson => "{not json".to_owned(),
            Mode::NoIdentity => serde_json::json!({
                "apiVersion": id.api_version, "kind": id.kind, "metadata": {"labels": {"garbage": "true"}}
            })
            .to_string(),
            Mode::IdMismatch => serde_json::json!({
                "apiVersion": id.api_version, "kind": id.kind, "metadata": {"name": format!("{}-impostor", id.name)}
            })
            .to_string(),
            // Returned above.
            Mode::NonCanonical => String::new(),
        };
        let garbage = Object {
            id,
            origin: template.origin,
            json,
        };
        Ok(TransformOutput {
            objects: vec![garbage],
            diagnostics: Vec::new(),
        })
    }
}

kitsync_plugin::export_raw_transformer!(Hostile);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(mode("").unwrap(), Mode::BadJson);
        assert_eq!(mode("null").unwrap(), Mode::BadJson);
        assert_eq!(mode("{}").unwrap(), Mode::BadJson);
        assert_eq!(mode(r#"{"mode":"no-identity"}"#).unwrap(), Mode::NoIdentity);
        assert!(mode(r#"{"mode":"nope"}"#).is_err());
        let out = Hostile::transform(String::new(), Vec::new()).unwrap();
        assert_eq!(out.objects[0].json, "{not json");
        let out = Hostile::transform(r#"{"mode":"no-identity"}"#.into(), Vec::new()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.objects[0].json).unwrap();
        assert!(v.pointer("/metadata/name").is_none());
        let out = Hostile::transform(r#"{"mode":"id-mismatch"}"#.into(), Vec::new()).unwrap();
        assert!(out.objects[0].json.contains("garbage-impostor"));
        let sent = Object {
            id: fallback_id(),
            origin: None,
            json: r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"garbage"}}"#.into(),
        };
        let out = Hostile::transform(r#"{"mode":"non-canonical"}"#.into(), vec![sent.clone()]).unwrap();
        let read: serde_json::Value = serde_json::from_str(&out.objects[0].json).unwrap();
        assert_eq!(
            read,
            serde_json::from_str::<serde_json::Value>(&sent.json).unwrap()
        );
        assert!(out.objects[0].json.contains("to-plugins"));
    }
}
