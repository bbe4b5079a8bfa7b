//! `set-images`: rewrites container images, like kustomize `images`.
//!
//! Config:
//! `{"images": [{"name": "nginx", "newName": "registry.example/nginx", "newTag": "1.27", "digest": "sha256:..."}]}`
//!
//! * `name` matches the image name of containers, init containers and
//!   ephemeral containers of workloads, ignoring tag and digest. Docker Hub
//!   short names are normalised for matching, so `nginx` also matches
//!   `docker.io/library/nginx:1.25` (and vice versa).
//! * `newName` replaces the name, keeping tag and digest unless replaced.
//! * `newTag` sets the tag and drops any digest.
//! * `digest` pins the digest and drops any tag (a digest wins over `newTag`).
//!
//! Each entry needs `name` and at least one of `newName`, `newTag`, `digest`.
//! Rule: `set-images/invalid-image` (warning) for a container image that
//! cannot be parsed; it is left unchanged.

use kitsync_plugin::{
    Diagnostic, Metadata, Object, PluginError, TransformOutput, Transformer, Value, image::ImageRef,
    parse_config,
};
use serde::Deserialize;
use serde_json::json;

/// Rule code for an unparsable container image.
pub const RULE_INVALID_IMAGE: &str = "set-images/invalid-image";

/// One image rewrite.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageRule {
    /// Image name to match (no tag or digest).
    pub name: String,
    /// Replacement name.
    pub new_name: Option<String>,
    /// Replacement tag.
    pub new_tag: Option<String>,
    /// Digest to pin (`sha256:<64 hex>`).
    pub digest: Option<String>,
}

/// Plugin configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The rewrites; the first matching one applies.
    pub images: Vec<ImageRule>,
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    let parsed = ImageRef::parse(name).map_err(|e| format!("{what}: {e}"))?;
    if parsed.tag.is_some() || parsed.digest.is_some() {
        return Err(format!(
            "{what} {name:?} must be a bare image name without tag or digest"
        ));
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), String> {
    let ok_first = tag
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let ok_rest = tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if tag.len() > 128 || !ok_first || !ok_rest {
        return Err(format!(
            "newTag {tag:?} is not a valid tag (1-128 of [A-Za-z0-9_.-], not starting with '.' or '-')"
        ));
    }
    Ok(())
}

fn check_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!("digest {digest:?} must look like sha256:<64 hex digits>"));
    };
    let hex_ok = !hex.is_empty()
        && hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    let alg_ok = !algorithm.is_empty()
        && algorithm
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let len_ok = algorithm != "sha256" || hex.len() == 64;
    if !hex_ok || !alg_ok || !len_ok || hex.len() < 32 {
        return Err(format!(
            "digest {digest:?} must look like sha256:<64 lowercase hex digits>"
        ));
    }
    Ok(())
}

impl Config {
    /// Parses and checks a configuration.
    pub fn parse(config: &Value) -> Result<Self, PluginError> {
        if config.is_null() {
            return Err(PluginError::invalid_config(
                "missing config: expected {\"images\": [{\"name\": ..., \"newName\"/\"newTag\"/\"digest\": ...}]}",
            ));
        }
        let config: Self = parse_config(config)?;
        if config.images.is_empty() {
            return Err(PluginError::invalid_config(
                "`images` must list at least one image",
            ));
        }
        let mut seen = Vec::new();
        for (i, rule) in config.images.iter().enumerate() {
            let bad = |e: String| PluginError::InvalidConfig(format!("images[{i}]: {e}"));
            check_name("name", &rule.name).map_err(bad)?;
            if rule.new_name.is_none() && rule.new_tag.is_none() && rule.digest.is_none() {
                return Err(bad(format!(
                    "image {:?} needs at least one of newName, newTag, digest",
                    rule.name
                )));
            }
            if let Some(n) = &rule.new_name {
                check_name("newName", n).map_err(bad)?;
            }
            if let Some(t) = &rule.new_tag {
                check_tag(t).map_err(bad)?;
            }
            if let Some(d) = &rule.digest {
                check_digest(d).map_err(bad)?;
            }
            let normalized = ImageRef {
                name: rule.name.clone(),
                tag: None,
                digest: None,
            }
            .normalized_name();
            if seen.contains(&normalized) {
                return Err(bad(format!("image {:?} is listed more than once", rule.name)));
            }
            seen.push(normalized);
        }
        Ok(config)
    }

    fn rule_for(&self, image: &ImageRef) -> Option<&ImageRule> {
        let normalized = image.normalized_name();
        self.images.iter().find(|r| {
            r.name == image.name
                || ImageRef {
                    name: r.name.clone(),
                    tag: None,
                    digest: None,
                }
                .normalized_name()
                    == normalized
        })
    }
}

/// The JSON Schema of [`Config`].
pub fn config_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "set-images config",
        "type": "object",
        "properties": {
            "images": {
                "type": "array", "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"description": "Image name to match, without tag or digest.", "type": "string", "minLength": 1},
                        "newName": {"description": "Replacement image name.", "type": "string", "minLength": 1},
                        "newTag": {"description": "Replacement tag; drops any digest.", "type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"},
                        "digest": {"description": "Digest to pin; drops any tag and wins over newTag.", "type": "string", "pattern": "^[a-z0-9]+:[a-f0-9]{32,}$"}
                    },
                    "required": ["name"],
                    "anyOf": [{"required": ["newName"]}, {"required": ["newTag"]}, {"required": ["digest"]}],
                    "additionalProperties": false
                }
            }
        },
        "required": ["images"],
        "additionalProperties": false
    })
}

/// Rewrites one image reference according to a rule.
pub fn rewrite(image: &ImageRef, rule: &ImageRule) -> ImageRef {
    let mut out = image.clone();
    if let Some(name) = &rule.new_name {
        out.name = name.clone();
    }
    if let Some(digest) = &rule.digest {
        out.tag = None;
        out.digest = Some(digest.clone());
    } else if let Some(tag) = &rule.new_tag {
        out.tag = Some(tag.clone());
        out.digest = None;
    }
    out
}

/// The `set-images` transformer.
pub struct SetImages;

impl Transformer for SetImages {
    fn metadata() -> Metadata {
        Metadata::new("set-images", env!("CARGO_PKG_VERSION"))
            .kinds(kitsync_plugin::workload::WORKLOAD_KINDS.iter().copied())
            .config_schema(config_schema())
    }

    fn validate_config(config: &Value) -> Result<(), PluginError> {
        Config::parse(config).map(drop)
    }

    fn transform(config: &Value, mut objects: Vec<Object>) -> Result<TransformOutput, PluginError> {
        let config = Config::parse(config)?;
        let mut diagnostics = Vec::new();
        let mut rewritten = 0usize;
        for object in &mut objects {
            // Read first, change only what needs it: an object left alone goes back to the
            // host as it came, unparsed.
            let mut changes = Vec::new();
            for container in object.containers() {
                let Some(image) = container.image() else { continue };
                match ImageRef::parse(image) {
                    Ok(parsed) => {
                        if let Some(rule) = config.rule_for(&parsed) {
                            let new = rewrite(&parsed, rule).to_string();
                            if image != new {
                                changes.push((container.pointer_to("image"), new));
                            }
                        }
                    }
                    Err(e) => diagnostics.push(
                        Diagnostic::warning(RULE_INVALID_IMAGE, format!("left unchanged: {e}"))
                            .on(object)
                            .at(container.pointer_to("image")),
                    ),
                }
            }
            for (pointer, new) in changes {
                if let Some(image) = object.value_mut().pointer_mut(pointer.as_str()) {
                    *image = Value::String(new);
                    rewritten += 1;
                }
            }
        }
        kitsync_plugin::debug!("rewrote {rewritten} container images");
        Ok(TransformOutput::new(objects).with_diagnostics(diagnostics))
    }
}

kitsync_plugin::export_transformer!(SetImages);

#[cfg(test)]
mod tests {
    use super::*;

    // Transformations are fixture cases in tests/ (`kitsync plugin test`); what stays here
    // is how configs are refused.

    #[test]
    fn bad_configs() {
        for (config, needle) in [
            (json!(null), "missing config"),
            (json!({"images": []}), "at least one"),
            (json!({"images": [{"name": "nginx"}]}), "needs at least one"),
            (
                json!({"images": [{"name": "nginx:1", "newTag": "2"}]}),
                "without tag",
            ),
            (
                json!({"images": [{"name": "nginx", "new_tag": "2"}]}),
                "unknown field `new_tag`",
            ),
            (
                json!({"images": [{"name": "nginx", "newTag": 2}]}),
                "invalid type",
            ),
            (
                json!({"images": [{"name": "nginx", "newTag": "-x"}]}),
                "not a valid tag",
            ),
            (
                json!({"images": [{"name": "nginx", "digest": "sha256:abc"}]}),
                "digest",
            ),
            (
                json!({"images": [{"name": "nginx", "newTag": "1"}, {"name": "docker.io/library/nginx", "newTag": "2"}]}),
                "more than once",
            ),
        ] {
            let err = SetImages::validate_config(&config).unwrap_err();
            assert!(matches!(err, PluginError::InvalidConfig(_)), "{err:?}");
            assert!(err.message().contains(needle), "{config}: {err}");
        }
    }
}
