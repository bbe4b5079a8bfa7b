//! Kubernetes objects as kitsync moves them between stages: identity, origin and JSON body.

use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// Identity of a Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// `apps/v1`, `v1`, ...
    pub api_version: String,
    /// `Deployment`, `Service`, ...
    pub kind: String,
    /// Absent for cluster-scoped objects and objects that take the kit's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

/// Which identity field an object lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingField {
    /// No string `apiVersion`.
    ApiVersion,
    /// No string `kind`.
    Kind,
    /// No string `metadata.name`.
    Name,
}

impl fmt::Display for MissingField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MissingField::ApiVersion => "apiVersion",
            MissingField::Kind => "kind",
            MissingField::Name => "metadata.name",
        })
    }
}

fn non_empty_str(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Compact JSON text of `value` (keys in byte order, no spaces): what plugins receive and
/// what an applied object's hash is taken over. Serialized into a byte buffer directly, since
/// `Value`'s `Display` goes through a formatter for every token (measurably slower per render).
pub fn to_json(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| value.to_string())
}

impl ObjectRef {
    /// Reads identity from an object body; names the first missing field.
    pub fn from_value(value: &Value) -> Result<Self, MissingField> {
        let api_version = non_empty_str(value.get("apiVersion")).ok_or(MissingField::ApiVersion)?;
        let kind = non_empty_str(value.get("kind")).ok_or(MissingField::Kind)?;
        let metadata = value.get("metadata");
        let name = non_empty_str(metadata.and_then(|m| m.get("name"))).ok_or(MissingField::Name)?;
        let namespace = non_empty_str(metadata.and_then(|m| m.get("namespace"))).map(str::to_owned);
        Ok(ObjectRef {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace,
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{} {}/{}", self.api_version, self.kind, ns, self.name),
            None => write!(f, "{}/{} {}", self.api_version, self.kind, self.name),
        }
    }
}

/// Where an object was read from: repository-relative file and document index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Origin {
    /// Repository-relative path of the manifest file.
    pub file: String,
    /// Zero-based index of the YAML document in that file.
    pub document: u32,
    /// One-based line where the document (or the List item) starts, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// For an item of a `kind: List` document, its JSON pointer in the document
    /// (`/items/3`): field paths of the item are located below it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.file, line),
            None => write!(f, "{} (document {})", self.file, self.document),
        }
    }
}

/// One object of a kit.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// Identity, always consistent with `value`.
    pub id: ObjectRef,
    /// Where it came from; `None` for objects a transformer created.
    pub origin: Option<Origin>,
    /// The whole object.
    pub value: Value,
}

impl Object {
    /// Builds an object from its body, deriving identity from it.
    pub fn new(value: Value, origin: Option<Origin>) -> Result<Self, MissingField> {
        Ok(Object {
            id: ObjectRef::from_value(&value)?,
            origin,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_is_read_from_the_body() {
        let v = json!({"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": "vision", "namespace": "manufracture"}});
        let id = ObjectRef::from_value(&v).expect("identity");
        assert_eq!(id.to_string(), "v1/Service manufracture/vision");
    }

    #[test]
    fn missing_name_is_named() {
        let v = json!({"apiVersion": "v1", "kind": "Service", "metadata": {}});
        assert_eq!(ObjectRef::from_value(&v), Err(MissingField::Name));
        let v = json!({"kind": "Service"});
        assert_eq!(ObjectRef::from_value(&v), Err(MissingField::ApiVersion));
    }
}
