//! Host guards, always on: what a kit may create, checked before anything is applied.
//!
//! The same checks run in `check` (as findings) and before apply (as refusals), so a
//! change that passes review is exactly what the apply stage accepts.

use crate::diagnostic::{Diagnostic, Severity};
use crate::object::Object;

/// Label every applied object carries, naming its kit.
pub const KIT_LABEL: &str = "kitsync.dev/kit";

/// Kinds that are cluster-scoped in every Kubernetes release kitsync supports.
/// Custom kinds are namespaced unless a CRD in the same kit says `scope: Cluster`.
const CLUSTER_SCOPED: &[&str] = &[
    "APIService",
    "CSIDriver",
    "CSINode",
    "CertificateSigningRequest",
    "ClusterRole",
    "ClusterRoleBinding",
    "ComponentStatus",
    "CustomResourceDefinition",
    "FlowSchema",
    "IngressClass",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PriorityClass",
    "PriorityLevelConfiguration",
    "RuntimeClass",
    "StorageClass",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
];

/// Whether objects of `kind` are cluster-scoped, given the CRDs the kit itself defines.
pub fn is_cluster_scoped(kind: &str, api_version: &str, kit_objects: &[Object]) -> bool {
    ClusterCrds::of(kit_objects).scopes(kind, api_version)
}

/// The (group, kind) pairs a kit's own CRDs declare cluster-scoped. The guards ask about
/// every object of a kit; reading the CRDs once per pass keeps that linear (a scan of the
/// whole kit per object was quadratic) and needs no copy of the kit while it is changed.
struct ClusterCrds(Vec<(String, String)>);

impl ClusterCrds {
    fn of(objects: &[Object]) -> Self {
        ClusterCrds(
            objects
                .iter()
                .filter(|o| o.id.kind == "CustomResourceDefinition")
                .filter_map(|o| {
                    let text = |pointer| o.value.pointer(pointer).and_then(|v| v.as_str());
                    if text("/spec/scope") != Some("Cluster") {
                        return None;
                    }
                    Some((
                        text("/spec/group")?.to_owned(),
                        text("/spec/names/kind")?.to_owned(),
                    ))
                })
                .collect(),
        )
    }

    fn scopes(&self, kind: &str, api_version: &str) -> bool {
        // A CRD may reuse a built-in kind name in its own group; only built-in groups count here.
        if CLUSTER_SCOPED.contains(&kind) && is_builtin_group(api_version) {
            return true;
        }
        let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
        self.0.iter().any(|(g, k)| g == group && k == kind)
    }
}

fn is_builtin_group(api_version: &str) -> bool {
    match api_version.split_once('/') {
        None => true,
        Some((group, _)) => !group.contains('.') || group.ends_with(".k8s.io"),
    }
}

/// What the guards need to know about the kit and the host.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    /// The kit's name.
    pub kit: &'a str,
    /// The kit's namespace.
    pub namespace: &'a str,
    /// Whether the platform lets this kit create cluster-scoped objects.
    pub cluster_scoped_allowed: bool,
    /// The host's own namespace, never written to.
    pub host_namespace: &'a str,
}

fn finding(rule: &str, object: &Object, path: &str, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        rule: format!("kitsync/{rule}"),
        message,
        object: Some(object.id.clone()),
        path: Some(path.to_owned()),
    }
}

/// Makes objects what Kubernetes reads them as, saying what changed: `status` is dropped
/// (it is not desired state, and the server refuses unknown status fields on apply), and a
/// `metadata.namespace` on a cluster-scoped kind is dropped (it means nothing there, and left
/// in it would give one live object two identities in the inventory). Info findings.
pub fn normalize(objects: &mut [Object]) -> Vec<Diagnostic> {
    // Dropping `status` or a namespace never changes a CRD's spec: read once, up front.
    let crds = ClusterCrds::of(objects);
    normalize_marking(objects, &crds, |_| {})
}

/// [`normalize`] with the kit's CRDs read, calling `changed` with the index of each object
/// it changes.
fn normalize_marking(
    objects: &mut [Object],
    crds: &ClusterCrds,
    mut changed: impl FnMut(usize),
) -> Vec<Diagnostic> {
    let mut notes = Vec::new();
    for (index, object) in objects.iter_mut().enumerate() {
        let Some(map) = object.value.as_object_mut() else {
            continue;
        };
        if map.contains_key("status") {
            let mut note = finding(
                "status-dropped",
                object,
                "/status",
                format!("{}: `status` is not desired state; it is not applied", object.id),
            );
            note.severity = Severity::Info;
            notes.push(note);
            if let Some(map) = object.value.as_object_mut() {
                map.remove("status");
            }
            changed(index);
        }
        if object.id.namespace.is_some() && crds.scopes(&object.id.kind, &object.id.api_version) {
            let stray = object.id.namespace.take().unwrap_or_default();
            changed(index);
            if let Some(metadata) = object.value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                metadata.remove("namespace");
            }
            // Reported under the object's real identity, at the line of the dropped field.
            let mut note = finding(
                "cluster-scoped-namespace",
                object,
                "/metadata/namespace",
                format!(
                    "{} is cluster-scoped; its metadata.namespace {stray:?} means nothing and is dropped",
                    object.id
                ),
            );
            note.severity = Severity::Info;
            notes.push(note);
        }
    }
    notes
}

/// Fills in defaults the guards rely on: the kit's namespace on namespaced objects that
/// have none, and the ownership label on every object. Normalizes first ([`normalize`]).
/// Returns, for each object, whether this changed it (so that an encoding of the objects
/// made before can be kept for the others).
pub fn apply_defaults(scope: &Scope<'_>, objects: &mut [Object]) -> Vec<bool> {
    // Normalizing and defaults touch metadata and status only, never a CRD's spec: read once.
    let crds = ClusterCrds::of(objects);
    let mut touched = vec![false; objects.len()];
    normalize_marking(objects, &crds, |index| touched[index] = true);
    for (object, touched) in objects.iter_mut().zip(&mut touched) {
        let cluster = crds.scopes(&object.id.kind, &object.id.api_version);
        let Some(metadata) = object.value.get_mut("metadata").and_then(|m| m.as_object_mut()) else {
            continue;
        };
        if !cluster && object.id.namespace.is_none() {
            metadata.insert("namespace".into(), scope.namespace.into());
            object.id.namespace = Some(scope.namespace.to_owned());
            *touched = true;
        }
        let labels = metadata.entry("labels").or_insert_with(|| {
            *touched = true;
            serde_json::Value::Object(Default::default())
        });
        if let Some(labels) = labels.as_object_mut()
            && !labels.contains_key(KIT_LABEL)
        {
            labels.insert(KIT_LABEL.into(), scope.kit.into());
            *touched = true;
        }
    }
    touched
}

/// Checks every object against the kit's scope; returns one error finding per violation.
pub fn check(scope: &Scope<'_>, objects: &[Object]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let crds = ClusterCrds::of(objects);
    for object in objects {
        let cluster = crds.scopes(&object.id.kind, &object.id.api_version);
        match (&object.id.namespace, cluster) {
            (Some(ns), false) if ns == scope.host_namespace => out.push(finding(
                "host-namespace",
                object,
                "/metadata/namespace",
                format!("{} is in kitsync's own namespace {ns}; kits may never write there", object.id),
            )),
            (Some(ns), false) if ns != scope.namespace => out.push(finding(
                "namespace-escape",
                object,
                "/metadata/namespace",
                format!(
                    "{} is in namespace {ns}, but kit {} may only write to namespace {}",
                    object.id, scope.kit, scope.namespace
                ),
            )),
            (_, true) if !scope.cluster_scoped_allowed && !is_own_namespace(scope, object) => out.push(finding(
                "cluster-scoped",
                object,
                "/kind",
                format!(
                    "{} is cluster-scoped and the platform does not allow kit {} to create cluster-scoped objects (kitsync.yaml clusterScoped)",
                    object.id, scope.kit
                ),
            )),
            _ => {}
        }
        // An ownerReference to an object outside the kit hands this object to the garbage
        // collector of something the kit does not control: refused.
        let references = object
            .value
            .pointer("/metadata/ownerReferences")
            .and_then(|r| r.as_array())
            .map_or(&[][..], Vec::as_slice);
        for (i, reference) in references.iter().enumerate() {
            let kind = reference.get("kind").and_then(|k| k.as_str()).unwrap_or("");
            let name = reference.get("name").and_then(|n| n.as_str()).unwrap_or("");
            let in_kit = objects.iter().any(|o| {
                o.id.kind == kind
                    && o.id.name == name
                    && (o.id.namespace.is_none() || o.id.namespace == object.id.namespace)
            });
            if !in_kit {
                out.push(finding(
                    "owner-reference",
                    object,
                    &format!("/metadata/ownerReferences/{i}"),
                    format!(
                        "{} names {kind} {name:?} as its owner, which is not an object of kit {}; the garbage collector would delete it with that owner",
                        object.id, scope.kit
                    ),
                ));
            }
        }
        let owner = object
            .value
            .pointer(&format!("/metadata/labels/{}", KIT_LABEL.replace('/', "~1")))
            .and_then(|v| v.as_str());
        if let Some(owner) = owner
            && owner != scope.kit
        {
            out.push(finding(
                "foreign-owner",
                object,
                "/metadata/labels",
                format!(
                    "{} carries {KIT_LABEL}={owner}; kit {} cannot take over another kit's object",
                    object.id, scope.kit
                ),
            ));
        }
    }
    out
}

/// A kit may declare its own Namespace object.
fn is_own_namespace(scope: &Scope<'_>, object: &Object) -> bool {
    object.id.kind == "Namespace" && object.id.api_version == "v1" && object.id.name == scope.namespace
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(value: serde_json::Value) -> Object {
        Object::new(value, None).expect("identity")
    }

    const SCOPE: Scope<'static> = Scope {
        kit: "manufracture",
        namespace: "manufracture",
        cluster_scoped_allowed: false,
        host_namespace: "kitsync-system",
    };

    #[test]
    fn owner_references_outside_the_kit_are_refused() {
        let mut objects = vec![
            obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "parent"}})),
            obj(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "child",
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "parent", "uid": "1"}]}}),
            ),
            obj(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "orphan",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "elsewhere", "uid": "2"}]}}),
            ),
        ];
        apply_defaults(&SCOPE, &mut objects);
        let findings = check(&SCOPE, &objects);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].rule, "kitsync/owner-reference");
        assert_eq!(findings[0].path.as_deref(), Some("/metadata/ownerReferences/0"));
        assert!(findings[0].message.contains("Deployment \"elsewhere\""));
    }

    #[test]
    fn defaults_say_which_objects_they_changed() {
        let mut objects = vec![
            obj(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "done",
                "namespace": "manufracture", "labels": {KIT_LABEL: "manufracture"}}}),
            ),
            obj(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "no-namespace",
                "labels": {KIT_LABEL: "manufracture"}}}),
            ),
            obj(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "no-labels",
                "namespace": "manufracture"}}),
            ),
            obj(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "no-kit-label",
                "namespace": "manufracture", "labels": {"team": "a"}}}),
            ),
            obj(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "status",
                "namespace": "manufracture", "labels": {KIT_LABEL: "manufracture"}}, "status": {}}),
            ),
            obj(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "stray", "namespace": "x", "labels": {KIT_LABEL: "manufracture"}}}),
            ),
        ];
        let before: Vec<_> = objects.iter().map(|o| o.value.clone()).collect();
        let touched = apply_defaults(&SCOPE, &mut objects);
        assert_eq!(touched, [false, true, true, true, true, true]);
        for ((object, before), touched) in objects.iter().zip(&before).zip(&touched) {
            assert_eq!(object.value != *before, *touched, "{}", object.id);
        }
        assert_eq!(
            apply_defaults(&SCOPE, &mut objects),
            [false; 6],
            "defaults are idempotent"
        );
    }

    #[test]
    fn status_and_stray_namespaces_are_dropped_with_a_note() {
        let mut objects = vec![
            obj(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "status": {"x": 1}}),
            ),
            obj(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "r", "namespace": "somewhere"}}),
            ),
        ];
        let notes = normalize(&mut objects);
        let rules: Vec<&str> = notes.iter().map(|n| n.rule.as_str()).collect();
        assert_eq!(
            rules,
            ["kitsync/status-dropped", "kitsync/cluster-scoped-namespace"]
        );
        assert!(notes.iter().all(|n| n.severity == Severity::Info));
        assert!(objects[0].value.get("status").is_none());
        assert_eq!(objects[1].id.namespace, None);
        assert!(objects[1].value["metadata"].get("namespace").is_none());
        assert!(normalize(&mut objects).is_empty(), "idempotent");
    }

    #[test]
    fn defaults_set_namespace_and_label() {
        let mut objects = vec![
            obj(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "vision"}})),
            obj(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "manufracture"}})),
        ];
        apply_defaults(&SCOPE, &mut objects);
        assert_eq!(objects[0].id.namespace.as_deref(), Some("manufracture"));
        assert_eq!(objects[0].value["metadata"]["labels"][KIT_LABEL], "manufracture");
        assert_eq!(objects[1].id.namespace, None);
        assert!(check(&SCOPE, &objects).is_empty());
    }

    #[test]
    fn escapes_and_takeovers_are_refused() {
        let objects = vec![
            obj(
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "smithereens"}}),
            ),
            obj(
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b", "namespace": "kitsync-system"}}),
            ),
            obj(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "c"}}),
            ),
            obj(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d", "namespace": "manufracture", "labels": {KIT_LABEL: "smithereens"}}}),
            ),
        ];
        let rules: Vec<String> = check(&SCOPE, &objects).into_iter().map(|d| d.rule).collect();
        assert_eq!(
            rules,
            [
                "kitsync/namespace-escape",
                "kitsync/host-namespace",
                "kitsync/cluster-scoped",
                "kitsync/foreign-owner"
            ]
        );
    }

    #[test]
    fn crd_scope_decides_for_custom_kinds() {
        let objects = vec![obj(
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                       "metadata": {"name": "widgets.example.com"},
                       "spec": {"group": "example.com", "scope": "Cluster", "names": {"kind": "Widget"}}}),
        )];
        assert!(is_cluster_scoped("Widget", "example.com/v1", &objects));
        assert!(!is_cluster_scoped("Gadget", "example.com/v1", &objects));
        assert!(is_cluster_scoped(
            "ClusterRole",
            "rbac.authorization.k8s.io/v1",
            &[]
        ));
    }
}
