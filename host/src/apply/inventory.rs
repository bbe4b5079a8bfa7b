//! The inventory of a kit: every object it applied, stored in a ConfigMap in the host's
//! namespace so it survives a restart and prune knows what the kit owns.

use crate::object::ObjectRef;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One applied object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// API group (`""` for the core group).
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace, absent for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl Entry {
    /// The entry of an object.
    pub fn of(id: &ObjectRef) -> Entry {
        let (group, version) = match id.api_version.split_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (String::new(), id.api_version.clone()),
        };
        Entry {
            group,
            version,
            kind: id.kind.clone(),
            namespace: id.namespace.clone(),
            name: id.name.clone(),
        }
    }

    /// `apps/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The object's reference.
    pub fn to_ref(&self) -> ObjectRef {
        ObjectRef {
            api_version: self.api_version(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// `group/kind/namespace/name`, the key of [`Inventory::applied`].
    pub fn key_text(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.group,
            self.kind,
            self.namespace.as_deref().unwrap_or(""),
            self.name
        )
    }

    /// Identity without the version: a version change is the same object.
    fn key(&self) -> (&str, &str, Option<&str>, &str) {
        (&self.group, &self.kind, self.namespace.as_deref(), &self.name)
    }
}

/// What kitsync last wrote to one object, to skip writing the same again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// sha256 of the applied object's JSON.
    pub hash: String,
    /// The object's resourceVersion right after that apply; any later change moves it.
    pub resource_version: String,
}

/// Every object a kit owns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The entries, sorted.
    pub entries: BTreeSet<Entry>,
    /// Per object (keyed by [`Entry::key_text`]), what was last applied.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub applied: BTreeMap<String, Applied>,
}

impl Inventory {
    /// Entries of `self` whose object is not in `other` (any version).
    pub fn missing_from<'a>(&'a self, other: &Inventory) -> Vec<&'a Entry> {
        let keys: BTreeSet<_> = other.entries.iter().map(Entry::key).collect();
        self.entries.iter().filter(|e| !keys.contains(&e.key())).collect()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Name of the ConfigMap holding a kit's inventory.
pub fn configmap_name(kit: &str) -> String {
    format!("kitsync-inventory-{kit}")
}

const DATA_KEY: &str = "inventory.json";

/// Reads a kit's inventory; an absent ConfigMap is an empty inventory.
pub async fn load(client: &kube::Client, host_namespace: &str, kit: &str) -> Result<Inventory, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), host_namespace);
    let Some(cm) = api
        .get_opt(&configmap_name(kit))
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(Inventory::default());
    };
    let Some(text) = cm.data.as_ref().and_then(|d| d.get(DATA_KEY)) else {
        return Ok(Inventory::default());
    };
    serde_json::from_str(text).map_err(|e| format!("{host_namespace}/{}: {e}", configmap_name(kit)))
}

/// Writes a kit's inventory with server-side apply.
pub async fn store(
    client: &kube::Client,
    host_namespace: &str,
    kit: &str,
    inventory: &Inventory,
) -> Result<(), String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), host_namespace);
    let text = serde_json::to_string(inventory).map_err(|e| e.to_string())?;
    // A ConfigMap holds at most 1 MiB; sharding larger inventories is future work.
    if text.len() > 1000 * 1024 {
        return Err(format!(
            "inventory of {} objects is over the 1 MiB a ConfigMap holds",
            inventory.entries.len()
        ));
    }
    let cm = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(kit),
            "namespace": host_namespace,
            "labels": {"app.kubernetes.io/managed-by": "kitsync", "kitsync.dev/inventory-of": kit},
        },
        "data": {DATA_KEY: text},
    });
    api.patch(
        &configmap_name(kit),
        &PatchParams::apply(super::FIELD_MANAGER).force(),
        &Patch::Apply(&cm),
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}
