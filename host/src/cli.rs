//! The command line: clap definitions lowered into library calls. No pipeline logic lives here.

use crate::diagnostic::{Diagnostic, Severity};
use crate::object::Object;
use crate::plugin::{Engine, EngineConfig, Limits, World};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// kitsync keeps Kubernetes clusters in step with a Git repository of kits.
#[derive(Debug, Parser)]
#[command(name = "kitsync", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "KITSYNC_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info`, `kitsync=debug` (RUST_LOG syntax).
    #[arg(long, global = true, default_value = "warn", env = "KITSYNC_LOG")]
    pub log: String,
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
    /// Inspect, run and test policy plugins (WebAssembly components).
    #[command(subcommand)]
    Plugin(PluginCommand),
}

/// `kitsync plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
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

/// Sandbox and cache settings shared by plugin commands.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Linear memory cap per plugin instance, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub plugin_memory: u64,
    /// Deadline per plugin call, in milliseconds.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub plugin_deadline: u64,
    /// Directory for compiled plugin code [default: $XDG_CACHE_HOME/kitsync/plugins].
    #[arg(long, env = "KITSYNC_PLUGIN_CACHE", value_name = "DIR")]
    pub plugin_cache: Option<PathBuf>,
    /// Do not cache compiled plugin code on disk.
    #[arg(long)]
    pub no_plugin_cache: bool,
}

impl EngineArgs {
    fn engine(&self) -> Result<Engine> {
        let cache_dir = if self.no_plugin_cache {
            None
        } else {
            self.plugin_cache.clone().or_else(default_cache_dir)
        };
        let config = EngineConfig {
            limits: Limits {
                memory_mib: self.plugin_memory,
                deadline: Duration::from_millis(self.plugin_deadline),
                ..Limits::default()
            },
            cache_dir,
            ..EngineConfig::default()
        };
        Engine::new(config).context("starting the plugin engine")
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("kitsync").join("plugins"))
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
        Command::Plugin(PluginCommand::Inspect { file, json, engine }) => {
            inspect(&file, json, &engine)
        }
        Command::Plugin(PluginCommand::Run {
            file,
            config,
            inputs,
            sha256,
            fail_on,
            engine,
        }) => run_plugin(&file, &config, &inputs, sha256.as_deref(), fail_on, &engine),
    }
}

fn load(engine: &Engine, file: &Path, pin: Option<&str>) -> Result<crate::plugin::Plugin> {
    let bytes =
        std::fs::read(file).with_context(|| format!("reading plugin {}", file.display()))?;
    Ok(engine.load(&file.display().to_string(), &bytes, pin)?)
}

fn inspect(file: &Path, json: bool, args: &EngineArgs) -> Result<Outcome> {
    let engine = args.engine()?;
    let plugin = load(&engine, file, None)?;
    let meta = plugin.metadata();
    if json {
        let value = serde_json::json!({
            "file": file.display().to_string(),
            "sha256": plugin.sha256(),
            "world": plugin.world().to_string(),
            "metadata": meta,
            "imports": plugin.imports(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(Outcome::Clean);
    }
    println!("file:     {}", file.display());
    println!("sha256:   {}", plugin.sha256());
    println!("world:    {}", plugin.world());
    println!("name:     {}", meta.name);
    println!("version:  {}", meta.version);
    let kinds = if meta.kinds.is_empty() {
        "(all)".to_owned()
    } else {
        meta.kinds.join(", ")
    };
    println!("kinds:    {kinds}");
    println!("imports:");
    for import in plugin.imports() {
        println!("  {import}");
    }
    match &meta.config_schema {
        Some(schema) => println!("config schema:\n{}", serde_json::to_string_pretty(schema)?),
        None => println!("config schema: (none)"),
    }
    Ok(Outcome::Clean)
}

fn read_inputs(inputs: &[PathBuf]) -> Result<Vec<Object>> {
    let mut objects = Vec::new();
    for input in inputs {
        let (name, text) = if input.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("reading stdin")?;
            ("<stdin>".to_owned(), text)
        } else {
            let text = std::fs::read_to_string(input)
                .with_context(|| format!("reading {}", input.display()))?;
            (input.display().to_string(), text)
        };
        objects.extend(crate::manifest::parse(&name, &text)?);
    }
    Ok(objects)
}

fn run_plugin(
    file: &Path,
    config: &str,
    inputs: &[PathBuf],
    pin: Option<&str>,
    fail_on: FailOn,
    args: &EngineArgs,
) -> Result<Outcome> {
    let config: serde_json::Value =
        serde_json::from_str(config).context("--config is not valid JSON")?;
    let objects = read_inputs(inputs)?;
    let engine = args.engine()?;
    let plugin = load(&engine, file, pin)?;
    let configured = plugin.configure(&config)?;
    let diagnostics = match plugin.world() {
        World::Validator => configured.validate(&objects)?,
        World::Transformer => {
            let output = configured.transform(&objects)?;
            print!(
                "{}",
                crate::manifest::to_yaml(&output.objects).context("writing YAML")?
            );
            output.diagnostics
        }
    };
    // Findings go to stderr for transformers so stdout stays valid YAML.
    let to_stderr = plugin.world() == World::Transformer;
    for diagnostic in &diagnostics {
        let line = format_finding(diagnostic, &objects);
        if to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    let threshold = fail_on.threshold();
    Ok(if diagnostics.iter().any(|d| d.severity >= threshold) {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// `file:line: severity [rule] message`, located through the object's origin.
fn format_finding(diagnostic: &Diagnostic, objects: &[Object]) -> String {
    let origin = diagnostic
        .object
        .as_ref()
        .and_then(|id| objects.iter().find(|o| &o.id == id))
        .and_then(|o| o.origin.as_ref());
    match origin {
        Some(origin) => format!("{origin}: {diagnostic}"),
        None => diagnostic.to_string(),
    }
}
