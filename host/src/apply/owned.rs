//! What kitsync owns of a live object, and whether it changed: the fields its apply sets.
//!
//! Server-side apply gives the applier ownership of exactly the fields in its applied
//! configuration. A fingerprint of the live values at those places (taken from the server's
//! answer to the apply, so defaulting and normalisation such as `cpu: 0.5` -> `500m` are
//! already in it) changes when, and only when, someone changes a field kitsync set. A
//! controller writing `status`, an autoscaler writing `spec.replicas` that the kit does not
//! set, or a controller's annotation leaves the fingerprint as it was: that is not drift and
//! causes no write.

use serde_json::Value;

/// Keys that identify an entry of a list of objects, in the order they are tried. Kubernetes
/// merges these lists by such keys (`x-kubernetes-list-map-keys`, `patchMergeKey`); matching
/// by key rather than by position keeps a reordered list from reading as a change.
const ENTRY_KEYS: &[&str] = &[
    "name",
    "containerPort",
    "port",
    "mountPath",
    "devicePath",
    "ip",
    "topologyKey",
    "key",
    "type",
];

/// The live values at the places `desired` sets (the shape of `desired`, the values of
/// `live`); `null` where the live object lacks a field.
pub fn project(desired: &Value, live: &Value) -> Value {
    match (desired, live) {
        (Value::Object(want), Value::Object(have)) => Value::Object(
            want.iter()
                .map(|(key, value)| {
                    let projected = have.get(key).map_or(Value::Null, |live| project(value, live));
                    (key.clone(), projected)
                })
                .collect(),
        ),
        (Value::Array(want), Value::Array(have)) => Value::Array(
            want.iter()
                .enumerate()
                .map(|(index, item)| entry(item, have, index).map_or(Value::Null, |live| project(item, live)))
                .collect(),
        ),
        // A leaf, or a shape the server changed: what is there now.
        (_, live) => live.clone(),
    }
}

/// The live list entry matching `item`: by its first identifying key, else by position.
fn entry<'a>(item: &Value, live: &'a [Value], index: usize) -> Option<&'a Value> {
    if let Value::Object(fields) = item {
        for key in ENTRY_KEYS {
            if let Some(id) = fields.get(*key).filter(|v| !v.is_object() && !v.is_array()) {
                return live.iter().find(|l| l.get(*key) == Some(id));
            }
        }
    }
    live.get(index)
}

/// sha256 (hex) of [`project`]`(desired, live)`: equal fingerprints mean nobody changed a
/// field kitsync set.
pub fn fingerprint(desired: &Value, live: &Value) -> String {
    crate::plugin::sha256_hex(project(desired, live).to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(port: i64, extra: Value) -> Value {
        let mut live = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "vision", "namespace": "m", "resourceVersion": "7",
                         "labels": {"kitsync.dev/kit": "m"}, "annotations": {"other": "x"}},
            "spec": {"clusterIP": "10.0.0.3", "ports": [
                {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9090},
                {"name": "http", "port": port, "protocol": "TCP", "targetPort": 8080}
            ]},
            "status": {"loadBalancer": {}}
        });
        if let (Value::Object(l), Value::Object(e)) = (&mut live, extra) {
            l.extend(e);
        }
        live
    }

    fn desired() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "vision", "namespace": "m", "labels": {"kitsync.dev/kit": "m"}},
            "spec": {"ports": [
                {"name": "http", "port": 6776, "targetPort": 8080},
                {"name": "metrics", "port": 9090}
            ]}
        })
    }

    #[test]
    fn only_fields_kitsync_sets_count() {
        let baseline = fingerprint(&desired(), &service(6776, json!({})));
        // Status, resourceVersion, defaulted fields, others' annotations, entry order: same.
        let noisy = service(
            6776,
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}),
        );
        assert_eq!(fingerprint(&desired(), &noisy), baseline);
        // A hand edit of a port kitsync set: different.
        assert_ne!(fingerprint(&desired(), &service(1234, json!({}))), baseline);
    }

    #[test]
    fn a_removed_label_or_entry_is_a_change() {
        let baseline = fingerprint(&desired(), &service(6776, json!({})));
        let mut unlabeled = service(6776, json!({}));
        unlabeled["metadata"]["labels"] = json!({});
        assert_ne!(fingerprint(&desired(), &unlabeled), baseline);
        let mut one_port = service(6776, json!({}));
        one_port["spec"]["ports"] = json!([{"name": "metrics", "port": 9090}]);
        assert_ne!(fingerprint(&desired(), &one_port), baseline);
    }
}
