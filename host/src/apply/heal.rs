//! Self-heal: one drifted object of a kit applied again as it was last applied.

use super::error::{describe, is_transient, retrying};
use super::{Applied, Applier, Error, FIELD_MANAGER, NewKinds, Target, applied_record, stages};
use crate::guard;
use crate::object::Object;
use kube::api::{Patch, PatchParams};

impl Applier {
    /// Applies `object` (one of `target`'s objects, as its last apply wrote it) again, as the
    /// kit's service account, forcing conflicts.
    ///
    /// Forcing takes back exactly the fields kitsync set at its last apply, which a hand edit
    /// (`kubectl edit`/`patch`, an Update) moved to another manager: the object is the last
    /// applied configuration, and an apply that owned a field only succeeded without a
    /// conflict, so nothing in it is a field kitsync never owned. A deleted object is created
    /// again.
    ///
    /// # Errors
    /// [`Error::Guard`] when the object no longer passes the host guards,
    /// [`Error::Unavailable`] when the API server could not be reached (retry later),
    /// [`Error::Stage`] when the server refused the object.
    pub async fn heal(&self, target: &Target, object: &Object) -> Result<Applied, Error> {
        let scope = guard::Scope {
            kit: &target.kit,
            namespace: &target.namespace,
            cluster_scoped_allowed: target.cluster_scoped_allowed,
            host_namespace: &target.host_namespace,
        };
        let findings = guard::check(&scope, std::slice::from_ref(object));
        if !findings.is_empty() {
            return Err(Error::Guard {
                kit: target.kit.clone(),
                findings,
            });
        }
        let refused = |message: String| {
            let stage = stages(std::slice::from_ref(object))
                .iter()
                .position(|s| !s.is_empty())
                .map_or(3, |i| u8::try_from(i + 1).unwrap_or(3));
            Error::Stage {
                kit: target.kit.clone(),
                stage,
                failed: vec![(object.id.clone(), message)],
                applied: Vec::new(),
            }
        };
        let client = self.kit_client(target)?;
        let api = self
            .api_for(&client, &object.id, &NewKinds::new())
            .await
            .map_err(refused)?;
        // A hand edit (`kubectl edit` of a Service port, a list key) leaves an entry owned
        // by kubectl that a forced apply alone would keep beside kitsync's own: its fields
        // move to kitsync first, as every apply does, so the apply replaces it.
        let fail = |e: kube::Error| {
            if is_transient(&e) {
                Error::Unavailable {
                    kit: target.kit.clone(),
                    message: describe(&e),
                }
            } else {
                refused(describe(&e))
            }
        };
        if let Some(live) = retrying(|| api.get_opt(&object.id.name)).await.map_err(fail)? {
            super::takeover::take_over(&api, &live).await.map_err(fail)?;
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(&object.value);
        let written = retrying(|| api.patch(&object.id.name, &params, &patch))
            .await
            .map_err(fail)?;
        let hash = crate::plugin::sha256_hex(crate::object::to_json(&object.value).as_bytes());
        Ok(applied_record(hash, &object.value, &written))
    }
}
