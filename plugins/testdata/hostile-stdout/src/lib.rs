//! Hostile test plugin `hostile-stdout`: writes 100 MB to stdout inside `validate` (the host must cap captured output).
//!
//! For the host's sandbox tests only; never use it in a kit.

use kitsync_plugin::{Diagnostic, Metadata, Object, PluginError, Validator, Value};

/// The hostile validator.
pub struct Hostile;

impl Validator for Hostile {
    fn metadata() -> Metadata {
        Metadata::new("hostile-stdout", env!("CARGO_PKG_VERSION"))
    }

    fn validate_config(_config: &Value) -> Result<(), PluginError> {
        Ok(())
    }

    fn validate(_config: &Value, _objects: &[Object]) -> Result<Vec<Diagnostic>, PluginError> {
        use std::io::Write;
        let mut chunk = vec![b'x'; 1 << 20];
        if let Some(last) = chunk.last_mut() {
            *last = b'\n';
        }
        let mut stdout = std::io::stdout();
        let mut first_error = None;
        for _ in 0..100 {
            // Keep writing after a failure, ignoring further errors.
            if let Err(e) = stdout.write_all(&chunk)
                && first_error.is_none()
            {
                first_error = Some(e);
            }
        }
        let _ = stdout.flush();
        std::hint::black_box(first_error);
        Ok(Vec::new())
    }
}

kitsync_plugin::export_validator!(Hostile);
