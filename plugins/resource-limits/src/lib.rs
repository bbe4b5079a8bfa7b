//! `resource-limits`: every container sets resource limits.
//!
//! Config: `{"require": ["cpu", "memory"]}`; without config (or without
//! `require`) both `cpu` and `memory` are required. Any resource name is
//! accepted (`ephemeral-storage`, `nvidia.com/gpu`, ...).
//!
//! Checks every container, init container and ephemeral container of
//! workloads. Rule: `resource-limits/missing-limit` (error), one per
//! container naming every missing resource; the path is the deepest existing
//! of `.../containers/<i>/resources/limits`, `.../resources`, the container.

use kitsync_plugin::{
    Diagnostic, Metadata, Object, PluginError, Validator, Value, names::check_label_key, parse_config,
};
use serde::Deserialize;
use serde_json::json;

/// Rule code for a container without a required limit.
pub const RULE_MISSING_LIMIT: &str = "resource-limits/missing-limit";

/// Plugin configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Resources every container must set a limit for.
    #[serde(default = "default_require")]
    pub require: Vec<String>,
}

fn default_require() -> Vec<String> {
    vec!["cpu".to_owned(), "memory".to_owned()]
}

impl Config {
    /// Parses and checks a configuration (`null` means the defaults).
    pub fn parse(config: &Value) -> Result<Self, PluginError> {
        let config: Self = parse_config(config)?;
        if config.require.is_empty() {
            return Err(PluginError::invalid_config(
                "`require` must list at least one resource (omit it for cpu and memory)",
            ));
        }
        for name in &config.require {
            check_label_key(name).map_err(|e| {
                PluginError::InvalidConfig(format!("require: {name:?} is not a resource name ({e})"))
            })?;
        }
        Ok(config)
    }
}

/// The JSON Schema of [`Config`].
pub fn config_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "resource-limits config",
        "type": "object",
        "properties": {
            "require": {
                "description": "Resources every container must set a limit for.",
                "type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1},
                "default": ["cpu", "memory"]
            }
        },
        "additionalProperties": false
    })
}

/// The `resource-limits` validator.
pub struct ResourceLimits;

impl Validator for ResourceLimits {
    fn metadata() -> Metadata {
        Metadata::new("resource-limits", env!("CARGO_PKG_VERSION"))
            .kinds(kitsync_plugin::workload::WORKLOAD_KINDS.iter().copied())
            .config_schema(config_schema())
    }

    fn validate_config(config: &Value) -> Result<(), PluginError> {
        Config::parse(config).map(drop)
    }

    fn validate(config: &Value, objects: &[Object]) -> Result<Vec<Diagnostic>, PluginError> {
        let config = Config::parse(config)?;
        let mut out = Vec::new();
        for object in objects {
            for container in object.containers() {
                let resources = container.value.get("resources").filter(|r| r.is_object());
                let limits = resources.and_then(|r| r.get("limits")).and_then(Value::as_object);
                let missing: Vec<&str> = config
                    .require
                    .iter()
                    .filter(|r| limits.is_none_or(|l| l.get(r.as_str()).is_none_or(Value::is_null)))
                    .map(String::as_str)
                    .collect();
                if missing.is_empty() {
                    continue;
                }
                let pointer = match (resources, limits) {
                    (_, Some(_)) => container.pointer_to("resources").key("limits"),
                    (Some(_), None) => container.pointer_to("resources"),
                    (None, None) => container.pointer(),
                };
                out.push(
                    Diagnostic::error(
                        RULE_MISSING_LIMIT,
                        format!(
                            "{} sets no limit for {}",
                            container.describe(),
                            missing.join(", ")
                        ),
                    )
                    .on(object)
                    .at(pointer),
                );
            }
        }
        Ok(out)
    }
}

kitsync_plugin::export_validator!(ResourceLimits);

#[cfg(test)]
mod tests {
    use super::*;

    // Findings on objects are fixture cases in tests/ (`kitsync plugin test`); what stays
    // here is how configs are refused.

    #[test]
    fn bad_configs() {
        for (config, needle) in [
            (json!({"require": []}), "at least one"),
            (json!({"require": "cpu"}), "invalid type"),
            (json!({"require": ["c p u"]}), "not a resource name"),
            (json!({"requires": ["cpu"]}), "unknown field `requires`"),
            (json!([]), "must be a JSON object"),
        ] {
            let err = ResourceLimits::validate_config(&config).unwrap_err();
            assert!(matches!(err, PluginError::InvalidConfig(_)), "{err:?}");
            assert!(err.message().contains(needle), "{config}: {err}");
        }
    }
}
