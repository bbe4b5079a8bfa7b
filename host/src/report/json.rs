//! Stable JSON output, `"version": 1`. Fields are only ever added, never renamed.

use super::CheckReport;
use crate::diagnostic::Severity;
use serde_json::json;

pub(super) fn format(report: &CheckReport) -> String {
    let kits: Vec<_> = report
        .kits
        .iter()
        .map(|k| {
            let r = &k.rendered;
            json!({
                "name": r.kit,
                "namespace": r.namespace,
                "status": if r.failed.is_some() { "blocked" } else { "ok" },
                "reason": r.failed,
                "objects": r.objects.len(),
                "inputHash": r.input_hash,
                "findings": r.findings,
                "diff": k.diff,
            })
        })
        .collect();
    let value = json!({
        "version": 1,
        "revision": report.revision,
        "base": report.base,
        "kits": kits,
        "findings": report.revision_findings,
        "summary": {
            "kits": report.kits.len(),
            "errors": report.count(Severity::Error),
            "warnings": report.count(Severity::Warning),
            "infos": report.count(Severity::Info),
        },
    });
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
