//! A fast reader for the block-style YAML that manifests are nearly always written in.
//!
//! serde-saphyr reads any YAML, at about 44 ms for a file of 1,000 objects (380 KB); reading
//! the same objects back from JSON takes 2.5 ms. Most manifests use a small part of YAML:
//! block mappings and sequences, one-line plain and quoted scalars, one-line flow
//! collections, literal and folded block scalars, comments. This reader handles exactly
//! that, in one pass over the bytes, and gives up on anything else: anchors, aliases, tags,
//! complex (`?`) and merge (`<<`) keys, directives, `...`, multi-line plain or quoted
//! scalars, tabs around structure, `\r`, a byte order mark, a key YAML would not read as
//! text. It also gives up on anything it is not sure is valid YAML or within serde-saphyr's
//! own limits (a key over 1,024 characters, 32 or more comments after an empty value), and
//! before going over what is left of the kit's budget. A file it gives up on is read by
//! serde-saphyr, which then reports any error (so every error message and location is
//! serde-saphyr's).
//!
//! When it does answer, the answer is serde-saphyr's: the same values (a plain scalar that
//! is not certainly text, such as `0644`, `1.10` or `1e3`, is typed by serde-saphyr itself),
//! the same document lines and the same budget spent. The tests compare both readers on the
//! corpus, the examples and generated YAML.

use std::collections::HashMap;

use rayon::prelude::*;
use serde_json::{Map, Value};

use super::{Document, KitBudget};

mod flow;
mod scalar;

/// Structural nesting past which we leave the file to serde-saphyr, whose own limit (64)
/// then applies.
const MAX_DEPTH: usize = 60;

/// Comments after an empty value from which we leave the file to serde-saphyr, which refuses
/// more than 32 there.
const MAX_BUFFERED_COMMENTS: usize = 32;

/// Longest implicit key, in bytes from its start to its `:`. serde-saphyr (as YAML 1.2, 7.4.2)
/// refuses one over 1,024 characters; bytes are never fewer.
const MAX_KEY_BYTES: usize = 1024;

/// The reader gave up: the file is left to serde-saphyr.
#[derive(Debug)]
pub(super) struct GiveUp;

type Step<T> = Result<T, GiveUp>;

/// Reads every document of `text`, spending at most `left`; `None` when the file is not in
/// the subset this reader handles (or would go over `left`).
///
/// A large file is read in parts on rayon's pool, split at `---` lines (in the subset, a
/// line starting `---` is always a document boundary). Each part is read within `left`,
/// and the parts together must fit it too, so at most one part's worth of work per thread is
/// done past a budget before the file is given up on (nothing is expanded here: a part's
/// nodes are bounded by its bytes).
pub(super) fn read(text: &str, left: &KitBudget) -> Option<(Vec<Document>, KitBudget)> {
    read_in_parts(text, left, rayon::current_num_threads())
}

/// [`read`] in at most `threads` parts.
fn read_in_parts(text: &str, left: &KitBudget, threads: usize) -> Option<(Vec<Document>, KitBudget)> {
    if text.starts_with('\u{feff}') {
        return None;
    }
    let parts = parts(text, threads);
    if parts.len() == 1 {
        return read_part(text, 1, true, left);
    }
    let read: Vec<Option<(Vec<Document>, KitBudget)>> = parts
        .par_iter()
        .enumerate()
        .map(|(i, &(from, to, line))| read_part(&text[from..to], line, i == 0, left))
        .collect();
    let mut documents = Vec::new();
    let mut used = KitBudget::NOTHING;
    for part in read {
        let (part, spent) = part?;
        documents.extend(part);
        used.add(&spent);
    }
    left.covers(&used).then_some((documents, used))
}

/// Files smaller than this are read in one part.
const PART_BYTES: usize = 64 << 10;

/// Splits `text` into at most `threads` parts of about equal size, each starting at the
/// beginning of a `---` line (but the first): (start, end, one-based line of the start).
fn parts(text: &str, threads: usize) -> Vec<(usize, usize, u32)> {
    let bytes = text.as_bytes();
    let count = threads.min(bytes.len() / PART_BYTES).max(1);
    let mut parts = Vec::with_capacity(count);
    let (mut start, mut line) = (0usize, 1u32);
    for k in 1..count {
        let target = (bytes.len() / count * k).max(start);
        let Some(boundary) = memchr::memmem::find_iter(&bytes[target..], b"\n---")
            .map(|i| target + i + 1)
            .find(|&at| matches!(bytes.get(at + 3), None | Some(b'\n' | b' ' | b'\t')))
        else {
            break;
        };
        parts.push((start, boundary, line));
        let newlines = memchr::memchr_iter(b'\n', &bytes[start..boundary]).count();
        line = line.saturating_add(u32::try_from(newlines).unwrap_or(u32::MAX));
        start = boundary;
    }
    parts.push((start, bytes.len(), line));
    parts
}

/// Reads one part of a file, whose first line is line `line` of the file; the first part
/// also counts the stream's start and end events.
fn read_part(text: &str, line: u32, first: bool, left: &KitBudget) -> Option<(Vec<Document>, KitBudget)> {
    if !printable(text.as_bytes()) {
        return None;
    }
    let mut reader = Reader {
        text,
        pos: 0,
        skipped_comments: 0,
        line,
        left,
        used: KitBudget::NOTHING,
        depth: 0,
        typed: HashMap::new(),
    };
    if first {
        reader.events(2).ok()?;
    }
    let documents = reader.documents().ok()?;
    Some((documents, reader.used))
}

struct Reader<'a> {
    text: &'a str,
    /// Start of the current line.
    pos: usize,
    /// Comment lines the last [`Reader::peek`] skipped.
    skipped_comments: usize,
    /// One-based number of the line at `pos`.
    line: u32,
    left: &'a KitBudget,
    used: KitBudget,
    depth: usize,
    /// Plain scalars typed by serde-saphyr, by text (`8080` recurs in a file).
    typed: HashMap<&'a str, Value>,
}

/// The next line with content.
#[derive(Clone, Copy)]
struct Line {
    /// Leading spaces.
    indent: usize,
    /// Byte offset of the first character after them.
    start: usize,
    /// Byte offset of the line's end (its `\n`, or the end of the text).
    end: usize,
}

impl<'a> Reader<'a> {
    // --- budget: the counts serde-saphyr's budget report keeps ---

    fn events(&mut self, n: usize) -> Step<()> {
        self.used.events += n;
        if self.used.events > self.left.events {
            return Err(GiveUp);
        }
        Ok(())
    }

    /// A scalar node of `bytes` bytes: one node, one event.
    fn scalar_node(&mut self, bytes: usize) -> Step<()> {
        self.used.nodes += 1;
        self.used.scalar_bytes += bytes;
        if self.used.nodes > self.left.nodes || self.used.scalar_bytes > self.left.scalar_bytes {
            return Err(GiveUp);
        }
        self.events(1)
    }

    /// A mapping or sequence: one node, a start and an end event, one level deeper.
    fn enter(&mut self) -> Step<()> {
        self.used.nodes += 1;
        if self.used.nodes > self.left.nodes {
            return Err(GiveUp);
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        self.events(2)
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    // --- lines ---

    fn line_end(&self, from: usize) -> usize {
        memchr::memchr(b'\n', &self.text.as_bytes()[from..]).map_or(self.text.len(), |i| from + i)
    }

    fn next_line(&mut self, end: usize) {
        self.pos = (end + 1).min(self.text.len());
        self.line += 1;
    }

    /// Skips blank and comment lines; the next line with content, if any. A tab before
    /// content gives up (YAML forbids tabs in indentation).
    fn peek(&mut self) -> Step<Option<Line>> {
        self.skipped_comments = 0;
        while self.pos < self.text.len() {
            let end = self.line_end(self.pos);
            let line = &self.text.as_bytes()[self.pos..end];
            let indent = line.iter().take_while(|&&b| b == b' ').count();
            match line.get(indent) {
                None => self.next_line(end),
                Some(b'#') => {
                    // serde-saphyr counts comments as events.
                    self.events(1)?;
                    self.skipped_comments += 1;
                    self.next_line(end);
                }
                Some(b'\t') => {
                    if line[indent..].iter().all(|&b| b == b' ' || b == b'\t') {
                        self.next_line(end);
                    } else {
                        return Err(GiveUp);
                    }
                }
                Some(_) => {
                    return Ok(Some(Line {
                        indent,
                        start: self.pos + indent,
                        end,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// `---` (or `...`) at the start of a line, followed by nothing or blanks.
    fn is_marker(&self, line: &Line, marker: &[u8]) -> bool {
        line.indent == 0
            && self.text.as_bytes()[line.start..line.end].starts_with(marker)
            && matches!(
                self.text.as_bytes().get(line.start + 3),
                None | Some(b' ' | b'\t' | b'\n')
            )
    }

    /// Nothing but blanks and a comment may be left in `from..end` (a comment is an event).
    fn rest_of_line(&mut self, from: usize, end: usize) -> Step<()> {
        let rest = &self.text.as_bytes()[from..end];
        let blanks = rest.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
        if blanks == rest.len() {
            Ok(())
        } else if blanks > 0 && rest[blanks] == b'#' {
            self.events(1)
        } else {
            Err(GiveUp)
        }
    }

    // --- documents ---

    fn documents(&mut self) -> Step<Vec<Document>> {
        let mut documents = Vec::new();
        // A `---` was read and its document has no content yet.
        let mut open = false;
        loop {
            let Some(line) = self.peek()? else {
                if open {
                    self.empty_document()?;
                }
                break;
            };
            if self.is_marker(&line, b"---") {
                self.rest_of_line(line.start + 3, line.end)?;
                if open {
                    self.empty_document()?;
                }
                open = true;
                self.next_line(line.end);
                continue;
            }
            if line.indent == 0 && matches!(self.text.as_bytes()[line.start], b'%' | b'.') {
                // Directives and `...` are rare; serde-saphyr reads them.
                if self.text.as_bytes()[line.start] == b'%' || self.is_marker(&line, b"...") {
                    return Err(GiveUp);
                }
            }
            self.start_document()?;
            let start_line = self.line;
            // Only a mapping is an object; anything else is left to serde-saphyr's error.
            let Some(first) = self.key_at(line.start, line.end)? else {
                return Err(GiveUp);
            };
            let value = self.block_mapping(line.indent, first)?;
            documents.push(Document {
                line: start_line,
                value,
            });
            open = false;
            // What ends a document's root: the end of the text or the next `---`.
            match self.peek()? {
                None => {}
                Some(next) if self.is_marker(&next, b"---") => {}
                Some(_) => return Err(GiveUp),
            }
        }
        Ok(documents)
    }

    fn start_document(&mut self) -> Step<()> {
        self.used.documents += 1;
        if self.used.documents > self.left.documents {
            return Err(GiveUp);
        }
        // Document start and end events.
        self.events(2)
    }

    /// A `---` with nothing after it: a document holding one empty scalar (reported as `~`),
    /// which serde-saphyr counts but does not return.
    fn empty_document(&mut self) -> Step<()> {
        self.start_document()?;
        self.scalar_node(1)
    }

    // --- block collections ---

    /// A block mapping whose keys are at column `indent`; `first` is its first key, already
    /// read by the caller from the current line (after `- ` for a mapping inside a sequence
    /// entry), with where its value starts.
    fn block_mapping(&mut self, indent: usize, first: (String, usize)) -> Step<Value> {
        self.enter()?;
        let mut map = Map::new();
        let mut next = Some(first);
        loop {
            let (key, after) = match next.take() {
                Some(first) => first,
                None => {
                    let Some(line) = self.peek()? else { break };
                    if line.indent < indent || self.is_marker(&line, b"---") {
                        break;
                    }
                    if line.indent > indent {
                        return Err(GiveUp);
                    }
                    // A sequence entry or a scalar at a key's indentation: not ours to judge.
                    self.key_at(line.start, line.end)?.ok_or(GiveUp)?
                }
            };
            let end = self.line_end(after);
            self.key(&key)?;
            let value = self.value(after, end, indent, true)?;
            if map.insert(key, value).is_some() {
                // A duplicate key: serde-saphyr reports it.
                return Err(GiveUp);
            }
        }
        self.leave();
        Ok(Value::Object(map))
    }

    /// A block sequence whose `-` are at column `indent`.
    fn block_sequence(&mut self, indent: usize) -> Step<Value> {
        self.enter()?;
        let mut items = Vec::new();
        while let Some(line) = self.peek()? {
            if line.indent < indent || self.is_marker(&line, b"---") {
                break;
            }
            if line.indent > indent {
                return Err(GiveUp);
            }
            if !self.is_entry(line.start, line.end) {
                // A key at the sequence's indentation: the sequence was a mapping's value.
                break;
            }
            let after = line.start + 1;
            let content = after
                + self.text.as_bytes()[after..line.end]
                    .iter()
                    .take_while(|&&b| b == b' ')
                    .count();
            if self.text.as_bytes().get(content) == Some(&b'\t') {
                return Err(GiveUp);
            }
            if content < line.end && self.text.as_bytes()[content] != b'#' {
                if self.is_entry(content, line.end) {
                    // `- - x`: nested sequences on one line.
                    return Err(GiveUp);
                }
                if let Some(first) = self.key_at(content, line.end)? {
                    let column = content - self.pos;
                    items.push(self.block_mapping(column, first)?);
                    continue;
                }
            }
            items.push(self.value(after, line.end, indent, false)?);
        }
        self.leave();
        Ok(Value::Array(items))
    }

    /// `-` followed by a blank or the end of the line.
    fn is_entry(&self, start: usize, end: usize) -> bool {
        self.text.as_bytes()[start] == b'-'
            && (start + 1 == end || matches!(self.text.as_bytes()[start + 1], b' ' | b'\t'))
    }

    /// The value after a key's `:` or an entry's `-` at `from` on the line ending at `end`;
    /// `indent` is the parent collection's. `same_indent_sequence`: a mapping's value may
    /// be a sequence at the key's own indentation.
    fn value(&mut self, from: usize, end: usize, indent: usize, same_indent_sequence: bool) -> Step<Value> {
        let blanks = self.text.as_bytes()[from..end]
            .iter()
            .take_while(|&&b| b == b' ')
            .count();
        let start = from + blanks;
        if start < end && self.text.as_bytes()[start] == b'\t' {
            return Err(GiveUp);
        }
        if start == end || self.text.as_bytes()[start] == b'#' {
            let comment = start < end;
            if comment {
                if blanks == 0 {
                    return Err(GiveUp);
                }
                // The comment is an event.
                self.events(1)?;
            }
            self.next_line(end);
            return self.nested(indent, same_indent_sequence, usize::from(comment));
        }
        if blanks == 0 {
            // `key:value` is not a key; `-x` is not an entry. Callers checked; be sure.
            return Err(GiveUp);
        }
        match self.text.as_bytes()[start] {
            b'|' | b'>' => self.block_scalar(start, end, indent),
            b'[' | b'{' => {
                let mut pos = start;
                let value = self.flow(&mut pos, end)?;
                self.rest_of_line(pos, end)?;
                self.next_line(end);
                Ok(value)
            }
            b'"' | b'\'' => {
                let (text, after) = self.quoted(start, end)?;
                self.rest_of_line(after, end)?;
                self.scalar_node(text.len())?;
                self.next_line(end);
                Ok(Value::String(text))
            }
            _ => {
                let text = self.block_plain(start, end)?;
                let value = self.plain(text)?;
                self.next_line(end);
                Ok(value)
            }
        }
    }

    /// What follows a key or entry with nothing after it on its line (but `comments`): a more
    /// indented collection, a sequence at the key's indentation, or nothing (null).
    fn nested(&mut self, indent: usize, same_indent_sequence: bool, comments: usize) -> Step<Value> {
        let next = self.peek()?;
        if comments + self.skipped_comments >= MAX_BUFFERED_COMMENTS {
            // serde-saphyr holds the comments while it looks for the value, and refuses more
            // than 32 (its budget's `max_buffered_comment_events`).
            return Err(GiveUp);
        }
        if let Some(line) = next
            && !self.is_marker(&line, b"---")
        {
            let entry = self.is_entry(line.start, line.end);
            if line.indent > indent {
                if entry {
                    return self.block_sequence(line.indent);
                }
                if let Some(first) = self.key_at(line.start, line.end)? {
                    return self.block_mapping(line.indent, first);
                }
                // A scalar on the next line: valid YAML, but rare; serde-saphyr reads it.
                return Err(GiveUp);
            }
            // An empty entry followed by the next entry is null, like an empty value.
            if line.indent == indent && entry && same_indent_sequence {
                return self.block_sequence(indent);
            }
        }
        // The parser reports an empty scalar as `~`: one byte.
        self.scalar_node(1)?;
        Ok(Value::Null)
    }

    // --- keys ---

    /// The key of a `key: value` entry at `start`, and where its value starts (after the
    /// `:`); `None` when the line is not such an entry.
    fn key_at(&self, start: usize, end: usize) -> Step<Option<(String, usize)>> {
        let bytes = self.text.as_bytes();
        match bytes[start] {
            b'"' | b'\'' => {
                let Ok((text, after)) = self.quoted(start, end) else {
                    return Ok(None);
                };
                let colon = after + bytes[after..end].iter().take_while(|&&b| b == b' ').count();
                if colon < end && bytes[colon] == b':' && (colon + 1 == end || bytes[colon + 1] == b' ') {
                    if colon - start > MAX_KEY_BYTES {
                        return Err(GiveUp);
                    }
                    Ok(Some((text, colon + 1)))
                } else {
                    Ok(None)
                }
            }
            b'-' if self.is_entry(start, end) => Ok(None),
            // Indicators that cannot start a plain key we handle.
            b'?' | b':' | b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>'
            | b'%' | b'@' | b'`' => Ok(None),
            _ => {
                let mut i = start;
                while i < end {
                    match bytes[i] {
                        b':' if i + 1 == end || bytes[i + 1] == b' ' => {
                            if i - start > MAX_KEY_BYTES {
                                return Err(GiveUp);
                            }
                            let key = self.text[start..i].trim_end_matches(' ');
                            if key.ends_with('\t') {
                                return Err(GiveUp);
                            }
                            return Ok(Some((key.to_owned(), i + 1)));
                        }
                        b':' if bytes[i + 1] == b'\t' => return Err(GiveUp),
                        b'#' if matches!(bytes[i - 1], b' ' | b'\t') => return Ok(None),
                        _ => {}
                    }
                    i += 1;
                }
                Ok(None)
            }
        }
    }

    /// Counts a key, which must be text as YAML reads it.
    fn key(&mut self, key: &str) -> Step<()> {
        // `key_at` gave the text; a plain key must not be typed (a number, a boolean, null)
        // or be the merge key. Quoted keys can be anything, but telling them apart here
        // would cost a flag for a rare case: any key that would not be text plain gives up.
        if key.is_empty() || key == "<<" || !certainly_text(key) {
            return Err(GiveUp);
        }
        self.scalar_node(key.len())
    }
}

/// Whether every character is one YAML allows in a stream: tab, line feed, and printable
/// characters (YAML 1.2, 5.1: not C0 or C1 controls except NEL, not DEL, not U+FFFE or
/// U+FFFF). Carriage returns and byte order marks are refused too.
fn printable(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\t' | b'\n' => {}
            0..0x20 | 0x7f => return false,
            // U+0080..U+009F, except U+0085 (NEL).
            0xc2 if matches!(bytes.get(i + 1), Some(0x80..=0x9f)) && bytes.get(i + 1) != Some(&0x85) => {
                return false;
            }
            0xef if bytes.get(i + 1) == Some(&0xbf) && matches!(bytes.get(i + 2), Some(0xbe | 0xbf)) => {
                return false;
            }
            // U+FEFF: serde-saphyr refuses a byte order mark inside a document, and where it
            // may stand is not worth telling apart here.
            0xef if bytes.get(i + 1) == Some(&0xbb) && bytes.get(i + 2) == Some(&0xbf) => return false,
            _ => {}
        }
        i += 1;
    }
    true
}

/// Whether YAML 1.1 (as serde-saphyr reads it for an untyped value) certainly reads this
/// plain scalar as text: it starts with a letter, `/` or a non-ASCII character and is not
/// a boolean or null spelling. Numbers start with a digit, a sign or `.`; the only
/// letter-initial spellings `f64` parses (`inf`, `nan`) are not finite and stay text.
fn certainly_text(text: &str) -> bool {
    let Some(&first) = text.as_bytes().first() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == b'/' || first >= 0x80) {
        return false;
    }
    if text.len() <= 5 {
        const WORDS: [&str; 9] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
        if WORDS.iter().any(|w| w.eq_ignore_ascii_case(text)) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests;
