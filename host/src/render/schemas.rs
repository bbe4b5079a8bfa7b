//! The schema stage's inputs: which Kubernetes version, and the repository's CRDs, read once
//! per revision.

use super::Pipeline;
use crate::kit::Platform;
use crate::manifest;
use crate::schema::Schemas;
use crate::source::Snapshot;
use std::sync::{Arc, PoisonError};

impl Pipeline {
    /// The schemas for `snapshot`: the Kubernetes version the command line or the platform
    /// file names, and every CustomResourceDefinition in a kit's directory or a directory
    /// of `schemas.crds`. Built once per revision.
    pub(super) fn schemas(&self, snapshot: &Snapshot, platform: &Platform) -> Result<Arc<Schemas>, String> {
        let version = self
            .settings
            .schema
            .kubernetes_version
            .clone()
            .or_else(|| platform.schemas.kubernetes_version.clone())
            .unwrap_or_else(|| crate::schema::catalog::DEFAULT_VERSION.to_owned());
        let strict = self.settings.schema.strict || platform.schemas.strict;
        let key = format!(
            "{}\0{}\0{version}\0{strict}\0{:?}",
            snapshot.revision,
            snapshot.len(),
            platform.schema_dirs
        );
        let mut cached = self.schemas.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, schemas)) = cached.as_ref()
            && *at == key
        {
            return Ok(schemas.clone());
        }
        if let Some(empty) = platform
            .schema_dirs
            .iter()
            .find(|dir| snapshot.paths_under(dir).next().is_none())
        {
            return Err(format!(
                "{}: schemas.crds names {empty}/, which holds no files at this revision",
                crate::kit::PLATFORM_FILE
            ));
        }
        let crds = crd_documents(snapshot, &platform.schema_dirs);
        let schemas = Arc::new(Schemas::new(&version, strict, &crds)?);
        *cached = Some((key, schemas.clone()));
        Ok(schemas)
    }
}

/// The CustomResourceDefinitions of `snapshot` that supply schemas: those in the directory of
/// any kit (where a `kit.yaml` is) and under `schema_dirs`. Files that do not parse are left
/// to the kit that owns them to report.
fn crd_documents(snapshot: &Snapshot, schema_dirs: &[String]) -> Vec<serde_json::Value> {
    let kit_file = format!("/{}", crate::kit::KIT_FILE);
    let mut dirs: Vec<String> = snapshot
        .files()
        .filter_map(|(path, _)| {
            if path == crate::kit::KIT_FILE {
                Some(String::new())
            } else {
                path.strip_suffix(&kit_file).map(|dir| format!("{dir}/"))
            }
        })
        .collect();
    dirs.extend(schema_dirs.iter().map(|d| {
        if d.is_empty() {
            String::new()
        } else {
            format!("{d}/")
        }
    }));
    let mut crds = Vec::new();
    for (path, bytes) in snapshot.files() {
        let manifest = [".yaml", ".yml", ".json"].iter().any(|ext| path.ends_with(ext));
        if !manifest
            || !dirs.iter().any(|d| path.starts_with(d.as_str()))
            || !contains(bytes, b"CustomResourceDefinition")
        {
            continue;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            continue;
        };
        let Ok(objects) = manifest::parse(path, text) else {
            continue;
        };
        crds.extend(objects.into_iter().map(|o| o.value).filter(Schemas::is_crd));
    }
    crds
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
