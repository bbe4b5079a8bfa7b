//! Human-readable output: each finding at file:line with the offending source line.

use super::CheckReport;
use crate::diagnostic::Severity;
use crate::diff::ObjectDiff;
use std::fmt::Write;

pub(super) fn format(report: &CheckReport) -> String {
    let mut out = String::new();
    for f in report.findings() {
        let d = &f.diagnostic;
        match &f.location {
            Some(l) => {
                let _ = writeln!(out, "{l}: {} [{}] {}", d.severity, d.rule, d.message);
            }
            None if f.kit.is_empty() => {
                let _ = writeln!(out, "{} [{}] {}", d.severity, d.rule, d.message);
            }
            None => {
                let _ = writeln!(out, "{}: {} [{}] {}", f.kit, d.severity, d.rule, d.message);
            }
        }
        if f.kit.is_empty() {
            let _ = write!(out, "    every kit of the revision, from {}", f.source);
        } else {
            let _ = write!(out, "    kit {}, from {}", f.kit, f.source);
        }
        if let Some(object) = &d.object {
            let _ = write!(out, ", object {object}");
        }
        if let Some(path) = &d.path {
            let _ = write!(out, " at {path}");
        }
        out.push('\n');
        if let (Some(snippet), Some(l)) = (&f.snippet, &f.location) {
            let _ = writeln!(out, "    {:>5} | {snippet}", l.line);
        }
    }
    for kit in &report.kits {
        if let Some(diff) = &kit.diff {
            let base = report.base.as_deref().unwrap_or("base");
            let _ = writeln!(out, "\nkit {}: changes against {base}:", kit.rendered.kit);
            if diff.is_empty() {
                out.push_str("  (no object changes)\n");
            }
            for change in diff {
                match change {
                    ObjectDiff::Added { object } => {
                        let _ = writeln!(out, "  + {object}");
                    }
                    ObjectDiff::Removed { object } => {
                        let _ = writeln!(out, "  - {object}");
                    }
                    ObjectDiff::Changed { object, fields } => {
                        let _ = writeln!(out, "  ~ {object}");
                        for field in fields {
                            let show = |v: &Option<serde_json::Value>| {
                                v.as_ref().map_or("(absent)".to_owned(), |v| v.to_string())
                            };
                            let _ = writeln!(
                                out,
                                "      {}: {} -> {}",
                                field.path,
                                show(&field.before),
                                show(&field.after)
                            );
                        }
                    }
                }
            }
        }
    }
    if !out.is_empty() {
        out.push('\n');
    }
    for kit in &report.kits {
        let r = &kit.rendered;
        match &r.failed {
            None => {
                let _ = writeln!(
                    out,
                    "kit {}: ok ({} objects, namespace {})",
                    r.kit,
                    r.objects.len(),
                    r.namespace
                );
            }
            Some(reason) => {
                let _ = writeln!(out, "kit {}: blocked: {reason}", r.kit);
            }
        }
    }
    let _ = writeln!(
        out,
        "{} kit(s) checked: {} error(s), {} warning(s), {} info",
        report.kits.len(),
        report.count(Severity::Error),
        report.count(Severity::Warning),
        report.count(Severity::Info)
    );
    out
}
