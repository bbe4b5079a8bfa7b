//! Leader election with a `coordination.k8s.io/v1` Lease (`kitsync-leader` in the host
//! namespace), so several replicas can run and one reconciles.
//!
//! The protocol is client-go's (what Flux and controller-runtime use), written here over
//! kube's typed `Api<Lease>`:
//! - every write of the Lease carries the `resourceVersion` it was decided on, so two
//!   replicas never both win: the second gets 409 and reads again;
//! - a follower takes a Lease held by another replica only after it has seen the same record
//!   (same `resourceVersion`) for the record's `leaseDurationSeconds`, measured on its own
//!   monotonic clock from when it first saw it: clocks of different machines are never
//!   compared, only their rates;
//! - the leader renews every `retryPeriod`; each success lets this process write until
//!   `sent + renewDeadline` ([`Leadership::renewed`]). A leader that cannot renew within
//!   `renewDeadline`, or sees another holder, stops writing at once ([`Leadership::lost`]).
//!   `renewDeadline < leaseDuration` is what keeps the old leader's last write before a
//!   follower's first.
//!
//! A replica that loses the lease does not exit: the service stops its work and it follows
//! again. On shutdown the leader stops writing, then clears the holder so a follower takes
//! over at its next try instead of after a whole lease.
//!
//! `kube-lease-manager` (0.13, which matches kube 5) was the first choice and does not fit:
//! it never says when a renewal succeeded (only leader yes/no changes), so the write gate
//! could not be timed from it; it judges expiry by comparing the holder's wall-clock
//! `renewTime` with the follower's wall clock; and it clears an expired holder with a patch
//! that has no `resourceVersion`, so a renewal that lands between its read and its patch is
//! wiped while the old holder still believes it leads.

use super::http::Health;
use crate::kit::Error;
use crate::leadership::Leadership;
use crate::metrics::Metrics;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::PostParams;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The Lease's name, in the host namespace.
pub const LEASE_NAME: &str = "kitsync-leader";

/// `leaderElection:` in the host config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeaderElectionFile {
    /// Run leader election (default false: one replica, no Lease).
    pub enabled: Option<bool>,
    /// How long a follower waits, after the last renewal it saw, before taking over (`15s`).
    pub lease_duration: Option<String>,
    /// How long the leader keeps writing without a successful renewal (`10s`).
    pub renew_deadline: Option<String>,
    /// Time between two tries to acquire or renew (`2s`).
    pub retry_period: Option<String>,
}

/// Leader election, resolved: `renewDeadline < leaseDuration`, `retryPeriod < renewDeadline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderElection {
    /// How long a follower waits after the last renewal it saw.
    pub lease_duration: Duration,
    /// How long the leader writes after its last successful renewal was sent.
    pub renew_deadline: Duration,
    /// Time between tries.
    pub retry_period: Duration,
}

impl Default for LeaderElection {
    /// client-go's and Flux's defaults: 15 s, 10 s, 2 s.
    fn default() -> Self {
        LeaderElection {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaderElection {
    /// Checks `leaderElection:` of the host config `name`; `None` when it is off.
    ///
    /// # Errors
    /// A duration that does not parse, or durations out of order.
    pub fn resolve(name: &str, file: Option<LeaderElectionFile>) -> Result<Option<Self>, Error> {
        let Some(file) = file else { return Ok(None) };
        let defaults = Self::default();
        let field = |key: &str, text: &Option<String>, default| {
            super::config::duration(name, &format!("leaderElection.{key}"), text.as_deref(), default)
        };
        let settings = LeaderElection {
            lease_duration: field("leaseDuration", &file.lease_duration, defaults.lease_duration)?,
            renew_deadline: field("renewDeadline", &file.renew_deadline, defaults.renew_deadline)?,
            retry_period: field("retryPeriod", &file.retry_period, defaults.retry_period)?,
        };
        if settings.renew_deadline >= settings.lease_duration {
            return Err(super::config::invalid(
                name,
                "leaderElection.renewDeadline must be shorter than leaseDuration: the difference is the time a write in flight has to arrive before another replica takes over",
            ));
        }
        if settings.retry_period >= settings.renew_deadline {
            return Err(super::config::invalid(
                name,
                "leaderElection.retryPeriod must be shorter than renewDeadline, or one failed renewal loses the lease",
            ));
        }
        Ok(file.enabled.unwrap_or(false).then_some(settings))
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// This replica's name in the Lease: `POD_NAME`, else the host name, and a random suffix so
/// two processes on one host (or a restarted pod) are told apart.
pub fn identity() -> String {
    let base = crate::status::instance_name();
    let mut random = [0u8; 4];
    // Without OS randomness, the process id still separates processes on one host.
    let suffix = match getrandom::fill(&mut random) {
        Ok(()) => hex::encode(random),
        Err(_) => format!("{:08x}", std::process::id()),
    };
    format!("{base}-{suffix}")
}

/// What a follower does with the Lease it read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    /// Nobody holds it, its holder released it, it is ours, or it was not renewed for its
    /// duration: try to take it.
    Take,
    /// Another replica holds it.
    Follow {
        /// The holder.
        holder: String,
        /// Until the lease may be taken, if the record stays as it is.
        left: Duration,
    },
}

/// Whether a follower named `me` may take a Lease with `spec`, whose record it has seen
/// unchanged for `unchanged` (by its own clock).
fn decide(spec: Option<&LeaseSpec>, me: &str, unchanged: Duration, fallback: Duration) -> Decision {
    let holder = spec
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty());
    let Some(holder) = holder else {
        return Decision::Take;
    };
    if holder == me {
        return Decision::Take;
    }
    // The holder's promise governs, not this replica's setting: replicas with different
    // settings stay safe.
    let duration = spec
        .and_then(|s| s.lease_duration_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map_or(fallback, Duration::from_secs);
    match duration.checked_sub(unchanged) {
        Some(left) if !left.is_zero() => Decision::Follow {
            holder: holder.to_owned(),
            left,
        },
        _ => Decision::Take,
    }
}

fn holder_of(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Runs the election for this replica and feeds [`Leadership`].
pub(super) struct Elector {
    api: Api<Lease>,
    identity: String,
    settings: LeaderElection,
    leadership: Leadership,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// The Lease as last read or written: its `resourceVersion` is the precondition of the
    /// next write.
    last: Option<Lease>,
    /// The `resourceVersion` a follower sees, and since when (its own clock).
    seen: Option<(String, Instant)>,
    leading: bool,
}

impl Elector {
    pub(super) fn new(
        client: kube::Client,
        namespace: &str,
        identity: String,
        settings: LeaderElection,
        leadership: Leadership,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            identity,
            settings,
            leadership,
            metrics,
            health,
            last: None,
            seen: None,
            leading: false,
        }
    }

    /// Acquires, renews and follows until `release` turns true; then, if leading, stops
    /// writing and clears the holder.
    pub(super) async fn run(mut self, mut release: watch::Receiver<bool>) {
        tracing::info!(identity = %self.identity, lease = LEASE_NAME, settings = ?self.settings, "leader election started");
        while !*release.borrow() {
            let wait = if self.leading {
                self.renew().await
            } else {
                self.follow().await
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // A dropped sender (the service gone without a word) releases too.
                changed = release.changed() => if changed.is_err() { break },
            }
        }
        self.release().await;
    }

    /// The time between tries, with up to 20% jitter so replicas do not step together.
    fn jittered(&self) -> Duration {
        let mut byte = [0u8; 1];
        let spread = getrandom::fill(&mut byte).map_or(0, |()| u32::from(byte[0]));
        self.settings.retry_period
            + self
                .settings
                .retry_period
                .mul_f64(f64::from(spread) / 255.0 * 0.2)
    }

    fn lose(&mut self, why: &str) {
        // The gate first: nothing is written from here on, whatever else is slow.
        self.leadership.lost();
        self.leading = false;
        self.seen = None;
        self.metrics.leader(false);
        tracing::warn!(identity = %self.identity, why, "leadership lost: writes stopped; following again");
    }

    /// One renewal; returns the time until the next.
    async fn renew(&mut self) -> Duration {
        if !self.leadership.holds() {
            self.lose("no successful renewal within renewDeadline");
            return Duration::ZERO;
        }
        let lease = match self.last.take() {
            Some(lease) => lease,
            None => match self.api.get_opt(LEASE_NAME).await {
                Ok(Some(lease)) => lease,
                Ok(None) => {
                    self.lose("the Lease was deleted");
                    return Duration::ZERO;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the Lease failed; trying again");
                    return self.settings.retry_period;
                }
            },
        };
        if holder_of(&lease) != Some(self.identity.as_str()) {
            let holder = holder_of(&lease).unwrap_or("nobody").to_owned();
            self.last = Some(lease);
            self.lose(&format!("the Lease names {holder}"));
            return Duration::ZERO;
        }
        let mut renewed = lease;
        let spec = renewed.spec.get_or_insert_with(LeaseSpec::default);
        spec.renew_time = Some(now());
        spec.lease_duration_seconds = Some(self.settings.lease_seconds());
        let sent = Instant::now();
        // A request that hangs past the deadline is worth nothing: the gate closes anyway.
        let written = tokio::time::timeout(
            self.settings.retry_period,
            self.api.replace(LEASE_NAME, &PostParams::default(), &renewed),
        )
        .await;
        match written {
            Ok(Ok(lease)) => {
                self.leadership.renewed(sent, self.settings.renew_deadline);
                self.last = Some(lease);
                tracing::trace!("lease renewed");
            }
            Ok(Err(kube::Error::Api(status))) if status.code == 409 => {
                // Written by someone since our last read: the next try reads and judges.
                tracing::info!("the Lease changed under us; reading it again");
                return Duration::ZERO;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "renewing the lease failed; trying again"),
            Err(_) => tracing::warn!("renewing the lease timed out; trying again"),
        }
        self.settings.retry_period
    }

    /// One follower's try; returns the time until the next.
    async fn follow(&mut self) -> Duration {
        let read = match self.api.get_opt(LEASE_NAME).await {
            Ok(read) => read,
            Err(e) => {
                self.health.following.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "reading the Lease failed (RBAC: get, create, update on leases in the host namespace); trying again");
                return self.jittered();
            }
        };
        let Some(lease) = read else {
            return self.create().await;
        };
        // When this record was first seen, by this process's clock: after the read returned,
        // so any renewal it shows was sent before.
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let since = match &self.seen {
            Some((seen, since)) if *seen == version => *since,
            _ => {
                let now = Instant::now();
                self.seen = Some((version, now));
                now
            }
        };
        match decide(
            lease.spec.as_ref(),
            &self.identity,
            since.elapsed(),
            self.settings.lease_duration,
        ) {
            Decision::Follow { holder, left } => {
                self.health.following.store(true, Ordering::Relaxed);
                tracing::debug!(%holder, ?left, "following");
                // Wake when the lease could be taken, not a retry period after.
                self.jittered().min(left + Duration::from_millis(10))
            }
            Decision::Take => self.take(lease).await,
        }
    }

    /// Writes this replica as the holder over `lease`, under its `resourceVersion`.
    async fn take(&mut self, lease: Lease) -> Duration {
        let previous = holder_of(&lease).map(str::to_owned);
        let mut taken = lease;
        let stamp = now();
        let spec = taken.spec.get_or_insert_with(LeaseSpec::default);
        if previous.as_deref() != Some(self.identity.as_str()) {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            spec.acquire_time = Some(stamp.clone());
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.renew_time = Some(stamp);
        spec.lease_duration_seconds = Some(self.settings.lease_seconds());
        let sent = Instant::now();
        match self.api.replace(LEASE_NAME, &PostParams::default(), &taken).await {
            Ok(lease) => {
                self.won(sent, lease, previous.as_deref());
                self.settings.retry_period
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!("another replica wrote the Lease first");
                self.jittered()
            }
            Err(e) => {
                tracing::warn!(error = %e, "taking the lease failed; trying again");
                self.jittered()
            }
        }
    }

    /// Creates the Lease with this replica as its holder.
    async fn create(&mut self) -> Duration {
        let stamp = now();
        let lease = Lease {
            metadata: kube::api::ObjectMeta {
                name: Some(LEASE_NAME.to_owned()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                acquire_time: Some(stamp.clone()),
                renew_time: Some(stamp),
                lease_duration_seconds: Some(self.settings.lease_seconds()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        let sent = Instant::now();
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(lease) => {
                self.won(sent, lease, None);
                self.settings.retry_period
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Duration::ZERO,
            Err(e) => {
                tracing::warn!(error = %e, "creating the Lease failed (RBAC: get, create, update on leases in the host namespace); trying again");
                self.jittered()
            }
        }
    }

    fn won(&mut self, sent: Instant, lease: Lease, previous: Option<&str>) {
        self.leadership.renewed(sent, self.settings.renew_deadline);
        self.last = Some(lease);
        self.leading = true;
        self.health.following.store(false, Ordering::Relaxed);
        self.metrics.leader(true);
        tracing::info!(identity = %self.identity, previous = previous.unwrap_or("none"), "became the leader");
    }

    /// Stops writing, then clears the holder so that a follower takes over at its next try.
    async fn release(&mut self) {
        if !self.leading {
            return;
        }
        self.leadership.lost();
        self.leading = false;
        self.metrics.leader(false);
        let Some(mut lease) = self.last.take() else { return };
        if holder_of(&lease) != Some(self.identity.as_str()) {
            return;
        }
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        let released = tokio::time::timeout(
            self.settings.retry_period,
            self.api.replace(LEASE_NAME, &PostParams::default(), &lease),
        )
        .await;
        match released {
            Ok(Ok(_)) => tracing::info!("lease released"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "releasing the lease failed; a follower takes over when it expires")
            }
            Err(_) => tracing::warn!("releasing the lease timed out; a follower takes over when it expires"),
        }
    }
}

/// The host-config parser's view of this module, for its tests.
#[cfg(test)]
fn parse(text: &str) -> Result<Option<LeaderElection>, Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct File {
        leader_election: Option<LeaderElectionFile>,
    }
    let file: File = crate::kit::parse_yaml("host.yaml", text.as_bytes())?;
    LeaderElection::resolve("host.yaml", file.leader_election)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, seconds: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: seconds,
            ..Default::default()
        }
    }

    const FIFTEEN: Duration = Duration::from_secs(15);

    #[test]
    fn a_free_released_or_own_lease_is_taken_at_once() {
        assert_eq!(decide(None, "me", Duration::ZERO, FIFTEEN), Decision::Take);
        assert_eq!(
            decide(Some(&spec(None, Some(15))), "me", Duration::ZERO, FIFTEEN),
            Decision::Take
        );
        assert_eq!(
            decide(Some(&spec(Some(""), Some(1))), "me", Duration::ZERO, FIFTEEN),
            Decision::Take,
            "a released lease (empty holder)"
        );
        assert_eq!(
            decide(Some(&spec(Some("me"), Some(15))), "me", Duration::ZERO, FIFTEEN),
            Decision::Take
        );
    }

    #[test]
    fn another_holder_is_followed_until_its_record_is_unchanged_for_its_duration() {
        let other = spec(Some("other"), Some(3));
        assert_eq!(
            decide(Some(&other), "me", Duration::from_secs(1), FIFTEEN),
            Decision::Follow {
                holder: "other".into(),
                left: Duration::from_secs(2)
            },
            "the record's 3 s govern, not this replica's 15 s"
        );
        assert_eq!(
            decide(Some(&other), "me", Duration::from_secs(3), FIFTEEN),
            Decision::Take
        );
        let without_duration = spec(Some("other"), None);
        assert!(matches!(
            decide(Some(&without_duration), "me", Duration::from_secs(14), FIFTEEN),
            Decision::Follow { .. }
        ));
        assert_eq!(
            decide(Some(&without_duration), "me", Duration::from_secs(15), FIFTEEN),
            Decision::Take
        );
    }

    #[test]
    fn settings_default_off_and_are_checked_in_order() {
        assert_eq!(parse("{}\n").expect("valid"), None);
        assert_eq!(
            parse("leaderElection: {}\n").expect("valid"),
            None,
            "off unless enabled"
        );
        assert_eq!(
            parse("leaderElection: {enabled: true}\n").expect("valid"),
            Some(LeaderElection::default())
        );
        assert_eq!(
            parse("leaderElection: {enabled: true, leaseDuration: 3s, renewDeadline: 2s, retryPeriod: 1s}\n")
                .expect("valid"),
            Some(LeaderElection {
                lease_duration: Duration::from_secs(3),
                renew_deadline: Duration::from_secs(2),
                retry_period: Duration::from_secs(1),
            })
        );
        let cases = [
            (
                "leaderElection: {enabled: true, renewDeadline: 15s}\n",
                "shorter than leaseDuration",
            ),
            (
                "leaderElection: {enabled: true, retryPeriod: 10s}\n",
                "shorter than renewDeadline",
            ),
            (
                "leaderElection: {enabled: true, leaseDuration: soon}\n",
                "leaderElection.leaseDuration",
            ),
            ("leaderElection: {enabled: yes please}\n", "host.yaml:1:"),
            ("leaderElection: {enable: true}\n", "enable"),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn identities_differ_between_processes_on_one_host() {
        let (a, b) = (identity(), identity());
        assert_ne!(a, b);
        let base = a.rsplit_once('-').map(|(base, _)| base).expect("a suffix");
        assert!(!base.is_empty());
    }
}
