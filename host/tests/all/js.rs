//! A policy in another language, same contract: the JavaScript `required-labels`
//! (`plugins/js/required-labels`, built by its script with componentize-js) passes the Rust
//! plugin's own fixture cases in the same sandbox, and a JavaScript component that keeps
//! StarlingMonkey's WASI features (and calls `fetch`) is refused at load.
//!
//! Costs, measured here with a debug kitsync on 2 shared cores: a 12 MB component (the Rust one
//! is 180 KB), about 40 s to compile the first time (then under 1.5 s from the code cache), and
//! `npm ci` plus both builds about 25 s.

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
fn a_javascript_required_labels_passes_the_rust_plugins_cases_and_a_fetch_user_is_refused() {
    // The build tool (componentize-js, pinned by package-lock.json) is installed by the script
    // with `npm ci` when missing, into a directory kept between runs.
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out_dir = tempfile::tempdir().expect("tempdir");
    let build = Command::new(repo().join("plugins/js/required-labels/build"))
        .arg(out_dir.path())
        .env("KITSYNC_JS_TOOLS", tmp.join("js-plugins-tools"))
        .output()
        .expect("the build script runs");
    assert!(
        build.status.success(),
        "building the JavaScript plugins failed:\n{}{}",
        text(&build.stdout),
        text(&build.stderr)
    );
    let policy = out_dir.path().join("required_labels_js.wasm");
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

    // It imports the contract and nothing else: every WASI feature is disabled at build.
    assert_eq!(
        imports(policy),
        ["kitsync:plugin/host@0.1.0", "kitsync:plugin/types@0.1.0"]
    );

    // The same engine built without `--disable` imports wasi:http (its code calls fetch), and
    // the file system, clocks and random, which the sandbox would back by a deny-all context:
    // refused at load for wasi:http, before any of it runs.
    let hostile = out_dir.path().join("hostile_js.wasm");
    let out = kitsync(&["plugin", "inspect", hostile.to_str().expect("utf-8 path")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("load: forbidden import wasi:http/"), "{stderr}");
}
