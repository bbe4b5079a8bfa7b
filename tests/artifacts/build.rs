//! Builds every crate of the `plugins/` workspace for wasm32-wasip2 and writes their paths
//! into `$OUT_DIR/plugins.rs`, so tests run real components built from source.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("tests/artifacts sits two levels below the repository root")
        .to_owned();
    let plugins = root.join("plugins");
    let target_dir = root.join("target").join("wasm-plugins");
    println!("cargo:rerun-if-changed={}", plugins.display());
    // Cargo shares build-script results between clones of the workspace at different paths
    // (CI's fresh clone, a second checkout) when they use one target directory; the paths
    // written below would then point into another clone. The test scripts export the clone's
    // root, so a different clone reruns this script.
    println!("cargo:rerun-if-env-changed=KITSYNC_SOURCE_ROOT");
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--workspace",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings (clippy's wrapper, host rustflags) must not leak in.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .expect("could not run cargo to build the plugins");
    assert!(
        status.success(),
        "building plugins/ for wasm32-wasip2 failed; is the target installed? (rustup target add wasm32-wasip2)"
    );

    let release = target_dir.join("wasm32-wasip2").join("release");
    let mut crates = Vec::new();
    for dir in [plugins.clone(), plugins.join("testdata")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if name == "sdk" || !path.join("Cargo.toml").is_file() {
                continue;
            }
            crates.push(package_name(&path.join("Cargo.toml")).unwrap_or(name));
        }
    }
    crates.sort();
    let mut out = String::new();
    let mut all = String::from(
        "/// Every plugin built: (package name, path of its .wasm).\npub const ALL: &[(&str, &str)] = &[\n",
    );
    for name in &crates {
        let file = release.join(format!("{}.wasm", name.replace('-', "_")));
        assert!(
            file.is_file(),
            "expected {} after building the plugins",
            file.display()
        );
        let ident = name.replace('-', "_").to_uppercase();
        out.push_str(&format!(
            "/// Path of the `{name}` component.\npub const {ident}: &str = {:?};\n",
            file.display().to_string()
        ));
        all.push_str(&format!("    ({name:?}, {ident}),\n"));
    }
    all.push_str("];\n");
    out.push_str(&all);
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out_dir.join("plugins.rs"), out).expect("write plugins.rs");
}

/// Reads `name = "..."` from the `[package]` table of a manifest.
fn package_name(manifest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let mut in_package = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(rest) = line.strip_prefix("name") {
            let value = rest.trim_start().strip_prefix('=')?.trim();
            return Some(value.trim_matches('"').to_owned());
        }
    }
    None
}
