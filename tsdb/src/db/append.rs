//! `Db::append` is the write path: the one door for samples (`SeriesSamples` batches keyed by id
//! or labels), the per-sample ordering checks and encoding into the mapped head slot, closing a
//! full open chunk into the ring, and the batch's accounting.

use super::stats::reason_slot;
use super::{Db, SeriesId, SeriesState, CHECKPOINT_EVERY};
use crate::bitstream::BitWriter;
use crate::chunk::{encode_next, ChunkDecoder, EncoderState};
use crate::head::{Slot, SLOT_CLASS_BYTES, SLOT_HEADER_BYTES, SLOT_PAYLOAD_BYTES};
use crate::labels::validate_labels;
use crate::paged::Paged;
use crate::segment::ChunkHeader;
use crate::{Error, Labels, RejectReason, Sample};
use parking_lot::Mutex;
use std::sync::atomic::Ordering;

/// Payload bytes a growing slot should hold: the `end` bytes its chunk of `samples` samples takes
/// now, and the `more` samples that follow in the same batch at the chunk's bytes per sample so
/// far (at most a full slot). A batch of many samples per series then grows a slot once or twice
/// instead of through every size; one sample per series per batch grows it as before.
fn room_for_more(end: usize, samples: u16, more: usize) -> usize {
    if more == 0 {
        return end;
    }
    let per_sample = end.div_ceil(usize::from(samples.max(1)));
    end.saturating_add(more.saturating_mul(per_sample)).min(SLOT_PAYLOAD_BYTES)
}

/// Which series an append entry is for: one already known by id, or a label set that is looked
/// up and created when missing (Prometheus's `Appender.Append(ref, labels, …)` in one type).
#[derive(Debug, Clone, Copy)]
pub enum SeriesKey<'a> {
    /// A series returned earlier by [`Db::append`] or [`Db::resolve`].
    Id(SeriesId),
    /// Labels in any order (the store sorts them); checked by [`validate_labels`].
    Labels(&'a [(&'a str, &'a str)]),
}

impl<'a> SeriesKey<'a> {
    /// The label set, for an entry named by its labels.
    pub fn labels(&self) -> Option<&'a [(&'a str, &'a str)]> {
        match self {
            SeriesKey::Labels(labels) => Some(labels),
            SeriesKey::Id(_) => None,
        }
    }
}

/// One entry of an append batch: a series and its samples, oldest first.
#[derive(Debug, Clone, Copy)]
pub struct SeriesSamples<'a> {
    pub series: SeriesKey<'a>,
    pub samples: &'a [Sample],
}

impl<'a> SeriesSamples<'a> {
    /// An entry for a series known by its id.
    pub fn id(id: SeriesId, samples: &'a [Sample]) -> Self {
        SeriesSamples { series: SeriesKey::Id(id), samples }
    }

    /// An entry for a series named by its labels.
    pub fn labels(labels: &'a [(&'a str, &'a str)], samples: &'a [Sample]) -> Self {
        SeriesSamples { series: SeriesKey::Labels(labels), samples }
    }
}

/// One refused sample of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Index of the entry in the batch.
    pub index: usize,
    pub ts_ms: i64,
    pub reason: RejectReason,
}

/// What an append did. Rejections are per sample; everything else in the batch was stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppendReport {
    /// Samples newly stored.
    pub appended: u64,
    /// Exact repeats of a series' newest sample, accepted without storing twice.
    pub duplicates: u64,
    /// Series created by this batch.
    pub series_created: u64,
    pub rejections: Vec<Rejection>,
    /// The series id of every batch entry, in batch order (so callers can cache them).
    pub ids: Vec<SeriesId>,
    /// Entries named by an id whose series has been removed (it had no sample left inside the
    /// retention): nothing of them was stored. A caller that caches ids forgets these and sends
    /// the entries again by labels, which creates the series anew.
    pub removed: Vec<usize>,
}

/// A sample the store accepted and stored, as an [`AppendObserver`] is told of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AcceptedSample {
    pub series: SeriesId,
    pub sample: Sample,
}

/// Told of every sample the store stores, once per [`Db::append`] call, after the samples are in
/// the store and before `append` returns — so before the writer acknowledges its client. Exact
/// repeats and refused samples are left out; each series' samples come in the order they were
/// stored. An observer must not append to the same store (it would be told of its own writes);
/// it may read it (e.g. [`Db::series_labels`] for a series it has not seen).
pub trait AppendObserver: Send + Sync {
    fn appended(&self, db: &Db, accepted: &[AcceptedSample]);
}

/// What happened to one sample.
enum Outcome {
    Appended,
    Duplicate,
    Rejected(RejectReason),
}

/// Counter changes gathered during one batch and applied once (keeps shared cache lines out of the
/// per-sample path).
#[derive(Default)]
pub(super) struct BatchDelta {
    pub(super) head_samples: i64,
    pub(super) head_bytes: i64,
}

impl Db {
    /// The one way samples enter the store. Each entry is one series (by id or by labels) and its
    /// samples, oldest first; each series is locked once for its whole run.
    ///
    /// Every label set is checked ([`validate_labels`]) and every id looked up before the first
    /// series is created or sample stored, so an invalid entry fails the whole call
    /// ([`Error::InvalidSeries`] names it) with no side effect. Per-sample refusals (out of order,
    /// duplicate timestamp, too old) are reported with their entry's index, not errors.
    pub fn append(&self, batch: &[SeriesSamples<'_>]) -> Result<AppendReport, Error> {
        if self.options.read_only {
            return Err(Error::ReadOnly("opened read-only".into()));
        }
        let observer = self.observer.get();
        let mut accepted = observer.map(|_| Vec::new());
        let result = self.append_batch(batch, accepted.as_mut());
        self.note_write_outcome(&result);
        if let (Some(observer), Some(accepted)) = (observer, accepted) {
            // Told even when the batch failed part-way: what was stored before the failure stays
            // stored (and a client's retry sends it again as exact repeats, which are not told).
            if !accepted.is_empty() {
                observer.appended(self, &accepted);
            }
        }
        result
    }

    fn append_batch(
        &self,
        batch: &[SeriesSamples<'_>],
        mut accepted: Option<&mut Vec<AcceptedSample>>,
    ) -> Result<AppendReport, Error> {
        let mut created = 0u64;
        let ids = self.series_ids(batch, &mut created)?;
        let cutoff = self.retention_cutoff_ms();
        let table = self.table.read();
        let mut report = AppendReport { series_created: created, ..AppendReport::default() };
        let mut delta = BatchDelta::default();
        let mut result = Ok(());
        let mut vanished: Vec<usize> = Vec::new();
        'entries: for (index, (id, entry)) in ids.iter().zip(batch).enumerate() {
            let id = id.0 as u32;
            let Some(cell) = table.get(id) else {
                // Removed between the lookup and now, or named by a stale id.
                match entry.series {
                    SeriesKey::Labels(_) => vanished.push(index),
                    SeriesKey::Id(_) => report.removed.push(index),
                }
                continue;
            };
            let mut state = cell.lock();
            // With an out-of-order window an entry's samples are taken in time order, and those
            // older than the series' newest go into its open chunk together, in one rewrite.
            let mut sorted = std::borrow::Cow::Borrowed(entry.samples);
            let mut late = 0;
            if !self.options.out_of_order_window.is_zero() {
                if !sorted.is_sorted_by_key(|sample| sample.ts_ms) {
                    sorted.to_mut().sort_by_key(|sample| sample.ts_ms);
                }
                if state.has_samples() {
                    late = sorted.partition_point(|sample| sample.ts_ms < state.newest_ts_ms());
                }
            }
            if late > 0 {
                let outcomes = match self.insert_late(&mut state, id, &sorted[..late], cutoff, &mut delta) {
                    Ok(outcomes) => outcomes,
                    Err(e) => {
                        result = Err(e);
                        break 'entries;
                    }
                };
                for (sample, outcome) in sorted[..late].iter().zip(outcomes) {
                    if let (Some(accepted), Outcome::Appended) = (accepted.as_deref_mut(), &outcome) {
                        accepted.push(AcceptedSample { series: SeriesId(u64::from(id)), sample: *sample });
                    }
                    self.account(outcome, index, sample.ts_ms, &mut report);
                }
            }
            for (k, sample) in sorted.iter().enumerate().skip(late) {
                let more = sorted.len() - k - 1;
                match self.append_one(&table, &mut state, id, *sample, more, cutoff, &mut delta) {
                    Ok(outcome) => {
                        if let (Some(accepted), Outcome::Appended) = (accepted.as_deref_mut(), &outcome) {
                            accepted.push(AcceptedSample { series: SeriesId(u64::from(id)), sample: *sample });
                        }
                        self.account(outcome, index, sample.ts_ms, &mut report)
                    }
                    Err(e) => {
                        result = Err(e);
                        break 'entries;
                    }
                }
            }
        }
        drop(table);
        self.apply(delta);
        report.ids = ids;
        result?;
        // A series named by labels that was removed while this batch ran is created anew.
        for index in vanished {
            let again = self.append_batch(&batch[index..=index], accepted.as_deref_mut())?;
            report.appended += again.appended;
            report.duplicates += again.duplicates;
            report.series_created += again.series_created;
            report.rejections.extend(again.rejections.into_iter().map(|r| Rejection { index, ..r }));
            if let Some(id) = again.ids.first() {
                report.ids[index] = *id;
            }
        }
        Ok(report)
    }

    /// The id of every batch entry: known ids checked, label sets validated (all of them before the
    /// first series is created), then looked up or created.
    fn series_ids(&self, batch: &[SeriesSamples<'_>], created: &mut u64) -> Result<Vec<SeriesId>, Error> {
        let known = u64::from(self.index.read().next_id());
        // Every entry checked first, so a bad one fails the batch before any series is created.
        enum Checked {
            Known(SeriesId),
            ByLabels(Labels),
        }
        let mut checked: Vec<Checked> = Vec::with_capacity(batch.len());
        for (index, entry) in batch.iter().enumerate() {
            checked.push(match entry.series {
                SeriesKey::Id(id) if id.0 >= known => {
                    return Err(Error::InvalidSeries { index, reason: format!("unknown series id {}", id.0) })
                }
                SeriesKey::Id(id) => Checked::Known(id),
                SeriesKey::Labels(labels) => {
                    validate_labels(labels).map_err(|reason| Error::InvalidSeries { index, reason })?;
                    Checked::ByLabels(Labels::from_pairs(labels.iter().copied()))
                }
            });
        }
        let by_labels: Vec<Labels> = checked
            .iter_mut()
            .filter_map(|entry| match entry {
                Checked::ByLabels(labels) => Some(std::mem::take(labels)),
                Checked::Known(_) => None,
            })
            .collect();
        let mut resolved = self.resolve_all(&by_labels)?.into_iter();
        let mut ids = Vec::with_capacity(batch.len());
        for entry in checked {
            ids.push(match entry {
                Checked::Known(id) => id,
                Checked::ByLabels(_) => {
                    let (id, new) =
                        resolved.next().ok_or_else(|| Error::Full("BUG: fewer series resolved than named".into()))?;
                    *created += u64::from(new);
                    SeriesId(u64::from(id))
                }
            });
        }
        Ok(ids)
    }

    #[inline]
    fn account(&self, outcome: Outcome, index: usize, ts_ms: i64, report: &mut AppendReport) {
        match outcome {
            Outcome::Appended => report.appended += 1,
            Outcome::Duplicate => {
                report.duplicates += 1;
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Rejected(reason) => {
                self.rejected[reason_slot(reason)].fetch_add(1, Ordering::Relaxed);
                report.rejections.push(Rejection { index, ts_ms, reason });
            }
        }
    }

    pub(super) fn apply(&self, delta: BatchDelta) {
        if delta.head_samples != 0 {
            self.head_samples.fetch_add(delta.head_samples, Ordering::Relaxed);
        }
        if delta.head_bytes != 0 {
            self.head_bytes.fetch_add(delta.head_bytes, Ordering::Relaxed);
        }
    }

    /// The per-sample path: ordering checks, encode into a stack buffer, copy the changed bytes into
    /// the mapped slot, publish the count. `more`: samples of the same series that follow in the
    /// batch (a slot that must grow is sized for them too).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn append_one(
        &self,
        table: &Paged<Mutex<SeriesState>>,
        s: &mut SeriesState,
        id: u32,
        sample: Sample,
        more: usize,
        cutoff_ms: Option<i64>,
        delta: &mut BatchDelta,
    ) -> Result<Outcome, Error> {
        let bits = sample.value.to_bits();
        if s.has_samples() {
            if sample.ts_ms < s.newest_ts_ms() {
                // With an out-of-order window the batch loop put late samples in place already.
                return Ok(Outcome::Rejected(RejectReason::OutOfOrder));
            }
            if sample.ts_ms == s.newest_ts_ms() {
                return Ok(if bits == s.newest_value_bits() {
                    Outcome::Duplicate
                } else {
                    Outcome::Rejected(RejectReason::DuplicateTimestamp)
                });
            }
        }
        if cutoff_ms.is_some_and(|cutoff| sample.ts_ms < cutoff) {
            return Ok(Outcome::Rejected(RejectReason::TooOld));
        }
        let mut enc = s.encoder();
        let mut writer = BitWriter::resume(0, 0);
        let mut start = encode_next(&mut enc, &mut writer, sample.ts_ms, sample.value);
        let mut end = start + writer.bytes().len();
        if end > SLOT_PAYLOAD_BYTES || enc.num_samples == u16::MAX {
            if !self.close_all_but_newest(s, id, delta)? {
                self.close_chunk(s, id, delta)?;
            }
            enc = s.encoder();
            start = encode_next(&mut enc, &mut writer, sample.ts_ms, sample.value);
            end = start + writer.bytes().len();
        }
        let heads = &self.heads;
        let (slot, taken) = match s.slot() {
            Some(slot) if end <= slot.payload_capacity() => (slot, false),
            Some(_) => match self.grow_slot(s, id, end, room_for_more(end, enc.num_samples, more))? {
                Some(slot) => (slot, false),
                None => {
                    // No larger slot is free: the chunk is closed early and the next one starts
                    // in the slot the series holds.
                    self.close_chunk(s, id, delta)?;
                    enc = s.encoder();
                    start = encode_next(&mut enc, &mut writer, sample.ts_ms, sample.value);
                    match s.slot() {
                        Some(slot) if start + writer.bytes().len() <= slot.payload_capacity() => (slot, false),
                        _ => return Err(Error::Full("BUG: a sample does not fit an empty head slot".into())),
                    }
                }
            },
            None => (self.take_slot(table, id, end, delta)?, true),
        };
        let bytes = writer.bytes();
        if let Err(e) = slot.write_payload(heads, start, bytes) {
            if taken {
                heads.release(slot);
            }
            return Err(e);
        }
        slot.publish_count(heads, enc.num_samples);
        if taken {
            s.set_slot(slot);
        }
        delta.head_samples += 1;
        delta.head_bytes += (start + bytes.len()) as i64 - s.enc.bit_len.div_ceil(8) as i64;
        s.enc = enc;
        if enc.num_samples.is_multiple_of(CHECKPOINT_EVERY) {
            s.push_checkpoint(enc);
        }
        s.set_has_samples();
        Ok(Outcome::Appended)
    }

    /// Stores `late` (in time order, each older than the series' newest sample) at their places
    /// in time in the open chunk, with one outcome per sample. A sample goes in when it is within
    /// [`crate::Options::out_of_order_window`] of the newest and later than every closed chunk of
    /// the series; one at a timestamp the chunk holds is a duplicate (same value) or refused
    /// (another value), as for the newest sample; the others are refused as out of order (or as
    /// too old, when older than the retention). The open chunk is decoded, the samples put in order, and the
    /// whole chunk encoded into another slot, whose count is published before the old slot is
    /// given back (a kill in between leaves both copies, and recovery keeps the one with more
    /// samples: this one). One rewrite per call, so a request costs at most one per series.
    /// When the chunk would outgrow the largest slot, its oldest samples are closed into the ring
    /// to make room (`close_oldest_part`); when even that cannot hold them, the oldest late
    /// samples that fit go in and the rest are refused as out of order (all are when no slot is
    /// free).
    fn insert_late(
        &self,
        s: &mut SeriesState,
        id: u32,
        late: &[Sample],
        cutoff_ms: Option<i64>,
        delta: &mut BatchDelta,
    ) -> Result<Vec<Outcome>, Error> {
        if !self.late_samples_seen.load(Ordering::Relaxed) {
            self.late_samples_seen.store(true, Ordering::Relaxed);
        }
        let window_ms = i64::try_from(self.options.out_of_order_window.as_millis()).unwrap_or(i64::MAX);
        let newest = s.newest_ts_ms();
        let after_ms = s.chunks().last().map_or(i64::MIN, |closed| closed.max_ts_ms);
        let open = s.slot().filter(|_| s.enc.num_samples > 0);
        let mut outcomes: Vec<Outcome> = late
            .iter()
            .map(|sample| {
                if cutoff_ms.is_some_and(|cutoff| sample.ts_ms < cutoff) {
                    Outcome::Rejected(RejectReason::TooOld)
                } else if open.is_none() || newest.saturating_sub(sample.ts_ms) > window_ms || sample.ts_ms <= after_ms
                {
                    Outcome::Rejected(RejectReason::OutOfOrder)
                } else {
                    Outcome::Appended
                }
            })
            .collect();
        let Some(old) = open else {
            return Ok(outcomes);
        };
        if !outcomes.iter().any(|outcome| matches!(outcome, Outcome::Appended)) {
            return Ok(outcomes);
        }
        let (mut payload, old_len) = self.open_chunk_payload(s, old);
        let held: Result<Vec<Sample>, _> = ChunkDecoder::new(&payload[..old_len], s.enc.num_samples).collect();
        let Ok(held) = held else {
            // Cannot happen (the store wrote these bytes); the late samples are refused, and
            // the chunk is left as it is.
            tracing::error!(series = id, "BUG: an open chunk does not decode; late samples of the series refused");
            refuse_the_rest(&mut outcomes);
            return Ok(outcomes);
        };
        // The late samples that go in (indexes into `late`, in time order): repeats of a held
        // sample, or of an earlier late one, are answered as repeats.
        let mut going_in: Vec<usize> = Vec::new();
        for (k, (sample, outcome)) in late.iter().zip(outcomes.iter_mut()).enumerate() {
            if !matches!(outcome, Outcome::Appended) {
                continue;
            }
            let same = match held.binary_search_by_key(&sample.ts_ms, |h| h.ts_ms) {
                Ok(at) => Some(held[at]),
                Err(_) => going_in.last().map(|&j| late[j]).filter(|previous| previous.ts_ms == sample.ts_ms),
            };
            match same {
                Some(same) if same.value.to_bits() == sample.value.to_bits() => *outcome = Outcome::Duplicate,
                Some(_) => *outcome = Outcome::Rejected(RejectReason::DuplicateTimestamp),
                None => going_in.push(k),
            }
        }
        // All of them in the open chunk; or all of them, the oldest samples closed into the ring
        // to make room; or else the most (oldest first) that fit the largest slot.
        let merged = |count: usize| merge_by_time(&held, going_in[..count].iter().map(|&k| late[k]));
        let all = merged(going_in.len());
        let mut fitted = encode_open_chunk(&all, &mut payload).map(|e| (going_in.len(), e));
        if fitted.is_none() && self.close_oldest_part(s, id, old, &all, delta)? {
            self.late_samples_stored.fetch_add(going_in.len() as u64, Ordering::Relaxed);
            return Ok(outcomes);
        }
        if fitted.is_none() {
            let (mut fits, mut too_many) = (0, going_in.len());
            while too_many - fits > 1 {
                let count = fits + (too_many - fits) / 2;
                if encode_open_chunk(&merged(count), &mut payload).is_some() {
                    fits = count;
                } else {
                    too_many = count;
                }
            }
            fitted = encode_open_chunk(&merged(fits), &mut payload).map(|e| (fits, e)).filter(|(fits, _)| *fits > 0);
        }
        let Some((inserted, (enc, checkpoints, len))) = fitted else {
            refuse_the_rest(&mut outcomes);
            return Ok(outcomes);
        };
        let Some(new) = self.publish_copy(id, smallest_class_holding(len), len, &payload[..len], enc.num_samples)?
        else {
            refuse_the_rest(&mut outcomes);
            return Ok(outcomes);
        };
        for &k in &going_in[inserted..] {
            outcomes[k] = Outcome::Rejected(RejectReason::OutOfOrder);
        }
        s.set_slot(new);
        self.heads.release(old);
        delta.head_samples += inserted as i64;
        self.late_samples_stored.fetch_add(inserted as u64, Ordering::Relaxed);
        delta.head_bytes += len as i64 - old_len as i64;
        s.enc = enc;
        s.clear_checkpoints();
        s.set_checkpoints(checkpoints);
        Ok(outcomes)
    }

    /// For late samples that make the open chunk outgrow the largest slot: the oldest samples of
    /// `merged` (the open chunk's and the late ones, in time order) that fill a slot are closed
    /// into the ring as one chunk, and the rest become the open chunk (see [`Db::close_part`]).
    fn close_oldest_part(
        &self,
        s: &mut SeriesState,
        id: u32,
        old: Slot,
        merged: &[Sample],
        delta: &mut BatchDelta,
    ) -> Result<bool, Error> {
        let mut closed = [0u8; SLOT_PAYLOAD_BYTES];
        let (count, enc, _) = encode_prefix(merged, &mut closed);
        let (oldest, rest) = merged.split_at(count);
        let (Some(first), Some(last)) = (oldest.first(), oldest.last()) else {
            return Ok(false);
        };
        let part = ClosedPart {
            payload: &closed[..enc.bit_len.div_ceil(8) as usize],
            num_samples: enc.num_samples,
            min_ts_ms: first.ts_ms,
            max_ts_ms: last.ts_ms,
        };
        self.close_part(s, id, old, part, rest, delta)
    }

    /// With an out-of-order window, once samples have arrived late, when the next in-order
    /// sample does not fit the open chunk: instead of closing all of it, its newest
    /// `CARRIED_SAMPLES` stay in the open chunk and the part before them closes into the ring as
    /// it is (its bytes are a prefix of the open chunk's), so a sample arriving a few samples late
    /// still finds its place after the closed chunks. Decoding starts at the newest checkpoint
    /// before that part's end, and only the kept samples are encoded again. False (the caller
    /// closes the whole chunk) when it is not done.
    fn close_all_but_newest(&self, s: &mut SeriesState, id: u32, delta: &mut BatchDelta) -> Result<bool, Error> {
        let (Some(old), n) = (s.slot(), s.enc.num_samples) else {
            return Ok(false);
        };
        if self.options.out_of_order_window.is_zero()
            || !self.late_samples_seen.load(Ordering::Relaxed)
            || n <= 2 * CARRIED_SAMPLES
        {
            return Ok(false);
        }
        let closed_count = n - CARRIED_SAMPLES;
        let checkpoint = s.checkpoints().iter().copied().find(|c| c.num_samples > 0 && c.num_samples <= closed_count);
        let (payload, len) = self.open_chunk_payload(s, old);
        let mut decoder = match checkpoint {
            Some(checkpoint) => ChunkDecoder::resume(&payload, len, checkpoint, n),
            None => ChunkDecoder::new(&payload[..len], n),
        };
        let mut skipped = checkpoint.map_or(0, |c| c.num_samples);
        while skipped < closed_count {
            if !matches!(decoder.next(), Some(Ok(_))) {
                return Ok(false);
            }
            skipped += 1;
        }
        let boundary = decoder.encoder_state(&payload);
        let rest: Result<Vec<Sample>, _> = decoder.collect();
        let Ok(rest) = rest else {
            return Ok(false);
        };
        // The closed part ends inside a byte: the bits after it (the next sample's) are cleared.
        let mut closed = payload;
        let closed_len = boundary.bit_len.div_ceil(8) as usize;
        let used_bits = boundary.bit_len % 8;
        if used_bits > 0 {
            closed[closed_len - 1] &= 0xff << (8 - used_bits);
        }
        let part = ClosedPart {
            payload: &closed[..closed_len],
            num_samples: closed_count,
            min_ts_ms: s.enc.first_ts_ms,
            max_ts_ms: boundary.last_ts_ms,
        };
        self.close_part(s, id, old, part, &rest, delta)
    }

    /// Closes `part` (the oldest samples of the open chunk, with any late ones) into the ring as
    /// one chunk and makes `rest` (the samples after it, in time order) the open chunk, in
    /// another slot. In this order, for a kill at any point: the new open chunk is published
    /// (recovery still keeps the old one, which holds more samples), the chunk is written to the
    /// ring (recovery drops the old copy as closed and keeps the new one), the old slot is freed.
    /// So it is done only when the new open chunk holds fewer samples than the old one; false
    /// when it is not done.
    fn close_part(
        &self,
        s: &mut SeriesState,
        id: u32,
        old: Slot,
        part: ClosedPart<'_>,
        rest: &[Sample],
        delta: &mut BatchDelta,
    ) -> Result<bool, Error> {
        if rest.is_empty() || rest.len() >= usize::from(s.enc.num_samples) {
            return Ok(false);
        }
        let mut payload = [0u8; SLOT_PAYLOAD_BYTES];
        let Some((enc, checkpoints, len)) = encode_open_chunk(rest, &mut payload) else {
            return Ok(false);
        };
        // A slot of the old one's size: the open chunk grows back into it.
        let class = smallest_class_holding(len.max(old.payload_capacity()));
        let Some(new) = self.publish_copy(id, class, len, &payload[..len], enc.num_samples)? else {
            return Ok(false);
        };
        let header = ChunkHeader {
            payload_len: part.payload.len() as u16,
            num_samples: part.num_samples,
            series: id,
            min_ts_ms: part.min_ts_ms,
            max_ts_ms: part.max_ts_ms,
        };
        let chunk_ref = match self.ring.write_chunk(&header, part.payload) {
            Ok(chunk_ref) => chunk_ref,
            Err(e) => {
                self.heads.release(new);
                return Err(e);
            }
        };
        let stale = s.chunks().iter().take_while(|c| !self.ring.is_live(c)).count();
        s.replace_chunks(stale, Some(chunk_ref));
        s.set_slot(new);
        self.heads.release(old);
        delta.head_samples += i64::from(enc.num_samples) - i64::from(s.enc.num_samples);
        delta.head_bytes += len as i64 - s.enc.bit_len.div_ceil(8) as i64;
        s.enc = enc;
        s.clear_checkpoints();
        s.set_checkpoints(checkpoints);
        Ok(true)
    }

    /// A head slot for series `id`, which has none, whose payload holds `need` bytes (a new
    /// chunk's first sample): a free one of the smallest size that does, or, when every slot of
    /// the head budget holds an open chunk, one freed by closing the stalest open chunks of other
    /// series into the ring early (the oldest data moves first; nothing is lost).
    fn take_slot(
        &self,
        table: &Paged<Mutex<SeriesState>>,
        id: u32,
        need: usize,
        delta: &mut BatchDelta,
    ) -> Result<Slot, Error> {
        let class = smallest_class_holding(need);
        if let Some(slot) = self.heads.allocate(id, class, need)? {
            return Ok(slot);
        }
        self.close_stalest(table, id, delta)?;
        self.heads.allocate(id, class, need)?.ok_or_else(|| {
            Error::Full(format!(
                "all {} bytes of head slots hold open chunks of series being written right now; raise the \
                 storage budget (head files get 1/8 of it)",
                self.heads.budget_bytes()
            ))
        })
    }

    /// Moves the open chunk of series `id` into the smallest larger slot whose payload holds `want`
    /// bytes (or, when none of that size is free, at least `need`), and frees the old slot. The
    /// copy's count is published before the old slot is cleared: a kill in between leaves two
    /// equal copies, and recovery keeps one. `None` when no larger slot is free.
    fn grow_slot(&self, s: &mut SeriesState, id: u32, need: usize, want: usize) -> Result<Option<Slot>, Error> {
        let Some(old) = s.slot() else {
            return Ok(None);
        };
        let want = want.min(SLOT_PAYLOAD_BYTES).max(need);
        let fits = |b: &usize| *b > old.size_bytes() && *b - SLOT_HEADER_BYTES >= want;
        let Some(class) = SLOT_CLASS_BYTES.iter().position(fits) else {
            return Ok(None);
        };
        let (payload, len) = self.open_chunk_payload(s, old);
        let Some(new) = self.publish_copy(id, class, need, &payload[..len], s.enc.num_samples)? else {
            return Ok(None);
        };
        s.set_slot(new);
        self.heads.release(old);
        Ok(Some(new))
    }

    /// The open chunk's payload, read from `slot` (the series' slot): the bytes and their length.
    fn open_chunk_payload(&self, s: &SeriesState, slot: Slot) -> ([u8; SLOT_PAYLOAD_BYTES], usize) {
        let len = s.enc.bit_len.div_ceil(8) as usize;
        let mut payload = [0u8; SLOT_PAYLOAD_BYTES];
        slot.read_payload(&self.heads, &mut payload[..len]);
        (payload, len)
    }

    /// A new slot of size `class` (payload at least `need` bytes) for series `id`, holding
    /// `payload` (an open chunk of `num_samples`) with its count published: a copy recovery can
    /// use. The caller gives the old slot back. `None` when no slot is free.
    fn publish_copy(
        &self,
        id: u32,
        class: usize,
        need: usize,
        payload: &[u8],
        num_samples: u16,
    ) -> Result<Option<Slot>, Error> {
        let Some(new) = self.heads.allocate(id, class, need)? else {
            return Ok(None);
        };
        if let Err(e) = new.write_payload(&self.heads, 0, payload) {
            self.heads.release(new);
            return Err(e);
        }
        new.publish_count(&self.heads, num_samples);
        Ok(Some(new))
    }

    /// Closes the open chunks of the series (other than `except`) whose newest samples are the
    /// oldest, a sixteenth of the head's slots at a time, and frees their slots. Series locked by
    /// someone else right now are skipped (they are being written: not stale).
    fn close_stalest(
        &self,
        table: &Paged<Mutex<SeriesState>>,
        except: u32,
        delta: &mut BatchDelta,
    ) -> Result<(), Error> {
        let mut candidates: Vec<(i64, u32)> = table
            .iter()
            .filter(|(id, _)| *id != except)
            .filter_map(|(id, cell)| {
                let s = cell.try_lock()?;
                s.slot().map(|_| (s.newest_ts_ms(), id))
            })
            .collect();
        let wanted = (candidates.len() / 16).max(1).min(candidates.len());
        if wanted == 0 {
            return Ok(());
        }
        candidates.select_nth_unstable(wanted - 1);
        for &(_, id) in &candidates[..wanted] {
            let Some(mut s) = table.get(id).and_then(|cell| cell.try_lock()) else {
                continue;
            };
            self.close_chunk(&mut s, id, delta)?;
            if let Some(slot) = s.take_slot() {
                self.heads.release(slot);
            }
        }
        Ok(())
    }

    /// Moves the open chunk into the ring, then clears the slot (in that order: a kill in between
    /// leaves the samples in both places, and recovery keeps the ring copy).
    pub(super) fn close_chunk(&self, s: &mut SeriesState, id: u32, delta: &mut BatchDelta) -> Result<(), Error> {
        let n = s.enc.num_samples;
        let Some(slot) = s.slot().filter(|_| n > 0) else {
            return Ok(());
        };
        let (payload, len) = self.open_chunk_payload(s, slot);
        let header = ChunkHeader {
            payload_len: len as u16,
            num_samples: n,
            series: id,
            min_ts_ms: s.enc.first_ts_ms,
            max_ts_ms: s.enc.last_ts_ms,
        };
        let chunk_ref = self.ring.write_chunk(&header, &payload[..len])?;
        slot.publish_count(&self.heads, 0);
        let stale = s.chunks().iter().take_while(|c| !self.ring.is_live(c)).count();
        s.replace_chunks(stale, Some(chunk_ref));
        delta.head_samples -= i64::from(n);
        delta.head_bytes -= len as i64;
        s.clear_open_chunk();
        s.clear_checkpoints();
        Ok(())
    }
}

/// Samples an in-order chunk cut keeps in the open chunk once samples arrive late
/// (`Db::close_all_but_newest`): senders that write in parallel deliver a few of their newest
/// requests out of order.
const CARRIED_SAMPLES: u16 = 8;

/// The oldest part of an open chunk, closed into the ring by `Db::close_part`.
struct ClosedPart<'a> {
    payload: &'a [u8],
    num_samples: u16,
    min_ts_ms: i64,
    max_ts_ms: i64,
}

/// The smallest slot size whose payload holds `len` bytes (the largest when none does).
fn smallest_class_holding(len: usize) -> usize {
    SLOT_CLASS_BYTES.iter().position(|b| b - SLOT_HEADER_BYTES >= len).unwrap_or(SLOT_CLASS_BYTES.len() - 1)
}

/// Refuses, as out of order, every sample of a late run that was still to go in.
fn refuse_the_rest(outcomes: &mut [Outcome]) {
    for outcome in outcomes.iter_mut().filter(|outcome| matches!(outcome, Outcome::Appended)) {
        *outcome = Outcome::Rejected(RejectReason::OutOfOrder);
    }
}

/// `held` and `late` (each in time order, no timestamp in both) merged in time order.
fn merge_by_time(held: &[Sample], late: impl Iterator<Item = Sample>) -> Vec<Sample> {
    let mut merged = Vec::with_capacity(held.len() + late.size_hint().0);
    let mut rest = held;
    for sample in late {
        let before = rest.partition_point(|h| h.ts_ms < sample.ts_ms);
        merged.extend_from_slice(&rest[..before]);
        merged.push(sample);
        rest = &rest[before..];
    }
    merged.extend_from_slice(rest);
    merged
}

/// Encodes the longest prefix of `samples` (in time order) that fits the largest slot as one
/// chunk into `payload`: how many samples it holds, its encoder state and its checkpoints (as
/// appending them one by one keeps them).
fn encode_prefix(
    samples: &[Sample],
    payload: &mut [u8; SLOT_PAYLOAD_BYTES],
) -> (usize, EncoderState, [EncoderState; 2]) {
    let mut enc = EncoderState::default();
    let mut checkpoints = [EncoderState::default(); 2];
    let mut writer = BitWriter::resume(0, 0);
    for (count, sample) in samples.iter().enumerate() {
        if enc.num_samples == u16::MAX {
            return (count, enc, checkpoints);
        }
        let mut next = enc;
        let start = encode_next(&mut next, &mut writer, sample.ts_ms, sample.value);
        let bytes = writer.bytes();
        let Some(place) = payload.get_mut(start..start + bytes.len()) else {
            return (count, enc, checkpoints);
        };
        place.copy_from_slice(bytes);
        enc = next;
        if enc.num_samples.is_multiple_of(CHECKPOINT_EVERY) {
            checkpoints = [enc, checkpoints[0]];
        }
    }
    (samples.len(), enc, checkpoints)
}

/// Encodes `samples` (in time order) as one open chunk into `payload`: its encoder state, its
/// checkpoints and its length in bytes. `None` when they do not fit the largest slot.
fn encode_open_chunk(
    samples: &[Sample],
    payload: &mut [u8; SLOT_PAYLOAD_BYTES],
) -> Option<(EncoderState, [EncoderState; 2], usize)> {
    let (count, enc, checkpoints) = encode_prefix(samples, payload);
    (count == samples.len()).then(|| (enc, checkpoints, enc.bit_len.div_ceil(8) as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_growing_slot_makes_room_for_the_rest_of_the_batch_and_no_more_than_a_slot() {
        assert_eq!(room_for_more(40, 10, 0), 40, "nothing follows: only what the chunk takes");
        assert_eq!(room_for_more(40, 10, 5), 40 + 5 * 4);
        assert_eq!(room_for_more(41, 10, 5), 41 + 5 * 5, "bytes per sample rounded up");
        assert_eq!(room_for_more(40, 10, 1000), SLOT_PAYLOAD_BYTES);
        assert_eq!(room_for_more(40, 10, usize::MAX), SLOT_PAYLOAD_BYTES);
        assert_eq!(room_for_more(12, 0, 3), 12 + 3 * 12, "a count of 0 reads as 1");
    }
}
