//! Formats the result of `check` for people and machines: text, JSON, SARIF, GitHub, JUnit.
//!
//! Formatting is pure: a [`CheckReport`] in, a `String` out. Secret values never reach a
//! report: diffs are redacted where they are computed and findings carry no object bodies.

mod github;
mod json;
mod junit;
mod sarif;
mod text;

pub(crate) use junit::xml as xml_escape;

use crate::diagnostic::{Finding, Severity};
use crate::diff::ObjectDiff;
use crate::render::Rendered;

/// Output formats of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Findings as `file:line[:column]` with the offending line, then a summary.
    Text,
    /// Stable JSON (schema version 1), documented in the README.
    Json,
    /// SARIF 2.1.0, for code-scanning uploads.
    Sarif,
    /// GitHub Actions workflow commands (`::error file=...`).
    Github,
    /// JUnit XML: a test suite per kit, a failing test case per finding.
    Junit,
}

/// One kit's part of a check.
#[derive(Debug, Clone)]
pub struct KitReport {
    /// The render result.
    pub rendered: Rendered,
    /// Rendered object diff against the base revision, when `--base` was given.
    pub diff: Option<Vec<ObjectDiff>>,
}

/// Everything `check` found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// The revision checked (commit or `worktree`).
    pub revision: String,
    /// The base revision, when comparing.
    pub base: Option<String>,
    /// Kits checked, by name.
    pub kits: Vec<KitReport>,
    /// Findings about the revision that no checked kit carries (a platform file that does not
    /// parse in a revision without kits); `kit` is empty. They count like any other.
    pub revision_findings: Vec<Finding>,
}

impl CheckReport {
    /// Every finding of every kit.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.kits
            .iter()
            .flat_map(|k| k.rendered.findings.iter())
            .chain(&self.revision_findings)
    }

    /// Count of findings of one severity.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings()
            .filter(|f| f.diagnostic.severity == severity)
            .count()
    }

    /// True when any finding is at or above `threshold`, or any kit failed: the one
    /// decision behind `check`'s exit status, whatever the class of problem.
    pub fn fails_at(&self, threshold: Severity) -> bool {
        self.kits.iter().any(|k| k.rendered.blocks_at(threshold))
            || self
                .revision_findings
                .iter()
                .any(|f| f.diagnostic.severity >= threshold)
    }

    /// Renders the report in `format`.
    pub fn format(&self, format: Format) -> String {
        match format {
            Format::Text => text::format(self),
            Format::Json => json::format(self),
            Format::Sarif => sarif::format(self),
            Format::Github => github::format(self),
            Format::Junit => junit::format(self),
        }
    }
}

/// `kit/plugin` style identity of a finding's origin, for titles.
fn origin_label(finding: &Finding) -> String {
    match &finding.diagnostic.object {
        Some(object) => format!("{} ({object})", finding.source),
        None => finding.source.clone(),
    }
}
