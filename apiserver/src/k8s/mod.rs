//! Kubernetes at the edge: the API client, scrape target discovery in the `kubernetes_sd_configs`
//! shape (`scrape_discovery`, `scrape_targets`), API discovery (`api_discovery`) and the watched
//! object caches it feeds for label-selector resolution (`objects`), and the aggregated-API
//! security checks (`auth`). Nothing here holds metric logic; the adapter's provider stays pure.

pub(crate) mod api_discovery;
pub(crate) mod auth;
pub(crate) mod client;
pub(crate) mod cluster;
pub(crate) mod objects;
pub(crate) mod scrape_discovery;
pub(crate) mod scrape_targets;

pub use client::K8sError;
pub(crate) use cluster::{scrape_discovery_specs_for, Cluster};
pub(crate) use scrape_discovery::{run_scrape_discovery, ScrapeDiscoverySpec};
