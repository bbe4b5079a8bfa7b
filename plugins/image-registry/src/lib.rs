//! `image-registry`: container images come from allowed registries and are
//! pinned to a tag other than `latest` (or to a digest).
//!
//! Config: `{"allowed": ["registry.example.com", "ghcr.io/acme"], "allowLatest": false}`
//!
//! * Images are normalised before matching: Docker Hub short names gain
//!   their registry, so `nginx` is `docker.io/library/nginx` and `acme/app`
//!   is `docker.io/acme/app`.
//! * A prefix matches whole path components: `ghcr.io/acme` (or
//!   `ghcr.io/acme/`) allows `ghcr.io/acme/app` but not `ghcr.io/acme-evil/app`;
//!   `registry.example.com` allows everything on that registry.
//! * Unless `allowLatest` is true, an image must have a tag other than
//!   `latest` or be pinned by digest.
//!
//! Checks every container, init container and ephemeral container of
//! workloads. Rules (all errors, path `.../containers/<i>/image`):
//! `image-registry/disallowed-registry`, `image-registry/latest-tag`,
//! `image-registry/missing-tag`, `image-registry/invalid-image`.

use kitsync_plugin::{
    Diagnostic, Metadata, Object, PluginError, Validator, Value, image::ImageRef, parse_config,
};
use serde::Deserialize;
use serde_json::json;

/// Rule code for an image from a registry not in `allowed`.
pub const RULE_DISALLOWED: &str = "image-registry/disallowed-registry";
/// Rule code for an image tagged `latest`.
pub const RULE_LATEST: &str = "image-registry/latest-tag";
/// Rule code for an image with neither tag nor digest.
pub const RULE_MISSING_TAG: &str = "image-registry/missing-tag";
/// Rule code for a missing or unparsable image.
pub const RULE_INVALID: &str = "image-registry/invalid-image";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    allowed: Vec<String>,
    #[serde(default)]
    allow_latest: bool,
}

/// Plugin configuration, with prefixes normalised (no trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Allowed prefixes, each a registry host or host/path, without a trailing `/`.
    pub allowed: Vec<String>,
    /// Accept `:latest` and untagged images.
    pub allow_latest: bool,
}

impl Config {
    /// Parses and checks a configuration.
    pub fn parse(config: &Value) -> Result<Self, PluginError> {
        if config.is_null() {
            return Err(PluginError::invalid_config(
                "missing config: expected {\"allowed\": [\"registry.example.com\", ...]}",
            ));
        }
        let raw: RawConfig = parse_config(config)?;
        if raw.allowed.is_empty() {
            return Err(PluginError::invalid_config(
                "`allowed` must list at least one registry prefix",
            ));
        }
        let mut allowed = Vec::new();
        for prefix in raw.allowed {
            let trimmed = prefix.trim_end_matches('/');
            let host = trimmed.split('/').next().unwrap_or_default();
            if trimmed.is_empty()
                || trimmed.chars().any(|c| c.is_whitespace() || c == '@')
                || trimmed.contains("//")
            {
                return Err(PluginError::InvalidConfig(format!(
                    "allowed: {prefix:?} is not a registry prefix"
                )));
            }
            if !(host.contains(['.', ':']) || host == "localhost") {
                return Err(PluginError::InvalidConfig(format!(
                    "allowed: {prefix:?} does not start with a registry host; write e.g. \"docker.io/{trimmed}\" \
                     or \"registry.example.com/{trimmed}\""
                )));
            }
            let normalized = match trimmed.strip_prefix("index.docker.io") {
                Some(rest) => format!("docker.io{rest}"),
                None => trimmed.to_owned(),
            };
            allowed.push(normalized);
        }
        Ok(Self {
            allowed,
            allow_latest: raw.allow_latest,
        })
    }

    /// Whether a normalised image name is under an allowed prefix.
    pub fn allows(&self, normalized_name: &str) -> bool {
        self.allowed.iter().any(|p| {
            normalized_name == p
                || normalized_name
                    .strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

/// The JSON Schema of the configuration.
pub fn config_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "image-registry config",
        "type": "object",
        "properties": {
            "allowed": {
                "description": "Allowed image prefixes: a registry host (`registry.example.com`) or host and path (`ghcr.io/acme/`), matched on whole path components after normalising Docker Hub short names.",
                "type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}
            },
            "allowLatest": {
                "description": "Accept images tagged `latest` or without a tag.",
                "type": "boolean", "default": false
            }
        },
        "required": ["allowed"],
        "additionalProperties": false
    })
}

/// The `image-registry` validator.
pub struct ImageRegistry;

impl Validator for ImageRegistry {
    fn metadata() -> Metadata {
        Metadata::new("image-registry", env!("CARGO_PKG_VERSION"))
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
                let pointer = container.pointer_to("image");
                let who = container.describe();
                let Some(image) = container.image() else {
                    out.push(
                        Diagnostic::error(RULE_INVALID, format!("{who} has no image"))
                            .on(object)
                            .at(pointer),
                    );
                    continue;
                };
                let parsed = match ImageRef::parse(image) {
                    Ok(parsed) => parsed,
                    Err(e) => {
                        out.push(
                            Diagnostic::error(RULE_INVALID, format!("{who}: {e}"))
                                .on(object)
                                .at(pointer),
                        );
                        continue;
                    }
                };
                let normalized = parsed.normalized_name();
                if !config.allows(&normalized) {
                    out.push(
                        Diagnostic::error(
                            RULE_DISALLOWED,
                            format!(
                                "{who} uses image {image:?} ({normalized}), which is not from an allowed registry ({})",
                                config.allowed.join(", ")
                            ),
                        )
                        .on(object)
                        .at(pointer.clone()),
                    );
                }
                if config.allow_latest || parsed.digest.is_some() {
                    continue;
                }
                match parsed.tag.as_deref() {
                    None => out.push(
                        Diagnostic::error(
                            RULE_MISSING_TAG,
                            format!(
                                "{who} uses image {image:?} without a tag or digest (implicitly :latest)"
                            ),
                        )
                        .on(object)
                        .at(pointer),
                    ),
                    Some("latest") => out.push(
                        Diagnostic::error(
                            RULE_LATEST,
                            format!(
                                "{who} uses image {image:?}: pin a version tag or digest instead of :latest"
                            ),
                        )
                        .on(object)
                        .at(pointer),
                    ),
                    Some(_) => {}
                }
            }
        }
        Ok(out)
    }
}

kitsync_plugin::export_validator!(ImageRegistry);

#[cfg(test)]
mod tests {
    use super::*;

    // Findings on objects are fixture cases in tests/ (`kitsync plugin test`); what stays
    // here is how configs are read and refused.

    #[test]
    fn bad_configs() {
        for (config, needle) in [
            (json!(null), "missing config"),
            (json!({"allowed": []}), "at least one"),
            (
                json!({"allowed": ["acme"]}),
                "does not start with a registry host",
            ),
            (json!({"allowed": [""]}), "not a registry prefix"),
            (json!({"allowed": "docker.io"}), "invalid type"),
            (
                json!({"allowed": ["docker.io"], "allowLatest": "yes"}),
                "invalid type",
            ),
            (
                json!({"allowed": ["docker.io"], "allow_latest": true}),
                "unknown field `allow_latest`",
            ),
        ] {
            let err = ImageRegistry::validate_config(&config).unwrap_err();
            assert!(matches!(err, PluginError::InvalidConfig(_)), "{err:?}");
            assert!(err.message().contains(needle), "{config}: {err}");
        }
        let c = Config::parse(&json!({"allowed": ["index.docker.io/library/"]})).unwrap();
        assert!(c.allows("docker.io/library/nginx"));
    }
}
