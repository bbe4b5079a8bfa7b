//! Makes the cluster match a kit's final object list: guards, server-side apply in stages,
//! ownership, inventory and safe prune.
//!
//! The API is narrow: [`Applier::apply`] takes a kit's target and its new objects, reads the
//! kit's previous inventory from the cluster, and returns the new inventory and a per-object
//! report. Every write goes
//! through a client that impersonates the kit's service account when one is set, so the API
//! server's RBAC bounds the kit.
//!
//! A resync of unchanged objects sends no writes; [`Applier::diff`] shows what an apply
//! would change from a server-side dry run.

mod dry_run;
mod error;
mod heal;
pub mod inventory;
pub mod owned;
mod prune;
mod takeover;

pub use dry_run::DryRun;
pub use error::Error;
use error::{describe, is_immutable, retrying};
pub use inventory::{Applied, Entry, Inventory};

use crate::guard::{self, KIT_LABEL};
use crate::leadership::Leadership;
use crate::object::{Object, ObjectRef};
use futures::{StreamExt, stream};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The field manager of every kitsync write.
pub const FIELD_MANAGER: &str = "kitsync";
/// Annotation with the source revision that earlier versions stamped on every object. The
/// revision now lives in the kit's inventory and status (so a new revision rewrites only the
/// objects it changes); applying drops the annotation and diffs ignore it.
pub const REVISION_ANNOTATION: &str = "kitsync.dev/revision";
/// Annotation that keeps an object from ever being pruned.
pub const PRUNE_ANNOTATION: &str = "kitsync.dev/prune";

/// Which kit, where, and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// Kit name (the ownership label's value).
    pub kit: String,
    /// The kit's namespace.
    pub namespace: String,
    /// kitsync's own namespace: never written by a kit; holds inventories.
    pub host_namespace: String,
    /// Service account (in the kit's namespace) whose identity every write uses.
    pub service_account: Option<String>,
    /// Whether the platform lets this kit create cluster-scoped objects.
    pub cluster_scoped_allowed: bool,
    /// Source revision, recorded in the kit's inventory (not on the objects).
    pub revision: String,
    /// Delete objects dropped from the kit.
    pub prune: bool,
    /// Take fields owned by other managers instead of reporting the conflict.
    pub force: bool,
    /// Delete and recreate an object when a change touches an immutable field.
    pub recreate: bool,
    /// The kit was removed on purpose: an empty object list may prune everything.
    pub removed: bool,
    /// The platform lets prune delete this kit's CustomResourceDefinitions (deleting one
    /// deletes every object of its kind in the cluster; kitsync.yaml
    /// `pruneCustomResourceDefinitions`).
    pub prune_crds: bool,
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied (created or updated; server-side apply does not say which).
    Applied,
    /// Not written: the same content was applied before and nobody changed the object since.
    Unchanged,
    /// Deleted by prune.
    Pruned,
    /// Left alone by prune, with the reason.
    Kept(String),
}

/// The result of applying one kit.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Per object, in apply then prune order.
    pub objects: Vec<(ObjectRef, Outcome)>,
    /// Why prune did not run, when it did not.
    pub prune_refused: Option<String>,
    /// The kit's inventory after this apply (stored by [`Applier::apply`]).
    pub inventory: Inventory,
    /// The objects as applied (after the host's defaults), for drift detection.
    pub desired: Vec<Object>,
}

/// Applies kits to one cluster.
pub struct Applier {
    config: kube::Config,
    client: kube::Client,
    /// Every client of this applier refuses writes unless it holds.
    leadership: Leadership,
    concurrency: usize,
    kinds: Mutex<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>,
}

/// One object's apply: what happened and what to record, or why it failed.
type OneResult = Result<(Outcome, Applied), ObjectFailure>;

/// Why one object was not applied, classified once: worth retrying or not.
#[derive(Debug)]
struct ObjectFailure {
    message: String,
    /// The server or the path to it failed (after the retries), not the object.
    transient: bool,
}

impl From<String> for ObjectFailure {
    fn from(message: String) -> Self {
        ObjectFailure {
            message,
            transient: false,
        }
    }
}

/// (group, kind) of the CRDs in a kit: kinds discovery may not serve yet right after apply.
type NewKinds = HashSet<(String, String)>;

impl Applier {
    /// An applier whose own identity (from `config`) reads inventories and whose kits write
    /// as their service accounts.
    pub fn new(config: kube::Config) -> Result<Self, kube::Error> {
        Self::with_leadership(config, Leadership::always())
    }

    /// As [`Applier::new`], with every write (inventory, apply, prune, namespace) refused
    /// with [`crate::leadership::NotLeader`] unless `leadership` holds when it is sent.
    pub fn with_leadership(config: kube::Config, leadership: Leadership) -> Result<Self, kube::Error> {
        let client = leadership.client(config.clone())?;
        Ok(Applier {
            config,
            client,
            leadership,
            concurrency: 8,
            kinds: Mutex::new(HashMap::new()),
        })
    }

    /// The host's own client (reads: inventories, health, discovery).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Objects applied at once within a stage (default 8).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The kit's inventory as stored in the cluster.
    pub async fn inventory(&self, target: &Target) -> Result<Inventory, Error> {
        inventory::load(&self.client, &target.host_namespace, &target.kit)
            .await
            .map_err(|message| Error::Inventory {
                kit: target.kit.clone(),
                message,
            })
    }

    /// A client for the kit's writes: impersonating its service account when it has one.
    fn kit_client(&self, target: &Target) -> Result<kube::Client, Error> {
        let Some(sa) = &target.service_account else {
            return Ok(self.client.clone());
        };
        let mut config = self.config.clone();
        // The user alone: the API server gives an impersonated service account its groups
        // (system:serviceaccounts, system:serviceaccounts:<ns>, system:authenticated) itself,
        // so the host needs no right to impersonate groups.
        config.auth_info.impersonate = Some(format!("system:serviceaccount:{}:{sa}", target.namespace));
        config.auth_info.impersonate_groups = None;
        self.leadership.client(config).map_err(|e| Error::Unavailable {
            kit: target.kit.clone(),
            message: e.to_string(),
        })
    }

    /// Makes the cluster match `objects` for `target`: guards, staged apply, inventory, prune.
    ///
    /// The previous inventory is read from the cluster. Before any write the union of the
    /// previous and new inventories is stored, so a crash leaves extra tracked objects, never
    /// orphans; prune runs only after every stage applied.
    pub async fn apply(&self, target: &Target, mut objects: Vec<Object>) -> Result<Report, Error> {
        let kit = target.kit.clone();
        self.guard(target, &mut objects).await?;
        // The server may quote a rejected value back: Secret values never reach an error.
        let secrets = crate::redact::SecretValues::of(&objects);

        self.ensure_namespace(target, &target.host_namespace, false)
            .await?;
        let previous = self.inventory(target).await?;
        let new_kinds = new_kinds(&objects);
        let next = Inventory {
            entries: objects.iter().map(|o| Entry::of(&o.id)).collect(),
            ..Default::default()
        };
        let union = Inventory {
            entries: previous.entries.union(&next.entries).cloned().collect(),
            applied: previous.applied.clone(),
            revision: previous.revision.clone(),
        };
        // A resync of the same objects writes nothing, not even the inventory.
        if union != previous {
            self.store(target, &union).await?;
        }

        if !objects.is_empty() {
            self.ensure_namespace(target, &target.namespace, true).await?;
        }
        let client = self.kit_client(target)?;
        let mut report = Report::default();
        let mut applied = Vec::new();
        let mut records = std::collections::BTreeMap::new();
        for (stage, members) in stages(&objects).into_iter().enumerate() {
            let stage = u8::try_from(stage + 1).unwrap_or(u8::MAX);
            if members.is_empty() {
                continue;
            }
            // The futures are built eagerly: a lazy `StreamExt::map` closure over borrowed
            // objects makes the whole apply future non-`Send` for spawned callers (serve).
            // Once one object has exhausted its retries on a transport or server fault, the
            // rest of the stage is not attempted: the server is not hammered while it is down.
            let unavailable = std::sync::atomic::AtomicBool::new(false);
            let pending: Vec<_> = members
                .into_iter()
                .map(|object| {
                    let client = client.clone();
                    let new_kinds = &new_kinds;
                    let previous = &previous;
                    let unavailable = &unavailable;
                    async move {
                        let result = if unavailable.load(std::sync::atomic::Ordering::Relaxed) {
                            Err(ObjectFailure {
                                message: "not attempted: the API server was unavailable".into(),
                                transient: true,
                            })
                        } else {
                            self.apply_one(&client, target, object, new_kinds, previous).await
                        };
                        if result.as_ref().is_err_and(|f| f.transient) {
                            unavailable.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        (object.id.clone(), result)
                    }
                })
                .collect();
            let results: Vec<(ObjectRef, OneResult)> = stream::iter(pending)
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
            let mut failed = Vec::new();
            for (id, result) in results {
                match result {
                    Ok((outcome, record)) => {
                        records.insert(Entry::of(&id).key_text(), record);
                        applied.push(id.clone());
                        report.objects.push((id, outcome));
                    }
                    Err(failure) => failed.push((id, failure)),
                }
            }
            if !failed.is_empty() && failed.iter().all(|(_, f)| f.transient) {
                // The API server went away mid-stage: nothing is wrong with the kit.
                let (id, first) = failed
                    .iter()
                    .find(|(_, f)| !f.message.starts_with("not attempted"))
                    .unwrap_or(&failed[0]);
                return Err(Error::Unavailable {
                    kit,
                    message: format!(
                        "stage {stage}: {} object(s) could not be applied, e.g. {id}: {}",
                        failed.len(),
                        secrets.redact(&first.message)
                    ),
                });
            }
            let failed: Vec<(ObjectRef, String)> = failed
                .into_iter()
                .map(|(id, f)| (id, secrets.redact(&f.message)))
                .collect();
            if !failed.is_empty() {
                tracing::warn!(kit = %target.kit, stage, failed = failed.len(), "stage failed; not pruning");
                return Err(Error::Stage {
                    kit,
                    stage,
                    failed,
                    applied,
                });
            }
            if stage == 1 {
                self.wait_established(target, &objects).await?;
            }
        }

        let mut kept_inventory = Inventory {
            entries: next.entries.clone(),
            applied: records,
            revision: Some(target.revision.clone()),
        };
        if target.prune {
            let stale = previous.missing_from(&next);
            if objects.is_empty() && !previous.is_empty() && !target.removed {
                report.prune_refused = Some(format!(
                    "the new render of kit {} is empty but it owns {} object(s); refusing to prune them all (remove the kit on purpose to delete them)",
                    target.kit,
                    previous.entries.len()
                ));
                kept_inventory = Inventory {
                    revision: Some(target.revision.clone()),
                    ..previous.clone()
                };
            } else {
                // Namespaces that still hold objects the kit applies are never pruned.
                let wanted: HashSet<&str> =
                    objects.iter().filter_map(|o| o.id.namespace.as_deref()).collect();
                for (entry, outcome) in self.prune(&client, target, stale, &wanted).await? {
                    if !matches!(outcome, Outcome::Pruned) {
                        kept_inventory.entries.insert(entry.clone());
                    }
                    report.objects.push((entry.to_ref(), outcome));
                }
            }
        } else {
            kept_inventory
                .entries
                .extend(previous.missing_from(&next).into_iter().cloned());
        }
        if kept_inventory != previous {
            self.store(target, &kept_inventory).await?;
        }
        report.inventory = kept_inventory;
        report.desired = objects;
        Ok(report)
    }

    /// `objects` as [`Applier::apply`] would write them (the host's defaults, stray
    /// namespaces of cluster-scoped kinds dropped), without writing.
    ///
    /// # Errors
    /// [`Error::Guard`] when the host guards refuse an object.
    pub async fn prepare(&self, target: &Target, mut objects: Vec<Object>) -> Result<Vec<Object>, Error> {
        self.guard(target, &mut objects).await?;
        Ok(objects)
    }

    /// Normalizes and defaults `objects` for `target` and checks them against the host guards,
    /// before any write.
    async fn guard(&self, target: &Target, objects: &mut [Object]) -> Result<(), Error> {
        let scope = guard::Scope {
            kit: &target.kit,
            namespace: &target.namespace,
            cluster_scoped_allowed: target.cluster_scoped_allowed,
            host_namespace: &target.host_namespace,
        };
        self.drop_stray_namespaces(objects).await;
        guard::apply_defaults(&scope, objects);
        let findings = guard::check(&scope, objects);
        if findings.is_empty() {
            Ok(())
        } else {
            Err(Error::Guard {
                kit: target.kit.clone(),
                findings,
            })
        }
    }

    /// Drops `metadata.namespace` from objects whose kind the cluster serves as cluster-scoped
    /// (custom kinds the guards cannot know statically), so one live object has one identity
    /// in the inventory and prune never mistakes a cleaned-up line for a removal.
    async fn drop_stray_namespaces(&self, objects: &mut [Object]) {
        // One question per kind: a kind the cluster does not serve yet (its CRD comes with
        // this kit) is asked about once, not once per object.
        let mut cluster_scoped: HashMap<(String, String), bool> = HashMap::new();
        for object in objects.iter_mut().filter(|o| o.id.namespace.is_some()) {
            let kind = (object.id.api_version.clone(), object.id.kind.clone());
            let cluster = match cluster_scoped.get(&kind) {
                Some(known) => *known,
                None => {
                    let none = NewKinds::new();
                    let found = self
                        .resolve(&object.id.api_version, &object.id.kind, &none)
                        .await
                        .is_ok_and(|(_, caps)| caps.scope == Scope::Cluster);
                    cluster_scoped.insert(kind, found);
                    found
                }
            };
            if cluster {
                object.id.namespace = None;
                if let Some(metadata) = object.value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                    metadata.remove("namespace");
                }
            }
        }
    }

    /// Creates a namespace, with the host's own identity, when it does not exist yet: the
    /// host's (where inventories live) and the kit's (which its service account cannot create).
    async fn ensure_namespace(&self, target: &Target, name: &str, kit_label: bool) -> Result<(), Error> {
        use k8s_openapi::api::core::v1::Namespace;
        let api: Api<Namespace> = Api::all(self.client.clone());
        let fail = |message: String| Error::Unavailable {
            kit: target.kit.clone(),
            message: format!("namespace {name}: {message}"),
        };
        if retrying(|| api.get_opt(name))
            .await
            .map_err(|e| fail(describe(&e)))?
            .is_some()
        {
            return Ok(());
        }
        let mut namespace = Namespace::default();
        namespace.metadata.name = Some(name.to_owned());
        if kit_label {
            namespace.metadata.labels = Some([(KIT_LABEL.to_owned(), target.kit.clone())].into());
        }
        match api.create(&Default::default(), &namespace).await {
            Ok(_) => Ok(()),
            // Created meanwhile by another apply.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(e) => Err(fail(describe(&e))),
        }
    }

    async fn store(&self, target: &Target, inventory: &Inventory) -> Result<(), Error> {
        inventory::store(&self.client, &target.host_namespace, &target.kit, inventory)
            .await
            .map_err(|message| Error::Inventory {
                kit: target.kit.clone(),
                message,
            })
    }

    /// The resource of a kind, asking the server when it is not known yet (a CRD applied in
    /// an earlier stage).
    async fn resolve(
        &self,
        api_version: &str,
        kind: &str,
        new_kinds: &NewKinds,
    ) -> Result<(ApiResource, ApiCapabilities), String> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        if let Some(found) = self.kinds.lock().unwrap_or_else(|e| e.into_inner()).get(&gvk) {
            return Ok(found.clone());
        }
        // A kind from a CRD this kit just applied can lag behind its Established condition in
        // discovery for a moment: ask again for a few seconds before calling it unknown.
        let patient = new_kinds.contains(&(group.to_owned(), kind.to_owned()));
        let deadline = Instant::now() + Duration::from_secs(if patient { 15 } else { 0 });
        let found = loop {
            match kube::discovery::pinned_kind(&self.client, &gvk).await {
                Ok(found) => break found,
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!(
                        "the cluster does not serve kind {kind} in {api_version}: {e}"
                    ));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        self.kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(gvk, found.clone());
        Ok(found)
    }

    async fn api_for(
        &self,
        client: &kube::Client,
        id: &ObjectRef,
        new_kinds: &NewKinds,
    ) -> Result<Api<DynamicObject>, String> {
        let (resource, caps) = self.resolve(&id.api_version, &id.kind, new_kinds).await?;
        Ok(match (caps.scope, &id.namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
            (Scope::Namespaced, None) => return Err(format!("{id} is namespaced but has no namespace")),
            (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
        })
    }

    /// Applies one object, unless the same content was applied before and the live object
    /// has not changed since (its resourceVersion is the one recorded then).
    async fn apply_one(
        &self,
        client: &kube::Client,
        target: &Target,
        object: &Object,
        new_kinds: &NewKinds,
        previous: &Inventory,
    ) -> OneResult {
        let api = self.api_for(client, &object.id, new_kinds).await?;
        let hash = crate::plugin::sha256_hex(crate::object::to_json(&object.value).as_bytes());
        let at = |e: &kube::Error| ObjectFailure {
            message: match &object.origin {
                Some(origin) => format!("{} (from {origin})", describe(e)),
                None => describe(e),
            },
            transient: error::is_transient(e),
        };
        let live = retrying(|| api.get_opt(&object.id.name))
            .await
            .map_err(|e| at(&e))?;
        if let Some(live) = &live {
            if let Some(owner) = live.metadata.labels.as_ref().and_then(|l| l.get(KIT_LABEL))
                && owner != &target.kit
            {
                return Err(format!(
                    "{} belongs to kit {owner}; kit {} cannot take it over",
                    object.id, target.kit
                )
                .into());
            }
            // Unchanged: the same content as last time, and nobody changed a field kitsync
            // set since (status updates and fields kitsync does not set do not count).
            let last = previous.applied.get(&Entry::of(&object.id).key_text());
            if let Some(last) = last
                && last.hash == hash
            {
                let same = if last.owned.is_empty() {
                    live.metadata.resource_version.as_ref() == Some(&last.resource_version)
                } else {
                    live_value(live).is_some_and(|v| owned::fingerprint(&object.value, &v) == last.owned)
                };
                if same {
                    return Ok((Outcome::Unchanged, last.clone()));
                }
            }
        }
        if let Some(live) = &live
            && takeover::take_over(&api, live).await.map_err(|e| at(&e))?
        {
            tracing::info!(kit = %target.kit, object = %object.id, "took over fields written by kubectl");
        }
        let kept = live
            .as_ref()
            .map(|l| kept_by_server(&object.value, l))
            .unwrap_or_default();
        if !kept.is_empty() && target.recreate {
            tracing::info!(kit = %target.kit, object = %object.id, "a field Git dropped cannot change in place; recreating");
            self.recreate(&api, object).await.map_err(|e| at(&e))?;
        }
        let mut params = PatchParams::apply(FIELD_MANAGER);
        if target.force {
            params = params.force();
        }
        let patch = Patch::Apply(&object.value);
        let written = match retrying(|| api.patch(&object.id.name, &params, &patch)).await {
            Err(e) if target.recreate && is_immutable(&e) => {
                tracing::info!(kit = %target.kit, object = %object.id, "immutable field changed; recreating");
                self.recreate(&api, object).await.map_err(|e| at(&e))?;
                retrying(|| api.patch(&object.id.name, &params, &patch))
                    .await
                    .map_err(|e| at(&e))?
            }
            Err(e) if is_immutable(&e) => {
                return Err(format!(
                    "{} (set `recreate: true` in kit.yaml to delete and recreate it)",
                    at(&e).message
                )
                .into());
            }
            other => other.map_err(|e| at(&e))?,
        };
        if let Some((path, value)) = kept.first()
            && !target.recreate
        {
            // Applied, but not to what Git says: the kit is not converged.
            return Err(format!(
                "{path} stays {value}: Git no longer sets it and the server keeps it, because it cannot change in place (set `recreate: true` in kit.yaml to delete and recreate the object)"
            )
            .into());
        }
        Ok((Outcome::Applied, applied_record(hash, &object.value, &written)))
    }

    /// Deletes an object (its dependents with it) and waits until it is gone.
    async fn recreate(&self, api: &Api<DynamicObject>, object: &Object) -> Result<(), kube::Error> {
        let params = DeleteParams::foreground();
        retrying(|| api.delete(&object.id.name, &params)).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while retrying(|| api.get_opt(&object.id.name)).await?.is_some() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Waits until every CRD of the kit is Established, so stage 3 can use its kinds.
    async fn wait_established(&self, target: &Target, objects: &[Object]) -> Result<(), Error> {
        let crds: Vec<&Object> = objects
            .iter()
            .filter(|o| o.id.kind == "CustomResourceDefinition")
            .collect();
        if crds.is_empty() {
            return Ok(());
        }
        let api: Api<DynamicObject> = Api::all_with(
            self.client.clone(),
            &ApiResource::from_gvk(&GroupVersionKind::gvk(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
            )),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        for crd in crds {
            loop {
                let live = retrying(|| api.get_opt(&crd.id.name))
                    .await
                    .map_err(|e| Error::Unavailable {
                        kit: target.kit.clone(),
                        message: describe(&e),
                    })?;
                if live.as_ref().is_some_and(is_established) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Error::Stage {
                        kit: target.kit.clone(),
                        stage: 1,
                        failed: vec![(crd.id.clone(), "not Established after 60 s".into())],
                        applied: Vec::new(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }
}

/// The object as JSON, for [`owned::fingerprint`].
fn live_value(live: &DynamicObject) -> Option<serde_json::Value> {
    serde_json::to_value(live).ok()
}

/// What to remember of an apply whose answer was `written`.
fn applied_record(hash: String, desired: &serde_json::Value, written: &DynamicObject) -> Applied {
    Applied {
        hash,
        resource_version: written.metadata.resource_version.clone().unwrap_or_default(),
        owned: live_value(written)
            .map(|v| owned::fingerprint(desired, &v))
            .unwrap_or_default(),
    }
}

/// Whether a CustomResourceDefinition's `Established` condition is `True`: its kind is served.
pub fn is_established(crd: &DynamicObject) -> bool {
    crd.data
        .pointer("/status/conditions")
        .and_then(|c| c.as_array())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        })
}

/// (group, kind) of every CRD among `objects`.
fn new_kinds(objects: &[Object]) -> NewKinds {
    objects
        .iter()
        .filter(|o| o.id.kind == "CustomResourceDefinition")
        .filter_map(|o| {
            let group = o.value.pointer("/spec/group")?.as_str()?;
            let kind = o.value.pointer("/spec/names/kind")?.as_str()?;
            Some((group.to_owned(), kind.to_owned()))
        })
        .collect()
}

/// Fields Git no longer sets that the live object keeps because they cannot change in
/// place, as (JSON pointer, live value). Today: a headless Service (`clusterIP: None`)
/// whose manifest no longer says so stays headless; a fresh Service would get an address.
pub(crate) fn kept_by_server(
    desired: &serde_json::Value,
    live: &DynamicObject,
) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    let kind = desired.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let api_version = desired.get("apiVersion").and_then(|k| k.as_str()).unwrap_or("");
    if kind == "Service" && api_version == "v1" {
        let wanted = desired
            .pointer("/spec/clusterIP")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let live_ip = live
            .data
            .pointer("/spec/clusterIP")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if wanted.is_empty() && live_ip == "None" {
            out.push(("/spec/clusterIP".to_owned(), serde_json::Value::from("None")));
        }
    }
    out
}

/// Objects in apply order: Namespaces and CRDs, other cluster-scoped objects, namespaced ones.
fn stages(objects: &[Object]) -> [Vec<&Object>; 3] {
    let mut stages: [Vec<&Object>; 3] = Default::default();
    for object in objects {
        let stage = match (object.id.kind.as_str(), &object.id.namespace) {
            ("Namespace" | "CustomResourceDefinition", _) => 0,
            (_, None) => 1,
            (_, Some(_)) => 2,
        };
        stages[stage].push(object);
    }
    stages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_put_namespaces_and_crds_first_then_cluster_scoped_then_namespaced() {
        let objects = crate::manifest::parse(
            "s.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: ns1}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: gs.example.com}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ns1}\n---\napiVersion: example.com/v1\nkind: G\nmetadata: {name: g, namespace: ns1}\n",
        )
        .expect("parses");
        let names = |stage: &[&Object]| stage.iter().map(|o| o.id.name.clone()).collect::<Vec<_>>();
        let [first, second, third] = stages(&objects);
        assert_eq!(names(&first), ["gs.example.com", "ns1"]);
        assert_eq!(names(&second), ["r"]);
        assert_eq!(names(&third), ["c", "g"]);
    }
}
