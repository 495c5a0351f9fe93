//! `forward` is Ringtail's remote-write sender: every sample the store accepts (scraped or
//! received) is queued on disk before its append returns and sent to each `remote_write`
//! destination of the config file, in Prometheus's shape and with Prometheus's
//! `prometheus_remote_storage_*` self-metrics.
//!
//! Map: `config` (the `remote_write` list → [`Destination`]s, `global.external_labels`), `queue`
//! (the on-disk queue and each destination's durable position), `sender` (one loop per
//! destination: relabel, encode, POST, retry).
//!
//! Key decision: a separate queue rather than replaying from the store. The store keeps no global
//! order of appends (each series is its own run of chunks), so "everything after position P" is
//! not a question it can answer without an index of its own; the queue is that index, written as
//! one compressed record per append batch (~10 bytes a sample), and its size comes out of the
//! one storage budget. A destination that is down keeps its backlog until the queue's share is
//! full; then the oldest segment goes and what that destination had not been sent is counted as
//! dropped.

mod config;
mod queue;
mod sender;

pub use config::{
    expand_external_labels, Destination, QueueConfig, RemoteWriteConfig, WireVersion, DEFAULT_MAX_BACKOFF,
    DEFAULT_MAX_SAMPLES_PER_SEND, DEFAULT_MIN_BACKOFF, DEFAULT_REMOTE_TIMEOUT,
};
pub use queue::MIN_QUEUE_BYTES;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tsdb::{AcceptedSample, AppendObserver, Db};

/// Why forwarding could not start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    #[error("cannot open the forwarding queue in {dir}: {source}")]
    Queue {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `remote_name` and `url`, as Prometheus labels its remote-storage metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RemoteLabels {
    remote_name: String,
    url: String,
}

/// A drop's labels: the destination and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DroppedLabels {
    remote_name: String,
    url: String,
    reason: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// One destination's metric handles.
#[derive(Debug, Clone)]
struct DestinationMetrics {
    sent: Counter,
    failed: Counter,
    retried: Counter,
    bytes: Counter,
    dropped_relabel: Counter,
    dropped_too_old: Counter,
    highest_sent_seconds: FloatGauge,
}

/// Forwarding: the queue the store's appends are written to, and a sender per destination.
pub struct Forwarder {
    queue: Arc<queue::Queue>,
    senders: parking_lot::Mutex<Vec<sender::Sender>>,
    highest_timestamp_seconds: FloatGauge,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").field("queue", &self.queue).finish_non_exhaustive()
    }
}

impl Forwarder {
    /// Opens the queue in `dir` (at most `queue_bytes` of disk) for `destinations`, builds their
    /// HTTP clients and registers the self-metrics. Nothing is sent until [`Forwarder::start`];
    /// install it on the store with `Db::set_append_observer` before the first append that
    /// should be forwarded.
    pub fn open(
        dir: &Path,
        destinations: Vec<Destination>,
        external_labels: Vec<(String, String)>,
        queue_bytes: u64,
        registry: &mut Registry,
    ) -> Result<Arc<Forwarder>, ForwardError> {
        let samples = Family::<RemoteLabels, Counter>::default();
        let failed = Family::<RemoteLabels, Counter>::default();
        let retried = Family::<RemoteLabels, Counter>::default();
        let dropped = Family::<DroppedLabels, Counter>::default();
        let pending = Family::<RemoteLabels, Gauge>::default();
        let highest_sent = Family::<RemoteLabels, FloatGauge>::default();
        let bytes = Family::<RemoteLabels, Counter>::default();
        let highest_timestamp_seconds = FloatGauge::default();
        let queue_size = Gauge::<i64>::default();
        registry.register("prometheus_remote_storage_samples", "Samples sent to remote storage", samples.clone());
        registry.register(
            "prometheus_remote_storage_samples_failed",
            "Samples the remote storage refused for good (a 4xx other than 429): not sent again",
            failed.clone(),
        );
        registry.register(
            "prometheus_remote_storage_samples_retried",
            "Samples sent again after a 5xx, a 429 or a connection error",
            retried.clone(),
        );
        registry.register(
            "prometheus_remote_storage_samples_dropped",
            "Samples never sent, by reason: relabeling dropped them (relabel), older than sample_age_limit \
             (too_old), the queue's budget overwrote them before they were sent (queue_full), or the queue could \
             not write them (queue_write_failed)",
            dropped.clone(),
        );
        registry.register(
            "prometheus_remote_storage_samples_pending",
            "Samples queued and not yet sent",
            pending.clone(),
        );
        registry.register(
            "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
            "Newest timestamp the remote storage has acknowledged",
            highest_sent.clone(),
        );
        registry.register(
            "prometheus_remote_storage_bytes",
            "Compressed request bytes the remote storage acknowledged",
            bytes.clone(),
        );
        registry.register(
            "prometheus_remote_storage_highest_timestamp_in_seconds",
            "Newest timestamp written to the forwarding queue",
            highest_timestamp_seconds.clone(),
        );

        let labels = |d: &Destination| RemoteLabels { remote_name: d.name.clone(), url: d.url.to_string() };
        let dropped_for = |d: &Destination, reason: &'static str| {
            dropped
                .get_or_create(&DroppedLabels { remote_name: d.name.clone(), url: d.url.to_string(), reason })
                .clone()
        };
        let readers: Vec<(String, queue::ReaderMetrics)> = destinations
            .iter()
            .map(|d| {
                let metrics = queue::ReaderMetrics {
                    pending: pending.get_or_create(&labels(d)).clone(),
                    dropped_overwritten: dropped_for(d, "queue_full"),
                    dropped_write_failed: dropped_for(d, "queue_write_failed"),
                };
                (d.name.clone(), metrics)
            })
            .collect();
        let queue = queue::Queue::open(dir, queue_bytes, readers)
            .map_err(|source| ForwardError::Queue { dir: dir.to_path_buf(), source })?;
        queue_size.set(queue.max_bytes() as i64);
        registry.register("ringtail_forward_queue_max_bytes", "Disk the forwarding queue may use", queue_size);
        let external_labels: Arc<[(String, String)]> = external_labels.into();
        let mut senders = Vec::with_capacity(destinations.len());
        for (slot, destination) in destinations.into_iter().enumerate() {
            let invalid =
                |message: String| crate::ConfigError::Forward { destination: destination.name.clone(), message };
            let builder = reqwest::Client::builder()
                .user_agent(concat!("Ringtail/", env!("CARGO_PKG_VERSION")))
                .no_proxy()
                .redirect(if destination.follow_redirects {
                    reqwest::redirect::Policy::limited(10)
                } else {
                    reqwest::redirect::Policy::none()
                })
                .pool_max_idle_per_host(2);
            let client =
                destination.tls.apply(builder).and_then(|b| b.build().map_err(|e| e.to_string())).map_err(invalid)?;
            let metrics = DestinationMetrics {
                sent: samples.get_or_create(&labels(&destination)).clone(),
                failed: failed.get_or_create(&labels(&destination)).clone(),
                retried: retried.get_or_create(&labels(&destination)).clone(),
                bytes: bytes.get_or_create(&labels(&destination)).clone(),
                dropped_relabel: dropped_for(&destination, "relabel"),
                dropped_too_old: dropped_for(&destination, "too_old"),
                highest_sent_seconds: highest_sent.get_or_create(&labels(&destination)).clone(),
            };
            let reader = queue.reader(slot);
            senders.push(sender::Sender::new(destination, external_labels.clone(), client, reader, metrics));
        }
        Ok(Arc::new(Forwarder { queue, senders: parking_lot::Mutex::new(senders), highest_timestamp_seconds }))
    }

    /// Starts one sender task per destination on the current runtime; they stop when `stop`
    /// turns true (what they had not sent stays queued for the next start). A second call starts
    /// nothing.
    pub fn start(&self, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.senders.lock()).into_iter().map(|s| tokio::spawn(s.run(stop.clone()))).collect()
    }

    /// Bytes the queue holds now.
    pub fn queue_bytes(&self) -> u64 {
        self.queue.bytes()
    }
}

impl AppendObserver for Forwarder {
    fn appended(&self, db: &Db, accepted: &[AcceptedSample]) {
        self.queue.append(db, accepted);
        let newest = accepted.iter().map(|a| a.sample.ts_ms).max().unwrap_or(i64::MIN) as f64 / 1000.0;
        if newest > self.highest_timestamp_seconds.get() {
            self.highest_timestamp_seconds.set(newest);
        }
    }
}
