//! Fixture cases on disk, read strictly. A plugin directory holds one directory per case
//! under `tests/`:
//!
//! ```text
//! tests/<case>/input.yaml     the kit's objects (multi-document YAML), required
//! tests/<case>/config.yaml    the plugin's configuration (YAML or JSON); absent: null
//! tests/<case>/expected.yaml  `findings: [...]` (the complete list) or `error: {kind, message}`
//! tests/<case>/output.yaml    transformers: the expected object list
//! ```
//!
//! A directory under `tests/` holding none of these files is not a case (a Rust crate's
//! `tests/common/`, say) and is skipped; one holding some but not the required ones is an error.

use crate::diagnostic::Severity;
use crate::manifest::LineIndex;
use crate::object::{Object, ObjectRef};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

/// The directory, under the plugin's directory, holding one directory per case.
pub(crate) const CASES_DIR: &str = "tests";
/// The case's objects.
pub(crate) const INPUT: &str = "input.yaml";
/// The plugin's configuration.
pub(crate) const CONFIG: &str = "config.yaml";
/// What the call must return.
pub(crate) const EXPECTED: &str = "expected.yaml";
/// A transformer's expected objects.
pub(crate) const OUTPUT: &str = "output.yaml";

/// One case, read and checked.
pub(crate) struct Case {
    /// The case directory's name.
    pub name: String,
    /// `tests/<name>`, relative to the plugin directory: how the case's files are named in
    /// output and in the objects' origins.
    pub dir: String,
    /// The objects of `input.yaml`.
    pub objects: Vec<Object>,
    /// Lines of `input.yaml`, to place findings at file:line.
    pub lines: LineIndex,
    /// The configuration (`null` without `config.yaml`).
    pub config: Value,
    /// What the call must return.
    pub expect: Expect,
}

/// What a case expects of the call.
pub(crate) enum Expect {
    /// The call succeeds with exactly these findings and, for a transformer, these objects.
    Result {
        /// Every finding, in any order.
        findings: Vec<ExpectedFinding>,
        /// `output.yaml`: a transformer's complete new object list.
        output: Option<Vec<Object>>,
    },
    /// The plugin refuses (in `validate-config` or in the call) with this error.
    Error(ExpectedError),
}

/// One finding a case expects.
#[derive(Debug, Clone)]
pub(crate) struct ExpectedFinding {
    /// The rule code, exactly.
    pub rule: String,
    /// The severity, exactly.
    pub severity: Severity,
    /// The object it names; `None`: the finding names no object.
    pub object: Option<ObjectRef>,
    /// The field path; `None`: the finding has none.
    pub path: Option<String>,
    /// Text the finding's message must contain; `None`: any message.
    pub message: Option<String>,
}

/// Which plugin error a case expects: the three a plugin reports itself (`plugin-error` in
/// the WIT package). Traps, deadlines and memory are never an expected outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ErrorClass {
    /// `plugin-error::invalid-config`.
    InvalidConfig,
    /// `plugin-error::invalid-input`.
    InvalidInput,
    /// `plugin-error::internal`.
    Internal,
}

impl ErrorClass {
    /// The name used in `expected.yaml` and the WIT package.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorClass::InvalidConfig => "invalid-config",
            ErrorClass::InvalidInput => "invalid-input",
            ErrorClass::Internal => "internal",
        }
    }
}

/// `error:` in `expected.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExpectedError {
    /// The kind of error.
    pub kind: ErrorClass,
    /// Text the error message must contain.
    #[serde(default)]
    pub message: Option<String>,
}

/// `expected.yaml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedFile {
    findings: Option<Vec<RawFinding>>,
    error: Option<ExpectedError>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFinding {
    rule: String,
    severity: Severity,
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Every case under `plugin_dir/tests`, sorted by name; `only` keeps the named ones.
///
/// Errors: no `tests/` directory, no case in it, a name in `only` that is no case, or any
/// case that cannot be read (the first one, with its file and line).
pub(crate) fn discover(plugin_dir: &Path, only: &[String]) -> Result<Vec<Case>> {
    let root = plugin_dir.join(CASES_DIR);
    let entries = std::fs::read_dir(&root).with_context(|| {
        format!(
            "reading {}: fixture cases live in {CASES_DIR}/<case>/ ({INPUT}, {EXPECTED}, optional {CONFIG} and {OUTPUT})",
            root.display()
        )
    })?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", root.display()))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let is_case = [INPUT, CONFIG, EXPECTED, OUTPUT]
            .iter()
            .any(|file| path.join(file).exists());
        if !is_case {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            bail!("{}: case directory names must be UTF-8", path.display());
        };
        names.push(name);
    }
    names.sort();
    if let Some(missing) = only.iter().find(|n| !names.contains(n)) {
        bail!(
            "no case {missing:?} in {} (cases: {})",
            root.display(),
            names.join(", ")
        );
    }
    if !only.is_empty() {
        names.retain(|n| only.contains(n));
    }
    if names.is_empty() {
        bail!(
            "no fixture cases in {}: add {CASES_DIR}/<case>/{INPUT} and {CASES_DIR}/<case>/{EXPECTED}",
            root.display()
        );
    }
    names.iter().map(|name| read_case(plugin_dir, name)).collect()
}

/// Reads one case directory.
fn read_case(plugin_dir: &Path, name: &str) -> Result<Case> {
    let dir = format!("{CASES_DIR}/{name}");
    let file = |leaf: &str| (format!("{dir}/{leaf}"), plugin_dir.join(&dir).join(leaf));

    let (input_name, input_path) = file(INPUT);
    let input = std::fs::read_to_string(&input_path)
        .with_context(|| format!("case {name}: reading {}", input_path.display()))?;
    let objects = crate::manifest::parse(&input_name, &input)?;

    let (config_name, config_path) = file(CONFIG);
    let config = match std::fs::read(&config_path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Value::Null,
        Ok(bytes) => crate::kit::parse_yaml::<Value>(&config_name, &bytes)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Null,
        Err(e) => return Err(e).with_context(|| format!("case {name}: reading {}", config_path.display())),
    };

    let (expected_name, expected_path) = file(EXPECTED);
    let bytes = std::fs::read(&expected_path).with_context(|| {
        format!(
            "case {name}: reading {} (`findings: []` expects none)",
            expected_path.display()
        )
    })?;
    // The parser's error names the file, line and field.
    let expected: ExpectedFile = crate::kit::parse_yaml(&expected_name, &bytes)?;

    let (output_name, output_path) = file(OUTPUT);
    let output = match std::fs::read_to_string(&output_path) {
        Ok(text) => Some(crate::manifest::parse(&output_name, &text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("case {name}: reading {}", output_path.display())),
    };

    let expect = match (expected.findings, expected.error) {
        (Some(_), Some(_)) => {
            bail!("{expected_name}: give `findings` or `error`, not both")
        }
        (None, None) => bail!("{expected_name}: give `findings:` (`[]` for none) or `error:`"),
        (None, Some(_)) if output.is_some() => {
            bail!("{output_name}: a case that expects an error has no output")
        }
        (None, Some(error)) => Expect::Error(error),
        (Some(raw), None) => Expect::Result {
            findings: raw
                .into_iter()
                .enumerate()
                .map(|(i, f)| expected_finding(&expected_name, i, f))
                .collect::<Result<_>>()?,
            output,
        },
    };
    Ok(Case {
        name: name.to_owned(),
        lines: LineIndex::build(&input),
        dir,
        objects,
        config,
        expect,
    })
}

fn expected_finding(file: &str, index: usize, raw: RawFinding) -> Result<ExpectedFinding> {
    let object = match raw.object {
        Some(text) => Some(parse_object_ref(&text).with_context(|| {
            format!(
                "{file}: findings[{index}].object {text:?} is not `apiVersion/kind [namespace/]name` (e.g. `apps/v1/Deployment shop/web`)"
            )
        })?),
        None => None,
    };
    Ok(ExpectedFinding {
        rule: raw.rule,
        severity: raw.severity,
        object,
        path: raw.path,
        message: raw.message,
    })
}

/// Reads `apps/v1/Deployment shop/web` or `v1/Namespace shop`: an object as kitsync prints it.
fn parse_object_ref(text: &str) -> Option<ObjectRef> {
    let (kind_part, name_part) = text.trim().split_once(' ')?;
    let (api_version, kind) = kind_part.rsplit_once('/')?;
    let name_part = name_part.trim();
    let (namespace, name) = match name_part.split_once('/') {
        Some((namespace, name)) => (Some(namespace), name),
        None => (None, name_part),
    };
    let ok = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
    if !(ok(api_version) && ok(kind) && ok(name) && namespace.is_none_or(ok)) || name.contains('/') {
        return None;
    }
    Some(ObjectRef {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        namespace: namespace.map(str::to_owned),
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_refs_read_as_printed() {
        for id in [
            ObjectRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: Some("shop".into()),
                name: "web".into(),
            },
            ObjectRef {
                api_version: "v1".into(),
                kind: "Namespace".into(),
                namespace: None,
                name: "shop".into(),
            },
        ] {
            assert_eq!(parse_object_ref(&id.to_string()), Some(id));
        }
        for bad in [
            "Deployment web",
            "apps/v1/Deployment",
            "v1/Service a/b/c",
            "/Service x",
            "v1/ x",
        ] {
            assert_eq!(parse_object_ref(bad), None, "{bad}");
        }
    }
}
