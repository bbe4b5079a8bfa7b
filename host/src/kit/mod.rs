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
    /// The kit holds entries that are never read: symlinks, `.git` entries, names that are not
    /// UTF-8 or differ only in case, files over the size limit, directories nested too deep,
    /// or more files than a kit may hold.
    #[error("{file}: {message}")]
    Unsafe {
        /// The first offending path (repository-relative, escaped when not UTF-8).
        file: String,
        /// Every offending entry and why.
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
    /// Line of its entry (the `plugin:` value) in that file.
    pub line: Option<u64>,
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
    /// Schema validation options (`schemas:`).
    pub schemas: files::SchemaOptions,
    /// `schemas.crds`, normalised repository-relative directories.
    pub schema_dirs: Vec<String>,
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

/// Most manifest files one kit may hold.
pub const MAX_KIT_FILES: usize = 5_000;

/// Symlinks and refused entries at `path` exactly, as (path, why).
fn unsafe_at(snapshot: &Snapshot, path: &str) -> Option<String> {
    if snapshot.symlinks.iter().any(|s| s == path) {
        return Some(format!("{path} is a symlink; symlinks are never followed"));
    }
    snapshot
        .refused
        .iter()
        .find(|r| r.path == path)
        .map(|r| format!("{path}: {}", r.reason))
}

/// Finds every kit in `snapshot` and parses the platform file.
///
/// Nothing in the tree is followed or guessed at: a kit holding a symlink or a refused
/// entry (see [`crate::source::Refused`]) is an error for that kit alone, and a symlinked
/// platform file is an error, never "no platform file".
pub fn discover(snapshot: &Snapshot) -> Discovery {
    let platform = match (snapshot.get(PLATFORM_FILE), unsafe_at(snapshot, PLATFORM_FILE)) {
        (_, Some(why)) => Err(Error::Unsafe {
            file: PLATFORM_FILE.to_owned(),
            message: why,
        }),
        (Some(bytes), None) => files::parse_platform(PLATFORM_FILE, bytes),
        (None, None) => Ok(Platform::default()),
    };
    let defaults = platform.as_ref().map(|p| p.defaults.clone()).unwrap_or_default();

    // A kit.yaml that is a symlink or refused still makes its directory a kit (one that
    // fails), so replacing it can never make a kit look removed and get it pruned.
    let mut kit_dirs: Vec<String> = snapshot
        .files()
        .map(|(path, _)| path)
        .chain(snapshot.symlinks.iter().map(String::as_str))
        .chain(snapshot.refused.iter().map(|r| r.path.as_str()))
        .filter_map(|path| {
            let dir = path.strip_suffix(KIT_FILE)?;
            (dir.is_empty() || dir.ends_with('/')).then(|| dir.trim_end_matches('/').to_owned())
        })
        .collect();
    kit_dirs.sort();
    kit_dirs.dedup();

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
        if let Some(error) = unsafe_entries(snapshot, dir, &kit_dirs) {
            kits.insert(name.clone(), Err(error));
            continue;
        }
        let kit = files::parse_kit(&file, bytes, &name, dir, &defaults).and_then(|mut kit| {
            kit.manifests = manifests_of(snapshot, dir, &kit_dirs, &kit.manifests);
            if kit.manifests.len() > MAX_KIT_FILES {
                return Err(Error::Unsafe {
                    file,
                    message: format!(
                        "kit {name} has {} manifest files, more than the {MAX_KIT_FILES} a kit may hold",
                        kit.manifests.len()
                    ),
                });
            }
            Ok(kit)
        });
        if let Ok(kit) = &kit {
            namespaces
                .entry(kit.namespace.clone())
                .or_default()
                .push(kit.name.clone());
        }
        kits.insert(name, kit);
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

/// Whether a path lies in kit directory `dir` and not in a kit nested below it.
fn in_kit(dir: &str, kit_dirs: &[String]) -> impl Fn(&str) -> bool {
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
    move |path: &str| path.starts_with(&prefix) && !nested.iter().any(|n| path.starts_with(n.as_str()))
}

/// The symlinks and refused entries below kit directory `dir` (not below kits nested in it),
/// as one error naming each, or `None`.
fn unsafe_entries(snapshot: &Snapshot, dir: &str, kit_dirs: &[String]) -> Option<Error> {
    let mine = in_kit(dir, kit_dirs);
    let mut problems: Vec<(String, String)> = snapshot
        .symlinks
        .iter()
        .filter(|p| mine(p))
        .map(|p| {
            (
                p.clone(),
                format!("{p} is a symlink; symlinks are never followed"),
            )
        })
        .chain(
            snapshot
                .refused
                .iter()
                .filter(|r| mine(&r.path))
                .map(|r| (r.path.clone(), format!("{}: {}", r.path, r.reason))),
        )
        .collect();
    problems.sort();
    let (first, _) = problems.first()?.clone();
    let shown: Vec<String> = problems.iter().take(10).map(|(_, why)| why.clone()).collect();
    let more = problems.len().saturating_sub(10);
    Some(Error::Unsafe {
        file: first,
        message: format!(
            "{}{}",
            shown.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        ),
    })
}

fn is_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// The kit's manifest files: the listed ones (files or directories below the kit), or by
/// default every YAML file below the kit directory except kit.yaml and other kits' files.
fn manifests_of(snapshot: &Snapshot, dir: &str, kit_dirs: &[String], listed: &[String]) -> Vec<String> {
    let in_this_kit = in_kit(dir, kit_dirs);
    let wanted = |path: &str| -> bool {
        if listed.is_empty() {
            return true;
        }
        listed
            .iter()
            .any(|l| path == l || path.starts_with(&format!("{l}/")))
    };
    let mut out: Vec<String> = snapshot
        .files()
        .map(|(path, _)| path)
        .filter(|path| in_this_kit(path) && is_yaml(path))
        .filter(|path| path.rsplit('/').next() != Some(KIT_FILE))
        .filter(|path| !(dir.is_empty() && *path == PLATFORM_FILE))
        .filter(|path| wanted(path))
        .map(str::to_owned)
        .collect();
    out.sort();
    out
}
