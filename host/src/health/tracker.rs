//! What a health wait has seen: each object's last health and each watch's state. Pure:
//! fed watch events, it answers without I/O, so it is tested without a cluster.

use super::rules::{Health, assess_kind, missing};
use super::{Error, Outcome, classify, transient, unwrap_watch_error};
use crate::object::ObjectRef;
use kube::api::DynamicObject;
use kube::runtime::watcher::{self, Event};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// Objects of one kind in one namespace: one watch.
pub(super) struct Group {
    /// The first member: errors name it.
    pub(super) first: ObjectRef,
    pub(super) api_version: String,
    pub(super) kind: String,
    pub(super) namespace: Option<String>,
    /// Members by name.
    pub(super) members: BTreeMap<String, ObjectRef>,
    /// Names listed since the last `Init`, while a (re)list is under way.
    listing: Option<HashSet<String>>,
    /// The last transient failure of the watch, cleared by its next event.
    failing: Option<kube::Error>,
    /// All members were seen Current: the watch was stopped.
    settled: bool,
}

/// What has been seen of every object, and of every group's watch.
pub(super) struct Tracker {
    pub(super) health: BTreeMap<ObjectRef, Health>,
    pub(super) groups: Vec<Group>,
}

impl Tracker {
    /// Every object InProgress "not seen yet", grouped by kind and namespace in first-seen order.
    pub(super) fn new(objects: &[ObjectRef]) -> Self {
        let mut health = BTreeMap::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut index: HashMap<(&str, &str, Option<&str>), usize> = HashMap::new();
        for id in objects {
            if health
                .insert(
                    id.clone(),
                    Health::InProgress {
                        reason: "not seen yet".into(),
                    },
                )
                .is_some()
            {
                continue;
            }
            let key = (id.api_version.as_str(), id.kind.as_str(), id.namespace.as_deref());
            let g = *index.entry(key).or_insert_with(|| {
                groups.push(Group {
                    first: id.clone(),
                    api_version: id.api_version.clone(),
                    kind: id.kind.clone(),
                    namespace: id.namespace.clone(),
                    members: BTreeMap::new(),
                    listing: None,
                    failing: None,
                    settled: false,
                });
                groups.len() - 1
            });
            groups[g].members.insert(id.name.clone(), id.clone());
        }
        Tracker { health, groups }
    }

    /// Records one watch event of group `g`; returns the first object it shows Failed.
    pub(super) fn observe(&mut self, g: usize, event: Event<DynamicObject>) -> Option<(ObjectRef, String)> {
        let group = &mut self.groups[g];
        group.failing = None;
        if group.settled {
            return None;
        }
        let mut seen: Vec<(ObjectRef, Health)> = Vec::new();
        match event {
            Event::Init => group.listing = Some(HashSet::new()),
            Event::InitApply(object) | Event::Apply(object) => {
                let name = object.metadata.name.clone().unwrap_or_default();
                if let Some(listing) = &mut group.listing {
                    listing.insert(name.clone());
                }
                if let Some(id) = group.members.get(&name) {
                    // Never judged from a body that failed to serialize: `null` has no
                    // status, which would read as Current.
                    let health = match serde_json::to_value(&object) {
                        Ok(body) => assess_kind(&group.api_version, &group.kind, &body),
                        Err(e) => Health::InProgress {
                            reason: format!("unreadable: {e}"),
                        },
                    };
                    seen.push((id.clone(), health));
                }
            }
            Event::Delete(object) => {
                let name = object.metadata.name.unwrap_or_default();
                if let Some(id) = group.members.get(&name) {
                    seen.push((id.clone(), missing(id)));
                }
            }
            // A complete (re)list: members it did not show are gone.
            Event::InitDone => {
                let listed = group.listing.take().unwrap_or_default();
                for (name, id) in &group.members {
                    if !listed.contains(name) {
                        seen.push((id.clone(), missing(id)));
                    }
                }
            }
        }
        let mut failed = None;
        for (id, health) in seen {
            if self.health.get(&id) != Some(&health) {
                tracing::debug!(object = %id, %health, "health changed");
            }
            if let (Health::Failed { reason }, None) = (&health, &failed) {
                failed = Some((id.clone(), reason.clone()));
            }
            self.health.insert(id, health);
        }
        failed
    }

    /// Marks group `g` settled when all its members are Current; true when it just was.
    pub(super) fn settle(&mut self, g: usize) -> bool {
        let group = &self.groups[g];
        let current = group
            .members
            .values()
            .all(|id| self.health.get(id).is_some_and(Health::is_current));
        if current && !group.settled {
            self.groups[g].settled = true;
            return true;
        }
        false
    }

    pub(super) fn all_current(&self) -> bool {
        self.health.values().all(Health::is_current)
    }

    /// Records a failed watch of group `g`: a transient failure is kept (the watcher
    /// retries with backoff), anything else ends the wait.
    pub(super) fn fail(&mut self, g: usize, error: watcher::Error) -> Result<(), Error> {
        let error = unwrap_watch_error(error);
        let group = &mut self.groups[g];
        if !transient(&error) {
            return Err(classify(error, &group.first, group.namespace.as_deref()));
        }
        tracing::debug!(kind = %group.kind, namespace = ?group.namespace, %error, "watch failing; retrying");
        group.failing = Some(error);
        Ok(())
    }

    /// The outcome at the deadline: what is still pending, unless a pending object's watch
    /// was failing (then its reason is not an observation, and the server is the problem).
    pub(super) fn expire(mut self, after: Duration) -> Result<Outcome, Error> {
        let health = &self.health;
        let failing = self.groups.iter_mut().find(|group| {
            group.failing.is_some()
                && group
                    .members
                    .values()
                    .any(|id| !health.get(id).is_some_and(Health::is_current))
        });
        if let Some(group) = failing
            && let Some(source) = group.failing.take()
        {
            return Err(Error::Unavailable {
                kind: group.kind.clone(),
                namespace: group.namespace.clone(),
                source: Box::new(source),
            });
        }
        let pending = self
            .health
            .into_iter()
            .filter_map(|(id, health)| match health {
                Health::Current => None,
                Health::InProgress { reason } | Health::Failed { reason } => Some((id, reason)),
            })
            .collect();
        Ok(Outcome::TimedOut { after, pending })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(api_version: &str, kind: &str, name: &str) -> ObjectRef {
        ObjectRef {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: Some("shop".into()),
            name: name.into(),
        }
    }

    /// A watch item as the API server sends it: no apiVersion/kind on list items.
    fn live(name: &str, status: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop", "generation": 1},
            "spec": {"replicas": 2},
            "status": status,
        }))
        .expect("object")
    }

    fn available(name: &str) -> DynamicObject {
        live(
            name,
            json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                   "readyReplicas": 2, "availableReplicas": 2}),
        )
    }

    fn reason(tracker: &Tracker, id: &ObjectRef) -> String {
        tracker
            .health
            .get(id)
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    #[test]
    fn objects_are_grouped_by_kind_and_namespace_once_each() {
        let web = id("apps/v1", "Deployment", "web");
        let api = id("apps/v1", "Deployment", "api");
        let settings = id("v1", "ConfigMap", "settings");
        let mut elsewhere = id("apps/v1", "Deployment", "web");
        elsewhere.namespace = Some("other".into());
        let tracker = Tracker::new(&[web.clone(), settings, api, web, elsewhere]);
        let shape: Vec<(&str, Option<&str>, usize)> = tracker
            .groups
            .iter()
            .map(|g| (g.kind.as_str(), g.namespace.as_deref(), g.members.len()))
            .collect();
        assert_eq!(
            shape,
            [
                ("Deployment", Some("shop"), 2),
                ("ConfigMap", Some("shop"), 1),
                ("Deployment", Some("other"), 1)
            ]
        );
        assert_eq!(tracker.health.len(), 4, "the duplicate counts once");
    }

    #[test]
    fn a_list_settles_a_group_and_ignores_objects_not_applied() {
        let web = id("apps/v1", "Deployment", "web");
        let api = id("apps/v1", "Deployment", "api");
        let mut tracker = Tracker::new(&[web.clone(), api.clone()]);
        assert_eq!(tracker.observe(0, Event::Init), None);
        assert_eq!(tracker.observe(0, Event::InitApply(available("web"))), None);
        assert_eq!(
            tracker.observe(0, Event::InitApply(live("someone-elses", json!({})))),
            None
        );
        assert!(!tracker.settle(0), "api was not listed yet");
        assert_eq!(tracker.observe(0, Event::InitApply(available("api"))), None);
        assert_eq!(tracker.observe(0, Event::InitDone), None);
        assert!(tracker.settle(0));
        assert!(!tracker.settle(0), "settles once");
        assert!(tracker.all_current());
        assert_eq!(tracker.health.len(), 2);
    }

    #[test]
    fn objects_missing_from_a_list_are_not_found_except_jobs() {
        let web = id("apps/v1", "Deployment", "web");
        let migrate = id("batch/v1", "Job", "migrate");
        let mut tracker = Tracker::new(&[web.clone(), migrate.clone()]);
        for g in 0..2 {
            tracker.observe(g, Event::Init);
            tracker.observe(g, Event::InitDone);
        }
        assert_eq!(reason(&tracker, &web), "in progress: not found");
        assert_eq!(
            reason(&tracker, &migrate),
            "current",
            "a Job gone after its run finished"
        );
        assert!(tracker.settle(1));
        assert!(!tracker.settle(0));
    }

    #[test]
    fn a_deletion_during_the_wait_makes_the_object_pending_again() {
        let web = id("apps/v1", "Deployment", "web");
        let mut tracker = Tracker::new(std::slice::from_ref(&web));
        tracker.observe(0, Event::Apply(available("web")));
        assert!(tracker.all_current());
        tracker.observe(0, Event::Delete(available("web")));
        assert_eq!(reason(&tracker, &web), "in progress: not found");
    }

    #[test]
    fn the_first_failed_object_is_reported() {
        let web = id("apps/v1", "Deployment", "web");
        let mut tracker = Tracker::new(std::slice::from_ref(&web));
        let stuck = live(
            "web",
            json!({"observedGeneration": 1, "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": "ReplicaSet \"web-1\" has timed out progressing."}]}),
        );
        let (object, why) = tracker.observe(0, Event::Apply(stuck)).expect("failed");
        assert_eq!(object, web);
        assert!(why.starts_with("progress deadline exceeded"), "{why}");
    }

    #[test]
    fn at_the_deadline_pending_objects_keep_their_last_reason() {
        let web = id("apps/v1", "Deployment", "web");
        let settings = id("v1", "ConfigMap", "settings");
        let mut tracker = Tracker::new(&[web.clone(), settings.clone()]);
        tracker.observe(
            0,
            Event::Apply(live(
                "web",
                json!({"observedGeneration": 1, "replicas": 2,
            "updatedReplicas": 2, "readyReplicas": 1, "availableReplicas": 1}),
            )),
        );
        let outcome = tracker.expire(Duration::from_secs(60)).expect("no failing watch");
        assert_eq!(
            outcome,
            Outcome::TimedOut {
                after: Duration::from_secs(60),
                // ObjectRef order: apiVersion first.
                pending: vec![
                    (web, "1 of 2 replicas available".into()),
                    (settings, "not seen yet".into())
                ],
            }
        );
    }

    #[test]
    fn a_failing_watch_at_the_deadline_is_unavailability_not_a_timeout() {
        let web = id("apps/v1", "Deployment", "web");
        let mut tracker = Tracker::new(std::slice::from_ref(&web));
        let refused =
            kube::core::Status::failure("etcdserver: leader changed", "InternalError").with_code(500);
        tracker
            .fail(
                0,
                watcher::Error::InitialListFailed(kube::Error::Api(refused.boxed())),
            )
            .expect("a server fault is retried");
        let error = tracker.expire(Duration::from_secs(1)).expect_err("unavailable");
        assert!(error.is_retryable(), "{error}");
        // The next event clears the failure.
        let mut tracker = Tracker::new(std::slice::from_ref(&web));
        let refused =
            kube::core::Status::failure("etcdserver: leader changed", "InternalError").with_code(500);
        tracker
            .fail(0, watcher::Error::WatchFailed(kube::Error::Api(refused.boxed())))
            .expect("retried");
        tracker.observe(0, Event::Init);
        assert!(matches!(
            tracker.expire(Duration::from_secs(1)),
            Ok(Outcome::TimedOut { .. })
        ));
    }

    #[test]
    fn an_expired_watch_is_listed_again_not_an_error() {
        let web = id("apps/v1", "Deployment", "web");
        let mut tracker = Tracker::new(std::slice::from_ref(&web));
        tracker.observe(0, Event::Apply(available("web")));
        let gone =
            kube::core::Status::failure("too old resource version: 12 (3456)", "Expired").with_code(410);
        tracker
            .fail(0, watcher::Error::WatchError(gone.boxed()))
            .expect("the watcher lists again");
        // The re-list no longer shows it: deleted while the watch was down.
        tracker.observe(0, Event::Init);
        tracker.observe(0, Event::InitDone);
        assert_eq!(reason(&tracker, &web), "in progress: not found");
    }

    #[test]
    fn a_refused_or_vanished_kind_ends_the_wait() {
        let web = id("apps/v1", "Deployment", "web");
        let mut tracker = Tracker::new(std::slice::from_ref(&web));
        let forbidden =
            kube::core::Status::failure("deployments.apps is forbidden", "Forbidden").with_code(403);
        let error = tracker
            .fail(
                0,
                watcher::Error::InitialListFailed(kube::Error::Api(forbidden.boxed())),
            )
            .expect_err("forbidden is final");
        assert_eq!(error.label(), "rejected");
        assert!(error.to_string().contains("in namespace shop"), "{error}");
        let gone =
            kube::core::Status::failure("the server could not find the requested resource", "NotFound")
                .with_code(404);
        let error = tracker
            .fail(
                0,
                watcher::Error::WatchStartFailed(kube::Error::Api(gone.boxed())),
            )
            .expect_err("a kind no longer served is final");
        assert_eq!(error.label(), "unknown-kind");
        let error = tracker
            .fail(0, watcher::Error::NoResourceVersion)
            .expect_err("not watchable");
        assert_eq!(error.label(), "rejected");
    }
}
