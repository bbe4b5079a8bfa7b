//! The service's Prometheus metrics, served at `/metrics` on the probes address in the
//! Prometheus text format (0.0.4) through the `prometheus-client` crate.
//!
//! Every label value is bounded: kit, source and plugin names come from the host config and
//! from the repository's kit directories (capped by its budgets), results and actions are
//! fixed words, and no error text, URL or secret is ever a label. The last applied revision
//! of a kit is one series per kit (the old series is removed when the revision moves).
//!
//! | family | type | labels |
//! |---|---|---|
//! | `kitsync_reconcile_duration_seconds` | histogram | `kit`, `result` (`applied`, `failed`) |
//! | `kitsync_objects_total` | counter | `kit`, `action` (`applied`, `unchanged`, `pruned`) |
//! | `kitsync_plugin_call_duration_seconds` | histogram | `plugin` (its path in the repository or its trusted name), `stage` (`transform`, `validate`) |
//! | `kitsync_git_poll_duration_seconds` | histogram | `source` |
//! | `kitsync_git_poll_errors_total` | counter | `source` |
//! | `kitsync_webhook_requests_total` | counter | `source` (`unknown` for a path naming no source), `result` |
//! | `kitsync_alerts_total` | counter | `sink`, `event`, `result` (`sent`, `failed`, `dropped`) |
//! | `kitsync_kits` | gauge | `condition` (`Ready`, `Stalled`, `Reconciling`), `status` (`True`, `False`, `Unknown`) |
//! | `kitsync_kit_info` | gauge (always 1) | `kit`, `revision` (the last applied commit) |
//! | `kitsync_drift_total` | counter | `kit`, `action` (`healed`, `reported`, `failed`) |
//! | `kitsync_git_notes_total` | counter | `source`, `result` (`written`, `present`, `failed`, `dropped`) |
//! | `kitsync_build_info` | gauge (always 1) | `version` |
//! | `kitsync_leader` | gauge | none: 1 while this replica leads (always, without leader election) |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KitResult {
    kit: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KitAction {
    kit: String,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginStage {
    plugin: String,
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookResult {
    source: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceResult {
    source: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    sink: String,
    event: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ConditionStatus {
    condition: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KitRevision {
    kit: String,
    revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// What the Kit conditions gauge and the info metric are computed from.
#[derive(Default)]
struct KitView {
    /// Per kit, its conditions as (type, status).
    conditions: BTreeMap<String, Vec<(String, String)>>,
    /// Per kit, the series of the info metric now set.
    revisions: BTreeMap<String, KitRevision>,
    /// Every (condition, status) pair ever counted, so a count that drops to 0 reads 0.
    seen: BTreeSet<ConditionStatus>,
}

/// The metrics of one host process. Cheap to share (`Arc`); every method is a few atomic
/// operations, except [`Metrics::kit_status`], which recounts the kits (a map of kits).
pub struct Metrics {
    registry: Registry,
    reconcile_duration: Histograms<KitResult>,
    objects: Family<KitAction, Counter>,
    plugin_call_duration: Histograms<PluginStage>,
    poll_duration: Histograms<SourceLabel>,
    poll_errors: Family<SourceLabel, Counter>,
    webhook_requests: Family<WebhookResult, Counter>,
    alerts: Family<AlertLabels, Counter>,
    kits: Family<ConditionStatus, Gauge>,
    kit_info: Family<KitRevision, Gauge>,
    drift: Family<KitAction, Counter>,
    notes: Family<SourceResult, Counter>,
    leader: Gauge,
    view: Mutex<KitView>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A reconcile's result, as the `result` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileResult {
    /// Applied (possibly with nothing to write).
    Applied,
    /// Not applied (render, policy, guard or apply failure).
    Failed,
}

/// What became of a webhook call, as the `result` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// A valid push: a poll was triggered.
    Triggered,
    /// Valid, but not a push (ping, other events).
    Ignored,
    /// Missing or wrong signature.
    Unauthorized,
    /// Body over the cap.
    TooLarge,
    /// Signed, but not JSON.
    Malformed,
    /// No such source.
    NotFound,
    /// The sender took longer than the request timeout.
    TimedOut,
}

impl WebhookOutcome {
    fn label(self) -> &'static str {
        match self {
            WebhookOutcome::Triggered => "triggered",
            WebhookOutcome::Ignored => "ignored",
            WebhookOutcome::Unauthorized => "unauthorized",
            WebhookOutcome::TooLarge => "too_large",
            WebhookOutcome::Malformed => "malformed",
            WebhookOutcome::NotFound => "not_found",
            WebhookOutcome::TimedOut => "timed_out",
        }
    }
}

/// What became of one kit's convergence note, as the `result` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteResult {
    /// Pushed in a notes commit.
    Written,
    /// The note already had the line (an earlier run or another replica wrote it).
    Present,
    /// Refused by the remote, or given up after retries.
    Failed,
    /// Never tried: the queue was full, or leadership or the process ended first.
    Dropped,
}

/// What became of an alert at one sink, as the `result` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertResult {
    /// The sink answered 2xx.
    Sent,
    /// Refused by the sink, or given up after retries.
    Failed,
    /// Never tried: the sink's queue was full, or the host shut down first.
    Dropped,
}

impl Metrics {
    /// Every family registered, empty.
    pub fn new() -> Self {
        fn histograms<L>(buckets: fn() -> Histogram) -> Histograms<L>
        where
            L: Clone + std::hash::Hash + Eq,
        {
            Family::new_with_constructor(buckets)
        }
        // Seconds: reconciles take 10 ms to minutes; plugin calls 100 us to the deadline;
        // polls 5 ms to the source timeout.
        let reconcile_duration = histograms(|| Histogram::new(exponential_buckets(0.01, 2.0, 15)));
        let plugin_call_duration = histograms(|| Histogram::new(exponential_buckets(0.0001, 2.5, 14)));
        let poll_duration = histograms(|| Histogram::new(exponential_buckets(0.005, 2.0, 15)));
        let mut registry = Registry::with_prefix("kitsync");
        registry.register(
            "reconcile_duration_seconds",
            "Time to apply one kit at one revision and record its status, by kit and result",
            reconcile_duration.clone(),
        );
        let objects = Family::<KitAction, Counter>::default();
        registry.register(
            "objects",
            "Objects handled by applies, by kit and action (applied, unchanged, pruned)",
            objects.clone(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "Time of one plugin call on one kit's objects, by plugin and stage",
            plugin_call_duration.clone(),
        );
        registry.register(
            "git_poll_duration_seconds",
            "Time of one poll of a source (ref listing, and fetch when the ref moved)",
            poll_duration.clone(),
        );
        let poll_errors = Family::<SourceLabel, Counter>::default();
        registry.register(
            "git_poll_errors",
            "Polls of a source that failed",
            poll_errors.clone(),
        );
        let webhook_requests = Family::<WebhookResult, Counter>::default();
        registry.register(
            "webhook_requests",
            "Webhook calls by source and result",
            webhook_requests.clone(),
        );
        let alerts = Family::<AlertLabels, Counter>::default();
        registry.register(
            "alerts",
            "Alerts by sink, event and result (sent, failed, dropped)",
            alerts.clone(),
        );
        let kits = Family::<ConditionStatus, Gauge>::default();
        registry.register("kits", "Kits whose condition has this status", kits.clone());
        let kit_info = Family::<KitRevision, Gauge>::default();
        registry.register(
            "kit_info",
            "The last applied revision of each kit (value always 1)",
            kit_info.clone(),
        );
        let drift = Family::<KitAction, Counter>::default();
        registry.register(
            "drift",
            "Applied objects found changed or deleted by someone else, by kit and action (healed, reported, failed)",
            drift.clone(),
        );
        let notes = Family::<SourceResult, Counter>::default();
        registry.register(
            "git_notes",
            "Convergences recorded as git notes in their source, by source and result (written, present, failed, dropped)",
            notes.clone(),
        );
        let build = Family::<Version, Gauge>::default();
        build
            .get_or_create(&Version {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "The kitsync version running (value always 1)",
            build,
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica leads (reconciles and writes), 0 while it follows",
            leader.clone(),
        );
        Metrics {
            registry,
            reconcile_duration,
            objects,
            plugin_call_duration,
            poll_duration,
            poll_errors,
            webhook_requests,
            alerts,
            kits,
            kit_info,
            drift,
            notes,
            leader,
            view: Mutex::default(),
        }
    }

    /// Records one reconcile of `kit` that took `elapsed`.
    pub fn reconciled(&self, kit: &str, result: ReconcileResult, elapsed: Duration) {
        let result = match result {
            ReconcileResult::Applied => "applied",
            ReconcileResult::Failed => "failed",
        };
        self.reconcile_duration
            .get_or_create(&KitResult {
                kit: kit.to_owned(),
                result,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records the objects of one apply of `kit`.
    pub fn objects(&self, kit: &str, applied: usize, unchanged: usize, pruned: usize) {
        for (action, n) in [("applied", applied), ("unchanged", unchanged), ("pruned", pruned)] {
            self.objects
                .get_or_create(&KitAction {
                    kit: kit.to_owned(),
                    action,
                })
                .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
        }
    }

    /// Records one drifted object of `kit`: `action` is `healed`, `reported` or `failed`.
    pub fn drift(&self, kit: &str, action: &'static str) {
        self.drift
            .get_or_create(&KitAction {
                kit: kit.to_owned(),
                action,
            })
            .inc();
    }

    /// Records one plugin call (`stage` is `transform` or `validate`).
    pub fn plugin_call(&self, plugin: &str, stage: &'static str, elapsed: Duration) {
        self.plugin_call_duration
            .get_or_create(&PluginStage {
                plugin: plugin.to_owned(),
                stage,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records one poll of `source`.
    pub fn polled(&self, source: &str, elapsed: Duration, ok: bool) {
        let label = SourceLabel {
            source: source.to_owned(),
        };
        self.poll_duration
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
        // Created at the first poll, so a source without errors reads 0, not absent.
        let errors = self.poll_errors.get_or_create(&label);
        if !ok {
            errors.inc();
        }
    }

    /// Records one webhook call; `source` is `None` when the path names no source.
    pub fn webhook(&self, source: Option<&str>, outcome: WebhookOutcome) {
        self.webhook_requests
            .get_or_create(&WebhookResult {
                source: source.unwrap_or("unknown").to_owned(),
                result: outcome.label(),
            })
            .inc();
    }

    /// Records what became of one alert at `sink` (`event` is the alert event's name).
    pub fn alert(&self, sink: &str, event: &'static str, result: AlertResult) {
        let result = match result {
            AlertResult::Sent => "sent",
            AlertResult::Failed => "failed",
            AlertResult::Dropped => "dropped",
        };
        self.alerts
            .get_or_create(&AlertLabels {
                sink: sink.to_owned(),
                event,
                result,
            })
            .inc();
    }

    /// Records what became of one kit's convergence note in `source`.
    pub fn note(&self, source: &str, result: NoteResult) {
        let result = match result {
            NoteResult::Written => "written",
            NoteResult::Present => "present",
            NoteResult::Failed => "failed",
            NoteResult::Dropped => "dropped",
        };
        self.notes
            .get_or_create(&SourceResult {
                source: source.to_owned(),
                result,
            })
            .inc();
    }

    /// Records whether this replica leads now.
    pub fn leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Records the conditions and last applied revision `kit`'s status now has.
    pub fn kit_status<'a>(
        &self,
        kit: &str,
        conditions: impl IntoIterator<Item = (&'a str, &'a str)>,
        last_applied_revision: &str,
    ) {
        let Ok(mut view) = self.view.lock() else {
            return;
        };
        view.conditions.insert(
            kit.to_owned(),
            conditions
                .into_iter()
                .map(|(t, s)| (t.to_owned(), s.to_owned()))
                .collect(),
        );
        if !last_applied_revision.is_empty() {
            let series = KitRevision {
                kit: kit.to_owned(),
                revision: last_applied_revision.to_owned(),
            };
            if let Some(old) = view.revisions.insert(kit.to_owned(), series.clone())
                && old != series
            {
                self.kit_info.remove(&old);
            }
            self.kit_info.get_or_create(&series).set(1);
        }
        self.recount(&mut view);
    }

    /// Forgets a kit removed from Git.
    pub fn kit_removed(&self, kit: &str) {
        let Ok(mut view) = self.view.lock() else {
            return;
        };
        view.conditions.remove(kit);
        if let Some(old) = view.revisions.remove(kit) {
            self.kit_info.remove(&old);
        }
        self.recount(&mut view);
    }

    fn recount(&self, view: &mut KitView) {
        let mut counts: BTreeMap<ConditionStatus, i64> = BTreeMap::new();
        for conditions in view.conditions.values() {
            for (condition, status) in conditions {
                *counts
                    .entry(ConditionStatus {
                        condition: condition.clone(),
                        status: status.clone(),
                    })
                    .or_default() += 1;
            }
        }
        view.seen.extend(counts.keys().cloned());
        for key in &view.seen {
            self.kits
                .get_or_create(key)
                .set(counts.get(key).copied().unwrap_or(0));
        }
    }

    /// Every family in the Prometheus text format (0.0.4), for `/metrics`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug in a label.
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_revision_replaces_its_series_and_counts_follow_conditions() {
        let m = Metrics::new();
        m.kit_status("a", [("Ready", "True")], "1111");
        m.kit_status("b", [("Ready", "False"), ("Stalled", "True")], "");
        m.kit_status("a", [("Ready", "True")], "2222");
        let text = m.encode();
        assert!(
            text.contains(r#"kitsync_kit_info{kit="a",revision="2222"} 1"#),
            "{text}"
        );
        assert!(
            !text.contains("1111"),
            "the old revision's series is gone:\n{text}"
        );
        assert!(
            text.contains(r#"kitsync_kits{condition="Ready",status="True"} 1"#),
            "{text}"
        );
        m.kit_removed("b");
        let text = m.encode();
        assert!(
            text.contains(r#"kitsync_kits{condition="Stalled",status="True"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_webhook_path_is_one_series() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.webhook(None, WebhookOutcome::NotFound);
        }
        let text = m.encode();
        assert!(
            text.contains(r#"kitsync_webhook_requests_total{source="unknown",result="not_found"} 3"#),
            "{text}"
        );
    }
}
