//! Prune: delete what a kit no longer declares, and nothing it should keep.

use super::{Applier, Entry, Error, NewKinds, Outcome, PRUNE_ANNOTATION, Target, describe};
use crate::guard::KIT_LABEL;
use kube::api::{DeleteParams, DynamicObject};
use std::collections::HashSet;

impl Applier {
    /// Deletes stale objects that still carry this kit's label and are not marked
    /// `kitsync.dev/prune: disabled`: namespaced first, then cluster-scoped, Namespaces and
    /// CRDs last.
    pub(super) async fn prune<'a>(
        &self,
        client: &kube::Client,
        target: &Target,
        mut stale: Vec<&'a Entry>,
        wanted_namespaces: &HashSet<&str>,
    ) -> Result<Vec<(&'a Entry, Outcome)>, Error> {
        stale.sort_by_key(|e| match (e.kind.as_str(), &e.namespace) {
            ("Namespace" | "CustomResourceDefinition", _) => 2,
            (_, Some(_)) => 0,
            (_, None) => 1,
        });
        let mut out = Vec::new();
        for entry in stale {
            let id = entry.to_ref();
            if entry.kind == "Namespace"
                && entry.group.is_empty()
                && wanted_namespaces.contains(entry.name.as_str())
            {
                out.push((
                    entry,
                    Outcome::Kept(format!(
                        "namespace {} still holds objects kit {} applies; a Namespace is pruned only once it holds none",
                        entry.name, target.kit
                    )),
                ));
                continue;
            }
            if entry.kind == "CustomResourceDefinition" && !target.prune_crds {
                out.push((
                    entry,
                    Outcome::Kept(format!(
                        "deleting a CustomResourceDefinition deletes every object of its kind in the cluster; list kit {} under pruneCustomResourceDefinitions in kitsync.yaml to allow it",
                        target.kit
                    )),
                ));
                continue;
            }
            let api = match self.api_for(client, &id, &NewKinds::new()).await {
                Ok(api) => api,
                Err(message) => {
                    out.push((entry, Outcome::Kept(message)));
                    continue;
                }
            };
            let live = super::retrying(|| api.get_opt(&id.name))
                .await
                .map_err(|e| Error::Unavailable {
                    kit: target.kit.clone(),
                    message: describe(&e),
                })?;
            let Some(live) = live else {
                // Already gone: nothing to keep tracking.
                out.push((entry, Outcome::Pruned));
                continue;
            };
            let owner = live.metadata.labels.as_ref().and_then(|l| l.get(KIT_LABEL));
            if owner != Some(&target.kit) {
                let reason = match owner {
                    Some(other) => format!("it now carries {KIT_LABEL}={other}"),
                    None => format!("it no longer carries {KIT_LABEL}={}", target.kit),
                };
                out.push((entry, Outcome::Kept(reason)));
                continue;
            }
            let disabled = live
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(PRUNE_ANNOTATION))
                .is_some_and(|v| v == "disabled");
            if disabled {
                out.push((
                    entry,
                    Outcome::Kept(format!("annotated {PRUNE_ANNOTATION}: disabled")),
                ));
                continue;
            }
            if live.metadata.deletion_timestamp.is_some() {
                out.push((entry, terminating(&live)));
                continue;
            }
            let params = DeleteParams::background();
            match super::retrying(|| api.delete(&id.name, &params)).await {
                // Held by finalizers: it stays tracked (and is not reported pruned) until gone.
                Ok(result) => match result.left() {
                    Some(still) if still.metadata.deletion_timestamp.is_some() => {
                        out.push((entry, terminating(&still)));
                    }
                    _ => out.push((entry, Outcome::Pruned)),
                },
                Err(kube::Error::Api(status)) if status.code == 404 => out.push((entry, Outcome::Pruned)),
                Err(e) => out.push((entry, Outcome::Kept(format!("delete failed: {}", describe(&e))))),
            }
        }
        Ok(out)
    }
}

/// A pruned object the API server keeps until its finalizers are done.
fn terminating(live: &DynamicObject) -> Outcome {
    let finalizers = live.metadata.finalizers.clone().unwrap_or_default();
    Outcome::Kept(format!(
        "terminating: deleted, waiting for finalizers [{}]; kept in the inventory until it is gone",
        finalizers.join(", ")
    ))
}
