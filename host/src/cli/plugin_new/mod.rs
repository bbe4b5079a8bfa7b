//! `kitsync plugin new NAME --kind validator|transformer --lang rust|python|js|go`: writes a
//! standalone plugin project that builds with one command (`cargo build --release --target
//! wasm32-wasip2`, or `./build` for Python, JavaScript and Go, [`script`]) and passes `kitsync
//! plugin test .` as written. Both kinds have the same rule and fixture case in every language.
//!
//! A Rust project depends on the SDK by path, on a copy written into `vendor/kitsync-plugin/`
//! together with the WIT package in `wit/`, both embedded in this binary: the SDK is not on
//! a package registry, and a user outside kitsync's repository must be able to build without
//! it. The copy is the SDK this kitsync was built with, so the plugin targets the contract
//! version this host loads. `plugins/Cargo.lock` becomes the project's lock file, so its
//! dependencies start at the versions the first-party plugins are built and audited with.

mod script;

use super::Outcome;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The kind of plugin to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Returns findings about a kit's objects.
    Validator,
    /// Returns a kit's new object list (and findings).
    Transformer,
}

/// The language of the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the kitsync-plugin SDK.
    Rust,
    /// JavaScript, built by componentize-js.
    Js,
    /// Python, built by componentize-py.
    Python,
    /// Go, with Go's own wasip1 target and wasm-tools.
    Go,
}

/// `kitsync plugin new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits and '-', starting with a letter. Also the
    /// crate's name and the prefix of its rule codes (`NAME/rule`).
    pub name: String,
    /// What the plugin does.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// The language of the project.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,
    /// The directory to create [default: ./NAME]; it must not exist, or be empty.
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
}

/// The SDK's sources, written to `vendor/kitsync-plugin/src/`.
const SDK_SOURCES: &[(&str, &str)] = &[
    (
        "bindings.rs",
        include_str!("../../../../plugins/sdk/src/bindings.rs"),
    ),
    ("config.rs", include_str!("../../../../plugins/sdk/src/config.rs")),
    ("export.rs", include_str!("../../../../plugins/sdk/src/export.rs")),
    ("image.rs", include_str!("../../../../plugins/sdk/src/image.rs")),
    ("lib.rs", include_str!("../../../../plugins/sdk/src/lib.rs")),
    ("log.rs", include_str!("../../../../plugins/sdk/src/log.rs")),
    ("names.rs", include_str!("../../../../plugins/sdk/src/names.rs")),
    ("object.rs", include_str!("../../../../plugins/sdk/src/object.rs")),
    (
        "pointer.rs",
        include_str!("../../../../plugins/sdk/src/pointer.rs"),
    ),
    (
        "subtree.rs",
        include_str!("../../../../plugins/sdk/src/subtree.rs"),
    ),
    ("types.rs", include_str!("../../../../plugins/sdk/src/types.rs")),
    (
        "workload.rs",
        include_str!("../../../../plugins/sdk/src/workload.rs"),
    ),
];
const SDK_MANIFEST: &str = include_str!("../../../../plugins/sdk/Cargo.toml");
const PLUGINS_WORKSPACE: &str = include_str!("../../../../plugins/Cargo.toml");
const PLUGINS_LOCK: &str = include_str!("../../../../plugins/Cargo.lock");
const WIT: &str = include_str!("../../../../wit/plugin.wit");
/// Our formatting settings, which the SDK's sources and the templates follow.
const RUSTFMT: &str = include_str!("../../../../rustfmt.toml");

const TEMPLATE_MANIFEST: &str = include_str!("../../../templates/plugin-rust/Cargo.toml.in");
const TEMPLATE_SDK_MANIFEST: &str = include_str!("../../../templates/plugin-rust/sdk-Cargo.toml.in");
const TEMPLATE_README: &str = include_str!("../../../templates/plugin-rust/README.md.in");
const TEMPLATE_GITIGNORE: &str = include_str!("../../../templates/plugin-rust/gitignore");
const TEMPLATE_VALIDATOR: &str = include_str!("../../../templates/plugin-rust/validator.rs.in");
const TEMPLATE_TRANSFORMER: &str = include_str!("../../../templates/plugin-rust/transformer.rs.in");

/// A kind's fixture case: (case name, [(file, template)]).
fn case(kind: Kind) -> (&'static str, Vec<(&'static str, &'static str)>) {
    macro_rules! case_file {
        ($kind:literal, $case:literal, $file:literal) => {
            (
                $file,
                include_str!(concat!(
                    "../../../templates/plugin-rust/cases/",
                    $kind,
                    "/",
                    $case,
                    "/",
                    $file
                )),
            )
        };
    }
    match kind {
        Kind::Validator => (
            "too-many-replicas",
            vec![
                case_file!("validator", "too-many-replicas", "input.yaml"),
                case_file!("validator", "too-many-replicas", "config.yaml"),
                case_file!("validator", "too-many-replicas", "expected.yaml"),
            ],
        ),
        Kind::Transformer => (
            "sets-annotations",
            vec![
                case_file!("transformer", "sets-annotations", "input.yaml"),
                case_file!("transformer", "sets-annotations", "config.yaml"),
                case_file!("transformer", "sets-annotations", "expected.yaml"),
                case_file!("transformer", "sets-annotations", "output.yaml"),
            ],
        ),
    }
}

/// What the templates say about a kind: its rule, where its case's finding points, and how a
/// kit uses it. One place, so the Rust and the script projects' READMEs agree.
struct KindText {
    /// `validator` or `transformer`, also the WIT world's name.
    word: &'static str,
    /// The rule code the generated plugin reports.
    rule: String,
    /// The severity, object and path of its finding in the fixture case.
    severity: &'static str,
    object: &'static str,
    path: &'static str,
    /// The key of kit.yaml that runs it, and a configuration for it there.
    kit_key: &'static str,
    kit_config: &'static str,
    /// The README's mention of `output.yaml` in the table of files (empty for validators).
    output_row: &'static str,
    /// The README's sentence on a case's `output.yaml` (empty for validators).
    output_case: &'static str,
    /// What the script projects' README says of the kind's contract (empty for validators).
    notes: &'static str,
}

/// What a transformer's README adds: what the host expects of its output.
const TRANSFORMER_NOTES: &str = "
A transformer returns the kit's complete new object list, not a change: an object it leaves
out is removed from the kit. Each object it returns keeps the `origin` it came with (findings
about it, and later validators' findings, then point at its file; a new object has none), and
its `id` must name the object in its JSON (apiVersion, kind, metadata.namespace and
metadata.name): kitsync reads the object again from the JSON and refuses an output whose `id`
does not match. The generated code recomputes the `id` from the JSON it returns, so renaming an
object stays consistent.
";

impl KindText {
    fn of(name: &str, kind: Kind) -> Self {
        match kind {
            Kind::Validator => KindText {
                word: "validator",
                rule: format!("{name}/too-many-replicas"),
                severity: "error",
                object: "apps/v1/StatefulSet batch",
                path: "/spec/replicas",
                kit_key: "validate",
                kit_config: "{maxReplicas: 10}",
                output_row: "",
                output_case: "",
                notes: "",
            },
            Kind::Transformer => KindText {
                word: "transformer",
                rule: format!("{name}/overwritten"),
                severity: "warning",
                object: "v1/Service web",
                path: "/metadata/annotations",
                kit_key: "transform",
                kit_config: "{annotations: {example.com/owner: shop}}",
                output_row: ", `output.yaml` (the objects it returns)",
                output_case: "\nA transformer's case also has `output.yaml`: the objects it must return (multi-document\nYAML, compared object by object and field by field).",
                notes: TRANSFORMER_NOTES,
            },
        }
    }

    /// The placeholders every template of the kind may use.
    fn values<'a>(&'a self, case_name: &'a str) -> Vec<(&'static str, &'a str)> {
        vec![
            ("kind", self.word),
            ("world", self.word),
            ("rule", &self.rule),
            ("case", case_name),
            ("severity", self.severity),
            ("object", self.object),
            ("path", self.path),
            ("kit_key", self.kit_key),
            ("kit_config", self.kit_config),
            ("output_row", self.output_row),
            ("output_case", self.output_case),
            ("kind_notes", self.notes),
        ]
    }
}

/// Runs `kitsync plugin new`: checks the name and directory, writes the project, prints the
/// next commands.
pub(super) fn new(args: &NewArgs) -> Result<Outcome> {
    check_name(&args.name)?;
    let dir = args.path.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    if let Ok(mut entries) = std::fs::read_dir(&dir) {
        if entries.next().is_some() {
            bail!("{} exists and is not empty", dir.display());
        }
    } else if dir.exists() {
        bail!("{} exists and is not a directory", dir.display());
    }
    let files: Vec<(String, String, bool)> = match args.lang {
        Lang::Rust => project(&args.name, args.kind)?
            .into_iter()
            .map(|(path, text)| (path, text, false))
            .collect(),
        other => script::project(&args.name, args.kind, other)?,
    };
    for (path, text, executable) in &files {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        if *executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", file.display()))?;
        }
    }
    let kind = KindText::of(&args.name, args.kind).word;
    outln!(
        "Created the {kind} {} in {} ({} files).",
        args.name,
        dir.display(),
        files.len()
    );
    outln!("Build it and run its test case:");
    outln!("  cd {}", shell_word(&dir));
    match args.lang {
        Lang::Rust => {
            outln!("  cargo build --release --target wasm32-wasip2");
            outln!("  kitsync plugin test .");
            outln!("(once per machine: rustup target add wasm32-wasip2). README.md says more.");
        }
        _ => {
            outln!("  ./build");
            outln!("  kitsync plugin test .");
            outln!("(the first build installs its pinned tool outside the project). README.md says more.");
        }
    }
    Ok(Outcome::Clean)
}

/// A plugin name is a crate name, a directory name and a rule prefix at once.
fn check_name(name: &str) -> Result<()> {
    let well_formed = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !well_formed {
        bail!(
            "{name:?} is not a plugin name: use lowercase letters, digits and single '-', starting with a letter (at most 64), e.g. max-replicas"
        );
    }
    // Names a crate cannot have, or that would shadow what the project depends on.
    const RESERVED: &[&str] = &[
        "kitsync-plugin",
        "serde",
        "std",
        "core",
        "alloc",
        "test",
        "proc-macro",
        "self",
        "super",
        "crate",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "enum",
        "extern",
        "false",
        "fn",
        "for",
        "if",
        "impl",
        "in",
        "let",
        "loop",
        "match",
        "mod",
        "move",
        "mut",
        "pub",
        "ref",
        "return",
        "static",
        "struct",
        "trait",
        "true",
        "type",
        "unsafe",
        "use",
        "where",
        "while",
        "async",
        "await",
        "dyn",
        "gen",
    ];
    if RESERVED.contains(&name) {
        bail!("{name:?} cannot be a plugin's crate name: choose another");
    }
    Ok(())
}

/// Every file of the project: (path relative to the project, contents).
fn project(name: &str, kind: Kind) -> Result<Vec<(String, String)>> {
    let (case_name, case_files) = case(kind);
    let crate_name = name.replace('-', "_");
    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    let (sdk_version, sdk_dependencies) = sdk_manifest_parts()?;
    let source = match kind {
        Kind::Validator => TEMPLATE_VALIDATOR,
        Kind::Transformer => TEMPLATE_TRANSFORMER,
    };
    let text = KindText::of(name, kind);
    let mut values: Vec<(&str, &str)> = vec![
        ("name", name),
        ("crate", &crate_name),
        ("Type", &type_name),
        ("contract", crate::plugin::CONTRACT_VERSION),
        ("kitsync_version", env!("CARGO_PKG_VERSION")),
        ("sdk_version", &sdk_version),
        ("sdk_dependencies", &sdk_dependencies),
    ];
    values.extend(text.values(case_name));
    let fill = |template: &str| fill(template, &values);
    let mut files = vec![
        ("Cargo.toml".to_owned(), fill(TEMPLATE_MANIFEST)?),
        ("Cargo.lock".to_owned(), PLUGINS_LOCK.to_owned()),
        (".gitignore".to_owned(), TEMPLATE_GITIGNORE.to_owned()),
        ("rustfmt.toml".to_owned(), RUSTFMT.to_owned()),
        ("README.md".to_owned(), fill(TEMPLATE_README)?),
        ("src/lib.rs".to_owned(), fill(source)?),
        ("wit/plugin.wit".to_owned(), WIT.to_owned()),
        (
            "vendor/kitsync-plugin/Cargo.toml".to_owned(),
            fill(TEMPLATE_SDK_MANIFEST)?,
        ),
    ];
    for (file, text) in SDK_SOURCES {
        files.push((format!("vendor/kitsync-plugin/src/{file}"), (*text).to_owned()));
    }
    for (file, template) in case_files {
        files.push((format!("tests/{case_name}/{file}"), fill(template)?));
    }
    Ok(files)
}

/// `template` with every `{{key}}` replaced; a key left over is a bug in the templates.
fn fill(template: &str, values: &[(&str, &str)]) -> Result<String> {
    let mut out = template.to_owned();
    for (key, value) in values {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    if let Some(at) = out.find("{{") {
        let rest: String = out[at..].chars().take(40).collect();
        bail!("internal error: a template placeholder is left unfilled at {rest:?}");
    }
    Ok(out)
}

/// The vendored SDK's version and `[dependencies]` lines, resolved from the plugins
/// workspace (the SDK's own manifest inherits them with `x.workspace = true`), so the copy
/// always asks for what the first-party plugins build with.
fn sdk_manifest_parts() -> Result<(String, String)> {
    let table = |text: &'static str, name: &str| -> Vec<&'static str> {
        let mut inside = false;
        let mut lines = Vec::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('[') {
                inside = trimmed == name;
            } else if inside && !trimmed.is_empty() && !trimmed.starts_with('#') {
                lines.push(trimmed);
            }
        }
        lines
    };
    let key_of = |line: &str| line.split(['=', '.']).next().unwrap_or("").trim().to_owned();
    let workspace_deps = table(PLUGINS_WORKSPACE, "[workspace.dependencies]");
    let mut dependencies = Vec::new();
    for line in table(SDK_MANIFEST, "[dependencies]") {
        let dep = key_of(line);
        let resolved = if line.contains(".workspace") {
            workspace_deps
                .iter()
                .find(|l| key_of(l) == dep)
                .with_context(|| {
                    format!("internal error: SDK dependency {dep} is not in the plugins workspace")
                })?
        } else {
            line
        };
        dependencies.push(resolved.to_owned());
    }
    let version = table(PLUGINS_WORKSPACE, "[workspace.package]")
        .into_iter()
        .find(|l| key_of(l) == "version")
        .and_then(|l| l.split('=').nth(1))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .context("internal error: no version in the plugins workspace")?;
    Ok((version, dependencies.join("\n")))
}

/// `dir` as one shell word for the printed `cd` line.
fn shell_word(dir: &Path) -> String {
    let text = dir.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sdk_source_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/sdk/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("the SDK's sources")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = SDK_SOURCES.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            on_disk, embedded,
            "plugin new must write every file of plugins/sdk/src"
        );
    }

    #[test]
    fn the_vendored_sdk_asks_for_the_workspace_dependencies() {
        let (version, deps) = sdk_manifest_parts().expect("parts");
        assert!(semver::Version::parse(&version).is_ok(), "{version}");
        assert!(deps.contains("wit-bindgen = \""), "{deps}");
        assert!(
            deps.contains("serde = { version = \"1\", features = [\"derive\"] }"),
            "{deps}"
        );
        // raw_value: Object::edit finds a part's place in the text.
        assert!(
            deps.contains("serde_json = { version = \"1\", features = [\"raw_value\"] }"),
            "{deps}"
        );
        assert!(!deps.contains("workspace"), "{deps}");
    }

    #[test]
    fn projects_fill_every_placeholder() {
        for kind in [Kind::Validator, Kind::Transformer] {
            let files = project("max-replicas", kind).expect("project");
            let get = |path: &str| {
                &files
                    .iter()
                    .find(|(p, _)| p == path)
                    .unwrap_or_else(|| panic!("{path}"))
                    .1
            };
            assert!(get("src/lib.rs").contains("struct MaxReplicas;"));
            assert!(get("Cargo.toml").contains("name = \"max-replicas\""));
            assert!(get("README.md").contains("target/wasm32-wasip2/release/max_replicas.wasm"));
            assert!(get("vendor/kitsync-plugin/Cargo.toml").contains("wit-bindgen"));
            assert!(
                files
                    .iter()
                    .any(|(p, _)| p.starts_with("tests/") && p.ends_with("/expected.yaml"))
            );
        }
    }

    #[test]
    fn script_projects_write_the_world_of_their_kind() {
        for (kind, world, rule, world_file) in [
            (
                Kind::Validator,
                "validator",
                "demo/too-many-replicas",
                "validator.go",
            ),
            (
                Kind::Transformer,
                "transformer",
                "demo/overwritten",
                "transformer.go",
            ),
        ] {
            for lang in [Lang::Python, Lang::Js, Lang::Go] {
                // Also fails when a placeholder is left unfilled.
                let files = script::project("demo", kind, lang).expect("project");
                let get = |path: &str| {
                    &files
                        .iter()
                        .find(|(p, _, _)| p == path)
                        .unwrap_or_else(|| panic!("{lang:?} {kind:?}: {path}"))
                        .1
                };
                let build = get("build");
                assert!(
                    build.contains(&format!("-w {world} "))
                        || build.contains(&format!("-n {world} "))
                        || build.contains(&format!("--world {world} ")),
                    "{lang:?} {kind:?}: {build}"
                );
                assert!(get("README.md").contains(rule), "{lang:?} {kind:?}");
                assert!(
                    files.iter().any(|(p, _, _)| p.ends_with("/output.yaml")) == (kind == Kind::Transformer),
                    "{lang:?} {kind:?}: output.yaml for transformers only"
                );
                if lang == Lang::Go {
                    assert!(get(&format!("internal/plugin/{world_file}")).contains("func Register("));
                }
            }
        }
    }

    #[test]
    fn names() {
        for good in ["max-replicas", "a", "v2-check", "abc123"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Max",
            "1abc",
            "a_b",
            "a--b",
            "a-",
            "-a",
            "fn",
            "test",
            "kitsync-plugin",
            "a b",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
