//! Kits and the platform file: discovery in a snapshot, strict parsing, defaults applied.
//!
//! `kit.yaml` and the root `kitsync.yaml` are lowered once into a resolved [`Kit`] and
//! [`Platform`]; the render stage never sees the raw files.

mod files;
mod graph;
mod paths;

pub use files::{KitFile, PlatformFile, PluginLimits, PluginRef, parse_duration};
pub(crate) use files::{is_dns_label, parse_yaml};
pub use graph::waves;
pub use paths::normalize;

use crate::source::Snapshot;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Name of the file that makes a directory a kit.
pub const KIT_FILE: &str = "kit.yaml";
/// Name of the platform file at the repository root.
pub const PLATFORM_FILE: &str = "kitsync.yaml";

/// A kit or platform file that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The file does not parse or does not match the schema.
    #[error("{file}:{line}:{column}: {message}")]
    At {
        /// Repository-relative file.
        file: String,
        /// One-based line (0 when unknown).
        line: u64,
        /// One-based column (0 when unknown).
        column: u64,
        /// What is wrong, with a hint when the parser gives one.
        message: String,
    },
    /// A value is well-formed YAML but not acceptable.
    #[error("{file}: {message}")]
    Invalid {
        /// Repository-relative file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// Two kits claim the same namespace.
    #[error("kits {first} and {second} both claim namespace {namespace}")]
    NamespaceClaimed {
        /// The namespace.
        namespace: String,
        /// The kit this error is about.
        first: String,
        /// Another kit claiming the namespace.
        second: String,
    },
    /// The kit's `dependsOn` names itself, a missing kit, or closes a cycle.
    #[error("{file}:{line}: {message}")]
    DependsOn {
        /// The kit's kit.yaml.
        file: String,
        /// Line of its `dependsOn:` (0 when not found).
        line: u64,
        /// What is wrong, naming the kits involved.
        message: String,
    },
    /// Two kit directories have the same name.
    #[error("two kits are named {name}: {first} and {second}")]
    DuplicateName {
        /// The kit name.
        name: String,
        /// First directory.
        first: String,
        /// Second directory.
        second: String,
    },
}

/// A plugin to run, pinned by digest, with its configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PluginSpec {
    /// Repository-relative, normalised path of the component.
    pub path: String,
    /// Expected sha256, lowercase hex.
    pub sha256: String,
    /// Configuration handed to the plugin.
    pub config: serde_json::Value,
    /// File that declared it (for messages).
    pub declared_in: String,
    /// Line of its `config:` value in that file, when it has one.
    pub config_line: Option<u64>,
}

/// The platform file, resolved.
#[derive(Debug, Clone, Default)]
pub struct Platform {
    /// Transformers run on every kit after its own.
    pub transform: Vec<PluginSpec>,
    /// Validators run on every kit after its own.
    pub validate: Vec<PluginSpec>,
    /// Kits allowed to create cluster-scoped objects.
    pub cluster_scoped: BTreeSet<String>,
    /// Kits whose CustomResourceDefinitions prune may delete.
    pub prune_crds: BTreeSet<String>,
    /// Defaults for every kit.
    pub defaults: files::Defaults,
    /// Plugin memory cap in MiB, if the platform sets one.
    pub plugin_memory_mib: Option<u64>,
    /// Plugin deadline in ms, if the platform sets one.
    pub plugin_deadline_ms: Option<u64>,
    /// Raw bytes of the platform file (part of every kit's input hash).
    pub raw: Vec<u8>,
}

/// A kit, resolved: defaults applied, paths normalised, plugins pinned.
#[derive(Debug, Clone)]
pub struct Kit {
    /// Kit name (its directory's last component).
    pub name: String,
    /// Repository-relative directory.
    pub dir: String,
    /// Namespace its namespaced objects go to.
    pub namespace: String,
    /// Manifest files, repository-relative, sorted.
    pub manifests: Vec<String>,
    /// Paths that would be manifests but cannot be read (symlinks, never followed; FIFOs,
    /// sockets, devices), with why: the render refuses the kit instead of applying it
    /// without them.
    pub unreadable_manifests: Vec<(String, &'static str)>,
    /// Kit transformers, in order.
    pub transform: Vec<PluginSpec>,
    /// Kit validators.
    pub validate: Vec<PluginSpec>,
    /// Kits that must be applied first.
    pub depends_on: Vec<String>,
    /// Delete objects removed from the kit.
    pub prune: bool,
    /// Skip this kit.
    pub suspend: bool,
    /// Service account to impersonate when applying.
    pub service_account: Option<String>,
    /// Health wait timeout.
    pub timeout: Duration,
    /// Correct drift (true) or only report it.
    pub self_heal: bool,
    /// Force server-side apply conflicts.
    pub force: bool,
    /// Delete and recreate objects whose change touches an immutable field.
    pub recreate: bool,
}

/// Everything found in a snapshot: the platform and each kit (or why it is unusable).
#[derive(Debug)]
pub struct Discovery {
    /// The platform file, or defaults when there is none.
    pub platform: Result<Platform, Error>,
    /// Kits by name; a kit whose kit.yaml is bad is an `Err` and the others go on.
    pub kits: BTreeMap<String, Result<Kit, Error>>,
}

/// Finds every kit in `snapshot` and parses the platform file.
pub fn discover(snapshot: &Snapshot) -> Discovery {
    let platform = match snapshot.get(PLATFORM_FILE) {
        Some(bytes) => files::parse_platform(PLATFORM_FILE, bytes),
        None => Ok(Platform::default()),
    };
    let defaults = platform.as_ref().map(|p| p.defaults.clone()).unwrap_or_default();

    let kit_dirs: Vec<String> = snapshot
        .files()
        .filter_map(|(path, _)| {
            let dir = path.strip_suffix(KIT_FILE)?;
            (dir.is_empty() || dir.ends_with('/')).then(|| dir.trim_end_matches('/').to_owned())
        })
        .collect();

    let mut kits: BTreeMap<String, Result<Kit, Error>> = BTreeMap::new();
    let mut dirs_by_name: BTreeMap<String, String> = BTreeMap::new();
    let mut namespaces: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    for dir in &kit_dirs {
        let name = dir
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .unwrap_or("root")
            .to_owned();
        if let Some(first) = dirs_by_name.get(&name) {
            let error = Error::DuplicateName {
                name: name.clone(),
                first: first.clone(),
                second: dir.clone(),
            };
            kits.insert(name.clone(), Err(error));
            continue;
        }
        dirs_by_name.insert(name.clone(), dir.clone());
        let file = if dir.is_empty() {
            KIT_FILE.to_owned()
        } else {
            format!("{dir}/{KIT_FILE}")
        };
        let bytes = snapshot.get(&file).unwrap_or_default();
        if !files::is_dns_label(&name) {
            // The name becomes a label value, the Kit object's name and part of the
            // inventory's name: it must be a DNS-1123 label.
            let message = format!(
                "kit name {name:?} (the directory's name) must be a DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
            );
            kits.insert(name.clone(), Err(Error::Invalid { file, message }));
            continue;
        }
        texts.insert(name.clone(), String::from_utf8_lossy(bytes).into_owned());
        let kit = files::parse_kit(&file, bytes, &name, dir, &defaults).map(|mut kit| {
            let files = snapshot.files().map(|(path, _)| path);
            let links = snapshot.symlinks.iter().map(String::as_str);
            let special = snapshot.special.iter().map(String::as_str);
            kit.unreadable_manifests = manifests_of(links, dir, &kit_dirs, &kit.manifests)
                .into_iter()
                .map(|path| (path, "a symlink, which kitsync never follows"))
                .chain(
                    manifests_of(special, dir, &kit_dirs, &kit.manifests)
                        .into_iter()
                        .map(|path| (path, "not a regular file (a FIFO, socket or device)")),
                )
                .collect();
            kit.manifests = manifests_of(files, dir, &kit_dirs, &kit.manifests);
            kit
        });
        if let Ok(kit) = &kit {
            namespaces
                .entry(kit.namespace.clone())
                .or_default()
                .push(kit.name.clone());
        }
        kits.insert(name, kit);
    }
    // A kit.yaml that is a symlink (never followed) or not a regular file is never read; its
    // kit is refused by name rather than left out of the revision (which would read as
    // clean, or as a kit to prune).
    for link in snapshot.symlinks.iter().chain(&snapshot.special) {
        let Some(dir) = link.strip_suffix(KIT_FILE) else {
            continue;
        };
        if !(dir.is_empty() || dir.ends_with('/')) {
            continue;
        }
        let dir = dir.trim_end_matches('/');
        let name = dir.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("root");
        kits.entry(name.to_owned()).or_insert_with(|| {
            Err(Error::Invalid {
                file: link.clone(),
                message: "kit.yaml is a symlink or not a regular file; kitsync reads regular files only, never following symlinks".into(),
            })
        });
    }
    // Every claimant of a shared namespace is blocked: which one "wins" must not depend on
    // directory order, and none may write where another kit also believes it owns.
    for (namespace, claimants) in namespaces.iter().filter(|(_, c)| c.len() > 1) {
        for name in claimants {
            let other = claimants.iter().find(|c| *c != name).cloned().unwrap_or_default();
            kits.insert(
                name.clone(),
                Err(Error::NamespaceClaimed {
                    namespace: namespace.clone(),
                    first: name.clone(),
                    second: other,
                }),
            );
        }
    }
    graph::validate(&mut kits, &texts);
    Discovery { platform, kits }
}

fn is_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// The kit's manifest files among `paths`: the listed ones (files or directories below the
/// kit), or by default every YAML file below the kit directory except kit.yaml and other
/// kits' files.
fn manifests_of<'a>(
    paths: impl Iterator<Item = &'a str>,
    dir: &str,
    kit_dirs: &[String],
    listed: &[String],
) -> Vec<String> {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let nested: Vec<String> = kit_dirs
        .iter()
        .filter(|d| d.as_str() != dir && (prefix.is_empty() || d.starts_with(&prefix)))
        .map(|d| format!("{d}/"))
        .collect();
    let wanted = |path: &str| -> bool {
        if listed.is_empty() {
            return true;
        }
        listed
            .iter()
            .any(|l| path == l || path.starts_with(&format!("{l}/")))
    };
    let mut out: Vec<String> = paths
        .filter(|path| path.starts_with(&prefix) && is_yaml(path))
        .filter(|path| path.rsplit('/').next() != Some(KIT_FILE))
        .filter(|path| !nested.iter().any(|n| path.starts_with(n.as_str())))
        .filter(|path| !(dir.is_empty() && *path == PLATFORM_FILE))
        .filter(|path| wanted(path))
        .map(str::to_owned)
        .collect();
    out.sort();
    out
}
