//! Hostile test plugin `hostile-net`: opens a TCP connection inside `validate`; this makes the component import `wasi:sockets`, which the host must refuse at load time.
//!
//! For the host's sandbox tests only; never use it in a kit.

use kitsync_plugin::{Diagnostic, Metadata, Object, PluginError, Validator, Value};

/// The hostile validator.
pub struct Hostile;

impl Validator for Hostile {
    fn metadata() -> Metadata {
        Metadata::new("hostile-net", env!("CARGO_PKG_VERSION"))
    }

    fn validate_config(_config: &Value) -> Result<(), PluginError> {
        Ok(())
    }

    fn validate(_config: &Value, _objects: &[Object]) -> Result<Vec<Diagnostic>, PluginError> {
        let result = match std::net::TcpStream::connect("127.0.0.1:80") {
            Ok(stream) => format!(
                "connect 127.0.0.1:80: OK, local address {:?}",
                stream.local_addr().ok()
            ),
            Err(e) => format!("connect 127.0.0.1:80: error: {e}"),
        };
        Ok(vec![Diagnostic::info("hostile-net/result", result)])
    }
}

kitsync_plugin::export_validator!(Hostile);
