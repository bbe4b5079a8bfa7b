//! `kitsync check` and `kitsync render` on real repositories: the bundled example, a fixture
//! with known violations, broken kits of every kind, and `--base` over real Git history.

use kitsync_test_artifacts as artifacts;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kitsync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(args)
        .env("KITSYNC_PLUGIN_CACHE", super::cache_dir())
        .env("NO_COLOR", "1")
        .output()
        .expect("kitsync runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn sha256(path: &Path) -> String {
    kitsync::plugin::sha256_hex(&std::fs::read(path).expect("read plugin"))
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "init.defaultBranch=main", "-c", "user.name=Kit Tester"])
        .args(["-c", "user.email=kit@example.com"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// A GitOps repository in a temp dir, starting from the bundled example's platform file and
/// plugins.
struct Repo {
    dir: TempDir,
}

impl Repo {
    fn platform_only() -> Repo {
        let repo = Repo {
            dir: TempDir::new().expect("temp dir"),
        };
        let examples = root().join("examples");
        repo.write(
            "kitsync.yaml",
            &std::fs::read_to_string(examples.join("kitsync.yaml")).expect("read"),
        );
        std::fs::create_dir_all(repo.path().join("plugins")).expect("mkdir");
        for entry in std::fs::read_dir(examples.join("plugins")).expect("plugins") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), repo.path().join("plugins").join(entry.file_name()))
                .expect("copy plugin");
        }
        repo
    }

    /// The whole example repository.
    fn examples() -> Repo {
        let repo = Repo::platform_only();
        for kit in ["manufracture", "smithereens"] {
            for file in ["kit.yaml", "vision.yaml"] {
                let from = root().join("examples/kits").join(kit).join(file);
                repo.write(
                    &format!("kits/{kit}/{file}"),
                    &std::fs::read_to_string(from).expect("read"),
                );
            }
        }
        repo
    }

    /// The example plus the `shop` kit of `tests/data/violations`.
    fn with_violations() -> Repo {
        let repo = Repo::examples();
        let fixture = root().join("host/tests/data/violations/kits/shop");
        let port_range = sha256(&repo.path().join("plugins/port-range.wasm"));
        for file in ["kit.yaml", "web.yaml"] {
            let body = std::fs::read_to_string(fixture.join(file)).expect("read fixture");
            repo.write(
                &format!("kits/shop/{file}"),
                &body.replace("PORT_RANGE_SHA256", &port_range),
            );
        }
        repo
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn arg(&self) -> &str {
        self.path().to_str().expect("utf-8 temp path")
    }

    fn write(&self, path: &str, body: &str) {
        let path = self.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, body).expect("write");
    }

    fn copy_plugin(&self, artifact: &str, name: &str) -> String {
        std::fs::copy(artifact, self.path().join("plugins").join(name)).expect("copy");
        sha256(Path::new(artifact))
    }

    fn check(&self, extra: &[&str]) -> Output {
        let mut args = vec!["check", self.arg()];
        args.extend_from_slice(extra);
        kitsync(&args)
    }
}

/// (file, line, rule) of every finding the violations fixture must produce.
const VIOLATIONS: &[(&str, u32, &str)] = &[
    ("kits/shop/web.yaml", 18, "resource-limits/missing-limit"),
    ("kits/shop/web.yaml", 21, "no-privileged/privileged"),
    ("kits/shop/web.yaml", 23, "port-range/out-of-range"),
    ("kits/shop/web.yaml", 29, "required-labels/missing"),
    ("kits/shop/web.yaml", 35, "port-range/out-of-range"),
];

#[test]
fn the_bundled_example_passes() {
    let examples = root().join("examples");
    let out = kitsync(&["check", examples.to_str().expect("utf-8")]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("kit manufracture: ok (2 objects, namespace manufracture)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("kit smithereens: ok (2 objects, namespace smithereens)"),
        "{stdout}"
    );
    assert!(stdout.contains("2 kit(s) checked: 0 error(s)"), "{stdout}");
}

#[test]
fn render_prints_the_final_objects() {
    let examples = root().join("examples");
    let out = kitsync(&[
        "render",
        examples.to_str().expect("utf-8"),
        "--kit",
        "manufracture",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let objects = kitsync::manifest::parse("render.yaml", &stdout).expect("render prints YAML");
    assert_eq!(objects.len(), 2, "{stdout}");
    let service = objects
        .iter()
        .find(|o| o.id.kind == "Service")
        .expect("a Service");
    assert_eq!(service.value["spec"]["ports"][0]["port"], 6776);
    for object in &objects {
        let labels = &object.value["metadata"]["labels"];
        assert_eq!(object.value["metadata"]["namespace"], "manufracture");
        assert_eq!(labels["kitsync.dev/kit"], "manufracture", "ownership label");
        assert_eq!(labels["team"], "vision-ops", "set-labels ran");
    }
    let unknown = kitsync(&["render", examples.to_str().expect("utf-8"), "--kit", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown.stderr).contains("no kit named nope"),
        "{}",
        text(&unknown.stderr)
    );
}

#[test]
fn text_output_locates_every_violation_with_its_source_line() {
    let repo = Repo::with_violations();
    let out = repo.check(&[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let web = std::fs::read_to_string(repo.path().join("kits/shop/web.yaml")).expect("read");
    for (file, line, rule) in VIOLATIONS {
        let head = format!("{file}:{line}: error [{rule}]");
        assert!(stdout.contains(&head), "wanted {head:?} in:\n{stdout}");
        let source_line = web.lines().nth(*line as usize - 1).expect("line exists");
        let snippet = format!("{line:>5} | {}", source_line.trim_end());
        assert!(stdout.contains(&snippet), "wanted {snippet:?} in:\n{stdout}");
    }
    assert!(
        stdout.contains("kit shop: blocked: 5 error finding(s)"),
        "{stdout}"
    );
    // The broken kit does not stop the others.
    assert!(stdout.contains("kit manufracture: ok"), "{stdout}");
    assert!(stdout.contains("kit smithereens: ok"), "{stdout}");
}

#[test]
fn json_output_is_stable_and_complete() {
    let repo = Repo::with_violations();
    let out = repo.check(&["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(report["version"], 1);
    assert_eq!(report["revision"], "worktree");
    assert_eq!(report["summary"]["kits"], 3);
    assert_eq!(report["summary"]["errors"], 5);
    let kits = report["kits"].as_array().expect("kits");
    let shop = kits.iter().find(|k| k["name"] == "shop").expect("shop");
    assert_eq!(shop["status"], "blocked");
    assert_eq!(shop["namespace"], "shop");
    let mut found: Vec<(String, u64, String)> = shop["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            assert_eq!(f["severity"], "error");
            assert_eq!(f["kit"], "shop");
            assert!(
                f["source"].as_str().is_some_and(|s| s.starts_with("plugins/")),
                "{f}"
            );
            assert!(f["object"]["kind"].is_string() && f["path"].is_string(), "{f}");
            (
                f["location"]["file"].as_str().expect("file").to_owned(),
                f["location"]["line"].as_u64().expect("line"),
                f["rule"].as_str().expect("rule").to_owned(),
            )
        })
        .collect();
    found.sort();
    let expected: Vec<(String, u64, String)> = VIOLATIONS
        .iter()
        .map(|(f, l, r)| ((*f).to_owned(), u64::from(*l), (*r).to_owned()))
        .collect();
    assert_eq!(found, expected);
    let manufracture = kits.iter().find(|k| k["name"] == "manufracture").expect("kit");
    assert_eq!(manufracture["status"], "ok");
    assert_eq!(manufracture["objects"], 2);
    assert_eq!(manufracture["inputHash"].as_str().map(str::len), Some(64));
}

#[test]
fn sarif_output_validates_against_the_sarif_2_1_0_schema() {
    let repo = Repo::with_violations();
    let out = repo.check(&["--format", "sarif"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let sarif: Value = serde_json::from_slice(&out.stdout).expect("valid JSON");

    let schema_text =
        std::fs::read_to_string(root().join("host/tests/data/sarif-schema-2.1.0.json")).expect("schema file");
    // The published schema's `language` pattern has an unbalanced `]`, which the meta-schema
    // check refuses as a regex; it is the same pattern with the stray bracket removed.
    let schema_text = schema_text.replace(r#"-[a-zA-Z]{2}]?$"#, r#"-[a-zA-Z]{2}$"#);
    let schema: Value = serde_json::from_str(&schema_text).expect("schema is JSON");
    // Formats stay unchecked: the official schema's own `language` pattern is not a valid
    // regex, which a format-checking build of the schema refuses.
    let validator = jsonschema::draft7::options()
        .should_validate_formats(false)
        .build(&schema)
        .expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&sarif)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "SARIF invalid: {errors:#?}");

    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "kitsync");
    let results = run["results"].as_array().expect("results");
    assert_eq!(results.len(), VIOLATIONS.len());
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    for result in results {
        let index = result["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(
            rules[index]["id"], result["ruleId"],
            "ruleIndex points at its rule"
        );
        let region = &result["locations"][0]["physicalLocation"];
        let (uri, line) = (
            region["artifactLocation"]["uri"].as_str().expect("uri"),
            region["region"]["startLine"].as_u64().expect("line"),
        );
        let rule = result["ruleId"].as_str().expect("ruleId");
        assert!(
            VIOLATIONS
                .iter()
                .any(|(f, l, r)| *f == uri && u64::from(*l) == line && *r == rule),
            "unexpected result {uri}:{line} {rule}"
        );
    }

    // A schema check that can fail: a result without a message is refused.
    let mut broken = sarif.clone();
    broken["runs"][0]["results"][0]
        .as_object_mut()
        .expect("object")
        .remove("message");
    assert!(
        !validator.is_valid(&broken),
        "the schema check must be able to fail"
    );
}

#[test]
fn github_output_annotates_file_and_line() {
    let repo = Repo::with_violations();
    let out = repo.check(&["--format", "github"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    for (file, line, rule) in VIOLATIONS {
        let command = format!("::error file={file},line={line},title=shop {rule}::");
        assert!(stdout.contains(&command), "wanted {command:?} in:\n{stdout}");
    }
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("::error ")).count(),
        VIOLATIONS.len()
    );
}

#[test]
fn junit_output_is_well_formed_with_a_failure_per_finding() {
    use quick_xml::events::Event;
    let repo = Repo::with_violations();
    let out = repo.check(&["--format", "junit"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let mut reader = quick_xml::Reader::from_reader(out.stdout.as_slice());
    reader.config_mut().check_end_names = true;
    let (mut suites, mut cases, mut failures) = (Vec::new(), 0, 0);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf).expect("well-formed XML") {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => match e.name().into_inner() {
                "testsuite" => {
                    let name = e.try_get_attribute("name").expect("attr").expect("suite name");
                    suites.push(name.value.into_owned());
                }
                "testcase" => cases += 1,
                "failure" => failures += 1,
                _ => {}
            },
            _ => {}
        }
        buf.clear();
    }
    suites.sort();
    assert_eq!(suites, ["manufracture", "shop", "smithereens"]);
    assert_eq!(failures, VIOLATIONS.len());
    assert!(cases >= failures, "{cases} cases");
}

#[test]
fn broken_kits_are_blocked_with_clear_errors_and_others_go_on() {
    let repo = Repo::examples();
    let port_range = sha256(&repo.path().join("plugins/port-range.wasm"));
    let panic_sha = repo.copy_plugin(artifacts::HOSTILE_PANIC, "hostile-panic.wasm");
    let garbage_sha = repo.copy_plugin(artifacts::HOSTILE_GARBAGE, "hostile-garbage.wasm");
    let deployment = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    app.kubernetes.io/name: {name}\n    team: t\n{extra}data:\n  a: b\n"
        )
    };
    // Malformed YAML: an unclosed flow sequence on line 4.
    repo.write("kits/malformed/kit.yaml", "");
    repo.write(
        "kits/malformed/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n",
    );
    // A kit.yaml field that does not exist.
    repo.write(
        "kits/unknown-field/kit.yaml",
        "namespace: unknown-field\nprune: true\nselfheal: true\n",
    );
    repo.write("kits/unknown-field/cm.yaml", &deployment("a", ""));
    // A wrong type.
    repo.write("kits/wrong-type/kit.yaml", "prune: sometimes\n");
    repo.write("kits/wrong-type/cm.yaml", &deployment("a", ""));
    // A plugin that is not there.
    repo.write(
        "kits/missing-plugin/kit.yaml",
        &format!("validate:\n  - plugin: plugins/nope.wasm\n    sha256: {port_range}\n"),
    );
    repo.write("kits/missing-plugin/cm.yaml", &deployment("a", ""));
    // A digest that does not match.
    let wrong = "ab".repeat(32);
    repo.write(
        "kits/wrong-digest/kit.yaml",
        &format!("validate:\n  - plugin: plugins/port-range.wasm\n    sha256: {wrong}\n"),
    );
    repo.write("kits/wrong-digest/cm.yaml", &deployment("a", ""));
    // A plugin that traps.
    repo.write(
        "kits/trapping/kit.yaml",
        &format!("validate:\n  - plugin: plugins/hostile-panic.wasm\n    sha256: {panic_sha}\n"),
    );
    repo.write("kits/trapping/cm.yaml", &deployment("a", ""));
    // A transformer that drops identity.
    repo.write(
        "kits/no-identity/kit.yaml",
        &format!(
            "transform:\n  - plugin: plugins/hostile-garbage.wasm\n    sha256: {garbage_sha}\n    config: {{mode: no-identity}}\n"
        ),
    );
    repo.write("kits/no-identity/cm.yaml", &deployment("a", ""));
    // Two kits claiming one namespace.
    repo.write("kits/claim-a/kit.yaml", "namespace: shared\n");
    repo.write("kits/claim-a/cm.yaml", &deployment("a", ""));
    repo.write("kits/claim-b/kit.yaml", "namespace: shared\n");
    repo.write("kits/claim-b/cm.yaml", &deployment("b", ""));
    // An object in another kit's namespace.
    repo.write("kits/escape/kit.yaml", "");
    repo.write(
        "kits/escape/cm.yaml",
        &deployment("a", "").replace("  name: a\n", "  name: a\n  namespace: manufracture\n"),
    );
    // Two objects with one identity.
    repo.write("kits/duplicate/kit.yaml", "");
    repo.write(
        "kits/duplicate/cm.yaml",
        &format!("{}---\n{}", deployment("a", ""), deployment("a", "")),
    );

    let out = repo.check(&["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let kit = |name: &str| -> (String, String) {
        let k = report["kits"]
            .as_array()
            .expect("kits")
            .iter()
            .find(|k| k["name"] == name)
            .unwrap_or_else(|| panic!("kit {name} missing from {report:#}"));
        let messages: Vec<String> = k["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| {
                let at = match f["location"]["line"].as_u64() {
                    Some(line) => format!("{}:{line}", f["location"]["file"].as_str().unwrap_or("?")),
                    None => String::new(),
                };
                format!(
                    "{at} [{}] {}",
                    f["rule"].as_str().unwrap_or(""),
                    f["message"].as_str().unwrap_or("")
                )
            })
            .collect();
        (k["status"].as_str().unwrap_or("").to_owned(), messages.join("\n"))
    };
    let blocked = |name: &str, needles: &[&str]| {
        let (status, messages) = kit(name);
        assert_eq!(status, "blocked", "{name}: {messages}");
        for needle in needles {
            assert!(
                messages.contains(needle),
                "{name}: wanted {needle:?} in:\n{messages}"
            );
        }
    };
    blocked(
        "malformed",
        &["kits/malformed/cm.yaml:4", "[kitsync/invalid-manifest]"],
    );
    blocked("unknown-field", &["kits/unknown-field/kit.yaml:3", "selfheal"]);
    blocked("wrong-type", &["kits/wrong-type/kit.yaml:1", "prune"]);
    blocked(
        "missing-plugin",
        &["[kitsync/plugin-missing]", "plugins/nope.wasm", "does not exist"],
    );
    blocked("wrong-digest", &["digest mismatch", &wrong, &port_range]);
    blocked(
        "trapping",
        &["hostile-panic.wasm", "kit trapping", "hostile panic: boom"],
    );
    blocked("no-identity", &["hostile-garbage.wasm", "identity"]);
    blocked("claim-a", &["shared", "claim-b"]);
    blocked("claim-b", &["shared", "claim-a"]);
    blocked("escape", &["kits/escape/cm.yaml", "manufracture"]);
    blocked("duplicate", &["v1/ConfigMap duplicate/a"]);
    assert_eq!(kit("manufracture").0, "ok");
    assert_eq!(kit("smithereens").0, "ok");
}

#[test]
fn base_checks_only_changed_kits_and_shows_the_object_diff() {
    let repo = Repo::examples();
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "v5"]);
    let v5 = git(repo.path(), &["rev-parse", "HEAD"]);
    // The seed scenario: manufracture's vision Service moves from 6776 to 5445.
    let service = repo.path().join("kits/manufracture/vision.yaml");
    let body = std::fs::read_to_string(&service).expect("read");
    assert!(body.contains("port: 6776"));
    std::fs::write(&service, body.replace("port: 6776", "port: 5445")).expect("write");
    git(repo.path(), &["commit", "-q", "-am", "v6"]);

    let out = repo.check(&["--base", "HEAD~1"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("kit manufracture: changes against HEAD~1:"),
        "{stdout}"
    );
    assert!(stdout.contains("  ~ v1/Service manufracture/vision"), "{stdout}");
    assert!(stdout.contains("/spec/ports/0/port: 6776 -> 5445"), "{stdout}");
    assert!(
        !stdout.contains("smithereens"),
        "an unchanged kit is not checked:\n{stdout}"
    );
    assert!(stdout.contains("1 kit(s) checked"), "{stdout}");

    // The same in JSON, against a commit id.
    let out = repo.check(&["--base", &v5, "--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["base"], v5.as_str());
    let diff = &report["kits"][0]["diff"];
    assert_eq!(report["kits"].as_array().map(Vec::len), Some(1), "{report:#}");
    assert_eq!(diff[0]["change"], "changed", "{diff:#}");

    // A platform file change means every kit.
    let platform = repo.path().join("kitsync.yaml");
    let body = std::fs::read_to_string(&platform).expect("read");
    std::fs::write(&platform, body.replace("timeout: 5m", "timeout: 6m")).expect("write");
    let out = repo.check(&["--base", "HEAD"]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("2 kit(s) checked"), "{stdout}");
    assert!(
        stdout.contains("kit smithereens: changes against HEAD:\n  (no object changes)"),
        "{stdout}"
    );

    // A base that does not exist is a usage error.
    let out = repo.check(&["--base", "no-such-ref"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no-such-ref"), "{}", text(&out.stderr));
}

#[test]
fn check_reads_a_git_remote() {
    let repo = Repo::with_violations();
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "one"]);
    let commit = git(repo.path(), &["rev-parse", "HEAD"]);
    let cache = TempDir::new().expect("cache");
    let url = format!("file://{}", repo.arg());
    let out = Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(["check", "--repo", &url, "--ref", "main", "--format", "json"])
        .env("KITSYNC_PLUGIN_CACHE", super::cache_dir())
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .expect("kitsync runs");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["revision"], commit.as_str());
    assert_eq!(report["summary"]["errors"], 5);

    let missing = Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(["check", "--repo", &url, "--ref", "tag:v9"])
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .expect("kitsync runs");
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("has no tag:v9"),
        "{}",
        text(&missing.stderr)
    );

    // A token is never sent over plain http; the error says so before any connection.
    let insecure = Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args([
            "check",
            "--repo",
            "http://127.0.0.1:9/gitops.git",
            "--ref",
            "main",
        ])
        .args(["--token-env", "KITSYNC_TEST_TOKEN"])
        .env("KITSYNC_TEST_TOKEN", "s3cret-token")
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .expect("kitsync runs");
    let stderr = text(&insecure.stderr);
    assert_eq!(insecure.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing to send credentials over plain http"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret-token"), "{stderr}");
}

/// A `dependsOn` cycle, a self-dependency and an unknown kit are located findings for the
/// kits involved; a kit that merely depends on a blocked kit and unrelated kits pass.
#[test]
fn depends_on_graph_errors_are_located_findings() {
    let repo = Repo::platform_only();
    let config_map = |name: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    app.kubernetes.io/name: {name}\n    team: t\ndata:\n  a: b\n"
        )
    };
    for (kit, deps) in [
        ("ring-a", "[ring-b]"),
        ("ring-b", "[ring-a]"),
        ("selfish", "[selfish]"),
        ("orphan", "[no-such-kit]"),
        ("leaf", "[]"),
        ("after-ring", "[ring-a]"),
    ] {
        repo.write(
            &format!("kits/{kit}/kit.yaml"),
            &format!("namespace: {kit}\n# the order of kits\ndependsOn: {deps}\n"),
        );
        repo.write(&format!("kits/{kit}/cm.yaml"), &config_map(kit));
    }
    let out = repo.check(&["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let kit = |name: &str| -> Value {
        report["kits"]
            .as_array()
            .expect("kits")
            .iter()
            .find(|k| k["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("kit {name} missing"))
    };
    for (name, needle) in [
        ("ring-a", "cycle ring-a -> ring-b -> ring-a"),
        ("ring-b", "cycle ring-a -> ring-b -> ring-a"),
        ("selfish", "depends on itself"),
        ("orphan", "no kit named no-such-kit"),
    ] {
        let k = kit(name);
        assert_eq!(k["status"], "blocked", "{name}: {k:#}");
        let finding = &k["findings"][0];
        assert!(
            finding["message"].as_str().is_some_and(|m| m.contains(needle)),
            "{name}: {finding:#}"
        );
        assert_eq!(finding["rule"], "kitsync/depends-on");
        assert_eq!(finding["location"]["file"], format!("kits/{name}/kit.yaml"));
        assert_eq!(finding["location"]["line"], 3, "{name}: at the dependsOn line");
    }
    assert_eq!(kit("leaf")["status"], "ok");
    assert_eq!(kit("after-ring")["status"], "ok");
}
