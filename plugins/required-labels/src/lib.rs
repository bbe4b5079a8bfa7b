//! `required-labels`: every object (optionally only some kinds) carries the
//! configured labels.
//!
//! Config: `{"labels": ["app.kubernetes.io/name", ...], "kinds": ["Deployment", "apps/v1/StatefulSet"]}`
//! (`kinds` optional; absent or empty means every kind).
//!
//! Rules: `required-labels/missing` (error, path `/metadata/labels`).

use kitsync_plugin::{
    Diagnostic, Metadata, Object, PluginError, Validator, Value, names::check_label_key, parse_config,
};
use serde::Deserialize;
use serde_json::json;

/// Rule code for a missing label.
pub const RULE_MISSING: &str = "required-labels/missing";

/// Plugin configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Label keys every object must carry (any value, even empty).
    pub labels: Vec<String>,
    /// Kind selectors (`Deployment` or `apps/v1/Deployment`); empty = all.
    #[serde(default)]
    pub kinds: Vec<String>,
}

impl Config {
    /// Parses and checks a configuration.
    pub fn parse(config: &Value) -> Result<Self, PluginError> {
        if config.is_null() {
            return Err(PluginError::invalid_config(
                "missing config: expected {\"labels\": [\"<label key>\", ...]}",
            ));
        }
        let config: Self = parse_config(config)?;
        if config.labels.is_empty() {
            return Err(PluginError::invalid_config(
                "`labels` must list at least one label key",
            ));
        }
        for key in &config.labels {
            check_label_key(key).map_err(|e| PluginError::InvalidConfig(format!("labels: {e}")))?;
        }
        if let Some(k) = config
            .kinds
            .iter()
            .find(|k| k.is_empty() || k.starts_with('/') || k.ends_with('/'))
        {
            return Err(PluginError::InvalidConfig(format!(
                "kinds: {k:?} is not a kind or apiVersion/kind"
            )));
        }
        Ok(config)
    }
}

/// The JSON Schema of [`Config`].
pub fn config_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "required-labels config",
        "type": "object",
        "properties": {
            "labels": {
                "description": "Label keys every selected object must carry.",
                "type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}
            },
            "kinds": {
                "description": "Kinds to check (`Deployment` or `apps/v1/Deployment`); empty or absent means every kind.",
                "type": "array", "items": {"type": "string", "minLength": 1}
            }
        },
        "required": ["labels"],
        "additionalProperties": false
    })
}

/// The `required-labels` validator.
pub struct RequiredLabels;

impl Validator for RequiredLabels {
    fn metadata() -> Metadata {
        Metadata::new("required-labels", env!("CARGO_PKG_VERSION")).config_schema(config_schema())
    }

    fn validate_config(config: &Value) -> Result<(), PluginError> {
        Config::parse(config).map(drop)
    }

    fn validate(config: &Value, objects: &[Object]) -> Result<Vec<Diagnostic>, PluginError> {
        let config = Config::parse(config)?;
        let mut out = Vec::new();
        for object in objects.iter().filter(|o| o.matches_any_kind(&config.kinds)) {
            let labels = object.labels();
            for key in &config.labels {
                if labels.is_none_or(|l| !l.contains_key(key)) {
                    out.push(
                        Diagnostic::error(
                            RULE_MISSING,
                            format!(
                                "{} {} is missing required label {key:?}",
                                object.kind(),
                                object.name()
                            ),
                        )
                        .on(object)
                        .at("/metadata/labels"),
                    );
                }
            }
        }
        Ok(out)
    }
}

kitsync_plugin::export_validator!(RequiredLabels);

#[cfg(test)]
mod tests {
    use super::*;
    use kitsync_plugin::bindings::types as wit;

    // Findings on objects are fixture cases in tests/ (`kitsync plugin test`); what stays
    // here are the config table and the SDK's export path.

    #[test]
    fn bad_configs() {
        for (config, needle) in [
            (json!(null), "missing config"),
            (json!({}), "missing field `labels`"),
            (json!({"labels": []}), "at least one"),
            (json!({"labels": "team"}), "invalid type"),
            (json!({"labels": ["team"], "kind": []}), "unknown field `kind`"),
            (json!({"labels": ["Bad Key"]}), "labels:"),
            (json!({"labels": ["ok"], "kinds": [""]}), "kinds"),
        ] {
            let err = RequiredLabels::validate_config(&config).unwrap_err();
            assert!(matches!(err, PluginError::InvalidConfig(_)), "{err:?}");
            assert!(err.message().contains(needle), "{config}: {err}");
        }
    }

    #[test]
    fn through_the_wit_boundary() {
        let raw = wit::Object {
            id: wit::ObjectRef {
                api_version: "v1".into(),
                kind: "Service".into(),
                namespace: Some("shop".into()),
                name: "web".into(),
            },
            origin: Some(wit::Origin {
                file: "svc.yaml".into(),
                document: 1,
            }),
            json: r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"shop"}}"#
                .into(),
        };
        let diags =
            kitsync_plugin::validate::<RequiredLabels>(r#"{"labels":["team"]}"#, vec![raw.clone()]).unwrap();
        assert_eq!(diags.len(), 1);
        assert_eq!(
            diags[0].object.as_ref().unwrap().namespace.as_deref(),
            Some("shop")
        );
        let err = kitsync_plugin::validate::<RequiredLabels>("", vec![raw.clone()]).unwrap_err();
        assert!(matches!(err, wit::PluginError::InvalidConfig(_)));
        let bad = wit::Object {
            json: "{nope".into(),
            ..raw
        };
        let err =
            kitsync_plugin::validate::<RequiredLabels>(r#"{"labels":["team"]}"#, vec![bad]).unwrap_err();
        let wit::PluginError::InvalidInput(msg) = err else {
            panic!("{err:?}")
        };
        assert!(msg.contains("Service v1 shop/web (svc.yaml#1)"), "{msg}");
        let meta = kitsync_plugin::validator_metadata::<RequiredLabels>();
        assert_eq!(meta.name, "required-labels");
        let schema: Value = serde_json::from_str(meta.config_schema.as_deref().unwrap()).unwrap();
        assert_eq!(schema["required"], json!(["labels"]));
    }
}
