//! The content hash of a kit's inputs: equal hashes mean an equal render.

use super::TrustedPolicy;
use crate::kit::{Kit, Platform};
use crate::source::Snapshot;
use sha2::{Digest, Sha256};

/// Hashes everything that can change a kit's render: kitsync's version, the platform
/// file, the kit's kit.yaml and manifests, the bytes of every plugin it runs, and the
/// trusted policies with their configs. Each part is length-prefixed so that no two
/// different inputs concatenate to the same stream.
pub fn input_hash(snapshot: &Snapshot, platform: &Platform, kit: &Kit, trusted: &[TrustedPolicy]) -> String {
    let mut hasher = Sha256::new();
    let mut part = |label: &str, bytes: &[u8]| {
        hasher.update((label.len() as u64).to_le_bytes());
        hasher.update(label.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    part("kitsync", env!("CARGO_PKG_VERSION").as_bytes());
    part("platform", &platform.raw);
    part("kit", kit.name.as_bytes());
    let kit_file = if kit.dir.is_empty() {
        "kit.yaml".to_owned()
    } else {
        format!("{}/kit.yaml", kit.dir)
    };
    part(&kit_file, snapshot.get(&kit_file).unwrap_or_default());
    for file in &kit.manifests {
        part(file, snapshot.get(file).unwrap_or_default());
    }
    for spec in kit
        .transform
        .iter()
        .chain(&kit.validate)
        .chain(&platform.transform)
        .chain(&platform.validate)
    {
        part(&spec.path, spec.sha256.as_bytes());
    }
    for policy in trusted {
        part(&policy.name, policy.sha256.as_bytes());
        part("config", policy.config.to_string().as_bytes());
    }
    hex::encode(hasher.finalize())
}
