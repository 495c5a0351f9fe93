//! The ring wraps at the disk budget, reuses the oldest segment and keeps the newest data.

use crate::helpers::{all_samples, append_pairs, both_backends, Rng};
use tsdb::{Db, Sample};

fn fill(db: &Db, series: usize, steps: i64, start: i64, rng: &mut Rng) {
    let ids: Vec<_> = (0..series).map(|i| db.resolve(&[("__name__", "s"), ("i", &i.to_string())]).unwrap()).collect();
    for step in 0..steps {
        let entries: Vec<_> =
            ids.iter().map(|id| (*id, Sample::new(start + step * 1000, f64::from_bits(rng.next_u64() >> 2)))).collect();
        append_pairs(db, &entries).unwrap();
    }
}

/// Every series must hold a gap-free suffix of what was written, ending at the newest sample.
fn assert_newest_suffix(db: &Db, series: usize, last_ts: i64) -> usize {
    let mut kept = 0;
    for series in db.select(&[tsdb::Matcher::equal("__name__", "s")], i64::MIN, i64::MAX).unwrap() {
        let samples: Vec<Sample> = series.samples().collect();
        assert_eq!(samples.last().map(|s| s.ts_ms), Some(last_ts));
        assert!(samples.windows(2).all(|w| w[1].ts_ms == w[0].ts_ms + 1000), "gap in retained data");
        kept += samples.len();
    }
    assert!(kept > 0);
    let _ = series;
    kept
}

both_backends! {
    fn ring_wraps_at_the_budget_and_keeps_the_newest_data(store) {
        let (budget, segment) = (64 << 10, 8 << 10);
        let options = store.small_options(budget, segment);
        let ring_segments = options.budget_split().ring_bytes / segment;
        let db = Db::open(options).unwrap();
        let mut rng = Rng(42);
        // Random floats cost ~10 bytes/sample: 4 series × 5000 samples ≈ 200 KB, three times the budget.
        fill(&db, 4, 5000, 0, &mut rng);
        let stats = db.stats();
        assert_eq!(stats.segments, ring_segments);
        let segment_bytes: u64 =
            store.file_sizes().iter().filter(|(name, _)| name.starts_with("seg-")).map(|(_, len)| len).sum();
        assert_eq!(segment_bytes, ring_segments * segment, "the ring's share of the budget, no more");
        let kept = assert_newest_suffix(&db, 4, 4999 * 1000);
        assert!(kept < 4 * 5000, "oldest data must have been recycled");
        assert_eq!(stats.samples as usize, kept);
        assert!(all_samples(&db, "nothing").is_empty());
        drop(db);
        // The same after a restart, and appends continue on the recycled ring.
        let db = Db::open(store.small_options(budget, segment)).unwrap();
        assert_eq!(assert_newest_suffix(&db, 4, 4999 * 1000), kept);
        fill(&db, 4, 3000, 5000 * 1000, &mut rng);
        assert_newest_suffix(&db, 4, 7999 * 1000);
    }
}
