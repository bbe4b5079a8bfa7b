//! The first-party plugins' own cases (`plugins/<name>/tests/<case>/`), run by the real
//! `kitsync plugin test` on the components built from `plugins/`, as a plugin author runs
//! theirs; and what that command says when an expectation is wrong.

use kitsync_test_artifacts as artifacts;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn plugins_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins")
}

/// Every first-party plugin: (directory under plugins/, built component). The hostile and
/// test-only plugins under plugins/testdata are not policies and have no cases.
fn first_party() -> Vec<(PathBuf, &'static str)> {
    let plugins: Vec<_> = artifacts::ALL
        .iter()
        .filter(|(name, _)| plugins_dir().join(name).join("Cargo.toml").is_file())
        .map(|(name, path)| (plugins_dir().join(name), *path))
        .collect();
    assert_eq!(plugins.len(), 7, "seven first-party plugins: {plugins:?}");
    plugins
}

fn plugin_test(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(["plugin", "test"])
        .arg(dir)
        .args(args)
        .env("KITSYNC_PLUGIN_CACHE", super::cache_dir())
        .output()
        .expect("kitsync runs")
}

use super::text;

/// Case directories of a plugin (each holds an input.yaml).
fn cases(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("tests"))
        .unwrap_or_else(|e| panic!("{}/tests: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().join("input.yaml").is_file())
        .count()
}

#[test]
fn every_first_party_plugin_passes_its_cases() {
    for (dir, component) in first_party() {
        let out = plugin_test(&dir, &["--component", component]);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}:\n{stdout}{}",
            dir.display(),
            text(&out.stderr)
        );
        let count = cases(&dir);
        assert!(count >= 4, "{}: only {count} cases", dir.display());
        assert!(
            stdout.ends_with(&format!("\n{count} passed, 0 failed\n")),
            "{}:\n{stdout}",
            dir.display()
        );
        assert!(!stdout.contains("FAIL"), "{stdout}");
    }
}

/// A copy of a first-party plugin's directory (its cases), to break on purpose.
fn copy_of(plugin: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    super::copy_dir(
        &plugins_dir().join(plugin).join("tests"),
        &dir.path().join("tests"),
    );
    dir
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).expect("read");
    assert!(text.contains(from), "{} has no {from:?}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).expect("write");
}

#[test]
fn a_wrong_expected_finding_fails_with_exit_1_and_a_diff() {
    let dir = copy_of("port-range");
    edit(
        &dir.path().join("tests/service-ports/expected.yaml"),
        "path: /spec/ports/1/targetPort",
        "path: /spec/ports/1/port",
    );
    let out = plugin_test(dir.path(), &["--component", artifacts::PORT_RANGE]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    // Only the broken case fails; the others still pass.
    assert!(stdout.contains("\nok   pod-bounds-inclusive\n"), "{stdout}");
    assert!(
        stdout.contains("\nFAIL service-ports (tests/service-ports)\n"),
        "{stdout}"
    );
    let diff = "    findings differ: 1 expected but not reported, 1 reported but not expected
    --- expected, not reported (tests/service-ports/expected.yaml):
    - rule: port-range/out-of-range
      severity: error
      object: v1/Service web
      path: /spec/ports/1/port
      message: \"targetPort 443\"
    +++ reported, not expected:
    - rule: port-range/out-of-range
      severity: error
      object: v1/Service web
      path: /spec/ports/1/targetPort
      message: \"targetPort 443 is outside the allowed port range 1024-32767\"
      # at tests/service-ports/input.yaml:11
";
    assert!(stdout.contains(diff), "wanted\n{diff}\nin\n{stdout}");
    assert!(stdout.ends_with("\n4 passed, 1 failed\n"), "{stdout}");
}

#[test]
fn a_wrong_transformer_output_fails_with_the_differing_fields() {
    let dir = copy_of("set-labels");
    edit(
        &dir.path()
            .join("tests/creates-missing-maps-and-cronjob-templates/output.yaml"),
        "  name: c\n  labels:\n    team: shop\n",
        "  name: c\n  labels:\n    team: store\n",
    );
    let out = plugin_test(dir.path(), &["--component", artifacts::SET_LABELS]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let diff = "    output differs from tests/creates-missing-maps-and-cronjob-templates/output.yaml:
    ~ v1/ConfigMap c:
        /metadata/labels/team: expected \"store\", got \"shop\"
";
    assert!(stdout.contains(diff), "wanted\n{diff}\nin\n{stdout}");
}

#[test]
fn a_wrong_expected_error_fails_saying_what_happened() {
    let dir = copy_of("required-labels");
    edit(
        &dir.path().join("tests/config-empty-labels/expected.yaml"),
        "kind: invalid-config",
        "kind: invalid-input",
    );
    edit(
        &dir.path().join("tests/clean/expected.yaml"),
        "findings: []",
        "error: {kind: internal}",
    );
    let out = plugin_test(dir.path(), &["--component", artifacts::REQUIRED_LABELS]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(
            "    expected the plugin to refuse with invalid-input containing \"at least one label key\"\n    got: plugin "
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("validate-config: invalid config: `labels` must list at least one label key"),
        "{stdout}"
    );
    assert!(
        stdout.contains("    expected the plugin to refuse with internal\n    got: success, 0 findings\n"),
        "{stdout}"
    );
}

#[test]
fn junit_reports_each_case_with_its_failure() {
    let dir = copy_of("port-range");
    edit(
        &dir.path().join("tests/pod-bounds-inclusive/expected.yaml"),
        "severity: error",
        "severity: warning",
    );
    let out = plugin_test(
        dir.path(),
        &["--component", artifacts::PORT_RANGE, "--format", "junit"],
    );
    let xml = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{xml}{}", text(&out.stderr));
    let mut reader = quick_xml::Reader::from_str(&xml);
    reader.config_mut().check_end_names = true;
    let (mut cases, mut failures) = (Vec::new(), Vec::new());
    loop {
        match reader.read_event().expect("well-formed XML") {
            quick_xml::events::Event::Eof => break,
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                let attr = |name: &str| {
                    let attr = e.try_get_attribute(name).expect("attr").expect(name);
                    attr.normalized_value(quick_xml::XmlVersion::default())
                        .expect("escaped")
                        .into_owned()
                };
                match e.name().into_inner() {
                    "testcase" => cases.push(attr("name")),
                    "failure" => failures.push(attr("message")),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    assert_eq!(cases.len(), 5, "{xml}");
    assert!(cases.contains(&"pod-bounds-inclusive".to_owned()), "{cases:?}");
    assert_eq!(
        failures,
        ["findings differ: 1 expected but not reported, 1 reported but not expected"],
        "{xml}"
    );
}

#[test]
fn unreadable_cases_and_missing_components_exit_2() {
    let dir = copy_of("port-range");
    edit(
        &dir.path().join("tests/service-ports/expected.yaml"),
        "    path: /spec/ports/0/port\n",
        "    paht: /spec/ports/0/port\n",
    );
    let out = plugin_test(dir.path(), &["--component", artifacts::PORT_RANGE]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("tests/service-ports/expected.yaml:5:5: unknown field `paht`"),
        "the file, line and unknown field: {stderr}"
    );

    // No Cargo.toml and no .wasm: nothing to test, and the error says how to name it.
    let dir = copy_of("port-range");
    let out = plugin_test(dir.path(), &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pass --component FILE"), "{stderr}");

    // A directory without cases.
    let empty = tempfile::tempdir().expect("tempdir");
    let out = plugin_test(empty.path(), &["--component", artifacts::PORT_RANGE]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("fixture cases live in tests/<case>/"), "{stderr}");
}
