//! JUnit XML: a test suite per kit, a failing test case per error or warning finding.

use super::{CheckReport, origin_label};
use crate::diagnostic::Severity;
use std::fmt::Write;

fn xml(text: &str) -> String {
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
    let total_tests: usize = report.kits.iter().map(|k| k.rendered.findings.len().max(1)).sum();
    let _ = writeln!(
        out,
        "<testsuites name=\"kitsync check\" tests=\"{total_tests}\" failures=\"{total_failures}\">"
    );
    for kit in &report.kits {
        let r = &kit.rendered;
        let failures = r
            .findings
            .iter()
            .filter(|f| f.diagnostic.severity >= Severity::Warning)
            .count();
        let tests = r.findings.len().max(1);
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\">",
            xml(&r.kit)
        );
        if r.findings.is_empty() {
            let _ = writeln!(
                out,
                "    <testcase classname=\"{}\" name=\"render\"/>",
                xml(&r.kit)
            );
        }
        for f in &r.findings {
            let d = &f.diagnostic;
            let name = match &f.location {
                Some(l) => format!("{} at {l}", d.rule),
                None => d.rule.clone(),
            };
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\"",
                xml(&r.kit),
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
    out.push_str("</testsuites>\n");
    out
}
