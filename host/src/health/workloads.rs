//! kstatus rules for the workload controllers of `apps`: Deployment, StatefulSet,
//! DaemonSet, ReplicaSet. Each reads the counts its controller publishes in `status` against
//! what `spec` asks for (kstatus `core.go`).

use super::rules::{Health, condition, explain, int, require_observed, status_of, text};
use serde_json::Value;

/// kstatus `deploymentConditions`, without its requirement of `Available` and `Progressing`
/// conditions: the replica counts say the same, and kitsync's tests (playing the controller
/// on a control plane without one) need not forge conditions to be believed.
pub(super) fn deployment(object: &Value) -> Health {
    if let Some(c) = condition(object, "Progressing")
        && c.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
    {
        return Health::failed(format!("progress deadline exceeded: {}", explain(c)));
    }
    if let Some(waiting) = require_observed(object) {
        return waiting;
    }
    // The controller's own default when `spec.replicas` is unset.
    let want = int(object, "/spec/replicas").unwrap_or(1);
    let replicas = int(object, "/status/replicas").unwrap_or(0);
    let updated = int(object, "/status/updatedReplicas").unwrap_or(0);
    let ready = int(object, "/status/readyReplicas").unwrap_or(0);
    let available = int(object, "/status/availableReplicas").unwrap_or(0);
    if updated < want {
        return Health::waiting(format!("{updated} of {want} replicas updated"));
    }
    if replicas > updated || replicas > want {
        let old = replicas - updated.min(want);
        return Health::waiting(format!("{old} old replicas pending termination"));
    }
    if available < want {
        return Health::waiting(format!("{available} of {want} replicas available"));
    }
    if ready < want {
        return Health::waiting(format!("{ready} of {want} replicas ready"));
    }
    Health::Current
}

/// kstatus `stsConditions`. The StatefulSet controller sets no conditions, so a failed
/// rollout cannot be told from a slow one: a StatefulSet is never Failed, only late.
pub(super) fn stateful_set(object: &Value) -> Health {
    if let Some(waiting) = require_observed(object) {
        return waiting;
    }
    // OnDelete: pods are replaced by hand, so revisions differ by design.
    if text(object, "/spec/updateStrategy/type") == Some("OnDelete") {
        return Health::Current;
    }
    let want = int(object, "/spec/replicas").unwrap_or(1);
    let replicas = int(object, "/status/replicas").unwrap_or(0);
    let ready = int(object, "/status/readyReplicas").unwrap_or(0);
    let current = int(object, "/status/currentReplicas").unwrap_or(0);
    let updated = int(object, "/status/updatedReplicas").unwrap_or(0);
    if replicas < want {
        return Health::waiting(format!("{replicas} of {want} replicas created"));
    }
    if ready < want {
        return Health::waiting(format!("{ready} of {want} replicas ready"));
    }
    if replicas > want {
        let extra = replicas - want;
        return Health::waiting(format!("{extra} extra replicas pending termination"));
    }
    // A partitioned rollout updates only the ordinals at or above the partition; the rest
    // keep the old revision on purpose.
    if let Some(partition) = int(object, "/spec/updateStrategy/rollingUpdate/partition") {
        let target = (want - partition).max(0);
        if updated < target {
            return Health::waiting(format!(
                "{updated} of {target} replicas updated (partition {partition})"
            ));
        }
        return Health::Current;
    }
    if updated < want {
        return Health::waiting(format!("{updated} of {want} replicas updated"));
    }
    if current < want {
        return Health::waiting(format!("{current} of {want} replicas at the current revision"));
    }
    let current_revision = text(object, "/status/currentRevision").unwrap_or("");
    let update_revision = text(object, "/status/updateRevision").unwrap_or("");
    if current_revision != update_revision {
        return Health::waiting(format!(
            "rolling out revision {update_revision} (current revision {current_revision})"
        ));
    }
    Health::Current
}

/// kstatus `daemonsetConditions`: counts are of nodes that should run a pod.
pub(super) fn daemon_set(object: &Value) -> Health {
    if let Some(waiting) = require_observed(object) {
        return waiting;
    }
    let Some(desired) = int(object, "/status/desiredNumberScheduled") else {
        return Health::waiting("no desired pod count yet");
    };
    let scheduled = int(object, "/status/currentNumberScheduled").unwrap_or(0);
    let updated = int(object, "/status/updatedNumberScheduled").unwrap_or(0);
    let available = int(object, "/status/numberAvailable").unwrap_or(0);
    let ready = int(object, "/status/numberReady").unwrap_or(0);
    if scheduled < desired {
        return Health::waiting(format!("{scheduled} of {desired} pods scheduled"));
    }
    if updated < desired {
        return Health::waiting(format!("{updated} of {desired} pods updated"));
    }
    if available < desired {
        return Health::waiting(format!("{available} of {desired} pods available"));
    }
    if ready < desired {
        return Health::waiting(format!("{ready} of {desired} pods ready"));
    }
    Health::Current
}

/// kstatus `replicasetConditions`. A `ReplicaFailure` (quota, admission) may clear by
/// itself, so it explains the wait rather than failing it.
pub(super) fn replica_set(object: &Value) -> Health {
    if let Some(waiting) = require_observed(object) {
        return waiting;
    }
    if let Some(c) = condition(object, "ReplicaFailure").filter(|c| status_of(c) == "True") {
        return Health::waiting(format!("replica failure: {}", explain(c)));
    }
    let want = int(object, "/spec/replicas").unwrap_or(1);
    let replicas = int(object, "/status/replicas").unwrap_or(0);
    let labelled = int(object, "/status/fullyLabeledReplicas").unwrap_or(0);
    let available = int(object, "/status/availableReplicas").unwrap_or(0);
    let ready = int(object, "/status/readyReplicas").unwrap_or(0);
    if labelled < want {
        return Health::waiting(format!("{labelled} of {want} replicas labelled"));
    }
    if available < want {
        return Health::waiting(format!("{available} of {want} replicas available"));
    }
    if ready < want {
        return Health::waiting(format!("{ready} of {want} replicas ready"));
    }
    if replicas > want {
        let extra = replicas - want;
        return Health::waiting(format!("{extra} extra replicas pending termination"));
    }
    Health::Current
}

#[cfg(test)]
mod tests {
    use super::super::assess;
    use super::*;
    use serde_json::json;

    fn waiting(reason: &str) -> Health {
        Health::waiting(reason)
    }

    fn failed(reason: &str) -> Health {
        Health::failed(reason)
    }

    /// A real Deployment as the API server returns it, with `status` replaced.
    fn deployment_with(replicas: i64, status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "generation": 2,
                         "uid": "5b0e5c16-6c1d-4f0c-9d53-0f6e4e1e3a10", "resourceVersion": "81234"},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": 600, "revisionHistoryLimit": 10,
                     "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
            "status": status,
        })
    }

    #[test]
    fn a_rolled_out_deployment_is_current() {
        let d = deployment_with(
            3,
            json!({
                "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
                "availableReplicas": 3,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                     "message": "Deployment has minimum availability."},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                     "message": "ReplicaSet \"web-7c5ddbdf54\" has successfully progressed."}]
            }),
        );
        assert_eq!(assess(&d), Health::Current);
    }

    #[test]
    fn deployment_rules_name_what_is_missing() {
        let cases = [
            (
                "no status",
                json!({}),
                waiting("not yet observed by its controller"),
            ),
            (
                "old generation",
                json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3,
                       "readyReplicas": 3, "availableReplicas": 3}),
                waiting("generation 2 not yet observed by its controller (it saw 1)"),
            ),
            (
                "rolling",
                json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1,
                       "readyReplicas": 3, "availableReplicas": 3, "unavailableReplicas": 1}),
                waiting("1 of 3 replicas updated"),
            ),
            (
                "old pods terminating",
                json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3,
                       "readyReplicas": 3, "availableReplicas": 3}),
                waiting("1 old replicas pending termination"),
            ),
            (
                "unavailable",
                json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
                       "readyReplicas": 1, "availableReplicas": 1, "unavailableReplicas": 2}),
                waiting("1 of 3 replicas available"),
            ),
            (
                "available but a pod just went unready",
                json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
                       "readyReplicas": 2, "availableReplicas": 3}),
                waiting("2 of 3 replicas ready"),
            ),
        ];
        for (name, status, expected) in cases {
            assert_eq!(assess(&deployment_with(3, status)), expected, "{name}");
        }
    }

    #[test]
    fn a_deployment_past_its_progress_deadline_failed() {
        let d = deployment_with(
            3,
            json!({
                "observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "readyReplicas": 2,
                "availableReplicas": 2, "unavailableReplicas": 1,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                    {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                     "message": "ReplicaSet \"web-6d4cf56db6\" has timed out progressing."}]
            }),
        );
        assert_eq!(
            assess(&d),
            failed(
                "progress deadline exceeded: ProgressDeadlineExceeded: ReplicaSet \"web-6d4cf56db6\" has timed out progressing."
            )
        );
    }

    #[test]
    fn a_deployment_without_replicas_defaults_to_one_and_zero_is_current_at_once() {
        let mut d = deployment_with(1, json!({"observedGeneration": 2}));
        d["spec"].as_object_mut().expect("spec").remove("replicas");
        assert_eq!(assess(&d), waiting("0 of 1 replicas updated"));
        let scaled_down = deployment_with(0, json!({"observedGeneration": 2}));
        assert_eq!(assess(&scaled_down), Health::Current);
    }

    fn stateful_set_with(spec: Value, status: Value) -> Value {
        let mut s = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "shop", "generation": 3},
            "spec": {"replicas": 3, "serviceName": "db", "podManagementPolicy": "OrderedReady",
                     "selector": {"matchLabels": {"app": "db"}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                     "template": {"metadata": {"labels": {"app": "db"}},
                                  "spec": {"containers": [{"name": "db", "image": "postgres:17"}]}}},
            "status": status,
        });
        if let (Some(target), Some(extra)) = (s["spec"].as_object_mut(), spec.as_object()) {
            target.extend(extra.clone());
        }
        s
    }

    #[test]
    fn stateful_set_rules() {
        let done = json!({"observedGeneration": 3, "replicas": 3, "readyReplicas": 3,
            "currentReplicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
            "currentRevision": "db-5d8f6c7b9", "updateRevision": "db-5d8f6c7b9", "collisionCount": 0});
        let rolling = json!({"observedGeneration": 3, "replicas": 3, "readyReplicas": 3,
            "currentReplicas": 2, "updatedReplicas": 1, "availableReplicas": 3,
            "currentRevision": "db-5d8f6c7b9", "updateRevision": "db-84c9d7f6d5"});
        let no_partition = json!({"updateStrategy": {"type": "RollingUpdate"}});
        let cases = [
            ("rolled out", json!({}), done.clone(), Health::Current),
            (
                "not observed",
                json!({}),
                json!({"replicas": 0}),
                waiting("not yet observed by its controller"),
            ),
            (
                "creating",
                json!({}),
                json!({"observedGeneration": 3, "replicas": 1, "readyReplicas": 1}),
                waiting("1 of 3 replicas created"),
            ),
            (
                "not ready",
                json!({}),
                json!({"observedGeneration": 3, "replicas": 3, "readyReplicas": 2}),
                waiting("2 of 3 replicas ready"),
            ),
            // partition 0: every ordinal must be updated, the revisions may lag.
            (
                "partition 0 rolling",
                json!({}),
                rolling.clone(),
                waiting("1 of 3 replicas updated (partition 0)"),
            ),
            (
                "partition 2 done",
                json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
                rolling.clone(),
                Health::Current,
            ),
            (
                "rolling without partition",
                no_partition.clone(),
                rolling,
                waiting("1 of 3 replicas updated"),
            ),
            (
                "revision not yet current",
                no_partition.clone(),
                json!({"observedGeneration": 3, "replicas": 3, "readyReplicas": 3, "currentReplicas": 3,
                       "updatedReplicas": 3, "currentRevision": "db-5d8f6c7b9", "updateRevision": "db-84c9d7f6d5"}),
                waiting("rolling out revision db-84c9d7f6d5 (current revision db-5d8f6c7b9)"),
            ),
            (
                "rolled out without partition",
                no_partition,
                done.clone(),
                Health::Current,
            ),
            (
                "on delete",
                json!({"updateStrategy": {"type": "OnDelete"}}),
                json!({"observedGeneration": 3, "replicas": 3, "readyReplicas": 1}),
                Health::Current,
            ),
        ];
        for (name, spec, status, expected) in cases {
            assert_eq!(assess(&stateful_set_with(spec, status)), expected, "{name}");
        }
    }

    fn daemon_set_with(status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "fluent-bit", "namespace": "logging", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "fluent-bit"}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                     "template": {"metadata": {"labels": {"app": "fluent-bit"}},
                                  "spec": {"containers": [{"name": "fluent-bit", "image": "fluent/fluent-bit:3.1"}]}}},
            "status": status,
        })
    }

    #[test]
    fn daemon_set_rules() {
        let cases = [
            (
                "all nodes",
                json!({"observedGeneration": 1, "desiredNumberScheduled": 4, "currentNumberScheduled": 4,
                       "updatedNumberScheduled": 4, "numberAvailable": 4, "numberReady": 4, "numberMisscheduled": 0}),
                Health::Current,
            ),
            (
                "no observed generation",
                json!({"desiredNumberScheduled": 0}),
                waiting("not yet observed by its controller"),
            ),
            (
                "no desired count",
                json!({"observedGeneration": 1}),
                waiting("no desired pod count yet"),
            ),
            (
                "updating",
                json!({"observedGeneration": 1, "desiredNumberScheduled": 4, "currentNumberScheduled": 4,
                       "updatedNumberScheduled": 2, "numberAvailable": 3, "numberReady": 3, "numberUnavailable": 1}),
                waiting("2 of 4 pods updated"),
            ),
            (
                "unavailable",
                json!({"observedGeneration": 1, "desiredNumberScheduled": 4, "currentNumberScheduled": 4,
                       "updatedNumberScheduled": 4, "numberAvailable": 3, "numberReady": 4}),
                waiting("3 of 4 pods available"),
            ),
            (
                "no nodes match",
                json!({"observedGeneration": 1, "desiredNumberScheduled": 0, "currentNumberScheduled": 0,
                       "updatedNumberScheduled": 0, "numberAvailable": 0, "numberReady": 0}),
                Health::Current,
            ),
        ];
        for (name, status, expected) in cases {
            assert_eq!(assess(&daemon_set_with(status)), expected, "{name}");
        }
    }

    #[test]
    fn replica_set_rules() {
        let rs = |status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": "web-7c5ddbdf54", "namespace": "shop", "generation": 1},
                   "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}},
                   "status": status})
        };
        let quota = json!({"observedGeneration": 1, "replicas": 0, "conditions": [
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
             "message": "pods \"web-7c5ddbdf54-x\" is forbidden: exceeded quota: compute"}]});
        assert_eq!(
            assess(&rs(quota)),
            waiting(
                "replica failure: FailedCreate: pods \"web-7c5ddbdf54-x\" is forbidden: exceeded quota: compute"
            )
        );
        let partial = json!({"observedGeneration": 1, "replicas": 2, "fullyLabeledReplicas": 2,
                             "readyReplicas": 1, "availableReplicas": 1});
        assert_eq!(assess(&rs(partial)), waiting("1 of 2 replicas available"));
        let done = json!({"observedGeneration": 1, "replicas": 2, "fullyLabeledReplicas": 2,
                          "readyReplicas": 2, "availableReplicas": 2});
        assert_eq!(assess(&rs(done)), Health::Current);
    }

    #[test]
    fn a_stalled_condition_wins_over_good_counts() {
        let mut deployment = deployment_with(
            1,
            json!({"observedGeneration": 2, "replicas": 1,
            "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
            "conditions": [{"type": "Stalled", "status": "True", "reason": "Custom"}]}),
        );
        assert_eq!(assess(&deployment), failed("stalled: Custom"));
        deployment["status"]["conditions"] = json!([]);
        assert_eq!(assess(&deployment), Health::Current);
    }
}
