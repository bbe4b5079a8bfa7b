//! kstatus rules: how ready one live object is, judged from its own body alone.
//!
//! The rules, their order and their names follow `sigs.k8s.io/cli-utils/pkg/kstatus/status`
//! (`Compute`: generic checks in `generic.go`, then one function per built-in kind in
//! `core.go`). Where kitsync differs from kstatus, the rule's comment says so and why.

use super::workloads;
use crate::object::ObjectRef;
use serde_json::Value;
use std::fmt;

/// How ready one live object is, in kstatus's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Ready: its controller observed the latest spec and reached it (kstatus `Current`).
    Current,
    /// Not ready yet, and may become ready without anyone changing the object (kstatus
    /// `InProgress`; kitsync also files kstatus `Terminating` and `NotFound` here).
    InProgress {
        /// What it is waiting for, e.g. `1 of 3 replicas available`.
        reason: String,
    },
    /// Will not become ready unless someone changes it (kstatus `Failed`): stop waiting.
    Failed {
        /// What went wrong, e.g. `progress deadline exceeded: ...`.
        reason: String,
    },
}

impl Health {
    /// Whether the object is ready.
    pub fn is_current(&self) -> bool {
        matches!(self, Health::Current)
    }

    pub(super) fn waiting(reason: impl Into<String>) -> Self {
        Health::InProgress {
            reason: reason.into(),
        }
    }

    pub(super) fn failed(reason: impl Into<String>) -> Self {
        Health::Failed {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Current => f.write_str("current"),
            Health::InProgress { reason } => write!(f, "in progress: {reason}"),
            Health::Failed { reason } => write!(f, "failed: {reason}"),
        }
    }
}

/// How ready the live `object` (a whole body as the API server returns it, `status`
/// included) is. Pure: reads nothing but the body, so it never blocks.
///
/// Rules, in order (kstatus `Compute`):
/// 1. Being deleted (`metadata.deletionTimestamp`): InProgress (kstatus `Terminating`), except
///    a Job, judged by its conditions since a TTL controller deletes finished Jobs.
/// 2. `status.observedGeneration` present and not `metadata.generation`: InProgress.
/// 3. A `Stalled` condition True: Failed; a `Reconciling` condition True: InProgress (the
///    kstatus standard conditions, honoured on every kind).
/// 4. The built-in kinds, each below: Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
///    PersistentVolumeClaim, Service, Pod, CustomResourceDefinition.
/// 5. Any other kind with `status.conditions`: a `Ready` condition decides (True: Current,
///    anything else: InProgress, never Failed), else an `Available` condition does. A
///    condition carrying an `observedGeneration` older than `metadata.generation` is stale
///    and counts as not True.
/// 6. Everything else (ConfigMaps, Secrets, RBAC, kinds whose conditions say nothing about
///    readiness): Current, since it exists.
///
/// An object without a string `apiVersion` and `kind` is judged by rules 1-3 and 5-6 only.
pub fn assess(object: &Value) -> Health {
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    assess_kind(api_version, kind, object)
}

/// [`assess`] with the kind given apart: watch lists do not repeat `apiVersion` and `kind`
/// on every item.
pub(crate) fn assess_kind(api_version: &str, kind: &str, object: &Value) -> Health {
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    let job = group == "batch" && kind == "Job";
    if !job
        && object
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|t| !t.is_null())
    {
        return Health::waiting("being deleted");
    }
    if let Some(health) = generation(object) {
        return health;
    }
    if let Some(health) = standard_conditions(object) {
        return health;
    }
    match (group, kind) {
        ("apps" | "extensions", "Deployment") => workloads::deployment(object),
        ("apps", "StatefulSet") => workloads::stateful_set(object),
        ("apps" | "extensions", "DaemonSet") => workloads::daemon_set(object),
        ("apps" | "extensions", "ReplicaSet") => workloads::replica_set(object),
        ("batch", "Job") => job_(object),
        ("", "PersistentVolumeClaim") => claim(object),
        ("", "Service") => service(object),
        ("", "Pod") => pod(object),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => definition(object),
        _ => readiness_conditions(object),
    }
}

/// The health of an object that is not in the cluster although it was applied.
///
/// A Job counts as Current: a TTL controller (`ttlSecondsAfterFinished`) deletes Jobs once
/// they finish, and a Job that ran and went away must not hold a kit un-Healthy until its
/// timeout. Anything else is InProgress, `not found`: it may come back (self-heal re-creates
/// deleted objects), and if it does not, the timeout says which object was missing.
pub(crate) fn missing(id: &ObjectRef) -> Health {
    let group = id.api_version.rsplit_once('/').map_or("", |(group, _)| group);
    if group == "batch" && id.kind == "Job" {
        Health::Current
    } else {
        Health::waiting("not found")
    }
}

pub(super) fn int(object: &Value, pointer: &str) -> Option<i64> {
    object.pointer(pointer).and_then(Value::as_i64)
}

pub(super) fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

/// The first condition of type `kind` in `status.conditions`.
pub(super) fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

pub(super) fn status_of(condition: &Value) -> &str {
    condition
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("Unknown")
}

/// Whether the condition `kind` exists and is True.
fn is_true(object: &Value, kind: &str) -> bool {
    condition(object, kind).is_some_and(|c| status_of(c) == "True")
}

/// A condition's reason and message as one short phrase (messages are capped: some
/// controllers put whole logs there, and this ends up in a Kit's status line).
pub(super) fn explain(condition: &Value) -> String {
    const CAP: usize = 200;
    let reason = condition.get("reason").and_then(Value::as_str).unwrap_or("");
    let message = condition
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim();
    let mut out = match (reason.is_empty(), message.is_empty()) {
        (false, false) => format!("{reason}: {message}"),
        (false, true) => reason.to_owned(),
        (true, false) => message.to_owned(),
        (true, true) => "no reason given".to_owned(),
    };
    if out.len() > CAP {
        let cut = (0..=CAP).rev().find(|i| out.is_char_boundary(*i)).unwrap_or(0);
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// kstatus `checkGeneration`: a controller that publishes `observedGeneration` has not yet
/// acted on the latest spec while it differs from `metadata.generation`.
fn generation(object: &Value) -> Option<Health> {
    let generation = int(object, "/metadata/generation")?;
    let observed = int(object, "/status/observedGeneration")?;
    (observed != generation).then(|| {
        Health::waiting(format!(
            "generation {generation} not yet observed by its controller (it saw {observed})"
        ))
    })
}

/// kstatus `checkGenerationSet`, for kinds whose controller always sets
/// `observedGeneration` once it has seen the object: without it, nothing has acted yet.
pub(super) fn require_observed(object: &Value) -> Option<Health> {
    int(object, "/status/observedGeneration")
        .is_none()
        .then(|| Health::waiting("not yet observed by its controller"))
}

/// kstatus's own standard conditions, honoured on every kind (`checkGenericProperties`).
fn standard_conditions(object: &Value) -> Option<Health> {
    if let Some(c) = condition(object, "Stalled").filter(|c| status_of(c) == "True") {
        return Some(Health::failed(format!("stalled: {}", explain(c))));
    }
    if let Some(c) = condition(object, "Reconciling").filter(|c| status_of(c) == "True") {
        return Some(Health::waiting(format!("reconciling: {}", explain(c))));
    }
    None
}

/// kstatus `jobConditions`, stricter: kstatus calls a started Job Current, kitsync waits
/// for it to finish, since a kit's Job is usually a migration or a seed whose result the
/// next objects need. `FailureTarget` and `SuccessCriteriaMet` (Kubernetes 1.31+) are the
/// controller's final verdicts, set before the pods are gone: they decide as early as
/// possible. A suspended Job is Current, as in kstatus: it is not meant to run yet.
fn job_(object: &Value) -> Health {
    for kind in ["Failed", "FailureTarget"] {
        if let Some(c) = condition(object, kind).filter(|c| status_of(c) == "True") {
            return Health::failed(format!("job failed: {}", explain(c)));
        }
    }
    if is_true(object, "Complete") || is_true(object, "SuccessCriteriaMet") || is_true(object, "Suspended") {
        return Health::Current;
    }
    let parallelism = int(object, "/spec/parallelism").unwrap_or(1);
    let completions = int(object, "/spec/completions").unwrap_or(parallelism);
    let succeeded = int(object, "/status/succeeded").unwrap_or(0);
    let active = int(object, "/status/active").unwrap_or(0);
    if text(object, "/status/startTime").is_none() && active == 0 {
        return Health::waiting("not started");
    }
    Health::waiting(format!(
        "not complete: {succeeded} of {completions} completions succeeded, {active} active"
    ))
}

/// kstatus `pvcConditions`: Bound or waiting.
fn claim(object: &Value) -> Health {
    match text(object, "/status/phase") {
        Some("Bound") => Health::Current,
        Some(phase) => Health::waiting(format!("not bound (phase {phase})")),
        None => Health::waiting("not bound yet"),
    }
}

/// kstatus `serviceConditions`, stricter for LoadBalancers: kstatus only wants a cluster IP,
/// kitsync wants the address clients will use (`status.loadBalancer.ingress`).
fn service(object: &Value) -> Health {
    if text(object, "/spec/type") != Some("LoadBalancer") {
        return Health::Current;
    }
    let assigned = object
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_some_and(|ingress| !ingress.is_empty());
    if assigned {
        Health::Current
    } else {
        Health::waiting("waiting for a load balancer address")
    }
}

/// kstatus `podConditions`, except a pod in phase Failed is Failed (kstatus calls it
/// Current, "completed"): a kit's bare pod that failed will not become ready. Unschedulable
/// stays InProgress: kstatus's 15 s grace needs a clock, and a cluster autoscaler may add
/// the node.
fn pod(object: &Value) -> Health {
    match text(object, "/status/phase") {
        Some("Succeeded") => return Health::Current,
        Some("Failed") => {
            let reason = text(object, "/status/reason").unwrap_or("");
            let message = text(object, "/status/message").unwrap_or("");
            let detail = explain(&serde_json::json!({"reason": reason, "message": message}));
            return Health::failed(format!("pod failed: {detail}"));
        }
        _ => {}
    }
    if is_true(object, "Ready") {
        return Health::Current;
    }
    let crashing: Vec<&str> = object
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.pointer("/state/waiting/reason").and_then(Value::as_str) == Some("CrashLoopBackOff"))
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    if !crashing.is_empty() {
        return Health::failed(format!("containers crash looping: {}", crashing.join(", ")));
    }
    if let Some(c) = condition(object, "PodScheduled").filter(|c| status_of(c) == "False") {
        return Health::waiting(format!("not scheduled: {}", explain(c)));
    }
    match text(object, "/status/phase") {
        Some("Running") => Health::waiting("running but not ready"),
        Some(phase) => Health::waiting(format!("phase {phase}")),
        None => Health::waiting("not yet observed by a kubelet"),
    }
}

/// kstatus `crdConditions`: the API server establishes a definition whose names it
/// accepted; a name conflict never clears by itself.
fn definition(object: &Value) -> Health {
    if let Some(c) = condition(object, "NamesAccepted").filter(|c| status_of(c) == "False") {
        return Health::failed(format!("names not accepted: {}", explain(c)));
    }
    if let Some(c) = condition(object, "Established") {
        match status_of(c) {
            "True" => return Health::Current,
            "False" if c.get("reason").and_then(Value::as_str) != Some("Installing") => {
                return Health::failed(format!("not established: {}", explain(c)));
            }
            _ => {}
        }
    }
    Health::waiting("not established yet")
}

/// Rule 5 of [`assess`]: the conventional `Ready`, else `Available`, condition. kstatus
/// itself reads only its own `Stalled`/`Reconciling` and calls the rest Current; most
/// operators publish `Ready` instead, so kitsync reads it too. A `Ready` False is never
/// Failed, whatever its reason says: only `Stalled` means "will not recover" (kstatus).
fn readiness_conditions(object: &Value) -> Health {
    let Some((kind, c)) = ["Ready", "Available"]
        .into_iter()
        .find_map(|kind| condition(object, kind).map(|c| (kind, c)))
    else {
        return Health::Current;
    };
    let generation = int(object, "/metadata/generation");
    let observed = c.get("observedGeneration").and_then(Value::as_i64);
    if let (Some(generation), Some(observed)) = (generation, observed)
        && observed < generation
    {
        return Health::waiting(format!(
            "{kind} describes generation {observed}, not the latest {generation}"
        ));
    }
    match status_of(c) {
        "True" => Health::Current,
        status => Health::waiting(format!("{kind} is {status}: {}", explain(c))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn waiting(reason: &str) -> Health {
        Health::waiting(reason)
    }

    fn failed(reason: &str) -> Health {
        Health::failed(reason)
    }

    fn job_with(status: Value) -> Value {
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate", "namespace": "shop", "generation": 1},
            "spec": {"backoffLimit": 6, "completions": 1, "parallelism": 1,
                     "template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "migrate", "image": "migrate:1"}]}}},
            "status": status,
        })
    }

    #[test]
    fn job_rules() {
        let complete = json!({"startTime": "2025-01-07T10:00:00Z", "completionTime": "2025-01-07T10:00:09Z",
            "succeeded": 1, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                 "message": "Reached expected number of succeeded pods"},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                 "message": "Reached expected number of succeeded pods"}]});
        let failed_ = json!({"startTime": "2025-01-07T10:00:00Z", "failed": 7, "ready": 0, "terminating": 0,
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}]});
        let running = json!({"startTime": "2025-01-07T10:00:00Z", "active": 1, "ready": 1});
        let cases = [
            ("complete", complete, Health::Current),
            (
                "failed",
                failed_,
                failed("job failed: BackoffLimitExceeded: Job has reached the specified backoff limit"),
            ),
            (
                "running",
                running,
                waiting("not complete: 0 of 1 completions succeeded, 1 active"),
            ),
            ("not started", json!({}), waiting("not started")),
            (
                "suspended",
                json!({"conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended"}]}),
                Health::Current,
            ),
        ];
        for (name, status, expected) in cases {
            assert_eq!(assess(&job_with(status)), expected, "{name}");
        }
    }

    #[test]
    fn a_finished_job_being_deleted_by_its_ttl_is_still_current() {
        let mut job =
            job_with(json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}));
        job["metadata"]["deletionTimestamp"] = json!("2025-01-07T10:05:09Z");
        assert_eq!(assess(&job), Health::Current);
        let id = ObjectRef::from_value(&job).expect("identity");
        assert_eq!(
            missing(&id),
            Health::Current,
            "a Job gone after being applied finished"
        );
    }

    #[test]
    fn a_missing_object_other_than_a_job_is_waited_for() {
        let id = ObjectRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("shop".into()),
            name: "web".into(),
        };
        assert_eq!(missing(&id), waiting("not found"));
    }

    #[test]
    fn claims_are_current_once_bound() {
        let pvc = |phase: Option<&str>| {
            let mut v = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "namespace": "shop"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                         "storageClassName": "standard", "volumeMode": "Filesystem"}});
            if let Some(phase) = phase {
                v["status"] =
                    json!({"phase": phase, "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}});
            }
            v
        };
        assert_eq!(assess(&pvc(Some("Bound"))), Health::Current);
        assert_eq!(
            assess(&pvc(Some("Pending"))),
            waiting("not bound (phase Pending)")
        );
        assert_eq!(assess(&pvc(None)), waiting("not bound yet"));
    }

    #[test]
    fn services_wait_only_for_a_load_balancer_address() {
        let svc = |kind: &str, status: Value| {
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "vision", "namespace": "manufracture"},
                   "spec": {"type": kind, "clusterIP": "10.96.14.2", "clusterIPs": ["10.96.14.2"],
                            "ports": [{"port": 6776, "protocol": "TCP", "targetPort": 6776}],
                            "selector": {"app": "vision"}},
                   "status": status})
        };
        assert_eq!(
            assess(&svc("ClusterIP", json!({"loadBalancer": {}}))),
            Health::Current
        );
        assert_eq!(
            assess(&svc("NodePort", json!({"loadBalancer": {}}))),
            Health::Current
        );
        assert_eq!(
            assess(&svc("LoadBalancer", json!({"loadBalancer": {}}))),
            waiting("waiting for a load balancer address")
        );
        let assigned = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7", "ipMode": "VIP"}]}});
        assert_eq!(assess(&svc("LoadBalancer", assigned)), Health::Current);
    }

    fn pod_with(status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "debug", "namespace": "shop", "creationTimestamp": "2025-01-07T10:00:00Z"},
               "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}], "restartPolicy": "Always"},
               "status": status})
    }

    #[test]
    fn pod_rules() {
        let ready = json!({"phase": "Running", "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True"}, {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"},
            {"type": "PodScheduled", "status": "True"}]});
        let crashing = json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s restarting failed container"}}}]});
        let unschedulable = json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available: 3 Insufficient cpu."}]});
        let evicted = json!({"phase": "Failed", "reason": "Evicted",
                             "message": "The node was low on resource: memory."});
        let cases = [
            ("ready", ready, Health::Current),
            ("succeeded", json!({"phase": "Succeeded"}), Health::Current),
            (
                "failed",
                evicted,
                failed("pod failed: Evicted: The node was low on resource: memory."),
            ),
            ("crash loop", crashing, failed("containers crash looping: app")),
            (
                "unschedulable",
                unschedulable,
                waiting("not scheduled: Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."),
            ),
            ("pending", json!({"phase": "Pending"}), waiting("phase Pending")),
            (
                "no kubelet yet",
                json!({}),
                waiting("not yet observed by a kubelet"),
            ),
        ];
        for (name, status, expected) in cases {
            assert_eq!(assess(&pod_with(status)), expected, "{name}");
        }
    }

    fn crd_with(conditions: Value) -> Value {
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "widgets.example.com", "generation": 1},
               "spec": {"group": "example.com", "scope": "Namespaced",
                        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
                        "versions": [{"name": "v1", "served": true, "storage": true,
                                      "schema": {"openAPIV3Schema": {"type": "object"}}}]},
               "status": {"acceptedNames": {"kind": "Widget", "plural": "widgets"}, "storedVersions": ["v1"],
                          "conditions": conditions}})
    }

    #[test]
    fn crd_rules() {
        let established = json!([
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}]);
        assert_eq!(assess(&crd_with(established)), Health::Current);
        let installing = json!([
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
            {"type": "Established", "status": "False", "reason": "Installing", "message": "the initial names have been accepted"}]);
        assert_eq!(assess(&crd_with(installing)), waiting("not established yet"));
        let conflict = json!([
            {"type": "NamesAccepted", "status": "False", "reason": "PluralConflict",
             "message": "\"widgets\" is already in use"},
            {"type": "Established", "status": "False", "reason": "NotAccepted", "message": "not all names are accepted"}]);
        assert_eq!(
            assess(&crd_with(conflict)),
            failed("names not accepted: PluralConflict: \"widgets\" is already in use")
        );
        assert_eq!(assess(&crd_with(json!([]))), waiting("not established yet"));
    }

    fn custom(generation: i64, conditions: Value) -> Value {
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
               "metadata": {"name": "shop-tls", "namespace": "shop", "generation": generation},
               "spec": {"secretName": "shop-tls", "dnsNames": ["shop.example.com"],
                        "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}},
               "status": {"conditions": conditions}})
    }

    #[test]
    fn other_kinds_follow_ready_then_available() {
        let ready = json!([{"type": "Ready", "status": "True", "reason": "Ready", "observedGeneration": 2,
                            "message": "Certificate is up to date and has not expired"}]);
        assert_eq!(assess(&custom(2, ready.clone())), Health::Current);
        // The condition is about an older spec: the operator has not caught up yet.
        assert_eq!(
            assess(&custom(3, ready)),
            waiting("Ready describes generation 2, not the latest 3")
        );
        // A reason that sounds fatal is still only InProgress: only Stalled is Failed.
        let failing = json!([{"type": "Ready", "status": "False", "reason": "Failed",
                              "message": "The certificate request has failed to complete and will be retried"}]);
        assert_eq!(
            assess(&custom(2, failing)),
            waiting(
                "Ready is False: Failed: The certificate request has failed to complete and will be retried"
            )
        );
        let available = json!([{"type": "Available", "status": "Unknown"}]);
        assert_eq!(
            assess(&custom(2, available)),
            waiting("Available is Unknown: no reason given")
        );
        // Conditions that say nothing about readiness: it exists, so it is current (kstatus).
        let other = json!([{"type": "Issuing", "status": "False"}]);
        assert_eq!(assess(&custom(2, other)), Health::Current);
    }

    #[test]
    fn kstatus_standard_conditions_win_on_every_kind() {
        let stalled = json!([{"type": "Ready", "status": "False", "reason": "Progressing"},
                             {"type": "Stalled", "status": "True", "reason": "InvalidSpec",
                              "message": "spec.interval must be positive"}]);
        assert_eq!(
            assess(&custom(1, stalled)),
            failed("stalled: InvalidSpec: spec.interval must be positive")
        );
        let reconciling = json!([{"type": "Ready", "status": "True"},
                                 {"type": "Reconciling", "status": "True", "reason": "Progressing",
                                  "message": "fetching revision main@sha1:0c9a1b"}]);
        assert_eq!(
            assess(&custom(1, reconciling)),
            waiting("reconciling: Progressing: fetching revision main@sha1:0c9a1b")
        );
    }

    #[test]
    fn objects_without_status_are_current_and_deleting_ones_are_not() {
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "settings", "namespace": "shop"}, "data": {"a": "1"}});
        assert_eq!(assess(&config), Health::Current);
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                          "metadata": {"name": "reader"},
                          "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
        assert_eq!(assess(&role), Health::Current);
        let mut deleting = config.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2025-01-07T10:00:00Z");
        deleting["metadata"]["finalizers"] = json!(["example.com/keep"]);
        assert_eq!(assess(&deleting), waiting("being deleted"));
        // A body without identity is still judged by what it carries.
        assert_eq!(assess(&json!({"status": {}})), Health::Current);
    }

    #[test]
    fn generic_generation_check_applies_to_any_kind_that_reports_it() {
        let hpa = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "shop", "generation": 4},
            "spec": {"minReplicas": 2, "maxReplicas": 5,
                     "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
            "status": {"observedGeneration": 3, "currentReplicas": 2, "desiredReplicas": 2,
                       "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}]}});
        assert_eq!(
            assess(&hpa),
            waiting("generation 4 not yet observed by its controller (it saw 3)")
        );
    }

    #[test]
    fn long_condition_messages_are_capped() {
        let message = "é".repeat(300);
        let c = json!([{"type": "Ready", "status": "False", "reason": "Error", "message": message}]);
        let Health::InProgress { reason } = assess(&custom(1, c)) else {
            panic!("in progress");
        };
        assert!(reason.ends_with("..."), "{reason}");
        assert!(reason.len() < 230, "{}", reason.len());
    }
}
