//! Drift detection: watches on the kinds kits applied (kube-runtime's watcher, only objects
//! labelled `kitsync.dev/kit`), and one task that compares every change with what the kit's
//! last apply wrote.
//!
//! A change is drift only when a field kitsync set now differs ([`owned::fingerprint`]):
//! status updates, fields kitsync does not set (replicas under an autoscaler) and kitsync's
//! own writes are not. Deletion of an applied object is drift, except a Job with
//! `ttlSecondsAfterFinished` (its TTL controller deletes it on purpose). Drift of a
//! `selfHeal` kit is applied again at once; an object that keeps drifting (a fight with
//! another controller) is corrected with exponential backoff and reported. Drift of any
//! other kit is reported: Kit condition `Drifted`, an Event, a metric.
//!
//! Each watcher re-lists after a restart (410 Gone, a cut stream); only a complete listing
//! (`InitDone`) can say an object is gone. Every `resync` interval the watchers restart, so
//! a full listing catches whatever a watch missed.

mod message;

use super::Shared;
use crate::apply::{Entry, owned};
use crate::guard::KIT_LABEL;
use crate::object::ObjectRef;
use crate::reconcile::AppliedKit;
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use message::describe;
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// (apiVersion, kind) as the kit's objects say it.
type KindKey = (String, String);

/// Corrections of one object within this window that make it a fight.
const FIGHT_WINDOW: Duration = Duration::from_secs(60);
/// Corrections within [`FIGHT_WINDOW`] before backoff starts.
const FIGHT_AFTER: usize = 3;
/// The longest wait between two corrections of a fighting object.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What the source loops tell drift detection, and what watchers report.
enum Command {
    /// A kit was applied (or observed unchanged): compare with this from now on.
    Track(Arc<AppliedKit>),
    /// A reconcile of the kit starts: its own writes are not drift.
    Pause(String),
    /// A reconcile that wrote nothing failed: compare with the last apply again.
    Resume(String),
    /// The kit was removed.
    Forget(String),
    /// An object as it is now.
    Live(KindKey, Box<DynamicObject>),
    /// An object was deleted.
    Gone(String),
    /// A complete listing of a kind: these keys exist.
    Listed(KindKey, HashSet<String>),
    /// A correction finished.
    Healed(String, Result<crate::apply::Applied, String>),
}

/// The handle the source loops use.
#[derive(Clone)]
pub(super) struct Drift {
    tx: mpsc::Sender<Command>,
}

impl Drift {
    /// Starts drift detection with `resync` between full listings, until `stop` turns true.
    ///
    /// `shared` may still be under construction (`Arc::new_cyclic`): the processor upgrades it
    /// only when a command needs it, never at start, so it cannot find it missing and end.
    pub(super) fn start(
        client: kube::Client,
        shared: std::sync::Weak<Shared>,
        stop: tokio::sync::watch::Receiver<bool>,
        resync: Duration,
    ) -> Drift {
        let (tx, rx) = mpsc::channel(4096);
        let processor = Processor {
            client,
            shared,
            tx: tx.clone(),
            kits: HashMap::new(),
            owners: HashMap::new(),
            watchers: HashMap::new(),
            unseen: HashMap::new(),
        };
        tokio::spawn(processor.run(rx, stop, resync));
        Drift { tx }
    }

    async fn send(&self, command: Command) {
        // Closed only at shutdown, when nothing needs the answer.
        let _ = self.tx.send(command).await;
    }

    /// The kit was applied: compare with this from now on.
    pub(super) async fn track(&self, applied: Arc<AppliedKit>) {
        self.send(Command::Track(applied)).await;
    }

    /// A reconcile of `kit` starts.
    pub(super) async fn pause(&self, kit: &str) {
        self.send(Command::Pause(kit.to_owned())).await;
    }

    /// A reconcile of `kit` failed before writing anything (render, policy, guard).
    pub(super) async fn resume(&self, kit: &str) {
        self.send(Command::Resume(kit.to_owned())).await;
    }

    /// `kit` was removed, or its reconcile failed after writing (part of the new revision
    /// is on the cluster, so the last apply is no longer what to correct back to).
    pub(super) async fn forget(&self, kit: &str) {
        self.send(Command::Forget(kit.to_owned())).await;
    }
}

/// One applied object under watch.
struct Tracked {
    /// Index into the kit's `objects`.
    index: usize,
    kind: KindKey,
    /// The fingerprint of what kitsync owns, as its last write left it.
    owned: String,
    /// Why it differs, while it does.
    drifted: Option<String>,
    /// Reported since it last drifted.
    reported: bool,
    /// A correction is running.
    healing: bool,
    /// Recent corrections.
    heals: VecDeque<Instant>,
    /// No correction before this (backoff of a fight or a failure).
    not_before: Option<Instant>,
    /// A Job its TTL controller may delete once finished.
    ttl_job: bool,
}

struct KitTrack {
    applied: Arc<AppliedKit>,
    paused: bool,
    objects: HashMap<String, Tracked>,
}

struct Processor {
    client: kube::Client,
    shared: std::sync::Weak<Shared>,
    tx: mpsc::Sender<Command>,
    kits: HashMap<String, KitTrack>,
    /// Object key -> kit.
    owners: HashMap<String, String>,
    watchers: HashMap<KindKey, JoinHandle<()>>,
    /// Changes to objects of a kit that was reconciling (or not tracked yet), by key: looked
    /// at when the kit is tracked, so an edit made while it applied is not lost.
    unseen: HashMap<String, (KindKey, Box<DynamicObject>)>,
}

/// Most changes kept in [`Processor::unseen`]; past it they are dropped (a resync catches them).
const MAX_UNSEEN: usize = 10_000;

fn key_of(kind: &KindKey, object: &DynamicObject) -> String {
    Entry::of(&ObjectRef {
        api_version: kind.0.clone(),
        kind: kind.1.clone(),
        namespace: object.metadata.namespace.clone(),
        name: object.metadata.name.clone().unwrap_or_default(),
    })
    .key_text()
}

impl Processor {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        mut stop: tokio::sync::watch::Receiver<bool>,
        resync: Duration,
    ) {
        let mut next_resync = Instant::now() + resync;
        // Ends with the service, or with this replica's term as leader.
        loop {
            let due = self
                .kits
                .values()
                .flat_map(|k| k.objects.values())
                .filter(|t| t.drifted.is_some() && !t.healing)
                .filter_map(|t| t.not_before)
                .min()
                .unwrap_or(next_resync)
                .min(next_resync);
            tokio::select! {
                _ = async { let _ = stop.wait_for(|stop| *stop).await; } => break,
                command = rx.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
                _ = tokio::time::sleep_until(due) => {
                    if Instant::now() >= next_resync {
                        tracing::debug!("drift: periodic full resync");
                        for (kind, handle) in self.watchers.drain() {
                            handle.abort();
                            drop(kind);
                        }
                        let kinds: HashSet<KindKey> = self
                            .kits
                            .values()
                            .flat_map(|k| k.objects.values().map(|t| t.kind.clone()))
                            .collect();
                        for kind in kinds {
                            self.watch(kind);
                        }
                        next_resync = Instant::now() + resync;
                    }
                    self.act_on_due().await;
                }
            }
            if *stop.borrow() {
                break;
            }
        }
        for handle in self.watchers.values() {
            handle.abort();
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Track(applied) => {
                let kit = applied.target.kit.clone();
                self.track(applied);
                self.replay(&kit).await;
            }
            Command::Pause(kit) => {
                if let Some(k) = self.kits.get_mut(&kit) {
                    k.paused = true;
                }
            }
            Command::Resume(kit) => {
                if let Some(k) = self.kits.get_mut(&kit) {
                    k.paused = false;
                }
                self.replay(&kit).await;
            }
            Command::Forget(kit) => {
                if let Some(k) = self.kits.remove(&kit) {
                    for key in k.objects.keys() {
                        self.owners.remove(key);
                    }
                }
            }
            Command::Live(kind, object) => self.live(&kind, &object).await,
            Command::Gone(key) => self.gone(&key).await,
            Command::Listed(kind, seen) => {
                let missing: Vec<String> = self
                    .kits
                    .values()
                    .flat_map(|k| k.objects.iter())
                    .filter(|(key, t)| t.kind == kind && !seen.contains(*key))
                    .map(|(key, _)| key.clone())
                    .collect();
                for key in missing {
                    self.gone(&key).await;
                }
            }
            Command::Healed(key, result) => self.healed(&key, result).await,
        }
    }

    fn track(&mut self, applied: Arc<AppliedKit>) {
        let kit = applied.target.kit.clone();
        if let Some(old) = self.kits.remove(&kit) {
            for key in old.objects.keys() {
                self.owners.remove(key);
            }
        }
        let mut objects = HashMap::new();
        for (index, object) in applied.objects.iter().enumerate() {
            let key = Entry::of(&object.id).key_text();
            let Some(record) = applied.records.get(&key) else {
                continue;
            };
            let kind = (object.id.api_version.clone(), object.id.kind.clone());
            if !self.watchers.contains_key(&kind) {
                self.watch(kind.clone());
            }
            self.owners.insert(key.clone(), kit.clone());
            objects.insert(
                key,
                Tracked {
                    index,
                    kind,
                    owned: record.owned.clone(),
                    drifted: None,
                    reported: false,
                    healing: false,
                    heals: VecDeque::new(),
                    not_before: None,
                    ttl_job: object.id.kind == "Job"
                        && object
                            .value()
                            .is_ok_and(|v| v.pointer("/spec/ttlSecondsAfterFinished").is_some()),
                },
            );
        }
        tracing::debug!(kit, objects = objects.len(), "drift: tracking");
        self.kits.insert(
            kit,
            KitTrack {
                applied,
                paused: false,
                objects,
            },
        );
    }

    /// Starts a watcher on `kind` (its resource found by discovery, retried by the watcher's
    /// backoff when the kind is not served yet).
    fn watch(&mut self, kind: KindKey) {
        let client = self.client.clone();
        let tx = self.tx.clone();
        let watched = kind.clone();
        let handle = tokio::spawn(async move {
            let (group, version) = kind.0.split_once('/').unwrap_or(("", kind.0.as_str()));
            let gvk = GroupVersionKind::gvk(group, version, &kind.1);
            let resource = loop {
                match kube::discovery::pinned_kind(&client, &gvk).await {
                    Ok((resource, _)) => break resource,
                    Err(e) => {
                        tracing::warn!(api_version = %kind.0, kind = %kind.1, error = %e, "drift: cannot watch this kind yet; retrying");
                        tokio::time::sleep(Duration::from_secs(10)).await;
                    }
                }
            };
            let api: Api<DynamicObject> = Api::all_with(client, &resource);
            let config = watcher::Config::default().labels(KIT_LABEL);
            let mut stream = watcher::watcher(api, config).default_backoff().boxed();
            let mut seen: HashSet<String> = HashSet::new();
            while let Some(event) = stream.next().await {
                let command = match event {
                    Ok(Event::Init) => {
                        seen.clear();
                        continue;
                    }
                    Ok(Event::InitApply(object)) => {
                        seen.insert(key_of(&kind, &object));
                        Command::Live(kind.clone(), Box::new(object))
                    }
                    Ok(Event::InitDone) => Command::Listed(kind.clone(), std::mem::take(&mut seen)),
                    Ok(Event::Apply(object)) => Command::Live(kind.clone(), Box::new(object)),
                    Ok(Event::Delete(object)) => Command::Gone(key_of(&kind, &object)),
                    Err(e) => {
                        tracing::warn!(api_version = %kind.0, kind = %kind.1, error = %e, "drift: watch failed; it re-lists");
                        continue;
                    }
                };
                if tx.send(command).await.is_err() {
                    break;
                }
            }
        });
        self.watchers.insert(watched, handle);
    }

    /// The kit of `key` and its last apply, unless it is not tracked or is reconciling.
    fn owner(&self, key: &str) -> Option<(String, Arc<AppliedKit>)> {
        let kit = self.owners.get(key)?;
        let track = self.kits.get(kit)?;
        (!track.paused && track.objects.contains_key(key)).then(|| (kit.clone(), track.applied.clone()))
    }

    fn object_mut(&mut self, kit: &str, key: &str) -> Option<&mut Tracked> {
        self.kits.get_mut(kit)?.objects.get_mut(key)
    }

    /// Looks at the changes to `kit`'s objects made while it could not be compared.
    async fn replay(&mut self, kit: &str) {
        let Some(track) = self.kits.get(kit) else {
            return;
        };
        let keys: Vec<String> = track
            .objects
            .keys()
            .filter(|k| self.unseen.contains_key(*k))
            .cloned()
            .collect();
        for key in keys {
            if let Some((kind, object)) = self.unseen.remove(&key) {
                self.live(&kind, &object).await;
            }
        }
    }

    async fn live(&mut self, kind: &KindKey, object: &DynamicObject) {
        let key = key_of(kind, object);
        let Some((kit, applied)) = self.owner(&key) else {
            if self.unseen.len() >= MAX_UNSEEN {
                self.unseen.clear();
            }
            self.unseen.insert(key, (kind.clone(), Box::new(object.clone())));
            return;
        };
        self.unseen.remove(&key);
        let Ok(mut live) = serde_json::to_value(object) else {
            return;
        };
        // List and watch items may omit their type; the fingerprint includes it.
        live["apiVersion"] = Value::from(kind.0.as_str());
        live["kind"] = Value::from(kind.1.as_str());
        let Some(tracked) = self.object_mut(&kit, &key) else {
            return;
        };
        let Some(desired) = applied.objects.get(tracked.index) else {
            return;
        };
        let Ok(value) = desired.value() else {
            return;
        };
        if owned::fingerprint(&value, &live) == tracked.owned {
            if tracked.drifted.take().is_some() {
                tracked.reported = false;
                tracing::info!(kit, object = %desired.id, "drift: back in sync");
                self.report(&kit).await;
            }
            return;
        }
        if tracked.healing {
            return;
        }
        let why = describe(&value, &live, object);
        tracked.drifted = Some(why);
        self.act(&kit, &key).await;
    }

    async fn gone(&mut self, key: &str) {
        let Some((kit, _)) = self.owner(key) else {
            return;
        };
        let Some(tracked) = self.object_mut(&kit, key) else {
            return;
        };
        if tracked.ttl_job {
            // Its TTL controller deletes a finished Job on purpose: not drift, and never
            // re-created in a loop (the next revision that changes it applies it again).
            tracing::info!(
                kit,
                key,
                "drift: a Job with ttlSecondsAfterFinished was deleted; not re-created"
            );
            let kit_track = self.kits.get_mut(&kit);
            if let Some(k) = kit_track {
                k.objects.remove(key);
            }
            self.owners.remove(key);
            return;
        }
        if tracked.healing || tracked.drifted.as_deref() == Some("deleted") {
            return;
        }
        tracked.drifted = Some("deleted".into());
        self.act(&kit, key).await;
    }

    /// Corrects (selfHeal) or reports the drifted object `key` of `kit`.
    async fn act(&mut self, kit: &str, key: &str) {
        let Some(track) = self.kits.get(kit) else {
            return;
        };
        let applied = track.applied.clone();
        let Some(tracked) = self.object_mut(kit, key) else {
            return;
        };
        if !applied.self_heal {
            if !tracked.reported {
                self.report(kit).await;
            }
            return;
        }
        if tracked.not_before.is_some_and(|t| t > Instant::now()) || tracked.healing {
            return;
        }
        let Some(Ok(object)) = applied.objects.get(tracked.index).map(|o| o.object()) else {
            return;
        };
        tracked.healing = true;
        let why = tracked.drifted.clone().unwrap_or_default();
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let tx = self.tx.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            let result = shared
                .reconciler
                .heal(&applied.target, &object, &why)
                .await
                .map_err(|e| crate::reconcile::apply_failure(&e));
            let _ = tx.send(Command::Healed(key, result)).await;
        });
    }

    async fn healed(&mut self, key: &str, result: Result<crate::apply::Applied, String>) {
        let Some(kit) = self.owners.get(key).cloned() else {
            return;
        };
        let Some(tracked) = self.object_mut(&kit, key) else {
            return;
        };
        tracked.healing = false;
        let now = Instant::now();
        match result {
            Ok(applied) => {
                tracked.owned = applied.owned;
                tracked.drifted = None;
                tracked.heals.push_back(now);
                while tracked.heals.front().is_some_and(|t| now - *t > FIGHT_WINDOW) {
                    tracked.heals.pop_front();
                }
                let count = tracked.heals.len();
                if count >= FIGHT_AFTER {
                    let delay = Duration::from_secs(1u64 << (count - FIGHT_AFTER).min(9)).min(MAX_BACKOFF);
                    tracked.not_before = Some(now + delay);
                    let why = format!(
                        "changed again {count} times within {}s (another controller or person keeps changing it); corrections back off, next in at most {}s",
                        FIGHT_WINDOW.as_secs(),
                        delay.as_secs()
                    );
                    tracing::warn!(kit, key, count, ?delay, "drift: fighting over an object");
                    tracked.reported = false;
                    tracked.drifted = Some(why);
                    self.report(&kit).await;
                    if let Some(t) = self.object_mut(&kit, key) {
                        // Reported; the next change is corrected after the delay.
                        t.drifted = None;
                    }
                } else {
                    self.report(&kit).await;
                }
            }
            Err(e) => {
                let failures = tracked.heals.len().max(1);
                let delay = Duration::from_secs(1u64 << failures.min(8)).min(MAX_BACKOFF);
                tracked.not_before = Some(now + delay);
                tracked.drifted = Some(format!("could not be corrected: {e}"));
                tracked.reported = false;
                self.report(&kit).await;
            }
        }
    }

    /// Corrections whose backoff is over.
    async fn act_on_due(&mut self) {
        let now = Instant::now();
        let due: Vec<(String, String)> = self
            .kits
            .iter()
            .flat_map(|(kit, k)| {
                k.objects
                    .iter()
                    .filter(|(_, t)| {
                        t.drifted.is_some() && !t.healing && t.not_before.is_some_and(|n| n <= now)
                    })
                    .map(move |(key, _)| (kit.clone(), key.clone()))
            })
            .collect();
        for (kit, key) in due {
            if let Some(t) = self.object_mut(&kit, &key) {
                t.not_before = None;
            }
            self.act(&kit, &key).await;
        }
    }

    /// Writes the kit's drift to its status (and Events for what is newly reported).
    async fn report(&mut self, kit: &str) {
        let Some(track) = self.kits.get_mut(kit) else {
            return;
        };
        let revision = track.applied.target.revision.clone();
        let mut drifted = Vec::new();
        let mut newly = Vec::new();
        for tracked in track.objects.values_mut() {
            let Some(why) = &tracked.drifted else { continue };
            let Some(object) = track.applied.objects.get(tracked.index) else {
                continue;
            };
            drifted.push((object.id.clone(), why.clone()));
            if !tracked.reported {
                tracked.reported = true;
                newly.push((object.id.clone(), why.clone()));
            }
        }
        drifted.sort_by_key(|(id, _)| id.to_string());
        // Healed objects were announced by their correction's Event.
        if track.applied.self_heal {
            newly.retain(|(_, why)| why.starts_with("changed again") || why.starts_with("could not"));
        }
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        // The `drifted` alert goes out only if the divergence outlasts driftAlertAfter.
        match drifted.first() {
            Some((id, why)) => shared.alerter.drift_started(
                kit,
                &revision,
                &format!("{} object(s) differ from Git, e.g. {id}: {why}", drifted.len()),
            ),
            None => shared.alerter.drift_ended(kit),
        }
        let kit = kit.to_owned();
        tokio::spawn(async move {
            shared
                .reconciler
                .drift_status(&kit, &revision, &drifted, &newly)
                .await;
        });
    }
}
