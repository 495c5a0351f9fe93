//! `scrape_config` is the scraper's configuration in Prometheus' own `global` / `scrape_configs`
//! YAML shape (a real subset: the same field names, defaults and rules; an unsupported field is an
//! error naming it, never silently ignored), resolved into [`Job`]s ready to run.

use crate::error::ConfigError;
use crate::relabel::{RelabelConfig, Relabeler};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Prometheus' defaults: scrape every minute, time out after 10 s.
pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `global` block: the scraper's defaults, plus `evaluation_interval` (the recording rules'
/// default interval, read by the binary) and `external_labels` (added to `/federate` answers, as
/// Prometheus; samples are stored without them).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    #[serde(default, deserialize_with = "opt_duration")]
    pub scrape_interval: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub scrape_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub evaluation_interval: Option<Duration>,
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub sample_limit: Option<u64>,
    #[serde(default, deserialize_with = "opt_bytes")]
    pub body_size_limit: Option<u64>,
    #[serde(default)]
    pub label_limit: Option<u64>,
    #[serde(default)]
    pub label_name_length_limit: Option<u64>,
    #[serde(default)]
    pub label_value_length_limit: Option<u64>,
    #[serde(default)]
    pub target_limit: Option<u64>,
    /// Accepted so a newer Prometheus file loads; Ringtail's scrape Accept header is fixed.
    #[serde(default, deserialize_with = "scrape_protocols")]
    pub scrape_protocols: Option<Vec<String>>,
    /// Accepted so a prometheus.yml loads; Ringtail keeps no query log (the binary says so in a
    /// warning at start).
    #[serde(default)]
    pub query_log_file: Option<String>,
}

/// A set of targets sharing labels: a `static_configs` entry, or a group discovery hands over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetGroup {
    /// `host:port` addresses.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels added to every target of the group (may include `__`-prefixed meta labels, which
    /// relabeling can read and which are dropped afterwards).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `basic_auth`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// `authorization` (type defaults to `Bearer`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    #[serde(default = "default_auth_type", rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub credentials: Option<String>,
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

fn default_auth_type() -> String {
    "Bearer".to_string()
}

/// `tls_config`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) presented to the server, with `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Verify the server's certificate for this name rather than the address connected to.
    #[serde(default)]
    pub server_name: Option<String>,
    /// `TLS10`..`TLS13` (this client speaks 1.2 and 1.3).
    #[serde(default)]
    pub min_version: Option<String>,
    #[serde(default)]
    pub max_version: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl TlsConfig {
    /// Puts these settings on an HTTP client being built: the CA (added to the public roots),
    /// the client certificate and key, `insecure_skip_verify`, and — through a rustls
    /// configuration of Ringtail's own — `server_name`, `min_version` and `max_version`.
    pub(crate) fn apply(&self, builder: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, String> {
        if crate::tls_client::needs_custom(self) {
            return Ok(builder.use_preconfigured_tls(crate::tls_client::client_config(self)?));
        }
        let read = |path: &PathBuf| std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
        let mut builder = builder.danger_accept_invalid_certs(self.insecure_skip_verify);
        if let Some(ca_file) = &self.ca_file {
            let certificate = reqwest::Certificate::from_pem(&read(ca_file)?)
                .map_err(|e| format!("ca_file {}: {e}", ca_file.display()))?;
            builder = builder.add_root_certificate(certificate);
        }
        match (&self.cert_file, &self.key_file) {
            (None, None) => {}
            (Some(cert_file), Some(key_file)) => {
                let mut pem = read(cert_file)?;
                pem.push(b'\n');
                pem.extend_from_slice(&read(key_file)?);
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| format!("cert_file {} / key_file {}: {e}", cert_file.display(), key_file.display()))?;
                builder = builder.identity(identity);
            }
            _ => return Err("tls_config needs both cert_file and key_file, or neither".into()),
        }
        Ok(builder)
    }
}

/// A client builder with Prometheus's HTTP client settings, shared by scrape jobs, HTTP discovery
/// and OAuth 2.0 token endpoints: `follow_redirects` (at most 10 hops, or none), `proxy_url` (no
/// proxy when unset, whatever the environment says) and `tls`.
pub(crate) fn client_builder(
    user_agent: &str,
    follow_redirects: bool,
    proxy_url: Option<&str>,
    tls: &TlsConfig,
) -> Result<reqwest::ClientBuilder, String> {
    let redirects =
        if follow_redirects { reqwest::redirect::Policy::limited(10) } else { reqwest::redirect::Policy::none() };
    let builder = reqwest::Client::builder().user_agent(user_agent).redirect(redirects);
    let builder = match proxy_url {
        Some(proxy) => builder.proxy(reqwest::Proxy::all(proxy).map_err(|e| format!("proxy_url {proxy:?}: {e}"))?),
        None => builder.no_proxy(),
    };
    tls.apply(builder)
}

/// One `kubernetes_sd_configs` entry. The scraper itself does not watch Kubernetes (that needs a
/// cluster client, which the binary owns); it keeps these so the binary can start discovery per
/// job and hand the targets over with `ScrapeManager::set_target_groups`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSdConfig {
    /// `pod`, `service`, `endpoints`, `endpointslice`, `node` or `ingress`.
    pub role: String,
    #[serde(default)]
    pub namespaces: Option<NamespaceDiscovery>,
    /// Label and field selectors the watches of each object kind are made with (the API server
    /// filters: `field: status.phase=Running` for pods, `label: app=web`).
    #[serde(default)]
    pub selectors: Vec<RoleSelector>,
    /// `attach_metadata: {node: true}`: targets of roles pod, endpoints and endpointslice also
    /// get their node's name and labels (`__meta_kubernetes_node_name`, `_node_label_*`).
    #[serde(default)]
    pub attach_metadata: AttachMetadata,
}

/// `attach_metadata:` of a `kubernetes_sd_configs` entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachMetadata {
    #[serde(default)]
    pub node: bool,
}

/// One `selectors` entry of a `kubernetes_sd_configs` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSelector {
    /// Which watched kind it filters: the discovery role itself, or for role `endpoints` also
    /// `pod` and `service`.
    pub role: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub field: Option<String>,
}

impl KubernetesSdConfig {
    /// The kinds a role watches, so the roles its `selectors` may name.
    pub fn watched_kinds(role: &str) -> &'static [&'static str] {
        match role {
            "pod" => &["pod"],
            "service" => &["service"],
            "endpoints" => &["endpoints", "pod", "service"],
            "endpointslice" => &["endpointslice", "pod", "service"],
            "node" => &["node"],
            "ingress" => &["ingress"],
            _ => &[],
        }
    }

    /// The selector for watched kind `kind`, if one is given.
    pub fn selector_for(&self, kind: &str) -> Option<&RoleSelector> {
        self.selectors.iter().find(|s| s.role == kind)
    }
}

/// `namespaces:` of a `kubernetes_sd_configs` entry; no entry (or an empty one) means all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceDiscovery {
    #[serde(default)]
    pub names: Vec<String>,
    /// Also watch the namespace Ringtail runs in.
    #[serde(default)]
    pub own_namespace: bool,
}

/// Prometheus's default `refresh_interval` of `file_sd_configs`.
pub const DEFAULT_FILE_SD_REFRESH_INTERVAL: Duration = Duration::from_secs(300);

/// One `file_sd_configs` entry: files of target groups, re-read when they change (the scraper
/// polls them, see `file_sd`) and at least every `refresh_interval`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// Paths ending in `.json`, `.yml` or `.yaml`, with `*` and `?` allowed in the file name only
    /// (as Prometheus); a relative path is relative to the config file's directory.
    pub files: Vec<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub refresh_interval: Option<Duration>,
}

impl FileSdConfig {
    /// Checks each pattern as Prometheus does (`^[^*]*(\*[^/]*)?\.(json|yml|yaml)$`, any case of
    /// the extension).
    fn validate(&self) -> Result<(), String> {
        for pattern in &self.files {
            let (dir, name) = pattern.rsplit_once('/').unwrap_or(("", pattern));
            let extension_ok = name
                .rsplit_once('.')
                .is_some_and(|(_, ext)| matches!(ext, "json" | "yml" | "yaml" | "JSON" | "YML" | "YAML"));
            if !extension_ok || dir.contains(['*', '?', '[']) {
                return Err(format!("path name {pattern:?} is not valid for file discovery"));
            }
        }
        if self.refresh_interval.is_some_and(|r| r.is_zero()) {
            return Err("file_sd_configs refresh_interval must be > 0".into());
        }
        Ok(())
    }
}

/// Prometheus's default `refresh_interval` of `http_sd_configs`.
pub const DEFAULT_HTTP_SD_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// One `http_sd_configs` entry: a URL answering a JSON list of target groups, asked every
/// `refresh_interval` (see `http_sd`), with Prometheus's HTTP client settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSdConfig {
    pub url: String,
    #[serde(default, deserialize_with = "opt_duration")]
    pub refresh_interval: Option<Duration>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub authorization: Option<Authorization>,
    #[serde(default)]
    pub oauth2: Option<crate::oauth2::OAuth2Config>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_config: Option<TlsConfig>,
    #[serde(default)]
    pub proxy_url: Option<String>,
    #[serde(default = "default_true")]
    pub follow_redirects: bool,
    /// Accepted, either value, as for a scrape job (HTTP/1.1 is used).
    #[serde(default = "default_true")]
    pub enable_http2: bool,
}

impl HttpSdConfig {
    /// Checks the entry as Prometheus does.
    pub(crate) fn validate(&self) -> Result<(), String> {
        match reqwest::Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {}
            Ok(_) => return Err(format!("http_sd_configs url {:?}: URL scheme must be 'http' or 'https'", self.url)),
            Err(e) => return Err(format!("http_sd_configs url {:?}: {e}", self.url)),
        }
        if self.refresh_interval.is_some_and(|r| r.is_zero()) {
            return Err("http_sd_configs refresh_interval must be > 0".into());
        }
        if let Some(proxy_url) = &self.proxy_url {
            check_proxy_url(proxy_url)?;
        }
        self.auth().map(|_| ())
    }

    /// The entry's authentication.
    pub(crate) fn auth(&self) -> Result<Auth, String> {
        Auth::resolve(
            self.basic_auth.as_ref(),
            self.authorization.as_ref(),
            self.oauth2.as_ref(),
            self.bearer_token.as_ref(),
            self.bearer_token_file.as_ref(),
        )
    }
}

/// The roles `kubernetes_sd_configs` supports here.
pub const KUBERNETES_SD_ROLES: [&str; 6] = ["pod", "service", "endpoints", "endpointslice", "node", "ingress"];

/// One `scrape_configs` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    pub job_name: String,
    #[serde(default, deserialize_with = "opt_duration")]
    pub scrape_interval: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub scrape_timeout: Option<Duration>,
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    #[serde(default = "default_scheme")]
    pub scheme: String,
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub static_configs: Vec<TargetGroup>,
    /// Targets discovered from the Kubernetes API (started by the binary when a cluster is set).
    #[serde(default)]
    pub kubernetes_sd_configs: Vec<KubernetesSdConfig>,
    /// Targets read from files (run by the [`crate::ScrapeManager`] itself).
    #[serde(default)]
    pub file_sd_configs: Vec<FileSdConfig>,
    /// Targets asked of HTTP endpoints (run by the [`crate::ScrapeManager`] itself).
    #[serde(default)]
    pub http_sd_configs: Vec<HttpSdConfig>,
    #[serde(default)]
    pub honor_labels: bool,
    #[serde(default = "default_true")]
    pub honor_timestamps: bool,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub authorization: Option<Authorization>,
    /// OAuth 2.0 client credentials (see [`crate::oauth2`]).
    #[serde(default)]
    pub oauth2: Option<crate::oauth2::OAuth2Config>,
    /// Legacy spelling of `authorization: {credentials: …}`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_config: Option<TlsConfig>,
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// Most samples (after metric relabeling) one scrape may return; more fails the scrape. 0 = no
    /// limit.
    #[serde(default)]
    pub sample_limit: Option<u64>,
    /// Largest uncompressed body accepted, e.g. `10MB`; more fails the scrape. 0 = no limit.
    #[serde(default, deserialize_with = "opt_bytes")]
    pub body_size_limit: Option<u64>,
    /// Most labels a new series may have (after metric relabeling); more fails the scrape. 0 =
    /// no limit.
    #[serde(default)]
    pub label_limit: Option<u64>,
    /// Longest label name of a new series; longer fails the scrape. 0 = no limit.
    #[serde(default)]
    pub label_name_length_limit: Option<u64>,
    /// Longest label value of a new series; longer fails the scrape. 0 = no limit.
    #[serde(default)]
    pub label_value_length_limit: Option<u64>,
    /// Most targets the job may have after relabeling; past it every target of the job fails
    /// its scrapes (`up` 0) until the count is back under. 0 = no limit.
    #[serde(default)]
    pub target_limit: Option<u64>,
    /// Accepted so a newer Prometheus file loads; Ringtail's scrape Accept header is fixed.
    #[serde(default, deserialize_with = "scrape_protocols")]
    pub scrape_protocols: Option<Vec<String>>,
    /// Follow HTTP redirects (at most 10, as Prometheus); when false a redirect fails the scrape
    /// with its status.
    #[serde(default = "default_true")]
    pub follow_redirects: bool,
    /// Accepted, either value, so a file Prometheus wrote loads: Ringtail scrapes over HTTP/1.1,
    /// which every exporter serves, as Prometheus does with `enable_http2: false`.
    #[serde(default = "default_true")]
    pub enable_http2: bool,
    /// An `http://` or `https://` proxy every scrape of the job goes through (HTTPS targets
    /// through a `CONNECT` tunnel). Unset: no proxy, whatever the environment says.
    #[serde(default)]
    pub proxy_url: Option<String>,
}

/// The protocols Prometheus names in `scrape_protocols`.
const SCRAPE_PROTOCOLS: [&str; 5] =
    ["PrometheusProto", "OpenMetricsText0.0.1", "OpenMetricsText1.0.0", "PrometheusText0.0.4", "PrometheusText1.0.0"];

fn scrape_protocols<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let protocols: Option<Vec<String>> = Option::deserialize(d)?;
    for protocol in protocols.iter().flatten() {
        if !SCRAPE_PROTOCOLS.contains(&protocol.as_str()) {
            return Err(serde::de::Error::custom(format!(
                "unknown scrape protocol {protocol:?} (one of {})",
                SCRAPE_PROTOCOLS.join(", ")
            )));
        }
    }
    Ok(protocols)
}

fn default_metrics_path() -> String {
    "/metrics".to_string()
}
fn default_scheme() -> String {
    "http".to_string()
}
fn default_true() -> bool {
    true
}

/// The whole scraper configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfigs {
    #[serde(default)]
    pub global: GlobalConfig,
    #[serde(default)]
    pub scrape_configs: Vec<ScrapeConfig>,
}

impl ScrapeConfigs {
    /// Parses a Prometheus-style file holding `global` and `scrape_configs`.
    pub fn from_yaml(text: &str) -> Result<ScrapeConfigs, ConfigError> {
        serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))
    }

    /// Builds the configuration from the two YAML values of Ringtail's own config file.
    pub fn from_values(
        global: Option<&serde_yaml::Value>,
        scrape_configs: Option<&serde_yaml::Value>,
    ) -> Result<ScrapeConfigs, ConfigError> {
        let global = match global {
            Some(v) => serde_yaml::from_value(v.clone()).map_err(|e| ConfigError::Yaml(format!("global: {e}")))?,
            None => GlobalConfig::default(),
        };
        let scrape_configs = match scrape_configs {
            Some(v) if !v.is_null() => {
                serde_yaml::from_value(v.clone()).map_err(|e| ConfigError::Yaml(format!("scrape_configs: {e}")))?
            }
            _ => Vec::new(),
        };
        Ok(ScrapeConfigs { global, scrape_configs })
    }

    /// Resolves defaults and compiles every job; job names must be unique.
    pub fn resolve(&self) -> Result<Vec<Job>, ConfigError> {
        let mut jobs: Vec<Job> = Vec::with_capacity(self.scrape_configs.len());
        for config in &self.scrape_configs {
            if jobs.iter().any(|j| j.name == config.job_name) {
                return Err(invalid(&config.job_name, "job_name is used twice"));
            }
            jobs.push(Job::resolve(config, &self.global)?);
        }
        Ok(jobs)
    }
}

/// How a job authenticates (secrets in files are read at every scrape, so rotation just works).
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    None,
    Basic {
        username: String,
        password: Option<String>,
        password_file: Option<PathBuf>,
    },
    Authorization {
        kind: String,
        credentials: Option<String>,
        credentials_file: Option<PathBuf>,
    },
    /// `oauth2`: client credentials exchanged for a token, kept until it expires.
    OAuth2(std::sync::Arc<crate::oauth2::TokenSource>),
}

impl Auth {
    /// The one authentication `basic_auth`, `authorization`, `oauth2` and `bearer_token(_file)`
    /// name (at most one of them may be set).
    pub(crate) fn resolve(
        basic_auth: Option<&BasicAuth>,
        authorization: Option<&Authorization>,
        oauth2: Option<&crate::oauth2::OAuth2Config>,
        bearer_token: Option<&String>,
        bearer_token_file: Option<&PathBuf>,
    ) -> Result<Auth, String> {
        let bearer = bearer_token.is_some() || bearer_token_file.is_some();
        let set = [basic_auth.is_some(), authorization.is_some(), oauth2.is_some(), bearer];
        if set.iter().filter(|b| **b).count() > 1 {
            return Err("at most one of basic_auth, authorization, oauth2 and bearer_token(_file) may be set".into());
        }
        Ok(if let Some(oauth2) = oauth2 {
            Auth::OAuth2(std::sync::Arc::new(crate::oauth2::TokenSource::new(oauth2)?))
        } else if let Some(basic) = basic_auth {
            Auth::Basic {
                username: basic.username.clone(),
                password: basic.password.clone(),
                password_file: basic.password_file.clone(),
            }
        } else if let Some(a) = authorization {
            Auth::Authorization {
                kind: a.kind.clone(),
                credentials: a.credentials.clone(),
                credentials_file: a.credentials_file.clone(),
            }
        } else if bearer {
            Auth::Authorization {
                kind: "Bearer".into(),
                credentials: bearer_token.cloned(),
                credentials_file: bearer_token_file.cloned(),
            }
        } else {
            Auth::None
        })
    }

    /// Puts the credentials on a request (files are read now, so a rotated secret is used at
    /// once; an OAuth 2.0 token is asked for when there is none fresh).
    pub(crate) async fn apply(&self, request: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, String> {
        Ok(match self {
            Auth::OAuth2(source) => request.header(reqwest::header::AUTHORIZATION, source.authorization().await?),
            Auth::None => request,
            Auth::Basic { username, password, password_file } => {
                let password = match password_file {
                    Some(path) => Some(read_secret(path)?),
                    None => password.clone(),
                };
                request.basic_auth(username, password)
            }
            Auth::Authorization { kind, credentials, credentials_file } => {
                let credentials = match credentials_file {
                    Some(path) => read_secret(path)?,
                    None => credentials.clone().unwrap_or_default(),
                };
                request.header(reqwest::header::AUTHORIZATION, format!("{kind} {credentials}"))
            }
        })
    }
}

pub(crate) fn read_secret(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A job with every default resolved and its relabel rules compiled.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub metrics_path: String,
    pub scheme: String,
    pub params: BTreeMap<String, Vec<String>>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub auth: Auth,
    pub tls: TlsConfig,
    pub relabel: Relabeler,
    pub metric_relabel: Relabeler,
    /// 0 = no limit.
    pub sample_limit: u64,
    /// 0 = no limit.
    pub body_size_limit_bytes: u64,
    /// Prometheus's per-job label limits on new series and its target limit; 0 = no limit.
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    pub target_limit: u64,
    /// Follow redirects (at most 10).
    pub follow_redirects: bool,
    /// The proxy scrapes go through, checked to be an `http` or `https` URL.
    pub proxy_url: Option<String>,
    pub static_groups: Vec<TargetGroup>,
    /// `file_sd_configs` as written (validated).
    pub file_sd: Vec<FileSdConfig>,
    /// `http_sd_configs` as written (validated).
    pub http_sd: Vec<HttpSdConfig>,
    /// Text identifying the settings; a target whose job fingerprint changes is restarted.
    pub fingerprint: String,
}

fn invalid(job: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { job: job.to_string(), message: message.into() }
}

impl Job {
    fn resolve(config: &ScrapeConfig, global: &GlobalConfig) -> Result<Job, ConfigError> {
        let name = &config.job_name;
        if name.is_empty() {
            return Err(invalid(name, "job_name must not be empty"));
        }
        for sd in &config.kubernetes_sd_configs {
            if !KUBERNETES_SD_ROLES.contains(&sd.role.as_str()) {
                return Err(invalid(
                    name,
                    format!(
                        "kubernetes_sd_configs role {:?} is not supported (use {})",
                        sd.role,
                        KUBERNETES_SD_ROLES.join(", ")
                    ),
                ));
            }
            let kinds = KubernetesSdConfig::watched_kinds(&sd.role);
            for (index, selector) in sd.selectors.iter().enumerate() {
                if !kinds.contains(&selector.role.as_str()) {
                    return Err(invalid(
                        name,
                        format!(
                            "kubernetes_sd_configs role {:?}: a selector for role {:?} (it watches {})",
                            sd.role,
                            selector.role,
                            kinds.join(", ")
                        ),
                    ));
                }
                if sd.selectors[..index].iter().any(|s| s.role == selector.role) {
                    return Err(invalid(name, format!("two selectors for role {:?}", selector.role)));
                }
            }
        }
        for sd in &config.file_sd_configs {
            sd.validate().map_err(|message| invalid(name, message))?;
        }
        for sd in &config.http_sd_configs {
            sd.validate().map_err(|message| invalid(name, message))?;
        }
        let interval = config.scrape_interval.or(global.scrape_interval).unwrap_or(DEFAULT_SCRAPE_INTERVAL);
        if interval.is_zero() {
            return Err(invalid(name, "scrape_interval must be > 0"));
        }
        // As Prometheus: an unset timeout is the global one, capped to the job's interval.
        let timeout = match config.scrape_timeout {
            Some(t) => t,
            None => global.scrape_timeout.unwrap_or(DEFAULT_SCRAPE_TIMEOUT).min(interval),
        };
        if timeout > interval {
            return Err(invalid(
                name,
                format!("scrape_timeout {timeout:?} is greater than scrape_interval {interval:?}"),
            ));
        }
        if config.scheme != "http" && config.scheme != "https" {
            return Err(invalid(name, format!("scheme must be http or https, not {:?}", config.scheme)));
        }
        let auth = Auth::resolve(
            config.basic_auth.as_ref(),
            config.authorization.as_ref(),
            config.oauth2.as_ref(),
            config.bearer_token.as_ref(),
            config.bearer_token_file.as_ref(),
        )
        .map_err(|message| invalid(name, message))?;
        if let Some(proxy_url) = &config.proxy_url {
            check_proxy_url(proxy_url).map_err(|message| invalid(name, message))?;
        }
        let relabel = Relabeler::new(&config.relabel_configs).map_err(|e| invalid(name, e.to_string()))?;
        let metric_relabel =
            Relabeler::new(&config.metric_relabel_configs).map_err(|e| invalid(name, e.to_string()))?;
        Ok(Job {
            name: name.clone(),
            interval,
            timeout,
            metrics_path: config.metrics_path.clone(),
            scheme: config.scheme.clone(),
            params: config.params.clone(),
            honor_labels: config.honor_labels,
            honor_timestamps: config.honor_timestamps,
            auth,
            tls: config.tls_config.clone().unwrap_or_default(),
            relabel,
            metric_relabel,
            sample_limit: config.sample_limit.or(global.sample_limit).unwrap_or(0),
            body_size_limit_bytes: config.body_size_limit.or(global.body_size_limit).unwrap_or(0),
            label_limit: config.label_limit.or(global.label_limit).unwrap_or(0),
            label_name_length_limit: config.label_name_length_limit.or(global.label_name_length_limit).unwrap_or(0),
            label_value_length_limit: config.label_value_length_limit.or(global.label_value_length_limit).unwrap_or(0),
            target_limit: config.target_limit.or(global.target_limit).unwrap_or(0),
            follow_redirects: config.follow_redirects,
            proxy_url: config.proxy_url.clone(),
            static_groups: config.static_configs.clone(),
            file_sd: config.file_sd_configs.clone(),
            http_sd: config.http_sd_configs.clone(),
            fingerprint: format!("{config:?}|{interval:?}|{timeout:?}"),
        })
    }
}

/// A `proxy_url` the scrape client can use: an absolute `http://` or `https://` URL with a host.
fn check_proxy_url(proxy_url: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(proxy_url).map_err(|e| format!("proxy_url {proxy_url:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("proxy_url {proxy_url:?}: must be an http:// or https:// URL with a host"));
    }
    Ok(())
}

pub(crate) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| {
        humantime::parse_duration(&t).map_err(|e| serde::de::Error::custom(format!("invalid duration {t:?}: {e}")))
    })
    .transpose()
}

fn opt_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Number(n)) => Ok(Some(n)),
        Some(Raw::Text(t)) => parse_base2_bytes(&t).map(Some).map_err(serde::de::Error::custom),
    }
}

/// Parses a size as Prometheus' `body_size_limit` does: a number with an optional base-2 unit
/// (`B`, `KB`/`KiB`, `MB`/`MiB`, `GB`/`GiB`, `TB`/`TiB`; `KB` means 1024 bytes).
pub fn parse_base2_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().map_err(|_| format!("invalid size {text:?}"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KB" | "KiB" => 10,
        "MB" | "MiB" => 20,
        "GB" | "GiB" => 30,
        "TB" | "TiB" => 40,
        other => return Err(format!("invalid size unit {other:?} in {text:?}")),
    };
    number.checked_mul(1u64 << shift).ok_or_else(|| format!("size {text:?} overflows"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMETHEUS_STYLE: &str = r#"
global:
  scrape_interval: 15s
  scrape_timeout: 5s
  evaluation_interval: 30s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['127.0.0.1:9100', '127.0.0.1:9101']
        labels: {env: test}
    params:
      module: [http_2xx]
    honor_labels: true
    basic_auth: {username: u, password: p}
    tls_config: {insecure_skip_verify: true}
    relabel_configs:
      - source_labels: [__address__]
        target_label: instance
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: 'go_.*'
        action: drop
    sample_limit: 1000
    body_size_limit: 10MB
    label_limit: 30
    target_limit: 5
    scrape_protocols: [OpenMetricsText1.0.0, PrometheusText0.0.4]
  - job_name: fast
    scrape_interval: 2s
    metrics_path: /custom
    authorization: {credentials: secret}
    static_configs: [{targets: ['127.0.0.1:1']}]
"#;

    #[test]
    fn prometheus_shaped_file_resolves_with_defaults() {
        let jobs = ScrapeConfigs::from_yaml(PROMETHEUS_STYLE).unwrap().resolve().unwrap();
        assert_eq!(jobs.len(), 2);
        let node = &jobs[0];
        assert_eq!((node.interval, node.timeout), (Duration::from_secs(15), Duration::from_secs(5)));
        assert_eq!(node.body_size_limit_bytes, 10 << 20);
        assert_eq!(node.sample_limit, 1000);
        assert_eq!((node.label_limit, node.target_limit, node.label_value_length_limit), (30, 5, 0));
        assert!(node.honor_labels && node.honor_timestamps && node.tls.insecure_skip_verify);
        assert_eq!(node.static_groups[0].targets.len(), 2);
        let fast = &jobs[1];
        assert_eq!((fast.interval, fast.timeout), (Duration::from_secs(2), Duration::from_secs(2)));
        assert_eq!(fast.metrics_path, "/custom");
        assert!(matches!(&fast.auth, Auth::Authorization { kind, .. } if kind == "Bearer"));
        assert!(node.follow_redirects && node.proxy_url.is_none(), "Prometheus's defaults: follow, no proxy");
    }

    #[test]
    fn http_client_settings_as_prometheus_writes_them() {
        let yaml = r#"
scrape_configs:
- job_name: a
  follow_redirects: false
  enable_http2: true
  proxy_url: http://proxy.example:3128
  static_configs: [{targets: ['x:1']}]
- job_name: b
  follow_redirects: true
  enable_http2: false
"#;
        let jobs = ScrapeConfigs::from_yaml(yaml).unwrap().resolve().unwrap();
        assert!(!jobs[0].follow_redirects);
        assert_eq!(jobs[0].proxy_url.as_deref(), Some("http://proxy.example:3128"));
        assert!(jobs[1].follow_redirects && jobs[1].proxy_url.is_none());
        assert_ne!(jobs[0].fingerprint, jobs[1].fingerprint, "a changed client setting restarts the job's targets");
    }

    #[test]
    fn errors_name_the_problem() {
        for (yaml, expected) in [
            ("scrape_configs: [{job_name: a, scrape_intervall: 1s}]", "scrape_intervall"),
            ("scrape_configs: [{job_name: a, scrape_interval: 1s, scrape_timeout: 2s}]", "greater than"),
            ("scrape_configs: [{job_name: a}, {job_name: a}]", "twice"),
            ("scrape_configs: [{job_name: a, scheme: ftp}]", "scheme"),
            ("scrape_configs: [{job_name: a, scrape_interval: soon}]", "invalid duration"),
            ("scrape_configs: [{job_name: a, kubernetes_sd_configs: [{role: ingres}]}]", "role \"ingres\""),
            ("scrape_configs: [{job_name: a, kubernetes_sd_configs: [{role: pod, attach_metadata: {nodes: true}}]}]", "nodes"),
            ("scrape_configs: [{job_name: a, kubernetes_sd_configs: [{role: pod, selectors: [{role: node}]}]}]", "selector for role \"node\""),
            (
                "scrape_configs: [{job_name: a, kubernetes_sd_configs: [{role: endpoints, selectors: [{role: pod}, {role: pod}]}]}]",
                "two selectors",
            ),
            ("scrape_configs: [{job_name: a, kubernetes_sd_configs: [{role: pod, selectors: [{role: pod, labels: x}]}]}]", "labels"),
            ("scrape_configs: [{job_name: a, file_sd_configs: [{files: [targets.txt]}]}]", "not valid for file discovery"),
            ("scrape_configs: [{job_name: a, file_sd_configs: [{files: ['*/t.json']}]}]", "not valid for file discovery"),
            ("scrape_configs: [{job_name: a, file_sd_configs: [{files: [t.json], refresh: 1s}]}]", "refresh"),
            ("scrape_configs: [{job_name: a, proxy_url: 'socks5://127.0.0.1:1080'}]", "http:// or https://"),
            ("scrape_configs: [{job_name: a, proxy_url: 'proxy:3128'}]", "proxy_url"),
            ("scrape_configs: [{job_name: a, proxy_url: 'not a url'}]", "proxy_url"),
            ("scrape_configs: [{job_name: a, follow_redirects: sometimes}]", "follow_redirects"),
            ("scrape_configs: [{job_name: a, oauth2: {client_id: x}}]", "oauth2 token_url must be configured"),
            ("scrape_configs: [{job_name: a, oauth2: {client_id: x, token_url: 'http://t'}, bearer_token: y}]", "at most one"),
        ] {
            let err = ScrapeConfigs::from_yaml(yaml).and_then(|c| c.resolve().map(|_| ())).unwrap_err().to_string();
            assert!(err.contains(expected), "{yaml}: {err}");
        }
    }

    #[test]
    fn kubernetes_sd_configs_are_kept_for_the_binary() {
        let yaml = "scrape_configs:\n- job_name: pods\n  kubernetes_sd_configs:\n  - role: pod\n    namespaces: {names: [web, ml]}\n";
        let configs = ScrapeConfigs::from_yaml(yaml).unwrap();
        configs.resolve().unwrap();
        let sd = &configs.scrape_configs[0].kubernetes_sd_configs;
        assert_eq!(sd[0].role, "pod");
        assert_eq!(sd[0].namespaces.as_ref().unwrap().names, vec!["web", "ml"]);
    }

    #[test]
    fn base2_sizes() {
        assert_eq!(parse_base2_bytes("512").unwrap(), 512);
        assert_eq!(parse_base2_bytes("1KB").unwrap(), 1024);
        assert_eq!(parse_base2_bytes("3MiB").unwrap(), 3 << 20);
        assert!(parse_base2_bytes("1XB").is_err());
    }
}
