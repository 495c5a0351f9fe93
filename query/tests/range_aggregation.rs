//! Range queries of aggregations over plain selectors and over range functions are evaluated in
//! one pass over all steps (fused); their answer must be, step for step, what an instant query at
//! each step answers. The data has what the fused pass must get right: series that start late
//! and stop early, gaps longer than the lookback window, staleness markers, groups whose members
//! come and go, `offset` and `@`.

mod common;

use common::{by_step, range_as_instants_answer};
use query::{Engine, EngineOptions};
use std::collections::BTreeMap;
use std::sync::Arc;
use tsdb::{stale_nan, Db, Options, Sample, SeriesSamples};

const STEP_MS: i64 = 15_000;
const END_MS: i64 = 3_600_000;

/// 40 gauges over 4 jobs (`gauge{job, i}`) and as many counters, each with its own shape: a
/// sample every 10-40 s, a late start, an early end with or without a staleness marker, a gap of
/// 8 minutes (past the 5-minute lookback).
fn store() -> (tempfile::TempDir, Arc<Db>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(Options::new(dir.path())).expect("open"));
    let ids: Vec<(String, String)> = (0..40).map(|i| (format!("job{}", i % 4), i.to_string())).collect();
    let mut labels = Vec::new();
    let mut samples = Vec::new();
    for (n, (job, i)) in ids.iter().enumerate() {
        let interval = 10_000 + (n as i64 % 4) * 10_000;
        let first = (n as i64 % 5) * 300_000;
        let last = END_MS - (n as i64 % 3) * 700_000;
        let gap = (1_200_000 + n as i64 * 20_000, 1_200_000 + n as i64 * 20_000 + 480_000);
        let mut points: Vec<Sample> = (0..)
            .map(|k| first + k * interval)
            .take_while(|&t| t <= last)
            .filter(|&t| n % 2 == 0 || t < gap.0 || t >= gap.1)
            .map(|t| Sample::new(t, (n as f64 + 1.0) * 1000.0 + (t / 1000) as f64 * 0.5))
            .collect();
        if n % 3 == 1 {
            let marker_at = points.last().map_or(0, |p| p.ts_ms) + 5_000;
            points.push(Sample::new(marker_at, stale_nan()));
        }
        for name in ["gauge", "requests_total"] {
            labels.push([("__name__", name), ("job", job.as_str()), ("i", i.as_str())]);
            samples.push(points.clone());
        }
    }
    let batch: Vec<SeriesSamples<'_>> = labels.iter().zip(&samples).map(|(l, s)| SeriesSamples::labels(l, s)).collect();
    db.append(&batch).expect("append");
    (dir, db)
}

#[test]
fn fused_range_aggregations_answer_what_instant_queries_answer_at_every_step() {
    let (_dir, db) = store();
    let engine = Engine::new(db, EngineOptions::default());
    let queries = [
        "sum by (job) (gauge)",
        "avg by (job) (gauge)",
        "avg by (i) (gauge)",
        "min without (i) (gauge)",
        "max(gauge)",
        "count by (job) (gauge)",
        "stddev by (job) (gauge)",
        "group by (job) (gauge)",
        "sum by (job) (gauge offset 7m)",
        "avg by (job) (gauge @ 1800)",
        "sum by (job) (rate(requests_total[2m]))",
        "max by (job) (max_over_time(gauge[90s]))",
        "sum by (job) (gauge) / count by (job) (gauge)",
        // Subqueries ask for the same aggregation at the same steps again and again.
        "max_over_time(sum by (job) (gauge)[2m:15s])",
        "avg_over_time(avg by (job) (rate(requests_total[1m]))[1m:15s])",
    ];
    for query in queries {
        range_as_instants_answer(&engine, query, END_MS, STEP_MS);
    }
}

/// With tens of thousands of groups the fused fold takes fewer steps at a time (13 here, down to
/// one with more), and its steps are split over the cores; the answer is still, step for step,
/// what instant queries answer.
#[test]
fn fused_range_aggregations_over_many_groups_answer_what_instant_queries_answer() {
    const SERIES: usize = 20_000;
    const END_MS: i64 = 600_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(Options::new(dir.path())).expect("open"));
    let names: Vec<String> = (0..SERIES).map(|i| i.to_string()).collect();
    let labels: Vec<[(&str, &str); 3]> = names
        .iter()
        .enumerate()
        .map(|(i, n)| [("__name__", "gauge"), ("i", n.as_str()), ("odd", ["0", "1"][i % 2])])
        .collect();
    // Series come and go: each has samples over a stretch of its own.
    let samples: Vec<Vec<Sample>> = (0..SERIES as i64)
        .map(|i| {
            let first = (i % 7) * 60_000;
            (0..5).map(|k| Sample::new(first + k * 45_000, (i * 3 + k) as f64 * 0.25)).collect()
        })
        .collect();
    let batch: Vec<SeriesSamples<'_>> = labels.iter().zip(&samples).map(|(l, s)| SeriesSamples::labels(l, s)).collect();
    db.append(&batch).expect("append");
    let engine = Engine::new(db, EngineOptions::default());
    // Large enough that a fold's steps are split over the cores where there are several: as the
    // whole query (each group's points gathered by the fold) and nested in another operator (a
    // vector per step), over selectors and over a range function's step table.
    let queries = [
        ("sum by (i) (gauge)", SERIES),
        ("avg without (odd) (gauge)", SERIES),
        ("count by (odd) (gauge)", 2),
        ("max by (i) (max_over_time(gauge[1m]))", SERIES),
        ("sum by (odd) (gauge) * 2", 2),
        ("-avg by (odd) (delta(gauge[2m]))", 2),
    ];
    for (query, groups) in queries {
        let range = by_step(engine.range(query, 0, END_MS, STEP_MS).unwrap_or_else(|e| panic!("{query}: {e}")));
        let mut stepwise = BTreeMap::new();
        for t in (0..=END_MS).step_by(STEP_MS as usize) {
            stepwise.extend(by_step(engine.instant(query, t).unwrap_or_else(|e| panic!("{query} at {t}: {e}"))));
        }
        assert!(range.len() > groups, "{query}: {} points prove too little", range.len());
        assert_eq!(range.len(), stepwise.len(), "{query}: points");
        for (key, want) in &stepwise {
            let got = range.get(key).unwrap_or_else(|| panic!("{query}: no point for {key:?}"));
            assert!(got.to_bits() == want.to_bits(), "{query} at {key:?}: range {got}, instant {want}");
        }
    }
}
