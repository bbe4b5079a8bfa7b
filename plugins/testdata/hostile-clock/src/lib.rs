//! Hostile test plugin `hostile-clock`: reads the wall clock, the monotonic clock and
//! randomness inside `validate` and reports them, so the host can check that renders do
//! not depend on when or where they run.
//!
//! It emits one info finding, `hostile-clock/result`, whose message is
//! `wall=<secs>.<nanos> monotonic=<nanos> random=<hex> hash=<hex>`:
//! `wall` is `SystemTime::now()` since the Unix epoch (`before-epoch` if earlier),
//! `monotonic` the nanoseconds between two `Instant::now()` readings,
//! `random` 16 bytes from `getrandom` (`wasi:random/random`) or `error: ...`,
//! `hash` a `RandomState` hash of a fixed string (`wasi:random/insecure-seed`).
//!
//! For the host's sandbox tests only; never use it in a kit.

use kitsync_plugin::{Diagnostic, Metadata, Object, PluginError, Validator, Value};
use std::hash::BuildHasher as _;

/// The hostile validator.
pub struct Hostile;

impl Validator for Hostile {
    fn metadata() -> Metadata {
        Metadata::new("hostile-clock", env!("CARGO_PKG_VERSION"))
    }

    fn validate_config(_config: &Value) -> Result<(), PluginError> {
        Ok(())
    }

    fn validate(_config: &Value, _objects: &[Object]) -> Result<Vec<Diagnostic>, PluginError> {
        let wall = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => format!("{}.{:09}", since.as_secs(), since.subsec_nanos()),
            Err(_) => "before-epoch".to_owned(),
        };
        let start = std::time::Instant::now();
        // Some work between the readings, so a real clock would move.
        std::hint::black_box((0..100_000u64).fold(0u64, |acc, i| acc.wrapping_mul(31).wrapping_add(i)));
        let monotonic = start.elapsed().as_nanos();
        let mut bytes = [0u8; 16];
        let random = match getrandom::fill(&mut bytes) {
            Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            Err(e) => format!("error: {e}"),
        };
        let hash = std::collections::hash_map::RandomState::new().hash_one("kitsync");
        Ok(vec![Diagnostic::info(
            "hostile-clock/result",
            format!("wall={wall} monotonic={monotonic} random={random} hash={hash:016x}"),
        )])
    }
}

kitsync_plugin::export_validator!(Hostile);
