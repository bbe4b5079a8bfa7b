//! GitHub Actions workflow commands: one annotation per finding.

use super::{CheckReport, origin_label};
use crate::diagnostic::Severity;
use std::fmt::Write;

/// Escapes the message part of a workflow command.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a property value (also `:` and `,`).
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

pub(super) fn format(report: &CheckReport) -> String {
    let mut out = String::new();
    for f in report.findings() {
        let command = match f.diagnostic.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "notice",
        };
        let title = escape_property(format!("{} {}", f.kit, f.diagnostic.rule).trim_start());
        let message = escape_data(&format!("{} [{}]", f.diagnostic.message, origin_label(f)));
        match &f.location {
            Some(l) => {
                let column = l.column.map(|c| format!(",col={c}")).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "::{command} file={},line={}{column},title={title}::{message}",
                    escape_property(&l.file),
                    l.line
                );
            }
            None => {
                let _ = writeln!(out, "::{command} title={title}::{message}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_escaped() {
        assert_eq!(escape_data("50%\nnext"), "50%25%0Anext");
        assert_eq!(escape_property("a:b,c"), "a%3Ab%2Cc");
    }
}
