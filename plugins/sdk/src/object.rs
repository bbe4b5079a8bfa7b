//! One Kubernetes object as a plugin sees it, read from the host's JSON text only as far as
//! the plugin looks.
//!
//! The host sends every object of a kit as JSON text. Parsing all of it into [`Value`]s was
//! most of a validator's time (a few ms per 1,000 objects, then as long again to free them),
//! while a policy reads a few fields of a few kinds. So an [`Object`] keeps the text and
//! parses on demand: [`Object::labels`] and other reads under `/metadata` build only the
//! metadata, [`Object::containers`] and reads under the pod spec build only the pod spec,
//! [`Object::parse`] deserializes a typed (and borrowing) view, and [`Object::value`] builds
//! the whole value once. [`Object::value_mut`] makes the object owned: from then on it is
//! serialized from its value, and before that a transformer returns the host's text as it was.

use std::cell::{OnceCell, RefCell};
use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::bindings::types as wit;
use crate::subtree::parse_at;
use crate::workload::pod_spec_pointer;
use crate::{ObjectRef, Origin, PluginError};

thread_local! {
    /// The first object whose text turned out not to be a JSON object when it was read. The
    /// export glue turns it into `invalid-input` after the plugin's call, whatever the plugin
    /// returned, so a lazy read never needs to fail in the plugin's own code.
    static INPUT_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Forgets an earlier call's input error (a component instance serves one call, but tests
/// call the glue many times in one process).
pub(crate) fn reset_input_error() {
    INPUT_ERROR.with(|e| e.borrow_mut().take());
}

/// The first input error recorded since [`reset_input_error`].
pub(crate) fn take_input_error() -> Option<String> {
    INPUT_ERROR.with(|e| e.borrow_mut().take())
}

fn record_input_error(message: String) {
    INPUT_ERROR.with(|e| {
        e.borrow_mut().get_or_insert(message);
    });
}

/// One Kubernetes object.
///
/// Read it with [`Object::pointer`], [`Object::labels`], [`Object::containers`] and the
/// like, or with [`Object::parse`] into a struct of only the fields a policy needs; change it
/// with [`Object::value_mut`]. Reads parse the host's text lazily (see the module docs).
#[derive(Clone)]
pub struct Object {
    /// Identity. For objects the host sent, this is the host's record; for
    /// objects a transformer returns, the SDK recomputes it from the JSON.
    pub id: ObjectRef,
    /// Where the object was read from; `None` for objects a plugin creates.
    pub origin: Option<Origin>,
    /// The host's JSON text, while it is still what the object says: dropped by the first
    /// mutable access.
    text: Option<String>,
    /// The whole value, built from `text` on first use.
    parsed: OnceCell<Value>,
    /// The value after a mutable access (or as created): the object's content from then on.
    owned: Option<Value>,
    /// Parts built alone from `text`, one per [`Part`] (outer `None`: not read yet; inner:
    /// absent from the object).
    parts: [OnceCell<Option<Value>>; PARTS],
    /// The identity the host sent, while `text` still says the same: an object returned with
    /// it needs no scan of its text for its identity.
    sent_id: Option<ObjectRef>,
}

/// The parts of an object a policy commonly reads, each built alone when read before the
/// whole value is. Labels and annotations have their own, so reading the labels does not
/// build, say, a large `kubectl.kubernetes.io/last-applied-configuration` annotation.
#[derive(Clone, Copy)]
enum Part {
    Labels,
    Annotations,
    Metadata,
    PodSpec,
}

const PARTS: usize = 4;

impl Part {
    /// The part holding `pointer` (most specific first) and the rest of the pointer below it.
    fn of<'p>(pointer: &'p str, kind: &str) -> Option<(Part, &'static str, &'p str)> {
        let fixed = [
            (Part::Labels, "/metadata/labels"),
            (Part::Annotations, "/metadata/annotations"),
            (Part::Metadata, "/metadata"),
        ];
        let pod_spec = pod_spec_pointer(kind).map(|p| (Part::PodSpec, p));
        fixed
            .into_iter()
            .chain(pod_spec)
            .find_map(|(part, prefix)| Some((part, prefix, strip(pointer, prefix)?)))
    }
}

impl Object {
    /// Creates an object from its JSON value, deriving the identity from it.
    /// The origin is `None` (a newly created object).
    pub fn new(value: Value) -> Result<Self, PluginError> {
        let id = ObjectRef::from_value(&value)?;
        Ok(Self {
            id,
            origin: None,
            text: None,
            parsed: OnceCell::new(),
            owned: Some(value),
            parts: Default::default(),
            sent_id: None,
        })
    }

    /// Sets the origin (builder style; handy in tests).
    #[must_use]
    pub fn with_origin(mut self, file: impl Into<String>, document: u32) -> Self {
        self.origin = Some(Origin {
            file: file.into(),
            document,
        });
        self
    }

    /// Recomputes [`Object::id`] from the JSON.
    pub fn refresh_id(&mut self) -> Result<(), PluginError> {
        self.id = ObjectRef::from_value(self.value())?;
        Ok(())
    }

    /// `kind` of the object.
    pub fn kind(&self) -> &str {
        &self.id.kind
    }

    /// `metadata.name` of the object.
    pub fn name(&self) -> &str {
        &self.id.name
    }

    /// Whether the object matches any of the kind selectors (see
    /// [`ObjectRef::matches_kind`]). An empty list matches every object.
    pub fn matches_any_kind<S: AsRef<str>>(&self, selectors: &[S]) -> bool {
        selectors.is_empty() || selectors.iter().any(|s| self.id.matches_kind(s.as_ref()))
    }

    /// The whole object, built from the host's text on first use.
    ///
    /// Reading a part ([`Object::pointer`], [`Object::labels`], [`Object::containers`],
    /// [`Object::parse`]) is cheaper: prefer those when a policy needs a few fields.
    pub fn value(&self) -> &Value {
        match &self.owned {
            Some(value) => value,
            None => self.parsed.get_or_init(|| self.parse_whole()),
        }
    }

    /// The whole object, for changing it. From here on the object is serialized from this
    /// value when a transformer returns it.
    pub fn value_mut(&mut self) -> &mut Value {
        let value = match self.owned.take() {
            Some(value) => value,
            None => self.parsed.take().unwrap_or_else(|| self.parse_whole()),
        };
        self.text = None;
        self.parts = Default::default();
        self.owned.insert(value)
    }

    /// Changes the value at `pointer` (RFC 6901) with `change`, building only that value while
    /// the object is still the host's text: the rest of the text is kept as it is and the new
    /// value is written in its place. Returns `None`, calling nothing, when nothing is at
    /// `pointer`; use [`Object::value_mut`] to create what is missing.
    ///
    /// A transformer that adds a label this way spends a fraction of what building and
    /// serializing the whole object costs.
    ///
    /// ```
    /// # use kitsync_plugin::Object;
    /// # let mut object = Object::new(serde_json::json!({"apiVersion": "v1", "kind": "Service",
    /// #     "metadata": {"name": "web"}})).unwrap();
    /// object.edit("/metadata", |metadata| {
    ///     metadata["labels"]["team"] = "shop".into();
    /// });
    /// assert_eq!(object.pointer("/metadata/labels/team"), Some(&"shop".into()));
    /// ```
    pub fn edit<R>(&mut self, pointer: &str, change: impl FnOnce(&mut Value) -> R) -> Option<R> {
        let text = match (&mut self.text, &self.owned, self.parsed.get()) {
            (Some(text), None, None) => text,
            _ => return self.value_mut().pointer_mut(pointer).map(change),
        };
        let tokens = crate::subtree::tokens(pointer);
        let tokens: Vec<&str> = tokens.iter().map(|t| t.as_ref()).collect();
        let span = match crate::subtree::span_at(text, &tokens) {
            Ok(span) => span?,
            Err(e) => {
                self.bad_text(&format!("not valid JSON: {e}"));
                return None;
            }
        };
        let mut value: Value = match text.get(span.clone()).map(serde_json::from_str) {
            Some(Ok(value)) => value,
            _ => return self.value_mut().pointer_mut(pointer).map(change),
        };
        let result = change(&mut value);
        text.replace_range(span, &encode(&value));
        // What was read from the old text is stale, and so is the identity if the edit could
        // have reached it.
        self.parts = Default::default();
        let keeps_identity = match pointer {
            "/metadata" => self.sent_id.as_ref().is_some_and(|sent| {
                value.get("name").and_then(Value::as_str) == Some(sent.name.as_str())
                    && match value.get("namespace") {
                        None | Some(Value::Null) => sent.namespace.is_none(),
                        Some(Value::String(ns)) if ns.is_empty() => sent.namespace.is_none(),
                        Some(Value::String(ns)) => sent.namespace.as_deref() == Some(ns.as_str()),
                        Some(_) => false,
                    }
            }),
            "" => false,
            p => !["/apiVersion", "/kind", "/metadata/name", "/metadata/namespace"]
                .iter()
                .any(|field| strip(p, field).is_some()),
        };
        if !keeps_identity {
            self.sent_id = None;
        }
        Some(result)
    }

    /// The whole object, owned.
    pub fn into_value(mut self) -> Value {
        std::mem::take(self.value_mut())
    }

    /// The object as JSON text: the host's text while the object is unchanged.
    pub fn json(&self) -> std::borrow::Cow<'_, str> {
        match (&self.text, &self.owned) {
            (Some(text), None) => std::borrow::Cow::Borrowed(text),
            _ => std::borrow::Cow::Owned(encode(self.value())),
        }
    }

    /// Deserializes the object into `T`, typically a struct of only the fields a policy
    /// reads (unknown fields are skipped without being built). With `#[serde(borrow)]`,
    /// `&str` and `Cow<str>` fields borrow from the object's text.
    ///
    /// ```
    /// # use kitsync_plugin::Object;
    /// #[derive(serde::Deserialize)]
    /// struct Replicas { spec: Spec }
    /// #[derive(serde::Deserialize)]
    /// struct Spec { replicas: Option<u32> }
    /// # let object = Object::new(serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
    /// #     "metadata": {"name": "web"}, "spec": {"replicas": 3}})).unwrap();
    /// let replicas = object.parse::<Replicas>()?.spec.replicas;
    /// # assert_eq!(replicas, Some(3));
    /// # Ok::<(), kitsync_plugin::PluginError>(())
    /// ```
    ///
    /// # Errors
    /// [`PluginError::InvalidInput`] naming the object when its JSON does not have the shape
    /// `T` asks for.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, PluginError> {
        let result = match (&self.text, &self.owned, self.parsed.get()) {
            (Some(text), None, None) => serde_json::from_str(text),
            _ => T::deserialize(self.value()),
        };
        result.map_err(|e| PluginError::InvalidInput(format!("{}: {e}", self.describe())))
    }

    /// Looks up a value by RFC 6901 JSON pointer. Under `/metadata/labels`,
    /// `/metadata/annotations`, `/metadata` and a workload's pod spec, only that part of the
    /// object is built (unless the whole value already is).
    pub fn pointer(&self, pointer: &str) -> Option<&Value> {
        match Part::of(pointer, self.kind()) {
            Some((part, prefix, rest)) if !self.whole_is_built() => self.part(part, prefix)?.pointer(rest),
            _ => self.value().pointer(pointer),
        }
    }

    /// The value at `pointer` (RFC 6901), owned, built alone from the host's text unless the
    /// whole object already is: for a part outside those [`Object::pointer`] builds alone
    /// (a Service's `/spec/ports`), read once. `None` when nothing is there; text that does
    /// not read is reported like any bad object ([`PluginError::InvalidInput`]).
    pub fn read(&self, pointer: &str) -> Option<Value> {
        if self.whole_is_built() {
            return self.value().pointer(pointer).cloned();
        }
        self.read_part(pointer)
    }

    /// `metadata.labels`, if present and an object.
    pub fn labels(&self) -> Option<&Map<String, Value>> {
        self.pointer("/metadata/labels").and_then(Value::as_object)
    }

    /// `metadata.annotations`, if present and an object.
    pub fn annotations(&self) -> Option<&Map<String, Value>> {
        self.pointer("/metadata/annotations").and_then(Value::as_object)
    }

    /// A short human description: `Deployment apps/v1 shop/web (deploy.yaml#0)`.
    pub fn describe(&self) -> String {
        match &self.origin {
            Some(origin) => format!("{} ({origin})", self.id),
            None => self.id.to_string(),
        }
    }

    /// The pod spec of a workload kind, built alone from the text when the whole value is
    /// not; `None` for other kinds or when absent.
    pub(crate) fn pod_spec_part(&self) -> Option<&Value> {
        self.pointer(pod_spec_pointer(self.kind())?)
    }

    fn part(&self, part: Part, pointer: &str) -> Option<&Value> {
        self.parts[part as usize]
            .get_or_init(|| self.read_part(pointer))
            .as_ref()
    }

    fn whole_is_built(&self) -> bool {
        self.owned.is_some() || self.parsed.get().is_some() || self.text.is_none()
    }

    /// The value at `pointer` read from the text.
    fn read_part(&self, pointer: &str) -> Option<Value> {
        let text = self.text.as_deref()?;
        let tokens = crate::subtree::tokens(pointer);
        let tokens: Vec<&str> = tokens.iter().map(|t| t.as_ref()).collect();
        match parse_at(text, &tokens) {
            Ok(found) => found,
            Err(e) => {
                self.bad_text(&e.to_string());
                None
            }
        }
    }

    fn parse_whole(&self) -> Value {
        let Some(text) = self.text.as_deref() else {
            return Value::Null;
        };
        match serde_json::from_str::<Value>(text) {
            Ok(value) if value.is_object() => value,
            Ok(other) => {
                self.bad_text(&format!("not a JSON object (found {})", crate::json_type(&other)));
                Value::Null
            }
            Err(e) => {
                self.bad_text(&format!("not valid JSON: {e}"));
                Value::Null
            }
        }
    }

    fn bad_text(&self, what: &str) {
        let at = self
            .origin
            .as_ref()
            .map(|o| format!(" ({o})"))
            .unwrap_or_default();
        record_input_error(format!("object {}{at} is {what}", self.id));
    }

    /// An object as the host sent it: nothing is parsed yet.
    pub(crate) fn from_wit(raw: wit::Object) -> Self {
        let id = ObjectRef::from(raw.id);
        Self {
            sent_id: Some(id.clone()),
            id,
            origin: raw.origin.map(Origin::from),
            text: Some(raw.json),
            parsed: OnceCell::new(),
            owned: None,
            parts: Default::default(),
        }
    }

    /// Converts to the WIT record, recomputing the identity from the JSON. An object never
    /// changed goes back as the host's text; a changed one is serialized. `index` is only
    /// used in error messages.
    pub(crate) fn into_wit(self, index: usize) -> Result<wit::Object, PluginError> {
        let unusable = |was: &ObjectRef, e: PluginError| {
            PluginError::Internal(format!(
                "transformer returned an object without a usable identity (output #{index}, was {was}): {}",
                e.message()
            ))
        };
        let (id, json) = match (self.text, self.owned) {
            (Some(text), None) if self.sent_id.as_ref() == Some(&self.id) => (self.id, text),
            (Some(text), None) => {
                let id = identity_of_text(&text).map_err(|e| unusable(&self.id, e))?;
                (id, text)
            }
            (_, owned) => {
                let value = owned.or_else(|| self.parsed.into_inner()).unwrap_or_default();
                let id = ObjectRef::from_value(&value).map_err(|e| unusable(&self.id, e))?;
                let json = serde_json::to_string(&value).map_err(|e| {
                    PluginError::Internal(format!("cannot serialize output object {id} to JSON: {e}"))
                })?;
                (id, json)
            }
        };
        Ok(wit::Object {
            id: id.into(),
            origin: self.origin.map(Into::into),
            json,
        })
    }
}

/// Compact JSON text of `value`. Serializing into a byte buffer directly: `Value`'s
/// `Display` goes through a formatter for every token, several times slower in a plugin.
fn encode(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| value.to_string())
}

/// `pointer` below `prefix` (`""` for `prefix` itself), if it is below it.
fn strip<'p>(pointer: &'p str, prefix: &str) -> Option<&'p str> {
    let rest = pointer.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// The identity fields of an object's text, read without building the rest.
fn identity_of_text(text: &str) -> Result<ObjectRef, PluginError> {
    #[derive(Deserialize)]
    struct Identity {
        #[serde(rename = "apiVersion", default)]
        api_version: Value,
        #[serde(default)]
        kind: Value,
        #[serde(default)]
        metadata: Option<IdentityMeta>,
    }
    #[derive(Deserialize)]
    struct IdentityMeta {
        #[serde(default)]
        name: Value,
        #[serde(default)]
        namespace: Value,
    }
    let identity: Identity = serde_json::from_str(text)
        .map_err(|e| PluginError::InvalidInput(format!("object is not a JSON object: {e}")))?;
    let mut value = Map::new();
    for (key, field) in [("apiVersion", identity.api_version), ("kind", identity.kind)] {
        if !field.is_null() {
            value.insert(key.to_owned(), field);
        }
    }
    if let Some(meta) = identity.metadata {
        let mut metadata = Map::new();
        for (key, field) in [("name", meta.name), ("namespace", meta.namespace)] {
            if !field.is_null() {
                metadata.insert(key.to_owned(), field);
            }
        }
        value.insert("metadata".to_owned(), Value::Object(metadata));
    }
    ObjectRef::from_value(&Value::Object(value))
}

impl PartialEq for Object {
    /// Same identity, origin and content, however much of each has been parsed.
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.origin == other.origin && self.value() == other.value()
    }
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Object")
            .field("id", &self.id)
            .field("origin", &self.origin)
            .field("json", &self.json())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sent(value: &Value) -> Object {
        let id = ObjectRef::from_value(value).unwrap();
        Object::from_wit(wit::Object {
            id: id.into(),
            origin: Some(wit::Origin {
                file: "d.yaml".into(),
                document: 0,
            }),
            json: value.to_string(),
        })
    }

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "a", "image": "a:1"}]}}}})
    }

    #[test]
    fn read_builds_only_the_part_and_agrees_with_pointer() {
        let value = deployment();
        let object = sent(&value);
        for pointer in [
            "/spec/replicas",
            "/spec/template",
            "/metadata/name",
            "/spec/missing",
            "",
        ] {
            assert_eq!(object.read(pointer).as_ref(), value.pointer(pointer), "{pointer}");
        }
        assert!(object.parsed.get().is_none(), "read builds no whole value");
        assert_eq!(object.pointer("/spec/replicas"), Some(&json!(2)));
        assert!(object.parsed.get().is_some());
        assert_eq!(
            object.read("/spec/replicas"),
            Some(json!(2)),
            "read from the built value"
        );
    }

    #[test]
    fn parts_read_lazily_agree_with_the_whole_value() {
        let value = deployment();
        let object = sent(&value);
        assert_eq!(object.labels(), value["metadata"]["labels"].as_object());
        assert!(object.parsed.get().is_none(), "labels alone build no whole value");
        assert_eq!(
            object.pointer("/spec/template/spec/containers/0/image"),
            Some(&json!("a:1"))
        );
        assert!(
            object.parsed.get().is_none(),
            "the pod spec alone builds no whole value"
        );
        assert_eq!(object.containers().len(), 1);
        assert_eq!(object.pointer("/spec/replicas"), Some(&json!(2)));
        assert!(object.parsed.get().is_some());
        assert_eq!(object.pointer("/metadata/missing"), None);
        assert_eq!(object.annotations(), None);
        assert_eq!(object, Object::new(value).unwrap().with_origin("d.yaml", 0));
    }

    #[test]
    fn typed_parse_borrows_and_names_the_object_on_a_wrong_shape() {
        #[derive(Deserialize)]
        struct View<'a> {
            #[serde(borrow)]
            metadata: Meta<'a>,
        }
        #[derive(Deserialize)]
        struct Meta<'a> {
            name: &'a str,
        }
        let object = sent(&deployment());
        assert_eq!(object.parse::<View<'_>>().unwrap().metadata.name, "web");
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Wrong {
            spec: Vec<u8>,
        }
        let err = object.parse::<Wrong>().unwrap_err();
        assert!(
            matches!(&err, PluginError::InvalidInput(m) if m.contains("Deployment apps/v1 web (d.yaml#0)")),
            "{err:?}"
        );
    }

    #[test]
    fn unchanged_objects_go_back_as_sent_and_changed_ones_are_serialized() {
        let value = deployment();
        let text = value.to_string();
        let object = sent(&value);
        let _ = object.labels();
        let back = object.into_wit(0).unwrap();
        assert_eq!(back.json, text);
        assert_eq!(back.id.name, "web");

        let mut edited = sent(&value);
        let _ = edited.labels();
        let returned = edited.edit("/spec/template/metadata", |m| {
            m["labels"]["team"] = json!("shop");
            7
        });
        assert_eq!(returned, Some(7));
        assert_eq!(edited.edit("/spec/missing", |_| ()), None);
        assert!(edited.parsed.get().is_none(), "an edit builds only its part");
        let mut expected = value.clone();
        expected["spec"]["template"]["metadata"]["labels"]["team"] = json!("shop");
        assert_eq!(edited.value(), &expected);
        assert_eq!(edited.labels(), value["metadata"]["labels"].as_object());
        let back = edited.into_wit(0).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&back.json).unwrap(), expected);
        assert_eq!(back.id.name, "web");

        // An edit that reaches the identity is read back from the text.
        let mut renamed = sent(&value);
        renamed.edit("/metadata", |m| m["name"] = json!("api"));
        assert_eq!(renamed.into_wit(0).unwrap().id.name, "api");
        let mut moved = sent(&value);
        moved.edit("/metadata/namespace", |_| ());
        moved.edit("/metadata", |m| m["namespace"] = json!("other"));
        assert_eq!(moved.into_wit(0).unwrap().id.namespace.as_deref(), Some("other"));

        let mut changed = sent(&value);
        let _ = changed.labels();
        changed.value_mut()["metadata"]["name"] = json!("api");
        assert_eq!(
            changed.labels(),
            value["metadata"]["labels"].as_object(),
            "parts read after a change come from the changed value"
        );
        let back = changed.into_wit(0).unwrap();
        assert_eq!(back.id.name, "api");
        assert_ne!(back.json, text);
    }

    #[test]
    fn text_that_is_not_an_object_is_recorded_not_panicked_on() {
        reset_input_error();
        let object = Object::from_wit(wit::Object {
            id: ObjectRef::from_value(&deployment()).unwrap().into(),
            origin: None,
            json: "[1, 2".into(),
        });
        assert_eq!(object.labels(), None);
        assert_eq!(object.value(), &Value::Null);
        let message = take_input_error().expect("recorded");
        assert!(message.contains("Deployment apps/v1 web"), "{message}");
        assert_eq!(take_input_error(), None);
    }
}
