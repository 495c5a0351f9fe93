//! Storage limits: a full volume refuses writes with a reason and loses nothing acknowledged, a
//! store opened read-only serves queries, a second store on one directory is refused, a restart
//! with another budget or segment size keeps what fits, and label sets the series log cannot hold
//! are refused before anything is stored.

use crate::helpers::{all_samples, both_backends, Rng, TestStore};
use tsdb::{Db, Error, Matcher, MemoryDirectory, Options, Sample, SeriesSamples, Storage};

/// Options for a store in `memory` with the given budget and segment size.
fn memory_options(memory: &MemoryDirectory, storage_bytes: u64, segment_bytes: u64) -> Options {
    let mut options = Options::in_memory();
    options.storage = Storage::Memory(memory.clone());
    options.storage_size_bytes = storage_bytes;
    options.segment_size_bytes = Some(segment_bytes);
    options
}

/// Appends one sample to the series `__name__="m", i=<i>`.
fn append_to(db: &Db, i: usize, sample: Sample) -> Result<(), Error> {
    let i = i.to_string();
    let labels = [("__name__", "m"), ("i", i.as_str())];
    db.append(&[SeriesSamples::labels(&labels, &[sample])]).map(drop)
}

/// Samples of the series `__name__="m", i=<i>`.
fn samples_of(db: &Db, i: usize) -> Vec<Sample> {
    let found = db.select(&[Matcher::equal("__name__", "m"), Matcher::equal("i", i.to_string())], i64::MIN, i64::MAX);
    found.unwrap().first().map(|s| s.samples().collect()).unwrap_or_default()
}

/// Appends `steps` samples (random floats, ~10 bytes each) to each of `series` series named
/// `__name__="s", i=<i>`, one second apart from `start_ms` on.
fn fill(db: &Db, series: usize, steps: i64, start_ms: i64, rng: &mut Rng) {
    let names: Vec<String> = (0..series).map(|i| i.to_string()).collect();
    for step in 0..steps {
        let values: Vec<[Sample; 1]> =
            names.iter().map(|_| [Sample::new(start_ms + step * 1000, f64::from_bits(rng.next_u64() >> 2))]).collect();
        let labels: Vec<[(&str, &str); 2]> = names.iter().map(|n| [("__name__", "s"), ("i", n.as_str())]).collect();
        let batch: Vec<SeriesSamples<'_>> =
            labels.iter().zip(&values).map(|(labels, samples)| SeriesSamples::labels(labels, samples)).collect();
        db.append(&batch).unwrap();
    }
}

/// Checks that every series `s` holds a gap-free run ending at `last_ts`; returns the samples kept.
fn newest_suffix(db: &Db, series: usize, last_ts: i64) -> usize {
    let found = db.select(&[Matcher::equal("__name__", "s")], i64::MIN, i64::MAX).unwrap();
    assert_eq!(found.len(), series);
    let mut kept = 0;
    for series in found {
        let samples: Vec<Sample> = series.samples().collect();
        assert_eq!(samples.last().map(|s| s.ts_ms), Some(last_ts));
        assert!(samples.windows(2).all(|w| w[1].ts_ms == w[0].ts_ms + 1000), "gap in retained data");
        kept += samples.len();
    }
    kept
}

/// Bytes of the ring's segment files.
fn segment_file_bytes(store: &TestStore) -> u64 {
    store
        .file_sizes()
        .iter()
        .filter(|(name, _)| name.starts_with("seg-") && name.ends_with(".rt"))
        .map(|(_, l)| l)
        .sum()
}

#[test]
fn a_full_volume_refuses_new_series_with_no_space_and_loses_nothing_acknowledged() {
    let memory = MemoryDirectory::new();
    let options = memory_options(&memory, 1 << 20, 64 << 10);
    let db = Db::open(options.clone()).unwrap();
    append_to(&db, 0, Sample::new(1_000, 0.0)).unwrap();
    // Room for a few dozen more series records, nothing more.
    memory.set_capacity(Some(memory.used_bytes() + 2048));
    let mut acknowledged = 1;
    let error = loop {
        match append_to(&db, acknowledged, Sample::new(1_000, acknowledged as f64)) {
            Ok(()) => acknowledged += 1,
            Err(e) => break e,
        }
        assert!(acknowledged < 10_000, "the volume never filled");
    };
    assert!(error.is_no_space(), "{error}");
    assert!(db.write_health().no_space.is_some());
    assert!(acknowledged > 1);
    // Existing series keep taking samples (their open chunks need no new space), queries answer.
    append_to(&db, 0, Sample::new(2_000, 0.5)).unwrap();
    for i in 0..acknowledged {
        assert_eq!(samples_of(&db, i).first(), Some(&Sample::new(1_000, i as f64)), "series {i}");
    }
    // Space freed: writes resume, and a restart finds everything acknowledged.
    memory.set_capacity(None);
    append_to(&db, acknowledged, Sample::new(1_000, acknowledged as f64)).unwrap();
    assert_eq!(db.write_health().no_space, None);
    drop(db);
    let db = Db::open(options).unwrap();
    for i in 0..=acknowledged {
        assert_eq!(samples_of(&db, i).first(), Some(&Sample::new(1_000, i as f64)), "series {i}");
    }
    assert_eq!(samples_of(&db, 0).len(), 2);
}

#[test]
fn a_full_volume_caps_the_ring_and_writes_keep_flowing() {
    let memory = MemoryDirectory::new();
    let segment_bytes = 16 << 10;
    let options = memory_options(&memory, 1 << 20, segment_bytes);
    let db = Db::open(options.clone()).unwrap();
    let mut rng = Rng(11);
    fill(&db, 2, 1, 0, &mut rng);
    // Room for three segments: the fourth is refused and the ring recycles the three it has.
    memory.set_capacity(Some(memory.used_bytes() + 3 * segment_bytes + 1024));
    // ~10 bytes a sample: 2 × 8000 samples is about three times what three segments hold.
    fill(&db, 2, 7999, 1_000, &mut rng);
    assert_eq!(db.stats().segments, 3);
    let kept = newest_suffix(&db, 2, 7999 * 1000);
    assert!(kept < 2 * 8000, "the capped ring recycled its oldest segment");
    // After a restart with space, the ring grows again.
    drop(db);
    memory.set_capacity(None);
    let db = Db::open(options).unwrap();
    assert_eq!(newest_suffix(&db, 2, 7999 * 1000), kept);
    fill(&db, 2, 4000, 8_000_000, &mut rng);
    assert!(db.stats().segments > 3);
    newest_suffix(&db, 2, 11_999 * 1000);
}

both_backends! {
    fn a_store_opened_read_only_serves_queries_and_refuses_writes(store) {
        let mut rng = Rng(5);
        let db = Db::open(store.small_options(256 << 10, 16 << 10)).unwrap();
        fill(&db, 3, 3000, 0, &mut rng);
        let written = newest_suffix(&db, 3, 2999 * 1000);
        let mut read_only = store.small_options(256 << 10, 16 << 10);
        read_only.read_only = true;
        // A read-only store takes the directory's lock too: on disk it does not open next to a
        // writable one (whose writes could change the files under it).
        match Db::open(read_only.clone()) {
            Err(Error::Locked { .. }) if store.locks_its_directory() => {}
            Ok(reader) if !store.locks_its_directory() => {
                assert_eq!(newest_suffix(&reader, 3, 2999 * 1000), written);
            }
            Err(e) => panic!("read-only open next to a writer: {e}"),
            Ok(_) => panic!("a read-only store opened next to a writer on disk"),
        }
        drop(db);
        let mut files = store.file_sizes();
        files.sort();
        let reader = Db::open(read_only).unwrap();
        assert_eq!(newest_suffix(&reader, 3, 2999 * 1000), written);
        match append_to(&reader, 0, Sample::new(1, 1.0)) {
            Err(Error::ReadOnly(_)) => {}
            other => panic!("expected ReadOnly, got {other:?}"),
        }
        assert!(reader.write_health().read_only);
        drop(reader);
        let mut after = store.file_sizes();
        after.sort();
        assert_eq!(after, files, "a read-only store creates, resizes and removes nothing");
        // Writable again, everything is still there.
        let db = Db::open(store.small_options(256 << 10, 16 << 10)).unwrap();
        assert_eq!(newest_suffix(&db, 3, 2999 * 1000), written);
    }
}

#[test]
fn a_second_store_on_one_directory_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let first = Db::open(Options::new(dir.path())).unwrap();
    match Db::open(Options::new(dir.path())) {
        Err(Error::Locked { path, holder }) => {
            assert_eq!(path, dir.path());
            assert_eq!(holder, format!("pid {}", std::process::id()));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(first);
    let second = Db::open(Options::new(dir.path())).unwrap();
    append_to(&second, 0, Sample::new(1, 1.0)).unwrap();
}

both_backends! {
    fn a_restart_with_a_larger_budget_or_segment_size_keeps_every_sample(store) {
        let mut rng = Rng(3);
        let db = Db::open(store.small_options(256 << 10, 16 << 10)).unwrap();
        // ~10 bytes a sample: 4 × 4000 samples fill most of the 256 KiB without wrapping.
        fill(&db, 4, 4000, 0, &mut rng);
        assert_eq!(newest_suffix(&db, 4, 3999 * 1000), 4 * 4000, "nothing recycled yet");
        drop(db);
        for (storage_bytes, segment_bytes) in [(512 << 10, 16 << 10), (1 << 20, 64 << 10), (1 << 20, 8 << 10)] {
            let db = Db::open(store.small_options(storage_bytes, segment_bytes)).unwrap();
            assert_eq!(newest_suffix(&db, 4, 3999 * 1000), 4 * 4000, "budget {storage_bytes}, segment {segment_bytes}");
            assert_eq!(db.stats().samples, 4 * 4000);
        }
        // Writing on: segments of the old size are replaced as the ring recycles them, and the ring
        // stays within the budget.
        let db = Db::open(store.small_options(1 << 20, 64 << 10)).unwrap();
        fill(&db, 4, 36_000, 4_000_000, &mut rng);
        let kept = newest_suffix(&db, 4, 39_999 * 1000);
        assert!(kept < 4 * 40_000, "the ring wrapped");
        assert!(segment_file_bytes(store) <= 1 << 20);
        let sizes: Vec<u64> =
            store.file_sizes().into_iter().filter(|(name, _)| name.starts_with("seg-")).map(|(_, len)| len).collect();
        assert!(sizes.iter().all(|len| *len == 64 << 10), "{sizes:?}");
    }
}

both_backends! {
    fn a_restart_with_a_smaller_budget_keeps_the_newest_and_drops_the_oldest(store) {
        let mut rng = Rng(9);
        let db = Db::open(store.small_options(512 << 10, 16 << 10)).unwrap();
        fill(&db, 4, 9000, 0, &mut rng);
        let before = newest_suffix(&db, 4, 8999 * 1000);
        drop(db);
        let db = Db::open(store.small_options(128 << 10, 16 << 10)).unwrap();
        let smaller = newest_suffix(&db, 4, 8999 * 1000);
        assert!(smaller < before, "the oldest went");
        assert!(segment_file_bytes(store) <= 128 << 10);
        drop(db);
        // Another segment size as well: what is kept still fits, newest first.
        let db = Db::open(store.small_options(64 << 10, 8 << 10)).unwrap();
        let smallest = newest_suffix(&db, 4, 8999 * 1000);
        assert!(smallest < smaller);
        assert!(segment_file_bytes(store) <= 64 << 10);
        fill(&db, 4, 3000, 9_000_000, &mut rng);
        newest_suffix(&db, 4, 11_999 * 1000);
        assert!(segment_file_bytes(store) <= 64 << 10);
        let indices: Vec<String> = store
            .file_sizes()
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| name.starts_with("seg-") && name.ends_with(".rt"))
            .collect();
        for index in 0..indices.len() {
            assert!(indices.contains(&format!("seg-{index:04}.rt")), "segment indices are dense: {indices:?}");
        }
    }
}

both_backends! {
    fn label_sets_the_series_log_cannot_hold_are_refused_and_later_series_survive(store) {
        let db = Db::open(store.options()).unwrap();
        let names: Vec<String> = (0..70_000).map(|i| format!("l{i:05}")).collect();
        let mut many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        many.push(("__name__", "many"));
        let big_value = "x".repeat(60_000);
        let mut big: Vec<(&str, &str)> = names[..35].iter().map(|n| (n.as_str(), big_value.as_str())).collect();
        big.push(("__name__", "big"));
        for labels in [&many, &big] {
            match db.append(&[SeriesSamples::labels(labels, &[Sample::new(1, 1.0)])]) {
                Err(Error::InvalidSeries { index: 0, reason }) => assert!(reason.contains("a series may have"), "{reason}"),
                other => panic!("expected InvalidSeries, got {other:?}"),
            }
        }
        db.append(&[SeriesSamples::labels(&[("__name__", "after")], &[Sample::new(1, 1.0)])]).unwrap();
        drop(db);
        let db = Db::open(store.options()).unwrap();
        assert_eq!(all_samples(&db, "after"), vec![Sample::new(1, 1.0)]);
        assert_eq!(db.stats().series, 1);
    }
}

#[test]
fn a_store_on_a_volume_without_room_for_one_chunk_step_opens_only_read_only() {
    let memory = MemoryDirectory::new();
    let options = memory_options(&memory, 16 << 20, 1 << 20);
    let db = Db::open(options.clone()).unwrap();
    append_to(&db, 0, Sample::new(1_000, 1.0)).unwrap();
    drop(db);
    memory.set_capacity(Some(memory.used_bytes() + 1000));
    let error = Db::open(options.clone()).unwrap_err();
    assert!(error.is_no_space(), "{error}");
    let mut read_only = options.clone();
    read_only.read_only = true;
    let db = Db::open(read_only).unwrap();
    assert_eq!(samples_of(&db, 0), vec![Sample::new(1_000, 1.0)]);
    assert!(matches!(append_to(&db, 0, Sample::new(2_000, 2.0)), Err(Error::ReadOnly(_))));
    drop(db);
    memory.set_capacity(None);
    let db = Db::open(options).unwrap();
    append_to(&db, 0, Sample::new(2_000, 2.0)).unwrap();
}
