//! The schemas of `kit.yaml` and `kitsync.yaml`, parsed strictly.

use super::{Error, Kit, Platform, PluginSpec, normalize};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::time::Duration;

/// A plugin reference as written in a kit or platform file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
    /// Repository-relative path of the component, with where it is written (the entry's line).
    pub plugin: serde_saphyr::Spanned<String>,
    /// Its sha256 (64 hex digits, optional `sha256:` prefix).
    pub sha256: String,
    /// Configuration handed to the plugin, with where it is written.
    #[serde(default)]
    pub config: Option<serde_saphyr::Spanned<serde_json::Value>>,
}

/// `kit.yaml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KitFile {
    /// Target namespace (default: the kit's name).
    pub namespace: Option<String>,
    /// Manifest files or directories, relative to the kit (default: every YAML file).
    #[serde(default)]
    pub manifests: Vec<String>,
    /// Transformers, in order.
    #[serde(default)]
    pub transform: Vec<PluginRef>,
    /// Validators.
    #[serde(default)]
    pub validate: Vec<PluginRef>,
    /// Kits to apply first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Delete objects removed from the kit.
    pub prune: Option<bool>,
    /// Skip the kit.
    pub suspend: Option<bool>,
    /// Service account to impersonate.
    pub service_account: Option<String>,
    /// Health wait timeout, e.g. `5m`.
    pub timeout: Option<String>,
    /// Correct drift, or only report it.
    pub self_heal: Option<bool>,
    /// Force server-side apply conflicts.
    pub force: Option<bool>,
    /// Delete and recreate an object when a change touches an immutable field.
    pub recreate: Option<bool>,
}

/// Defaults the platform sets for every kit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Defaults {
    /// Default for `prune` (true when unset).
    pub prune: Option<bool>,
    /// Default for `selfHeal` (true when unset).
    pub self_heal: Option<bool>,
    /// Default health timeout (5m when unset).
    pub timeout: Option<String>,
}

/// Plugin limits the platform may set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginLimits {
    /// Memory cap per instance, MiB.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: Option<u64>,
    /// Deadline per call, ms.
    pub deadline_ms: Option<u64>,
}

/// `kitsync.yaml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlatformFile {
    /// Defaults for every kit.
    #[serde(default)]
    pub defaults: Defaults,
    /// Transformers run on every kit after its own.
    #[serde(default)]
    pub transform: Vec<PluginRef>,
    /// Validators run on every kit after its own.
    #[serde(default)]
    pub validate: Vec<PluginRef>,
    /// Kits that may create cluster-scoped objects.
    #[serde(default)]
    pub cluster_scoped: Vec<String>,
    /// Kits whose CustomResourceDefinitions prune may delete.
    #[serde(default)]
    pub prune_custom_resource_definitions: Vec<String>,
    /// Plugin sandbox limits.
    #[serde(default)]
    pub plugin_limits: PluginLimits,
    /// Schema validation of every kit's objects.
    #[serde(default)]
    pub schemas: SchemaOptions,
}

/// `schemas:` in the platform file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SchemaOptions {
    /// Kubernetes version whose built-in schemas apply (`"1.35"`); `check
    /// --kubernetes-version` overrides it.
    pub kubernetes_version: Option<String>,
    /// Unknown fields and kinds without a schema are errors (`check --strict` also sets it).
    #[serde(default)]
    pub strict: bool,
    /// Repository directories whose CustomResourceDefinitions supply schemas without being
    /// applied (CRDs that some kit applies are read from the kit itself).
    #[serde(default)]
    pub crds: Vec<String>,
}

pub(crate) fn parse_yaml<'a, T: Deserialize<'a>>(file: &str, bytes: &'a [u8]) -> Result<T, Error> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::Invalid {
        file: file.to_owned(),
        message: format!("not UTF-8: {e}"),
    })?;
    if text.trim().is_empty() {
        // An empty kit.yaml means "all defaults".
        return serde_saphyr::from_str("{}").map_err(|e| Error::Invalid {
            file: file.to_owned(),
            message: e.to_string(),
        });
    }
    serde_saphyr::from_str(text).map_err(|e| {
        let location = e.location();
        let line = location.map(|l| l.line()).unwrap_or(0);
        Error::At {
            file: file.to_owned(),
            line,
            column: location.map(|l| l.column()).unwrap_or(0),
            message: describe(&e.to_string(), text, line),
        }
    })
}

/// The parser's first message line without its own location prefix, plus the offending
/// source line, so a type error names the field (`invalid boolean in "prune: sometimes"`).
fn describe(message: &str, text: &str, line: u64) -> String {
    let first = crate::manifest::parser_message(message);
    let source = usize::try_from(line)
        .ok()
        .and_then(|l| l.checked_sub(1))
        .and_then(|l| text.lines().nth(l))
        .map(str::trim)
        .filter(|l| !l.is_empty());
    match source {
        Some(source) if !first.contains(source) => format!("{first} in {source:?}"),
        _ => first,
    }
}

fn invalid(file: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        file: file.to_owned(),
        message: message.into(),
    }
}

/// Parses a duration like `90s`, `5m`, `1h`, `1h30m`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return None,
        };
        let n: u64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        number.clear();
        any = true;
    }
    (number.is_empty() && any).then(|| Duration::from_secs(total))
}

fn plugins(file: &str, refs: Vec<PluginRef>) -> Result<Vec<PluginSpec>, Error> {
    refs.into_iter()
        .map(|r| {
            let line = Some(r.plugin.defined.line()).filter(|l| *l > 0);
            let path = normalize("", &r.plugin.value).map_err(|m| invalid(file, format!("plugin {m}")))?;
            let hex = r
                .sha256
                .strip_prefix("sha256:")
                .unwrap_or(&r.sha256)
                .to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    file,
                    format!("plugin {path}: sha256 must be 64 hex digits, got {:?}", r.sha256),
                ));
            }
            let config_line = r.config.as_ref().map(|c| c.defined.line()).filter(|l| *l > 0);
            Ok(PluginSpec {
                path,
                sha256: hex,
                config: r.config.map(|c| c.value).unwrap_or_default(),
                declared_in: file.to_owned(),
                line,
                config_line,
            })
        })
        .collect()
}

/// Kubernetes object-name rules for namespaces (RFC 1123 label).
pub(crate) fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

pub(super) fn parse_platform(file: &str, bytes: &[u8]) -> Result<Platform, Error> {
    let raw: PlatformFile = parse_yaml(file, bytes)?;
    if let Some(t) = &raw.defaults.timeout
        && parse_duration(t).is_none()
    {
        return Err(invalid(
            file,
            format!("defaults.timeout {t:?} is not a duration like 90s, 5m or 1h"),
        ));
    }
    if let Some(version) = &raw.schemas.kubernetes_version {
        crate::schema::catalog::find(version)
            .map_err(|e| invalid(file, format!("schemas.kubernetesVersion: {e}")))?;
    }
    let mut schema_dirs = Vec::new();
    for dir in &raw.schemas.crds {
        let normal = normalize("", dir.trim_end_matches('/'))
            .map_err(|why| invalid(file, format!("schemas.crds: {why}")))?;
        schema_dirs.push(normal);
    }
    Ok(Platform {
        transform: plugins(file, raw.transform)?,
        validate: plugins(file, raw.validate)?,
        cluster_scoped: raw.cluster_scoped.into_iter().collect::<BTreeSet<_>>(),
        prune_crds: raw
            .prune_custom_resource_definitions
            .into_iter()
            .collect::<BTreeSet<_>>(),
        defaults: raw.defaults,
        plugin_memory_mib: raw.plugin_limits.memory_mib,
        plugin_deadline_ms: raw.plugin_limits.deadline_ms,
        schema_dirs,
        schemas: raw.schemas,
        raw: bytes.to_vec(),
    })
}

pub(super) fn parse_kit(
    file: &str,
    bytes: &[u8],
    name: &str,
    dir: &str,
    defaults: &Defaults,
) -> Result<Kit, Error> {
    let raw: KitFile = parse_yaml(file, bytes)?;
    let namespace = raw.namespace.unwrap_or_else(|| name.to_owned());
    if !is_dns_label(&namespace) {
        return Err(invalid(
            file,
            format!("namespace {namespace:?} is not a valid Kubernetes namespace name"),
        ));
    }
    let timeout_text = raw.timeout.or_else(|| defaults.timeout.clone());
    let timeout = match timeout_text {
        Some(t) => parse_duration(&t).ok_or_else(|| {
            invalid(
                file,
                format!("timeout {t:?} is not a duration like 90s, 5m or 1h"),
            )
        })?,
        None => Duration::from_secs(300),
    };
    let mut manifests = Vec::new();
    for m in &raw.manifests {
        let path = normalize(dir, m).map_err(|e| invalid(file, format!("manifests: {e}")))?;
        if !dir.is_empty() && !path.starts_with(&format!("{dir}/")) {
            return Err(invalid(
                file,
                format!("manifests: {m:?} is outside the kit directory {dir}"),
            ));
        }
        manifests.push(path);
    }
    if let Some(sa) = &raw.service_account
        && sa.trim().is_empty()
    {
        // Fail closed: an empty service account must never mean "the host's identity".
        return Err(invalid(
            file,
            "serviceAccount is empty; remove it or name an account",
        ));
    }
    Ok(Kit {
        name: name.to_owned(),
        dir: dir.to_owned(),
        namespace,
        manifests,
        transform: plugins(file, raw.transform)?,
        validate: plugins(file, raw.validate)?,
        depends_on: raw.depends_on,
        prune: raw.prune.or(defaults.prune).unwrap_or(true),
        suspend: raw.suspend.unwrap_or(false),
        service_account: raw.service_account,
        timeout,
        self_heal: raw.self_heal.or(defaults.self_heal).unwrap_or(true),
        force: raw.force.unwrap_or(false),
        recreate: raw.recreate.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5d"), None);
    }

    #[test]
    fn unknown_fields_are_located() {
        let err = parse_kit(
            "kits/a/kit.yaml",
            b"namespace: a\nprnue: true\n",
            "a",
            "kits/a",
            &Defaults::default(),
        )
        .expect_err("unknown field");
        let text = err.to_string();
        assert!(text.starts_with("kits/a/kit.yaml:2:"), "{text}");
        assert!(text.contains("prnue"), "{text}");
    }

    #[test]
    fn wrong_types_are_located() {
        let err = parse_kit(
            "k.yaml",
            b"namespace: a\nprune: sometimes\n",
            "a",
            "",
            &Defaults::default(),
        )
        .expect_err("wrong type");
        assert!(err.to_string().starts_with("k.yaml:2:"), "{err}");
        assert!(err.to_string().contains(r#"in "prune: sometimes""#), "{err}");
        assert!(
            !err.to_string().contains("line 2 column"),
            "location said once: {err}"
        );
    }

    #[test]
    fn defaults_apply() {
        let defaults = Defaults {
            prune: Some(false),
            self_heal: None,
            timeout: Some("2m".into()),
        };
        let kit = parse_kit("k.yaml", b"", "shop", "kits/shop", &defaults).expect("empty kit.yaml");
        assert_eq!(kit.namespace, "shop");
        assert!(!kit.prune);
        assert!(kit.self_heal);
        assert_eq!(kit.timeout, Duration::from_secs(120));
    }

    #[test]
    fn plugin_paths_cannot_escape() {
        let text = b"transform:\n  - plugin: ../../../etc/x.wasm\n    sha256: 0000000000000000000000000000000000000000000000000000000000000000\n";
        let err = parse_kit("k.yaml", text, "a", "kits/a", &Defaults::default()).expect_err("escape");
        assert!(err.to_string().contains("leaves the repository"), "{err}");
    }
}
