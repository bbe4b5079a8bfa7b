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

use super::text;

fn sha256(path: &Path) -> String {
    kitsync::plugin::sha256_hex(&std::fs::read(path).expect("read plugin"))
}

use super::git;

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
    // Validators run in parallel; their findings still come in the order the policies are
    // declared (the kit's, then the platform's), so reports are the same on every run.
    let mut sources: Vec<&str> = shop["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["source"].as_str())
        .collect();
    sources.dedup();
    assert_eq!(
        sources,
        [
            "plugins/port-range.wasm",
            "plugins/required-labels.wasm",
            "plugins/resource-limits.wasm",
            "plugins/no-privileged.wasm"
        ]
    );
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

/// Later plugins see a transformer's output only as the host reads it: text that is not the
/// host's own encoding (here spaced, with a first `metadata` member a later one overrides,
/// which a plugin reading the text itself would see) is encoded again before the next
/// plugin gets it. And a validator that names kinds is given only objects of those kinds.
#[test]
fn later_plugins_see_a_transformers_output_as_the_host_reads_it() {
    let repo = Repo::platform_only();
    let garbage = repo.copy_plugin(artifacts::HOSTILE_GARBAGE, "hostile-garbage.wasm");
    let leaky = repo.copy_plugin(artifacts::LEAKY, "leaky.wasm");
    repo.write(
        "kits/echo/kit.yaml",
        &format!(
            "transform:\n  - plugin: plugins/hostile-garbage.wasm\n    sha256: {garbage}\n    config: {{mode: non-canonical}}\nvalidate:\n  - plugin: plugins/leaky.wasm\n    sha256: {leaky}\n"
        ),
    );
    let labels = "  labels:\n    app.kubernetes.io/name: a\n    team: t\n";
    repo.write(
        "kits/echo/objects.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: one\n{labels}data:\n  a: b\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: two\n{labels}---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: not-for-leaky\n{labels}"
        ),
    );
    let out = repo.check(&["--format", "json"]);
    let stdout = text(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    let kit = report["kits"]
        .as_array()
        .and_then(|kits| kits.iter().find(|k| k["name"] == "echo"))
        .expect("kit echo in the report");
    let echoes: Vec<&str> = kit["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] == "leaky/echo")
        .filter_map(|f| f["message"].as_str()?.strip_prefix("saw "))
        .collect();
    assert_eq!(echoes.len(), 2, "leaky saw the two ConfigMaps only: {stdout}");
    for echo in echoes {
        assert!(
            !echo.contains("to-plugins"),
            "a plugin saw the transformer's text: {echo}"
        );
        let read: serde_json::Value = serde_json::from_str(echo).expect("JSON");
        assert_eq!(
            serde_json::to_string(&read).expect("encodes"),
            echo,
            "not the host's encoding"
        );
        assert_eq!(read["kind"], "ConfigMap", "{echo}");
    }
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
    // A plugin built for another major version of the contract.
    let future = super::built_for(&artifacts::bytes(artifacts::REQUIRED_LABELS), "0.2.0");
    std::fs::write(repo.path().join("plugins/future.wasm"), &future).expect("write");
    repo.write(
        "kits/incompatible/kit.yaml",
        &format!(
            "validate:\n  - plugin: plugins/future.wasm\n    sha256: {}\n",
            kitsync::plugin::sha256_hex(&future)
        ),
    );
    repo.write("kits/incompatible/cm.yaml", &deployment("a", ""));
    // A plugin over the per-file limit (a component this large is not read at all), pinned
    // after a comment and with a config, so its entry's line is neither 1 nor the config's.
    let oversized = vec![0u8; super::over_the_file_limit()];
    std::fs::write(repo.path().join("plugins/oversized.wasm"), &oversized).expect("write");
    repo.write(
        "kits/oversized-plugin/kit.yaml",
        &format!(
            "# a big one\nvalidate:\n  - plugin: plugins/oversized.wasm\n    sha256: {}\n    config: {{min: 1}}\n",
            kitsync::plugin::sha256_hex(&oversized)
        ),
    );
    repo.write("kits/oversized-plugin/cm.yaml", &deployment("a", ""));
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
        &[
            "kits/missing-plugin/kit.yaml:2 [kitsync/plugin-missing]",
            "plugins/nope.wasm",
            "does not exist",
        ],
    );
    // Located at the plugin's entry, not at line 1 or its config.
    blocked(
        "wrong-digest",
        &[
            "kits/wrong-digest/kit.yaml:2",
            "digest mismatch",
            &wrong,
            &port_range,
        ],
    );
    blocked(
        "oversized-plugin",
        &[
            "kits/oversized-plugin/kit.yaml:3 [kitsync/plugin-missing]",
            "plugin plugins/oversized.wasm (declared in kits/oversized-plugin/kit.yaml) was not read:",
            "bytes is over the per-file limit of 33554432 bytes",
        ],
    );
    blocked(
        "trapping",
        &["hostile-panic.wasm", "kit trapping", "hostile panic: boom"],
    );
    blocked("no-identity", &["hostile-garbage.wasm", "identity"]);
    blocked(
        "incompatible",
        &[
            "kits/incompatible/kit.yaml:2 [kitsync/plugin-error]",
            "plugin plugins/future.wasm: load: built for kitsync:plugin@0.2.0",
            "loads plugins built for 0.1.x only",
        ],
    );
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

/// Every output format `check` has; the exit status must not depend on which one is asked.
const FORMATS: &[&str] = &["text", "json", "sarif", "github", "junit"];

/// A ConfigMap that passes the example platform's validators.
fn config_map(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    app.kubernetes.io/name: {name}\n    team: t\ndata:\n  a: b\n"
    )
}

/// A clean kit `name` in its own namespace.
fn clean_kit(repo: &Repo, name: &str) {
    repo.write(&format!("kits/{name}/kit.yaml"), &format!("namespace: {name}\n"));
    repo.write(&format!("kits/{name}/cm.yaml"), &config_map(name));
}

/// One class of problem: how to make a repository that has it, the flags of the run, the
/// exit status `check` must give in every format, and the rule its output must name.
struct Class {
    name: &'static str,
    setup: fn(&Repo) -> Vec<String>,
    code: i32,
    rule: Option<&'static str>,
}

/// The example platform without its validators: what a commit that drops them leaves.
const BARE_PLATFORM: &str = "pluginLimits:\n  memoryMiB: 64\n  deadlineMs: 2000\n";

/// port-range as the host's trusted policy, with a range no example port is in.
fn trusted_port_range() -> Vec<String> {
    let wasm = root().join("examples/plugins/port-range.wasm");
    vec![
        "--trusted".into(),
        wasm.to_str().expect("utf-8").into(),
        "--trusted-sha256".into(),
        sha256(&wasm),
        "--trusted-config".into(),
        r#"{"min": 30000, "max": 32767}"#.into(),
    ]
}

/// A Service on port 80, which `trusted_port_range` refuses.
fn service_kit(repo: &Repo) {
    repo.write("kits/web/kit.yaml", "namespace: web\n");
    repo.write(
        "kits/web/svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels:\n    app.kubernetes.io/name: web\n    team: t\nspec:\n  ports:\n    - port: 80\n",
    );
}

const CLASSES: &[Class] = &[
    Class {
        name: "clean",
        setup: |repo| {
            clean_kit(repo, "a");
            Vec::new()
        },
        code: 0,
        rule: None,
    },
    Class {
        name: "kit file: unknown field",
        setup: |repo| {
            clean_kit(repo, "a");
            repo.write("kits/a/kit.yaml", "namespace: a\nselfheal: true\n");
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/kit-file"),
    },
    Class {
        name: "kit file: two kits with one name",
        setup: |repo| {
            repo.write("kits/one/a/kit.yaml", "namespace: one\n");
            repo.write("kits/one/a/cm.yaml", &config_map("x"));
            repo.write("kits/two/a/kit.yaml", "namespace: two\n");
            repo.write("kits/two/a/cm.yaml", &config_map("y"));
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/kit-file"),
    },
    Class {
        name: "kit file: two kits claim one namespace",
        setup: |repo| {
            clean_kit(repo, "a");
            clean_kit(repo, "b");
            repo.write("kits/b/kit.yaml", "namespace: a\n");
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/kit-file"),
    },
    Class {
        name: "platform file error",
        setup: |repo| {
            clean_kit(repo, "a");
            repo.write("kitsync.yaml", "validate: sometimes\n");
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/platform-file"),
    },
    Class {
        name: "platform file error, no kits",
        setup: |repo| {
            repo.write("kitsync.yaml", "validate: sometimes\n");
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/platform-file"),
    },
    Class {
        name: "dependsOn",
        setup: |repo| {
            clean_kit(repo, "a");
            repo.write("kits/a/kit.yaml", "namespace: a\ndependsOn: [nope]\n");
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/depends-on"),
    },
    Class {
        name: "plugin missing",
        setup: |repo| {
            clean_kit(repo, "a");
            let sha = "ab".repeat(32);
            repo.write(
                "kits/a/kit.yaml",
                &format!("namespace: a\nvalidate:\n  - plugin: plugins/nope.wasm\n    sha256: {sha}\n"),
            );
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/plugin-missing"),
    },
    Class {
        name: "plugin digest mismatch",
        setup: |repo| {
            clean_kit(repo, "a");
            let sha = "ab".repeat(32);
            repo.write(
                "kits/a/kit.yaml",
                &format!("namespace: a\nvalidate:\n  - plugin: plugins/port-range.wasm\n    sha256: {sha}\n"),
            );
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/plugin-error"),
    },
    Class {
        name: "plugin config error",
        setup: |repo| {
            clean_kit(repo, "a");
            let sha = sha256(&repo.path().join("plugins/port-range.wasm"));
            repo.write(
                "kits/a/kit.yaml",
                &format!(
                    "namespace: a\nvalidate:\n  - plugin: plugins/port-range.wasm\n    sha256: {sha}\n    config: {{min: many}}\n"
                ),
            );
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/plugin-config"),
    },
    Class {
        name: "plugin trap",
        setup: |repo| {
            clean_kit(repo, "a");
            let sha = repo.copy_plugin(artifacts::HOSTILE_PANIC, "hostile-panic.wasm");
            repo.write(
                "kits/a/kit.yaml",
                &format!(
                    "namespace: a\nvalidate:\n  - plugin: plugins/hostile-panic.wasm\n    sha256: {sha}\n"
                ),
            );
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/plugin-error"),
    },
    Class {
        name: "plugin limits above the host's ceiling",
        setup: |repo| {
            clean_kit(repo, "a");
            let platform = std::fs::read_to_string(repo.path().join("kitsync.yaml")).expect("read");
            repo.write(
                "kitsync.yaml",
                &platform.replace("memoryMiB: 64", "memoryMiB: 128"),
            );
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/plugin-limits"),
    },
    Class {
        name: "invalid manifest",
        setup: |repo| {
            clean_kit(repo, "a");
            repo.write(
                "kits/a/bad.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n",
            );
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/invalid-manifest"),
    },
    Class {
        name: "unreadable manifest (not UTF-8)",
        setup: |repo| {
            clean_kit(repo, "a");
            std::fs::write(repo.path().join("kits/a/bad.yaml"), b"kind: \xff\xfe\n").expect("write");
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/invalid-manifest"),
    },
    Class {
        name: "unreadable manifest (a symlink, never followed)",
        setup: |repo| {
            clean_kit(repo, "a");
            std::os::unix::fs::symlink("/etc/hostname", repo.path().join("kits/a/host.yaml"))
                .expect("symlink");
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/unsafe-entry"),
    },
    Class {
        name: "kit file: kit.yaml is a symlink",
        setup: |repo| {
            clean_kit(repo, "a");
            repo.write("shared/kit-b.txt", "namespace: b\n");
            repo.write("kits/b/cm.yaml", &config_map("b"));
            std::os::unix::fs::symlink("../../shared/kit-b.txt", repo.path().join("kits/b/kit.yaml"))
                .expect("symlink");
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/unsafe-entry"),
    },
    Class {
        name: "unreadable manifest (a FIFO)",
        setup: |repo| {
            clean_kit(repo, "a");
            let fifo = repo.path().join("kits/a/pipe.yaml");
            let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
            assert!(made.success(), "mkfifo {}", fifo.display());
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/unsafe-entry"),
    },
    Class {
        name: "duplicate object",
        setup: |repo| {
            clean_kit(repo, "a");
            repo.write("kits/a/again.yaml", &config_map("a"));
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/duplicate-object"),
    },
    Class {
        name: "guard: another namespace",
        setup: |repo| {
            clean_kit(repo, "a");
            repo.write(
                "kits/a/cm.yaml",
                &config_map("a").replace("  name: a\n", "  name: a\n  namespace: elsewhere\n"),
            );
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/namespace-escape"),
    },
    Class {
        name: "guard: cluster-scoped object",
        setup: |repo| {
            clean_kit(repo, "a");
            repo.write(
                "kits/a/role.yaml",
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: a\n  labels:\n    app.kubernetes.io/name: a\n    team: t\nrules: []\n",
            );
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/cluster-scoped"),
    },
    Class {
        name: "guard: the host's namespace",
        setup: |repo| {
            clean_kit(repo, "a");
            repo.write("kits/a/kit.yaml", "namespace: kitsync-system\n");
            Vec::new()
        },
        code: 1,
        rule: Some("kitsync/host-namespace"),
    },
    Class {
        name: "policy finding",
        setup: |repo| {
            clean_kit(repo, "a");
            repo.write("kits/a/cm.yaml", &config_map("a").replace("    team: t\n", ""));
            Vec::new()
        },
        code: 1,
        rule: Some("required-labels/missing"),
    },
    Class {
        name: "info below --fail-on error",
        setup: |repo| {
            clean_kit(repo, "a");
            repo.write("kits/a/cm.yaml", &format!("{}status: {{}}\n", config_map("a")));
            Vec::new()
        },
        code: 0,
        rule: Some("kitsync/status-dropped"),
    },
    Class {
        name: "info at --fail-on info",
        setup: |repo| {
            clean_kit(repo, "a");
            repo.write("kits/a/cm.yaml", &format!("{}status: {{}}\n", config_map("a")));
            vec!["--fail-on".into(), "info".into()]
        },
        code: 1,
        rule: Some("kitsync/status-dropped"),
    },
    Class {
        name: "platform validators dropped, no trusted policy",
        setup: |repo| {
            repo.write("kitsync.yaml", BARE_PLATFORM);
            service_kit(repo);
            Vec::new()
        },
        code: 0,
        rule: None,
    },
    Class {
        name: "platform validators dropped, trusted policy finds",
        setup: |repo| {
            repo.write("kitsync.yaml", BARE_PLATFORM);
            service_kit(repo);
            trusted_port_range()
        },
        code: 1,
        rule: Some("port-range/out-of-range"),
    },
    Class {
        name: "usage: memory ceiling above the hard maximum",
        setup: |repo| {
            clean_kit(repo, "a");
            vec!["--plugin-memory".into(), "4096".into()]
        },
        code: 2,
        rule: None,
    },
    Class {
        name: "usage: trusted policy with a wrong pin",
        setup: |repo| {
            clean_kit(repo, "a");
            let mut args = trusted_port_range();
            args[3] = "cd".repeat(32);
            args
        },
        code: 2,
        rule: None,
    },
    Class {
        name: "usage: a host config that does not exist",
        setup: |repo| {
            clean_kit(repo, "a");
            vec!["--config".into(), "/nonexistent/host.yaml".into()]
        },
        code: 2,
        rule: None,
    },
    Class {
        name: "usage: an unknown kit",
        setup: |repo| {
            clean_kit(repo, "a");
            vec!["--kit".into(), "nope".into()]
        },
        code: 2,
        rule: None,
    },
];

/// Exit codes never lie: every class of problem gives 1 (2 for usage), in every format, and
/// the output names the rule, so CI fails exactly when review should.
#[test]
fn exit_status_is_the_same_for_every_class_of_problem_in_every_format() {
    let mut wrong = Vec::new();
    for class in CLASSES {
        let repo = Repo::platform_only();
        let extra = (class.setup)(&repo);
        for format in FORMATS {
            let mut args: Vec<&str> = vec!["--format", format];
            args.extend(extra.iter().map(String::as_str));
            let out = repo.check(&args);
            let stdout = text(&out.stdout);
            if out.status.code() != Some(class.code) {
                wrong.push(format!(
                    "{} ({format}): exit {:?}, want {}\n{stdout}{}",
                    class.name,
                    out.status.code(),
                    class.code,
                    text(&out.stderr)
                ));
                continue;
            }
            if let Some(rule) = class.rule
                && !stdout.contains(rule)
            {
                wrong.push(format!("{} ({format}): {rule} not in\n{stdout}", class.name));
            }
            if class.code == 2 && !text(&out.stderr).starts_with("error: ") {
                wrong.push(format!("{} ({format}): no error on stderr", class.name));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n---\n"));
}

/// The findings of kit `name` in a JSON report, as (rule, file, line, message).
fn kit_findings(report: &Value, name: &str) -> Vec<(String, String, u64, String)> {
    let kit = report["kits"]
        .as_array()
        .expect("kits")
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("kit {name} missing from {report:#}"));
    kit["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or("").to_owned(),
                f["location"]["file"].as_str().unwrap_or("").to_owned(),
                f["location"]["line"].as_u64().unwrap_or(0),
                f["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// The one-based line of the first line of `file` in `repo` containing `needle`.
fn line_of(repo: &Repo, file: &str, needle: &str) -> u64 {
    let body = std::fs::read_to_string(repo.path().join(file)).expect("read");
    let index = body
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in {file}"));
    u64::try_from(index + 1).expect("line")
}

/// A repository with a clean kit and a kit whose validator is the real hostile `artifact`.
fn hostile_repo(artifact: &str, file: &str) -> Repo {
    let repo = Repo::platform_only();
    clean_kit(&repo, "calm");
    clean_kit(&repo, "hostile");
    let sha = repo.copy_plugin(artifact, file);
    repo.write(
        "kits/hostile/kit.yaml",
        &format!("namespace: hostile\nvalidate:\n  - plugin: plugins/{file}\n    sha256: {sha}\n"),
    );
    repo
}

fn set_platform_limits(repo: &Repo, memory_mib: u64, deadline_ms: u64) {
    let platform = std::fs::read_to_string(repo.path().join("kitsync.yaml")).expect("read");
    let (head, _) = platform
        .split_once("pluginLimits:")
        .expect("the example sets limits");
    repo.write(
        "kitsync.yaml",
        &format!("{head}pluginLimits:\n  memoryMiB: {memory_mib}\n  deadlineMs: {deadline_ms}\n"),
    );
}

/// `--plugin-memory` and `--plugin-deadline` are the host's ceilings: kitsync.yaml may lower
/// them (and the real hostile components are stopped at the lowered value) but a value above
/// one refuses every kit of the revision, located at the platform file's line, exactly as
/// serve refuses it; a ceiling past the hard maximum is a usage error.
#[test]
fn the_host_sets_plugin_ceilings_and_the_repository_can_only_lower_them() {
    // Raising: the platform asks for 2000 ms, the host allows 300.
    let repo = hostile_repo(artifacts::HOSTILE_LOOP, "hostile-loop.wasm");
    let out = repo.check(&["--format", "json", "--plugin-deadline", "300"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let line = line_of(&repo, "kitsync.yaml", "deadlineMs:");
    for kit in ["calm", "hostile"] {
        let findings = kit_findings(&report, kit);
        assert_eq!(findings.len(), 1, "{kit}: {findings:?}");
        let (rule, file, at, message) = &findings[0];
        assert_eq!(
            (rule.as_str(), file.as_str(), *at),
            ("kitsync/plugin-limits", "kitsync.yaml", line),
            "{kit}: {message}"
        );
        assert!(
            message.contains("deadlineMs 2000 is above the host's ceiling of 300"),
            "{message}"
        );
    }

    // Lowering: the platform asks for 200 ms under the default ceiling of 2000; the loop is
    // stopped at 200 ms, and the other kit passes.
    set_platform_limits(&repo, 64, 200);
    let out = repo.check(&["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let findings = kit_findings(&report, "hostile");
    assert!(
        findings.iter().any(
            |(rule, _, _, m)| rule == "kitsync/plugin-error" && m.contains("deadline of 200 ms exceeded")
        ),
        "{findings:?}"
    );
    assert!(kit_findings(&report, "calm").is_empty());

    // The memory bomb: a platform cannot raise the cap to let it through ...
    let repo = hostile_repo(artifacts::HOSTILE_MEMBOMB, "hostile-membomb.wasm");
    set_platform_limits(&repo, 1024, 2000);
    let out = repo.check(&["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let (rule, _, _, message) = &kit_findings(&report, "hostile")[0];
    assert_eq!(rule, "kitsync/plugin-limits", "{message}");
    assert!(
        message.contains("memoryMiB 1024 is above the host's ceiling of 64"),
        "{message}"
    );
    // ... and under a lowered ceiling it hits that ceiling.
    set_platform_limits(&repo, 16, 2000);
    let out = repo.check(&["--format", "json", "--plugin-memory", "32"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let findings = kit_findings(&report, "hostile");
    assert!(
        findings
            .iter()
            .any(|(_, _, _, m)| m.contains("memory limit of 16 MiB exceeded")),
        "{findings:?}"
    );

    // Past the hard maximums: a usage error naming the bound, before any kit runs.
    for (flag, value, bound) in [
        ("--plugin-memory", "2048", "hard maximum of 1024 MiB"),
        ("--plugin-deadline", "600000", "hard maximum of 60000 ms"),
        ("--plugin-memory", "0", "positive"),
    ] {
        let out = repo.check(&[flag, value]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(bound), "{flag} {value}: {stderr}");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    }
}

/// `check --config` reads the host configuration `serve --config` reads: its trusted policies
/// run on every kit (a commit that drops the platform's validators still fails review), its
/// pluginLimits are the ceilings, and its hostNamespace is guarded.
#[test]
fn check_config_enforces_the_hosts_trusted_policies_and_ceilings() {
    let repo = Repo::platform_only();
    repo.write("kitsync.yaml", "# every validator dropped by this commit\n");
    service_kit(&repo);
    clean_kit(&repo, "calm");
    let port_range = root().join("examples/plugins/port-range.wasm");
    let host = TempDir::new().expect("host dir");
    // Each config is a file of its own, so an earlier path keeps its content.
    let written = std::cell::Cell::new(0);
    let host_config = |limits: &str, namespace: &str| {
        written.set(written.get() + 1);
        let file = host.path().join(format!("host-{}.yaml", written.get()));
        std::fs::write(
            &file,
            format!(
                "hostNamespace: {namespace}\n{limits}trustedPolicies:\n  - name: ports\n    path: {}\n    sha256: sha256:{}\n    config: {{min: 30000, max: 32767}}\nsources:\n  - name: gitops\n    url: https://git.example.com/gitops.git\n",
                port_range.display(),
                sha256(&port_range)
            ),
        )
        .expect("write host config");
        file.to_str().expect("utf-8").to_owned()
    };

    // Without the host's policies the revision looks clean ...
    let out = repo.check(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    // ... with them it does not, in the service kit only.
    let config = host_config("", "kitsync-system");
    let out = repo.check(&["--config", &config, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let web = &report["kits"].as_array().expect("kits")[1];
    assert_eq!(web["name"], "web");
    assert_eq!(web["status"], "blocked");
    assert_eq!(web["findings"][0]["source"], "trusted:ports");
    assert_eq!(web["findings"][0]["rule"], "port-range/out-of-range");
    assert_eq!(web["findings"][0]["location"]["file"], "kits/web/svc.yaml");
    assert!(kit_findings(&report, "calm").is_empty());

    // The host config's ceilings, not the defaults: 64 MiB asked, 32 allowed.
    let config = host_config(
        "pluginLimits: {memoryMiB: 32, deadlineMs: 1000}\n",
        "kitsync-system",
    );
    repo.write("kitsync.yaml", "pluginLimits:\n  memoryMiB: 64\n");
    let out = repo.check(&["--config", &config, "--format", "github"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    for kit in ["calm", "web"] {
        let annotation = format!("::error file=kitsync.yaml,line=2,title={kit} kitsync/plugin-limits::");
        assert!(stdout.contains(&annotation), "{annotation} in\n{stdout}");
    }
    assert!(stdout.contains("ceiling of 32"), "{stdout}");

    // Its host namespace is the one kits may not write to.
    repo.write("kitsync.yaml", "");
    repo.write("kits/calm/kit.yaml", "namespace: tenants-host\n");
    let config = host_config("", "tenants-host");
    let out = repo.check(&["--config", &config]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("[kitsync/host-namespace]"), "{stdout}");

    // One source of truth for a run: usage errors, exit 2.
    let cases: [(&[&str], &str); 4] = [
        (&["--plugin-memory", "32"], "conflict with --config"),
        (&["--host-namespace", "other"], "differs from the host config"),
        (&[], "hard maximum of 1024 MiB"),
        (&["--trusted", "/nonexistent.wasm"], "--trusted-sha256"),
    ];
    let too_wide = host_config("pluginLimits: {memoryMiB: 4096}\n", "tenants-host");
    for (extra, want) in cases {
        let config = if want.contains("hard maximum") {
            too_wide.clone()
        } else {
            host_config("", "tenants-host")
        };
        let mut args = vec!["--config", config.as_str()];
        args.extend_from_slice(extra);
        let out = repo.check(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(want), "{extra:?}: wanted {want:?} in {stderr}");
    }
}

/// A commit that removes every kit fails review: serve would prune nothing and stall every
/// kit, so a clean exit would promise what the service will not do.
#[test]
fn base_a_revision_without_kits_fails_review() {
    let repo = Repo::examples();
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "two kits"]);
    std::fs::remove_dir_all(repo.path().join("kits")).expect("remove kits");
    for format in FORMATS {
        let out = repo.check(&["--base", "HEAD", "--format", format]);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{format}: {stdout}{}",
            text(&out.stderr)
        );
        assert!(stdout.contains("kitsync/no-kits"), "{format}: {stdout}");
    }
    // Without a base there is nothing to compare with: an empty repository is clean.
    let out = repo.check(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}
