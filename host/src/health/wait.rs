//! The wait after an apply: watches the applied objects until they are all Current, one is
//! Failed, the deadline passes or the caller cancels.

use super::tracker::{Group, Tracker};
use super::{Error, Outcome, classify, transient};
use crate::object::ObjectRef;
use futures::stream::{AbortHandle, BoxStream, SelectAll};
use futures::{StreamExt, stream};
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Waits for applied objects to become ready (kstatus rules, see [`super::assess`]).
///
/// One watch (kube-runtime `watcher`, list then watch, quorum reads) per kind and namespace,
/// never one per object: a single object is watched by name (a field selector), several of
/// one kind by watching that kind in their namespace and ignoring the others. A kind's
/// watch ends as soon as all its objects are Current, and at most
/// [`with_max_watches`](Waiter::with_max_watches) run at once; the next kinds wait for a
/// free slot. Everything runs in the caller's task: no spawned tasks, nothing blocking.
pub struct Waiter {
    client: kube::Client,
    max_watches: usize,
    /// Kinds resolved by discovery, by (apiVersion, kind), kept across waits.
    kinds: Mutex<HashMap<(String, String), (ApiResource, ApiCapabilities)>>,
}

/// One watch's items, tagged with the index of its group.
type Tagged = (usize, Result<Event<DynamicObject>, watcher::Error>);

impl Waiter {
    /// A waiter reading with `client`, which must be allowed to `get` discovery and to
    /// `list` and `watch` every kind it waits for, where the objects are (a 403 is
    /// [`Error::Rejected`]). The service uses the host's identity, which `deploy/` grants
    /// `list` and `watch` on the kinds kits apply (drift detection needs them too).
    pub fn new(client: kube::Client) -> Self {
        Waiter {
            client,
            max_watches: 16,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// Watches open at once per wait (default 16, at least 1): one per kind and namespace
    /// with objects not yet Current.
    pub fn with_max_watches(mut self, n: usize) -> Self {
        self.max_watches = n.max(1);
        self
    }

    /// Waits until every object in `objects` is Current, one is Failed, `timeout` (from
    /// the call) passes, or `cancel` completes, and says which.
    ///
    /// `objects` are the applied objects' identities with namespaces filled in: the
    /// `Applied` and `Unchanged` entries of [`crate::apply::Report::objects`] (not the
    /// pruned or kept ones); duplicates count once. An empty list is Healthy. `cancel` is
    /// any future: the wait returns [`Outcome::Cancelled`] as soon as it completes, e.g.
    /// `async move { let _ = newer_revision.changed().await; }` for a
    /// `tokio::sync::watch::Receiver`; pass `std::future::pending()` for none.
    ///
    /// # Guarantees
    /// - Reads are quorum reads made after the call, so an object is never judged by a
    ///   state older than the apply that preceded the wait.
    /// - [`Outcome::Healthy`] means each object was seen Current at some moment during the
    ///   wait; an object that was Current stops being watched, so a later regression is
    ///   left to drift detection.
    /// - [`Outcome::Failed`] is returned at the first Failed object, without waiting for
    ///   the others; kinds waiting for a watch slot are judged when they get one.
    /// - An object not found (never created, or deleted meanwhile) stays pending with the
    ///   reason `not found`, until it appears or the timeout; a Job not found counts as
    ///   Current, since its TTL controller deletes it once it finished.
    ///
    /// # Errors
    /// [`Error::UnknownKind`] and [`Error::NoNamespace`] at once; [`Error::Rejected`] at
    /// the first refused read. [`Error::Unavailable`] when discovery still fails after a
    /// few retries, or when the timeout passes while a watch of a pending object is
    /// failing (the pending reasons would be stale guesses, not observations).
    pub async fn wait<C>(&self, objects: &[ObjectRef], timeout: Duration, cancel: C) -> Result<Outcome, Error>
    where
        C: Future<Output = ()>,
    {
        let started = Instant::now();
        // A timeout from a 30-day cap still fits; anything beyond waits "forever".
        let deadline = started
            .checked_add(timeout)
            .unwrap_or_else(|| started + Duration::from_secs(100 * 365 * 24 * 3600));
        let outcome = tokio::select! {
            biased;
            () = cancel => Ok(Outcome::Cancelled),
            outcome = self.run(objects, timeout, deadline) => outcome,
        };
        match &outcome {
            Ok(outcome) => tracing::info!(
                objects = objects.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                %outcome,
                "health wait ended"
            ),
            Err(error) => tracing::warn!(
                objects = objects.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                error = %error,
                label = error.label(),
                "health wait could not see the objects"
            ),
        }
        outcome
    }

    async fn run(
        &self,
        objects: &[ObjectRef],
        timeout: Duration,
        deadline: Instant,
    ) -> Result<Outcome, Error> {
        let mut tracker = Tracker::new(objects);
        let mut apis = Vec::with_capacity(tracker.groups.len());
        for group in &tracker.groups {
            let first = &group.first;
            let Some((resource, caps)) = self.resolve(first, deadline).await? else {
                return tracker.expire(timeout);
            };
            apis.push(match (caps.scope, &group.namespace) {
                (Scope::Namespaced, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &resource),
                (Scope::Namespaced, None) => {
                    return Err(Error::NoNamespace {
                        object: first.clone(),
                    });
                }
                (Scope::Cluster, _) => Api::all_with(self.client.clone(), &resource),
            });
        }

        let mut streams: SelectAll<stream::Abortable<BoxStream<'static, Tagged>>> = SelectAll::new();
        let mut handles: Vec<Option<AbortHandle>> = vec![None; apis.len()];
        let mut next = 0;
        let mut active = 0;
        loop {
            while next < apis.len() && active < self.max_watches {
                let (watch, handle) =
                    stream::abortable(watch(&tracker.groups[next], apis[next].clone(), next));
                streams.push(watch);
                handles[next] = Some(handle);
                next += 1;
                active += 1;
            }
            let item = tokio::select! {
                biased;
                () = tokio::time::sleep_until(deadline) => return tracker.expire(timeout),
                item = streams.next() => item,
            };
            let Some((g, item)) = item else {
                // Only settled (all Current, aborted) watches end: nothing is left to see.
                if tracker.all_current() {
                    return Ok(Outcome::Healthy);
                }
                tokio::time::sleep_until(deadline).await;
                return tracker.expire(timeout);
            };
            match item {
                Ok(event) => {
                    if let Some((object, reason)) = tracker.observe(g, event) {
                        return Ok(Outcome::Failed { object, reason });
                    }
                    if tracker.settle(g) {
                        if let Some(handle) = handles[g].take() {
                            handle.abort();
                        }
                        active -= 1;
                    }
                    if tracker.all_current() {
                        return Ok(Outcome::Healthy);
                    }
                }
                Err(error) => tracker.fail(g, error)?,
            }
        }
    }

    /// The resource of `id`'s kind: cached, or asked of discovery, retrying transient
    /// failures (0.2, 0.4, 0.8, 1.6 s). `None` when the deadline passed during a request
    /// that had not failed (a slow server times the wait out, a failing one is an error).
    async fn resolve(
        &self,
        id: &ObjectRef,
        deadline: Instant,
    ) -> Result<Option<(ApiResource, ApiCapabilities)>, Error> {
        let key = (id.api_version.clone(), id.kind.clone());
        if let Some(found) = self.kinds.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(Some(found.clone()));
        }
        let (group, version) = id.api_version.split_once('/').unwrap_or(("", &id.api_version));
        let gvk = GroupVersionKind::gvk(group, version, &id.kind);
        let mut delay = Duration::from_millis(200);
        let mut attempts = 1;
        loop {
            let asked =
                tokio::time::timeout_at(deadline, kube::discovery::pinned_kind(&self.client, &gvk)).await;
            match asked {
                Err(_elapsed) => return Ok(None),
                Ok(Ok(found)) => {
                    self.kinds
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key, found.clone());
                    return Ok(Some(found));
                }
                // Retried only while a retry can still finish before the deadline; the last
                // failure is the answer, not a timeout.
                Ok(Err(error)) if transient(&error) && attempts < 5 && Instant::now() + delay < deadline => {
                    tracing::debug!(%error, attempts, kind = %id.kind, "retrying discovery");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempts += 1;
                }
                Ok(Err(error)) => return Err(classify(error, id, None)),
            }
        }
    }
}

/// The watch for `group`, its items tagged with `index`.
fn watch(group: &Group, api: Api<DynamicObject>, index: usize) -> BoxStream<'static, Tagged> {
    // Quorum reads (`ListSemantic::MostRecent`, the default): a list served from a
    // stale cache could show the state before the apply and call it healthy.
    let mut config = watcher::Config::default();
    if let [name] = group.members.keys().collect::<Vec<_>>()[..] {
        config = config.fields(&format!("metadata.name={name}"));
    }
    tracing::debug!(kind = %group.kind, namespace = ?group.namespace, objects = group.members.len(), "watching");
    watcher::watcher(api, config)
        .default_backoff()
        .map(move |item| (index, item))
        .boxed()
}
