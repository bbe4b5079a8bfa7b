//! Building RFC 6901 JSON pointers.

use std::borrow::Cow;
use std::fmt;

/// Escapes one reference token: `~` becomes `~0` and `/` becomes `~1`.
///
/// ```
/// assert_eq!(kitsync_plugin::escape_token("app.kubernetes.io/name"), "app.kubernetes.io~1name");
/// ```
pub fn escape_token(token: &str) -> Cow<'_, str> {
    if token.contains(['~', '/']) {
        Cow::Owned(token.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(token)
    }
}

/// An RFC 6901 JSON pointer under construction.
///
/// ```
/// use kitsync_plugin::Pointer;
/// let p = Pointer::root().key("metadata").key("labels").key("app.kubernetes.io/name");
/// assert_eq!(p.as_str(), "/metadata/labels/app.kubernetes.io~1name");
/// let p = Pointer::parse("/spec/ports").index(0).key("port");
/// assert_eq!(p.to_string(), "/spec/ports/0/port");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pointer(String);

impl Pointer {
    /// The empty pointer, which refers to the whole document.
    pub fn root() -> Self {
        Self(String::new())
    }

    /// Wraps an already-escaped pointer such as `/spec/template/spec`.
    pub fn parse(pointer: impl Into<String>) -> Self {
        Self(pointer.into())
    }

    /// Appends an object key (escaped).
    #[must_use]
    pub fn key(mut self, key: &str) -> Self {
        self.0.push('/');
        self.0.push_str(&escape_token(key));
        self
    }

    /// Appends an array index.
    #[must_use]
    pub fn index(mut self, index: usize) -> Self {
        self.0.push('/');
        self.0.push_str(&index.to_string());
        self
    }

    /// The pointer text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pointer text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Pointer> for String {
    fn from(p: Pointer) -> Self {
        p.0
    }
}

impl From<&Pointer> for String {
    fn from(p: &Pointer) -> Self {
        p.0.clone()
    }
}

impl AsRef<str> for Pointer {
    fn as_ref(&self) -> &str {
        &self.0
    }
}
