//! A policy in another language, same contract: the Go `required-labels`
//! (`plugins/go/required-labels`, built by its script with Go's own `wasip1` target and
//! wasm-tools) passes the Rust plugin's own fixture cases in the same sandbox, and a Go
//! component that reads a file through WASI's preview1 adapter and asks for a `wasi:sockets`
//! network is refused at load.
//!
//! Costs, measured here with a debug kitsync on 2 shared cores (busy with another build): a
//! 3.9 MB component (the Rust one is 180 KB), about 10 s to compile the first time (then under
//! 0.5 s from the code cache); the build about 15 s with an empty Go cache, and the first
//! `cargo install` of wasm-tools (only its component and parse subcommands) about 4 minutes of CPU.

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kitsync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(args)
        .env("KITSYNC_PLUGIN_CACHE", super::cache_dir())
        .output()
        .expect("kitsync runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn imports(component: &str) -> Vec<String> {
    let out = kitsync(&["plugin", "inspect", component, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    inspected["imports"]
        .as_array()
        .expect("imports")
        .iter()
        .filter_map(|i| i.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_go_required_labels_passes_the_rust_plugins_cases_and_a_socket_user_is_refused() {
    // The build tools (wasm-tools and WASI's preview1 adapter, both pinned, from crates.io) are
    // installed by the script when missing, into its cache outside the clone: wasm-tools takes
    // minutes to compile, so the test shares the script's default cache (KITSYNC_GO_TOOLS).
    let out_dir = tempfile::tempdir().expect("tempdir");
    let build = Command::new(repo().join("plugins/go/required-labels/build"))
        .arg(out_dir.path())
        .output()
        .expect("the build script runs");
    assert!(
        build.status.success(),
        "building the Go plugins failed:\n{}{}",
        text(&build.stdout),
        text(&build.stderr)
    );
    let policy = out_dir.path().join("required_labels_go.wasm");
    let policy = policy.to_str().expect("utf-8 path");

    // The same cases as the Rust plugin: the same findings, at the same places, and the same
    // refusals of bad configs.
    let cases = repo().join("plugins/required-labels");
    let out = kitsync(&[
        "plugin",
        "test",
        cases.to_str().expect("utf-8 path"),
        "--component",
        policy,
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("required-labels 0.1.0 (validator) from "),
        "{stdout}"
    );
    assert!(stdout.ends_with("\n6 passed, 0 failed\n"), "{stdout}");

    // It imports the contract and nothing else: Go's runtime calls into WASI preview1 are
    // answered inside the component by the stubs adapter.
    assert_eq!(
        imports(policy),
        ["kitsync:plugin/host@0.1.0", "kitsync:plugin/types@0.1.0"]
    );

    // The hostile twin, adapted by WASI's own preview1 adapter, imports wasi:filesystem (its
    // code reads /etc/passwd), which the sandbox would back by a deny-all context, and
    // wasi:sockets (it asks for a network): refused at load, before any of it runs.
    let hostile = out_dir.path().join("hostile_go.wasm");
    let out = kitsync(&["plugin", "inspect", hostile.to_str().expect("utf-8 path")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("load: forbidden import wasi:sockets/"),
        "{stderr}"
    );
}
