//! `kitsync sync` and `kitsync diff`: apply a directory of YAML as one kit, once, or show
//! what applying it would change.

use super::Outcome;
use crate::apply::{self, Applier, Target};
use crate::object::Object;
use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::{Path, PathBuf};

/// `kitsync sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Directory of manifests (`*.yaml`, `*.yml`, read recursively; a `kit.yaml` is skipped).
    pub dir: PathBuf,
    /// The kit's namespace; namespaced objects without one land here, others are refused.
    #[arg(long, short = 'n')]
    pub namespace: String,
    /// Kit name for the ownership label and the inventory [default: the namespace].
    #[arg(long)]
    pub kit: Option<String>,
    /// Service account in the namespace whose identity every write uses.
    #[arg(long)]
    pub service_account: Option<String>,
    /// Allow cluster-scoped objects (CRDs, ClusterRoles, ...).
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
    /// Revision recorded on every object (kitsync.dev/revision).
    #[arg(long, default_value = "manual")]
    pub revision: String,
    /// kitsync's own namespace, where inventories live and which no kit may write to.
    #[arg(long, default_value = "kitsync-system", env = "KITSYNC_NAMESPACE")]
    pub host_namespace: String,
    /// Kubeconfig file [default: $KUBECONFIG, else ~/.kube/config].
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context [default: its current context].
    #[arg(long)]
    pub context: Option<String>,
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            yaml_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            && path.file_name().is_none_or(|n| n != "kit.yaml")
        {
            out.push(path);
        }
    }
    Ok(())
}

fn read_objects(dir: &Path) -> Result<Vec<Object>> {
    let mut files = Vec::new();
    yaml_files(dir, &mut files)?;
    files.sort();
    let mut objects = Vec::new();
    for file in files {
        let name = file.strip_prefix(dir).unwrap_or(&file).display().to_string();
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        objects.extend(crate::manifest::parse(&name, &text)?);
    }
    Ok(objects)
}

async fn kube_config(args: &SyncArgs) -> Result<kube::Config> {
    let options = kube::config::KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await
        }
        None => kube::Config::from_kubeconfig(&options).await,
    };
    config.context("loading the kubeconfig")
}

fn target(args: &SyncArgs) -> Target {
    Target {
        kit: args.kit.clone().unwrap_or_else(|| args.namespace.clone()),
        namespace: args.namespace.clone(),
        host_namespace: args.host_namespace.clone(),
        service_account: args.service_account.clone(),
        cluster_scoped_allowed: args.allow_cluster_scoped,
        revision: args.revision.clone(),
        prune: !args.no_prune,
        force: args.force,
        recreate: args.recreate,
        removed: false,
    }
}

/// Runs `diff`: exit 0 when applying would change nothing, 1 when it would.
pub(super) fn diff(args: &SyncArgs) -> Result<Outcome> {
    use crate::diff::ObjectDiff;
    let objects = read_objects(&args.dir)?;
    let target = target(args);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let applier = Applier::new(kube_config(args).await?)
            .context("creating the Kubernetes client")?
            .with_concurrency(args.concurrency);
        let changes = match applier.diff(&target, objects).await {
            Ok(changes) => changes,
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
        for change in &changes {
            match change {
                ObjectDiff::Added { object } => println!("+ {object}"),
                ObjectDiff::Removed { object } => println!("- {object} (to be pruned)"),
                ObjectDiff::Changed { object, fields } => {
                    println!("~ {object}");
                    for field in fields {
                        let show = |v: &Option<serde_json::Value>| {
                            v.as_ref().map_or("(absent)".to_owned(), |v| v.to_string())
                        };
                        println!(
                            "    {}: {} -> {}",
                            field.path,
                            show(&field.before),
                            show(&field.after)
                        );
                    }
                }
            }
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
    let objects = read_objects(&args.dir)?;
    let target = target(args);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let applier = Applier::new(kube_config(args).await?)
            .context("creating the Kubernetes client")?
            .with_concurrency(args.concurrency);
        let report = match applier.apply(&target, objects).await {
            Ok(report) => report,
            Err(apply::Error::Stage { failed, applied, .. }) => {
                for id in &applied {
                    println!("applied  {id}");
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
                apply::Outcome::Applied => println!("applied  {id}"),
                apply::Outcome::Unchanged => println!("unchanged {id}"),
                apply::Outcome::Pruned => println!("pruned   {id}"),
                apply::Outcome::Kept(why) => println!("kept     {id}: {why}"),
            }
        }
        if let Some(why) = &report.prune_refused {
            eprintln!("prune refused: {why}");
            return Ok(Outcome::Findings);
        }
        Ok(Outcome::Clean)
    })
}
