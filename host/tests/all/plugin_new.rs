//! `kitsync plugin new` as a new user runs it: scaffold, build with the one command the
//! README gives, and `kitsync plugin test .` passes as generated, for both kinds in all four
//! languages; broken, the case fails and shows the difference.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kitsync(dir: &Path, args: &[&str], target_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(args)
        .current_dir(dir)
        .env("KITSYNC_PLUGIN_CACHE", super::cache_dir())
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .expect("kitsync runs")
}

use super::text;

/// Where the generated projects build. One directory per checkout, kept between runs, so
/// the SDK's dependencies (wit-bindgen and its macros) compile once, not on every run.
fn target_dir() -> PathBuf {
    let checkout = kitsync::plugin::sha256_hex(env!("CARGO_MANIFEST_DIR").as_bytes());
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("plugin-new-{}", &checkout[..12]))
}

/// `cargo build --release --target wasm32-wasip2` in `project`, as the README says, with
/// none of the outer build's settings.
fn build(project: &Path, target_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(project)
        .env("CARGO_TARGET_DIR", target_dir);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
    ] {
        command.env_remove(var);
    }
    let out = command.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "building the generated project failed:\n{}",
        text(&out.stderr)
    );
}

#[test]
fn new_plugins_build_and_pass_their_test_as_generated() {
    let work = tempfile::tempdir().expect("tempdir");
    let target = target_dir();
    for (kind, name, case) in [
        ("validator", "max-replicas", "too-many-replicas"),
        ("transformer", "add-owner", "sets-annotations"),
    ] {
        let out = kitsync(work.path(), &["plugin", "new", name, "--kind", kind], &target);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
        assert!(
            stdout.contains("  cargo build --release --target wasm32-wasip2\n  kitsync plugin test .\n"),
            "{stdout}"
        );
        let project = work.path().join(name);
        let readme = std::fs::read_to_string(project.join("README.md")).expect("README");
        for command in [
            "cargo build --release --target wasm32-wasip2",
            "kitsync plugin test .",
        ] {
            assert!(readme.contains(command), "README gives {command:?}");
        }
        // Standalone: a workspace of its own, the SDK by path inside the project.
        let manifest = std::fs::read_to_string(project.join("Cargo.toml")).expect("manifest");
        assert!(manifest.contains("\n[workspace]\n"), "{manifest}");
        assert!(
            manifest.contains("kitsync-plugin = { path = \"vendor/kitsync-plugin\" }"),
            "{manifest}"
        );
        assert!(project.join("wit/plugin.wit").is_file());

        build(&project, &target);
        let out = kitsync(&project, &["plugin", "test", "."], &target);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
        assert!(
            stdout.starts_with(&format!("{name} 0.1.0 ({kind}) from ")),
            "{stdout}"
        );
        assert!(
            stdout.ends_with(&format!("ok   {case}\n1 passed, 0 failed\n")),
            "{stdout}"
        );
        // The generated case checks something: drop its expected finding and the case fails.
        let expected = project.join("tests").join(case).join("expected.yaml");
        std::fs::write(&expected, "findings: []\n").expect("write");
        let out = kitsync(&project, &["plugin", "test", "."], &target);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
        assert!(
            stdout.contains(&format!("- rule: {name}/")),
            "the plugin's finding shows: {stdout}"
        );
    }
}

#[test]
fn new_refuses_unknown_languages_bad_names_and_used_directories() {
    let work = tempfile::tempdir().expect("tempdir");
    let target = target_dir();
    let out = kitsync(
        work.path(),
        &["plugin", "new", "demo", "--kind", "transformer", "--lang", "ruby"],
        &target,
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid value 'ruby' for '--lang <LANG>'"),
        "{stderr}"
    );
    assert!(!work.path().join("demo").exists(), "nothing written");
    let out = kitsync(
        work.path(),
        &["plugin", "new", "Demo_Policy", "--kind", "validator"],
        &target,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("\"Demo_Policy\" is not a plugin name"),
        "{}",
        text(&out.stderr)
    );
    std::fs::create_dir(work.path().join("used")).expect("mkdir");
    std::fs::write(work.path().join("used/keep.txt"), "mine").expect("write");
    let out = kitsync(
        work.path(),
        &["plugin", "new", "demo", "--kind", "transformer", "--path", "used"],
        &target,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("used exists and is not empty"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(work.path().join("used")).expect("dir").count(),
        1,
        "nothing written"
    );
    // Nothing was written for the refused language either.
    assert!(!work.path().join("demo").exists());
}

#[test]
fn help_shows_examples() {
    let work = tempfile::tempdir().expect("tempdir");
    for command in ["new", "test"] {
        let out = kitsync(work.path(), &["plugin", command, "--help"], &target_dir());
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0));
        assert!(stdout.contains("Examples:"), "{stdout}");
        assert!(
            stdout.contains("cargo build --release --target wasm32-wasip2"),
            "{stdout}"
        );
    }
}

/// One script-language project of one kind: scaffolded, built by `./build`, its case passes,
/// the component imports the contract and nothing else, and after `break_it` the case fails
/// with exit 1 and prints a difference containing `shows`.
struct ScriptCase {
    lang: &'static str,
    kind: &'static str,
    name: &'static str,
    source: &'static str,
    /// The file under the project to change, and how its text changes.
    break_it: (&'static str, fn(&str) -> String),
    shows: &'static [&'static str],
}

fn script_project_builds_passes_and_fails_when_broken(work: &Path, case: &ScriptCase) {
    let ScriptCase { lang, kind, name, .. } = *case;
    let target = target_dir();
    // The build tools are installed by the generated script when missing, into directories
    // kept between runs (Go's wasm-tools takes minutes to build: the script's default, shared
    // with the languages tests).
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out = kitsync(
        work,
        &["plugin", "new", name, "--kind", kind, "--lang", lang],
        &target,
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with(&format!("Created the {kind} {name} in ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("  ./build\n  kitsync plugin test .\n"),
        "{stdout}"
    );
    let project = work.join(name);
    let readme = std::fs::read_to_string(project.join("README.md")).expect("README");
    assert!(
        readme.contains("./build") && readme.contains("kitsync plugin test ."),
        "{readme}"
    );
    assert!(
        readme.starts_with(&format!("# {name}\n\nA kitsync {kind} written in ")),
        "{readme}"
    );
    assert!(project.join(case.source).exists() && project.join("wit/plugin.wit").exists());

    // The one documented command.
    let build = Command::new(project.join("build"))
        .current_dir(&project)
        .env("KITSYNC_PYTHON_VENV", tmp.join("python-plugins-venv"))
        .env("KITSYNC_JS_PLUGIN_TOOLS", tmp.join("js-plugin-tools"))
        .output()
        .expect("./build runs");
    assert!(
        build.status.success(),
        "{lang} {kind}: ./build failed:\n{}{}",
        text(&build.stdout),
        text(&build.stderr)
    );
    let component = project.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(component.exists(), "{lang} {kind}: no {}", component.display());

    // The sandbox: its WASI calls are stubbed or disabled, so it imports the contract only
    // (Go's linker drops the host import when nothing logs).
    let imports = super::imports(&component);
    assert!(
        imports.contains(&"kitsync:plugin/types@0.1.0".to_owned())
            && imports
                .iter()
                .all(|i| i.starts_with("kitsync:plugin/") && i.ends_with("@0.1.0")),
        "{lang} {kind}: {imports:?}"
    );

    let out = kitsync(&project, &["plugin", "test", "."], &target);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{lang} {kind}: {stdout}{}",
        text(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!("{name} 0.1.0 ({kind}) from ")),
        "{lang} {kind}: {stdout}"
    );
    assert!(
        stdout.ends_with("\n1 passed, 0 failed\n"),
        "{lang} {kind}: {stdout}"
    );

    // The case checks something: break it, and it fails with a readable difference.
    let (file, change) = case.break_it;
    let file = project.join(file);
    let before = std::fs::read_to_string(&file).expect("read");
    let after = change(&before);
    assert_ne!(
        before,
        after,
        "{lang} {kind}: the change changes {}",
        file.display()
    );
    std::fs::write(&file, after).expect("write");
    let out = kitsync(&project, &["plugin", "test", "."], &target);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{lang} {kind}: {stdout}{}",
        text(&out.stderr)
    );
    for shown in case.shows {
        assert!(
            stdout.contains(shown),
            "{lang} {kind}: {shown:?} is shown: {stdout}"
        );
    }
}

#[test]
fn python_javascript_and_go_validators_build_and_pass_their_test_as_generated() {
    let work = tempfile::tempdir().expect("tempdir");
    for (lang, name, source) in [
        ("python", "max-replicas-py", "app.py"),
        ("js", "max-replicas-js", "app.js"),
        ("go", "max-replicas-go", "main.go"),
    ] {
        script_project_builds_passes_and_fails_when_broken(
            work.path(),
            &ScriptCase {
                lang,
                kind: "validator",
                name,
                source,
                // The rule is real: another limit changes the findings.
                break_it: ("tests/too-many-replicas/config.yaml", |_| {
                    "maxReplicas: 30\n".to_owned()
                }),
                shows: &[
                    "--- expected, not reported (tests/too-many-replicas/expected.yaml):",
                    "asks for 20 replicas",
                ],
            },
        );
    }
}

#[test]
fn python_javascript_and_go_transformers_build_and_pass_their_test_as_generated() {
    let work = tempfile::tempdir().expect("tempdir");
    for (lang, name, source) in [
        ("python", "add-owner-py", "app.py"),
        ("js", "add-owner-js", "app.js"),
        ("go", "add-owner-go", "main.go"),
    ] {
        script_project_builds_passes_and_fails_when_broken(
            work.path(),
            &ScriptCase {
                lang,
                kind: "transformer",
                name,
                source,
                // Expect another value on the Deployment (the first object): the output
                // differs in that one field, shown as expected and got.
                break_it: ("tests/sets-annotations/output.yaml", |text| {
                    text.replacen("example.com/owner: shop", "example.com/owner: ops", 1)
                }),
                shows: &[
                    "output differs from tests/sets-annotations/output.yaml:",
                    "~ apps/v1/Deployment web:",
                    "/metadata/annotations/example.com~1owner: expected \"ops\", got \"shop\"",
                ],
            },
        );
    }
}
