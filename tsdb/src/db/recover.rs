//! `Db::open` is opening and recovery: the series log, the ring and the head files are read back,
//! checksums verified, torn tails truncated, and each series' in-memory state (encoder, ordering
//! state, chunk references) rebuilt from what survived.

use super::{Db, SeriesState, CHECKPOINT_EVERY};
use crate::chunk::{ChunkDecoder, EncoderState};
use crate::head::{HeadFiles, SlotContents};
use crate::index::{Index, SelectionCache};
use crate::paged::Paged;
use crate::ring::{ChunkRef, Ring};
use crate::series_log::{SeriesLog, SERIES_LOG_NAME};
use crate::{Error, Options};
use parking_lot::{Mutex, RwLock};
use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};

/// Free space a volume needs for a store to open writable: one allocation step of a segment.
const MIN_FREE_BYTES_TO_OPEN: u64 = crate::segment::ALLOCATION_STEP_BYTES;

impl Db {
    /// Opens (or creates) the store in `options.data_dir`, recovering what is there: checksums are
    /// verified, torn tails truncated, unusable files set aside as `*.corrupt`, and what was
    /// dropped is logged. With [`Options::read_only`] nothing is changed on disk.
    pub fn open(options: Options) -> Result<Db, Error> {
        let (segment_bytes, max_segments) = options.ring_geometry()?;
        let split = options.budget_split();
        let dir = options.storage.open_directory(&options.data_dir, options.read_only)?;
        if !options.read_only {
            // A volume this full cannot take a single new chunk step: start read-only instead
            // (the caller's choice) than fail at the first write.
            if let Some(free) = dir.free_bytes().filter(|free| *free < MIN_FREE_BYTES_TO_OPEN) {
                return Err(Error::NoSpace {
                    path: dir.location().to_path_buf(),
                    source: std::io::Error::other(format!(
                        "the volume has {free} bytes free, less than the {MIN_FREE_BYTES_TO_OPEN} a writable store needs"
                    )),
                });
            }
        }
        let (series_log, recovered) = SeriesLog::open(dir.as_ref(), SERIES_LOG_NAME, options.read_only)?;
        let (ring, chunks) = Ring::open(dir.clone(), segment_bytes, max_segments)?;
        let (heads, occupied) = HeadFiles::open(dir.clone(), split.head_files, options.read_only)?;
        let records = recovered.records;

        let mut index = Index::new();
        let mut states: Paged<SeriesState> = Paged::default();
        let mut created_at: Paged<u64> = Paged::default();
        for record in &records {
            index.insert_with_id(record.id, &record.labels);
            states.set(record.id, SeriesState::new());
            created_at.set(record.id, record.created_position);
        }
        // Ids of removed series are never handed out again.
        index.skip_to(recovered.next_id);
        let mut orphan_chunks = 0u64;
        let mut chunk_lists: Paged<Vec<ChunkRef>> = Paged::default();
        for chunk in &chunks {
            let series = chunk.header.series;
            match created_at.get(series) {
                Some(created) if chunk.position >= *created => match chunk_lists.get_mut(series) {
                    Some(list) => list.push(chunk.chunk_ref),
                    None => chunk_lists.set(series, vec![chunk.chunk_ref]),
                },
                _ => orphan_chunks += 1,
            }
        }
        for (series, list) in chunk_lists.drain() {
            if let Some(state) = states.get_mut(series) {
                state.set_chunks(list);
            }
        }
        if orphan_chunks > 0 {
            tracing::info!(
                orphan_chunks,
                "ignored chunks of removed series (or of series missing from the series log)"
            );
        }
        let (mut head_samples, mut head_bytes, mut dropped_heads, mut closed_twice, mut stale_slots) =
            (0i64, 0i64, 0u64, 0u64, 0u64);
        let mut used: HashSet<u32> = HashSet::new();
        // A chunk moving to a larger slot is in both for a moment: the copy with more samples
        // (the newer one) is kept, the other freed.
        let mut occupied = occupied;
        occupied.sort_unstable_by_key(|(_, contents)| (contents.series, std::cmp::Reverse(contents.num_samples)));
        for (slot, contents) in occupied {
            let id = contents.series;
            // A slot not kept is cleared, so a later open cannot mistake it for an open chunk.
            let free = |slot: &crate::head::Slot| {
                if !options.read_only {
                    slot.publish_count(&heads, 0);
                }
            };
            let Some(state) = states.get_mut(id).filter(|s| s.slot().is_none()) else {
                // Its series was removed (or the slot is a leftover): the slot is free again.
                stale_slots += 1;
                free(&slot);
                continue;
            };
            match recover_open_chunk(&contents) {
                None => {
                    dropped_heads += 1;
                    free(&slot);
                }
                // The chunk was written to the ring but the slot not yet cleared when the process
                // stopped: the ring copy wins.
                Some((enc, _)) if state.chunks().last().is_some_and(|c| c.max_ts_ms >= enc.first_ts_ms) => {
                    closed_twice += 1;
                    free(&slot);
                }
                Some((enc, checkpoints)) => {
                    state.enc = enc;
                    state.set_checkpoints(checkpoints);
                    head_samples += i64::from(enc.num_samples);
                    head_bytes += i64::from(enc.bit_len.div_ceil(8));
                    used.insert(slot.number());
                    state.set_slot(slot);
                }
            }
        }
        if !options.read_only {
            heads.set_free(&used);
        }
        for (id, state) in states.iter_mut() {
            if !state.has_samples() {
                if let Some((ts, bits)) = last_closed_sample(&ring, id, state.chunks()) {
                    state.set_has_samples();
                    state.enc.last_ts_ms = ts;
                    state.enc.last_value_bits = bits;
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
            freed_slots_of_removed_series = stale_slots,
            segments = ring.segment_count(),
            read_only = options.read_only,
            "opened store"
        );
        let mut table: Paged<Mutex<SeriesState>> = Paged::default();
        for (id, state) in states.drain() {
            table.set(id, Mutex::new(state));
        }
        let next_id = index.next_id();
        let db = Db {
            options,
            dir,
            index: RwLock::new(index),
            selections: SelectionCache::default(),
            table: RwLock::new(table),
            heads,
            ring,
            series_log: Mutex::new(series_log),
            head_samples: AtomicI64::new(head_samples),
            head_bytes: AtomicI64::new(head_bytes),
            duplicates: AtomicU64::new(0),
            rejected: Default::default(),
            no_space: Mutex::new(None),
            refusing_writes: std::sync::atomic::AtomicBool::new(false),
            series_created: AtomicU64::new(0),
            series_removed: AtomicU64::new(0),
            maintained_below_id: AtomicU32::new(next_id),
            observer: std::sync::OnceLock::new(),
            late_samples_seen: std::sync::atomic::AtomicBool::new(false),
            late_samples_stored: AtomicU64::new(0),
        };
        if recovered.skipped_stretches > 0 && !db.options.read_only {
            db.compact_series_log()?;
        }
        Ok(db)
    }
}

/// The encoder state and checkpoints of the open chunk a slot holds, or `None` when it does not
/// decode.
fn recover_open_chunk(contents: &SlotContents) -> Option<(EncoderState, [EncoderState; 2])> {
    let mut decoder = ChunkDecoder::new(&contents.payload, contents.num_samples);
    let mut checkpoints = [EncoderState::default(); 2];
    let mut decoded = 0u16;
    while let Some(sample) = decoder.next() {
        sample.ok()?;
        decoded += 1;
        if decoded.is_multiple_of(CHECKPOINT_EVERY) {
            checkpoints = [decoder.encoder_state(&contents.payload), checkpoints[0]];
        }
    }
    Some((decoder.encoder_state(&contents.payload), checkpoints))
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

    fn slot_of(db: &Db, id: SeriesId) -> Option<Slot> {
        db.table.read().get(id.0 as u32).and_then(|cell| cell.lock().slot())
    }

    /// Writes `contents` back into `slot` as a kill before its clearing would have left it, then
    /// reopens the store: the simulated restart.
    fn put_back_and_reopen(db: Db, slot: Slot, contents: &crate::head::SlotContents, options: Options) -> Db {
        slot.write_payload(&db.heads, 0, &contents.payload[..slot.payload_capacity()]).unwrap();
        slot.publish_count(&db.heads, contents.num_samples);
        drop(db);
        Db::open(options).unwrap()
    }

    /// Runs `check` on a store in a directory and on one in memory.
    fn on_both_storages(check: fn(Options)) {
        let dir = tempfile::tempdir().unwrap();
        check(Options::new(dir.path()));
        check(Options::in_memory());
    }

    /// A value whose bits look random (many bytes in a chunk).
    fn scrambled(i: i64) -> f64 {
        f64::from_bits((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 2)
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
            let contents = slot_of(&db, id).map(|slot| slot.read(&db.heads));
            db.append(&[SeriesSamples::id(id, &[sample])]).unwrap();
            written.push(sample);
            if db.stats().head_samples == 1 && i > 0 {
                before_close = contents;
                break;
            }
        }
        let contents = before_close.expect("a chunk closed");
        // Put the slot back as it was just before it was cleared (the new sample is lost with
        // it: it was never acknowledged in this simulated kill).
        written.pop();
        let slot = slot_of(&db, id).expect("the series holds a slot");
        let db = put_back_and_reopen(db, slot, &contents, options);
        let got: Vec<Sample> = db.select(&[], i64::MIN, i64::MAX).unwrap()[0].samples().collect();
        assert_eq!(got, written);
    }

    /// A kill while an open chunk moves to a larger slot (the copy published, the old slot not yet
    /// cleared) leaves two copies: the store reopens with the chunk once and one slot held.
    fn check_chunk_in_two_slots_is_kept_once(options: Options) {
        let db = Db::open(options.clone()).unwrap();
        let id = db.resolve(&[("__name__", "m")]).unwrap();
        let mut written = Vec::new();
        let mut grown = None;
        for i in 0..1000i64 {
            let before = slot_of(&db, id).map(|slot| (slot, slot.read(&db.heads)));
            let sample = Sample::new(i * 1000, (i * 13 % 97) as f64);
            db.append(&[SeriesSamples::id(id, &[sample])]).unwrap();
            written.push(sample);
            let after = slot_of(&db, id).expect("the series holds a slot");
            if let Some((old, contents)) = before.filter(|(old, _)| old.number() != after.number()) {
                grown = Some((old, contents, after.size_bytes()));
                break;
            }
        }
        let (old, contents, new_size) = grown.expect("the open chunk moved to a larger slot");
        // The old slot as it was before it was cleared (the new sample was published only in
        // the new slot, after the copy: it is not in the old one).
        let db = put_back_and_reopen(db, old, &contents, options);
        let got: Vec<Sample> = db.select(&[], i64::MIN, i64::MAX).unwrap()[0].samples().collect();
        assert_eq!(got, written);
        assert_eq!(db.stats().head_slot_bytes_used, new_size as u64, "one copy is kept, the other freed");
    }

    /// A kill while a late sample is put into the open chunk (the new copy published, the old
    /// slot not yet cleared) leaves two copies: the store reopens with the late sample, once.
    fn check_late_sample_in_two_slots_is_kept_once(mut options: Options) {
        options.out_of_order_window = std::time::Duration::from_secs(60);
        let db = Db::open(options.clone()).unwrap();
        let id = db.resolve(&[("__name__", "m")]).unwrap();
        let mut written: Vec<Sample> = (0..40i64).map(|i| Sample::new(i * 2000, (i % 7) as f64)).collect();
        for sample in &written {
            db.append(&[SeriesSamples::id(id, std::slice::from_ref(sample))]).unwrap();
        }
        let old = slot_of(&db, id).expect("the series holds a slot");
        let contents = old.read(&db.heads);
        let late = Sample::new(41_000, 0.5);
        assert_eq!(db.append(&[SeriesSamples::id(id, &[late])]).unwrap().appended, 1);
        written.insert(21, late);
        let new = slot_of(&db, id).expect("the series holds a slot");
        assert_ne!(old.number(), new.number(), "the chunk was written anew elsewhere");
        let db = put_back_and_reopen(db, old, &contents, options);
        let got: Vec<Sample> = db.select(&[], i64::MIN, i64::MAX).unwrap()[0].samples().collect();
        assert_eq!(got, written);
        assert_eq!(db.stats().head_slot_bytes_used, new.size_bytes() as u64, "one copy is kept, the other freed");
    }

    /// A kill after a late sample made the open chunk's oldest part close into the ring (the
    /// new open chunk published, the chunk in the ring, the old slot not yet cleared): the store
    /// reopens with every sample once.
    fn check_split_open_chunk_with_uncleared_old_slot_is_kept_once(mut options: Options) {
        options.out_of_order_window = std::time::Duration::from_secs(60);
        let db = Db::open(options.clone()).unwrap();
        let id = db.resolve(&[("__name__", "m")]).unwrap();
        let mut written = Vec::new();
        let mut split = None;
        for i in 0..1000i64 {
            let sample = Sample::new(i * 1000, i as f64);
            db.append(&[SeriesSamples::id(id, &[sample])]).unwrap();
            written.push(sample);
            let old = slot_of(&db, id).expect("the series holds a slot");
            let before = (old, old.read(&db.heads), db.stats().head_samples);
            // A random value: many bytes, so late samples are the ones that overflow the chunk.
            let late = Sample::new(i * 1000 - 500, scrambled(i));
            assert_eq!(db.append(&[SeriesSamples::id(id, &[late])]).unwrap().appended, 1);
            written.push(late);
            if db.stats().head_samples < before.2 {
                split = Some(before);
                break;
            }
        }
        let (old, contents, _) = split.expect("a late sample closed the open chunk's oldest part");
        let db = put_back_and_reopen(db, old, &contents, options);
        written.sort_by_key(|s| s.ts_ms);
        let got: Vec<Sample> = db.select(&[], i64::MIN, i64::MAX).unwrap()[0].samples().collect();
        assert!(got.len() == written.len() && got.iter().zip(&written).all(|(a, b)| a.bit_eq(b)));
    }

    /// The same for an in-order sample that cut the open chunk while keeping its newest samples
    /// open (an out-of-order window is set).
    fn check_cut_keeping_newest_with_uncleared_old_slot_is_kept_once(mut options: Options) {
        options.out_of_order_window = std::time::Duration::from_secs(60);
        let db = Db::open(options.clone()).unwrap();
        // Chunk cuts keep their newest samples open once a sample has arrived late.
        let other = db.resolve(&[("__name__", "other")]).unwrap();
        db.append(&[SeriesSamples::id(other, &[Sample::new(2000, 1.0)])]).unwrap();
        assert_eq!(db.append(&[SeriesSamples::id(other, &[Sample::new(1000, 1.0)])]).unwrap().appended, 1);
        let id = db.resolve(&[("__name__", "m")]).unwrap();
        let mut written = Vec::new();
        let mut cut = None;
        for i in 0..1000i64 {
            let before = slot_of(&db, id).map(|old| (old, old.read(&db.heads), db.stats().head_samples));
            let sample = Sample::new(i * 1000, scrambled(i));
            db.append(&[SeriesSamples::id(id, &[sample])]).unwrap();
            written.push(sample);
            if let Some(before) = before.filter(|(_, _, head)| db.stats().head_samples <= *head) {
                cut = Some(before);
                break;
            }
        }
        let (old, contents, _) = cut.expect("an in-order sample cut the open chunk");
        // `other`'s 2 samples, and the kept ones with the new one (1 alone after a whole cut).
        assert!(db.stats().head_samples > 2 + 1, "the newest samples were kept open");
        let db = put_back_and_reopen(db, old, &contents, options);
        let got: Vec<Sample> =
            db.select(&[crate::Matcher::equal("__name__", "m")], i64::MIN, i64::MAX).unwrap()[0].samples().collect();
        assert!(got.len() == written.len() && got.iter().zip(&written).all(|(a, b)| a.bit_eq(b)));
    }

    #[test]
    fn cut_keeping_newest_with_uncleared_old_slot_is_kept_once() {
        on_both_storages(check_cut_keeping_newest_with_uncleared_old_slot_is_kept_once);
    }

    #[test]
    fn split_open_chunk_with_uncleared_old_slot_is_kept_once() {
        on_both_storages(check_split_open_chunk_with_uncleared_old_slot_is_kept_once);
    }

    #[test]
    fn late_sample_in_two_slots_is_kept_once() {
        on_both_storages(check_late_sample_in_two_slots_is_kept_once);
    }

    #[test]
    fn chunk_in_two_slots_is_kept_once() {
        on_both_storages(check_chunk_in_two_slots_is_kept_once);
    }

    #[test]
    fn chunk_in_ring_and_uncleared_slot_is_kept_once() {
        on_both_storages(check_chunk_in_ring_and_uncleared_slot_is_kept_once);
    }
}
