//! `diff`: what an apply would change, from a server-side dry run of the same apply.

use super::{
    Applier, Entry, Error, FIELD_MANAGER, Inventory, NewKinds, REVISION_ANNOTATION, Target, describe,
    new_kinds,
};
use crate::diff::{FieldChange, ObjectDiff};
use crate::guard::KIT_LABEL;
use crate::object::{Object, ObjectRef};
use kube::api::{DynamicObject, Patch, PatchParams};
use std::collections::HashMap;

/// What an apply would change, and what the reader should know about it.
#[derive(Debug, Clone, Default)]
pub struct DryRun {
    /// Per object: added, changed fields, or to be pruned.
    pub changes: Vec<ObjectDiff>,
    /// Per object, why it was not dry-run or what the server will keep (one line each).
    pub notes: Vec<(ObjectRef, String)>,
}

impl Applier {
    /// What applying `objects` would change: [`Applier::dry_run`] without the notes.
    ///
    /// # Errors
    /// As [`Applier::dry_run`].
    pub async fn diff(&self, target: &Target, objects: Vec<Object>) -> Result<Vec<ObjectDiff>, Error> {
        self.dry_run(target, objects).await.map(|d| d.changes)
    }

    /// What applying `objects` would change, from a server-side dry run of the same apply,
    /// creations included: per object, added, changed fields (live vs would-be, without
    /// server-managed noise), or to be pruned. Writes nothing.
    ///
    /// An object is not dry-run when its namespace does not exist yet (sync creates it) or
    /// its kind comes from a CRD of the same kit (sync waits for it): a note says so. A field
    /// that Git no longer sets but the server keeps (a headless Service's `clusterIP: None`)
    /// is a change, with a note.
    ///
    /// # Errors
    /// [`Error::Guard`] before any request; [`Error::Stage`] listing every object the server
    /// would refuse; [`Error::Inventory`] or [`Error::Unavailable`].
    pub async fn dry_run(&self, target: &Target, mut objects: Vec<Object>) -> Result<DryRun, Error> {
        self.guard(target, &mut objects).await?;
        let previous = self.inventory(target).await?;
        let client = self.kit_client(target)?;
        let none = NewKinds::new();
        let new_kinds = new_kinds(&objects);
        let mut namespaces: HashMap<String, bool> = HashMap::new();
        let mut out = DryRun::default();
        let mut live_objects = Vec::new();
        let mut would_be = Vec::new();
        let mut kept = Vec::new();
        let mut failed = Vec::new();
        let mut params = PatchParams::apply(FIELD_MANAGER).dry_run();
        if target.force {
            params = params.force();
        }
        for object in &objects {
            let api = match self.api_for(&client, &object.id, &none).await {
                Ok(api) => api,
                Err(message) => {
                    let group = object.id.api_version.split_once('/').map_or("", |(g, _)| g);
                    if new_kinds.contains(&(group.to_owned(), object.id.kind.clone())) {
                        out.changes.push(ObjectDiff::Added {
                            object: object.id.clone(),
                        });
                        out.notes.push((
                            object.id.clone(),
                            format!(
                                "not dry-run: kind {} is defined by a CustomResourceDefinition of this kit, which sync creates first",
                                object.id.kind
                            ),
                        ));
                    } else {
                        failed.push((object.id.clone(), message));
                    }
                    continue;
                }
            };
            let live = match super::retrying(|| api.get_opt(&object.id.name)).await {
                Ok(live) => live,
                Err(e) => {
                    failed.push((object.id.clone(), describe(&e)));
                    continue;
                }
            };
            let Some(live) = live else {
                if let Some(ns) = &object.id.namespace
                    && !self.namespace_exists(ns, &mut namespaces).await?
                {
                    out.changes.push(ObjectDiff::Added {
                        object: object.id.clone(),
                    });
                    out.notes.push((
                        object.id.clone(),
                        format!("not dry-run: namespace {ns} does not exist yet (sync creates it)"),
                    ));
                    continue;
                }
                // A creation is dry-run too: what the server would refuse shows here.
                let patch = Patch::Apply(&object.value);
                match super::retrying(|| api.patch(&object.id.name, &params, &patch)).await {
                    Ok(_) => out.changes.push(ObjectDiff::Added {
                        object: object.id.clone(),
                    }),
                    Err(e) => failed.push((object.id.clone(), describe(&e))),
                }
                continue;
            };
            let patch = Patch::Apply(&object.value);
            match super::retrying(|| api.patch(&object.id.name, &params, &patch)).await {
                Ok(result) => {
                    for (path, value) in super::kept_by_server(&object.value, &live) {
                        out.notes.push((
                            object.id.clone(),
                            format!(
                                "{path} stays {value}: Git no longer sets it and the server keeps it, because it cannot change in place (`recreate: true` in kit.yaml replaces the object)"
                            ),
                        ));
                        kept.push((
                            object.id.clone(),
                            FieldChange {
                                path,
                                before: Some(value),
                                after: None,
                            },
                        ));
                    }
                    live_objects.push(cleaned(object, &live));
                    would_be.push(cleaned(object, &result));
                }
                Err(e) => failed.push((object.id.clone(), describe(&e))),
            }
        }
        if !failed.is_empty() {
            let secrets = crate::redact::SecretValues::of(&objects);
            return Err(Error::Stage {
                kit: target.kit.clone(),
                stage: 0,
                failed: failed
                    .into_iter()
                    .map(|(id, why)| (id, secrets.redact(&why)))
                    .collect(),
                applied: Vec::new(),
            });
        }
        let next = Inventory {
            entries: objects.iter().map(|o| Entry::of(&o.id)).collect(),
            ..Default::default()
        };
        let mut changes = crate::diff::diff(&live_objects, &would_be);
        for (id, field) in kept {
            match changes
                .iter_mut()
                .find(|c| matches!(c, ObjectDiff::Changed { object, .. } if *object == id))
            {
                Some(ObjectDiff::Changed { fields, .. }) => fields.push(field),
                _ => changes.push(ObjectDiff::Changed {
                    object: id,
                    fields: vec![field],
                }),
            }
        }
        out.changes.extend(changes);
        if target.prune {
            for entry in previous.missing_from(&next) {
                let id = entry.to_ref();
                let Ok(api) = self.api_for(&client, &id, &none).await else {
                    continue;
                };
                let owned = super::retrying(|| api.get_opt(&id.name))
                    .await
                    .ok()
                    .flatten()
                    .and_then(|live| live.metadata.labels.and_then(|l| l.get(KIT_LABEL).cloned()))
                    .is_some_and(|owner| owner == target.kit);
                if owned {
                    out.changes.push(ObjectDiff::Removed { object: id });
                }
            }
        }
        Ok(out)
    }

    /// Whether namespace `name` exists, asked once per dry run.
    async fn namespace_exists(&self, name: &str, seen: &mut HashMap<String, bool>) -> Result<bool, Error> {
        if let Some(known) = seen.get(name) {
            return Ok(*known);
        }
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(self.client.clone());
        let exists = super::retrying(|| api.get_opt(name))
            .await
            .map_err(|e| Error::Unavailable {
                kit: String::new(),
                message: format!("namespace {name}: {}", describe(&e)),
            })?
            .is_some();
        seen.insert(name.to_owned(), exists);
        Ok(exists)
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
