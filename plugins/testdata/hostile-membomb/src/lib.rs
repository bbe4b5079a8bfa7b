//! Hostile test plugin `hostile-membomb`: allocates and touches 1 GiB inside `validate` (the host's memory cap must stop it).
//!
//! For the host's sandbox tests only; never use it in a kit.

use kitsync_plugin::{Diagnostic, Metadata, Object, PluginError, Validator, Value};

/// The hostile validator.
pub struct Hostile;

impl Validator for Hostile {
    fn metadata() -> Metadata {
        Metadata::new("hostile-membomb", env!("CARGO_PKG_VERSION"))
    }

    fn validate_config(_config: &Value) -> Result<(), PluginError> {
        Ok(())
    }

    fn validate(_config: &Value, _objects: &[Object]) -> Result<Vec<Diagnostic>, PluginError> {
        let mut bomb = std::hint::black_box(vec![1u8; 1 << 30]);
        // Touch one byte per page so the memory is really used.
        let mut sum = 0u64;
        for i in (0..bomb.len()).step_by(4096) {
            bomb[i] = bomb[i].wrapping_add(1);
            sum = sum.wrapping_add(u64::from(bomb[i]));
        }
        let sum = std::hint::black_box(sum);
        Ok(vec![Diagnostic::info(
            "hostile-membomb/result",
            format!("allocated 1 GiB (checksum {sum})"),
        )])
    }
}

kitsync_plugin::export_validator!(Hostile);
