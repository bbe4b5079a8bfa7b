//! Health of one applied revision: the Kit's `Healthy` condition once its objects are ready
//! (kstatus rules, [`crate::health`]), or why they are not within the kit's `timeout`.

use super::{AppliedKit, Reconciler, short};
use crate::health::Outcome;
use crate::status;

/// The Kit condition that says the applied revision's objects are ready.
pub const HEALTHY: &str = "Healthy";

/// What a health wait concluded, for the caller's alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every object ready: the revision converged.
    Converged(String),
    /// Not ready in time, or an object failed, or the wait could not be done.
    Failed(String),
    /// A newer revision took over; nothing recorded.
    Cancelled,
}

impl Reconciler {
    /// Waits until the objects of `applied` are ready (at most its `timeout`, or until
    /// `cancel` completes) and records the Kit's `Healthy` condition, with an Event.
    pub async fn wait_healthy(
        &self,
        applied: &AppliedKit,
        cancel: impl std::future::Future<Output = ()>,
    ) -> Verdict {
        let kit = &applied.target.kit;
        let revision = &applied.target.revision;
        let objects: Vec<_> = applied.objects.iter().map(|o| o.id.clone()).collect();
        let waiting = format!(
            "waiting for {} object(s) of revision {} to become ready (timeout {}s)",
            objects.len(),
            short(revision),
            applied.timeout.as_secs()
        );
        self.update(kit, |status| {
            status.set_condition(HEALTHY, false, "Progressing", &waiting);
            true
        })
        .await;
        let result = self.waiter.wait(&objects, applied.timeout, cancel).await;
        let (healthy, reason, message) = match result {
            Ok(Outcome::Cancelled) => return Verdict::Cancelled,
            Ok(Outcome::Healthy) => (
                true,
                "Converged",
                format!(
                    "revision {}: all {} object(s) ready",
                    short(revision),
                    objects.len()
                ),
            ),
            Ok(outcome @ Outcome::TimedOut { .. }) => (
                false,
                "HealthCheckTimeout",
                format!("revision {}: {outcome}", short(revision)),
            ),
            Ok(outcome @ Outcome::Failed { .. }) => (
                false,
                "HealthCheckFailed",
                format!("revision {}: {outcome}", short(revision)),
            ),
            Err(e) => (
                false,
                "HealthCheckError",
                format!("revision {}: cannot check health: {e}", short(revision)),
            ),
        };
        tracing::info!(kit, revision = %short(revision), healthy, reason, "health");
        self.update(kit, |status| {
            status.set_condition(HEALTHY, healthy, reason, &message);
            true
        })
        .await;
        let severity = if healthy {
            status::Severity::Normal
        } else {
            status::Severity::Warning
        };
        self.status.event(kit, revision, severity, reason, &message).await;
        if healthy {
            Verdict::Converged(message)
        } else {
            Verdict::Failed(message)
        }
    }
}
