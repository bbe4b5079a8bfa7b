//! Git write-back of convergence: a note on the converged commit, in [`NOTES_REF`] of the
//! source's own remote, so the repository carries the audit trail of what ran where.
//!
//! The note of a commit holds one line per kit that converged on it:
//!
//! ```text
//! kitsync: kit=web namespace=web host=kitsync-system converged 2025-01-02T03:04:05Z
//! ```
//!
//! Lines already in the note (other kits, other hosts, a human's text) are kept. A write
//! fetches the remote's notes, adds the missing lines, makes a notes commit on top and pushes
//! it (see [`super::push`]) naming the fetched commit as the old value, so a notes ref that
//! another writer moved in between is never overwritten: it is fetched again and the write
//! is redone on top, a few times.
//!
//! The notes live in their own bare repository beside the source's cache (`<cache>.notes`),
//! fetched only when a note is written: polls stay a ref listing of the followed ref, and
//! the cache can be rebuilt without losing anything. That repository is only a copy of the
//! remote's notes: past 64 packs (each fetch of other writers' notes adds one) it is
//! emptied and fetched again whole.

use super::auth::{Login, credentials_fn};
use super::error::{Error, Result};
use super::git::{Bounded, MAX_PACKS, SourceConfig, bounded, classify, open_options, pack_count, parse_id};
use super::push::{PackObject, PushError, RefUpdate, push};
use super::redact::redact_text;
use gix::ObjectId;
use gix::objs::WriteTo;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};

/// The notes reference kitsync writes (`git notes --ref=kitsync show COMMIT` reads it).
pub const NOTES_REF: &str = "refs/notes/kitsync";

/// Writes tried when the notes ref keeps moving under another writer.
const ATTEMPTS: usize = 5;

/// One kit that converged on a commit: one line of the commit's note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Convergence {
    /// The kit.
    pub kit: String,
    /// The kit's namespace.
    pub namespace: String,
    /// The host namespace of the kitsync that applied it (tells clusters apart).
    pub host_namespace: String,
    /// When it converged.
    pub time: jiff::Timestamp,
}

impl Convergence {
    /// The line without its time: a note holding it already records this convergence.
    fn key(&self) -> String {
        format!(
            "kitsync: kit={} namespace={} host={} converged",
            self.kit, self.namespace, self.host_namespace
        )
    }

    /// The note line, e.g. `kitsync: kit=web namespace=web host=kitsync-system converged
    /// 2025-01-02T03:04:05Z` (UTC, whole seconds).
    pub fn line(&self) -> String {
        let time = jiff::Timestamp::from_second(self.time.as_second()).unwrap_or(self.time);
        format!("{} {time}", self.key())
    }
}

/// What [`Notes::record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A notes commit with the new lines is now the remote's [`NOTES_REF`].
    Written {
        /// The notes commit, hex.
        notes_commit: String,
    },
    /// The note already had every line (an earlier run, another replica): nothing pushed.
    AlreadyRecorded,
}

/// Why a note was not written. URLs are redacted; no credential is ever in the text.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    /// The remote refused the update (a hook, a protected ref, a token without push rights)
    /// and its notes ref had not moved: retrying will not help until someone acts.
    #[error("{url} refused to update {reference}: {reason}")]
    Rejected {
        /// The redacted remote URL.
        url: String,
        /// The reference, [`NOTES_REF`].
        reference: String,
        /// The remote's reason, as it said it.
        reason: String,
    },
    /// The notes ref moved between fetch and push on every try: other writers are busy.
    #[error("{url}: {reference} kept moving under another writer ({attempts} tries)")]
    Conflict {
        /// The redacted remote URL.
        url: String,
        /// The reference, [`NOTES_REF`].
        reference: String,
        /// Tries made.
        attempts: usize,
    },
    /// Fetching or reaching the remote failed: [`Error::Unreachable`],
    /// [`Error::Unauthenticated`], [`Error::Git`] and the like.
    #[error(transparent)]
    Source(#[from] Error),
}

impl NoteError {
    /// A stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            NoteError::Rejected { .. } => "rejected",
            NoteError::Conflict { .. } => "conflict",
            NoteError::Source(e) => e.label(),
        }
    }
}

/// A writer of convergence notes to one source's remote; cheap to clone. Writes through one
/// value are serialised, so concurrent calls never race each other.
#[derive(Clone)]
pub struct Notes {
    shared: Arc<Shared>,
}

struct Shared {
    url: String,
    shown_url: String,
    /// The source's, with the notes repository as its cache.
    config: SourceConfig,
    writing: Mutex<()>,
}

impl std::fmt::Debug for Notes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notes")
            .field("url", &self.shared.shown_url)
            .field("dir", &self.shared.config.cache_dir)
            .finish_non_exhaustive()
    }
}

enum Attempt {
    Done(Recorded),
    /// The remote's notes moved since the fetch: fetch again.
    Moved,
}

impl super::Source {
    /// The writer of this source's convergence notes, with its repository beside the cache
    /// (`<cache>.notes`, created when missing). The remote and credentials are the source's:
    /// writing needs push rights to [`NOTES_REF`].
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Git`] when the notes repository cannot be created or opened.
    pub fn notes(&self) -> Result<Notes> {
        let config = self.config();
        let name = config
            .cache_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cache".into());
        let dir = config.cache_dir.parent().map_or_else(
            || PathBuf::from(format!("{name}.notes")),
            |p| p.join(format!("{name}.notes")),
        );
        Notes::open(config, self.shown_url(), dir)
    }
}

impl Notes {
    fn open(source: &SourceConfig, shown_url: &str, dir: PathBuf) -> Result<Notes> {
        let mut config = source.clone();
        config.cache_dir = dir;
        let notes = Notes {
            shared: Arc::new(Shared {
                url: source.url.clone(),
                shown_url: shown_url.to_owned(),
                config,
                writing: Mutex::new(()),
            }),
        };
        notes.repo()?;
        Ok(notes)
    }

    /// The notes repository, opened afresh for each write: gix sizes an object store's
    /// slots by the packs on disk at open, and a long-lived handle runs out of them as
    /// fetches add packs. Created when missing, emptied past [`MAX_PACKS`].
    fn repo(&self) -> Result<gix::Repository> {
        let dir = &self.shared.config.cache_dir;
        let git = |e: gix::Error| {
            Error::Git(format!(
                "notes repository {}: {}",
                dir.display(),
                redact_text(&e.to_string(), &[])
            ))
        };
        let io = |source| Error::Io {
            path: dir.clone(),
            source,
        };
        if pack_count(dir) > MAX_PACKS {
            tracing::info!(url = %self.shared.shown_url, dir = %dir.display(), "emptying the notes repository; the next fetch brings the notes in one pack");
            std::fs::remove_dir_all(dir).map_err(io)?;
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        if !dir.join("HEAD").exists() {
            gix::ThreadSafeRepository::init(dir, gix::create::Kind::Bare, gix::create::Options::default())
                .map_err(git)?;
        }
        let repo =
            gix::ThreadSafeRepository::open_opts(dir, open_options(&self.shared.config)).map_err(git)?;
        Ok(repo.to_thread_local())
    }

    /// Adds a line for each of `entries` not yet in the note of `commit` (hex) on the remote,
    /// and pushes. Blocking: network and disk. Each try (fetch and push) is bounded by the
    /// source's timeout; a notes ref moved by another writer is fetched again, at most 5 times.
    ///
    /// # Errors
    /// [`NoteError::Rejected`] when the remote refuses the update, [`NoteError::Conflict`]
    /// when other writers kept moving the ref, [`NoteError::Source`] for a malformed commit
    /// id, a remote that cannot be reached or authenticated to, or a timeout.
    pub fn record(&self, commit: &str, entries: &[Convergence]) -> Result<Recorded, NoteError> {
        let commit = parse_id(commit)?;
        let _writing = self.shared.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let timeout = self.shared.config.timeout;
        for attempt in 1..=ATTEMPTS {
            let this = self.clone();
            let entries = entries.to_vec();
            match bounded(timeout, move |interrupt| {
                this.attempt(commit, &entries, interrupt)
            }) {
                Bounded::Done(Ok(Attempt::Done(recorded))) => return Ok(recorded),
                Bounded::Done(Ok(Attempt::Moved)) => {
                    tracing::debug!(url = %self.shared.shown_url, attempt, "notes ref moved under another writer; fetching again");
                }
                Bounded::Done(Err(e)) => return Err(e),
                // The abandoned try may still push; the next write finds its lines.
                Bounded::TimedOut(_) => {
                    return Err(NoteError::Source(Error::Unreachable {
                        url: self.shared.shown_url.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("writing the note took longer than {timeout:?}"),
                        ),
                    }));
                }
                Bounded::Failed(reason) => return Err(NoteError::Source(Error::Git(reason))),
            }
        }
        Err(NoteError::Conflict {
            url: self.shared.shown_url.clone(),
            reference: NOTES_REF.into(),
            attempts: ATTEMPTS,
        })
    }

    /// [`Notes::record`] on the blocking thread pool.
    ///
    /// # Errors
    /// As [`Notes::record`].
    pub async fn record_async(
        &self,
        commit: String,
        entries: Vec<Convergence>,
    ) -> Result<Recorded, NoteError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.record(&commit, &entries))
            .await
            .map_err(|e| NoteError::Source(Error::Git(format!("notes task failed: {e}"))))?
    }

    /// The note of `commit` (hex) in the notes last fetched, if any: for tests and tools.
    ///
    /// # Errors
    /// A malformed id, or a damaged notes repository.
    pub fn local_note(&self, commit: &str) -> Result<Option<String>> {
        let commit = parse_id(commit)?;
        let _writing = self.shared.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let repo = self.repo()?;
        let Some(tip) = local_tip(&repo) else {
            return Ok(None);
        };
        let place = locate(&repo, Some(tree_of(&repo, tip)?), &commit.to_string())?;
        place
            .existing
            .map(|blob| read_blob(&repo, blob).map(|b| String::from_utf8_lossy(&b).into_owned()))
            .transpose()
    }

    /// One fetch, build and push.
    fn attempt(
        &self,
        commit: ObjectId,
        entries: &[Convergence],
        interrupt: &AtomicBool,
    ) -> Result<Attempt, NoteError> {
        let shared = &self.shared;
        let repo = self.repo()?;
        let login = shared.config.auth.login()?;
        let secrets: Vec<String> = login.iter().map(|l| l.password.clone()).collect();
        let parent = self.fetch(&repo, login.clone(), &secrets, Some(interrupt))?;
        let base = parent.map(|p| tree_of(&repo, p)).transpose()?;
        let place = locate(&repo, base, &commit.to_string())?;
        let mut text = match place.existing {
            Some(blob) => read_blob(&repo, blob)?,
            None => Vec::new(),
        };
        let mut added = 0;
        for entry in entries {
            let key = format!("{} ", entry.key());
            if String::from_utf8_lossy(&text)
                .lines()
                .any(|l| l.starts_with(&key))
            {
                continue;
            }
            if !text.is_empty() && !text.ends_with(b"\n") {
                text.push(b'\n');
            }
            text.extend_from_slice(entry.line().as_bytes());
            text.push(b'\n');
            added += 1;
        }
        if added == 0 {
            return Ok(Attempt::Done(Recorded::AlreadyRecorded));
        }

        let mut objects = Vec::new();
        let blob = store(&repo, &gix::objs::Blob { data: text }, &mut objects)?;
        let tree = upsert(&repo, base, &place.dirs, &place.leaf, blob, &mut objects)?;
        let now = gix::date::Time {
            seconds: jiff::Timestamp::now().as_second(),
            offset: 0,
        };
        let signature = gix::actor::Signature {
            name: "kitsync".into(),
            email: "kitsync@localhost".into(),
            time: now,
        };
        let notes_commit = gix::objs::Commit {
            tree,
            parents: parent.into_iter().collect(),
            author: signature.clone(),
            committer: signature,
            encoding: None,
            message: "Notes added by kitsync\n".into(),
            extra_headers: Vec::new(),
        };
        let new = store(&repo, &notes_commit, &mut objects)?;
        let update = RefUpdate {
            name: NOTES_REF,
            old: parent,
            new,
        };
        match push(&repo, &shared.url, login.clone(), &update, &objects) {
            Ok(()) => {
                // Only a cache of the remote's ref: the next write fetches it anyway.
                if let Err(e) = repo.reference(
                    NOTES_REF,
                    new,
                    gix::refs::transaction::PreviousValue::Any,
                    "kitsync: notes pushed",
                ) {
                    tracing::debug!(error = %e, "could not record the pushed notes locally");
                }
                Ok(Attempt::Done(Recorded::Written {
                    notes_commit: new.to_string(),
                }))
            }
            Err(PushError::Moved) => Ok(Attempt::Moved),
            Err(PushError::Rejected(reason)) => {
                // Servers word a lost race differently ("failed to update ref", "fetch
                // first", "stale info"): the remote's ref itself tells a race from a refusal.
                let now = self.fetch(&repo, login, &secrets, None)?;
                if now != parent {
                    return Ok(Attempt::Moved);
                }
                let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
                Err(NoteError::Rejected {
                    url: shared.shown_url.clone(),
                    reference: NOTES_REF.into(),
                    reason: redact_text(&reason, &secrets),
                })
            }
            Err(PushError::Failed(e)) => Err(classify(&e, &shared.shown_url, &secrets).into()),
        }
    }

    /// The remote's notes commit (`None`: the remote has no notes yet); with `interrupt`,
    /// also fetched into the notes repository when missing there.
    fn fetch(
        &self,
        repo: &gix::Repository,
        login: Option<Login>,
        secrets: &[String],
        interrupt: Option<&AtomicBool>,
    ) -> Result<Option<ObjectId>> {
        use gix::remote::Direction;
        let fail = |e: gix::Error| classify(&e, &self.shared.shown_url, secrets);
        let refspec = format!("+{NOTES_REF}:{NOTES_REF}");
        let remote = repo
            .remote_at(self.shared.url.as_str())
            .map_err(fail)?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs([refspec.as_str()], Direction::Fetch)
            .map_err(fail)?;
        let connection = remote
            .connect(Direction::Fetch)
            .map_err(fail)?
            .with_credentials(credentials_fn(login));
        let prepare = connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(fail)?;
        let tip = prepare
            .ref_map()
            .remote_refs
            .iter()
            .find_map(|r| match r.unpack() {
                (name, Some(id), _) if name == NOTES_REF => Some(id.to_owned()),
                _ => None,
            });
        if let (Some(id), Some(interrupt)) = (tip, interrupt)
            && !repo.has_object(id)
        {
            prepare.receive(gix::progress::Discard, interrupt).map_err(fail)?;
            if !repo.has_object(id) {
                return Err(Error::Git(format!(
                    "{}: fetched {NOTES_REF} but its commit {id} is missing",
                    self.shared.shown_url
                )));
            }
        }
        Ok(tip)
    }
}

/// Where a commit's note is, or would go, in a notes tree.
struct Place {
    /// Fanout directories from the root (`["ab"]` for `ab/cdef...`).
    dirs: Vec<String>,
    /// The file name in the last directory: the rest of the commit's hex id.
    leaf: String,
    /// The note's blob, when the commit has one.
    existing: Option<ObjectId>,
}

/// Finds `hex`'s note in the notes tree `root`, following fanout directories (git notes
/// splits ids into `ab/cdef...`, `ab/cd/ef...` once there are many notes). A commit without
/// a note gets the deepest fanout directory that exists for it, as git would read it.
fn locate(repo: &gix::Repository, root: Option<ObjectId>, hex: &str) -> Result<Place> {
    let mut dirs = Vec::new();
    let mut rest = hex;
    let mut current = root;
    while let Some(id) = current {
        current = None;
        let tree = read_tree(repo, id)?;
        if let Some(entry) = tree
            .entries
            .iter()
            .find(|e| !e.mode.is_tree() && e.filename == rest.as_bytes())
        {
            return Ok(Place {
                dirs,
                leaf: rest.to_owned(),
                existing: Some(entry.oid),
            });
        }
        if rest.len() > 2
            && let Some(entry) = tree
                .entries
                .iter()
                .find(|e| e.mode.is_tree() && e.filename == rest.as_bytes()[..2])
        {
            dirs.push(rest[..2].to_owned());
            rest = &rest[2..];
            current = Some(entry.oid);
        }
    }
    Ok(Place {
        dirs,
        leaf: rest.to_owned(),
        existing: None,
    })
}

/// The tree `base` (or an empty one) with `dirs/leaf` set to `blob`; every new tree is
/// stored and added to `objects`.
fn upsert(
    repo: &gix::Repository,
    base: Option<ObjectId>,
    dirs: &[String],
    leaf: &str,
    blob: ObjectId,
    objects: &mut Vec<PackObject>,
) -> Result<ObjectId> {
    use gix::objs::tree::{Entry, EntryKind};
    let mut tree = match base {
        Some(id) => read_tree(repo, id)?,
        None => gix::objs::Tree::empty(),
    };
    let (name, kind, oid) = match dirs.split_first() {
        None => (leaf, EntryKind::Blob, blob),
        Some((dir, deeper)) => {
            let sub = tree
                .entries
                .iter()
                .find(|e| e.mode.is_tree() && e.filename == dir.as_bytes())
                .map(|e| e.oid);
            (
                dir.as_str(),
                EntryKind::Tree,
                upsert(repo, sub, deeper, leaf, blob, objects)?,
            )
        }
    };
    tree.entries.retain(|e| e.filename != name.as_bytes());
    tree.entries.push(Entry {
        mode: kind.into(),
        filename: name.into(),
        oid,
    });
    // Git's tree order (a directory sorts as if its name ended in '/').
    tree.entries.sort();
    store(repo, &tree, objects)
}

/// Writes `object` to `repo` and keeps its bytes for the pack.
fn store(repo: &gix::Repository, object: &impl WriteTo, objects: &mut Vec<PackObject>) -> Result<ObjectId> {
    let mut data = Vec::new();
    object
        .write_to(&mut data)
        .map_err(|e| Error::Git(format!("serialising a note object: {e}")))?;
    let id = repo
        .write_object(object)
        .map_err(|e| Error::Git(format!("writing a note object: {e}")))?
        .detach();
    objects.push(PackObject {
        kind: object.kind(),
        data,
    });
    Ok(id)
}

fn damaged(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Git(format!("notes repository: {what}: {e}"))
}

fn read_tree(repo: &gix::Repository, id: ObjectId) -> Result<gix::objs::Tree> {
    let tree = repo
        .find_tree(id)
        .map_err(|e| damaged("reading a notes tree", e))?;
    let decoded = tree.decode().map_err(|e| damaged("decoding a notes tree", e))?;
    Ok(decoded.into())
}

fn read_blob(repo: &gix::Repository, id: ObjectId) -> Result<Vec<u8>> {
    Ok(repo
        .find_blob(id)
        .map_err(|e| damaged("reading a note", e))?
        .data
        .clone())
}

fn tree_of(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId> {
    let commit = repo
        .find_commit(commit)
        .map_err(|e| damaged("reading the notes commit", e))?;
    commit
        .tree_id()
        .map(gix::Id::detach)
        .map_err(|e| damaged("reading the notes commit", e))
}

fn local_tip(repo: &gix::Repository) -> Option<ObjectId> {
    let mut reference = repo.try_find_reference(NOTES_REF).ok()??;
    reference.peel_to_id().ok().map(gix::Id::detach)
}
