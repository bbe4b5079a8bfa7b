//! Schema validation without a cluster: each rendered object is checked against the OpenAPI
//! schema of its kind for a Kubernetes version shipped in the binary ([`catalog`]), or the
//! CustomResourceDefinition the repository ships for it, plus the text rules the API server
//! applies to names, labels, annotations and port names. What the API server would refuse is
//! an error; unknown fields and kinds without a schema are warnings (errors with `strict`).
//!
//! This is a stage of the render pipeline ([`crate::render`]), so `check`, `render`, `sync`,
//! `diff` and the service refuse the same objects for the same reason.

pub mod catalog;
mod crd;
mod syntax;
mod tree;
mod walk;

pub use walk::Violation;

use crate::diagnostic::Severity;
use crate::object::Object;
use rayon::prelude::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use tree::Tree;
use walk::{Field, Walker};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// How strict validation is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Kubernetes version whose schemas apply (`1.36`; see [`catalog::SHIPPED`]); `None` for
    /// the platform file's choice, else [`catalog::DEFAULT_VERSION`].
    pub kubernetes_version: Option<String>,
    /// Unknown fields and kinds without a schema are errors, not warnings.
    pub strict: bool,
    /// Skip the stage: only for the benchmark that measures what it costs. No command, flag
    /// or file sets it, so every path validates.
    #[doc(hidden)]
    pub skip_for_benchmark: bool,
}

/// The schemas one render validates against: a Kubernetes version's and a repository's CRDs.
pub struct Schemas {
    version: &'static str,
    builtin: Arc<Tree>,
    crds: Tree,
    strict: bool,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schemas")
            .field("version", &self.version)
            .field("custom_kinds", &self.crds.kinds.len())
            .field("strict", &self.strict)
            .finish()
    }
}

impl Schemas {
    /// The schemas of Kubernetes `version` (see [`catalog::find`]) and of `crds`
    /// (CustomResourceDefinition bodies; other values are ignored).
    ///
    /// # Errors
    /// The version is not shipped (the message lists those that are), or its embedded file
    /// is broken.
    pub fn new<'a>(
        version: &str,
        strict: bool,
        crds: impl IntoIterator<Item = &'a Value>,
    ) -> Result<Self, String> {
        let shipped = catalog::find(version)?;
        let builtin = shipped.tree()?;
        let mut tree = Tree::default();
        for crd in crds {
            if crd::is_crd(crd) {
                crd::add(&mut tree, crd);
            }
        }
        Ok(Schemas {
            version: shipped.version,
            builtin,
            crds: tree,
            strict,
        })
    }

    /// Whether `value` is a CustomResourceDefinition that supplies schemas.
    pub fn is_crd(value: &Value) -> bool {
        crd::is_crd(value)
    }

    /// The Kubernetes version validated against.
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// Everything wrong with `objects`; a kind without a schema is reported once, at its
    /// first object. Each violation's object is `objects[i]` for its index `i`.
    pub fn validate(&self, objects: &[Object]) -> Vec<(usize, Violation)> {
        // Objects are walked in parallel (they are independent); which object is the first of
        // a kind without a schema is decided afterwards, in order.
        let walked: Vec<(Vec<Violation>, bool)> = objects.par_iter().map(|o| self.validate_one(o)).collect();
        let mut out = Vec::new();
        let mut unknown_kinds = BTreeSet::new();
        for (index, (object, (violations, known))) in objects.iter().zip(walked).enumerate() {
            if !known && unknown_kinds.insert((&object.id.api_version, &object.id.kind)) {
                out.push((index, self.no_schema(object)));
            }
            out.extend(violations.into_iter().map(|v| (index, v)));
        }
        out
    }

    /// The violations of one object, and whether its kind has a schema.
    fn validate_one(&self, object: &Object) -> (Vec<Violation>, bool) {
        let id = &object.id;
        let key = (id.api_version.clone(), id.kind.clone());
        let mut walker = Walker::new(self.strict);
        if let Some(&root) = self.builtin.kinds.get(&key) {
            walker.walk(&self.builtin, root, &object.value, Field::Entry);
        } else if let Some(&root) = self.crds.kinds.get(&key) {
            // A custom resource's metadata is the API server's ObjectMeta whatever its CRD says.
            self.metadata(object, &mut walker);
            let mut body = object.value.clone();
            if let Some(map) = body.as_object_mut() {
                for skip in ["apiVersion", "kind", "metadata"] {
                    map.remove(skip);
                }
            }
            walker.walk(&self.crds, root, &body, Field::Entry);
        } else {
            // Whatever the kind, its metadata is ObjectMeta (labels are labels everywhere).
            self.metadata(object, &mut walker);
            return (walker.out, false);
        }
        if let Some(name) = object.value.pointer("/metadata/name").and_then(Value::as_str)
            && let Some((rule, why)) = name_problem(&id.api_version, &id.kind, name)
        {
            walker.out.push(Violation {
                severity: Severity::Error,
                rule: "kitsync/syntax-name",
                pointer: "/metadata/name".into(),
                message: format!("{} name {name:?} {why}", id.kind) + rule,
                unquoted: None,
                at_key: false,
            });
        }
        (walker.out, true)
    }

    /// Validates `object`'s metadata as ObjectMeta.
    fn metadata(&self, object: &Object, walker: &mut Walker) {
        let (Some(meta), Some(&meta_node)) = (
            object.value.get("metadata"),
            self.builtin.definitions.get(OBJECT_META),
        ) else {
            return;
        };
        let before = walker.out.len();
        walker.walk(&self.builtin, meta_node, meta, Field::Entry);
        for violation in &mut walker.out[before..] {
            violation.pointer.insert_str(0, "/metadata");
        }
    }

    fn no_schema(&self, object: &Object) -> Violation {
        let id = &object.id;
        let served: Vec<&str> = self
            .builtin
            .kinds
            .keys()
            .filter(|(_, kind)| *kind == id.kind)
            .map(|(api_version, _)| api_version.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let group = id.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let builtin_group = served
            .iter()
            .any(|v| v.rsplit_once('/').map_or("", |(g, _)| g) == group);
        if !served.is_empty() && (builtin_group || group.is_empty() || group == "extensions") {
            // A built-in kind at an API version this Kubernetes does not serve: apply fails.
            return Violation {
                severity: Severity::Error,
                rule: "kitsync/schema-api-version",
                pointer: "/apiVersion".into(),
                message: format!(
                    "{} {} is not served by Kubernetes {}; use {}",
                    id.api_version,
                    id.kind,
                    self.version,
                    served.join(" or ")
                ),
                unquoted: None,
                at_key: false,
            };
        }
        let group_served = !group.is_empty()
            && self
                .builtin
                .kinds
                .keys()
                .any(|(api_version, _)| api_version.rsplit_once('/').map_or("", |(g, _)| g) == group);
        if group_served {
            // A group this Kubernetes serves, without the kind (PodSecurityPolicy in policy).
            return Violation {
                severity: Severity::Error,
                rule: "kitsync/schema-api-version",
                pointer: "/kind".into(),
                message: format!(
                    "{} {} is not served by Kubernetes {}: group {group} has no kind {} (removed, or not yet added)",
                    id.api_version, id.kind, self.version, id.kind
                ),
                unquoted: None,
                at_key: false,
            };
        }
        let severity = if self.strict {
            Severity::Error
        } else {
            Severity::Warning
        };
        Violation {
            severity,
            rule: "kitsync/schema-missing",
            pointer: "/kind".into(),
            message: format!(
                "no schema for {} {}: it is not a built-in kind of Kubernetes {} and no CustomResourceDefinition in a kit or in a directory of the platform file's schemas.crds defines it, so its objects are not validated (reported once per kind)",
                id.api_version, id.kind, self.version
            ),
            unquoted: None,
            at_key: false,
        }
    }
}

/// Why `name` is not a valid name for `kind`, with a note on the rule.
fn name_problem(api_version: &str, kind: &str, name: &str) -> Option<(&'static str, String)> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    match (group, kind) {
        ("", "Namespace") => syntax::dns_label(name).map(|w| (" (a DNS-1123 label)", w)),
        ("", "Service") => syntax::dns_1035_label(name).map(|w| (" (a DNS-1035 label)", w)),
        ("rbac.authorization.k8s.io", _) => syntax::path_segment(name).map(|w| ("", w)),
        _ => syntax::dns_subdomain(name).map(|w| (" (a DNS-1123 subdomain)", w)),
    }
}

#[cfg(test)]
mod tests;
