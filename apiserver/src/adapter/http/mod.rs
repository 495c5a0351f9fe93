//! The adapter's HTTP surface: the axum routes and what they write.
//!
//! - `routes` — paths → provider requests, and the one place a `ProviderError` becomes an
//!   HTTP status and a Kubernetes `Status`.
//! - `auth` — [`Authenticator`]: standalone bearer tokens; the cluster's authn/authz plug in here.
//! - `k8s_types` — the JSON objects of the APIs (API discovery, MetricValueList, Status, …).
//! - `value_list_json` — the custom-metrics `MetricValueList` written as JSON bytes directly
//!   (the hottest response: shared parts escaped once per list).
//! - `pod_metrics_json` — `metrics.k8s.io`'s `PodMetricsList` written the same way.
//!
//! [`Authenticator`]: auth::Authenticator

pub mod auth;
pub(crate) mod k8s_types;
mod pod_metrics_json;
pub(crate) mod routes;
pub mod tls;
mod value_list_json;
