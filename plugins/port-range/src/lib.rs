//! `port-range`: Service ports and container ports lie in allowed ranges.
//!
//! Config, one of:
//! * `{"min": 1024, "max": 32767}` (one range; `min` defaults to 1, `max` to 65535);
//! * `{"ranges": [{"min": 1024, "max": 32767}, {"min": 40000, "max": 40100}]}`.
//!
//! Checked (a port is fine if it lies in any range, bounds inclusive):
//! * Service `spec.ports[*].port` and numeric `spec.ports[*].targetPort`
//!   (named target ports are not checked);
//! * `ports[*].containerPort` of every container, init container and
//!   ephemeral container of workloads.
//!
//! Rules: `port-range/out-of-range` (error), `port-range/invalid-port`
//! (error: the port is not an integer), both with the path of the port, e.g.
//! `/spec/ports/0/port`.

use kitsync_plugin::{
    Diagnostic, Metadata, Object, PluginError, Pointer, Validator, Value, json_type, parse_config,
};
use serde::Deserialize;
use serde_json::json;

/// Rule code for a port outside the allowed ranges.
pub const RULE_OUT_OF_RANGE: &str = "port-range/out-of-range";
/// Rule code for a port that is not an integer.
pub const RULE_INVALID_PORT: &str = "port-range/invalid-port";

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// Lowest allowed port.
    #[serde(default = "default_min")]
    pub min: u32,
    /// Highest allowed port.
    #[serde(default = "default_max")]
    pub max: u32,
}

fn default_min() -> u32 {
    1
}

fn default_max() -> u32 {
    65535
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    min: Option<u32>,
    max: Option<u32>,
    ranges: Option<Vec<Range>>,
}

/// Plugin configuration, normalised to a list of ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Allowed ranges.
    pub ranges: Vec<Range>,
}

impl Config {
    /// Parses and checks a configuration.
    pub fn parse(config: &Value) -> Result<Self, PluginError> {
        if config.is_null() {
            return Err(PluginError::invalid_config(
                "missing config: expected {\"min\": <port>, \"max\": <port>} or {\"ranges\": [{\"min\": ..., \"max\": ...}]}",
            ));
        }
        let raw: RawConfig = parse_config(config)?;
        let ranges = match (raw.min, raw.max, raw.ranges) {
            (None, None, None) => {
                return Err(PluginError::invalid_config("give `min`/`max` or `ranges`"));
            }
            (None, None, Some(ranges)) => {
                if ranges.is_empty() {
                    return Err(PluginError::invalid_config(
                        "`ranges` must list at least one range",
                    ));
                }
                ranges
            }
            (min, max, None) => vec![Range {
                min: min.unwrap_or(1),
                max: max.unwrap_or(65535),
            }],
            (_, _, Some(_)) => {
                return Err(PluginError::invalid_config(
                    "give either `min`/`max` or `ranges`, not both",
                ));
            }
        };
        for (i, r) in ranges.iter().enumerate() {
            let at = if ranges.len() > 1 || config.get("ranges").is_some() {
                format!("ranges[{i}]: ")
            } else {
                String::new()
            };
            if !(1..=65535).contains(&r.min) || !(1..=65535).contains(&r.max) {
                return Err(PluginError::InvalidConfig(format!(
                    "{at}ports must be between 1 and 65535 (got min {}, max {})",
                    r.min, r.max
                )));
            }
            if r.min > r.max {
                return Err(PluginError::InvalidConfig(format!(
                    "{at}min {} is greater than max {}",
                    r.min, r.max
                )));
            }
        }
        Ok(Self { ranges })
    }

    fn allows(&self, port: u64) -> bool {
        self.ranges
            .iter()
            .any(|r| (u64::from(r.min)..=u64::from(r.max)).contains(&port))
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|r| format!("{}-{}", r.min, r.max))
            .collect();
        parts.join(", ")
    }
}

/// The JSON Schema of the configuration.
pub fn config_schema() -> Value {
    let port = json!({"type": "integer", "minimum": 1, "maximum": 65535});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "port-range config",
        "oneOf": [
            {
                "type": "object",
                "properties": {"min": port, "max": port},
                "anyOf": [{"required": ["min"]}, {"required": ["max"]}],
                "additionalProperties": false
            },
            {
                "type": "object",
                "properties": {
                    "ranges": {
                        "type": "array", "minItems": 1,
                        "items": {
                            "type": "object",
                            "properties": {"min": port, "max": port},
                            "additionalProperties": false
                        }
                    }
                },
                "required": ["ranges"],
                "additionalProperties": false
            }
        ]
    })
}

struct Checker<'a> {
    config: &'a Config,
    out: Vec<Diagnostic>,
}

impl Checker<'_> {
    /// Checks one port value; `named_ok` accepts strings (named target ports). What the port
    /// is and where are only worked out for a finding: most ports are fine, and formatting
    /// them all was a visible share of a call.
    fn check(
        &mut self,
        object: &Object,
        what: impl FnOnce() -> String,
        value: &Value,
        pointer: impl FnOnce() -> Pointer,
        named_ok: bool,
    ) {
        let (what, pointer) = match value {
            Value::Number(n) if n.as_u64().is_some_and(|port| self.config.allows(port)) => return,
            Value::String(_) if named_ok => return,
            _ => (what(), pointer()),
        };
        match value {
            Value::Number(n) => match n.as_u64() {
                Some(port) if self.config.allows(port) => {}
                Some(port) => self.out.push(
                    Diagnostic::error(
                        RULE_OUT_OF_RANGE,
                        format!(
                            "{what} {port} is outside the allowed port range {}",
                            self.config.describe()
                        ),
                    )
                    .on(object)
                    .at(pointer),
                ),
                None => self.out.push(
                    Diagnostic::error(
                        RULE_INVALID_PORT,
                        format!("{what} {n} is not a valid port number"),
                    )
                    .on(object)
                    .at(pointer),
                ),
            },
            Value::String(_) if named_ok => {}
            other => self.out.push(
                Diagnostic::error(
                    RULE_INVALID_PORT,
                    format!("{what} must be an integer, found {}", json_type(other)),
                )
                .on(object)
                .at(pointer),
            ),
        }
    }

    fn object(&mut self, object: &Object) {
        // Only a Service's ports are built, not the whole object.
        let service_ports = (object.kind() == "Service").then(|| object.read("/spec/ports"));
        if let Some(Some(Value::Array(ports))) = &service_ports {
            for (i, port) in ports.iter().enumerate() {
                let base = || Pointer::parse("/spec/ports").index(i);
                let label = || {
                    port.get("name")
                        .and_then(Value::as_str)
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                };
                match port.get("port") {
                    Some(p) => self.check(
                        object,
                        || format!("service port{}", label()),
                        p,
                        || base().key("port"),
                        false,
                    ),
                    None => self.out.push(
                        Diagnostic::error(
                            RULE_INVALID_PORT,
                            format!("service port{} has no `port`", label()),
                        )
                        .on(object)
                        .at(base()),
                    ),
                }
                if let Some(t) = port.get("targetPort") {
                    self.check(
                        object,
                        || format!("targetPort{}", label()),
                        t,
                        || base().key("targetPort"),
                        true,
                    );
                }
            }
        }
        for container in object.containers() {
            let Some(ports) = container.value.get("ports").and_then(Value::as_array) else {
                continue;
            };
            for (i, port) in ports.iter().enumerate() {
                if let Some(p) = port.get("containerPort") {
                    self.check(
                        object,
                        || format!("containerPort of {}", container.describe()),
                        p,
                        || container.pointer_to("ports").index(i).key("containerPort"),
                        false,
                    );
                }
            }
        }
    }
}

/// The `port-range` validator.
pub struct PortRange;

impl Validator for PortRange {
    fn metadata() -> Metadata {
        let mut kinds = vec!["Service"];
        kinds.extend(kitsync_plugin::workload::WORKLOAD_KINDS);
        Metadata::new("port-range", env!("CARGO_PKG_VERSION"))
            .kinds(kinds)
            .config_schema(config_schema())
    }

    fn validate_config(config: &Value) -> Result<(), PluginError> {
        Config::parse(config).map(drop)
    }

    fn validate(config: &Value, objects: &[Object]) -> Result<Vec<Diagnostic>, PluginError> {
        let config = Config::parse(config)?;
        let mut checker = Checker {
            config: &config,
            out: Vec::new(),
        };
        for object in objects {
            checker.object(object);
        }
        Ok(checker.out)
    }
}

kitsync_plugin::export_validator!(PortRange);

#[cfg(test)]
mod tests {
    use super::*;

    // Findings on objects are fixture cases in tests/ (`kitsync plugin test`); what stays
    // here is how configs are read and refused.

    #[test]
    fn config_forms() {
        assert_eq!(
            Config::parse(&json!({"min": 1024})).unwrap().ranges,
            vec![Range {
                min: 1024,
                max: 65535
            }]
        );
        assert_eq!(
            Config::parse(&json!({"max": 80})).unwrap().ranges,
            vec![Range { min: 1, max: 80 }]
        );
        assert_eq!(
            Config::parse(&json!({"ranges": [{"min": 5}]})).unwrap().ranges,
            vec![Range { min: 5, max: 65535 }]
        );
    }

    #[test]
    fn bad_configs() {
        for (config, needle) in [
            (json!(null), "missing config"),
            (json!({}), "give `min`/`max` or `ranges`"),
            (json!({"min": 1, "ranges": [{"min": 2}]}), "not both"),
            (json!({"ranges": []}), "at least one"),
            (json!({"min": 2000, "max": 1000}), "greater than"),
            (json!({"min": 0}), "between 1 and 65535"),
            (json!({"max": 70000}), "between 1 and 65535"),
            (json!({"min": -1}), "invalid value"),
            (json!({"min": "1024"}), "invalid type"),
            (json!({"minimum": 1}), "unknown field `minimum`"),
            (json!({"ranges": [{"min": 1, "mx": 2}]}), "unknown field `mx`"),
        ] {
            let err = PortRange::validate_config(&config).unwrap_err();
            assert!(matches!(err, PluginError::InvalidConfig(_)), "{err:?}");
            assert!(err.message().contains(needle), "{config}: {err}");
        }
    }
}
