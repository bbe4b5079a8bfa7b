//! Maps RFC 6901 pointers inside YAML documents to source lines, for located findings.

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};
use std::collections::HashMap;

/// Line of every node of every document of one YAML file.
#[derive(Debug, Default, Clone)]
pub struct LineIndex {
    /// `documents[i]` maps a pointer (`""` for the root) to its 1-based line.
    documents: Vec<HashMap<String, u32>>,
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
        let mut documents: Vec<HashMap<String, u32>> = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut path: Vec<String> = Vec::new();
        // The manifest parser skips documents that are only a null; skip them here too so
        // document indexes agree.
        let mut null_root = false;
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let line = u32::try_from(span.start.line()).unwrap_or(u32::MAX);
            match event {
                Event::DocumentStart(..) => {
                    documents.push(HashMap::new());
                    stack.clear();
                    path.clear();
                    null_root = false;
                }
                Event::DocumentEnd if null_root => {
                    documents.pop();
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
                        record(&mut documents, &path, line);
                        *key = Some(key_text);
                        continue;
                    }
                    enter_value(&mut stack, &mut path, &mut documents, line);
                    leave_value(&mut stack, &mut path);
                }
                Event::Alias(..) => {
                    enter_value(&mut stack, &mut path, &mut documents, line);
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
                        enter_value(&mut stack, &mut path, &mut documents, line);
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
        LineIndex { documents }
    }

    /// Line of `pointer` in document `document`, or of its nearest indexed ancestor.
    pub fn line(&self, document: u32, pointer: &str) -> Option<u32> {
        let map = self.documents.get(usize::try_from(document).ok()?)?;
        let mut current = pointer;
        loop {
            if let Some(line) = map.get(current) {
                return Some(*line);
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

fn record(documents: &mut [HashMap<String, u32>], path: &[String], line: u32) {
    if let Some(doc) = documents.last_mut() {
        doc.entry(pointer(path)).or_insert(line);
    }
}

/// A value starts: sequence items get their index pushed; map values already have their key.
fn enter_value(
    stack: &mut [Frame],
    path: &mut Vec<String>,
    documents: &mut [HashMap<String, u32>],
    line: u32,
) {
    if let Some(Frame::Seq { index }) = stack.last() {
        path.push(index.to_string());
    }
    record(documents, path, line);
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
    fn unknown_pointers_fall_back_to_the_nearest_ancestor() {
        let index = LineIndex::build(TEXT);
        assert_eq!(index.line(0, "/spec/ports/1/targetPort"), Some(10));
        assert_eq!(index.line(0, "/status/x"), Some(1));
        assert_eq!(index.line(5, ""), None);
    }
}
