//! Walks one object along its schema and collects what the API server would refuse.

use super::syntax;
use super::tree::{Extra, ListType, NodeId, Syntax, Tree, Ty};
use crate::diagnostic::Severity;
use serde_json::Value;
use std::collections::HashMap;

/// One problem of one object, before it is located in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Error, or warning for what the server only warns about (unknown fields).
    pub severity: Severity,
    /// Rule code, `kitsync/schema-...`.
    pub rule: &'static str,
    /// RFC 6901 pointer to the offending value in the object.
    pub pointer: String,
    /// What is wrong, with the field and the kind's schema path when useful.
    pub message: String,
    /// Set when a string field holds an unquoted YAML scalar read as this (`number`,
    /// `boolean`): the reader's fix is to quote it, and the original text goes in the message.
    pub unquoted: Option<&'static str>,
    /// The finding is about the field's key (an unknown field), not its value.
    pub at_key: bool,
}

/// Which field a value is, for messages.
#[derive(Clone, Copy)]
pub(super) enum Field<'a> {
    /// A property of a definition (`targetPort` of `ServicePort`).
    Property { name: &'a str, of: Option<&'a str> },
    /// A label's value.
    Label(&'a str),
    /// An annotation's value.
    Annotation(&'a str),
    /// An entry of a list or map.
    Entry,
}

impl std::fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::Property { name, of: Some(of) } => write!(f, "{name} (schema {}.{name})", short(of)),
            Field::Property { name, of: None } => write!(f, "{name}"),
            Field::Label(key) => write!(f, "the value of label {key}"),
            Field::Annotation(key) => write!(f, "the value of annotation {key}"),
            Field::Entry => f.write_str("this entry"),
        }
    }
}

/// `io.k8s.api.core.v1.ServicePort` -> `ServicePort`.
pub(super) fn short(definition: &str) -> &str {
    definition.rsplit('.').next().unwrap_or(definition)
}

/// Collects violations while walking.
pub(super) struct Walker {
    pub strict: bool,
    pub out: Vec<Violation>,
    /// The RFC 6901 pointer of the value being walked, built in place (a walk enters every
    /// field of every object: one buffer, no allocation per field).
    pointer: String,
    /// Where `pointer` ended before each field entered.
    marks: Vec<usize>,
}

fn what(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn integral(value: &Value) -> bool {
    value.as_i64().is_some() || value.as_u64().is_some()
}

impl Walker {
    pub fn new(strict: bool) -> Self {
        Walker {
            strict,
            out: Vec::new(),
            pointer: String::new(),
            marks: Vec::new(),
        }
    }

    fn pointer(&self) -> String {
        self.pointer.clone()
    }

    fn report(&mut self, severity: Severity, rule: &'static str, message: String) {
        let pointer = self.pointer();
        self.out.push(Violation {
            severity,
            rule,
            pointer,
            message,
            unquoted: None,
            at_key: false,
        });
    }

    fn enter(&mut self, segment: &str) {
        self.marks.push(self.pointer.len());
        self.pointer.push('/');
        if segment.contains(['~', '/']) {
            self.pointer.push_str(&crate::manifest::escape_segment(segment));
        } else {
            self.pointer.push_str(segment);
        }
    }

    fn enter_index(&mut self, index: usize) {
        use std::fmt::Write as _;
        self.marks.push(self.pointer.len());
        let _ = write!(self.pointer, "/{index}");
    }

    fn leave(&mut self) {
        if let Some(mark) = self.marks.pop() {
            self.pointer.truncate(mark);
        }
    }

    /// Validates `value` against node `id` of `tree`.
    pub fn walk(&mut self, tree: &Tree, id: NodeId, value: &Value, field: Field<'_>) {
        if value.is_null() {
            // The API server reads `null` as "not set" for every field.
            return;
        }
        let syntax = tree.own(id).syntax;
        let node = tree.node(id);
        let type_error = |walker: &mut Walker, expected: &str| {
            walker.report(
                Severity::Error,
                "kitsync/schema-type",
                format!("{field} must be {expected}, but this is {}", what(value)),
            );
        };
        match node.ty {
            Ty::Any => {}
            Ty::String => match value {
                Value::String(text) => {
                    self.check_enum(node, value);
                    if node.base64 && !syntax::base64(text) {
                        // Never the value: this is how Secret data is typed.
                        self.report(
                            Severity::Error,
                            "kitsync/schema-format",
                            format!("{field} must be base64 (use stringData for plain text)"),
                        );
                    }
                    self.check_text(syntax, text, field);
                }
                Value::Number(_) | Value::Bool(_) => {
                    let pointer = self.pointer();
                    let kind = if value.is_boolean() { "boolean" } else { "number" };
                    self.out.push(Violation {
                        severity: Severity::Error,
                        rule: "kitsync/schema-type",
                        pointer,
                        message: format!(
                            "{field} must be a string, but YAML reads this unquoted value as a {kind}"
                        ),
                        unquoted: Some(kind),
                        at_key: false,
                    });
                }
                _ => type_error(self, "a string"),
            },
            Ty::Integer => match value {
                Value::Number(_) if integral(value) => self.check_enum(node, value),
                Value::String(text) if text.trim().parse::<i64>().is_ok() => self.report(
                    Severity::Error,
                    "kitsync/schema-type",
                    format!(
                        "{field} must be an integer, but this is the string \"{text}\": remove the quotes"
                    ),
                ),
                Value::Number(_) => type_error(self, "an integer"),
                _ => type_error(self, "an integer"),
            },
            Ty::Number => {
                if !value.is_number() {
                    type_error(self, "a number");
                }
            }
            Ty::Boolean => match value {
                Value::Bool(_) => {}
                Value::String(text) if matches!(text.as_str(), "true" | "false") => self.report(
                    Severity::Error,
                    "kitsync/schema-type",
                    format!(
                        "{field} must be a boolean, but this is the string \"{text}\": remove the quotes"
                    ),
                ),
                _ => type_error(self, "a boolean"),
            },
            Ty::IntOrString => match value {
                Value::Number(_) if integral(value) => {}
                Value::String(text) => self.check_text(syntax, text, field),
                _ => type_error(self, "an integer or a string"),
            },
            Ty::Quantity => match value {
                Value::Number(_) => {}
                Value::String(text) if syntax::quantity(text) => {}
                Value::String(text) => self.report(
                    Severity::Error,
                    "kitsync/schema-quantity",
                    format!("{field}: \"{text}\" is not a quantity (write e.g. 512Mi, 1Gi, 500m, 2)"),
                ),
                _ => type_error(self, "a quantity"),
            },
            Ty::Object => match value {
                Value::Object(map) => self.object(tree, id, map, syntax),
                _ => type_error(self, "a map"),
            },
            Ty::Array => match value {
                Value::Array(items) => self.array(tree, id, items, field),
                _ => type_error(self, "a list"),
            },
        }
    }

    fn check_enum(&mut self, node: &super::tree::Node, value: &Value) {
        if !node.enumeration.is_empty() && !node.enumeration.contains(value) {
            let allowed: Vec<String> = node.enumeration.iter().map(Value::to_string).collect();
            self.report(
                Severity::Error,
                "kitsync/schema-enum",
                format!("{value} is not one of {}", allowed.join(", ")),
            );
        }
    }

    fn check_text(&mut self, syntax: Syntax, text: &str, field: Field<'_>) {
        let why = match syntax {
            Syntax::PortName => syntax::port_name(text),
            Syntax::DnsLabel => syntax::dns_label(text),
            _ => None,
        };
        if let Some(why) = why {
            let what = match syntax {
                Syntax::DnsLabel => "a DNS-1123 label",
                _ => "a port name",
            };
            let hint = if syntax == Syntax::PortName && text.parse::<u16>().is_ok() {
                format!("; for port number {text}, remove the quotes")
            } else {
                String::new()
            };
            self.report(
                Severity::Error,
                "kitsync/syntax-port-name",
                format!("{field}: \"{text}\" is not {what}: it {why}{hint}"),
            );
        }
    }

    fn object(&mut self, tree: &Tree, id: NodeId, map: &serde_json::Map<String, Value>, syntax: Syntax) {
        let node = tree.node(id);
        let of = node.name.as_deref();
        for (key, value) in map {
            self.enter(key);
            match syntax {
                Syntax::LabelMap => {
                    if let Some(why) = syntax::qualified_name(key) {
                        self.report(
                            Severity::Error,
                            "kitsync/syntax-label-key",
                            format!("label key {key} {why}"),
                        );
                    }
                    if let Value::String(text) = value
                        && let Some(why) = syntax::label_value(text)
                    {
                        self.report(
                            Severity::Error,
                            "kitsync/syntax-label-value",
                            format!("the value of label {key} ({text:?}) {why}"),
                        );
                    }
                }
                Syntax::AnnotationMap => {
                    if let Some(why) = syntax::qualified_name(key) {
                        self.report(
                            Severity::Error,
                            "kitsync/syntax-annotation-key",
                            format!("annotation key {key} {why}"),
                        );
                    }
                }
                _ => {}
            }
            let field = match syntax {
                Syntax::LabelMap => Field::Label(key),
                Syntax::AnnotationMap => Field::Annotation(key),
                _ => Field::Property { name: key, of },
            };
            match node.properties.get(key) {
                Some(&child) => self.walk(tree, child, value, field),
                None => match node.extra {
                    Extra::Each(child) => self.walk(tree, child, value, field),
                    Extra::Open => {}
                    Extra::Closed => {
                        let hint = closest(key, node.properties.keys())
                            .map(|k| format!(" (did you mean {k}?)"))
                            .unwrap_or_default();
                        let place = of.map(|o| format!(" in {}", short(o))).unwrap_or_default();
                        let (severity, how) = if self.strict {
                            (Severity::Error, "")
                        } else {
                            (Severity::Warning, "; the API server drops or refuses it")
                        };
                        self.report(
                            severity,
                            "kitsync/schema-unknown-field",
                            format!("unknown field {key}{place}{hint}{how}"),
                        );
                        if let Some(last) = self.out.last_mut() {
                            last.at_key = true;
                        }
                    }
                },
            }
            self.leave();
        }
        for required in &node.required {
            if !map.contains_key(required) {
                let place = of.map(|o| format!(" of {}", short(o))).unwrap_or_default();
                self.report(
                    Severity::Error,
                    "kitsync/schema-required",
                    format!("missing required field {required}{place}"),
                );
            }
        }
    }

    fn array(&mut self, tree: &Tree, id: NodeId, items: &[Value], field: Field<'_>) {
        let node = tree.node(id);
        let item_node = node.items;
        let list = node.list.clone();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (index, item) in items.iter().enumerate() {
            self.enter_index(index);
            if let Some(child) = item_node {
                self.walk(tree, child, item, Field::Entry);
            }
            let key = match &list {
                ListType::Atomic => None,
                ListType::Set => (!item.is_object() && !item.is_array()).then(|| item.to_string()),
                ListType::Map(keys) if !keys.is_empty() => {
                    let parts: Vec<String> = keys
                        .iter()
                        .filter_map(|k| item.get(k).map(|v| format!("{k}={v}")))
                        .collect();
                    (!parts.is_empty()).then(|| parts.join(", "))
                }
                ListType::Map(_) => None,
            };
            if let Some(key) = key {
                if let Some(first) = seen.get(&key) {
                    self.report(
                        Severity::Error,
                        "kitsync/schema-duplicate-key",
                        format!("duplicate entry in {field}: {key} is also entry {first}; the API server refuses a list with two entries of one key"),
                    );
                } else {
                    seen.insert(key, index);
                }
            }
            self.leave();
        }
    }
}

/// The known field nearest to `key` (at most two edits), for "did you mean". A key longer
/// than any field name is not compared (the distance is quadratic in its length, and the key
/// comes from the repository).
fn closest<'a>(key: &str, known: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    if key.len() > 64 {
        return None;
    }
    known
        .map(|k| (distance(key, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                previous
            } else {
                1 + previous.min(row[j]).min(current)
            };
            previous = current;
        }
    }
    row[b.len()]
}
