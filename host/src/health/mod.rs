//! Health: whether a kit's applied objects became ready, by kstatus's rules, and the wait
//! for it after an apply.
//!
//! [`assess`] judges one live object from its body alone ([`Health`]: Current, InProgress
//! or Failed, with a reason), following `sigs.k8s.io/cli-utils/pkg/kstatus/status`.
//! [`Waiter::wait`] watches a kit's applied objects until every one is Current, one is
//! Failed, the kit's `timeout` passes, or the caller cancels (a newer revision arrived),
//! and says which in an [`Outcome`]. An [`Error`] means the wait could not see the
//! objects (the API server was unreachable, refused the read, or does not serve a kind),
//! which the caller must not report as "not healthy".
//!
//! ```no_run
//! use kitsync::health::{Outcome, Waiter};
//! use std::time::Duration;
//! # async fn example(client: kube::Client, applied: Vec<kitsync::ObjectRef>) -> Result<(), kitsync::health::Error> {
//! // The reconcile loop sends on `newer` when a newer revision of the kit arrives.
//! let (newer, mut revisions) = tokio::sync::watch::channel(());
//! let waiter = Waiter::new(client);
//! let cancel = async move {
//!     // A dropped sender (the loop is shutting down) cancels too.
//!     let _ = revisions.changed().await;
//! };
//! match waiter.wait(&applied, Duration::from_secs(300), cancel).await? {
//!     Outcome::Healthy => println!("converged"),
//!     other => println!("not healthy: {other}"),
//! }
//! # drop(newer);
//! # Ok(())
//! # }
//! ```

mod rules;
mod tracker;
mod wait;
mod workloads;

pub use rules::{Health, assess};
pub use wait::Waiter;

use crate::object::ObjectRef;
use kube::runtime::watcher;
use std::fmt;
use std::time::Duration;

/// How a [`Waiter::wait`] ended, when it could see the objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every object was seen Current (kstatus), each at some moment since the wait began.
    Healthy,
    /// The timeout passed with objects not yet Current.
    TimedOut {
        /// The timeout that passed.
        after: Duration,
        /// Every object not Current at the deadline, in [`ObjectRef`] order, with the
        /// reason from its last observed state (`1 of 3 replicas available`, `not found`).
        pending: Vec<(ObjectRef, String)>,
    },
    /// An object kstatus calls Failed: it will not become ready without a change, so the
    /// wait stopped there without waiting for the others.
    Failed {
        /// The failed object.
        object: ObjectRef,
        /// Why, e.g. `progress deadline exceeded: ...`.
        reason: String,
    },
    /// The caller's cancel signal fired first.
    Cancelled,
}

/// Objects listed by name in an [`Outcome`]'s text; the rest are counted. The text ends up
/// in a Kit's status line and alerts, which must stay short for a kit of hundreds.
const LISTED: usize = 3;

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Healthy => f.write_str("healthy"),
            Outcome::Cancelled => f.write_str("health wait cancelled"),
            Outcome::Failed { object, reason } => write!(f, "{}: {reason}", Short(object)),
            Outcome::TimedOut { after, pending } => {
                write!(f, "timed out after {}", Span(*after))?;
                for (i, (object, reason)) in pending.iter().take(LISTED).enumerate() {
                    let sep = if i == 0 { ": " } else { "; " };
                    write!(f, "{sep}{}: {reason}", Short(object))?;
                }
                if pending.len() > LISTED {
                    write!(f, "; and {} more", pending.len() - LISTED)?;
                }
                Ok(())
            }
        }
    }
}

/// Why a wait could not tell whether the objects are healthy. Nothing here is a verdict on
/// the kit's objects: the caller keeps the kit's health Unknown and tries again. Sources are
/// boxed: a `kube::Error` is large, and this travels in every `Result` of the wait.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object of a namespaced kind came without a namespace (the caller skipped
    /// `guard::apply_defaults`).
    #[error("{object}: its kind is namespaced, but it has no namespace")]
    NoNamespace {
        /// The object.
        object: ObjectRef,
    },
    /// The cluster does not serve the object's kind (discovery or a watch answered 404, a
    /// CRD removed meanwhile): no wait could ever see it.
    #[error("{object}: the cluster does not serve kind {} in {}", object.kind, object.api_version)]
    UnknownKind {
        /// The first object of that kind.
        object: ObjectRef,
        /// What the server or discovery said.
        #[source]
        source: Box<kube::Error>,
    },
    /// The API server refused or rejected a read (401, 403, a 4xx other than 429, an
    /// answer the client cannot decode): asking again will not help.
    #[error("reading {kind} {}: {source}", In(namespace.as_deref()))]
    Rejected {
        /// `Deployment`, ...
        kind: String,
        /// Where it was read; `None` for cluster-scoped kinds.
        namespace: Option<String>,
        /// What the server said.
        #[source]
        source: Box<kube::Error>,
    },
    /// The API server could not be reached, or answered with throttling or server faults,
    /// until the deadline or the retries ran out: try again later.
    #[error("reading {kind} {}: API server unavailable: {source}", In(namespace.as_deref()))]
    Unavailable {
        /// `Deployment`, ...
        kind: String,
        /// Where it was read; `None` for cluster-scoped kinds.
        namespace: Option<String>,
        /// The last failure seen.
        #[source]
        source: Box<kube::Error>,
    },
}

impl Error {
    /// True when the same wait may succeed later without a change to the kit.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// A stable label per variant, for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Error::NoNamespace { .. } => "no-namespace",
            Error::UnknownKind { .. } => "unknown-kind",
            Error::Rejected { .. } => "rejected",
            Error::Unavailable { .. } => "unavailable",
        }
    }
}

/// Worth trying again: the server or the path to it failed, not the request. A 410 Gone
/// is a watch whose resourceVersion expired: the watcher lists again by itself.
fn transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 410 || status.code == 429 || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// The error a caller gets for a failed read of `first`'s kind in `namespace`.
fn classify(error: kube::Error, first: &ObjectRef, namespace: Option<&str>) -> Error {
    let kind = first.kind.clone();
    let namespace = namespace.map(str::to_owned);
    match &error {
        kube::Error::Api(status) if status.code == 404 => Error::UnknownKind {
            object: first.clone(),
            source: Box::new(error),
        },
        kube::Error::Discovery(_) => Error::UnknownKind {
            object: first.clone(),
            source: Box::new(error),
        },
        _ if transient(&error) => Error::Unavailable {
            kind,
            namespace,
            source: Box::new(error),
        },
        _ => Error::Rejected {
            kind,
            namespace,
            source: Box::new(error),
        },
    }
}

/// A watcher's error as the client error under it.
fn unwrap_watch_error(error: watcher::Error) -> kube::Error {
    match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => e,
        watcher::Error::WatchError(status) => kube::Error::Api(status),
        watcher::Error::NoResourceVersion => kube::Error::Api(
            kube::core::Status::failure(
                "the list had no resourceVersion: the kind cannot be watched",
                "NotWatchable",
            )
            .boxed(),
        ),
    }
}

/// `in namespace X` or `cluster-wide`.
struct In<'a>(Option<&'a str>);

impl fmt::Display for In<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(ns) => write!(f, "in namespace {ns}"),
            None => f.write_str("cluster-wide"),
        }
    }
}

/// An object as a kit's reader names it: `Deployment web` (the namespace is the kit's).
struct Short<'a>(&'a ObjectRef);

impl fmt::Display for Short<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.kind, self.0.name)
    }
}

/// A duration the way kit.yaml writes one (`5m`, `1h30m`, `90s` as `1m30s`); under a
/// second in milliseconds.
struct Span(Duration);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        if secs == 0 {
            return write!(f, "{}ms", self.0.as_millis());
        }
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(kind: &str, name: &str) -> ObjectRef {
        ObjectRef {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            namespace: Some("shop".into()),
            name: name.into(),
        }
    }

    #[test]
    fn a_timeout_names_what_was_pending_and_counts_the_rest() {
        let one = Outcome::TimedOut {
            after: Duration::from_secs(300),
            pending: vec![(id("Deployment", "web"), "1 of 3 replicas available".into())],
        };
        assert_eq!(
            one.to_string(),
            "timed out after 5m: Deployment web: 1 of 3 replicas available"
        );
        let many = Outcome::TimedOut {
            after: Duration::from_secs(90),
            pending: (0..5)
                .map(|i| {
                    (
                        id("StatefulSet", &format!("db-{i}")),
                        "0 of 1 replicas ready".into(),
                    )
                })
                .collect(),
        };
        assert_eq!(
            many.to_string(),
            "timed out after 1m30s: StatefulSet db-0: 0 of 1 replicas ready; StatefulSet db-1: 0 of 1 replicas ready; StatefulSet db-2: 0 of 1 replicas ready; and 2 more"
        );
    }

    #[test]
    fn other_outcomes_read_as_sentences() {
        let failed = Outcome::Failed {
            object: id("Deployment", "web"),
            reason: "progress deadline exceeded".into(),
        };
        assert_eq!(failed.to_string(), "Deployment web: progress deadline exceeded");
        assert_eq!(Outcome::Healthy.to_string(), "healthy");
    }

    #[test]
    fn spans_read_like_kit_yaml() {
        let cases = [
            (300, "5m"),
            (90, "1m30s"),
            (3600, "1h"),
            (5400, "1h30m"),
            (7, "7s"),
        ];
        for (secs, text) in cases {
            assert_eq!(Span(Duration::from_secs(secs)).to_string(), text);
            assert_eq!(
                crate::kit::parse_duration(text),
                Some(Duration::from_secs(secs)),
                "{text} parses back"
            );
        }
        assert_eq!(Span(Duration::from_millis(250)).to_string(), "250ms");
    }

    #[test]
    fn only_unavailability_is_retryable() {
        let status = kube::core::Status::failure("connection refused", "ServiceUnavailable").with_code(503);
        let unavailable = Error::Unavailable {
            kind: "Deployment".into(),
            namespace: Some("shop".into()),
            source: Box::new(kube::Error::Api(status.boxed())),
        };
        assert!(unavailable.is_retryable());
        assert_eq!(unavailable.label(), "unavailable");
        assert!(
            unavailable
                .to_string()
                .starts_with("reading Deployment in namespace shop: API server unavailable")
        );
        let missing = Error::NoNamespace {
            object: id("Deployment", "web"),
        };
        assert!(!missing.is_retryable());
    }
}
