//! Hostile test plugin `hostile-loop`: spins forever inside `validate` (the host's deadline must stop it).
//!
//! For the host's sandbox tests only; never use it in a kit.

use kitsync_plugin::{Diagnostic, Metadata, Object, PluginError, Validator, Value};

/// The hostile validator.
pub struct Hostile;

impl Validator for Hostile {
    fn metadata() -> Metadata {
        Metadata::new("hostile-loop", env!("CARGO_PKG_VERSION"))
    }

    fn validate_config(_config: &Value) -> Result<(), PluginError> {
        Ok(())
    }

    fn validate(_config: &Value, objects: &[Object]) -> Result<Vec<Diagnostic>, PluginError> {
        let mut counter = objects.len() as u64;
        loop {
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

kitsync_plugin::export_validator!(Hostile);
