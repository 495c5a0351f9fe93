//! `sender` is one destination's loop: read a batch from the queue at the destination's position,
//! turn its series into the destination's labels (external labels, then `write_relabel_configs`,
//! as Prometheus does), encode it as one remote-write request (1.0 by hand from per-series label
//! bytes encoded once; 2.0 through the prost messages), POST it, and move the position on only
//! once the destination has answered for good. 5xx, 429 and connection errors are retried with
//! capped exponential backoff (a `Retry-After` is honoured); any other 4xx is refused for good —
//! counted, logged, and not sent again. One request is in flight at a time, so each series'
//! samples arrive in the order they were stored.

use super::config::{Destination, WireVersion, MAX_RETRY_AFTER};
use super::queue::{QueueReader, QueuedSample};
use super::DestinationMetrics;
use crate::proto::v2;
use prost::encoding::{encode_varint, encoded_len_varint};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tsdb::Labels;

/// Series ids hashed by one multiplication (std's SipHash costs more than the rest of a lookup,
/// and ids are not chosen by clients).
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<u32, V, std::hash::BuildHasherDefault<IdHasher>>;

/// A series as this destination is sent it.
struct OutgoingSeries {
    labels: Labels,
    /// The 1.0 `TimeSeries.labels` fields, encoded once.
    v1_labels: Vec<u8>,
}

/// Most bytes of a refusal's body kept for the log.
const MAX_ERROR_BODY_BYTES: usize = 512;
/// How often one destination logs the same kind of trouble.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// How a request ended.
enum Delivery {
    Sent,
    /// Refused for good (a 4xx other than 429): dropped and counted.
    Refused,
    /// The server is stopping; the batch stays in the queue.
    Stopped,
}

pub(super) struct Sender {
    destination: Destination,
    external_labels: Arc<[(String, String)]>,
    client: reqwest::Client,
    reader: QueueReader,
    metrics: DestinationMetrics,
    /// Outgoing series by queue id, for the segment being read (`None`: relabeling dropped it).
    series: IdMap<Option<OutgoingSeries>>,
    series_segment: u64,
    body: Vec<u8>,
    /// Reused for every request (its hash table and output buffer).
    encoder: snap::raw::Encoder,
    compressed: Vec<u8>,
    last_logged: Option<std::time::Instant>,
}

impl Sender {
    pub(super) fn new(
        destination: Destination,
        external_labels: Arc<[(String, String)]>,
        client: reqwest::Client,
        reader: QueueReader,
        metrics: DestinationMetrics,
    ) -> Sender {
        Sender {
            destination,
            external_labels,
            client,
            reader,
            metrics,
            series: IdMap::default(),
            series_segment: 0,
            body: Vec::new(),
            encoder: snap::raw::Encoder::new(),
            compressed: Vec::new(),
            last_logged: None,
        }
    }

    /// Sends until `stop` fires.
    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let batch = match self.reader.read(self.destination.max_samples_per_send) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(destination = %self.destination.name, error = %e, "cannot read the forwarding queue");
                    if sleep_or_stop(Duration::from_secs(1), &mut stop).await {
                        return;
                    }
                    continue;
                }
            };
            if batch.samples.is_empty() {
                tokio::select! {
                    _ = self.reader.wait_for_more() => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
            if batch.segment != self.series_segment {
                // Every segment declares the series it names again: what an older one said goes.
                self.series.clear();
                self.series_segment = batch.segment;
            }
            for (id, labels) in batch.declarations {
                let outgoing = self.outgoing(labels);
                self.series.insert(id, outgoing);
            }
            let read = batch.samples.len() as u64;
            let (samples, highest_ts) = self.encode(batch.samples);
            if samples > 0 {
                self.compressed.resize(snap::raw::max_compress_len(self.body.len()), 0);
                let body = match self.encoder.compress(&self.body, &mut self.compressed) {
                    Ok(n) => bytes::Bytes::copy_from_slice(&self.compressed[..n]),
                    Err(e) => {
                        tracing::error!(destination = %self.destination.name, error = %e, "cannot compress a request: dropped");
                        self.metrics.failed.inc_by(samples);
                        self.reader.acknowledge(batch.end, read);
                        continue;
                    }
                };
                match self.deliver(body, samples, &mut stop).await {
                    Delivery::Sent => {
                        self.metrics.sent.inc_by(samples);
                        let seconds = highest_ts as f64 / 1000.0;
                        if seconds > self.metrics.highest_sent_seconds.get() {
                            self.metrics.highest_sent_seconds.set(seconds);
                        }
                    }
                    Delivery::Refused => {
                        self.metrics.failed.inc_by(samples);
                    }
                    Delivery::Stopped => return,
                }
            }
            self.reader.acknowledge(batch.end, read);
        }
    }

    /// The destination's labels for a series: external labels where the series has none of that
    /// name, then the write relabeling (`None` when it drops the series).
    fn outgoing(&self, mut labels: Labels) -> Option<OutgoingSeries> {
        for (name, value) in self.external_labels.iter() {
            if labels.get(name).is_none() {
                labels.set(name, value);
            }
        }
        if !self.destination.relabel.apply(&mut labels) || labels.is_empty() {
            return None;
        }
        let mut v1_labels = Vec::new();
        if self.destination.wire == WireVersion::V1 {
            for label in labels.iter() {
                let len = 2
                    + encoded_len_varint(label.name.len() as u64)
                    + label.name.len()
                    + encoded_len_varint(label.value.len() as u64)
                    + label.value.len();
                v1_labels.push(0x0a);
                encode_varint(len as u64, &mut v1_labels);
                v1_labels.push(0x0a);
                encode_varint(label.name.len() as u64, &mut v1_labels);
                v1_labels.extend_from_slice(label.name.as_bytes());
                v1_labels.push(0x12);
                encode_varint(label.value.len() as u64, &mut v1_labels);
                v1_labels.extend_from_slice(label.value.as_bytes());
            }
        }
        Some(OutgoingSeries { labels, v1_labels })
    }

    /// Encodes the batch into `self.body` (uncompressed), one time series per series with its
    /// samples in timestamp order. Returns how many samples it holds and the newest timestamp;
    /// samples of series relabeling dropped, or older than `sample_age_limit`, are counted as
    /// dropped.
    fn encode(&mut self, mut samples: Vec<QueuedSample>) -> (u64, i64) {
        // Each series' samples together and in order (ids and timestamps are unique pairs).
        samples.sort_unstable_by_key(|s| (s.series, s.ts_ms));
        let oldest_allowed = self.destination.sample_age_limit.map(|limit| tsdb::now_ms() - limit.as_millis() as i64);
        self.body.clear();
        let mut v2_request = v2::Request { symbols: vec![String::new()], timeseries: Vec::new() };
        let mut symbols: HashMap<String, u32> = HashMap::new();
        let (mut count, mut highest, mut relabeled_away, mut too_old) = (0u64, i64::MIN, 0u64, 0u64);
        let mut start = 0;
        while start < samples.len() {
            let id = samples[start].series;
            let end = start + samples[start..].iter().take_while(|s| s.series == id).count();
            let run = &samples[start..end];
            start = end;
            let Some(Some(series)) = self.series.get(&id) else {
                relabeled_away += run.len() as u64;
                continue;
            };
            let fresh = |s: &&QueuedSample| oldest_allowed.is_none_or(|oldest| s.ts_ms >= oldest);
            let kept = run.iter().filter(fresh).count();
            too_old += (run.len() - kept) as u64;
            if kept == 0 {
                continue;
            }
            count += kept as u64;
            highest = highest.max(run.iter().filter(fresh).map(|s| s.ts_ms).max().unwrap_or(i64::MIN));
            match self.destination.wire {
                WireVersion::V1 => encode_v1_series(&mut self.body, &series.v1_labels, run.iter().filter(fresh)),
                WireVersion::V2 => {
                    let mut labels_refs = Vec::with_capacity(series.labels.len() * 2);
                    for label in series.labels.iter() {
                        for text in [label.name.as_str(), label.value.as_str()] {
                            let index = match symbols.get(text) {
                                Some(index) => *index,
                                None => {
                                    let index = v2_request.symbols.len() as u32;
                                    v2_request.symbols.push(text.to_string());
                                    symbols.insert(text.to_string(), index);
                                    index
                                }
                            };
                            labels_refs.push(index);
                        }
                    }
                    v2_request.timeseries.push(v2::TimeSeries {
                        labels_refs,
                        samples: run
                            .iter()
                            .filter(fresh)
                            .map(|s| v2::Sample { value: s.value, timestamp: s.ts_ms })
                            .collect(),
                        ..Default::default()
                    });
                }
            }
        }
        if self.destination.wire == WireVersion::V2 && count > 0 {
            self.body = prost::Message::encode_to_vec(&v2_request);
        }
        self.metrics.dropped_relabel.inc_by(relabeled_away);
        self.metrics.dropped_too_old.inc_by(too_old);
        (count, highest)
    }

    /// POSTs `body` until the destination takes it, refuses it for good, or the server stops.
    async fn deliver(&mut self, body: bytes::Bytes, samples: u64, stop: &mut watch::Receiver<bool>) -> Delivery {
        let mut backoff = self.destination.min_backoff;
        loop {
            let answer = tokio::select! {
                answer = self.post(body.clone()) => answer,
                _ = stop.changed() => return Delivery::Stopped,
            };
            let wait = match answer {
                Ok((status, _, _)) if status.is_success() => {
                    self.metrics.bytes.inc_by(body.len() as u64);
                    return Delivery::Sent;
                }
                Ok((status, retry_after, message)) => {
                    let retry = status.is_server_error()
                        || (status == reqwest::StatusCode::TOO_MANY_REQUESTS && self.destination.retry_on_429);
                    if !retry {
                        tracing::error!(
                            destination = %self.destination.name,
                            %status,
                            samples,
                            message = %message,
                            "remote write refused a batch for good (a 4xx is not retried): dropped"
                        );
                        return Delivery::Refused;
                    }
                    self.log_retry(format!("HTTP {status}: {message}"));
                    retry_after.unwrap_or(backoff)
                }
                Err(reason) => {
                    self.log_retry(reason);
                    backoff
                }
            };
            self.metrics.retried.inc_by(samples);
            if sleep_or_stop(wait, stop).await {
                return Delivery::Stopped;
            }
            backoff = (backoff * 2).min(self.destination.max_backoff);
        }
    }

    fn log_retry(&mut self, reason: String) {
        let now = std::time::Instant::now();
        if self.last_logged.is_none_or(|at| now.duration_since(at) >= LOG_EVERY) {
            self.last_logged = Some(now);
            tracing::warn!(destination = %self.destination.name, %reason, "remote write failed: retrying");
        }
    }

    /// One POST: the status, the `Retry-After` it asked for and the start of its body.
    async fn post(&self, body: bytes::Bytes) -> Result<(reqwest::StatusCode, Option<Duration>, String), String> {
        let destination = &self.destination;
        let (content_type, version) = match destination.wire {
            WireVersion::V1 => ("application/x-protobuf", "0.1.0"),
            WireVersion::V2 => ("application/x-protobuf;proto=io.prometheus.write.v2.Request", "2.0.0"),
        };
        let mut request = self
            .client
            .post(destination.url.clone())
            .header(reqwest::header::CONTENT_ENCODING, "snappy")
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header("X-Prometheus-Remote-Write-Version", version)
            .timeout(destination.timeout)
            .body(body);
        for (name, value) in &destination.headers {
            request = request.header(name, value);
        }
        let request = destination.auth.apply(request).await?;
        let response = request.send().await.map_err(describe)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut message = Vec::new();
        if !status.is_success() {
            // Only the start of a refusal is read: a destination cannot make the sender buffer
            // a body of any size.
            let mut response = response;
            while message.len() < MAX_ERROR_BODY_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        message.extend_from_slice(&chunk[..chunk.len().min(MAX_ERROR_BODY_BYTES - message.len())])
                    }
                    _ => break,
                }
            }
        }
        let message = String::from_utf8_lossy(&message).trim().to_string();
        Ok((status, retry_after, message))
    }
}

/// Appends one 1.0 `TimeSeries` (field 1 of `WriteRequest`) with these label bytes and samples.
fn encode_v1_series<'a>(out: &mut Vec<u8>, labels: &[u8], samples: impl Iterator<Item = &'a QueuedSample> + Clone) {
    let sample_len = |s: &QueuedSample| 9 + 1 + encoded_len_varint(s.ts_ms as u64);
    let series_len: usize = labels.len()
        + samples.clone().map(|s| 1 + encoded_len_varint(sample_len(s) as u64) + sample_len(s)).sum::<usize>();
    out.push(0x0a);
    encode_varint(series_len as u64, out);
    out.extend_from_slice(labels);
    for sample in samples {
        out.push(0x12);
        encode_varint(sample_len(sample) as u64, out);
        out.push(0x09);
        out.extend_from_slice(&sample.value.to_bits().to_le_bytes());
        out.push(0x10);
        encode_varint(sample.ts_ms as u64, out);
    }
}

/// `Retry-After` as seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
fn parse_retry_after(text: &str) -> Option<Duration> {
    let text = text.trim();
    let wait = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            httpdate::parse_http_date(text).ok()?.duration_since(std::time::SystemTime::now()).unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

fn describe(error: reqwest::Error) -> String {
    crate::error::describe_reqwest(&error, "request timed out")
}

/// Sleeps `wait`; true when `stop` fired first.
async fn sleep_or_stop(wait: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1;

    #[test]
    fn hand_encoded_series_decode_as_the_prost_message() {
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let mut label_bytes = Vec::new();
        for label in labels.iter() {
            prost::encoding::message::encode(
                1,
                &v1::Label { name: label.name.to_string(), value: label.value.to_string() },
                &mut label_bytes,
            );
        }
        let samples = [
            QueuedSample { series: 1, ts_ms: 1_700_000_000_000, value: 0.0 },
            QueuedSample { series: 1, ts_ms: -5, value: f64::NAN },
            QueuedSample { series: 1, ts_ms: 0, value: 1.5 },
        ];
        let mut body = Vec::new();
        encode_v1_series(&mut body, &label_bytes, samples.iter());
        encode_v1_series(&mut body, &label_bytes, samples[..1].iter());
        let request: v1::WriteRequest = prost::Message::decode(body.as_slice()).unwrap();
        assert_eq!(request.timeseries.len(), 2);
        let first = &request.timeseries[0];
        assert_eq!(first.labels.len(), 2);
        assert_eq!((first.labels[1].name.as_str(), first.labels[1].value.as_str()), ("job", "a"));
        let got: Vec<(i64, u64)> = first.samples.iter().map(|s| (s.timestamp, s.value.to_bits())).collect();
        let want: Vec<(i64, u64)> = samples.iter().map(|s| (s.ts_ms, s.value.to_bits())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_capped() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("999999"), Some(MAX_RETRY_AFTER));
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let wait = parse_retry_after(&soon).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30), "{wait:?}");
        assert_eq!(parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
