//! Scalars of the fast reader: plain, quoted and block scalars, and how a plain scalar is
//! typed.

use serde_json::{Map, Value};

use super::{GiveUp, KitBudget, Reader, Step, certainly_text};

impl<'a> Reader<'a> {
    /// A plain scalar in block context, `start..end` on one line, without a trailing
    /// comment and blanks.
    pub(super) fn block_plain(&mut self, start: usize, end: usize) -> Step<&'a str> {
        let bytes = self.text.as_bytes();
        match bytes[start] {
            b'-' | b'?' | b':' if start + 1 == end || matches!(bytes[start + 1], b' ' | b'\t') => {
                return Err(GiveUp);
            }
            b'?' | b':' | b',' | b']' | b'}' | b'&' | b'*' | b'!' | b'%' | b'@' | b'`' => return Err(GiveUp),
            _ => {}
        }
        let mut stop = end;
        let mut i = start;
        while i < end {
            match bytes[i] {
                // `a: b: c` is not valid YAML.
                b':' if i + 1 == end || matches!(bytes[i + 1], b' ' | b'\t') => return Err(GiveUp),
                b'#' if matches!(bytes[i - 1], b' ' | b'\t') => {
                    self.events(1)?;
                    stop = i;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        Ok(self.text[start..stop].trim_end_matches([' ', '\t']))
    }

    /// A plain scalar's value: text, or typed as serde-saphyr types it.
    pub(super) fn plain(&mut self, text: &'a str) -> Step<Value> {
        self.scalar_node(text.len())?;
        match text {
            "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
            _ => {}
        }
        if certainly_text(text) {
            return Ok(Value::String(text.to_owned()));
        }
        if let Some(number) = decimal(text) {
            return Ok(number);
        }
        if let Some(value) = self.typed.get(text) {
            return Ok(value.clone());
        }
        let value = type_plain(text)?;
        self.typed.insert(text, value.clone());
        Ok(value)
    }

    /// A quoted scalar starting at `start` and closing on the same line: its text and the
    /// offset after the closing quote.
    pub(super) fn quoted(&self, start: usize, end: usize) -> Step<(String, usize)> {
        let bytes = self.text.as_bytes();
        let quote = bytes[start];
        let mut out = String::new();
        let mut run = start + 1;
        let mut i = start + 1;
        while i < end {
            let b = bytes[i];
            if b == quote {
                if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                    out.push_str(&self.text[run..=i]);
                    i += 2;
                    run = i;
                    continue;
                }
                out.push_str(&self.text[run..i]);
                return Ok((out, i + 1));
            }
            if quote == b'"' && b == b'\\' {
                out.push_str(&self.text[run..i]);
                let (c, len) = escape(&self.text[i + 1..end]).ok_or(GiveUp)?;
                out.push(c);
                i += 1 + len;
                run = i;
                continue;
            }
            if b == b'\t' {
                // Tabs are fine inside a quoted scalar, but folding rules around them are
                // not worth getting wrong here.
                return Err(GiveUp);
            }
            i += 1;
        }
        // The scalar goes on to the next line (folded): serde-saphyr reads it.
        Err(GiveUp)
    }

    /// A literal (`|`) or folded (`>`) block scalar whose header is at `start`; `indent` is
    /// the parent collection's. Its content lines are more indented than that.
    pub(super) fn block_scalar(&mut self, start: usize, end: usize, indent: usize) -> Step<Value> {
        let bytes = self.text.as_bytes();
        let literal = bytes[start] == b'|';
        let mut i = start + 1;
        let chomp = match bytes.get(i) {
            Some(b'-') if i < end => {
                i += 1;
                Chomp::Strip
            }
            Some(b'+') if i < end => {
                i += 1;
                Chomp::Keep
            }
            _ => Chomp::Clip,
        };
        // An indentation indicator, or the indicators the other way round: rare.
        if i < end && !matches!(bytes[i], b' ') {
            return Err(GiveUp);
        }
        self.rest_of_line(i, end)?;
        self.next_line(end);

        // Leading empty lines, then the first content line sets the indentation.
        let mut leading = 0usize;
        let mut widest_leading = 0usize;
        let content_indent = loop {
            if self.pos >= bytes.len() {
                return Err(GiveUp);
            }
            let line_end = self.line_end(self.pos);
            let line = &bytes[self.pos..line_end];
            let spaces = line.iter().take_while(|&&b| b == b' ').count();
            if spaces == line.len() {
                leading += 1;
                widest_leading = widest_leading.max(spaces);
                if line_end == bytes.len() {
                    return Err(GiveUp);
                }
                self.next_line(line_end);
                continue;
            }
            if line[spaces] == b'\t' || spaces <= indent {
                // Tabs before content, or an empty scalar: serde-saphyr reads these.
                return Err(GiveUp);
            }
            break spaces;
        };
        if widest_leading > content_indent {
            return Err(GiveUp);
        }

        let mut out = String::new();
        for _ in 0..leading {
            out.push('\n');
        }
        // Empty lines seen since the last content line (not yet written).
        let mut empty = 0usize;
        let mut any_content = false;
        while self.pos < bytes.len() {
            let line_end = self.line_end(self.pos);
            let line = &bytes[self.pos..line_end];
            let spaces = line.iter().take_while(|&&b| b == b' ').count();
            let blank = spaces == line.len();
            if blank && spaces <= content_indent {
                if line_end == bytes.len() {
                    // The text ends in blanks without a final line break.
                    return Err(GiveUp);
                }
                empty += 1;
                self.next_line(line_end);
                continue;
            }
            if spaces < content_indent {
                if line[spaces] == b'\t' {
                    return Err(GiveUp);
                }
                break;
            }
            if line_end == bytes.len() {
                // The last line has no line break: chomping it is not worth the care.
                return Err(GiveUp);
            }
            let content = &self.text[self.pos + content_indent..line_end];
            if literal {
                for _ in 0..empty {
                    out.push('\n');
                }
                out.push_str(content);
                out.push('\n');
            } else {
                if matches!(content.as_bytes().first(), Some(b' ' | b'\t')) || blank {
                    // More-indented lines are not folded; serde-saphyr knows the rules.
                    return Err(GiveUp);
                }
                if any_content {
                    if empty == 0 {
                        // Folding: the line break between two lines becomes a space.
                        out.pop();
                        out.push(' ');
                    } else {
                        // The first break is dropped; each empty line is one.
                        out.pop();
                        for _ in 0..empty {
                            out.push('\n');
                        }
                    }
                } else {
                    for _ in 0..empty {
                        out.push('\n');
                    }
                }
                out.push_str(content);
                out.push('\n');
            }
            any_content = true;
            empty = 0;
            self.next_line(line_end);
        }
        match chomp {
            Chomp::Clip => {}
            Chomp::Strip => {
                out.pop();
            }
            Chomp::Keep => {
                for _ in 0..empty {
                    out.push('\n');
                }
            }
        }
        self.scalar_node(out.len())?;
        Ok(Value::String(out))
    }
}

#[derive(Clone, Copy)]
enum Chomp {
    Clip,
    Strip,
    Keep,
}

/// The character a double-quoted escape stands for, from the text after the `\`, and how
/// many bytes of that text it took; `None` for escapes left to serde-saphyr.
fn escape(rest: &str) -> Option<(char, usize)> {
    let bytes = rest.as_bytes();
    let simple = match bytes.first()? {
        b'\\' => '\\',
        b'"' => '"',
        b'/' => '/',
        b'n' => '\n',
        b't' => '\t',
        b'r' => '\r',
        b'0' => '\0',
        b'x' => return hex(rest, 2),
        b'u' => return hex(rest, 4),
        b'U' => return hex(rest, 8),
        _ => return None,
    };
    Some((simple, 1))
}

fn hex(rest: &str, digits: usize) -> Option<(char, usize)> {
    let code = rest.get(1..1 + digits)?;
    if !code.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let c = char::from_u32(u32::from_str_radix(code, 16).ok()?)?;
    Some((c, 1 + digits))
}

/// `0`, `[1-9][0-9]*` or `-[1-9][0-9]*` within 64 bits: an integer, as serde-saphyr reads it.
fn decimal(text: &str) -> Option<Value> {
    let bytes = text.as_bytes();
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let first = *digits.first()?;
    if !digits.iter().all(u8::is_ascii_digit) || (first == b'0' && digits.len() > 1) {
        return None;
    }
    if bytes.len() != digits.len() {
        if first == b'0' {
            return None;
        }
        return text.parse::<i64>().ok().map(Value::from);
    }
    text.parse::<u64>().ok().map(Value::from)
}

/// Types a plain scalar that may not be text (`0644`, `1.10`, `+1`, `.inf`) the way
/// serde-saphyr does, by asking it.
fn type_plain(text: &str) -> Step<Value> {
    let document = format!("k: {text}\n");
    let parsed: Map<String, Value> =
        serde_saphyr::from_str_with_options(&document, super::super::options(&KitBudget::default()))
            .map_err(|_| GiveUp)?;
    parsed.get("k").cloned().ok_or(GiveUp)
}
