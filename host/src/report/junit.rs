//! JUnit XML: a test suite per kit, a failing test case per error or warning finding.

use super::{CheckReport, origin_label};
use crate::diagnostic::{Finding, Severity};
use std::fmt::Write;

/// `text` escaped for XML attribute values and character data.
pub(crate) fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn format(report: &CheckReport) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total_failures: usize = report
        .findings()
        .filter(|f| f.diagnostic.severity >= Severity::Warning)
        .count();
    let mut suites: Vec<(&str, &[Finding])> = report
        .kits
        .iter()
        .map(|k| (k.rendered.kit.as_str(), k.rendered.findings.as_slice()))
        .collect();
    // Findings no kit carries get a suite of their own, so every failure is in a suite.
    if !report.revision_findings.is_empty() {
        suites.push(("revision", report.revision_findings.as_slice()));
    }
    let total_tests: usize = suites.iter().map(|(_, f)| f.len().max(1)).sum();
    let _ = writeln!(
        out,
        "<testsuites name=\"kitsync check\" tests=\"{total_tests}\" failures=\"{total_failures}\">"
    );
    for (name, findings) in suites {
        suite(&mut out, name, findings);
    }
    out.push_str("</testsuites>\n");
    out
}

fn suite(out: &mut String, suite: &str, findings: &[Finding]) {
    let failures = findings
        .iter()
        .filter(|f| f.diagnostic.severity >= Severity::Warning)
        .count();
    let tests = findings.len().max(1);
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\">",
        xml(suite)
    );
    if findings.is_empty() {
        let _ = writeln!(
            out,
            "    <testcase classname=\"{}\" name=\"render\"/>",
            xml(suite)
        );
    }
    for f in findings {
        let d = &f.diagnostic;
        let name = match &f.location {
            Some(l) => format!("{} at {l}", d.rule),
            None => d.rule.clone(),
        };
        let _ = write!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\"",
            xml(suite),
            xml(&name)
        );
        if let Some(l) = &f.location {
            let _ = write!(out, " file=\"{}\" line=\"{}\"", xml(&l.file), l.line);
        }
        if d.severity >= Severity::Warning {
            let _ = writeln!(
                out,
                ">\n      <failure type=\"{}\" message=\"{}\">{}</failure>\n    </testcase>",
                d.severity,
                xml(&d.message),
                xml(&origin_label(f))
            );
        } else {
            let _ = writeln!(
                out,
                ">\n      <system-out>{}</system-out>\n    </testcase>",
                xml(&d.message)
            );
        }
    }
    out.push_str("  </testsuite>\n");
}
