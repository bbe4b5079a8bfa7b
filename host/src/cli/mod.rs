//! The command line: clap definitions lowered into library calls. No pipeline logic lives here.

/// `print!` that returns an error instead of panicking when stdout is closed
/// (`kitsync render | head -1`); `main` exits quietly on a broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*).map_err(anyhow::Error::from)?
    }};
}

/// `println!` that returns an error instead of panicking when stdout is closed.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err(anyhow::Error::from)?
    }};
}

mod check;
mod plugin;
mod plugin_new;
mod plugin_test;
mod serve;
mod sync;

use crate::diagnostic::Severity;
use crate::plugin::{Engine, EngineConfig, Limits};
use crate::render::Ceilings;
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// kitsync keeps Kubernetes clusters in step with a Git repository of kits.
#[derive(Debug, Parser)]
#[command(name = "kitsync", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "KITSYNC_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info`, `kitsync=debug` (RUST_LOG syntax) [default: `info` for
    /// serve, `warn` for the other commands].
    #[arg(long, global = true, env = "KITSYNC_LOG")]
    pub log: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every kit's pipeline without a cluster and report policy and schema findings.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(check::CheckArgs),
    /// Print each kit's final objects as YAML, after transforms and validation.
    #[command(
        after_help = "Examples:\n  kitsync render examples\n  kitsync render examples --kit manufracture\n\nFindings (warnings too) go to stderr, the objects to stdout.\nExit status: 0 every kit rendered, 1 a kit was refused, 2 usage or internal error."
    )]
    Render(check::RenderArgs),
    /// Apply one kit (or a plain directory of YAML) to the cluster, once.
    #[command(after_help = SYNC_EXAMPLES)]
    Sync(sync::SyncArgs),
    /// Show what `sync` would change in the cluster (server-side dry run); writes nothing.
    #[command(after_help = DIFF_EXAMPLES)]
    Diff(sync::SyncArgs),
    /// Run the reconciler: follow Git sources and keep the cluster in step with their kits.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(serve::ServeArgs),
    /// Show every kit's status (the Kit resources in the host namespace).
    #[command(
        after_help = "Examples:\n  kitsync status\n  kitsync status --output json\n\nExit status: 0 every kit Ready, 1 a kit is not Ready, 2 error."
    )]
    Status(serve::StatusArgs),
    /// Ask `serve` to reconcile a kit now (sets the kitsync.dev/reconcile-at annotation).
    #[command(after_help = "Example:\n  kitsync reconcile manufracture")]
    Reconcile(serve::ReconcileArgs),
    /// Inspect and run policy plugins (WebAssembly components).
    #[command(subcommand)]
    Plugin(PluginCommand),
}

const CHECK_EXAMPLES: &str = "Examples:
  kitsync check examples
  kitsync check . --base origin/main --format github
  kitsync check --repo https://git.example.com/platform/gitops.git --ref main --format sarif > kitsync.sarif
  kitsync check --repo https://git.example.com/platform/gitops.git --ref semver:'>=1.2, <2' \
      --token-env GIT_TOKEN
  kitsync check . --config /etc/kitsync/host.yaml
  kitsync check . --trusted no-privileged.wasm --trusted-sha256 b881...c1eb --trusted-config '{}'

--plugin-memory/--plugin-deadline (or --config's pluginLimits) are the host's ceilings:
kitsync.yaml may only lower them. --config and --trusted run the host's trusted policies on
every kit, as serve does.

Exit status: 0 clean, 1 a kit refused (any cause) or a finding at or above --fail-on, in every
format; 2 usage or internal error.";

const SERVE_EXAMPLES: &str = "Examples:
  kitsync serve --source https://git.example.com/platform/gitops.git --ref main --interval 30s
  kitsync serve --config /etc/kitsync/host.yaml
  KITSYNC_CONFIG=/etc/kitsync/host.yaml kitsync serve --log info --log-format json

The host config (see README, `Host configuration`) lists sources, credentials, the host
namespace, trusted policies and limits; --source runs one source without a file. Kits are
rendered exactly as `kitsync check` renders them, applied in dependsOn order, and reported as
Kit resources: `kubectl get kits -n kitsync-system` or `kitsync status`.
SIGTERM or Ctrl-C lets reconciles in flight finish, then exits 0.";

const SYNC_EXAMPLES: &str = "Examples:
  kitsync sync examples/kits/manufracture
  kitsync sync ./manifests -n shop --service-account deployer --kubeconfig ~/.kube/dev

A directory with a kit.yaml is rendered as `kitsync check` renders it (its plugins and the
platform file of its repository) and applied with its kit.yaml options; a plain directory's
YAML is applied as it is into --namespace.
Objects get the label kitsync.dev/kit=<kit>; the kit's inventory (with --revision) is kept in
the ConfigMap kitsync-inventory-<kit> in --host-namespace, and objects dropped from the
directory are pruned (never one of another kit, or one annotated kitsync.dev/prune: disabled;
never all of them from an empty directory).
Exit status: 0 applied, 1 prune refused, 2 error.";

const DIFF_EXAMPLES: &str = "Examples:
  kitsync diff examples/kits/manufracture

Prints `+` for objects to create, `~` with each changed field (live -> would-be, without
managedFields, status and other server-managed fields), `-` for objects sync would prune.
Exit status: 0 no difference, 1 differences, 2 error (as `flux diff`).";

const PLUGIN_TEST_HELP: &str = "Examples:
  cargo build --release --target wasm32-wasip2 && kitsync plugin test .
  kitsync plugin test plugins/port-range --component port_range.wasm
  kitsync plugin test . --format junit > plugin-tests.xml

Each case is a directory DIR/tests/<case>/, run in name order in a fresh sandbox:
  input.yaml     the objects given to the plugin (multi-document YAML)
  config.yaml    its configuration, as under `config:` in kit.yaml [default: null]
  expected.yaml  every finding it must return, in any order, and no others:
                   findings:
                     - rule: port-range/out-of-range
                       severity: error
                       object: v1/Service web     # as kitsync prints it
                       path: /spec/ports/0/port
                       message: \"80\"              # optional: text it contains
                 `findings: []` expects none; `error: {kind: invalid-config,
                 message: ...}` expects a refusal (or invalid-input, internal)
  output.yaml    transformers: the objects it must return, in any order

A failed case prints the difference: reported findings as YAML to paste into
expected.yaml, output objects field by field.

Exit status: 0 every case passed, 1 a case failed, 2 usage error, a case that
cannot be read, or a component that cannot be found or loaded.";

const PLUGIN_NEW_HELP: &str = "Examples:
  kitsync plugin new max-replicas --kind validator
  kitsync plugin new add-owner --kind transformer --path policies/add-owner
  kitsync plugin new max-replicas --kind validator --lang python   # or --lang js, --lang go
  kitsync plugin new add-owner --kind transformer --lang go

Writes a standalone Rust project: src/lib.rs with one rule, a fixture case in tests/, the
plugin SDK in vendor/kitsync-plugin/ and the WIT contract in wit/ (copies, so it builds
outside kitsync's repository) and a README. Then:
  cd max-replicas
  cargo build --release --target wasm32-wasip2
  kitsync plugin test .

--lang python, js and go write either kind (app.py, app.js or main.go: the same rule and case
as in Rust) built by ./build, which installs the pinned tool outside the project on first use
(componentize-py: python3 with venv; componentize-js: Node.js 20+ with npm; wasm-tools for
Go's own wasip1 target: Go 1.24+ and cargo). Then:
  ./build
  kitsync plugin test .
Exit status: 0 written, 2 error (a bad name, a directory that is not empty, an unknown
--lang or --kind).";

/// `kitsync plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Write a new plugin project (one rule, one fixture case) that builds and passes its test.
    #[command(after_help = PLUGIN_NEW_HELP)]
    New(plugin_new::NewArgs),
    /// Run a plugin's fixture cases (DIR/tests/<case>/) through the sandbox; show differences.
    #[command(after_help = PLUGIN_TEST_HELP)]
    Test(plugin_test::TestArgs),
    /// Print a plugin's sha256, world, metadata and imports.
    #[command(
        after_help = "Example:\n  kitsync plugin inspect target/wasm-plugins/wasm32-wasip2/release/port_range.wasm"
    )]
    Inspect {
        /// The component (.wasm).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Sandbox and cache settings.
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Run a plugin on YAML manifests; print findings, or the transformed YAML.
    ///
    /// Exit status: 0 when no finding is at or above --fail-on, 1 when one is,
    /// 2 when the plugin fails (bad config, trap, deadline, memory) or input is bad.
    #[command(
        after_help = "Example:\n  kitsync plugin run port_range.wasm --config '{\"min\":1024,\"max\":32767}' --input examples/kits/manufracture/vision.yaml"
    )]
    Run {
        /// The component (.wasm).
        file: PathBuf,
        /// Plugin configuration as JSON text.
        #[arg(long, default_value = "null")]
        config: String,
        /// Manifest files (multi-document YAML); `-` reads stdin.
        #[arg(long = "input", short = 'i', required = true)]
        inputs: Vec<PathBuf>,
        /// Refuse the plugin unless its sha256 is this (64 hex digits, `sha256:` prefix allowed).
        #[arg(long)]
        sha256: Option<String>,
        /// Lowest severity that makes the exit status 1.
        #[arg(long, value_enum, default_value_t = FailOn::Error)]
        fail_on: FailOn,
        /// Sandbox and cache settings.
        #[command(flatten)]
        engine: EngineArgs,
    },
}

/// Severity threshold for a failing exit status.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FailOn {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warning,
    /// Any finding.
    Info,
}

impl FailOn {
    fn threshold(self) -> Severity {
        match self {
            FailOn::Error => Severity::Error,
            FailOn::Warning => Severity::Warning,
            FailOn::Info => Severity::Info,
        }
    }
}

/// Schema validation of every rendered object (a stage of the pipeline).
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Validate against the built-in schemas of this Kubernetes version: 1.34, 1.35 or 1.36
    /// (`v1.35` and `1.35.4` name 1.35) [default: the platform file's
    /// schemas.kubernetesVersion, else 1.36].
    #[arg(long, value_name = "VERSION", value_parser = kubernetes_version)]
    pub kubernetes_version: Option<String>,
    /// Unknown fields and kinds without a schema are errors, not warnings (also set by the
    /// platform file's schemas.strict).
    #[arg(long)]
    pub strict: bool,
}

impl SchemaArgs {
    /// The pipeline's schema settings from these flags.
    pub fn settings(&self) -> crate::schema::Settings {
        crate::schema::Settings {
            kubernetes_version: self.kubernetes_version.clone(),
            strict: self.strict,
            skip_for_benchmark: false,
        }
    }
}

fn kubernetes_version(text: &str) -> Result<String, String> {
    crate::schema::catalog::find(text).map(|_| text.to_owned())
}

/// Sandbox and cache settings shared by plugin commands.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// The host's ceiling on a plugin instance's linear memory, in MiB; a repository's
    /// kitsync.yaml may only lower it (at most 1024) [default: 64].
    #[arg(long, value_name = "MIB")]
    pub plugin_memory: Option<u64>,
    /// The host's ceiling on one plugin call, in milliseconds; a repository's kitsync.yaml may
    /// only lower it (at most 60000) [default: 2000].
    #[arg(long, value_name = "MS")]
    pub plugin_deadline: Option<u64>,
    /// Directory for compiled plugin code [default: $XDG_CACHE_HOME/kitsync/plugins].
    #[arg(long, env = "KITSYNC_PLUGIN_CACHE", value_name = "DIR")]
    pub plugin_cache: Option<PathBuf>,
    /// Do not cache compiled plugin code on disk.
    #[arg(long)]
    pub no_plugin_cache: bool,
}

impl EngineArgs {
    /// An engine at the ceilings themselves (plugin commands run no repository's limits).
    fn engine(&self) -> Result<Engine> {
        let ceilings = self.ceilings()?;
        self.engine_for(Limits {
            memory_mib: ceilings.memory_mib(),
            deadline: ceilings.deadline(),
            ..Limits::default()
        })
    }

    /// The host's ceilings from the flags, else the defaults; values past the hard maximums
    /// are a usage error, so no flag can open the sandbox wide.
    fn ceilings(&self) -> Result<Ceilings> {
        let defaults = Ceilings::default();
        let memory = self.plugin_memory.unwrap_or(defaults.memory_mib());
        let deadline = self
            .plugin_deadline
            .unwrap_or_else(|| u64::try_from(defaults.deadline().as_millis()).unwrap_or(u64::MAX));
        Ceilings::new(memory, deadline)
            .map_err(anyhow::Error::msg)
            .context("--plugin-memory/--plugin-deadline")
    }

    /// True when a ceiling was given on the command line.
    fn sets_ceilings(&self) -> bool {
        self.plugin_memory.is_some() || self.plugin_deadline.is_some()
    }

    /// An engine with exactly `limits` (already bounded by the ceilings) and the cache flags.
    fn engine_for(&self, limits: Limits) -> Result<Engine> {
        let cache_dir = if self.no_plugin_cache {
            None
        } else {
            self.plugin_cache.clone().or_else(default_cache_dir)
        };
        let config = EngineConfig {
            limits,
            cache_dir,
            ..EngineConfig::default()
        };
        Engine::new(config).context("starting the plugin engine")
    }
}

/// `$XDG_CACHE_HOME/kitsync` or `~/.cache/kitsync`.
fn cache_root() -> Option<PathBuf> {
    crate::serve::config::default_cache_dir()
}

/// How to reach the cluster.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Kubeconfig file [default: $KUBECONFIG, else ~/.kube/config, else the in-cluster
    /// service account].
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context [default: its current context].
    #[arg(long)]
    pub context: Option<String>,
    /// Let the kubeconfig run its `exec` credential plugin (a program it names). Off by
    /// default: a kubeconfig that names one is refused.
    #[arg(long)]
    pub allow_kubeconfig_exec: bool,
    /// Let the kubeconfig set `insecure-skip-tls-verify` (no check of the API server's
    /// certificate). Off by default: such a kubeconfig is refused.
    #[arg(long)]
    pub allow_insecure_tls: bool,
}

impl ClusterArgs {
    /// The client configuration: the kubeconfig when one is named or found, else the
    /// in-cluster service account (kube-rs inference).
    async fn config(&self) -> Result<kube::Config> {
        let options = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .context("loading the kubeconfig")?
            }
            None if self.context.is_some() => kube::Config::from_kubeconfig(&options)
                .await
                .context("loading the kubeconfig")?,
            None => kube::Config::infer()
                .await
                .context("finding cluster access (no kubeconfig and not in a cluster)")?,
        };
        self.vet(&config)?;
        Ok(config)
    }

    /// Refuses what a kubeconfig may carry that weakens the host, unless the operator opted
    /// in; says so loudly when they did. Checked before any client exists, so nothing runs.
    fn vet(&self, config: &kube::Config) -> Result<()> {
        if let Some(exec) = &config.auth_info.exec {
            let command = exec.command.clone().unwrap_or_default();
            if !self.allow_kubeconfig_exec {
                anyhow::bail!(
                    "the kubeconfig runs an exec credential plugin ({command:?}); kitsync runs no program named by a file unless told to: pass --allow-kubeconfig-exec"
                );
            }
            tracing::warn!(
                command,
                "kubeconfig exec credential plugin allowed by --allow-kubeconfig-exec"
            );
            eprintln!(
                "warning: the kubeconfig's exec credential plugin {command:?} will run (--allow-kubeconfig-exec)"
            );
        }
        if config.accept_invalid_certs {
            if !self.allow_insecure_tls {
                anyhow::bail!(
                    "the kubeconfig sets insecure-skip-tls-verify: the API server's certificate would not be checked; pass --allow-insecure-tls to accept that"
                );
            }
            tracing::warn!("the API server's certificate is NOT verified (--allow-insecure-tls)");
            eprintln!("warning: the API server's certificate is NOT verified (--allow-insecure-tls)");
        }
        Ok(())
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    cache_root().map(|r| r.join("plugins"))
}

/// What a command asks `main` to exit with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Clean,
    /// Exit 1: findings at or above the threshold.
    Findings,
}

/// Runs a parsed command.
pub fn run(cli: Cli) -> Result<Outcome> {
    match cli.command {
        Command::Check(args) => check::check(&args),
        Command::Render(args) => check::render(&args),
        Command::Serve(args) => serve::serve(&args),
        Command::Status(args) => serve::status(&args),
        Command::Reconcile(args) => serve::reconcile(&args),
        Command::Sync(args) => sync::sync(&args),
        Command::Diff(args) => sync::diff(&args),
        Command::Plugin(PluginCommand::New(args)) => plugin_new::new(&args),
        Command::Plugin(PluginCommand::Test(args)) => plugin_test::test(&args),
        Command::Plugin(PluginCommand::Inspect { file, json, engine }) => {
            plugin::inspect(&file, json, &engine)
        }
        Command::Plugin(PluginCommand::Run {
            file,
            config,
            inputs,
            sha256,
            fail_on,
            engine,
        }) => plugin::run(&file, &config, &inputs, sha256.as_deref(), fail_on, &engine),
    }
}
