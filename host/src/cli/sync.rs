//! `kitsync sync` and `kitsync diff`: apply a directory as one kit, once, or show what
//! applying it would change.
//!
//! A directory with a `kit.yaml` is a kit of its repository (found by walking up to the
//! `kitsync.yaml`, else to `.git`): it goes through the same render as `check` and `serve`
//! (its plugins, the platform's validators, the guards) before the apply engine.

use super::Outcome;
use crate::apply::{self, Applier, Target};
use crate::kit::{Discovery, Kit};
use crate::object::Object;
use crate::source::Snapshot;
use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::{Path, PathBuf};

/// `kitsync sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// A kit directory (with `kit.yaml`: rendered with its plugins and the platform file), or
    /// a plain directory of manifests (`*.yaml`, `*.yml`, read recursively, applied as they are).
    pub dir: PathBuf,
    /// The kit's namespace; namespaced objects without one land here, others are refused.
    /// Required for a plain directory; a kit's comes from its kit.yaml.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Kit name for the ownership label and the inventory [default: a plain directory's
    /// namespace; a kit's directory name, or `root` for a kit at its repository's root].
    #[arg(long)]
    pub kit: Option<String>,
    /// Service account in the namespace whose identity every write uses.
    #[arg(long)]
    pub service_account: Option<String>,
    /// Allow cluster-scoped objects (CRDs, ClusterRoles, ...) for this run, as if the platform
    /// file listed the kit under `clusterScoped`.
    #[arg(long)]
    pub allow_cluster_scoped: bool,
    /// Take fields owned by other field managers instead of reporting conflicts.
    #[arg(long)]
    pub force: bool,
    /// Delete and recreate an object when a change touches an immutable field (a Job's
    /// template, a Service's clusterIP) instead of reporting the error.
    #[arg(long)]
    pub recreate: bool,
    /// Keep objects dropped from the directory instead of deleting them.
    #[arg(long)]
    pub no_prune: bool,
    /// Objects applied at once within a stage.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub concurrency: usize,
    /// Revision recorded in the kit's inventory.
    #[arg(long, default_value = "manual")]
    pub revision: String,
    /// Sandbox and cache settings for a kit's plugins.
    #[command(flatten)]
    pub engine: super::EngineArgs,
    /// Schema validation of a kit's objects.
    #[command(flatten)]
    pub schema: super::SchemaArgs,
    /// kitsync's own namespace, where inventories live and which no kit may write to.
    #[arg(long, default_value = "kitsync-system", env = "KITSYNC_NAMESPACE")]
    pub host_namespace: String,
    /// Cluster access.
    #[command(flatten)]
    pub cluster: super::ClusterArgs,
}

/// The target and objects of `args.dir`: a kit rendered through the pipeline, or a plain
/// directory's manifests as they are.
fn prepare(args: &SyncArgs) -> Result<(Target, Vec<Object>)> {
    let kit_file = args.dir.join(crate::kit::KIT_FILE);
    let is_kit = std::fs::symlink_metadata(&kit_file).is_ok_and(|m| m.is_file());
    let (snapshot, discovery, kit) = if is_kit {
        kit_of_repository(args)?
    } else {
        plain_directory(args)?
    };
    let mut platform = discovery
        .platform
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{}: {e}", crate::kit::PLATFORM_FILE))?
        .clone();
    // The operator's flag for this one run: as if the platform listed the kit.
    if args.allow_cluster_scoped {
        platform.cluster_scoped.insert(kit.name.clone());
    }
    let platform = &platform;
    // The flags are the host's ceilings; the platform file may only lower them.
    let limits =
        crate::render::effective_limits(&args.engine.ceilings()?, &discovery).map_err(anyhow::Error::msg)?;
    let engine = args.engine.engine_for(limits)?;
    let pipeline = crate::render::Pipeline::new(
        engine,
        crate::render::Settings {
            host_namespace: args.host_namespace.clone(),
            schema: args.schema.settings(),
            // One render: keeping parsed files would only cost their encoding.
            parse_cache_bytes: 0,
            ..Default::default()
        },
    );
    let rendered = pipeline.render(&snapshot, platform, &kit);
    if let Some(reason) = &rendered.failed {
        let report = crate::report::CheckReport {
            revision: snapshot.revision.clone(),
            base: None,
            kits: vec![crate::report::KitReport {
                rendered: rendered.clone(),
                diff: None,
            }],
            revision_findings: Vec::new(),
        };
        eprint!("{}", report.format(crate::report::Format::Text));
        bail!("kit {}: blocked before reaching the cluster: {reason}", kit.name);
    }
    let target = Target {
        kit: kit.name.clone(),
        namespace: kit.namespace.clone(),
        host_namespace: args.host_namespace.clone(),
        service_account: args
            .service_account
            .clone()
            .or_else(|| kit.service_account.clone()),
        cluster_scoped_allowed: platform.cluster_scoped.contains(&kit.name),
        revision: args.revision.clone(),
        prune: kit.prune && !args.no_prune,
        force: args.force || kit.force,
        recreate: args.recreate || kit.recreate,
        removed: false,
        prune_crds: platform.prune_crds.contains(&kit.name),
    };
    Ok((target, rendered.objects))
}

/// A kit directory: the kit as its repository's discovery sees it.
fn kit_of_repository(args: &SyncArgs) -> Result<(Snapshot, Discovery, Kit)> {
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("reading {}", args.dir.display()))?;
    let root = repository_root(&dir);
    let rel = dir
        .strip_prefix(&root)
        .unwrap_or(Path::new(""))
        .to_str()
        .context("the kit's path is not UTF-8")?
        .to_owned();
    let snapshot = Snapshot::from_dir(&root).with_context(|| format!("reading {}", root.display()))?;
    let discovery = crate::kit::discover(&snapshot);
    // Discovery names a kit after its directory, `root` at the repository root.
    let wanted = rel.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("root");
    let Some((name, entry)) = discovery.kits.iter().find(|(name, k)| match k {
        Ok(kit) => kit.dir == rel,
        Err(_) => name.as_str() == wanted,
    }) else {
        bail!(
            "{} is not a kit of the repository at {}",
            args.dir.display(),
            root.display()
        );
    };
    let mut kit = entry
        .as_ref()
        .map_err(|e| anyhow::anyhow!("kit {name}: {e}"))?
        .clone();
    // A kit at its repository's root has no directory name to go by: --kit names it.
    if let Some(k) = &args.kit
        && kit.dir.is_empty()
    {
        kit.name = k.clone();
    }
    if let Some(ns) = &args.namespace
        && ns != &kit.namespace
    {
        bail!(
            "kit {name} deploys to namespace {} (its kit.yaml); --namespace {ns} disagrees",
            kit.namespace
        );
    }
    if let Some(k) = &args.kit
        && k != &kit.name
    {
        bail!("the kit in {} is named {}, not {k}", args.dir.display(), kit.name);
    }
    Ok((snapshot, discovery, kit))
}

/// A plain directory of YAML: a kit with default settings in --namespace, read through a
/// snapshot of the directory (no symlink followed) and rendered like any kit.
fn plain_directory(args: &SyncArgs) -> Result<(Snapshot, Discovery, Kit)> {
    let Some(namespace) = args.namespace.clone() else {
        bail!(
            "{} has no kit.yaml: name the namespace its objects go to with --namespace",
            args.dir.display()
        );
    };
    let files = Snapshot::from_dir(&args.dir).with_context(|| format!("reading {}", args.dir.display()))?;
    // The directory is the kit; nothing in it is a platform file (the platform is empty).
    let name = args.kit.clone().unwrap_or_else(|| namespace.clone());
    let kit_yaml = serde_json::json!({"namespace": namespace}).to_string();
    let platform_yaml = "{}".to_owned();
    let snapshot = Snapshot::from_files(
        files.revision.clone(),
        files
            .files()
            .filter(|(path, _)| *path != crate::kit::PLATFORM_FILE)
            .map(|(path, bytes)| (path.to_owned(), bytes.to_vec()))
            .chain([
                (crate::kit::KIT_FILE.to_owned(), kit_yaml.into_bytes()),
                (crate::kit::PLATFORM_FILE.to_owned(), platform_yaml.into_bytes()),
            ]),
    )?;
    let discovery = crate::kit::discover(&snapshot);
    // The kit at the directory's root ("root"); a kit.yaml further down is another kit.
    let mut kit = match discovery.kits.get("root") {
        Some(Ok(kit)) if kit.dir.is_empty() => kit.clone(),
        Some(Err(e)) => bail!("{}: {e}", args.dir.display()),
        _ => bail!("{}: no manifests", args.dir.display()),
    };
    kit.name = name;
    Ok((snapshot, discovery, kit))
}

/// The repository a kit directory belongs to: the nearest directory at or above it holding
/// `kitsync.yaml`, else the nearest holding `.git`, else the directory itself.
fn repository_root(dir: &Path) -> PathBuf {
    let has = |name: &str| {
        dir.ancestors()
            .find(|d| std::fs::symlink_metadata(d.join(name)).is_ok())
            .map(Path::to_path_buf)
    };
    has(crate::kit::PLATFORM_FILE)
        .or_else(|| has(".git"))
        .unwrap_or_else(|| dir.to_path_buf())
}

/// Runs `diff`: exit 0 when applying would change nothing, 1 when it would.
pub(super) fn diff(args: &SyncArgs) -> Result<Outcome> {
    use crate::diff::ObjectDiff;
    let (target, objects) = prepare(args)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let applier = Applier::new(args.cluster.config().await?)
            .context("creating the Kubernetes client")?
            .with_concurrency(args.concurrency);
        let dry_run = match applier.dry_run(&target, objects).await {
            Ok(dry_run) => dry_run,
            Err(apply::Error::Stage { failed, .. }) => {
                for (id, why) in &failed {
                    eprintln!("failed   {id}: {why}");
                }
                bail!(
                    "kit {}: the dry run failed for {} object(s)",
                    target.kit,
                    failed.len()
                );
            }
            Err(e) => return Err(e.into()),
        };
        let changes = &dry_run.changes;
        let notes = |id: &crate::object::ObjectRef| -> Vec<&String> {
            dry_run
                .notes
                .iter()
                .filter(|(n, _)| n == id)
                .map(|(_, note)| note)
                .collect()
        };
        for change in changes {
            match change {
                ObjectDiff::Added { object } => outln!("+ {object}"),
                ObjectDiff::Removed { object } => outln!("- {object} (to be pruned)"),
                ObjectDiff::Changed { object, fields } => {
                    outln!("~ {object}");
                    for field in fields {
                        let show = |v: &Option<serde_json::Value>| {
                            v.as_ref().map_or("(absent)".to_owned(), |v| v.to_string())
                        };
                        outln!(
                            "    {}: {} -> {}",
                            field.path,
                            show(&field.before),
                            show(&field.after)
                        );
                    }
                }
            }
            let object = match change {
                ObjectDiff::Added { object }
                | ObjectDiff::Removed { object }
                | ObjectDiff::Changed { object, .. } => object,
            };
            for note in notes(object) {
                outln!("    note: {note}");
            }
        }
        if changes.is_empty() {
            eprintln!("kit {}: no differences", target.kit);
        }
        Ok(if changes.is_empty() {
            Outcome::Clean
        } else {
            Outcome::Findings
        })
    })
}

/// Runs `sync`.
pub(super) fn sync(args: &SyncArgs) -> Result<Outcome> {
    let (target, objects) = prepare(args)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let applier = Applier::new(args.cluster.config().await?)
            .context("creating the Kubernetes client")?
            .with_concurrency(args.concurrency);
        let report = match applier.apply(&target, objects).await {
            Ok(report) => report,
            Err(apply::Error::Stage { failed, applied, .. }) => {
                for id in &applied {
                    outln!("applied  {id}");
                }
                for (id, why) in &failed {
                    eprintln!("failed   {id}: {why}");
                }
                bail!(
                    "kit {}: {} object(s) failed; nothing pruned",
                    target.kit,
                    failed.len()
                );
            }
            Err(apply::Error::Guard { findings, .. }) => {
                for finding in &findings {
                    eprintln!("refused  {finding}");
                }
                bail!("kit {}: refused by host guards before any write", target.kit);
            }
            Err(e) => return Err(e.into()),
        };
        for (id, outcome) in &report.objects {
            match outcome {
                apply::Outcome::Applied => outln!("applied  {id}"),
                apply::Outcome::Unchanged => outln!("unchanged {id}"),
                apply::Outcome::Pruned => outln!("pruned   {id}"),
                apply::Outcome::Kept(why) => outln!("kept     {id}: {why}"),
            }
        }
        if let Some(why) = &report.prune_refused {
            eprintln!("prune refused: {why}");
            return Ok(Outcome::Findings);
        }
        Ok(Outcome::Clean)
    })
}
