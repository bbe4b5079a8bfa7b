//! Drift, one kit at a time: an applied object changed or deleted by someone else is applied
//! again (`selfHeal`) or reported (Kit condition `Drifted`, an Event, a metric). The service
//! ([`crate::serve`]) watches the cluster and decides when; this module acts and records.

use super::{Reconciler, short};
use crate::apply::{self, Target};
use crate::object::{Object, ObjectRef};
use crate::status;

/// The Kit condition that says live objects differ from what was applied.
pub const DRIFTED: &str = "Drifted";

impl Reconciler {
    /// Applies `object` of `target` again as it was last applied (see
    /// [`apply::Applier::heal`]), with an Event on the Kit.
    ///
    /// # Errors
    /// The apply engine's error (the caller backs off and reports).
    pub async fn heal(
        &self,
        target: &Target,
        object: &Object,
        why: &str,
    ) -> Result<apply::Applied, apply::Error> {
        let result = self.applier.heal(target, object).await;
        let (action, severity, reason, note) = match &result {
            Ok(_) => (
                "healed",
                status::Severity::Normal,
                "DriftCorrected",
                format!("{}: {why}; applied again", object.id),
            ),
            Err(e) => (
                "failed",
                status::Severity::Warning,
                "DriftCorrectionFailed",
                format!(
                    "{}: {why}; applying it again failed: {}",
                    object.id,
                    super::apply_failure(e)
                ),
            ),
        };
        tracing::info!(kit = %target.kit, revision = %short(&target.revision), object = %object.id, why, action, "drift");
        self.metrics.drift(&target.kit, action);
        self.status
            .event(&target.kit, &target.revision, severity, reason, &note)
            .await;
        result
    }

    /// Records the kit's drift as it now stands: `Drifted=True` listing the objects that
    /// differ (with a Warning Event for each newly drifted one), or `Drifted=False` once
    /// none does.
    pub async fn drift_status(
        &self,
        kit: &str,
        revision: &str,
        drifted: &[(ObjectRef, String)],
        newly: &[(ObjectRef, String)],
    ) {
        for (id, why) in newly {
            tracing::warn!(kit, revision = %short(revision), object = %id, why, "drift reported (selfHeal is off)");
            self.metrics.drift(kit, "reported");
            self.status
                .event(
                    kit,
                    revision,
                    status::Severity::Warning,
                    DRIFTED,
                    &format!("{id}: {why}"),
                )
                .await;
        }
        let message = (!drifted.is_empty()).then(|| {
            let mut message = drifted
                .iter()
                .take(5)
                .map(|(id, why)| format!("{id}: {why}"))
                .collect::<Vec<_>>()
                .join("; ");
            if drifted.len() > 5 {
                message.push_str(&format!("; and {} more", drifted.len() - 5));
            }
            message
        });
        self.update(kit, |status| {
            let was = status.condition(DRIFTED).is_some_and(|c| c.status == "True");
            match &message {
                None if !was => return false,
                None => status.set_condition(
                    DRIFTED,
                    false,
                    "InSync",
                    "live objects match the last applied revision",
                ),
                Some(message) => status.set_condition(DRIFTED, true, "DriftDetected", message),
            }
            true
        })
        .await;
    }
}
