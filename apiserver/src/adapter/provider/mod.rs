//! The provider: metric + objects → values, from the store, the rules and an
//! [`ObjectResolver`]. Pure logic: no HTTP and no Kubernetes types beyond plain structs.
//!
//! - `lookup` — [`Provider`]: each request answered as named steps (find the rule → resolve the
//!   objects → run the query → shape the answer), and the request and answer types.
//! - `owners` — a pods metric combined per owner (`ownerAggregation`).
//! - `series_discovery` — which metrics exist now, from the store's series index (no relist
//!   interval; forced rediscovery for an unknown metric rate-limited) and, for rules that read
//!   one, an external query source's series listings.
//! - `external` — [`ExternalSource`], the trait between the provider and a Prometheus-compatible
//!   query API (`--prometheus-url`), and the cached listings of its series.
//! - `resources` — [`ObjectResolver`], the one trait between the adapter and Kubernetes objects
//!   (RESTMapper-like normalization, label-selector resolution, owners), and its standalone
//!   implementation; the Kubernetes integration plugs in a watched-cache implementation.
//! - `resource_metrics` — `metrics.k8s.io` (PodMetrics, NodeMetrics) from `resourceRules`.
//! - `quantity` — `resource.Quantity` formatting, exactly as Go prints it.
//! - `error` — `ProviderError`: a kind and a message.

mod error;
mod external;
mod lookup;
mod owners;
pub mod quantity;
mod resource_metrics;
pub mod resources;
mod series_discovery;

pub(crate) use error::{ProviderError, ProviderErrorKind};
pub(crate) use external::ExternalCatalog;
pub use external::{ExternalSource, ExternalSourceError};
#[cfg(test)]
pub(crate) use lookup::MetricValueItem;
pub use lookup::Provider;
pub(crate) use lookup::{CustomMetricRequest, ExternalMetricRequest, MetricValues, ObjectSelection};
#[cfg(test)]
pub(crate) use resource_metrics::ContainerUsage;
pub(crate) use resource_metrics::{FieldSelector, NodeUsage, PodUsage, ResourceMetricsRequest};
pub use resources::ObjectResolver;
pub(crate) use resources::StandaloneResolver;
pub(crate) use series_discovery::discover;
pub(crate) use series_discovery::SeriesDiscovery;
