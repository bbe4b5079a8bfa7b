//! Findings about a kit's objects, produced by plugins and host guards, formatted by reports.

use crate::object::ObjectRef;
use serde::Serialize;
use std::fmt;

/// How serious a finding is; ordered so that `Error > Warning > Info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
