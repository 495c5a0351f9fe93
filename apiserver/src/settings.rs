//! `Settings` is everything `ringtail serve` can be told, and [`Settings::layer`] is the one place
//! where one source of settings is put on top of another: the defaults, then the `--config` YAML
//! file, then the command-line flags (each later source wins).
//!
//! Both the file and the flags are read into the same [`SettingsLayer`] (every value optional),
//! so each setting is declared once: its doc comment there is its `--help` text and says its
//! default and unit, and [`Settings::default`] holds the values those texts name (a unit test
//! keeps the two in step). A flag `--foo-bar` is the file key `foo_bar`; the flags of a group are
//! keys of the group's block: `--query.lookback-delta` is `query: {lookback_delta: …}`,
//! `--web.idle-timeout` is `web: {idle_timeout: …}`, `--remote-write-max-body-bytes` is
//! `remote_write: {max_body_bytes: …}`, `--limits.max-active-series` is
//! `limits: {max_active_series: …}`, and the metrics adapter's flags (`--secure-listen`,
//! `--tls-*`, `--adapter-*`) are keys of `adapter:` (`--adapter-config` is
//! `adapter: {config_file: …}`). The file alone also takes Prometheus's
//! `global` and `scrape_configs`, and `rule_files` (see `crate::rules`), and reads the rest of a
//! prometheus.yml (`alerting`, `remote_read`, `storage`, `tracing`; see `crate::prometheus_blocks`).

use crate::prometheus_blocks::PrometheusBlocks;
use serde::{Deserialize, Deserializer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Default HTTP listen address (Prometheus API, remote-write, health, self-metrics).
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9201);
/// Default TLS address of the metrics APIs.
pub const DEFAULT_SECURE_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 6443);
/// Default disk budget for the ring store: 1 GiB.
pub const DEFAULT_STORAGE_SIZE_BYTES: u64 = 1 << 30;
/// Default bound on connections one listener serves at once (HTTP and TLS alike).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default interval of syncing mapped data to disk.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Default out-of-order window: vmagent's parallel queues and collectors' retry queues deliver
/// samples seconds to minutes late, and these land in their series' open chunk.
pub const DEFAULT_OUT_OF_ORDER_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Default longest a client may take to send a request head (and, on TLS, the handshake).
pub const DEFAULT_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default longest a request body may take to arrive after its head.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time a keep-alive connection may wait for its next request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default connections each listener takes past its cap for health probes only.
pub const DEFAULT_PROBE_CONNECTIONS: usize = 8;
/// Default HTTP/2 streams one connection may have open at once.
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// The effective settings of `ringtail serve`; see [`SettingsLayer`] for each one's meaning,
/// default and unit.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `--config` file the settings came from, if any (re-read on reload).
    pub config_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Connections the HTTP listener serves at once.
    pub max_connections: usize,
    pub storage_size_bytes: u64,
    pub retention: Option<Duration>,
    pub sync_interval: Duration,
    /// How much older than its series' newest sample a sample may arrive and still be stored
    /// (`tsdb::Options::out_of_order_window`; zero refuses every out-of-order sample).
    pub out_of_order_window: Duration,
    /// Niceness added to the worker threads (remote-write decoding and storing, store upkeep),
    /// so queries and probes come first when the CPU is short (0 = same priority).
    pub worker_nice: i32,
    /// Share of a CPU limit the workers leave free for queries and probes (0: no pacing).
    pub cpu_limit_headroom: f64,
    /// How long after start `/-/ready` stays 503 (a restarted replica must not answer with half
    /// a `rate` window).
    pub ready_after: ReadyAfter,
    /// Lookback, max samples and timeout of the query engine (Prometheus API and adapter alike).
    pub query: query::EngineOptions,
    /// Largest remote-write request body accepted, in bytes (compressed); larger gets 413.
    pub remote_write_max_body_bytes: usize,
    /// File holding the bearer token remote-write senders must present; `None` = no check.
    pub remote_write_bearer_token_file: Option<PathBuf>,
    /// Remote-write request bytes in flight at once (compressed bodies plus their decompressed
    /// form) before senders get 503 + Retry-After.
    pub remote_write_max_inflight_bytes: usize,
    /// `remote_write` destinations from the config file (Prometheus's list, YAML as written);
    /// `None`: nothing is forwarded.
    pub remote_write_destinations: Option<serde_yaml::Value>,
    /// Disk the forwarding queue may use, taken out of `storage_size_bytes`; `None`: an eighth.
    pub forward_queue_size_bytes: Option<u64>,
    /// `global` from the config file, if any (YAML as written).
    pub global: Option<serde_yaml::Value>,
    /// `scrape_configs` from the config file; `None` means the embedded default (scrape self).
    pub scrape_configs: Option<serde_yaml::Value>,
    /// `rule_files` from the config file: globs of Prometheus rule files, relative to its
    /// directory (see `crate::rules`).
    pub rule_files: Vec<String>,
    /// The metrics adapter (custom/external metrics APIs over TLS).
    pub adapter: AdapterSettings,
    /// Which Kubernetes API (if any) to use, and whether its authentication guards the adapter.
    pub cluster: ClusterSettings,
    /// Timeouts and probe slots of every listener's connections.
    pub web: WebSettings,
    /// What one sender may make the store hold (`limits:` in the file, `--limits.*`).
    pub limits: ingest::IngestLimits,
    /// A sentence for each Prometheus block of the config file Ringtail reads but does not act
    /// on (`alerting`, `remote_read`, …), logged as a warning at start.
    pub unused_prometheus_blocks: Vec<String>,
}

/// What every listener (HTTP and TLS alike) allows one connection (`web:` in the file), and the
/// HTTP port's TLS and authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSettings {
    /// Prometheus-format web config (TLS, basic auth) of the HTTP port; `None`: plain and open.
    pub config_file: Option<PathBuf>,
    /// Longest a request head (and a TLS handshake) may take to arrive.
    pub read_header_timeout: Duration,
    /// Longest a request body may take to arrive after its head; a slower one gets 408.
    pub read_timeout: Duration,
    /// Longest a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Connections taken past a listener's cap that are served the health endpoints only.
    pub probe_connections: usize,
    /// HTTP/2 streams one connection may have open at once.
    pub http2_max_concurrent_streams: u32,
    /// Whether `POST /-/reload` is served (`--web.enable-lifecycle`).
    pub enable_lifecycle: bool,
    /// Whether the admin endpoints (`/api/v1/admin/tsdb/...`) are served (`--web.enable-admin-api`).
    pub enable_admin_api: bool,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            config_file: None,
            read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            probe_connections: DEFAULT_PROBE_CONNECTIONS,
            http2_max_concurrent_streams: DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
            enable_lifecycle: false,
            enable_admin_api: false,
        }
    }
}

/// The metrics adapter's effective settings.
#[derive(Debug, Clone)]
pub struct AdapterSettings {
    pub secure_listen: SocketAddr,
    /// Set when `secure_listen` was chosen by the user (a bind failure is then fatal).
    pub secure_listen_explicit: bool,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    /// Where TLS files are looked for and a pair is generated without `tls_cert_file`
    /// (prometheus-adapter's `--cert-dir`); `None`: generated beside the data directory.
    pub cert_dir: Option<PathBuf>,
    /// prometheus-adapter rules; `None` uses the embedded default.
    pub config_file: Option<PathBuf>,
    /// Bearer tokens accepted (kube `--token-auth-file` CSV); `None` accepts every TLS client.
    pub tokens_file: Option<PathBuf>,
    /// `rate()` window of the embedded default rules.
    pub rate_window: Duration,
    /// Series older than this are not listed (prometheus-adapter's `--metrics-max-age`).
    pub metrics_max_age: Duration,
    /// Connections the TLS listener serves at once.
    pub max_connections: usize,
    /// A Prometheus-compatible query API the rules also read (prometheus-adapter's
    /// `--prometheus-url` and its flags); `None`: the store only.
    pub external_source: Option<crate::adapter::query_source::ExternalSourceSettings>,
}

/// How Ringtail finds (or ignores) a Kubernetes API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClusterMode {
    /// In-cluster config when `KUBERNETES_SERVICE_HOST` is set, otherwise standalone.
    #[default]
    Auto,
    /// The cluster a kubeconfig file names.
    Kubeconfig(PathBuf),
    /// Never talk to a cluster.
    Standalone,
}

/// Kubernetes settings of `ringtail serve`.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub mode: ClusterMode,
    /// Front-proxy certificates, TokenReview and SubjectAccessReview on the metrics APIs (on by
    /// default with a cluster; off keeps the standalone rules, e.g. `--adapter-tokens-file`).
    pub authentication: bool,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings { mode: ClusterMode::Auto, authentication: true }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            config_file: None,
            data_dir: PathBuf::from("./data"),
            listen: DEFAULT_LISTEN,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            storage_size_bytes: DEFAULT_STORAGE_SIZE_BYTES,
            retention: None,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            out_of_order_window: DEFAULT_OUT_OF_ORDER_WINDOW,
            worker_nice: crate::workers::DEFAULT_NICE,
            cpu_limit_headroom: crate::workers::DEFAULT_CPU_LIMIT_HEADROOM,
            ready_after: ReadyAfter::Duration(Duration::ZERO),
            query: query::EngineOptions::default(),
            remote_write_max_body_bytes: crate::http::remote_write::DEFAULT_MAX_BODY_BYTES,
            remote_write_bearer_token_file: None,
            remote_write_max_inflight_bytes: crate::http::remote_write::DEFAULT_MAX_INFLIGHT_BYTES,
            remote_write_destinations: None,
            forward_queue_size_bytes: None,
            global: None,
            scrape_configs: None,
            rule_files: Vec::new(),
            adapter: AdapterSettings::default(),
            cluster: ClusterSettings::default(),
            web: WebSettings::default(),
            limits: ingest::IngestLimits::default(),
            unused_prometheus_blocks: Vec::new(),
        }
    }
}

impl Default for AdapterSettings {
    fn default() -> Self {
        AdapterSettings {
            secure_listen: DEFAULT_SECURE_LISTEN,
            secure_listen_explicit: false,
            tls_cert_file: None,
            tls_private_key_file: None,
            cert_dir: None,
            config_file: None,
            tokens_file: None,
            rate_window: crate::adapter::DEFAULT_RATE_WINDOW,
            metrics_max_age: crate::adapter::DEFAULT_METRICS_MAX_AGE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            external_source: None,
        }
    }
}

/// One source of settings — the `--config` file or the flags; what it sets wins over the layers
/// below it. Each doc comment is the flag's `--help` text.
#[derive(Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct SettingsLayer {
    #[command(flatten)]
    #[serde(default, deserialize_with = "null_as_default")]
    pub adapter: AdapterLayer,
    /// Directory for the ring store's files [default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address for HTTP: remote-write, Prometheus API, health, /metrics [default: 127.0.0.1:9201].
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<SocketAddr>,
    /// Most connections the HTTP listener (--listen) serves at once; past it the
    /// --web.probe-connections slots take health probes only, and further connections are closed
    /// at once (an idle keep-alive connection is closed to make room) [default: 4096 connections].
    #[arg(long, value_name = "COUNT")]
    pub max_connections: Option<usize>,
    /// Disk budget of the store: a byte count or an integer with a unit, B, KB, MB, GB, TB, PB,
    /// EB (base 2 as in Prometheus's --storage.tsdb.retention.size: 1KB = 1024 bytes) or KiB, MiB,
    /// GiB, TiB, PiB, EiB, e.g. 512MiB, 10GiB; the oldest data is overwritten when full
    /// [default: 1GiB = 1073741824 bytes].
    #[arg(long, value_name = "SIZE", value_parser = crate::byte_size::parse_byte_size)]
    #[serde(default, deserialize_with = "storage_size_text")]
    pub storage_size: Option<u64>,
    /// Drop samples older than this (e.g. 15d, 12h) even when the budget is not full [default: none].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, deserialize_with = "duration_text")]
    pub retention: Option<Duration>,
    /// How often mapped data is synced to disk; bounds loss on power failure [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, deserialize_with = "duration_text")]
    pub sync_interval: Option<Duration>,
    /// A sample up to this much older than its series' newest is still stored, in its place in
    /// time, when it falls in the series' open chunk (after its closed chunks): senders that write
    /// in parallel (vmagent's queues, a collector's retry queue) deliver samples a little out of
    /// order. Older ones are refused as out of order, as all are with 0s (Prometheus's default)
    /// [default: 5m].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, deserialize_with = "duration_text")]
    pub out_of_order_window: Option<Duration>,
    /// Niceness (0–19) added to the threads that decode and store remote-write requests and
    /// flush and maintain the store: when the CPU is short (a CPU limit, a sender catching up),
    /// queries, the metrics APIs and probes run first and senders get 503 sooner; 0 runs them at
    /// the same priority [default: 5].
    #[arg(long, value_name = "NICE", value_parser = clap::value_parser!(i32).range(0..=19))]
    #[serde(default, deserialize_with = "nice_value")]
    pub worker_nice: Option<i32>,
    /// Under a CPU limit (a container's, a cgroup quota), the share of it the worker threads leave
    /// free: they pause between jobs while the process runs above the rest, so it is never
    /// throttled and queries, the metrics APIs and probes answer at once while ingest waits
    /// (senders get 503); 0 turns this off [default: 0.3].
    #[arg(long, value_name = "SHARE", value_parser = headroom_flag)]
    #[serde(default, deserialize_with = "headroom_value")]
    pub cpu_limit_headroom: Option<f64>,
    /// Keep /-/ready at 503 for this long after start, so that behind a Service a restarted
    /// replica is not asked before it holds a full `rate` window of new data: a duration, or
    /// `rule-window` for the longest range (`[2m]`) in the adapter rules' metricsQuery
    /// [default: 0s: ready at once].
    #[arg(long, value_name = "DURATION|rule-window", value_parser = ReadyAfter::parse)]
    #[serde(default, deserialize_with = "ready_after_text")]
    pub ready_after: Option<ReadyAfter>,
    #[command(flatten)]
    #[serde(default, deserialize_with = "null_as_default")]
    pub query: QueryLayer,
    /// Disk the forwarding queue (`remote_write` destinations in the --config file) may use,
    /// taken out of --storage-size; a size as --storage-size [default: an eighth of
    /// --storage-size].
    #[arg(long, value_name = "SIZE", value_parser = crate::byte_size::parse_byte_size)]
    #[serde(default, deserialize_with = "storage_size_text")]
    pub forward_queue_size: Option<u64>,
    #[command(flatten)]
    #[serde(default, deserialize_with = "receiver_or_destinations")]
    pub remote_write: RemoteWriteLayer,
    #[command(flatten)]
    #[serde(default, deserialize_with = "null_as_default")]
    pub web: WebLayer,
    #[command(flatten)]
    #[serde(default, deserialize_with = "null_as_default")]
    pub limits: LimitsLayer,
    /// Use the cluster this kubeconfig names (scrape discovery, label-selector resolution and the
    /// aggregated API's authentication) [default: in-cluster config when running in a pod].
    #[arg(long, value_name = "FILE", conflicts_with = "standalone")]
    pub kubeconfig: Option<PathBuf>,
    /// Never talk to a Kubernetes API, even inside a pod.
    #[arg(long)]
    #[serde(default)]
    pub standalone: bool,
    /// With a cluster, serve the metrics APIs without its authentication and authorization
    /// (front-proxy certificates, TokenReview, SubjectAccessReview); the standalone rules
    /// (`--adapter-tokens-file`) apply instead.
    #[arg(long)]
    #[serde(default)]
    pub no_cluster_auth: bool,
    /// Prometheus-shaped `global` block (scrape_interval, scrape_timeout, and external_labels for
    /// forwarding).
    #[arg(skip)]
    pub global: Option<serde_yaml::Value>,
    /// Prometheus-shaped scrape configs, handed to the scraper as they are.
    #[arg(skip)]
    pub scrape_configs: Option<serde_yaml::Value>,
    /// Prometheus's `scrape_config_files` (globs of files holding more `scrape_configs`);
    /// `config::read_file` appends their jobs to `scrape_configs` and empties this.
    #[arg(skip)]
    #[serde(default)]
    pub scrape_config_files: Vec<String>,
    /// Prometheus's `rule_files` (globs of rule files, relative to the config file's directory).
    #[arg(skip)]
    #[serde(default)]
    pub rule_files: Option<Vec<String>>,
    /// Prometheus's `alerting` (read so a prometheus.yml loads; no notifications are sent, and a
    /// warning at start says so).
    #[arg(skip)]
    #[serde(default, deserialize_with = "crate::prometheus_blocks::mapping")]
    pub alerting: Option<serde_yaml::Mapping>,
    /// Prometheus's `remote_read` (read, not used: warned at start).
    #[arg(skip)]
    #[serde(default, deserialize_with = "crate::prometheus_blocks::list")]
    pub remote_read: Option<Vec<serde_yaml::Value>>,
    /// Prometheus's `tracing` (read, not used: warned at start).
    #[arg(skip)]
    #[serde(default, deserialize_with = "crate::prometheus_blocks::mapping")]
    pub tracing: Option<serde_yaml::Mapping>,
    /// Prometheus's `storage`: `tsdb.out_of_order_time_window` sets `out_of_order_window` (which
    /// wins when both are set); `exemplars` is read, not used (warned at start).
    #[arg(skip)]
    #[serde(default, deserialize_with = "crate::prometheus_blocks::null_as_default")]
    pub storage: crate::prometheus_blocks::StorageBlock,
}

/// The query engine's limits (`query:` in the file).
#[derive(Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct QueryLayer {
    /// How far back an instant vector selector looks for a sample [default: 5m].
    #[arg(long = "query.lookback-delta", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, deserialize_with = "duration_text")]
    pub lookback_delta: Option<Duration>,
    /// Most samples one query may load into memory; beyond it the query fails with 503
    /// [default: 50000000].
    #[arg(long = "query.max-samples", value_name = "COUNT")]
    pub max_samples: Option<usize>,
    /// Longest a query may run before it is aborted with 503 [default: 2m].
    #[arg(long = "query.timeout", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, deserialize_with = "duration_text")]
    pub timeout: Option<Duration>,
}

/// The remote-write receiver's limits (`remote_write:` in the file).
#[derive(Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteLayer {
    /// Largest remote-write request body in bytes (snappy-compressed); larger requests get 413
    /// [default: 33554432 = 32 MiB].
    #[arg(long = "remote-write-max-body-bytes", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// File with the bearer token remote-write senders must send (`Authorization: Bearer …`)
    /// [default: none, no check].
    #[arg(long = "remote-write-bearer-token-file", value_name = "FILE")]
    pub bearer_token_file: Option<PathBuf>,
    /// Remote-write request bytes in flight at once (compressed bodies plus their decompressed
    /// form); past it senders wait, then get 503 with Retry-After [default: 268435456 = 256 MiB].
    #[arg(long = "remote-write-max-inflight-bytes", value_name = "BYTES")]
    pub max_inflight_bytes: Option<usize>,
    /// The file's `remote_write` written as Prometheus's list of destinations (forwarding).
    #[arg(skip)]
    #[serde(skip)]
    pub destinations: Option<serde_yaml::Value>,
}

/// Ingestion limits (`limits:` in the file): a remote-write series over one is refused alone
/// (400 naming the limit and the series; the rest of the request is stored), a scraped page with
/// a series over a label limit fails its scrape. 0 turns a limit off.
#[derive(Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct LimitsLayer {
    /// Most labels a series may have, __name__ included [default: 64 labels].
    #[arg(long = "limits.max-labels-per-series", value_name = "COUNT")]
    pub max_labels_per_series: Option<usize>,
    /// Longest label name [default: 1024 bytes].
    #[arg(long = "limits.max-label-name-length", value_name = "BYTES")]
    pub max_label_name_length: Option<usize>,
    /// Longest label value [default: 4096 bytes].
    #[arg(long = "limits.max-label-value-length", value_name = "BYTES")]
    pub max_label_value_length: Option<usize>,
    /// Most series one remote-write request may carry; the series past it are refused
    /// [default: 100000 series].
    #[arg(long = "limits.max-series-per-request", value_name = "COUNT")]
    pub max_series_per_request: Option<usize>,
    /// Most live series in the store (about 0.5 KiB of memory each); new series past it are
    /// refused, samples of known series still stored [default: 2000000 series].
    #[arg(long = "limits.max-active-series", value_name = "COUNT")]
    pub max_active_series: Option<usize>,
    /// Most series created per minute (a bucket of one minute's worth, full at start); new series
    /// past it are refused until it refills [default: 2000000 series].
    #[arg(long = "limits.max-new-series-per-minute", value_name = "COUNT")]
    pub max_new_series_per_minute: Option<u64>,
}

/// Every listener's connection timeouts and probe slots (`web:` in the file).
#[derive(Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct WebLayer {
    /// Prometheus web configuration file for the HTTP port (--listen): tls_server_config
    /// (cert_file, key_file, client_auth_type, client_ca_file, min_version, max_version) and
    /// basic_auth_users (user: bcrypt hash), as Prometheus's --web.config.file; it and the files
    /// it names are re-read when they change. With users set, every path needs them, health
    /// endpoints too; a remote-write request with the --remote-write-bearer-token-file token
    /// needs no user [default: none, plain HTTP without authentication].
    #[arg(id = "web_config_file", long = "web.config.file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Longest a client may take to send a request's head (request line and headers; on the TLS
    /// listener the handshake too), from the connection's start or from its first byte after a
    /// response; then the connection is closed [default: 10s].
    #[arg(long = "web.read-header-timeout", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, deserialize_with = "duration_text")]
    pub read_header_timeout: Option<Duration>,
    /// Longest a request body (e.g. a remote-write request) may take to arrive after its head;
    /// a slower one is answered 408 [default: 1m].
    #[arg(long = "web.read-timeout", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, deserialize_with = "duration_text")]
    pub read_timeout: Option<Duration>,
    /// Longest a keep-alive connection may wait for its next request after the last byte of a
    /// response; then it is closed [default: 2m].
    #[arg(long = "web.idle-timeout", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, deserialize_with = "duration_text")]
    pub idle_timeout: Option<Duration>,
    /// Connections each listener takes past its cap (--max-connections, --adapter-max-connections)
    /// for health probes only: /-/ready and /-/healthy (/healthz, /livez, /readyz on TLS) are
    /// answered there, anything else gets 503 with Retry-After [default: 8 connections].
    #[arg(long = "web.probe-connections", value_name = "COUNT")]
    pub probe_connections: Option<usize>,
    /// HTTP/2 streams (requests) one connection may have open at once [default: 100 streams].
    #[arg(long = "web.http2-max-concurrent-streams", value_name = "COUNT")]
    pub http2_max_concurrent_streams: Option<u32>,
    /// Serve `POST /-/reload` (re-read the --config file, as SIGHUP does), as Prometheus's flag.
    #[arg(long = "web.enable-lifecycle")]
    #[serde(default)]
    pub enable_lifecycle: bool,
    /// Serve the admin endpoints (`/api/v1/admin/tsdb/delete_series`, `clean_tombstones`), as
    /// Prometheus's flag; without it they answer 503 "admin APIs disabled".
    #[arg(long = "web.enable-admin-api")]
    #[serde(default)]
    pub enable_admin_api: bool,
}

/// The metrics adapter (`adapter:` in the file).
// The field docs are clap's help text: `<…>` and `[default: …]` there are meant literally.
#[allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]
#[derive(Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct AdapterLayer {
    /// TLS address of custom.metrics.k8s.io / external.metrics.k8s.io [default: 0.0.0.0:6443;
    /// without a cluster, port 6443 on the --listen host (loopback by default), as the metrics
    /// APIs then have no authentication; if the default is taken the adapter is skipped with a
    /// warning, an explicit one must bind].
    #[arg(long = "secure-listen", value_name = "HOST:PORT")]
    pub secure_listen: Option<SocketAddr>,
    /// PEM certificate chain for the TLS listener, re-read when it changes [default: a generated
    /// pair in <data-dir>-tls/, its CA in <data-dir>-tls/ca.crt].
    #[arg(long = "tls-cert-file", value_name = "FILE", requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key matching --tls-cert-file [default: generated with the certificate].
    #[arg(long = "tls-private-key-file", value_name = "FILE", requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// prometheus-adapter rules file (rules, externalRules, resourceRules), reloaded on change
    /// and SIGHUP [default: embedded rules: pod series as pods metrics, *_total as rates].
    #[arg(long = "adapter-config", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Bearer tokens accepted on the metrics APIs, kube-apiserver --token-auth-file CSV format
    /// (token,user,uid,"groups") [default: none, every TLS client is accepted].
    #[arg(long = "adapter-tokens-file", value_name = "FILE")]
    pub tokens_file: Option<PathBuf>,
    /// rate() window of the embedded default rules for *_total counters [default: 5m].
    #[arg(long = "adapter-rate-window", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, deserialize_with = "duration_text")]
    pub rate_window: Option<Duration>,
    /// Series without a sample for this long are no longer listed as metrics [default: 10m].
    #[arg(long = "adapter-metrics-max-age", value_name = "DURATION", value_parser = humantime::parse_duration)]
    #[serde(default, deserialize_with = "duration_text")]
    pub metrics_max_age: Option<Duration>,
    /// Most connections the TLS listener (--secure-listen) serves at once; past it as with
    /// --max-connections [default: 4096 connections].
    #[arg(id = "adapter_max_connections", long = "adapter-max-connections", value_name = "COUNT")]
    pub max_connections: Option<usize>,
}

impl Settings {
    /// The defaults, then the file at `config_file` (if any), then `flags`.
    pub fn from_sources(
        config_file: Option<&std::path::Path>,
        flags: SettingsLayer,
    ) -> Result<Settings, crate::config::ConfigError> {
        let mut settings = Settings::default();
        if let Some(path) = config_file {
            settings.layer(crate::config::read_file(path)?);
            settings.config_file = Some(path.to_path_buf());
        }
        settings.layer(flags);
        Ok(settings)
    }

    /// Puts `layer` on top: every value it sets replaces the current one.
    pub fn layer(&mut self, layer: SettingsLayer) {
        let SettingsLayer {
            adapter,
            data_dir,
            listen,
            max_connections,
            storage_size,
            retention,
            sync_interval,
            out_of_order_window,
            worker_nice,
            cpu_limit_headroom,
            ready_after,
            query,
            forward_queue_size,
            remote_write,
            web,
            limits,
            kubeconfig,
            standalone,
            no_cluster_auth,
            global,
            scrape_configs,
            scrape_config_files: _,
            rule_files,
            alerting,
            remote_read,
            tracing,
            storage,
        } = layer;
        let prometheus_blocks = PrometheusBlocks { alerting, remote_read, tracing, storage };
        set(&mut self.data_dir, data_dir);
        set(&mut self.listen, listen);
        set(&mut self.max_connections, max_connections);
        set(&mut self.storage_size_bytes, storage_size);
        set_optional(&mut self.retention, retention);
        set(&mut self.sync_interval, sync_interval);
        set(&mut self.out_of_order_window, prometheus_blocks.out_of_order_window());
        set(&mut self.out_of_order_window, out_of_order_window);
        self.unused_prometheus_blocks.extend(prometheus_blocks.unused());
        self.unused_prometheus_blocks.extend(crate::prometheus_blocks::unused_in_global(global.as_ref()));
        set(&mut self.worker_nice, worker_nice);
        set(&mut self.cpu_limit_headroom, cpu_limit_headroom);
        set(&mut self.ready_after, ready_after);
        set(&mut self.query.lookback, query.lookback_delta);
        set(&mut self.query.max_samples, query.max_samples);
        set(&mut self.query.timeout, query.timeout);
        set(&mut self.remote_write_max_body_bytes, remote_write.max_body_bytes);
        set_optional(&mut self.remote_write_bearer_token_file, remote_write.bearer_token_file);
        set(&mut self.remote_write_max_inflight_bytes, remote_write.max_inflight_bytes);
        set_optional(&mut self.remote_write_destinations, remote_write.destinations);
        set_optional(&mut self.forward_queue_size_bytes, forward_queue_size);
        set_optional(&mut self.global, global);
        set_optional(&mut self.scrape_configs, scrape_configs);
        set(&mut self.rule_files, rule_files);
        self.adapter.layer(adapter);
        self.web.layer(web);
        layer_limits(&mut self.limits, limits);
        if let Some(path) = kubeconfig {
            self.cluster.mode = ClusterMode::Kubeconfig(path);
        }
        if standalone {
            self.cluster.mode = ClusterMode::Standalone;
        }
        if no_cluster_auth {
            self.cluster.authentication = false;
        }
    }
}

impl AdapterSettings {
    /// The metrics APIs' address: as set, or by default every interface with a cluster (its
    /// authentication guards them) and the HTTP API's host (`http_listen`, loopback by default)
    /// without one, where they have no authentication.
    pub fn effective_secure_listen(&self, with_cluster: bool, http_listen: SocketAddr) -> SocketAddr {
        match self.secure_listen_explicit || with_cluster {
            true => self.secure_listen,
            false => SocketAddr::new(http_listen.ip(), self.secure_listen.port()),
        }
    }

    fn layer(&mut self, layer: AdapterLayer) {
        let AdapterLayer {
            secure_listen,
            tls_cert_file,
            tls_private_key_file,
            config_file,
            tokens_file,
            rate_window,
            metrics_max_age,
            max_connections,
        } = layer;
        if let Some(addr) = secure_listen {
            self.secure_listen = addr;
            self.secure_listen_explicit = true;
        }
        set_optional(&mut self.tls_cert_file, tls_cert_file);
        set_optional(&mut self.tls_private_key_file, tls_private_key_file);
        set_optional(&mut self.config_file, config_file);
        set_optional(&mut self.tokens_file, tokens_file);
        set(&mut self.rate_window, rate_window);
        set(&mut self.metrics_max_age, metrics_max_age);
        set(&mut self.max_connections, max_connections);
    }
}

impl WebSettings {
    fn layer(&mut self, layer: WebLayer) {
        let WebLayer {
            config_file,
            read_header_timeout,
            read_timeout,
            idle_timeout,
            probe_connections,
            http2_max_concurrent_streams,
            enable_lifecycle,
            enable_admin_api,
        } = layer;
        self.enable_lifecycle |= enable_lifecycle;
        self.enable_admin_api |= enable_admin_api;
        set_optional(&mut self.config_file, config_file);
        set(&mut self.read_header_timeout, read_header_timeout);
        set(&mut self.read_timeout, read_timeout);
        set(&mut self.idle_timeout, idle_timeout);
        set(&mut self.probe_connections, probe_connections);
        set(&mut self.http2_max_concurrent_streams, http2_max_concurrent_streams);
    }
}

fn layer_limits(current: &mut ingest::IngestLimits, layer: LimitsLayer) {
    let LimitsLayer {
        max_labels_per_series,
        max_label_name_length,
        max_label_value_length,
        max_series_per_request,
        max_active_series,
        max_new_series_per_minute,
    } = layer;
    set(&mut current.max_labels_per_series, max_labels_per_series);
    set(&mut current.max_label_name_bytes, max_label_name_length);
    set(&mut current.max_label_value_bytes, max_label_value_length);
    set(&mut current.max_series_per_request, max_series_per_request);
    set(&mut current.max_active_series, max_active_series);
    set(&mut current.max_new_series_per_minute, max_new_series_per_minute);
}

fn set<T>(current: &mut T, layered: Option<T>) {
    if let Some(value) = layered {
        *current = value;
    }
}

fn set_optional<T>(current: &mut Option<T>, layered: Option<T>) {
    if layered.is_some() {
        *current = layered;
    }
}

/// Serde glue for `Option<Duration>` written as a humantime string (`1s`, `15d`).
/// When `/-/ready` starts answering 200 (`--ready-after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyAfter {
    /// This long after start.
    Duration(Duration),
    /// The longest range window in the adapter rules after start.
    RuleWindow,
}

impl ReadyAfter {
    /// `rule-window` or a duration (`2m`, `0s`).
    pub fn parse(text: &str) -> Result<ReadyAfter, String> {
        if text == "rule-window" {
            return Ok(ReadyAfter::RuleWindow);
        }
        humantime::parse_duration(text)
            .map(ReadyAfter::Duration)
            .map_err(|e| format!("{text:?} is neither `rule-window` nor a duration: {e}"))
    }
}

fn ready_after_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ReadyAfter>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| ReadyAfter::parse(&t).map_err(serde::de::Error::custom)).transpose()
}

fn duration_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom)).transpose()
}

/// Serde glue for `worker_nice`: a niceness step the kernel can add (0–19).
fn nice_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    let nice: Option<i64> = Option::deserialize(d)?;
    nice.map(|n| match i32::try_from(n) {
        Ok(n) if (0..=19).contains(&n) => Ok(n),
        _ => Err(serde::de::Error::custom(format!("worker_nice {n} is outside 0..=19"))),
    })
    .transpose()
}

/// A CPU limit share the workers may leave free: 0 to 0.9.
fn headroom(share: f64) -> Result<f64, String> {
    match (0.0..=0.9).contains(&share) {
        true => Ok(share),
        false => Err(format!("cpu_limit_headroom {share} is outside 0..=0.9")),
    }
}

fn headroom_flag(text: &str) -> Result<f64, String> {
    headroom(text.parse::<f64>().map_err(|e| format!("{text}: {e}"))?)
}

/// Serde glue for `cpu_limit_headroom`.
fn headroom_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Option::<f64>::deserialize(d)?.map(|share| headroom(share).map_err(serde::de::Error::custom)).transpose()
}

/// Serde glue for `storage_size`: a number of bytes (`1073741824`) or a size with a unit (`1GiB`,
/// read by [`crate::byte_size::parse_byte_size`]). The message names the key, which serde_yaml's
/// custom errors do not.
fn storage_size_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    let size = match Option::<serde_yaml::Value>::deserialize(d)? {
        None => return Ok(None),
        Some(serde_yaml::Value::Number(number)) => number
            .as_u64()
            .ok_or_else(|| format!("invalid size {number}: give a whole number of bytes or a size with a unit")),
        Some(serde_yaml::Value::String(text)) => crate::byte_size::parse_byte_size(&text).map_err(|e| e.to_string()),
        Some(other) => {
            Err(format!("invalid size {other:?}: give a number of bytes or a size with a unit (e.g. 512MiB)"))
        }
    };
    size.map(Some).map_err(|message| D::Error::custom(format!("storage_size: {message}")))
}

/// Serde glue for a block written with no keys (`adapter:` alone), which YAML reads as null.
/// `remote_write:` in the file is either the receiver's limits (a mapping, Ringtail's keys) or,
/// as in a Prometheus config, a list of destinations to forward to.
fn receiver_or_destinations<'de, D: Deserializer<'de>>(d: D) -> Result<RemoteWriteLayer, D::Error> {
    match Option::<serde_yaml::Value>::deserialize(d)? {
        None | Some(serde_yaml::Value::Null) => Ok(RemoteWriteLayer::default()),
        Some(list @ serde_yaml::Value::Sequence(_)) => {
            Ok(RemoteWriteLayer { destinations: Some(list), ..RemoteWriteLayer::default() })
        }
        Some(mapping) => serde_yaml::from_value(mapping).map_err(serde::de::Error::custom),
    }
}

fn null_as_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A size as Prometheus prints a base-2 byte count (`0B`, `512MiB`, `10GiB`, `1GiB512MiB`).
pub(crate) fn format_base2_bytes(mut bytes: u64) -> String {
    if bytes == 0 {
        return "0B".into();
    }
    let mut out = String::new();
    for (unit, shift) in [("EiB", 60), ("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10), ("B", 0)] {
        let size = 1u64 << shift;
        if bytes >= size {
            out.push_str(&format!("{}{unit}", bytes / size));
            bytes %= size;
        }
    }
    out
}

impl Settings {
    /// Every `ringtail serve` flag with its effective value, as text (`/api/v1/status/flags`):
    /// each flag under its own name, and also under Prometheus's name where Prometheus has the
    /// same setting (`storage.tsdb.path` for `--data-dir`, …), so tools reading Prometheus's
    /// flags find them. Durations and sizes are written as Prometheus writes them.
    pub fn flag_values(&self) -> Vec<(String, String)> {
        use crate::adapter::rules::config::prom_duration as duration;
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        let retention = self.retention.map(duration).unwrap_or_else(|| "0s".into());
        let ready_after = match self.ready_after {
            ReadyAfter::Duration(d) => duration(d),
            ReadyAfter::RuleWindow => "rule-window".into(),
        };
        let kubeconfig = match &self.cluster.mode {
            ClusterMode::Kubeconfig(p) => p.display().to_string(),
            _ => String::new(),
        };
        let standalone = self.cluster.mode == ClusterMode::Standalone;
        let mut flags: Vec<(&str, String)> = vec![
            ("config", path(&self.config_file)),
            ("data-dir", self.data_dir.display().to_string()),
            ("listen", self.listen.to_string()),
            ("max-connections", self.max_connections.to_string()),
            ("storage-size", format_base2_bytes(self.storage_size_bytes)),
            ("retention", retention.clone()),
            ("sync-interval", duration(self.sync_interval)),
            ("out-of-order-window", duration(self.out_of_order_window)),
            ("worker-nice", self.worker_nice.to_string()),
            ("cpu-limit-headroom", self.cpu_limit_headroom.to_string()),
            ("ready-after", ready_after),
            ("query.lookback-delta", duration(self.query.lookback)),
            ("query.max-samples", self.query.max_samples.to_string()),
            ("query.timeout", duration(self.query.timeout)),
            ("forward-queue-size", self.forward_queue_size_bytes.map(format_base2_bytes).unwrap_or_default()),
            ("remote-write-max-body-bytes", self.remote_write_max_body_bytes.to_string()),
            ("remote-write-bearer-token-file", path(&self.remote_write_bearer_token_file)),
            ("remote-write-max-inflight-bytes", self.remote_write_max_inflight_bytes.to_string()),
            ("web.config.file", path(&self.web.config_file)),
            ("web.read-header-timeout", duration(self.web.read_header_timeout)),
            ("web.read-timeout", duration(self.web.read_timeout)),
            ("web.idle-timeout", duration(self.web.idle_timeout)),
            ("web.probe-connections", self.web.probe_connections.to_string()),
            ("web.http2-max-concurrent-streams", self.web.http2_max_concurrent_streams.to_string()),
            ("web.enable-lifecycle", self.web.enable_lifecycle.to_string()),
            ("web.enable-admin-api", self.web.enable_admin_api.to_string()),
            ("limits.max-labels-per-series", self.limits.max_labels_per_series.to_string()),
            ("limits.max-label-name-length", self.limits.max_label_name_bytes.to_string()),
            ("limits.max-label-value-length", self.limits.max_label_value_bytes.to_string()),
            ("limits.max-series-per-request", self.limits.max_series_per_request.to_string()),
            ("limits.max-active-series", self.limits.max_active_series.to_string()),
            ("limits.max-new-series-per-minute", self.limits.max_new_series_per_minute.to_string()),
            ("secure-listen", self.adapter.secure_listen.to_string()),
            ("tls-cert-file", path(&self.adapter.tls_cert_file)),
            ("tls-private-key-file", path(&self.adapter.tls_private_key_file)),
            ("adapter-config", path(&self.adapter.config_file)),
            ("adapter-tokens-file", path(&self.adapter.tokens_file)),
            ("adapter-rate-window", duration(self.adapter.rate_window)),
            ("adapter-metrics-max-age", duration(self.adapter.metrics_max_age)),
            ("adapter-max-connections", self.adapter.max_connections.to_string()),
            ("kubeconfig", kubeconfig),
            ("standalone", standalone.to_string()),
            ("no-cluster-auth", (!self.cluster.authentication).to_string()),
        ];
        // Prometheus's names for the same settings.
        flags.extend([
            ("config.file", path(&self.config_file)),
            ("storage.tsdb.path", self.data_dir.display().to_string()),
            ("web.listen-address", self.listen.to_string()),
            ("web.max-connections", self.max_connections.to_string()),
            ("storage.tsdb.retention.time", retention),
            ("storage.tsdb.retention.size", format_base2_bytes(self.storage_size_bytes)),
        ]);
        let mut out: Vec<(String, String)> = flags.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn flag_values_name_every_flag() {
        use clap::Args;
        let command = SettingsLayer::augment_args(clap::Command::new("serve"));
        let values = Settings::default().flag_values();
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            assert!(values.iter().any(|(name, _)| name == long), "--{long} is missing from flag_values");
        }
        let get = |name: &str| values.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("storage.tsdb.retention.size"), Some("1GiB"));
        assert_eq!(get("query.lookback-delta"), Some("5m"));
        assert_eq!(format_base2_bytes(3 << 29), "1GiB512MiB");
    }

    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        layer: SettingsLayer,
    }

    fn flags(args: &[&str]) -> SettingsLayer {
        Flags::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).unwrap().layer
    }

    #[test]
    fn a_flag_beats_the_file_which_beats_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        let defaults = Settings::default();
        assert_eq!(defaults.query.timeout, Duration::from_secs(120));
        assert_eq!(defaults.query.max_samples, 50_000_000);

        std::fs::write(&path, "query:\n  timeout: 30s\n  max_samples: 1000\n  lookback_delta: 1m\n").unwrap();
        let from_file = Settings::from_sources(Some(&path), flags(&[])).unwrap();
        assert_eq!(from_file.query.timeout, Duration::from_secs(30));
        assert_eq!(from_file.query.max_samples, 1000);
        assert_eq!(from_file.query.lookback, Duration::from_secs(60));

        let from_flag = Settings::from_sources(Some(&path), flags(&["--query.timeout", "5s"])).unwrap();
        assert_eq!(from_flag.query.timeout, Duration::from_secs(5));
        assert_eq!(from_flag.query.max_samples, 1000, "what the flags leave unset stays as the file says");

        let untouched = Settings::from_sources(None, flags(&[])).unwrap();
        assert_eq!(untouched.query.timeout, defaults.query.timeout);
    }

    #[test]
    fn every_group_layers_the_same_way() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "listen: 127.0.0.1:9999\nmax_connections: 7\nstorage_size: 1048576\nretention: 2h\n\
             out_of_order_window: 30s\nremote_write: {max_body_bytes: 10}\nadapter: {max_connections: 3, rate_window: 1m}\n\
             web: {idle_timeout: 7s, probe_connections: 2}\nkubeconfig: /k\n",
        )
        .unwrap();
        let settings = Settings::from_sources(
            Some(&path),
            flags(&[
                "--remote-write-max-body-bytes",
                "20",
                "--secure-listen",
                "127.0.0.1:1",
                "--no-cluster-auth",
                "--web.read-header-timeout",
                "3s",
            ]),
        )
        .unwrap();
        assert_eq!(settings.listen.port(), 9999);
        assert_eq!(settings.max_connections, 7);
        assert_eq!(settings.storage_size_bytes, 1 << 20);
        assert_eq!(settings.retention, Some(Duration::from_secs(7200)));
        assert_eq!(settings.out_of_order_window, Duration::from_secs(30));
        assert_eq!(Settings::default().out_of_order_window, DEFAULT_OUT_OF_ORDER_WINDOW);
        assert_eq!(settings.remote_write_max_body_bytes, 20);
        assert_eq!(settings.adapter.max_connections, 3);
        assert_eq!(settings.web.idle_timeout, Duration::from_secs(7));
        assert_eq!(settings.web.probe_connections, 2);
        assert_eq!(settings.web.read_header_timeout, Duration::from_secs(3));
        assert_eq!(settings.web.read_timeout, DEFAULT_READ_TIMEOUT, "what neither layer sets stays the default");
        assert_eq!(settings.adapter.rate_window, Duration::from_secs(60));
        assert!(settings.adapter.secure_listen_explicit);
        assert_eq!(settings.adapter.effective_secure_listen(false, settings.listen).port(), 1, "explicit wins");
        assert_eq!(settings.cluster.mode, ClusterMode::Kubeconfig("/k".into()));
        assert!(!settings.cluster.authentication);
        let standalone = Settings::from_sources(Some(&path), flags(&["--standalone"])).unwrap();
        assert_eq!(standalone.cluster.mode, ClusterMode::Standalone);
    }

    #[test]
    fn a_prometheus_yml_loads_and_names_what_ringtail_does_not_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prometheus.yml");
        // The shape of Debian's sample /etc/prometheus/prometheus.yml, plus the other blocks.
        std::fs::write(
            &path,
            "global:\n  scrape_interval: 15s\n  query_log_file: q.log\n  external_labels:\n      monitor: 'example'\n\
             alerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['localhost:9093']\n\
             rule_files:\n\
             scrape_configs:\n  - job_name: 'prometheus'\n    static_configs:\n      - targets: ['localhost:9090']\n\
             remote_read:\n  - url: http://old:9090/api/v1/read\n\
             storage:\n  tsdb:\n    out_of_order_time_window: 2m\n",
        )
        .unwrap();
        let settings = Settings::from_sources(Some(&path), flags(&[])).unwrap();
        assert_eq!(settings.out_of_order_window, Duration::from_secs(120), "storage.tsdb's window");
        let unused = &settings.unused_prometheus_blocks;
        assert_eq!(unused.len(), 3, "{unused:?}");
        assert!(unused[0].starts_with("alerting:") && unused[1].starts_with("remote_read:"), "{unused:?}");
        assert!(unused[2].starts_with("global.query_log_file:"), "{unused:?}");
        assert!(settings.scrape_configs.is_some());
        let flag_wins = Settings::from_sources(Some(&path), flags(&["--out-of-order-window", "0s"])).unwrap();
        assert_eq!(flag_wins.out_of_order_window, Duration::ZERO);
        assert_eq!(flag_wins.unused_prometheus_blocks.len(), 3, "named once, not per layer");
        std::fs::write(&path, "out_of_order_window: 1m\nstorage: {tsdb: {out_of_order_time_window: 1h}}\n").unwrap();
        let key_wins = Settings::from_sources(Some(&path), flags(&[])).unwrap();
        assert_eq!(key_wins.out_of_order_window, Duration::from_secs(60), "Ringtail's own key wins");
        std::fs::write(&path, "storage: {tsdb: {retention_time: 1d}}\n").unwrap();
        let error = Settings::from_sources(Some(&path), flags(&[])).unwrap_err().to_string();
        assert!(error.contains("retention_time"), "{error}");
    }

    #[test]
    fn remote_write_as_a_list_is_forwarding_and_as_a_mapping_the_receivers_limits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "remote_write:\n- url: http://vm:8428/api/v1/write\nforward_queue_size: 64MiB\n")
            .unwrap();
        let settings = Settings::from_sources(Some(&path), flags(&["--remote-write-max-body-bytes", "20"])).unwrap();
        let list = settings.remote_write_destinations.expect("destinations");
        assert_eq!(list[0]["url"].as_str(), Some("http://vm:8428/api/v1/write"));
        assert_eq!(settings.forward_queue_size_bytes, Some(64 << 20));
        assert_eq!(settings.remote_write_max_body_bytes, 20, "the receiver's flags still apply");

        std::fs::write(&path, "remote_write: {max_body_bytes: 10}\n").unwrap();
        let settings = Settings::from_sources(Some(&path), flags(&[])).unwrap();
        assert!(settings.remote_write_destinations.is_none());
        assert_eq!(settings.remote_write_max_body_bytes, 10);

        std::fs::write(&path, "remote_write: {url: http://vm}\n").unwrap();
        let err = Settings::from_sources(Some(&path), flags(&[])).unwrap_err().to_string();
        assert!(err.contains("url"), "a destination must be a list entry: {err}");
    }

    #[test]
    fn without_a_cluster_the_metrics_apis_default_to_the_http_host() {
        let defaults = Settings::default();
        let standalone = defaults.adapter.effective_secure_listen(false, defaults.listen);
        assert_eq!(standalone, "127.0.0.1:6443".parse().unwrap());
        let everywhere: SocketAddr = "0.0.0.0:9201".parse().unwrap();
        assert_eq!(defaults.adapter.effective_secure_listen(false, everywhere), "0.0.0.0:6443".parse().unwrap());
        assert_eq!(defaults.adapter.effective_secure_listen(true, defaults.listen), DEFAULT_SECURE_LISTEN);
        let flagged = Settings::from_sources(None, flags(&["--web.config.file", "/w.yml"])).unwrap();
        assert_eq!(flagged.web.config_file, Some(PathBuf::from("/w.yml")));
    }

    #[test]
    fn limits_layer_from_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "limits: {max_labels_per_series: 10, max_active_series: 0, max_label_value_length: 99}\n",
        )
        .unwrap();
        let settings = Settings::from_sources(Some(&path), flags(&["--limits.max-label-value-length", "7"])).unwrap();
        let limits = settings.limits;
        assert_eq!((limits.max_labels_per_series, limits.max_active_series), (10, 0));
        assert_eq!(limits.max_label_value_bytes, 7, "the flag wins");
        assert_eq!(limits.max_new_series_per_minute, ingest::DEFAULT_MAX_NEW_SERIES_PER_MINUTE);
        std::fs::write(&path, "limits: {max_labels: 1}\n").unwrap();
        assert!(Settings::from_sources(Some(&path), flags(&[])).is_err());
    }

    #[test]
    fn empty_blocks_and_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "adapter:\nquery:\n").unwrap();
        assert!(Settings::from_sources(Some(&path), SettingsLayer::default()).is_ok());
        for bad in ["listne: 1\n", "query: {timeot: 1s}\n", "adapter: {rate_window: soon}\n"] {
            std::fs::write(&path, bad).unwrap();
            let err = Settings::from_sources(Some(&path), SettingsLayer::default()).unwrap_err().to_string();
            assert!(err.starts_with("invalid config file"), "{bad}: {err}");
        }
    }

    #[test]
    fn storage_size_takes_units_in_flags_and_file() {
        assert_eq!(flags(&["--storage-size", "512MiB"]).storage_size, Some(512 << 20));
        assert_eq!(flags(&["--storage-size", "1TB"]).storage_size, Some(1 << 40));
        assert_eq!(flags(&["--storage-size=4096"]).storage_size, Some(4096));
        for bad in ["1.5GB", "1gb", "16EiB", "lots", ""] {
            let err = Flags::try_parse_from(["serve", "--storage-size", bad]).err().unwrap().to_string();
            assert!(err.contains("--storage-size"), "{bad}: the error names the flag: {err}");
        }

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        for (yaml, expected) in [
            ("storage_size: 10GiB\n", 10u64 << 30),
            ("storage_size: \"64MB\"\n", 64 << 20),
            ("storage_size: 2048\n", 2048),
        ] {
            std::fs::write(&path, yaml).unwrap();
            let settings = Settings::from_sources(Some(&path), flags(&[])).unwrap();
            assert_eq!(settings.storage_size_bytes, expected, "{yaml}");
            let flagged = Settings::from_sources(Some(&path), flags(&["--storage-size", "3MiB"])).unwrap();
            assert_eq!(flagged.storage_size_bytes, 3 << 20, "the flag wins over {yaml}");
        }
        for bad in [
            "storage_size: 1.5GB\n",
            "storage_size: -1\n",
            "storage_size: 2.5\n",
            "storage_size: [1]\n",
            "storage_size: 99EiB\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = Settings::from_sources(Some(&path), flags(&[])).unwrap_err().to_string();
            assert!(err.starts_with("invalid config file") && err.contains("storage_size"), "{bad}: {err}");
        }
    }

    #[test]
    fn worker_nice_and_cpu_limit_headroom_in_flags_and_file() {
        assert_eq!(Settings::default().worker_nice, crate::workers::DEFAULT_NICE);
        assert_eq!(flags(&["--worker-nice", "0"]).worker_nice, Some(0));
        for bad in ["20", "-1", "high"] {
            assert!(Flags::try_parse_from(["serve", "--worker-nice", bad]).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "worker_nice: 12\n").unwrap();
        assert_eq!(Settings::from_sources(Some(&path), flags(&[])).unwrap().worker_nice, 12);
        std::fs::write(&path, "cpu_limit_headroom: 0.5\n").unwrap();
        assert_eq!(Settings::from_sources(Some(&path), flags(&[])).unwrap().cpu_limit_headroom, 0.5);
        assert_eq!(flags(&["--cpu-limit-headroom", "0"]).cpu_limit_headroom, Some(0.0));
        for bad in ["0.95", "-0.1", "NaN", "most"] {
            assert!(Flags::try_parse_from(["serve", "--cpu-limit-headroom", bad]).is_err(), "{bad}");
        }
        for bad in ["worker_nice: 20\n", "worker_nice: -3\n", "cpu_limit_headroom: 1.5\n"] {
            std::fs::write(&path, bad).unwrap();
            let err = Settings::from_sources(Some(&path), flags(&[])).unwrap_err().to_string();
            assert!(err.contains("worker_nice") || err.contains("cpu_limit_headroom"), "{bad}: {err}");
        }
    }

    /// The help texts name the defaults `Settings::default` holds.
    #[test]
    fn help_states_the_defaults() {
        let help = Flags::command().render_long_help().to_string();
        let defaults = Settings::default();
        let query = &defaults.query;
        for expected in [
            format!("[default: {}]", defaults.data_dir.display()),
            format!("[default: {}]", defaults.listen),
            format!("[default: {} connections]", defaults.max_connections),
            format!("[default: 1GiB = {} bytes]", defaults.storage_size_bytes),
            format!("[default: {}]", humantime::format_duration(defaults.sync_interval)),
            format!(
                "[default: {}: ready at once]",
                match defaults.ready_after {
                    ReadyAfter::Duration(d) => humantime::format_duration(d).to_string(),
                    ReadyAfter::RuleWindow => "rule-window".into(),
                }
            ),
            format!("[default: {}]", humantime::format_duration(query.lookback)),
            format!("[default: {}]", query.max_samples),
            format!("[default: {}]", humantime::format_duration(query.timeout)),
            format!("[default: {} = 32 MiB]", defaults.remote_write_max_body_bytes),
            format!("[default: {} = 256 MiB]", defaults.remote_write_max_inflight_bytes),
            format!("[default: {};", defaults.adapter.secure_listen),
            format!("[default: {}]", humantime::format_duration(defaults.adapter.rate_window)),
            format!("[default: {}]", humantime::format_duration(defaults.adapter.metrics_max_age)),
            format!("[default: {}]", humantime::format_duration(defaults.web.read_header_timeout)),
            format!("[default: {}]", humantime::format_duration(defaults.web.read_timeout)),
            format!("[default: {}]", humantime::format_duration(defaults.web.idle_timeout)),
            format!("[default: {} connections]", defaults.web.probe_connections),
            format!("[default: {} streams]", defaults.web.http2_max_concurrent_streams),
            format!("[default: {} labels]", defaults.limits.max_labels_per_series),
            format!("[default: {} bytes]", defaults.limits.max_label_name_bytes),
            format!("[default: {} bytes]", defaults.limits.max_label_value_bytes),
            format!("[default: {} series]", defaults.limits.max_series_per_request),
            format!("[default: {} series]", defaults.limits.max_active_series),
            format!("[default: {} series]", defaults.limits.max_new_series_per_minute),
        ] {
            let flat: String = help.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(flat.contains(&expected), "--help lacks {expected:?}:\n{help}");
        }
    }
}
