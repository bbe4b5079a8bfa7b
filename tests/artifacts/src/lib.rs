//! Paths of kitsync's plugins, built from `plugins/` for wasm32-wasip2 by this crate's build script.
//!
//! Tests and benchmarks load real components through these paths; nothing is committed.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

/// Reads a built plugin.
///
/// # Panics
/// When the file is missing, which means the build script did not run.
pub fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading plugin {path}: {e}"))
}
