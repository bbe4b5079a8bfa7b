//! `kitsync check` and `kitsync render`: the pipeline without a cluster.

use super::{EngineArgs, FailOn, Outcome, cache_root};
use crate::diagnostic::{Diagnostic, Finding, HOST_SOURCE, Severity};
use crate::kit::{self, Discovery};
use crate::render::{
    Ceilings, Pipeline, Rendered, Settings, TrustedPolicy, blocked, effective_limits, input_hash,
    revision_finding,
};
use crate::report::{CheckReport, Format, KitReport};
use crate::serve::config::{HostConfig, TrustedFile};
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
    /// kitsync's own namespace, which no kit may write to [default: the host config's
    /// hostNamespace, else kitsync-system].
    #[arg(long, env = "KITSYNC_NAMESPACE")]
    pub host_namespace: Option<String>,
    /// Sandbox and cache settings.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// What the host enforces beyond the repository.
    #[command(flatten)]
    pub host: HostArgs,
    /// Schema validation.
    #[command(flatten)]
    pub schema: super::SchemaArgs,
}

/// The host's side of the pipeline, so review enforces what `serve` enforces.
#[derive(Debug, Args)]
pub struct HostArgs {
    /// The host configuration `serve --config` reads: its hostNamespace, pluginLimits (the
    /// ceilings) and trustedPolicies apply exactly as in serve.
    #[arg(long = "config", value_name = "HOST_CONFIG")]
    pub host_config: Option<PathBuf>,
    /// A trusted policy (a validator component on the host's disk) run on every kit after the
    /// repository's own; repeatable, each with its --trusted-sha256 in the same order.
    #[arg(long = "trusted", value_name = "FILE.wasm", requires = "trusted_sha256")]
    pub trusted: Vec<PathBuf>,
    /// The sha256 pin of each --trusted component (64 hex digits, `sha256:` prefix allowed).
    #[arg(long = "trusted-sha256", value_name = "HEX", requires = "trusted")]
    pub trusted_sha256: Vec<String>,
    /// The JSON configuration of each --trusted component, in order [default: {}]; give
    /// none, or one per --trusted.
    #[arg(long = "trusted-config", value_name = "JSON", requires = "trusted")]
    pub trusted_config: Vec<String>,
}

/// What the host sets, resolved from --config, the trusted flags and the engine flags.
struct Host {
    namespace: String,
    ceilings: Ceilings,
    trusted: Vec<TrustedPolicy>,
}

impl Host {
    fn resolve(input: &InputArgs) -> Result<Host> {
        let args = &input.host;
        let (mut namespace, ceilings, mut trusted) = match &args.host_config {
            Some(path) => {
                // One source of truth per run: the ceilings serve applies are the file's.
                if input.engine.sets_ceilings() {
                    bail!(
                        "--plugin-memory/--plugin-deadline conflict with --config: the host config's pluginLimits are the ceilings"
                    );
                }
                let config = HostConfig::load(path)
                    .with_context(|| format!("reading the host config {}", path.display()))?;
                (config.host_namespace, config.plugin_ceilings, config.trusted)
            }
            None => ("kitsync-system".to_owned(), input.engine.ceilings()?, Vec::new()),
        };
        if let Some(flag) = &input.host_namespace {
            if args.host_config.is_some() && *flag != namespace {
                bail!("--host-namespace {flag} differs from the host config's hostNamespace {namespace}");
            }
            namespace = flag.clone();
        }
        if args.trusted.len() != args.trusted_sha256.len() {
            bail!(
                "give one --trusted-sha256 per --trusted ({} policies, {} digests)",
                args.trusted.len(),
                args.trusted_sha256.len()
            );
        }
        if !args.trusted_config.is_empty() && args.trusted_config.len() != args.trusted.len() {
            bail!(
                "give no --trusted-config, or one per --trusted ({} policies, {} configs)",
                args.trusted.len(),
                args.trusted_config.len()
            );
        }
        for (i, (path, sha256)) in args.trusted.iter().zip(&args.trusted_sha256).enumerate() {
            let config = match args.trusted_config.get(i) {
                Some(text) => serde_json::from_str(text)
                    .with_context(|| format!("--trusted-config for {}", path.display()))?,
                None => serde_json::json!({}),
            };
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("trusted")
                .to_owned();
            let policy = TrustedFile {
                name,
                path: path.clone(),
                sha256: sha256.clone(),
                config,
            };
            trusted.push(policy.load().map_err(anyhow::Error::msg).context("--trusted")?);
        }
        Ok(Host {
            namespace,
            ceilings,
            trusted,
        })
    }

    /// The pipeline for a revision under these ceilings, or why every kit of it is refused
    /// (a platform limit above a ceiling).
    fn pipeline(&self, input: &InputArgs, discovery: &Discovery) -> Result<Result<Pipeline, String>> {
        let limits = match effective_limits(&self.ceilings, discovery) {
            Ok(limits) => limits,
            Err(message) => return Ok(Err(message)),
        };
        let engine = input.engine.engine_for(limits)?;
        Ok(Ok(Pipeline::new(
            engine,
            Settings {
                host_namespace: self.namespace.clone(),
                trusted: self.trusted.clone(),
                schema: input.schema.settings(),
                // One render per kit: keeping parsed files would only cost their encoding.
                parse_cache_bytes: 0,
            },
        )))
    }

    /// Renders the selected kits of a revision, or refuses each with the revision's reason.
    fn render(
        &self,
        input: &InputArgs,
        snapshot: &Snapshot,
        discovery: &Discovery,
        select: impl Fn(&str) -> bool + Sync,
    ) -> Result<Vec<Rendered>> {
        Ok(match self.pipeline(input, discovery)? {
            Ok(pipeline) => pipeline.render_selected(snapshot, discovery, select),
            Err(message) => discovery
                .kits
                .keys()
                .filter(|name| select(name))
                .map(|name| blocked(name, discovery, "kitsync/plugin-limits", &message))
                .collect(),
        })
    }
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
    // The host's side first: a usage error needs no fetch and no render.
    let host = Host::resolve(&args.input)?;
    let head = snapshot(&args.input)?;
    let discovery = kit::discover(&head);
    let mut wanted = selected(&args.input, &discovery)?;

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

    let rendered = host.render(&args.input, &head, &discovery, |name| wanted.contains(name))?;
    let base_rendered: Vec<Rendered> = match &base_render {
        Some((base, base_discovery)) => {
            host.render(&args.input, base, base_discovery, |name| wanted.contains(name))?
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
    let mut report = CheckReport {
        revision: head.revision.clone(),
        base: args.base.clone(),
        kits,
        revision_findings: Vec::new(),
    };
    // A platform file that does not parse refuses every kit; with no kit checked to carry
    // that finding the report would read clean, so it is reported for the revision.
    if let Err(e) = &discovery.platform
        && report.kits.is_empty()
    {
        report
            .revision_findings
            .push(revision_finding("kitsync/platform-file", e));
    }
    // A change that leaves no kit where the base had some cannot do what it seems to: serve
    // prunes nothing from an emptied tree and marks every kit Stalled. Say so in review.
    if let Some((_, base_discovery)) = &base_render
        && discovery.kits.is_empty()
        && !base_discovery.kits.is_empty()
    {
        report.revision_findings.push(Finding {
            kit: String::new(),
            source: HOST_SOURCE.into(),
            diagnostic: Diagnostic {
                severity: Severity::Error,
                rule: "kitsync/no-kits".into(),
                message: format!(
                    "this revision has no kits, {} had {}; serve prunes nothing from an emptied tree and marks every kit Stalled",
                    args.base.as_deref().unwrap_or("the base"),
                    base_discovery.kits.len()
                ),
                object: None,
                path: None,
            },
            location: None,
            snippet: None,
        });
    }
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
    let host = Host::resolve(&args.input)?;
    let head = snapshot(&args.input)?;
    let discovery = kit::discover(&head);
    let wanted = selected(&args.input, &discovery)?;
    let rendered = host.render(&args.input, &head, &discovery, |name| wanted.contains(name))?;
    let mut failed = false;
    for r in &rendered {
        // Findings go to stderr (warnings too: an unknown field is still in the YAML below);
        // stdout stays the objects.
        if r.failed.is_some() || !r.findings.is_empty() {
            let report = CheckReport {
                revision: head.revision.clone(),
                base: None,
                kits: vec![KitReport {
                    rendered: r.clone(),
                    diff: None,
                }],
                revision_findings: Vec::new(),
            };
            eprint!("{}", report.format(Format::Text));
        }
        if let Some(reason) = &r.failed {
            failed = true;
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
        // As `check`: a refused kit is exit 1, usage and internal errors exit 2.
        eprintln!("some kits could not be rendered");
        return Ok(Outcome::Findings);
    }
    Ok(Outcome::Clean)
}
