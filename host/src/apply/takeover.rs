//! Taking over objects first written by client-side `kubectl apply`, `kubectl create` or
//! `kubectl edit`: their fields are owned by Update-operation managers (`kubectl-client-side-apply`,
//! `kubectl-create`, `kubectl-edit`, `before-first-apply`), which server-side apply never
//! removes. Moving those fields to kitsync's Apply entry (as Flux does) makes kitsync the
//! owner of what Git declares, so a key removed from Git is removed live.

use super::FIELD_MANAGER;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, Time};
use kube::api::DynamicObject;
use serde_json::Value;

/// Whether an entry belongs to a client that wrote the object before kitsync took it over.
fn is_client_side(entry: &ManagedFieldsEntry) -> bool {
    let manager = entry.manager.as_deref().unwrap_or("");
    entry.operation.as_deref() == Some("Update")
        && entry.subresource.as_deref().unwrap_or("").is_empty()
        && (manager.starts_with("kubectl") || manager == "before-first-apply")
}

fn is_ours(entry: &ManagedFieldsEntry) -> bool {
    entry.manager.as_deref() == Some(FIELD_MANAGER)
        && entry.operation.as_deref() == Some("Apply")
        && entry.subresource.as_deref().unwrap_or("").is_empty()
}

/// Union of two `fieldsV1` trees (maps of `f:`/`k:`/`v:`/`i:` keys down to `{}` leaves).
fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                match into.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        into.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (into, from) if into.is_null() => *into = from.clone(),
        _ => {}
    }
}

/// The object's managedFields with every client-side entry folded into kitsync's Apply
/// entry, or `None` when there is nothing to take over.
pub(super) fn managed_fields(live: &DynamicObject) -> Option<Vec<ManagedFieldsEntry>> {
    let entries = live.metadata.managed_fields.as_ref()?;
    if !entries.iter().any(is_client_side) {
        return None;
    }
    let mut fields = Value::Null;
    let mut api_version = None;
    let mut out = Vec::new();
    for entry in entries {
        if is_client_side(entry) || is_ours(entry) {
            if let Some(FieldsV1(value)) = &entry.fields_v1 {
                merge(&mut fields, value);
            }
            if is_ours(entry) || api_version.is_none() {
                api_version = entry.api_version.clone();
            }
        } else {
            out.push(entry.clone());
        }
    }
    out.push(ManagedFieldsEntry {
        api_version,
        fields_type: Some("FieldsV1".into()),
        fields_v1: Some(FieldsV1(fields)),
        manager: Some(FIELD_MANAGER.into()),
        operation: Some("Apply".into()),
        subresource: None,
        time: Some(Time(jiff::Timestamp::now())),
    });
    Some(out)
}

/// Moves the client-side fields of `live` to kitsync (see [`managed_fields`]); true when
/// there were any. Optimistic: the resourceVersion makes a concurrent change fail the patch.
pub(super) async fn take_over(
    api: &kube::Api<DynamicObject>,
    live: &DynamicObject,
) -> Result<bool, kube::Error> {
    let Some(fields) = managed_fields(live) else {
        return Ok(false);
    };
    let name = live.metadata.name.clone().unwrap_or_default();
    let patch = serde_json::json!({"metadata": {
        "managedFields": fields,
        "resourceVersion": live.metadata.resource_version,
    }});
    let (params, patch) = (kube::api::PatchParams::default(), kube::api::Patch::Merge(&patch));
    super::error::retrying(|| api.patch(&name, &params, &patch)).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live(managed: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "managedFields": managed}
        }))
        .expect("object")
    }

    #[test]
    fn client_side_fields_move_to_kitsync() {
        let object = live(json!([
            {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}, "f:b": {}}}},
            {"manager": "kitsync", "operation": "Apply", "apiVersion": "v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {}}}},
            {"manager": "other-controller", "operation": "Update", "apiVersion": "v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:c": {}}}}
        ]));
        let fields = managed_fields(&object).expect("something to take over");
        let managers: Vec<&str> = fields.iter().filter_map(|e| e.manager.as_deref()).collect();
        assert_eq!(
            managers,
            ["other-controller", "kitsync"],
            "one kitsync entry; others kept"
        );
        let ours = fields.last().and_then(|e| e.fields_v1.as_ref()).expect("fields");
        assert_eq!(
            ours.0,
            json!({"f:data": {"f:a": {}, "f:b": {}}, "f:metadata": {"f:labels": {}}})
        );
    }

    #[test]
    fn nothing_to_take_over_from_appliers_or_controllers() {
        let object = live(json!([
            {"manager": "kitsync", "operation": "Apply", "fieldsV1": {"f:data": {}}},
            {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {}},
            {"manager": "kubectl", "operation": "Update", "subresource": "status", "fieldsV1": {}}
        ]));
        assert!(managed_fields(&object).is_none());
    }
}
