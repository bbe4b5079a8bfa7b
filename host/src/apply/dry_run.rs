//! `diff`: what an apply would change, from a server-side dry run of the same apply.

use super::{
    Applier, Entry, Error, FIELD_MANAGER, Inventory, NewKinds, REVISION_ANNOTATION, Target, describe,
};
use crate::guard::{self, KIT_LABEL};
use crate::object::Object;
use kube::api::{DynamicObject, Patch, PatchParams};

impl Applier {
    /// What applying `objects` would change, from a server-side dry run of the same apply:
    /// per object, added, changed fields (live vs would-be, without server-managed noise),
    /// or to be pruned. Writes nothing.
    pub async fn diff(
        &self,
        target: &Target,
        mut objects: Vec<Object>,
    ) -> Result<Vec<crate::diff::ObjectDiff>, Error> {
        let scope = guard::Scope {
            kit: &target.kit,
            namespace: &target.namespace,
            cluster_scoped_allowed: target.cluster_scoped_allowed,
            host_namespace: &target.host_namespace,
        };
        self.drop_stray_namespaces(&mut objects).await;
        guard::apply_defaults(&scope, &mut objects);
        let findings = guard::check(&scope, &objects);
        if !findings.is_empty() {
            return Err(Error::Guard {
                kit: target.kit.clone(),
                findings,
            });
        }
        let previous = self.inventory(target).await?;
        let client = self.kit_client(target)?;
        let none = NewKinds::new();
        let mut live_objects = Vec::new();
        let mut would_be = Vec::new();
        let mut failed = Vec::new();
        for object in &objects {
            let api = match self.api_for(&client, &object.id, &none).await {
                Ok(api) => api,
                Err(message) => {
                    failed.push((object.id.clone(), message));
                    continue;
                }
            };
            let live = match api.get_opt(&object.id.name).await {
                Ok(live) => live,
                Err(e) => {
                    failed.push((object.id.clone(), describe(&e)));
                    continue;
                }
            };
            let Some(live) = live else {
                // Not there yet: an addition (its namespace may not exist either, so no dry run).
                would_be.push(object.clone());
                continue;
            };
            let mut params = PatchParams::apply(FIELD_MANAGER).dry_run();
            if target.force {
                params = params.force();
            }
            match api
                .patch(&object.id.name, &params, &Patch::Apply(&object.value))
                .await
            {
                Ok(result) => {
                    live_objects.push(cleaned(object, &live));
                    would_be.push(cleaned(object, &result));
                }
                Err(e) => failed.push((object.id.clone(), describe(&e))),
            }
        }
        if !failed.is_empty() {
            return Err(Error::Stage {
                kit: target.kit.clone(),
                stage: 0,
                failed,
                applied: Vec::new(),
            });
        }
        let next = Inventory {
            entries: objects.iter().map(|o| Entry::of(&o.id)).collect(),
            ..Default::default()
        };
        let mut changes = crate::diff::diff(&live_objects, &would_be);
        if target.prune {
            for entry in previous.missing_from(&next) {
                let id = entry.to_ref();
                let Ok(api) = self.api_for(&client, &id, &none).await else {
                    continue;
                };
                let owned = api
                    .get_opt(&id.name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|live| live.metadata.labels.and_then(|l| l.get(KIT_LABEL).cloned()))
                    .is_some_and(|owner| owner == target.kit);
                if owned {
                    changes.push(crate::diff::ObjectDiff::Removed { object: id });
                }
            }
        }
        Ok(changes)
    }
}

/// A live or dry-run object as an [`Object`] of the kit, without what the server manages
/// (managedFields, resourceVersion, generation, uid, creationTimestamp, status) or the
/// revision annotation.
fn cleaned(object: &Object, server: &DynamicObject) -> Object {
    let mut value = serde_json::to_value(server).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
        if let Some(metadata) = map.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            for noise in [
                "managedFields",
                "resourceVersion",
                "generation",
                "uid",
                "creationTimestamp",
            ] {
                metadata.remove(noise);
            }
            // Which revision wrote it is not a change to the object.
            let empty = metadata
                .get_mut("annotations")
                .and_then(|a| a.as_object_mut())
                .map(|a| {
                    a.remove(REVISION_ANNOTATION);
                    a.is_empty()
                });
            if empty == Some(true) {
                metadata.remove("annotations");
            }
        }
    }
    Object {
        id: object.id.clone(),
        origin: object.origin.clone(),
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaned_drops_what_the_server_manages_and_the_old_revision_annotation() {
        let object = Object::new(
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
            None,
        )
        .expect("object");
        let live: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "n", "uid": "u", "resourceVersion": "7",
                "generation": 2, "creationTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [{"manager": "kitsync", "operation": "Apply"}],
                "annotations": {REVISION_ANNOTATION: "abc"}, "labels": {"keep": "me"}},
            "data": {"k": "v"},
            "status": {"x": 1}
        }))
        .expect("live");
        let cleaned = cleaned(&object, &live);
        assert_eq!(
            cleaned.value,
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "a", "namespace": "n", "labels": {"keep": "me"}},
                "data": {"k": "v"}})
        );
    }
}
