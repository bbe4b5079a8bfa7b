//! A Git source: a bare cache of one remote, polled by ref listing and fetched only on change.

use super::auth::{Auth, credentials_fn};
use super::error::{Error, Result};
use super::redact::{redact_text, redact_url};
use super::refspec::{RefSpec, best_tag};
use super::snapshot::{Limits, Snapshot, read_commit};
use gix::ObjectId;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

/// Where a source comes from and how to reach it.
#[derive(Clone)]
pub struct SourceConfig {
    /// The remote: `https://`, `ssh://`, scp-like `user@host:path`, `git://`, `file://` or a path.
    pub url: String,
    /// The reference to follow.
    pub reference: RefSpec,
    /// The bare cache repository (created when missing); one per source.
    pub cache_dir: PathBuf,
    /// The credentials.
    pub auth: Auth,
    /// The most one network operation (ref listing plus fetch) may take.
    pub timeout: Duration,
}

impl SourceConfig {
    /// A source without credentials and with a 60 s timeout.
    pub fn new(url: impl Into<String>, reference: RefSpec, cache_dir: impl Into<PathBuf>) -> Self {
        SourceConfig {
            url: url.into(),
            reference,
            cache_dir: cache_dir.into(),
            auth: Auth::None,
            timeout: Duration::from_secs(60),
        }
    }

    /// With these credentials.
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// With this network timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

// The URL may hold credentials.
impl fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceConfig")
            .field("url", &redact_url(&self.url))
            .field("reference", &self.reference)
            .field("cache_dir", &self.cache_dir)
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A commit's author, time and subject.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CommitInfo {
    /// The commit, hex.
    pub commit: String,
    /// `Name <email>` of the author.
    pub author: String,
    /// Author time, RFC 3339 (UTC).
    pub time: String,
    /// First non-empty line of the message (at most 200 characters).
    pub subject: String,
}

/// What a poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// The reference still points at the last commit; nothing was fetched.
    Unchanged {
        /// The commit, hex.
        commit: String,
    },
    /// The reference points at a new commit, now in the cache.
    Changed {
        /// The commit before, if this source had one.
        previous: Option<String>,
        /// The new commit, hex.
        commit: String,
        /// The new commit does not descend from the previous one (a force push, a moved tag).
        forced: bool,
    },
}

impl PollOutcome {
    /// The commit the reference points at now.
    pub fn commit(&self) -> &str {
        match self {
            PollOutcome::Unchanged { commit } | PollOutcome::Changed { commit, .. } => commit,
        }
    }

    /// Whether the commit changed.
    pub fn is_changed(&self) -> bool {
        matches!(self, PollOutcome::Changed { .. })
    }
}

/// A Git source: a remote and reference, mirrored into a bare cache without a working tree.
///
/// Cloning is cheap and shares the cache; polls of one source are serialised.
///
/// # Guarantees
/// - A poll lists the remote's refs (no pack) and fetches only when the wanted ref moved.
/// - After any failure the last commit stays readable: [`Source::last_commit`] and
///   [`Source::snapshot`] work from the cache.
/// - Credentials are read at use and never logged; URLs are redacted in errors and logs.
/// - No ref or URL that could be read as a command-line option reaches a spawned program.
///
/// # Caveats
/// A network operation that overruns the timeout is abandoned, not killed: it is
/// interrupted at gix's next check (or when the transport's own timeout fires) and may still
/// complete in the background; the next poll lists refs afresh either way.
#[derive(Clone)]
pub struct Source {
    shared: Arc<Shared>,
}

struct Shared {
    config: SourceConfig,
    /// The URL as shown to humans.
    shown_url: String,
    /// Swapped for a fresh one when the cache turns out corrupted.
    repo: std::sync::RwLock<gix::ThreadSafeRepository>,
    last: Mutex<Option<ObjectId>>,
    /// A commit whose fetch was refused for an oversized object: not fetched again.
    refused: Arc<Mutex<Option<ObjectId>>>,
    /// Held for a whole poll; keeps an abandoned network thread, if any.
    polling: Mutex<Option<JoinHandle<()>>>,
    fetches: AtomicU64,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("config", &self.shared.config)
            .field("last", &self.last_commit())
            .finish_non_exhaustive()
    }
}

impl Source {
    /// Opens (or creates) the cache for `config`; no network access.
    ///
    /// # Errors
    /// [`Error::BadRef`] for a URL that is malformed or could be read as an option;
    /// [`Error::Io`] / [`Error::Git`] when the cache cannot be created or opened.
    pub fn open(config: SourceConfig) -> Result<Source> {
        let shown_url = redact_url(&config.url);
        check_url(&config.url, &shown_url)?;
        check_credentials_transport(&config, &shown_url)?;
        let dir = &config.cache_dir;
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let git = |e: gix::Error| {
            Error::Git(format!(
                "cache {}: {}",
                dir.display(),
                redact_text(&e.to_string(), &[])
            ))
        };
        if !dir.join("HEAD").exists() {
            gix::ThreadSafeRepository::init(dir, gix::create::Kind::Bare, gix::create::Options::default())
                .map_err(git)?;
        }
        let repo = match gix::ThreadSafeRepository::open_opts(dir, open_options(&config))
            .map_err(|e| e.to_string())
            .and_then(|repo| readable(&repo).map(|()| repo))
        {
            Ok(repo) => repo,
            Err(why) => {
                tracing::warn!(url = %shown_url, cache = %dir.display(), why, "source cache is corrupted; rebuilding it");
                rebuild(dir, &config)?
            }
        };
        let last = resolve_local(&repo.to_thread_local(), &config.reference);
        tracing::debug!(url = %shown_url, reference = %config.reference, last = ?last.map(|id| id.to_string()), "source opened");
        Ok(Source {
            shared: Arc::new(Shared {
                config,
                shown_url,
                repo: std::sync::RwLock::new(repo),
                last: Mutex::new(last),
                refused: Arc::default(),
                polling: Mutex::new(None),
                fetches: AtomicU64::new(0),
            }),
        })
    }

    /// Lists the remote's refs and, only if the wanted ref moved, fetches it.
    ///
    /// The first poll compares with the commit the cache last resolved (kept across restarts).
    ///
    /// # Errors
    /// [`Error::MissingRef`], [`Error::NoMatchingTag`], [`Error::Unauthenticated`],
    /// [`Error::Unreachable`] (including a timeout) or [`Error::Git`]; the last commit stays usable.
    pub fn poll(&self) -> Result<PollOutcome> {
        let shared = &self.shared;
        let mut straggler = shared.polling.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = straggler.take()
            && !handle.is_finished()
        {
            tracing::warn!(url = %shared.shown_url, "an abandoned fetch is still running; polling anyway");
        }
        // Every fetch adds a pack; past MAX_PACKS the cache is fetched again into one, so
        // lookups stay fast and the store's slots (CACHE_SLOTS) never run out in a long run.
        let packs = pack_count(&shared.config.cache_dir);
        if packs > MAX_PACKS {
            tracing::info!(url = %shared.shown_url, packs, "compacting the source cache: fetching it again into one pack");
            self.recover_as(&format!("{packs} packs"), "compacting");
        }
        let previous = self.last_id();
        let repo = self.repo().to_thread_local();

        // A pinned commit already in the cache needs no network at all.
        if let RefSpec::Commit(hex) = &shared.config.reference {
            let id = parse_id(hex)?;
            if has_commit(&repo, id) {
                return Ok(self.settle(&repo, previous, id));
            }
        }

        let job = Fetch {
            repo: self.repo(),
            url: shared.config.url.clone(),
            shown_url: shared.shown_url.clone(),
            reference: shared.config.reference.clone(),
            auth: shared.config.auth.clone(),
            previous,
            refused: shared.refused.clone(),
        };
        let started = std::time::Instant::now();
        match bounded(shared.config.timeout, move |interrupt| job.run(interrupt)) {
            Bounded::Done(Ok(fetched)) => {
                if fetched.fetched {
                    shared.fetches.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(url = %shared.shown_url, commit = %fetched.target, ms = started.elapsed().as_millis(), "fetched");
                }
                Ok(self.settle(&repo, previous, fetched.target))
            }
            Bounded::Done(Err(e)) => {
                tracing::warn!(url = %shared.shown_url, error = %e, "poll failed; keeping the last commit");
                // Not the network, not the credentials, not the ref: the cache itself.
                if matches!(e, Error::Git(_)) {
                    self.recover(&e.to_string());
                }
                Err(e)
            }
            Bounded::TimedOut(handle) => {
                *straggler = Some(handle);
                let timeout = shared.config.timeout;
                tracing::warn!(url = %shared.shown_url, ?timeout, "poll timed out; keeping the last commit");
                Err(Error::Unreachable {
                    url: shared.shown_url.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {timeout:?}"),
                    ),
                })
            }
            Bounded::Failed(reason) => Err(Error::Git(reason)),
        }
    }

    /// Reads `commit` (hex) from the cache as a snapshot.
    ///
    /// # Errors
    /// [`Error::BadRef`] for a malformed id, [`Error::MissingRef`] when the cache lacks it,
    /// or a snapshot limit exceeded.
    pub fn snapshot(&self, commit: &str) -> Result<Snapshot> {
        let id = parse_id(commit)?;
        let repo = self.repo().to_thread_local();
        if !has_commit(&repo, id) {
            // The commit the cache resolved before is gone: the cache is damaged.
            if self.last_id() == Some(id) {
                self.recover("the last fetched commit is missing from the cache");
            }
            return Err(Error::MissingRef {
                url: self.shared.shown_url.clone(),
                reference: format!("commit:{commit} in the cache"),
            });
        }
        read_commit(&repo, id, Limits::default()).inspect_err(|e| {
            if matches!(e, Error::Git(_)) {
                self.recover(&e.to_string());
            }
        })
    }

    /// The cache repository.
    fn repo(&self) -> gix::ThreadSafeRepository {
        self.shared
            .repo
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces a corrupted cache with a fresh one (built beside it, then swapped in), and
    /// forgets the last commit so the next poll fetches everything again. Failures are logged:
    /// the next poll reports them.
    fn recover(&self, why: &str) {
        let shared = &self.shared;
        tracing::warn!(url = %shared.shown_url, cache = %shared.config.cache_dir.display(), why, "source cache is corrupted; rebuilding it");
        self.recover_as(why, "rebuilding");
    }

    fn recover_as(&self, why: &str, what: &str) {
        let shared = &self.shared;
        match rebuild(&shared.config.cache_dir, &shared.config) {
            Ok(repo) => {
                *shared.repo.write().unwrap_or_else(PoisonError::into_inner) = repo;
                *shared.last.lock().unwrap_or_else(PoisonError::into_inner) = None;
            }
            Err(e) => {
                tracing::error!(url = %shared.shown_url, error = %e, why, what, "could not rebuild the source cache")
            }
        }
    }

    /// Who made `commit` (hex), when, and its subject line: the audit trail a Kit's status shows.
    ///
    /// # Errors
    /// [`Error::BadRef`] for a malformed id, [`Error::MissingRef`] when the cache lacks it.
    pub fn commit_info(&self, commit: &str) -> Result<CommitInfo> {
        let id = parse_id(commit)?;
        let repo = self.repo().to_thread_local();
        let missing = || Error::MissingRef {
            url: self.shared.shown_url.clone(),
            reference: format!("commit:{commit} in the cache"),
        };
        let found = repo.find_commit(id).map_err(|_| missing())?;
        let author = found.author().map_err(|e| Error::Git(e.to_string()))?;
        let time = author
            .time()
            .ok()
            .and_then(|t| jiff::Timestamp::from_second(t.seconds).ok())
            .map(|t| t.to_string())
            .unwrap_or_default();
        let subject = found
            .message_raw_sloppy()
            .to_string()
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        Ok(CommitInfo {
            commit: commit.to_owned(),
            author: format!(
                "{} <{}>",
                author.name.to_string().trim(),
                author.email.to_string().trim()
            ),
            time,
            subject,
        })
    }

    /// The commit the reference pointed at after the last successful poll (or in the cache).
    pub fn last_commit(&self) -> Option<String> {
        self.last_id().map(|id| id.to_string())
    }

    /// How many fetches (pack negotiations) this source has made; ref listings are not counted.
    pub fn fetches(&self) -> u64 {
        self.shared.fetches.load(Ordering::Relaxed)
    }

    /// The configuration.
    pub fn config(&self) -> &SourceConfig {
        &self.shared.config
    }

    /// The URL with credentials removed, for display.
    pub fn shown_url(&self) -> &str {
        &self.shared.shown_url
    }

    /// [`Source::open`] on the blocking thread pool.
    ///
    /// # Errors
    /// As [`Source::open`].
    pub async fn open_async(config: SourceConfig) -> Result<Source> {
        blocking(move || Source::open(config)).await
    }

    /// [`Source::poll`] on the blocking thread pool.
    ///
    /// # Errors
    /// As [`Source::poll`].
    pub async fn poll_async(&self) -> Result<PollOutcome> {
        let this = self.clone();
        blocking(move || this.poll()).await
    }

    /// [`Source::snapshot`] on the blocking thread pool.
    ///
    /// # Errors
    /// As [`Source::snapshot`].
    pub async fn snapshot_async(&self, commit: String) -> Result<Snapshot> {
        let this = self.clone();
        blocking(move || this.snapshot(&commit)).await
    }

    fn last_id(&self) -> Option<ObjectId> {
        *self.shared.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `commit` as the current one and says how it relates to `previous`.
    fn settle(&self, repo: &gix::Repository, previous: Option<ObjectId>, commit: ObjectId) -> PollOutcome {
        *self.shared.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(commit);
        match previous {
            Some(prev) if prev == commit => PollOutcome::Unchanged {
                commit: commit.to_string(),
            },
            _ => {
                let forced = previous.is_some_and(|prev| !descends_from(repo, commit, prev));
                if forced {
                    tracing::warn!(
                        url = %self.shared.shown_url,
                        reference = %self.shared.config.reference,
                        previous = ?previous.map(|p| p.to_string()),
                        %commit,
                        "reference was rewritten (force push): the new commit does not descend from the previous one"
                    );
                }
                PollOutcome::Changed {
                    previous: previous.map(|p| p.to_string()),
                    commit: commit.to_string(),
                    forced,
                }
            }
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Git(format!("source task failed: {e}")))?
}

/// Refuses URLs that are malformed, of an unsupported scheme, or have a part that a
/// spawned `ssh`/`git upload-pack` could read as an option.
fn check_url(url: &str, shown: &str) -> Result<()> {
    let bad = |reason: &str| Error::BadRef {
        reference: shown.to_owned(),
        reason: reason.to_owned(),
    };
    if url.trim().is_empty() || url.trim_start().starts_with('-') {
        return Err(bad("a URL may not be empty or start with '-'"));
    }
    let parsed = gix::url::parse(url).map_err(|e| bad(&redact_text(&e.to_string(), &[])))?;
    use gix::url::Scheme;
    if !matches!(
        parsed.scheme,
        Scheme::Https | Scheme::Http | Scheme::Ssh | Scheme::Git | Scheme::File
    ) {
        return Err(bad("only https, http, ssh, git and file URLs are supported"));
    }
    let dash = |part: Option<&str>| part.is_some_and(|p| p.starts_with('-'));
    let path = parsed.path.to_string();
    if dash(parsed.host())
        || dash(parsed.user())
        || path.starts_with('-')
        || path.trim_start_matches('/').starts_with('-')
    {
        return Err(bad("no part of the URL may start with '-'"));
    }
    Ok(())
}

/// Passwords and tokens go only over https (or ssh): plain http would show them to
/// anyone on the path, so such a source is refused before any connection is made.
fn check_credentials_transport(config: &SourceConfig, shown: &str) -> Result<()> {
    let has_secret = matches!(config.auth, Auth::Token { .. } | Auth::Basic { .. })
        || gix::url::parse(config.url.as_str()).is_ok_and(|u| u.password().is_some());
    let plain_http = config
        .url
        .trim_start()
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
    if has_secret && plain_http {
        return Err(Error::InsecureCredentials {
            url: shown.to_owned(),
        });
    }
    Ok(())
}

/// Opening options for the cache: only the cache's own config and no environment (so the
/// operator's `GIT_SSH_COMMAND`, credential helpers or `insteadOf` rules cannot redirect a
/// source), except proxy variables; plus in-memory settings for this source.
/// Largest object, uncompressed, that a fetch may inflate (128 MiB).
pub const MAX_OBJECT_BYTES: usize = 128 << 20;

pub(super) fn open_options(config: &SourceConfig) -> gix::open::Options {
    let mut permissions = gix::open::Permissions::isolated();
    permissions.env.http_transport = gix::sec::Permission::Allow;
    let secs = config.timeout.as_secs().max(1);
    let mut overrides = vec![
        format!("gitoxide.userAgent=kitsync/{}", env!("CARGO_PKG_VERSION")),
        format!(
            "gitoxide.http.connectTimeout={}",
            config.timeout.as_millis().max(1)
        ),
        // Abort a transfer that stalls below 1 KiB/s for the whole timeout.
        "http.lowSpeedLimit=1024".to_owned(),
        format!("http.lowSpeedTime={secs}"),
        // No single object is inflated past this while a fetched pack is indexed: a repository
        // holding a larger object (a 2 GiB blob of zeros is 2 MB on the wire) fails to fetch
        // instead of taking the host's memory. Kit files are capped far lower, at read time.
        format!("gitoxide.objects.allocLimit={MAX_OBJECT_BYTES}"),
    ];
    if let Some(ssh) = config.auth.ssh_command(secs) {
        overrides.push(format!("core.sshCommand={ssh}"));
        overrides.push("ssh.variant=ssh".to_owned());
    }
    gix::open::Options::default()
        .permissions(permissions)
        .config_overrides(overrides)
        // gix sizes the store by the packs on disk at open (at least 32) and does not grow it:
        // without room, the 33rd fetch of one process fails with "too few index slots".
        .object_store_slots(gix::odb::store::init::Slots::Given(CACHE_SLOTS))
}

/// Packs a cache may hold before it is compacted (fetched again into one).
pub(super) const MAX_PACKS: usize = 64;

/// Index slots of a cache's object store: room for MAX_PACKS plus the fetches of one poll.
const CACHE_SLOTS: u16 = 128;

/// The packs in a bare cache at `dir` (0 when it cannot be read).
pub(super) fn pack_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("objects/pack")).map_or(0, |entries| {
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".idx"))
            .count()
    })
}

pub(super) fn parse_id(hex: &str) -> Result<ObjectId> {
    ObjectId::from_hex(hex.as_bytes()).map_err(|e| Error::BadRef {
        reference: hex.to_owned(),
        reason: format!("not a commit id: {e}"),
    })
}

fn has_commit(repo: &gix::Repository, id: ObjectId) -> bool {
    repo.find_commit(id).is_ok()
}

/// Whether `descendant` has `ancestor` in its history (or is it).
fn descends_from(repo: &gix::Repository, descendant: ObjectId, ancestor: ObjectId) -> bool {
    matches!(repo.merge_base(ancestor, descendant), Ok(Some(base)) if base.detach() == ancestor)
}

/// The commit the cache holds for `reference`, if any.
fn resolve_local(repo: &gix::Repository, reference: &RefSpec) -> Option<ObjectId> {
    let peel = |name: &str| -> Option<ObjectId> {
        let mut r = repo.try_find_reference(name).ok()??;
        Some(r.peel_to_commit().ok()?.id)
    };
    match reference {
        RefSpec::Branch(_) | RefSpec::Tag(_) => peel(&reference.full_name()?),
        RefSpec::Semver(req) => {
            let names: Vec<String> = repo
                .references()
                .ok()?
                .tags()
                .ok()?
                .filter_map(|r| Some(r.ok()?.name().shorten().to_string()))
                .collect();
            let best = best_tag(req, names.iter().map(String::as_str))?;
            peel(&format!("refs/tags/{best}"))
        }
        RefSpec::Commit(hex) => {
            let id = ObjectId::from_hex(hex.as_bytes()).ok()?;
            has_commit(repo, id).then_some(id)
        }
    }
}

/// One network operation, run on its own thread.
/// Whether the cache answers the questions a poll asks: its references can be listed.
fn readable(repo: &gix::ThreadSafeRepository) -> std::result::Result<(), String> {
    let repo = repo.to_thread_local();
    let refs = repo.references().map_err(|e| e.to_string())?;
    for reference in refs.all().map_err(|e| e.to_string())? {
        let mut reference = reference.map_err(|e| e.to_string())?;
        // A ref that does not peel to an object means missing or damaged objects.
        reference.peel_to_id().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A fresh, empty bare cache at `dir`: created beside it, then swapped in with renames, so
/// `dir` is always either the old cache or a whole new one; the old one is then removed.
fn rebuild(dir: &std::path::Path, config: &SourceConfig) -> Result<gix::ThreadSafeRepository> {
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cache".into());
    let parent = dir.parent().unwrap_or(std::path::Path::new("."));
    let fresh = parent.join(format!(".{name}.fresh-{}", std::process::id()));
    let broken = parent.join(format!(".{name}.broken-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&fresh);
    let _ = std::fs::remove_dir_all(&broken);
    gix::ThreadSafeRepository::init(&fresh, gix::create::Kind::Bare, gix::create::Options::default())
        .map_err(|e| Error::Git(format!("cache {}: {e}", fresh.display())))?;
    std::fs::rename(dir, &broken).map_err(io(dir))?;
    std::fs::rename(&fresh, dir).map_err(io(&fresh))?;
    if let Err(e) = std::fs::remove_dir_all(&broken) {
        tracing::warn!(path = %broken.display(), error = %e, "could not remove the corrupted cache");
    }
    gix::ThreadSafeRepository::open_opts(dir, open_options(config))
        .map_err(|e| Error::Git(format!("cache {}: {e}", dir.display())))
}

struct Fetch {
    repo: gix::ThreadSafeRepository,
    url: String,
    shown_url: String,
    reference: RefSpec,
    auth: Auth,
    previous: Option<ObjectId>,
    refused: Arc<Mutex<Option<ObjectId>>>,
}

struct Fetched {
    target: ObjectId,
    fetched: bool,
}

impl Fetch {
    fn run(self, interrupt: &AtomicBool) -> Result<Fetched> {
        use gix::remote::Direction;
        let repo = self.repo.to_thread_local();
        let login = self.auth.login()?;
        let secrets: Vec<String> = login.iter().map(|l| l.password.clone()).collect();
        let fail = |e: gix::Error| classify(&e, &self.shown_url, &secrets);

        let remote = repo
            .remote_at(self.url.as_str())
            .map_err(fail)?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(
                self.reference.fetch_refspecs().iter().map(String::as_str),
                Direction::Fetch,
            )
            .map_err(fail)?;
        let connection = remote
            .connect(Direction::Fetch)
            .map_err(fail)?
            .with_credentials(credentials_fn(login));
        // The handshake and ref listing; a pack is only negotiated by `receive` below.
        let prepare = connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(fail)?;
        let target = self.target(&prepare.ref_map().remote_refs)?;
        if Some(target) == self.previous && has_commit(&repo, target) {
            return Ok(Fetched {
                target,
                fetched: false,
            });
        }
        let too_large = || Error::ObjectTooLarge {
            url: self.shown_url.clone(),
            limit_mib: MAX_OBJECT_BYTES >> 20,
        };
        // Refused once: not downloaded and inflated again at every poll.
        if *self.refused.lock().unwrap_or_else(PoisonError::into_inner) == Some(target) {
            return Err(too_large());
        }
        if let Err(e) = prepare.receive(gix::progress::Discard, interrupt).map_err(fail) {
            if matches!(e, Error::ObjectTooLarge { .. }) {
                *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = Some(target);
            }
            return Err(e);
        }
        if !has_commit(&repo, target) {
            return Err(Error::MissingRef {
                url: self.shown_url.clone(),
                reference: self.reference.to_string(),
            });
        }
        Ok(Fetched {
            target,
            fetched: true,
        })
    }

    /// The commit the remote's refs say the reference points at.
    fn target(&self, refs: &[gix::protocol::handshake::Ref]) -> Result<ObjectId> {
        // A peeled tag's commit is the third element; otherwise the ref's own object.
        let commit_of = |r: &gix::protocol::handshake::Ref| {
            let (_, direct, peeled) = r.unpack();
            peeled.or(direct).map(ToOwned::to_owned)
        };
        let missing = || Error::MissingRef {
            url: self.shown_url.clone(),
            reference: self.reference.to_string(),
        };
        match &self.reference {
            RefSpec::Branch(_) | RefSpec::Tag(_) => {
                let full = self.reference.full_name().unwrap_or_default();
                refs.iter()
                    .find(|r| r.unpack().0 == full.as_str())
                    .and_then(commit_of)
                    .ok_or_else(missing)
            }
            RefSpec::Semver(req) => {
                let tags: Vec<(&str, &gix::protocol::handshake::Ref)> = refs
                    .iter()
                    .filter_map(|r| {
                        Some((
                            std::str::from_utf8(r.unpack().0.strip_prefix(b"refs/tags/")?).ok()?,
                            r,
                        ))
                    })
                    .collect();
                let best = best_tag(req, tags.iter().map(|(name, _)| *name)).ok_or_else(|| {
                    Error::NoMatchingTag {
                        url: self.shown_url.clone(),
                        requirement: req.to_string(),
                    }
                })?;
                tags.iter()
                    .find(|(name, _)| *name == best)
                    .and_then(|(_, r)| commit_of(r))
                    .ok_or_else(missing)
            }
            RefSpec::Commit(hex) => parse_id(hex),
        }
    }
}

/// Maps a gix error to ours by its classification, then by its text (ssh reports through
/// stderr only). The text is redacted before it is kept.
pub(super) fn classify(error: &gix::Error, url: &str, secrets: &[String]) -> Error {
    use std::io::ErrorKind as K;
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let text = redact_text(
        &error
            .iter_errors()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": "),
        &secrets,
    );
    let lower = text.to_ascii_lowercase();
    let io_kind = error.classify().find_map(|c| c.io_kind()).or_else(|| {
        error
            .iter_errors()
            .find_map(|e| e.downcast_ref::<std::io::Error>().map(std::io::Error::kind))
    });
    let denied = error.is_unauthenticated()
        || error.is_permission_denied()
        || [
            "permission denied",
            "authentication failed",
            "status 401",
            "status 403",
            "host key verification failed",
        ]
        .iter()
        .any(|needle| lower.contains(needle));
    if denied {
        return Error::Unauthenticated { url: url.to_owned() };
    }
    if lower.contains("too large to fit in memory") {
        return Error::ObjectTooLarge {
            url: url.to_owned(),
            limit_mib: MAX_OBJECT_BYTES >> 20,
        };
    }
    let unreachable_kind = io_kind.filter(|k| {
        matches!(
            k,
            K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NotConnected
                | K::TimedOut
                | K::HostUnreachable
                | K::NetworkUnreachable
                | K::AddrNotAvailable
        )
    });
    let unreachable_text = [
        "could not connect",
        "could not resolve",
        "connection refused",
        "timed out",
        "dns error",
        "error sending request",
        "name or service not known",
        "no route to host",
    ]
    .iter()
    .any(|needle| lower.contains(needle));
    if unreachable_kind.is_some() || unreachable_text {
        return Error::Unreachable {
            url: url.to_owned(),
            source: std::io::Error::new(unreachable_kind.unwrap_or(K::Other), text),
        };
    }
    Error::Git(format!("{url}: {text}"))
}

pub(super) enum Bounded<T> {
    Done(T),
    TimedOut(JoinHandle<()>),
    Failed(String),
}

/// Runs `job` on its own thread and waits at most `timeout`. On timeout the job's interrupt
/// flag is raised and its thread handed back, still running.
pub(super) fn bounded<T: Send + 'static>(
    timeout: Duration,
    job: impl FnOnce(&AtomicBool) -> T + Send + 'static,
) -> Bounded<T> {
    let interrupt = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::sync_channel(1);
    let flag = Arc::clone(&interrupt);
    let spawned = std::thread::Builder::new()
        .name("kitsync-fetch".into())
        .spawn(move || {
            // The receiver is gone after a timeout; the result is then dropped.
            let _ = tx.send(job(&flag));
        });
    let handle = match spawned {
        Ok(handle) => handle,
        Err(e) => return Bounded::Failed(format!("could not start a network thread: {e}")),
    };
    match rx.recv_timeout(timeout) {
        Ok(value) => {
            let _ = handle.join();
            Bounded::Done(value)
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            interrupt.store(true, Ordering::Relaxed);
            Bounded::TimedOut(handle)
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Bounded::Failed("the network thread panicked".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_that_look_like_options_are_refused() {
        for url in [
            "-u",
            "  --upload-pack=evil",
            "ssh://-oProxyCommand=evil/x",
            "ext::sh -c evil",
            "file:///-x",
        ] {
            let err = check_url(url, &redact_url(url));
            assert!(matches!(err, Err(Error::BadRef { .. })), "{url}: {err:?}");
        }
        for url in [
            "https://example.com/r.git",
            "git@example.com:r.git",
            "/tmp/r",
            "file:///tmp/r",
            "git://h/r",
        ] {
            check_url(url, url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn bounded_gives_up_waiting() {
        let started = std::time::Instant::now();
        let outcome = bounded(Duration::from_millis(50), |interrupt: &AtomicBool| {
            while !interrupt.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        assert!(matches!(outcome, Bounded::TimedOut(_)));
        assert!(started.elapsed() < Duration::from_secs(1));
        let Bounded::TimedOut(handle) = outcome else {
            return;
        };
        handle.join().expect("the job saw the interrupt and ended");
    }

    #[test]
    fn debug_redacts_the_url() {
        let config = SourceConfig::new(
            "https://bob:hunter2@example.com/r.git",
            RefSpec::Branch("main".into()),
            "/tmp/c",
        );
        let text = format!("{config:?}");
        assert!(!text.contains("hunter2") && !text.contains("bob"), "{text}");
    }
}
