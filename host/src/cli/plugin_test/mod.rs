//! `kitsync plugin test DIR`: runs a plugin's fixture cases (`DIR/tests/<case>/`, see
//! [`case`]) through the engine and sandbox that `plugin run`, `check` and `serve` use, and
//! reports each case as passed or failed with a readable difference.
//!
//! Exit status as `check`'s: 0 every case passed, 1 a case failed, 2 the cases or the
//! component could not be read or loaded.

mod case;
mod compare;

use super::{EngineArgs, Outcome};
use crate::manifest::LineIndex;
use crate::plugin::{Configured, Plugin, World};
use anyhow::{Context, Result, bail};
use case::{Case, EXPECTED, Expect, OUTPUT};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Where `cargo build --release --target wasm32-wasip2` puts a crate's component, below the
/// target directory.
const CARGO_OUTPUT: &str = "wasm32-wasip2/release";

/// `kitsync plugin test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The plugin's directory: its cases are in DIR/tests/<case>/.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The component to test [default: a Cargo project's
    /// target/wasm32-wasip2/release/<lib name>.wasm ($CARGO_TARGET_DIR is honoured), else the
    /// one .wasm file in DIR].
    #[arg(long, value_name = "FILE")]
    pub component: Option<PathBuf>,
    /// Run only this case (repeatable).
    #[arg(long = "case", value_name = "NAME")]
    pub cases: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = TestFormat::Text)]
    pub format: TestFormat,
    /// Sandbox and cache settings.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Output formats of `plugin test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TestFormat {
    /// A line per case, the difference under each failed one, then a summary.
    Text,
    /// JUnit XML: a test case per fixture case.
    Junit,
}

/// One case's result.
struct Ran {
    name: String,
    /// `tests/<case>`, where a failure is fixed.
    file: String,
    time: Duration,
    /// The difference, when the case failed.
    failure: Option<String>,
}

/// Runs `kitsync plugin test`.
pub(super) fn test(args: &TestArgs) -> Result<Outcome> {
    let cases = case::discover(&args.dir, &args.cases)?;
    let component = component_path(&args.dir, args.component.as_deref())?;
    let engine = args.engine.engine()?;
    let plugin = super::plugin::load(&engine, &component, None)?;
    for case in &cases {
        if plugin.world() == World::Validator && matches!(case.expect, Expect::Result { output: Some(_), .. })
        {
            bail!(
                "case {}: {}/{OUTPUT} is for transformers; {} is a validator",
                case.name,
                case.dir,
                component.display()
            );
        }
        if plugin.world() == World::Transformer && matches!(case.expect, Expect::Result { output: None, .. })
        {
            bail!(
                "case {}: {}/{OUTPUT} is missing: a transformer's case gives the expected objects",
                case.name,
                case.dir
            );
        }
    }
    let ran: Vec<Ran> = cases.iter().map(|case| run_case(&plugin, case)).collect();
    let failed = ran.iter().filter(|r| r.failure.is_some()).count();
    match args.format {
        TestFormat::Text => {
            let meta = plugin.metadata();
            outln!(
                "{} {} ({}) from {}",
                meta.name,
                meta.version,
                plugin.world(),
                component.display()
            );
            for r in &ran {
                match &r.failure {
                    None => outln!("ok   {}", r.name),
                    Some(diff) => {
                        outln!("FAIL {} ({})", r.name, r.file);
                        for line in diff.lines() {
                            outln!("    {line}");
                        }
                    }
                }
            }
            outln!("{} passed, {failed} failed", ran.len() - failed);
        }
        TestFormat::Junit => out!("{}", junit(&plugin.metadata().name, &ran)),
    }
    Ok(if failed > 0 {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

fn run_case(plugin: &Plugin, case: &Case) -> Ran {
    let started = Instant::now();
    let expected_file = format!("{}/{EXPECTED}", case.dir);
    let lines: HashMap<String, LineIndex> =
        HashMap::from([(format!("{}/{}", case.dir, case::INPUT), case.lines.clone())]);
    let locate = |d: &crate::Diagnostic| super::plugin::locate(d, &case.objects, &lines);
    let result = plugin
        .configure(&case.config)
        .and_then(|p| call(&p, &case.objects));
    let failure = match (&case.expect, result) {
        (Expect::Error(want), Ok((_, findings))) => compare::error(want, Ok(findings.len())),
        (Expect::Error(want), Err(error)) => compare::error(want, Err(&error)),
        (Expect::Result { .. }, Err(error)) => Some(format!("the plugin failed: {error}")),
        (Expect::Result { findings, output }, Ok((produced, reported))) => {
            let mut parts = Vec::new();
            if let (Some(expected), Some(produced)) = (output, produced) {
                parts.extend(compare::output(
                    expected,
                    &produced,
                    &format!("{}/{OUTPUT}", case.dir),
                ));
            }
            parts.extend(compare::findings(findings, &reported, &expected_file, locate));
            (!parts.is_empty()).then(|| parts.join("\n"))
        }
    };
    Ran {
        name: case.name.clone(),
        file: case.dir.clone(),
        time: started.elapsed(),
        failure,
    }
}

/// One call in a fresh instance: a transformer's objects (`None` for a validator) and the
/// findings.
type CallResult = crate::plugin::Result<(Option<Vec<crate::Object>>, Vec<crate::Diagnostic>)>;

fn call(policy: &Configured, objects: &[crate::Object]) -> CallResult {
    match policy.plugin().world() {
        World::Validator => Ok((None, policy.validate(objects)?)),
        World::Transformer => {
            let output = policy.transform(objects)?;
            Ok((Some(output.objects), output.diagnostics))
        }
    }
}

/// The component to test: `--component`, else a Cargo project's build output, else the one
/// `.wasm` file in `dir`. Errors say how to build or name it.
fn component_path(dir: &Path, flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(file) = flag {
        return Ok(file.to_owned());
    }
    let manifest = dir.join("Cargo.toml");
    if manifest.is_file() {
        let text =
            std::fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
        let Some(lib) = cargo_lib_name(&text) else {
            bail!(
                "{}: no [lib] or [package] name; pass --component FILE",
                manifest.display()
            );
        };
        // Cargo's own rule: $CARGO_TARGET_DIR (relative to the working directory), else
        // DIR/target. A crate inside a workspace builds into the workspace's target: use
        // --component there.
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .filter(|v| !v.is_empty())
            .map_or_else(|| dir.join("target"), PathBuf::from);
        let file = target.join(CARGO_OUTPUT).join(format!("{lib}.wasm"));
        if !file.is_file() {
            bail!(
                "no component at {}: build it first (`cargo build --release --target wasm32-wasip2` in {}), or pass --component FILE",
                file.display(),
                dir.display()
            );
        }
        warn_if_stale(dir, &file);
        return Ok(file);
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "wasm") && path.is_file() {
            found.push(path);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "no component found: {} has no Cargo.toml and no .wasm file; pass --component FILE",
            dir.display()
        ),
        _ => bail!(
            "{} holds several .wasm files ({}); pass --component FILE",
            dir.display(),
            found
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The library name of a Cargo manifest: `[lib] name`, else `[package] name` with `-` as `_`
/// (what cargo names the `.wasm`). A line reader, enough for the manifests `plugin new`
/// writes and most others; anything unusual can use `--component`.
fn cargo_lib_name(manifest: &str) -> Option<String> {
    let mut table = "";
    let mut package = None;
    let mut lib = None;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            table = line;
            continue;
        }
        let Some(value) = line
            .strip_prefix("name")
            .map(str::trim_start)
            .and_then(|rest| rest.strip_prefix('='))
        else {
            continue;
        };
        let value = value
            .split('#')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"')
            .to_owned();
        match table {
            "[package]" => package = Some(value),
            "[lib]" => lib = Some(value),
            _ => {}
        }
    }
    lib.or(package)
        .filter(|n| !n.is_empty())
        .map(|n| n.replace('-', "_"))
}

/// Says so on stderr when a source file is newer than the component: the cases would test
/// the previous build.
fn warn_if_stale(dir: &Path, component: &Path) {
    let Ok(built) = std::fs::metadata(component).and_then(|m| m.modified()) else {
        return;
    };
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut pending = vec![dir.join("src"), dir.join("Cargo.toml")];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|e| e.path()));
            }
        } else if let Ok(modified) = meta.modified()
            && newest.as_ref().is_none_or(|(t, _)| modified > *t)
        {
            newest = Some((modified, path));
        }
    }
    if let Some((modified, path)) = newest
        && modified > built
    {
        eprintln!(
            "warning: {} is newer than {}: rebuild (`cargo build --release --target wasm32-wasip2`) to test your latest code",
            path.display(),
            component.display()
        );
    }
}

/// JUnit XML: one suite (the plugin), one test case per fixture case.
fn junit(plugin: &str, ran: &[Ran]) -> String {
    use crate::report::xml_escape as xml;
    let failures = ran.iter().filter(|r| r.failure.is_some()).count();
    let total: f64 = ran.iter().map(|r| r.time.as_secs_f64()).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"kitsync plugin test\" tests=\"{}\" failures=\"{failures}\" time=\"{total:.3}\">",
        ran.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" time=\"{total:.3}\">",
        xml(plugin),
        ran.len()
    );
    for r in ran {
        let _ = write!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\" time=\"{:.3}\"",
            xml(plugin),
            xml(&r.name),
            xml(&r.file),
            r.time.as_secs_f64()
        );
        match &r.failure {
            None => out.push_str("/>\n"),
            Some(diff) => {
                let first = diff.lines().next().unwrap_or("failed");
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    xml(first),
                    xml(diff)
                );
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lib_name_from_a_manifest() {
        let manifest = "[package]\nname = \"max-replicas\" # ours\nversion = \"0.1.0\"\n\n[dependencies]\nname = \"not-this\"\n";
        assert_eq!(cargo_lib_name(manifest).as_deref(), Some("max_replicas"));
        let with_lib = format!("{manifest}\n[lib]\nname = \"policy\"\ncrate-type = [\"cdylib\"]\n");
        assert_eq!(cargo_lib_name(&with_lib).as_deref(), Some("policy"));
        assert_eq!(cargo_lib_name("[workspace]\n"), None);
    }

    #[test]
    fn junit_escapes_and_counts() {
        let ran = [
            Ran {
                name: "ok".into(),
                file: "tests/ok".into(),
                time: Duration::from_millis(2),
                failure: None,
            },
            Ran {
                name: "bad".into(),
                file: "tests/bad".into(),
                time: Duration::from_millis(3),
                failure: Some("findings differ: <1>\n- rule: a & b".into()),
            },
        ];
        let xml = junit("p", &ran);
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(
            xml.contains("<failure message=\"findings differ: &lt;1&gt;\">"),
            "{xml}"
        );
        assert!(xml.contains("- rule: a &amp; b</failure>"), "{xml}");
    }
}
