//! Finding pod specs and containers in workload objects.
//!
//! Workloads are matched by `kind` only (Pod, Deployment, StatefulSet,
//! DaemonSet, ReplicaSet, ReplicationController, Job, CronJob), whatever the
//! apiVersion, so that a policy cannot be bypassed with an odd apiVersion.

use serde_json::Value;

use crate::{Object, Pointer};

/// The kinds this module knows the pod spec location of.
pub const WORKLOAD_KINDS: &[&str] = &[
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
];

/// JSON pointer of the pod template (`{metadata, spec}`) of a workload kind;
/// `None` for `Pod` (which is its own template) and for other kinds.
pub fn pod_template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "ReplicationController" | "Job" => {
            Some("/spec/template")
        }
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// JSON pointer of the pod spec of a workload kind (`/spec` for a Pod,
/// `/spec/template/spec` for a Deployment, ...); `None` for other kinds.
pub fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "ReplicationController" | "Job" => {
            Some("/spec/template/spec")
        }
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// Whether `kind` is one of [`WORKLOAD_KINDS`].
pub fn is_workload(kind: &str) -> bool {
    pod_spec_pointer(kind).is_some()
}

/// Which list of the pod spec a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    /// `initContainers`.
    Init,
    /// `containers`.
    Regular,
    /// `ephemeralContainers`.
    Ephemeral,
}

impl ContainerKind {
    /// All kinds, in the order they are visited.
    pub const ALL: [ContainerKind; 3] = [Self::Init, Self::Regular, Self::Ephemeral];

    /// The pod spec field holding this list.
    pub fn field(self) -> &'static str {
        match self {
            Self::Init => "initContainers",
            Self::Regular => "containers",
            Self::Ephemeral => "ephemeralContainers",
        }
    }

    /// `init container`, `container` or `ephemeral container`.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Init => "init container",
            Self::Regular => "container",
            Self::Ephemeral => "ephemeral container",
        }
    }
}

/// One container of a workload, with its location.
#[derive(Debug, Clone, Copy)]
pub struct Container<'a> {
    /// Which list it is in.
    pub kind: ContainerKind,
    /// Index in that list.
    pub index: usize,
    /// The container's JSON value.
    pub value: &'a Value,
    pod_spec: &'static str,
}

impl<'a> Container<'a> {
    /// JSON pointer of the container, e.g. `/spec/template/spec/containers/0`.
    pub fn pointer(&self) -> Pointer {
        Pointer::parse(self.pod_spec)
            .key(self.kind.field())
            .index(self.index)
    }

    /// JSON pointer of a field of the container, e.g. `.../containers/0/image`.
    pub fn pointer_to(&self, field: &str) -> Pointer {
        self.pointer().key(field)
    }

    /// `name` of the container, if it is a string.
    pub fn name(&self) -> Option<&'a str> {
        self.value.get("name").and_then(Value::as_str)
    }

    /// `image` of the container, if it is a string.
    pub fn image(&self) -> Option<&'a str> {
        self.value.get("image").and_then(Value::as_str)
    }

    /// `container "web"` / `init container "migrate"` / `container #2`.
    pub fn describe(&self) -> String {
        match self.name() {
            Some(name) => format!("{} \"{name}\"", self.kind.noun()),
            None => format!("{} #{}", self.kind.noun(), self.index),
        }
    }
}

impl Object {
    /// The pod spec of a workload and its pointer, if this object is a
    /// workload and the pod spec is present and an object. Only the pod spec
    /// is built when nothing else of the object has been.
    pub fn pod_spec(&self) -> Option<(Pointer, &Value)> {
        let pointer = pod_spec_pointer(self.kind())?;
        let spec = self.pod_spec_part().filter(|v| v.is_object())?;
        Some((Pointer::parse(pointer), spec))
    }

    /// Mutable access to the pod spec of a workload (see [`Object::value_mut`]).
    pub fn pod_spec_mut(&mut self) -> Option<(Pointer, &mut Value)> {
        let pointer = pod_spec_pointer(self.kind())?;
        let spec = self.value_mut().pointer_mut(pointer).filter(|v| v.is_object())?;
        Some((Pointer::parse(pointer), spec))
    }

    /// Every container of a workload (init, regular, then ephemeral), with
    /// its JSON pointer. Empty for non-workloads. Entries that are not JSON
    /// objects are still yielded so that policies can flag them.
    pub fn containers(&self) -> Vec<Container<'_>> {
        let Some(pod_spec) = pod_spec_pointer(self.kind()) else {
            return Vec::new();
        };
        let Some(spec) = self.pod_spec_part() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for kind in ContainerKind::ALL {
            if let Some(list) = spec.get(kind.field()).and_then(Value::as_array) {
                for (index, value) in list.iter().enumerate() {
                    out.push(Container {
                        kind,
                        index,
                        value,
                        pod_spec,
                    });
                }
            }
        }
        out
    }

    /// Calls `f` with every container of a workload (init, regular, then
    /// ephemeral), its kind and its JSON pointer, for in-place edits. Objects
    /// that are not workloads are left untouched (and unparsed).
    pub fn for_each_container_mut<F>(&mut self, mut f: F)
    where
        F: FnMut(ContainerKind, &Pointer, &mut Value),
    {
        let Some(pod_spec) = pod_spec_pointer(self.kind()) else {
            return;
        };
        if self.pod_spec_part().is_none() {
            return;
        }
        let Some(spec) = self.value_mut().pointer_mut(pod_spec) else {
            return;
        };
        for kind in ContainerKind::ALL {
            if let Some(list) = spec.get_mut(kind.field()).and_then(Value::as_array_mut) {
                for (index, value) in list.iter_mut().enumerate() {
                    let pointer = Pointer::parse(pod_spec).key(kind.field()).index(index);
                    f(kind, &pointer, value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_of_each_kind() {
        let spec = json!({"initContainers": [{"name": "i"}], "containers": [{"name": "a"}, {"name": "b"}], "ephemeralContainers": [{"name": "e"}]});
        let cases = [
            ("v1", "Pod", json!({"spec": spec}), "/spec"),
            (
                "apps/v1",
                "Deployment",
                json!({"spec": {"template": {"spec": spec}}}),
                "/spec/template/spec",
            ),
            (
                "batch/v1",
                "CronJob",
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}}),
                "/spec/jobTemplate/spec/template/spec",
            ),
        ];
        for (api_version, kind, mut body, prefix) in cases {
            body["apiVersion"] = json!(api_version);
            body["kind"] = json!(kind);
            body["metadata"] = json!({"name": "w"});
            let mut obj = Object::new(body).unwrap();
            let got: Vec<(String, String)> = obj
                .containers()
                .iter()
                .map(|c| (c.pointer().into_string(), c.describe()))
                .collect();
            assert_eq!(
                got,
                vec![
                    (
                        format!("{prefix}/initContainers/0"),
                        "init container \"i\"".to_owned()
                    ),
                    (format!("{prefix}/containers/0"), "container \"a\"".to_owned()),
                    (format!("{prefix}/containers/1"), "container \"b\"".to_owned()),
                    (
                        format!("{prefix}/ephemeralContainers/0"),
                        "ephemeral container \"e\"".to_owned()
                    ),
                ],
                "{kind}"
            );
            assert_eq!(
                obj.pod_spec().map(|(p, _)| p.into_string()),
                Some(prefix.to_owned())
            );
            let mut seen = Vec::new();
            obj.for_each_container_mut(|kind, pointer, c| {
                c["image"] = json!("x");
                seen.push((kind, pointer.to_string()));
            });
            assert_eq!(seen.len(), 4);
            assert_eq!(
                seen[0],
                (ContainerKind::Init, format!("{prefix}/initContainers/0"))
            );
            assert!(obj.containers().iter().all(|c| c.image() == Some("x")));
        }
    }

    #[test]
    fn non_workloads_have_no_containers() {
        let cm = Object::new(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "spec": {"containers": [{"name": "a"}]}}),
        )
        .unwrap();
        assert!(cm.containers().is_empty());
        assert!(cm.pod_spec().is_none());
        let empty =
            Object::new(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}))
                .unwrap();
        assert!(empty.containers().is_empty());
        assert!(is_workload("Job") && !is_workload("Service"));
        assert_eq!(pod_template_pointer("Pod"), None);
    }
}
