//! Reading one part of an object's JSON text without building the rest.
//!
//! Building a [`Value`] is most of what a plugin spends on a kit (every string and map
//! allocated, then freed); a policy usually reads a few fields. [`parse_at`] walks the text
//! along a JSON pointer's tokens, skipping every other member without allocating, and builds
//! only the value at the end. Skipping still checks the text is well-formed JSON up to the
//! point the walk stops.

use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// The value at `tokens` (unescaped RFC 6901 reference tokens) in the JSON `text`, or `None`
/// when the path is absent (a missing member, an index past the end, a scalar on the way).
/// `Some(Value::Null)` means the member is present and null.
///
/// # Errors
/// The text is not valid JSON (as far as the walk read it).
pub fn parse_at(text: &str, tokens: &[&str]) -> Result<Option<Value>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    Path { tokens, leaf: Build }.deserialize(&mut deserializer)
}

/// Where the value at `tokens` is in `text` (byte range of its JSON text), or `None` when the
/// path is absent; for changing one part of an object without rebuilding the rest.
///
/// # Errors
/// The text is not valid JSON (as far as the walk read it).
pub(crate) fn span_at(text: &str, tokens: &[&str]) -> Result<Option<Range<usize>>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let found = Path { tokens, leaf: Locate }.deserialize(&mut deserializer)?;
    Ok(found.map(|raw| {
        // The raw value borrows from `text`: its place is its address's distance from the start.
        let start = (raw.get().as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
        start..start + raw.get().len()
    }))
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

/// What to do at the end of a path.
trait Leaf<'de>: Copy {
    type Out;
    fn take<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Out, D::Error>;
}

/// Build the value.
#[derive(Clone, Copy)]
struct Build;

impl<'de> Leaf<'de> for Build {
    type Out = Value;
    fn take<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }
}

/// Borrow the value's text.
#[derive(Clone, Copy)]
struct Locate;

impl<'de> Leaf<'de> for Locate {
    type Out = &'de RawValue;
    fn take<D: Deserializer<'de>>(self, deserializer: D) -> Result<&'de RawValue, D::Error> {
        <&RawValue>::deserialize(deserializer)
    }
}

/// Deserializes the value at the end of a path, skipping everything else.
struct Path<'p, L> {
    tokens: &'p [&'p str],
    leaf: L,
}

impl<'de, L: Leaf<'de>> DeserializeSeed<'de> for Path<'_, L> {
    type Value = Option<L::Out>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        match self.tokens.split_first() {
            None => self.leaf.take(deserializer).map(Some),
            Some((head, rest)) => deserializer.deserialize_any(Step {
                head,
                rest,
                leaf: self.leaf,
            }),
        }
    }
}

/// One step of a path: a member name, or an array index.
struct Step<'p, L> {
    head: &'p str,
    rest: &'p [&'p str],
    leaf: L,
}

/// Whether a map key equals the wanted token, without allocating for keys that do not.
struct KeyIs<'p>(&'p str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

impl<'de, L: Leaf<'de>> Visitor<'de> for Step<'_, L> {
    type Value = Option<L::Out>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(matches) = map.next_key_seed(KeyIs(self.head))? {
            if matches {
                // A repeated member: the last one wins, as when a whole value is built.
                found = map.next_value_seed(Path {
                    tokens: self.rest,
                    leaf: self.leaf,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // RFC 6901: an index is digits without a leading zero; anything else finds nothing.
        let index = (self.head == "0" || !self.head.starts_with('0'))
            .then(|| self.head.parse::<usize>().ok())
            .flatten();
        let mut found = None;
        let mut i = 0usize;
        loop {
            if Some(i) == index {
                match seq.next_element_seed(Path {
                    tokens: self.rest,
                    leaf: self.leaf,
                })? {
                    Some(value) => found = value,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
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
    fn the_last_of_repeated_members_wins_and_bad_text_is_an_error() {
        let text = r#"{"metadata": {"name": "a"}, "metadata": {"name": "b"}}"#;
        assert_eq!(
            parse_at(text, &["metadata", "name"]).expect("valid"),
            Some(json!("b"))
        );
        assert!(parse_at(r#"{"metadata": {"name": }"#, &["metadata"]).is_err());
        assert!(parse_at("[1, 2", &["5"]).is_err());
    }
}
