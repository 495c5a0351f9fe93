//! `Db::open` is opening and recovery: the series log, the ring and the head files are read back,
//! checksums verified, torn tails truncated, and each series' in-memory state (encoder, ordering
//! state, chunk references) rebuilt from what survived.

use super::{push_series, Db, SeriesState, CHECKPOINT_EVERY};
use crate::chunk::{ChunkDecoder, EncoderState};
use crate::head::HeadFiles;
use crate::index::{Index, SelectionCache};
use crate::ring::{ChunkRef, Ring};
use crate::series_log::{SeriesLog, SERIES_LOG_NAME};
use crate::{Error, Options};
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicI64, AtomicU64};

impl Db {
    /// Opens (or creates) the store in `options.data_dir`, recovering what is there: checksums are
    /// verified, torn tails truncated, unusable files set aside as `*.corrupt`, and what was
    /// dropped is logged.
    pub fn open(options: Options) -> Result<Db, Error> {
        let (segment_bytes, max_segments) = options.ring_geometry()?;
        let dir = options.storage.open_directory(&options.data_dir, options.read_only)?;
        let (series_log, records) = SeriesLog::open(dir.as_ref(), SERIES_LOG_NAME)?;
        let (ring, chunks) = Ring::open(dir.clone(), segment_bytes, max_segments)?;
        let heads = HeadFiles::open(dir.clone(), records.len())?;

        let mut index = Index::new();
        let mut states: Vec<SeriesState> = Vec::with_capacity(records.len());
        for record in &records {
            index.insert(&record.labels);
            states.push(SeriesState::new(heads.slot(record.id)?));
        }
        let mut orphan_chunks = 0u64;
        for chunk in &chunks {
            let series = chunk.header.series as usize;
            match (states.get_mut(series), records.get(series)) {
                (Some(state), Some(record)) if chunk.position >= record.created_position => {
                    state.chunks.push(chunk.chunk_ref);
                }
                _ => orphan_chunks += 1,
            }
        }
        if orphan_chunks > 0 {
            tracing::warn!(orphan_chunks, "dropped chunks of series missing from the series log");
        }
        let (mut head_samples, mut head_bytes, mut dropped_heads, mut closed_twice) = (0i64, 0i64, 0u64, 0u64);
        for (id, state) in states.iter_mut().enumerate() {
            let id = id as u32;
            let contents = state.slot.read();
            let last_closed_max = state.chunks.last().map(|c| c.max_ts_ms);
            let mut recovered = None;
            if contents.series == id && contents.num_samples > 0 {
                let mut decoder = ChunkDecoder::new(&contents.payload, contents.num_samples);
                let mut checkpoints = [EncoderState::default(); 2];
                let mut decoded = 0u16;
                let mut intact = true;
                while let Some(sample) = decoder.next() {
                    if sample.is_err() {
                        intact = false;
                        break;
                    }
                    decoded += 1;
                    if decoded % CHECKPOINT_EVERY == 0 {
                        checkpoints = [decoder.encoder_state(&contents.payload), checkpoints[0]];
                    }
                }
                if intact {
                    recovered = Some(decoder.encoder_state(&contents.payload));
                    state.checkpoints = checkpoints;
                } else {
                    dropped_heads += 1;
                }
            }
            match recovered {
                // The chunk was written to the ring but the slot not yet cleared when the process
                // stopped: the ring copy wins.
                Some(enc) if last_closed_max.is_some_and(|max| max >= enc.first_ts_ms) => {
                    closed_twice += 1;
                    state.checkpoints = [EncoderState::default(); 2];
                    state.slot.claim(id);
                }
                Some(enc) => {
                    state.enc = enc;
                    state.has_samples = true;
                    state.newest_ts_ms = enc.last_ts_ms;
                    state.newest_value_bits = enc.last_value_bits;
                    head_samples += i64::from(enc.num_samples);
                    head_bytes += i64::from(enc.bit_len.div_ceil(8));
                }
                None => state.slot.claim(id),
            }
            if !state.has_samples {
                if let Some((ts, bits)) = last_closed_sample(&ring, id, &state.chunks) {
                    state.has_samples = true;
                    state.newest_ts_ms = ts;
                    state.newest_value_bits = bits;
                }
            }
        }
        if dropped_heads > 0 {
            tracing::warn!(dropped_heads, "dropped open chunks that did not decode");
        }
        let (ring_samples, _, _) = ring.usage();
        tracing::info!(
            dir = %dir.location().display(),
            series = records.len(),
            chunks = chunks.len(),
            ring_samples,
            head_samples,
            already_closed_heads = closed_twice,
            segments = ring.segment_count(),
            "opened store"
        );
        let mut blocks: Vec<Vec<Mutex<SeriesState>>> = Vec::new();
        for state in states {
            push_series(&mut blocks, state);
        }
        Ok(Db {
            options,
            index: RwLock::new(index),
            selections: SelectionCache::default(),
            table: RwLock::new(blocks),
            heads,
            ring,
            series_log: Mutex::new(series_log),
            head_samples: AtomicI64::new(head_samples),
            head_bytes: AtomicI64::new(head_bytes),
            duplicates: AtomicU64::new(0),
            rejected: Default::default(),
            no_space: Mutex::new(None),
        })
    }
}

/// Timestamp and value bits of the newest sample in the ring for a series (used on open when
/// its open chunk is empty).
fn last_closed_sample(ring: &Ring, id: u32, chunks: &[ChunkRef]) -> Option<(i64, u64)> {
    let last = chunks.last()?;
    let mut payload = Vec::new();
    let header = ring.read_chunk(last, id, &mut payload)?;
    let sample = ChunkDecoder::new(&payload, header.num_samples).map_while(Result::ok).last()?;
    Some((sample.ts_ms, sample.value.to_bits()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::Slot;
    use crate::{Sample, SeriesId, SeriesSamples};

    fn slot_of(db: &Db, id: SeriesId) -> Slot {
        db.table.read()[0][id.0 as usize].lock().slot.clone()
    }

    /// Regression guard for the close protocol: a kill after the chunk reached the ring but before
    /// the slot was cleared must not duplicate samples.
    fn check_chunk_in_ring_and_uncleared_slot_is_kept_once(options: Options) {
        let db = Db::open(options.clone()).unwrap();
        let id = db.resolve(&[("__name__", "m")]).unwrap();
        let mut written = Vec::new();
        let mut before_close = None;
        for i in 0..10_000i64 {
            let sample = Sample::new(i * 1000, (i * 13 % 97) as f64);
            let contents = slot_of(&db, id).read();
            db.append(&[SeriesSamples::id(id, &[sample])]).unwrap();
            written.push(sample);
            if db.stats().head_samples == 1 && i > 0 {
                before_close = Some(contents);
                break;
            }
        }
        let contents = before_close.expect("a chunk closed");
        // Put the slot back as it was just before it was cleared (the new sample is lost with
        // it: it was never acknowledged in this simulated kill).
        written.pop();
        let slot = slot_of(&db, id);
        slot.write_payload(0, &contents.payload);
        slot.publish_count(contents.num_samples);
        std::mem::forget(db);
        let db = Db::open(options).unwrap();
        let got: Vec<Sample> = db.select(&[], i64::MIN, i64::MAX).unwrap()[0].samples().collect();
        assert_eq!(got, written);
    }

    #[test]
    fn chunk_in_ring_and_uncleared_slot_is_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        check_chunk_in_ring_and_uncleared_slot_is_kept_once(Options::new(dir.path()));
        check_chunk_in_ring_and_uncleared_slot_is_kept_once(Options::in_memory());
    }
}
