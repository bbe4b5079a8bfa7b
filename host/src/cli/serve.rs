//! `kitsync serve`, `kitsync status` and `kitsync reconcile`: the service and the commands
//! that read and poke it through the Kit resources.

use super::{ClusterArgs, Outcome};
use crate::serve::config::{CredentialsFile, HostConfig, HostFile, SourceFile};
use crate::serve::leader::LeaderElectionFile;
use crate::status::{self, KitObject, RECONCILE_AT};
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// `kitsync serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Host configuration file (sources, credentials, trusted policies, limits).
    #[arg(long, env = "KITSYNC_CONFIG", value_name = "FILE", conflicts_with = "source")]
    pub config: Option<PathBuf>,
    /// Follow this Git URL as the only source (instead of --config).
    #[arg(long, value_name = "URL")]
    pub source: Option<String>,
    /// With --source: branch, `tag:T`, `semver:RANGE` or `commit:SHA`.
    #[arg(long = "ref", value_name = "REF", default_value = "main", requires = "source")]
    pub git_ref: String,
    /// With --source: poll interval, e.g. `30s`, `1m`.
    #[arg(long, value_name = "DURATION", default_value = "1m", requires = "source")]
    pub interval: String,
    /// With --source: the repository directory holding kitsync.yaml and the kits.
    #[arg(long, value_name = "DIR", requires = "source")]
    pub path: Option<String>,
    /// With --source: a file holding an https access token.
    #[arg(long, value_name = "FILE", requires = "source", conflicts_with = "token_env")]
    pub token_file: Option<PathBuf>,
    /// With --source: an environment variable holding an https access token.
    #[arg(long, value_name = "VAR", requires = "source")]
    pub token_env: Option<String>,
    /// With --source: kitsync's own namespace (Kits and inventories; no kit may write there)
    /// [default: kitsync-system].
    #[arg(long, env = "KITSYNC_NAMESPACE", value_name = "NS", requires = "source")]
    pub host_namespace: Option<String>,
    /// With --source: kits reconciled at once [default: 4].
    #[arg(long, value_name = "N", requires = "source")]
    pub concurrency: Option<usize>,
    /// With --source: the service account (in each kit's namespace) that kits without
    /// `serviceAccount` write as, instead of the host's own identity.
    #[arg(long, value_name = "NAME", requires = "source")]
    pub default_service_account: Option<String>,
    /// With --source: serve `/healthz`, `/readyz` and `/metrics` on this address, e.g.
    /// `127.0.0.1:8080` (webhooks need a --config file: they need a secret).
    #[arg(long, value_name = "ADDR", requires = "source")]
    pub probes: Option<String>,
    /// With --source: run leader election (Lease `kitsync-leader` in the host namespace,
    /// 15 s lease, 10 s renew deadline, 2 s retry), so several replicas can run and one
    /// reconciles. Needs get, create and update on leases in the host namespace.
    #[arg(long, requires = "source")]
    pub leader_elect: bool,
    /// Cluster access.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl ServeArgs {
    fn host_config(&self) -> Result<HostConfig> {
        if let Some(path) = &self.config {
            return HostConfig::load(path).map_err(anyhow::Error::from);
        }
        let Some(url) = &self.source else {
            bail!("say what to follow: --config FILE (or KITSYNC_CONFIG), or --source URL");
        };
        let file = HostFile {
            host_namespace: self.host_namespace.clone(),
            concurrency: self.concurrency,
            default_service_account: self.default_service_account.clone(),
            sources: vec![SourceFile {
                name: "default".into(),
                url: url.clone(),
                reference: Some(self.git_ref.clone()),
                interval: Some(self.interval.clone()),
                path: self.path.clone(),
                timeout: None,
                credentials: CredentialsFile {
                    token_file: self.token_file.clone(),
                    token_env: self.token_env.clone(),
                    ..CredentialsFile::default()
                },
                webhook: None,
                write_back: Default::default(),
            }],
            listen: crate::serve::config::ListenFile {
                probes: self.probes.clone(),
                webhooks: None,
            },
            leader_election: self.leader_elect.then(|| LeaderElectionFile {
                enabled: Some(true),
                ..LeaderElectionFile::default()
            }),
            ..HostFile::default()
        };
        HostConfig::resolve("the command line", file).map_err(anyhow::Error::from)
    }
}

/// Runs `serve` until SIGTERM or Ctrl-C.
pub(super) fn serve(args: &ServeArgs) -> Result<Outcome> {
    let config = args.host_config()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let kube_config = args.cluster.config().await?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received");
            let _ = stop.send(true);
        });
        crate::serve::run(config, kube_config, stopped).await
    })?;
    Ok(Outcome::Clean)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the service");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Output of `kitsync status`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusOutput {
    /// A table, as `kubectl get kits`.
    Table,
    /// The Kits' specs and statuses as JSON.
    Json,
}

/// `kitsync status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this kit.
    pub kit: Option<String>,
    /// kitsync's own namespace, where the Kits are.
    #[arg(long, default_value = "kitsync-system", env = "KITSYNC_NAMESPACE")]
    pub host_namespace: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = StatusOutput::Table)]
    pub output: StatusOutput,
    /// Cluster access.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `kitsync reconcile`.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The kit.
    pub kit: String,
    /// kitsync's own namespace, where the Kits are.
    #[arg(long, default_value = "kitsync-system", env = "KITSYNC_NAMESPACE")]
    pub host_namespace: String,
    /// Cluster access.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

fn age(created: Option<&str>) -> String {
    let Some(created) = created.and_then(|c| c.parse::<jiff::Timestamp>().ok()) else {
        return "-".into();
    };
    let secs = jiff::Timestamp::now().as_second() - created.as_second();
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Runs `status`: exit 0 when every kit shown is Ready, 1 when one is not.
pub(super) fn status(args: &StatusArgs) -> Result<Outcome> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let kits: Vec<KitObject> = runtime.block_on(async {
        let client =
            kube::Client::try_from(args.cluster.config().await?).context("creating the Kubernetes client")?;
        status::list(&client, &args.host_namespace)
            .await
            .map_err(anyhow::Error::msg)
            .context("is `kitsync serve` installed in this cluster? it creates the Kit resource at start")
    })?;
    let kits: Vec<&KitObject> = kits
        .iter()
        .filter(|k| args.kit.as_ref().is_none_or(|want| &k.name == want))
        .collect();
    if let Some(want) = &args.kit
        && kits.is_empty()
    {
        bail!("no Kit named {want} in namespace {}", args.host_namespace);
    }
    match args.output {
        StatusOutput::Json => {
            let out: Vec<serde_json::Value> = kits
                .iter()
                .map(|k| serde_json::json!({"name": k.name, "spec": k.spec, "status": k.status}))
                .collect();
            outln!("{}", serde_json::to_string_pretty(&out).context("writing JSON")?);
        }
        StatusOutput::Table => {
            let rows: Vec<[String; 5]> = kits
                .iter()
                .map(|k| {
                    let ready = k.status.condition("Ready");
                    [
                        k.name.clone(),
                        ready.map_or("Unknown".into(), |c| c.status.clone()),
                        crate::reconcile::short(&k.status.last_applied_revision).to_owned(),
                        age(k.created.as_deref()),
                        ready.map_or(String::new(), |c| c.message.clone()),
                    ]
                })
                .collect();
            let header = ["NAME", "READY", "REVISION", "AGE", "MESSAGE"];
            let widths: Vec<usize> = (0..4)
                .map(|i| {
                    rows.iter()
                        .map(|r| r[i].len())
                        .chain([header[i].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: [&str; 5]| {
                let mut out = String::new();
                for (i, cell) in cells.iter().enumerate().take(4) {
                    out.push_str(&format!("{cell:<width$}   ", width = widths[i]));
                }
                out.push_str(cells[4]);
                out
            };
            outln!("{}", line(header));
            for r in &rows {
                outln!("{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
            }
            if rows.is_empty() {
                eprintln!("no kits in namespace {} yet", args.host_namespace);
            }
        }
    }
    Ok(if kits.iter().all(|k| k.status.is_ready()) {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

/// Runs `reconcile`: sets the annotation `serve` watches.
pub(super) fn reconcile(args: &ReconcileArgs) -> Result<Outcome> {
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let at = jiff::Timestamp::now().to_string();
    runtime.block_on(async {
        let client =
            kube::Client::try_from(args.cluster.config().await?).context("creating the Kubernetes client")?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(client, &args.host_namespace, &status::kit_resource());
        if api.get_opt(&args.kit).await.context("reading the Kit")?.is_none() {
            bail!(
                "no Kit named {} in namespace {}: `kitsync status` lists the kits",
                args.kit,
                args.host_namespace
            );
        }
        // A merge patch of one annotation: it does not take the spec's fields from serve.
        let patch = serde_json::json!({"metadata": {"annotations": {RECONCILE_AT: at}}});
        api.patch(&args.kit, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("annotating Kit {}", args.kit))?;
        Ok(())
    })?;
    outln!("kit {}: reconcile requested at {at}", args.kit);
    Ok(Outcome::Clean)
}
