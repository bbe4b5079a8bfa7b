//! The plugin engine: loads WebAssembly components from the repository and runs them sandboxed.
//!
//! This is the only module that touches wasmtime. [`Engine`] is built once per process;
//! [`Engine::load`] checks a component's digest and imports and compiles it (or loads it
//! from the [`CodeCache`]); [`Plugin::configure`] checks a configuration with the plugin's
//! `validate-config`; [`Configured::transform`] and [`Configured::validate`] run one call
//! per kit in a fresh instance under the [`Limits`].

mod cache;
mod canonical;
mod engine;
mod error;
mod permits;
mod sandbox;

pub use cache::{CodeCache, CodeSource};
pub use engine::{
    CONTRACT_VERSION, Configured, Encoded, Engine, EngineConfig, Metadata, Plugin, TransformOutput, World,
    sha256_hex,
};
pub use error::{Error, ErrorKind, Phase, Result};
pub use sandbox::{EPOCH_TICK, Limits};

/// Host bindings generated from `wit/plugin.wit`.
mod bindings {
    /// The validator world; it also owns the shared `types` and `host` interfaces.
    pub(crate) mod validator {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "validator",
            imports: { default: trappable },
            // A transformer's untouched objects are recognized by comparing records.
            additional_derives: [PartialEq],
        });
    }

    /// The transformer world, reusing the validator's shared interfaces.
    pub(crate) mod transformer {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "transformer",
            imports: { default: trappable },
            with: {
                "kitsync:plugin/types": super::validator::kitsync::plugin::types,
                "kitsync:plugin/host": super::validator::kitsync::plugin::host,
            },
        });
    }

    pub(crate) use validator::kitsync::plugin::{host, types};
}
