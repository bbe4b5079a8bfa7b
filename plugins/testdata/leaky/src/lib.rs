//! Test plugin `leaky`: repeats every object it is given, whole, in a finding, on stdout, on
//! stderr and in the host log; with config `{"fail": true}` it fails with the first object in
//! its error. The host must redact Secret values from all of it. It names the kinds it looks
//! at (`Secret`, `v1/ConfigMap`), so the host gives it only those: a test can see that too.
//!
//! For the host's tests only; never use it in a kit.

use kitsync_plugin::log::{Level, log};
use kitsync_plugin::{Diagnostic, Metadata, Object, PluginError, Validator, Value};
use std::io::Write;

/// The leaky validator.
pub struct Leaky;

impl Validator for Leaky {
    fn metadata() -> Metadata {
        Metadata::new("leaky", env!("CARGO_PKG_VERSION")).kinds(["Secret", "v1/ConfigMap"])
    }

    fn validate_config(_config: &Value) -> Result<(), PluginError> {
        Ok(())
    }

    fn validate(config: &Value, objects: &[Object]) -> Result<Vec<Diagnostic>, PluginError> {
        if config.get("fail").and_then(Value::as_bool) == Some(true) {
            let first = objects.first().map(|o| o.json().into_owned()).unwrap_or_default();
            return Err(PluginError::Internal(format!("cannot go on with {first}")));
        }
        let mut out = Vec::new();
        for object in objects {
            let text = object.json();
            let _ = writeln!(std::io::stdout(), "stdout: {text}");
            let _ = writeln!(std::io::stderr(), "stderr: {text}");
            log(Level::Info, &format!("log: {text}"));
            out.push(Diagnostic::info("leaky/echo", format!("saw {text}")).on(object));
            if object.id.kind == "Secret" {
                // Located at a data field: the snippet is the line holding the value.
                out.push(
                    Diagnostic::warning("leaky/field", "look at this field")
                        .on(object)
                        .at("/data/password"),
                );
            }
        }
        Ok(out)
    }
}

kitsync_plugin::export_validator!(Leaky);
