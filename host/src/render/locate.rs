//! Places diagnostics in the repository: object origin plus JSON pointer -> file:line.

use crate::diagnostic::{Diagnostic, Finding, Location};
use crate::manifest::LineIndex;
use crate::object::Object;
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
