//! Hostile test plugin `hostile-fs`: reads `/etc/passwd` and lists `/` inside `validate` (the sandbox has no preopened directories, so both must fail).
//!
//! For the host's sandbox tests only; never use it in a kit.

use kitsync_plugin::{Diagnostic, Metadata, Object, PluginError, Validator, Value};

/// The hostile validator.
pub struct Hostile;

impl Validator for Hostile {
    fn metadata() -> Metadata {
        Metadata::new("hostile-fs", env!("CARGO_PKG_VERSION"))
    }

    fn validate_config(_config: &Value) -> Result<(), PluginError> {
        Ok(())
    }

    fn validate(_config: &Value, _objects: &[Object]) -> Result<Vec<Diagnostic>, PluginError> {
        let passwd = match std::fs::read_to_string("/etc/passwd") {
            Ok(content) => format!(
                "read /etc/passwd: OK, first line: {}",
                content.lines().next().unwrap_or("")
            ),
            Err(e) => format!("read /etc/passwd: error: {e}"),
        };
        let root = match std::fs::read_dir("/") {
            Ok(entries) => {
                let names: Vec<String> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                format!("list /: OK, entries: {}", names.join(","))
            }
            Err(e) => format!("list /: error: {e}"),
        };
        Ok(vec![Diagnostic::info(
            "hostile-fs/result",
            format!("{passwd}; {root}"),
        )])
    }
}

kitsync_plugin::export_validator!(Hostile);
