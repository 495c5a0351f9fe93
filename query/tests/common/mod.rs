//! What the range-query tests share: an answer as points, and the check that a range query
//! answers, step for step, what instant queries answer.

use query::{Engine, RangeSeries, Value};
use std::collections::BTreeMap;

/// `(labels as text, ts) → value` of an answer.
pub fn by_step(value: Value) -> BTreeMap<(String, i64), f64> {
    let mut out = BTreeMap::new();
    match value {
        Value::Matrix(series) => {
            for s in series {
                for (ts, v) in s.points {
                    out.insert((format!("{:?}", s.labels), ts), v);
                }
            }
        }
        Value::Vector(samples) => {
            for s in samples {
                out.insert((format!("{:?}", s.labels), s.ts_ms), s.value);
            }
        }
        other => panic!("not a vector or matrix: {other:?}"),
    }
    out
}

/// `query` as a range query over `0..=end_ms` at `step_ms`, after checking it is not empty and is,
/// point for point and bit for bit, what instant queries at each step answer.
pub fn range_as_instants_answer(engine: &Engine, query: &str, end_ms: i64, step_ms: i64) -> Vec<RangeSeries> {
    let range = engine.range(query, 0, end_ms, step_ms).unwrap_or_else(|e| panic!("{query}: {e}"));
    let Value::Matrix(series) = range.clone() else { panic!("{query}: not a matrix") };
    let range = by_step(range);
    let mut stepwise = BTreeMap::new();
    for t in (0..=end_ms).step_by(step_ms as usize) {
        let instant = engine.instant(query, t).unwrap_or_else(|e| panic!("{query} at {t}: {e}"));
        stepwise.extend(by_step(instant));
    }
    assert!(!range.is_empty(), "{query}: an empty answer proves nothing");
    assert_eq!(range.len(), stepwise.len(), "{query}: points");
    for (key, want) in &stepwise {
        let got = range.get(key).unwrap_or_else(|| panic!("{query}: no point for {key:?}"));
        assert!(got.to_bits() == want.to_bits(), "{query} at {key:?}: range {got}, instant {want}");
    }
    series
}
