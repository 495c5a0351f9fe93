//! Ringtail's serving side: configuration, the HTTP router (readiness, remote-write, the
//! Prometheus query API, self-metrics) and the wiring of store, ingest and query into one server.
#![forbid(unsafe_code)]

pub mod adapter;
pub mod config;
pub mod evaluation;
pub mod http;
pub mod k8s;
mod listener;
pub mod scrape;
pub mod server;
pub mod settings;
mod shutdown;
