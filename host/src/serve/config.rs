//! The host configuration: the operator's file (outside the repository) that says which
//! sources to follow, with which credentials, under which limits and trusted policies.
//!
//! Parsed as strictly as `kit.yaml`: unknown fields and wrong types are errors located by
//! file and line. Every value has a default; `kitsync serve --source URL` builds the same
//! structure without a file.
//!
//! ```yaml
//! hostNamespace: kitsync-system        # default
//! concurrency: 4                       # kits reconciled at once (default 4)
//! defaultServiceAccount: kitsync-kit   # kits without serviceAccount write as this account
//! applyConcurrency: 8                  # objects applied at once within a stage (default 8)
//! retry: {initial: 5s, max: 5m}        # backoff of a failing kit (defaults)
//! shutdownGracePeriod: 30s             # default
//! resyncInterval: 10m                  # full listing of applied objects for drift (default)
//! cacheDir: /var/cache/kitsync         # default $XDG_CACHE_HOME/kitsync
//! pluginLimits: {memoryMiB: 64, deadlineMs: 2000}   # ceilings: kitsync.yaml may only lower them
//! trustedPolicies:                     # run on every kit; no commit can remove them
//!   - name: no-privileged
//!     path: /etc/kitsync/no-privileged.wasm
//!     sha256: 0123...                  # 64 hex digits
//!     config: {}
//! listen:                              # each off unless set
//!   probes: 0.0.0.0:8080               #   /healthz, /readyz, /metrics
//!   webhooks: 0.0.0.0:9000             #   POST /hooks/<source>
//! webhookMaxBodyBytes: 1048576         # larger bodies get 413 (default 1 MiB)
//! webhookTimeout: 10s                  # slower senders get 408 (default 10s)
//! insecureWebhooks: false              # allow a webhook without a secret (default false)
//! leaderElection:                      # several replicas, one reconciling (default off)
//!   enabled: true                      #   Lease kitsync-leader in hostNamespace
//!   leaseDuration: 15s                 #   a follower takes over this long after the last renewal
//!   renewDeadline: 10s                 #   the leader stops writing this long after it (< leaseDuration)
//!   retryPeriod: 2s                    #   between tries (< renewDeadline)
//! sources:
//!   - name: gitops                     # DNS-1123 label, unique
//!     url: https://git.example.com/platform/gitops.git
//!     ref: main                        # branch, tag:T, semver:RANGE or commit:SHA
//!     interval: 1m                     # poll interval (default 1m), jittered by up to 10%
//!     path: clusters/prod              # directory holding kitsync.yaml (default: the root)
//!     timeout: 60s                     # one ref listing plus fetch (default 60s)
//!     credentials:                     # at most one of:
//!       tokenFile: /etc/kitsync/token  #   tokenFile | tokenEnv | username + passwordFile
//!                                      #   | sshKey + knownHosts
//!     webhook:                         # POST /hooks/gitops polls this source now
//!       provider: github               #   github | gitea | gitlab | generic
//!       secretFile: /etc/kitsync/webhook/secret   # or secretEnv: VAR
//!     writeBack:                       # off unless set
//!       notes: true                    #   a git note (refs/notes/kitsync) on each converged
//!                                      #   commit, pushed with the credentials above
//! alerts:                              # see crate::alert for the bodies and guarantees
//!   driftAlertAfter: 5m                # `drifted` only past this (0s: at once; default 5m)
//!   sinks:
//!     - name: ops                      # DNS-1123 label, unique
//!       type: webhook                  # generic JSON | slack
//!       urlFile: /etc/kitsync/alerts/ops-url   # or urlEnv: VAR, or url: (no credentials in it)
//!       secretFile: /etc/kitsync/alerts/ops-hmac   # optional: X-Kitsync-Signature (or secretEnv)
//!       events: [failed, recovered, converged]    # optional filter; default all
//! ```

use crate::kit::{self, Error, is_dns_label, normalize, parse_duration};
use crate::render::{Ceilings, TrustedPolicy};
use crate::source::{Auth, RefSpec, Secret};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The host configuration file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostFile {
    /// kitsync's own namespace: Kit objects and inventories; no kit may write there.
    pub host_namespace: Option<String>,
    /// Kits reconciled at once.
    pub concurrency: Option<usize>,
    /// Service account (in each kit's namespace) that kits without `serviceAccount` write as.
    pub default_service_account: Option<String>,
    /// Objects applied at once within a stage of one kit.
    pub apply_concurrency: Option<usize>,
    /// Backoff of a failing kit.
    #[serde(default)]
    pub retry: RetryFile,
    /// How long SIGTERM waits for reconciles in flight, e.g. `30s`.
    pub shutdown_grace_period: Option<String>,
    /// Cache directory for Git mirrors and compiled plugins.
    pub cache_dir: Option<PathBuf>,
    /// Plugin sandbox ceilings.
    #[serde(default)]
    pub plugin_limits: kit::PluginLimits,
    /// Policies that run on every kit.
    #[serde(default)]
    pub trusted_policies: Vec<TrustedFile>,
    /// The repositories to follow.
    #[serde(default)]
    pub sources: Vec<SourceFile>,
    /// Listen addresses (each off unless set).
    #[serde(default)]
    pub listen: ListenFile,
    /// Largest webhook body read, bytes (default 1 MiB).
    pub webhook_max_body_bytes: Option<usize>,
    /// Let webhooks without a secret trigger polls (warned at every start).
    pub insecure_webhooks: Option<bool>,
    /// How long a webhook sender may take to send a request, e.g. `10s`.
    pub webhook_timeout: Option<String>,
    /// Time between full listings of applied objects for drift, e.g. `10m`.
    pub resync_interval: Option<String>,
    /// Alert sinks.
    #[serde(default)]
    pub alerts: crate::alert::AlertsFile,
    /// Leader election among replicas (off unless `enabled: true`).
    pub leader_election: Option<super::leader::LeaderElectionFile>,
}

/// `listen:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenFile {
    /// Address of `/healthz`, `/readyz` and `/metrics`, e.g. `0.0.0.0:8080`.
    pub probes: Option<String>,
    /// Address of the webhook receiver, e.g. `0.0.0.0:9000`.
    pub webhooks: Option<String>,
}

/// A source's `webhook:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookFile {
    /// `github`, `gitea`, `gitlab` or `generic`.
    pub provider: Provider,
    /// A file holding the shared secret.
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding the shared secret.
    pub secret_env: Option<String>,
}

/// How a webhook call proves it knows the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// `X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body>`.
    Github,
    /// `X-Gitea-Signature: <HMAC-SHA256 of the body>`.
    Gitea,
    /// `X-Gitlab-Token: <the secret>`.
    Gitlab,
    /// `X-Kitsync-Signature: sha256=<HMAC-SHA256 of the body>`.
    Generic,
}

/// A source's webhook, resolved.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Signature scheme.
    pub provider: Provider,
    /// Where the shared secret is; `None` only with `insecureWebhooks: true`.
    pub secret: Option<Secret>,
}

/// `retry:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetryFile {
    /// First delay after a failure, e.g. `5s`.
    pub initial: Option<String>,
    /// Longest delay, e.g. `5m`.
    pub max: Option<String>,
}

/// One entry of `trustedPolicies:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedFile {
    /// Name for messages.
    pub name: String,
    /// The component on the host's disk.
    pub path: PathBuf,
    /// Its sha256 (64 hex digits, optional `sha256:` prefix).
    pub sha256: String,
    /// Its configuration.
    #[serde(default)]
    pub config: serde_json::Value,
}

impl TrustedFile {
    /// Reads the component and checks it against its pin; `check --trusted` and the host
    /// configuration both go through here, so a policy is never run unpinned.
    ///
    /// # Errors
    /// The file cannot be read, or its sha256 is not the pinned one (both digests named).
    pub fn load(self) -> Result<TrustedPolicy, String> {
        let bytes = std::fs::read(&self.path).map_err(|e| {
            format!(
                "trusted policy {}: cannot read {}: {e}",
                self.name,
                self.path.display()
            )
        })?;
        let want = self
            .sha256
            .strip_prefix("sha256:")
            .unwrap_or(&self.sha256)
            .to_ascii_lowercase();
        let got = crate::plugin::sha256_hex(&bytes);
        if want != got {
            return Err(format!(
                "trusted policy {}: {} has sha256 {got}, the config pins {want}",
                self.name,
                self.path.display()
            ));
        }
        Ok(TrustedPolicy {
            name: self.name,
            bytes: Arc::from(bytes),
            sha256: got,
            config: self.config,
        })
    }
}

/// One entry of `sources:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SourceFile {
    /// Source name.
    pub name: String,
    /// Git URL.
    pub url: String,
    /// Reference to follow.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// Poll interval.
    pub interval: Option<String>,
    /// Repository sub-directory holding kitsync.yaml and the kits.
    pub path: Option<String>,
    /// Network timeout of one poll.
    pub timeout: Option<String>,
    /// Credentials.
    #[serde(default)]
    pub credentials: CredentialsFile,
    /// A push webhook that makes this source poll at once.
    pub webhook: Option<WebhookFile>,
    /// What kitsync writes back to the repository (nothing unless set).
    #[serde(default)]
    pub write_back: WriteBack,
}

/// A source's `writeBack:`: records kitsync leaves in the source repository. Off by default;
/// each needs the source's credentials to have push rights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteBack {
    /// When a kit's revision converges, add a line to the git note of that commit in
    /// `refs/notes/kitsync` and push it ([`crate::source::Notes`]).
    #[serde(default)]
    pub notes: bool,
}

/// `credentials:` of a source; secrets come from files or variables, never inline.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredentialsFile {
    /// https: a file holding an access token.
    pub token_file: Option<PathBuf>,
    /// https: an environment variable holding an access token.
    pub token_env: Option<String>,
    /// https: basic-auth user name (with `passwordFile`).
    pub username: Option<String>,
    /// https: a file holding the basic-auth password.
    pub password_file: Option<PathBuf>,
    /// ssh: the private key file (with `knownHosts`).
    pub ssh_key: Option<PathBuf>,
    /// ssh: the known_hosts file.
    pub known_hosts: Option<PathBuf>,
}

/// A source, resolved.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// Name (DNS-1123 label), unique among sources.
    pub name: String,
    /// Git URL (may hold credentials: never print it unredacted).
    pub url: String,
    /// Reference to follow.
    pub reference: RefSpec,
    /// Poll interval.
    pub interval: Duration,
    /// Repository sub-directory holding kitsync.yaml (`""` for the root).
    pub path: String,
    /// Network timeout of one poll.
    pub timeout: Duration,
    /// Credentials.
    pub auth: Auth,
    /// Its push webhook, if any.
    pub webhook: Option<WebhookSettings>,
    /// What is written back to the repository.
    pub write_back: WriteBack,
}

/// The host configuration, resolved and checked.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// kitsync's own namespace.
    pub host_namespace: String,
    /// Kits reconciled at once (default 4).
    pub concurrency: usize,
    /// Service account that kits without their own write as (Flux's
    /// `--default-service-account`); `None`: such kits write as the host.
    pub default_service_account: Option<String>,
    /// Objects applied at once within a stage (default 8).
    pub apply_concurrency: usize,
    /// First retry delay of a failing kit (default 5 s).
    pub retry_initial: Duration,
    /// Longest retry delay (default 5 min).
    pub retry_max: Duration,
    /// How long SIGTERM waits for reconciles in flight (default 30 s).
    pub shutdown_grace: Duration,
    /// Git mirrors and compiled plugins (default `$XDG_CACHE_HOME/kitsync`).
    pub cache_dir: PathBuf,
    /// Plugin memory and deadline ceilings (default 64 MiB, 2 s); kitsync.yaml may only lower
    /// them.
    pub plugin_ceilings: Ceilings,
    /// Trusted policies, read and verified.
    pub trusted: Vec<TrustedPolicy>,
    /// The sources.
    pub sources: Vec<SourceSettings>,
    /// Address of the probes, if any.
    pub probes_listen: Option<std::net::SocketAddr>,
    /// Address of the webhook receiver, if any.
    pub webhooks_listen: Option<std::net::SocketAddr>,
    /// Largest webhook body read, bytes.
    pub webhook_max_body_bytes: usize,
    /// Webhooks without a secret are allowed (the operator said so).
    pub insecure_webhooks: bool,
    /// Longest time a webhook sender may take for its headers, and for its whole request
    /// (default 10 s); slower senders get 408.
    pub webhook_timeout: Duration,
    /// Time between full listings of every applied kind for drift detection, which catch
    /// what a watch missed (default 10 min).
    pub resync_interval: Duration,
    /// Alert sinks (default none) and the drift alert delay.
    pub alerts: crate::alert::AlertSettings,
    /// Leader election among replicas; `None`: off, this process always reconciles.
    pub leader_election: Option<super::leader::LeaderElection>,
}

pub(super) fn invalid(file: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        file: file.to_owned(),
        message: message.into(),
    }
}

/// Longest interval, timeout or delay the host config may set: longer values are typos, and
/// would overflow the clock arithmetic they feed.
const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

pub(super) fn duration(
    file: &str,
    field: &str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, Error> {
    let Some(t) = text else { return Ok(default) };
    let parsed = parse_duration(t).filter(|d| !d.is_zero()).ok_or_else(|| {
        invalid(
            file,
            format!("{field}: {t:?} is not a duration like 30s, 5m or 1h"),
        )
    })?;
    if parsed > MAX_DURATION {
        return Err(invalid(file, format!("{field}: {t:?} is longer than 30 days")));
    }
    Ok(parsed)
}

/// `$XDG_CACHE_HOME/kitsync` or `~/.cache/kitsync`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("kitsync"))
}

impl HostConfig {
    /// Reads and checks the host configuration file at `path`.
    ///
    /// # Errors
    /// The file cannot be read, does not parse (located by line), or a value is wrong (an
    /// unknown ref form, a bad duration, a trusted policy whose digest does not match).
    pub fn load(path: &Path) -> Result<HostConfig, Error> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| invalid(&shown, format!("cannot read: {e}")))?;
        let file: HostFile = kit::parse_yaml(&shown, &bytes)?;
        Self::resolve(&shown, file)
    }

    /// Checks a parsed file; `name` is used in errors.
    ///
    /// # Errors
    /// As [`HostConfig::load`].
    pub fn resolve(name: &str, file: HostFile) -> Result<HostConfig, Error> {
        let host_namespace = file.host_namespace.unwrap_or_else(|| "kitsync-system".into());
        if !is_dns_label(&host_namespace) {
            return Err(invalid(
                name,
                format!("hostNamespace {host_namespace:?} is not a valid namespace name"),
            ));
        }
        let positive = |field: &str, v: Option<usize>, default: usize| match v {
            Some(0) => Err(invalid(name, format!("{field} must be at least 1"))),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let concurrency = positive("concurrency", file.concurrency, 4)?;
        let default_service_account = match file.default_service_account {
            Some(sa) if !is_dns_label(&sa) && !sa.contains('.') => {
                return Err(invalid(
                    name,
                    format!("defaultServiceAccount {sa:?} is not a valid service account name"),
                ));
            }
            other => other.filter(|sa| !sa.is_empty()),
        };
        let apply_concurrency = positive("applyConcurrency", file.apply_concurrency, 8)?;
        let retry_initial = duration(
            name,
            "retry.initial",
            file.retry.initial.as_deref(),
            Duration::from_secs(5),
        )?;
        let retry_max = duration(
            name,
            "retry.max",
            file.retry.max.as_deref(),
            Duration::from_secs(300),
        )?;
        if retry_max < retry_initial {
            return Err(invalid(name, "retry.max is shorter than retry.initial"));
        }
        let shutdown_grace = duration(
            name,
            "shutdownGracePeriod",
            file.shutdown_grace_period.as_deref(),
            Duration::from_secs(30),
        )?;
        let webhook_timeout = duration(
            name,
            "webhookTimeout",
            file.webhook_timeout.as_deref(),
            super::http::DEFAULT_TIMEOUT,
        )?;
        let resync_interval = duration(
            name,
            "resyncInterval",
            file.resync_interval.as_deref(),
            Duration::from_secs(600),
        )?;
        let leader_election = super::leader::LeaderElection::resolve(name, file.leader_election)?;
        let cache_dir = match file.cache_dir {
            Some(dir) => dir,
            None => default_cache_dir()
                .ok_or_else(|| invalid(name, "cacheDir is not set and neither XDG_CACHE_HOME nor HOME is"))?,
        };
        let defaults = Ceilings::default();
        let plugin_ceilings = Ceilings::new(
            file.plugin_limits.memory_mib.unwrap_or(defaults.memory_mib()),
            file.plugin_limits
                .deadline_ms
                .unwrap_or_else(|| u64::try_from(defaults.deadline().as_millis()).unwrap_or(u64::MAX)),
        )
        .map_err(|e| invalid(name, format!("pluginLimits: {e}")))?;

        let trusted = file
            .trusted_policies
            .into_iter()
            .map(|policy| policy.load().map_err(|e| invalid(name, e)))
            .collect::<Result<Vec<_>, _>>()?;

        let insecure_webhooks = file.insecure_webhooks.unwrap_or(false);
        let address = |field: &str, text: Option<String>| -> Result<Option<std::net::SocketAddr>, Error> {
            text.map(|t| {
                t.parse().map_err(|_| {
                    invalid(
                        name,
                        format!("listen.{field}: {t:?} is not an address like 0.0.0.0:8080"),
                    )
                })
            })
            .transpose()
        };
        let alerts = file.alerts.resolve(name)?;
        let probes_listen = address("probes", file.listen.probes)?;
        let webhooks_listen = address("webhooks", file.listen.webhooks)?;
        let mut sources: Vec<SourceSettings> = Vec::new();
        for source in file.sources {
            let resolved = resolve_source(name, source, insecure_webhooks)?;
            if sources.iter().any(|s| s.name == resolved.name) {
                return Err(invalid(name, format!("two sources are named {}", resolved.name)));
            }
            sources.push(resolved);
        }
        if sources.is_empty() {
            return Err(invalid(
                name,
                "no sources: list at least one under `sources:` (or run `kitsync serve --source URL`)",
            ));
        }
        Ok(HostConfig {
            host_namespace,
            concurrency,
            default_service_account,
            apply_concurrency,
            retry_initial,
            retry_max,
            shutdown_grace,
            cache_dir,
            plugin_ceilings,
            trusted,
            sources,
            probes_listen,
            webhooks_listen,
            webhook_max_body_bytes: file.webhook_max_body_bytes.unwrap_or(1 << 20),
            insecure_webhooks,
            webhook_timeout,
            resync_interval,
            alerts,
            leader_election,
        })
    }
}

fn resolve_source(file: &str, source: SourceFile, insecure_webhooks: bool) -> Result<SourceSettings, Error> {
    let name = source.name;
    if !is_dns_label(&name) {
        return Err(invalid(
            file,
            format!("source name {name:?} must be a DNS-1123 label (lowercase letters, digits, '-')"),
        ));
    }
    let reference_text = source.reference.unwrap_or_else(|| "main".into());
    let reference = RefSpec::parse(&reference_text)
        .map_err(|e| invalid(file, format!("source {name}: ref {reference_text:?}: {e}")))?;
    let interval = duration(
        file,
        &format!("source {name}: interval"),
        source.interval.as_deref(),
        Duration::from_secs(60),
    )?;
    let timeout = duration(
        file,
        &format!("source {name}: timeout"),
        source.timeout.as_deref(),
        Duration::from_secs(60),
    )?;
    let path = match source.path.as_deref().map(|p| p.trim_matches('/')) {
        None | Some("") | Some(".") => String::new(),
        Some(p) => normalize("", p).map_err(|e| invalid(file, format!("source {name}: path: {e}")))?,
    };
    let c = source.credentials;
    let auth = match (
        c.token_file,
        c.token_env,
        c.username,
        c.password_file,
        c.ssh_key,
        c.known_hosts,
    ) {
        (None, None, None, None, None, None) => Auth::None,
        (Some(f), None, None, None, None, None) => Auth::Token {
            token: Secret::File(f),
        },
        (None, Some(v), None, None, None, None) => Auth::Token {
            token: Secret::Env(v),
        },
        (None, None, Some(username), Some(f), None, None) => Auth::Basic {
            username,
            password: Secret::File(f),
        },
        (None, None, None, None, Some(key_file), Some(known_hosts_file)) => Auth::SshKey {
            key_file,
            known_hosts_file,
        },
        _ => {
            return Err(invalid(
                file,
                format!(
                    "source {name}: credentials: give exactly one of tokenFile, tokenEnv, username with passwordFile, or sshKey with knownHosts"
                ),
            ));
        }
    };
    let webhook = match source.webhook {
        None => None,
        Some(hook) => {
            let secret = match (hook.secret_file, hook.secret_env) {
                (Some(f), None) => Some(Secret::File(f)),
                (None, Some(v)) => Some(Secret::Env(v)),
                (None, None) if insecure_webhooks => None,
                (None, None) => {
                    return Err(invalid(
                        file,
                        format!(
                            "source {name}: webhook has no secret: set secretFile or secretEnv (or insecureWebhooks: true, which lets anyone trigger polls)"
                        ),
                    ));
                }
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        file,
                        format!("source {name}: webhook: give secretFile or secretEnv, not both"),
                    ));
                }
            };
            Some(WebhookSettings {
                provider: hook.provider,
                secret,
            })
        }
    };
    Ok(SourceSettings {
        webhook,
        write_back: source.write_back,
        name,
        url: source.url,
        reference,
        interval,
        path,
        timeout,
        auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HostConfig, Error> {
        let file: HostFile = kit::parse_yaml("host.yaml", text.as_bytes())?;
        HostConfig::resolve("host.yaml", file)
    }

    #[test]
    fn defaults_fill_a_minimal_file() {
        let config = parse("sources:\n  - name: gitops\n    url: file:///repo\n").expect("valid");
        assert_eq!(config.host_namespace, "kitsync-system");
        assert_eq!(config.concurrency, 4);
        assert_eq!(config.sources[0].interval, Duration::from_secs(60));
        assert_eq!(config.sources[0].reference, RefSpec::parse("main").expect("ref"));
        assert_eq!(config.plugin_ceilings, Ceilings::default());
        assert!(
            !config.sources[0].write_back.notes,
            "write-back is off by default"
        );
    }

    #[test]
    fn write_back_notes_is_a_source_option() {
        let config =
            parse("sources:\n  - name: gitops\n    url: file:///repo\n    writeBack: {notes: true}\n")
                .expect("valid");
        assert!(config.sources[0].write_back.notes);
        let err = parse("sources:\n  - name: gitops\n    url: file:///repo\n    writeBack: {note: true}\n")
            .expect_err("typo");
        assert!(err.to_string().starts_with("host.yaml:4:"), "{err}");
    }

    #[test]
    fn unknown_fields_and_types_are_located() {
        let err = parse("sources:\n  - name: gitops\n    url: file:///repo\n    intervall: 1m\n")
            .expect_err("unknown field");
        assert!(err.to_string().starts_with("host.yaml:4:"), "{err}");
        assert!(err.to_string().contains("intervall"), "{err}");
        let err = parse("concurrency: many\nsources: []\n").expect_err("wrong type");
        assert!(err.to_string().starts_with("host.yaml:1:"), "{err}");
    }

    #[test]
    fn alerts_are_read_from_the_host_file() {
        let config = parse(
            "sources:\n  - {name: a, url: x}\nalerts:\n  driftAlertAfter: 0s\n  sinks:\n    - {name: chat, type: slack, urlEnv: SLACK_URL}\n",
        )
        .expect("valid");
        assert_eq!(config.alerts.drift_alert_after, Duration::ZERO);
        assert_eq!(config.alerts.sinks[0].name, "chat");
        let err = parse("sources:\n  - {name: a, url: x}\nalerts:\n  sinks:\n    - {name: chat, type: slack, urlEnv: U, url: y}\n")
            .expect_err("two URLs");
        assert!(
            err.to_string().starts_with("host.yaml: alerts sink chat:"),
            "{err}"
        );
        let err = parse("sources:\n  - {name: a, url: x}\nalerts:\n  sink: []\n").expect_err("typo");
        assert!(err.to_string().starts_with("host.yaml:4:"), "{err}");
    }

    #[test]
    fn wrong_values_say_what_is_wrong() {
        let cases = [
            ("sources: []\n", "no sources"),
            ("sources:\n  - {name: Git_Ops, url: x}\n", "DNS-1123"),
            ("sources:\n  - {name: a, url: x, interval: soon}\n", "interval"),
            (
                "sources:\n  - {name: a, url: x, interval: 800h}\n",
                "longer than 30 days",
            ),
            (
                "sources:\n  - {name: a, url: x, path: ../up}\n",
                "leaves the repository",
            ),
            (
                "sources:\n  - {name: a, url: x}\n  - {name: a, url: y}\n",
                "two sources",
            ),
            (
                "sources:\n  - {name: a, url: x, credentials: {tokenFile: /t, tokenEnv: T}}\n",
                "exactly one",
            ),
            ("concurrency: 0\nsources:\n  - {name: a, url: x}\n", "at least 1"),
            (
                "pluginLimits: {memoryMiB: 4096}\nsources:\n  - {name: a, url: x}\n",
                "hard maximum of 1024 MiB",
            ),
            (
                "trustedPolicies:\n  - {name: p, path: /nonexistent.wasm, sha256: abc}\nsources:\n  - {name: a, url: x}\n",
                "cannot read",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
