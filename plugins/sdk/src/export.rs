//! The plugin traits and the glue between them and the WIT exports.
//!
//! The functions here are what the exported component functions call; they
//! are public so that tests can exercise a plugin exactly as the host would
//! (JSON text in, WIT records out) without a WebAssembly runtime.

use std::marker::PhantomData;

use serde_json::Value;

use crate::bindings::types as wit;
use crate::config::parse_config_text;
use crate::{Diagnostic, Metadata, Object, PluginError, TransformOutput};

/// A plugin that checks a kit's objects and reports findings.
///
/// Export it with [`export_validator!`](crate::export_validator).
pub trait Validator {
    /// Describes the plugin (name, version, kinds, config schema).
    fn metadata() -> Metadata;

    /// Checks a configuration before it is used. `config` is
    /// [`Value::Null`] when the kit gives none. The SDK also calls this
    /// before every [`Validator::validate`].
    fn validate_config(config: &Value) -> Result<(), PluginError>;

    /// Returns the findings for one kit. Policy violations are diagnostics;
    /// `Err` is reserved for malfunctions.
    fn validate(config: &Value, objects: &[Object]) -> Result<Vec<Diagnostic>, PluginError>;
}

/// A plugin that rewrites a kit's objects.
///
/// Export it with [`export_transformer!`](crate::export_transformer).
pub trait Transformer {
    /// Describes the plugin (name, version, kinds, config schema).
    fn metadata() -> Metadata;

    /// Checks a configuration before it is used. `config` is
    /// [`Value::Null`] when the kit gives none. The SDK also calls this
    /// before every [`Transformer::transform`].
    fn validate_config(config: &Value) -> Result<(), PluginError>;

    /// Returns the complete new object list (not a delta) for one kit.
    ///
    /// Keep [`Object::origin`] on objects you modify and leave it `None` on
    /// objects you create. [`Object::id`] of returned objects is ignored: the
    /// SDK recomputes it from the JSON (apiVersion, kind, metadata.namespace,
    /// metadata.name), and an object without a usable identity is an error.
    fn transform(config: &Value, objects: Vec<Object>) -> Result<TransformOutput, PluginError>;
}

/// The host's objects, unparsed: each is read as far as the plugin looks (see [`Object`]).
fn receive(objects: Vec<wit::Object>) -> Vec<Object> {
    crate::object::reset_input_error();
    objects.into_iter().map(Object::from_wit).collect()
}

/// An object whose text was unreadable when the plugin read it makes the whole call
/// `invalid-input`, whatever the plugin made of the empty value it was given instead.
fn unless_bad_input<T>(result: T) -> Result<T, wit::PluginError> {
    match crate::object::take_input_error() {
        Some(message) => Err(wit::PluginError::InvalidInput(message)),
        None => Ok(result),
    }
}

/// `metadata` export of a validator.
pub fn validator_metadata<T: Validator>() -> wit::Metadata {
    T::metadata().into()
}

/// `validate-config` export of a validator.
pub fn validator_validate_config<T: Validator>(config: &str) -> Result<(), wit::PluginError> {
    let config = parse_config_text(config)?;
    Ok(T::validate_config(&config)?)
}

/// `validate` export of a validator: parses config, calls
/// [`Validator::validate`] and converts the diagnostics.
pub fn validate<T: Validator>(
    config: &str,
    objects: Vec<wit::Object>,
) -> Result<Vec<wit::Diagnostic>, wit::PluginError> {
    let config = parse_config_text(config)?;
    T::validate_config(&config)?;
    let objects = receive(objects);
    let diagnostics = unless_bad_input(T::validate(&config, &objects))??;
    Ok(diagnostics.into_iter().map(Into::into).collect())
}

/// `metadata` export of a transformer.
pub fn transformer_metadata<T: Transformer>() -> wit::Metadata {
    T::metadata().into()
}

/// `validate-config` export of a transformer.
pub fn transformer_validate_config<T: Transformer>(config: &str) -> Result<(), wit::PluginError> {
    let config = parse_config_text(config)?;
    Ok(T::validate_config(&config)?)
}

/// `transform` export of a transformer: parses config, calls
/// [`Transformer::transform`], and returns each object unchanged as the host
/// sent it or, when changed, re-serialized; the identity of each is read
/// again from its JSON.
pub fn transform<T: Transformer>(
    config: &str,
    objects: Vec<wit::Object>,
) -> Result<wit::TransformOutput, wit::PluginError> {
    let config = parse_config_text(config)?;
    T::validate_config(&config)?;
    let objects = receive(objects);
    let output = unless_bad_input(T::transform(&config, objects))??;
    let objects = output
        .objects
        .into_iter()
        .enumerate()
        .map(|(i, o)| o.into_wit(i))
        .collect::<Result<Vec<_>, _>>();
    let objects = unless_bad_input(objects)??;
    Ok(wit::TransformOutput {
        objects,
        diagnostics: output.diagnostics.into_iter().map(Into::into).collect(),
    })
}

/// Implements the generated validator `Guest` trait for a [`Validator`].
/// Used by [`export_validator!`](crate::export_validator).
#[doc(hidden)]
pub struct ValidatorExport<T>(PhantomData<T>);

impl<T: Validator> crate::bindings::validator::Guest for ValidatorExport<T> {
    fn metadata() -> wit::Metadata {
        validator_metadata::<T>()
    }

    fn validate_config(config: String) -> Result<(), wit::PluginError> {
        validator_validate_config::<T>(&config)
    }

    fn validate(config: String, objects: Vec<wit::Object>) -> Result<Vec<wit::Diagnostic>, wit::PluginError> {
        validate::<T>(&config, objects)
    }
}

/// Implements the generated transformer `Guest` trait for a [`Transformer`].
/// Used by [`export_transformer!`](crate::export_transformer).
#[doc(hidden)]
pub struct TransformerExport<T>(PhantomData<T>);

impl<T: Transformer> crate::bindings::transformer::Guest for TransformerExport<T> {
    fn metadata() -> wit::Metadata {
        transformer_metadata::<T>()
    }

    fn validate_config(config: String) -> Result<(), wit::PluginError> {
        transformer_validate_config::<T>(&config)
    }

    fn transform(
        config: String,
        objects: Vec<wit::Object>,
    ) -> Result<wit::TransformOutput, wit::PluginError> {
        transform::<T>(&config, objects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Severity;
    use serde_json::json;

    struct Renamer;

    impl Transformer for Renamer {
        fn metadata() -> Metadata {
            Metadata::new("renamer", "1.0.0")
                .kinds(["ConfigMap"])
                .config_schema(json!({"type": "object"}))
        }

        fn validate_config(config: &Value) -> Result<(), PluginError> {
            match config {
                Value::Null => Ok(()),
                Value::Object(o) if o.get("suffix").is_some_and(Value::is_string) => Ok(()),
                _ => Err(PluginError::invalid_config("expected {\"suffix\": \"...\"}")),
            }
        }

        fn transform(config: &Value, mut objects: Vec<Object>) -> Result<TransformOutput, PluginError> {
            let suffix = config.get("suffix").and_then(Value::as_str).unwrap_or("-x");
            for o in &mut objects {
                let name = format!("{}{suffix}", o.name());
                o.value_mut()["metadata"]["name"] = Value::String(name);
                if suffix == "!drop" {
                    o.value_mut()["metadata"]["name"] = json!({"oops": 1});
                }
                // `id` deliberately left stale: the SDK must fix it.
            }
            let created =
                Object::new(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "new"}}))?;
            objects.push(created);
            Ok(TransformOutput::new(objects).with_diagnostics(vec![
                Diagnostic::warning("renamer/renamed", "renamed").at("/metadata/name"),
            ]))
        }
    }

    fn raw(name: &str, json: &str) -> wit::Object {
        wit::Object {
            id: wit::ObjectRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: None,
                name: name.into(),
            },
            origin: Some(wit::Origin {
                file: "cm.yaml".into(),
                document: 2,
            }),
            json: json.into(),
        }
    }

    #[test]
    fn transform_recomputes_identity_and_keeps_origin() {
        let input = raw(
            "a",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"ns"}}"#,
        );
        let out = transform::<Renamer>(r#"{"suffix":"-b"}"#, vec![input]).unwrap();
        assert_eq!(out.objects.len(), 2);
        let o = &out.objects[0];
        assert_eq!(o.id.name, "a-b");
        assert_eq!(o.id.namespace.as_deref(), Some("ns"));
        assert_eq!(
            o.origin.as_ref().map(|o| (o.file.as_str(), o.document)),
            Some(("cm.yaml", 2))
        );
        let v: Value = serde_json::from_str(&o.json).unwrap();
        assert_eq!(v["metadata"]["name"], "a-b");
        assert_eq!(out.objects[1].id.kind, "Namespace");
        assert!(out.objects[1].origin.is_none());
        assert_eq!(out.diagnostics.len(), 1);
        assert_eq!(Severity::from(out.diagnostics[0].severity), Severity::Warning);
    }

    #[test]
    fn transform_errors() {
        let good = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}"#;
        let err = transform::<Renamer>("[1]", vec![raw("a", good)]).unwrap_err();
        assert!(matches!(err, wit::PluginError::InvalidConfig(_)), "{err:?}");
        let err = transform::<Renamer>("{bad", vec![raw("a", good)]).unwrap_err();
        assert!(
            matches!(err, wit::PluginError::InvalidConfig(ref m) if m.contains("not valid JSON")),
            "{err:?}"
        );
        let err = transform::<Renamer>("", vec![raw("a", "[1,2]")]).unwrap_err();
        assert!(
            matches!(err, wit::PluginError::InvalidInput(ref m) if m.contains("not a JSON object")),
            "{err:?}"
        );
        // An output object that loses its name is a plugin malfunction.
        let err = transform::<Renamer>(r#"{"suffix":"!drop"}"#, vec![raw("a", good)]).unwrap_err();
        assert!(
            matches!(err, wit::PluginError::Internal(ref m) if m.contains("without a usable identity")),
            "{err:?}"
        );
    }

    #[test]
    fn metadata_and_config_exports() {
        let m = transformer_metadata::<Renamer>();
        assert_eq!((m.name.as_str(), m.version.as_str()), ("renamer", "1.0.0"));
        assert_eq!(m.kinds, vec!["ConfigMap".to_owned()]);
        assert_eq!(m.config_schema.as_deref(), Some(r#"{"type":"object"}"#));
        assert!(transformer_validate_config::<Renamer>("").is_ok());
        assert!(transformer_validate_config::<Renamer>("null").is_ok());
        assert!(transformer_validate_config::<Renamer>(r#"{"suffix":1}"#).is_err());
    }
}
