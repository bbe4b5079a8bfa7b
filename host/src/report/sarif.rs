//! SARIF 2.1.0, so code hosts annotate the pull request at the offending line.

use super::CheckReport;
use crate::diagnostic::Severity;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

pub(super) fn format(report: &CheckReport) -> String {
    let mut rules: BTreeMap<String, usize> = BTreeMap::new();
    for finding in report.findings() {
        let next = rules.len();
        rules.entry(finding.diagnostic.rule.clone()).or_insert(next);
    }
    let results: Vec<Value> = report
        .findings()
        .map(|f| {
            let mut result = json!({
                "ruleId": f.diagnostic.rule,
                "ruleIndex": rules.get(&f.diagnostic.rule).copied().unwrap_or(0),
                "level": level(f.diagnostic.severity),
                "message": {"text": f.diagnostic.message},
                "properties": {"kit": f.kit, "source": f.source},
            });
            if let Some(l) = &f.location {
                let mut region = json!({"startLine": l.line.max(1)});
                if let Some(column) = l.column {
                    region["startColumn"] = json!(column.max(1));
                }
                if let Some(snippet) = &f.snippet {
                    region["snippet"] = json!({"text": snippet});
                }
                result["locations"] = json!([{
                    "physicalLocation": {
                        "artifactLocation": {"uri": l.file, "uriBaseId": "%SRCROOT%"},
                        "region": region,
                    }
                }]);
            }
            if let Some(object) = &f.diagnostic.object {
                result["properties"]["object"] = json!(object.to_string());
            }
            if let Some(path) = &f.diagnostic.path {
                result["properties"]["path"] = json!(path);
            }
            result
        })
        .collect();
    let mut ordered: Vec<(&String, &usize)> = rules.iter().collect();
    ordered.sort_by_key(|(_, i)| **i);
    let rules: Vec<Value> = ordered
        .into_iter()
        .map(|(id, _)| json!({"id": id, "shortDescription": {"text": id}}))
        .collect();
    let value = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "kitsync",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    });
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}
