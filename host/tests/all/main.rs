//! Host integration tests: one binary, a module per area. Plugins are real components
//! built from `plugins/` by the `kitsync-test-artifacts` build script.

mod alerts;
mod apply;
mod cases;
mod check;
mod cli;
mod corpus;
mod deploy;
mod drift;
mod first_party;
mod health;
mod languages;
mod leader;
mod notes;
mod plugin_new;
mod sandbox;
mod schema;
mod serve;
mod source;
mod untrusted;
mod webhooks;

use kitsync::Object;
use kitsync::plugin::{Engine, EngineConfig, Limits, Plugin};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Compiled code shared by every test in this binary (and across runs).
fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")
}

/// An engine with default limits, shared by the tests.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| engine_with(Limits::default()))
}

/// A private engine with other limits.
fn engine_with(limits: Limits) -> Engine {
    Engine::new(EngineConfig {
        limits,
        cache_dir: Some(cache_dir()),
        ..EngineConfig::default()
    })
    .expect("engine starts")
}

/// Loads a built plugin by its artifact path.
fn load(engine: &Engine, path: &str) -> Plugin {
    let bytes = kitsync_test_artifacts::bytes(path);
    let name = std::path::Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
        .to_owned();
    engine
        .load(&name, &bytes, None)
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// `bytes` with every `kitsync:plugin/...@0.1.0` name rewritten to `@{version}` (same
/// length, so the component stays well-formed): the component a plugin built against that
/// version of the WIT package would import.
pub(crate) fn built_for(bytes: &[u8], version: &str) -> Vec<u8> {
    let from = format!("@{}", kitsync::plugin::CONTRACT_VERSION);
    let to = format!("@{version}");
    assert_eq!(from.len(), to.len(), "same length keeps the binary valid");
    let mut out = bytes.to_vec();
    let mut rewritten = 0;
    for prefix in ["kitsync:plugin/types", "kitsync:plugin/host"] {
        let needle = format!("{prefix}{from}");
        let mut at = 0;
        while let Some(pos) = out[at..]
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
        {
            let start = at + pos + prefix.len();
            out[start..start + to.len()].copy_from_slice(to.as_bytes());
            at = start + to.len();
            rewritten += 1;
        }
    }
    assert!(rewritten > 0, "the component names kitsync:plugin@0.1.0");
    out
}

/// Parses inline YAML as the manifest file `name`.
fn objects(name: &str, yaml: &str) -> Vec<Object> {
    kitsync::manifest::parse(name, yaml).expect("test YAML parses")
}

/// The seed scenario's manufracture `vision` Deployment and Service.
const VISION: &str = include_str!("../data/vision.yaml");

/// Copies a directory tree (test fixtures; no symlinks in them).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Runs git in `dir` as `author` (name, email), with no user or system configuration and
/// `input` on stdin; fails the test when git fails. Returns stdout, trimmed.
fn git_as(dir: &std::path::Path, author: (&str, &str), args: &[&str], input: Option<&[u8]>) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("git")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(["-c", "advice.detachedHead=false"])
        .args([
            "-c",
            &format!("user.name={}", author.0),
            "-c",
            &format!("user.email={}", author.1),
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git runs");
    if let Some(input) = input {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("git exits");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// [`git_as`] as the tests' usual author, without input.
fn git(dir: &std::path::Path, args: &[&str]) -> String {
    git_as(dir, ("Kit Tester", "kit@example.com"), args, None)
}

/// A free loopback port (nothing listens on it once this returns).
/// The built `kitsync` binary with the shared plugin code cache.
fn kitsync(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(args)
        .env("KITSYNC_PLUGIN_CACHE", cache_dir())
        .output()
        .expect("kitsync runs")
}

/// The interfaces a component imports, as `kitsync plugin inspect --json` lists them: the
/// sandbox check for plugins built by other languages' tools.
fn imports(component: &std::path::Path) -> Vec<String> {
    let out = kitsync(&[
        "plugin",
        "inspect",
        component.to_str().expect("utf-8 path"),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    inspected["imports"]
        .as_array()
        .unwrap_or_else(|| panic!("no imports in {inspected}"))
        .iter()
        .filter_map(|i| i.as_str().map(str::to_owned))
        .collect()
}

/// Bytes one more than the largest file a snapshot reads.
fn over_the_file_limit() -> usize {
    usize::try_from(kitsync::source::Limits::default().file_bytes).unwrap_or(usize::MAX) + 1
}

/// A command's output as text.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// One HTTP/1.1 request on loopback over a plain socket: (status code, body), or `(0, "")`
/// when nothing answers. The server may answer (413) and close before the whole body is sent.
fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}
