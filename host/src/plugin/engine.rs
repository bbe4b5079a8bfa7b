//! The engine: compiles and checks components once, then runs each call in a fresh sandbox.

use super::bindings::{
    host, transformer::TransformerPre, types, validator::Validator, validator::ValidatorPre,
};
use super::cache::{CodeCache, CodeSource};
use super::canonical;
use super::error::{Error, ErrorKind, Phase, Result};
use super::permits::Permits;
use super::sandbox::{EPOCH_TICK, Limits, State};
use crate::diagnostic::{Diagnostic, Severity};
use crate::object::{Object, ObjectRef};
use rayon::prelude::*;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Store, Trap};

/// Interfaces a plugin may import (version suffix ignored): the kitsync host
/// interface, and the WASI interfaces Rust's std links even when unused. They are
/// all backed by a deny-all context, so e.g. `wasi:filesystem` sees no directories.
/// Everything else, notably `wasi:sockets` and `wasi:http`, is refused at load.
const ALLOWED_IMPORTS: &[&str] = &[
    "kitsync:plugin/host",
    "kitsync:plugin/types",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// The version of the WIT package `kitsync:plugin` this host implements (`wit/plugin.wit`).
///
/// A plugin is built against one version of the package and imports its interfaces under
/// that version (`kitsync:plugin/types@0.1.0`). It loads when its version is
/// semver-compatible with this one: the same major version, and for 0.x the same minor
/// version. Anything else is refused at load with [`ErrorKind::IncompatibleContract`].
pub const CONTRACT_VERSION: &str = "0.1.0";

/// Bytes of each instance's linear memory kept resident between calls (reset in place,
/// not decommitted): enough for a call on a few thousand objects.
const KEEP_RESIDENT_BYTES: usize = 16 << 20;
/// The same for tables (function tables of a component are small).
const KEEP_RESIDENT_TABLE_BYTES: usize = 64 << 10;

/// How the engine is set up; every field has a sane default.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Per-call sandbox limits.
    pub limits: Limits,
    /// Where compiled code is cached; `None` compiles every load.
    pub cache_dir: Option<PathBuf>,
    /// Instances that may run at once (size of the pre-allocated pool; default 64).
    pub max_instances: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            limits: Limits::default(),
            cache_dir: None,
            max_instances: 64,
        }
    }
}

/// The kind of plugin a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// Rewrites a kit's objects.
    Transformer,
    /// Checks a kit's objects.
    Validator,
}

impl World {
    fn as_str(self) -> &'static str {
        match self {
            World::Transformer => "transformer",
            World::Validator => "validator",
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Kinds it looks at; empty means all.
    pub kinds: Vec<String>,
    /// JSON Schema of its configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<Value>,
}

/// A transformer's result.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformOutput {
    /// The complete new object list.
    pub objects: Vec<Object>,
    /// Findings reported along the way.
    pub diagnostics: Vec<Diagnostic>,
    /// For each object, the plugin's text when it is already exactly the host's encoding
    /// of that object (returned as sent, or proven by [`canonical::is_canonical`]), for
    /// [`Encoded::reusing`]; `None` where the object must be encoded again.
    pub(crate) texts: Vec<Option<String>>,
}

/// Hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The plugin engine, built once per process and cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: wasmtime::Engine,
    linker: Linker<State>,
    limits: Limits,
    cache: Option<CodeCache>,
    /// One per instance slot; every call holds one while its instance lives.
    permits: Permits,
    _ticker: Ticker,
}

/// Advances the epoch from a dedicated OS thread: a tokio task could be starved
/// by the very guest it has to stop.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: wasmtime::Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("kitsync-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Ticker { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn host_error(phase: Phase, message: impl fmt::Display) -> Error {
    Error {
        plugin: "<engine>".into(),
        kit: None,
        phase,
        kind: ErrorKind::Host(message.to_string()),
    }
}

impl Engine {
    /// Builds the engine: compiler settings, instance pool, WASI linked deny-all, epoch ticker.
    pub fn new(config: EngineConfig) -> Result<Self> {
        let limits = config.limits;
        let mut wasm = wasmtime::Config::new();
        wasm.wasm_component_model(true);
        wasm.epoch_interruption(true);
        let instances = config.max_instances.max(1);
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(16))
            .total_memories(instances.saturating_mul(4))
            .total_tables(instances.saturating_mul(8))
            .max_memory_size(limits.memory_bytes())
            // Warm memory: when an instance ends, its slot's dirty pages are reset to the
            // component's initial image (zeros past it) in place instead of being handed back
            // to the kernel, so the next instance of any plugin does not page-fault them in
            // again. The contents are still reset before reuse: no call sees another's data.
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_TABLE_BYTES)
            // With PAGEMAP_SCAN (Linux 6.7+) only pages the guest wrote are reset, rather
            // than the whole kept-resident prefix; older kernels fall back to that memset.
            .pagemap_scan(wasmtime::Enabled::Auto);
        wasm.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = wasmtime::Engine::new(&wasm).map_err(|e| host_error(Phase::Load, e))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| host_error(Phase::Load, e))?;
        Validator::add_to_linker::<State, HasSelf<State>>(&mut linker, |state| state)
            .map_err(|e| host_error(Phase::Load, e))?;

        let cache =
            match &config.cache_dir {
                Some(dir) => Some(CodeCache::open(dir, &engine).map_err(|e| {
                    host_error(Phase::Load, format!("cache directory {}: {e}", dir.display()))
                })?),
                None => None,
            };
        let ticker = Ticker::start(engine.clone()).map_err(|e| host_error(Phase::Load, e))?;
        Ok(Engine {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                limits,
                cache,
                permits: Permits::new(instances),
                _ticker: ticker,
            }),
        })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Loads a component: checks its sha256 against `pin` (when given), compiles it or
    /// maps it from the cache, refuses forbidden imports, finds its world and reads its
    /// metadata. `name` identifies the plugin in errors and logs (its path, usually).
    pub fn load(&self, name: &str, bytes: &[u8], pin: Option<&str>) -> Result<Plugin> {
        let fail = |kind| Error {
            plugin: name.to_owned(),
            kit: None,
            phase: Phase::Load,
            kind,
        };
        let sha256 = sha256_hex(bytes);
        if let Some(pin) = pin {
            let expected = normalize_pin(pin).ok_or_else(|| fail(ErrorKind::InvalidPin(pin.to_owned())))?;
            if expected != sha256 {
                return Err(fail(ErrorKind::DigestMismatch {
                    expected,
                    actual: sha256,
                }));
            }
        }
        let engine = &self.inner.engine;
        let started = Instant::now();
        let (component, code_source) = match &self.inner.cache {
            Some(cache) => cache.load_or_compile(engine, name, &sha256, bytes),
            None => Component::new(engine, bytes).map(|c| (c, CodeSource::Compiled)),
        }
        .map_err(|e| fail(ErrorKind::Compile(format!("{e:#}"))))?;
        tracing::debug!(
            plugin = name,
            sha256,
            cached = code_source == CodeSource::Cache,
            elapsed_us = started.elapsed().as_micros() as u64,
            "plugin code ready"
        );

        let ty = component.component_type();
        let mut imports = Vec::new();
        for (import, _) in ty.imports(engine) {
            if !is_allowed_import(import) {
                return Err(fail(ErrorKind::ForbiddenImport {
                    import: import.to_owned(),
                }));
            }
            imports.push(import.to_owned());
        }
        // The contract version before anything else about the world: a plugin for another
        // version would otherwise fail with the linker's "matching implementation was not
        // found" or as a component of no known world.
        let built_for = contract_version_of(&imports).map_err(fail)?;
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
        let has = |n: &str| exports.iter().any(|e| e == n);
        let world = if has("transform") {
            World::Transformer
        } else if has("validate") {
            World::Validator
        } else {
            return Err(fail(ErrorKind::UnknownWorld {
                exports: exports.join(", "),
            }));
        };

        let pre = self.inner.linker.instantiate_pre(&component).map_err(|e| {
            fail(match &built_for {
                // Same compatible line, newer than us: it may use what this host lacks.
                Some(found) if found.as_str() != CONTRACT_VERSION => ErrorKind::Compile(format!(
                    "built for kitsync:plugin@{found}, newer than this host's {CONTRACT_VERSION}, and it needs something {CONTRACT_VERSION} lacks: {e:#}"
                )),
                _ => ErrorKind::Compile(format!(
                    "does not fit kitsync:plugin@{CONTRACT_VERSION}: {e:#}"
                )),
            })
        })?;
        let pre = match world {
            World::Transformer => Pre::Transformer(TransformerPre::new(pre).map_err(|e| {
                fail(ErrorKind::Compile(format!(
                    "not a kitsync:plugin transformer: {e:#}"
                )))
            })?),
            World::Validator => Pre::Validator(ValidatorPre::new(pre).map_err(|e| {
                fail(ErrorKind::Compile(format!(
                    "not a kitsync:plugin validator: {e:#}"
                )))
            })?),
        };
        let mut plugin = Plugin {
            inner: Arc::new(PluginInner {
                name: name.into(),
                sha256,
                world,
                imports,
                code_source,
                pre,
                engine: self.clone(),
                metadata: Metadata {
                    name: String::new(),
                    version: String::new(),
                    kinds: Vec::new(),
                    config_schema: None,
                },
            }),
        };
        let metadata = plugin.read_metadata()?;
        if let Some(inner) = Arc::get_mut(&mut plugin.inner) {
            inner.metadata = metadata;
        }
        Ok(plugin)
    }
}

/// The `kitsync:plugin` version a component was built for, read from its imports
/// (`kitsync:plugin/types@0.1.0`); `None` when it imports nothing of the package.
/// A version that is not semver-compatible with [`CONTRACT_VERSION`], an unversioned
/// import, or two different versions in one component are refused.
fn contract_version_of(imports: &[String]) -> std::result::Result<Option<String>, ErrorKind> {
    let mut found: Option<String> = None;
    for import in imports {
        let Some(rest) = import.strip_prefix("kitsync:plugin/") else {
            continue;
        };
        let version = rest.split_once('@').map(|(_, v)| v).unwrap_or("");
        if !compatible_with_host(version) {
            return Err(incompatible(if version.is_empty() {
                "an unversioned kitsync:plugin".to_owned()
            } else {
                format!("kitsync:plugin@{version}")
            }));
        }
        match &found {
            Some(other) if other != version => {
                return Err(incompatible(format!(
                    "two versions of kitsync:plugin ({other} and {version})"
                )));
            }
            _ => found = Some(version.to_owned()),
        }
    }
    Ok(found)
}

fn incompatible(found: String) -> ErrorKind {
    let host = semver::Version::parse(CONTRACT_VERSION).unwrap_or_else(|_| semver::Version::new(0, 0, 0));
    let line = if host.major == 0 {
        format!("0.{}.x", host.minor)
    } else {
        format!("{}.x", host.major)
    };
    ErrorKind::IncompatibleContract {
        found,
        supported: CONTRACT_VERSION,
        line,
    }
}

/// Semver compatibility as the component model's linker applies it: same major, and for
/// 0.x the same minor.
fn compatible_with_host(version: &str) -> bool {
    let (Ok(host), Ok(plugin)) = (
        semver::Version::parse(CONTRACT_VERSION),
        semver::Version::parse(version),
    ) else {
        return false;
    };
    host.major == plugin.major && (host.major != 0 || host.minor == plugin.minor)
}

fn normalize_pin(pin: &str) -> Option<String> {
    let hex = pin.strip_prefix("sha256:").unwrap_or(pin).to_ascii_lowercase();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

fn is_allowed_import(import: &str) -> bool {
    let base = import.split('@').next().unwrap_or(import);
    ALLOWED_IMPORTS.contains(&base)
}

enum Pre {
    Transformer(TransformerPre<State>),
    Validator(ValidatorPre<State>),
}

struct PluginInner {
    name: Arc<str>,
    sha256: String,
    world: World,
    imports: Vec<String>,
    code_source: CodeSource,
    pre: Pre,
    engine: Engine,
    metadata: Metadata,
}

/// A loaded, checked plugin; cheap to clone and safe to share between threads.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.name)
            .field("sha256", &self.inner.sha256)
            .field("world", &self.inner.world)
            .finish()
    }
}

impl Plugin {
    /// The name given at load.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Hex sha256 of the component.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// Transformer or validator.
    pub fn world(&self) -> World {
        self.inner.world
    }

    /// The component's imports, all within the allowed set.
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }

    /// Whether the machine code was loaded from the on-disk cache (its MAC verified) or
    /// compiled by this load (no cache, first use, or a cache file that was rejected).
    pub fn code_source(&self) -> CodeSource {
        self.inner.code_source
    }

    /// What the plugin says about itself (read once at load).
    pub fn metadata(&self) -> &Metadata {
        &self.inner.metadata
    }

    /// Checks `config` with the plugin's `validate-config` and binds it for calls.
    pub fn configure(&self, config: &Value) -> Result<Configured> {
        let json = config.to_string();
        let configured = Configured {
            plugin: self.clone(),
            config: json.into(),
            kit: None,
            secrets: None,
        };
        configured
            .call(Phase::Configure, |store, pre| {
                Ok(match pre {
                    Pre::Transformer(p) => p
                        .instantiate(&mut *store)?
                        .call_validate_config(&mut *store, &configured.config)?,
                    Pre::Validator(p) => p
                        .instantiate(&mut *store)?
                        .call_validate_config(&mut *store, &configured.config)?,
                })
            })?
            .map_err(|e| configured.error(Phase::Configure, plugin_error(e)))?;
        Ok(configured)
    }

    /// Instantiates the plugin once in a fresh sandbox and drops it, calling nothing:
    /// warms the instance pool and lets benchmarks time instantiation alone.
    pub fn instantiate_probe(&self) -> Result<()> {
        let probe = Configured {
            plugin: self.clone(),
            config: "null".into(),
            kit: None,
            secrets: None,
        };
        probe.call(Phase::Load, |store, pre| {
            match pre {
                // Instantiating runs the component's start code; the instance is not used.
                Pre::Transformer(p) => {
                    p.instantiate(&mut *store)?;
                }
                Pre::Validator(p) => {
                    p.instantiate(&mut *store)?;
                }
            }
            Ok(())
        })
    }

    fn read_metadata(&self) -> Result<Metadata> {
        let probe = Configured {
            plugin: self.clone(),
            config: "null".into(),
            kit: None,
            secrets: None,
        };
        let raw = probe.call(Phase::Metadata, |store, pre| {
            Ok(match pre {
                Pre::Transformer(p) => p.instantiate(&mut *store)?.call_metadata(&mut *store)?,
                Pre::Validator(p) => p.instantiate(&mut *store)?.call_metadata(&mut *store)?,
            })
        })?;
        let config_schema = match raw.config_schema {
            Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
                probe.error(
                    Phase::Metadata,
                    ErrorKind::InvalidMetadata(format!("config schema is not JSON: {e}")),
                )
            })?),
            None => None,
        };
        Ok(Metadata {
            name: raw.name,
            version: raw.version,
            kinds: raw.kinds,
            config_schema,
        })
    }
}

/// A plugin bound to a configuration its `validate-config` accepted.
#[derive(Clone, Debug)]
pub struct Configured {
    plugin: Plugin,
    config: Arc<str>,
    kit: Option<Arc<str>>,
    secrets: Option<Arc<crate::redact::SecretValues>>,
}

impl Configured {
    /// The plugin.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// The same plugin and config, with `kit` named in logs and errors.
    pub fn for_kit(&self, kit: &str) -> Self {
        Configured {
            kit: Some(kit.into()),
            ..self.clone()
        }
    }

    /// The same plugin and config, with `secrets` redacted from everything the plugin emits:
    /// stdout, stderr, log lines and error messages (findings are redacted by the caller).
    pub fn with_secrets(&self, secrets: Arc<crate::redact::SecretValues>) -> Self {
        Configured {
            secrets: Some(secrets),
            ..self.clone()
        }
    }

    /// Runs a transformer over a kit's objects, in a fresh instance.
    pub fn transform(&self, objects: &[Object]) -> Result<TransformOutput> {
        self.transform_encoded(objects, &Encoded::new(objects))
    }

    /// [`Configured::transform`] with the objects already encoded: `encoded` must be
    /// the encoding of `objects` (which are still needed to map output origins back).
    pub fn transform_encoded(&self, objects: &[Object], encoded: &Encoded) -> Result<TransformOutput> {
        if self.plugin.world() != World::Transformer {
            return Err(self.error(Phase::Transform, self.wrong_world(World::Transformer)));
        }
        debug_assert_eq!(objects.len(), encoded.len(), "encoding of other objects");
        let input = &encoded.objects;
        let output = self
            .call(Phase::Transform, |store, pre| match pre {
                Pre::Transformer(p) => {
                    Ok(p.instantiate(&mut *store)?
                        .call_transform(&mut *store, &self.config, input)?)
                }
                Pre::Validator(_) => wasmtime::bail!("not a transformer"),
            })?
            .map_err(|e| self.error(Phase::Transform, plugin_error(e)))?;
        let places = Places::of(objects);
        // Parsing and checking the returned objects is most of the host's share of a
        // transform; objects are independent, so they are checked in parallel. The error
        // reported is the first in output order, as a sequential loop would find it.
        let checked: Vec<Result<(Object, Option<String>)>> = output
            .objects
            .into_par_iter()
            .enumerate()
            .map(|(index, object)| {
                // An object returned as it was sent (the SDK returns untouched objects' text)
                // is the input object: nothing to parse or check again, and its text is the
                // host's own encoding.
                let unchanged = encoded
                    .objects
                    .get(index)
                    .zip(objects.get(index))
                    .filter(|(sent, _)| sent.json == object.json && sent.id == object.id)
                    .map(|(_, input)| input.clone());
                match unchanged {
                    Some(input) => Ok((input, Some(object.json))),
                    None => {
                        let (parsed, json) = self.object_from_wit(index, object, &places)?;
                        Ok((parsed, canonical::is_canonical(&json).then_some(json)))
                    }
                }
            })
            .collect();
        let (objects, texts) = checked.into_iter().collect::<Result<(Vec<Object>, Vec<_>)>>()?;
        Ok(TransformOutput {
            objects,
            diagnostics: output.diagnostics.into_iter().map(from_wit_diagnostic).collect(),
            texts,
        })
    }

    /// Runs a validator over a kit's objects, in a fresh instance.
    pub fn validate(&self, objects: &[Object]) -> Result<Vec<Diagnostic>> {
        self.validate_encoded(&Encoded::new(objects))
    }

    /// [`Configured::validate`] on objects already encoded, so that every validator of a
    /// kit shares one encoding. A validator whose metadata names `kinds` receives only
    /// objects of those kinds (see [`kind_matches`]); the others are never copied into it.
    pub fn validate_encoded(&self, encoded: &Encoded) -> Result<Vec<Diagnostic>> {
        if self.plugin.world() != World::Validator {
            return Err(self.error(Phase::Validate, self.wrong_world(World::Validator)));
        }
        let kinds = &self.plugin.metadata().kinds;
        let selected: Vec<types::Object>;
        let input = if kinds.is_empty() {
            &encoded.objects
        } else {
            selected = encoded
                .objects
                .iter()
                .filter(|o| kinds.iter().any(|k| kind_matches(k, &o.id)))
                .cloned()
                .collect();
            &selected
        };
        let output = self
            .call(Phase::Validate, |store, pre| match pre {
                Pre::Validator(p) => {
                    Ok(p.instantiate(&mut *store)?
                        .call_validate(&mut *store, &self.config, input)?)
                }
                Pre::Transformer(_) => wasmtime::bail!("not a validator"),
            })?
            .map_err(|e| self.error(Phase::Validate, plugin_error(e)))?;
        Ok(output.into_iter().map(from_wit_diagnostic).collect())
    }

    fn wrong_world(&self, expected: World) -> ErrorKind {
        ErrorKind::WrongWorld {
            expected: expected.as_str(),
            actual: self.plugin.world().as_str(),
        }
    }

    fn error(&self, phase: Phase, kind: ErrorKind) -> Error {
        Error {
            plugin: self.plugin.name().to_owned(),
            kit: self.kit.as_deref().map(str::to_owned),
            phase,
            kind,
        }
    }

    /// Runs `f` in a fresh store under the engine's limits and turns any failure
    /// into a typed error.
    fn call<R>(
        &self,
        phase: Phase,
        f: impl FnOnce(&mut Store<State>, &Pre) -> wasmtime::Result<R>,
    ) -> Result<R> {
        let plugin = &self.plugin.inner;
        let engine = &plugin.engine.inner;
        let limits = engine.limits;
        // Waiting for a slot is not part of the call's deadline: the epoch deadline is set on
        // the store, made after this.
        let _permit = engine.permits.acquire();
        let mut state = State::new(plugin.name.clone(), self.kit.clone(), &limits);
        state.secrets = self.secrets.clone();
        let mut store = Store::new(&engine.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(limits.deadline_ticks());
        store.epoch_deadline_trap();
        let started = Instant::now();
        let result = f(&mut store, &plugin.pre);
        let elapsed = started.elapsed();
        let state = store.data();
        let stderr_tail = state.stderr_tail();
        state.flush_output();
        result.map_err(|error| {
            let kind = if state.limiter.hit {
                ErrorKind::MemoryLimit {
                    mib: limits.memory_mib,
                }
            } else if let Some(stream) = state.overflowed() {
                ErrorKind::OutputLimit {
                    stream,
                    limit: limits.output_bytes,
                }
            } else if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
                ErrorKind::Deadline {
                    ms: u64::try_from(limits.deadline.as_millis()).unwrap_or(u64::MAX),
                    elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                }
            } else if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
                ErrorKind::Trap {
                    message: format!("plugin exited with code {}", exit.0),
                }
            } else {
                let mut message = format!("{error:#}");
                if !stderr_tail.is_empty() {
                    message.push_str("; stderr: ");
                    message.push_str(&stderr_tail);
                }
                ErrorKind::Trap { message }
            };
            self.error(phase, kind)
        })
    }

    /// Checks one returned object: valid JSON, identity present and consistent. Gives the
    /// object and the text it was read from.
    fn object_from_wit(
        &self,
        index: usize,
        object: types::Object,
        places: &Places<'_>,
    ) -> Result<(Object, String)> {
        let value: Value = serde_json::from_str(&object.json).map_err(|e| {
            self.error(
                Phase::Transform,
                ErrorKind::OutputNotJson {
                    index,
                    error: e.to_string(),
                },
            )
        })?;
        let id = ObjectRef::from_value(&value).map_err(|field| {
            self.error(
                Phase::Transform,
                ErrorKind::OutputMissingIdentity { index, field },
            )
        })?;
        let claimed = from_wit_ref(object.id);
        if claimed != id {
            return Err(self.error(
                Phase::Transform,
                ErrorKind::OutputIdentityMismatch {
                    index,
                    claimed: claimed.to_string(),
                    actual: id.to_string(),
                },
            ));
        }
        // Only origins of real inputs are kept: a plugin cannot point findings at
        // files it invented.
        let origin = object
            .origin
            .and_then(|o| places.origin(&o.file, o.document, &id));
        Ok((Object { id, origin, value }, object.json))
    }
}

/// The inputs of a transformer by the place they were read from, to map an output's claimed
/// origin back to a real one in constant time (a kit has thousands of objects).
struct Places<'a> {
    by_place: HashMap<(&'a str, u32), Vec<&'a Object>>,
}

impl<'a> Places<'a> {
    fn of(inputs: &'a [Object]) -> Self {
        let mut by_place: HashMap<(&'a str, u32), Vec<&'a Object>> = HashMap::new();
        for input in inputs {
            if let Some(origin) = &input.origin {
                by_place
                    .entry((origin.file.as_str(), origin.document))
                    .or_default()
                    .push(input);
            }
        }
        Places { by_place }
    }

    /// The origin of the input read at `file`, `document`: items of one List document share
    /// both, so the one with identity `id` is preferred.
    fn origin(&self, file: &str, document: u32, id: &ObjectRef) -> Option<crate::object::Origin> {
        let inputs = self.by_place.get(&(file, document))?;
        inputs
            .iter()
            .find(|i| i.id == *id)
            .or_else(|| inputs.first())
            .and_then(|i| i.origin.clone())
    }
}

fn plugin_error(error: types::PluginError) -> ErrorKind {
    match error {
        types::PluginError::InvalidConfig(m) => ErrorKind::InvalidConfig(m),
        types::PluginError::InvalidInput(m) => ErrorKind::InvalidInput(m),
        types::PluginError::Internal(m) => ErrorKind::Internal(m),
    }
}

/// A kit's objects as the contract carries them: identity, origin and JSON text.
///
/// Encoding is the host's largest share of a plugin call (a few ms per 1,000 objects), and
/// every plugin of a kit sees the same objects until a transformer changes them, so a render
/// encodes once and passes the same encoding to each call. It is only ever the host's own
/// serialization of the host's parsed value, byte for byte: a transformer's text is kept
/// only where [`canonical::is_canonical`] proves it is exactly that, since other text could
/// show later validators something (say, a duplicate key) that the host reads differently.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    objects: Vec<types::Object>,
}

impl Encoded {
    /// Encodes every object.
    pub fn new(objects: &[Object]) -> Self {
        Encoded {
            objects: objects.par_iter().map(to_wit_object).collect(),
        }
    }

    /// The encoding of a transformer's output after the host's defaults: `texts` from
    /// [`TransformOutput`], where an object in `touched` (changed since, by the host) is
    /// encoded again, as is every object without a reusable text.
    pub(crate) fn reusing(objects: &[Object], texts: Vec<Option<String>>, touched: &[bool]) -> Self {
        if texts.len() != objects.len() {
            return Encoded::new(objects);
        }
        let objects = objects
            .par_iter()
            .zip(texts)
            .enumerate()
            .map(|(i, (object, text))| match text {
                Some(json) if !touched.get(i).copied().unwrap_or(true) => types::Object {
                    json,
                    ..wit_identity(object)
                },
                _ => to_wit_object(object),
            })
            .collect();
        Encoded { objects }
    }

    /// How many objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

fn to_wit_object(object: &Object) -> types::Object {
    types::Object {
        json: crate::object::to_json(&object.value),
        ..wit_identity(object)
    }
}

/// Identity and origin of `object`, with no JSON text yet.
fn wit_identity(object: &Object) -> types::Object {
    types::Object {
        id: types::ObjectRef {
            api_version: object.id.api_version.clone(),
            kind: object.id.kind.clone(),
            namespace: object.id.namespace.clone(),
            name: object.id.name.clone(),
        },
        origin: object.origin.as_ref().map(|o| types::Origin {
            file: o.file.clone(),
            document: o.document,
        }),
        json: String::new(),
    }
}

/// Whether an object is of a kind a plugin's metadata selects (`wit/plugin.wit`): a bare
/// kind (`Deployment`) matches that kind in every API version, `apiVersion/kind`
/// (`apps/v1/Deployment`, `v1/Service`) only that version. The same rule as the SDK's
/// `ObjectRef::matches_kind`.
fn kind_matches(selector: &str, id: &types::ObjectRef) -> bool {
    match selector.rsplit_once('/') {
        None => selector == id.kind,
        Some((api_version, kind)) => api_version == id.api_version && kind == id.kind,
    }
}

fn from_wit_ref(id: types::ObjectRef) -> ObjectRef {
    ObjectRef {
        api_version: id.api_version,
        kind: id.kind,
        namespace: id.namespace.filter(|n| !n.is_empty()),
        name: id.name,
    }
}

/// Longest finding message kept from a plugin, in bytes; the rest is cut, and says so.
pub const MAX_MESSAGE_BYTES: usize = 4096;
const MAX_RULE_CHARS: usize = 128;

fn capped(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(" [cut at 4096 bytes]");
    }
    message
}

fn from_wit_diagnostic(d: types::Diagnostic) -> Diagnostic {
    Diagnostic {
        severity: match d.severity {
            types::Severity::Error => Severity::Error,
            types::Severity::Warning => Severity::Warning,
            types::Severity::Info => Severity::Info,
        },
        rule: d.rule.chars().take(MAX_RULE_CHARS).collect(),
        message: capped(d.message),
        object: d.object.map(from_wit_ref),
        path: d.path,
    }
}

impl types::Host for State {}

impl host::Host for State {
    fn log(&mut self, level: host::Level, message: String) -> wasmtime::Result<()> {
        self.log_bytes = self.log_bytes.saturating_add(message.len());
        if self.log_bytes > self.log_cap {
            self.overflow = Some("log");
            wasmtime::bail!("log output exceeded its cap of {} bytes", self.log_cap);
        }
        let message = self.redacted(&message);
        let plugin = &*self.plugin;
        let kit = self.kit.as_deref().unwrap_or("");
        match level {
            host::Level::Debug => tracing::debug!(plugin, kit, "{message}"),
            host::Level::Info => tracing::info!(plugin, kit, "{message}"),
            host::Level::Warn => tracing::warn!(plugin, kit, "{message}"),
            host::Level::Error => tracing::error!(plugin, kit, "{message}"),
        }
        Ok(())
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Plugin>();
    check::<Configured>();
    check::<Engine>();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transformer built on the SDK returns text that is already the host's encoding (the
    /// host's text with a subtree rewritten), so the render keeps it for the next plugins;
    /// text that is not (spaced, a duplicate key) is left to be encoded again.
    #[test]
    fn transformer_text_is_kept_only_when_it_is_the_hosts_encoding() {
        use kitsync_test_artifacts as artifacts;
        let engine = Engine::new(EngineConfig::default()).expect("engine");
        let objects: Vec<Object> = (0..3)
            .map(|i| {
                let value = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": format!("web-{i}"), "namespace": "shop", "labels": {"a": "b"}},
                    "spec": {"replicas": 2, "template": {"metadata": {"labels": {"a": "b"}},
                        "spec": {"containers": [{"name": "c", "image": "x:1", "ports": [{"containerPort": 8080}]}]}}}});
                Object::new(value, None).expect("identity")
            })
            .collect();
        let run = |artifact: &str, config: Value| {
            let plugin = engine.load("t", &artifacts::bytes(artifact), None).expect("load");
            let policy = plugin.configure(&config).expect("config");
            policy.transform(&objects).expect("transform")
        };
        let labelled = run(
            artifacts::SET_LABELS,
            serde_json::json!({"labels": {"team": "shop"}}),
        );
        assert_eq!(labelled.texts.len(), objects.len());
        for (object, text) in labelled.objects.iter().zip(&labelled.texts) {
            assert_eq!(object.value["metadata"]["labels"]["team"], "shop");
            assert_eq!(text.as_deref(), Some(object.value.to_string().as_str()));
        }
        let spaced = run(
            artifacts::HOSTILE_GARBAGE,
            serde_json::json!({"mode": "non-canonical"}),
        );
        assert_eq!(spaced.objects.len(), objects.len());
        assert!(spaced.texts.iter().all(Option::is_none), "{:?}", spaced.texts);
        let unchanged = run(artifacts::SET_LABELS, serde_json::json!({"labels": {"a": "b"}}));
        for (object, text) in unchanged.objects.iter().zip(&unchanged.texts) {
            assert_eq!(text.as_deref(), Some(object.value.to_string().as_str()));
        }
    }

    #[test]
    fn pins_accept_prefix_and_case() {
        let hex = "AB".repeat(32);
        assert_eq!(normalize_pin(&format!("sha256:{hex}")), Some("ab".repeat(32)));
        assert_eq!(normalize_pin("abc"), None);
        assert_eq!(normalize_pin(&"zz".repeat(32)), None);
    }

    #[test]
    fn contract_version_is_the_wit_package_version() {
        let wit = include_str!("../../../wit/plugin.wit");
        assert!(
            wit.contains(&format!("package kitsync:plugin@{CONTRACT_VERSION};")),
            "CONTRACT_VERSION {CONTRACT_VERSION} is not the version in wit/plugin.wit"
        );
    }

    #[test]
    fn contract_versions_compatible_by_semver() {
        let imports = |v: &str| {
            vec![
                format!("kitsync:plugin/types@{v}"),
                "wasi:io/streams@0.2.3".to_owned(),
            ]
        };
        assert_eq!(
            contract_version_of(&imports("0.1.0")).ok(),
            Some(Some("0.1.0".to_owned()))
        );
        assert_eq!(
            contract_version_of(&imports("0.1.7")).ok(),
            Some(Some("0.1.7".to_owned()))
        );
        assert_eq!(contract_version_of(&[]).ok(), Some(None));
        for bad in ["0.2.0", "1.0.0", "0.0.9", "x"] {
            let err = contract_version_of(&imports(bad)).expect_err(bad);
            assert!(
                err.to_string().contains(&format!("kitsync:plugin@{bad}")),
                "{err}"
            );
            assert!(err.to_string().contains("0.1.x"), "{err}");
        }
        let unversioned = vec!["kitsync:plugin/types".to_owned()];
        assert!(contract_version_of(&unversioned).is_err());
        let mixed = vec![
            "kitsync:plugin/types@0.1.0".to_owned(),
            "kitsync:plugin/host@0.1.2".to_owned(),
        ];
        assert!(contract_version_of(&mixed).is_err());
    }

    #[test]
    fn sockets_are_not_allowed_but_std_wasi_is() {
        assert!(is_allowed_import("wasi:filesystem/types@0.2.3"));
        assert!(is_allowed_import("kitsync:plugin/host@0.1.0"));
        assert!(!is_allowed_import("wasi:sockets/tcp@0.2.3"));
        assert!(!is_allowed_import("wasi:http/outgoing-handler@0.2.3"));
    }
}
