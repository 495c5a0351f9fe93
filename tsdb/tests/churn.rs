//! Series churn: series that die are removed (index, table, head slot, series log), the store's
//! files plateau whatever the churn, stale ids are reported, a full head closes the stalest open
//! chunks early, and kill -9 during removals and series-log compactions loses nothing live.

use crate::helpers::{both_backends, TestStore};
use std::time::Duration;
use tsdb::{now_ms, Db, Matcher, Options, Sample, SeriesKey, SeriesSamples};

fn pod_labels(generation: usize, pod: usize) -> Vec<(String, String)> {
    vec![
        ("__name__".into(), "requests".into()),
        ("namespace".into(), "shop".into()),
        ("pod".into(), format!("api-{generation}-{pod}")),
    ]
}

fn append_labels(db: &Db, labels: &[(String, String)], samples: &[Sample]) -> tsdb::AppendReport {
    let pairs: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    db.append(&[SeriesSamples::labels(&pairs, samples)]).unwrap()
}

fn pods(db: &Db) -> Vec<String> {
    db.label_values("pod", &[]).unwrap()
}

fn churn_options(store: &TestStore) -> Options {
    let mut options = store.small_options(64 << 20, 1 << 20);
    options.retention = Some(Duration::from_millis(400));
    options
}

both_backends! {
    fn series_past_the_retention_are_removed_and_stay_removed(store) {
        let options = churn_options(store);
        let db = Db::open(options.clone()).unwrap();
        let old = pod_labels(0, 0);
        let live = pod_labels(0, 1);
        append_labels(&db, &old, &[Sample::new(now_ms(), 1.0)]);
        std::thread::sleep(Duration::from_millis(600));
        append_labels(&db, &live, &[Sample::new(now_ms(), 2.0)]);
        let report = db.maintain().unwrap();
        assert_eq!(report.series_removed, 1);
        assert_eq!(pods(&db), vec!["api-0-1"]);
        let stats = db.stats();
        assert_eq!((stats.series, stats.series_removed, stats.series_created), (1, 1, 2));
        drop(db);
        let db = Db::open(options).unwrap();
        assert_eq!(pods(&db), vec!["api-0-1"], "the removal survives a restart");
        assert_eq!(db.select(&[Matcher::equal("pod", "api-0-1")], i64::MIN, i64::MAX).unwrap()[0].samples().count(), 1);
        // The same labels again make a new series (a new id), which works like any other.
        let again = append_labels(&db, &old, &[Sample::new(now_ms(), 3.0)]);
        assert_eq!(again.series_created, 1);
        assert_eq!(pods(&db), vec!["api-0-0", "api-0-1"]);
    }
}

both_backends! {
    fn an_id_of_a_removed_series_is_reported_not_stored(store) {
        let db = Db::open(churn_options(store)).unwrap();
        let labels = pod_labels(1, 0);
        let id = append_labels(&db, &labels, &[Sample::new(now_ms(), 1.0)]).ids[0];
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(db.maintain().unwrap().series_removed, 1);
        let report = db.append(&[SeriesSamples::id(id, &[Sample::new(now_ms(), 2.0)])]).unwrap();
        assert_eq!((report.appended, report.removed.clone()), (0, vec![0]));
        assert!(pods(&db).is_empty(), "nothing was stored under the dead id");
        let report = append_labels(&db, &labels, &[Sample::new(now_ms(), 2.0)]);
        assert_ne!(report.ids[0], id, "ids are never handed out twice");
        let unknown = tsdb::SeriesId(report.ids[0].0 + 1000);
        assert!(db.append(&[SeriesSamples { series: SeriesKey::Id(unknown), samples: &[] }]).is_err());
    }
}

both_backends! {
    fn churn_keeps_the_files_and_the_index_bounded(store) {
        let options = churn_options(store);
        let db = Db::open(options.clone()).unwrap();
        let mut sizes = Vec::new();
        for generation in 0..12 {
            for pod in 0..300 {
                let ts = now_ms();
                append_labels(&db, &pod_labels(generation, pod), &[Sample::new(ts - 2, 1.0), Sample::new(ts, 2.0)]);
            }
            std::thread::sleep(Duration::from_millis(450));
            db.maintain().unwrap();
            let stats = db.stats();
            sizes.push((stats.bytes_on_disk, stats.series, stats.series_log_bytes));
        }
        let stats = db.stats();
        assert_eq!(stats.series_created, 12 * 300);
        assert_eq!(stats.series_removed + stats.series, 12 * 300);
        assert!(stats.series <= 300, "only the newest generation can be live: {}", stats.series);
        assert!(stats.head_slot_bytes_used <= 300 * 512);
        // The head files stay at their first size and the series log is compacted.
        let (first_disk, _, _) = sizes[2];
        let (last_disk, _, last_log) = sizes[11];
        assert!(last_disk <= first_disk + (1 << 20), "files grew with churn: {sizes:?}");
        assert!(last_log < 12 * 300 * 60, "the series log kept removed series: {sizes:?}");
        drop(db);
        let db = Db::open(options).unwrap();
        assert!(db.stats().series <= 300);
    }
}

both_backends! {
    fn a_full_head_closes_the_stalest_open_chunks_and_loses_nothing(store) {
        // A 16 MiB budget allows one head file (4096 slots); 5000 series need more.
        let db = Db::open(store.small_options(16 << 20, 1 << 20)).unwrap();
        for pod in 0..5000 {
            append_labels(&db, &pod_labels(0, pod), &[Sample::new(1_000 + pod as i64, pod as f64)]);
        }
        let stats = db.stats();
        assert_eq!(stats.series, 5000);
        assert!(stats.head_slot_bytes_used + stats.head_slot_bytes_free <= 4096 * 512);
        let found = db.select(&[Matcher::equal("__name__", "requests")], i64::MIN, i64::MAX).unwrap();
        assert_eq!(found.len(), 5000);
        for series in found {
            let samples: Vec<Sample> = series.samples().collect();
            let pod: i64 = series.labels.get("pod").unwrap().rsplit('-').next().unwrap().parse().unwrap();
            assert_eq!(samples, vec![Sample::new(1_000 + pod, pod as f64)]);
        }
    }
}

both_backends! {
    fn idle_chunks_go_to_the_ring_and_series_die_with_their_last_chunk(store) {
        let mut options = store.small_options(8 << 20, 64 << 10);
        options.head_idle_close = Duration::ZERO;
        let db = Db::open(options).unwrap();
        append_labels(&db, &pod_labels(0, 0), &[Sample::new(1_000, 1.0), Sample::new(2_000, 2.0)]);
        let report = db.maintain().unwrap();
        assert_eq!((report.idle_chunks_closed, report.series_removed), (1, 0));
        assert_eq!(db.stats().head_slot_bytes_used, 0, "the slot was given back");
        let samples: Vec<Sample> = db.select(&[], i64::MIN, i64::MAX).unwrap()[0].samples().collect();
        assert_eq!(samples.len(), 2, "the samples are in the ring");
        // Fill the ring with another series until the first one's chunk is overwritten.
        let filler = pod_labels(1, 0);
        let mut ts = 3_000;
        while db.select(&[Matcher::equal("pod", "api-0-0")], i64::MIN, i64::MAX).unwrap().len() == 1 {
            let batch: Vec<Sample> = (0..500).map(|i| Sample::new(ts + i * 1000, (ts + i * 7919) as f64 / 3.0)).collect();
            ts += 500 * 1000;
            append_labels(&db, &filler, &batch);
        }
        assert_eq!(db.maintain().unwrap().series_removed, 1);
        assert_eq!(pods(&db), vec!["api-1-0"]);
    }
}

both_backends! {
    fn a_full_series_log_share_removes_the_series_with_the_oldest_samples(store) {
        // A 16 MiB budget gives the series log 2 MiB: 10 KiB label sets fill it after ~200 series
        // (the padding has no repeats for the log's compression to find).
        let options = store.small_options(16 << 20, 1 << 20);
        let db = Db::open(options.clone()).unwrap();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let padding: String = (0..10 << 10)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'!' + (state % 94) as u8)
            })
            .collect();
        for i in 0..300i64 {
            let pod = format!("pod-{i:03}");
            let labels = [("__name__", "wide"), ("pod", pod.as_str()), ("padding", padding.as_str())];
            db.append(&[SeriesSamples::labels(&labels, &[Sample::new(1_000 + i, i as f64)])]).unwrap();
        }
        let check = |db: &Db| {
            let kept = pods(db);
            assert!(kept.len() < 300 && kept.len() > 50, "{} series kept", kept.len());
            assert_eq!(kept.last().map(String::as_str), Some("pod-299"), "the newest series stay");
            let oldest_kept: i64 = kept[0].trim_start_matches("pod-").parse().unwrap();
            assert_eq!(kept.len() as i64, 300 - oldest_kept, "the oldest went first, no gaps: {kept:?}");
        };
        check(&db);
        assert!(db.stats().series_log_bytes <= 3 << 20, "compacted within 1.5 times its share");
        drop(db);
        let db = Db::open(options).unwrap();
        check(&db);
    }
}

both_backends! {
    fn deleted_series_are_gone_and_stay_gone_after_a_restart(store) {
        // Large segments: closed chunks of a deleted series stay in the ring, unreachable.
        let options = store.small_options(64 << 20, 1 << 20);
        let db = Db::open(options.clone()).unwrap();
        let doomed = pod_labels(0, 0);
        let kept = pod_labels(0, 1);
        // Enough samples to close chunks into the ring, so the deletion covers both kinds.
        let samples: Vec<Sample> = (0..1000).map(|i| Sample::new(1_000 + i * 15_000, i as f64)).collect();
        append_labels(&db, &doomed, &samples);
        append_labels(&db, &kept, &samples);
        let report = db.delete_series(&[Matcher::equal("pod", "api-0-0")], i64::MIN, i64::MAX).unwrap();
        assert_eq!(report, tsdb::DeleteReport { series_removed: 1, series_kept: 0 });
        assert_eq!(pods(&db), vec!["api-0-1"]);
        assert!(db.select(&[Matcher::equal("pod", "api-0-0")], i64::MIN, i64::MAX).unwrap().is_empty());
        assert!(db.label_values("pod", &[]).unwrap().iter().all(|pod| pod != "api-0-0"));
        drop(db);
        let db = Db::open(options).unwrap();
        assert_eq!(pods(&db), vec!["api-0-1"], "the deletion survives a restart");
        assert_eq!(db.select(&[Matcher::equal("pod", "api-0-1")], i64::MIN, i64::MAX).unwrap()[0].samples().count(), 1000);
        // The same labels again start a new, empty series: nothing of the deleted one comes back.
        append_labels(&db, &doomed, &[Sample::new(20_000_000, 7.0)]);
        let again = db.select(&[Matcher::equal("pod", "api-0-0")], i64::MIN, i64::MAX).unwrap();
        assert_eq!(again[0].samples().map(|s| s.value).collect::<Vec<_>>(), vec![7.0]);
    }
}

both_backends! {
    fn a_window_that_would_cut_a_series_is_refused_whole(store) {
        let db = Db::open(store.options()).unwrap();
        let early = pod_labels(1, 0);
        let spanning = pod_labels(1, 1);
        let late = pod_labels(1, 2);
        append_labels(&db, &early, &[Sample::new(1_000, 1.0), Sample::new(2_000, 2.0)]);
        append_labels(&db, &spanning, &[Sample::new(1_000, 1.0), Sample::new(9_000, 2.0)]);
        append_labels(&db, &late, &[Sample::new(8_000, 1.0)]);
        let all = [Matcher::new(tsdb::MatchOp::RegexMatch, "pod", "api-1-.*").unwrap()];
        let refused = db.delete_series(&all, 0, 5_000).unwrap_err();
        assert!(matches!(refused, tsdb::Error::PartialDeletion { series: 1, .. }), "{refused}");
        assert!(refused.to_string().contains("api-1-1"), "{refused}");
        assert_eq!(pods(&db).len(), 3, "nothing was deleted");
        // A window that holds the early series whole and misses the late one deletes only it.
        let only_early = [Matcher::equal("pod", "api-1-0")];
        assert_eq!(db.delete_series(&only_early, 0, 5_000).unwrap().series_removed, 1);
        assert_eq!(db.delete_series(&[Matcher::equal("pod", "api-1-2")], 0, 5_000).unwrap().series_removed, 0);
        assert_eq!(pods(&db), vec!["api-1-1", "api-1-2"]);
    }
}
