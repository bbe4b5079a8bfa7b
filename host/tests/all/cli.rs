//! The real `kitsync` binary, driven as a user would, with exit statuses checked.

use kitsync_test_artifacts as artifacts;
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

use super::{kitsync, text};

#[test]
fn inspect_prints_digest_world_and_imports() {
    let out = kitsync(&["plugin", "inspect", artifacts::PORT_RANGE]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let sha = kitsync::plugin::sha256_hex(&artifacts::bytes(artifacts::PORT_RANGE));
    assert!(stdout.contains(&format!("sha256:   {sha}")), "{stdout}");
    assert!(stdout.contains("world:    validator"), "{stdout}");
    assert!(stdout.contains("name:     port-range"), "{stdout}");
    assert!(stdout.contains("kitsync:plugin/types@0.1.0"), "{stdout}");
    assert!(!stdout.contains("wasi:sockets"), "{stdout}");
    assert!(!stdout.contains("wasi:filesystem"), "{stdout}");
}

#[test]
fn run_reports_findings_at_file_and_line_and_exits_1() {
    let input = data("vision.yaml");
    let out = kitsync(&[
        "plugin",
        "run",
        artifacts::PORT_RANGE,
        "--config",
        r#"{"min": 1024, "max": 6000}"#,
        "--input",
        input.to_str().expect("utf-8 path"),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    // The Service's `port: 6776` (line 40 of vision.yaml) is out of range.
    let expected = format!("{}:40: error [port-range/", input.display());
    assert!(stdout.contains(&expected), "wanted {expected:?} in:\n{stdout}");
    assert!(stdout.contains("6776"), "{stdout}");
    assert!(stdout.contains("/spec/ports/0/port"), "{stdout}");
}

#[test]
fn run_is_clean_when_in_range() {
    let input = data("vision.yaml");
    let out = kitsync(&[
        "plugin",
        "run",
        artifacts::PORT_RANGE,
        "--config",
        r#"{"min": 1024, "max": 32767}"#,
        "-i",
        input.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

#[test]
fn transformer_prints_yaml() {
    let input = data("vision.yaml");
    let out = kitsync(&[
        "plugin",
        "run",
        artifacts::SET_LABELS,
        "--config",
        r#"{"labels": {"team": "vision"}}"#,
        "-i",
        input.to_str().expect("utf-8 path"),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let objects = kitsync::manifest::parse("out.yaml", &stdout).expect("output is YAML");
    assert_eq!(objects.len(), 2);
    for object in &objects {
        assert_eq!(object.value["metadata"]["labels"]["team"], "vision", "{stdout}");
    }
}

#[test]
fn bad_config_exits_2_naming_the_plugin() {
    let input = data("vision.yaml");
    let out = kitsync(&[
        "plugin",
        "run",
        artifacts::PORT_RANGE,
        "--config",
        r#"{"min": "low"}"#,
        "-i",
        input.to_str().expect("utf-8 path"),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("port_range.wasm"), "{stderr}");
    assert!(stderr.contains("validate-config: invalid config"), "{stderr}");
}

#[test]
fn wrong_pin_exits_2() {
    let input = data("vision.yaml");
    let pin = "f".repeat(64);
    let out = kitsync(&[
        "plugin",
        "run",
        artifacts::PORT_RANGE,
        "--sha256",
        &pin,
        "-i",
        input.to_str().expect("utf-8 path"),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("digest mismatch: expected sha256 {pin}")),
        "{stderr}"
    );
}

#[test]
fn malformed_yaml_exits_2_with_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: v1\nkind: Service\nmetadata:\n  name: [oops\n").expect("write");
    let out = kitsync(&[
        "plugin",
        "run",
        artifacts::PORT_RANGE,
        "-i",
        bad.to_str().expect("utf-8 path"),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{}:", bad.display())), "{stderr}");
    assert!(stderr.contains("invalid YAML"), "{stderr}");
}

#[test]
fn help_shows_an_example() {
    let out = kitsync(&["plugin", "run", "--help"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout.contains("Example:"), "{stdout}");
    assert!(stdout.contains("--plugin-deadline"), "{stdout}");
}
