//! Hostile test plugin `hostile-panic`: panics inside `validate` (the host must report a trap, not crash).
//!
//! For the host's sandbox tests only; never use it in a kit.

use kitsync_plugin::{Diagnostic, Metadata, Object, PluginError, Validator, Value};

/// The hostile validator.
pub struct Hostile;

impl Validator for Hostile {
    fn metadata() -> Metadata {
        Metadata::new("hostile-panic", env!("CARGO_PKG_VERSION"))
    }

    fn validate_config(_config: &Value) -> Result<(), PluginError> {
        Ok(())
    }

    #[allow(clippy::panic)]
    fn validate(_config: &Value, objects: &[Object]) -> Result<Vec<Diagnostic>, PluginError> {
        if std::hint::black_box(objects.len()) < usize::MAX {
            panic!("hostile panic: boom");
        }
        Ok(Vec::new())
    }
}

kitsync_plugin::export_validator!(Hostile);
