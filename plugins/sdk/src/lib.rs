#![warn(missing_docs)]
//! SDK for writing kitsync policy plugins: WebAssembly components that
//! target the `kitsync:plugin@0.1.0` WIT worlds `validator` and
//! `transformer`.
//!
//! Implement [`Validator`] (findings only) or [`Transformer`] (returns the new
//! object list) on a unit struct and export it with [`export_validator!`] or
//! [`export_transformer!`]. The SDK parses the configuration, reads each
//! object's JSON only as far as the plugin looks (see [`Object`]), converts
//! diagnostics and errors, and for transformers serializes the objects that
//! changed and recomputes each object's identity from its JSON.
//!
//! A complete validator (a `cdylib` crate built with
//! `cargo build --release --target wasm32-wasip2`):
//!
//! ```no_run
//! use kitsync_plugin::{Diagnostic, Metadata, Object, PluginError, Validator, Value, parse_config};
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config { max: u64 }
//!
//! struct MaxReplicas;
//!
//! impl Validator for MaxReplicas {
//!     fn metadata() -> Metadata {
//!         Metadata::new("max-replicas", env!("CARGO_PKG_VERSION")).kinds(["Deployment"])
//!     }
//!     fn validate_config(config: &Value) -> Result<(), PluginError> {
//!         parse_config::<Config>(config).map(drop)
//!     }
//!     fn validate(config: &Value, objects: &[Object]) -> Result<Vec<Diagnostic>, PluginError> {
//!         let max = parse_config::<Config>(config)?.max;
//!         let too_many = |o: &&Object| o.pointer("/spec/replicas").and_then(Value::as_u64) > Some(max);
//!         Ok(objects.iter().filter(|o| o.kind() == "Deployment").filter(too_many)
//!             .map(|o| Diagnostic::error("max-replicas/too-many", format!("more than {max} replicas"))
//!                 .on(o).at("/spec/replicas"))
//!             .collect())
//!     }
//! }
//!
//! kitsync_plugin::export_validator!(MaxReplicas);
//! ```
//!
//! Plugins run in a deny-all sandbox: no files, no environment, no network,
//! a memory cap and a deadline. Use [`info!`] and friends to log through the
//! host; stdout and stderr are captured with a size cap.
//!
//! Helpers: [`Pointer`] builds RFC 6901 pointers (escaping `~` and `/`);
//! [`Object::containers`], [`Object::for_each_container_mut`] and
//! [`Object::pod_spec`] find the containers of Pods, Deployments,
//! StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs and
//! CronJobs; [`parse_config`] turns the configuration into a typed struct.

extern crate self as kitsync_plugin;

pub mod bindings;
mod config;
mod export;
pub mod image;
pub mod log;
pub mod names;
mod object;
mod pointer;
mod subtree;
mod types;
pub mod workload;

pub use config::{parse_config, parse_config_text};
pub use export::{
    Transformer, TransformerExport, Validator, ValidatorExport, transform, transformer_metadata,
    transformer_validate_config, validate, validator_metadata, validator_validate_config,
};
pub use object::Object;
pub use pointer::{Pointer, escape_token};
pub use serde_json;
pub use serde_json::Value;
pub use subtree::parse_at;
pub use types::{Diagnostic, Metadata, ObjectRef, Origin, PluginError, Severity, TransformOutput, json_type};
pub use workload::{Container, ContainerKind};

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

/// Exports a [`Validator`] implementation as the component's `validator`
/// world: `kitsync_plugin::export_validator!(MyValidator);`. Use once, at
/// the root of a `cdylib` crate (see the crate-level example).
#[macro_export]
macro_rules! export_validator {
    ($ty:ty) => {
        #[doc(hidden)]
        type __KitsyncValidatorExport = $crate::ValidatorExport<$ty>;
        $crate::bindings::validator::export_validator_world!(
            __KitsyncValidatorExport with_types_in $crate::bindings::validator
        );
    };
}

/// Exports a [`Transformer`] implementation as the component's `transformer`
/// world: `kitsync_plugin::export_transformer!(MyTransformer);`. Use once,
/// at the root of a `cdylib` crate.
#[macro_export]
macro_rules! export_transformer {
    ($ty:ty) => {
        #[doc(hidden)]
        type __KitsyncTransformerExport = $crate::TransformerExport<$ty>;
        $crate::bindings::transformer::export_transformer_world!(
            __KitsyncTransformerExport with_types_in $crate::bindings::transformer
        );
    };
}

/// Exports a type implementing the raw generated
/// [`bindings::validator::Guest`] trait (WIT records in and out, no JSON
/// handling). For plugins that need full control; most should use
/// [`export_validator!`].
#[macro_export]
macro_rules! export_raw_validator {
    ($ty:ident) => {
        $crate::bindings::validator::export_validator_world!($ty with_types_in $crate::bindings::validator);
    };
}

/// Exports a type implementing the raw generated
/// [`bindings::transformer::Guest`] trait (WIT records in and out, no JSON
/// handling, no identity recomputation). For plugins that need full control;
/// most should use [`export_transformer!`].
#[macro_export]
macro_rules! export_raw_transformer {
    ($ty:ident) => {
        $crate::bindings::transformer::export_transformer_world!(
            $ty with_types_in $crate::bindings::transformer
        );
    };
}
