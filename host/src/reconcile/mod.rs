//! One kit at one revision: its render goes to the apply engine with the options of its
//! `kit.yaml` and the platform file, and the outcome becomes the Kit's status and Events.
//!
//! A kit that fails anywhere (render, policy, guard, apply) changes nothing past what the
//! apply engine already made safe; its status keeps the last applied revision and says why
//! the new one was not applied. The service ([`crate::serve`]) decides which kits to
//! reconcile and when; this module does one.

mod drift;
mod health;

pub use drift::DRIFTED;
pub use health::{HEALTHY, Verdict};

use crate::apply::{self, Applier, Target};
use crate::diagnostic::Severity;
use crate::kit::{Kit, Platform};
use crate::metrics::{Metrics, ReconcileResult};
use crate::render::Rendered;
use crate::source::CommitInfo;
use crate::status::{
    self, CommitRecord, FindingRecord, InventoryRef, KitSpec, KitStatus, MAX_FINDINGS, StatusWriter,
};
use std::sync::Arc;

/// What a successful reconcile applied: what drift detection compares the cluster with.
#[derive(Debug, Clone)]
pub struct AppliedKit {
    /// Where and as whom it was applied.
    pub target: Target,
    /// The objects as applied (after the host's defaults).
    pub objects: Vec<AppliedObject>,
    /// Per object ([`apply::Entry::key_text`]), what the apply recorded.
    pub records: std::collections::BTreeMap<String, apply::Applied>,
    /// The kit's `selfHeal`.
    pub self_heal: bool,
    /// The kit's `timeout`: how long its objects may take to become ready.
    pub timeout: std::time::Duration,
}

/// One applied object as drift detection and health keep it: its identity and its applied
/// configuration as compact JSON. A `serde_json::Value` tree of the same object takes about
/// four times the bytes, and the service keeps every applied object of every kit (10,000 in
/// the drift benchmark); the tree is rebuilt only when a watch event or a correction needs it.
#[derive(Debug, Clone)]
pub struct AppliedObject {
    /// Its identity.
    pub id: crate::object::ObjectRef,
    json: Box<str>,
}

impl AppliedObject {
    /// Keeps `object`'s identity and body.
    pub fn new(object: &crate::object::Object) -> Self {
        AppliedObject {
            id: object.id.clone(),
            // Serialising a `Value` cannot fail: its keys are strings.
            json: serde_json::to_string(&object.value)
                .unwrap_or_default()
                .into_boxed_str(),
        }
    }

    /// The applied configuration.
    ///
    /// # Errors
    /// Only if the stored text does not parse, which [`AppliedObject::new`] never writes.
    pub fn value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.json)
    }

    /// The object, for a re-apply.
    ///
    /// # Errors
    /// As [`AppliedObject::value`].
    pub fn object(&self) -> Result<crate::object::Object, serde_json::Error> {
        Ok(crate::object::Object {
            id: self.id.clone(),
            origin: None,
            value: self.value()?,
        })
    }
}

fn applied_objects(objects: &[crate::object::Object]) -> Vec<AppliedObject> {
    objects.iter().map(AppliedObject::new).collect()
}

/// What became of one reconcile.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Applied and recorded; `changed` objects were written or pruned.
    Applied {
        /// Objects written (created, updated or pruned).
        changed: usize,
        /// What was applied.
        applied: Arc<AppliedKit>,
    },
    /// Not applied; the kit stays at its last applied revision.
    Failed {
        /// Worth retrying without a new commit (the API server was unavailable).
        retryable: bool,
        /// Some objects of the new revision were written before the failure.
        wrote: bool,
        /// Why, in one line.
        message: String,
    },
}

/// Reconciles kits into one cluster and records their status.
pub struct Reconciler {
    applier: Applier,
    status: StatusWriter,
    host_namespace: String,
    default_service_account: Option<String>,
    metrics: Arc<Metrics>,
    /// Health waits, with the host's identity; one for the service so its discovery cache
    /// is kept across revisions.
    waiter: crate::health::Waiter,
}

/// The kit to reconcile and where it comes from.
pub struct Job<'a> {
    /// The source's name.
    pub source: &'a str,
    /// The kit, when its kit.yaml could be read.
    pub kit: Option<&'a Kit>,
    /// The platform file, when it could be read.
    pub platform: Option<&'a Platform>,
    /// Its render at this revision (its objects move to the apply engine).
    pub rendered: Rendered,
    /// The commit.
    pub commit: &'a CommitInfo,
    /// The `kitsync.dev/reconcile-at` request this reconcile answers, if any.
    pub reconcile_at: Option<String>,
}

impl Reconciler {
    /// A reconciler writing Kits to `host_namespace` with `status`.
    pub fn new(applier: Applier, status: StatusWriter, host_namespace: &str) -> Self {
        Reconciler {
            waiter: crate::health::Waiter::new(applier.client()),
            applier,
            status,
            host_namespace: host_namespace.to_owned(),
            default_service_account: None,
            metrics: Arc::default(),
        }
    }

    /// Records reconciles, objects and Kit conditions in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Kits without `serviceAccount` write as `account` (in their namespace), never as the
    /// host.
    pub fn with_default_service_account(mut self, account: Option<String>) -> Self {
        self.default_service_account = account;
        self
    }

    /// The status writer (the service reads the last known statuses from it).
    pub fn status(&self) -> &StatusWriter {
        &self.status
    }

    fn spec(&self, job: &Job<'_>) -> KitSpec {
        match job.kit {
            Some(kit) => spec_of(job.source, kit),
            None => KitSpec {
                source: job.source.to_owned(),
                namespace: job.rendered.namespace.clone(),
                ..KitSpec::default()
            },
        }
    }

    /// Starts a status for `kit` at `generation` from the last one.
    /// Creates or updates the Kit's spec and starts its next status from the last one; a
    /// Kit that cannot be written is a retryable failure (nothing is applied unrecorded).
    async fn begin(&self, job: &Job<'_>) -> Result<KitStatus, Outcome> {
        let name = &job.rendered.kit;
        let generation = self.status.ensure(name, &self.spec(job)).await.map_err(|message| {
            tracing::warn!(kit = %name, reason = %message, "cannot record the kit's status; not going on");
            Outcome::Failed {
                retryable: true,
                wrote: false,
                message,
            }
        })?;
        let mut status = self.status.status(name).await.unwrap_or_default();
        status.observed_generation = generation;
        status.last_attempted_revision = job.commit.commit.clone();
        Ok(status)
    }

    /// Records a failure of `revision`: Ready=False (and Stalled unless `retryable`), a
    /// Warning Event, a log line. The kit stays at its last applied revision.
    async fn fail(
        &self,
        name: &str,
        revision: &str,
        mut status: KitStatus,
        reason: &str,
        message: String,
        retryable: bool,
    ) -> Outcome {
        tracing::warn!(reason = %message, retryable, "{reason}: the kit stays at its last applied revision");
        status.set_condition("Ready", false, reason, &message);
        if retryable {
            status.clear_condition("Stalled");
        } else {
            status.set_condition("Stalled", true, reason, &message);
        }
        status.clear_condition("Reconciling");
        self.record(name, &status).await;
        self.status
            .event(name, revision, status::Severity::Warning, reason, &message)
            .await;
        Outcome::Failed {
            retryable,
            wrote: false,
            message,
        }
    }

    /// Applies one rendered kit and records the outcome (logs carry source, kit and revision).
    pub async fn reconcile(&self, job: Job<'_>) -> Outcome {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "reconcile",
            source = job.source,
            kit = %job.rendered.kit,
            revision = %short(&job.commit.commit)
        );
        let kit = job.rendered.kit.clone();
        let started = std::time::Instant::now();
        let outcome = self.reconcile_in_span(job).instrument(span).await;
        let result = match outcome {
            Outcome::Applied { .. } => ReconcileResult::Applied,
            Outcome::Failed { .. } => ReconcileResult::Failed,
        };
        self.metrics.reconciled(&kit, result, started.elapsed());
        outcome
    }

    async fn reconcile_in_span(&self, mut job: Job<'_>) -> Outcome {
        let name = job.rendered.kit.clone();
        let revision = job.commit.commit.clone();
        let mut status = match self.begin(&job).await {
            Ok(status) => status,
            Err(outcome) => return outcome,
        };
        let was_failing = status.condition("Ready").is_some_and(|c| c.status == "False");
        if let Some(at) = &job.reconcile_at {
            status.last_handled_reconcile_at = at.clone();
        }
        status.findings = findings(&job.rendered);

        let (Some(kit), Some(platform), None) = (job.kit, job.platform, &job.rendered.failed) else {
            let message = format!(
                "revision {}: {}",
                short(&revision),
                failure_message(&job.rendered)
            );
            return self
                .fail(&name, &revision, status, "RenderFailed", message, false)
                .await;
        };

        let mut reconciling = status.clone();
        reconciling.set_condition(
            "Reconciling",
            true,
            "Progressing",
            &format!("applying revision {}", short(&revision)),
        );
        self.record(&name, &reconciling).await;

        let target = self.target(kit, platform, &revision);
        let started = std::time::Instant::now();
        let objects = std::mem::take(&mut job.rendered.objects);
        let result = self.applier.apply(&target, objects).await;
        status.clear_condition("Reconciling");
        match result {
            Ok(report) => {
                let count = |want: fn(&apply::Outcome) -> bool| {
                    report.objects.iter().filter(|(_, o)| want(o)).count()
                };
                let applied = count(|o| matches!(o, apply::Outcome::Applied));
                let unchanged = count(|o| matches!(o, apply::Outcome::Unchanged));
                let pruned = count(|o| matches!(o, apply::Outcome::Pruned));
                self.metrics.objects(&name, applied, unchanged, pruned);
                let mut message = format!(
                    "Applied revision {}: {} objects ({applied} written, {unchanged} unchanged, {pruned} pruned)",
                    short(&revision),
                    report.inventory.entries.len()
                );
                let kept: Vec<String> = report
                    .objects
                    .iter()
                    .filter_map(|(id, o)| match o {
                        apply::Outcome::Kept(why) => Some(format!("{id}: {why}")),
                        _ => None,
                    })
                    .collect();
                if let Some(first) = kept.first() {
                    message.push_str(&format!("; {} not pruned ({first})", kept.len()));
                }
                if let Some(why) = &report.prune_refused {
                    message.push_str(&format!("; prune refused: {why}"));
                }
                tracing::info!(
                    applied,
                    unchanged,
                    pruned,
                    ms = started.elapsed().as_millis(),
                    "kit applied"
                );
                status.set_condition("Ready", true, "ReconciliationSucceeded", &message);
                status.clear_condition("Stalled");
                // Everything was just applied: whatever had drifted is back.
                if status.condition(DRIFTED).is_some() {
                    status.set_condition(DRIFTED, false, "InSync", "applied");
                }
                status.last_applied_revision = revision.clone();
                status.last_applied_commit = Some(CommitRecord {
                    author: job.commit.author.clone(),
                    time: job.commit.time.clone(),
                    subject: job.commit.subject.clone(),
                });
                status.last_applied_input_hash = job.rendered.input_hash.clone();
                status.objects = report.inventory.entries.len();
                status.inventory = Some(InventoryRef {
                    namespace: self.host_namespace.clone(),
                    name: apply::inventory::configmap_name(&name),
                });
                self.record(&name, &status).await;
                if was_failing {
                    self.status
                        .event(&name, &revision, status::Severity::Normal, "Recovered", &message)
                        .await;
                }
                if applied + pruned > 0 {
                    self.status
                        .event(&name, &revision, status::Severity::Normal, "Applied", &message)
                        .await;
                }
                if pruned > 0 {
                    let names: Vec<String> = report
                        .objects
                        .iter()
                        .filter(|(_, o)| matches!(o, apply::Outcome::Pruned))
                        .map(|(id, _)| id.to_string())
                        .collect();
                    self.status
                        .event(
                            &name,
                            &revision,
                            status::Severity::Normal,
                            "Pruned",
                            &format!("pruned {}", names.join(", ")),
                        )
                        .await;
                }
                Outcome::Applied {
                    changed: applied + pruned,
                    applied: Arc::new(AppliedKit {
                        target,
                        objects: applied_objects(&report.desired),
                        records: report.inventory.applied,
                        self_heal: kit.self_heal,
                        timeout: kit.timeout,
                    }),
                }
            }
            Err(error) => {
                let message = format!("revision {}: {}", short(&revision), apply_failure(&error));
                // Refused by a guard, or a first stage that applied nothing: nothing written.
                let wrote = match &error {
                    apply::Error::Guard { .. } => false,
                    apply::Error::Stage { applied, .. } => !applied.is_empty(),
                    _ => true,
                };
                let outcome = self
                    .fail(
                        &name,
                        &revision,
                        status,
                        "ApplyFailed",
                        message,
                        error.is_retryable(),
                    )
                    .await;
                match outcome {
                    Outcome::Failed {
                        retryable, message, ..
                    } => Outcome::Failed {
                        retryable,
                        wrote,
                        message,
                    },
                    applied => applied,
                }
            }
        }
    }

    /// Where and as whom `kit` applies at `revision`.
    fn target(&self, kit: &Kit, platform: &Platform, revision: &str) -> Target {
        Target {
            kit: kit.name.clone(),
            namespace: kit.namespace.clone(),
            host_namespace: self.host_namespace.clone(),
            service_account: kit
                .service_account
                .clone()
                .or_else(|| self.default_service_account.clone()),
            cluster_scoped_allowed: platform.cluster_scoped.contains(&kit.name),
            revision: revision.to_owned(),
            prune: kit.prune,
            force: kit.force,
            recreate: kit.recreate,
            removed: false,
            prune_crds: platform.prune_crds.contains(&kit.name),
        }
    }

    /// What a kit that needs no apply (its inputs equal its last successful apply's, e.g.
    /// after a restart) has on the cluster, for drift detection: its render with the host's
    /// defaults and the records of its stored inventory. Writes nothing.
    ///
    /// # Errors
    /// The render failed, a guard refused an object, or the inventory could not be read.
    pub async fn observe(&self, mut job: Job<'_>) -> Result<Arc<AppliedKit>, String> {
        let (Some(kit), Some(platform), None) = (job.kit, job.platform, &job.rendered.failed) else {
            return Err(failure_message(&job.rendered));
        };
        let target = self.target(kit, platform, &job.commit.commit);
        let objects = self
            .applier
            .prepare(&target, std::mem::take(&mut job.rendered.objects))
            .await
            .map_err(|e| e.to_string())?;
        let inventory = self.applier.inventory(&target).await.map_err(|e| e.to_string())?;
        Ok(Arc::new(AppliedKit {
            target,
            objects: applied_objects(&objects),
            records: inventory.applied,
            self_heal: kit.self_heal,
            timeout: kit.timeout,
        }))
    }

    /// Records that a kit waits for a kit it depends on.
    pub async fn waiting(&self, job: Job<'_>, dependency: &str) -> Outcome {
        let name = job.rendered.kit.clone();
        let message = format!("waiting for kit {dependency}, which it depends on, to be Ready");
        let mut status = match self.begin(&job).await {
            Ok(status) => status,
            Err(outcome) => return outcome,
        };
        status.set_condition("Ready", false, "DependencyNotReady", &message);
        status.clear_condition("Stalled");
        self.record(&name, &status).await;
        tracing::info!(kit = %name, dependency, "dependency not ready; will retry");
        Outcome::Failed {
            retryable: true,
            wrote: false,
            message,
        }
    }

    /// Records `suspend: true`: the Kit's spec says so and nothing is applied.
    pub async fn suspended(&self, source: &str, kit: &Kit) {
        if let Err(message) = self.status.ensure(&kit.name, &spec_of(source, kit)).await {
            tracing::warn!(kit = %kit.name, reason = %message, "cannot record suspension");
        }
    }

    /// Marks a kit Stalled for a reason outside the kit (the revision has no kits at all).
    pub async fn stall(&self, kit: &str, revision: &str, message: &str) {
        let mut status = self.status.status(kit).await.unwrap_or_default();
        status.last_attempted_revision = revision.to_owned();
        status.set_condition("Ready", false, "SourceStalled", message);
        status.set_condition("Stalled", true, "SourceStalled", message);
        self.record(kit, &status).await;
    }

    /// Prunes every object of a kit removed from Git on purpose, then deletes its Kit.
    ///
    /// # Errors
    /// The apply engine's error; the Kit stays so that the next round tries again.
    pub async fn remove(&self, kit: &str, revision: &str) -> Result<usize, apply::Error> {
        let spec = self.status.spec(kit).await.unwrap_or_default();
        let target = Target {
            kit: kit.to_owned(),
            namespace: spec.namespace.clone(),
            host_namespace: self.host_namespace.clone(),
            service_account: spec
                .service_account
                .clone()
                .or_else(|| self.default_service_account.clone()),
            cluster_scoped_allowed: false,
            revision: revision.to_owned(),
            prune: true,
            force: false,
            recreate: false,
            removed: true,
            // A removed kit's CRDs stay: the platform file of the removing revision is not
            // consulted here, and deleting a CRD deletes every object of its kind.
            prune_crds: false,
        };
        let report = self.applier.apply(&target, Vec::new()).await?;
        let pruned = report
            .objects
            .iter()
            .filter(|(_, o)| matches!(o, apply::Outcome::Pruned))
            .count();
        tracing::info!(kit, pruned, revision = %short(revision), "kit removed from Git; its objects were pruned");
        self.metrics.objects(kit, 0, 0, pruned);
        self.metrics.kit_removed(kit);
        self.status
            .event(
                kit,
                revision,
                status::Severity::Normal,
                "Removed",
                &format!(
                    "kit removed at revision {}; {pruned} object(s) pruned",
                    short(revision)
                ),
            )
            .await;
        if let Err(message) = self.status.delete(kit).await {
            tracing::warn!(kit, reason = %message, "could not delete the Kit");
        }
        Ok(pruned)
    }

    /// Changes one part of `kit`'s status from a task beside the reconcile (health, drift)
    /// through [`StatusWriter::update`], so two such changes never undo each other.
    async fn update(&self, kit: &str, change: impl FnOnce(&mut KitStatus) -> bool) {
        match self.status.update(kit, change).await {
            Ok(Some(status)) => {
                self.metrics
                    .kit_status(kit, status.condition_statuses(), &status.last_applied_revision);
            }
            Ok(None) => {}
            Err(message) => tracing::warn!(kit, reason = %message, "could not write the Kit's status"),
        }
    }

    async fn record(&self, kit: &str, status: &KitStatus) {
        self.metrics
            .kit_status(kit, status.condition_statuses(), &status.last_applied_revision);
        if let Err(message) = self.status.write(kit, status).await {
            tracing::warn!(kit, reason = %message, "could not write the Kit's status");
        }
    }
}

/// A Kit's spec: where the kit comes from, as Git says.
fn spec_of(source: &str, kit: &Kit) -> KitSpec {
    KitSpec {
        source: source.to_owned(),
        path: kit.dir.clone(),
        namespace: kit.namespace.clone(),
        suspend: kit.suspend,
        service_account: kit.service_account.clone(),
    }
}

/// The first 12 hex digits of a commit.
pub fn short(revision: &str) -> &str {
    revision.get(..12).unwrap_or(revision)
}

/// The blocking findings of a failed render, in one line, located where possible.
fn failure_message(rendered: &Rendered) -> String {
    let first = rendered
        .findings
        .iter()
        .find(|f| f.diagnostic.severity == Severity::Error)
        .map(|f| match &f.location {
            Some(l) => format!("{}:{}: {}", l.file, l.line, f.diagnostic.message),
            None => f.diagnostic.message.clone(),
        });
    let errors = rendered
        .findings
        .iter()
        .filter(|f| f.diagnostic.severity == Severity::Error)
        .count();
    match (first, errors) {
        (Some(first), 0 | 1) => first,
        (Some(first), n) => format!("{first} (and {} more error(s))", n - 1),
        (None, _) => rendered
            .failed
            .clone()
            .unwrap_or_else(|| "the kit could not be rendered".into()),
    }
}

/// The first few failures of an apply error, in one line.
/// An apply failure in one line, naming the first refused objects and why.
pub fn apply_failure(error: &apply::Error) -> String {
    match error {
        apply::Error::Stage { stage, failed, .. } => {
            let first: Vec<String> = failed
                .iter()
                .take(3)
                .map(|(id, why)| format!("{id}: {why}"))
                .collect();
            format!(
                "stage {stage}: {} object(s) refused: {}{}",
                failed.len(),
                first.join("; "),
                if failed.len() > 3 { "; ..." } else { "" }
            )
        }
        other => other.to_string(),
    }
}

fn findings(rendered: &Rendered) -> Vec<FindingRecord> {
    rendered
        .findings
        .iter()
        .take(MAX_FINDINGS)
        .map(|f| FindingRecord {
            severity: f.diagnostic.severity.to_string(),
            rule: f.diagnostic.rule.clone(),
            message: f.diagnostic.message.chars().take(500).collect(),
            location: f
                .location
                .as_ref()
                .map(|l| format!("{}:{}", l.file, l.line))
                .unwrap_or_default(),
            object: f
                .diagnostic
                .object
                .as_ref()
                .map(|o| o.to_string())
                .unwrap_or_default(),
        })
        .collect()
}
