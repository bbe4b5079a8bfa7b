//! What the service tells the cluster about each kit: the `Kit` custom resource (group
//! `kitsync.dev`, version `v1alpha1`, one per kit in the host's namespace) with
//! kstatus-compatible conditions, and Kubernetes Events on it.
//!
//! Writes are server-side applies with field manager `kitsync`, and are skipped when the
//! status would not change, so an idle service writes nothing.

use crate::apply::FIELD_MANAGER;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The Kit CustomResourceDefinition, installed (or upgraded) by `serve` at start.
pub const KIT_CRD: &str = include_str!("kit-crd.yaml");
/// API group of the Kit resource.
pub const GROUP: &str = "kitsync.dev";
/// Version of the Kit resource.
pub const VERSION: &str = "v1alpha1";
/// Annotation that makes `serve` reconcile a kit at once; `kitsync reconcile KIT` sets it
/// to the current time.
pub const RECONCILE_AT: &str = "kitsync.dev/reconcile-at";
/// Most findings kept in a Kit's status.
pub const MAX_FINDINGS: usize = 20;

/// The Kit resource, for dynamic API calls.
pub fn kit_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, "Kit"), "kits")
}

/// `spec` of a Kit: where it comes from, mirrored from Git.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KitSpec {
    /// Name of the source in the host config.
    pub source: String,
    /// The kit's directory in the repository.
    pub path: String,
    /// The namespace its objects go to.
    pub namespace: String,
    /// `suspend: true` in kit.yaml.
    #[serde(default)]
    pub suspend: bool,
    /// Service account its writes impersonate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// One kstatus condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Reconciling` or `Stalled`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason.
    #[serde(default)]
    pub reason: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// The Kit's generation this condition was computed for.
    #[serde(default)]
    pub observed_generation: i64,
    /// When `status` last changed, RFC 3339.
    #[serde(default)]
    pub last_transition_time: String,
}

/// The applied commit's author, time and subject.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    /// `Name <email>`.
    pub author: String,
    /// RFC 3339.
    pub time: String,
    /// First line of the message.
    pub subject: String,
}

/// A ConfigMap reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryRef {
    /// Its namespace (the host's).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// One finding as the status shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRecord {
    /// error, warning or info.
    pub severity: String,
    /// Stable rule code.
    pub rule: String,
    /// What is wrong.
    pub message: String,
    /// `file:line`, when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub location: String,
    /// The object, when the finding is about one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub object: String,
}

/// `status` of a Kit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KitStatus {
    /// The generation of the Kit this status describes.
    #[serde(default)]
    pub observed_generation: i64,
    /// Ready, Reconciling, Stalled.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Commit of the last successful apply.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_applied_revision: String,
    /// Commit of the last attempt.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_attempted_revision: String,
    /// Who made the applied commit, when, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_commit: Option<CommitRecord>,
    /// Input hash of the last successful apply: equal inputs are not rendered again.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_applied_input_hash: String,
    /// The `kitsync.dev/reconcile-at` value last acted on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_handled_reconcile_at: String,
    /// Objects in the inventory.
    #[serde(default)]
    pub objects: usize,
    /// Where the inventory is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<InventoryRef>,
    /// The last findings, at most [`MAX_FINDINGS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<FindingRecord>,
}

impl KitStatus {
    /// The condition of `type_`, if set.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether `Ready` is `True`.
    pub fn is_ready(&self) -> bool {
        self.condition("Ready").is_some_and(|c| c.status == "True")
    }

    /// Each condition as (type, status), e.g. `("Ready", "True")`.
    pub fn condition_statuses(&self) -> impl Iterator<Item = (&str, &str)> {
        self.conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
    }

    /// Sets a condition, keeping its transition time when its status did not change.
    pub fn set_condition(&mut self, type_: &str, status: bool, reason: &str, message: &str) {
        let status = if status { "True" } else { "False" };
        let generation = self.observed_generation;
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| jiff::Timestamp::now());
        let message: String = message.chars().take(1024).collect();
        match self.conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now.to_string();
                }
                c.status = status.into();
                c.reason = reason.into();
                c.message = message;
                c.observed_generation = generation;
            }
            None => self.conditions.push(Condition {
                type_: type_.into(),
                status: status.into(),
                reason: reason.into(),
                message,
                observed_generation: generation,
                last_transition_time: now.to_string(),
            }),
        }
    }

    /// Drops a condition (kstatus: `Reconciling` and `Stalled` are absent when false).
    pub fn clear_condition(&mut self, type_: &str) {
        self.conditions.retain(|c| c.type_ != type_);
    }
}

/// A Kit as read back from the cluster.
#[derive(Debug, Clone)]
pub struct KitObject {
    /// The kit's name.
    pub name: String,
    /// Its spec.
    pub spec: KitSpec,
    /// Its status (default when none was written).
    pub status: KitStatus,
    /// `metadata.generation`.
    pub generation: i64,
    /// The `kitsync.dev/reconcile-at` annotation.
    pub reconcile_at: Option<String>,
    /// `metadata.creationTimestamp`, RFC 3339.
    pub created: Option<String>,
    /// `metadata.uid`.
    pub uid: Option<String>,
}

impl KitObject {
    /// Reads a dynamic Kit; `None` when it has no name.
    pub fn from_dynamic(object: &DynamicObject) -> Option<KitObject> {
        let name = object.metadata.name.clone()?;
        let spec = object
            .data
            .get("spec")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .unwrap_or_default();
        let status = object
            .data
            .get("status")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .unwrap_or_default();
        Some(KitObject {
            name,
            spec,
            status,
            generation: object.metadata.generation.unwrap_or(0),
            reconcile_at: object
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(RECONCILE_AT).cloned()),
            created: object
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string()),
            uid: object.metadata.uid.clone(),
        })
    }
}

/// Installs or upgrades the Kit CRD with server-side apply and waits until it is Established
/// (at most 30 s).
///
/// # Errors
/// The API server's refusal (for example, missing rights on CustomResourceDefinitions), or
/// a timeout waiting for the Established condition.
pub async fn install_crd(client: &kube::Client, namespace: &str) -> Result<(), String> {
    let crd: serde_json::Value =
        serde_saphyr::from_str(KIT_CRD).map_err(|e| format!("the built-in Kit CRD does not parse: {e}"))?;
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
    ));
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let name = "kits.kitsync.dev";
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .map_err(|e| format!("installing CustomResourceDefinition {name}: {e}"))?;
    // Generous: on a loaded API server (a CI machine running many tests) establishing took
    // longer than 30 s once.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last_error;
        let live = api
            .get_opt(name)
            .await
            .map_err(|e| format!("reading CustomResourceDefinition {name}: {e}"))?;
        if !live.as_ref().is_some_and(crate::apply::is_established) {
            let conditions = live
                .as_ref()
                .and_then(|l| l.data.pointer("/status/conditions").cloned())
                .map_or_else(|| "absent".to_owned(), |c| c.to_string());
            last_error = format!(" (conditions: {conditions})");
        } else {
            // Discovery can lag the condition for a moment; the first list (in the host's
            // namespace, the only one the host reads Kits in) proves it serves.
            let kits: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &kit_resource());
            match kits.list(&ListParams::default().limit(1)).await {
                Ok(_) => return Ok(()),
                Err(e) => last_error = format!(": listing Kits in {namespace}: {e}"),
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "CustomResourceDefinition {name} not served after 60 s{last_error}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Lists the Kits in `namespace`.
///
/// # Errors
/// The API server's error, as text.
pub async fn list(client: &kube::Client, namespace: &str) -> Result<Vec<KitObject>, String> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &kit_resource());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing Kits in {namespace}: {e}"))?;
    Ok(list.items.iter().filter_map(KitObject::from_dynamic).collect())
}

/// Writes Kits and their Events, remembering what it wrote so an unchanged status is not
/// written again.
pub struct StatusWriter {
    client: kube::Client,
    namespace: String,
    recorder: Recorder,
    known: Mutex<HashMap<String, Known>>,
    /// Held across the read, change and write of [`StatusWriter::update`]: the health wait and
    /// drift detection change one condition each from their own tasks, and without it the
    /// later write of a copy read earlier drops the other's condition.
    updates: Mutex<()>,
}

#[derive(Debug, Clone)]
struct Known {
    spec: KitSpec,
    status: KitStatus,
    generation: i64,
    uid: Option<String>,
}

/// Kind of an Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Something happened as it should.
    Normal,
    /// Something needs attention.
    Warning,
}

/// This process's name for Events and the Lease: `POD_NAME`, else the host name, else
/// `kitsync`.
pub fn instance_name() -> String {
    std::env::var("POD_NAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kitsync".to_owned())
}

impl StatusWriter {
    /// A writer for Kits in `namespace`, seeded with the Kits already there (so an unchanged
    /// status is not written again after a restart).
    pub fn new(client: kube::Client, namespace: &str, existing: &[KitObject]) -> Self {
        // The events API requires a reporting instance.
        let instance = Some(instance_name());
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "kitsync".into(),
                instance,
            },
        );
        let known = existing
            .iter()
            .map(|k| {
                (
                    k.name.clone(),
                    Known {
                        spec: k.spec.clone(),
                        status: k.status.clone(),
                        generation: k.generation,
                        uid: k.uid.clone(),
                    },
                )
            })
            .collect();
        StatusWriter {
            client,
            namespace: namespace.to_owned(),
            recorder,
            known: Mutex::new(known),
            updates: Mutex::new(()),
        }
    }

    fn api(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &kit_resource())
    }

    /// The last status written or read for `kit`.
    pub async fn status(&self, kit: &str) -> Option<KitStatus> {
        self.known.lock().await.get(kit).map(|k| k.status.clone())
    }

    /// The spec last written or read for `kit`.
    pub async fn spec(&self, kit: &str) -> Option<KitSpec> {
        self.known.lock().await.get(kit).map(|k| k.spec.clone())
    }

    /// Names of the Kits this writer knows of.
    pub async fn kits(&self) -> Vec<String> {
        self.known.lock().await.keys().cloned().collect()
    }

    /// Creates the Kit or updates its spec when it differs; returns its generation.
    ///
    /// # Errors
    /// The API server's error, as text.
    pub async fn ensure(&self, kit: &str, spec: &KitSpec) -> Result<i64, String> {
        if let Some(known) = self.known.lock().await.get(kit)
            && &known.spec == spec
            && known.uid.is_some()
        {
            return Ok(known.generation);
        }
        let body = serde_json::json!({
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": "Kit",
            "metadata": {"name": kit, "namespace": self.namespace},
            "spec": spec,
        });
        let written = self
            .api()
            .patch(
                kit,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(|e| format!("writing Kit {}/{kit}: {e}", self.namespace))?;
        let generation = written.metadata.generation.unwrap_or(0);
        let mut known = self.known.lock().await;
        let entry = known.entry(kit.to_owned()).or_insert_with(|| Known {
            spec: spec.clone(),
            status: KitObject::from_dynamic(&written)
                .map(|k| k.status)
                .unwrap_or_default(),
            generation,
            uid: None,
        });
        entry.spec = spec.clone();
        entry.generation = generation;
        entry.uid = written.metadata.uid.clone();
        Ok(generation)
    }

    /// Changes `kit`'s last known status with `change` and writes it, as one step against
    /// other updates; returns the status written, or `None` for a Kit not known (or when
    /// `change` says nothing changed by returning false).
    ///
    /// # Errors
    /// The API server's error, as text.
    pub async fn update(
        &self,
        kit: &str,
        change: impl FnOnce(&mut KitStatus) -> bool,
    ) -> Result<Option<KitStatus>, String> {
        let _one_at_a_time = self.updates.lock().await;
        let Some(mut status) = self.status(kit).await else {
            return Ok(None);
        };
        if !change(&mut status) {
            return Ok(None);
        }
        self.write(kit, &status).await?;
        Ok(Some(status))
    }

    /// Writes `status` unless it equals the last one written.
    ///
    /// # Errors
    /// The API server's error, as text.
    pub async fn write(&self, kit: &str, status: &KitStatus) -> Result<(), String> {
        if self
            .known
            .lock()
            .await
            .get(kit)
            .is_some_and(|k| &k.status == status)
        {
            return Ok(());
        }
        let body = serde_json::json!({
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": "Kit",
            "metadata": {"name": kit, "namespace": self.namespace},
            "status": status,
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match self.api().patch_status(kit, &params, &Patch::Apply(&body)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {
                // Deleted by hand: forget it, so the next reconcile creates it again.
                self.known.lock().await.remove(kit);
                return Err(format!(
                    "Kit {}/{kit} was deleted; the next reconcile creates it again",
                    self.namespace
                ));
            }
            Err(e) => return Err(format!("writing the status of Kit {}/{kit}: {e}", self.namespace)),
        }
        if let Some(known) = self.known.lock().await.get_mut(kit) {
            known.status = status.clone();
        }
        Ok(())
    }

    /// Publishes an Event on the Kit about `revision`. Failures are logged, never fatal: an
    /// Event is a courtesy, the status is the record.
    pub async fn event(&self, kit: &str, revision: &str, severity: Severity, reason: &str, note: &str) {
        let uid = self.known.lock().await.get(kit).and_then(|k| k.uid.clone());
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(format!("{GROUP}/{VERSION}")),
            kind: Some("Kit".into()),
            name: Some(kit.to_owned()),
            namespace: Some(self.namespace.clone()),
            uid,
            ..Default::default()
        };
        let event = Event {
            type_: match severity {
                Severity::Normal => EventType::Normal,
                Severity::Warning => EventType::Warning,
            },
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            // The recorder folds Events with equal (reason, action, object) into one series
            // that keeps its first message: the revision in the action keeps each revision's
            // Event (and message) its own, while retries of one revision still fold.
            action: format!("Reconcile@{}", revision.get(..12).unwrap_or(revision)),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(kit, reason, error = %e, "could not publish an Event");
        }
    }

    /// Deletes the Kit (its kit was removed from Git and pruned).
    ///
    /// # Errors
    /// The API server's error, as text (an absent Kit is not an error).
    pub async fn delete(&self, kit: &str) -> Result<(), String> {
        match self.api().delete(kit, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(format!("deleting Kit {}/{kit}: {e}", self.namespace)),
        }
        self.known.lock().await.remove(kit);
        Ok(())
    }
}
