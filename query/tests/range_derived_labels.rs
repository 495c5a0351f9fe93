//! Range queries keep the label sets they derive from each series for the whole query: without
//! the metric name (`rate(x[1m])`, `-x`, `abs(x)`), without `le` (`histogram_quantile`), and
//! relabelled (`label_replace`, `label_join`). The answer must be, step for step, what instant
//! queries answer; series that become equal merge where they do not overlap in time, and a step
//! where two of them meet fails the query as an instant query there fails.

mod common;

use common::range_as_instants_answer;
use query::{Engine, EngineOptions, QueryError, Value};
use std::sync::Arc;
use tsdb::{Db, Options, Sample, SeriesSamples};

const STEP_MS: i64 = 15_000;
const END_MS: i64 = 3_600_000;
const SERIES: usize = 20;

/// Per `i`: `early_total{job="apart"}` for the first 25 minutes and `late_total{job="apart"}`
/// from minute 35 (never in one window); `left_total{job="overlap"}` and
/// `right_total{job="overlap"}` all along; `gauge{job="plain"}` all along; the buckets
/// `latency_bucket{job="hist", le}` of one histogram all along. A sample every 15 s.
fn store() -> (tempfile::TempDir, Arc<Db>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(Options::new(dir.path())).expect("open"));
    let ids: Vec<String> = (0..SERIES).map(|i| i.to_string()).collect();
    let spans = [
        ("early_total", "apart", 0, 1_500_000),
        ("late_total", "apart", 2_100_000, END_MS),
        ("left_total", "overlap", 0, END_MS),
        ("right_total", "overlap", 0, END_MS),
        ("gauge", "plain", 0, END_MS),
    ];
    let mut labels = Vec::new();
    let mut samples = Vec::new();
    let mut bucket_labels = Vec::new();
    let mut bucket_samples = Vec::new();
    for (n, i) in ids.iter().enumerate() {
        for (b, le) in ["0.1", "1", "+Inf"].into_iter().enumerate() {
            bucket_labels.push([("__name__", "latency_bucket"), ("i", i.as_str()), ("job", "hist"), ("le", le)]);
            let per_step = (n + 1) * (b + 1);
            bucket_samples.push(
                (0..=END_MS)
                    .step_by(STEP_MS as usize)
                    .map(|t| Sample::new(t, (per_step as i64 * t / STEP_MS) as f64))
                    .collect::<Vec<_>>(),
            );
        }
        for (name, job, first, last) in spans {
            labels.push([("__name__", name), ("i", i.as_str()), ("job", job)]);
            let points: Vec<Sample> = (first..=last)
                .step_by(STEP_MS as usize)
                .map(|t| Sample::new(t, (n as f64 + 1.0) * (t / 1000) as f64))
                .collect();
            samples.push(points);
        }
    }
    let batch: Vec<SeriesSamples<'_>> = labels.iter().zip(&samples).map(|(l, s)| SeriesSamples::labels(l, s)).collect();
    db.append(&batch).expect("append");
    let buckets: Vec<SeriesSamples<'_>> =
        bucket_labels.iter().zip(&bucket_samples).map(|(l, s)| SeriesSamples::labels(l, s)).collect();
    db.append(&buckets).expect("append buckets");
    (dir, db)
}

#[test]
fn range_queries_that_drop_names_answer_what_instant_queries_answer() {
    let (_dir, db) = store();
    let engine = Engine::new(db, EngineOptions::default());
    for (query, want_series) in [
        ("rate({job=\"apart\"}[1m])", SERIES),
        ("-{job=\"apart\"}", SERIES),
        ("abs({job=\"plain\"})", SERIES),
        ("rate({job=\"apart\"}[1m]) or -{job=\"plain\"}", 2 * SERIES),
        ("rate(early_total[1m]) or label_replace(-gauge, \"job\", \"apart\", \"\", \"\")", SERIES),
        ("rate(left_total[1m]) or on(i) -gauge", 2 * SERIES),
        // Subqueries gather their inner steps' series as the range query gathers its steps.
        ("max_over_time(rate({job=\"apart\"}[1m])[5m:1m])", SERIES),
        ("min_over_time((-gauge)[2m:30s])", SERIES),
    ] {
        let series = range_as_instants_answer(&engine, query, END_MS, STEP_MS);
        assert_eq!(series.len(), want_series, "{query}: series");
        assert!(series.iter().all(|s| s.labels.get("__name__").is_none()), "{query}: a name was kept");
    }
}

#[test]
fn histograms_and_relabelled_series_answer_what_instant_queries_answer() {
    let (_dir, db) = store();
    let engine = Engine::new(db, EngineOptions::default());
    for (query, want_series) in [
        ("histogram_quantile(0.9, rate(latency_bucket[1m]))", SERIES),
        ("histogram_quantile(0.5, latency_bucket)", SERIES),
        ("label_replace(rate({job=\"apart\"}[1m]), \"job\", \"moved\", \"job\", \"apart\")", SERIES),
        ("label_replace({job=\"plain\"}, \"i\", \"$1-x\", \"i\", \"(1.*)\")", SERIES),
        ("label_replace(-gauge, \"__name__\", \"renamed\", \"\", \"\")", SERIES),
        ("label_join({job=\"plain\"}, \"x\", \"-\", \"job\", \"i\")", SERIES),
        ("label_join(-gauge, \"__name__\", \"\", \"job\")", SERIES),
        ("histogram_quantile(0.9, label_replace(rate(latency_bucket{i=\"1\"}[1m]), \"i\", \"one\", \"\", \"\"))", 1),
    ] {
        let series = range_as_instants_answer(&engine, query, END_MS, STEP_MS);
        assert_eq!(series.len(), want_series, "{query}: series");
    }
}

/// Selectors, and vectors compared with a number, keep names and never need the duplicate check.
#[test]
fn selectors_and_comparisons_answer_what_instant_queries_answer() {
    let (_dir, db) = store();
    let engine = Engine::new(db, EngineOptions::default());
    for (query, want_series) in [
        ("{job=\"apart\"}", 2 * SERIES),
        ("{job=~\"apart|overlap\"} > 1000", 4 * SERIES),
        ("(5000 < bool gauge)", SERIES),
    ] {
        let series = range_as_instants_answer(&engine, query, END_MS, STEP_MS);
        assert_eq!(series.len(), want_series, "{query}: series");
    }
}

#[test]
fn series_meeting_once_their_names_are_dropped_fail_the_range_query() {
    let (_dir, db) = store();
    let engine = Engine::new(db, EngineOptions::default());
    for query in [
        "rate({job=\"overlap\"}[1m])",
        "-{job=\"overlap\"}",
        "rate({job=~\"apart|overlap\"}[1m])",
        "label_replace({job=\"overlap\"}, \"__name__\", \"same\", \"\", \"\")",
    ] {
        assert!(engine.instant(query, 600_000).is_err(), "{query}: the instant query fails too");
        match engine.range(query, 0, END_MS, STEP_MS) {
            Err(QueryError::Execution(message)) => {
                assert!(message.contains("same labelset"), "{query}: {message}")
            }
            other => panic!("{query}: {other:?}"),
        }
    }
    // They meet only at steps in the range: a range over the others succeeds.
    let apart = engine.range("rate({job=\"apart\"}[1m])", 0, END_MS, STEP_MS).expect("apart");
    assert!(matches!(apart, Value::Matrix(ref s) if s.len() == SERIES));
}

/// A `label_replace` or `label_join` that makes two series of a step equal fails the query, even
/// inside an expression that would merge them, as in Prometheus ("vector cannot contain metrics
/// with the same labelset"). Relabelled series that never meet in one step answer as instant
/// queries do.
#[test]
fn relabelling_that_makes_series_meet_fails_even_inside_another_expression() {
    let (_dir, db) = store();
    let engine = Engine::new(db, EngineOptions::default());
    for query in [
        // Every series relabelled (a range query keeps each result: equal ones share one `Arc`).
        "sum(label_replace(gauge, \"i\", \"all\", \"\", \"\"))",
        "histogram_quantile(0.9, label_replace(rate(latency_bucket[1m]), \"i\", \"all\", \"\", \"\"))",
        "count(label_join(gauge, \"i\", \"\", \"job\"))",
        // One series left as it was, another relabelled into it.
        "sum(label_replace(gauge, \"i\", \"0\", \"i\", \"1\"))",
        "max(label_join(gauge, \"i\", \"\", \"job\", \"j\") or label_replace(gauge, \"i\", \"plain\", \"\", \"\"))",
    ] {
        match engine.instant(query, 600_000) {
            Err(QueryError::Execution(message)) => assert!(message.contains("same labelset"), "{query}: {message}"),
            other => panic!("{query}: instant: {other:?}"),
        }
        // Over the hour, and over one step (where they meet at the step each result is made).
        for (start_ms, end_ms) in [(0, END_MS), (600_000, 600_000)] {
            match engine.range(query, start_ms, end_ms, STEP_MS) {
                Err(QueryError::Execution(message)) => {
                    assert!(message.contains("same labelset"), "{query}: {message}")
                }
                other => panic!("{query}: range from {start_ms}: {other:?}"),
            }
        }
    }
    for (query, want_series) in [
        // `early_total` and `late_total` become one name but are never in one step.
        ("sum by (i) (label_replace({job=\"apart\"}, \"__name__\", \"both\", \"\", \"\"))", SERIES),
        ("sum(label_replace(gauge, \"k\", \"$1\", \"i\", \"(.*)\"))", 1),
    ] {
        let series = range_as_instants_answer(&engine, query, END_MS, STEP_MS);
        assert_eq!(series.len(), want_series, "{query}: series");
    }
}
