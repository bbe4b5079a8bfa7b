//! `set-labels`: adds labels and annotations to every object.
//!
//! Config: `{"labels": {"team": "shop"}, "annotations": {"owner": "shop@example.com"}}`
//! (either may be absent, not both).
//!
//! * Labels go to `metadata.labels` of every object and, for workloads, to the
//!   pod template's `metadata.labels` (`spec.template`, and for CronJobs
//!   `spec.jobTemplate` and `spec.jobTemplate.spec.template`). Selectors are
//!   never touched, so adding a label cannot orphan existing pods.
//! * Annotations go to `metadata.annotations` of every object only (not to pod
//!   templates, so changing one does not restart pods).
//! * Existing values of the same keys are overwritten (like kustomize
//!   `commonLabels`/`commonAnnotations`).
//!
//! No diagnostics. Fails with `invalid-input` if an object's `metadata`,
//! `labels` or `annotations` is present but not a JSON object.

use std::collections::BTreeMap;

use kitsync_plugin::{
    Metadata, Object, PluginError, TransformOutput, Transformer, Value,
    names::{check_label_key, check_label_value},
    parse_config,
    workload::pod_template_pointer,
};
use serde::Deserialize;
use serde_json::{Map, json};

/// Plugin configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Labels to set.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations to set.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Config {
    /// Parses and checks a configuration.
    pub fn parse(config: &Value) -> Result<Self, PluginError> {
        if config.is_null() {
            return Err(PluginError::invalid_config(
                "missing config: expected {\"labels\": {...}, \"annotations\": {...}}",
            ));
        }
        let config: Self = parse_config(config)?;
        if config.labels.is_empty() && config.annotations.is_empty() {
            return Err(PluginError::invalid_config(
                "nothing to set: give a non-empty `labels` and/or `annotations` map",
            ));
        }
        for (key, value) in &config.labels {
            check_label_key(key).map_err(|e| PluginError::InvalidConfig(format!("labels: {e}")))?;
            check_label_value(value)
                .map_err(|e| PluginError::InvalidConfig(format!("labels: key {key:?}: {e}")))?;
        }
        for key in config.annotations.keys() {
            check_label_key(key).map_err(|e| PluginError::InvalidConfig(format!("annotations: {e}")))?;
        }
        Ok(config)
    }
}

/// The JSON Schema of [`Config`].
pub fn config_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "set-labels config",
        "type": "object",
        "properties": {
            "labels": {
                "description": "Labels to set on every object and on workload pod templates (overwriting existing values).",
                "type": "object", "additionalProperties": {"type": "string", "maxLength": 63}
            },
            "annotations": {
                "description": "Annotations to set on every object (overwriting existing values).",
                "type": "object", "additionalProperties": {"type": "string"}
            }
        },
        "anyOf": [{"required": ["labels"]}, {"required": ["annotations"]}],
        "additionalProperties": false
    })
}

/// Walks `tokens` from `root`, creating missing or `null` members as empty
/// objects, and returns the object at the end.
fn ensure_object<'a>(root: &'a mut Value, tokens: &[&str]) -> Result<&'a mut Map<String, Value>, String> {
    let mut current = root;
    let mut path = String::new();
    for token in tokens {
        path.push('.');
        path.push_str(token);
        let Value::Object(map) = current else {
            return Err(format!("{} is not an object", path.trim_start_matches('.')));
        };
        let next = map.entry(token.to_string()).or_insert(Value::Null);
        if next.is_null() {
            *next = Value::Object(Map::new());
        }
        current = next;
    }
    match current {
        Value::Object(map) => Ok(map),
        _ => Err(format!("{} is not an object", path.trim_start_matches('.'))),
    }
}

fn set_entries(root: &mut Value, tokens: &[&str], entries: &BTreeMap<String, String>) -> Result<(), String> {
    if entries.is_empty() {
        return Ok(());
    }
    let map = ensure_object(root, tokens)?;
    for (k, v) in entries {
        map.insert(k.clone(), Value::String(v.clone()));
    }
    Ok(())
}

/// Sets `entries` in the map at `pointer`, building only that map ([`Object::edit`]); a
/// `null` there becomes the map. `None`, changing nothing, when nothing is at `pointer`;
/// `Some(Err(()))` when what is there is not a map.
fn set_in_place(
    object: &mut Object,
    pointer: &str,
    entries: &BTreeMap<String, String>,
) -> Option<Result<(), ()>> {
    object.edit(pointer, |found| {
        if found.is_null() {
            *found = Value::Object(Map::new());
        }
        set_entries(found, &[], entries).map_err(drop)
    })
}

/// Applies the configuration to one object. Only the maps it changes are built and
/// rewritten when they exist (`metadata.labels`, the pod template's labels); otherwise the
/// object's metadata, or its template. The rest of the object stays the host's text.
pub fn apply(config: &Config, object: &mut Object) -> Result<(), PluginError> {
    // Described only on failure: formatting every object's name is a visible share of a call.
    let fail = |object: &Object, e: String| PluginError::InvalidInput(format!("{}: {e}", object.describe()));
    let mut missing = false;
    for (pointer, entries, name) in [
        ("/metadata/labels", &config.labels, "metadata.labels"),
        (
            "/metadata/annotations",
            &config.annotations,
            "metadata.annotations",
        ),
    ] {
        if entries.is_empty() {
            continue;
        }
        match set_in_place(object, pointer, entries) {
            Some(Ok(())) => {}
            Some(Err(())) => return Err(fail(object, format!("{name} is not an object"))),
            None => missing = true,
        }
    }
    let set_metadata = |metadata: &mut Value, path: &str| -> Result<(), String> {
        let in_metadata = |e: String| format!("{path}{e}");
        set_entries(metadata, &["labels"], &config.labels).map_err(in_metadata)?;
        set_entries(metadata, &["annotations"], &config.annotations).map_err(in_metadata)
    };
    // A map to create: through the metadata (setting again what was set above is harmless).
    if missing {
        match object.edit("/metadata", |m| {
            if m.is_null() {
                *m = Value::Object(Map::new());
            }
            set_metadata(m, "metadata.")
        }) {
            Some(result) => result.map_err(|e| fail(object, e))?,
            // No metadata at all: create it (a host object always has one, with its name).
            None => set_entries(object.value_mut(), &["metadata", "labels"], &config.labels)
                .and_then(|()| {
                    set_entries(
                        object.value_mut(),
                        &["metadata", "annotations"],
                        &config.annotations,
                    )
                })
                .map_err(|e| fail(object, e))?,
        }
    }
    if config.labels.is_empty() {
        return Ok(());
    }
    let mut templates: Vec<&str> = Vec::new();
    if object.kind() == "CronJob" {
        templates.push("/spec/jobTemplate");
    }
    if let Some(template) = pod_template_pointer(object.kind()) {
        templates.push(template);
    }
    for template in templates {
        match set_in_place(object, &format!("{template}/metadata/labels"), &config.labels) {
            Some(Ok(())) => continue,
            Some(Err(())) => {
                return Err(fail(
                    object,
                    format!("{template}: metadata.labels is not an object"),
                ));
            }
            None => {}
        }
        // Only existing templates are labelled; a missing one is not invented.
        let in_metadata = |m: &mut Value| {
            if m.is_null() {
                *m = Value::Object(Map::new());
            }
            set_entries(m, &["labels"], &config.labels).map_err(|e| format!("metadata.{e}"))
        };
        let labelled = object
            .edit(&format!("{template}/metadata"), in_metadata)
            .or_else(|| {
                object.edit(template, |t| {
                    if t.is_object() {
                        set_entries(t, &["metadata", "labels"], &config.labels)
                    } else {
                        Ok(())
                    }
                })
            });
        if let Some(result) = labelled {
            result.map_err(|e| fail(object, format!("{template}: {e}")))?;
        }
    }
    Ok(())
}

/// The `set-labels` transformer.
pub struct SetLabels;

impl Transformer for SetLabels {
    fn metadata() -> Metadata {
        Metadata::new("set-labels", env!("CARGO_PKG_VERSION")).config_schema(config_schema())
    }

    fn validate_config(config: &Value) -> Result<(), PluginError> {
        Config::parse(config).map(drop)
    }

    fn transform(config: &Value, mut objects: Vec<Object>) -> Result<TransformOutput, PluginError> {
        let config = Config::parse(config)?;
        for object in &mut objects {
            apply(&config, object)?;
        }
        Ok(TransformOutput::new(objects))
    }
}

kitsync_plugin::export_transformer!(SetLabels);

#[cfg(test)]
mod tests {
    use super::*;
    use kitsync_plugin::bindings::types as wit;

    // Transformations are fixture cases in tests/ (`kitsync plugin test`); what stays here
    // is how configs are refused and what the SDK does at the boundary.

    #[test]
    fn bad_configs() {
        for (config, needle) in [
            (json!(null), "missing config"),
            (json!({}), "nothing to set"),
            (json!({"label": {"a": "b"}}), "unknown field `label`"),
            (json!({"labels": {"a": 1}}), "invalid type"),
            (json!({"labels": ["a"]}), "invalid type"),
            (json!({"labels": {"a b": "c"}}), "labels:"),
            (json!({"labels": {"a": "not valid!"}}), "labels:"),
            (json!({"annotations": {"/x": "y"}}), "annotations:"),
        ] {
            let err = SetLabels::validate_config(&config).unwrap_err();
            assert!(matches!(err, PluginError::InvalidConfig(_)), "{err:?}");
            assert!(err.message().contains(needle), "{config}: {err}");
        }
        assert!(SetLabels::validate_config(&json!({"annotations": {"note": "anything at all!"}})).is_ok());
    }

    #[test]
    fn identity_recomputed_at_the_boundary() {
        let raw = wit::Object {
            id: wit::ObjectRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: None,
                name: "c".into(),
            },
            origin: Some(wit::Origin {
                file: "cm.yaml".into(),
                document: 3,
            }),
            json: r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"ns"}}"#.into(),
        };
        let out = kitsync_plugin::transform::<SetLabels>(r#"{"labels":{"a":"b"}}"#, vec![raw]).unwrap();
        assert_eq!(out.objects.len(), 1);
        let o = &out.objects[0];
        assert_eq!(o.id.namespace.as_deref(), Some("ns"));
        assert_eq!(o.origin.as_ref().unwrap().document, 3);
        let v: Value = serde_json::from_str(&o.json).unwrap();
        assert_eq!(v["metadata"]["labels"], json!({"a": "b"}));
    }
}
