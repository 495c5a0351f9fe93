//! Kubernetes at the edge: the API client, scrape discovery in the `kubernetes_sd_configs` shape,
//! watched object caches for label-selector resolution, and the aggregated-API security checks.
//! Nothing here holds metric logic; the adapter's provider stays pure.

pub mod auth;
pub mod client;
pub mod cluster;
pub mod objects;
pub mod sd;
pub mod sd_targets;

pub use client::{connect, K8sError};
pub use cluster::{Cluster, ClusterMode, ClusterSettings};
