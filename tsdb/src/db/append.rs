//! `Db::append` is the write path: the one door for samples (`SeriesSamples` batches keyed by id
//! or labels), the per-sample ordering checks and encoding into the mapped head slot, closing a
//! full open chunk into the ring, and the batch's accounting.

use super::stats::reason_slot;
use super::{series_count, Db, SeriesId, SeriesState, BLOCK_SERIES, CHECKPOINT_EVERY};
use crate::chunk::{encode_next, EncoderState};
use crate::head::SLOT_PAYLOAD_BYTES;
use crate::labels::validate_labels;
use crate::segment::ChunkHeader;
use crate::{Error, Labels, RejectReason, Sample};
use std::sync::atomic::Ordering;

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
struct BatchDelta {
    head_samples: i64,
    head_bytes: i64,
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
        let result = self.append_batch(batch);
        self.note_write_outcome(&result);
        result
    }

    fn append_batch(&self, batch: &[SeriesSamples<'_>]) -> Result<AppendReport, Error> {
        let mut created = 0u64;
        let ids = self.series_ids(batch, &mut created)?;
        let cutoff = self.retention_cutoff_ms();
        let table = self.table.read();
        let mut report = AppendReport { series_created: created, ..AppendReport::default() };
        let mut delta = BatchDelta::default();
        let mut result = Ok(());
        'entries: for (index, (id, entry)) in ids.iter().zip(batch).enumerate() {
            let id = id.0 as u32;
            let mut state = table[id as usize / BLOCK_SERIES][id as usize % BLOCK_SERIES].lock();
            for sample in entry.samples.iter() {
                match self.append_one(&mut state, id, *sample, cutoff, &mut delta) {
                    Ok(outcome) => self.account(outcome, index, sample.ts_ms, &mut report),
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
        result.map(|()| report)
    }

    /// The id of every batch entry: known ids checked, label sets validated (all of them before the
    /// first series is created), then looked up or created.
    fn series_ids(&self, batch: &[SeriesSamples<'_>], created: &mut u64) -> Result<Vec<SeriesId>, Error> {
        let known = series_count(&self.table.read()) as u64;
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
        let mut ids = Vec::with_capacity(batch.len());
        for entry in checked {
            ids.push(match entry {
                Checked::Known(id) => id,
                Checked::ByLabels(labels) => {
                    let (id, new) = self.resolve_labels(&labels)?;
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

    fn apply(&self, delta: BatchDelta) {
        if delta.head_samples != 0 {
            self.head_samples.fetch_add(delta.head_samples, Ordering::Relaxed);
        }
        if delta.head_bytes != 0 {
            self.head_bytes.fetch_add(delta.head_bytes, Ordering::Relaxed);
        }
    }

    /// The per-sample path: ordering checks, encode into a stack buffer, copy the changed bytes into
    /// the mapped slot, publish the count.
    #[inline]
    fn append_one(
        &self,
        s: &mut SeriesState,
        id: u32,
        sample: Sample,
        cutoff_ms: Option<i64>,
        delta: &mut BatchDelta,
    ) -> Result<Outcome, Error> {
        let bits = sample.value.to_bits();
        if s.has_samples {
            if sample.ts_ms < s.newest_ts_ms {
                return Ok(Outcome::Rejected(RejectReason::OutOfOrder));
            }
            if sample.ts_ms == s.newest_ts_ms {
                return Ok(if bits == s.newest_value_bits {
                    Outcome::Duplicate
                } else {
                    Outcome::Rejected(RejectReason::DuplicateTimestamp)
                });
            }
        }
        if cutoff_ms.is_some_and(|cutoff| sample.ts_ms < cutoff) {
            return Ok(Outcome::Rejected(RejectReason::TooOld));
        }
        let mut enc = s.enc;
        let (mut start, mut writer) = encode_next(&mut enc, sample.ts_ms, sample.value);
        if start + writer.bytes().len() > SLOT_PAYLOAD_BYTES || enc.num_samples == u16::MAX {
            self.close_chunk(s, id, delta)?;
            enc = s.enc;
            (start, writer) = encode_next(&mut enc, sample.ts_ms, sample.value);
        }
        let bytes = writer.bytes();
        s.slot.write_payload(start, bytes);
        s.slot.publish_count(enc.num_samples);
        delta.head_samples += 1;
        delta.head_bytes += (start + bytes.len()) as i64 - s.enc.bit_len.div_ceil(8) as i64;
        s.enc = enc;
        if enc.num_samples % CHECKPOINT_EVERY == 0 {
            s.checkpoints = [enc, s.checkpoints[0]];
        }
        s.newest_ts_ms = sample.ts_ms;
        s.newest_value_bits = bits;
        s.has_samples = true;
        Ok(Outcome::Appended)
    }

    /// Moves the open chunk into the ring, then clears the slot (in that order: a kill in between
    /// leaves the samples in both places, and recovery keeps the ring copy).
    fn close_chunk(&self, s: &mut SeriesState, id: u32, delta: &mut BatchDelta) -> Result<(), Error> {
        let n = s.enc.num_samples;
        if n == 0 {
            return Ok(());
        }
        let len = s.enc.bit_len.div_ceil(8) as usize;
        let mut payload = [0u8; SLOT_PAYLOAD_BYTES];
        s.slot.read_payload(&mut payload[..len]);
        let header = ChunkHeader {
            payload_len: len as u16,
            num_samples: n,
            series: id,
            min_ts_ms: s.enc.first_ts_ms,
            max_ts_ms: s.enc.last_ts_ms,
        };
        let chunk_ref = self.ring.write_chunk(&header, &payload[..len])?;
        let stale = s.chunks.iter().take_while(|c| !self.ring.is_live(c)).count();
        s.chunks.drain(..stale);
        s.chunks.push(chunk_ref);
        s.slot.publish_count(0);
        delta.head_samples -= i64::from(n);
        delta.head_bytes -= len as i64;
        s.enc = EncoderState::default();
        s.checkpoints = [EncoderState::default(); 2];
        Ok(())
    }
}
