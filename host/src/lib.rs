//! kitsync: a GitOps reconciler for Kubernetes with sandboxed WebAssembly policies.
//!
//! The library is the pipeline; modules are listed in data order.
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

pub mod cli;
pub mod diagnostic;
pub mod manifest;
pub mod object;
pub mod plugin;

pub use diagnostic::{Diagnostic, Severity};
pub use object::{Object, ObjectRef, Origin};
