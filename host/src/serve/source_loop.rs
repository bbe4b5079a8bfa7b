//! The loop of one source: poll (on its timer, its webhook or a reconcile request), and on a
//! new commit or a due retry, one round over its kits: discover, skip the unchanged, render,
//! reconcile in `dependsOn` waves, record backoff.

use super::{Shared, SourceSettings, WEBHOOK_POLL_GAP, effective_limits, pipeline_with};
use crate::alert::{Alert, Event as AlertEvent};
use crate::kit::{self, Discovery, Kit};
use crate::reconcile::{Job, Outcome, short};
use crate::render::{Pipeline, Rendered, input_hash};
use crate::source::{CommitInfo, Snapshot, Source, SourceConfig};
use crate::status;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// What a source loop remembers of one kit.
#[derive(Debug, Default, Clone)]
struct KitState {
    /// Input hash of the last successful apply.
    applied_hash: String,
    /// Input hash of the last attempt.
    attempted_hash: String,
    /// Failures in a row.
    failures: u32,
    /// When a failed kit may be tried again.
    retry_at: Option<Instant>,
    /// Ready after its last attempt (dependents wait for it otherwise).
    ready: bool,
    /// Suspended at the last round.
    suspended: bool,
    /// The last reconcile-at value acted on.
    handled_request: String,
    /// Drift detection knows what its last apply wrote.
    tracked: bool,
}

/// The loop of one source.
pub(super) struct SourceLoop {
    shared: Arc<Shared>,
    settings: SourceSettings,
    source: Source,
    kits: BTreeMap<String, KitState>,
    requested: BTreeMap<String, String>,
    /// Pipelines by effective plugin limits (memory MiB, deadline ms).
    pipelines: HashMap<(u64, u64), Arc<Pipeline>>,
    /// When a round that could not finish (a removal, a snapshot) is tried again.
    round_retry_at: Option<Instant>,
    round_failures: u32,
    commit: Option<String>,
    /// Woken by this source's webhook.
    trigger: Option<Arc<tokio::sync::Notify>>,
    polled_once: bool,
    /// Failed polls in a row; the next poll comes after a backoff, not a whole interval, so a
    /// failed poll that a webhook asked for is not lost until the interval.
    poll_failures: u32,
    /// The git notes write-back (`writeBack.notes`), if on.
    notes: Option<super::notes::NoteQueue>,
}

impl SourceLoop {
    pub(super) async fn open(
        shared: Arc<Shared>,
        settings: SourceSettings,
        existing: &[status::KitObject],
        trigger: Option<Arc<tokio::sync::Notify>>,
    ) -> Result<Self> {
        let cache_dir: PathBuf = shared.config.cache_dir.join("sources").join(format!(
            "{}-{}",
            settings.name,
            crate::plugin::sha256_hex(settings.url.as_bytes())
                .get(..12)
                .unwrap_or("0")
        ));
        let config = SourceConfig::new(settings.url.clone(), settings.reference.clone(), cache_dir)
            .with_auth(settings.auth.clone())
            .with_timeout(settings.timeout);
        let source = Source::open_async(config)
            .await
            .with_context(|| format!("opening source {}", settings.name))?;
        let notes = if settings.write_back.notes {
            let opened = source.clone();
            let writer = tokio::task::spawn_blocking(move || opened.notes())
                .await
                .context("opening the notes repository")?
                .with_context(|| format!("source {}: opening the notes repository", settings.name))?;
            tracing::info!(source = %settings.name, reference = crate::source::NOTES_REF, "convergence is written back as git notes");
            Some(super::notes::NoteQueue::start(
                &settings.name,
                writer,
                shared.config.host_namespace.clone(),
                shared.metrics.clone(),
                shared.shutdown.clone(),
                super::notes::Retry::default(),
            ))
        } else {
            None
        };
        // What earlier runs applied: an unchanged kit is neither rendered nor written again.
        let kits = existing
            .iter()
            .filter(|k| k.spec.source == settings.name)
            .map(|k| {
                (
                    k.name.clone(),
                    KitState {
                        applied_hash: k.status.last_applied_input_hash.clone(),
                        ready: k.status.is_ready(),
                        suspended: k.spec.suspend,
                        handled_request: k.status.last_handled_reconcile_at.clone(),
                        ..KitState::default()
                    },
                )
            })
            .collect();
        Ok(SourceLoop {
            shared,
            settings,
            source,
            kits,
            requested: BTreeMap::new(),
            pipelines: HashMap::new(),
            round_retry_at: None,
            round_failures: 0,
            commit: None,
            trigger,
            polled_once: false,
            poll_failures: 0,
            notes,
        })
    }

    fn stopping(&self) -> bool {
        *self.shared.shutdown.borrow()
    }

    fn backoff(&self, failures: u32) -> Duration {
        let initial = self.shared.config.retry_initial;
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
        initial.saturating_mul(factor).min(self.shared.config.retry_max)
    }

    /// The interval plus up to 10% jitter, so sources polled together drift apart.
    fn next_poll(&self) -> Instant {
        let interval = self.settings.interval;
        let random = std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
        let jitter = interval.mul_f64((random % 1000) as f64 / 10_000.0);
        Instant::now() + interval + jitter
    }

    pub(super) async fn run(mut self) {
        let name = self.settings.name.clone();
        let span = tracing::info_span!("source", source = %name);
        let mut requests = self.shared.requests.subscribe();
        let mut stop = self.shared.shutdown.clone();
        let mut next_poll = Instant::now();
        let mut last_poll: Option<Instant> = None;
        loop {
            let retry = self
                .kits
                .values()
                .filter_map(|k| k.retry_at)
                .chain(self.round_retry_at)
                .min();
            let wake = retry.map_or(next_poll, |r| r.min(next_poll));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                request = requests.recv() => match request {
                    Ok((kit, at)) => {
                        let owned = self.kits.contains_key(&kit);
                        if owned && self.kits.get(&kit).is_none_or(|k| k.handled_request != at) {
                            self.requested.insert(kit, at);
                        } else {
                            continue;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = stop.changed() => {}
                _ = async {
                    match &self.trigger {
                        Some(trigger) => trigger.notified().await,
                        None => std::future::pending().await,
                    }
                } => {
                    // A push webhook: poll now (the commit still comes from the remote's ref),
                    // or, right after a poll, once the gap has passed: a burst of calls
                    // becomes one or two polls.
                    let now = Instant::now();
                    let earliest = last_poll.map_or(now, |l| (l + WEBHOOK_POLL_GAP).max(now));
                    next_poll = next_poll.min(earliest);
                }
            }
            if self.stopping() {
                break;
            }
            let now = Instant::now();
            let mut changed = false;
            if now >= next_poll {
                next_poll = self.next_poll();
                last_poll = Some(now);
                use tracing::Instrument;
                let started = std::time::Instant::now();
                let polled = self.source.poll_async().instrument(span.clone()).await;
                self.shared
                    .metrics
                    .polled(&name, started.elapsed(), polled.is_ok());
                if !self.polled_once {
                    self.polled_once = true;
                    let left = self
                        .shared
                        .unpolled
                        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    if left <= 1 {
                        self.shared
                            .health
                            .sources_polled
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                match polled {
                    Ok(outcome) => {
                        self.poll_failures = 0;
                        changed = self.commit.as_deref() != Some(outcome.commit());
                        if changed {
                            tracing::info!(parent: &span, commit = %short(outcome.commit()), "new revision");
                        }
                        self.commit = Some(outcome.commit().to_owned());
                    }
                    Err(e) => {
                        self.poll_failures += 1;
                        let retry = self.backoff(self.poll_failures).min(self.settings.interval);
                        next_poll = next_poll.min(Instant::now() + retry);
                        tracing::warn!(parent: &span, error = %e, ?retry, "poll failed; kits stay at their last revision");
                    }
                }
            }
            let Some(commit) = self.commit.clone() else {
                continue;
            };
            let due = changed
                || !self.requested.is_empty()
                || self.round_retry_at.is_some_and(|r| r <= now)
                || self.kits.values().any(|k| k.retry_at.is_some_and(|r| r <= now));
            if due {
                use tracing::Instrument;
                let span = tracing::info_span!(parent: &span, "round", revision = %short(&commit));
                self.round(&commit).instrument(span).await;
            }
        }
        tracing::info!(parent: &span, "source loop stopped");
    }

    fn retry_round(&mut self, why: &str) {
        self.round_failures += 1;
        let delay = self.backoff(self.round_failures);
        tracing::warn!(why, ?delay, "round incomplete; trying again later");
        self.round_retry_at = Some(Instant::now() + delay);
    }

    /// The pipeline for the revision's plugin limits, shared between rounds with the same.
    fn pipeline(&mut self, discovery: &Discovery) -> Result<Arc<Pipeline>, (&'static str, String)> {
        let limits =
            effective_limits(&self.shared.config, discovery).map_err(|e| ("kitsync/plugin-limits", e))?;
        let key = (
            limits.memory_mib,
            u64::try_from(limits.deadline.as_millis()).unwrap_or(u64::MAX),
        );
        if let Some(p) = self.pipelines.get(&key) {
            return Ok(p.clone());
        }
        let pipeline = Arc::new(
            pipeline_with(&self.shared.config, limits)
                .map_err(|e| ("kitsync/plugin-engine", e))?
                .with_metrics(self.shared.metrics.clone()),
        );
        self.pipelines.insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// One pass over the kits at `commit`.
    async fn round(&mut self, commit: &str) {
        self.round_retry_at = None;
        let source = self.source.clone();
        let path = self.settings.path.clone();
        let at = commit.to_owned();
        let read =
            tokio::task::spawn_blocking(move || -> Result<(Snapshot, CommitInfo), crate::source::Error> {
                let snapshot = source.snapshot(&at)?.subtree(&path);
                let info = source.commit_info(&at)?;
                Ok((snapshot, info))
            })
            .await;
        let (snapshot, info) = match read {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => return self.retry_round(&format!("reading revision {}: {e}", short(commit))),
            Err(e) => return self.retry_round(&format!("reading revision {}: {e}", short(commit))),
        };
        let snapshot = Arc::new(snapshot);
        let discovery = Arc::new(kit::discover(&snapshot));
        let shared = self.shared.clone();
        let writer = shared.reconciler.status();

        // Kits this source owned before: in memory, or as Kits naming this source.
        let mut known: BTreeSet<String> = self.kits.keys().cloned().collect();
        for name in writer.kits().await {
            if writer
                .spec(&name)
                .await
                .is_some_and(|s| s.source == self.settings.name)
            {
                known.insert(name);
            }
        }
        if discovery.kits.is_empty() {
            if !known.is_empty() {
                let message = format!(
                    "revision {} of source {} has no kits (no kit.yaml under {:?}); an emptied or wrong tree prunes nothing",
                    short(commit),
                    self.settings.name,
                    if self.settings.path.is_empty() {
                        "/"
                    } else {
                        &self.settings.path
                    }
                );
                tracing::error!(reason = %message, "source stalled");
                for name in &known {
                    self.shared.reconciler.stall(name, commit, &message).await;
                }
            }
            return;
        }
        for name in known.iter().filter(|n| !discovery.kits.contains_key(*n)) {
            if self.stopping() {
                return;
            }
            self.shared.drift.forget(name).await;
            self.shared.alerter.forget(name);
            self.shared.cancel_health_wait(name);
            match self.shared.reconciler.remove(name, commit).await {
                Ok(_) => {
                    self.kits.remove(name);
                }
                Err(e) => {
                    tracing::warn!(kit = %name, error = %e, "removing a kit failed");
                    self.retry_round(&format!("removing kit {name}"));
                }
            }
        }

        let pipeline = self.pipeline(&discovery);
        let now = Instant::now();
        let trusted = shared.config.trusted.clone();
        let mut work: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
        let mut observe: BTreeSet<String> = BTreeSet::new();
        for (name, entry) in &discovery.kits {
            if let Some(spec) = writer.spec(name).await
                && !spec.source.is_empty()
                && spec.source != self.settings.name
            {
                // A source renamed or removed from the host config (e.g. from `--source`,
                // named `default`, to a config file): its Kits are adopted, not stranded.
                if !self.shared.config.sources.iter().any(|s| s.name == spec.source) {
                    tracing::info!(kit = %name, from = %spec.source, "adopting a kit of a source no longer configured");
                } else {
                    tracing::error!(kit = %name, owner = %spec.source, "kit name already used by another source; skipped");
                    continue;
                }
            }
            let state = self.kits.entry(name.clone()).or_default();
            let requested = self.requested.remove(name);
            if let (Ok(platform), Ok(kit)) = (&discovery.platform, entry) {
                if kit.suspend {
                    if !state.suspended {
                        tracing::info!(kit = %name, "suspended: not reconciled until suspend is cleared");
                        self.shared.reconciler.suspended(&self.settings.name, kit).await;
                        state.suspended = true;
                    }
                    continue;
                }
                state.suspended = false;
                let hash = input_hash(&snapshot, platform, kit, &trusted);
                if requested.is_none() && hash == state.applied_hash && state.ready {
                    // Applied by an earlier run: rendered once, without writing, so drift
                    // detection knows what that apply wrote.
                    if !state.tracked {
                        observe.insert(name.clone());
                    }
                    continue;
                }
                if requested.is_none()
                    && hash == state.attempted_hash
                    && state.retry_at.is_some_and(|r| r > now)
                {
                    continue;
                }
                if hash != state.attempted_hash {
                    self.shared.alerter.notify(Alert::new(
                        name,
                        commit,
                        AlertEvent::RevisionDetected,
                        format!("revision {} changes kit {name}", short(commit)),
                    ));
                }
                work.insert(name.clone(), (hash, requested));
            } else {
                // A kit or platform file that cannot be read: record why, with backoff; a new
                // commit is tried at once.
                let key = format!("unreadable@{commit}");
                if requested.is_none()
                    && state.attempted_hash == key
                    && state.retry_at.is_some_and(|r| r > now)
                {
                    continue;
                }
                work.insert(name.clone(), (key, requested));
            }
        }
        if work.is_empty() && observe.is_empty() {
            return;
        }

        // Each kit is rendered just before its reconcile, inside its slot, so no more than
        // `concurrency` kits' objects are in memory at once (all of them were, before: the
        // peak of a first round over 100 kits x 100 objects).
        let render = Renderer {
            pipeline: pipeline.map_err(|(rule, message)| (rule, Arc::new(message))),
            snapshot: snapshot.clone(),
            discovery: discovery.clone(),
        };
        let ok_kits: BTreeMap<String, Kit> = discovery
            .kits
            .iter()
            .filter_map(|(n, k)| Some((n.clone(), k.as_ref().ok()?.clone())))
            .collect();
        let platform = discovery.platform.as_ref().ok();
        for name in &observe {
            let r = render.kit(name).await;
            let job = Job {
                source: &self.settings.name,
                kit: ok_kits.get(name),
                platform,
                rendered: r,
                commit: &info,
                reconcile_at: None,
            };
            match self.shared.reconciler.observe(job).await {
                Ok(applied) => {
                    self.shared.drift.track(applied).await;
                    if let Some(state) = self.kits.get_mut(name) {
                        state.tracked = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(kit = %name, error = %e, "cannot watch the kit for drift until its next apply")
                }
            }
        }
        let names: BTreeSet<String> = work.keys().cloned().collect();
        let unreadable: Vec<String> = names
            .iter()
            .filter(|n| !ok_kits.contains_key(*n))
            .cloned()
            .collect();
        let mut waves = vec![unreadable];
        let ok_names: BTreeSet<String> = names
            .iter()
            .filter(|n| ok_kits.contains_key(*n))
            .cloned()
            .collect();
        waves.extend(kit::waves(&ok_kits, &ok_names));

        for wave in waves {
            if self.stopping() {
                tracing::info!("shutting down: remaining kits of this round not started");
                return;
            }
            // Each kit of the wave runs as its own task on owned data, bounded by the slots.
            let mut tasks = tokio::task::JoinSet::new();
            for name in &wave {
                let render = render.clone();
                let kit = ok_kits.get(name).cloned();
                let (hash, requested) = work.get(name).cloned().unwrap_or_default();
                let waiting_for = kit.as_ref().and_then(|k| {
                    k.depends_on
                        .iter()
                        .find(|d| !self.kits.get(*d).is_some_and(|s| s.ready))
                        .cloned()
                });
                let shared = self.shared.clone();
                let source_name = self.settings.name.clone();
                let notes = self.notes.clone();
                let platform = platform.cloned();
                let info = info.clone();
                let name = name.clone();
                tasks.spawn(async move {
                    let _slot = shared.slots.acquire().await;
                    let r = render.kit(&name).await;
                    let job = Job {
                        source: &source_name,
                        kit: kit.as_ref(),
                        platform: platform.as_ref(),
                        rendered: r,
                        commit: &info,
                        reconcile_at: requested.clone(),
                    };
                    let outcome = match &waiting_for {
                        Some(dep) => shared.reconciler.waiting(job, dep).await,
                        None => {
                            // Its own writes are not drift.
                            shared.drift.pause(&name).await;
                            let outcome = shared.reconciler.reconcile(job).await;
                            match &outcome {
                                Outcome::Applied { applied, .. } => {
                                    shared.drift.track(applied.clone()).await;
                                    shared.spawn_health_wait(applied.clone(), notes);
                                    shared.alerter.notify(Alert::new(
                                        &name,
                                        &info.commit,
                                        AlertEvent::Applied,
                                        format!("kit {name} applied at revision {}", short(&info.commit)),
                                    ));
                                    shared.alerter.notify(Alert::new(
                                        &name,
                                        &info.commit,
                                        AlertEvent::Recovered,
                                        format!("kit {name} recovered at revision {}", short(&info.commit)),
                                    ));
                                }
                                Outcome::Failed {
                                    message,
                                    retryable,
                                    wrote,
                                } => {
                                    if *wrote {
                                        // Part of the new revision is on the cluster: the last
                                        // apply is no longer what to correct back to.
                                        shared.drift.forget(&name).await;
                                    } else {
                                        shared.drift.resume(&name).await;
                                    }
                                    if !retryable {
                                        shared.alerter.notify(Alert::new(
                                            &name,
                                            &info.commit,
                                            AlertEvent::Failed,
                                            message.clone(),
                                        ));
                                    }
                                }
                            }
                            outcome
                        }
                    };
                    (name, hash, requested, outcome)
                });
            }
            let mut results = Vec::new();
            while let Some(done) = tasks.join_next().await {
                match done {
                    Ok(result) => results.push(result),
                    Err(e) => tracing::error!(error = %e, "a reconcile task failed"),
                }
            }
            for (name, hash, requested, outcome) in results {
                let failures = self.kits.get(&name).map_or(0, |s| s.failures);
                let delay = self.backoff(failures + 1);
                let state = self.kits.entry(name).or_default();
                state.attempted_hash = hash.clone();
                if let Some(at) = requested {
                    state.handled_request = at;
                }
                match outcome {
                    Outcome::Applied { .. } => {
                        state.tracked = true;
                        state.applied_hash = hash;
                        state.failures = 0;
                        state.retry_at = None;
                        state.ready = true;
                    }
                    Outcome::Failed { .. } => {
                        state.failures += 1;
                        state.retry_at = Some(Instant::now() + delay);
                        state.ready = false;
                    }
                }
            }
        }
        if self.round_retry_at.is_none() {
            self.round_failures = 0;
        }
    }
}

/// Renders one kit of a round's revision, off the async runtime.
#[derive(Clone)]
struct Renderer {
    /// The revision's pipeline, or why every kit of it is refused.
    pipeline: Result<Arc<Pipeline>, (&'static str, Arc<String>)>,
    snapshot: Arc<crate::source::Snapshot>,
    discovery: Arc<kit::Discovery>,
}

impl Renderer {
    async fn kit(&self, name: &str) -> Rendered {
        let pipeline = match &self.pipeline {
            Ok(pipeline) => pipeline.clone(),
            Err((rule, message)) => return crate::render::blocked(name, &self.discovery, rule, message),
        };
        let (snapshot, discovery, wanted) = (self.snapshot.clone(), self.discovery.clone(), name.to_owned());
        let started = std::time::Instant::now();
        let out = tokio::task::spawn_blocking(move || {
            pipeline
                .render_selected(&snapshot, &discovery, |n| n == wanted)
                .into_iter()
                .next()
        })
        .await;
        match out {
            Ok(Some(rendered)) => {
                tracing::debug!(kit = name, ms = started.elapsed().as_millis(), "rendered");
                rendered
            }
            // The kit is in the discovery it was chosen from, so only a panic gets here.
            Ok(None) | Err(_) => crate::render::blocked(
                name,
                &self.discovery,
                "kitsync/render-task",
                "the render task failed; retried with backoff",
            ),
        }
    }
}
