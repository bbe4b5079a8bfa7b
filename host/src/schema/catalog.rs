//! The schemas of Kubernetes' built-in kinds, for each version shipped in the binary.
//!
//! `host/schemas/kubernetes-<minor>.json.gz` are made by `host/schemas/generate.sh` from the
//! OpenAPI document (`api/openapi-spec/swagger.json`) of the `k8s.io/kubernetes` Go module at
//! that version (the one the tests' control plane is built from, for the newest): [`reduce`]
//! keeps what validation reads, drops descriptions, and marks the fields whose text the API
//! server checks. Each is decompressed and indexed once per process, on first use.

use super::tree::{Dialect, Tree};
use serde_json::{Map, Value, json};
use std::sync::{Arc, OnceLock};

/// A Kubernetes version whose schemas are in the binary.
pub struct Shipped {
    /// `major.minor`, e.g. `1.36`.
    pub version: &'static str,
    gzip: &'static [u8],
}

/// Every version shipped, oldest first.
pub const SHIPPED: &[Shipped] = &[
    Shipped {
        version: "1.34",
        gzip: include_bytes!("../../schemas/kubernetes-1.34.json.gz"),
    },
    Shipped {
        version: "1.35",
        gzip: include_bytes!("../../schemas/kubernetes-1.35.json.gz"),
    },
    Shipped {
        version: "1.36",
        gzip: include_bytes!("../../schemas/kubernetes-1.36.json.gz"),
    },
];

/// The version used when neither `--kubernetes-version` nor the platform file names one: the
/// version of the control plane the tests run against.
pub const DEFAULT_VERSION: &str = "1.36";

/// Total compressed bytes of the shipped schemas.
pub fn shipped_bytes() -> usize {
    SHIPPED.iter().map(|s| s.gzip.len()).sum()
}

/// The shipped version `wanted` names (`1.35`, `v1.35`, `1.35.4`: the minor version counts).
///
/// # Errors
/// No shipped version matches; the message lists those shipped.
pub fn find(wanted: &str) -> Result<&'static Shipped, String> {
    let trimmed = wanted.trim().trim_start_matches('v');
    let minor: String = trimmed.split('.').take(2).collect::<Vec<_>>().join(".");
    SHIPPED.iter().find(|s| s.version == minor).ok_or_else(|| {
        let all: Vec<&str> = SHIPPED.iter().map(|s| s.version).collect();
        format!(
            "no schemas for Kubernetes {wanted}: this kitsync ships {}",
            all.join(", ")
        )
    })
}

impl std::fmt::Debug for Shipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Kubernetes {} ({} bytes compressed)",
            self.version,
            self.gzip.len()
        )
    }
}

impl Shipped {
    /// The indexed schemas (built on first use, then shared).
    ///
    /// # Errors
    /// The embedded file does not decompress or parse (a broken build).
    pub(super) fn tree(&'static self) -> Result<Arc<Tree>, String> {
        static LOADED: [OnceLock<Result<Arc<Tree>, String>>; 3] =
            [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let index = SHIPPED
            .iter()
            .position(|s| std::ptr::eq(s, self))
            .ok_or("not a shipped version")?;
        let slot = LOADED.get(index).ok_or("not a shipped version")?;
        slot.get_or_init(|| load(self.gzip).map(Arc::new)).clone()
    }

    /// The reduced catalog as JSON (for the reproducibility test).
    ///
    /// # Errors
    /// As [`Shipped::tree`].
    pub fn catalog(&self) -> Result<Value, String> {
        decompress(self.gzip)
    }
}

fn decompress(gzip: &[u8]) -> Result<Value, String> {
    use std::io::Read;
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(gzip)
        .read_to_end(&mut text)
        .map_err(|e| format!("embedded schemas: {e}"))?;
    serde_json::from_slice(&text).map_err(|e| format!("embedded schemas: {e}"))
}

fn load(gzip: &[u8]) -> Result<Tree, String> {
    let catalog = decompress(gzip)?;
    let mut tree = Tree::default();
    let mut pending = Vec::new();
    if let Some(definitions) = catalog.get("definitions").and_then(Value::as_object) {
        for (name, schema) in definitions {
            let id = tree.add(schema, Dialect::BuiltIn, &mut pending);
            tree.define(name, id);
        }
    }
    tree.resolve(pending);
    for entry in catalog
        .get("kinds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(api_version), Some(kind), Some(definition)) = (
            entry.get(0).and_then(Value::as_str),
            entry.get(1).and_then(Value::as_str),
            entry.get(2).and_then(Value::as_str),
        ) && let Some(&id) = tree.definitions.get(definition)
        {
            tree.kinds.insert((api_version.to_owned(), kind.to_owned()), id);
        }
    }
    Ok(tree)
}

/// Fields whose text the API server checks beyond their type: (definition, property, mark).
const SYNTAX: &[(&str, &str, &str)] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "labels",
        "label-map",
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "annotations",
        "annotation-map",
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
        "matchLabels",
        "label-map",
    ),
    ("io.k8s.api.core.v1.ServiceSpec", "selector", "label-map"),
    (
        "io.k8s.api.core.v1.ReplicationControllerSpec",
        "selector",
        "label-map",
    ),
    ("io.k8s.api.core.v1.ContainerPort", "name", "port-name"),
    ("io.k8s.api.core.v1.ServicePort", "name", "dns-label"),
    ("io.k8s.api.core.v1.ServicePort", "targetPort", "port-name"),
    ("io.k8s.api.core.v1.HTTPGetAction", "port", "port-name"),
    ("io.k8s.api.core.v1.TCPSocketAction", "port", "port-name"),
];

/// Keywords kept from Kubernetes' OpenAPI; everything else (descriptions, patch strategies,
/// defaults) does not change what the server accepts.
const KEPT: &[&str] = &[
    "type",
    "format",
    "required",
    "enum",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
];

/// Reduces Kubernetes' `swagger.json` (of the module at `version`, e.g. `v1.36.3`) to the
/// catalog embedded in the binary:
/// `{"kubernetes": VERSION, "definitions": {NAME: SCHEMA}, "kinds": [[apiVersion, kind, NAME]]}`.
///
/// # Errors
/// The document has no `definitions`.
pub fn reduce(swagger: &Value, version: &str) -> Result<Value, String> {
    let definitions = swagger
        .get("definitions")
        .and_then(Value::as_object)
        .ok_or("the OpenAPI document has no definitions")?;
    let mut reduced = Map::new();
    let mut kinds = Vec::new();
    for (name, schema) in definitions {
        let node = match name.as_str() {
            "io.k8s.apimachinery.pkg.api.resource.Quantity" => json!({"x-kitsync-format": "quantity"}),
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => json!({"x-kubernetes-int-or-string": true}),
            _ => {
                let mut node = reduce_node(schema);
                for (definition, property, mark) in SYNTAX {
                    if definition == name
                        && let Some(field) = node.pointer_mut(&format!("/properties/{property}"))
                        && let Some(field) = field.as_object_mut()
                    {
                        field.insert("x-kitsync-syntax".into(), Value::from(*mark));
                    }
                }
                node
            }
        };
        for gvk in schema
            .get("x-kubernetes-group-version-kind")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(group), Some(version), Some(kind)) = (
                gvk.get("group").and_then(Value::as_str),
                gvk.get("version").and_then(Value::as_str),
                gvk.get("kind").and_then(Value::as_str),
            ) else {
                continue;
            };
            let api_version = if group.is_empty() {
                version.to_owned()
            } else {
                format!("{group}/{version}")
            };
            kinds.push(json!([api_version, kind, name]));
        }
        reduced.insert(name.clone(), node);
    }
    kinds.sort_by_key(Value::to_string);
    Ok(json!({"kubernetes": version, "definitions": reduced, "kinds": kinds}))
}

fn reduce_node(schema: &Value) -> Value {
    let Some(map) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for key in KEPT {
        if let Some(value) = map.get(*key) {
            out.insert((*key).to_owned(), value.clone());
        }
    }
    if let Some(Value::String(target)) = map.get("$ref") {
        out.insert(
            "$ref".into(),
            Value::from(target.trim_start_matches("#/definitions/")),
        );
    }
    if let Some(properties) = map.get("properties").and_then(Value::as_object) {
        let reduced: Map<String, Value> = properties
            .iter()
            .map(|(k, v)| (k.clone(), reduce_node(v)))
            .collect();
        out.insert("properties".into(), Value::Object(reduced));
    }
    if let Some(extra) = map.get("additionalProperties") {
        let extra = if extra.is_object() {
            reduce_node(extra)
        } else {
            extra.clone()
        };
        out.insert("additionalProperties".into(), extra);
    }
    if let Some(items) = map.get("items") {
        out.insert("items".into(), reduce_node(items));
    }
    // `allOf: [{$ref}]` is how the OpenAPI generator wraps a reference with a description.
    if let Some(Value::Array(all)) = map.get("allOf")
        && let [single] = all.as_slice()
        && let Some(Value::String(target)) = single.get("$ref")
    {
        out.insert(
            "$ref".into(),
            Value::from(target.trim_start_matches("#/definitions/")),
        );
    }
    Value::Object(out)
}
