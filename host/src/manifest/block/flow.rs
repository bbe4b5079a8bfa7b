//! One-line flow collections (`{cpu: 500m}`, `[a, b]`) in the fast reader.

use serde_json::{Map, Value};

use super::{GiveUp, Reader, Step};

impl<'a> Reader<'a> {
    /// A flow collection on one line, starting at `*pos` (`[` or `{`); `*pos` ends after it.
    pub(super) fn flow(&mut self, pos: &mut usize, end: usize) -> Step<Value> {
        let open = self.text.as_bytes()[*pos];
        let close = if open == b'[' { b']' } else { b'}' };
        self.enter()?;
        *pos += 1;
        let mut items = Vec::new();
        let mut map = Map::new();
        self.flow_blanks(pos, end)?;
        if self.text.as_bytes().get(*pos) == Some(&close) && *pos < end {
            *pos += 1;
        } else {
            loop {
                if open == b'{' {
                    let key_start = *pos;
                    let (key, quoted) = self.flow_scalar_text(pos, end)?;
                    if *pos - key_start > super::MAX_KEY_BYTES {
                        return Err(GiveUp);
                    }
                    if !quoted {
                        self.key(&key)?;
                    } else {
                        self.scalar_node(key.len())?;
                    }
                    // `key: value`, with a blank after the colon.
                    if *pos + 1 >= end
                        || self.text.as_bytes()[*pos] != b':'
                        || self.text.as_bytes()[*pos + 1] != b' '
                    {
                        return Err(GiveUp);
                    }
                    *pos += 1;
                    self.flow_blanks(pos, end)?;
                    let value = self.flow_item(pos, end)?;
                    if map.insert(key, value).is_some() {
                        return Err(GiveUp);
                    }
                } else {
                    let value = self.flow_item(pos, end)?;
                    if self.text.as_bytes().get(*pos) == Some(&b':') {
                        // `[a: b]`: a single-pair mapping in a sequence.
                        return Err(GiveUp);
                    }
                    items.push(value);
                }
                self.flow_blanks(pos, end)?;
                match self.text.as_bytes().get(*pos) {
                    Some(&b) if b == close && *pos < end => {
                        *pos += 1;
                        break;
                    }
                    Some(b',') if *pos < end => {
                        *pos += 1;
                        self.flow_blanks(pos, end)?;
                        if *pos >= end || matches!(self.text.as_bytes()[*pos], b',' | b']' | b'}') {
                            // Trailing or empty entries.
                            return Err(GiveUp);
                        }
                    }
                    _ => return Err(GiveUp),
                }
            }
        }
        self.leave();
        Ok(if open == b'[' {
            Value::Array(items)
        } else {
            Value::Object(map)
        })
    }

    fn flow_blanks(&self, pos: &mut usize, end: usize) -> Step<()> {
        while *pos < end && self.text.as_bytes()[*pos] == b' ' {
            *pos += 1;
        }
        if *pos < end && matches!(self.text.as_bytes()[*pos], b'\t' | b'#') {
            return Err(GiveUp);
        }
        Ok(())
    }

    /// A value inside a flow collection: a nested collection, a quoted or a plain scalar.
    fn flow_item(&mut self, pos: &mut usize, end: usize) -> Step<Value> {
        if *pos >= end {
            return Err(GiveUp);
        }
        match self.text.as_bytes()[*pos] {
            b'[' | b'{' => self.flow(pos, end),
            b'"' | b'\'' => {
                let (text, after) = self.quoted(*pos, end)?;
                *pos = after;
                self.scalar_node(text.len())?;
                Ok(Value::String(text))
            }
            _ => {
                let text = self.flow_plain(pos, end)?;
                self.plain(text)
            }
        }
    }

    /// A key inside a flow mapping: its text and whether it was quoted.
    fn flow_scalar_text(&mut self, pos: &mut usize, end: usize) -> Step<(String, bool)> {
        if *pos >= end {
            return Err(GiveUp);
        }
        match self.text.as_bytes()[*pos] {
            b'"' | b'\'' => {
                let (text, after) = self.quoted(*pos, end)?;
                *pos = after;
                Ok((text, true))
            }
            b'[' | b'{' => Err(GiveUp),
            _ => Ok((self.flow_plain(pos, end)?.to_owned(), false)),
        }
    }

    /// A plain scalar inside a flow collection: it ends at `,`, a bracket, or `: `.
    fn flow_plain(&self, pos: &mut usize, end: usize) -> Step<&'a str> {
        let bytes = self.text.as_bytes();
        let start = *pos;
        match bytes[start] {
            b'-' | b'?' | b':'
                if start + 1 == end || matches!(bytes[start + 1], b' ' | b',' | b']' | b'}') =>
            {
                return Err(GiveUp);
            }
            b'?' | b':' | b',' | b']' | b'}' | b'&' | b'*' | b'!' | b'%' | b'@' | b'`' | b'|' | b'>'
            | b'#' => {
                return Err(GiveUp);
            }
            _ => {}
        }
        let mut i = start;
        while i < end {
            match bytes[i] {
                b',' | b']' | b'}' => break,
                b'[' | b'{' | b'\t' => return Err(GiveUp),
                b':' if i + 1 == end || matches!(bytes[i + 1], b' ' | b',' | b']' | b'}' | b'[' | b'{') => {
                    break;
                }
                b'#' if bytes[i - 1] == b' ' => return Err(GiveUp),
                _ => {}
            }
            i += 1;
        }
        if i == end {
            // The collection goes on to the next line.
            return Err(GiveUp);
        }
        *pos = i;
        let text = self.text[start..i].trim_end_matches(' ');
        if text.is_empty() {
            return Err(GiveUp);
        }
        Ok(text)
    }
}
