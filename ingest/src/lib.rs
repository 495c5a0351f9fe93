//! Ringtail's ingestion: every sample enters the tsdb store through here, by one of two doors — a
//! Prometheus remote-write request ([`Receiver::remote_write`]) or a scraped page (the
//! [`ScrapeManager`]'s target loops) — and both store through the one `Db::append`. Nothing here
//! reads from the store.
//!
//! Map:
//! - [`remote_write`]: the receiver. `protocol` (Content-Type → [`remote_write::Protocol`], 1.0 or
//!   2.0), `decode` (snappy, the zero-copy 1.0/2.0 walkers, validation), `store` (one append,
//!   [`remote_write::WriteOutcome`]) and `receiver`, the door that owns the store handle, the
//!   limits, the series cache and the decompression buffers.
//! - `series_cache`: raw 1.0 label bytes → series id, so known series skip label decoding;
//!   `wire`: the zero-copy protobuf walker the decoder uses; [`proto`]: the remote-write messages
//!   as prost structs (the reference encoding for tests and senders).
//! - [`exposition`]: the nom parser for the Prometheus text format 0.0.4 and OpenMetrics 1.0.
//! - `tls_client`: the rustls client configuration behind `tls_config`'s `server_name` and
//!   `min_version`/`max_version` (scrapes and forwarding share `tls_config`).
//! - `scrape`: the [`ScrapeManager`] and its per-target loops (page → one append, report series,
//!   staleness markers); `scrape_config`: the `scrape_configs` YAML ([`ScrapeConfigs`]); `relabel`:
//!   Prometheus relabeling; `file_sd`: `file_sd_configs` (files of target groups, polled).
//! - `limits`: [`IngestLimits`], the refusals they make ([`LimitRefusals`]) and the live-series
//!   cap and new-series token bucket ([`SeriesAdmission`]).
//! - [`forward`]: the remote-write sender — every stored sample queued on disk before its append
//!   returns and sent to each `remote_write` destination (Prometheus's shape and metrics).
//! - `metadata`: metric metadata kept from scraped pages (per target) and remote-write requests
//!   ([`RemoteWriteMetadata`]), for `/api/v1/metadata`.
//! - `metrics`: ingestion's self-metrics ([`IngestMetrics`]); `error`: the crate's errors.
//!   Samples are stamped with the store's one clock, `tsdb::now_ms`.
//!
//! Key decision: the remote-write hot path never builds owned label strings. The decoder borrows
//! `&str` labels from the decompressed request, and a 1.0 series the series cache knows is named
//! by its id without decoding its labels at all; the store gets one batch per request. A request
//! is validated whole (the spec's sorted-names rule, then the store's one rule,
//! `tsdb::validate_labels`) before its first sample is appended, so a malformed request leaves
//! nothing behind; a well-formed series over one of the [`IngestLimits`] (labels, series per
//! request, live series, new series per minute) is left out alone and named in the outcome, and
//! the rest is stored — senders do not retry a 400, so the valid part must not be lost.
//!
//! ```
//! use ingest::proto::v1;
//! use ingest::remote_write::{encode_body, DecodeLimits, Protocol, Receiver};
//! use std::sync::Arc;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let db = Arc::new(tsdb::Db::open(tsdb::Options::new(dir.path())).unwrap());
//! let receiver = Receiver::new(db, DecodeLimits::default());
//! let series = v1::TimeSeries {
//!     labels: vec![v1::Label { name: "__name__".into(), value: "up".into() }],
//!     samples: vec![v1::Sample { value: 1.0, timestamp: 1_000 }],
//!     ..Default::default()
//! };
//! let body = encode_body(&v1::WriteRequest { timeseries: vec![series], metadata: vec![] });
//! let outcome = receiver.remote_write(Protocol::V1, &body, tsdb::now_ms()).unwrap();
//! assert_eq!((outcome.samples_written, outcome.series_created), (1, 1));
//! ```
#![forbid(unsafe_code)]

mod error;
pub mod exposition;
mod file_sd;
pub mod forward;
mod http_body;
mod http_sd;
mod limits;
mod metadata;
mod metrics;
mod oauth2;
pub mod proto;
mod relabel;
pub mod remote_write;
mod scrape;
mod scrape_config;
mod series_cache;
mod tls_client;
mod wire;

pub use error::{ConfigError, ParseError, RemoteWriteError};
pub use file_sd::{glob_files, MAX_FILE_SD_FILES_PER_PATTERN, MAX_FILE_SD_FILE_BYTES, MAX_FILE_SD_TARGETS_PER_FILE};
pub use limits::{
    IngestLimits, Limit, LimitRefusals, Reservation, SeriesAdmission, DEFAULT_MAX_ACTIVE_SERIES,
    DEFAULT_MAX_LABELS_PER_SERIES, DEFAULT_MAX_LABEL_NAME_BYTES, DEFAULT_MAX_LABEL_VALUE_BYTES,
    DEFAULT_MAX_NEW_SERIES_PER_MINUTE, DEFAULT_MAX_SERIES_PER_REQUEST,
};
pub use metadata::{
    MetricMetadata, RemoteWriteMetadata, MAX_METADATA_FAMILIES_PER_TARGET, MAX_METADATA_HELP_BYTES,
    MAX_REMOTE_WRITE_METADATA_ENTRIES,
};
pub use metrics::{IngestMetrics, SOURCE_REMOTE_WRITE, SOURCE_SCRAPE};
pub use oauth2::{OAuth2Config, TokenSource};
pub use remote_write::Receiver;
pub use scrape::{
    DroppedTarget, ScrapeManager, ScrapeManagerOptions, TargetGroup, TargetHealth, TargetMetadata, TargetStatus,
    MAX_DROPPED_TARGETS,
};
pub use scrape_config::{
    AttachMetadata, FileSdConfig, GlobalConfig, KubernetesSdConfig, NamespaceDiscovery, RoleSelector, ScrapeConfig,
    ScrapeConfigs,
};
pub use wire::WireError;
