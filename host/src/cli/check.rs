//! `kitsync check` and `kitsync render`: the pipeline without a cluster.

use super::{EngineArgs, FailOn, Outcome, cache_root};
use crate::kit::{self, Discovery};
use crate::render::{Pipeline, Rendered, Settings, input_hash};
use crate::report::{CheckReport, Format, KitReport};
use crate::source::{Auth, RefSpec, Secret, Snapshot, Source, SourceConfig};
use anyhow::{Context, Result, bail};
use clap::Args;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// Where the repository comes from.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Repository directory (a checkout or any directory of kits).
    #[arg(default_value = ".", conflicts_with = "repo")]
    pub dir: PathBuf,
    /// Clone or fetch this Git URL instead of reading a directory.
    #[arg(long, requires = "git_ref")]
    pub repo: Option<String>,
    /// With --repo: branch, `tag:T`, `semver:RANGE` or `commit:SHA`.
    #[arg(long = "ref", id = "git_ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// Git credentials for --repo.
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Only these kits (repeatable).
    #[arg(long = "kit", value_name = "NAME")]
    pub kits: Vec<String>,
    /// kitsync's own namespace, which no kit may write to.
    #[arg(long, default_value = "kitsync-system", env = "KITSYNC_NAMESPACE")]
    pub host_namespace: String,
    /// Sandbox and cache settings.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Credentials for `--repo`; secrets are read from files or variables, never from arguments.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// https: a file holding an access token (sent as the password of `x-access-token`).
    #[arg(long, value_name = "FILE", requires = "repo", conflicts_with_all = ["token_env", "password_file", "ssh_key"])]
    pub token_file: Option<PathBuf>,
    /// https: an environment variable holding an access token.
    #[arg(long, value_name = "VAR", requires = "repo", conflicts_with_all = ["password_file", "ssh_key"])]
    pub token_env: Option<String>,
    /// https: user name for basic auth (with --password-file).
    #[arg(long, value_name = "NAME", requires = "password_file")]
    pub username: Option<String>,
    /// https: a file holding the basic-auth password.
    #[arg(long, value_name = "FILE", requires_all = ["repo", "username"])]
    pub password_file: Option<PathBuf>,
    /// ssh: the private key file.
    #[arg(long, value_name = "FILE", requires_all = ["repo", "known_hosts"])]
    pub ssh_key: Option<PathBuf>,
    /// ssh: the known_hosts file; hosts not in it are refused.
    #[arg(long, value_name = "FILE", requires = "ssh_key")]
    pub known_hosts: Option<PathBuf>,
}

impl AuthArgs {
    fn auth(&self) -> Auth {
        if let Some(file) = &self.token_file {
            return Auth::Token {
                token: Secret::File(file.clone()),
            };
        }
        if let Some(var) = &self.token_env {
            return Auth::Token {
                token: Secret::Env(var.clone()),
            };
        }
        if let (Some(username), Some(file)) = (&self.username, &self.password_file) {
            return Auth::Basic {
                username: username.clone(),
                password: Secret::File(file.clone()),
            };
        }
        if let (Some(key_file), Some(known_hosts_file)) = (&self.ssh_key, &self.known_hosts) {
            return Auth::SshKey {
                key_file: key_file.clone(),
                known_hosts_file: known_hosts_file.clone(),
            };
        }
        Auth::None
    }
}

/// `kitsync check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Repository and selection.
    #[command(flatten)]
    pub input: InputArgs,
    /// Only check kits whose inputs changed since this revision of DIR's repository, and
    /// print the rendered object diff against it.
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Lowest severity that makes the exit status 1.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    pub fail_on: FailOn,
}

/// `kitsync render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Repository and selection.
    #[command(flatten)]
    pub input: InputArgs,
}

fn snapshot(input: &InputArgs) -> Result<Snapshot> {
    match (&input.repo, &input.git_ref) {
        (Some(url), Some(reference)) => {
            let reference = RefSpec::parse(reference).with_context(|| format!("--ref {reference}"))?;
            let cache_dir = cache_root()
                .context("no cache directory: set XDG_CACHE_HOME or HOME")?
                .join("sources")
                .join(
                    crate::plugin::sha256_hex(url.as_bytes())
                        .get(..16)
                        .unwrap_or("source"),
                );
            let config = SourceConfig::new(url.clone(), reference, cache_dir)
                .with_auth(input.auth.auth())
                .with_timeout(Duration::from_secs(60));
            let source = Source::open(config)?;
            let outcome = source.poll()?;
            Ok(source.snapshot(outcome.commit())?)
        }
        _ => Snapshot::from_dir(&input.dir).with_context(|| format!("reading {}", input.dir.display())),
    }
}

fn pipeline(input: &InputArgs, discovery: &Discovery) -> Result<Pipeline> {
    let platform = discovery.platform.as_ref().ok();
    let engine = input.engine.engine_with(
        platform.and_then(|p| p.plugin_memory_mib),
        platform.and_then(|p| p.plugin_deadline_ms),
    )?;
    Ok(Pipeline::new(
        engine,
        Settings {
            host_namespace: input.host_namespace.clone(),
            ..Settings::default()
        },
    ))
}

fn selected(input: &InputArgs, discovery: &Discovery) -> Result<BTreeSet<String>> {
    for name in &input.kits {
        if !discovery.kits.contains_key(name) {
            let known: Vec<&String> = discovery.kits.keys().collect();
            bail!("no kit named {name}; kits here: {known:?}");
        }
    }
    Ok(discovery
        .kits
        .keys()
        .filter(|k| input.kits.is_empty() || input.kits.contains(k))
        .cloned()
        .collect())
}

/// Runs `check`.
pub(super) fn check(args: &CheckArgs) -> Result<Outcome> {
    let head = snapshot(&args.input)?;
    let discovery = kit::discover(&head);
    let mut wanted = selected(&args.input, &discovery)?;
    let pipeline = pipeline(&args.input, &discovery)?;

    let mut base_render: Option<(Snapshot, Discovery)> = None;
    if let Some(base_ref) = &args.base {
        if args.input.repo.is_some() {
            bail!("--base compares against a revision of a local checkout; use it with DIR, not --repo");
        }
        let base = Snapshot::from_git(&args.input.dir, base_ref)
            .with_context(|| format!("reading --base {base_ref}"))?;
        let base_discovery = kit::discover(&base);
        wanted.retain(|name| changed(&head, &discovery, &base, &base_discovery, name));
        base_render = Some((base, base_discovery));
    }

    let rendered = pipeline.render_selected(&head, &discovery, |name| wanted.contains(name));
    let base_rendered: Vec<Rendered> = match &base_render {
        Some((base, base_discovery)) => {
            pipeline.render_selected(base, base_discovery, |name| wanted.contains(name))
        }
        None => Vec::new(),
    };
    let kits = rendered
        .into_iter()
        .map(|r| {
            let diff = base_render.as_ref().map(|_| {
                let before = base_rendered
                    .iter()
                    .find(|b| b.kit == r.kit)
                    .map(|b| b.objects.as_slice())
                    .unwrap_or(&[]);
                crate::diff::diff(before, &r.objects)
            });
            KitReport { rendered: r, diff }
        })
        .collect();
    let report = CheckReport {
        revision: head.revision.clone(),
        base: args.base.clone(),
        kits,
    };
    out!("{}", report.format(args.format));
    Ok(if report.fails_at(args.fail_on.threshold()) {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// A kit changed when it is new, its inputs hash differently, or it could not be read on
/// either side (then checking it is the safe choice).
fn changed(head: &Snapshot, hd: &Discovery, base: &Snapshot, bd: &Discovery, name: &str) -> bool {
    let (Ok(hp), Ok(bp)) = (&hd.platform, &bd.platform) else {
        return true;
    };
    if hp.raw != bp.raw {
        return true;
    }
    match (hd.kits.get(name), bd.kits.get(name)) {
        (Some(Ok(h)), Some(Ok(b))) => input_hash(head, hp, h, &[]) != input_hash(base, bp, b, &[]),
        _ => true,
    }
}

/// Runs `render`.
pub(super) fn render(args: &RenderArgs) -> Result<Outcome> {
    let head = snapshot(&args.input)?;
    let discovery = kit::discover(&head);
    let wanted = selected(&args.input, &discovery)?;
    let pipeline = pipeline(&args.input, &discovery)?;
    let rendered = pipeline.render_selected(&head, &discovery, |name| wanted.contains(name));
    let mut failed = false;
    for r in &rendered {
        if let Some(reason) = &r.failed {
            failed = true;
            let report = CheckReport {
                revision: head.revision.clone(),
                base: None,
                kits: vec![KitReport {
                    rendered: r.clone(),
                    diff: None,
                }],
            };
            eprint!("{}", report.format(Format::Text));
            eprintln!("kit {}: not rendered: {reason}", r.kit);
            continue;
        }
        outln!(
            "# kit: {} (namespace {}, revision {})",
            r.kit,
            r.namespace,
            head.revision
        );
        out!(
            "{}",
            crate::manifest::to_yaml(&r.objects).context("writing YAML")?
        );
    }
    if failed {
        bail!("some kits could not be rendered");
    }
    Ok(Outcome::Clean)
}
