//! Git write-back of convergence (a source's `writeBack: {notes: true}`): each kit that
//! converges is recorded as a line of the git note of its commit in the source repository
//! ([`crate::source::Notes`]).
//!
//! One task per source writes, one note at a time (kits converging together on one commit
//! go in one push), off the reconcile path: [`NoteQueue::converged`] never waits, and a slow,
//! unreachable or refusing remote only delays or drops notes. A failed write is logged with
//! source, kit and revision, retried with backoff (2 s doubling, 4 tries), then given up and
//! counted (`kitsync_git_notes_total{result="failed"}`). Each kit and revision is queued
//! once (a reconcile of an unchanged revision converging again adds nothing); a line already
//! in the note (an earlier run, another replica) is not written twice.
//!
//! The task ends with the term that started it: only the leader writes notes.

use crate::metrics::{Metrics, NoteResult};
use crate::reconcile::short;
use crate::source::{Convergence, Notes, Recorded};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Convergences waiting to be written, per source; more are dropped (and counted).
const QUEUE: usize = 256;

/// How a failed write is retried.
#[derive(Debug, Clone, Copy)]
pub(super) struct Retry {
    /// Delay after the first failure, doubled after each.
    pub(super) initial: Duration,
    /// Tries in all.
    pub(super) attempts: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial: Duration::from_secs(2),
            attempts: 4,
        }
    }
}

/// One kit converged at one revision.
struct Item {
    kit: String,
    namespace: String,
    revision: String,
    time: jiff::Timestamp,
}

/// The write-back queue of one source. Cloning shares it.
#[derive(Clone)]
pub(super) struct NoteQueue {
    source: Arc<str>,
    sender: mpsc::Sender<Item>,
    /// Per kit, the revision last queued: a kit converging again at it is not queued again.
    queued: Arc<Mutex<HashMap<String, String>>>,
    metrics: Arc<Metrics>,
}

impl NoteQueue {
    /// Starts the writer task of `source`; it ends when `stop` turns true (the term ends).
    pub(super) fn start(
        source: &str,
        notes: Notes,
        host_namespace: String,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
        retry: Retry,
    ) -> NoteQueue {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let queue = NoteQueue {
            source: Arc::from(source),
            sender,
            queued: Arc::default(),
            metrics,
        };
        let writer = Writer {
            queue: queue.clone(),
            notes,
            host_namespace,
            retry,
        };
        tokio::spawn(writer.run(receiver, stop));
        queue
    }

    /// Queues the note line of `kit` (in `namespace`) converged at `revision`; never waits.
    pub(super) fn converged(&self, kit: &str, namespace: &str, revision: &str) {
        {
            let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
            if queued.get(kit).is_some_and(|r| r == revision) {
                return;
            }
            queued.insert(kit.to_owned(), revision.to_owned());
        }
        let item = Item {
            kit: kit.to_owned(),
            namespace: namespace.to_owned(),
            revision: revision.to_owned(),
            time: jiff::Timestamp::now(),
        };
        if let Err(e) = self.sender.try_send(item) {
            let item = match e {
                mpsc::error::TrySendError::Full(item) | mpsc::error::TrySendError::Closed(item) => item,
            };
            tracing::warn!(source = %self.source, kit = %item.kit, revision = %short(&item.revision), "git note not queued: the write-back queue is full or stopped");
            self.forget(&item);
            self.metrics.note(&self.source, NoteResult::Dropped);
        }
    }

    /// Lets a later convergence of `item`'s kit at its revision be queued again.
    fn forget(&self, item: &Item) {
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        if queued.get(&item.kit) == Some(&item.revision) {
            queued.remove(&item.kit);
        }
    }
}

struct Writer {
    queue: NoteQueue,
    notes: Notes,
    host_namespace: String,
    retry: Retry,
}

impl Writer {
    async fn run(self, mut receiver: mpsc::Receiver<Item>, mut stop: watch::Receiver<bool>) {
        let source = self.queue.source.clone();
        loop {
            let first = tokio::select! {
                item = receiver.recv() => match item {
                    Some(item) => item,
                    None => break,
                },
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let mut by_revision: BTreeMap<String, Vec<Item>> = BTreeMap::new();
            by_revision.entry(first.revision.clone()).or_default().push(first);
            while let Ok(item) = receiver.try_recv() {
                by_revision.entry(item.revision.clone()).or_default().push(item);
            }
            for (revision, items) in by_revision {
                if *stop.borrow() {
                    self.drop_all(&items);
                    continue;
                }
                self.write(&revision, items, &mut stop).await;
            }
        }
        receiver.close();
        while let Ok(item) = receiver.try_recv() {
            self.drop_all(std::slice::from_ref(&item));
        }
        tracing::debug!(%source, "git note writer stopped");
    }

    fn drop_all(&self, items: &[Item]) {
        for item in items {
            self.queue.forget(item);
            self.queue.metrics.note(&self.queue.source, NoteResult::Dropped);
        }
    }

    /// Writes the lines of `items` (all at `revision`), retrying with backoff.
    async fn write(&self, revision: &str, items: Vec<Item>, stop: &mut watch::Receiver<bool>) {
        let source = &*self.queue.source;
        let kits = items.iter().map(|i| i.kit.as_str()).collect::<Vec<_>>().join(",");
        let entries: Vec<Convergence> = items
            .iter()
            .map(|i| Convergence {
                kit: i.kit.clone(),
                namespace: i.namespace.clone(),
                host_namespace: self.host_namespace.clone(),
                time: i.time,
            })
            .collect();
        let count = |result| {
            for _ in &items {
                self.queue.metrics.note(source, result);
            }
        };
        let mut delay = self.retry.initial;
        for attempt in 1..=self.retry.attempts.max(1) {
            match self
                .notes
                .record_async(revision.to_owned(), entries.clone())
                .await
            {
                Ok(Recorded::Written { notes_commit }) => {
                    tracing::info!(source, kit = %kits, revision = %short(revision), notes_commit = %short(&notes_commit), "convergence recorded as a git note");
                    return count(NoteResult::Written);
                }
                Ok(Recorded::AlreadyRecorded) => {
                    tracing::debug!(source, kit = %kits, revision = %short(revision), "the git note already records this convergence");
                    return count(NoteResult::Present);
                }
                Err(e) if attempt < self.retry.attempts => {
                    tracing::warn!(source, kit = %kits, revision = %short(revision), attempt, reason = e.label(), error = %e, retry_in = ?delay, "writing the git note failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stop.wait_for(|stop| *stop) => return self.drop_all(&items),
                    }
                    delay = delay.saturating_mul(2);
                }
                Err(e) => {
                    tracing::error!(source, kit = %kits, revision = %short(revision), attempts = attempt, reason = e.label(), error = %e, "writing the git note failed; giving up");
                    for item in &items {
                        self.queue.forget(item);
                    }
                    return count(NoteResult::Failed);
                }
            }
        }
    }
}
