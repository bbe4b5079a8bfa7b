//! The same policy in four languages, measured in one run (not a test): `required-labels` in
//! Rust (`plugins/required-labels`), Python, JavaScript and Go (`plugins/<lang>/required-labels`,
//! built by their scripts). For each: component size, build time from source, the engine's
//! compile and load with an empty code cache, instantiate p50, and validating 1,000
//! Deployments p50 (encoded once, as a render does).
//!
//! Run with `cargo bench -p kitsync --bench languages`. Each language is built twice: the
//! first build installs its tool outside the clone when it is missing (componentize-py,
//! componentize-js, wasm-tools), the second is timed. The Rust plugin builds with its
//! dependencies into an empty target directory, so its time is a build from scratch too.

use common::{Figures, bench, deployments, ms, us};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `command` twice (the first may install tools) and times the second.
fn timed_build(what: &str, mut command: impl FnMut() -> Command) -> Duration {
    let mut took = Duration::ZERO;
    for _ in 0..2 {
        let started = Instant::now();
        let out = command().output().expect("the build runs");
        took = started.elapsed();
        assert!(
            out.status.success(),
            "building {what} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    took
}

fn build_rust(out: &Path) -> (Duration, PathBuf) {
    let target = out.join("target");
    let took = timed_build("the Rust plugin", || {
        // A fresh target directory each time: a build from scratch, dependencies included.
        let _ = std::fs::remove_dir_all(&target);
        let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cargo
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                "wasm32-wasip2",
                "-p",
                "required-labels",
                "--manifest-path",
            ])
            .arg(repo().join("plugins/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target);
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
        ] {
            cargo.env_remove(var);
        }
        cargo
    });
    (took, target.join("wasm32-wasip2/release/required_labels.wasm"))
}

fn build_script(lang: &str, file: &str, out: &Path) -> (Duration, PathBuf) {
    let script = repo().join(format!("plugins/{lang}/required-labels/build"));
    let took = timed_build(lang, || {
        let mut command = Command::new(&script);
        command.arg(out);
        command
    });
    (took, out.join(file))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let objects = deployments();
    let config = json!({"labels": ["app.kubernetes.io/name"]});
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut rows: Vec<(&str, Duration, Figures)> = Vec::new();
    let languages: [(&str, Option<&str>); 4] = [
        ("rust", None),
        ("python", Some("required_labels_py.wasm")),
        ("js", Some("required_labels_js.wasm")),
        ("go", Some("required_labels_go.wasm")),
    ];
    println!("required-labels in four languages, {} Deployments", objects.len());
    for (lang, file) in languages {
        let out = scratch.path().join(lang);
        std::fs::create_dir_all(&out).expect("mkdir");
        let (build, component) = match file {
            None => build_rust(&out),
            Some(file) => build_script(lang, file, &out),
        };
        let bytes = std::fs::read(&component).expect("the built component");
        let figures = bench(
            &format!("required-labels ({lang})"),
            &bytes,
            config.clone(),
            &objects,
        );
        rows.push((lang, build, figures));
    }
    println!();
    println!(
        "{:<8} {:>10} {:>12} {:>16} {:>16} {:>22}",
        "language", "size", "build", "engine compile", "instantiate p50", "validate 1,000 p50"
    );
    for (lang, build, f) in rows {
        println!(
            "{:<8} {:>7} KB {:>12} {:>16} {:>16} {:>22}",
            lang,
            f.size / 1024,
            format!("{:.1} s", build.as_secs_f64()),
            ms(f.compile),
            us(f.instantiate),
            ms(f.call),
        );
    }
}
