//! Head slot sizes: a short-lived series holds a small slot, an open chunk grows through the sizes
//! without losing a sample (also across a restart), pages freed by removed series are split into
//! other sizes, a head full of small slots closes chunks early instead of failing, and head files
//! of the previous format are read.

use crate::helpers::{both_backends, TestStore};
use std::time::Duration;
use tsdb::{now_ms, Db, Matcher, Options, Sample, SeriesSamples};

fn labels_of(name: &str, i: usize) -> Vec<(String, String)> {
    vec![("__name__".into(), name.into()), ("pod".into(), format!("{i:06}"))]
}

fn append(db: &Db, labels: &[(String, String)], samples: &[Sample]) {
    let pairs: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let report = db.append(&[SeriesSamples::labels(&pairs, samples)]).unwrap();
    assert_eq!(report.appended, samples.len() as u64);
}

/// Series `name` number `range`, each with the samples `samples()` makes (called per append),
/// 1000 to an append (as one remote-write request brings them).
fn append_many(db: &Db, name: &str, range: std::ops::Range<usize>, samples: impl Fn() -> Vec<Sample>) {
    let all: Vec<Vec<(String, String)>> = range.map(|i| labels_of(name, i)).collect();
    for chunk in all.chunks(1000) {
        let pairs: Vec<Vec<(&str, &str)>> =
            chunk.iter().map(|l| l.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()).collect();
        let samples = samples();
        let batch: Vec<SeriesSamples> = pairs.iter().map(|p| SeriesSamples::labels(p, &samples)).collect();
        let report = db.append(&batch).unwrap();
        assert_eq!(report.appended, (samples.len() * chunk.len()) as u64);
    }
}

/// Slots of the smallest size (24 bytes) in a head file: 21 to a 512-byte page.
const SMALL_SLOTS_PER_FILE: usize = 4096 * 21;

fn read(db: &Db, name: &str, i: usize) -> Vec<Sample> {
    let selected = db
        .select(&[Matcher::equal("__name__", name), Matcher::equal("pod", format!("{i:06}"))], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(selected.len(), 1);
    selected[0].samples().collect()
}

/// `n` samples 15 s apart from `from_ms`, values like a request counter's.
fn counter(from_ms: i64, n: usize) -> Vec<Sample> {
    (0..n).map(|k| Sample::new(from_ms + k as i64 * 15_000, (k * 7 + k * k % 13) as f64)).collect()
}

/// One head file's worth of budget (head files get 1/8 of it; the series log's eighth holds the
/// identities of a head file's worth of series of [`labels_of`] created in batches).
fn one_head_file(store: &TestStore) -> Options {
    store.small_options(31 << 20, 1 << 20)
}

both_backends! {
    fn a_short_series_holds_a_small_slot_and_a_long_one_grows_without_loss(store) {
        let options = store.small_options(64 << 20, 1 << 20);
        let db = Db::open(options.clone()).unwrap();
        for i in 0..1000 {
            append(&db, &labels_of("short", i), &counter(1_000_000, 3));
        }
        let short_bytes = db.stats().head_slot_bytes_used;
        assert_eq!(short_bytes, 1000 * 24, "3 samples of a counter take a 24-byte slot");
        let long = counter(1_000_000, 5000);
        // One sample at a time, as a scraper sends them: the chunk moves through every size.
        for sample in &long {
            append(&db, &labels_of("long", 0), std::slice::from_ref(sample));
        }
        assert_eq!(read(&db, "long", 0), long);
        for i in (0..1000).step_by(97) {
            assert_eq!(read(&db, "short", i), counter(1_000_000, 3));
        }
        drop(db);
        let db = Db::open(options).unwrap();
        assert_eq!(read(&db, "long", 0), long, "after a restart");
        assert_eq!(read(&db, "short", 999), counter(1_000_000, 3));
        assert_eq!(db.stats().head_slot_bytes_used, short_bytes + 512, "the long series' open chunk holds one 512-byte slot");
    }
}

both_backends! {
    /// A batch of many samples sizes a growing slot for the samples that follow it in the batch;
    /// batches of every size from 1 to 300, one series after another, lose nothing (also across
    /// a restart), and a series fed one sample at a time still holds the slot its chunk needs.
    fn batches_of_any_size_grow_slots_without_loss(store) {
        let options = store.small_options(64 << 20, 1 << 20);
        let db = Db::open(options.clone()).unwrap();
        let mut expected: Vec<Vec<Sample>> = vec![Vec::new(); 6];
        for round in 0..60 {
            for (i, series) in expected.iter_mut().enumerate() {
                let n = 1 + (round * 37 + i * 53) % 300;
                let from_ms = series.last().map_or(1_000_000, |s| s.ts_ms + 15_000);
                let samples: Vec<Sample> =
                    counter(from_ms, n).into_iter().map(|s| Sample::new(s.ts_ms, s.value + round as f64 / 8.0)).collect();
                append(&db, &labels_of("batched", i), &samples);
                series.extend(samples);
            }
        }
        for (i, series) in expected.iter().enumerate() {
            assert_eq!(&read(&db, "batched", i), series, "series {i}");
        }
        let single = counter(1_000_000, 3);
        for sample in &single {
            append(&db, &labels_of("single", 0), std::slice::from_ref(sample));
        }
        let used = db.stats().head_slot_bytes_used;
        append(&db, &labels_of("single", 1), &single);
        assert_eq!(db.stats().head_slot_bytes_used - used, 24, "3 samples in one batch take a 24-byte slot too");
        drop(db);
        let db = Db::open(options).unwrap();
        for (i, series) in expected.iter().enumerate() {
            assert_eq!(&read(&db, "batched", i), series, "series {i} after a restart");
        }
    }
}

both_backends! {
    fn pages_freed_by_removed_series_are_split_into_other_sizes(store) {
        let mut options = one_head_file(store);
        options.retention = Some(Duration::from_millis(400));
        let db = Db::open(options.clone()).unwrap();
        // Enough short series to split every page of the one head file into 24-byte slots.
        let short = SMALL_SLOTS_PER_FILE;
        append_many(&db, "short", 0..short, || vec![Sample::new(now_ms(), 1.0)]);
        let stats = db.stats();
        assert_eq!(stats.head_slot_bytes_used, short as u64 * 24);
        assert_eq!(stats.head_slot_bytes_free, 4096 * 8, "only the 8 bytes a page of 24-byte slots leaves");
        // Past the retention for the newest of them too.
        let written_until = now_ms();
        while now_ms() < written_until + 600 {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(db.maintain().unwrap().series_removed, short as u64);
        assert_eq!(db.stats().head_slot_bytes_used, 0);
        drop(db);
        // Long series now (a store without retention on the same files): each open chunk grows
        // to a whole page, none is closed early.
        options.retention = None;
        let db = Db::open(options).unwrap();
        for i in 0..1000 {
            append(&db, &labels_of("long", i), &counter(1_000_000, 200));
        }
        let stats = db.stats();
        assert_eq!(stats.head_slot_bytes_used, 1000 * 512);
        assert_eq!(stats.head_samples, stats.samples, "no chunk was closed early");
    }
}

both_backends! {
    fn a_head_full_of_small_slots_closes_a_growing_chunk_early_without_loss(store) {
        let options = one_head_file(store);
        let db = Db::open(options.clone()).unwrap();
        let short = SMALL_SLOTS_PER_FILE;
        append_many(&db, "short", 0..short, || vec![Sample::new(1_000, 1.0)]);
        assert_eq!(db.stats().head_slot_bytes_free, 4096 * 8);
        // No larger slot is free: the growing chunk goes to the ring each time its slot is full.
        let long = counter(1_000_000, 300);
        append(&db, &labels_of("short", 0), &long.iter().map(|s| Sample::new(s.ts_ms, s.value)).collect::<Vec<_>>());
        let mut expected = vec![Sample::new(1_000, 1.0)];
        expected.extend(long);
        assert_eq!(read(&db, "short", 0), expected);
        assert!(db.stats().head_samples < db.stats().samples, "chunks were closed early");
        drop(db);
        let db = Db::open(options).unwrap();
        assert_eq!(read(&db, "short", 0), expected, "after a restart");
        assert_eq!(read(&db, "short", short - 1), vec![Sample::new(1_000, 1.0)]);
    }
}

both_backends! {
    fn a_head_file_of_the_previous_format_is_read(store) {
        let options = store.small_options(64 << 20, 1 << 20);
        let db = Db::open(options.clone()).unwrap();
        // Enough samples for the open chunk to be in a 512-byte slot, which version 1 files had.
        let samples = counter(1_000_000, 300);
        append(&db, &labels_of("m", 0), &samples);
        assert_eq!(db.stats().head_slot_bytes_used, 512);
        drop(db);
        // Version 1 header: same fields, version 1.
        let mut header = store.read("head-0000.rt")[..28].to_vec();
        header[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32c::crc32c(&header[..24]);
        header[24..28].copy_from_slice(&crc.to_le_bytes());
        store.patch("head-0000.rt", 0, &header);
        let db = Db::open(options).unwrap();
        assert_eq!(read(&db, "m", 0), samples);
    }
}
