//! What can go wrong applying a kit, split so a caller can tell retryable from permanent.

use crate::diagnostic::Diagnostic;
use crate::object::ObjectRef;

/// An apply failure for one kit. Nothing after the failing stage was written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Host guards refused objects before any write (namespace escape, cluster scope,
    /// another kit's object, the host's namespace).
    #[error("kit {kit}: {} object(s) refused by host guards before any write: {}", findings.len(), first_message(findings))]
    Guard {
        /// The kit.
        kit: String,
        /// One finding per refused object.
        findings: Vec<Diagnostic>,
    },
    /// The API server could not be reached or answered with a server-side fault; try again.
    #[error("kit {kit}: API server unavailable: {message}")]
    Unavailable {
        /// The kit.
        kit: String,
        /// What the client saw.
        message: String,
    },
    /// A stage had objects the server refused; later stages were not applied, nothing pruned.
    #[error("kit {kit}: {} object(s) failed in stage {stage}; later stages not applied, nothing pruned", failed.len())]
    Stage {
        /// The kit.
        kit: String,
        /// The stage that failed (1 = namespaces and CRDs, 2 = cluster-scoped, 3 = namespaced).
        stage: u8,
        /// Each failed object and why.
        failed: Vec<(ObjectRef, String)>,
        /// What was applied before the failure (recorded so it is never orphaned).
        applied: Vec<ObjectRef>,
    },
    /// Storing or reading the inventory failed.
    #[error("kit {kit}: inventory: {message}")]
    Inventory {
        /// The kit.
        kit: String,
        /// What failed.
        message: String,
    },
}

impl Error {
    /// True when trying again later may succeed without a change to the kit.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }
}

fn first_message(findings: &[Diagnostic]) -> String {
    findings.first().map(|f| f.message.clone()).unwrap_or_default()
}
