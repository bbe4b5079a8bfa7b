//! Friendly Rust types mirroring the WIT records, plus conversions.

use std::fmt;

use serde_json::Value;

use crate::Object;
use crate::bindings::types as wit;

/// Identity of a Kubernetes object: apiVersion, kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// `apiVersion`, e.g. `apps/v1`.
    pub api_version: String,
    /// `kind`, e.g. `Deployment`.
    pub kind: String,
    /// `metadata.namespace`; `None` for cluster-scoped objects and for
    /// namespaced objects that take the kit's namespace.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectRef {
    /// Reads the identity out of an object's JSON value.
    ///
    /// Fails with [`PluginError::InvalidInput`] when `apiVersion`, `kind` or
    /// `metadata.name` is missing, empty or not a string, or when
    /// `metadata.namespace` is present but not a string.
    pub fn from_value(value: &Value) -> Result<Self, PluginError> {
        fn field<'a>(value: &'a Value, pointer: &str, what: &str) -> Result<&'a str, PluginError> {
            match value.pointer(pointer) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s),
                Some(Value::String(_)) => {
                    Err(PluginError::InvalidInput(format!("object has an empty {what}")))
                }
                Some(other) => Err(PluginError::InvalidInput(format!(
                    "object's {what} is not a string (found {})",
                    json_type(other)
                ))),
                None => Err(PluginError::InvalidInput(format!("object has no {what}"))),
            }
        }
        if !value.is_object() {
            return Err(PluginError::InvalidInput(format!(
                "object is not a JSON object (found {})",
                json_type(value)
            )));
        }
        let api_version = field(value, "/apiVersion", "apiVersion")?.to_owned();
        let kind = field(value, "/kind", "kind")?.to_owned();
        let name = field(value, "/metadata/name", "metadata.name")?.to_owned();
        let namespace = match value.pointer("/metadata/namespace") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(PluginError::InvalidInput(format!(
                    "object's metadata.namespace is not a string (found {})",
                    json_type(other)
                )));
            }
        };
        Ok(Self {
            api_version,
            kind,
            namespace,
            name,
        })
    }

    /// The API group: `apps` for `apps/v1`, empty for the core group (`v1`).
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(group, _)| group)
    }

    /// Whether this object matches a kind selector: either a bare kind
    /// (`Deployment`) or `apiVersion/kind` (`apps/v1/Deployment`, `v1/Service`).
    /// Kind comparison is exact (case-sensitive), as in Kubernetes.
    pub fn matches_kind(&self, selector: &str) -> bool {
        match selector.rsplit_once('/') {
            None => selector == self.kind,
            Some((api_version, kind)) => api_version == self.api_version && kind == self.kind,
        }
    }
}

impl fmt::Display for ObjectRef {
    /// `Deployment apps/v1 shop/web` (or `Namespace v1 shop` without namespace).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.kind, self.api_version)?;
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Where an object came from in the repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Repository-relative path of the manifest file.
    pub file: String,
    /// Zero-based index of the YAML document within that file.
    pub document: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.file, self.document)
    }
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Blocks the kit.
    Error,
    /// Reported, does not block.
    Warning,
    /// Informational.
    Info,
}

/// A finding about the kit's objects: a policy violation, not a malfunction.
///
/// ```
/// # use kitsync_plugin::{Diagnostic, Object, Severity};
/// # let obj = Object::new(serde_json::json!({"apiVersion": "v1", "kind": "Service",
/// #     "metadata": {"name": "web"}})).unwrap();
/// let d = Diagnostic::error("port-range/out-of-range", "port 80 is below 1024")
///     .on(&obj)
///     .at("/spec/ports/0/port");
/// assert_eq!(d.severity, Severity::Error);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// How serious it is.
    pub severity: Severity,
    /// Stable rule code, `<plugin>/<rule>`.
    pub rule: String,
    /// Human-readable message.
    pub message: String,
    /// The object the finding is about, if any.
    pub object: Option<ObjectRef>,
    /// RFC 6901 JSON pointer into that object.
    pub path: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with the given severity, not attached to any object.
    pub fn new(severity: Severity, rule: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity,
            rule: rule.into(),
            message: message.into(),
            object: None,
            path: None,
        }
    }

    /// An error diagnostic.
    pub fn error(rule: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, rule, message)
    }

    /// A warning diagnostic.
    pub fn warning(rule: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, rule, message)
    }

    /// An info diagnostic.
    pub fn info(rule: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Severity::Info, rule, message)
    }

    /// Attaches the diagnostic to an object.
    #[must_use]
    pub fn on(mut self, object: &Object) -> Self {
        self.object = Some(object.id.clone());
        self
    }

    /// Attaches the diagnostic to an object identity.
    #[must_use]
    pub fn on_ref(mut self, id: ObjectRef) -> Self {
        self.object = Some(id);
        self
    }

    /// Sets the RFC 6901 JSON pointer (build one with [`crate::Pointer`]).
    #[must_use]
    pub fn at(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// Plugin name, e.g. `port-range`.
    pub name: String,
    /// Plugin version, usually `env!("CARGO_PKG_VERSION")`.
    pub version: String,
    /// Kinds the plugin looks at (`Deployment`, `apps/v1/Deployment`); empty
    /// means every kind.
    pub kinds: Vec<String>,
    /// JSON Schema of the plugin's configuration.
    pub config_schema: Option<Value>,
}

impl Metadata {
    /// Metadata with a name and version, every kind, no schema.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            kinds: Vec::new(),
            config_schema: None,
        }
    }

    /// Sets the kinds the plugin looks at.
    #[must_use]
    pub fn kinds<I, S>(mut self, kinds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.kinds = kinds.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the JSON Schema of the configuration.
    #[must_use]
    pub fn config_schema(mut self, schema: Value) -> Self {
        self.config_schema = Some(schema);
        self
    }
}

/// A malfunction: the plugin could not do its job. Never a policy finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// The configuration is unusable; the message says why.
    InvalidConfig(String),
    /// An input object could not be understood.
    InvalidInput(String),
    /// Anything else that went wrong inside the plugin.
    Internal(String),
}

impl PluginError {
    /// The message without the variant.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidConfig(m) | Self::InvalidInput(m) | Self::Internal(m) => m,
        }
    }

    /// Shorthand for [`PluginError::InvalidConfig`].
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::InvalidConfig(message.into())
    }

    /// Shorthand for [`PluginError::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::InvalidInput(message.into())
    }

    /// Shorthand for [`PluginError::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidConfig(m) => write!(f, "invalid config: {m}"),
            Self::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Self::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for PluginError {}

/// The result of a transformation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransformOutput {
    /// The complete new object list (not a delta).
    pub objects: Vec<Object>,
    /// Findings made while transforming.
    pub diagnostics: Vec<Diagnostic>,
}

impl TransformOutput {
    /// Output with the given objects and no diagnostics.
    pub fn new(objects: Vec<Object>) -> Self {
        Self {
            objects,
            diagnostics: Vec::new(),
        }
    }

    /// Adds diagnostics (builder style).
    #[must_use]
    pub fn with_diagnostics(mut self, diagnostics: Vec<Diagnostic>) -> Self {
        self.diagnostics = diagnostics;
        self
    }
}

/// Name of a JSON value's type, for error messages (`string`, `array`, ...).
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// ---- conversions to and from the WIT records ----

impl From<wit::ObjectRef> for ObjectRef {
    fn from(r: wit::ObjectRef) -> Self {
        Self {
            api_version: r.api_version,
            kind: r.kind,
            namespace: r.namespace,
            name: r.name,
        }
    }
}

impl From<ObjectRef> for wit::ObjectRef {
    fn from(r: ObjectRef) -> Self {
        Self {
            api_version: r.api_version,
            kind: r.kind,
            namespace: r.namespace,
            name: r.name,
        }
    }
}

impl From<wit::Origin> for Origin {
    fn from(o: wit::Origin) -> Self {
        Self {
            file: o.file,
            document: o.document,
        }
    }
}

impl From<Origin> for wit::Origin {
    fn from(o: Origin) -> Self {
        Self {
            file: o.file,
            document: o.document,
        }
    }
}

impl From<Severity> for wit::Severity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Error => Self::Error,
            Severity::Warning => Self::Warning,
            Severity::Info => Self::Info,
        }
    }
}

impl From<wit::Severity> for Severity {
    fn from(s: wit::Severity) -> Self {
        match s {
            wit::Severity::Error => Self::Error,
            wit::Severity::Warning => Self::Warning,
            wit::Severity::Info => Self::Info,
        }
    }
}

impl From<Diagnostic> for wit::Diagnostic {
    fn from(d: Diagnostic) -> Self {
        Self {
            severity: d.severity.into(),
            rule: d.rule,
            message: d.message,
            object: d.object.map(Into::into),
            path: d.path,
        }
    }
}

impl From<wit::Diagnostic> for Diagnostic {
    fn from(d: wit::Diagnostic) -> Self {
        Self {
            severity: d.severity.into(),
            rule: d.rule,
            message: d.message,
            object: d.object.map(Into::into),
            path: d.path,
        }
    }
}

impl From<PluginError> for wit::PluginError {
    fn from(e: PluginError) -> Self {
        match e {
            PluginError::InvalidConfig(m) => Self::InvalidConfig(m),
            PluginError::InvalidInput(m) => Self::InvalidInput(m),
            PluginError::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<wit::PluginError> for PluginError {
    fn from(e: wit::PluginError) -> Self {
        match e {
            wit::PluginError::InvalidConfig(m) => Self::InvalidConfig(m),
            wit::PluginError::InvalidInput(m) => Self::InvalidInput(m),
            wit::PluginError::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<Metadata> for wit::Metadata {
    fn from(m: Metadata) -> Self {
        Self {
            name: m.name,
            version: m.version,
            kinds: m.kinds,
            config_schema: m.config_schema.map(|s| s.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_from_json() {
        let id = ObjectRef::from_value(&json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"}}))
        .unwrap();
        assert_eq!(id.to_string(), "Deployment apps/v1 shop/web");
        assert_eq!(id.group(), "apps");
        assert!(id.matches_kind("Deployment") && id.matches_kind("apps/v1/Deployment"));
        assert!(!id.matches_kind("v1/Deployment") && !id.matches_kind("deployment"));
        let ns = ObjectRef::from_value(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "namespace": ""}}),
        )
        .unwrap();
        assert_eq!((ns.namespace.as_deref(), ns.group()), (None, ""));
        for (bad, needle) in [
            (json!([]), "not a JSON object"),
            (json!({"kind": "X", "metadata": {"name": "n"}}), "no apiVersion"),
            (json!({"apiVersion": "v1", "metadata": {"name": "n"}}), "no kind"),
            (json!({"apiVersion": "v1", "kind": "X"}), "no metadata.name"),
            (
                json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": ""}}),
                "empty metadata.name",
            ),
            (
                json!({"apiVersion": "v1", "kind": 3, "metadata": {"name": "n"}}),
                "kind is not a string",
            ),
            (
                json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "n", "namespace": 1}}),
                "namespace is not a string",
            ),
        ] {
            let err = ObjectRef::from_value(&bad).unwrap_err();
            assert!(matches!(err, PluginError::InvalidInput(_)));
            assert!(err.message().contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn diagnostics_builders() {
        let obj = Object::new(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}))
            .unwrap()
            .with_origin("svc.yaml", 1);
        assert_eq!(obj.describe(), "Service v1 web (svc.yaml#1)");
        let d = Diagnostic::info("a/b", "m")
            .on(&obj)
            .at(crate::Pointer::root().key("spec"));
        assert_eq!(d.severity, Severity::Info);
        assert_eq!(d.object.as_ref().map(|o| o.name.as_str()), Some("web"));
        assert_eq!(d.path.as_deref(), Some("/spec"));
        let w: wit::Diagnostic = Diagnostic::warning("a/b", "m").into();
        assert!(matches!(w.severity, wit::Severity::Warning));
        assert_eq!(PluginError::internal("x").to_string(), "internal error: x");
        assert!(obj.matches_any_kind::<&str>(&[]) && obj.matches_any_kind(&["v1/Service"]));
    }
}
