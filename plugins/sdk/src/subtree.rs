//! Reading one part of an object's JSON text without building the rest.
//!
//! Building a [`Value`] is most of what a plugin spends on a kit (every string and map
//! allocated, then freed); a policy usually reads a few fields. [`parse_at`] walks the text
//! along a JSON pointer's tokens, skipping every other member byte by byte without
//! allocating, and builds only the value at the end. The walk stops there: the host's text
//! is canonical (`wit/plugin.wit`: each member once, keys in order), so nothing after the
//! member found can override it. The skipped text is checked only for its structure (strings
//! closed, brackets balanced) as far as the walk reads; the value built is checked fully.

use std::ops::Range;

use serde::de::Error as _;
use serde_json::Value;

/// The value at `tokens` (unescaped RFC 6901 reference tokens) in the JSON `text`, or `None`
/// when the path is absent (a missing member, an index past the end, a scalar on the way).
/// `Some(Value::Null)` means the member is present and null. A member given more than once
/// (which the host never sends) is read from its first occurrence.
///
/// # Errors
/// The text is not JSON: its structure is broken where the walk read it, or the value at
/// the end does not parse.
pub fn parse_at(text: &str, tokens: &[&str]) -> Result<Option<Value>, serde_json::Error> {
    match span_at(text, tokens)? {
        Some(span) => text.get(span).map(serde_json::from_str).transpose(),
        None => Ok(None),
    }
}

/// Where the value at `tokens` is in `text` (byte range of its JSON text), or `None` when the
/// path is absent; for changing one part of an object without rebuilding the rest.
///
/// # Errors
/// The text's structure is broken where the walk read it.
pub(crate) fn span_at(text: &str, tokens: &[&str]) -> Result<Option<Range<usize>>, serde_json::Error> {
    let mut walk = Walk {
        bytes: text.as_bytes(),
        at: 0,
    };
    walk.find(tokens)
}

/// The unescaped reference tokens of an RFC 6901 pointer (`~1` is `/`, `~0` is `~`),
/// borrowed unless a token holds an escape.
pub(crate) fn tokens(pointer: &str) -> Vec<std::borrow::Cow<'_, str>> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| match t.contains('~') {
            true => t.replace("~1", "/").replace("~0", "~").into(),
            false => t.into(),
        })
        .collect()
}

/// Bytes that end a run inside a string: its closing quote, or an escape.
static IN_STRING: [bool; 256] = marks(b"\"\\");
/// Bytes that matter inside an object or array being skipped: a string, or a bracket.
static IN_CONTAINER: [bool; 256] = marks(b"\"{}[]");

const fn marks(bytes: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        table[bytes[i] as usize] = true;
        i += 1;
    }
    table
}

/// A cursor over JSON text. Every method leaves `at` just past what it read.
struct Walk<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Walk<'_> {
    fn error(&self, what: &str) -> serde_json::Error {
        serde_json::Error::custom(format!("{what} at byte {}", self.at))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), serde_json::Error> {
        self.space();
        if self.peek() != Some(byte) {
            return Err(self.error(&format!("expected `{}`", byte as char)));
        }
        self.at += 1;
        Ok(())
    }

    /// Moves to the next byte `table` marks, or to the end.
    fn until(&mut self, table: &[bool; 256]) {
        while let Some(&byte) = self.bytes.get(self.at) {
            if table[usize::from(byte)] {
                return;
            }
            self.at += 1;
        }
    }

    /// After the opening quote: moves past the closing one.
    fn string(&mut self) -> Result<(), serde_json::Error> {
        loop {
            self.until(&IN_STRING);
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => self.at += 2,
            }
        }
    }

    /// Skips one value, checking only that strings close and brackets balance.
    fn skip(&mut self) -> Result<(), serde_json::Error> {
        self.space();
        let mut depth = 0usize;
        loop {
            if depth > 0 {
                self.until(&IN_CONTAINER);
            }
            let Some(byte) = self.peek() else {
                return Err(self.error("unexpected end of JSON"));
            };
            self.at += 1;
            match byte {
                b'"' => self.string()?,
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth > 0 => depth -= 1,
                b'}' | b']' | b',' | b':' if depth == 0 => return Err(self.error("expected a value")),
                _ if depth == 0 => {
                    // A scalar: up to the next delimiter.
                    while !matches!(
                        self.peek(),
                        None | Some(b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
                    ) {
                        self.at += 1;
                    }
                }
                _ => {}
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }

    /// The value at `tokens` from here, consuming the whole value the walk is on.
    fn find(&mut self, tokens: &[&str]) -> Result<Option<Range<usize>>, serde_json::Error> {
        self.space();
        let Some((head, rest)) = tokens.split_first() else {
            let start = self.at;
            self.skip()?;
            return Ok(Some(start..self.at));
        };
        match self.peek() {
            Some(b'{') => self.find_member(head, rest),
            Some(b'[') => self.find_element(head, rest),
            _ => self.skip().map(|()| None),
        }
    }

    /// Past an opening bracket: `true`, past the closing one too, when the container is empty.
    fn empty(&mut self, close: u8) -> bool {
        self.at += 1;
        self.space();
        let empty = self.peek() == Some(close);
        if empty {
            self.at += 1;
        }
        empty
    }

    /// After a member or an element: `true` past the container's closing bracket, `false`
    /// past the comma before the next item.
    fn closed(&mut self, close: u8) -> Result<bool, serde_json::Error> {
        self.space();
        match self.peek() {
            Some(b',') => {
                self.at += 1;
                Ok(false)
            }
            Some(byte) if byte == close => {
                self.at += 1;
                Ok(true)
            }
            _ => Err(self.error(&format!("expected `,` or `{}`", close as char))),
        }
    }

    fn find_member(&mut self, head: &str, rest: &[&str]) -> Result<Option<Range<usize>>, serde_json::Error> {
        if self.empty(b'}') {
            return Ok(None);
        }
        loop {
            self.expect(b'"')?;
            let key_start = self.at;
            self.string()?;
            let raw = &self.bytes[key_start..self.at - 1];
            let matches = if raw.contains(&b'\\') {
                // Escaped key (rare): unescape it the way a parser would.
                let quoted = &self.bytes[key_start - 1..self.at];
                serde_json::from_slice::<String>(quoted)? == head
            } else {
                raw == head.as_bytes()
            };
            self.expect(b':')?;
            if matches {
                // Canonical text has each member once: nothing later can override this one.
                return self.find(rest);
            }
            self.skip()?;
            if self.closed(b'}')? {
                return Ok(None);
            }
        }
    }

    fn find_element(&mut self, head: &str, rest: &[&str]) -> Result<Option<Range<usize>>, serde_json::Error> {
        // RFC 6901: an index is digits without a leading zero; anything else finds nothing.
        let index = (head == "0" || !head.starts_with('0'))
            .then(|| head.parse::<usize>().ok())
            .flatten();
        if self.empty(b']') {
            return Ok(None);
        }
        for i in 0usize.. {
            if Some(i) == index {
                return self.find(rest);
            }
            self.skip()?;
            if self.closed(b']')? {
                break;
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_what_a_pointer_finds() {
        let value = json!({
            "apiVersion": "apps/v1",
            "metadata": {"name": "web", "labels": {"a/b": "1", "t~x": null}},
            "spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b", "ports": [1, 2]}]}}},
            "escaped\"key": {"x": [true, 1.5, -3]}
        });
        let text = value.to_string();
        let pointers = [
            "",
            "/metadata",
            "/metadata/labels",
            "/metadata/labels/a~1b",
            "/metadata/labels/t~0x",
            "/metadata/missing",
            "/spec/template/spec/containers/1/ports/1",
            "/spec/template/spec/containers/2",
            "/spec/template/spec/containers/01",
            "/spec/template/spec/containers/x",
            "/apiVersion/deeper",
            "/escaped\"key/x/2",
        ];
        for pointer in pointers {
            let tokens = tokens(pointer);
            let tokens: Vec<&str> = tokens.iter().map(|t| t.as_ref()).collect();
            let got = parse_at(&text, &tokens).expect("valid JSON");
            assert_eq!(got.as_ref(), value.pointer(pointer), "{pointer}");
            let span = span_at(&text, &tokens).expect("valid JSON");
            let at: Option<Value> = span.map(|r| serde_json::from_str(&text[r]).expect("a value"));
            assert_eq!(at.as_ref(), value.pointer(pointer), "{pointer}");
        }
    }

    #[test]
    fn the_walk_stops_at_the_member_and_bad_text_is_an_error() {
        // The host never repeats a member; the walk does not read past the one it finds.
        let text = r#"{"metadata": {"name": "a"}, "metadata": {"name": "b"}, "broken": }"#;
        assert_eq!(
            parse_at(text, &["metadata", "name"]).expect("valid"),
            Some(json!("a"))
        );
        assert!(parse_at(r#"{"metadata": {"name": }"#, &["metadata"]).is_err());
        assert!(parse_at(r#"{"a": "open}"#, &["a"]).is_err());
        assert!(parse_at(r#"{"a": [1, {"b": 2}}"#, &["a"]).is_err());
        assert!(parse_at(r#"{"b": [1, 2, "a": 1}"#, &["a"]).is_err());
        assert!(parse_at(r#"{"a" 1}"#, &["a"]).is_err());
        // Spaces, escapes and brackets inside strings do not confuse the walk.
        let text = " { \"s\" : \"a \\\" ] } [\" , \"k\\u0061\" : [ 1 , { \"x\" : [ ] } ] } ";
        assert_eq!(
            parse_at(text, &["ka", "1"]).expect("valid"),
            Some(json!({"x": []}))
        );
        assert_eq!(parse_at(text, &["s"]).expect("valid"), Some(json!("a \" ] } [")));
        assert!(parse_at("[1, 2", &["5"]).is_err());
    }
}
