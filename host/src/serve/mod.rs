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
//!
//! Several replicas may run with leader election ([`leader`]): all serve probes, metrics and
//! webhooks; only the one holding the Lease runs the loops above and writes.

pub mod config;
mod drift;
pub mod http;
pub mod leader;
mod notes;
mod source_loop;

use source_loop::SourceLoop;

pub use config::{HostConfig, SourceSettings};

use crate::apply::Applier;
use crate::kit::Discovery;
use crate::leadership::Leadership;
use crate::metrics::Metrics;
use crate::plugin::{Engine, EngineConfig, Limits};
use crate::reconcile::Reconciler;
use crate::render::{Pipeline, Settings};
use crate::status::{self, StatusWriter};
use anyhow::{Context, Result, anyhow};
use axum::http::header as http_header;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{Semaphore, broadcast, watch};

/// The shortest time between two polls of one source that webhooks trigger.
const WEBHOOK_POLL_GAP: Duration = Duration::from_millis(500);

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
    metrics: Arc<Metrics>,
    /// Drift detection (watches on applied kinds).
    drift: drift::Drift,
    /// Alert sinks (never block reconciling).
    alerter: crate::alert::Alerter,
    /// Per kit, the health wait in progress: dropping its sender cancels it (a newer
    /// revision's reconcile starts).
    health_waits: std::sync::Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl Shared {
    /// Cancels `kit`'s health wait, if one runs.
    fn cancel_health_wait(&self, kit: &str) {
        self.health_waits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(kit);
    }

    /// Waits for the objects `applied` wrote to become ready, in its own task (a slow
    /// rollout never holds a reconcile slot), then records `Healthy` and alerts
    /// `converged` or `failed`; a convergence is also queued on `notes`, the source's
    /// write-back when it has one. A newer reconcile of the kit cancels it.
    fn spawn_health_wait(
        self: &Arc<Self>,
        applied: Arc<crate::reconcile::AppliedKit>,
        notes: Option<notes::NoteQueue>,
    ) {
        let kit = applied.target.kit.clone();
        let (cancel, mut cancelled) = watch::channel(false);
        self.health_waits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(kit.clone(), cancel);
        let shared = self.clone();
        tokio::spawn(async move {
            let until = async move {
                let _ = cancelled.changed().await;
            };
            let verdict = shared.reconciler.wait_healthy(&applied, until).await;
            let revision = &applied.target.revision;
            let (alert, converged) = match verdict {
                crate::reconcile::Verdict::Converged(message) => (
                    crate::alert::Alert::new(&kit, revision, crate::alert::Event::Converged, message),
                    true,
                ),
                crate::reconcile::Verdict::Failed(message) => (
                    crate::alert::Alert::new(&kit, revision, crate::alert::Event::Failed, message),
                    false,
                ),
                crate::reconcile::Verdict::Cancelled => return,
            };
            shared.alerter.notify(alert);
            if converged && let Some(notes) = notes {
                notes.converged(&kit, &applied.target.namespace, revision);
            }
        });
    }
}

/// Runs the service until `shutdown` turns true, then waits (at most the grace period) for
/// reconciles in flight.
///
/// Every replica serves the probes, metrics and webhooks. With leader election
/// ([`HostConfig::leader_election`]) only the replica holding the Lease runs the source loops
/// and the Kit watch, and every write goes through clients that refuse it once the lease is
/// not held by this process's clock ([`crate::leadership`]). A replica that loses the lease
/// stops its loops at once and follows again.
///
/// # Errors
/// Start-up failures only: the cluster unreachable, the Kit CRD refused, a source's cache
/// directory unusable (for a replica that wins the lease later: at that moment). Once
/// running, failures are per kit or per source and are retried.
pub async fn run(
    config: HostConfig,
    mut kube_config: kube::Config,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let identity = leader::identity();
    // Every request names this replica: the API server's audit log tells replicas apart even
    // when they share one service account.
    let agent = format!("kitsync/{} ({identity})", env!("CARGO_PKG_VERSION"));
    kube_config.headers.push((
        http_header::USER_AGENT,
        http_header::HeaderValue::from_str(&agent).context("this replica's name as a User-Agent")?,
    ));
    // Reads, the host namespace and the Lease: the writes every replica may make.
    let client = kube::Client::try_from(kube_config.clone()).context("creating the Kubernetes client")?;
    let namespace = config.host_namespace.clone();
    ensure_namespace(&client, &namespace).await?;
    let metrics = Arc::new(Metrics::new());
    let health: Arc<http::Health> = Arc::default();
    let alerter =
        crate::alert::Alerter::start(&config.alerts, metrics.clone()).map_err(|e| anyhow!("alerts: {e}"))?;

    // Webhook secrets are read now: a missing one stops the start, with its name.
    let mut hooks = HashMap::new();
    for settings in &config.sources {
        if let Some(webhook) = &settings.webhook {
            let hook = http::hook_for(webhook)
                .map_err(|e| anyhow!("source {}: webhook secret: {e}", settings.name))?;
            if hook.secret.is_none() {
                tracing::warn!(source = %settings.name, "webhook WITHOUT a secret (insecureWebhooks): anyone who can reach it can trigger polls");
            }
            hooks.insert(settings.name.clone(), hook);
        }
    }
    if let Some(addr) = config.probes_listen {
        http::probes(addr, health.clone(), metrics.clone(), shutdown.clone())
            .await
            .with_context(|| format!("listening for probes on {addr}"))?;
    }
    let triggers: HashMap<String, Arc<tokio::sync::Notify>> = hooks
        .iter()
        .map(|(name, hook)| (name.clone(), hook.trigger.clone()))
        .collect();
    if let Some(addr) = config.webhooks_listen {
        if hooks.is_empty() {
            tracing::warn!(%addr, "webhook receiver started, but no source has a webhook");
        }
        http::webhooks(
            addr,
            hooks,
            config.webhook_max_body_bytes,
            config.webhook_timeout,
            metrics.clone(),
            shutdown.clone(),
        )
        .await
        .with_context(|| format!("listening for webhooks on {addr}"))?;
    }

    let leadership = match config.leader_election {
        None => Leadership::always(),
        Some(_) => Leadership::elected(),
    };
    let gated = leadership
        .client(kube_config.clone())
        .context("creating the Kubernetes client")?;
    let (elector, release) = match config.leader_election {
        None => {
            metrics.leader(true);
            (None, None)
        }
        Some(settings) => {
            let (release, released) = watch::channel(false);
            let elector = leader::Elector::new(
                client.clone(),
                &namespace,
                identity,
                settings,
                leadership.clone(),
                metrics.clone(),
                health.clone(),
            );
            (Some(tokio::spawn(elector.run(released))), Some(release))
        }
    };
    let process = Process {
        gated,
        kube_config,
        leadership,
        metrics,
        health,
        triggers,
        alerter,
    };
    let mut changes = process.leadership.changes();
    let mut stop = shutdown.clone();
    let result = loop {
        // Wait for the lease (at once without election).
        tokio::select! {
            led = changes.wait_for(|leading| *leading) => if led.is_err() { break Ok(()) },
            _ = stop.wait_for(|stop| *stop) => break Ok(()),
        }
        match lead(&config, &process, shutdown.clone()).await {
            Ok(Term::Shutdown) => break Ok(()),
            Ok(Term::Lost) => continue,
            Err(e) => break Err(e),
        }
    };
    // Writes stop before the Lease is cleared, so the next leader's are never overlapped.
    if let Some(release) = release {
        let _ = release.send(true);
    }
    if let Some(elector) = elector {
        let _ = tokio::time::timeout(Duration::from_secs(10), elector).await;
    }
    // Alerts of the last reconciles get a short grace to be delivered.
    process.alerter.shutdown(Duration::from_secs(5)).await;
    tracing::info!("kitsync serve stopped");
    result
}

/// What a replica keeps from one leadership term to the next.
struct Process {
    kube_config: kube::Config,
    /// Writes refused unless `leadership` holds.
    gated: kube::Client,
    leadership: Leadership,
    metrics: Arc<Metrics>,
    health: Arc<http::Health>,
    /// Each source's webhook trigger.
    triggers: HashMap<String, Arc<tokio::sync::Notify>>,
    /// Alert sinks (their dedupe outlives a term).
    alerter: crate::alert::Alerter,
}

/// How a term of leadership ended.
enum Term {
    /// The service is shutting down.
    Shutdown,
    /// The lease was lost: follow again.
    Lost,
}

/// One term as the leader (or the whole run, without election): install the Kit CRD, read
/// the Kits, run the source loops and the Kit watch until shutdown or the lease is lost.
/// Everything is read again at each term: another replica changed the Kits in between.
async fn lead(config: &HostConfig, process: &Process, shutdown: watch::Receiver<bool>) -> Result<Term> {
    let namespace = config.host_namespace.clone();
    let client = process.gated.clone();
    let started = async {
        status::install_crd(&client, &namespace)
            .await
            .map_err(|e| anyhow!(e))?;
        let existing = status::list(&client, &namespace).await.map_err(|e| anyhow!(e))?;
        tracing::info!(
            namespace,
            kits = existing.len(),
            "Kit resource installed; existing Kits read"
        );
        let applier = Applier::with_leadership(process.kube_config.clone(), process.leadership.clone())
            .context("creating the apply engine")?
            .with_concurrency(config.apply_concurrency);
        anyhow::Ok((existing, applier))
    }
    .await;
    let (existing, applier) = match started {
        Ok(started) => started,
        // Refused writes, or a lease that passed while starting: not a start-up failure.
        Err(e) if !process.leadership.holds() => {
            tracing::warn!(error = %format!("{e:#}"), "leadership lost while starting to lead");
            return Ok(Term::Lost);
        }
        Err(e) => return Err(e),
    };
    let writer = StatusWriter::new(client.clone(), &namespace, &existing);
    let metrics = process.metrics.clone();
    // Kits recorded by earlier runs count in `kitsync_kits` and `kitsync_kit_info` at once.
    for kit in &existing {
        metrics.kit_status(
            &kit.name,
            kit.status.condition_statuses(),
            &kit.status.last_applied_revision,
        );
    }
    // Stops this term's loops: shutdown, or the lease lost.
    let (stop_term, term_stopped) = watch::channel(false);
    let (requests, _) = broadcast::channel(256);
    let health = process.health.clone();
    health.sources_polled.store(false, Ordering::Relaxed);
    let resync = config.resync_interval;
    let watch_client = client.clone();
    let shared = Arc::new_cyclic(|weak| Shared {
        drift: drift::Drift::start(watch_client, weak.clone(), term_stopped.clone(), resync),
        alerter: process.alerter.clone(),
        health_waits: std::sync::Mutex::default(),
        slots: Semaphore::new(config.concurrency),
        reconciler: Reconciler::new(applier, writer, &namespace)
            .with_default_service_account(config.default_service_account.clone())
            .with_metrics(metrics.clone()),
        metrics,
        requests,
        shutdown: term_stopped,
        health: health.clone(),
        unpolled: std::sync::atomic::AtomicUsize::new(config.sources.len()),
        config: config.clone(),
    });
    health.crd_installed.store(true, Ordering::Relaxed);

    let mut loops = tokio::task::JoinSet::new();
    loops.spawn(watch_requests(client, namespace.clone(), shared.clone()));
    for settings in shared.config.sources.clone() {
        let trigger = process.triggers.get(&settings.name).cloned();
        let source_loop = SourceLoop::open(shared.clone(), settings, &existing, trigger).await?;
        loops.spawn(source_loop.run());
    }
    tracing::info!(sources = shared.config.sources.len(), "kitsync serve started");

    let mut stop = shutdown;
    let mut changes = process.leadership.changes();
    let lost = tokio::select! {
        _ = stop.wait_for(|stop| *stop) => false,
        _ = changes.wait_for(|leading| !*leading) => true,
        () = expired(&process.leadership) => true,
    };
    let _ = stop_term.send(true);
    // Health waits of this term end with it (their senders dropped).
    shared
        .health_waits
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    if lost {
        // Every write is refused from here on: finishing a reconcile would only log
        // refusals. The inventory written before each apply keeps its objects tracked for
        // the next leader.
        loops.abort_all();
        while loops.join_next().await.is_some() {}
        tracing::warn!("leadership lost: source loops and the Kit watch stopped; following");
        return Ok(Term::Lost);
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
    Ok(Term::Shutdown)
}

/// Resolves once this process's clock says the lease may have passed. The election task
/// says so first; this covers it being stuck, so a term never outlives its writes.
async fn expired(leadership: &Leadership) {
    while leadership.holds() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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
            // The platform file of each revision chooses (the same as `check` without flags).
            schema: crate::schema::Settings::default(),
            // A new revision usually changes a few files; the rest are not parsed again.
            parse_cache_bytes: crate::manifest::DEFAULT_CAPACITY_BYTES,
        },
    ))
}
