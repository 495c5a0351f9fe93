//! `decode` turns a remote-write body into a [`DecodedRequest`]: snappy block decompression
//! (bounded by [`DecodeLimits::max_decompressed_bytes`], checked on the size the body announces
//! before anything is allocated), then a zero-copy walk of `prometheus.WriteRequest` (1.0) or
//! `io.prometheus.write.v2.Request` (2.0) that validates every series before anything is stored.
//!
//! Design: the walker uses [`WireReader`](crate::wire::WireReader) and keeps `&str` labels pointing
//! into the decompressed buffer, so a request costs no `String` per label. With a
//! [`SeriesCache`] (the receiver always has one), a 1.0 series whose raw label bytes were seen
//! before is identified by those bytes alone and its labels are not even decoded. Labels follow the
//! spec's own rule (names sorted) and then the store's one rule, [`tsdb::validate_labels`].

use super::Protocol;
use crate::error::RemoteWriteError;
use crate::limits::{IngestLimits, Limit, LimitRefusals};
use crate::series_cache::{CacheReader, KeyHash, SeriesCache};
use crate::wire::{decode_packed_u32, WireError, WireReader};
use std::ops::Range;
use tsdb::{Sample, SeriesId, SeriesSamples};

/// Samples later than now + this are refused: a sender with a wrong clock would otherwise push
/// every later real sample of the series out of order. Prometheus' head uses the same bound.
pub const DEFAULT_MAX_FUTURE_MS: i64 = 10 * 60 * 1000;

/// Bounds on one request's decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest decompressed protobuf accepted (snappy states the size up front, so an oversized
    /// body is refused before anything is allocated).
    pub max_decompressed_bytes: usize,
    /// Samples with `ts_ms > now_ms + max_future_ms` are skipped and counted.
    pub max_future_ms: i64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_decompressed_bytes: 256 << 20, max_future_ms: DEFAULT_MAX_FUTURE_MS }
    }
}

/// Most bytes one byte of a snappy block can decompress to: the densest element is a copy with a
/// 2-byte offset, 3 bytes for up to 64 (the format's element table), so 22 bounds every block.
const MAX_SNAPPY_EXPANSION: usize = 22;

/// The decompressed size a snappy block body announces in its header (nothing is decompressed),
/// refused when it passes `max_bytes`, or when the body is too short to ever expand to it (a
/// 7-byte body must not make the receiver allocate 255 MiB): the one place the decompressed size
/// is checked.
pub(crate) fn checked_decompressed_len(body: &[u8], max_bytes: usize) -> Result<usize, RemoteWriteError> {
    let len = snap::raw::decompress_len(body).map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    if len > max_bytes {
        return Err(RemoteWriteError::DecompressedTooLarge { decompressed_bytes: len, max_bytes });
    }
    if len > body.len().saturating_mul(MAX_SNAPPY_EXPANSION) {
        return Err(RemoteWriteError::Snappy(format!(
            "the block header claims {len} decompressed bytes, more than a {}-byte snappy block can hold \
             (at most {MAX_SNAPPY_EXPANSION} bytes per compressed byte)",
            body.len()
        )));
    }
    Ok(len)
}

/// Decompresses a snappy *block* (not framed) body into `out` (which then holds exactly the
/// decompressed bytes); a body announcing more than `max_bytes` is refused before anything is
/// allocated.
pub fn decompress_snappy(body: &[u8], max_bytes: usize, out: &mut Vec<u8>) -> Result<(), RemoteWriteError> {
    let len = checked_decompressed_len(body, max_bytes)?;
    // A reused buffer is only zero-filled where it grows: the decoder overwrites every byte it
    // reports as written, and the rest is cut off below (on an error, all of it).
    if out.len() < len {
        out.resize(len, 0);
    }
    match snap::raw::Decoder::new().decompress(body, &mut out[..len]) {
        Ok(written) => {
            out.truncate(written);
            Ok(())
        }
        Err(e) => {
            out.clear();
            Err(RemoteWriteError::Snappy(e.to_string()))
        }
    }
}

/// The labels and sample range of one series inside a [`DecodedRequest`].
#[derive(Debug, Clone)]
struct SeriesSpan {
    /// Decoded labels (empty when `id` is known).
    labels: Range<usize>,
    samples: Range<usize>,
    /// The series id, when a [`SeriesCache`] knew the raw label bytes.
    id: Option<SeriesId>,
    /// Byte range of the raw label fields in the buffer and their hash, for adding the series to
    /// the cache once it is resolved (cache misses with contiguous label fields only).
    raw: Option<(Range<usize>, u64)>,
    /// The series' position among the request's series (for naming it in a refusal).
    series_index: usize,
}

/// A decoded, fully validated request whose labels borrow from the decompressed buffer.
#[derive(Debug, Default)]
pub struct DecodedRequest<'a> {
    buf: &'a [u8],
    labels: Vec<(&'a str, &'a str)>,
    samples: Vec<Sample>,
    series: Vec<SeriesSpan>,
    /// Native histogram samples received (not stored: Ringtail keeps float samples only).
    pub histograms: u64,
    /// Exemplars received (not stored).
    pub exemplars: u64,
    /// Metadata entries received (kept in [`crate::RemoteWriteMetadata`]).
    pub metadata: u64,
    /// Metadata entries: type number, family name, help, unit. 1.0's as sent; 2.0's per series,
    /// named by the series' family (see [`family_name`]), each distinct one once per request.
    pub(crate) metadata_entries: Vec<(i32, &'a str, &'a str, &'a str)>,
    /// Samples dropped for lying more than `max_future_ms` ahead of the receiver's clock.
    pub too_far_in_future: u64,
    /// Series left out for breaking a per-series or per-request limit.
    pub refused: LimitRefusals,
    /// Samples of refused series still in `samples` (no series refers to them).
    unstored_samples: usize,
}

impl<'a> DecodedRequest<'a> {
    /// An empty request over `buf`, growing `buffers`.
    fn new(buf: &'a [u8], buffers: DecodeBuffers) -> DecodedRequest<'a> {
        let DecodeBuffers { labels, samples, series } = buffers;
        DecodedRequest { buf, labels, samples, series, ..DecodedRequest::default() }
    }

    /// Ends the request, keeping its vectors' allocations for the next one.
    pub(crate) fn recycle(self) -> DecodeBuffers {
        let DecodedRequest { labels, mut samples, mut series, .. } = self;
        samples.clear();
        series.clear();
        DecodeBuffers { labels: forget_labels(labels), samples, series }
    }

    /// Series that carry at least one float sample.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Float samples that will be offered to the store.
    pub fn sample_count(&self) -> usize {
        self.samples.len() - self.unstored_samples
    }

    /// Series whose id came from a [`SeriesCache`] (their labels were not decoded).
    #[cfg(test)]
    pub(crate) fn cached_series_count(&self) -> usize {
        self.series.iter().filter(|s| s.id.is_some()).count()
    }

    /// The request as one store batch, in request order: every series that brought float samples,
    /// named by its id when a `SeriesCache` knew it and by its labels otherwise.
    pub fn batch(&self) -> Vec<SeriesSamples<'_>> {
        self.series
            .iter()
            .map(|span| {
                let samples = &self.samples[span.samples.clone()];
                match span.id {
                    Some(id) => SeriesSamples::id(id, samples),
                    None => SeriesSamples::labels(&self.labels[span.labels.clone()], samples),
                }
            })
            .collect()
    }

    /// The position among the request's series of entry `batch_index` of [`batch`](Self::batch).
    pub(crate) fn series_index(&self, batch_index: usize) -> usize {
        self.series.get(batch_index).map_or(batch_index, |span| span.series_index)
    }

    /// The `(hash, raw label bytes, id)` of every series that can join a [`SeriesCache`] once the
    /// store named it: `ids` are the store's ids of [`batch`](Self::batch), in the same order.
    pub(crate) fn cache_entries<'s>(
        &'s self,
        ids: &'s [SeriesId],
    ) -> impl Iterator<Item = (u64, &'s [u8], SeriesId)> + 's {
        self.series.iter().zip(ids).filter_map(|(span, id)| {
            let (range, hash) = span.raw.as_ref()?;
            Some((*hash, self.buf.get(range.clone())?, *id))
        })
    }

    /// Opens a series whose labels were pushed from `labels_start`; validates them and keeps the
    /// series only when it brought float samples and breaks no label limit (a series that does is
    /// left out and recorded in `refused`).
    fn finish_series(
        &mut self,
        series_index: usize,
        labels_start: usize,
        samples: Range<usize>,
        raw: Option<(Range<usize>, u64)>,
        limits: &IngestLimits,
    ) -> Result<(), RemoteWriteError> {
        let labels = &self.labels[labels_start..];
        validate_series_labels(labels).map_err(|reason| RemoteWriteError::InvalidSeries { series_index, reason })?;
        if let Some((limit, how)) = limits.check_labels(labels) {
            self.refused.refuse(limit, series_index, Some(labels), samples.len(), &how);
            self.labels.truncate(labels_start);
            if samples.end == self.samples.len() {
                self.samples.truncate(samples.start);
            } else {
                // Samples of series scanned after this one follow them (see `LOOKUP_BATCH`).
                self.unstored_samples += samples.len();
            }
            return Ok(());
        }
        if samples.is_empty() {
            self.labels.truncate(labels_start);
        } else {
            self.series.push(SeriesSpan {
                labels: labels_start..self.labels.len(),
                samples,
                id: None,
                raw,
                series_index,
            });
        }
        Ok(())
    }

    #[inline]
    fn push_sample(&mut self, sample: Sample, max_ts_ms: i64) {
        if sample.ts_ms > max_ts_ms {
            self.too_far_in_future += 1;
        } else {
            self.samples.push(sample);
        }
    }
}

/// Checks one series' labels: the remote-write spec's own rule (names sorted, so that senders
/// hash series consistently) and then the store's rule for every label set
/// ([`tsdb::validate_labels`]: the one definition of a valid series).
fn validate_series_labels(labels: &[(&str, &str)]) -> Result<(), String> {
    if let Some(pair) = labels.windows(2).find(|w| w[0].0 > w[1].0) {
        return Err(format!("labels not sorted by name: {:?} after {:?}", pair[1].0, pair[0].0));
    }
    tsdb::validate_labels(labels)
}

/// Decodes and validates an already decompressed body of the given protocol, without a series
/// cache and without storing anything: what the fuzz target and the decoding benchmark measure.
/// The server's path is [`Receiver::remote_write`](super::Receiver::remote_write).
pub fn decode_request<'a>(
    protocol: Protocol,
    buf: &'a [u8],
    now_ms: i64,
    limits: &DecodeLimits,
) -> Result<DecodedRequest<'a>, RemoteWriteError> {
    decode_with_cache(protocol, buf, now_ms, limits, &IngestLimits::UNLIMITED, None, DecodeBuffers::default())
}

/// Decodes like [`decode_request`], leaving out (and recording) the series that break
/// `series_limits`' per-series and per-request limits; with a cache, 1.0 series whose raw label
/// bytes it knows get their id from it and skip label decoding, validation and the label limits
/// (the bytes passed them when they were added, and the limits do not change during a receiver's
/// life). The decoded request grows `buffers` (see [`DecodedRequest::recycle`]).
pub(crate) fn decode_with_cache<'a>(
    protocol: Protocol,
    buf: &'a [u8],
    now_ms: i64,
    limits: &DecodeLimits,
    series_limits: &IngestLimits,
    cache: Option<(&SeriesCache, &CacheReader<'_>)>,
    buffers: DecodeBuffers,
) -> Result<DecodedRequest<'a>, RemoteWriteError> {
    let max_ts_ms = now_ms.saturating_add(limits.max_future_ms);
    let out = DecodedRequest::new(buf, buffers);
    match protocol {
        Protocol::V1 => decode_v1(out, max_ts_ms, series_limits, cache),
        Protocol::V2 => decode_v2(out, max_ts_ms, series_limits),
    }
}

/// The growable vectors of a [`DecodedRequest`], emptied, kept from one request to the next so
/// that a steady stream of requests decodes without allocating them again: a request of 2000
/// new series grows them to about half a megabyte, which every request would otherwise take
/// from the allocator as fresh pages the kernel zeroes.
#[derive(Debug, Default)]
pub(crate) struct DecodeBuffers {
    labels: Vec<(&'static str, &'static str)>,
    samples: Vec<Sample>,
    series: Vec<SeriesSpan>,
}

impl DecodeBuffers {
    /// Bytes the vectors hold (their capacity).
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.labels.capacity() * std::mem::size_of::<(&str, &str)>()
            + self.samples.capacity() * std::mem::size_of::<Sample>()
            + self.series.capacity() * std::mem::size_of::<SeriesSpan>()
    }

    /// Empty buffers with room for `samples` samples.
    #[cfg(test)]
    pub(crate) fn with_sample_capacity(samples: usize) -> DecodeBuffers {
        DecodeBuffers { samples: Vec::with_capacity(samples), ..DecodeBuffers::default() }
    }
}

/// `labels` emptied, borrowing nothing any more, in the same allocation: an emptied vector's
/// iterator collected into elements of the same size reuses the vector's buffer (the closure
/// never runs).
fn forget_labels(mut labels: Vec<(&str, &str)>) -> Vec<(&'static str, &'static str)> {
    labels.clear();
    labels.into_iter().map(|_| ("", "")).collect()
}

/// Whether series number `series_index` (from 0) is past the per-request limit; if so it is
/// recorded as refused (unnamed: its labels are not decoded).
fn past_series_limit(out: &mut DecodedRequest<'_>, series_index: usize, limits: &IngestLimits) -> bool {
    let past = limits.max_series_per_request > 0 && series_index >= limits.max_series_per_request;
    if past {
        out.refused.refuse(Limit::SeriesPerRequest, series_index, None, 0, "");
    }
    past
}

/// Series scanned before their cache lookups run, back to back: a lookup in a table of many
/// series is a cache miss or two, and lookups with nothing between them wait for their misses
/// together, where each series' decoding between two lookups made them wait one after the other.
const LOOKUP_BATCH: usize = 64;

/// Walks `prometheus.WriteRequest`: field 1 `TimeSeries`, field 3 metadata.
fn decode_v1<'a>(
    mut out: DecodedRequest<'a>,
    max_ts_ms: i64,
    limits: &IngestLimits,
    cache: Option<(&SeriesCache, &CacheReader<'_>)>,
) -> Result<DecodedRequest<'a>, RemoteWriteError> {
    let buf = out.buf;
    let mut batch = ScannedBatch::default();
    let mut request = WireReader::new(buf, 0);
    let mut series_index = 0;
    let mut v2_fields = false;
    while let Some(field) = request.next() {
        let field = field?;
        match field.number {
            4 | 5 => v2_fields = true,
            1 => {
                let series = field.bytes()?;
                if !past_series_limit(&mut out, series_index, limits) {
                    // The payload is the tail of the field's bytes.
                    let payload_start = request.consumed() - series.len();
                    let at = SeriesAt { payload_start, base: field.offset, series_index };
                    batch.scanned.push(scan_v1_series(&mut out, series, at, max_ts_ms)?);
                    if batch.scanned.len() == LOOKUP_BATCH {
                        batch.resolve(&mut out, limits, cache)?;
                    }
                }
                series_index += 1;
            }
            3 => {
                out.metadata += 1;
                out.metadata_entries.push(decode_v1_metadata(field.bytes()?)?);
            }
            _ => {}
        }
    }
    batch.resolve(&mut out, limits, cache)?;
    if v2_fields && series_index == 0 && out.metadata == 0 {
        // Symbols and series of a 2.0 Request under a 1.0 content type: acknowledging it would
        // store nothing and lose the samples without a word.
        return Err(RemoteWriteError::ProtocolMismatch {
            body: "2.0 (io.prometheus.write.v2.Request)",
            content_type: "1.0 (prometheus.WriteRequest)",
        });
    }
    Ok(out)
}

/// One `prometheus.MetricMetadata`: type (1), metric_family_name (2), help (4), unit (5).
fn decode_v1_metadata(buf: &[u8]) -> Result<(i32, &str, &str, &str), WireError> {
    let (mut kind, mut name, mut help, mut unit) = (0, "", "", "");
    let mut reader = WireReader::new(buf, 0);
    while let Some(field) = reader.next() {
        let field = field?;
        match field.number {
            1 => kind = field.i64()? as i32,
            2 => name = field.str()?,
            4 => help = field.str()?,
            5 => unit = field.str()?,
            _ => {}
        }
    }
    Ok((kind, name, help, unit))
}

/// Symbol `r` of a 2.0 request's table, for the `what` reference of series `series_index`.
fn symbol_at<'a>(symbols: &[&'a str], r: u32, series_index: usize, what: &str) -> Result<&'a str, RemoteWriteError> {
    symbols.get(r as usize).copied().ok_or_else(|| RemoteWriteError::InvalidSeries {
        series_index,
        reason: format!("{what} reference {r} outside the symbol table of {} entries", symbols.len()),
    })
}

/// A 2.0 `Metadata` message: type (1), help (3) and unit (4) symbol references.
fn decode_v2_metadata(buf: &[u8], base: usize) -> Result<(i32, u32, u32), WireError> {
    let (mut kind, mut help_ref, mut unit_ref) = (0, 0, 0);
    let mut reader = WireReader::new(buf, base);
    while let Some(field) = reader.next() {
        let field = field?;
        match field.number {
            1 => kind = field.i64()? as i32,
            3 => help_ref = field.u32()?,
            4 => unit_ref = field.u32()?,
            _ => {}
        }
    }
    Ok((kind, help_ref, unit_ref))
}

/// The metric family a series of type `kind` (the 1.0 / 2.0 type numbers) belongs to, as a
/// scrape declares it: a histogram's or a summary's series without their `_bucket`, `_sum`,
/// `_count` (`_gsum`, `_gcount`) or `_created` suffix; every other series names its family.
fn family_name(kind: i32, series_name: &str) -> &str {
    let suffixes: &[&str] = match kind {
        3 => &["_bucket", "_sum", "_count", "_created"],
        4 => &["_bucket", "_gsum", "_gcount"],
        5 => &["_sum", "_count", "_created"],
        _ => &[],
    };
    suffixes.iter().find_map(|suffix| series_name.strip_suffix(suffix)).unwrap_or(series_name)
}

/// One `prometheus.TimeSeries` at `payload_start` of the request buffer: labels (1), samples (2),
/// exemplars (3), histograms (4). Samples are decoded here; the label fields are only located,
/// then looked up raw in the cache and decoded and validated on a miss ([`ScannedBatch::resolve`]).
#[inline]
fn scan_v1_series<'a>(
    out: &mut DecodedRequest<'a>,
    series: &'a [u8],
    at: SeriesAt,
    max_ts_ms: i64,
) -> Result<ScannedSeries<'a>, RemoteWriteError> {
    match scan_common_v1_series(out, series, at, max_ts_ms) {
        Some(scanned) => Ok(scanned),
        None => walk_v1_series(out, series, at, max_ts_ms),
    }
}

/// [`scan_v1_series`] for the layout every sender writes: the label fields first (tag `0x0a`, a
/// one-byte length), then the samples (tag `0x12`, a one-byte length, each as
/// [`common_sample`] reads it), nothing else. Reads what [`walk_v1_series`] reads, without its
/// general field walk; `None` (and `out` untouched) for any other layout.
#[inline]
fn scan_common_v1_series<'a>(
    out: &mut DecodedRequest<'a>,
    series: &'a [u8],
    at: SeriesAt,
    max_ts_ms: i64,
) -> Option<ScannedSeries<'a>> {
    /// The field at `pos` when its tag is `tag` and its length is one byte: its bytes and the end.
    fn short_field(series: &[u8], pos: usize, tag: u8) -> Option<(&[u8], usize)> {
        match series.get(pos..pos + 2)? {
            &[t, len] if t == tag && len < 0x80 => {
                let end = pos + 2 + usize::from(len);
                Some((series.get(pos + 2..end)?, end))
            }
            _ => None,
        }
    }
    let mut labels_end = 0;
    while let Some((_, end)) = short_field(series, labels_end, 0x0a) {
        labels_end = end;
    }
    let (samples_start, too_far_before) = (out.samples.len(), out.too_far_in_future);
    let mut pos = labels_end;
    while pos < series.len() {
        let sample = short_field(series, pos, 0x12).and_then(|(bytes, end)| {
            pos = end;
            common_sample(bytes)
        });
        let Some(sample) = sample else {
            out.samples.truncate(samples_start);
            out.too_far_in_future = too_far_before;
            return None;
        };
        out.push_sample(sample, max_ts_ms);
    }
    Some(ScannedSeries {
        series,
        at,
        raw_labels: (labels_end > 0).then_some(0..labels_end),
        samples: samples_start..out.samples.len(),
    })
}

/// [`scan_v1_series`] for any layout, field by field.
fn walk_v1_series<'a>(
    out: &mut DecodedRequest<'a>,
    series: &'a [u8],
    at: SeriesAt,
    max_ts_ms: i64,
) -> Result<ScannedSeries<'a>, RemoteWriteError> {
    let samples_start = out.samples.len();
    let mut raw_labels: Option<Range<usize>> = None;
    let mut contiguous = true;
    let mut reader = WireReader::new(series, at.base);
    loop {
        let field_start = reader.consumed();
        let Some(field) = reader.next() else {
            break;
        };
        let field = field?;
        match field.number {
            1 => {
                field.bytes()?;
                let field_end = reader.consumed();
                match &mut raw_labels {
                    None => raw_labels = Some(field_start..field_end),
                    Some(range) if range.end == field_start => range.end = field_end,
                    Some(_) => contiguous = false,
                }
            }
            2 => {
                let sample = decode_sample(field.bytes()?, field.offset)?;
                out.push_sample(sample, max_ts_ms);
            }
            3 => out.exemplars += 1,
            4 => out.histograms += 1,
            _ => {}
        }
    }
    Ok(ScannedSeries {
        series,
        at,
        raw_labels: raw_labels.filter(|_| contiguous),
        samples: samples_start..out.samples.len(),
    })
}

/// A 1.0 series whose samples are decoded and whose label fields are located.
struct ScannedSeries<'a> {
    series: &'a [u8],
    at: SeriesAt,
    /// The label fields' bytes in `series`, when they are contiguous (only then are they a key of
    /// the cache).
    raw_labels: Option<Range<usize>>,
    samples: Range<usize>,
}

/// Up to [`LOOKUP_BATCH`] scanned series waiting for their names, and the scratch of their lookups.
#[derive(Default)]
struct ScannedBatch<'a> {
    scanned: Vec<ScannedSeries<'a>>,
    keys: Vec<Option<KeyHash>>,
    ids: Vec<Option<SeriesId>>,
}

impl<'a> ScannedBatch<'a> {
    /// Names the scanned series in order (and empties the batch): by the cache's id when it knows
    /// their raw label bytes, else by their labels, decoded and validated here.
    fn resolve(
        &mut self,
        out: &mut DecodedRequest<'a>,
        limits: &IngestLimits,
        cache: Option<(&SeriesCache, &CacheReader<'_>)>,
    ) -> Result<(), RemoteWriteError> {
        self.keys.clear();
        self.ids.clear();
        if let Some((cache, reader)) = cache {
            let key =
                |s: &ScannedSeries<'a>| s.raw_labels.clone().and_then(|r| s.series.get(r)).map(|k| cache.key_hash(k));
            self.keys.extend(self.scanned.iter().map(key));
            // The lookups alone, one after the other (see `LOOKUP_BATCH`).
            self.ids.extend(self.keys.iter().map(|key| key.and_then(|key| reader.get_hashed(key))));
        }
        for (i, scanned) in self.scanned.drain(..).enumerate() {
            let SeriesAt { payload_start, base, series_index } = scanned.at;
            if let Some(id) = self.ids.get(i).copied().flatten() {
                if !scanned.samples.is_empty() {
                    let labels = out.labels.len()..out.labels.len();
                    out.series.push(SeriesSpan {
                        labels,
                        samples: scanned.samples,
                        id: Some(id),
                        raw: None,
                        series_index,
                    });
                }
                continue;
            }
            let raw = match (self.keys.get(i).copied().flatten(), scanned.raw_labels) {
                (Some(key), Some(range)) => Some((payload_start + range.start..payload_start + range.end, key.place)),
                _ => None,
            };
            let labels_start = out.labels.len();
            let mut reader = WireReader::new(scanned.series, base);
            while let Some(field) = reader.next() {
                let field = field?;
                if field.number == 1 {
                    out.labels.push(decode_v1_label(field.bytes()?, field.offset)?);
                }
            }
            out.finish_series(series_index, labels_start, scanned.samples, raw, limits)?;
        }
        Ok(())
    }
}

/// Where one 1.0 series lies: its payload's offset in the request buffer, the offset error
/// messages count from, and its index among the request's series.
#[derive(Debug, Clone, Copy)]
struct SeriesAt {
    payload_start: usize,
    base: usize,
    series_index: usize,
}

/// `prometheus.Label`: name (1) and value (2).
#[inline]
fn decode_v1_label(buf: &[u8], base: usize) -> Result<(&str, &str), RemoteWriteError> {
    let mut name = "";
    let mut value = "";
    let mut reader = WireReader::new(buf, base);
    while let Some(field) = reader.next() {
        let field = field?;
        match field.number {
            1 => name = field.str()?,
            2 => value = field.str()?,
            _ => {}
        }
    }
    Ok((name, value))
}

/// `Sample` (same numbering in 1.0 and 2.0): value (1, double) and timestamp (2, int64 ms).
#[inline]
fn decode_sample(buf: &[u8], base: usize) -> Result<Sample, RemoteWriteError> {
    match common_sample(buf) {
        Some(sample) => Ok(sample),
        None => decode_sample_fields(buf, base),
    }
}

/// The sample as senders write it when its value and timestamp are both non-zero: the value's
/// tag `0x09` and 8 bytes, the timestamp's tag `0x10` and its varint to the end. `None` for any
/// other layout (which [`decode_sample_fields`] reads, or refuses).
#[inline]
fn common_sample(buf: &[u8]) -> Option<Sample> {
    let (head, timestamp) = buf.split_first_chunk::<10>()?;
    if head[0] != 0x09 || head[9] != 0x10 {
        return None;
    }
    let value = f64::from_le_bytes([head[1], head[2], head[3], head[4], head[5], head[6], head[7], head[8]]);
    Some(Sample::new(varint_filling(timestamp)? as i64, value))
}

/// The varint that is exactly `bytes` (`None`: malformed, or bytes left after it).
#[inline]
fn varint_filling(mut bytes: &[u8]) -> Option<u64> {
    let value = prost::encoding::decode_varint(&mut bytes).ok()?;
    bytes.is_empty().then_some(value)
}

/// [`decode_sample`] field by field: any field order, repeats (the last wins), unknown fields.
fn decode_sample_fields(buf: &[u8], base: usize) -> Result<Sample, RemoteWriteError> {
    let mut sample = Sample::new(0, 0.0);
    let mut reader = WireReader::new(buf, base);
    while let Some(field) = reader.next() {
        let field = field?;
        match field.number {
            1 => sample.value = field.f64()?,
            2 => sample.ts_ms = field.i64()?,
            _ => {}
        }
    }
    Ok(sample)
}

/// Walks `io.prometheus.write.v2.Request`: symbols (4) first collected in any order, then the
/// series (5), whose `labels_refs` (1) index the symbols.
fn decode_v2<'a>(
    mut out: DecodedRequest<'a>,
    max_ts_ms: i64,
    limits: &IngestLimits,
) -> Result<DecodedRequest<'a>, RemoteWriteError> {
    let buf = out.buf;
    let mut symbols: Vec<&str> = Vec::new();
    let mut series_fields: Vec<(&[u8], usize)> = Vec::new();
    let mut v1_fields = false;
    let mut request = WireReader::new(buf, 0);
    while let Some(field) = request.next() {
        let field = field?;
        match field.number {
            4 => symbols.push(field.str()?),
            5 => series_fields.push((field.bytes()?, field.offset)),
            1 | 3 => v1_fields = true,
            _ => {}
        }
    }
    if v1_fields && symbols.is_empty() && series_fields.is_empty() {
        // Series of a 1.0 WriteRequest under a 2.0 content type (see `decode_v1`).
        return Err(RemoteWriteError::ProtocolMismatch {
            body: "1.0 (prometheus.WriteRequest)",
            content_type: "2.0 (io.prometheus.write.v2.Request)",
        });
    }
    let mut refs: Vec<u32> = Vec::new();
    // Metadata of this request already seen, by (type, series name, help, unit) references, and
    // already taken, by family name (a histogram's buckets and sum are one family).
    let mut metadata_seen: std::collections::HashSet<(i32, u32, u32, u32)> = std::collections::HashSet::new();
    let mut metadata_taken: std::collections::HashSet<(i32, &str, u32, u32)> = std::collections::HashSet::new();
    for (series_index, (series, base)) in series_fields.into_iter().enumerate() {
        if past_series_limit(&mut out, series_index, limits) {
            continue;
        }
        refs.clear();
        let mut metadata: Option<(i32, u32, u32)> = None;
        let labels_start = out.labels.len();
        let samples_start = out.samples.len();
        let mut reader = WireReader::new(series, base);
        while let Some(field) = reader.next() {
            let field = field?;
            match field.number {
                1 => match field.value {
                    crate::wire::FieldValue::Varint(_) => refs.push(field.u32()?),
                    _ => decode_packed_u32(field.bytes()?, 1, field.offset, &mut refs)?,
                },
                2 => {
                    let sample = decode_sample(field.bytes()?, field.offset)?;
                    out.push_sample(sample, max_ts_ms);
                }
                3 => out.histograms += 1,
                4 => out.exemplars += 1,
                5 => {
                    out.metadata += 1;
                    metadata = Some(decode_v2_metadata(field.bytes()?, field.offset)?);
                }
                _ => {}
            }
        }
        if !refs.len().is_multiple_of(2) {
            return Err(RemoteWriteError::InvalidSeries {
                series_index,
                reason: format!("labels_refs has odd length {}", refs.len()),
            });
        }
        for pair in refs.chunks_exact(2) {
            let symbol = |r: u32| symbol_at(&symbols, r, series_index, "label");
            out.labels.push((symbol(pair[0])?, symbol(pair[1])?));
        }
        if let Some((kind, help_ref, unit_ref)) = metadata {
            let name_ref = refs.chunks_exact(2).find(|pair| symbols.get(pair[0] as usize) == Some(&tsdb::METRIC_NAME));
            if let Some(name_ref) = name_ref.map(|pair| pair[1]) {
                if metadata_seen.insert((kind, name_ref, help_ref, unit_ref)) {
                    let symbol = |r: u32, what: &str| symbol_at(&symbols, r, series_index, what);
                    let (help, unit) = (symbol(help_ref, "metadata help")?, symbol(unit_ref, "metadata unit")?);
                    let name = family_name(kind, symbol(name_ref, "metadata name")?);
                    if metadata_taken.insert((kind, name, help_ref, unit_ref)) {
                        out.metadata_entries.push((kind, name, help, unit));
                    }
                }
            }
        }
        out.finish_series(series_index, labels_start, samples_start..out.samples.len(), None, limits)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The common layout reads as field by field does, for any sample and any bytes.
        #[test]
        fn common_sample_layout_reads_like_field_by_field(
            value in any::<u64>().prop_map(f64::from_bits),
            ts_ms in prop_oneof![any::<i64>(), 1_600_000_000_000i64..1_900_000_000_000],
            noise in proptest::collection::vec(any::<u8>(), 0..24),
            cut in any::<prop::sample::Index>(),
        ) {
            let encoded = prost::Message::encode_to_vec(&crate::proto::v1::Sample { value, timestamp: ts_ms });
            let fast = common_sample(&encoded);
            if value != 0.0 && ts_ms != 0 {
                let sample = fast.expect("the common layout");
                prop_assert!(sample.bit_eq(&Sample::new(ts_ms, value)));
            }
            let mut mangled = encoded.clone();
            mangled.truncate(cut.index(encoded.len() + 1));
            mangled.extend_from_slice(&noise);
            for buf in [&encoded, &mangled] {
                if let Some(sample) = common_sample(buf) {
                    let fields = decode_sample_fields(buf, 0).expect("what the fast path reads is valid");
                    prop_assert!(sample.bit_eq(&fields));
                }
            }
        }
    }

    /// Whether two scans of one series read the same: samples (bit for bit), label bytes, counts.
    fn same_scan(a: &(DecodedRequest<'_>, ScannedSeries<'_>), b: &(DecodedRequest<'_>, ScannedSeries<'_>)) -> bool {
        let samples =
            |(out, scanned): &(DecodedRequest<'_>, ScannedSeries<'_>)| out.samples[scanned.samples.clone()].to_vec();
        let (sa, sb) = (samples(a), samples(b));
        sa.len() == sb.len()
            && sa.iter().zip(&sb).all(|(x, y)| x.bit_eq(y))
            && a.1.raw_labels == b.1.raw_labels
            && (a.0.too_far_in_future, a.0.exemplars, a.0.histograms)
                == (b.0.too_far_in_future, b.0.exemplars, b.0.histograms)
    }

    proptest! {
        /// The common series layout reads as the field walk reads it, for senders' encodings
        /// and for any bytes; outside it the fast scan gives way and leaves nothing behind.
        #[test]
        fn common_series_layout_scans_like_the_field_walk(
            labels in proptest::collection::vec(("[a-z_]{0,70}", "[ -~]{0,70}"), 0..5),
            samples in proptest::collection::vec((any::<u64>().prop_map(f64::from_bits), any::<i64>()), 0..4),
            exemplar in any::<bool>(),
            noise in proptest::collection::vec(any::<u8>(), 0..40),
            cut in any::<prop::sample::Index>(),
            max_ts_ms in prop_oneof![Just(i64::MAX), any::<i64>()],
        ) {
            let series = crate::proto::v1::TimeSeries {
                labels: labels.into_iter().map(|(name, value)| crate::proto::v1::Label { name, value }).collect(),
                samples: samples.into_iter().map(|(value, timestamp)| crate::proto::v1::Sample { value, timestamp }).collect(),
                exemplars: if exemplar { vec![Default::default()] } else { vec![] },
                histograms: vec![],
            };
            let encoded = prost::Message::encode_to_vec(&series);
            let mut mangled = encoded.clone();
            mangled.truncate(cut.index(encoded.len() + 1));
            mangled.extend_from_slice(&noise);
            let at = SeriesAt { payload_start: 0, base: 0, series_index: 0 };
            for buf in [&encoded, &mangled, &noise] {
                let mut fast_out = DecodedRequest::default();
                fast_out.samples.push(Sample::new(1, 1.0));
                let fast = scan_common_v1_series(&mut fast_out, buf, at, max_ts_ms);
                let mut walk_out = DecodedRequest::default();
                walk_out.samples.push(Sample::new(1, 1.0));
                let walked = walk_v1_series(&mut walk_out, buf, at, max_ts_ms);
                match fast {
                    Some(fast) => {
                        let walked = walked.expect("what the fast scan reads, the walk reads");
                        prop_assert!(same_scan(&(fast_out, fast), &(walk_out, walked)));
                    }
                    None => prop_assert_eq!(
                        (fast_out.samples.len(), fast_out.too_far_in_future, fast_out.exemplars),
                        (1, 0, 0),
                        "a fast scan that gave way left samples or counts behind"
                    ),
                }
            }
        }
    }

    #[test]
    fn senders_series_take_the_fast_scan() {
        let series = crate::proto::v1::TimeSeries {
            labels: vec![
                crate::proto::v1::Label { name: "__name__".into(), value: "up".into() },
                crate::proto::v1::Label { name: "job".into(), value: "a".into() },
            ],
            samples: vec![
                crate::proto::v1::Sample { value: 1.5, timestamp: 1_000 },
                crate::proto::v1::Sample { value: 2.5, timestamp: 2_000 },
            ],
            exemplars: vec![],
            histograms: vec![],
        };
        let encoded = prost::Message::encode_to_vec(&series);
        let mut out = DecodedRequest::default();
        let at = SeriesAt { payload_start: 0, base: 0, series_index: 0 };
        let scanned = scan_common_v1_series(&mut out, &encoded, at, 1_500).expect("the common layout");
        // The label fields: 2 + 14 bytes for `__name__="up"`, 2 + 8 for `job="a"`.
        assert_eq!(scanned.raw_labels, Some(0..26));
        assert_eq!((scanned.samples, out.too_far_in_future), (0..1, 1));
        assert!(out.samples[0].bit_eq(&Sample::new(1_000, 1.5)));
    }

    /// Regression: a 7-byte body whose header claimed 255 MiB made the receiver allocate it
    /// before decoding failed.
    #[test]
    fn a_header_claiming_more_than_the_block_can_hold_is_refused_before_allocating() {
        let mut body = Vec::new();
        let mut claimed = 255usize << 20;
        while claimed >= 0x80 {
            body.push((claimed as u8) | 0x80);
            claimed >>= 7;
        }
        body.push(claimed as u8);
        body.extend_from_slice(&[0, 0, 0]);
        let mut out = Vec::new();
        let error = decompress_snappy(&body, 256 << 20, &mut out).unwrap_err();
        assert!(error.to_string().contains("more than a 7-byte snappy block can hold"), "{error}");
        assert_eq!(out.capacity(), 0, "nothing was allocated");
        // The most compressible real input still decompresses: 4 MiB of one byte.
        let zeros = vec![0u8; 4 << 20];
        let compressed = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
        assert!(compressed.len() * MAX_SNAPPY_EXPANSION >= zeros.len(), "{} bytes", compressed.len());
        decompress_snappy(&compressed, 8 << 20, &mut out).unwrap();
        assert_eq!(out, zeros);
    }
    use crate::proto::{v1, v2};
    use crate::remote_write::encode_body;
    use crate::remote_write::test_support::v1_series;

    type OwnedSeries = (Vec<(String, String)>, Vec<Sample>);

    fn decode_v1_request(request: &v1::WriteRequest, now_ms: i64) -> Result<Vec<OwnedSeries>, RemoteWriteError> {
        let raw = prost::Message::encode_to_vec(request);
        let decoded = decode_request(Protocol::V1, &raw, now_ms, &DecodeLimits::default())?;
        Ok(decoded
            .batch()
            .iter()
            .map(|s| {
                (
                    s.series.labels().unwrap_or_default().iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
                    s.samples.to_vec(),
                )
            })
            .collect())
    }

    #[test]
    fn v1_round_trip_keeps_special_values_bit_exact() {
        let stale = tsdb::stale_nan();
        let request = v1::WriteRequest {
            timeseries: vec![v1_series(
                &[("__name__", "up"), ("job", "a")],
                &[(1, 1.0), (2, f64::NAN), (3, f64::INFINITY), (4, f64::NEG_INFINITY), (5, stale)],
            )],
            metadata: vec![],
        };
        let series = decode_v1_request(&request, 0).unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].0, vec![("__name__".into(), "up".into()), ("job".into(), "a".into())]);
        let values: Vec<u64> = series[0].1.iter().map(|s| s.value.to_bits()).collect();
        assert_eq!(
            values,
            vec![
                1f64.to_bits(),
                f64::NAN.to_bits(),
                f64::INFINITY.to_bits(),
                f64::NEG_INFINITY.to_bits(),
                stale.to_bits()
            ]
        );
    }

    #[test]
    fn invalid_label_sets_are_refused_with_the_series_index() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("job", "a")], "missing metric name"),
            (&[], "missing metric name"),
            (&[("__name__", "")], "missing metric name"),
            (&[("__name__", "up"), ("b", "1"), ("a", "2")], "not sorted"),
            (&[("__name__", "up"), ("a", "1"), ("a", "2")], "duplicate"),
            (&[("", "x"), ("__name__", "up")], "empty label name"),
        ];
        for (labels, expected) in cases {
            let request = v1::WriteRequest {
                timeseries: vec![v1_series(&[("__name__", "ok")], &[(1, 1.0)]), v1_series(labels, &[(1, 1.0)])],
                metadata: vec![],
            };
            let err = decode_v1_request(&request, 0).unwrap_err().to_string();
            assert!(err.contains(expected) && err.contains("series 1"), "{labels:?}: {err}");
        }
    }

    #[test]
    fn dots_spaces_and_newlines_are_valid_utf8_labels() {
        let request = v1::WriteRequest {
            timeseries: vec![v1_series(
                &[("__name__", "resource cpu.usage"), ("job name", "test\njob\n")],
                &[(1, 1.0)],
            )],
            metadata: vec![],
        };
        assert_eq!(decode_v1_request(&request, 0).unwrap().len(), 1);
    }

    #[test]
    fn future_samples_are_skipped_and_counted() {
        let request = v1::WriteRequest {
            timeseries: vec![v1_series(
                &[("__name__", "up")],
                &[(1_000, 1.0), (1_000 + DEFAULT_MAX_FUTURE_MS + 1, 2.0)],
            )],
            metadata: vec![],
        };
        let raw = prost::Message::encode_to_vec(&request);
        let decoded = decode_request(Protocol::V1, &raw, 1_000, &DecodeLimits::default()).unwrap();
        assert_eq!((decoded.sample_count(), decoded.too_far_in_future), (1, 1));
    }

    #[test]
    fn a_body_of_the_other_protocol_version_is_refused_not_acknowledged_empty() {
        let v1_body = prost::Message::encode_to_vec(&v1::WriteRequest {
            timeseries: vec![v1_series(&[("__name__", "up")], &[(1_000, 1.0)])],
            metadata: vec![],
        });
        let v2_body = prost::Message::encode_to_vec(&v2::Request {
            symbols: vec!["".into(), "__name__".into(), "up".into()],
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2],
                samples: vec![v2::Sample { value: 1.0, timestamp: 1_000 }],
                ..Default::default()
            }],
        });
        for (protocol, body) in [(Protocol::V2, &v1_body), (Protocol::V1, &v2_body)] {
            match decode_request(protocol, body, 1_000, &DecodeLimits::default()) {
                Err(RemoteWriteError::ProtocolMismatch { .. }) => {}
                other => panic!("{protocol:?}: expected a protocol mismatch, got {other:?}"),
            }
        }
        // Each body under its own content type decodes; an empty body is an empty request.
        assert_eq!(decode_request(Protocol::V1, &v1_body, 1_000, &DecodeLimits::default()).unwrap().sample_count(), 1);
        assert_eq!(decode_request(Protocol::V2, &v2_body, 1_000, &DecodeLimits::default()).unwrap().sample_count(), 1);
        assert_eq!(decode_request(Protocol::V2, &[], 1_000, &DecodeLimits::default()).unwrap().sample_count(), 0);
    }

    #[test]
    fn v2_resolves_symbols_and_counts_what_it_skips() {
        let request = v2::Request {
            symbols: vec!["".into(), "__name__".into(), "up".into(), "job".into(), "a".into()],
            timeseries: vec![
                v2::TimeSeries {
                    labels_refs: vec![1, 2, 3, 4],
                    samples: vec![v2::Sample { value: 3.0, timestamp: 7 }],
                    exemplars: vec![v2::Exemplar { labels_refs: vec![], value: 1.0, timestamp: 7 }],
                    metadata: Some(v2::Metadata { r#type: 2, help_ref: 0, unit_ref: 0 }),
                    ..Default::default()
                },
                v2::TimeSeries { labels_refs: vec![1, 2, 3, 4], histograms: vec![vec![]], ..Default::default() },
            ],
        };
        let raw = prost::Message::encode_to_vec(&request);
        let decoded = decode_request(Protocol::V2, &raw, 0, &DecodeLimits::default()).unwrap();
        let batch = decoded.batch();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].series.labels().unwrap(), &[("__name__", "up"), ("job", "a")]);
        assert_eq!(batch[0].samples, &[Sample::new(7, 3.0)]);
        assert_eq!((decoded.exemplars, decoded.histograms, decoded.metadata), (1, 1, 1));
    }

    #[test]
    fn v2_metadata_is_taken_once_per_family_and_named_as_a_scrape_declares_it() {
        let symbols = ["", "__name__", "latency_seconds_bucket", "le", "0.1", "+Inf", "latency_seconds_sum"];
        let symbols = symbols.iter().chain(&["Latency.", "seconds", "http_requests_total", "Requests.", "job", "a"]);
        let series = |name: u32, extra: &[u32], metadata: Option<v2::Metadata>| v2::TimeSeries {
            labels_refs: [&[1, name][..], extra].concat(),
            samples: vec![v2::Sample { value: 1.0, timestamp: 7 }],
            metadata,
            ..Default::default()
        };
        let histogram = || Some(v2::Metadata { r#type: 3, help_ref: 7, unit_ref: 8 });
        let counter = Some(v2::Metadata { r#type: 1, help_ref: 10, unit_ref: 0 });
        let request = v2::Request {
            symbols: symbols.map(|s| s.to_string()).collect(),
            timeseries: vec![
                series(2, &[3, 4], histogram()),
                series(2, &[3, 5], histogram()),
                series(6, &[], histogram()),
                series(9, &[11, 12], counter),
                series(9, &[], None),
            ],
        };
        let raw = prost::Message::encode_to_vec(&request);
        let decoded = decode_request(Protocol::V2, &raw, 0, &DecodeLimits::default()).unwrap();
        assert_eq!(decoded.metadata, 4);
        assert_eq!(
            decoded.metadata_entries,
            vec![(3, "latency_seconds", "Latency.", "seconds"), (1, "http_requests_total", "Requests.", ""),],
            "a bucket and the sum of one histogram are one family; each family once"
        );
        assert_eq!(decoded.batch().len(), 5, "metadata changes nothing of the samples");

        let mut bad = request.clone();
        bad.timeseries[3].metadata = Some(v2::Metadata { r#type: 1, help_ref: 99, unit_ref: 0 });
        let raw = prost::Message::encode_to_vec(&bad);
        let err = decode_request(Protocol::V2, &raw, 0, &DecodeLimits::default()).unwrap_err().to_string();
        assert!(err.contains("metadata help reference 99"), "{err}");
    }

    #[test]
    fn family_names_lose_only_their_types_suffixes() {
        assert_eq!(family_name(3, "a_bucket"), "a");
        assert_eq!(family_name(3, "a_count"), "a");
        assert_eq!(family_name(4, "a_gsum"), "a");
        assert_eq!(family_name(5, "a_sum"), "a");
        assert_eq!(family_name(5, "a_bucket"), "a_bucket");
        assert_eq!(family_name(1, "a_total"), "a_total");
        assert_eq!(family_name(2, "a_count"), "a_count");
    }

    #[test]
    fn v2_bad_references_are_refused() {
        for refs in [vec![1, 2, 3], vec![1, 2, 3, 99]] {
            let request = v2::Request {
                symbols: vec!["".into(), "__name__".into(), "up".into(), "job".into()],
                timeseries: vec![v2::TimeSeries {
                    labels_refs: refs.clone(),
                    samples: vec![v2::Sample { value: 1.0, timestamp: 1 }],
                    ..Default::default()
                }],
            };
            let raw = prost::Message::encode_to_vec(&request);
            assert!(
                matches!(
                    decode_request(Protocol::V2, &raw, 0, &DecodeLimits::default()),
                    Err(RemoteWriteError::InvalidSeries { .. })
                ),
                "{refs:?}"
            );
        }
    }

    #[test]
    fn snappy_errors_and_size_limit() {
        let mut out = Vec::new();
        assert!(matches!(
            decompress_snappy(b"\xff\xff\xff\xff\x0f garbage", 1 << 20, &mut out),
            Err(RemoteWriteError::DecompressedTooLarge { .. }) | Err(RemoteWriteError::Snappy(_))
        ));
        let body = encode_body(&v1::WriteRequest {
            timeseries: vec![v1_series(&[("__name__", "up")], &[(1, 1.0)])],
            metadata: vec![],
        });
        assert!(decompress_snappy(&body[..body.len() - 2], 1 << 20, &mut out).is_err());
        assert!(matches!(decompress_snappy(&body, 4, &mut out), Err(RemoteWriteError::DecompressedTooLarge { .. })));
        decompress_snappy(&body, 1 << 20, &mut out).unwrap();
    }

    #[test]
    fn recycled_vectors_keep_their_allocations() {
        let body = encode_body(&v1::WriteRequest {
            timeseries: (0..100).map(|i| v1_series(&[("__name__", "m"), ("i", &i.to_string())], &[(1, 1.0)])).collect(),
            metadata: vec![],
        });
        let mut raw = Vec::new();
        decompress_snappy(&body, 1 << 20, &mut raw).unwrap();
        let decoded = decode_request(Protocol::V1, &raw, 0, &DecodeLimits::default()).unwrap();
        let capacities = (decoded.labels.capacity(), decoded.samples.capacity(), decoded.series.capacity());
        assert!(capacities.0 >= 200 && capacities.1 >= 100 && capacities.2 >= 100, "{capacities:?}");
        let buffers = decoded.recycle();
        assert_eq!((buffers.labels.capacity(), buffers.samples.capacity(), buffers.series.capacity()), capacities);
        assert!(buffers.labels.is_empty() && buffers.samples.is_empty() && buffers.series.is_empty());
        let again =
            decode_with_cache(Protocol::V1, &raw, 0, &DecodeLimits::default(), &IngestLimits::UNLIMITED, None, buffers)
                .unwrap();
        assert_eq!(again.batch().len(), 100, "a request decoded into recycled vectors is whole");
        assert_eq!(again.labels.capacity(), capacities.0, "and grew nothing");
    }

    #[test]
    fn a_reused_buffer_holds_exactly_the_latest_body() {
        let long: Vec<u8> = (0..5000u32).flat_map(|i| i.to_le_bytes()).collect();
        let short = b"short body, shorter than what the buffer held".to_vec();
        let compress = |bytes: &[u8]| snap::raw::Encoder::new().compress_vec(bytes).unwrap();
        let mut out = vec![0xAA; 3];
        decompress_snappy(&compress(&long), 1 << 20, &mut out).unwrap();
        assert_eq!(out, long);
        decompress_snappy(&compress(&short), 1 << 20, &mut out).unwrap();
        assert_eq!(out, short, "nothing of the longer body is left");
        let mut torn = compress(&long);
        torn.truncate(torn.len() / 2);
        assert!(decompress_snappy(&torn, 1 << 20, &mut out).is_err());
        assert!(out.is_empty(), "a failed body leaves nothing to be read as decoded");
        decompress_snappy(&compress(&[]), 1 << 20, &mut out).unwrap();
        assert!(out.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_request(Protocol::V1, &bytes, 0, &DecodeLimits::default());
            let _ = decode_request(Protocol::V2, &bytes, 0, &DecodeLimits::default());
            let _ = decompress_snappy(&bytes, 1 << 16, &mut Vec::new());
        }
    }
}
