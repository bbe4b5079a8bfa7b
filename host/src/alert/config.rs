//! The `alerts:` part of the host configuration: the sinks as written, and resolved.
//!
//! Errors are [`kit::Error`]s like the rest of the host file's: a wrong type or unknown field
//! is located by line and column (by the YAML parser), a wrong value by file. No error and no
//! `Debug` output holds a sink's URL or signing key: only where they are (file, variable).

use super::{Event, EventSet};
use crate::kit::{self, is_dns_label, parse_duration};
use crate::source::Secret;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How long a drift lasts before a `drifted` alert, unless `driftAlertAfter` says otherwise.
pub const DEFAULT_DRIFT_ALERT_AFTER: Duration = Duration::from_secs(5 * 60);

/// Longest `driftAlertAfter`: longer values are typos.
const MAX_DRIFT_ALERT_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// `alerts:` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AlertsFile {
    /// How long a drift must last before a `drifted` alert, e.g. `5m`; `0s`: at once.
    pub drift_alert_after: Option<String>,
    /// Where alerts go.
    #[serde(default)]
    pub sinks: Vec<SinkFile>,
}

/// One entry of `alerts.sinks:` as written.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SinkFile {
    /// Name (DNS-1123 label), unique among sinks; the `sink` label of metrics and logs.
    pub name: String,
    /// `webhook` or `slack`.
    #[serde(rename = "type")]
    pub kind: SinkKind,
    /// The URL inline: only for URLs that hold no credential or token.
    pub url: Option<String>,
    /// A file holding the URL.
    pub url_file: Option<PathBuf>,
    /// An environment variable holding the URL.
    pub url_env: Option<String>,
    /// A file holding the HMAC key (webhook sinks).
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding the HMAC key (webhook sinks).
    pub secret_env: Option<String>,
    /// The events sent to this sink (default: all).
    pub events: Option<Vec<Event>>,
}

// `url:` is meant to hold no secret, but an operator may still put one there: never print it.
impl fmt::Debug for SinkFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkFile")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url.as_ref().map(|_| crate::redact::REDACTED))
            .field("url_file", &self.url_file)
            .field("url_env", &self.url_env)
            .field("secret_file", &self.secret_file)
            .field("secret_env", &self.secret_env)
            .field("events", &self.events)
            .finish()
    }
}

/// What a sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// `POST` of the alert as JSON, optionally signed (`X-Kitsync-Signature`).
    Webhook,
    /// A Slack-compatible incoming webhook: `POST {"text": "..."}`.
    Slack,
}

impl SinkKind {
    /// The word used in the config and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::Slack => "slack",
        }
    }
}

/// Where a sink's URL is.
#[derive(Clone, PartialEq, Eq)]
pub enum UrlSource {
    /// Written in the host file (checked to hold no user info and no query).
    Inline(String),
    /// In a file or a variable, read when the [`Alerter`](super::Alerter) starts.
    Secret(Secret),
}

// The URL is a bearer secret for Slack (and for most webhook receivers): show only where it is.
impl fmt::Debug for UrlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlSource::Inline(_) => write!(f, "Inline({})", crate::redact::REDACTED),
            UrlSource::Secret(secret) => write!(f, "{secret:?}"),
        }
    }
}

/// A sink, resolved.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// Name (DNS-1123 label), unique.
    pub name: String,
    /// What the sink speaks.
    pub kind: SinkKind,
    /// Where its URL is.
    pub url: UrlSource,
    /// Where its HMAC key is (webhook sinks only).
    pub secret: Option<Secret>,
    /// The events it gets.
    pub events: EventSet,
}

/// `alerts:`, resolved. The default has no sinks: no alert goes anywhere.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// How long a drift lasts before a `drifted` alert; zero: at once (default 5 min).
    pub drift_alert_after: Duration,
    /// The sinks.
    pub sinks: Vec<SinkSettings>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            drift_alert_after: DEFAULT_DRIFT_ALERT_AFTER,
            sinks: Vec::new(),
        }
    }
}

fn invalid(file: &str, message: impl Into<String>) -> kit::Error {
    kit::Error::Invalid {
        file: file.to_owned(),
        message: message.into(),
    }
}

impl AlertsFile {
    /// Checks the parsed `alerts:`; `file` names the host file in errors.
    ///
    /// # Errors
    /// [`kit::Error::Invalid`] naming the field: a bad duration, a sink name that is not a
    /// DNS label or is used twice, no URL or more than one, an inline URL with credentials
    /// (or any inline Slack URL), a key on a Slack sink, an empty event list.
    pub fn resolve(self, file: &str) -> Result<AlertSettings, kit::Error> {
        let drift_alert_after = match self.drift_alert_after.as_deref() {
            None => DEFAULT_DRIFT_ALERT_AFTER,
            Some(text) => parse_duration(text)
                .filter(|d| *d <= MAX_DRIFT_ALERT_AFTER)
                .ok_or_else(|| {
                    invalid(
                        file,
                        format!(
                            "alerts.driftAlertAfter: {text:?} is not a duration like 0s, 5m or 1h (at most 7 days)"
                        ),
                    )
                })?,
        };
        let mut sinks: Vec<SinkSettings> = Vec::new();
        for sink in self.sinks {
            let resolved = resolve_sink(file, sink)?;
            if sinks.iter().any(|s| s.name == resolved.name) {
                return Err(invalid(
                    file,
                    format!("alerts.sinks: two sinks are named {}", resolved.name),
                ));
            }
            sinks.push(resolved);
        }
        Ok(AlertSettings {
            drift_alert_after,
            sinks,
        })
    }
}

fn resolve_sink(file: &str, sink: SinkFile) -> Result<SinkSettings, kit::Error> {
    let name = sink.name;
    if !is_dns_label(&name) {
        return Err(invalid(
            file,
            format!("alerts.sinks: name {name:?} must be a DNS-1123 label (lowercase letters, digits, '-')"),
        ));
    }
    let at = |message: String| invalid(file, format!("alerts sink {name}: {message}"));
    let url = match (sink.url, sink.url_file, sink.url_env) {
        (Some(url), None, None) => {
            check_inline_url(sink.kind, &url).map_err(|m| at(m.into()))?;
            UrlSource::Inline(url)
        }
        (None, Some(path), None) => UrlSource::Secret(Secret::File(path)),
        (None, None, Some(var)) => UrlSource::Secret(Secret::Env(var)),
        _ => return Err(at("give exactly one of urlFile, urlEnv or url".into())),
    };
    let secret = match (sink.secret_file, sink.secret_env) {
        (None, None) => None,
        (Some(_), Some(_)) => return Err(at("give secretFile or secretEnv, not both".into())),
        _ if sink.kind == SinkKind::Slack => {
            return Err(at(
                "a slack sink is not signed: secretFile and secretEnv are for webhook sinks".into(),
            ));
        }
        (Some(path), None) => Some(Secret::File(path)),
        (None, Some(var)) => Some(Secret::Env(var)),
    };
    let events = match sink.events {
        None => EventSet::ALL,
        Some(list) if list.is_empty() => {
            return Err(at("events is empty: omit it to send every event".into()));
        }
        Some(list) => list.into_iter().collect(),
    };
    Ok(SinkSettings {
        name,
        kind: sink.kind,
        url,
        secret,
        events,
    })
}

/// Refuses inline URLs that are, or may hide, credentials. The message never quotes the URL.
fn check_inline_url(kind: SinkKind, url: &str) -> Result<(), &'static str> {
    if kind == SinkKind::Slack {
        // The path of a Slack incoming webhook is its token.
        return Err("a Slack webhook URL is a secret: put it in urlFile or urlEnv, not url");
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| "url is not an absolute http(s) URL")?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("url must be http or https");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url holds credentials: put it in urlFile or urlEnv, not url");
    }
    if parsed.query().is_some() {
        // Tokens often travel as query parameters (`?token=`, `?code=`).
        return Err("url has a query, which may hold a token: put it in urlFile or urlEnv, not url");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AlertSettings, kit::Error> {
        let file: AlertsFile = kit::parse_yaml("host.yaml", text.as_bytes())?;
        file.resolve("host.yaml")
    }

    #[test]
    fn the_documented_example_resolves() {
        let settings = parse(
            "driftAlertAfter: 5m\n\
             sinks:\n\
             \x20 - name: ops\n\
             \x20   type: webhook\n\
             \x20   urlFile: /etc/kitsync/alerts/ops-url\n\
             \x20   secretFile: /etc/kitsync/alerts/ops-hmac\n\
             \x20   events: [failed, recovered, converged]\n\
             \x20 - name: chat\n\
             \x20   type: slack\n\
             \x20   urlEnv: SLACK_WEBHOOK_URL\n\
             \x20 - name: plain\n\
             \x20   type: webhook\n\
             \x20   url: https://alerts.example.com/kitsync\n",
        )
        .expect("valid");
        assert_eq!(settings.drift_alert_after, Duration::from_secs(300));
        let [ops, chat, plain] = &settings.sinks[..] else {
            panic!("three sinks: {settings:?}");
        };
        assert_eq!(ops.kind, SinkKind::Webhook);
        assert_eq!(
            ops.url,
            UrlSource::Secret(Secret::File("/etc/kitsync/alerts/ops-url".into()))
        );
        assert!(ops.secret.is_some());
        assert!(ops.events.contains(Event::Failed));
        assert!(!ops.events.contains(Event::Applied));
        assert_eq!(chat.kind, SinkKind::Slack);
        assert_eq!(chat.events, EventSet::ALL);
        assert_eq!(
            plain.url,
            UrlSource::Inline("https://alerts.example.com/kitsync".into())
        );
    }

    #[test]
    fn defaults_and_zero_delay() {
        let settings = parse("{}").expect("empty alerts");
        assert_eq!(settings.drift_alert_after, DEFAULT_DRIFT_ALERT_AFTER);
        assert!(settings.sinks.is_empty());
        let settings = parse("driftAlertAfter: 0s").expect("zero");
        assert_eq!(settings.drift_alert_after, Duration::ZERO);
    }

    #[test]
    fn unknown_fields_types_and_events_are_located_by_line() {
        let cases = [
            (
                "sinks:\n  - name: a\n    type: webhook\n    urlFile: /u\n    sekret: x\n",
                "host.yaml:5:",
            ),
            (
                "sinks:\n  - name: a\n    type: teams\n    urlFile: /u\n",
                "host.yaml:3:",
            ),
            (
                "sinks:\n  - name: a\n    type: webhook\n    urlFile: /u\n    events: [failed, exploded]\n",
                "host.yaml:5:",
            ),
            ("driftAlertAfter: [5m]\n", "host.yaml:1:"),
            ("retries: 3\n", "host.yaml:1:"),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.starts_with(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn wrong_values_name_the_file_and_the_sink() {
        let cases = [
            ("driftAlertAfter: soon\n", "alerts.driftAlertAfter"),
            ("driftAlertAfter: 800h\n", "at most 7 days"),
            (
                "sinks:\n  - {name: Ops, type: webhook, urlFile: /u}\n",
                "DNS-1123",
            ),
            (
                "sinks:\n  - {name: a, type: webhook, urlFile: /u}\n  - {name: a, type: slack, urlEnv: U}\n",
                "two sinks are named a",
            ),
            (
                "sinks:\n  - {name: a, type: webhook}\n",
                "sink a: give exactly one",
            ),
            (
                "sinks:\n  - {name: a, type: webhook, urlFile: /u, urlEnv: U}\n",
                "give exactly one",
            ),
            (
                "sinks:\n  - {name: a, type: webhook, urlFile: /u, secretFile: /k, secretEnv: K}\n",
                "not both",
            ),
            (
                "sinks:\n  - {name: a, type: slack, urlEnv: U, secretEnv: K}\n",
                "not signed",
            ),
            (
                "sinks:\n  - {name: a, type: webhook, urlFile: /u, events: []}\n",
                "events is empty",
            ),
            (
                "sinks:\n  - {name: a, type: slack, url: 'https://hooks.slack.com/services/T0/B0/XYZSECRET'}\n",
                "is a secret",
            ),
            (
                "sinks:\n  - {name: a, type: webhook, url: 'https://bob:XYZSECRET@example.com/'}\n",
                "holds credentials",
            ),
            (
                "sinks:\n  - {name: a, type: webhook, url: 'https://example.com/?token=XYZSECRET'}\n",
                "has a query",
            ),
            (
                "sinks:\n  - {name: a, type: webhook, url: 'ftp://example.com/XYZSECRET'}\n",
                "http or https",
            ),
            (
                "sinks:\n  - {name: a, type: webhook, url: 'XYZSECRET'}\n",
                "not an absolute",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.starts_with("host.yaml: "), "{text:?}: {err}");
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains("XYZSECRET"), "the URL leaked: {err}");
        }
    }

    #[test]
    fn debug_output_names_where_secrets_are_never_what_they_are() {
        let file: AlertsFile = kit::parse_yaml(
            "host.yaml",
            b"sinks:\n  - {name: a, type: webhook, url: 'https://example.com/XYZSECRET'}\n",
        )
        .expect("parses");
        let shown = format!("{file:?}");
        assert!(!shown.contains("XYZSECRET"), "{shown}");
        let settings = file.resolve("host.yaml").expect("valid");
        let shown = format!("{settings:?}");
        assert!(!shown.contains("XYZSECRET"), "{shown}");
        assert!(shown.contains("Inline(<redacted>)"), "{shown}");
        let settings = parse("sinks:\n  - {name: a, type: slack, urlEnv: SLACK_URL}\n").expect("valid");
        assert!(format!("{settings:?}").contains("Env(SLACK_URL)"));
    }
}
