//! `Receiver` is the one door of a remote-write request into the store: it owns the store handle,
//! the decoding and ingestion limits, the series cache and the decompression buffers, and
//! [`Receiver::remote_write`] runs decompress → decode and validate (series over a per-series or
//! per-request limit left out) → admit new series (live-series cap, new-series rate) → one append
//! → cache update.
//!
//! A receiver serves one store for its whole life (the series cache maps to that store's ids). It
//! is shared behind an `Arc` and called from blocking threads; every method takes `&self`.

use super::decode::DecodedRequest;
use super::decode::{checked_decompressed_len, decode_with_cache, decompress_snappy, DecodeBuffers, DecodeLimits};
use super::store::{store, WriteOutcome};
use super::Protocol;
use crate::error::RemoteWriteError;
use crate::limits::{IngestLimits, Limit, LimitRefusals, Reservation, SeriesAdmission};
use crate::metadata::{remote_write_type_word, RemoteWriteMetadata, MAX_REMOTE_WRITE_METADATA_ENTRIES};
use crate::series_cache::{self, SeriesCache};
use std::sync::{Arc, Mutex, PoisonError};
use tsdb::Db;

/// Decompression or decoding buffers larger than this are freed after the request instead of kept
/// for reuse: a typical request's buffers are worth keeping, a rare huge one's are not.
const MAX_KEPT_SCRATCH_BYTES: usize = 8 << 20;

/// The remote-write receiver of one store. See the module docs.
#[derive(Debug)]
pub struct Receiver {
    db: Arc<Db>,
    limits: DecodeLimits,
    series_limits: IngestLimits,
    admission: SeriesAdmission,
    /// `None` when turned off with [`Receiver::with_series_cache_max_bytes`]`(0)`.
    series_cache: Option<SeriesCache>,
    scratch: ScratchPool,
    /// The metadata entries received (1.0's `metadata`, 2.0's per-series `metadata`).
    metadata: Arc<RemoteWriteMetadata>,
}

impl Receiver {
    /// A receiver storing into `db`, with the default [`IngestLimits`] and a series cache of the
    /// default size (`series_cache::DEFAULT_MAX_BYTES`, 128 MiB: about 5 million series).
    pub fn new(db: Arc<Db>, limits: DecodeLimits) -> Receiver {
        let series_limits = IngestLimits::default();
        Receiver {
            db,
            limits,
            admission: SeriesAdmission::new(&series_limits),
            series_limits,
            series_cache: Some(SeriesCache::new(series_cache::DEFAULT_MAX_BYTES)),
            scratch: ScratchPool::new(),
            metadata: Arc::default(),
        }
    }

    /// Replaces the ingestion limits (labels, series per request, live series, new series rate).
    pub fn with_limits(mut self, series_limits: IngestLimits) -> Receiver {
        self.admission = SeriesAdmission::new(&series_limits);
        self.series_limits = series_limits;
        self
    }

    /// The metric metadata remote-write senders sent (kept once a request is accepted).
    pub fn metadata(&self) -> &Arc<RemoteWriteMetadata> {
        &self.metadata
    }

    /// The ingestion limits this receiver applies.
    pub fn limits(&self) -> &IngestLimits {
        &self.series_limits
    }

    /// Bounds the series cache to `max_bytes` of raw label bytes (it is cleared and refills when
    /// full); 0 turns it off, so every series is decoded and found by its labels (what the
    /// benchmarks compare the cache against).
    pub fn with_series_cache_max_bytes(mut self, max_bytes: usize) -> Receiver {
        self.series_cache = (max_bytes > 0).then(|| SeriesCache::new(max_bytes));
        self
    }

    /// The decompressed size `body` announces (nothing is decompressed), refused with
    /// [`RemoteWriteError::DecompressedTooLarge`] past `max_decompressed_bytes`. Callers size an
    /// in-flight budget with it before [`remote_write`](Self::remote_write), which applies the
    /// same check.
    pub fn decompressed_len(&self, body: &[u8]) -> Result<usize, RemoteWriteError> {
        checked_decompressed_len(body, self.limits.max_decompressed_bytes)
    }

    /// Stores one remote-write request: `body` is the snappy-compressed message of `protocol`;
    /// samples later than `now_ms + max_future_ms` are skipped and counted. A request with any
    /// invalid series (malformed, or refused by the store's own rules) stores nothing (`Err`); a
    /// series over one of the [`IngestLimits`] is left out alone and named in
    /// [`WriteOutcome::refused`], the rest stored; per-sample refusals are counted in the outcome.
    pub fn remote_write(&self, protocol: Protocol, body: &[u8], now_ms: i64) -> Result<WriteOutcome, RemoteWriteError> {
        let mut scratch = self.scratch.take();
        let result = self.write_with(protocol, body, now_ms, &mut scratch);
        self.scratch.give_back(scratch);
        result
    }

    fn write_with(
        &self,
        protocol: Protocol,
        body: &[u8],
        now_ms: i64,
        scratch: &mut Scratch,
    ) -> Result<WriteOutcome, RemoteWriteError> {
        decompress_snappy(body, self.limits.max_decompressed_bytes, &mut scratch.body)?;
        let cache = self.series_cache.as_ref();
        let limits = (&self.limits, &self.series_limits);
        let buffers = std::mem::take(&mut scratch.decoded);
        // The cache's read lock is released before the store adds the new series under its write lock.
        let decoded = match cache {
            Some(cache) => {
                let reader = cache.reader();
                decode_with_cache(protocol, &scratch.body, now_ms, limits.0, limits.1, Some((cache, &reader)), buffers)?
            }
            None => decode_with_cache(protocol, &scratch.body, now_ms, limits.0, limits.1, None, buffers)?,
        };
        let mut refused = decoded.refused.clone();
        for (kind, metric, help, unit) in &decoded.metadata_entries {
            if !metric.is_empty() && !self.metadata.record(remote_write_type_word(*kind), metric, help, unit) {
                tracing::debug!(%metric, "remote-write metadata left out: {MAX_REMOTE_WRITE_METADATA_ENTRIES} entries kept already");
            }
        }
        let (only, reservation) = self.admit(&decoded, &mut refused)?;
        let stored = store(&self.db, cache, &decoded, only.as_deref());
        if let Some(reservation) = reservation {
            let created = stored.as_ref().map_or(0, |(outcome, _)| outcome.series_created);
            self.admission.settle(reservation, usize::try_from(created).unwrap_or(usize::MAX));
        }
        let (mut outcome, removed) = stored?;
        scratch.decoded = decoded.recycle();
        if !removed.is_empty() {
            // Cached ids of series the store removed since: those entries go again by labels.
            let buffers = std::mem::take(&mut scratch.decoded);
            let fresh = decode_with_cache(protocol, &scratch.body, now_ms, limits.0, limits.1, None, buffers)?;
            let (again, _) = store(&self.db, cache, &fresh, Some(&removed))?;
            outcome.add_stored(&again);
            scratch.decoded = fresh.recycle();
        }
        outcome.refused = refused;
        Ok(outcome)
    }

    /// Decides which entries of `decoded`'s batch may be stored under the live-series cap and the
    /// new-series rate: `None` for all of them. The entries named by labels may be new; room is
    /// reserved for all of them, and when there is not enough, each is looked up: known series are
    /// always written, unknown ones while the room lasts, the rest left out (recorded in
    /// `refused`).
    fn admit(
        &self,
        decoded: &DecodedRequest<'_>,
        refused: &mut LimitRefusals,
    ) -> Result<(Option<Vec<usize>>, Option<Reservation>), RemoteWriteError> {
        if self.admission.is_unlimited() {
            return Ok((None, None));
        }
        let batch = decoded.batch();
        let maybe_new = batch.iter().filter(|entry| entry.series.labels().is_some()).count();
        if maybe_new == 0 {
            return Ok((None, None));
        }
        let reservation = self.admission.reserve(maybe_new, self.db.live_series());
        let Some(limit) = reservation.limited_by.filter(|_| reservation.granted < maybe_new) else {
            return Ok((None, Some(reservation)));
        };
        let mut room = reservation.granted;
        let mut keep = Vec::with_capacity(batch.len());
        for (batch_index, entry) in batch.iter().enumerate() {
            let Some(labels) = entry.series.labels() else {
                keep.push(batch_index);
                continue;
            };
            if store_knows(&self.db, labels) {
                keep.push(batch_index);
            } else if room > 0 {
                room -= 1;
                keep.push(batch_index);
            } else {
                let how = match limit {
                    Limit::ActiveSeries => "a new series, and the store is at its live-series cap",
                    _ => "a new series, and this minute's new-series budget is spent",
                };
                refused.refuse(limit, decoded.series_index(batch_index), Some(labels), entry.samples.len(), how);
            }
        }
        Ok((Some(keep), Some(reservation)))
    }
}

/// Whether the store holds a series with exactly these labels (empty values, which the store
/// drops, left aside). Only asked when new series are being refused, for the entries beyond the
/// reserved room, so the index lookups stay off the common path.
fn store_knows(db: &Db, labels: &[(&str, &str)]) -> bool {
    db.lookup(labels).is_some()
}

/// One request's decompressed body and decoding vectors, kept for the next request.
#[derive(Debug, Default)]
struct Scratch {
    body: Vec<u8>,
    decoded: DecodeBuffers,
}

/// Decompression and decoding buffers kept between requests, so a steady stream of requests
/// allocates none.
#[derive(Debug)]
struct ScratchPool {
    free: Mutex<Vec<Scratch>>,
    /// Decoding is CPU-bound, so more requests than cores rarely decode at once; buffers beyond
    /// this count are freed after use.
    max_kept: usize,
}

impl ScratchPool {
    fn new() -> ScratchPool {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        ScratchPool { free: Mutex::new(Vec::new()), max_kept: cores * 2 }
    }

    fn take(&self) -> Scratch {
        self.free.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_default()
    }

    fn give_back(&self, mut buf: Scratch) {
        if buf.body.capacity() > MAX_KEPT_SCRATCH_BYTES {
            buf.body = Vec::new();
        }
        if buf.decoded.capacity_bytes() > MAX_KEPT_SCRATCH_BYTES {
            buf.decoded = DecodeBuffers::default();
        }
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < self.max_kept {
            free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1;
    use crate::remote_write::encode_body;
    use crate::remote_write::test_support::v1_series;
    use tsdb::Sample;

    fn receiver(dir: &tempfile::TempDir) -> Receiver {
        let db = Db::open(tsdb::Options::new(dir.path())).unwrap();
        Receiver::new(Arc::new(db), DecodeLimits::default())
    }

    fn write_raw(receiver: &Receiver, raw: &[u8]) -> Result<WriteOutcome, RemoteWriteError> {
        let body = snap::raw::Encoder::new().compress_vec(raw).unwrap();
        receiver.remote_write(Protocol::V1, &body, 0)
    }

    fn cache_len(receiver: &Receiver) -> usize {
        receiver.series_cache.as_ref().map_or(0, SeriesCache::len)
    }

    /// Decodes a 1.0 request the way `receiver` would, through its series cache.
    fn decode_through_cache<'a>(receiver: &Receiver, raw: &'a [u8]) -> crate::remote_write::DecodedRequest<'a> {
        let cache = receiver.series_cache.as_ref().unwrap();
        decode_with_cache(
            Protocol::V1,
            raw,
            0,
            &DecodeLimits::default(),
            &IngestLimits::default(),
            Some((cache, &cache.reader())),
            DecodeBuffers::default(),
        )
        .unwrap()
    }

    #[test]
    fn malformed_request_stores_nothing_and_valid_one_reports_out_of_order() {
        let (cached_dir, uncached_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for receiver in [receiver(&cached_dir), receiver(&uncached_dir).with_series_cache_max_bytes(0)] {
            let good = v1::WriteRequest {
                timeseries: vec![v1_series(&[("__name__", "a")], &[(10, 1.0), (20, 2.0)])],
                metadata: vec![],
            };
            let outcome = receiver.remote_write(Protocol::V1, &encode_body(&good), 0).unwrap();
            assert_eq!(outcome.samples_written, 2);

            let bad = v1::WriteRequest {
                timeseries: vec![
                    v1_series(&[("__name__", "b")], &[(10, 1.0)]),
                    v1_series(&[("job", "x")], &[(10, 1.0)]),
                ],
                metadata: vec![],
            };
            assert!(receiver.remote_write(Protocol::V1, &encode_body(&bad), 0).is_err());
            assert_eq!(receiver.db.stats().series, 1, "the valid half of a refused request must not be stored");

            let late = v1::WriteRequest {
                timeseries: vec![v1_series(&[("__name__", "a")], &[(15, 9.0), (30, 3.0)])],
                metadata: vec![],
            };
            let outcome = receiver.remote_write(Protocol::V1, &encode_body(&late), 0).unwrap();
            assert_eq!((outcome.samples_written, outcome.out_of_order), (1, 1));
            assert!(outcome.skipped_summary().contains("1 samples skipped (out of order)"));
        }
    }

    #[test]
    fn metadata_of_an_accepted_v1_request_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let receiver = receiver(&dir);
        let request = v1::WriteRequest {
            timeseries: vec![v1_series(&[("__name__", "http_requests_total")], &[(10, 1.0)])],
            metadata: vec![v1::MetricMetadata {
                r#type: 1,
                metric_family_name: "http_requests_total".into(),
                help: "Requests.".into(),
                unit: String::new(),
            }],
        };
        receiver.remote_write(Protocol::V1, &encode_body(&request), 0).unwrap();
        let kept = receiver.metadata().entries();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].metric.as_str(), kept[0].kind, kept[0].help.as_str()),
            ("http_requests_total", "counter", "Requests.")
        );
    }

    #[test]
    fn metadata_of_an_accepted_v2_request_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let receiver = receiver(&dir);
        let request = crate::proto::v2::Request {
            symbols: ["", "__name__", "queue_depth", "Jobs waiting."].map(String::from).to_vec(),
            timeseries: vec![crate::proto::v2::TimeSeries {
                labels_refs: vec![1, 2],
                samples: vec![crate::proto::v2::Sample { value: 3.0, timestamp: 10 }],
                metadata: Some(crate::proto::v2::Metadata { r#type: 2, help_ref: 3, unit_ref: 0 }),
                ..Default::default()
            }],
        };
        receiver.remote_write(Protocol::V2, &encode_body(&request), 0).unwrap();
        let kept = receiver.metadata().entries();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].metric.as_str(), kept[0].kind, kept[0].help.as_str()),
            ("queue_depth", "gauge", "Jobs waiting.")
        );
    }

    #[test]
    fn a_cached_series_the_store_removed_is_written_again_by_labels() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = tsdb::Options::new(dir.path());
        options.retention = Some(std::time::Duration::from_millis(300));
        let receiver = Receiver::new(Arc::new(Db::open(options).unwrap()), DecodeLimits::default());
        let write_now = |receiver: &Receiver, request: &v1::WriteRequest| {
            receiver.remote_write(Protocol::V1, &encode_body(request), tsdb::now_ms())
        };
        let request = |ts: i64| v1::WriteRequest {
            timeseries: vec![
                v1_series(&[("__name__", "a"), ("pod", "p1")], &[(ts, 1.0)]),
                v1_series(&[("__name__", "b"), ("pod", "p1")], &[(ts, 2.0)]),
            ],
            metadata: vec![],
        };
        let first = write_now(&receiver, &request(tsdb::now_ms())).unwrap();
        assert_eq!((first.samples_written, cache_len(&receiver)), (2, 2));
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert_eq!(receiver.db.maintain().unwrap().series_removed, 2);
        // Both series are named by cached ids of removed series: written again by labels.
        let ts = tsdb::now_ms();
        let again = write_now(&receiver, &request(ts)).unwrap();
        assert_eq!((again.samples_written, again.series_created), (2, 2));
        let stored = receiver.db.select(&[tsdb::Matcher::equal("pod", "p1")], i64::MIN, i64::MAX).unwrap();
        assert_eq!(stored.len(), 2);
        assert!(stored.iter().all(|s| s.samples().map(|s| s.ts_ms).collect::<Vec<_>>() == vec![ts]));
        // The cache now holds the new ids: the next request goes by id and is stored.
        let third = write_now(&receiver, &request(ts + 1)).unwrap();
        assert_eq!((third.samples_written, third.series_created), (2, 0));
    }

    #[test]
    fn cache_resolves_known_series_and_keeps_requests_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let receiver = receiver(&dir);
        let request = |ts: i64| v1::WriteRequest {
            timeseries: vec![
                v1_series(&[("__name__", "a"), ("job", "x")], &[(ts, 1.0)]),
                v1_series(&[("__name__", "b")], &[(ts, 2.0)]),
                v1_series(&[("__name__", "c")], &[]),
            ],
            metadata: vec![],
        };
        let first = write_raw(&receiver, &prost::Message::encode_to_vec(&request(10))).unwrap();
        assert_eq!((first.samples_written, first.series_created, cache_len(&receiver)), (2, 2, 2));

        let raw = prost::Message::encode_to_vec(&request(20));
        let decoded = decode_through_cache(&receiver, &raw);
        assert_eq!((decoded.series_count(), decoded.cached_series_count()), (2, 2));
        let second = write_raw(&receiver, &raw).unwrap();
        assert_eq!((second.samples_written, second.series_created), (2, 0));

        // A known series next to an invalid one: nothing of the request is stored.
        let bad = v1::WriteRequest {
            timeseries: vec![
                v1_series(&[("__name__", "a"), ("job", "x")], &[(30, 3.0)]),
                v1_series(&[("job", "y")], &[(30, 3.0)]),
            ],
            metadata: vec![],
        };
        assert!(write_raw(&receiver, &prost::Message::encode_to_vec(&bad)).is_err());
        let series = receiver.db.select(&[], i64::MIN, i64::MAX).unwrap();
        let a: Vec<Sample> = series.iter().find(|s| s.labels.metric_name() == Some("a")).unwrap().samples().collect();
        assert_eq!(a, vec![Sample::new(10, 1.0), Sample::new(20, 1.0)]);
        assert_eq!(receiver.db.stats().series, 2);
    }

    #[test]
    fn interleaved_label_fields_take_the_decoding_path() {
        let dir = tempfile::tempdir().unwrap();
        let receiver = receiver(&dir);
        // Two TimeSeries encodings concatenated merge into one: label, sample, label.
        let mut series = prost::Message::encode_to_vec(&v1_series(&[("__name__", "m")], &[(5, 1.0)]));
        series.extend(prost::Message::encode_to_vec(&v1_series(&[("job", "j")], &[])));
        let mut raw = vec![0x0a];
        prost::encoding::encode_varint(series.len() as u64, &mut raw);
        raw.extend(&series);
        for _ in 0..2 {
            let decoded = decode_through_cache(&receiver, &raw);
            assert_eq!(decoded.cached_series_count(), 0);
            assert_eq!(decoded.batch()[0].series.labels().unwrap(), &[("__name__", "m"), ("job", "j")]);
            write_raw(&receiver, &raw).unwrap();
        }
        assert_eq!(cache_len(&receiver), 0);
        assert_eq!(receiver.db.stats().series, 1);
    }

    #[test]
    fn decompressed_size_is_checked_against_the_receivers_limit() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(tsdb::Options::new(dir.path())).unwrap());
        let limits = DecodeLimits { max_decompressed_bytes: 16, ..DecodeLimits::default() };
        let receiver = Receiver::new(db, limits);
        let body = encode_body(&v1::WriteRequest {
            timeseries: vec![v1_series(&[("__name__", "a_long_enough_metric_name")], &[(1, 1.0)])],
            metadata: vec![],
        });
        for result in
            [receiver.decompressed_len(&body).map(drop), receiver.remote_write(Protocol::V1, &body, 0).map(drop)]
        {
            assert!(matches!(result, Err(RemoteWriteError::DecompressedTooLarge { max_bytes: 16, .. })));
        }
        assert!(matches!(receiver.decompressed_len(b"\xff\xff\xff\xff\xff\xff"), Err(RemoteWriteError::Snappy(_))));
    }

    fn write_series(receiver: &Receiver, series: Vec<v1::TimeSeries>) -> WriteOutcome {
        let request = v1::WriteRequest { timeseries: series, metadata: vec![] };
        receiver.remote_write(Protocol::V1, &encode_body(&request), 0).unwrap()
    }

    fn stored_names(receiver: &Receiver) -> Vec<String> {
        let mut names: Vec<String> = receiver
            .db
            .select(&[tsdb::Matcher::new(tsdb::MatchOp::RegexMatch, "__name__", ".+").unwrap()], i64::MIN, i64::MAX)
            .unwrap()
            .iter()
            .filter_map(|s| s.labels.get("__name__").map(str::to_string))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_series_over_a_label_limit_is_refused_alone_and_named() {
        let (cached_dir, uncached_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let limits = IngestLimits { max_label_value_bytes: 8, max_labels_per_series: 3, ..IngestLimits::default() };
        for receiver in [
            receiver(&cached_dir).with_limits(limits),
            receiver(&uncached_dir).with_limits(limits).with_series_cache_max_bytes(0),
        ] {
            let long = "x".repeat(9);
            let request = || {
                vec![
                    v1_series(&[("__name__", "a")], &[(1, 1.0)]),
                    v1_series(&[("__name__", "b"), ("pod", &long)], &[(1, 1.0), (2, 2.0)]),
                    v1_series(&[("__name__", "c"), ("x", "1"), ("y", "2"), ("z", "3")], &[(1, 1.0)]),
                    v1_series(&[("__name__", "d")], &[(1, 1.0)]),
                ]
            };
            let outcome = write_series(&receiver, request());
            assert_eq!(outcome.samples_written, 2);
            assert_eq!(outcome.refused.series(Limit::LabelValueLength), 1);
            assert_eq!(outcome.refused.samples(Limit::LabelValueLength), 2);
            assert_eq!(outcome.refused.series(Limit::LabelsPerSeries), 1);
            let message = outcome.refused.message(receiver.limits());
            assert!(message.contains("series 1 {__name__=\"b\", pod=\"xxxxxxxxx\"}"), "{message}");
            assert!(message.contains("series 2 {__name__=\"c\""), "{message}");
            assert_eq!(stored_names(&receiver), vec!["a", "d"]);
            // Again, now that the cache knows a and d: the refused ones are still refused.
            let again = write_series(&receiver, request());
            // (exact repeats count as written: senders retry)
            assert_eq!((again.refused.series_total(), again.samples_written), (2, 2));
        }
    }

    /// Series are looked up in the cache in batches; a refused series inside a batch leaves its
    /// neighbours' samples where they were, cached or not, at every batch boundary.
    #[test]
    fn refused_series_between_cached_ones_leave_the_others_whole() {
        let (cached_dir, uncached_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let limits = IngestLimits { max_label_value_bytes: 8, ..IngestLimits::default() };
        let refused = |i: usize| i.is_multiple_of(63) || i % 64 == 63 || i == 199;
        let request = |round: i64| -> Vec<v1::TimeSeries> {
            (0..200)
                .map(|i| {
                    let pod = if refused(i) { "y".repeat(9) } else { format!("p{i}") };
                    let samples: Vec<(i64, f64)> =
                        (0..=i as i64 % 3).map(|k| (round * 10 + k, (i * 10) as f64)).collect();
                    v1_series(&[("__name__", &format!("m{i:03}")), ("pod", &pod)], &samples)
                })
                .collect()
        };
        let kept: Vec<usize> = (0..200).filter(|&i| !refused(i)).collect();
        let kept_samples: u64 = kept.iter().map(|&i| i as u64 % 3 + 1).sum();
        for receiver in [
            receiver(&cached_dir).with_limits(limits),
            receiver(&uncached_dir).with_limits(limits).with_series_cache_max_bytes(0),
        ] {
            for round in 1..=3 {
                let outcome = write_series(&receiver, request(round));
                assert_eq!(outcome.samples_written, kept_samples, "round {round}");
                assert_eq!(outcome.refused.series(Limit::LabelValueLength), 200 - kept.len() as u64);
            }
            let stored = receiver
                .db
                .select(&[tsdb::Matcher::new(tsdb::MatchOp::RegexMatch, "__name__", ".+").unwrap()], i64::MIN, i64::MAX)
                .unwrap();
            assert_eq!(stored.len(), kept.len());
            for series in &stored {
                let i: usize = series.labels.get("__name__").unwrap()[1..].parse().unwrap();
                assert_eq!(series.labels.get("pod"), Some(format!("p{i}").as_str()));
                let expected: Vec<(i64, f64)> = (1..=3)
                    .flat_map(|round| (0..=i as i64 % 3).map(move |k| (round * 10 + k, (i * 10) as f64)))
                    .collect();
                let got: Vec<(i64, f64)> = series.samples().map(|s| (s.ts_ms, s.value)).collect();
                assert_eq!(got, expected, "series {i}");
            }
        }
    }

    #[test]
    fn series_past_the_per_request_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let receiver =
            receiver(&dir).with_limits(IngestLimits { max_series_per_request: 2, ..IngestLimits::default() });
        let series = (0..5).map(|i| v1_series(&[("__name__", &format!("m{i}"))], &[(1, 1.0)])).collect();
        let outcome = write_series(&receiver, series);
        assert_eq!((outcome.samples_written, outcome.refused.series(Limit::SeriesPerRequest)), (2, 3));
        assert!(outcome.refused.message(receiver.limits()).contains("e.g. series 2; series 3; series 4"));
        assert_eq!(stored_names(&receiver), vec!["m0", "m1"]);
    }

    #[test]
    fn at_the_live_series_cap_known_series_are_written_and_new_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let limits = IngestLimits { max_active_series: 3, ..IngestLimits::default() };
        // Without the cache every series is named by labels, as after a restart.
        let receiver = receiver(&dir).with_limits(limits).with_series_cache_max_bytes(0);
        let first = write_series(
            &receiver,
            vec![v1_series(&[("__name__", "a")], &[(1, 1.0)]), v1_series(&[("__name__", "b")], &[(1, 1.0)])],
        );
        assert_eq!(first.series_created, 2);
        let second = write_series(
            &receiver,
            vec![
                v1_series(&[("__name__", "a")], &[(2, 1.0)]),
                v1_series(&[("__name__", "c")], &[(2, 1.0)]),
                v1_series(&[("__name__", "d")], &[(2, 1.0)]),
                v1_series(&[("__name__", "b")], &[(2, 1.0)]),
            ],
        );
        assert_eq!((second.samples_written, second.series_created), (3, 1));
        assert_eq!(second.refused.series(Limit::ActiveSeries), 1);
        assert!(second.refused.message(&limits).contains("series 2 {__name__=\"d\"}"));
        let third = write_series(
            &receiver,
            vec![v1_series(&[("__name__", "e")], &[(3, 1.0)]), v1_series(&[("__name__", "b")], &[(3, 1.0)])],
        );
        assert_eq!((third.samples_written, third.refused.series(Limit::ActiveSeries)), (1, 1));
        assert_eq!(stored_names(&receiver), vec!["a", "b", "c"]);
        assert_eq!(receiver.db.stats().series, 3);
    }

    #[test]
    fn new_series_past_the_rate_are_refused_and_known_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let limits = IngestLimits { max_new_series_per_minute: 2, ..IngestLimits::default() };
        let receiver = receiver(&dir).with_limits(limits);
        let series: Vec<_> = (0..4).map(|i| v1_series(&[("__name__", &format!("m{i}"))], &[(1, 1.0)])).collect();
        let outcome = write_series(&receiver, series.clone());
        assert_eq!((outcome.series_created, outcome.refused.series(Limit::NewSeriesPerMinute)), (2, 2));
        let again: Vec<_> = (0..4).map(|i| v1_series(&[("__name__", &format!("m{i}"))], &[(2, 1.0)])).collect();
        let outcome = write_series(&receiver, again);
        assert_eq!((outcome.samples_written, outcome.refused.series(Limit::NewSeriesPerMinute)), (2, 2));
        assert_eq!(stored_names(&receiver), vec!["m0", "m1"]);
    }

    #[test]
    fn scratch_buffers_are_reused_unless_huge() {
        let pool = ScratchPool::new();
        let mut buf = pool.take();
        buf.body.reserve(1024);
        pool.give_back(buf);
        assert!(pool.take().body.capacity() >= 1024, "a typical buffer comes back");
        pool.give_back(Scratch { body: Vec::with_capacity(MAX_KEPT_SCRATCH_BYTES + 1), ..Scratch::default() });
        assert_eq!(pool.take().body.capacity(), 0, "a huge buffer is freed");
    }

    #[test]
    fn decoding_vectors_are_kept_between_requests_unless_huge() {
        let dir = tempfile::tempdir().unwrap();
        let receiver = receiver(&dir);
        let request = |ts: i64| {
            let timeseries = (0..300).map(|i| v1_series(&[("__name__", "m"), ("pod", &format!("p{i}"))], &[(ts, 1.0)]));
            encode_body(&v1::WriteRequest { timeseries: timeseries.collect(), metadata: vec![] })
        };
        receiver.remote_write(Protocol::V1, &request(1_000), 0).unwrap();
        let kept = receiver.scratch.take();
        let kept_bytes = kept.decoded.capacity_bytes();
        assert!(kept_bytes > 0, "the request's vectors come back");
        receiver.scratch.give_back(kept);
        // The next request (its 300 series known now) decodes into the same vectors.
        let outcome = receiver.remote_write(Protocol::V1, &request(2_000), 0).unwrap();
        assert_eq!(outcome.samples_written, 300, "{outcome:?}");
        assert_eq!(receiver.scratch.take().decoded.capacity_bytes(), kept_bytes, "no vector was allocated again");
        let huge =
            Scratch { decoded: DecodeBuffers::with_sample_capacity(MAX_KEPT_SCRATCH_BYTES), ..Scratch::default() };
        receiver.scratch.give_back(huge);
        assert_eq!(receiver.scratch.take().decoded.capacity_bytes(), 0, "huge vectors are freed");
    }
}
