//! `config` is forwarding's configuration: the `remote_write` list of a Prometheus config file in
//! Prometheus's own shape (the same field names and defaults; an unsupported field is an error
//! naming it), resolved into [`Destination`]s ready to send to.

use crate::error::ConfigError;
use crate::relabel::{RelabelConfig, Relabeler};
use crate::scrape_config::{opt_duration, Auth, Authorization, BasicAuth, TlsConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Prometheus's defaults for a destination.
pub const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_SAMPLES_PER_SEND: usize = 2000;
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(30);
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Largest `max_samples_per_send` accepted (a request of this many samples is a few MiB).
pub const MAX_SAMPLES_PER_SEND: usize = 100_000;
/// Longest a `Retry-After` is waited, whatever the destination asks.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// One `remote_write` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    pub url: String,
    /// Names the destination in self-metrics and its position file; defaults to a hash of the URL.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub remote_timeout: Option<Duration>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub write_relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub authorization: Option<Authorization>,
    /// OAuth 2.0 client credentials (see [`crate::oauth2`]).
    #[serde(default)]
    pub oauth2: Option<crate::oauth2::OAuth2Config>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_config: Option<TlsConfig>,
    #[serde(default)]
    pub queue_config: QueueConfig,
    /// `prometheus.WriteRequest` (1.0, the default) or `io.prometheus.write.v2.Request` (2.0).
    #[serde(default)]
    pub protobuf_message: Option<String>,
    /// Accepted so a Prometheus file loads: Ringtail stores no exemplars or native histograms,
    /// so there are none to send.
    #[serde(default)]
    pub send_exemplars: bool,
    #[serde(default)]
    pub send_native_histograms: bool,
    /// Accepted and ignored: Ringtail keeps no metric metadata to send.
    #[serde(default)]
    pub metadata_config: Option<serde_yaml::Value>,
    /// Follow redirects (at most 10); Prometheus's default is to follow.
    #[serde(default)]
    pub follow_redirects: Option<bool>,
    /// Accepted, either value: Ringtail sends over HTTP/1.1 (as Prometheus with `false`).
    #[serde(default)]
    pub enable_http2: Option<bool>,
}

/// `queue_config`. Ringtail's queue is on disk (a share of the storage budget), so `capacity` has
/// no meaning here, and it sends from one shard per destination (`min_shards`/`max_shards` are
/// accepted): series stay in order without per-series sharding.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    #[serde(default)]
    pub capacity: Option<u64>,
    #[serde(default)]
    pub max_shards: Option<u64>,
    #[serde(default)]
    pub min_shards: Option<u64>,
    #[serde(default)]
    pub max_samples_per_send: Option<usize>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub batch_send_deadline: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub min_backoff: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub max_backoff: Option<Duration>,
    #[serde(default)]
    pub retry_on_http_429: Option<bool>,
    /// Samples older than this when their turn comes are dropped (counted), not sent; 0 = never.
    #[serde(default, deserialize_with = "opt_duration")]
    pub sample_age_limit: Option<Duration>,
}

/// Which message a destination is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireVersion {
    V1,
    V2,
}

/// A destination with every default resolved.
#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    pub url: reqwest::Url,
    pub timeout: Duration,
    pub headers: Vec<(String, String)>,
    pub auth: Auth,
    pub tls: TlsConfig,
    pub relabel: Relabeler,
    pub max_samples_per_send: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub retry_on_429: bool,
    pub sample_age_limit: Option<Duration>,
    pub wire: WireVersion,
    /// Follow redirects (at most 10).
    pub follow_redirects: bool,
}

/// Headers a destination may not set: the sender owns them (as in Prometheus).
const RESERVED_HEADERS: [&str; 6] = [
    "authorization",
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "x-prometheus-remote-write-version",
];

impl Destination {
    /// Reads the `remote_write` list (YAML as written) into destinations; names must be unique.
    pub fn resolve_all(value: &serde_yaml::Value) -> Result<Vec<Destination>, ConfigError> {
        let configs: Vec<RemoteWriteConfig> =
            serde_yaml::from_value(value.clone()).map_err(|e| ConfigError::Yaml(format!("remote_write: {e}")))?;
        let mut destinations: Vec<Destination> = Vec::with_capacity(configs.len());
        for config in &configs {
            let destination = Destination::resolve(config)?;
            if destinations.iter().any(|d| d.name == destination.name) {
                return Err(ConfigError::Forward {
                    destination: destination.name,
                    message: "two remote_write entries have this name (or URL): give each its own `name`".into(),
                });
            }
            destinations.push(destination);
        }
        Ok(destinations)
    }

    fn resolve(config: &RemoteWriteConfig) -> Result<Destination, ConfigError> {
        let name = config.name.clone().unwrap_or_else(|| default_name(&config.url));
        let invalid = |message: String| ConfigError::Forward { destination: name.clone(), message };
        let url =
            reqwest::Url::parse(&config.url).map_err(|e| invalid(format!("invalid url {:?}: {e}", config.url)))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(invalid(format!("url scheme must be http or https, not {:?}", url.scheme())));
        }
        if name.is_empty() {
            return Err(invalid("name must not be empty".into()));
        }
        let mut headers = Vec::with_capacity(config.headers.len());
        for (header, value) in &config.headers {
            if RESERVED_HEADERS.contains(&header.to_ascii_lowercase().as_str()) {
                return Err(invalid(format!("header {header:?} is set by the sender and cannot be configured")));
            }
            reqwest::header::HeaderName::from_bytes(header.as_bytes())
                .map_err(|e| invalid(format!("header name {header:?}: {e}")))?;
            reqwest::header::HeaderValue::from_str(value)
                .map_err(|e| invalid(format!("header {header:?} value: {e}")))?;
            headers.push((header.clone(), value.clone()));
        }
        let auth = Auth::resolve(
            config.basic_auth.as_ref(),
            config.authorization.as_ref(),
            config.oauth2.as_ref(),
            config.bearer_token.as_ref(),
            config.bearer_token_file.as_ref(),
        )
        .map_err(invalid)?;
        let relabel = Relabeler::new(&config.write_relabel_configs).map_err(|e| invalid(e.to_string()))?;
        let queue = &config.queue_config;
        let max_samples_per_send = queue.max_samples_per_send.unwrap_or(DEFAULT_MAX_SAMPLES_PER_SEND);
        if max_samples_per_send == 0 || max_samples_per_send > MAX_SAMPLES_PER_SEND {
            return Err(invalid(format!(
                "queue_config.max_samples_per_send must be between 1 and {MAX_SAMPLES_PER_SEND}, not {max_samples_per_send}"
            )));
        }
        let min_backoff = queue.min_backoff.unwrap_or(DEFAULT_MIN_BACKOFF);
        let max_backoff = queue.max_backoff.unwrap_or(DEFAULT_MAX_BACKOFF);
        if min_backoff.is_zero() || min_backoff > max_backoff {
            return Err(invalid(format!(
                "queue_config: min_backoff ({min_backoff:?}) must be > 0 and at most max_backoff ({max_backoff:?})"
            )));
        }
        let timeout = config.remote_timeout.unwrap_or(DEFAULT_REMOTE_TIMEOUT);
        if timeout.is_zero() {
            return Err(invalid("remote_timeout must be > 0".into()));
        }
        let wire = match config.protobuf_message.as_deref() {
            None | Some("prometheus.WriteRequest") => WireVersion::V1,
            Some("io.prometheus.write.v2.Request") => WireVersion::V2,
            Some(other) => {
                return Err(invalid(format!(
                    "protobuf_message {other:?}: use prometheus.WriteRequest or io.prometheus.write.v2.Request"
                )))
            }
        };
        Ok(Destination {
            name: name.clone(),
            url,
            timeout,
            headers,
            auth,
            tls: config.tls_config.clone().unwrap_or_default(),
            relabel,
            max_samples_per_send,
            min_backoff,
            max_backoff,
            retry_on_429: queue.retry_on_http_429.unwrap_or(true),
            sample_age_limit: queue.sample_age_limit.filter(|d| !d.is_zero()),
            wire,
            follow_redirects: config.follow_redirects.unwrap_or(true),
        })
    }
}

/// The first 6 hex digits of the URL's MD5, as a stable default name.
fn default_name(url: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(url.as_bytes()).iter().take(3).map(|b| format!("{b:02x}")).collect()
}

/// `global.external_labels` with `${VAR}` / `$VAR` replaced by the environment (Prometheus's
/// `expand-external-labels`), so every replica of a StatefulSet can read the same file and still
/// name itself (`replica: ${POD_NAME}`). An unset variable expands to the empty string, and a
/// label whose value ends up empty is left out.
pub fn expand_external_labels(
    labels: &BTreeMap<String, String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut expanded = Vec::with_capacity(labels.len());
    for (name, value) in labels {
        if name.is_empty() || name.starts_with("__") {
            return Err(ConfigError::Yaml(format!(
                "global.external_labels: {name:?} is not a valid label name for an external label"
            )));
        }
        let value = expand_env(value, &env);
        if !value.is_empty() {
            expanded.push((name.clone(), value));
        }
    }
    Ok(expanded)
}

fn expand_env(text: &str, env: &impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(braced) = after.strip_prefix('{') {
            if let Some(end) = braced.find('}') {
                out.push_str(&env(&braced[..end]).unwrap_or_default());
                rest = &braced[end + 1..];
                continue;
            }
        }
        let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
        if end == 0 {
            out.push('$');
        } else {
            out.push_str(&env(&after[..end]).unwrap_or_default());
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(yaml: &str) -> Result<Vec<Destination>, ConfigError> {
        Destination::resolve_all(&serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn a_prometheus_remote_write_section_resolves_with_its_defaults() {
        let all = resolve(
            "- url: http://vm:8428/api/v1/write\n\
             - url: https://mimir/api/v1/push\n  name: mimir\n  remote_timeout: 5s\n  headers: {X-Scope-OrgID: team-a}\n\
             \x20 bearer_token_file: /var/run/token\n  queue_config: {max_samples_per_send: 500, min_backoff: 100ms, \
             max_backoff: 10s, capacity: 10000, max_shards: 50}\n  write_relabel_configs:\n  - source_labels: [__name__]\n\
             \x20   regex: go_.*\n    action: drop\n  protobuf_message: io.prometheus.write.v2.Request\n\
             \x20 follow_redirects: false\n  enable_http2: true\n",
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].name.len(), 6);
        assert_eq!(all[0].timeout, DEFAULT_REMOTE_TIMEOUT);
        assert_eq!((all[0].max_samples_per_send, all[0].wire), (DEFAULT_MAX_SAMPLES_PER_SEND, WireVersion::V1));
        let mimir = &all[1];
        assert_eq!(mimir.name, "mimir");
        assert_eq!(mimir.headers, vec![("X-Scope-OrgID".to_string(), "team-a".to_string())]);
        assert!(matches!(&mimir.auth, Auth::Authorization { kind, .. } if kind == "Bearer"));
        assert_eq!((mimir.max_samples_per_send, mimir.min_backoff), (500, Duration::from_millis(100)));
        assert_eq!(mimir.wire, WireVersion::V2);
        assert!(!mimir.relabel.is_empty());
        assert!(all[0].follow_redirects && !mimir.follow_redirects, "Prometheus's default follows redirects");
    }

    #[test]
    fn bad_entries_are_errors_naming_the_field() {
        for (yaml, expected) in [
            ("- url: http://a\n  sigv4: {region: x}\n", "sigv4"),
            ("- url: ftp://a\n", "scheme"),
            ("- url: http://a\n  headers: {Authorization: x}\n", "set by the sender"),
            ("- url: http://a\n  queue_config: {max_samples_per_send: 0}\n", "max_samples_per_send"),
            ("- url: http://a\n- url: http://a\n", "name"),
            ("- url: http://a\n  basic_auth: {username: u}\n  bearer_token: t\n", "at most one"),
            ("- url: http://a\n  protobuf_message: v3\n", "protobuf_message"),
            ("- url: http://a\n  queue_config: {min_backoff: 10s, max_backoff: 1s}\n", "min_backoff"),
        ] {
            let err = resolve(yaml).unwrap_err().to_string();
            assert!(err.contains(expected), "{yaml}: {err}");
        }
    }

    #[test]
    fn external_labels_expand_the_environment() {
        let labels: BTreeMap<String, String> = [
            ("replica".to_string(), "${POD_NAME}".to_string()),
            ("cluster".to_string(), "eu-$REGION-1".to_string()),
            ("unset".to_string(), "${NOPE}".to_string()),
            ("price".to_string(), "5$".to_string()),
        ]
        .into();
        let env = |name: &str| match name {
            "POD_NAME" => Some("ringtail-0".to_string()),
            "REGION" => Some("west".to_string()),
            _ => None,
        };
        let expanded = expand_external_labels(&labels, env).unwrap();
        assert_eq!(
            expanded,
            vec![
                ("cluster".to_string(), "eu-west-1".to_string()),
                ("price".to_string(), "5$".to_string()),
                ("replica".to_string(), "ringtail-0".to_string()),
            ]
        );
        let bad: BTreeMap<String, String> = [("__x".to_string(), "y".to_string())].into();
        assert!(expand_external_labels(&bad, |_| None).is_err());
    }
}
