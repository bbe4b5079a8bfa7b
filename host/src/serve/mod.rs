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
mod drift;
pub mod http;
mod source_loop;

use source_loop::SourceLoop;

pub use config::{HostConfig, SourceSettings};

use crate::apply::Applier;
use crate::kit::Discovery;
use crate::metrics::Metrics;
use crate::plugin::{Engine, EngineConfig, Limits};
use crate::reconcile::Reconciler;
use crate::render::{Pipeline, Settings};
use crate::status::{self, StatusWriter};
use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
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
    /// `converged` or `failed`. A newer reconcile of the kit cancels it.
    fn spawn_health_wait(self: &Arc<Self>, applied: Arc<crate::reconcile::AppliedKit>) {
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
            let alert = match verdict {
                crate::reconcile::Verdict::Converged(message) => {
                    crate::alert::Alert::new(&kit, revision, crate::alert::Event::Converged, message)
                }
                crate::reconcile::Verdict::Failed(message) => {
                    crate::alert::Alert::new(&kit, revision, crate::alert::Event::Failed, message)
                }
                crate::reconcile::Verdict::Cancelled => return,
            };
            shared.alerter.notify(alert);
        });
    }
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
    status::install_crd(&client, &namespace)
        .await
        .map_err(|e| anyhow!(e))?;
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
    let metrics = Arc::new(Metrics::new());
    // Kits recorded by earlier runs count in `kitsync_kits` and `kitsync_kit_info` at once.
    for kit in &existing {
        metrics.kit_status(
            &kit.name,
            kit.status
                .conditions
                .iter()
                .map(|c| (c.type_.as_str(), c.status.as_str())),
            &kit.status.last_applied_revision,
        );
    }
    let alerter =
        crate::alert::Alerter::start(&config.alerts, metrics.clone()).map_err(|e| anyhow!("alerts: {e}"))?;
    let resync = config.resync_interval;
    let watch_client = client.clone();
    let shared = Arc::new_cyclic(|weak| Shared {
        drift: drift::Drift::start(watch_client, weak.clone(), resync),
        alerter,
        health_waits: std::sync::Mutex::default(),
        slots: Semaphore::new(config.concurrency),
        reconciler: Reconciler::new(applier, writer, &namespace)
            .with_default_service_account(config.default_service_account.clone())
            .with_metrics(metrics.clone()),
        metrics,
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
        http::probes(
            addr,
            shared.health.clone(),
            shared.metrics.clone(),
            shutdown.clone(),
        )
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
            shared.config.webhook_timeout,
            shared.metrics.clone(),
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
    // Alerts of the last reconciles get what is left of a short grace to be delivered.
    shared.alerter.shutdown(Duration::from_secs(5)).await;
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
