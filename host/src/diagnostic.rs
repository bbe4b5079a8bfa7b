//! Findings about a kit's objects, produced by plugins and host guards, formatted by reports.

use crate::object::ObjectRef;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How serious a finding is; ordered so that `Error > Warning > Info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Info,
    /// Worth a look; does not block by default.
    Warning,
    /// Blocks the kit.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A policy finding: a violation is data, never an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// How serious it is.
    pub severity: Severity,
    /// Stable rule code, `<plugin>/<rule>`.
    pub rule: String,
    /// Human-readable message.
    pub message: String,
    /// The object it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    /// RFC 6901 pointer into that object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}] {}", self.severity, self.rule, self.message)?;
        if let Some(object) = &self.object {
            write!(f, " ({object}")?;
            if let Some(path) = &self.path {
                write!(f, " at {path}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A place in the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// Repository-relative file.
    pub file: String,
    /// One-based line.
    pub line: u32,
    /// One-based column, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(column) => write!(f, "{}:{}:{}", self.file, self.line, column),
            None => write!(f, "{}:{}", self.file, self.line),
        }
    }
}

/// A diagnostic placed in context: which kit, which plugin (or `kitsync` for the host),
/// and where in the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The kit it concerns.
    pub kit: String,
    /// Plugin path, or `kitsync` for findings of the host itself.
    pub source: String,
    /// The finding.
    #[serde(flatten)]
    pub diagnostic: Diagnostic,
    /// Where it is, when it can be placed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// The offending source line, when located.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

/// The `source` of findings raised by kitsync itself (parsing, guards, plugin failures).
pub const HOST_SOURCE: &str = "kitsync";
