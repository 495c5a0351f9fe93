//! The metrics adapter: `custom.metrics.k8s.io` (v1beta1, v1beta2) and
//! `external.metrics.k8s.io` (v1beta1) served over TLS from the store, configured with
//! prometheus-adapter's rule format, so an HPA reads metrics from Ringtail as it reads them from
//! prometheus-adapter — with no Prometheus and no HTTP hop: rendered queries run in-process.
//!
//! Map:
//! - `config` — the prometheus-adapter file format (unknown keys are errors, by path), and the
//!   embedded default rules.
//! - `template` — the Go `text/template` subset with `<<`/`>>` delimiters those files use.
//! - `selector` — Kubernetes label selectors (`labelSelector`, `metricLabelSelector`).
//! - `naming` — a rule compiled: series query, filters, naming, resource labels, query building.
//! - `resources` — `ObjectResolver`, the one trait between the adapter and Kubernetes objects
//!   (RESTMapper-like normalization, label-selector resolution, owners), and its standalone
//!   implementation; the Kubernetes integration plugs in a watched-cache implementation.
//! - `discovery` — which metrics exist now, from the store's series (no relist interval).
//! - `provider` — metric + objects → values; pure logic, no HTTP.
//! - `quantity` — `resource.Quantity` formatting, exactly as Go prints it.
//! - `k8s_types` — the JSON objects of the APIs (discovery, MetricValueList, Status, …).
//! - `auth` — `Authenticator`: standalone bearer tokens; the cluster's authn/authz plug in here.
//! - `routes` — the axum routes, the only place errors become HTTP statuses.
//! - `value_list_json` — the custom-metrics `MetricValueList` written as JSON bytes directly
//!   (the hottest response: shared parts escaped once per list).
//! - `tls` — the rustls listener (HTTP/1.1 and HTTP/2), certificates reloaded when their files
//!   change, a self-signed pair and CA generated when none is given.
//! - `reload` — rules reloaded on file change and SIGHUP; a bad new file keeps the old rules.
//! - `check` — `ringtail adapter-config check FILE`.
//! - `serve` — start-up inside `ringtail serve` and the adapter's settings.
//!
//! Key decision: selector resolution filters on the series' resource label directly (a set
//! matcher handed to the query engine), never by building a `pod=~"a|b|…"` regex.

pub mod auth;
pub mod check;
pub mod config;
pub mod discovery;
pub mod k8s_types;
pub mod naming;
pub mod provider;
pub mod quantity;
pub mod reload;
pub mod resources;
pub mod routes;
pub mod selector;
pub mod serve;
pub mod template;
pub mod tls;
pub mod value_list_json;

use config::AdapterConfig;
use discovery::RuleSet;
use naming::{CompiledRule, NamingError, RuleKind};
use resources::ObjectResolver;
use std::time::Duration;

/// Default window of the embedded default rules' `rate()` (prometheus-adapter's default too).
pub const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(300);
/// Default age after which a series no longer counts as current for discovery
/// (prometheus-adapter's `--metrics-max-age` default of 10 m).
pub const DEFAULT_METRICS_MAX_AGE: Duration = Duration::from_secs(600);
/// Longest a discovery snapshot is reused while the store's series count is unchanged.
pub const DEFAULT_DISCOVERY_MAX_AGE: Duration = Duration::from_secs(5);

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Compiles every rule of `config`; the first bad rule is the error.
pub fn compile_rules(
    config: &AdapterConfig,
    source: String,
    resolver: &dyn ObjectResolver,
) -> Result<RuleSet, NamingError> {
    let custom = config
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| CompiledRule::compile(rule, format!("rules[{i}]"), RuleKind::Custom, resolver))
        .collect::<Result<Vec<_>, _>>()?;
    let external = config
        .external_rules
        .iter()
        .enumerate()
        .map(|(i, rule)| CompiledRule::compile(rule, format!("externalRules[{i}]"), RuleKind::External, resolver))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RuleSet { generation: 0, source, custom, external })
}

/// Why the adapter could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("adapter rules: {0}")]
    Rules(#[from] NamingError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// Loads and compiles the rules from `path`, or the embedded default when `None`.
pub fn load_rules(
    path: Option<&std::path::Path>,
    rate_window: Duration,
    resolver: &dyn ObjectResolver,
) -> Result<(RuleSet, Vec<String>), AdapterError> {
    let (config, source) = match path {
        Some(path) => (AdapterConfig::load(path)?, path.display().to_string()),
        None => (AdapterConfig::embedded_default(rate_window), "embedded default".to_string()),
    };
    let warnings = config.warnings();
    Ok((compile_rules(&config, source, resolver)?, warnings))
}
