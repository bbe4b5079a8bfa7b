//! Recognizes JSON text that is already the host's own encoding of the value it parses to.
//!
//! The host hands plugins its compact serialization of each object (`serde_json`, keys in
//! byte order, no whitespace). A transformer built on the SDK returns that text with a few
//! subtrees rewritten the same way, so its output is usually already exactly what the host
//! would write after parsing it. [`is_canonical`] proves that in one pass over the bytes,
//! and the render then gives that text to the next plugins instead of serializing the
//! parsed object again (2-3 ms per 1,000 changed objects).
//!
//! The check is conservative: it accepts only text that `serde_json::to_string` of
//! `serde_json::from_str` gives back byte for byte, and refuses anything it is unsure of
//! (floats, escaped keys, duplicate keys, over-deep nesting), which is then serialized as
//! before. Accepting a non-canonical text would show later validators something the host
//! reads differently (say, a duplicate key), so every rule here errs on refusing.

/// Deeper than `serde_json`'s own parse limit (128): such text never reaches the check.
const MAX_DEPTH: usize = 256;

/// Whether `text` is exactly `serde_json::to_string(&serde_json::from_str::<Value>(text)?)`
/// (with `serde_json`'s default map, ordered by key bytes). `false` for anything else,
/// including malformed JSON.
pub fn is_canonical(text: &str) -> bool {
    let mut scan = Scan {
        bytes: text.as_bytes(),
        at: 0,
    };
    scan.value(0) && scan.at == scan.bytes.len()
}

struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let matched = self.peek() == Some(byte);
        if matched {
            self.at += 1;
        }
        matched
    }

    fn value(&mut self, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().is_some(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.integer(),
            _ => false,
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let matched = self.bytes[self.at..].starts_with(word);
        if matched {
            self.at += word.len();
        }
        matched
    }

    /// Members with keys strictly increasing in byte order: a map serializes sorted, and a
    /// repeated key (which parsing would collapse) is refused.
    fn object(&mut self, depth: usize) -> bool {
        self.at += 1;
        if self.eat(b'}') {
            return true;
        }
        let mut previous: Option<&'a [u8]> = None;
        loop {
            // An escaped key would need unescaping to be ordered; keys never have them in
            // Kubernetes objects, so such an object is simply re-serialized.
            let Some((key, false)) = self.string() else {
                return false;
            };
            if previous.is_some_and(|p| p >= key) {
                return false;
            }
            previous = Some(key);
            if !self.eat(b':') || !self.value(depth + 1) {
                return false;
            }
            if self.eat(b'}') {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
        }
    }

    fn array(&mut self, depth: usize) -> bool {
        self.at += 1;
        if self.eat(b']') {
            return true;
        }
        loop {
            if !self.value(depth + 1) {
                return false;
            }
            if self.eat(b']') {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
        }
    }

    /// A string with only the escapes `serde_json` writes: `\"`, `\\`, the five short
    /// control escapes, and `\u00xx` (lower-case hex) for the other control characters.
    /// Returns the raw bytes between the quotes and whether any escape was seen.
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.at;
        let mut escaped = false;
        loop {
            let byte = self.peek()?;
            self.at += 1;
            match byte {
                b'"' => return Some((&self.bytes[start..self.at - 1], escaped)),
                b'\\' => {
                    escaped = true;
                    let kind = self.peek()?;
                    self.at += 1;
                    match kind {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let digits = self.bytes.get(self.at..self.at + 4)?;
                            self.at += 4;
                            let [b'0', b'0', high @ (b'0' | b'1'), low] = *digits else {
                                return None;
                            };
                            let low = match low {
                                b'0'..=b'9' => low - b'0',
                                b'a'..=b'f' => low - b'a' + 10,
                                _ => return None,
                            };
                            let code = (high - b'0') * 16 + low;
                            // These five have short escapes, which serde_json writes instead.
                            if matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                        }
                        _ => return None,
                    }
                }
                // Raw control characters are not JSON; everything else (UTF-8 included) is
                // written as it is.
                0x00..=0x1f => return None,
                _ => {}
            }
        }
    }

    /// Integers as `serde_json` writes an `i64` or `u64`: no leading zero, no `-0`, in range.
    /// Any fraction or exponent is refused (a float's shortest form is not checked here).
    fn integer(&mut self) -> bool {
        let start = self.at;
        let negative = self.eat(b'-');
        let digits = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        let text = &self.bytes[digits..self.at];
        if text.is_empty() || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return false;
        }
        if text.len() > 1 && text[0] == b'0' {
            return false;
        }
        // ASCII digits, so the slice is a str.
        let Ok(number) = std::str::from_utf8(&self.bytes[start..self.at]) else {
            return false;
        };
        if negative {
            text != b"0" && number.parse::<i64>().is_ok()
        } else {
            number.parse::<u64>().is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_canonical;
    use serde_json::Value;

    /// The property the render relies on: whatever is accepted re-serializes to itself.
    fn holds(text: &str) -> bool {
        let accepted = is_canonical(text);
        if accepted {
            let value: Value = serde_json::from_str(text).expect("accepted text parses");
            assert_eq!(
                serde_json::to_string(&value).expect("serializes"),
                text,
                "accepted {text:?}"
            );
        }
        accepted
    }

    /// Every object of the real-world corpus (`KITSYNC_CORPUS`) and of the bundled examples,
    /// as the host encodes it, is accepted unless it holds a float.
    #[test]
    fn the_hosts_own_encoding_is_accepted() {
        let (mut accepted, mut floats) = (0, 0);
        for file in crate::manifest::tests::example_and_corpus_files() {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let name = file.display().to_string();
            for object in crate::manifest::parse(&name, &text).unwrap_or_default() {
                let encoded = object.value.to_string();
                if has_float(&object.value) {
                    floats += 1;
                    continue;
                }
                assert!(holds(&encoded), "{name}: {encoded}");
                accepted += 1;
            }
        }
        assert!(
            accepted > 10,
            "only {accepted} objects were checked ({floats} with floats)"
        );
    }

    fn has_float(value: &Value) -> bool {
        match value {
            Value::Number(n) => n.is_f64(),
            Value::Array(items) => items.iter().any(has_float),
            Value::Object(map) => map.values().any(has_float),
            _ => false,
        }
    }

    #[test]
    fn canonical_samples_are_accepted() {
        for text in [
            r#"{}"#,
            r#"[]"#,
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
            r#"{"A":1,"B":2,"a":3}"#,
            r#"{"":0,"a":-9223372036854775808,"b":18446744073709551615}"#,
            r#"{"s":"tab\tnl\nquote\"back\\bell\u0007 é ✓ \u001f"}"#,
            "{\"s\":\"del \u{7f} /slash\"}",
            r#"{"a":{"a":{"a":[[[[]]]]}}}"#,
        ] {
            assert!(holds(text), "{text}");
        }
    }

    #[test]
    fn anything_the_host_would_write_differently_is_refused() {
        for text in [
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"a":1}"#,
            r#"{"\u0061":1}"#,
            r#"{"a\"":1,"b":2}"#,
            r#"{ "a":1}"#,
            r#"{"a" :1}"#,
            r#"{"a":1 }"#,
            "{\"a\":1}\n",
            r#" {}"#,
            r#"{"s":"\/"}"#,
            r#"{"s":"\u00e9"}"#,
            r#"{"s":"\u001F"}"#,
            r#"{"s":"\u0009"}"#,
            r#"{"s":"\u000a"}"#,
            r#"{"s":"\ud83d\ude00"}"#,
            r#"{"n":1.0}"#,
            r#"{"n":1.5}"#,
            r#"{"n":1e3}"#,
            r#"{"n":1E3}"#,
            r#"{"n":-0}"#,
            r#"{"n":01}"#,
            r#"{"n":18446744073709551616}"#,
            r#"{"n":-9223372036854775809}"#,
            r#"{"n":-}"#,
            r#"{"a":tru}"#,
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"{"a":1"#,
            r#"{"a":"x"#,
            r#"{}{}"#,
            r#""#,
            "{\"s\":\"raw\ttab\"}",
        ] {
            assert!(!holds(text), "accepted {text}");
        }
    }

    #[test]
    fn nesting_past_the_limit_is_refused_not_overflowed() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(!is_canonical(&deep));
    }
}
