//! The metrics adapter: `custom.metrics.k8s.io` (v1beta1, v1beta2), `external.metrics.k8s.io`
//! (v1beta1) and, with `resourceRules`, `metrics.k8s.io` (v1beta1) served over TLS from the
//! store, configured with prometheus-adapter's rule format, so an HPA reads metrics from Ringtail
//! as it reads them from prometheus-adapter — with no Prometheus and no HTTP hop: queries run
//! in-process.
//!
//! Map, in the order a request travels:
//! - [`http`] — the TLS listener (`http::tls`: rustls, HTTP/1.1 and HTTP/2, certificates
//!   reloaded when their files change, a self-signed pair and CA generated when none is given),
//!   the axum routes (authentication, paths → requests, the only place errors become
//!   HTTP statuses), the APIs' JSON objects, and the `MetricValueList` writer.
//! - [`provider`] — metric + objects → values: find the rule (series discovery: which metrics
//!   exist now) → resolve the objects (`ObjectResolver`) → run the query → shape the answer
//!   (quantities). Pure logic, no HTTP.
//! - [`rules`] — the prometheus-adapter file compiled: config format, templates, label
//!   selectors, series ↔ metric naming, resource labels, and each rule's `metricsQuery` parsed
//!   once so a request substitutes its matchers instead of rendering and parsing text; reloaded on
//!   file change.
//! - [`query_source`] — the external query source over HTTP (prometheus-adapter's
//!   `--prometheus-url`): rules whose series are not in the store are listed and evaluated at a
//!   Prometheus-compatible query API.
//! - `check` — what the rules make of the store now and why a metric is missing: printed by
//!   `ringtail adapter-config check FILE`, served as JSON to the web UI (`crate::http::ui_api`).
//! - `serve` — start-up inside `ringtail serve` and the adapter's settings.
//!
//! Key decision: selector resolution filters on the series' resource label directly (a set
//! matcher handed to the query engine), never by building a `pod=~"a|b|…"` regex.

pub mod check;
pub mod http;
pub mod provider;
pub mod query_source;
pub mod rules;
pub mod serve;

use std::time::Duration;

/// Default window of the embedded default rules' `rate()` (prometheus-adapter's default too).
pub const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(300);
/// Default age after which a series no longer counts as current for discovery
/// (prometheus-adapter's `--metrics-max-age` default of 10 m).
pub const DEFAULT_METRICS_MAX_AGE: Duration = Duration::from_secs(600);
/// Longest a discovery snapshot is reused while the store's series count is unchanged.
pub const DEFAULT_DISCOVERY_MAX_AGE: Duration = Duration::from_secs(5);

/// Why the adapter could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error(transparent)]
    Config(#[from] rules::config::ConfigError),
    #[error("adapter rules: {0}")]
    Rules(#[from] rules::RuleError),
    #[error(transparent)]
    Tls(#[from] http::tls::TlsError),
    #[error(transparent)]
    Auth(#[from] http::auth::AuthError),
    #[error("external query source: {0}")]
    QuerySource(#[from] query_source::QuerySourceError),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}
