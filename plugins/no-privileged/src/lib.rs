//! `no-privileged`: no privileged containers, no hostPath volumes, no host
//! namespaces.
//!
//! Config (all optional, all default `false`):
//! `{"allowHostPath": false, "allowHostNetwork": false, "allowHostPID": false, "allowHostIPC": false}`.
//! Privileged containers are never allowed.
//!
//! Checks the pod spec of every workload. Rules (all errors):
//! * `no-privileged/privileged`: `securityContext.privileged: true` on a
//!   container, init container or ephemeral container (path
//!   `.../containers/<i>/securityContext/privileged`);
//! * `no-privileged/host-path`: a `hostPath` volume (`.../volumes/<i>/hostPath`);
//! * `no-privileged/host-network`, `no-privileged/host-pid`,
//!   `no-privileged/host-ipc`: `hostNetwork`/`hostPID`/`hostIPC: true`.

use kitsync_plugin::{Diagnostic, Metadata, Object, PluginError, Validator, Value, parse_config};
use serde::Deserialize;
use serde_json::json;

/// Rule code for a privileged container.
pub const RULE_PRIVILEGED: &str = "no-privileged/privileged";
/// Rule code for a hostPath volume.
pub const RULE_HOST_PATH: &str = "no-privileged/host-path";
/// Rule code for `hostNetwork: true`.
pub const RULE_HOST_NETWORK: &str = "no-privileged/host-network";
/// Rule code for `hostPID: true`.
pub const RULE_HOST_PID: &str = "no-privileged/host-pid";
/// Rule code for `hostIPC: true`.
pub const RULE_HOST_IPC: &str = "no-privileged/host-ipc";

/// Plugin configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Allow `hostPath` volumes.
    #[serde(default, rename = "allowHostPath")]
    pub allow_host_path: bool,
    /// Allow `hostNetwork: true`.
    #[serde(default, rename = "allowHostNetwork")]
    pub allow_host_network: bool,
    /// Allow `hostPID: true`.
    #[serde(default, rename = "allowHostPID")]
    pub allow_host_pid: bool,
    /// Allow `hostIPC: true`.
    #[serde(default, rename = "allowHostIPC")]
    pub allow_host_ipc: bool,
}

/// The JSON Schema of [`Config`].
pub fn config_schema() -> Value {
    let flag = |d: &str| json!({"description": d, "type": "boolean", "default": false});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "no-privileged config",
        "type": "object",
        "properties": {
            "allowHostPath": flag("Allow hostPath volumes."),
            "allowHostNetwork": flag("Allow hostNetwork: true."),
            "allowHostPID": flag("Allow hostPID: true."),
            "allowHostIPC": flag("Allow hostIPC: true.")
        },
        "additionalProperties": false
    })
}

/// The `no-privileged` validator.
pub struct NoPrivileged;

impl Validator for NoPrivileged {
    fn metadata() -> Metadata {
        Metadata::new("no-privileged", env!("CARGO_PKG_VERSION"))
            .kinds(kitsync_plugin::workload::WORKLOAD_KINDS.iter().copied())
            .config_schema(config_schema())
    }

    fn validate_config(config: &Value) -> Result<(), PluginError> {
        parse_config::<Config>(config).map(drop)
    }

    fn validate(config: &Value, objects: &[Object]) -> Result<Vec<Diagnostic>, PluginError> {
        let config: Config = parse_config(config)?;
        let mut out = Vec::new();
        for object in objects {
            let Some((spec_ptr, spec)) = object.pod_spec() else {
                continue;
            };
            let host_flags = [
                (
                    "hostNetwork",
                    config.allow_host_network,
                    RULE_HOST_NETWORK,
                    "the host's network namespace",
                ),
                (
                    "hostPID",
                    config.allow_host_pid,
                    RULE_HOST_PID,
                    "the host's process namespace",
                ),
                (
                    "hostIPC",
                    config.allow_host_ipc,
                    RULE_HOST_IPC,
                    "the host's IPC namespace",
                ),
            ];
            for (field, allowed, rule, what) in host_flags {
                if !allowed && spec.get(field) == Some(&Value::Bool(true)) {
                    out.push(
                        Diagnostic::error(rule, format!("pod uses {what} ({field}: true)"))
                            .on(object)
                            .at(spec_ptr.clone().key(field)),
                    );
                }
            }
            if !config.allow_host_path
                && let Some(volumes) = spec.get("volumes").and_then(Value::as_array)
            {
                for (i, volume) in volumes.iter().enumerate() {
                    if let Some(host_path) = volume.get("hostPath").filter(|v| !v.is_null()) {
                        let name = volume.get("name").and_then(Value::as_str).unwrap_or("?");
                        let path = host_path.get("path").and_then(Value::as_str).unwrap_or("?");
                        out.push(
                            Diagnostic::error(
                                RULE_HOST_PATH,
                                format!("volume {name:?} mounts host path {path:?} (hostPath volume)"),
                            )
                            .on(object)
                            .at(spec_ptr
                                .clone()
                                .key("volumes")
                                .index(i)
                                .key("hostPath")),
                        );
                    }
                }
            }
            for container in object.containers() {
                if container.value.pointer("/securityContext/privileged") == Some(&Value::Bool(true)) {
                    out.push(
                        Diagnostic::error(
                            RULE_PRIVILEGED,
                            format!("{} runs privileged", container.describe()),
                        )
                        .on(object)
                        .at(container.pointer_to("securityContext").key("privileged")),
                    );
                }
            }
        }
        Ok(out)
    }
}

kitsync_plugin::export_validator!(NoPrivileged);

#[cfg(test)]
mod tests {
    use super::*;

    // Findings on objects are fixture cases in tests/ (`kitsync plugin test`); what stays
    // here is how configs are refused.

    #[test]
    fn bad_configs() {
        for (config, needle) in [
            (json!({"allowHostPid": true}), "unknown field `allowHostPid`"),
            (
                json!({"allowPrivileged": true}),
                "unknown field `allowPrivileged`",
            ),
            (json!({"allowHostPath": "yes"}), "invalid type"),
            (json!("x"), "must be a JSON object"),
        ] {
            let err = NoPrivileged::validate_config(&config).unwrap_err();
            assert!(matches!(err, PluginError::InvalidConfig(_)), "{err:?}");
            assert!(err.message().contains(needle), "{config}: {err}");
        }
    }
}
