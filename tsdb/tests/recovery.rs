//! Recovery on open: restarts keep everything, torn tails are truncated, corrupt and foreign files
//! are set aside, and none of it panics.

use crate::helpers::{all_samples, append_pairs, both_backends, TestStore};
use tsdb::{Db, Options, Sample};

const SEGMENT_BYTES: u64 = 64 << 10;

fn options(store: &TestStore) -> Options {
    store.small_options(16 * SEGMENT_BYTES, SEGMENT_BYTES)
}

/// Writes `n` samples to series `name`, enough to close several chunks into the ring.
fn write_series(db: &Db, name: &str, n: i64) -> Vec<Sample> {
    let id = db.resolve(&[("__name__", name)]).unwrap();
    let samples: Vec<Sample> = (0..n).map(|i| Sample::new(i * 15_000, (i * 7 % 1000) as f64 / 8.0)).collect();
    let entries: Vec<_> = samples.iter().map(|s| (id, *s)).collect();
    append_pairs(db, &entries).unwrap();
    samples
}

both_backends! {
    fn restart_keeps_series_ids_and_samples(store) {
        let db = Db::open(options(store)).unwrap();
        let a = write_series(&db, "a", 3000);
        let b = write_series(&db, "b", 10);
        let id_b = db.resolve(&[("__name__", "b")]).unwrap();
        drop(db); // releases the directory lock; its msync does not change what the next open reads (kill -9: crash.rs)
        let db = Db::open(options(store)).unwrap();
        assert_eq!(all_samples(&db, "a"), a);
        assert_eq!(all_samples(&db, "b"), b);
        assert_eq!(db.resolve(&[("__name__", "b")]).unwrap(), id_b);
        // Ordering state survives too: the newest sample repeats idempotently, older ones are refused.
        let report = append_pairs(&db, &[(id_b, b[9]), (id_b, b[3])]).unwrap();
        assert_eq!((report.duplicates, report.rejections.len()), (1, 1));
        assert_eq!(db.stats().samples, 3010);
    }
}

both_backends! {
    fn torn_record_is_dropped_and_the_rest_kept(store) {
        let db = Db::open(options(store)).unwrap();
        let written = write_series(&db, "a", 5000);
        db.close().unwrap();
        let seg = "seg-0000.rt";
        // Flip a payload byte of the first chunk record (header 64 bytes, record header 28 bytes).
        let data = store.read(seg);
        store.patch(seg, 64 + 28 + 5, &[data[64 + 28 + 5] ^ 0xff]);
        let db = Db::open(options(store)).unwrap();
        let got = all_samples(&db, "a");
        assert!(!got.is_empty() && got.len() < written.len(), "only the damaged chunk goes");
        assert_eq!(got.last(), written.last());
        assert!(got.iter().all(|s| written.contains(s)));
    }
}

both_backends! {
    fn reserved_but_unwritten_tail_is_truncated(store) {
        let db = Db::open(options(store)).unwrap();
        let written = write_series(&db, "a", 3000);
        db.close().unwrap();
        let seg = "seg-0000.rt";
        let end = store.read_u32(seg, 28);
        // A writer reserved 400 bytes (length and `end` written) and died before filling them.
        store.patch(seg, end as usize, &372u16.to_le_bytes());
        store.patch(seg, 28, &(end + 400).to_le_bytes());
        let db = Db::open(options(store)).unwrap();
        assert_eq!(all_samples(&db, "a"), written);
        assert_eq!(store.read_u32(seg, 28), end, "torn tail truncated on disk");
        // Appending continues after the truncated tail.
        let id = db.resolve(&[("__name__", "a")]).unwrap();
        append_pairs(&db, &[(id, Sample::new(1 << 40, 1.0))]).unwrap();
        assert_eq!(all_samples(&db, "a").len(), written.len() + 1);
    }
}

both_backends! {
    fn corrupt_segment_header_is_set_aside(store) {
        let db = Db::open(options(store)).unwrap();
        write_series(&db, "a", 3000);
        let head_only = write_series(&db, "b", 5);
        db.close().unwrap();
        store.patch("seg-0000.rt", 16, &[0xde, 0xad]);
        let db = Db::open(options(store)).unwrap();
        assert!(store.exists("seg-0000.rt.corrupt"));
        // Open chunks live in head files and are unaffected.
        assert_eq!(all_samples(&db, "b"), head_only);
        let a = all_samples(&db, "a");
        assert!(a.len() < 3000);
        // The store keeps working.
        let id = db.resolve(&[("__name__", "c")]).unwrap();
        append_pairs(&db, &[(id, Sample::new(1, 1.0))]).unwrap();
        assert_eq!(all_samples(&db, "c").len(), 1);
    }
}

both_backends! {
    fn foreign_files_are_set_aside_not_trusted(store) {
        store.write("seg-0001.rt", b"definitely not a segment");
        store.write("head-0000.rt", &[0x5a; 4096]);
        store.write("series.log", b"{\"json\": true}");
        store.write("notes.txt", b"left alone");
        let db = Db::open(options(store)).unwrap();
        for name in ["seg-0001.rt.corrupt", "head-0000.rt.corrupt", "series.log.corrupt", "notes.txt"] {
            assert!(store.exists(name), "{name}");
        }
        let written = write_series(&db, "a", 3000);
        drop(db);
        let db = Db::open(options(store)).unwrap();
        assert_eq!(all_samples(&db, "a"), written);
    }
}

both_backends! {
    fn garbage_head_slot_is_dropped_without_panic(store) {
        let db = Db::open(options(store)).unwrap();
        let id = db.resolve(&[("__name__", "a")]).unwrap();
        append_pairs(&db, &[(id, Sample::new(1, 1.0)), (id, Sample::new(2, 2.0))]).unwrap();
        db.close().unwrap();
        // Slot 0: header 64 bytes into the file; claim 60000 samples over random payload bytes.
        let head = "head-0000.rt";
        store.patch(head, 64, &60000u16.to_le_bytes());
        store.patch(head, 64 + 8, &[0xff; 100]);
        let db = Db::open(options(store)).unwrap();
        assert!(all_samples(&db, "a").is_empty());
        append_pairs(&db, &[(id, Sample::new(3, 3.0))]).unwrap();
        assert_eq!(all_samples(&db, "a"), vec![Sample::new(3, 3.0)]);
    }
}

both_backends! {
    fn impossible_end_field_is_repaired_not_trusted(store) {
        let db = Db::open(options(store)).unwrap();
        let mut written = write_series(&db, "a", 3000);
        db.close().unwrap();
        let seg = "seg-0000.rt";
        for (round, bogus_end) in [3u32, u32::MAX].into_iter().enumerate() {
            store.patch(seg, 28, &bogus_end.to_le_bytes());
            let db = Db::open(options(store)).unwrap();
            let got = all_samples(&db, "a");
            assert!(got.iter().all(|s| written.contains(s)));
            // New chunks go after the header, never over it.
            let id = db.resolve(&[("__name__", "a")]).unwrap();
            let base = (1i64 << 40) * (round as i64 + 1);
            let more: Vec<_> = (0..2000).map(|i| (id, Sample::new(base + i, i as f64))).collect();
            append_pairs(&db, &more).unwrap();
            written.extend(more.iter().map(|(_, s)| *s));
            drop(db);
            let db = Db::open(options(store)).unwrap();
            assert!(all_samples(&db, "a").len() >= 2000);
            assert!(!store.exists("seg-0000.rt.corrupt"));
        }
    }
}
