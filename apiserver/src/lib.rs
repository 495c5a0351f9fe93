//! Ringtail's serving side and the `ringtail` binary's library: the settings, the two listeners
//! and everything they serve, wired over one store.
//!
//! Map, in the order `ringtail serve` builds it (see `docs/ARCHITECTURE.md` for the life of a
//! sample and of an HPA request through these modules):
//! - [`settings`] — every setting with its default and unit in one place, layered defaults →
//!   config file → flags; [`config`] reads the `--config` file into a layer; `byte_size` is the
//!   one parser of sizes with units (`--storage-size 10GiB`).
//! - [`server`] — the wiring: opens the store, builds the remote-write receiver, the query engine,
//!   the scraper and the adapter from the settings, runs the HTTP listener, and stops it all in
//!   reverse order on shutdown. State is built here and passed down: no process globals.
//! - `listener` — the one accept loop both listeners use (a connection cap with probe slots that
//!   keep the health endpoints answering, TCP_NODELAY, graceful shutdown), with
//!   `listener/deadline.rs` for the header, body and idle timeouts; `shutdown` — the shutdown
//!   signal and periodic loops that end with it.
//! - `http` — the plain HTTP surface: remote-write (HTTP concerns only; the sample's path goes on
//!   in `ingest::Receiver`), the Prometheus query API, `/api/v1/export`, health and `/metrics`.
//! - `evaluation` — the evaluation slots (two per core) that bound queries from both surfaces.
//! - [`adapter`] — the metrics adapter (`custom.metrics.k8s.io`, `external.metrics.k8s.io`) over
//!   TLS: `adapter::http` (listener, routes, JSON) → `adapter::provider` (metric + objects →
//!   values) → `adapter::rules` (prometheus-adapter's rule format compiled).
//! - `k8s` — Kubernetes at the edge: the client, front-proxy/TokenReview/SubjectAccessReview
//!   authentication, watched object caches and API discovery for the adapter, and scrape target
//!   discovery; every background loop ends on shutdown.
//! - `scrape` — the scrape configuration in effect (the embedded self-scrape default or the
//!   user's `scrape_configs`) handed to `ingest`'s scraper.
//! - [`reload`] — the `--config` file applied again without a restart (SIGHUP, `POST /-/reload`,
//!   file change): scrape jobs and their Kubernetes discovery, and the rule files.
//! - `rules` — Prometheus rule files (`rule_files`): recording rules evaluated on their interval
//!   and written to the store, alerting rules listed (never sent); `/api/v1/rules`.
//!
//! Key decision: the metrics adapter queries the store in-process — no Prometheus, no HTTP hop,
//! no relist interval — so a sample acknowledged by remote-write answers the next HPA request.
//!
//! ```
//! let settings = apiserver::settings::Settings::default();
//! assert_eq!(settings.listen, apiserver::settings::DEFAULT_LISTEN);
//! assert_eq!(settings.query.lookback, std::time::Duration::from_secs(300));
//! ```
#![forbid(unsafe_code)]

pub mod adapter;
pub mod adapter_args;
mod byte_size;
pub mod config;
mod cpu_limit;
mod evaluation;
mod http;
mod json_text;
mod k8s;
mod listener;
mod prometheus_blocks;
pub mod reload;
mod rules;
mod scrape;
pub mod server;
pub mod settings;
mod shutdown;
pub mod workers;
