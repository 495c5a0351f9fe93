//! Append, select, ordering rules, label listing and concurrency through the public API.

use crate::helpers::{all_samples, append_pairs, both_backends, Rng};
use std::sync::Arc;
use tsdb::{stale_nan, Db, MatchOp, Matcher, RejectReason, Sample, SeriesSamples};

both_backends! {
    fn samples_come_back_bit_exact_across_many_chunks(store) {
        let db = Db::open(store.small_options(8 << 20, 1 << 20)).unwrap();
        let id = db.resolve(&[("__name__", "m"), ("job", "a")]).unwrap();
        let mut rng = Rng(7);
        let mut expected = Vec::new();
        let mut ts = 1_700_000_000_000i64;
        for i in 0..20_000 {
            ts += 15_000 + rng.below(3) as i64;
            let value = match i % 5 {
                0 => rng.below(1000) as f64 / 1000.0,
                1 => f64::from_bits(rng.next_u64()),
                2 if i % 50 == 2 => stale_nan(),
                _ => i as f64,
            };
            expected.push(Sample::new(ts, value));
        }
        for batch in expected.chunks(100) {
            let entries: Vec<_> = batch.iter().map(|s| (id, *s)).collect();
            let report = append_pairs(&db, &entries).unwrap();
            assert_eq!(report.appended, batch.len() as u64);
        }
        let got = all_samples(&db, "m");
        assert_eq!(got.len(), expected.len());
        assert!(got.iter().zip(&expected).all(|(a, b)| a.bit_eq(b)));
        let stats = db.stats();
        assert_eq!(stats.samples, expected.len() as u64);
        assert!(stats.bytes_per_sample > 0.0 && stats.data_bytes > 0);
        // Inclusive window in the middle of the data.
        let (lo, hi) = (expected[5000].ts_ms, expected[9000].ts_ms);
        let window = db.select(&[Matcher::equal("job", "a")], lo, hi).unwrap();
        let window: Vec<Sample> = window[0].samples().collect();
        assert_eq!(window.len(), 4001);
        assert!(window[0].bit_eq(&expected[5000]) && window[4000].bit_eq(&expected[9000]));
    }
}

both_backends! {
    fn ordering_rules_reject_and_count_by_reason(store) {
        let db = Db::open(store.options()).unwrap();
        let id = db.resolve(&[("__name__", "m")]).unwrap();
        append_pairs(&db, &[(id, Sample::new(2000, 1.0))]).unwrap();
        let report = append_pairs(
            &db,
            &[
                (id, Sample::new(1000, 1.0)),
                (id, Sample::new(2000, 1.0)),
                (id, Sample::new(2000, 2.0)),
                (id, Sample::new(3000, 3.0)),
            ],
        )
        .unwrap();
        assert_eq!(report.appended, 1);
        assert_eq!(report.duplicates, 1);
        let reasons: Vec<_> = report.rejections.iter().map(|r| (r.index, r.reason)).collect();
        assert_eq!(reasons, vec![(0, RejectReason::OutOfOrder), (2, RejectReason::DuplicateTimestamp)]);
        let stats = db.stats();
        assert_eq!(stats.duplicates, 1);
        assert!(stats.rejected.contains(&(RejectReason::OutOfOrder, 1)));
        assert!(stats.rejected.contains(&(RejectReason::DuplicateTimestamp, 1)));
        assert_eq!(all_samples(&db, "m"), vec![Sample::new(2000, 1.0), Sample::new(3000, 3.0)]);
    }
}

both_backends! {
    fn staleness_marker_is_stored_like_a_sample(store) {
        let db = Db::open(store.options()).unwrap();
        let samples = [Sample::new(1000, 1.0), Sample::new(2000, stale_nan())];
        let batch = [SeriesSamples::labels(&[("__name__", "up"), ("job", "x")], &samples)];
        let report = db.append(&batch).unwrap();
        assert_eq!((report.appended, report.series_created), (2, 1));
        let got = all_samples(&db, "up");
        assert!(tsdb::is_stale_nan(got[1].value));
        // The same marker again is an idempotent repeat, not a conflict.
        let report = db.append(&batch[..]).unwrap();
        assert_eq!((report.duplicates, report.series_created), (1, 0));
    }
}

both_backends! {
    fn selectors_use_the_index_and_results_are_sorted(store) {
        let db = Db::open(store.options()).unwrap();
        for (job, pod) in [("api", "b"), ("api", "a"), ("db", "c")] {
            let labels = [("__name__", "req"), ("job", job), ("pod", pod)];
            db.append(&[SeriesSamples::labels(&labels, &[Sample::new(10, 1.0)])]).unwrap();
        }
        db.append(&[SeriesSamples::labels(&[("__name__", "req")], &[Sample::new(10, 1.0)])]).unwrap();
        let pods = |matchers: &[Matcher]| -> Vec<String> {
            db.select(matchers, 0, 100).unwrap().iter().map(|s| s.labels.get("pod").unwrap_or("-").to_string()).collect()
        };
        assert_eq!(pods(&[Matcher::equal("job", "api")]), vec!["a", "b"]);
        assert_eq!(pods(&[Matcher::new(MatchOp::NotEqual, "job", "api").unwrap()]), vec!["-", "c"]);
        assert_eq!(pods(&[Matcher::new(MatchOp::RegexMatch, "pod", "a|c").unwrap()]), vec!["a", "c"]);
        assert_eq!(pods(&[Matcher::new(MatchOp::RegexNoMatch, "pod", ".+").unwrap()]), vec!["-"]);
        assert_eq!(pods(&[Matcher::one_of("pod", ["b".to_string(), "c".to_string()])]), vec!["b", "c"]);
        // Outside the window: nothing.
        assert!(db.select(&[Matcher::equal("job", "api")], 11, 100).unwrap().is_empty());
        assert_eq!(db.label_names(&[]).unwrap(), vec!["__name__", "job", "pod"]);
        assert_eq!(db.label_values("pod", &[Matcher::equal("job", "api")]).unwrap(), vec!["a", "b"]);
        assert_eq!(db.series(&[Matcher::equal("pod", "c")], 0, 100).unwrap()[0].get("job"), Some("db"));
    }
}

both_backends! {
    fn invalid_labels_fail_the_whole_batch(store) {
        let db = Db::open(store.options()).unwrap();
        let sample = [Sample::new(1, 1.0)];
        let good = SeriesSamples::labels(&[("__name__", "ok")], &sample);
        let bad = SeriesSamples::labels(&[("job", "no-name")], &sample);
        assert!(matches!(db.append(&[good, bad]), Err(tsdb::Error::InvalidSeries { index: 1, .. })));
        assert_eq!(db.stats().samples, 0);
        assert!(append_pairs(&db, &[(tsdb::SeriesId(99), Sample::new(1, 1.0))]).is_err());
    }
}

both_backends! {
    fn retention_rejects_and_hides_old_samples(store) {
        let mut options = store.options();
        options.retention = Some(std::time::Duration::from_secs(3600));
        let db = Db::open(options).unwrap();
        let id = db.resolve(&[("__name__", "m")]).unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let report = append_pairs(&db, &[(id, Sample::new(now - 7_200_000, 1.0)), (id, Sample::new(now, 2.0))]).unwrap();
        assert_eq!(report.rejections[0].reason, RejectReason::TooOld);
        assert_eq!(all_samples(&db, "m"), vec![Sample::new(now, 2.0)]);
    }
}

both_backends! {
    fn concurrent_appenders_and_readers_see_consistent_prefixes(store) {
        let db = Arc::new(Db::open(store.small_options(4 << 20, 256 << 10)).unwrap());
        let ids: Vec<_> = (0..8).map(|i| db.resolve(&[("__name__", "c"), ("shard", &i.to_string())]).unwrap()).collect();
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let db = db.clone();
                let ids: Vec<_> = ids.iter().copied().skip(w).step_by(2).collect();
                std::thread::spawn(move || {
                    for step in 1..=3000i64 {
                        let entries: Vec<_> = ids.iter().map(|id| (*id, Sample::new(step * 1000, step as f64))).collect();
                        assert_eq!(append_pairs(&db, &entries).unwrap().appended, ids.len() as u64);
                    }
                })
            })
            .collect();
        let reader = {
            let db = db.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    for series in db.select(&[Matcher::equal("__name__", "c")], i64::MIN, i64::MAX).unwrap() {
                        // Every series is a gap-free prefix 1, 2, 3, … (no torn or reordered chunks).
                        for (i, s) in series.samples().enumerate() {
                            assert_eq!(s.ts_ms, (i as i64 + 1) * 1000);
                            assert_eq!(s.value, (i + 1) as f64);
                        }
                    }
                }
            })
        };
        for w in writers {
            w.join().unwrap();
        }
        reader.join().unwrap();
        assert_eq!(db.stats().samples, 8 * 3000);
    }
}

mod oracle {
    //! The store against a naive model (a sorted `Vec` per series with the same acceptance rules),
    //! with small chunks and a restart in the middle.

    use crate::helpers::{append_pairs, Backend, TestStore};
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;
    use tsdb::{AppendReport, Db, Matcher, RejectReason, Sample};

    #[derive(Debug, Clone)]
    enum Op {
        Append { series: usize, ts_ms: i64, value: f64 },
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        let value = prop_oneof![
            (0i64..50).prop_map(|v| v as f64),
            (-5000i64..5000).prop_map(|v| v as f64 / 1000.0),
            any::<u64>().prop_map(f64::from_bits),
            Just(tsdb::stale_nan()),
        ];
        prop_oneof![
            40 => (0usize..3, 0i64..400, value).prop_map(|(series, t, value)| Op::Append { series, ts_ms: t * 250, value }),
            1 => Just(Op::Reopen),
        ]
    }

    fn model_append(model: &mut Vec<Sample>, s: Sample) -> Result<bool, RejectReason> {
        match model.last() {
            Some(last) if s.ts_ms < last.ts_ms => Err(RejectReason::OutOfOrder),
            Some(last) if s.ts_ms == last.ts_ms && last.bit_eq(&s) => Ok(false),
            Some(last) if s.ts_ms == last.ts_ms => Err(RejectReason::DuplicateTimestamp),
            _ => {
                model.push(s);
                Ok(true)
            }
        }
    }

    /// With an out-of-order window, a sample older than the newest is checked against what the
    /// store answered: the model cannot know where the store's open chunk starts, so a refusal
    /// inside the window is allowed, but whatever the store took must be new and inside the window
    /// (it is put into the model in its place), and repeats must be repeats.
    fn model_append_late(
        model: &mut Vec<Sample>,
        s: Sample,
        report: &AppendReport,
        window_ms: i64,
    ) -> Result<(), TestCaseError> {
        let newest = match model.last() {
            Some(last) if s.ts_ms < last.ts_ms => last.ts_ms,
            _ => return check_in_order(model, s, report),
        };
        let held = model.binary_search_by_key(&s.ts_ms, |m| m.ts_ms);
        match (report.appended, report.duplicates, report.rejections.first().map(|r| r.reason)) {
            (1, 0, None) => {
                prop_assert!(newest - s.ts_ms <= window_ms, "took {s:?}, outside the window of newest {newest}");
                let Err(at) = held else { return Err(TestCaseError::fail(format!("took {s:?} twice"))) };
                model.insert(at, s);
            }
            (0, 1, None) => prop_assert!(held.is_ok_and(|at| model[at].bit_eq(&s)), "{s:?} is no repeat"),
            (0, 0, Some(RejectReason::DuplicateTimestamp)) => {
                prop_assert!(held.is_ok_and(|at| !model[at].bit_eq(&s)), "{s:?} has no other value held")
            }
            (0, 0, Some(RejectReason::OutOfOrder)) => {}
            other => return Err(TestCaseError::fail(format!("{s:?} answered {other:?}"))),
        }
        Ok(())
    }

    fn check_in_order(model: &mut Vec<Sample>, s: Sample, report: &AppendReport) -> Result<(), TestCaseError> {
        match model_append(model, s) {
            Ok(true) => prop_assert_eq!(report.appended, 1),
            Ok(false) => prop_assert_eq!(report.duplicates, 1),
            Err(reason) => prop_assert_eq!(report.rejections[0].reason, reason),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn store_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..600), lo in 0i64..100_000, span in 0i64..100_000) {
            run_against_model(&ops, lo, span, 0)?;
        }

        #[test]
        fn store_with_an_out_of_order_window_behaves_like_the_model(
            ops in proptest::collection::vec(op(), 1..600),
            lo in 0i64..100_000,
            span in 0i64..100_000,
            window_ms in prop_oneof![Just(1i64), 250i64..20_000, Just(i64::from(u32::MAX))],
        ) {
            run_against_model(&ops, lo, span, window_ms)?;
        }
    }

    fn run_against_model(ops: &[Op], lo: i64, span: i64, window_ms: i64) -> Result<(), TestCaseError> {
        for backend in [Backend::Mmap, Backend::Memory] {
            let store = TestStore::new(backend);
            let mut options = store.small_options(16 << 10, 4096);
            options.out_of_order_window = std::time::Duration::from_millis(window_ms as u64);
            let mut db = Db::open(options.clone()).unwrap();
            let mut model: Vec<Vec<Sample>> = vec![Vec::new(); 3];
            for op in ops.iter().cloned() {
                match op {
                    Op::Reopen => {
                        drop(db);
                        db = Db::open(options.clone()).unwrap();
                    }
                    Op::Append { series, ts_ms, value } => {
                        let name = format!("s{series}");
                        let id = db.resolve(&[("__name__", "m"), ("series", &name)]).unwrap();
                        let sample = Sample::new(ts_ms, value);
                        let report = append_pairs(&db, &[(id, sample)]).unwrap();
                        if window_ms == 0 {
                            check_in_order(&mut model[series], sample, &report)?;
                        } else {
                            model_append_late(&mut model[series], sample, &report, window_ms)?;
                        }
                    }
                }
            }
            // The budget (4 segments of 4 KiB) is far above what 600 samples need: nothing recycled.
            for (series, samples) in model.iter().enumerate() {
                let name = format!("s{series}");
                let found = db.select(&[Matcher::equal("series", name.as_str())], lo, lo + span).unwrap();
                let got: Vec<Sample> = found.first().map(|s| s.samples().collect()).unwrap_or_default();
                let want: Vec<Sample> =
                    samples.iter().copied().filter(|s| s.ts_ms >= lo && s.ts_ms <= lo + span).collect();
                prop_assert_eq!(&got, &want, "backend {:?}", backend);
                let mut each = Vec::new();
                if let Some(series) = found.first() {
                    series.for_each_sample(|s| each.push(s));
                }
                prop_assert_eq!(each, want, "for_each_sample, backend {:?}", backend);
            }
        }
        Ok(())
    }
}

both_backends! {
    /// With an out-of-order window, a late sample goes into its series' open chunk in its place in
    /// time: reads (whole, windows resuming at checkpoints, the latest) and a reopen see it there.
    /// Too late for the window, or older than a closed chunk, it is refused as out of order.
    fn late_samples_inside_the_window_are_stored_in_their_place(store) {
        let mut options = store.small_options(8 << 20, 1 << 20);
        options.out_of_order_window = std::time::Duration::from_secs(600);
        let db = Db::open(options.clone()).unwrap();
        let id = db.resolve(&[("__name__", "m"), ("job", "late")]).unwrap();
        let t0 = 1_000_000i64;
        let mut expected: Vec<Sample> = (0..100).map(|i| Sample::new(t0 + i * 15_000, i as f64)).collect();
        let report = append_pairs(&db, &expected.iter().map(|s| (id, *s)).collect::<Vec<_>>()).unwrap();
        assert_eq!(report.appended, 100);
        let newest = expected[99].ts_ms;
        let late = [
            Sample::new(newest - 7_500, 98.5),
            Sample::new(newest - 300_000 - 1, -1.0),
            Sample::new(newest - 600_000 + 7, 0.125),
            Sample::new(newest - 450_000 + 3, f64::from_bits(0x7ff0_0000_0000_0001)),
        ];
        let report = append_pairs(&db, &late.iter().map(|s| (id, *s)).collect::<Vec<_>>()).unwrap();
        assert_eq!((report.appended, report.rejections.len()), (4, 0), "{report:?}");
        assert_eq!(db.stats().late_samples_stored, 4);
        expected.extend(late);
        expected.sort_by_key(|s| s.ts_ms);
        let refused = append_pairs(
            &db,
            &[
                (id, Sample::new(newest - 600_001, 1.0)),
                (id, Sample::new(newest - 7_500, 98.5)),
                (id, Sample::new(newest - 15_000, 7.0)),
            ],
        )
        .unwrap();
        let reasons: Vec<_> = refused.rejections.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, [RejectReason::OutOfOrder, RejectReason::DuplicateTimestamp]);
        assert_eq!((refused.appended, refused.duplicates), (0, 1));
        // One entry, in no order: a new newest sample, late ones and a repeat among them.
        let entry = [
            Sample::new(newest + 15_000, 100.0),
            Sample::new(newest - 3_750, 99.25),
            Sample::new(newest - 11_250, 98.25),
            Sample::new(newest - 3_750, 99.25),
            Sample::new(newest - 100_001, 92.5),
        ];
        let report = db.append(&[SeriesSamples::id(id, &entry)]).unwrap();
        assert_eq!((report.appended, report.duplicates, report.rejections.len()), (4, 1, 0), "{report:?}");
        expected.extend([entry[0], entry[1], entry[2], entry[4]]);
        expected.sort_by_key(|s| s.ts_ms);
        let check = |db: &Db| {
            assert!(all_samples(db, "m").iter().zip(&expected).all(|(a, b)| a.bit_eq(b)));
            assert_eq!(all_samples(db, "m").len(), expected.len());
            for (lo, hi) in [(newest - 600_000, newest), (newest - 450_000, newest - 7_000), (newest - 8_000, newest - 7_500)] {
                let found = db.select(&[Matcher::equal("job", "late")], lo, hi).unwrap();
                let got: Vec<Sample> = found[0].samples().collect();
                let want: Vec<Sample> = expected.iter().copied().filter(|s| s.ts_ms >= lo && s.ts_ms <= hi).collect();
                assert!(got.len() == want.len() && got.iter().zip(&want).all(|(a, b)| a.bit_eq(b)), "[{lo}, {hi}]");
                let latest = db.select_latest(&[Matcher::equal("job", "late")], lo, hi, None).unwrap();
                assert!(latest[0].sample.bit_eq(want.last().unwrap()), "newest in [{lo}, {hi}]");
            }
            assert_eq!(db.stats().head_samples, expected.len() as u64);
        };
        check(&db);
        drop(db);
        let db = Db::open(options).unwrap();
        check(&db);

        // A series whose chunks close (random values: a few dozen samples a chunk). Once samples
        // have arrived late (since the store opened), a chunk cut keeps its newest samples open:
        // a sample a few steps late goes in right after a cut. One older than the series' closed
        // chunks (100 steps back) is refused, window or not.
        let id = db.resolve(&[("__name__", "closing")]).unwrap();
        let mut rng = Rng(5);
        let (mut ts, mut written, mut cuts) = (t0 + 2_000, 2u64, 0);
        let mut closing: Vec<Sample> = vec![Sample::new(t0 + 1_000, 1.0), Sample::new(t0 + 2_000, 2.0)];
        append_pairs(&db, &[(id, closing[1])]).unwrap();
        assert_eq!(append_pairs(&db, &[(id, closing[0])]).unwrap().appended, 1);
        while cuts < 3 {
            ts += 1_000;
            let before = db.stats().head_samples;
            let sample = Sample::new(ts, f64::from_bits(rng.next_u64()));
            written += append_pairs(&db, &[(id, sample)]).unwrap().appended;
            closing.push(sample);
            if db.stats().head_samples < before + 1 {
                cuts += 1;
                let late = Sample::new(ts - 3_500, f64::from_bits(rng.next_u64()));
                let report = append_pairs(&db, &[(id, late)]).unwrap();
                assert_eq!((report.appended, report.rejections.len()), (1, 0), "late by 3.5 steps right after a cut");
                closing.push(late);
                written += 1;
            }
        }
        assert!(closing.len() > 100, "{} samples for 3 cuts", closing.len());
        let report = append_pairs(&db, &[(id, Sample::new(ts - 100_500, 2.0)), (id, Sample::new(ts - 500, 4.0))]).unwrap();
        assert_eq!(report.rejections.iter().map(|r| (r.index, r.reason)).collect::<Vec<_>>(), [(0, RejectReason::OutOfOrder)]);
        assert_eq!(report.appended, 1, "inside the open chunk");
        closing.push(Sample::new(ts - 500, 4.0));
        closing.sort_by_key(|s| s.ts_ms);
        let got = all_samples(&db, "closing");
        assert!(got.len() == closing.len() && got.iter().zip(&closing).all(|(a, b)| a.bit_eq(b)));
        assert_eq!(written + 1, closing.len() as u64);
    }
}

both_backends! {
    /// A late sample that does not fit its full open chunk makes the chunk's oldest samples close
    /// into the ring: nothing is refused, reads and a reopen see every sample in order.
    fn a_late_sample_into_a_full_open_chunk_closes_its_oldest_part(store) {
        let mut options = store.small_options(8 << 20, 1 << 20);
        options.out_of_order_window = std::time::Duration::from_secs(3600);
        let db = Db::open(options.clone()).unwrap();
        let id = db.resolve(&[("__name__", "m")]).unwrap();
        let mut rng = Rng(17);
        let mut expected = Vec::new();
        let mut late_taken = 0;
        for i in 0..400i64 {
            // A counter written in order (a few bits a sample), and after every new sample a late
            // one with a random value (many bytes): late samples are the ones that overflow.
            let sample = Sample::new(1_000_000 + i * 1000, i as f64);
            expected.push(sample);
            append_pairs(&db, &[(id, sample)]).unwrap();
            let late = Sample::new(sample.ts_ms - 500, f64::from_bits(rng.next_u64() >> 2));
            let report = append_pairs(&db, &[(id, late)]).unwrap();
            assert_eq!((report.appended, report.rejections.len()), (1, 0), "late sample {i}: {report:?}");
            expected.push(late);
            late_taken += 1;
        }
        expected.sort_by_key(|s| s.ts_ms);
        let stats = db.stats();
        assert!(stats.head_samples < expected.len() as u64 / 4, "chunks were closed: {stats:?}");
        assert_eq!(late_taken, 400);
        let check = |db: &Db| {
            let got = all_samples(db, "m");
            assert!(got.len() == expected.len() && got.iter().zip(&expected).all(|(a, b)| a.bit_eq(b)));
            for (lo, hi) in [(1_000_000, 1_100_000), (1_150_500, 1_151_000), (1_390_000, 1_400_000)] {
                let found = db.select(&[Matcher::equal("__name__", "m")], lo, hi).unwrap();
                let got: Vec<Sample> = found[0].samples().collect();
                let want: Vec<Sample> = expected.iter().copied().filter(|s| s.ts_ms >= lo && s.ts_ms <= hi).collect();
                assert!(got.len() == want.len() && got.iter().zip(&want).all(|(a, b)| a.bit_eq(b)), "[{lo}, {hi}]");
            }
        };
        check(&db);
        drop(db);
        check(&Db::open(options).unwrap());
    }
}

both_backends! {
    /// Late samples of one entry go into the open chunk in one rewrite. When they outgrow it, its
    /// oldest samples close into the ring; when even the rest cannot be held (more late samples
    /// than the chunk had), the oldest that fit go in and the rest are refused as out of order.
    fn late_samples_that_outgrow_the_open_chunk_go_in_oldest_first(store) {
        let mut options = store.small_options(8 << 20, 1 << 20);
        options.out_of_order_window = std::time::Duration::from_secs(3600);
        let db = Db::open(options.clone()).unwrap();
        let mut rng = Rng(23);
        let mut expected = Vec::new();
        for (name, held_count, random_late) in [("closes", 1000i64, false), ("fills", 100, true)] {
            let id = db.resolve(&[("__name__", name)]).unwrap();
            let held: Vec<Sample> = (0..held_count).map(|i| Sample::new(1_000_000 + i * 1000, 1.0)).collect();
            assert_eq!(db.append(&[SeriesSamples::id(id, &held)]).unwrap().appended, held_count as u64);
            let mut late: Vec<Sample> = (0..held_count - 1)
                .map(|i| Sample::new(1_000_500 + i * 1000, if random_late { f64::from_bits(rng.next_u64() >> 2) } else { 1.0 }))
                .collect();
            late.reverse();
            let report = db.append(&[SeriesSamples::id(id, &late)]).unwrap();
            assert_eq!(report.appended + report.rejections.len() as u64, late.len() as u64);
            assert!(report.rejections.iter().all(|r| r.reason == RejectReason::OutOfOrder));
            if random_late {
                assert!(report.appended > 0 && report.appended < late.len() as u64, "{name}: {}", report.appended);
            } else {
                assert_eq!(report.appended, late.len() as u64, "{name}: all taken");
            }
            let first_refused = report.rejections.iter().map(|r| r.ts_ms).min().unwrap_or(i64::MAX);
            let mut want: Vec<Sample> = held.iter().chain(late.iter().filter(|s| s.ts_ms < first_refused)).copied().collect();
            want.sort_by_key(|s| s.ts_ms);
            assert_eq!(want.len() as u64, held_count as u64 + report.appended, "{name}: the stored ones are the oldest");
            let got = all_samples(&db, name);
            assert!(got.len() == want.len() && got.iter().zip(&want).all(|(a, b)| a.bit_eq(b)), "{name}");
            expected.push((name, want));
        }
        drop(db);
        let db = Db::open(options).unwrap();
        for (name, want) in expected {
            let got = all_samples(&db, name);
            assert!(got.len() == want.len() && got.iter().zip(&want).all(|(a, b)| a.bit_eq(b)), "{name} after a reopen");
        }
    }
}

both_backends! {
    /// Windows over the newest samples start decoding at an open-chunk checkpoint; every window,
    /// before and after a reopen (which rebuilds the checkpoints), must match a plain filter, and
    /// `select_latest` must give the window's newest sample (from memory or decoded).
    fn windows_decoded_from_checkpoints_match_the_samples(store) {
        let options = store.small_options(8 << 20, 1 << 20);
        let mut rng = Rng(11);
        let mut expected = Vec::new();
        let mut ts = 1_000_000i64;
        for i in 0..1_500 {
            ts += 15_000 + rng.below(5) as i64;
            let value = if i % 7 == 0 { f64::from_bits(rng.next_u64()) } else { (i / 3) as f64 * 0.25 };
            expected.push(Sample::new(ts, value));
        }
        let check = |db: &Db, upto: usize| {
            let newest = expected[upto - 1].ts_ms;
            for back in [0usize, 1, 5, 20, 31, 32, 33, 63, 64, 65, 100, 400] {
                let lo = expected[upto.saturating_sub(back + 1)].ts_ms - 1 + (back % 2) as i64;
                for hi in [newest, newest - 1, lo + 20_000] {
                    let found = db.select(&[Matcher::equal("job", "cp")], lo, hi).unwrap();
                    let got: Vec<Sample> = found.first().map(|s| s.samples().collect()).unwrap_or_default();
                    let want: Vec<Sample> =
                        expected[..upto].iter().copied().filter(|s| s.ts_ms >= lo && s.ts_ms <= hi).collect();
                    let mut each = Vec::new();
                    if let Some(series) = found.first() {
                        series.for_each_sample(|s| each.push(s));
                    }
                    assert!(
                        each.len() == want.len() && each.iter().zip(&want).all(|(a, b)| a.bit_eq(b)),
                        "for_each_sample: window ({lo}, {hi}] after {upto} samples"
                    );
                    assert!(
                        got.len() == want.len() && got.iter().zip(&want).all(|(a, b)| a.bit_eq(b)),
                        "window ({lo}, {hi}] after {upto} samples: {} samples, want {}",
                        got.len(),
                        want.len()
                    );
                    let latest = db.select_latest(&[Matcher::equal("job", "cp")], lo, hi, None).unwrap();
                    let latest: Vec<Sample> = latest.iter().map(|l| l.sample).collect();
                    assert!(
                        latest.len() == usize::from(!want.is_empty())
                            && latest.iter().zip(want.last()).all(|(a, b)| a.bit_eq(b)),
                        "newest sample in [{lo}, {hi}] after {upto} samples"
                    );
                }
            }
        };
        {
            let db = Db::open(options.clone()).unwrap();
            let id = db.resolve(&[("__name__", "m"), ("job", "cp")]).unwrap();
            for (n, sample) in expected[..1_000].iter().enumerate() {
                append_pairs(&db, &[(id, *sample)]).unwrap();
                if n % 37 == 0 || n > 990 {
                    check(&db, n + 1);
                }
            }
        }
        let db = Db::open(options).unwrap();
        check(&db, 1_000);
        let id = db.resolve(&[("__name__", "m"), ("job", "cp")]).unwrap();
        for (n, sample) in expected.iter().enumerate().skip(1_000) {
            append_pairs(&db, &[(id, *sample)]).unwrap();
            check(&db, n + 1);
        }
    }
}

both_backends! {
    /// Series answered from memory and series that need decoding come back together in label order.
    fn select_latest_mixes_memory_and_decoded_answers_in_label_order(store) {
        let db = Db::open(store.small_options(8 << 20, 1 << 20)).unwrap();
        let write = |pod: &str, samples: &[(i64, f64)]| {
            let id = db.resolve(&[("__name__", "m"), ("pod", pod)]).unwrap();
            let entries: Vec<_> = samples.iter().map(|&(ts, v)| (id, Sample::new(ts, v))).collect();
            append_pairs(&db, &entries).unwrap();
        };
        write("a", &[(100, 1.0), (140, 2.0)]); // newest inside the window: from memory
        write("b", &[(100, 3.0), (120, 4.0), (200, 5.0)]); // newest after it: decoded
        write("c", &[(10, 6.0), (300, 7.0)]); // nothing inside the window
        write("d", &[(130, 8.0), (150, stale_nan())]); // the newest is a staleness marker
        let keep = ["pod".to_string()];
        let latest = db.select_latest(&[Matcher::equal("__name__", "m")], 50, 150, Some(&keep)).unwrap();
        assert!(latest.iter().all(|l| l.labels.iter().all(|label| label.name == "pod")));
        let got: Vec<(String, i64, u64)> = latest
            .iter()
            .map(|l| (l.labels.get("pod").unwrap_or("").to_string(), l.sample.ts_ms, l.sample.value.to_bits()))
            .collect();
        let want = vec![
            ("a".to_string(), 140, 2.0f64.to_bits()),
            ("b".to_string(), 120, 4.0f64.to_bits()),
            ("d".to_string(), 150, stale_nan().to_bits()),
        ];
        assert_eq!(got, want);
    }
}

both_backends! {
    /// A planned selection copied in parts, on threads of their own, joins to exactly what
    /// `select_projected` returns: the same series in the same order with the same samples and
    /// projected labels, series without samples in the window left out wherever they fall.
    fn a_planned_selection_copied_in_parts_joins_to_the_whole_selection(store) {
        let db = Db::open(store.small_options(8 << 20, 1 << 20)).unwrap();
        for i in 0..300i64 {
            let pod = format!("p{i:03}");
            let id = db.resolve(&[("__name__", "m"), ("pod", pod.as_str()), ("zone", "a")]).unwrap();
            // Every seventh series has its samples after the window only.
            let first = if i % 7 == 0 { 100_000 } else { i * 10 };
            let entries: Vec<_> = (0..200).map(|k| (id, Sample::new(first + k * 250, (i * k) as f64))).collect();
            append_pairs(&db, &entries).unwrap();
        }
        let matchers = [Matcher::equal("__name__", "m")];
        let keep = ["pod".to_string()];
        let (mint, maxt) = (5_000, 40_000);
        let whole = db.select_projected(&matchers, mint, maxt, Some(&keep)).unwrap();
        let plan = db.plan_selection(&matchers, mint, maxt);
        assert_eq!(plan.len(), 300);
        for parts in [1usize, 2, 3, 7, 300, 301] {
            let len = plan.len().div_ceil(parts);
            let joined: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..parts)
                    .map(|p| {
                        let plan = &plan;
                        let keep = &keep;
                        scope.spawn(move || plan.select(p * len..(p + 1) * len, Some(keep)))
                    })
                    .collect();
                handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
            });
            assert_eq!(joined.len(), whole.len(), "{parts} parts");
            assert!(whole.len() < 300 && whole.len() > 200, "{} series in the window", whole.len());
            for (a, b) in joined.iter().zip(&whole) {
                assert_eq!(a.labels, b.labels, "{parts} parts");
                assert_eq!(a.labels.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["pod"]);
                let (sa, sb): (Vec<Sample>, Vec<Sample>) = (a.samples().collect(), b.samples().collect());
                assert!(!sa.is_empty() && sa.len() == sb.len() && sa.iter().zip(&sb).all(|(x, y)| x.bit_eq(y)));
            }
        }
        assert!(plan.select(400..500, None).is_empty(), "positions past the end are ignored");
        assert!(db.plan_selection(&[Matcher::equal("__name__", "none")], mint, maxt).is_empty());
    }
}

both_backends! {
    /// `series` decides from chunk bounds without copying chunks; on random data (gaps, a ring
    /// that recycles, windows between two samples of one chunk, a restart) it must name exactly
    /// the series `select` returns.
    fn series_names_what_select_returns(store) {
        let options = store.small_options(16 << 10, 4 << 10);
        let mut rng = Rng(23);
        let mut db = Db::open(options.clone()).unwrap();
        let pods: Vec<String> = (0..24).map(|i| format!("p{i:02}")).collect();
        let mut next_ts = vec![0i64; pods.len()];
        let mut newest = 0i64;
        let check = |db: &Db, rng: &mut Rng, newest: i64| {
            for round in 0..300 {
                let lo = rng.below(newest as u64 + 20_000) as i64 - 10_000;
                let width = match round % 3 {
                    0 => rng.below(400) as i64, // narrower than the gap between two samples
                    1 => rng.below(20_000) as i64,
                    _ => rng.below(newest as u64 + 1) as i64,
                };
                let matchers = match round % 4 {
                    0 => vec![Matcher::new(MatchOp::RegexMatch, "pod", "p0.*").unwrap()],
                    _ => vec![Matcher::equal("__name__", "m")],
                };
                let (lo, hi) = (lo, lo + width);
                let want: Vec<tsdb::Labels> =
                    db.select(&matchers, lo, hi).unwrap().into_iter().map(|s| s.labels).collect();
                assert_eq!(db.series(&matchers, lo, hi).unwrap(), want, "window [{lo}, {hi}]");
            }
        };
        for step in 0..6_000 {
            let pod = rng.below(pods.len() as u64) as usize;
            // Mostly 1 s apart, sometimes a long gap, so windows fall between samples.
            next_ts[pod] += if rng.below(20) == 0 { 30_000 + rng.below(60_000) as i64 } else { 1_000 };
            let value = if rng.below(2) == 0 { f64::from_bits(rng.next_u64() >> 2) } else { step as f64 };
            let labels = [("__name__", "m"), ("pod", pods[pod].as_str())];
            db.append(&[SeriesSamples::labels(&labels, &[Sample::new(next_ts[pod], value)])]).unwrap();
            newest = newest.max(next_ts[pod]);
            if step % 1_000 == 999 {
                check(&db, &mut rng, newest);
            }
            if step == 3_500 {
                drop(db);
                db = Db::open(options.clone()).unwrap();
            }
        }
        assert!(db.stats().samples < 6_000, "the ring recycled segments (stale chunk references)");
        check(&db, &mut rng, newest);
    }
}

/// Records what an observer is told.
#[derive(Default)]
struct Recorder(parking_lot::Mutex<Vec<(tsdb::Labels, i64, f64)>>);

impl tsdb::AppendObserver for Recorder {
    fn appended(&self, db: &Db, accepted: &[tsdb::AcceptedSample]) {
        let mut seen = self.0.lock();
        for a in accepted {
            let labels = db.series_labels(a.series).expect("an accepted sample's series is live");
            seen.push((labels, a.sample.ts_ms, a.sample.value));
        }
    }
}

both_backends! {
    fn the_observer_is_told_of_stored_samples_only(store) {
        let db = Db::open(store.options()).unwrap();
        let recorder = Arc::new(Recorder::default());
        assert!(db.set_append_observer(recorder.clone()).is_ok());
        assert!(db.set_append_observer(recorder.clone()).is_err(), "one observer only");
        let a = [("__name__", "m"), ("pod", "a")];
        let b = [("__name__", "m"), ("pod", "b")];
        let now = tsdb::now_ms();
        let first = [Sample::new(now, 1.0), Sample::new(now + 1, 2.0)];
        db.append(&[SeriesSamples::labels(&a, &first), SeriesSamples::labels(&b, &first[..1])]).unwrap();
        // An exact repeat, an out-of-order and a conflicting sample are not told; the new one is.
        let id_a = db.lookup(&a).unwrap();
        let second = [Sample::new(now + 1, 2.0), Sample::new(now + 2, 3.0)];
        let report = db
            .append(&[SeriesSamples::id(id_a, &second), SeriesSamples::labels(&b, &[Sample::new(now - 5, 9.0)])])
            .unwrap();
        assert_eq!((report.appended, report.duplicates, report.rejections.len()), (1, 1, 1));
        let seen: Vec<(String, i64, f64)> =
            recorder.0.lock().iter().map(|(l, ts, v)| (l.get("pod").unwrap_or_default().to_string(), *ts, *v)).collect();
        assert_eq!(
            seen,
            vec![
                ("a".to_string(), now, 1.0),
                ("a".to_string(), now + 1, 2.0),
                ("b".to_string(), now, 1.0),
                ("a".to_string(), now + 2, 3.0)
            ]
        );
        assert!(db.series_labels(tsdb::SeriesId(9_999)).is_none());
    }
}
