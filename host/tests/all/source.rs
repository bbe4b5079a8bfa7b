//! Git sources against real repositories made with the `git` CLI, over file://, a plain
//! path, `git daemon` and `git http-backend` behind a loopback HTTP server with basic auth.

use super::over_the_file_limit;
use kitsync::source::{
    Auth, Error, PollOutcome, RefSpec, Secret, Snapshot, Source, SourceConfig, redact_url,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

use super::{free_port, git};

/// A bare "remote" repository and a work clone that commits and pushes to it.
pub(super) struct Remote {
    pub(super) dir: TempDir,
}

impl Remote {
    pub(super) fn new() -> Remote {
        let dir = TempDir::new().expect("temp dir");
        git(dir.path(), &["init", "--bare", "-q", "remote.git"]);
        git(dir.path(), &["init", "-q", "work"]);
        git(
            &dir.path().join("work"),
            &["remote", "add", "origin", "../remote.git"],
        );
        Remote { dir }
    }

    pub(super) fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub(super) fn bare(&self) -> PathBuf {
        self.dir.path().join("remote.git")
    }

    pub(super) fn file_url(&self) -> String {
        format!("file://{}", self.bare().display())
    }

    /// Writes `files`, commits them on the current branch, pushes it, and returns the commit.
    pub(super) fn commit(&self, message: &str, files: &[(&str, &str)]) -> String {
        let work = self.work();
        for (path, text) in files {
            let path = work.join(path);
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "--allow-empty", "-m", message]);
        git(&work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
        git(&work, &["rev-parse", "HEAD"])
    }

    fn tag(&self, name: &str, annotated: bool) {
        let work = self.work();
        if annotated {
            git(&work, &["tag", "-a", "-m", name, name]);
        } else {
            git(&work, &["tag", name]);
        }
        git(&work, &["push", "-q", "origin", &format!("refs/tags/{name}")]);
    }
}

fn new_cache() -> TempDir {
    TempDir::new().expect("cache dir")
}

fn open(url: &str, reference: &str, cache: &TempDir) -> Source {
    let config = SourceConfig::new(
        url,
        RefSpec::parse(reference).expect("valid ref"),
        cache.path().join("c"),
    )
    .with_timeout(Duration::from_secs(20));
    Source::open(config).expect("source opens")
}

fn text(snapshot: &Snapshot, path: &str) -> String {
    String::from_utf8_lossy(snapshot.get(path).unwrap_or_else(|| panic!("{path} in snapshot"))).into_owned()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `git daemon` serving a directory on loopback; killed on drop.
pub(super) struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    pub(super) fn start(base: &Path) -> Daemon {
        let port = free_port();
        // `git daemon` would run `git-daemon` as a child that outlives a kill of `git`.
        let exec_path = git(base, &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args([
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                "--enable=receive-pack",
            ])
            .arg(format!("--base-path={}", base.display()))
            .arg(format!("--port={port}"))
            .arg(base)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts");
        wait_for_port(port);
        Daemon { child, port }
    }

    pub(super) fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The poll cycle every transport must pass: first clone, a no-op poll that does not fetch,
/// a new commit fetched once, then no-op again. Returns (clone, no-op, fetch) durations.
fn poll_cycle(remote: &Remote, url: &str) -> (Duration, Duration, Duration) {
    let first = remote.commit(
        "v1",
        &[
            ("kits/a/kit.yaml", "namespace: a\n"),
            ("kits/a/svc.yaml", "port: 6776\n"),
        ],
    );
    let cache = new_cache();
    let source = open(url, "main", &cache);
    assert_eq!(source.last_commit(), None);

    let t = Instant::now();
    let outcome = source.poll().expect("first poll clones");
    let clone = t.elapsed();
    assert_eq!(
        outcome,
        PollOutcome::Changed {
            previous: None,
            commit: first.clone(),
            forced: false
        }
    );
    assert_eq!(source.fetches(), 1);
    let snap = source.snapshot(outcome.commit()).expect("snapshot");
    assert_eq!(snap.revision, first);
    assert_eq!(text(&snap, "kits/a/svc.yaml"), "port: 6776\n");
    assert_eq!(
        snap.paths_under("kits/a").collect::<Vec<_>>(),
        ["kits/a/kit.yaml", "kits/a/svc.yaml"]
    );

    let t = Instant::now();
    let outcome = source.poll().expect("no-op poll");
    let noop = t.elapsed();
    assert_eq!(
        outcome,
        PollOutcome::Unchanged {
            commit: first.clone()
        }
    );
    assert_eq!(source.fetches(), 1, "a poll with no new commit must not fetch");

    let second = remote.commit("v2", &[("kits/a/svc.yaml", "port: 5445\n")]);
    let t = Instant::now();
    let outcome = source.poll().expect("poll sees the new commit");
    let fetch = t.elapsed();
    assert_eq!(
        outcome,
        PollOutcome::Changed {
            previous: Some(first.clone()),
            commit: second.clone(),
            forced: false
        }
    );
    assert_eq!(source.fetches(), 2);
    assert_eq!(
        text(&source.snapshot(&second).expect("snapshot"), "kits/a/svc.yaml"),
        "port: 5445\n"
    );
    // The earlier revision stays readable from the cache.
    assert_eq!(
        text(&source.snapshot(&first).expect("snapshot"), "kits/a/svc.yaml"),
        "port: 6776\n"
    );

    assert_eq!(
        source.poll().expect("poll"),
        PollOutcome::Unchanged {
            commit: second.clone()
        }
    );
    assert_eq!(source.fetches(), 2, "no new commit, no fetch");

    // A new `Source` over the same cache (a restart) knows the commit and does not fetch.
    let reopened = open(url, "main", &cache);
    assert_eq!(reopened.last_commit().as_deref(), Some(second.as_str()));
    assert_eq!(
        reopened.poll().expect("poll"),
        PollOutcome::Unchanged { commit: second }
    );
    assert_eq!(reopened.fetches(), 0);
    (clone, noop, fetch)
}

#[test]
fn file_url_clones_polls_and_fetches_only_on_change() {
    let remote = Remote::new();
    let (clone, noop, fetch) = poll_cycle(&remote, &remote.file_url());
    eprintln!("file://: clone {clone:?}, no-op poll {noop:?}, fetch of a new commit {fetch:?}");
}

#[test]
fn plain_path_remote_works_like_file_url() {
    let remote = Remote::new();
    poll_cycle(&remote, &remote.bare().display().to_string());
}

#[test]
fn git_daemon_transport() {
    let remote = Remote::new();
    let daemon = Daemon::start(remote.dir.path());
    let (clone, noop, fetch) = poll_cycle(&remote, &daemon.url("remote.git"));
    eprintln!("git://: clone {clone:?}, no-op poll {noop:?}, fetch of a new commit {fetch:?}");
}

#[test]
fn force_push_is_followed_and_reported() {
    let remote = Remote::new();
    let base = remote.commit("base", &[("a.yaml", "a: 1\n")]);
    let old = remote.commit("old", &[("a.yaml", "a: 2\n")]);
    let cache = new_cache();
    let source = open(&remote.file_url(), "branch:main", &cache);
    assert_eq!(source.poll().expect("poll").commit(), old);

    let work = remote.work();
    git(&work, &["reset", "-q", "--hard", &base]);
    std::fs::write(work.join("a.yaml"), "a: 3\n").expect("write");
    git(&work, &["commit", "-q", "-am", "rewritten"]);
    git(
        &work,
        &["push", "-q", "--force", "origin", "HEAD:refs/heads/main"],
    );
    let new = git(&work, &["rev-parse", "HEAD"]);

    let outcome = source.poll().expect("poll follows the force push");
    assert_eq!(
        outcome,
        PollOutcome::Changed {
            previous: Some(old.clone()),
            commit: new.clone(),
            forced: true
        }
    );
    assert_eq!(
        text(&source.snapshot(&new).expect("snapshot"), "a.yaml"),
        "a: 3\n"
    );
    assert_eq!(
        text(&source.snapshot(&old).expect("old commit kept"), "a.yaml"),
        "a: 2\n"
    );
}

#[test]
fn tag_and_semver_refs() {
    let remote = Remote::new();
    let v100 = remote.commit("1.0.0", &[("v", "1.0.0")]);
    remote.tag("v1.0.0", false);
    let v120 = remote.commit("1.2.0", &[("v", "1.2.0")]);
    remote.tag("v1.2.0", true); // annotated: the ref names a tag object, peeled to the commit
    remote.commit("2.0.0", &[("v", "2.0.0")]);
    remote.tag("v2.0.0", false);

    let cache_tag = new_cache();
    let tag = open(&remote.file_url(), "tag:v1.0.0", &cache_tag);
    assert_eq!(tag.poll().expect("tag poll").commit(), v100);

    let cache_semver = new_cache();
    let semver = open(&remote.file_url(), "semver:>=1.0, <2", &cache_semver);
    let outcome = semver.poll().expect("semver poll");
    assert_eq!(outcome.commit(), v120, "highest tag in range is v1.2.0");
    assert_eq!(text(&semver.snapshot(&v120).expect("snapshot"), "v"), "1.2.0");
    assert_eq!(semver.fetches(), 1);

    // A tag outside the range changes nothing and fetches nothing.
    remote.commit("3.0.0", &[("v", "3.0.0")]);
    remote.tag("v3.0.0", false);
    assert_eq!(
        semver.poll().expect("poll"),
        PollOutcome::Unchanged { commit: v120.clone() }
    );
    assert_eq!(semver.fetches(), 1);

    // v1.3.0 is in range and higher: the source moves to it.
    let v130 = remote.commit("1.3.0", &[("v", "1.3.0")]);
    remote.tag("v1.3.0", true);
    let outcome = semver.poll().expect("poll");
    assert!(outcome.is_changed(), "{outcome:?}");
    assert_eq!(outcome.commit(), v130);
    assert_eq!(semver.fetches(), 2);
    assert_eq!(text(&semver.snapshot(&v130).expect("snapshot"), "v"), "1.3.0");

    let no_match = open(&remote.file_url(), "semver:>=9", &new_cache());
    let err = no_match.poll().expect_err("no tag matches");
    assert!(matches!(err, Error::NoMatchingTag { .. }), "{err:?}");
}

#[test]
fn fixed_commit_is_fetched_once_then_never_again() {
    let remote = Remote::new();
    let pinned = remote.commit("pinned", &[("a.yaml", "pinned\n")]);
    remote.commit("later", &[("a.yaml", "later\n")]);
    let cache = new_cache();
    let source = open(&remote.file_url(), &format!("commit:{pinned}"), &cache);
    let outcome = source.poll().expect("poll");
    assert_eq!(outcome.commit(), pinned);
    assert_eq!(
        text(&source.snapshot(&pinned).expect("snapshot"), "a.yaml"),
        "pinned\n"
    );
    assert_eq!(source.fetches(), 1);

    remote.commit("even later", &[("a.yaml", "even later\n")]);
    // The remote can even go away: a pinned commit in the cache needs no network.
    std::fs::rename(remote.bare(), remote.dir.path().join("gone.git")).expect("rename");
    for _ in 0..3 {
        assert_eq!(
            source.poll().expect("poll"),
            PollOutcome::Unchanged {
                commit: pinned.clone()
            }
        );
    }
    assert_eq!(source.fetches(), 1);
}

#[test]
fn missing_refs_are_named() {
    let remote = Remote::new();
    remote.commit("one", &[("a", "1")]);
    let url = remote.file_url();
    let absent = format!("commit:{}", &"0123456789abcdef".repeat(3)[..40]);
    for reference in ["branch:nope", "tag:v9.9.9", absent.as_str()] {
        let cache = new_cache();
        let source = open(&url, reference, &cache);
        let err = source.poll().expect_err("missing");
        let Error::MissingRef {
            url: shown,
            reference: named,
        } = &err
        else {
            panic!("{reference}: {err:?}")
        };
        assert_eq!(shown, &url);
        assert_eq!(named, reference);
        assert!(err.to_string().contains(&url), "{err}");
        assert_eq!(source.last_commit(), None);
    }
}

#[test]
fn unreachable_remote_fails_fast_and_keeps_the_last_commit() {
    let remote = Remote::new();
    let commit = remote.commit("one", &[("a.yaml", "a: 1\n")]);
    let daemon = Daemon::start(remote.dir.path());
    let url = daemon.url("remote.git");
    let cache = new_cache();
    let source = open(&url, "main", &cache);
    source.poll().expect("first poll");
    drop(daemon); // the port is now closed

    let t = Instant::now();
    let err = source.poll().expect_err("nothing listens");
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    assert!(err.to_string().contains(&url), "{err}");
    assert_eq!(source.last_commit().as_deref(), Some(commit.as_str()));
    assert_eq!(
        text(&source.snapshot(&commit).expect("still readable"), "a.yaml"),
        "a: 1\n"
    );

    // Same for a source that never reached its remote.
    let never_cache = new_cache();
    let never = open(
        &format!("git://127.0.0.1:{}/x.git", free_port()),
        "main",
        &never_cache,
    );
    assert!(matches!(never.poll(), Err(Error::Unreachable { .. })));
}

#[test]
fn a_silent_server_times_out() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let config = SourceConfig::new(
        format!("git://127.0.0.1:{port}/r.git"),
        RefSpec::parse("main").expect("ref"),
        new_cache().path().join("c"),
    )
    .with_timeout(Duration::from_millis(300));
    let source = Source::open(config).expect("open");
    let t = Instant::now();
    let err = source.poll().expect_err("times out");
    let Error::Unreachable { source: cause, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(cause.kind(), std::io::ErrorKind::TimedOut);
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
}

#[test]
fn symlinks_and_submodules_are_recorded_not_followed() {
    let remote = Remote::new();
    let work = remote.work();
    std::os::unix::fs::symlink("/etc/passwd", work.join("passwd")).expect("symlink");
    std::fs::create_dir_all(work.join("kits/a")).expect("mkdir");
    std::os::unix::fs::symlink("../../..", work.join("kits/a/up")).expect("symlink");
    let first = remote.commit("regular", &[("kits/a/kit.yaml", "namespace: a\n")]);
    // A gitlink (submodule) entry, committed without `add -A` (it has no checkout).
    git(
        &work,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{first},vendor/sub"),
        ],
    );
    git(&work, &["commit", "-q", "-m", "with a submodule"]);
    git(&work, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    let commit = git(&work, &["rev-parse", "HEAD"]);

    let cache = new_cache();
    let source = open(&remote.file_url(), "main", &cache);
    source.poll().expect("poll");
    let snap = source.snapshot(&commit).expect("snapshot");
    assert_eq!(snap.symlinks, ["kits/a/up", "passwd"]);
    assert_eq!(snap.submodules, ["vendor/sub"]);
    assert_eq!(
        snap.files().map(|(p, _)| p).collect::<Vec<_>>(),
        ["kits/a/kit.yaml"]
    );
    assert!(snap.get("passwd").is_none());
    let passwd = std::fs::read("/etc/passwd").unwrap_or_default();
    let first_line = passwd.split(|b| *b == b'\n').next().unwrap_or_default();
    for (path, bytes) in snap.files() {
        assert!(
            first_line.is_empty() || !bytes.windows(first_line.len()).any(|w| w == first_line),
            "{path}"
        );
    }
    let err = snap.deny_symlinks().expect_err("strict callers get an error");
    assert!(
        matches!(err, Error::Symlink { ref path } if path == "kits/a/up"),
        "{err:?}"
    );

    // The same tree read as a directory.
    let dir = Snapshot::from_dir(&work).expect("from_dir");
    assert_eq!(dir.symlinks, ["kits/a/up", "passwd"]);
    assert!(dir.get("passwd").is_none());
}

#[test]
fn from_dir_and_from_git_read_a_worktree() {
    let remote = Remote::new();
    let work = remote.work();
    let first = remote.commit(
        "one",
        &[("kitsync.yaml", "{}\n"), ("kits/a/kit.yaml", "namespace: a\n")],
    );
    git(&work, &["tag", "v1"]);
    let second = remote.commit("two", &[("kits/a/svc.yaml", "port: 1\n")]);
    // Uncommitted and ignored-by-us content.
    std::fs::write(work.join("kits/a/svc.yaml"), "port: 2\n").expect("write");
    std::fs::create_dir_all(work.join("target/debug")).expect("mkdir");
    std::fs::write(work.join("target/debug/x.yaml"), "x").expect("write");

    let dir = Snapshot::from_dir(&work).expect("from_dir");
    assert_eq!(dir.revision, kitsync::source::WORKTREE);
    assert_eq!(
        dir.files().map(|(p, _)| p).collect::<Vec<_>>(),
        ["kits/a/kit.yaml", "kits/a/svc.yaml", "kitsync.yaml"]
    );
    assert_eq!(text(&dir, "kits/a/svc.yaml"), "port: 2\n");

    let head = Snapshot::from_git(&work, "HEAD").expect("HEAD");
    assert_eq!(head.revision, second);
    assert_eq!(text(&head, "kits/a/svc.yaml"), "port: 1\n");
    // From a subdirectory, by branch, tag, ancestry and hex.
    let sub = work.join("kits/a");
    assert_eq!(Snapshot::from_git(&sub, "main").expect("branch").revision, second);
    for rev in ["v1", "HEAD~1", first.as_str(), &first[..12]] {
        let snap = Snapshot::from_git(&sub, rev).unwrap_or_else(|e| panic!("{rev}: {e}"));
        assert_eq!(snap.revision, first, "{rev}");
        assert!(snap.get("kits/a/svc.yaml").is_none(), "{rev}");
    }
    for rev in ["nope", "-x", "--output=/tmp/x", ""] {
        let err = Snapshot::from_git(&work, rev).expect_err("bad revision");
        assert!(matches!(err, Error::BadRef { .. }), "{rev}: {err:?}");
    }
}

#[test]
fn an_oversized_file_is_refused_unread_naming_it() {
    let dir = TempDir::new().expect("dir");
    std::fs::create_dir_all(dir.path().join("kits/a")).expect("mkdir");
    std::fs::write(
        dir.path().join("kits/a/big.yaml"),
        vec![b'#'; over_the_file_limit()],
    )
    .expect("write");
    let snap = Snapshot::from_dir(dir.path()).expect("the other files are read");
    assert!(snap.get("kits/a/big.yaml").is_none(), "not read");
    let refused = &snap.refused[0];
    assert_eq!(refused.path, "kits/a/big.yaml");
    assert!(
        refused.reason.contains(&over_the_file_limit().to_string()),
        "{refused:?}"
    );
}

#[test]
fn option_like_urls_and_refs_never_reach_git() {
    for url in [
        "-oProxyCommand=evil",
        "--upload-pack=touch /tmp/pwned",
        "ssh://-oProxyCommand=evil/x",
    ] {
        let config = SourceConfig::new(url, RefSpec::Branch("main".into()), new_cache().path().join("c"));
        assert!(matches!(Source::open(config), Err(Error::BadRef { .. })), "{url}");
    }
    for reference in ["-main", "branch:--upload-pack=x", "tag:-v1"] {
        assert!(
            matches!(RefSpec::parse(reference), Err(Error::BadRef { .. })),
            "{reference}"
        );
    }
}

#[test]
fn redact_url_removes_credentials() {
    let cases = [
        (
            "https://user:secret@git.example.com/org/repo.git",
            "https://***@git.example.com/org/repo.git",
        ),
        ("https://ghp_token@github.com/o/r", "https://***@github.com/o/r"),
        (
            "http://a:b@127.0.0.1:8080/r.git?x=1#frag",
            "http://***@127.0.0.1:8080/r.git?***#frag",
        ),
        ("https://host/r.git?private_token=abc", "https://host/r.git?***"),
        ("ssh://git@host:22/r.git", "ssh://***@host:22/r.git"),
        ("https://host/path/with@sign", "https://host/path/with@sign"),
        ("https://u:p@ss@host/r", "https://***@host/r"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("/srv/git/r.git", "/srv/git/r.git"),
    ];
    for (url, want) in cases {
        assert_eq!(redact_url(url), want, "{url}");
    }
}

#[test]
fn poll_async_runs_on_the_blocking_pool() {
    let remote = Remote::new();
    let commit = remote.commit("one", &[("a.yaml", "a: 1\n")]);
    let cache = new_cache();
    let source = open(&remote.file_url(), "main", &cache);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let snapshot = runtime.block_on(async {
        let outcome = source.poll_async().await.expect("poll");
        source
            .snapshot_async(outcome.commit().to_owned())
            .await
            .expect("snapshot")
    });
    assert_eq!(snapshot.revision, commit);
}

// ---- https-style transport: `git http-backend` behind a loopback server with basic auth ----

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A one-request-per-connection HTTP/1.1 server that checks basic auth under `/private/`,
/// then runs `git http-backend` as a CGI for the request. Serves until the test process ends.
pub(super) struct HttpGit {
    port: u16,
}

impl HttpGit {
    pub(super) fn start(root: &Path, user: &str, password: &str) -> HttpGit {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let root = root.to_path_buf();
        let expected = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, expected) = (root.clone(), expected.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &root, &expected);
                });
            }
        });
        HttpGit { port }
    }

    pub(super) fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{repo}", self.port)
    }
}

fn serve(stream: TcpStream, root: &Path, expected_auth: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("GET").to_owned();
    let target = parts.next().unwrap_or("/").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end().to_owned();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let mut out = stream;
    if target.starts_with("/private/") && header("authorization").as_deref() != Some(expected_auth) {
        let msg = "authentication required\n";
        write!(
            out,
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
            msg.len()
        )?;
        return Ok(());
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("GIT_PROTOCOL", header("git-protocol").unwrap_or_default())
        .env("REMOTE_USER", "tester")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    if let Some(mut stdin) = cgi.stdin.take() {
        stdin.write_all(&body)?;
    }
    let output = cgi.wait_with_output()?;
    let split = output
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let split = split.or_else(|| {
        output
            .stdout
            .windows(2)
            .position(|w| w == b"\n\n")
            .map(|i| (i, 2))
    });
    let (head, payload) = match split {
        Some((i, n)) => (
            String::from_utf8_lossy(&output.stdout[..i]).into_owned(),
            &output.stdout[i + n..],
        ),
        None => (String::new(), &output.stdout[..]),
    };
    let mut status = "200 OK".to_owned();
    let mut response = String::new();
    for line in head.lines() {
        match line.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_owned(),
            Some(_) => response.push_str(&format!("{}\r\n", line.trim_end())),
            None => {}
        }
    }
    write!(
        out,
        "HTTP/1.1 {status}\r\n{response}Content-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    )?;
    out.write_all(payload)?;
    out.flush()
}

#[test]
fn http_transport_and_credential_handling() {
    let remote = Remote::new();
    let commit = remote.commit("one", &[("a.yaml", "a: 1\n")]);
    // `/private/remote.git` is the same repository behind basic auth.
    std::os::unix::fs::symlink(".", remote.dir.path().join("private")).expect("symlink");
    let server = HttpGit::start(remote.dir.path(), "alice", "s3cret-pw");
    let secrets = TempDir::new().expect("dir");
    let password_file = secrets.path().join("password");
    std::fs::write(&password_file, "s3cret-pw\n").expect("write");
    let cache = new_cache();
    let config = |url: String, auth: Auth, dir: &str| {
        SourceConfig::new(url, RefSpec::Branch("main".into()), cache.path().join(dir))
            .with_auth(auth)
            .with_timeout(Duration::from_secs(20))
    };

    // Anonymous reads over the smart http protocol, with the no-op poll fetching nothing.
    let public = Source::open(config(server.url("remote.git"), Auth::None, "public")).expect("open");
    let t = Instant::now();
    assert_eq!(public.poll().expect("anonymous poll").commit(), commit);
    let clone = t.elapsed();
    let t = Instant::now();
    assert!(!public.poll().expect("no-op").is_changed());
    eprintln!("http: clone {clone:?}, no-op poll {:?}", t.elapsed());
    assert_eq!(public.fetches(), 1);
    assert_eq!(
        text(&public.snapshot(&commit).expect("snapshot"), "a.yaml"),
        "a: 1\n"
    );

    // A remote that wants credentials, asked without any: a distinct, clear error.
    let private =
        Source::open(config(server.url("private/remote.git"), Auth::None, "private")).expect("open");
    let err = private.poll().expect_err("needs credentials");
    assert!(matches!(err, Error::Unauthenticated { .. }), "{err:?}");
    assert_eq!(private.last_commit(), None);

    // Credentials are never sent over plain http; refused before any connection.
    let basic = Auth::Basic {
        username: "alice".into(),
        password: Secret::File(password_file.clone()),
    };
    let err = Source::open(config(server.url("private/remote.git"), basic, "basic")).expect_err("plain http");
    assert!(matches!(err, Error::InsecureCredentials { .. }), "{err:?}");
    assert!(err.to_string().contains("use an https URL"), "{err}");
    assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");

    // Nor in the URL, and the URL's secret never shows in the error.
    let leaky = format!(
        "http://alice:s3cret-in-url@127.0.0.1:{}/private/remote.git",
        server.port
    );
    let err = Source::open(config(leaky, Auth::None, "leaky")).expect_err("plain http");
    assert!(matches!(err, Error::InsecureCredentials { .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("s3cret-in-url"), "{shown}");

    // A token from a variable no environment sets: its absence is reported as such.
    let token = Auth::Token {
        token: Secret::Env("KITSYNC_TEST_UNSET_TOKEN_VAR".into()),
    };
    let unset = Source::open(config("https://127.0.0.1:9/remote.git".into(), token, "token")).expect("open");
    let err = unset.poll().expect_err("no token");
    assert!(matches!(err, Error::MissingSecret { .. }), "{err:?}");
}

/// A corrupted cache is detected and rebuilt by itself (fresh repository beside it, then a
/// rename), leaving nothing behind. (A running source also rebuilds when a fetch or a read
/// fails inside the cache; a test cannot damage memory-mapped packs under it safely.)
#[test]
fn a_corrupted_cache_is_rebuilt_by_itself() {
    let remote = Remote::new();
    let first = remote.commit("v1", &[("kits/a/cm.yaml", "a: 1\n")]);
    let cache = new_cache();
    let source = open(&remote.file_url(), "main", &cache);
    assert_eq!(source.poll().expect("poll").commit(), first);
    source.snapshot(&first).expect("snapshot");

    // Objects vanish (a disk fault, a hand-made mess): the refs no longer resolve.
    drop(source);
    let objects = cache.path().join("c/objects");
    for entry in walk(&objects) {
        std::fs::remove_file(entry).expect("remove object");
    }
    let source = open(&remote.file_url(), "main", &cache);
    let outcome = source.poll().expect("the first poll fetches afresh");
    assert_eq!(outcome.commit(), first);
    assert!(outcome.is_changed(), "a full fetch into the rebuilt cache");
    assert_eq!(
        text(&source.snapshot(&first).expect("snapshot"), "kits/a/cm.yaml"),
        "a: 1\n"
    );
    drop(source);

    // A cache whose HEAD is garbage is rebuilt at open.
    std::fs::write(cache.path().join("c/HEAD"), "\0\0garbage").expect("corrupt HEAD");
    let source = open(&remote.file_url(), "main", &cache);
    assert_eq!(source.poll().expect("poll").commit(), first);
    source.snapshot(&first).expect("snapshot after the rebuild");
    let leftovers: Vec<String> = std::fs::read_dir(cache.path())
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "c")
        .collect();
    assert!(leftovers.is_empty(), "nothing left behind: {leftovers:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// One long-running source fetching commit after commit: every fetch adds a pack, and gix's
/// object store has a fixed number of index slots (the 33rd fetch of one process used to fail
/// with "too few index slots" and rebuild the cache, losing that poll). Past its pack limit the
/// cache is compacted, and every poll keeps working and reading.
#[test]
fn a_hundred_fetches_in_one_process_keep_working() {
    let remote = Remote::new();
    let cache = new_cache();
    remote.commit("c0", &[("n.txt", "0")]);
    let source = open(&remote.file_url(), "main", &cache);
    source.poll().expect("first poll");
    let mut most_packs = 0;
    for i in 1..=100 {
        let commit = remote.commit(&format!("c{i}"), &[("n.txt", &i.to_string())]);
        let outcome = source.poll().unwrap_or_else(|e| panic!("poll {i} failed: {e}"));
        assert_eq!(outcome.commit(), commit, "poll {i}");
        let snapshot = source.snapshot(&commit).expect("snapshot");
        assert_eq!(text(&snapshot, "n.txt"), i.to_string());
        let packs = std::fs::read_dir(cache.path().join("c/objects/pack"))
            .expect("pack dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".idx"))
            .count();
        most_packs = most_packs.max(packs);
    }
    assert!(most_packs <= 65, "the cache held {most_packs} packs");
}
