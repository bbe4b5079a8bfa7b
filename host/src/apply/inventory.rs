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
    /// [`super::owned::fingerprint`] of the object right after that apply: moves only when
    /// someone changes a field kitsync set (not on status or others' fields). Empty in
    /// inventories written before it was kept.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owned: String,
}

/// Every object a kit owns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The entries, sorted.
    pub entries: BTreeSet<Entry>,
    /// Per object (keyed by [`Entry::key_text`]), what was last applied.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub applied: BTreeMap<String, Applied>,
    /// The source revision of the last apply (absent in inventories written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
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
/// Label naming the kit an inventory ConfigMap belongs to.
pub const INVENTORY_LABEL: &str = "kitsync.dev/inventory-of";
/// Marks heads whose shards are named `<head>.<i>`; older heads used `<head>-<i>`, which
/// could be another kit's head (kit `shop`'s first shard was kit `shop-1`'s inventory).
const NAMING_KEY: &str = "naming";
const NAMING: &str = "dot";
/// Largest piece of inventory JSON per ConfigMap (a ConfigMap holds at most 1 MiB in all).
const SHARD_BYTES: usize = 900 * 1024;

/// Name of shard `index` (0 is the head). Kit names are DNS labels, which hold no dot, so
/// `kitsync-inventory-<kit>.<i>` can never be another kit's head or shard.
pub fn shard_name(kit: &str, index: usize) -> String {
    match index {
        0 => configmap_name(kit),
        i => format!("{}.{i}", configmap_name(kit)),
    }
}

fn legacy_shard_name(kit: &str, index: usize) -> String {
    format!("{}-{index}", configmap_name(kit))
}

/// Refuses a ConfigMap that is labelled as another kit's inventory, or not labelled at all.
fn check_owner(cm: &ConfigMap, kit: &str) -> Result<(), String> {
    let owner = cm.metadata.labels.as_ref().and_then(|l| l.get(INVENTORY_LABEL));
    match owner {
        Some(owner) if owner == kit => Ok(()),
        Some(other) => Err(format!(
            "ConfigMap {} is kit {other}'s inventory, not kit {kit}'s; refusing to use it",
            cm.metadata.name.as_deref().unwrap_or("?")
        )),
        None => Err(format!(
            "ConfigMap {} is not a kitsync inventory (no {INVENTORY_LABEL} label); refusing to overwrite it",
            cm.metadata.name.as_deref().unwrap_or("?")
        )),
    }
}

/// Reads a kit's inventory; an absent ConfigMap is an empty inventory. A large inventory
/// spans several ConfigMaps; the first names their count and the digest of the whole.
///
/// # Errors
/// The API's error, a missing or foreign shard, or shards that do not add up.
pub async fn load(client: &kube::Client, host_namespace: &str, kit: &str) -> Result<Inventory, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), host_namespace);
    let name = configmap_name(kit);
    let Some(head) = super::retrying(|| api.get_opt(&name))
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(Inventory::default());
    };
    check_owner(&head, kit)?;
    let data = head.data.unwrap_or_default();
    let Some(first) = data.get(DATA_KEY) else {
        return Ok(Inventory::default());
    };
    let dotted = data.get(NAMING_KEY).is_some_and(|n| n == NAMING);
    let shards: usize = data.get("shards").and_then(|n| n.parse().ok()).unwrap_or(1);
    let mut text = first.clone();
    for index in 1..shards {
        let shard_name = if dotted {
            shard_name(kit, index)
        } else {
            legacy_shard_name(kit, index)
        };
        let shard = super::retrying(|| api.get_opt(&shard_name))
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{host_namespace}/{name}: shard {index} of {shards} is missing"))?;
        check_owner(&shard, kit)?;
        let piece = shard
            .data
            .and_then(|mut d| d.remove(DATA_KEY))
            .ok_or_else(|| format!("{host_namespace}/{shard_name}: shard {index} of {shards} is empty"))?;
        text.push_str(&piece);
    }
    if let Some(digest) = data.get("digest")
        && crate::plugin::sha256_hex(text.as_bytes()) != *digest
    {
        return Err(format!(
            "{host_namespace}/{name}: the {shards} shards do not add up (a write was interrupted)"
        ));
    }
    serde_json::from_str(&text).map_err(|e| format!("{host_namespace}/{name}: {e}"))
}

/// Writes a kit's inventory with server-side apply, in as many ConfigMaps as it needs. The
/// extra shards are written first and the first ConfigMap (count and digest) last, so a
/// reader never takes a half-written inventory for a whole one.
pub async fn store(
    client: &kube::Client,
    host_namespace: &str,
    kit: &str,
    inventory: &Inventory,
) -> Result<(), String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), host_namespace);
    let text = serde_json::to_string(inventory).map_err(|e| e.to_string())?;
    let mut pieces = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let mut cut = rest.len().min(SHARD_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        pieces.push(piece);
        rest = tail;
    }
    if pieces.is_empty() {
        pieces.push("");
    }
    let head_name = configmap_name(kit);
    let previous_head = super::retrying(|| api.get_opt(&head_name))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(head) = &previous_head {
        check_owner(head, kit)?;
    }
    let previous_data = previous_head.and_then(|cm| cm.data).unwrap_or_default();
    let previous_shards: usize = previous_data
        .get("shards")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let previous_dotted = previous_data.get(NAMING_KEY).is_some_and(|n| n == NAMING);
    let write = |index: usize, data: serde_json::Value| {
        let api = api.clone();
        let name = shard_name(kit, index);
        let cm = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": host_namespace,
                "labels": {"app.kubernetes.io/managed-by": "kitsync", INVENTORY_LABEL: kit},
            },
            "data": data,
        });
        async move {
            let params = PatchParams::apply(super::FIELD_MANAGER).force();
            let patch = Patch::Apply(&cm);
            super::retrying(|| api.patch(&name, &params, &patch))
                .await
                .map(|_| ())
                .map_err(|e| format!("{name}: {e}"))
        }
    };
    for (index, piece) in pieces.iter().enumerate().skip(1) {
        // Never overwrite a ConfigMap that is not this kit's.
        let shard = shard_name(kit, index);
        if let Some(existing) = super::retrying(|| api.get_opt(&shard))
            .await
            .map_err(|e| e.to_string())?
        {
            check_owner(&existing, kit)?;
        }
        write(index, serde_json::json!({DATA_KEY: piece})).await?;
    }
    let head = serde_json::json!({
        DATA_KEY: pieces[0],
        "shards": pieces.len().to_string(),
        "digest": crate::plugin::sha256_hex(text.as_bytes()),
        NAMING_KEY: NAMING,
    });
    write(0, head).await?;
    // Shards no longer needed: this naming's beyond the new count, and every shard of the
    // old naming, deleted only when labelled as this kit's.
    let stale: Vec<String> = if previous_dotted {
        (pieces.len()..previous_shards)
            .map(|i| shard_name(kit, i))
            .collect()
    } else {
        (1..previous_shards).map(|i| legacy_shard_name(kit, i)).collect()
    };
    for name in stale {
        let Some(existing) = super::retrying(|| api.get_opt(&name))
            .await
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        if check_owner(&existing, kit).is_err() {
            continue;
        }
        let params = kube::api::DeleteParams::default();
        match super::retrying(|| api.delete(&name, &params)).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(format!("{name}: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_never_collide_between_kits() {
        // Kit names are DNS labels: no dot. A shard of one kit is never another kit's head.
        let kits = ["shop", "shop-1", "shop-1-2", "a"];
        let mut names = std::collections::BTreeSet::new();
        for kit in kits {
            for index in 0..4 {
                assert!(names.insert(shard_name(kit, index)), "{kit} {index}");
            }
        }
        assert_eq!(shard_name("shop", 1), "kitsync-inventory-shop.1");
        assert_eq!(shard_name("shop-1", 0), "kitsync-inventory-shop-1");
    }
}
