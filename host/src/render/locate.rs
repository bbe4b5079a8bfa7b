//! Places diagnostics in the repository: object origin plus JSON pointer -> file:line.

use crate::diagnostic::{Diagnostic, Finding, HOST_SOURCE, Location};
use crate::manifest::LineIndex;
use crate::object::Object;
use crate::schema::Violation;
use crate::source::Snapshot;
use std::collections::HashMap;

/// Finds lines and source snippets, indexing each manifest file once.
pub(super) struct Locator<'a> {
    snapshot: &'a Snapshot,
    indexes: HashMap<String, LineIndex>,
}

impl<'a> Locator<'a> {
    pub(super) fn new(snapshot: &'a Snapshot) -> Self {
        Locator {
            snapshot,
            indexes: HashMap::new(),
        }
    }

    /// Attaches kit, source, location and snippet to a diagnostic about `objects`.
    pub(super) fn place(
        &mut self,
        kit: &str,
        source: &str,
        diagnostic: Diagnostic,
        objects: &[Object],
    ) -> Finding {
        let origin = diagnostic
            .object
            .as_ref()
            .and_then(|id| objects.iter().find(|o| &o.id == id))
            .and_then(|o| o.origin.clone());
        let location = origin.map(|origin| {
            // An item of a List document is located below its own pointer.
            let pointer = format!(
                "{}{}",
                origin.pointer.as_deref().unwrap_or(""),
                diagnostic.path.as_deref().unwrap_or("")
            );
            let line = self
                .index(&origin.file)
                .and_then(|index| index.line(origin.document, &pointer))
                .or(origin.line)
                .unwrap_or(1);
            Location {
                file: origin.file,
                line,
                column: None,
            }
        });
        let snippet = location.as_ref().and_then(|l| self.snippet(l));
        Finding {
            kit: kit.to_owned(),
            source: source.to_owned(),
            diagnostic,
            location,
            snippet,
        }
    }

    /// Locates a schema violation of `object` at its offending value (line and column), and
    /// quotes the value as written when YAML typed a string field's unquoted text.
    pub(super) fn place_violation(&mut self, kit: &str, object: &Object, violation: Violation) -> Finding {
        let mut message = violation.message;
        let location = object.origin.clone().and_then(|origin| {
            let pointer = format!("{}{}", origin.pointer.as_deref().unwrap_or(""), violation.pointer);
            let index = self.index(&origin.file)?;
            let place = if violation.at_key {
                index.place_key(origin.document, &pointer)?
            } else {
                index.place(origin.document, &pointer)?
            };
            Some((origin.file, place))
        });
        if let Some(kind) = violation.unquoted {
            let written = location
                .as_ref()
                .and_then(|(_, place)| place.scalar.as_ref())
                .filter(|scalar| scalar.plain)
                .map(|scalar| scalar.text.clone());
            let typed = object.value.pointer(&violation.pointer).map(ToString::to_string);
            match (written, typed) {
                // A Secret's values never appear, as text or as what YAML made of them.
                _ if object.id.kind == "Secret" => message.push_str("; quote it"),
                (Some(written), Some(typed)) if written != typed => message.push_str(&format!(
                    "; YAML turns {written} into the {kind} {typed}, so the object would not carry what the file says: quote it (\"{written}\")"
                )),
                (Some(written), _) => message.push_str(&format!("; quote it (\"{written}\")")),
                (None, _) => message.push_str("; quote it"),
            }
        }
        let location = location.map(|(file, place)| Location {
            file,
            line: place.line,
            column: Some(place.column),
        });
        let snippet = location.as_ref().and_then(|l| self.snippet(l));
        Finding {
            kit: kit.to_owned(),
            source: HOST_SOURCE.to_owned(),
            diagnostic: Diagnostic {
                severity: violation.severity,
                rule: violation.rule.to_owned(),
                message,
                object: Some(object.id.clone()),
                path: Some(violation.pointer),
            },
            location,
            snippet,
        }
    }

    fn index(&mut self, file: &str) -> Option<&LineIndex> {
        if !self.indexes.contains_key(file) {
            let text = std::str::from_utf8(self.snapshot.get(file)?).ok()?;
            self.indexes.insert(file.to_owned(), LineIndex::build(text));
        }
        self.indexes.get(file)
    }

    /// The source line at `location`, trimmed of its line break.
    pub(super) fn snippet(&self, location: &Location) -> Option<String> {
        let text = std::str::from_utf8(self.snapshot.get(&location.file)?).ok()?;
        let index = usize::try_from(location.line).ok()?.checked_sub(1)?;
        text.lines().nth(index).map(|l| l.trim_end().to_owned())
    }
}
