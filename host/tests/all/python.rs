//! A policy in another language, same contract: the Python `required-labels`
//! (`plugins/python/required-labels`, built by its script with componentize-py) passes the Rust
//! plugin's own fixture cases in the same sandbox, and a Python component that links CPython's
//! sockets is refused at load.

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

#[test]
fn a_python_required_labels_passes_the_rust_plugins_cases_and_a_socket_user_is_refused() {
    // The build tool (componentize-py, pinned) is installed by the script when missing, into a
    // virtualenv kept between runs.
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out_dir = tempfile::tempdir().expect("tempdir");
    let build = Command::new(repo().join("plugins/python/required-labels/build"))
        .arg(out_dir.path())
        .env("KITSYNC_PYTHON_VENV", tmp.join("python-plugins-venv"))
        .output()
        .expect("the build script runs");
    assert!(
        build.status.success(),
        "building the Python plugins failed:\n{}{}",
        text(&build.stdout),
        text(&build.stderr)
    );
    let policy = out_dir.path().join("required_labels_py.wasm");
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

    // It imports the contract and nothing else (its WASI imports are trapping stubs).
    let out = kitsync(&["plugin", "inspect", policy, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let imports: Vec<&str> = inspected["imports"]
        .as_array()
        .expect("imports")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    assert_eq!(
        imports,
        ["kitsync:plugin/host@0.1.0", "kitsync:plugin/types@0.1.0"],
        "{inspected}"
    );

    // A Python component built without stubs imports wasi:sockets (its code opens
    // /etc/passwd and a socket): refused at load, before any of it runs.
    let hostile = out_dir.path().join("hostile_py.wasm");
    let out = kitsync(&["plugin", "inspect", hostile.to_str().expect("utf-8 path")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("load: forbidden import wasi:sockets/"),
        "{stderr}"
    );
}
