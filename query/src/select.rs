//! `select` is the first half of evaluation: it plans which time span and which labels every
//! selector of a query needs over the whole query range (`plan`), then reads each selector's series
//! from the store once and decodes them (`select_all`, in parallel for many series). The
//! per-step half (`eval`) then only takes windows of these [`Fetched`] series.

use crate::ast::{AggOp, AtModifier, Expr, ExprKind, ValueType, VectorSelector};
use crate::budget::QueryBudget;
use crate::functions::FuncKind;
use crate::mathfns::Point;
use crate::{EngineOptions, QueryError};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;
use tsdb::{is_stale_nan, Db, Labels, Matcher, METRIC_NAME};

/// A selector's series as selected from the store: real samples and staleness-marker times apart.
pub(crate) struct Fetched {
    pub labels: Arc<Labels>,
    /// The metric name ends like a counter's (`_total`, `_sum`, `_count`, `_bucket`), decided once
    /// here instead of per step (rate-like functions add an info annotation otherwise).
    pub counter_like: bool,
    pub points: Vec<Point>,
    pub stale_ts: Vec<i64>,
    /// Where the previous window of this series ended (see [`Fetched::window`]).
    cursor: Cell<Cursor>,
}

/// The last window `(lo, hi]` taken from a series and its index bounds.
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    valid: bool,
    lo: i64,
    hi: i64,
    start: usize,
    end: usize,
}

impl Fetched {
    /// A series known only by its newest sample in the window (see `PlannedSelector`).
    fn newest(latest: tsdb::LatestSample) -> Fetched {
        let (mut points, mut stale_ts) = (Vec::new(), Vec::new());
        if is_stale_nan(latest.sample.value) {
            stale_ts.push(latest.sample.ts_ms);
        } else {
            points.push((latest.sample.ts_ms, latest.sample.value));
        }
        let labels = latest.labels;
        let counter_like = is_counter_like(&labels);
        Fetched { labels: Arc::new(labels), counter_like, points, stale_ts, cursor: Cell::default() }
    }

    /// A series of `points` (value 1) and staleness markers, for tests of what reads series.
    #[cfg(test)]
    pub fn for_tests(points: Vec<i64>, stale_ts: Vec<i64>) -> Fetched {
        Fetched {
            labels: Arc::new(Labels::default()),
            counter_like: false,
            points: points.into_iter().map(|ts| (ts, 1.0)).collect(),
            stale_ts,
            cursor: Cell::default(),
        }
    }

    /// The points with timestamps in `(lo, hi]`.
    ///
    /// Steps of a range query move the window forward a little each time, so the bounds are
    /// advanced from the previous window's instead of binary-searched: a binary search over
    /// thousands of series per step misses the cache on nearly every probe, the forward scan
    /// reads memory that is already close. Windows that move backwards fall back to the search.
    #[inline]
    pub fn window(&self, lo: i64, hi: i64) -> &[Point] {
        let points = &self.points;
        let c = self.cursor.get();
        let (mut start, mut end) = if c.valid && lo >= c.lo && hi >= c.hi {
            (c.start, c.end)
        } else {
            (points.partition_point(|p| p.0 <= lo), points.partition_point(|p| p.0 <= hi))
        };
        while start < points.len() && points[start].0 <= lo {
            start += 1;
        }
        while end < points.len() && points[end].0 <= hi {
            end += 1;
        }
        self.cursor.set(Cursor { valid: true, lo, hi, start, end });
        if start >= end {
            &[]
        } else {
            &points[start..end]
        }
    }
}

/// Where a selector sits in the tree (the node's address; the tree outlives the evaluation).
pub(crate) fn selector_key(selector: &VectorSelector) -> usize {
    selector as *const VectorSelector as usize
}

/// Whether the metric name ends like a counter's (or is missing).
fn is_counter_like(labels: &Labels) -> bool {
    let name = labels.get(METRIC_NAME).unwrap_or("");
    name.is_empty() || ["_total", "_sum", "_count", "_bucket"].iter().any(|x| name.ends_with(x))
}

/// The decoded series of every selector of a query, by [`selector_key`].
pub(crate) type SelectedData = HashMap<usize, Vec<Fetched>>;

/// Plans the selectors of `expr` for evaluation at `start_ms..=end_ms` and selects and decodes
/// their data (with `extra` matchers added to each), holding every decoded sample in `budget`
/// (failing past its limit) and stopping when the budget says the query is out of time or
/// cancelled.
pub(crate) fn select_all(
    db: &Db,
    options: &EngineOptions,
    expr: &Expr,
    start_ms: i64,
    end_ms: i64,
    extra: &[Matcher],
    budget: &QueryBudget,
) -> Result<SelectedData, QueryError> {
    let lookback_ms = options.lookback.as_millis() as i64;
    let mut spans: Vec<PlannedSelector<'_>> = Vec::new();
    plan(expr, start_ms, end_ms, start_ms, end_ms, lookback_ms, None, &mut spans);
    let mut fetched = SelectedData::new();
    for PlannedSelector { selector, mint: lo, maxt: hi, newest_only, keep } in spans {
        budget.check(SELECT_STAGE)?;
        let key = selector_key(selector);
        if fetched.contains_key(&key) {
            continue;
        }
        let mut matchers = selector.matchers.clone();
        matchers.extend(extra.iter().cloned());
        if newest_only {
            let newest = db.select_latest(&matchers, lo, hi, keep.as_deref())?;
            budget.hold(newest.len())?;
            fetched.insert(key, newest.into_iter().map(Fetched::newest).collect());
            continue;
        }
        let mut selected = db.select_projected(&matchers, lo, hi, keep.as_deref())?;
        budget.check(SELECT_STAGE)?;
        let threads = if selected.len() < PARALLEL_DECODE_MIN_SERIES {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |p| p.get()).min(8)
        };
        let part_len = selected.len().div_ceil(threads).max(1);
        let parts: Vec<Result<Vec<Fetched>, QueryError>> = if threads == 1 {
            vec![decode_series(&mut selected, budget)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = selected
                    .chunks_mut(part_len)
                    .map(|part| scope.spawn(move || decode_series(part, budget)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| Err(QueryError::Execution("BUG: decode worker panicked".into())))
                    })
                    .collect()
            })
        };
        let mut series = Vec::with_capacity(selected.len());
        for part in parts {
            series.extend(part?);
        }
        fetched.insert(key, series);
    }
    Ok(fetched)
}

/// Where selection stops when out of time ("query timed out in query preparation").
const SELECT_STAGE: &str = "query preparation";

/// Below this many selected series one thread decodes them all (spawning costs more).
const PARALLEL_DECODE_MIN_SERIES: usize = 2_000;

/// Decodes `selected` (taking their labels) into evaluation series, holding each series' samples
/// and label set in `budget` before decoding the next.
fn decode_series(selected: &mut [tsdb::SelectedSeries], budget: &QueryBudget) -> Result<Vec<Fetched>, QueryError> {
    let mut out = Vec::with_capacity(selected.len());
    for (i, s) in selected.iter_mut().enumerate() {
        budget.check_item(i, SELECT_STAGE)?;
        // The claimed sample count is known before decoding: a series that cannot fit is refused
        // before its buffer is allocated.
        budget.fits(s.max_samples())?;
        let mut points = Vec::with_capacity(s.max_samples());
        let mut stale_ts = Vec::new();
        for sample in s.samples() {
            if is_stale_nan(sample.value) {
                stale_ts.push(sample.ts_ms);
            } else {
                points.push((sample.ts_ms, sample.value));
            }
        }
        budget.hold(points.len() + stale_ts.len() / 2)?;
        let labels = std::mem::take(&mut s.labels);
        let counter_like = is_counter_like(&labels);
        out.push(Fetched { labels: Arc::new(labels), counter_like, points, stale_ts, cursor: Cell::default() });
    }
    Ok(out)
}

/// The time an `@` modifier names, for a query over `start_ms..=end_ms`.
pub(crate) fn resolve_at(at: AtModifier, start_ms: i64, end_ms: i64) -> i64 {
    match at {
        AtModifier::Ms(ms) => ms,
        AtModifier::Start => start_ms,
        AtModifier::End => end_ms,
    }
}

/// What one selector needs from the store.
struct PlannedSelector<'e> {
    selector: &'e VectorSelector,
    mint: i64,
    maxt: i64,
    /// An instant vector selector evaluated at a single time: only each series' newest sample
    /// in the window matters (a staleness marker there hides the series).
    newest_only: bool,
    /// The only labels anything above the selector reads (`None`: all of them); see `plan`.
    keep: Option<Vec<String>>,
}

/// Functions whose output keeps each input series' labels (at most dropping the name) and reads
/// no label: labels an aggregation above them ignores need not be materialised below them.
fn passes_labels_through(kind: FuncKind) -> bool {
    use FuncKind::*;
    matches!(
        kind,
        Rate | Irate
            | Increase
            | Delta
            | Idelta
            | Deriv
            | Resets
            | Changes
            | AvgOverTime
            | MinOverTime
            | MaxOverTime
            | SumOverTime
            | CountOverTime
            | LastOverTime
            | QuantileOverTime
            | StddevOverTime
            | StdvarOverTime
            | PresentOverTime
            | Abs
            | Ceil
            | Floor
            | Round
            | Sqrt
            | Exp
            | Ln
            | Log2
            | Log10
            | Sgn
            | Clamp
            | ClampMin
            | ClampMax
    )
}

/// Functions among [`passes_labels_through`] that read the metric name of their input (to say
/// "metric might not be a counter"): the name is kept below them.
fn reads_metric_name(kind: FuncKind) -> bool {
    matches!(kind, FuncKind::Rate | FuncKind::Irate | FuncKind::Increase)
}

/// Collects what every selector below `expr` needs: its time span for evaluation over
/// `mint..=maxt`, and `keep`, the labels anything above reads. Only an aggregation `by (…)`
/// whose result depends on nothing but its grouping labels narrows `keep` (to those), only
/// label-preserving functions and parentheses pass it down (adding the metric name below the
/// functions that read it); every other node needs the whole label sets.
#[allow(clippy::too_many_arguments)]
fn plan<'e>(
    expr: &'e Expr,
    mint: i64,
    maxt: i64,
    start_ms: i64,
    end_ms: i64,
    lookback_ms: i64,
    keep: Option<&[String]>,
    out: &mut Vec<PlannedSelector<'e>>,
) {
    let shifted = |at: Option<AtModifier>, offset: i64| match at {
        Some(a) => {
            let t = resolve_at(a, start_ms, end_ms) - offset;
            (t, t)
        }
        None => (mint - offset, maxt - offset),
    };
    match &expr.kind {
        ExprKind::Vector(s) => {
            let (lo, hi) = shifted(s.at, s.offset_ms);
            let keep = keep.map(<[String]>::to_vec);
            out.push(PlannedSelector { selector: s, mint: lo - lookback_ms, maxt: hi, newest_only: lo == hi, keep });
        }
        ExprKind::Matrix { selector, range_ms } => {
            let (lo, hi) = shifted(selector.at, selector.offset_ms);
            let keep = keep.map(<[String]>::to_vec);
            out.push(PlannedSelector { selector, mint: lo - range_ms, maxt: hi, newest_only: false, keep });
        }
        ExprKind::Subquery { expr: inner, range_ms, offset_ms, at, .. } => {
            let (lo, hi) = shifted(*at, *offset_ms);
            plan(inner, lo - range_ms, hi, start_ms, end_ms, lookback_ms, None, out);
        }
        ExprKind::Number(_) | ExprKind::String(_) => {}
        ExprKind::Paren(e) => plan(e, mint, maxt, start_ms, end_ms, lookback_ms, keep, out),
        ExprKind::Neg(e) => plan(e, mint, maxt, start_ms, end_ms, lookback_ms, None, out),
        ExprKind::Binary { lhs, rhs, .. } => {
            plan(lhs, mint, maxt, start_ms, end_ms, lookback_ms, None, out);
            plan(rhs, mint, maxt, start_ms, end_ms, lookback_ms, None, out);
        }
        ExprKind::Aggregate { op, param, expr: inner, grouping, without } => {
            if let Some(p) = param {
                plan(p, mint, maxt, start_ms, end_ms, lookback_ms, None, out);
            }
            let by_groups_only = !*without && (op.is_plain_fold() || *op == AggOp::Quantile);
            let narrowed = by_groups_only.then_some(grouping.as_slice());
            plan(inner, mint, maxt, start_ms, end_ms, lookback_ms, narrowed, out);
        }
        ExprKind::Call { func, args } => {
            let through = passes_labels_through(func.kind);
            // Rate-like functions read the metric name (whether it looks like a counter's).
            let with_name: Option<Vec<String>> = keep.filter(|_| reads_metric_name(func.kind)).map(|keep| {
                let mut names = keep.to_vec();
                names.push(METRIC_NAME.to_string());
                names
            });
            let keep = with_name.as_deref().or(keep);
            for (arg, ty) in args.iter().zip(func.arg_types.iter()) {
                let passes = through && matches!(ty, ValueType::Vector | ValueType::Matrix);
                plan(arg, mint, maxt, start_ms, end_ms, lookback_ms, if passes { keep } else { None }, out);
            }
            // Variadic tails (none in the subset today) get everything.
            for arg in args.iter().skip(func.arg_types.len()) {
                plan(arg, mint, maxt, start_ms, end_ms, lookback_ms, None, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Engine, EngineOptions, Value};
    use std::sync::Arc;
    use tsdb::{Db, Labels, Options, Sample, SeriesSamples};

    /// An engine over `series` (name, pod), each sampled every 15 s for 10 minutes, rising.
    fn engine_with(series: &[(&str, &str)]) -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(Db::open(Options::new(dir.path())).expect("open"));
        let samples: Vec<Sample> = (0..40).map(|k| Sample::new(k * 15_000, k as f64)).collect();
        let labels: Vec<[(&str, &str); 3]> =
            series.iter().map(|(name, pod)| [("__name__", *name), ("job", "j"), ("pod", *pod)]).collect();
        let batch: Vec<SeriesSamples<'_>> = labels.iter().map(|l| SeriesSamples::labels(l, &samples)).collect();
        db.append(&batch).expect("append");
        (dir, Engine::new(db, EngineOptions::default()))
    }

    fn labels_of(value: &Value) -> Vec<Labels> {
        match value {
            Value::Vector(samples) => samples.iter().map(|s| s.labels.clone()).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn grouping_by_labels_alone_still_reads_the_name_where_rate_needs_it() {
        let (_dir, engine) = engine_with(&[("queue_depth", "a"), ("queue_depth", "b")]);
        let out = engine.instant_query("sum by (pod) (rate(queue_depth[5m]))", 585_000, &[]).expect("query");
        assert_eq!(labels_of(&out.value), vec![Labels::from_pairs([("pod", "a")]), Labels::from_pairs([("pod", "b")])]);
        assert_eq!(out.annotations.infos.len(), 1, "{:?}", out.annotations);
        assert!(out.annotations.infos[0].contains("metric might not be a counter"), "{:?}", out.annotations);
    }

    #[test]
    fn grouped_results_keep_exactly_their_grouping_labels() {
        let (_dir, engine) = engine_with(&[("a_ratio", "p1"), ("b_ratio", "p1"), ("a_ratio", "p2")]);
        let by_pod = engine.instant(r#"sum by (pod) ({__name__=~"a_ratio|b_ratio"})"#, 585_000).expect("query");
        let Value::Vector(samples) = &by_pod else { panic!("{by_pod:?}") };
        let got: Vec<(Labels, f64)> = samples.iter().map(|s| (s.labels.clone(), s.value)).collect();
        assert_eq!(got, vec![(Labels::from_pairs([("pod", "p1")]), 78.0), (Labels::from_pairs([("pod", "p2")]), 39.0)]);
        let by_name = engine.instant(r#"count by (__name__) ({__name__=~"a_ratio|b_ratio"})"#, 585_000).expect("query");
        assert_eq!(
            labels_of(&by_name),
            vec![Labels::from_pairs([("__name__", "a_ratio")]), Labels::from_pairs([("__name__", "b_ratio")])]
        );
        let mut whole = labels_of(&engine.instant(r#"{__name__=~"a_ratio|b_ratio"}"#, 585_000).expect("query"));
        whole.sort();
        assert_eq!(whole.len(), 3);
        assert!(whole.iter().all(|l| l.get("job") == Some("j") && l.get("__name__").is_some()));
    }
}
