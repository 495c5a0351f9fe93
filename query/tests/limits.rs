//! The engine's limits, each crossed by the query that broke Ringtail before it had them: memory
//! counted as the query runs (`count_values` over a long range at a fine step, a `[1d:1ms]`
//! subquery, `label_replace` fan-out, a range query over many series at a 1 ms step) answered
//! with the sample-limit error; a timeout and a cancel flag that stop a running evaluation.
//! Assertions are on answers only, never on durations.

use query::{CancelHandle, Engine, EngineOptions, QueryError, Value};
use std::sync::Arc;
use std::time::Duration;
use tsdb::{Db, Options, Sample, SeriesSamples};

/// Prometheus's wording for its sample limit.
const TOO_MANY_SAMPLES: &str = "query processing would load too many samples into memory in query execution";

/// A store with `series` gauges `gauge{i="…"}`, one sample a second over `0..seconds`, every
/// value distinct (series `i` at second `k` is `i * 1e6 + k`).
fn store(series: usize, seconds: i64) -> (tempfile::TempDir, Arc<Db>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(Options::new(dir.path())).expect("open"));
    let names: Vec<String> = (0..series).map(|i| i.to_string()).collect();
    let labels: Vec<[(&str, &str); 2]> = names.iter().map(|i| [("__name__", "gauge"), ("i", i.as_str())]).collect();
    let samples: Vec<Vec<Sample>> =
        (0..series).map(|i| (0..seconds).map(|k| Sample::new(k * 1000, i as f64 * 1e6 + k as f64)).collect()).collect();
    let batch: Vec<SeriesSamples<'_>> = labels.iter().zip(&samples).map(|(l, s)| SeriesSamples::labels(l, s)).collect();
    db.append(&batch).expect("append");
    (dir, db)
}

fn engine(db: &Arc<Db>, max_samples: usize) -> Engine {
    Engine::new(db.clone(), EngineOptions { max_samples, ..EngineOptions::default() })
}

fn assert_too_many_samples(result: Result<Value, QueryError>) {
    match result {
        Err(e @ QueryError::TooManySamples(_)) => assert_eq!(e.to_string(), TOO_MANY_SAMPLES),
        other => panic!("expected the sample limit, got {other:?}"),
    }
}

/// Regression: `count_values` over 1 h at a 1 s step made a new series per distinct value and
/// step, reaching 10.9 GiB though every step's points stayed under the limit: the label sets it
/// creates now count too.
#[test]
fn count_values_over_a_long_range_at_a_fine_step_is_bounded() {
    let (_dir, db) = store(40, 600);
    let query = r#"count_values("v", gauge)"#;
    let Value::Matrix(all) = engine(&db, 50_000_000).range(query, 0, 599_000, 1000).expect("fits the default") else {
        panic!("a matrix")
    };
    assert_eq!(all.len(), 40 * 600, "a series per distinct value");
    // Fewer samples than the answer's series, but far more than the selected 24 000 samples.
    assert_too_many_samples(engine(&db, 100_000).range(query, 0, 599_000, 1000));
}

/// Regression: a `[1d:1ms]` subquery used 9.5 GiB. Its 86.4 million steps are refused before the
/// first one; a coarser one gathering more than the limit fails as it gathers.
#[test]
fn a_subquery_with_absurd_steps_or_too_many_points_is_refused() {
    let (_dir, db) = store(40, 600);
    let e = engine(&db, 50_000_000);
    match e.instant("max_over_time(gauge[1d:1ms])", 600_000) {
        Err(QueryError::Execution(m)) => assert!(m.contains("subquery of 86400000 steps"), "{m}"),
        other => panic!("expected the subquery refused, got {other:?}"),
    }
    match e.instant(r#"count_over_time(count_values("v", gauge)[1d:1ms])"#, 600_000) {
        Err(QueryError::Execution(m)) => assert!(m.contains("exceeds the query sample limit"), "{m}"),
        other => panic!("expected the subquery refused, got {other:?}"),
    }
    // 599 distinct steps of 40 new label sets each: 23 960 series, beyond a 100 000-sample budget.
    let gathering = r#"count(count_over_time(count_values("v", gauge)[10m:1s]))"#;
    assert_too_many_samples(engine(&db, 100_000).instant(gathering, 600_000));
    let Value::Vector(v) = e.instant(gathering, 600_000).expect("fits") else { panic!("a vector") };
    assert_eq!(v[0].value, 40.0 * 599.0);
}

/// A replacement repeating its group grows a label tenfold per call; nested calls would need
/// gigabytes for a 300-byte query.
#[test]
fn label_replace_fan_out_is_bounded() {
    let (_dir, db) = store(40, 600);
    let mut query = "gauge".to_string();
    for _ in 0..8 {
        query = format!(r#"label_replace({query}, "i", "$1$1$1$1$1$1$1$1$1$1", "i", "(.*)")"#);
    }
    assert_too_many_samples(engine(&db, 1_000_000).instant(&query, 600_000));
    let join = format!(r#"label_join(gauge, "j", ",", {})"#, vec![r#""__name__""#; 2000].join(","));
    assert_too_many_samples(engine(&db, 10_000).instant(&join, 600_000));
    let once = r#"label_replace(gauge, "i", "$1$1", "i", "(.*)")"#;
    let Value::Vector(v) = engine(&db, 100_000).instant(once, 600_000).expect("fits") else { panic!("a vector") };
    assert!(v.iter().any(|s| s.labels.get("i") == Some("1313")), "{v:?}");
}

/// Every series at a 1 ms step: the answer must hold at least series × steps points, so it is
/// refused from the selected data (before the first step is computed).
#[test]
fn a_range_query_over_many_series_at_a_1ms_step_is_refused() {
    let (_dir, db) = store(2_000, 2);
    let e = engine(&db, 1_000_000);
    assert_too_many_samples(e.range("gauge", 1_000, 12_000, 1));
    assert_too_many_samples(e.range("-abs(gauge) * 2", 1_000, 12_000, 1));
    // An aggregation's output is not estimated, but its steps still count.
    let Value::Matrix(m) = e.range("sum(gauge)", 1_000, 12_000, 1).expect("one series") else { panic!("a matrix") };
    assert_eq!(m[0].points.len(), 11_001);
}

/// A query that would take minutes stops at its timeout.
#[test]
fn the_timeout_stops_a_running_evaluation() {
    let (_dir, db) = store(1, 2);
    let options = EngineOptions { timeout: Duration::from_millis(20), ..EngineOptions::default() };
    let e = Engine::new(db, options);
    match e.instant("max_over_time(vector(1)[1d:2ms])", 0) {
        Err(e @ QueryError::Timeout(_)) => assert_eq!(e.to_string(), "query timed out in query execution"),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// The cancel flag stops an evaluation on another thread, which then returns.
#[test]
fn cancelling_stops_a_running_evaluation() {
    let (_dir, db) = store(1, 2);
    let cancel = CancelHandle::new();
    let e = Engine::new(db, EngineOptions::default()).with_cancel(cancel.clone());
    let running = std::thread::spawn(move || e.range("max_over_time(vector(1)[1d:2ms])", 0, 3_600_000, 1000));
    cancel.cancel();
    match running.join().expect("the evaluation thread returns") {
        Err(e @ QueryError::Cancelled(_)) => assert!(e.to_string().starts_with("query was canceled in"), "{e}"),
        other => panic!("expected a cancellation, got {other:?}"),
    }
    // A guard cancels when dropped (a request handler's future going away).
    let guarded = CancelHandle::new();
    drop(guarded.cancel_on_drop());
    assert!(guarded.is_cancelled());
}
