//! Schemas as the validator reads them: one arena of nodes per source (a Kubernetes
//! version's built-in kinds, or the CRDs of a repository), built from OpenAPI / JSON-schema
//! documents, with `$ref`s resolved to indexes.
//!
//! Only what the API server enforces when it decodes and validates an object is kept: types,
//! properties and whether others are allowed, required fields, enums, list types and their
//! keys, `int-or-string`, quantities, `byte` strings, and kitsync's syntax marks on fields
//! whose text the server checks (label keys and values, port names).

use serde_json::Value;
use std::collections::HashMap;

/// Index of a node in its [`Tree`].
pub(super) type NodeId = u32;

/// What a value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    /// Anything (no schema says otherwise).
    Any,
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
    /// An integer or a string (`x-kubernetes-int-or-string`, `format: int-or-string`).
    IntOrString,
    /// A resource quantity: a number or a string such as `512Mi`.
    Quantity,
}

/// Fields an object may have besides its `properties`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Extra {
    /// None: any other field is unknown.
    Closed,
    /// Any (`x-kubernetes-preserve-unknown-fields`, free-form objects).
    Open,
    /// Each other field's value follows this schema (`additionalProperties`).
    Each(NodeId),
}

/// How a list merges (`x-kubernetes-list-type`): entries of a `set` and keys of a `map` are
/// unique, which the API server checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// Text rules the API server applies to a field beyond its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Syntax {
    None,
    /// A map of label keys to label values.
    LabelMap,
    /// A map whose keys are annotation keys.
    AnnotationMap,
    /// A container port name, or a port given by name (`IANA_SVC_NAME`).
    PortName,
    /// A DNS-1123 label (a Service port's name).
    DnsLabel,
}

/// One schema node.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub ty: Ty,
    /// The definition it stands for; the walk continues there (`$ref`).
    pub reference: Option<NodeId>,
    /// The definition's name, for messages (`io.k8s.api.core.v1.ServicePort`).
    pub name: Option<String>,
    pub properties: HashMap<String, NodeId>,
    pub extra: Extra,
    pub items: Option<NodeId>,
    pub required: Vec<String>,
    pub list: ListType,
    pub enumeration: Vec<Value>,
    pub syntax: Syntax,
    /// `format: byte`: base64 text.
    pub base64: bool,
}

impl Node {
    fn any() -> Self {
        Node {
            ty: Ty::Any,
            reference: None,
            name: None,
            properties: HashMap::new(),
            extra: Extra::Open,
            items: None,
            required: Vec::new(),
            list: ListType::Atomic,
            enumeration: Vec::new(),
            syntax: Syntax::None,
            base64: false,
        }
    }
}

/// Where a tree's documents come from; they differ in what an object without `properties`
/// means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// Kubernetes' own OpenAPI: such an object is free-form (`RawExtension`).
    BuiltIn,
    /// A CRD's structural schema: the API server prunes whatever it does not declare.
    Structural,
}

/// An arena of schema nodes.
#[derive(Debug, Default)]
pub(super) struct Tree {
    nodes: Vec<Node>,
    /// Named definitions (built-in trees).
    pub definitions: HashMap<String, NodeId>,
    /// `(apiVersion, kind)` -> root node.
    pub kinds: HashMap<(String, String), NodeId>,
}

impl Tree {
    /// The node at `id`, with references followed (at most a few hops; a cycle stops).
    pub fn node(&self, id: NodeId) -> &Node {
        let mut node = &self.nodes[id as usize];
        for _ in 0..8 {
            match node.reference {
                Some(next) if node.ty == Ty::Any => node = &self.nodes[next as usize],
                _ => break,
            }
        }
        node
    }

    /// The node at `id` itself, references not followed (its syntax mark).
    pub fn own(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        NodeId::try_from(self.nodes.len() - 1).unwrap_or(NodeId::MAX)
    }

    /// Adds a schema document and everything under it; `$ref`s are recorded in `pending`
    /// (node, definition name) and resolved by [`Tree::resolve`].
    pub fn add(&mut self, schema: &Value, dialect: Dialect, pending: &mut Vec<(NodeId, String)>) -> NodeId {
        self.add_at(schema, dialect, pending, 0)
    }

    fn add_at(
        &mut self,
        schema: &Value,
        dialect: Dialect,
        pending: &mut Vec<(NodeId, String)>,
        depth: usize,
    ) -> NodeId {
        let mut node = Node::any();
        // Schemas nested past any real object's depth are taken as free-form.
        let Some(map) = schema.as_object().filter(|_| depth < 64) else {
            return self.push(node);
        };
        let flag = |key: &str| map.get(key).and_then(Value::as_bool).unwrap_or(false);
        let preserve = flag("x-kubernetes-preserve-unknown-fields") || flag("x-kubernetes-embedded-resource");
        node.ty = match map.get("type").and_then(Value::as_str) {
            _ if flag("x-kubernetes-int-or-string") => Ty::IntOrString,
            _ if map.get("format").and_then(Value::as_str) == Some("int-or-string") => Ty::IntOrString,
            _ if map.get("x-kitsync-format").and_then(Value::as_str) == Some("quantity") => Ty::Quantity,
            Some("object") => Ty::Object,
            Some("array") => Ty::Array,
            Some("string") => Ty::String,
            Some("integer") => Ty::Integer,
            Some("number") => Ty::Number,
            Some("boolean") => Ty::Boolean,
            _ if map.contains_key("properties") => Ty::Object,
            _ => Ty::Any,
        };
        node.base64 = node.ty == Ty::String && map.get("format").and_then(Value::as_str) == Some("byte");
        node.syntax = match map.get("x-kitsync-syntax").and_then(Value::as_str) {
            Some("label-map") => Syntax::LabelMap,
            Some("annotation-map") => Syntax::AnnotationMap,
            Some("port-name") => Syntax::PortName,
            Some("dns-label") => Syntax::DnsLabel,
            _ => Syntax::None,
        };
        if let Some(values) = map.get("enum").and_then(Value::as_array) {
            node.enumeration = values.clone();
        }
        if let Some(required) = map.get("required").and_then(Value::as_array) {
            node.required = required
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect();
        }
        node.list = match map.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListType::Set,
            Some("map") => ListType::Map(
                map.get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|keys| {
                        keys.iter()
                            .filter_map(|k| k.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => ListType::Atomic,
        };
        let target = map.get("$ref").and_then(Value::as_str).map(|r| {
            r.strip_prefix("#/definitions/")
                .or_else(|| r.strip_prefix("#/components/schemas/"))
                .unwrap_or(r)
                .to_owned()
        });
        let mut properties = HashMap::new();
        if let Some(props) = map.get("properties").and_then(Value::as_object) {
            for (key, value) in props {
                let child = self.add_at(value, dialect, pending, depth + 1);
                properties.insert(key.clone(), child);
            }
        }
        node.extra = match map.get("additionalProperties") {
            Some(Value::Bool(false)) => Extra::Closed,
            Some(Value::Object(_)) => {
                Extra::Each(self.add_at(&map["additionalProperties"], dialect, pending, depth + 1))
            }
            Some(_) => Extra::Open,
            None if preserve => Extra::Open,
            None if !properties.is_empty() => Extra::Closed,
            None => match dialect {
                Dialect::BuiltIn => Extra::Open,
                Dialect::Structural => Extra::Closed,
            },
        };
        if node.ty == Ty::Any && preserve {
            node.extra = Extra::Open;
        }
        node.properties = properties;
        if let Some(items) = map.get("items") {
            node.items = Some(self.add_at(items, dialect, pending, depth + 1));
        }
        let id = self.push(node);
        if let Some(target) = target {
            pending.push((id, target));
        }
        id
    }

    /// Points every recorded `$ref` at its definition; unknown targets stay free-form.
    pub fn resolve(&mut self, pending: Vec<(NodeId, String)>) {
        for (id, target) in pending {
            if let Some(&to) = self.definitions.get(&target) {
                self.nodes[id as usize].reference = Some(to);
            }
        }
    }

    /// Names a definition (for messages and `$ref`s).
    pub fn define(&mut self, name: &str, id: NodeId) {
        self.nodes[id as usize].name = Some(name.to_owned());
        self.definitions.insert(name.to_owned(), id);
    }
}
