//! The pipeline for one kit at one revision: manifests -> defaults -> kit transforms ->
//! platform transforms -> kit, platform and trusted validators -> host guards.
//!
//! `check` and `serve` both call [`Pipeline::render`]; nothing here touches a cluster.
//! A kit that fails anywhere yields no objects and an error finding saying why; other
//! kits go on.

mod hash;
mod limits;
mod locate;
mod schemas;

pub use hash::input_hash;
pub use limits::{Ceilings, MAX_DEADLINE, MAX_MEMORY_MIB, effective_limits};

use crate::diagnostic::{Diagnostic, Finding, HOST_SOURCE, Severity};
use crate::guard;
use crate::kit::{Discovery, Kit, Platform, PluginSpec};
use crate::manifest;
use crate::metrics::Metrics;
use crate::object::{Object, ObjectRef};
use crate::plugin::{Configured, Encoded, Engine, Plugin};
use crate::redact::SecretValues;
use crate::schema::Schemas;
use crate::source::Snapshot;
use locate::Locator;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

/// A policy from the host configuration: runs on every kit, cannot be removed by a commit.
#[derive(Debug, Clone)]
pub struct TrustedPolicy {
    /// Name for messages.
    pub name: String,
    /// The component.
    pub bytes: Arc<[u8]>,
    /// Its pinned sha256.
    pub sha256: String,
    /// Its configuration.
    pub config: serde_json::Value,
}

/// Settings of the pipeline that come from the host, not the repository.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The host's own namespace; kits never write there.
    pub host_namespace: String,
    /// Policies from the host configuration.
    pub trusted: Vec<TrustedPolicy>,
    /// Schema validation: the command line's choices, over the platform file's.
    pub schema: crate::schema::Settings,
    /// Bytes of parsed manifests kept between renders ([`manifest::ParseCache`]); 0 parses
    /// every file every time.
    pub parse_cache_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host_namespace: "kitsync-system".into(),
            trusted: Vec::new(),
            schema: crate::schema::Settings::default(),
            parse_cache_bytes: manifest::DEFAULT_CAPACITY_BYTES,
        }
    }
}

/// The result of rendering one kit.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Kit name.
    pub kit: String,
    /// Kit namespace (empty when the kit could not be read).
    pub namespace: String,
    /// Final objects; empty when `failed`.
    pub objects: Vec<Object>,
    /// Every finding, located where possible.
    pub findings: Vec<Finding>,
    /// Why the kit cannot be applied, when it cannot (a malfunction or blocking finding).
    pub failed: Option<String>,
    /// Hash of every input; equal hashes render equally.
    pub input_hash: String,
}

impl Rendered {
    /// True when the kit has findings at or above `severity` or failed.
    pub fn blocks_at(&self, severity: Severity) -> bool {
        self.failed.is_some() || self.findings.iter().any(|f| f.diagnostic.severity >= severity)
    }
}

/// The render stage with its plugin engine and loaded plugins (cached by digest).
pub struct Pipeline {
    engine: Engine,
    settings: Settings,
    plugins: Mutex<HashMap<String, Plugin>>,
    metrics: Option<Arc<Metrics>>,
    /// The schemas of the last revision rendered (its CRDs are read once per revision).
    schemas: Mutex<Option<(String, Arc<Schemas>)>>,
    /// Manifests parsed by earlier renders, by content.
    parsed: manifest::ParseCache,
}

/// A blocking malfunction while rendering a kit.
struct Failure {
    rule: &'static str,
    message: String,
    location: Option<crate::diagnostic::Location>,
}

impl Failure {
    fn new(rule: &'static str, message: impl Into<String>) -> Self {
        Failure {
            rule,
            message: message.into(),
            location: None,
        }
    }
}

impl Pipeline {
    /// A pipeline over `engine`.
    pub fn new(engine: Engine, settings: Settings) -> Self {
        Pipeline {
            engine,
            parsed: manifest::ParseCache::new(settings.parse_cache_bytes),
            settings,
            plugins: Mutex::new(HashMap::new()),
            metrics: None,
            schemas: Mutex::new(None),
        }
    }

    /// Records each plugin call's duration in `metrics` (the service's `/metrics`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn timed<R>(&self, plugin: &str, stage: &'static str, call: impl FnOnce() -> R) -> R {
        let started = std::time::Instant::now();
        let result = call();
        if let Some(metrics) = &self.metrics {
            metrics.plugin_call(plugin, stage, started.elapsed());
        }
        result
    }

    /// Renders every kit of a discovery, in parallel, in name order.
    pub fn render_all(&self, snapshot: &Snapshot, discovery: &Discovery) -> Vec<Rendered> {
        self.render_selected(snapshot, discovery, |_| true)
    }

    /// Renders the kits whose name `select` accepts, in parallel, in name order.
    pub fn render_selected(
        &self,
        snapshot: &Snapshot,
        discovery: &Discovery,
        select: impl Fn(&str) -> bool + Sync,
    ) -> Vec<Rendered> {
        let names: Vec<&String> = discovery.kits.keys().filter(|n| select(n)).collect();
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(names.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Mutex<BTreeMap<String, Rendered>> = Mutex::new(BTreeMap::new());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(name) = names.get(i) else { break };
                        let rendered = match (&discovery.platform, &discovery.kits[*name]) {
                            (Err(e), _) => failed(name, "", "kitsync/platform-file", e.to_string(), None),
                            (Ok(_), Err(e @ crate::kit::Error::DependsOn { message, .. })) => failed(
                                name,
                                "",
                                "kitsync/depends-on",
                                message.clone(),
                                kit_error_location(e),
                            ),
                            (Ok(_), Err(e @ crate::kit::Error::Unsafe { message, .. })) => failed(
                                name,
                                "",
                                "kitsync/unsafe-entry",
                                message.clone(),
                                kit_error_location(e),
                            ),
                            (Ok(_), Err(e)) => {
                                failed(name, "", "kitsync/kit-file", e.to_string(), kit_error_location(e))
                            }
                            (Ok(platform), Ok(kit)) => self.render(snapshot, platform, kit),
                        };
                        results
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert((*name).clone(), rendered);
                    }
                });
            }
        });
        results
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .into_values()
            .collect()
    }

    /// Renders one kit at one revision.
    pub fn render(&self, snapshot: &Snapshot, platform: &Platform, kit: &Kit) -> Rendered {
        let span = tracing::info_span!("render", kit = %kit.name, revision = %snapshot.revision);
        let _guard = span.enter();
        let hash = input_hash(snapshot, platform, kit, &self.settings.trusted);
        let mut locator = Locator::new(snapshot);
        let mut findings = Vec::new();
        let mut secrets = SecretValues::default();
        let result = self.run(snapshot, platform, kit, &mut locator, &mut findings, &mut secrets);
        let (objects, failed) = match result {
            Ok(objects) => {
                let blocking = findings
                    .iter()
                    .filter(|f| f.diagnostic.severity == Severity::Error)
                    .count();
                if blocking > 0 {
                    (Vec::new(), Some(format!("{blocking} error finding(s)")))
                } else {
                    (objects, None)
                }
            }
            Err(failure) => {
                findings.push(Finding {
                    kit: kit.name.clone(),
                    source: HOST_SOURCE.into(),
                    diagnostic: Diagnostic {
                        severity: Severity::Error,
                        rule: failure.rule.into(),
                        message: failure.message.clone(),
                        object: None,
                        path: None,
                    },
                    snippet: failure.location.as_ref().and_then(|l| locator.snippet(l)),
                    location: failure.location,
                });
                (Vec::new(), Some(failure.message))
            }
        };
        // Nothing a kit's Secrets hold leaves in a finding, snippet or reason, whoever wrote it.
        for finding in &mut findings {
            finding.diagnostic.message = secrets.redact(&finding.diagnostic.message);
            let secret_field = finding.diagnostic.object.as_ref().is_some_and(|id| {
                id.kind == "Secret"
                    && finding.diagnostic.path.as_deref().is_some_and(|p| {
                        p.starts_with("/data")
                            || p.starts_with("/stringData")
                            || p.starts_with("/metadata/annotations")
                    })
            });
            finding.snippet = if secret_field {
                finding
                    .snippet
                    .as_ref()
                    .map(|_| crate::redact::REDACTED.to_owned())
            } else {
                finding.snippet.as_deref().map(|s| secrets.redact(s))
            };
        }
        let failed = failed.map(|reason| secrets.redact(&reason));
        if let Some(reason) = &failed {
            tracing::debug!(reason, "kit blocked");
        }
        Rendered {
            kit: kit.name.clone(),
            namespace: kit.namespace.clone(),
            objects,
            findings,
            failed,
            input_hash: hash,
        }
    }

    fn run(
        &self,
        snapshot: &Snapshot,
        platform: &Platform,
        kit: &Kit,
        locator: &mut Locator<'_>,
        findings: &mut Vec<Finding>,
        secrets: &mut SecretValues,
    ) -> Result<Vec<Object>, Failure> {
        let mut objects = read_manifests(snapshot, kit, &self.parsed)
            .map_err(|all| report_all(all, &kit.name, locator, findings))?;
        // Known before any plugin runs, so what plugins print is redacted too.
        *secrets = SecretValues::of(&objects);
        let shared_secrets = std::sync::Arc::new(secrets.clone());
        for note in guard::normalize(&mut objects) {
            findings.push(locator.place(&kit.name, HOST_SOURCE, note, &objects));
        }
        let scope = guard::Scope {
            kit: &kit.name,
            namespace: &kit.namespace,
            cluster_scoped_allowed: platform.cluster_scoped.contains(&kit.name),
            host_namespace: &self.settings.host_namespace,
        };
        guard::apply_defaults(&scope, &mut objects);
        check_duplicates(&objects).map_err(|all| report_all(all, &kit.name, locator, findings))?;

        // Every plugin is loaded and configured before any runs, so each bad config or
        // missing plugin of the kit is reported in one run, at its line.
        let mut configured: HashMap<usize, Configured> = HashMap::new();
        let mut failures: Vec<Failure> = Vec::new();
        // Not on the pool: loading compiles under the plugin map's lock, and a pool thread
        // waiting for the compiler's parallel jobs could take another kit's load, which waits
        // for that same lock (a deadlock `check` hit with many kits).
        let specs: Vec<&PluginSpec> = kit
            .transform
            .iter()
            .chain(&platform.transform)
            .chain(&kit.validate)
            .chain(&platform.validate)
            .collect();
        for (i, spec) in specs.iter().enumerate() {
            match self.configured(snapshot, spec, &kit.name) {
                Ok(policy) => {
                    configured.insert(i, policy.with_secrets(shared_secrets.clone()));
                }
                Err(failure) => failures.push(failure),
            }
        }
        if !failures.is_empty() {
            return Err(report_all(failures, &kit.name, locator, findings));
        }
        // The objects as plugins receive them, encoded once and shared by every plugin of
        // the kit; after a transformer only objects whose returned text is not already the
        // host's encoding (or that the host's defaults changed) are encoded again.
        let mut encoded: Option<Encoded> = None;
        let transforms_count = kit.transform.len() + platform.transform.len();
        let transforms = kit.transform.iter().chain(&platform.transform).enumerate();
        for (i, spec) in transforms {
            let Some(policy) = configured.remove(&i) else {
                continue;
            };
            let input = encoded.get_or_insert_with(|| Encoded::new(&objects));
            let output = self
                .timed(&spec.path, "transform", || {
                    policy.transform_encoded(&objects, input)
                })
                .map_err(|e| Failure::new("kitsync/plugin-error", e.to_string()))?;
            // Transformers may not move objects out of the kit's scope; defaults re-apply.
            let previous = std::mem::replace(&mut objects, output.objects);
            secrets.extend(&objects);
            let touched = guard::apply_defaults(&scope, &mut objects);
            check_duplicates(&objects).map_err(|all| report_all(all, &kit.name, locator, findings))?;
            // The plugin's text where it is the host's encoding already; the rest is encoded.
            let stale = encoded.replace(Encoded::reusing(&objects, output.texts, &touched));
            // Freeing the previous objects (a tree of maps each) is off the render's path.
            rayon::spawn(move || drop((previous, stale)));
            findings.extend(
                output
                    .diagnostics
                    .into_iter()
                    .map(|d| locator.place(&kit.name, &spec.path, d, &objects)),
            );
        }

        let validators: Vec<(String, Configured)> = kit
            .validate
            .iter()
            .chain(&platform.validate)
            .enumerate()
            .filter_map(|(i, spec)| {
                Some(Ok((
                    spec.path.clone(),
                    configured.remove(&(transforms_count + i))?,
                )))
            })
            .chain(self.settings.trusted.iter().map(|t| {
                let policy = self.trusted(t, &kit.name)?.with_secrets(shared_secrets.clone());
                Ok((format!("trusted:{}", t.name), policy))
            }))
            .collect::<Result<_, Failure>>()?;
        // Validators and the schema stage only read the objects, so they run at once, on
        // rayon's pool: one pool for every kit rendering, so kits rendered together share the
        // cores rather than each taking them all. Their findings keep the sequential order.
        let none;
        let input: &Encoded = if validators.is_empty() {
            none = Encoded::new(&[]);
            &none
        } else {
            encoded.get_or_insert_with(|| Encoded::new(&objects))
        };
        let (outcomes, schema_stage) = rayon::join(
            || {
                validators
                    .par_iter()
                    .map(|(name, policy)| self.timed(name, "validate", || policy.validate_encoded(input)))
                    .collect::<Vec<_>>()
            },
            || {
                // The host's guards read the objects too: they run alongside.
                rayon::join(
                    || {
                        (!self.settings.schema.skip_for_benchmark).then(|| {
                            self.schemas(snapshot, platform)
                                .map(|schemas| schemas.validate(&objects))
                        })
                    },
                    || guard::check(&scope, &objects),
                )
            },
        );
        let (schema_stage, guarded) = schema_stage;
        for ((name, _), outcome) in validators.iter().zip(outcomes) {
            let diagnostics = outcome.map_err(|e| Failure::new("kitsync/plugin-error", e.to_string()))?;
            findings.extend(
                diagnostics
                    .into_iter()
                    .map(|d| locator.place(&kit.name, name, d, &objects)),
            );
        }
        if let Some(violations) = schema_stage {
            let violations = violations.map_err(|e| Failure::new("kitsync/schema-config", e))?;
            for (index, violation) in violations {
                if let Some(object) = objects.get(index) {
                    findings.push(locator.place_violation(&kit.name, object, violation));
                }
            }
        }

        for diagnostic in guarded {
            findings.push(locator.place(&kit.name, HOST_SOURCE, diagnostic, &objects));
        }
        Ok(objects)
    }

    fn load(&self, name: &str, bytes: &[u8], sha256: &str) -> Result<Plugin, Failure> {
        let mut plugins = self.plugins.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(plugin) = plugins.get(sha256) {
            return Ok(plugin.clone());
        }
        // Loading (compile or cache map) happens under the lock so a plugin shared by many
        // kits is compiled once.
        let plugin = self
            .engine
            .load(name, bytes, Some(sha256))
            .map_err(|e| Failure::new("kitsync/plugin-error", e.to_string()))?;
        plugins.insert(sha256.to_owned(), plugin.clone());
        Ok(plugin)
    }

    fn configured(&self, snapshot: &Snapshot, spec: &PluginSpec, kit: &str) -> Result<Configured, Failure> {
        let bytes = snapshot.get(&spec.path).ok_or_else(|| {
            let why = if snapshot.symlinks.contains(&spec.path) {
                "is a symlink; symlinks are never followed".to_owned()
            } else if let Some(refused) = snapshot.refused.iter().find(|r| r.path == spec.path) {
                format!("was not read: {}", refused.reason)
            } else {
                "does not exist at this revision".to_owned()
            };
            Failure {
                rule: "kitsync/plugin-missing",
                message: format!("plugin {} (declared in {}) {why}", spec.path, spec.declared_in),
                location: Some(entry(spec)),
            }
        })?;
        // A plugin that does not load (a digest mismatch, a forbidden import, another
        // contract version) is reported at its entry, like a missing one.
        let plugin = self
            .load(&spec.path, bytes, &spec.sha256)
            .map_err(|mut failure| {
                failure.location = Some(entry(spec));
                failure
            })?;
        plugin
            .configure(&spec.config)
            .map(|c| c.for_kit(kit))
            .map_err(|e| Failure {
                rule: "kitsync/plugin-config",
                message: format!("{} (config declared in {})", e.in_kit(kit), spec.declared_in),
                // The `config:` of this plugin's entry, in kit.yaml or kitsync.yaml.
                location: spec.config_line.map(|line| crate::diagnostic::Location {
                    file: spec.declared_in.clone(),
                    line: u32::try_from(line).unwrap_or(0),
                    column: None,
                }),
            })
    }

    fn trusted(&self, policy: &TrustedPolicy, kit: &str) -> Result<Configured, Failure> {
        let plugin = self.load(&format!("trusted:{}", policy.name), &policy.bytes, &policy.sha256)?;
        plugin
            .configure(&policy.config)
            .map(|c| c.for_kit(kit))
            .map_err(|e| Failure::new("kitsync/plugin-error", e.in_kit(kit).to_string()))
    }
}

/// Where a plugin's entry is written: the line of its `plugin:` (its `config:` or the top of
/// the file when that is unknown).
fn entry(spec: &PluginSpec) -> crate::diagnostic::Location {
    crate::diagnostic::Location {
        file: spec.declared_in.clone(),
        line: spec
            .line
            .or(spec.config_line)
            .and_then(|l| u32::try_from(l).ok())
            .unwrap_or(1),
        column: None,
    }
}

/// Records every failure but the first as a finding and returns the first, which the
/// caller reports as the reason the kit is blocked.
fn report_all(
    failures: Vec<Failure>,
    kit: &str,
    locator: &Locator<'_>,
    findings: &mut Vec<Finding>,
) -> Failure {
    let mut failures = failures.into_iter();
    let first = failures
        .next()
        .unwrap_or_else(|| Failure::new("kitsync/internal", "no failure recorded"));
    for other in failures {
        findings.push(Finding {
            kit: kit.to_owned(),
            source: HOST_SOURCE.into(),
            diagnostic: Diagnostic {
                severity: Severity::Error,
                rule: other.rule.into(),
                message: other.message,
                object: None,
                path: None,
            },
            snippet: other.location.as_ref().and_then(|l| locator.snippet(l)),
            location: other.location,
        });
    }
    first
}

/// A render refused for a reason that holds for the whole revision (a platform limit above
/// the host's ceiling, a plugin engine that cannot start): every kit of the revision gets it.
/// A limit is located at its line in the platform file; an engine failure is the host's.
pub fn blocked(name: &str, discovery: &Discovery, rule: &str, message: &str) -> Rendered {
    let location = (rule == "kitsync/plugin-limits").then(|| {
        let raw = discovery
            .platform
            .as_ref()
            .map(|p| String::from_utf8_lossy(&p.raw).into_owned())
            .unwrap_or_default();
        // The message names the offending key; point at it, else at the top of the file.
        let key = ["memoryMiB", "deadlineMs"]
            .into_iter()
            .find(|k| message.contains(k))
            .unwrap_or("pluginLimits");
        // `key:` outside a comment, block or flow style (`pluginLimits: {memoryMiB: 128}`).
        let wanted = format!("{key}:");
        let found = raw
            .lines()
            .enumerate()
            .find(|(_, l)| l.split('#').next().is_some_and(|code| code.contains(&wanted)));
        let (line, snippet) = found.map_or((1, None), |(i, l)| (i + 1, Some(l.trim_end().to_owned())));
        (
            crate::diagnostic::Location {
                file: crate::kit::PLATFORM_FILE.into(),
                line: u32::try_from(line).unwrap_or(1),
                column: None,
            },
            snippet,
        )
    });
    let (location, snippet) = location.map_or((None, None), |(l, s)| (Some(l), s));
    let mut rendered = failed(
        name,
        &discovery
            .kits
            .get(name)
            .and_then(|k| k.as_ref().ok())
            .map(|k| k.namespace.clone())
            .unwrap_or_default(),
        rule,
        message.to_owned(),
        location,
    );
    if let Some(finding) = rendered.findings.first_mut() {
        finding.snippet = snippet;
    }
    rendered
}

/// A finding about the revision itself (no kit), located where the error says.
pub fn revision_finding(rule: &str, error: &crate::kit::Error) -> Finding {
    Finding {
        kit: String::new(),
        source: HOST_SOURCE.into(),
        diagnostic: Diagnostic {
            severity: Severity::Error,
            rule: rule.to_owned(),
            message: error.to_string(),
            object: None,
            path: None,
        },
        location: kit_error_location(error),
        snippet: None,
    }
}

fn failed(
    kit: &str,
    namespace: &str,
    rule: &str,
    message: String,
    location: Option<crate::diagnostic::Location>,
) -> Rendered {
    Rendered {
        kit: kit.to_owned(),
        namespace: namespace.to_owned(),
        objects: Vec::new(),
        findings: vec![Finding {
            kit: kit.to_owned(),
            source: HOST_SOURCE.into(),
            diagnostic: Diagnostic {
                severity: Severity::Error,
                rule: rule.to_owned(),
                message: message.clone(),
                object: None,
                path: None,
            },
            location,
            snippet: None,
        }],
        failed: Some(message),
        input_hash: String::new(),
    }
}

fn kit_error_location(error: &crate::kit::Error) -> Option<crate::diagnostic::Location> {
    match error {
        crate::kit::Error::At {
            file, line, column, ..
        } => Some(crate::diagnostic::Location {
            file: file.clone(),
            line: u32::try_from(*line).unwrap_or(0),
            column: u32::try_from(*column).ok().filter(|c| *c > 0),
        }),
        crate::kit::Error::DependsOn { file, line, .. } => Some(crate::diagnostic::Location {
            file: file.clone(),
            line: u32::try_from(*line).unwrap_or(0),
            column: None,
        }),
        crate::kit::Error::Invalid { file, .. } | crate::kit::Error::Unsafe { file, .. } => {
            Some(crate::diagnostic::Location {
                file: file.clone(),
                line: 1,
                column: None,
            })
        }
        _ => None,
    }
}

/// Every manifest of the kit; every file that cannot be read is reported, not only the first.
fn read_manifests(
    snapshot: &Snapshot,
    kit: &Kit,
    parsed: &manifest::ParseCache,
) -> Result<Vec<Object>, Vec<Failure>> {
    let mut objects = Vec::new();
    let mut failures = Vec::new();
    // One budget for the whole kit: many small files cannot add up to more than one kit.
    let mut budget = manifest::KitBudget::default();
    for file in &kit.manifests {
        let Some(bytes) = snapshot.get(file) else { continue };
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                failures.push(Failure {
                    rule: "kitsync/invalid-manifest",
                    message: format!("{file}: not UTF-8: {e}"),
                    location: None,
                });
                continue;
            }
        };
        match parsed.parse_within(file, text, &mut budget) {
            Ok(parsed) => objects.extend(parsed),
            Err(e @ manifest::Error::OverBudget { .. }) => {
                failures.push(Failure {
                    rule: "kitsync/over-budget",
                    message: format!("{e}; the kit's later files are not read"),
                    location: Some(crate::diagnostic::Location {
                        file: file.clone(),
                        line: 1,
                        column: None,
                    }),
                });
                break;
            }
            Err(e) => {
                let location = match &e {
                    manifest::Error::Syntax {
                        file, line, column, ..
                    } => Some(crate::diagnostic::Location {
                        file: file.clone(),
                        line: u32::try_from(*line).unwrap_or(0),
                        column: u32::try_from(*column).ok().filter(|c| *c > 0),
                    }),
                    manifest::Error::NotAnObject { file, line, .. }
                    | manifest::Error::NotText { file, line, .. }
                    | manifest::Error::MissingIdentity { file, line, .. } => {
                        Some(crate::diagnostic::Location {
                            file: file.clone(),
                            line: *line,
                            column: None,
                        })
                    }
                    manifest::Error::TooLarge { .. } | manifest::Error::OverBudget { .. } => None,
                };
                failures.push(Failure {
                    rule: "kitsync/invalid-manifest",
                    message: e.to_string(),
                    location,
                });
            }
        }
    }
    if failures.is_empty() {
        Ok(objects)
    } else {
        Err(failures)
    }
}

/// Every object defined twice, each naming both places.
fn check_duplicates(objects: &[Object]) -> Result<(), Vec<Failure>> {
    let mut failures = Vec::new();
    let mut seen: HashMap<(&str, &str, Option<&str>, &str), &Object> = HashMap::new();
    for object in objects {
        let group = object.id.api_version.split_once('/').map_or("", |(g, _)| g);
        let key = (
            group,
            object.id.kind.as_str(),
            object.id.namespace.as_deref(),
            object.id.name.as_str(),
        );
        if let Some(first) = seen.insert(key, object) {
            let place = |o: &Object| {
                o.origin
                    .as_ref()
                    .map_or("a transformer".to_owned(), |o| o.to_string())
            };
            failures.push(Failure {
                rule: "kitsync/duplicate-object",
                message: format!(
                    "{} is defined twice: at {} and at {}",
                    describe(&object.id),
                    place(first),
                    place(object)
                ),
                location: object.origin.as_ref().and_then(|o| {
                    o.line.map(|line| crate::diagnostic::Location {
                        file: o.file.clone(),
                        line,
                        column: None,
                    })
                }),
            });
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

fn describe(id: &ObjectRef) -> String {
    id.to_string()
}
