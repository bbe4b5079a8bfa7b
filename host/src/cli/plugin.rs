//! `kitsync plugin inspect|run`: one plugin on local files.

use super::{EngineArgs, FailOn, Outcome};
use crate::diagnostic::Diagnostic;
use crate::manifest::LineIndex;
use crate::object::Object;
use crate::plugin::{Engine, World};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Reads a component file and loads it: the one way every `plugin` command loads a plugin.
pub(super) fn load(engine: &Engine, file: &Path, pin: Option<&str>) -> Result<crate::plugin::Plugin> {
    let bytes = std::fs::read(file).with_context(|| format!("reading plugin {}", file.display()))?;
    Ok(engine.load(&file.display().to_string(), &bytes, pin)?)
}

pub(super) fn inspect(file: &Path, json: bool, args: &EngineArgs) -> Result<Outcome> {
    let engine = args.engine()?;
    let plugin = load(&engine, file, None)?;
    let meta = plugin.metadata();
    if json {
        let value = serde_json::json!({
            "file": file.display().to_string(),
            "sha256": plugin.sha256(),
            "world": plugin.world().to_string(),
            "metadata": meta,
            "imports": plugin.imports(),
        });
        outln!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(Outcome::Clean);
    }
    outln!("file:     {}", file.display());
    outln!("sha256:   {}", plugin.sha256());
    outln!("world:    {}", plugin.world());
    outln!("name:     {}", meta.name);
    outln!("version:  {}", meta.version);
    let kinds = if meta.kinds.is_empty() {
        "(all)".to_owned()
    } else {
        meta.kinds.join(", ")
    };
    outln!("kinds:    {kinds}");
    outln!("imports:");
    for import in plugin.imports() {
        outln!("  {import}");
    }
    match &meta.config_schema {
        Some(schema) => outln!("config schema:\n{}", serde_json::to_string_pretty(schema)?),
        None => outln!("config schema: (none)"),
    }
    Ok(Outcome::Clean)
}

/// Objects of every input, and a line index per input file for located findings.
fn read_inputs(inputs: &[PathBuf]) -> Result<(Vec<Object>, HashMap<String, LineIndex>)> {
    let mut objects = Vec::new();
    let mut lines = HashMap::new();
    for input in inputs {
        let (name, text) = if input.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("reading stdin")?;
            ("<stdin>".to_owned(), text)
        } else {
            let text =
                std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
            (input.display().to_string(), text)
        };
        objects.extend(crate::manifest::parse(&name, &text)?);
        lines.insert(name, LineIndex::build(&text));
    }
    Ok((objects, lines))
}

pub(super) fn run(
    file: &Path,
    config: &str,
    inputs: &[PathBuf],
    pin: Option<&str>,
    fail_on: FailOn,
    args: &EngineArgs,
) -> Result<Outcome> {
    let config: serde_json::Value = serde_json::from_str(config).context("--config is not valid JSON")?;
    let (objects, lines) = read_inputs(inputs)?;
    let engine = args.engine()?;
    let plugin = load(&engine, file, pin)?;
    let configured = plugin.configure(&config)?;
    let diagnostics = match plugin.world() {
        World::Validator => configured.validate(&objects)?,
        World::Transformer => {
            let output = configured.transform(&objects)?;
            out!(
                "{}",
                crate::manifest::to_yaml(&output.objects).context("writing YAML")?
            );
            output.diagnostics
        }
    };
    // Findings go to stderr for transformers so stdout stays valid YAML.
    let to_stderr = plugin.world() == World::Transformer;
    for diagnostic in &diagnostics {
        let line = format_finding(diagnostic, &objects, &lines);
        if to_stderr {
            eprintln!("{line}");
        } else {
            outln!("{line}");
        }
    }
    let threshold = fail_on.threshold();
    Ok(if diagnostics.iter().any(|d| d.severity >= threshold) {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// `file:line: severity [rule] message`, at the line of the field the finding names
/// (or of its object when the field is not in the source).
fn format_finding(diagnostic: &Diagnostic, objects: &[Object], lines: &HashMap<String, LineIndex>) -> String {
    match locate(diagnostic, objects, lines) {
        Some(location) => format!("{location}: {diagnostic}"),
        None => diagnostic.to_string(),
    }
}

/// Where a finding is in the input files, as `file:line` (`file (document N)` when the line
/// is unknown): the line of the field it names, else of its object, as `check` places it.
/// `None` when it names no input object (or one a transformer created).
pub(super) fn locate(
    diagnostic: &Diagnostic,
    objects: &[Object],
    lines: &HashMap<String, LineIndex>,
) -> Option<String> {
    let origin = diagnostic
        .object
        .as_ref()
        .and_then(|id| objects.iter().find(|o| &o.id == id))
        .and_then(|o| o.origin.as_ref())?;
    // An item of a List document is located below its own pointer.
    let pointer = format!(
        "{}{}",
        origin.pointer.as_deref().unwrap_or(""),
        diagnostic.path.as_deref().unwrap_or("")
    );
    let field_line = lines
        .get(&origin.file)
        .and_then(|index| index.line(origin.document, &pointer));
    Some(match field_line.or(origin.line) {
        Some(line) => format!("{}:{line}", origin.file),
        None => origin.to_string(),
    })
}
