//! A policy in another language, same contract: `required-labels` in Python, JavaScript and
//! Go (`plugins/<lang>/required-labels`, each built by its script, which installs its pinned
//! tool outside the clone when missing) passes the Rust plugin's own fixture cases in the same
//! sandbox, imports the contract and nothing else, works committed to a repository and pinned
//! in a kit (`check` reports its finding at the object's line), and a hostile twin of each that
//! reaches for files or the network is refused at load, before any of it runs.
//!
//! Costs, measured with a debug kitsync on 2 shared cores: Python 18 MB, ~30 s first compile;
//! JavaScript 12 MB, ~40 s; Go 3.9 MB, ~10 s (the Rust one is 180 KB); each then loads from the
//! code cache in under 2 s. First tool installs: componentize-py (pip) and componentize-js
//! (`npm ci`) well under a minute, wasm-tools for Go (only its component and parse
//! subcommands) about 4 CPU-minutes.

use super::{kitsync, text};
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One language's example and what its hostile twin is refused for.
struct Example {
    /// `plugins/<lang>/required-labels`.
    lang: &'static str,
    /// The variable naming the script's tool directory, and the directory under the test
    /// target's tmp kept between runs; `None` shares the script's default (a tool that takes
    /// minutes to build).
    tools: Option<(&'static str, &'static str)>,
    /// File names the script writes.
    policy: &'static str,
    hostile: &'static str,
    /// The import the hostile twin is refused for.
    refused: &'static str,
}

fn passes_the_rust_cases_and_refuses_its_hostile_twin(example: &Example) {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let mut build = Command::new(repo().join(format!("plugins/{}/required-labels/build", example.lang)));
    build.arg(out_dir.path());
    if let Some((variable, dir)) = example.tools {
        build.env(variable, PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(dir));
    }
    let build = build.output().expect("the build script runs");
    assert!(
        build.status.success(),
        "building the {} plugins failed:\n{}{}",
        example.lang,
        text(&build.stdout),
        text(&build.stderr)
    );
    let policy = out_dir.path().join(example.policy);
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
    assert!(stdout.ends_with("\n7 passed, 0 failed\n"), "{stdout}");

    // It imports the contract and nothing else: its WASI calls are stubbed or disabled.
    assert_eq!(
        super::imports(std::path::Path::new(policy)),
        ["kitsync:plugin/host@0.1.0", "kitsync:plugin/types@0.1.0"],
    );

    // Shipped as a kit author would: committed to a repository, pinned in a kit, and run by
    // `check` like any plugin (a component as large as Python's fits the per-file limit).
    let repo = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(out_dir.path().join(example.policy)).expect("the component");
    std::fs::create_dir_all(repo.path().join("plugins")).expect("mkdir");
    std::fs::create_dir_all(repo.path().join("kits/shop")).expect("mkdir");
    std::fs::write(repo.path().join("plugins/required-labels.wasm"), &bytes).expect("write");
    std::fs::write(
        repo.path().join("kits/shop/kit.yaml"),
        format!(
            "validate:\n  - plugin: plugins/required-labels.wasm\n    sha256: {}\n    config: {{labels: [team]}}\n",
            kitsync::plugin::sha256_hex(&bytes)
        ),
    )
    .expect("write");
    std::fs::write(
        repo.path().join("kits/shop/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  labels:\n    app: web\n",
    )
    .expect("write");
    let out = kitsync(&["check", repo.path().to_str().expect("utf-8 path")]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("kits/shop/cm.yaml:5") && stdout.contains("[required-labels/missing]"),
        "{}: {stdout}",
        example.lang
    );

    // The hostile twin imports what the sandbox refuses: refused at load.
    let hostile = out_dir.path().join(example.hostile);
    let out = kitsync(&["plugin", "inspect", hostile.to_str().expect("utf-8 path")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("load: forbidden import {}", example.refused)),
        "{stderr}"
    );
}

/// componentize-py `--stub-wasi`; the twin, built without stubs, links CPython's sockets (its
/// code opens /etc/passwd and a socket).
#[test]
fn a_python_required_labels_passes_the_rust_plugins_cases_and_a_socket_user_is_refused() {
    passes_the_rust_cases_and_refuses_its_hostile_twin(&Example {
        lang: "python",
        tools: Some(("KITSYNC_PYTHON_VENV", "python-plugins-venv")),
        policy: "required_labels_py.wasm",
        hostile: "hostile_py.wasm",
        refused: "wasi:sockets/",
    });
}

/// componentize-js with every WASI feature disabled; the twin keeps them and calls `fetch`.
#[test]
fn a_javascript_required_labels_passes_the_rust_plugins_cases_and_a_fetch_user_is_refused() {
    passes_the_rust_cases_and_refuses_its_hostile_twin(&Example {
        lang: "js",
        tools: Some(("KITSYNC_JS_TOOLS", "js-plugins-tools")),
        policy: "required_labels_js.wasm",
        hostile: "hostile_js.wasm",
        refused: "wasi:http/",
    });
}

/// Go's own wasip1 target, its preview1 calls answered inside the component by a stubs
/// adapter; the twin, adapted by WASI's own adapter, reads a file and asks for a network.
#[test]
fn a_go_required_labels_passes_the_rust_plugins_cases_and_a_socket_user_is_refused() {
    passes_the_rust_cases_and_refuses_its_hostile_twin(&Example {
        lang: "go",
        tools: None,
        policy: "required_labels_go.wasm",
        hostile: "hostile_go.wasm",
        refused: "wasi:sockets/",
    });
}
