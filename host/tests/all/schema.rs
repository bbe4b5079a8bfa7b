//! Schema validation as a stage of the pipeline: `check`, `render`, `sync` and `diff` refuse
//! what the API server would refuse, located at the offending value, without a cluster; the
//! repository's own CRDs validate its custom resources; the real-world corpus validates or
//! fails with located findings.

use kitsync::manifest::{self, LineIndex};
use kitsync::schema::{Schemas, catalog};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

fn kitsync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kitsync"))
        .args(args)
        .env("KITSYNC_PLUGIN_CACHE", super::cache_dir())
        .env("NO_COLOR", "1")
        // No cluster anywhere: a command that tried one would fail differently.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .expect("kitsync runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A repository of kits without plugins, written file by file.
fn repo(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new().expect("temp dir");
    for (path, body) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, body).expect("write");
    }
    dir
}

fn check_json(dir: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["check", dir.to_str().expect("utf-8"), "--format", "json"];
    args.extend_from_slice(extra);
    let out = kitsync(&args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("json ({e}): {}", text(&out)));
    (out.status.code().unwrap_or(-1), report)
}

/// (rule, file:line:column, pointer, message) of every finding of `kit`.
fn findings(report: &Value, kit: &str) -> Vec<(String, String, String, String)> {
    let kits = report["kits"].as_array().expect("kits");
    let kit = kits.iter().find(|k| k["name"] == kit).expect("kit in report");
    kit["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let at = match (
                &f["location"]["file"],
                &f["location"]["line"],
                &f["location"]["column"],
            ) {
                (Value::String(file), Value::Number(line), Value::Number(column)) => {
                    format!("{file}:{line}:{column}")
                }
                (Value::String(file), Value::Number(line), _) => format!("{file}:{line}"),
                _ => String::new(),
            };
            (
                f["rule"].as_str().unwrap_or("").to_owned(),
                at,
                f["path"].as_str().unwrap_or("").to_owned(),
                f["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

const NUMERIC: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: scraped\n  labels:\n    version: 1.10\n  annotations:\n    example.com/port: 8080\n    example.com/ok: \"1.10\"\ndata:\n  a: b\n";

const SERVER_REJECTS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad-label\n  labels:\n    team: hello\"\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: bad-port\nspec:\n  selector: {app: web}\n  ports:\n    - name: http\n      port: 80\n      targetPort: \"8080\"\n";

#[test]
fn numbers_where_strings_belong_are_located_at_the_value_and_quoted_as_written() {
    let dir = repo(&[
        ("kitsync.yaml", "{}\n"),
        ("kits/num/kit.yaml", "{}\n"),
        ("kits/num/app.yaml", NUMERIC),
    ]);
    let (code, report) = check_json(dir.path(), &[]);
    assert_eq!(code, 1, "{report:#}");
    let mut found = findings(&report, "num");
    found.sort();
    let located: Vec<(&str, &str, &str)> = found
        .iter()
        .map(|(r, at, p, _)| (r.as_str(), at.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        located,
        vec![
            (
                "kitsync/schema-type",
                "kits/num/app.yaml:6:14",
                "/metadata/labels/version"
            ),
            (
                "kitsync/schema-type",
                "kits/num/app.yaml:8:23",
                "/metadata/annotations/example.com~1port"
            ),
        ],
        "{found:#?}"
    );
    // 1.10 is never shown as 1.1 without saying so: the original text is quoted.
    assert!(
        found[0].3.contains("YAML turns 1.10 into the number 1.1"),
        "{}",
        found[0].3
    );
    assert!(found[0].3.contains("quote it (\"1.10\")"), "{}", found[0].3);
    assert!(found[1].3.contains("quote it (\"8080\")"), "{}", found[1].3);

    // The text report shows file:line:column and the offending line.
    let out = kitsync(&["check", dir.path().to_str().expect("utf-8")]);
    let shown = text(&out);
    assert!(
        shown.contains("kits/num/app.yaml:6:14: error [kitsync/schema-type]"),
        "{shown}"
    );
    assert!(shown.contains("    version: 1.10"), "{shown}");

    // One place: render, sync and diff refuse the same object for the same reason, before
    // any cluster is contacted.
    let kit = dir.path().join("kits/num");
    for command in [
        vec!["render", dir.path().to_str().expect("utf-8")],
        vec!["sync", kit.to_str().expect("utf-8")],
        vec!["diff", kit.to_str().expect("utf-8")],
    ] {
        let out = kitsync(&command);
        let shown = text(&out);
        assert!(!out.status.success(), "{command:?} succeeded: {shown}");
        assert!(
            shown.contains("[kitsync/schema-type]") && shown.contains("quote it (\"1.10\")"),
            "{command:?}: {shown}"
        );
        assert!(
            !shown.contains("kubeconfig"),
            "{command:?} reached for a cluster: {shown}"
        );
    }
}

#[test]
fn what_the_server_refuses_in_text_is_caught_by_check() {
    let dir = repo(&[
        ("kitsync.yaml", "{}\n"),
        ("kits/srv/kit.yaml", "{}\n"),
        ("kits/srv/app.yaml", SERVER_REJECTS),
    ]);
    let (code, report) = check_json(dir.path(), &[]);
    assert_eq!(code, 1);
    let mut found = findings(&report, "srv");
    found.sort();
    let located: Vec<(&str, &str)> = found
        .iter()
        .map(|(r, at, _, _)| (r.as_str(), at.as_str()))
        .collect();
    assert_eq!(
        located,
        vec![
            ("kitsync/syntax-label-value", "kits/srv/app.yaml:6:11"),
            ("kitsync/syntax-port-name", "kits/srv/app.yaml:17:19"),
        ],
        "{found:#?}"
    );
    assert!(
        found[1].3.contains("must contain at least one letter"),
        "{}",
        found[1].3
    );
    assert!(
        found[1].3.contains("for port number 8080, remove the quotes"),
        "{}",
        found[1].3
    );
}

#[test]
fn names_keyed_lists_and_unknown_fields_with_strict() {
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: Web\nspec:\n  replica: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n        - name: web\n          image: nginx\n          env:\n            - {name: A, value: \"1\"}\n            - {name: A, value: \"2\"}\n          ports:\n            - {name: metrics-endpoint-1, containerPort: 9090}\n";
    let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: a}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: b}\n";
    let dir = repo(&[
        ("kitsync.yaml", "{}\n"),
        ("kits/web/kit.yaml", "{}\n"),
        ("kits/web/deploy.yaml", deployment),
        ("kits/web/widgets.yaml", widget),
    ]);
    let (code, report) = check_json(dir.path(), &[]);
    assert_eq!(code, 1);
    let mut got: Vec<(String, String, String)> = findings(&report, "web")
        .into_iter()
        .map(|(rule, at, _, message)| {
            let severity = if message.contains("unknown field") || message.contains("no schema") {
                "warning"
            } else {
                "error"
            };
            (rule, at, severity.to_owned())
        })
        .collect();
    got.sort();
    let expected = [
        ("kitsync/schema-duplicate-key", "kits/web/deploy.yaml:16:15"),
        ("kitsync/schema-missing", "kits/web/widgets.yaml:2:7"),
        ("kitsync/schema-unknown-field", "kits/web/deploy.yaml:6:3"),
        ("kitsync/syntax-name", "kits/web/deploy.yaml:4:9"),
        ("kitsync/syntax-port-name", "kits/web/deploy.yaml:18:22"),
    ];
    let rules: Vec<(&str, &str)> = got.iter().map(|(r, at, _)| (r.as_str(), at.as_str())).collect();
    assert_eq!(rules, expected, "{report:#}");
    // Warnings by default: the unknown field and the kind without a schema (once per kind).
    let severities: Vec<(String, String)> = report["kits"][0]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or("").to_owned(),
                f["severity"].as_str().unwrap_or("").to_owned(),
            )
        })
        .filter(|(r, _)| r.ends_with("unknown-field") || r.ends_with("schema-missing"))
        .collect();
    assert!(severities.iter().all(|(_, s)| s == "warning"), "{severities:?}");
    // render prints the objects on stdout and every finding, warnings too, on stderr.
    std::fs::write(
        dir.path().join("kits/web/deploy.yaml"),
        deployment
            .replace("name: Web", "name: web")
            .replace("            - {name: A, value: \"2\"}\n", "")
            .replace("metrics-endpoint-1", "metrics"),
    )
    .expect("write");
    let out = kitsync(&["render", dir.path().to_str().expect("utf-8")]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("kind: Deployment") && !stdout.contains("warning"),
        "{stdout}"
    );
    assert!(
        stderr.contains("kits/web/deploy.yaml:6:3: warning [kitsync/schema-unknown-field]"),
        "{stderr}"
    );
    std::fs::write(dir.path().join("kits/web/deploy.yaml"), deployment).expect("write");
    // --strict makes them errors, as the platform file's schemas.strict does.
    for (extra, platform) in [(vec!["--strict"], "{}\n"), (vec![], "schemas: {strict: true}\n")] {
        std::fs::write(dir.path().join("kitsync.yaml"), platform).expect("platform");
        let (_, strict) = check_json(dir.path(), &extra);
        let errors = strict["kits"][0]["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| f["severity"] == "error")
            .count();
        assert_eq!(errors, 5, "{extra:?} {platform}: {strict:#}");
    }
}

#[test]
fn a_crd_in_the_repository_validates_its_custom_resources() {
    let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}\n  versions:\n    - name: v1\n      served: true\n      storage: true\n      schema:\n        openAPIV3Schema:\n          type: object\n          properties:\n            spec:\n              type: object\n              required: [size]\n              properties:\n                size: {type: integer, minimum: 1}\n                color: {type: string, enum: [red, blue]}\n";
    let valid = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: small\nspec:\n  size: 1\n  color: red\n";
    let invalid = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: odd\nspec:\n  size: \"3\"\n  color: green\n  shape: round\n";
    let platform = "clusterScoped: [widgets]\n";
    let dir = repo(&[
        ("kitsync.yaml", platform),
        ("kits/widgets/kit.yaml", "{}\n"),
        ("kits/widgets/crd.yaml", crd),
        ("kits/widgets/small.yaml", valid),
    ]);
    let (code, report) = check_json(dir.path(), &[]);
    assert_eq!(code, 0, "{report:#}");
    assert!(findings(&report, "widgets").is_empty(), "{report:#}");

    std::fs::write(dir.path().join("kits/widgets/odd.yaml"), invalid).expect("write");
    let (code, report) = check_json(dir.path(), &[]);
    assert_eq!(code, 1);
    let mut got: Vec<(String, String)> = findings(&report, "widgets")
        .into_iter()
        .map(|(r, at, _, _)| (r, at))
        .collect();
    got.sort();
    let expected: Vec<(String, String)> = [
        ("kitsync/schema-enum", "kits/widgets/odd.yaml:7:10"),
        ("kitsync/schema-type", "kits/widgets/odd.yaml:6:9"),
        ("kitsync/schema-unknown-field", "kits/widgets/odd.yaml:8:3"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(got, expected, "{report:#}");

    // A CRD that another kit applies, or one in a directory the platform file names, serves
    // every kit: a kit of widgets without the CRD of its own.
    let user = repo(&[
        ("kitsync.yaml", "schemas:\n  crds: [schemas]\n"),
        ("schemas/widget-crd.yaml", crd),
        ("kits/user/kit.yaml", "{}\n"),
        ("kits/user/odd.yaml", invalid),
    ]);
    let (code, report) = check_json(user.path(), &[]);
    assert_eq!(code, 1);
    assert!(
        findings(&report, "user")
            .iter()
            .any(|(r, _, _, _)| r == "kitsync/schema-enum"),
        "{report:#}"
    );
    // Without the platform's directory the kind has no schema: a warning, once.
    std::fs::write(user.path().join("kitsync.yaml"), "{}\n").expect("platform");
    let (_, report) = check_json(user.path(), &[]);
    let rules: Vec<String> = findings(&report, "user")
        .into_iter()
        .map(|(r, _, _, _)| r)
        .collect();
    assert_eq!(rules, ["kitsync/schema-missing"], "{report:#}");
    // A directory named there that holds nothing (a typo) is an error, not a silent no-op.
    std::fs::write(user.path().join("kitsync.yaml"), "schemas: {crds: [shemas]}\n").expect("platform");
    let (code, report) = check_json(user.path(), &[]);
    assert_eq!(code, 1);
    let found = findings(&report, "user");
    assert!(
        found
            .iter()
            .any(|(r, _, _, m)| r == "kitsync/schema-config" && m.contains("schemas.crds names shemas/")),
        "{report:#}"
    );
}

#[test]
fn the_kubernetes_version_is_chosen_among_those_shipped() {
    // flowcontrol.apiserver.k8s.io/v1beta3 was served until 1.32: refused by every shipped
    // version with the served alternative named.
    let old = "apiVersion: flowcontrol.apiserver.k8s.io/v1beta3\nkind: PriorityLevelConfiguration\nmetadata:\n  name: p\nspec:\n  type: Exempt\n";
    let dir = repo(&[
        ("kitsync.yaml", "{}\n"),
        ("kits/v/kit.yaml", "{}\n"),
        ("kits/v/p.yaml", old),
    ]);
    let (code, report) = check_json(dir.path(), &["--kubernetes-version", "1.34"]);
    assert_eq!(code, 1);
    let found = findings(&report, "v");
    assert!(
        found.iter().any(|(r, _, _, m)| r == "kitsync/schema-api-version"
            && m.contains("not served by Kubernetes 1.34")
            && m.contains("flowcontrol.apiserver.k8s.io/v1")),
        "{found:#?}"
    );
    // A version not shipped is a usage error naming those that are.
    let out = kitsync(&[
        "check",
        dir.path().to_str().expect("utf-8"),
        "--kubernetes-version",
        "1.20",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("1.34, 1.35, 1.36"), "{}", text(&out));
    // The platform file chooses when the command line does not, and a wrong one is located.
    std::fs::write(
        dir.path().join("kitsync.yaml"),
        "schemas:\n  kubernetesVersion: \"1.19\"\n",
    )
    .expect("platform");
    let (code, report) = check_json(dir.path(), &[]);
    assert_eq!(code, 1, "{report:#}");
    assert!(
        report.to_string().contains("schemas.kubernetesVersion"),
        "{report:#}"
    );
}

#[test]
fn the_embedded_schemas_are_what_the_script_makes_from_the_pinned_module() {
    // The newest shipped version is the control plane's; its module is in the Go module
    // cache wherever the control plane was built from source.
    let gomodcache = Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty());
    let swagger = gomodcache
        .map(|c| PathBuf::from(c).join("k8s.io/kubernetes@v1.36.3/api/openapi-spec/swagger.json"))
        .filter(|p| p.exists());
    let Some(swagger) = swagger else {
        eprintln!(
            "k8s.io/kubernetes@v1.36.3 is not in the Go module cache: the reproducibility check did not run"
        );
        return;
    };
    let document: Value = serde_json::from_slice(&std::fs::read(&swagger).expect("read")).expect("json");
    let made = catalog::reduce(&document, "v1.36.3").expect("reduces");
    let shipped = catalog::find("1.36")
        .expect("shipped")
        .catalog()
        .expect("embedded");
    assert!(
        made == shipped,
        "host/schemas/kubernetes-1.36.json.gz differs from what host/schemas/generate.sh makes: run it"
    );
    eprintln!(
        "schemas: {} bytes compressed in the binary for {} versions",
        catalog::shipped_bytes(),
        catalog::SHIPPED.len()
    );
}

#[test]
fn every_corpus_file_validates_or_fails_with_located_findings() {
    let Some(root) = std::env::var_os("KITSYNC_CORPUS").map(PathBuf::from) else {
        eprintln!("KITSYNC_CORPUS is not set: the corpus schema test did not run");
        return;
    };
    let mut files = Vec::new();
    super::corpus::yaml_files(&root, &mut files);
    files.sort();
    let schemas = Schemas::new(catalog::DEFAULT_VERSION, false, []).expect("schemas");
    let (mut clean, mut with_findings, mut total) = (0, 0, 0);
    let mut by_rule: std::collections::BTreeMap<&'static str, usize> = Default::default();
    let mut shown = Vec::new();
    for file in &files {
        let name = file.strip_prefix(&root).unwrap_or(file).display().to_string();
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let Ok(objects) = manifest::parse(&name, &text) else {
            continue;
        };
        let index = LineIndex::build(&text);
        let found = schemas.validate(&objects);
        if found.is_empty() {
            clean += 1;
            continue;
        }
        with_findings += 1;
        for (i, violation) in found {
            total += 1;
            *by_rule.entry(violation.rule).or_default() += 1;
            let origin = objects[i].origin.as_ref().expect("origin");
            let pointer = format!("{}{}", origin.pointer.as_deref().unwrap_or(""), violation.pointer);
            let place = index
                .place(origin.document, &pointer)
                .unwrap_or_else(|| panic!("{name}: {} at {pointer} has no place", violation.rule));
            // Located at the value when the pointer names one that exists in the file.
            let line = text.lines().nth(place.line as usize - 1).unwrap_or("");
            assert!(
                !line.trim().is_empty(),
                "{name}:{}: a finding on an empty line",
                place.line
            );
            if shown.len() < 400 {
                shown.push(format!(
                    "{name}:{}:{}: {} {}",
                    place.line, place.column, violation.rule, violation.message
                ));
            }
        }
    }
    eprintln!(
        "corpus schemas: {clean} files clean, {with_findings} with findings, {total} findings: {by_rule:?}"
    );
    for line in &shown {
        eprintln!("  {line}");
    }
    assert!(
        clean > with_findings,
        "most of the corpus is valid Kubernetes: {clean} clean, {with_findings} not"
    );
}
