//! `run` executes a test script: it loads series into a fresh [`tsdb::Db`], decides for each eval
//! whether it is inside Ringtail's subset, runs it through the [`Engine`] (instant evals also as a
//! range query) and compares the output with the expected results.

use super::features;
use super::script::{
    expand_values, parse_eval_line, parse_expectations, parse_series_labels, split_series_line, EvalCommand,
    Expectations, Matcher,
};
use super::{EvalResult, Outcome, RunOptions, ScriptError};
use crate::ast::Expr;
use crate::{Engine, QueryError, QueryOutput, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tsdb::{Labels, Sample};

/// A loaded series as the subset decision sees it.
struct LoadedSeries {
    pairs: Vec<(String, String)>,
    histogram: bool,
    start_timestamps: bool,
}

/// A store for one stretch of a script (until `clear`); the directory lives as long as the engine.
struct Store {
    _dir: tempfile::TempDir,
    engine: Engine,
}

fn fresh_store(options: &RunOptions) -> Result<Store, ScriptError> {
    let dir = tempfile::tempdir().map_err(ScriptError::TempDir)?;
    let mut db_options = tsdb::Options::new(dir.path());
    db_options.storage_size_bytes = options.storage_size_bytes;
    let db = Arc::new(tsdb::Db::open(db_options)?);
    Ok(Store { _dir: dir, engine: Engine::new(db, options.engine.clone()) })
}

/// Runs a script's text; `name` is used in eval ids.
pub fn run_script(name: &str, text: &str, options: &RunOptions) -> Result<Vec<EvalResult>, ScriptError> {
    let lines: Vec<&str> = text.split('\n').map(|l| if l.trim().starts_with('#') { "" } else { l.trim() }).collect();
    let syntax = |line: usize, message: String| ScriptError::Syntax { file: name.to_string(), line: line + 1, message };
    let mut store = fresh_store(options)?;
    let mut loaded: Vec<LoadedSeries> = Vec::new();
    let mut shadow: BTreeMap<Labels, BTreeMap<i64, f64>> = BTreeMap::new();
    let mut results = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let word = line.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
        if line.is_empty() {
            i += 1;
        } else if word == "clear" {
            store = fresh_store(options)?;
            loaded.clear();
            shadow.clear();
            i += 1;
        } else if word.starts_with("load") {
            let start = i;
            let nhcb = word == "load_with_nhcb";
            let interval = line.split_whitespace().nth(1).unwrap_or("");
            let interval_ms = crate::parse_duration_ms(interval)
                .ok_or_else(|| syntax(start, format!("bad load interval {interval:?}")))?;
            i += 1;
            // Later lines win over earlier ones at the same timestamp, as in Prometheus's loader.
            let mut block: BTreeMap<Labels, BTreeMap<i64, f64>> = BTreeMap::new();
            while i < lines.len() && !lines[i].is_empty() {
                let (head, values, st) =
                    split_series_line(lines[i]).ok_or_else(|| syntax(i, "bad series line".into()))?;
                let labels = parse_series_labels(head).map_err(|m| syntax(i, m))?;
                let pairs: Vec<(String, String)> = labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
                let histogram = values.contains("{{");
                if nhcb && !st {
                    if let Some(base) = nhcb_base(&pairs) {
                        loaded.push(LoadedSeries { pairs: base, histogram: true, start_timestamps: false });
                    }
                }
                loaded.push(LoadedSeries { pairs, histogram, start_timestamps: st });
                if !histogram && !st && labels.get(tsdb::METRIC_NAME).is_some() {
                    let points = expand_values(values).map_err(|m| syntax(i, m))?;
                    let entry = block.entry(labels).or_default();
                    for (k, v) in points.into_iter().enumerate() {
                        if let Some(v) = v {
                            entry.insert(k as i64 * interval_ms, v);
                        }
                    }
                }
                i += 1;
            }
            let appends_only = block.iter().all(|(labels, points)| {
                let last = shadow.get(labels).and_then(|p| p.keys().next_back().copied());
                match (last, points.keys().next()) {
                    (Some(last), Some(first)) => *first > last,
                    _ => true,
                }
            });
            for (labels, points) in &block {
                shadow.entry(labels.clone()).or_default().extend(points.iter().map(|(t, v)| (*t, *v)));
            }
            if appends_only {
                append_all(&store, &block)?;
            } else {
                store = fresh_store(options)?;
                append_all(&store, &shadow)?;
            }
        } else if word.starts_with("eval") {
            let start = i;
            i += 1;
            let mut body = Vec::new();
            while i < lines.len() && !lines[i].is_empty() {
                body.push(lines[i]);
                i += 1;
                if body
                    .last()
                    .is_some_and(|b| b.starts_with("expected_fail_message") || b.starts_with("expected_fail_regexp"))
                {
                    break;
                }
            }
            let id = format!("{name}:{}", start + 1);
            results.push(run_eval(&store.engine, &loaded, id, line, &body));
        } else {
            i += 1;
        }
    }
    Ok(results)
}

fn append_all(store: &Store, data: &BTreeMap<Labels, BTreeMap<i64, f64>>) -> Result<(), ScriptError> {
    let pairs: Vec<Vec<(&str, &str)>> =
        data.keys().map(|l| l.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect()).collect();
    let samples: Vec<Vec<Sample>> =
        data.values().map(|p| p.iter().map(|(t, v)| Sample::new(*t, *v)).collect()).collect();
    let batch: Vec<tsdb::SeriesSamples<'_>> =
        pairs.iter().zip(&samples).map(|(l, s)| tsdb::SeriesSamples::labels(l, s)).collect();
    store.engine.db().append(&batch)?;
    Ok(())
}

/// For `load_with_nhcb`: the native histogram a classic `_bucket`/`_count`/`_sum` series becomes.
fn nhcb_base(pairs: &[(String, String)]) -> Option<Vec<(String, String)>> {
    let name = pairs.iter().find(|(n, _)| n == "__name__").map(|(_, v)| v.as_str())?;
    for suffix in ["_bucket", "_count", "_sum"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if suffix == "_bucket" && !pairs.iter().any(|(n, _)| n == "le") {
                continue;
            }
            let mut out: Vec<(String, String)> =
                pairs.iter().filter(|(n, _)| n != "le" && n != "__name__").cloned().collect();
            out.push(("__name__".into(), base.to_string()));
            return Some(out);
        }
    }
    None
}

fn run_eval(engine: &Engine, loaded: &[LoadedSeries], id: String, line: &str, body: &[&str]) -> EvalResult {
    let Some(cmd) = parse_eval_line(line) else {
        return EvalResult {
            id,
            query: line.to_string(),
            outcome: Outcome::Skipped(vec!["unparsable eval line".into()]),
        };
    };
    let query = cmd.query.to_string();
    let (mut feats, selectors) = features::analyse(cmd.query);
    let touched: Vec<&LoadedSeries> =
        loaded.iter().filter(|s| selectors.iter().any(|m| features::matches(&s.pairs, m))).collect();
    if body.iter().any(|b| b.contains("{{")) || touched.iter().any(|s| s.histogram) {
        feats.insert("native histograms".into());
    }
    if touched.iter().any(|s| s.start_timestamps) {
        feats.insert("start timestamps".into());
    }
    let outside: Vec<String> =
        feats.iter().filter(|f| !features::in_project(f)).map(|f| features::reason_label(f)).collect();
    if !outside.is_empty() {
        return EvalResult { id, query, outcome: Outcome::Skipped(outside) };
    }
    let outcome = match parse_expectations(cmd.legacy, body) {
        Ok(expect) => match check_eval(engine, &cmd, &expect) {
            Ok(()) => Outcome::Passed,
            Err(message) => Outcome::Failed(message),
        },
        Err(message) => Outcome::Failed(format!("bad eval block: {message}")),
    };
    EvalResult { id, query, outcome }
}

fn evaluate(engine: &Engine, query: &str, start: i64, end: i64, step: i64) -> Result<QueryOutput, QueryError> {
    let expr: Expr = crate::parse(query)?;
    if step == 0 {
        engine.instant_expr(query, &expr, start, &[])
    } else {
        engine.range_expr(query, &expr, start, end, step, &[])
    }
}

fn check_eval(engine: &Engine, cmd: &EvalCommand<'_>, expect: &Expectations) -> Result<(), String> {
    let result = evaluate(engine, cmd.query, cmd.start_ms, cmd.end_ms, cmd.step_ms);
    if expect.fail_any {
        return match result {
            Ok(_) => Err("expected the query to fail, it succeeded".into()),
            Err(e) => {
                let message = e.message();
                match &expect.fail {
                    Some(m) if !m.matches(&message) => {
                        Err(format!("error {message:?} does not match the expected one"))
                    }
                    _ => Ok(()),
                }
            }
        };
    }
    let output = result.map_err(|e| format!("query failed: {}", e.message()))?;
    check_annotations(&output.annotations.warnings, &expect.warn, expect.no_warn, "warn")?;
    check_annotations(&output.annotations.infos, &expect.info, expect.no_info, "info")?;
    compare(&output.value, expect, cmd)?;
    let time_dependent = ["start()", "end()", "range()", "step()"].iter().any(|f| cmd.query.contains(f));
    if cmd.step_ms == 0
        && !expect.ordered
        && expect.range_vector.is_none()
        && expect.string.is_none()
        && !time_dependent
    {
        let t = cmd.start_ms;
        let ranged = evaluate(engine, cmd.query, t - 60_000, t + 60_000, 60_000)
            .map_err(|e| format!("as a range query: query failed: {}", e.message()))?;
        let Value::Matrix(series) = ranged.value else { return Err("as a range query: no matrix".into()) };
        let at_t: Vec<crate::InstantSample> = series
            .into_iter()
            .filter_map(|s| {
                s.points.iter().find(|p| p.0 == t).map(|p| crate::InstantSample {
                    labels: s.labels.clone(),
                    ts_ms: t,
                    value: p.1,
                })
            })
            .collect();
        let as_value = match (&output.value, at_t.first()) {
            (Value::Scalar { .. }, Some(first)) => Value::Scalar { ts_ms: t, value: first.value },
            _ => Value::Vector(at_t),
        };
        compare(&as_value, expect, cmd).map_err(|m| format!("as a range query: {m}"))?;
    }
    Ok(())
}

fn check_annotations(got: &[String], want: &[Option<Matcher>], none: bool, kind: &str) -> Result<(), String> {
    if none && !got.is_empty() {
        return Err(format!("expected no {kind} annotation, got {got:?}"));
    }
    if want.is_empty() {
        return Ok(());
    }
    if got.is_empty() {
        return Err(format!("expected a {kind} annotation, got none"));
    }
    for w in want.iter().flatten() {
        if !got.iter().any(|g| w.matches(g)) {
            return Err(format!("no {kind} annotation matches {w:?}; got {got:?}"));
        }
    }
    let specific: Vec<&Matcher> = want.iter().flatten().collect();
    if !specific.is_empty() {
        if let Some(extra) = got.iter().find(|g| !specific.iter().any(|m| m.matches(g))) {
            return Err(format!("unexpected {kind} annotation {extra:?}"));
        }
    }
    Ok(())
}

/// Float comparison of the upstream harness: NaN equals NaN, otherwise relative 1e-6.
fn values_equal(want: f64, got: f64) -> bool {
    if tsdb::is_stale_nan(want) || tsdb::is_stale_nan(got) {
        return tsdb::is_stale_nan(want) && tsdb::is_stale_nan(got);
    }
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want == got {
        return true;
    }
    let abs_sum = want.abs() + got.abs();
    let diff = (want - got).abs();
    if want == 0.0 || got == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < 1e-6 * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < 1e-6
}

fn compare(value: &Value, expect: &Expectations, cmd: &EvalCommand<'_>) -> Result<(), String> {
    if let Some(s) = &expect.string {
        return match value {
            Value::String { value, .. } if value == s => Ok(()),
            other => Err(format!("expected string {s:?}, got {other:?}")),
        };
    }
    if let Some(want) = expect.scalar {
        return match value {
            Value::Scalar { value, .. } if values_equal(want, *value) => Ok(()),
            other => Err(format!("expected scalar {want}, got {}", short(other))),
        };
    }
    match value {
        Value::Scalar { value, .. } => Err(format!("expected a vector, got scalar {value}")),
        Value::String { value, .. } => Err(format!("expected a vector, got string {value:?}")),
        Value::Vector(samples) => {
            if cmd.step_ms != 0 {
                return Err("range query returned a vector".into());
            }
            if samples.len() != expect.series.len() {
                return Err(format!(
                    "expected {} series, got {}: {}",
                    expect.series.len(),
                    samples.len(),
                    short(value)
                ));
            }
            for (k, (labels, values)) in expect.series.iter().enumerate() {
                let want = values.first().copied().flatten().unwrap_or(f64::NAN);
                let found = if expect.ordered {
                    Some(&samples[k]).filter(|s| s.labels == *labels)
                } else {
                    samples.iter().find(|s| s.labels == *labels)
                };
                match found {
                    Some(s) if values_equal(want, s.value) => {}
                    Some(s) => return Err(format!("{labels}: expected {want}, got {}", s.value)),
                    None => return Err(format!("expected series {labels} not in result {}", short(value))),
                }
            }
            Ok(())
        }
        Value::Matrix(series) => {
            let (start, step) = match (expect.range_vector, cmd.step_ms) {
                (Some((from, _, step)), _) => (from, step),
                (None, 0) => return Err(format!("instant query returned a matrix: {}", short(value))),
                (None, step) => (cmd.start_ms, step),
            };
            if series.len() != expect.series.len() {
                return Err(format!("expected {} series, got {}: {}", expect.series.len(), series.len(), short(value)));
            }
            let got_labels: BTreeSet<&Labels> = series.iter().map(|s| &s.labels).collect();
            for (labels, values) in &expect.series {
                if !got_labels.contains(labels) {
                    return Err(format!("expected series {labels} not in result {}", short(value)));
                }
                let Some(s) = series.iter().find(|s| s.labels == *labels) else { continue };
                let want: Vec<(i64, f64)> =
                    values.iter().enumerate().filter_map(|(k, v)| v.map(|v| (start + k as i64 * step, v))).collect();
                if want.len() != s.points.len()
                    || want.iter().zip(&s.points).any(|(w, g)| w.0 != g.0 || !values_equal(w.1, g.1))
                {
                    return Err(format!("{labels}: expected points {want:?}, got {:?}", s.points));
                }
            }
            Ok(())
        }
    }
}

fn short(value: &Value) -> String {
    let text = match value {
        Value::Vector(v) => v.iter().map(|s| format!("{} {}", s.labels, s.value)).collect::<Vec<_>>().join(", "),
        Value::Matrix(m) => m.iter().map(|s| format!("{} {:?}", s.labels, s.points)).collect::<Vec<_>>().join(", "),
        other => format!("{other:?}"),
    };
    text.chars().take(400).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_a_small_script() {
        let script = "load 1m\n  m{a=\"1\"} 0+1x10\n  m{a=\"2\"} 0+2x10\n\n\
                      eval instant at 10m sum(m)\n  {} 30\n\n\
                      eval range from 0 to 2m step 1m m{a=\"2\"} * 2\n  {a=\"2\"} 0 4 8\n\n\
                      eval instant at 10m histogram_count(m)\n  {a=\"1\"} 1\n\n\
                      eval instant at 10m sum(m)\n  {} 31\n\n\
                      clear\n\neval instant at 10m m\n";
        let results = run_script("t.test", script, &RunOptions::default()).unwrap();
        let outcomes: Vec<&Outcome> = results.iter().map(|r| &r.outcome).collect();
        assert_eq!(outcomes[0], &Outcome::Passed);
        assert_eq!(outcomes[1], &Outcome::Passed);
        assert!(matches!(outcomes[2], Outcome::Skipped(r) if r == &vec!["function histogram_count".to_string()]));
        assert!(matches!(outcomes[3], Outcome::Failed(_)));
        assert_eq!(outcomes[4], &Outcome::Passed, "clear must empty the store");
    }
}
