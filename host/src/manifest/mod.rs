//! Reads multi-document YAML manifests into [`Object`]s, keeping file, document and line.

use crate::object::{MissingField, Object, Origin};
use serde_json::Value;
mod block;
mod cache;
mod lines;

pub use cache::{DEFAULT_CAPACITY_BYTES, ParseCache};

pub use lines::{LineIndex, Place, Scalar, escape_segment};
use serde_saphyr::{Budget, DuplicateKeyPolicy, Options, Spanned};

/// Largest manifest file read, in bytes.
pub const MAX_FILE_BYTES: usize = 64 << 20;

/// A manifest that cannot be used, located as precisely as the parser allows.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The YAML does not parse.
    #[error("{file}:{line}:{column}: invalid YAML: {message}")]
    Syntax {
        /// Repository-relative file.
        file: String,
        /// One-based line (0 when unknown).
        line: u64,
        /// One-based column (0 when unknown).
        column: u64,
        /// The parser's message.
        message: String,
    },
    /// A document is not a mapping.
    #[error("{file}:{line}: document {document} is not a Kubernetes object (a mapping)")]
    NotAnObject {
        /// Repository-relative file.
        file: String,
        /// One-based line of the document.
        line: u32,
        /// Zero-based document index.
        document: u32,
    },
    /// A document lacks apiVersion, kind or metadata.name.
    #[error("{file}:{line}: document {document} has no {field}")]
    MissingIdentity {
        /// Repository-relative file.
        file: String,
        /// One-based line of the document.
        line: u32,
        /// Zero-based document index.
        document: u32,
        /// The missing field.
        field: MissingField,
    },
    /// Parsing the file would spend more than what is left of the kit's YAML budget.
    #[error("{file}: the kit's manifests together exceed its YAML budget (alias expansions count): {what}")]
    OverBudget {
        /// Repository-relative file.
        file: String,
        /// Which limit, e.g. `nodes: 1000000`.
        what: String,
    },
    /// An identity field holds something other than text: YAML 1.1 reads `y`, `n`, `yes`,
    /// `no`, `on`, `off` as booleans and `1.10` as a number.
    #[error(
        "{file}:{line}: {field} is {value}, not text; quote it (YAML reads y, n, yes, no, on, off as booleans)"
    )]
    NotText {
        /// Repository-relative file.
        file: String,
        /// One-based line of the field.
        line: u32,
        /// `apiVersion`, `kind`, `metadata.name` or `metadata.namespace`.
        field: &'static str,
        /// The value as parsed.
        value: String,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{file}: {bytes} bytes is over the {MAX_FILE_BYTES}-byte limit for a manifest")]
    TooLarge {
        /// Repository-relative file.
        file: String,
        /// Its size.
        bytes: usize,
    },
}

/// What the manifests of one kit may add up to, all files together: many small files (or
/// alias bombs) cannot add up to more than one kit may cost. Each file is parsed against
/// what is left; what it used is then taken off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KitBudget {
    /// YAML documents (default 50,000).
    pub documents: usize,
    /// Nodes: scalars, sequences and mappings, alias expansions included (default 1,000,000).
    pub nodes: usize,
    /// Parser events (default 4,000,000).
    pub events: usize,
    /// Bytes of scalar values (default 64 MiB).
    pub scalar_bytes: usize,
}

impl Default for KitBudget {
    fn default() -> Self {
        KitBudget {
            documents: 50_000,
            nodes: 1_000_000,
            events: 4_000_000,
            scalar_bytes: 64 << 20,
        }
    }
}

impl KitBudget {
    /// No budget at all; also what a file that was not read has used.
    pub const NOTHING: KitBudget = KitBudget {
        documents: 0,
        nodes: 0,
        events: 0,
        scalar_bytes: 0,
    };

    /// Whether what is left is enough for what a file used.
    pub fn covers(&self, used: &KitBudget) -> bool {
        used.documents <= self.documents
            && used.nodes <= self.nodes
            && used.events <= self.events
            && used.scalar_bytes <= self.scalar_bytes
    }

    /// Adds what another part of a file used.
    fn add(&mut self, used: &KitBudget) {
        self.documents += used.documents;
        self.nodes += used.nodes;
        self.events += used.events;
        self.scalar_bytes += used.scalar_bytes;
    }

    /// Takes what a file used off what is left.
    pub fn spend(&mut self, used: &KitBudget) {
        self.documents = self.documents.saturating_sub(used.documents);
        self.nodes = self.nodes.saturating_sub(used.nodes);
        self.events = self.events.saturating_sub(used.events);
        self.scalar_bytes = self.scalar_bytes.saturating_sub(used.scalar_bytes);
    }
}

fn options(left: &KitBudget) -> Options {
    let mut budget = Budget::default();
    budget.max_documents = left.documents;
    budget.max_nodes = left.nodes;
    budget.max_events = left.events;
    budget.max_total_scalar_bytes = left.scalar_bytes;
    let mut options = Options::default();
    options.budget = Some(budget);
    // Kubernetes reads YAML 1.1: `0644` is octal, `yes` is true.
    options.legacy_octal_numbers = true;
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    options
}

/// Parses every document of `text` (named `file` in errors) within a fresh
/// [`KitBudget`]; empty documents are skipped.
pub fn parse(file: &str, text: &str) -> Result<Vec<Object>, Error> {
    parse_within(file, text, &mut KitBudget::default())
}

/// Parses `text` against what is left of `budget`, then takes what it used off `budget`.
///
/// # Errors
/// [`Error::OverBudget`] when the file would spend more than is left (nothing of it is
/// returned), or any other [`Error`].
pub fn parse_within(file: &str, text: &str, budget: &mut KitBudget) -> Result<Vec<Object>, Error> {
    let mut used = KitBudget::NOTHING;
    let result = parse_counted(file, text, budget, &mut used);
    budget.spend(&used);
    result
}

/// Parses `text` against what is left of `budget`, setting `used` to what the parser spent.
/// A file that parses but is refused later (not an object, no name) has spent it too; a file
/// over the budget is refused before anything of it is used.
fn parse_counted(
    file: &str,
    text: &str,
    budget: &KitBudget,
    used: &mut KitBudget,
) -> Result<Vec<Object>, Error> {
    if text.len() > MAX_FILE_BYTES {
        return Err(Error::TooLarge {
            file: file.to_owned(),
            bytes: text.len(),
        });
    }
    let documents = match block::read(text, budget) {
        Some((documents, spent)) => {
            *used = spent;
            documents
        }
        None => read_any(file, text, budget, used)?,
    };
    let mut objects = Vec::with_capacity(documents.len());
    let mut line_index: Option<LineIndex> = None;
    for (index, document) in documents.into_iter().enumerate() {
        let document_index = u32::try_from(index).unwrap_or(u32::MAX);
        let line = document.line;
        match document.value {
            Value::Null => continue,
            Value::Object(_) => {}
            _ => {
                return Err(Error::NotAnObject {
                    file: file.to_owned(),
                    line,
                    document: document_index,
                });
            }
        }
        if is_list(&document.value) {
            // `kind: List` (and `*List` kinds) hold objects as kubectl applies them: each item
            // is an object of the kit, located at its own line.
            let index = line_index.get_or_insert_with(|| LineIndex::build(text));
            let Value::Object(mut map) = document.value else {
                continue;
            };
            let items = match map.remove("items") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            for (i, item) in items.into_iter().enumerate() {
                let pointer = format!("/items/{i}");
                let item_line = index.line(document_index, &pointer).unwrap_or(line);
                if !item.is_object() {
                    return Err(Error::NotAnObject {
                        file: file.to_owned(),
                        line: item_line,
                        document: document_index,
                    });
                }
                let origin = Origin {
                    file: file.to_owned(),
                    document: document_index,
                    line: Some(item_line),
                    pointer: Some(pointer),
                };
                if let Some((field, pointer, value)) = not_text(&item) {
                    let line = index
                        .line(document_index, &format!("/items/{i}{pointer}"))
                        .unwrap_or(item_line);
                    return Err(Error::NotText {
                        file: file.to_owned(),
                        line,
                        field,
                        value,
                    });
                }
                let object = Object::new(item, Some(origin)).map_err(|field| Error::MissingIdentity {
                    file: file.to_owned(),
                    line: item_line,
                    document: document_index,
                    field,
                })?;
                objects.push(object);
            }
            continue;
        }
        let origin = Origin {
            file: file.to_owned(),
            document: document_index,
            line: Some(line),
            pointer: None,
        };
        if let Some((field, pointer, value)) = not_text(&document.value) {
            let index = line_index.get_or_insert_with(|| LineIndex::build(text));
            return Err(Error::NotText {
                file: file.to_owned(),
                line: index.line(document_index, pointer).unwrap_or(line),
                field,
                value,
            });
        }
        let object = Object::new(document.value, Some(origin)).map_err(|field| Error::MissingIdentity {
            file: file.to_owned(),
            line,
            document: document_index,
            field,
        })?;
        objects.push(object);
    }
    Ok(objects)
}

/// Reads `text` with serde-saphyr: any YAML, against what is left of `budget`.
fn read_any(
    file: &str,
    text: &str,
    budget: &KitBudget,
    used: &mut KitBudget,
) -> Result<Vec<Document>, Error> {
    use std::cell::RefCell;
    use std::rc::Rc;
    let report: Rc<RefCell<Option<serde_saphyr::budget::BudgetReport>>> = Rc::default();
    let sink = report.clone();
    let options = options(budget).with_budget_report(move |r| *sink.borrow_mut() = Some(r));
    let parsed: Result<Vec<Spanned<Value>>, _> = serde_saphyr::from_multiple_with_options(text, options);
    let report = report.borrow_mut().take();
    if let Some(report) = &report {
        if let Some(breach) = &report.breached {
            return Err(Error::OverBudget {
                file: file.to_owned(),
                what: format!("{breach:?}"),
            });
        }
        *used = KitBudget {
            documents: report.documents,
            nodes: report.nodes,
            events: report.events,
            scalar_bytes: report.total_scalar_bytes,
        };
    }
    let documents = parsed.map_err(|e| {
        let location = e.location();
        Error::Syntax {
            file: file.to_owned(),
            line: location.map(|l| l.line()).unwrap_or(0),
            column: location.map(|l| l.column()).unwrap_or(0),
            message: parser_message(&e.to_string()),
        }
    })?;
    Ok(documents
        .into_iter()
        .map(|document| Document {
            line: u32::try_from(document.defined.line()).unwrap_or(u32::MAX),
            value: document.value,
        })
        .collect())
}

/// One parsed document: the line its root node starts on and its value. Empty documents
/// are not returned (by either reader).
struct Document {
    line: u32,
    value: Value,
}

/// The first identity field of `value` that is present but not a string, as (field, pointer).
fn not_text(value: &Value) -> Option<(&'static str, &'static str, String)> {
    [
        ("apiVersion", "/apiVersion"),
        ("kind", "/kind"),
        ("metadata.name", "/metadata/name"),
        ("metadata.namespace", "/metadata/namespace"),
    ]
    .into_iter()
    .find_map(|(field, pointer)| {
        let found = value.pointer(pointer)?;
        (!found.is_string() && !found.is_null()).then(|| (field, pointer, found.to_string()))
    })
}

/// A list document: `kind: List` or `*List` with an `items` array and no `metadata.name`
/// (`v1/List`, `v1/ConfigMapList`, ...; a custom kind that happens to end in `List` and has
/// a name is an object of its own).
fn is_list(value: &Value) -> bool {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    kind.ends_with("List")
        && value.get("items").is_some_and(Value::is_array)
        && value.pointer("/metadata/name").is_none()
}

/// The YAML parser's message for a user: its first line, without the parser's own
/// `error: line L column C:` prefix (callers print the location once, as file:line:column)
/// and without hints aimed at programmers using the parser.
pub fn parser_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or(raw).trim();
    let first = first.strip_prefix("error:").unwrap_or(first).trim();
    let first = match first.strip_prefix("line ").and_then(|rest| rest.split_once(": ")) {
        Some((position, rest)) if position.contains("column") => rest,
        _ => first,
    };
    let first = first.split(", set DuplicateKeyPolicy").next().unwrap_or(first);
    if first.is_empty() {
        "invalid YAML".to_owned()
    } else {
        first.to_owned()
    }
}

/// Writes objects as a multi-document YAML stream.
pub fn to_yaml(objects: &[Object]) -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&object.value)?);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every YAML file of the bundled examples and of the real-world corpus
    /// (`KITSYNC_CORPUS`, when set; a line says so when it is not).
    pub(crate) fn example_and_corpus_files() -> Vec<std::path::PathBuf> {
        let mut files = yaml_files(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples"));
        match std::env::var_os("KITSYNC_CORPUS") {
            Some(corpus) => files.extend(yaml_files(std::path::Path::new(&corpus))),
            None => eprintln!("KITSYNC_CORPUS is not set: only the examples were read"),
        }
        files
    }

    /// Every `.yaml` and `.yml` file under `dir`.
    fn yaml_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(yaml_files(&path));
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
        out.sort();
        out
    }

    #[test]
    fn documents_keep_their_lines() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n---\n---\n--- null\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: x\ndata:\n  mode: 0644\n";
        let objects = parse("kits/a/svc.yaml", text).expect("parses");
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].origin.as_ref().and_then(|o| o.line), Some(1));
        let second = objects[1].origin.as_ref().expect("origin");
        assert_eq!((second.document, second.line), (1, Some(9)));
        // Empty and null documents are skipped alike by the parser and the line index.
        let index = LineIndex::build(text);
        assert_eq!(index.line(second.document, "/metadata/namespace"), Some(13));
        assert_eq!(objects[1].value["data"]["mode"], 420);
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let err = parse("bad.yaml", "apiVersion: v1\nkind: [\n").expect_err("must fail");
        let text = err.to_string();
        assert!(text.starts_with("bad.yaml:"), "{text}");
        assert!(matches!(err, Error::Syntax { line, .. } if line >= 2), "{text}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse(
            "dup.yaml",
            "apiVersion: v1\nkind: A\nkind: B\nmetadata: {name: x}\n",
        )
        .expect_err("dup");
        assert!(
            err.to_string()
                .starts_with("dup.yaml:3:1: invalid YAML: duplicate mapping key: kind"),
            "{err}"
        );
        assert!(
            !err.to_string().contains("DuplicateKeyPolicy"),
            "no parser-internal hint: {err}"
        );
    }

    #[test]
    fn list_items_are_objects_at_their_own_lines() {
        let text = "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: a\n  - apiVersion: v1\n    kind: Secret\n    metadata:\n      name: b\n    stringData:\n      k: v\n---\napiVersion: v1\nkind: ConfigMapList\nitems: []\n";
        let objects = parse("l.yaml", text).expect("parses");
        let ids: Vec<String> = objects.iter().map(|o| o.id.to_string()).collect();
        assert_eq!(ids, ["v1/ConfigMap a", "v1/Secret b"]);
        let origin = objects[1].origin.as_ref().expect("origin");
        assert_eq!(origin.line, Some(8));
        assert_eq!(origin.pointer.as_deref(), Some("/items/1"));
        let index = LineIndex::build(text);
        assert_eq!(index.line(0, "/items/1/stringData/k"), Some(13));
        let err = parse(
            "l.yaml",
            "apiVersion: v1\nkind: List\nitems:\n  - kind: ConfigMap\n",
        )
        .expect_err("no name");
        assert_eq!(err.to_string(), "l.yaml:4: document 0 has no apiVersion");
    }

    #[test]
    fn identity_fields_that_yaml_reads_as_booleans_say_quote_it() {
        let err = parse(
            "b.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n",
        )
        .expect_err("bool");
        assert_eq!(
            err.to_string(),
            "b.yaml:4: metadata.name is true, not text; quote it (YAML reads y, n, yes, no, on, off as booleans)"
        );
        let err = parse(
            "n.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: n\n",
        )
        .expect_err("bool namespace");
        assert!(
            err.to_string()
                .starts_with("n.yaml:5: metadata.namespace is false"),
            "{err}"
        );
    }

    #[test]
    fn missing_name_is_located() {
        let err = parse("m.yaml", "apiVersion: v1\nkind: A\nmetadata: {}\n").expect_err("no name");
        assert_eq!(err.to_string(), "m.yaml:1: document 0 has no metadata.name");
    }
}
