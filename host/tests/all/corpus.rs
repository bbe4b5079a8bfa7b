//! Real-world manifests nobody here wrote (`KITSYNC_CORPUS`, e.g. `../shared/corpus`): every
//! file parses, or fails with an error that names the file and a line.

use kitsync::manifest::{self, Error};
use std::path::{Path, PathBuf};

/// Every `.yaml`/`.yml` file below `dir`.
pub(super) fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn every_corpus_file_parses_or_fails_located() {
    let Some(root) = std::env::var_os("KITSYNC_CORPUS").map(PathBuf::from) else {
        eprintln!(
            "KITSYNC_CORPUS is not set: the real-world corpus test did not run (tests/run sets it when ../shared/corpus exists)"
        );
        return;
    };
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    files.sort();
    assert!(
        files.len() > 100,
        "KITSYNC_CORPUS={} holds only {} YAML files",
        root.display(),
        files.len()
    );

    let (mut parsed, mut objects, mut refused) = (0, 0, Vec::new());
    for file in &files {
        let name = file.strip_prefix(&root).unwrap_or(file).display().to_string();
        let Ok(text) = std::fs::read_to_string(file) else {
            refused.push(format!("{name}: not UTF-8"));
            continue;
        };
        match manifest::parse(&name, &text) {
            Ok(found) => {
                parsed += 1;
                objects += found.len();
                for object in &found {
                    let origin = object.origin.as_ref().expect("parsed objects carry an origin");
                    assert_eq!(origin.file, name);
                    assert!(
                        origin.line.is_some_and(|l| l >= 1),
                        "{name}: object without a line"
                    );
                }
            }
            Err(error) => {
                let shown = error.to_string();
                assert!(
                    shown.starts_with(&format!("{name}:")),
                    "error does not name the file: {shown}"
                );
                let line = match &error {
                    Error::Syntax { line, .. } => *line,
                    Error::NotAnObject { line, .. }
                    | Error::NotText { line, .. }
                    | Error::MissingIdentity { line, .. } => u64::from(*line),
                    Error::TooLarge { .. } | Error::OverBudget { .. } => 1,
                };
                assert!(line >= 1, "error without a line: {shown}");
                refused.push(shown);
            }
        }
    }
    eprintln!(
        "corpus: {} files, {parsed} parsed into {objects} objects, {} refused with a located error",
        files.len(),
        refused.len()
    );
    for message in refused.iter().take(15) {
        eprintln!("  {message}");
    }
    // Most of the corpus is plain Kubernetes YAML; Helm templates are expected to be refused.
    assert!(
        parsed * 2 > files.len(),
        "only {parsed} of {} files parsed",
        files.len()
    );
}
