//! kitsync: a GitOps reconciler for Kubernetes with sandboxed WebAssembly policies.
//!
//! The library is the pipeline; modules are listed in data order, and `check` (review)
//! and `serve` (reconcile) call the same [`render`] stage.
//!
//! ```no_run
//! use kitsync::plugin::{Engine, EngineConfig};
//! # fn main() -> anyhow::Result<()> {
//! let engine = Engine::new(EngineConfig::default())?;
//! let bytes = std::fs::read("plugins/port_range.wasm")?;
//! let plugin = engine.load("port_range.wasm", &bytes, None)?;
//! let policy = plugin.configure(&serde_json::json!({"min": 1024, "max": 32767}))?;
//! let text = std::fs::read_to_string("service.yaml")?;
//! let objects = kitsync::manifest::parse("service.yaml", &text)?;
//! for finding in policy.validate(&objects)? {
//!     println!("{finding}");
//! }
//! # Ok(())
//! # }
//! ```

// Objects with identity and origin.
pub mod object;
// Findings and their locations.
pub mod diagnostic;
// Secret values and how to keep them out of every output.
pub mod redact;
// Git sources and in-memory snapshots of a revision.
pub mod source;
// Kits and the platform file.
pub mod kit;
// YAML manifests to objects.
pub mod manifest;
// The sandboxed plugin engine.
pub mod plugin;
// Host guards shared by check and apply.
pub mod guard;
// Schema validation of rendered objects: built-in kinds and the repository's CRDs.
pub mod schema;
// The per-kit pipeline: parse, defaults, transforms, validators, schemas, guards.
pub mod render;
// Whether this process may write (leader election), and clients that refuse writes otherwise.
pub mod leadership;
// Server-side apply of a kit's objects: stages, ownership, inventory, prune.
pub mod apply;
// Whether applied objects became ready (kstatus rules), and the wait for it.
pub mod health;
// The service's Prometheus metrics.
pub mod metrics;
// Alerts to webhook and Slack sinks: deduplicated, retried, never blocking the loop.
pub mod alert;
// The Kit resource: status and Events of each kit.
pub mod status;
// One kit at one revision: render -> apply -> status.
pub mod reconcile;
// The service: triggers, the loop over sources and kits.
pub mod serve;
// Object-level differences between renders.
pub mod diff;
// Output formats for findings and diffs.
pub mod report;
// The command line.
pub mod cli;
// The binary's allocator settings.
pub mod allocator;

pub use diagnostic::{Diagnostic, Finding, Location, Severity};
pub use object::{Object, ObjectRef, Origin};
