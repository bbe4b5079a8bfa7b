//! What can go wrong applying a kit, split so a caller can tell retryable from permanent.

use crate::diagnostic::Diagnostic;
use crate::object::ObjectRef;
use std::time::Duration;

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

/// Runs a request again after transport failures, throttling and server faults, with
/// backoff (0.2, 0.4, 0.8, 1.6 s). A schema error that server-side apply reports as a 500
/// ("failed to create typed patch object") is the object's fault and is not retried.
pub(super) async fn retrying<T, F, Fut>(mut call: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempts = 1;
    loop {
        match call().await {
            Err(e) if attempts < 5 && is_transient(&e) => {
                tracing::debug!(error = %e, attempts, "retrying a Kubernetes request");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempts += 1;
            }
            other => return other,
        }
    }
}

/// A change the server refuses because it touches an immutable field.
pub(super) fn is_immutable(error: &kube::Error) -> bool {
    // The apiserver words it "field is immutable" for most kinds, "may not change once set"
    // for a Service's clusterIP.
    matches!(error, kube::Error::Api(status) if status.code == 422
        && (status.message.contains("immutable") || status.message.contains("may not change once set")))
}

/// Worth retrying: the server or the path to it, not the request.
pub(super) fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => {
            status.code == 429
                || (status.code >= 500 && !status.message.contains("failed to create typed patch object"))
        }
        // A request refused because this replica lost the lease stays refused: not retried.
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            crate::leadership::NotLeader::of(error).is_none()
        }
        _ => false,
    }
}

/// An API error as a reader wants it: the server's message and, for a conflict, that the
/// kit may opt into forcing.
pub(super) fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if status.code == 409 => {
            format!(
                "conflict with another field manager: {} (set `force: true` in kit.yaml to take the fields)",
                status.message
            )
        }
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, message: &str) -> kube::Error {
        let status: kube::core::Status =
            serde_json::from_value(serde_json::json!({"code": code, "message": message})).expect("status");
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn server_faults_and_throttling_are_transient_object_faults_are_not() {
        assert!(is_transient(&api(429, "too many requests")));
        assert!(is_transient(&api(
            503,
            "the server is currently unable to handle the request"
        )));
        assert!(is_transient(&api(500, "etcdserver: request timed out")));
        // Server-side apply's answer to a schema violation is a 500, but the object's fault.
        assert!(!is_transient(&api(
            500,
            "failed to create typed patch object (/x; v1, Kind=ConfigMap): .data: expected map"
        )));
        for code in [400, 403, 404, 409, 422] {
            assert!(!is_transient(&api(code, "no")), "{code}");
        }
        assert!(!is_transient(&kube::Error::LinesCodecMaxLineLengthExceeded));
        let refused = crate::leadership::NotLeader::Request {
            method: "PATCH".into(),
            path: "/api/v1/namespaces/a/configmaps/b".into(),
        };
        assert!(
            !is_transient(&kube::Error::Service(Box::new(refused))),
            "a write refused for want of the lease is not retried"
        );
    }

    #[test]
    fn immutable_changes_are_recognised_in_both_wordings() {
        assert!(is_immutable(&api(
            422,
            "Job.batch \"x\" is invalid: spec.template: field is immutable"
        )));
        assert!(is_immutable(&api(
            422,
            "Service \"v\" is invalid: spec.clusterIPs[0]: Invalid value: []string{\"None\"}: may not change once set"
        )));
        assert!(!is_immutable(&api(422, "metadata.labels: Invalid value")));
        assert!(!is_immutable(&api(409, "field is immutable")));
    }

    #[test]
    fn conflicts_say_how_to_take_the_fields() {
        let text = describe(&api(
            409,
            "Apply failed with 1 conflict: conflict with \"kubectl\"",
        ));
        assert!(text.contains("force: true"), "{text}");
        assert_eq!(describe(&api(403, "forbidden")), "forbidden (403)");
    }

    #[tokio::test]
    async fn retrying_stops_at_a_permanent_error_and_gives_up_on_a_lasting_fault() {
        let mut calls = 0;
        let result: Result<(), kube::Error> = retrying(|| {
            calls += 1;
            async { Err(api(422, "invalid")) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1, "a permanent error is not retried");
        let mut calls = 0;
        let result: Result<(), kube::Error> = retrying(|| {
            calls += 1;
            async { Err(api(503, "unavailable")) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 5, "four retries, then the fault is reported");
    }
}
