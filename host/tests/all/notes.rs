//! Issue 12, Git write-back of convergence: notes pushed to real repositories (bare ones made
//! with the `git` CLI, over file://, `git daemon` and `git http-backend`), read back with
//! `git notes`; then `serve` on the real control plane writing one when a kit converges.

use super::source::{Daemon, HttpGit, Remote};
use super::{free_port, git, git_as};
use kitsync::source::{
    Convergence, Error, NOTES_REF, NoteError, Notes, Recorded, RefSpec, Source, SourceConfig,
};
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

/// The notes writer of a source following `url`, with its cache in `cache`.
fn writer(url: &str, cache: &TempDir) -> Notes {
    let config = SourceConfig::new(url, RefSpec::parse("main").expect("ref"), cache.path().join("c"))
        .with_timeout(Duration::from_secs(20));
    Source::open(config).expect("open").notes().expect("notes")
}

fn converged(kit: &str) -> Convergence {
    Convergence {
        kit: kit.into(),
        namespace: format!("{kit}-ns"),
        host_namespace: "kitsync-system".into(),
        time: jiff::Timestamp::now(),
    }
}

fn line(kit: &str) -> String {
    format!("kitsync: kit={kit} namespace={kit}-ns host=kitsync-system converged ")
}

/// The note of `commit` in the repository at `dir`, as `git notes` reads it.
fn note(dir: &Path, commit: &str) -> String {
    git(dir, &["notes", "--ref=kitsync", "show", commit])
}

fn lines_with(note: &str, prefix: &str) -> usize {
    note.lines().filter(|l| l.starts_with(prefix)).count()
}

fn hook(remote: &Remote, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = remote.bare().join("hooks/pre-receive");
    std::fs::write(&path, script).expect("hook");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn a_note_is_pushed_over_file_and_each_kit_adds_its_line_once() {
    let remote = Remote::new();
    let commit = remote.commit("one", &[("a.yaml", "a: 1\n")]);
    let cache = TempDir::new().expect("cache");
    let notes = writer(&remote.file_url(), &cache);

    let first = notes.record(&commit, &[converged("web")]).expect("first note");
    assert!(matches!(first, Recorded::Written { .. }), "{first:?}");
    let text = note(&remote.bare(), &commit);
    assert_eq!(lines_with(&text, &line("web")), 1, "{text}");
    let time = text
        .lines()
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_default();
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.parse::<jiff::Timestamp>().is_ok(),
        "RFC 3339 in whole seconds: {time}"
    );

    // Another kit on the same commit keeps the first line; two at once go in one push.
    notes
        .record(&commit, &[converged("api"), converged("db")])
        .expect("second note");
    let text = note(&remote.bare(), &commit);
    for kit in ["web", "api", "db"] {
        assert_eq!(lines_with(&text, &line(kit)), 1, "{kit}: {text}");
    }
    assert_eq!(
        git(&remote.bare(), &["rev-list", "--count", NOTES_REF]),
        "2",
        "one notes commit per push, each on the last"
    );

    // The same convergence again (a restart, another replica): nothing is pushed.
    let again = notes.record(&commit, &[converged("web")]).expect("again");
    assert_eq!(again, Recorded::AlreadyRecorded);
    assert_eq!(git(&remote.bare(), &["rev-list", "--count", NOTES_REF]), "2");
    assert_eq!(
        notes.local_note(&commit).expect("local"),
        Some(format!("{text}\n"))
    );
    // A plain `git fetch` of the notes sees the same.
    git(
        &remote.work(),
        &["fetch", "-q", "origin", &format!("{NOTES_REF}:{NOTES_REF}")],
    );
    assert_eq!(note(&remote.work(), &commit), text);
}

/// Someone else moves `refs/notes/kitsync` after kitsync fetched it: here a pre-receive hook
/// appends to the note with the `git` CLI (once) while kitsync's push waits for its ref
/// update, so the remote refuses the stale old value. kitsync fetches again, writes on top,
/// and both survive.
#[test]
fn a_notes_ref_moved_by_another_writer_is_fetched_again_and_both_notes_survive() {
    let remote = Remote::new();
    let commit = remote.commit("one", &[("a.yaml", "a: 1\n")]);
    let cache = TempDir::new().expect("cache");
    let notes = writer(&remote.file_url(), &cache);
    notes.record(&commit, &[converged("web")]).expect("first note");

    let marker = remote.dir.path().join("raced");
    let log = remote.dir.path().join("hook.log");
    hook(
        &remote,
        &format!(
            "#!/bin/sh\n\
             [ -e '{marker}' ] && exit 0\n\
             : > '{marker}'\n\
             env -u GIT_QUARANTINE_PATH -u GIT_OBJECT_DIRECTORY -u GIT_ALTERNATE_OBJECT_DIRECTORIES \
             git -c user.name=Other -c user.email=other@example.com notes --ref=kitsync append -m 'other: written by hand' {commit} \
             >'{log}' 2>&1 || exit 1\n",
            marker = marker.display(),
            log = log.display()
        ),
    );
    let written = notes.record(&commit, &[converged("api")]);
    let hook_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        matches!(written, Ok(Recorded::Written { .. })),
        "{written:?}; hook: {hook_log}"
    );
    assert!(marker.exists(), "the other writer ran");
    let text = note(&remote.bare(), &commit);
    assert_eq!(lines_with(&text, &line("web")), 1, "{text}");
    assert_eq!(lines_with(&text, "other: written by hand"), 1, "{text}");
    assert_eq!(lines_with(&text, &line("api")), 1, "{text}");
    let log = git(&remote.bare(), &["log", "--format=%an", NOTES_REF]);
    assert_eq!(log.lines().collect::<Vec<_>>(), ["kitsync", "Other", "kitsync"]);
}

#[test]
fn a_remote_that_refuses_is_a_typed_error_naming_the_ref_and_reason() {
    let remote = Remote::new();
    let commit = remote.commit("one", &[("a.yaml", "a: 1\n")]);
    let cache = TempDir::new().expect("cache");
    let notes = writer(&remote.file_url(), &cache);
    hook(&remote, "#!/bin/sh\necho 'notes are frozen' >&2\nexit 1\n");
    let err = notes.record(&commit, &[converged("web")]).expect_err("refused");
    let NoteError::Rejected {
        reference, reason, ..
    } = &err
    else {
        panic!("not a rejection: {err:?}");
    };
    assert_eq!(reference, NOTES_REF);
    assert!(reason.contains("pre-receive hook declined"), "{reason}");
    assert_eq!(err.label(), "rejected");
    assert!(err.to_string().contains(NOTES_REF), "{err}");
    let absent = std::process::Command::new("git")
        .args(["show-ref", "--verify", "--quiet", NOTES_REF])
        .current_dir(remote.bare())
        .status()
        .expect("git runs");
    assert!(!absent.success(), "nothing was written");

    // Unreachable is another error, which the caller retries.
    let nobody = writer(&format!("git://127.0.0.1:{}/remote.git", free_port()), &cache);
    let err = nobody
        .record(&commit, &[converged("web")])
        .expect_err("unreachable");
    assert!(
        matches!(err, NoteError::Source(Error::Unreachable { .. })),
        "{err:?}"
    );
}

/// git notes splits ids into fanout directories (`ab/cdef...`) once there are many notes; a
/// note kept there is found, extended in place, and stays where git reads it.
#[test]
fn a_note_in_a_fanout_directory_is_extended_in_place() {
    let remote = Remote::new();
    let commit = remote.commit("one", &[("a.yaml", "a: 1\n")]);
    let other = remote.commit("two", &[("a.yaml", "a: 2\n")]);
    let bare = remote.bare();
    let run = |args: &[&str], input: &str| {
        git_as(&bare, ("Hand", "hand@example.com"), args, Some(input.as_bytes()))
    };
    let blob = run(&["hash-object", "-w", "--stdin"], "written by hand\n");
    let (fanout, rest) = commit.split_at(2);
    let sub = run(&["mktree"], &format!("100644 blob {blob}\t{rest}\n"));
    let root = run(&["mktree"], &format!("040000 tree {sub}\t{fanout}\n"));
    let notes_commit = run(&["commit-tree", &root, "-m", "notes with fanout"], "");
    git(&bare, &["update-ref", NOTES_REF, &notes_commit]);
    assert_eq!(note(&bare, &commit), "written by hand");

    let cache = TempDir::new().expect("cache");
    let notes = writer(&remote.file_url(), &cache);
    notes.record(&commit, &[converged("web")]).expect("note");
    let text = note(&bare, &commit);
    assert!(text.starts_with("written by hand\n"), "{text}");
    assert_eq!(lines_with(&text, &line("web")), 1, "{text}");
    let top = git(&bare, &["ls-tree", "--name-only", NOTES_REF]);
    assert_eq!(top, fanout, "no second copy outside the fanout directory");

    // A commit without a note gets one that git finds too.
    notes.record(&other, &[converged("web")]).expect("note");
    assert_eq!(lines_with(&note(&bare, &other), &line("web")), 1);
    assert_eq!(note(&bare, &commit), text, "the first note is untouched");
}

/// Each fetch of notes other writers pushed adds a pack to the notes repository; gix's object
/// store has a fixed number of slots per open, and packs slow lookups. Many such writes in
/// one process keep working, and the repository is emptied and fetched whole past its limit.
#[test]
fn many_writes_among_other_writers_keep_working() {
    let remote = Remote::new();
    let commit = remote.commit("one", &[("a.yaml", "a: 1\n")]);
    let cache = TempDir::new().expect("cache");
    let notes = writer(&remote.file_url(), &cache);
    let packs = || {
        std::fs::read_dir(cache.path().join("c.notes/objects/pack"))
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".idx"))
                    .count()
            })
            .unwrap_or(0)
    };
    let mut most = 0;
    for i in 0..70 {
        git_as(
            &remote.bare(),
            ("Other", "other@example.com"),
            &[
                "notes",
                "--ref=kitsync",
                "append",
                "-m",
                &format!("other {i}"),
                &commit,
            ],
            None,
        );
        let kit = format!("k{i}");
        let written = notes
            .record(&commit, &[converged(&kit)])
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
        assert!(matches!(written, Recorded::Written { .. }), "{i}: {written:?}");
        most = most.max(packs());
    }
    let text = note(&remote.bare(), &commit);
    for i in 0..70 {
        assert_eq!(lines_with(&text, &line(&format!("k{i}"))), 1, "k{i}");
        let other = format!("other {i}");
        assert_eq!(text.lines().filter(|l| *l == other).count(), 1, "{other}");
    }
    assert!(
        (60..=65).contains(&most),
        "the notes repository held {most} packs"
    );
}

/// The network transports: `git http-backend` (smart http: GET info/refs, POST
/// git-receive-pack, the pack as a chunked body) and `git daemon` (git://).
#[test]
fn notes_are_pushed_over_http_and_git_daemon() {
    let remote = Remote::new();
    let commit = remote.commit("one", &[("a.yaml", "a: 1\n")]);
    // The server sets REMOTE_USER, which lets http-backend accept pushes.
    let server = HttpGit::start(remote.dir.path(), "unused", "unused");
    let cache = TempDir::new().expect("cache");
    let over_http = writer(&server.url("remote.git"), &cache);
    let written = over_http.record(&commit, &[converged("web")]).expect("http");
    assert!(matches!(written, Recorded::Written { .. }), "{written:?}");
    assert_eq!(lines_with(&note(&remote.bare(), &commit), &line("web")), 1);

    let daemon = Daemon::start(remote.dir.path());
    let cache = TempDir::new().expect("cache");
    let over_git = writer(&daemon.url("remote.git"), &cache);
    over_git.record(&commit, &[converged("api")]).expect("git daemon");
    let text = note(&remote.bare(), &commit);
    assert_eq!(lines_with(&text, &line("web")), 1, "{text}");
    assert_eq!(lines_with(&text, &line("api")), 1, "{text}");

    // Back over http: the notes pushed by the other transport are fetched, not overwritten.
    over_http.record(&commit, &[converged("db")]).expect("http again");
    let text = note(&remote.bare(), &commit);
    for kit in ["web", "api", "db"] {
        assert_eq!(lines_with(&text, &line(kit)), 1, "{kit}: {text}");
    }
}

/// `serve` with two sources on the real control plane: the one with `writeBack: {notes:
/// true}` gets a note on the converged commit (and a metric says so); the other, without the
/// option, gets no notes ref at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_writes_a_note_when_a_kit_converges_and_only_when_asked() {
    use super::serve::{Repo, Service, config_map_kit, suffix, wait_for};
    let id = suffix("nt");
    let host_namespace = format!("kitsync-{id}");
    let repo = |kit: &str| {
        let repo = Repo {
            dir: tempfile::tempdir().expect("repo"),
        };
        git(repo.path(), &["init", "-q"]);
        for (path, text) in config_map_kit(kit, &format!("{kit}-{id}"), &[], "1") {
            repo.write(&path, &text);
        }
        let commit = repo.commit("first");
        (repo, commit)
    };
    let (audited, audited_commit) = repo("noted");
    let (quiet, _) = repo("silent");
    let cache = tempfile::tempdir().expect("cache");
    let probes = free_port();
    let text = format!(
        "hostNamespace: {host_namespace}\ncacheDir: {}\nlisten:\n  probes: 127.0.0.1:{probes}\nsources:\n  - name: audited\n    url: {}\n    interval: 1s\n    writeBack: {{notes: true}}\n  - name: quiet\n    url: {}\n    interval: 1s\n",
        cache.path().display(),
        audited.url(),
        quiet.url()
    );
    let file = cache.path().join("host.yaml");
    std::fs::write(&file, text).expect("host config");
    let service = Service::start(kitsync::serve::HostConfig::load(&file).expect("host config")).await;
    service.wait_kit_condition("noted", "Healthy", "True").await;
    service.wait_kit_condition("silent", "Healthy", "True").await;

    let written = wait_for("the note of the converged commit", async || {
        let out = std::process::Command::new("git")
            .args(["notes", "--ref=kitsync", "show", &audited_commit])
            .current_dir(audited.path())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await;
    let want = format!("kitsync: kit=noted namespace=noted-{id} host={host_namespace} converged ");
    assert_eq!(lines_with(&written, &want), 1, "{written}");
    let metrics = wait_for("the write counted", async || {
        let (_, body) = super::http_request(probes, "GET", "/metrics", &[], b"");
        body.contains(r#"kitsync_git_notes_total{source="audited",result="written"} 1"#)
            .then_some(body)
    })
    .await;
    assert!(
        !metrics.contains(r#"kitsync_git_notes_total{source="quiet""#),
        "{metrics}"
    );

    // The other source converged first or meanwhile; its repository has no notes at all.
    let refs = git(quiet.path(), &["for-each-ref", "refs/notes/"]);
    assert_eq!(refs, "", "no notes without writeBack");
    service.stop().await;
}
