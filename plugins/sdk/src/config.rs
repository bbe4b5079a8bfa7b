//! Plugin configuration parsing.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::PluginError;

/// Parses the configuration text the host passes: empty (or blank) text and
/// `null` become [`Value::Null`]; anything else must be valid JSON.
pub fn parse_config_text(text: &str) -> Result<Value, PluginError> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text)
        .map_err(|e| PluginError::InvalidConfig(format!("config is not valid JSON: {e}")))
}

/// Deserializes the configuration into a typed struct.
///
/// A missing configuration ([`Value::Null`]) is treated as `{}`, so a struct
/// whose fields all have defaults accepts it. Anything else must be a JSON
/// object (serde would otherwise also accept an array for a struct). Use
/// `#[serde(deny_unknown_fields)]` on the struct so that typos are reported.
/// Errors become [`PluginError::InvalidConfig`] with serde's message, e.g.
/// ``unknown field `lables`, expected `labels` or `annotations` ``.
pub fn parse_config<T: DeserializeOwned>(config: &Value) -> Result<T, PluginError> {
    let result = match config {
        Value::Null => serde_json::from_value(Value::Object(serde_json::Map::new())),
        Value::Object(_) => T::deserialize(config),
        other => {
            return Err(PluginError::InvalidConfig(format!(
                "config must be a JSON object, found {}",
                crate::json_type(other)
            )));
        }
    };
    result.map_err(|e| PluginError::InvalidConfig(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default)]
        n: u32,
    }

    #[test]
    fn config_text() {
        assert_eq!(parse_config_text("").unwrap(), Value::Null);
        assert_eq!(parse_config_text("  \n").unwrap(), Value::Null);
        assert_eq!(parse_config_text("null").unwrap(), Value::Null);
        assert_eq!(parse_config_text(r#"{"n":1}"#).unwrap(), json!({"n": 1}));
        let err = parse_config_text("{oops").unwrap_err();
        assert!(
            matches!(err, PluginError::InvalidConfig(ref m) if m.starts_with("config is not valid JSON")),
            "{err}"
        );
    }

    #[test]
    fn typed_config() {
        assert_eq!(parse_config::<Config>(&Value::Null).unwrap(), Config { n: 0 });
        assert_eq!(parse_config::<Config>(&json!({"n": 3})).unwrap(), Config { n: 3 });
        for (bad, needle) in [
            (json!([]), "must be a JSON object, found array"),
            (json!("x"), "found string"),
            (json!({"m": 1}), "unknown field `m`"),
            (json!({"n": "1"}), "invalid type: string"),
        ] {
            let err = parse_config::<Config>(&bad).unwrap_err();
            assert!(matches!(err, PluginError::InvalidConfig(_)));
            assert!(err.message().contains(needle), "{bad}: {err}");
        }
    }
}
