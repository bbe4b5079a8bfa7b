//! Maps RFC 6901 pointers inside YAML documents to source lines, for located findings.

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};
use std::collections::HashMap;

/// Line and column of every node of every document of one YAML file, and the text of each
/// scalar value as written.
#[derive(Debug, Default, Clone)]
pub struct LineIndex {
    /// `documents[i]` maps a pointer (`""` for the root) to where its entry starts: the key
    /// of a map entry, the value of a list item (1-based line and column).
    documents: Vec<HashMap<String, (u32, u32)>>,
    /// `scalars[i]` maps the pointer of each scalar value of document `i` to where the value
    /// starts and its text as written (before YAML typed it: `1.10`, not `1.1`).
    scalars: Vec<HashMap<String, Scalar>>,
}

/// A scalar value in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// The text as written, without quotes.
    pub text: String,
    /// Written without quotes (YAML typed it).
    pub plain: bool,
}

/// Where a pointer is in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// The scalar at exactly that pointer, if it is one.
    pub scalar: Option<Scalar>,
}

enum Frame {
    Map { key: Option<String> },
    Seq { index: usize },
}

/// Escapes one pointer segment (`~` -> `~0`, `/` -> `~1`).
pub fn escape_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

impl LineIndex {
    /// Indexes `text`; a file that does not parse yields what was indexed before the error.
    pub fn build(text: &str) -> Self {
        let mut documents: Vec<HashMap<String, (u32, u32)>> = Vec::new();
        let mut scalars: Vec<HashMap<String, Scalar>> = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut path: Vec<String> = Vec::new();
        // The manifest parser skips documents that are only a null; skip them here too so
        // document indexes agree.
        let mut null_root = false;
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let line = u32::try_from(span.start.line()).unwrap_or(u32::MAX);
            let column = u32::try_from(span.start.col() + 1).unwrap_or(u32::MAX);
            let at = (line, column);
            match event {
                Event::DocumentStart(..) => {
                    documents.push(HashMap::new());
                    scalars.push(HashMap::new());
                    stack.clear();
                    path.clear();
                    null_root = false;
                }
                Event::DocumentEnd if null_root => {
                    documents.pop();
                    scalars.pop();
                }
                Event::Scalar(value, style, _, tag) => {
                    if stack.is_empty() && tag.is_none() && style == ScalarStyle::Plain {
                        null_root = matches!(value.as_ref(), "" | "~" | "null" | "Null" | "NULL");
                    }
                    if let Some(Frame::Map { key }) = stack.last_mut()
                        && key.is_none()
                    {
                        // A mapping key: its line is where the entry starts.
                        let key_text = value.into_owned();
                        path.push(escape_segment(&key_text));
                        record(&mut documents, &path, at);
                        *key = Some(key_text);
                        continue;
                    }
                    enter_value(&mut stack, &mut path, &mut documents, at);
                    if let Some(doc) = scalars.last_mut() {
                        doc.insert(
                            pointer(&path),
                            Scalar {
                                line,
                                column,
                                text: value.into_owned(),
                                plain: style == ScalarStyle::Plain,
                            },
                        );
                    }
                    leave_value(&mut stack, &mut path);
                }
                Event::Alias(..) => {
                    enter_value(&mut stack, &mut path, &mut documents, at);
                    leave_value(&mut stack, &mut path);
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    if let Some(Frame::Map { key: None }) = stack.last() {
                        // A complex (non-scalar) key: index it under a placeholder.
                        path.push(String::from("?"));
                        if let Some(frame) = stack.last_mut() {
                            *frame = Frame::Map {
                                key: Some("?".into()),
                            };
                        }
                    } else {
                        enter_value(&mut stack, &mut path, &mut documents, at);
                    }
                    stack.push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Map { key: None }
                    } else {
                        Frame::Seq { index: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    leave_value(&mut stack, &mut path);
                }
                _ => {}
            }
        }
        LineIndex { documents, scalars }
    }

    /// Line of `pointer` in document `document`, or of its nearest indexed ancestor.
    pub fn line(&self, document: u32, pointer: &str) -> Option<u32> {
        self.place(document, pointer).map(|p| p.line)
    }

    /// Where `pointer` is in document `document`: its scalar value when it is one (the
    /// offending value, not its key), else its entry, else its nearest indexed ancestor.
    pub fn place(&self, document: u32, pointer: &str) -> Option<Place> {
        self.place_at(document, pointer, true)
    }

    /// Where `pointer`'s entry is (the key of a map entry), never its value.
    pub fn place_key(&self, document: u32, pointer: &str) -> Option<Place> {
        self.place_at(document, pointer, false)
    }

    fn place_at(&self, document: u32, pointer: &str, value: bool) -> Option<Place> {
        let document = usize::try_from(document).ok()?;
        if value && let Some(scalar) = self.scalars.get(document).and_then(|s| s.get(pointer)) {
            return Some(Place {
                line: scalar.line,
                column: scalar.column,
                scalar: Some(scalar.clone()),
            });
        }
        let map = self.documents.get(document)?;
        let mut current = pointer;
        loop {
            if let Some(&(line, column)) = map.get(current) {
                return Some(Place {
                    line,
                    column,
                    scalar: None,
                });
            }
            if current.is_empty() {
                return None;
            }
            current = current.rfind('/').map_or("", |i| &current[..i]);
        }
    }
}

fn pointer(path: &[String]) -> String {
    path.iter().fold(String::new(), |mut acc, s| {
        acc.push('/');
        acc.push_str(s);
        acc
    })
}

fn record(documents: &mut [HashMap<String, (u32, u32)>], path: &[String], at: (u32, u32)) {
    if let Some(doc) = documents.last_mut() {
        doc.entry(pointer(path)).or_insert(at);
    }
}

/// A value starts: sequence items get their index pushed; map values already have their key.
fn enter_value(
    stack: &mut [Frame],
    path: &mut Vec<String>,
    documents: &mut [HashMap<String, (u32, u32)>],
    at: (u32, u32),
) {
    if let Some(Frame::Seq { index }) = stack.last() {
        path.push(index.to_string());
    }
    record(documents, path, at);
}

/// A value ends: pop its segment and advance the parent.
fn leave_value(stack: &mut [Frame], path: &mut Vec<String>) {
    match stack.last_mut() {
        Some(Frame::Seq { index }) => {
            *index += 1;
            path.pop();
        }
        Some(Frame::Map { key }) => {
            *key = None;
            path.pop();
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: vision\n  labels: {a/b: x}\nspec:\n  ports:\n    - name: http\n      port: 6776\n    - name: admin\n      port: 9000\n---\napiVersion: v1\nkind: ConfigMap\n";

    #[test]
    fn pointers_map_to_lines() {
        let index = LineIndex::build(TEXT);
        assert_eq!(index.line(0, ""), Some(1));
        assert_eq!(index.line(0, "/metadata/name"), Some(4));
        assert_eq!(index.line(0, "/metadata/labels/a~1b"), Some(5));
        assert_eq!(index.line(0, "/spec/ports/0/port"), Some(9));
        assert_eq!(index.line(0, "/spec/ports/1"), Some(10));
        assert_eq!(index.line(0, "/spec/ports/1/port"), Some(11));
        assert_eq!(index.line(1, "/kind"), Some(14));
    }

    #[test]
    fn scalar_values_keep_their_column_and_text() {
        let index = LineIndex::build("metadata:\n  labels:\n    version: 1.10\n    quoted: \"1.10\"\n");
        let place = index.place(0, "/metadata/labels/version").expect("indexed");
        assert_eq!((place.line, place.column), (3, 14));
        let scalar = place.scalar.expect("a scalar");
        assert_eq!((scalar.text.as_str(), scalar.plain), ("1.10", true));
        let quoted = index
            .place(0, "/metadata/labels/quoted")
            .and_then(|p| p.scalar)
            .expect("scalar");
        assert!(!quoted.plain);
        // A map is placed at its key.
        let labels = index.place(0, "/metadata/labels").expect("indexed");
        assert_eq!((labels.line, labels.column, labels.scalar), (2, 3, None));
    }

    #[test]
    fn unknown_pointers_fall_back_to_the_nearest_ancestor() {
        let index = LineIndex::build(TEXT);
        assert_eq!(index.line(0, "/spec/ports/1/targetPort"), Some(10));
        assert_eq!(index.line(0, "/status/x"), Some(1));
        assert_eq!(index.line(5, ""), None);
    }
}
