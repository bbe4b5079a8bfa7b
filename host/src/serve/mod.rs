//! `kitsync serve`: the long-running host. Each source is polled at its interval (with
//! jitter; a ref listing, no fetch unless the ref moved); on a new commit every kit is
//! discovered and the kits whose inputs changed since their last successful apply are
//! rendered with the same [`Pipeline`] `check` uses and reconciled in `dependsOn` order,
//! independent kits concurrently. A failing kit is retried with capped exponential backoff
//! and never holds back the others.
//!
//! Triggers: the poll timer, a kit's backoff timer, and the `kitsync.dev/reconcile-at`
//! annotation on a Kit (set by `kitsync reconcile KIT`), seen through a watch.
//! SIGTERM stops new work, lets reconciles in flight finish and record their status, and
//! returns within the grace period.

pub mod config;
pub mod http;

pub use config::{HostConfig, SourceSettings};

use crate::apply::Applier;
use crate::kit::{self, Discovery, Kit};
use crate::plugin::{Engine, EngineConfig, Limits};
use crate::reconcile::{Job, Outcome, Reconciler, short};
use crate::render::{Pipeline, Rendered, Settings, input_hash};
use crate::source::{CommitInfo, Snapshot, Source, SourceConfig};
use crate::status::{self, StatusWriter};
use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, broadcast, watch};
use tokio::time::Instant;

/// What every source loop shares.
struct Shared {
    config: HostConfig,
    reconciler: Reconciler,
    /// Bounds the kits reconciled at once, across sources.
    slots: Semaphore,
    /// `(kit, reconcile-at value)` requests from the Kit watch.
    requests: broadcast::Sender<(String, String)>,
    shutdown: watch::Receiver<bool>,
    /// What the probes report.
    health: Arc<http::Health>,
    /// Sources not polled yet; `/readyz` waits for 0.
    unpolled: std::sync::atomic::AtomicUsize,
}

/// Runs the service until `shutdown` turns true, then waits (at most the grace period) for
/// reconciles in flight.
///
/// # Errors
/// Start-up failures only: the cluster unreachable, the Kit CRD refused, a source's cache
/// directory unusable. Once running, failures are per kit or per source and are retried.
pub async fn run(
    config: HostConfig,
    kube_config: kube::Config,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let client = kube::Client::try_from(kube_config.clone()).context("creating the Kubernetes client")?;
    let namespace = config.host_namespace.clone();
    ensure_namespace(&client, &namespace).await?;
    status::install_crd(&client).await.map_err(|e| anyhow!(e))?;
    let existing = status::list(&client, &namespace).await.map_err(|e| anyhow!(e))?;
    tracing::info!(
        namespace,
        kits = existing.len(),
        "Kit resource installed; existing Kits read"
    );
    let writer = StatusWriter::new(client.clone(), &namespace, &existing);
    let applier = Applier::new(kube_config)
        .context("creating the apply engine")?
        .with_concurrency(config.apply_concurrency);
    let (requests, _) = broadcast::channel(256);
    let shared = Arc::new(Shared {
        slots: Semaphore::new(config.concurrency),
        reconciler: Reconciler::new(applier, writer, &namespace)
            .with_default_service_account(config.default_service_account.clone()),
        requests,
        shutdown: shutdown.clone(),
        health: Arc::default(),
        unpolled: std::sync::atomic::AtomicUsize::new(config.sources.len()),
        config,
    });

    shared
        .health
        .crd_installed
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // Webhook secrets are read now: a missing one stops the start, with its name.
    let mut hooks = HashMap::new();
    for settings in &shared.config.sources {
        if let Some(webhook) = &settings.webhook {
            let hook = http::hook_for(webhook)
                .map_err(|e| anyhow!("source {}: webhook secret: {e}", settings.name))?;
            if hook.secret.is_none() {
                tracing::warn!(source = %settings.name, "webhook WITHOUT a secret (insecureWebhooks): anyone who can reach it can trigger polls");
            }
            hooks.insert(settings.name.clone(), hook);
        }
    }
    if let Some(addr) = shared.config.probes_listen {
        http::probes(addr, shared.health.clone(), shutdown.clone())
            .await
            .with_context(|| format!("listening for probes on {addr}"))?;
    }
    let triggers: HashMap<String, Arc<tokio::sync::Notify>> = hooks
        .iter()
        .map(|(name, hook)| (name.clone(), hook.trigger.clone()))
        .collect();
    if let Some(addr) = shared.config.webhooks_listen {
        if hooks.is_empty() {
            tracing::warn!(%addr, "webhook receiver started, but no source has a webhook");
        }
        http::webhooks(
            addr,
            hooks,
            shared.config.webhook_max_body_bytes,
            shutdown.clone(),
        )
        .await
        .with_context(|| format!("listening for webhooks on {addr}"))?;
    }

    let mut loops = tokio::task::JoinSet::new();
    loops.spawn(watch_requests(client.clone(), namespace.clone(), shared.clone()));
    for settings in shared.config.sources.clone() {
        let trigger = triggers.get(&settings.name).cloned();
        let source_loop = SourceLoop::open(shared.clone(), settings, &existing, trigger).await?;
        loops.spawn(source_loop.run());
    }
    tracing::info!(sources = shared.config.sources.len(), "kitsync serve started");

    let mut stop = shutdown;
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            break;
        }
    }
    let grace = shared.config.shutdown_grace;
    tracing::info!(?grace, "shutting down: finishing reconciles in flight");
    let drained = tokio::time::timeout(grace, async { while loops.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            ?grace,
            "grace period over with reconciles still running; the inventory written before each apply keeps them tracked"
        );
        loops.abort_all();
    }
    tracing::info!("kitsync serve stopped");
    Ok(())
}

async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    let api: kube::Api<Namespace> = kube::Api::all(client.clone());
    if api
        .get_opt(name)
        .await
        .with_context(|| format!("reading namespace {name}"))?
        .is_some()
    {
        return Ok(());
    }
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.to_owned());
    match api.create(&Default::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating the host namespace {name}")),
    }
}

/// Watches the Kits for a `kitsync.dev/reconcile-at` value not handled yet.
async fn watch_requests(client: kube::Client, namespace: String, shared: Arc<Shared>) {
    use kube::runtime::{WatchStreamExt, watcher};
    let api: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(client, &namespace, &status::kit_resource());
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    let mut stop = shared.shutdown.clone();
    loop {
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(object)) => {
                    let Some(kit) = status::KitObject::from_dynamic(&object) else { continue };
                    if let Some(at) = kit.reconcile_at
                        && at != kit.status.last_handled_reconcile_at
                    {
                        tracing::info!(kit = %kit.name, at, "reconcile requested");
                        let _ = shared.requests.send((kit.name, at));
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "watching Kits failed; retrying"),
                None => break,
            },
            _ = stop.changed() => break,
        }
    }
}

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
}

/// The loop of one source.
struct SourceLoop {
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
}

impl SourceLoop {
    async fn open(
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

    async fn run(mut self) {
        let name = self.settings.name.clone();
        let span = tracing::info_span!("source", source = %name);
        let mut requests = self.shared.requests.subscribe();
        let mut stop = self.shared.shutdown.clone();
        let mut next_poll = Instant::now();
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
                    // A push webhook: poll now (the commit still comes from the remote's ref).
                    next_poll = Instant::now();
                }
            }
            if self.stopping() {
                break;
            }
            let now = Instant::now();
            let mut changed = false;
            if now >= next_poll {
                next_poll = self.next_poll();
                use tracing::Instrument;
                let polled = self.source.poll_async().instrument(span.clone()).await;
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
                        changed = self.commit.as_deref() != Some(outcome.commit());
                        if changed {
                            tracing::info!(parent: &span, commit = %short(outcome.commit()), "new revision");
                        }
                        self.commit = Some(outcome.commit().to_owned());
                    }
                    Err(e) => {
                        tracing::warn!(parent: &span, error = %e, "poll failed; kits stay at their last revision");
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
        let pipeline =
            Arc::new(pipeline_with(&self.shared.config, limits).map_err(|e| ("kitsync/plugin-engine", e))?);
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
        for (name, entry) in &discovery.kits {
            if let Some(spec) = writer.spec(name).await
                && !spec.source.is_empty()
                && spec.source != self.settings.name
            {
                tracing::error!(kit = %name, owner = %spec.source, "kit name already used by another source; skipped");
                continue;
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
                    continue;
                }
                if requested.is_none()
                    && hash == state.attempted_hash
                    && state.retry_at.is_some_and(|r| r > now)
                {
                    continue;
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
        if work.is_empty() {
            return;
        }

        let names: BTreeSet<String> = work.keys().cloned().collect();
        let mut rendered: BTreeMap<String, Rendered> = match &pipeline {
            Ok(pipeline) => {
                let (pipeline, snapshot, discovery) = (pipeline.clone(), snapshot.clone(), discovery.clone());
                let select = names.clone();
                let started = std::time::Instant::now();
                let out = tokio::task::spawn_blocking(move || {
                    pipeline.render_selected(&snapshot, &discovery, |n| select.contains(n))
                })
                .await;
                match out {
                    Ok(out) => {
                        tracing::info!(kits = out.len(), ms = started.elapsed().as_millis(), "rendered");
                        out.into_iter().map(|r| (r.kit.clone(), r)).collect()
                    }
                    Err(e) => return self.retry_round(&format!("render task: {e}")),
                }
            }
            Err((rule, message)) => names
                .iter()
                .map(|n| (n.clone(), crate::render::blocked(n, &discovery, rule, message)))
                .collect(),
        };

        let ok_kits: BTreeMap<String, Kit> = discovery
            .kits
            .iter()
            .filter_map(|(n, k)| Some((n.clone(), k.as_ref().ok()?.clone())))
            .collect();
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

        let platform = discovery.platform.as_ref().ok();
        for wave in waves {
            if self.stopping() {
                tracing::info!("shutting down: remaining kits of this round not started");
                return;
            }
            // Each kit of the wave runs as its own task on owned data, bounded by the slots.
            let mut tasks = tokio::task::JoinSet::new();
            for name in &wave {
                let Some(r) = rendered.remove(name) else { continue };
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
                let platform = platform.cloned();
                let info = info.clone();
                let name = name.clone();
                tasks.spawn(async move {
                    let _slot = shared.slots.acquire().await;
                    let job = Job {
                        source: &source_name,
                        kit: kit.as_ref(),
                        platform: platform.as_ref(),
                        rendered: &r,
                        commit: &info,
                        reconcile_at: requested.clone(),
                    };
                    let outcome = match &waiting_for {
                        Some(dep) => shared.reconciler.waiting(job, dep).await,
                        None => shared.reconciler.reconcile(job).await,
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

/// The plugin limits for a revision under the host's ceilings (the one implementation, shared
/// with `check`, is [`crate::render::effective_limits`]).
///
/// # Errors
/// A platform limit above the host's ceiling, named with both values.
pub fn effective_limits(config: &HostConfig, discovery: &Discovery) -> Result<Limits, String> {
    crate::render::effective_limits(&config.plugin_ceilings, discovery)
}

/// The render pipeline `serve` uses for a revision: the one `check` uses, with the host's
/// namespace, trusted policies and plugin cache.
///
/// # Errors
/// The plugin engine could not start.
pub fn pipeline_with(config: &HostConfig, limits: Limits) -> Result<Pipeline, String> {
    let engine = Engine::new(EngineConfig {
        limits,
        cache_dir: Some(config.cache_dir.join("plugins")),
        ..EngineConfig::default()
    })
    .map_err(|e| format!("starting the plugin engine: {e}"))?;
    Ok(Pipeline::new(
        engine,
        Settings {
            host_namespace: config.host_namespace.clone(),
            trusted: config.trusted.clone(),
        },
    ))
}
