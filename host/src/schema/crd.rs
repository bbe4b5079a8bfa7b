//! Schemas of custom resources from the CustomResourceDefinitions in a repository.

use super::tree::{Dialect, Tree};
use serde_json::Value;

/// Adds the schema of every version of `crd` (an `apiextensions.k8s.io/v1`
/// CustomResourceDefinition) to `tree`; a version that declares none accepts anything. A kind
/// already defined keeps its first schema.
pub(super) fn add(tree: &mut Tree, crd: &Value) {
    let (Some(group), Some(kind)) = (
        crd.pointer("/spec/group").and_then(Value::as_str),
        crd.pointer("/spec/names/kind").and_then(Value::as_str),
    ) else {
        return;
    };
    for version in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = version.get("name").and_then(Value::as_str) else {
            continue;
        };
        let key = (format!("{group}/{name}"), kind.to_owned());
        if tree.kinds.contains_key(&key) {
            continue;
        }
        let free = serde_json::json!({"x-kubernetes-preserve-unknown-fields": true});
        let schema = version.pointer("/schema/openAPIV3Schema").unwrap_or(&free);
        let mut pending = Vec::new();
        let root = tree.add(schema, Dialect::Structural, &mut pending);
        tree.define(&format!("{kind}.{name}.{group}"), root);
        tree.kinds.insert(key, root);
    }
}

/// Whether `value` is a CustomResourceDefinition this module reads.
pub(super) fn is_crd(value: &Value) -> bool {
    value.get("apiVersion").and_then(Value::as_str) == Some("apiextensions.k8s.io/v1")
        && value.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition")
}
