//! Ringtail's ingestion: the Prometheus remote-write receiver, the exposition-format parser and
//! the standalone scraper. Everything here writes into the tsdb store; nothing reads from it.
//!
//! Map:
//! - [`wire`]: a zero-copy protobuf wire walker; [`proto`]: the remote-write messages as prost
//!   structs (reference encoding for tests and senders).
//! - [`remote_write`]: content negotiation, snappy, 1.0/2.0 decoding, validation, append;
//!   [`series_cache`]: raw 1.0 label bytes → series id, so known series skip label decoding.
//! - [`exposition`]: the nom parser for the Prometheus text format 0.0.4 and OpenMetrics 1.0.
//! - [`relabel`]: Prometheus relabeling (`relabel_configs`, `metric_relabel_configs`).
//! - [`scrape_config`]: the `scrape_configs` YAML shape; [`scrape`]: the scrape manager and the
//!   per-target loops (report series, staleness markers); [`metrics`]: ingestion self-metrics.
//!
//! Key decision: the remote-write hot path never builds owned label strings. It borrows `&str`
//! labels from the decompressed request and hands slices of them to `Db::resolve_all` (for series
//! the [`series_cache`] does not know) and the samples to `Db::append_runs`; the
//! generated-style prost structs exist only to encode requests. A request is validated whole
//! before its first sample is appended, so a 400 never leaves half a request behind.
//!
//! ```
//! use ingest::exposition::{parse, Format};
//! let page = parse("# TYPE up gauge\nup{job=\"a\"} 1\n", Format::Text).unwrap();
//! assert_eq!(page.samples().len(), 1);
//! assert_eq!(page.labels(&page.samples()[0]), &[("job".into(), "a".into())]);
//! ```
#![forbid(unsafe_code)]

pub mod error;
pub mod exposition;
pub mod metrics;
pub mod proto;
pub mod relabel;
pub mod remote_write;
pub mod scrape;
pub mod scrape_config;
pub mod series_cache;
pub mod wire;

pub use error::{ConfigError, ParseError, RemoteWriteError};
pub use metrics::IngestMetrics;
pub use scrape::{ScrapeManager, ScrapeManagerOptions, TargetGroup};
pub use scrape_config::{GlobalConfig, KubernetesSdConfig, NamespaceDiscovery, ScrapeConfig, ScrapeConfigs};
