//! The repository is untrusted input: crafted Git trees and working directories whose
//! entries must never be followed or read (symlinks, `.git` entries, names that are not UTF-8
//! or differ only in case, oversized blobs, deep nesting). Each fails its own kit, located;
//! the other kits go on.

use super::over_the_file_limit;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str], input: Option<&[u8]>) -> String {
    super::git_as(dir, ("Mallory", "m@example.com"), args, input)
}

fn blob(repo: &Path, bytes: &[u8]) -> String {
    git(repo, &["hash-object", "-w", "--stdin"], Some(bytes))
}

/// A tree from (mode, name bytes, object id); `git mktree -z` takes any name bytes.
fn tree(repo: &Path, entries: &[(&str, &[u8], String)]) -> String {
    let mut input = Vec::new();
    for (mode, name, id) in entries {
        let kind = if *mode == "040000" { "tree" } else { "blob" };
        input.extend_from_slice(format!("{mode} {kind} {id}\t").as_bytes());
        input.extend_from_slice(name);
        input.push(0);
    }
    git(repo, &["mktree", "-z"], Some(&input))
}

const CM: &[u8] = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n";

fn kit(repo: &Path, extra: &[(&str, &[u8], String)]) -> String {
    let mut entries = vec![
        ("100644", b"kit.yaml".as_slice(), blob(repo, b"")),
        ("100644", b"cm.yaml".as_slice(), blob(repo, CM)),
    ];
    entries.extend(extra.iter().cloned());
    tree(repo, &entries)
}

fn check_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(["check", "--format", "json"])
        .args(args)
        .output()
        .expect("kitsync runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("root:x:0:0"), "a symlink target was read: {text}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

fn kit_report<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["kits"]
        .as_array()
        .expect("kits")
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("kit {name} missing from {report:#}"))
}

fn blocked_by(report: &Value, name: &str, needle: &str, file: &str) {
    let k = kit_report(report, name);
    assert_eq!(k["status"], "blocked", "{name}: {k:#}");
    let finding = &k["findings"][0];
    assert_eq!(finding["rule"], "kitsync/unsafe-entry", "{name}: {finding:#}");
    let message = finding["message"].as_str().unwrap_or("");
    assert!(message.contains(needle), "{name}: wanted {needle:?} in {message}");
    assert_eq!(finding["location"]["file"], file, "{name}: {finding:#}");
}

/// Crafted Git trees, read from Git objects over file://.
#[test]
fn odd_git_tree_entries_fail_their_own_kit() {
    let repo = tempfile::tempdir().expect("repo");
    let r = repo.path();
    git(r, &["init", "-q", "--bare"], None);
    let good = kit(r, &[]);
    let link = blob(r, b"/etc/passwd");
    let linked = kit(r, &[("120000", b"passwd.yaml", link.clone())]);
    let git_config = tree(
        r,
        &[(
            "100644",
            b"config",
            blob(r, b"[core]\n\tfsmonitor = /bin/sh -c id\n"),
        )],
    );
    let dotgit = kit(r, &[("040000", b".git", git_config)]);
    let cased = kit(r, &[("100644", b"Kit.yaml", blob(r, b"namespace: elsewhere\n"))]);
    let bytes = kit(r, &[("100644", b"caf\xe9.yaml", blob(r, CM))]);
    let mut deep = blob(r, CM);
    let mut mode = "100644";
    let mut name: &[u8] = b"x.yaml";
    for _ in 0..40 {
        deep = tree(r, &[(mode, name, deep)]);
        mode = "040000";
        name = b"d";
    }
    let deep = kit(r, &[("040000", b"d", deep)]);
    let big = kit(
        r,
        &[("100644", b"big.yaml", blob(r, &vec![b'#'; over_the_file_limit()]))],
    );
    let kits = tree(
        r,
        &[
            ("040000", b"big", big),
            ("040000", b"bytes", bytes),
            ("040000", b"cased", cased),
            ("040000", b"deep", deep),
            ("040000", b"dotgit", dotgit),
            ("040000", b"good", good),
            ("040000", b"linked", linked),
        ],
    );
    let root = tree(r, &[("040000", b"kits", kits)]);
    let commit = git(r, &["commit-tree", &root, "-m", "crafted"], None);
    git(r, &["update-ref", "refs/heads/main", &commit], None);

    let url = format!("file://{}", r.display());
    let cache = tempfile::tempdir().expect("cache");
    let out = Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(["check", "--format", "json", "--repo", &url, "--ref", "main"])
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .expect("kitsync runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("root:x:0:0"), "a symlink target was read: {text}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(kit_report(&report, "good")["status"], "ok");
    blocked_by(&report, "linked", "is a symlink", "kits/linked/passwd.yaml");
    blocked_by(&report, "dotgit", "a .git entry", "kits/dotgit/.git");
    blocked_by(&report, "cased", "differs only in case", "kits/cased/Kit.yaml");
    blocked_by(&report, "bytes", "not UTF-8", "kits/bytes/caf\\xe9.yaml");
    let deepest = format!(
        "kits/deep/{}",
        vec!["d"; kitsync::source::MAX_DEPTH - 2].join("/")
    );
    blocked_by(&report, "deep", "nested deeper than", &deepest);
    blocked_by(&report, "big", "over the per-file limit", "kits/big/big.yaml");
}

/// A working directory: a symlinked manifest, a symlinked kit.yaml (the kit must not look
/// removed), a symlinked platform file (it must not look absent) and a name that is not
/// UTF-8; check, render and sync refuse them alike.
#[test]
fn symlinks_in_a_working_directory_are_never_followed() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let write = |path: &str, bytes: &[u8]| {
        let path = d.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    };
    write("kits/good/kit.yaml", b"");
    write("kits/good/cm.yaml", CM);
    write("kits/linked/kit.yaml", b"");
    write("kits/linked/cm.yaml", CM);
    std::os::unix::fs::symlink("/etc/passwd", d.join("kits/linked/passwd.yaml")).expect("symlink");
    write("kits/kitlink/cm.yaml", CM);
    write("outside.yaml", b"namespace: kitlink\n");
    std::os::unix::fs::symlink(d.join("outside.yaml"), d.join("kits/kitlink/kit.yaml")).expect("symlink");
    write("kits/bytes/kit.yaml", b"");
    std::fs::write(
        d.join("kits/bytes")
            .join(std::ffi::OsStr::from_bytes(b"caf\xe9.yaml")),
        CM,
    )
    .expect("write");
    let dir_arg = d.to_str().expect("utf-8");
    let report = check_json(&[dir_arg]);
    assert_eq!(kit_report(&report, "good")["status"], "ok");
    blocked_by(&report, "linked", "is a symlink", "kits/linked/passwd.yaml");
    blocked_by(&report, "kitlink", "is a symlink", "kits/kitlink/kit.yaml");
    blocked_by(&report, "bytes", "not UTF-8", "kits/bytes/caf\\xe9.yaml");

    // render and sync take the same path: the symlinked kit is refused before any cluster.
    let out = Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(["render", dir_arg])
        .output()
        .expect("runs");
    // A refused kit, as in check: exit 1.
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("root:x:0:0"));
    let out = Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(["sync", d.join("kits/linked").to_str().expect("utf-8")])
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is a symlink"), "{stderr}");

    // A symlinked platform file is an error for every kit, never "no platform file".
    std::os::unix::fs::symlink(d.join("outside.yaml"), d.join("kitsync.yaml")).expect("symlink");
    let report = check_json(&[dir_arg]);
    let good = kit_report(&report, "good");
    assert_eq!(good["status"], "blocked");
    assert!(
        good["findings"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("kitsync.yaml is a symlink")),
        "{good:#}"
    );
}

/// Class 7: a kubeconfig's exec credential plugin or insecure-skip-tls-verify is used only
/// when the operator opts in, and said loudly; without the flag nothing is run.
#[test]
fn kubeconfig_exec_and_insecure_tls_need_the_operators_flag() {
    let plane = kitsync_harness::ControlPlane::shared();
    let text = std::fs::read_to_string(plane.kubeconfig_path()).expect("kubeconfig");
    let base: Value = serde_saphyr::from_str(&text).expect("yaml");
    let dir = tempfile::tempdir().expect("dir");
    let marker = dir.path().join("exec-ran");
    let write = |name: &str, value: &Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::to_string(value).expect("json")).expect("write");
        path
    };
    let mut exec = base.clone();
    exec["users"][0]["user"] = serde_json::json!({"exec": {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": "sh",
        "args": ["-c", format!("touch {}; exit 1", marker.display())],
        "interactiveMode": "Never"
    }});
    let exec = write("exec.kubeconfig", &exec);
    let mut insecure = base.clone();
    insecure["clusters"][0]["cluster"] = serde_json::json!({
        "server": plane.server_url(),
        "insecure-skip-tls-verify": true
    });
    let insecure = write("insecure.kubeconfig", &insecure);

    let plain = tempfile::tempdir().expect("plain");
    std::fs::write(plain.path().join("cm.yaml"), CM).expect("write");
    let ns = format!("untrusted-tls-{}", std::process::id());
    let sync = |kubeconfig: &Path, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kitsync"))
            .args(["sync", plain.path().to_str().expect("utf-8"), "--namespace", &ns])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .output()
            .expect("runs")
    };
    let out = sync(&exec, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--allow-kubeconfig-exec"), "{stderr}");
    assert!(!marker.exists(), "the exec plugin must not run without the flag");

    let out = sync(&insecure, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--allow-insecure-tls"), "{stderr}");
    let out = sync(&insecure, &["--allow-insecure-tls"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("NOT verified"), "said loudly: {stderr}");
}

/// Class 2: the YAML budget holds for a kit as a whole. Each of these files is a small alias
/// bomb that parses alone; together they are over the kit's budget, so the kit fails
/// (located at the file that tips it) and no object of it reaches a plugin or the cluster.
#[test]
fn many_small_yaml_bombs_cannot_add_up() {
    let dir = tempfile::tempdir().expect("dir");
    let kit = dir.path().join("kits/boom");
    std::fs::create_dir_all(&kit).expect("mkdir");
    std::fs::write(kit.join("kit.yaml"), "").expect("kit.yaml");
    let bomb = |i: usize| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb-{i}\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
        )
    };
    // One file alone is fine.
    let one = kitsync::manifest::parse("one.yaml", &bomb(0)).expect("a single file is within budget");
    assert_eq!(one.len(), 1);
    for i in 0..20 {
        std::fs::write(kit.join(format!("b{i:02}.yaml")), bomb(i)).expect("write");
    }
    std::fs::create_dir_all(dir.path().join("kits/fine")).expect("mkdir");
    std::fs::write(dir.path().join("kits/fine/kit.yaml"), "").expect("kit.yaml");
    std::fs::write(dir.path().join("kits/fine/cm.yaml"), CM).expect("cm");
    let report = check_json(&[dir.path().to_str().expect("utf-8")]);
    assert_eq!(kit_report(&report, "fine")["status"], "ok");
    let boom = kit_report(&report, "boom");
    assert_eq!(boom["status"], "blocked");
    assert_eq!(boom["objects"], 0);
    let finding = &boom["findings"][0];
    assert_eq!(finding["rule"], "kitsync/over-budget", "{finding:#}");
    assert!(
        finding["location"]["file"]
            .as_str()
            .is_some_and(|f| f.starts_with("kits/boom/b")),
        "{finding:#}"
    );
}

/// Class 3: Secret values stay secret in every output: all five `check` formats (findings,
/// snippets), a plugin's own findings, stdout, stderr, log and error text, and the service's
/// logs. The plugin here repeats every object it is given, everywhere it can.
#[test]
fn secret_values_never_leave_in_any_output() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let leaky = kitsync_test_artifacts::LEAKY;
    std::fs::create_dir_all(d.join("plugins")).expect("mkdir");
    std::fs::copy(leaky, d.join("plugins/leaky.wasm")).expect("copy plugin");
    let sha = kitsync::plugin::sha256_hex(&std::fs::read(leaky).expect("read"));
    // "hunter2-s3cret-value" in base64, and a stringData value.
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  labels:\n    version: 1.10\ndata:\n  password: aHVudGVyMi1zM2NyZXQtdmFsdWU=\nstringData:\n  token: tok-0123456789-abc\n";
    let write = |path: &str, text: &str| {
        let path = d.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write("kits/vault/a-secret.yaml", secret);
    write(
        "kits/vault/b-cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
    );
    write(
        "kits/vault/kit.yaml",
        &format!("validate:\n  - plugin: plugins/leaky.wasm\n    sha256: {sha}\n"),
    );
    write(
        "kits/failing/kit.yaml",
        &format!(
            "validate:\n  - plugin: plugins/leaky.wasm\n    sha256: {sha}\n    config: {{fail: true}}\n"
        ),
    );
    write("kits/failing/a-secret.yaml", secret);
    let hidden = [
        "aHVudGVyMi1zM2NyZXQtdmFsdWU=",
        "hunter2-s3cret-value",
        "tok-0123456789-abc",
    ];
    for format in ["text", "json", "sarif", "github", "junit"] {
        let out = Command::new(env!("CARGO_BIN_EXE_kitsync"))
            .args(["check", d.to_str().expect("utf-8"), "--format", format])
            .env("KITSYNC_LOG", "info")
            .output()
            .expect("runs");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{format}: {all}");
        for value in hidden {
            assert!(!all.contains(value), "{format} shows {value}:\n{all}");
        }
        assert!(all.contains("<redacted>"), "{format}: {all}");
        // The plugin really spoke: its echo, stdout, stderr and log lines are there, redacted.
        assert!(all.contains("leaky/echo"), "{format}: {all}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(["check", d.to_str().expect("utf-8")])
        .env("KITSYNC_LOG", "info")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for stream in ["stdout", "stderr", "log:"] {
        assert!(
            stderr.contains(stream),
            "the plugin's {stream} reached the log: {stderr}"
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cannot go on with"),
        "the plugin's error is shown: {stdout}"
    );
}

/// Class 2: a fetch never inflates an object past the limit: a repository holding a 129 MiB
/// blob of zeros (a few hundred KiB on the wire) is refused with a clear error, and the source
/// keeps working from its cache afterwards.
#[test]
fn a_huge_object_is_never_inflated_by_a_fetch() {
    use kitsync::source::{Error, RefSpec, Source, SourceConfig};
    let repo = tempfile::tempdir().expect("repo");
    let r = repo.path();
    git(r, &["init", "-q", "--bare"], None);
    let zeros = vec![0u8; kitsync::source::MAX_OBJECT_BYTES + (1 << 20)];
    let big = kit(r, &[("100644", b"zero.yaml", blob(r, &zeros))]);
    drop(zeros);
    let kits = tree(r, &[("040000", b"zero", big)]);
    let root = tree(r, &[("040000", b"kits", kits)]);
    let commit = git(r, &["commit-tree", &root, "-m", "a zero bomb"], None);
    git(r, &["update-ref", "refs/heads/main", &commit], None);

    let cache = tempfile::tempdir().expect("cache");
    let config = SourceConfig::new(
        format!("file://{}", r.display()),
        RefSpec::parse("main").expect("ref"),
        cache.path().join("c"),
    );
    let source = Source::open(config).expect("opens");
    let err = source.poll().expect_err("refused");
    assert!(matches!(err, Error::ObjectTooLarge { .. }), "{err:?}");
    assert!(err.to_string().contains("cannot be fetched"), "{err}");
    assert!(source.last_commit().is_none());
    // The same commit is refused again at once, without another download.
    let started = std::time::Instant::now();
    let again = source.poll().expect_err("still refused");
    assert!(matches!(again, Error::ObjectTooLarge { .. }), "{again:?}");
    assert_eq!(source.fetches(), 0);
    eprintln!("second poll refused in {:?}", started.elapsed());
    // Nothing of the refused pack is left behind in the cache.
    let leftovers: Vec<_> = std::fs::read_dir(cache.path().join("c/objects/pack"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
