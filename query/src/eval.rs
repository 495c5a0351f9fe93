//! `Evaluator` runs a parsed expression: it first plans which time span every selector needs,
//! selects each selector's series from the store once for the whole query, then evaluates the tree
//! at every step against those decoded samples (binary search for the window, no re-selection).
//!
//! Values carry `drop_name` instead of losing `__name__` immediately: Prometheus 3's delayed name
//! removal, so `label_replace` can still read the name and removal happens when a step finishes.

use crate::ast::{AggOp, AtModifier, Expr, ExprKind, ValueType, VectorSelector};
use crate::functions::FuncKind;
use crate::mathfns::Point;
use crate::{EngineOptions, QueryError};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tsdb::{is_stale_nan, Db, Labels, Matcher, METRIC_NAME};

/// One element of an instant vector during evaluation.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub labels: Arc<Labels>,
    pub value: f64,
    /// `__name__` is to be removed when the step's result is finished.
    pub drop_name: bool,
}

/// One series of a range vector during evaluation.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub labels: Arc<Labels>,
    pub points: Vec<Point>,
    pub drop_name: bool,
}

/// A value during evaluation.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Scalar(f64),
    Str(String),
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

/// Warnings and infos a query produced, rendered like Prometheus's API (`PromQL warning: … (1:5)`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    fn push_unique(list: &mut Vec<String>, text: String) {
        if !list.contains(&text) {
            list.push(text);
        }
    }
}

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

/// Group hash per (aggregation node, label set address), with the label set kept alive.
pub(crate) type GroupCache = rustc_hash::FxHashMap<(usize, usize), (Arc<Labels>, u64)>;

/// Where a selector sits in the tree (the node's address; the tree outlives the evaluation).
fn selector_key(selector: &VectorSelector) -> usize {
    selector as *const VectorSelector as usize
}

/// Whether the metric name ends like a counter's (or is missing).
fn is_counter_like(labels: &Labels) -> bool {
    let name = labels.get(METRIC_NAME).unwrap_or("");
    name.is_empty() || ["_total", "_sum", "_count", "_bucket"].iter().any(|x| name.ends_with(x))
}

/// Below this many selected series one thread decodes them all (spawning costs more).
const PARALLEL_DECODE_MIN_SERIES: usize = 2_000;

/// Decodes `selected` (taking their labels) into evaluation series, counting the samples into
/// `total` and failing once it passes `max_samples`.
fn decode_series(
    selected: &mut [tsdb::SelectedSeries],
    max_samples: usize,
    total: &AtomicUsize,
) -> Result<Vec<Fetched>, QueryError> {
    let mut out = Vec::with_capacity(selected.len());
    for s in selected {
        let mut points = Vec::with_capacity(s.max_samples());
        let mut stale_ts = Vec::new();
        for sample in s.samples() {
            if is_stale_nan(sample.value) {
                stale_ts.push(sample.ts_ms);
            } else {
                points.push((sample.ts_ms, sample.value));
            }
        }
        if total.fetch_add(points.len(), Ordering::Relaxed) + points.len() > max_samples {
            return Err(QueryError::TooManySamples("query execution"));
        }
        let labels = std::mem::take(&mut s.labels);
        let counter_like = is_counter_like(&labels);
        out.push(Fetched { labels: Arc::new(labels), counter_like, points, stale_ts, cursor: Cell::default() });
    }
    Ok(out)
}

/// Subqueries without an explicit step use this (Prometheus's default evaluation interval).
pub(crate) const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// How often the deadline is checked in per-step loops.
const DEADLINE_CHECK_EVERY: usize = 64;

pub(crate) struct Evaluator<'q> {
    pub query: &'q str,
    pub start_ms: i64,
    pub end_ms: i64,
    pub lookback_ms: i64,
    fetched: HashMap<usize, Vec<Fetched>>,
    pub annotations: RefCell<Annotations>,
    deadline: Instant,
    subquery_cache: RefCell<HashMap<(usize, i64), Val>>,
    /// `true` while evaluating a range query (some annotations only apply there).
    pub is_range: bool,
    /// Step of the range query (0 for an instant query).
    pub interval_ms: i64,
    /// Range-function results precomputed for every step of the range query, per call node.
    pub step_cache: RefCell<HashMap<usize, crate::calls::StepMatrix>>,
    /// Results of fused range aggregations for every step, per aggregation node (see
    /// `fused_range_aggregate`).
    pub fused_cache: RefCell<HashMap<usize, Vec<Vec<Sample>>>>,
    /// Group hashes of aggregation inputs by (aggregation node, label set address); the `Arc`
    /// held here keeps the address from being reused by another label set.
    pub group_cache: RefCell<GroupCache>,
    /// Which group label set owns each resolved group hash (see `aggregate`).
    pub group_owners: RefCell<crate::aggregate::GroupOwners>,
    step_counter: std::cell::Cell<usize>,
}

impl<'q> Evaluator<'q> {
    /// Plans the selectors of `expr` for evaluation at `start..=end` and selects their data.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        db: &Db,
        options: &EngineOptions,
        query: &'q str,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        extra: &[Matcher],
        is_range: bool,
    ) -> Result<Self, QueryError> {
        let started = Instant::now();
        let lookback_ms = options.lookback.as_millis() as i64;
        let mut spans: Vec<PlannedSelector<'_>> = Vec::new();
        plan(expr, start_ms, end_ms, start_ms, end_ms, lookback_ms, None, &mut spans);
        let mut fetched: HashMap<usize, Vec<Fetched>> = HashMap::new();
        let total_samples = AtomicUsize::new(0);
        for PlannedSelector { selector, mint: lo, maxt: hi, newest_only, keep } in spans {
            let key = selector_key(selector);
            if fetched.contains_key(&key) {
                continue;
            }
            let mut matchers = selector.matchers.clone();
            matchers.extend(extra.iter().cloned());
            if newest_only {
                let newest = db.select_latest(&matchers, lo, hi, keep.as_deref())?;
                if total_samples.fetch_add(newest.len(), Ordering::Relaxed) + newest.len() > options.max_samples {
                    return Err(QueryError::TooManySamples("query execution"));
                }
                fetched.insert(key, newest.into_iter().map(Fetched::newest).collect());
                continue;
            }
            let mut selected = db.select_projected(&matchers, lo, hi, keep.as_deref())?;
            let threads = if selected.len() < PARALLEL_DECODE_MIN_SERIES {
                1
            } else {
                std::thread::available_parallelism().map_or(1, |p| p.get()).min(8)
            };
            let part_len = selected.len().div_ceil(threads).max(1);
            let parts: Vec<Result<Vec<Fetched>, QueryError>> = if threads == 1 {
                vec![decode_series(&mut selected, options.max_samples, &total_samples)]
            } else {
                std::thread::scope(|scope| {
                    let total = &total_samples;
                    let handles: Vec<_> = selected
                        .chunks_mut(part_len)
                        .map(|part| scope.spawn(move || decode_series(part, options.max_samples, total)))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join()
                                .unwrap_or_else(|_| Err(QueryError::Execution("BUG: decode worker panicked".into())))
                        })
                        .collect()
                })
            };
            let mut series = Vec::with_capacity(selected.len());
            for part in parts {
                series.extend(part?);
            }
            if started.elapsed() > options.timeout {
                return Err(QueryError::Timeout("query preparation"));
            }
            fetched.insert(key, series);
        }
        Ok(Evaluator {
            query,
            start_ms,
            end_ms,
            lookback_ms,
            fetched,
            annotations: RefCell::new(Annotations::default()),
            deadline: started + options.timeout,
            subquery_cache: RefCell::new(HashMap::new()),
            is_range,
            interval_ms: 0,
            step_cache: RefCell::new(HashMap::new()),
            fused_cache: RefCell::new(HashMap::new()),
            group_cache: RefCell::new(rustc_hash::FxHashMap::default()),
            group_owners: RefCell::new(rustc_hash::FxHashMap::default()),
            step_counter: std::cell::Cell::new(0),
        })
    }

    /// The annotations the evaluation produced; the selected data is released.
    pub fn into_annotations(self) -> Annotations {
        self.annotations.into_inner()
    }

    /// When the query's time is up.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Fails once the query's time is up (checked every few steps).
    pub fn check_deadline(&self) -> Result<(), QueryError> {
        let n = self.step_counter.get() + 1;
        self.step_counter.set(n);
        if n % DEADLINE_CHECK_EVERY == 0 && Instant::now() > self.deadline {
            return Err(QueryError::Timeout("query execution"));
        }
        Ok(())
    }

    pub fn warn(&self, pos: usize, text: &str) {
        let (line, col) = crate::parser::line_col(self.query, pos);
        let mut a = self.annotations.borrow_mut();
        Annotations::push_unique(&mut a.warnings, format!("PromQL warning: {text} ({line}:{col})"));
    }

    pub fn info(&self, pos: usize, text: &str) {
        let (line, col) = crate::parser::line_col(self.query, pos);
        let mut a = self.annotations.borrow_mut();
        Annotations::push_unique(&mut a.infos, format!("PromQL info: {text} ({line}:{col})"));
    }

    pub fn at_time(&self, at: Option<AtModifier>) -> Option<i64> {
        at.map(|a| resolve_at(a, self.start_ms, self.end_ms))
    }

    /// The series data selected for `selector`.
    pub fn data(&self, selector: &VectorSelector) -> &[Fetched] {
        self.fetched.get(&selector_key(selector)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Evaluates `expr` at `t_ms`.
    pub fn eval(&self, expr: &Expr, t_ms: i64) -> Result<Val, QueryError> {
        match &expr.kind {
            ExprKind::Number(v) => Ok(Val::Scalar(*v)),
            ExprKind::String(s) => Ok(Val::Str(s.clone())),
            ExprKind::Paren(inner) => self.eval(inner, t_ms),
            ExprKind::Vector(selector) => Ok(Val::Vector(self.instant_selector(selector, t_ms, |_, v| v))),
            ExprKind::Matrix { selector, range_ms } => {
                let ref_t = self.at_time(selector.at).unwrap_or(t_ms) - selector.offset_ms;
                let mut out = Vec::new();
                for f in self.data(selector) {
                    let window = f.window(ref_t - range_ms, ref_t);
                    if !window.is_empty() {
                        out.push(Series { labels: f.labels.clone(), points: window.to_vec(), drop_name: false });
                    }
                }
                Ok(Val::Matrix(out))
            }
            ExprKind::Subquery { expr: inner, range_ms, step_ms, offset_ms, at } => {
                Ok(Val::Matrix(self.subquery(inner, *range_ms, *step_ms, *offset_ms, *at, t_ms)?))
            }
            ExprKind::Neg(inner) => match self.eval(inner, t_ms)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(mut samples) => {
                    for s in &mut samples {
                        s.value = -s.value;
                        s.drop_name = true;
                    }
                    Ok(Val::Vector(samples))
                }
                _ => Err(QueryError::Execution("unary minus on a non-numeric value".into())),
            },
            ExprKind::Binary { op, lhs, rhs, return_bool, matching } => {
                let l = self.eval(lhs, t_ms)?;
                let r = self.eval(rhs, t_ms)?;
                crate::binary::eval_binary(*op, l, r, *return_bool, matching.as_ref())
            }
            ExprKind::Aggregate { op, param, expr: inner, grouping, without } => {
                let node = expr as *const Expr as usize;
                if param.is_none() {
                    if let Some(v) = self.fused_range_aggregate(node, *op, inner, grouping, *without, t_ms)? {
                        return Ok(v);
                    }
                }
                let param = match param {
                    Some(p) => Some(self.eval(p, t_ms)?),
                    None => None,
                };
                let input = match self.eval(inner, t_ms)? {
                    Val::Vector(v) => v,
                    _ => return Err(QueryError::Execution("aggregation over a non-vector".into())),
                };
                crate::aggregate::aggregate(self, *op, param, input, grouping, *without, node, param_pos(expr))
            }
            ExprKind::Call { func, args } => self.eval_call(expr, func, args, t_ms),
        }
    }

    /// The instant-vector selection at `t_ms`: each series' newest sample in the lookback window
    /// `(t - lookback, t]`, unless a staleness marker follows it. `value` maps `(ts, value)`.
    pub fn instant_selector(
        &self,
        selector: &VectorSelector,
        t_ms: i64,
        value: impl Fn(i64, f64) -> f64,
    ) -> Vec<Sample> {
        let ref_t = self.at_time(selector.at).unwrap_or(t_ms) - selector.offset_ms;
        let data = self.data(selector);
        let mut out = Vec::with_capacity(data.len());
        for f in data {
            let Some(&(ts, v)) = f.window(ref_t - self.lookback_ms, ref_t).last() else { continue };
            let si = f.stale_ts.partition_point(|&s| s <= ts);
            if si < f.stale_ts.len() && f.stale_ts[si] <= ref_t {
                continue;
            }
            out.push(Sample { labels: f.labels.clone(), value: value(ts, v), drop_name: false });
        }
        out
    }

    /// Evaluates a subquery at `t_ms`: the inner expression at every multiple of the step inside
    /// `(ref - range, ref]`.
    pub fn subquery(
        &self,
        inner: &Expr,
        range_ms: i64,
        step_ms: Option<i64>,
        offset_ms: i64,
        at: Option<AtModifier>,
        t_ms: i64,
    ) -> Result<Vec<Series>, QueryError> {
        let step = step_ms.unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
        let ref_t = self.at_time(at).unwrap_or(t_ms) - offset_ms;
        let lo = ref_t - range_ms;
        let mut ti = lo.div_euclid(step) * step;
        if ti <= lo {
            ti += step;
        }
        let mut index: HashMap<Arc<Labels>, usize> = HashMap::new();
        let mut out: Vec<Series> = Vec::new();
        let key = inner as *const Expr as usize;
        while ti <= ref_t {
            self.check_deadline()?;
            let cached = self.subquery_cache.borrow().get(&(key, ti)).cloned();
            let val = match cached {
                Some(v) => v,
                None => {
                    let v = self.eval(inner, ti)?;
                    self.subquery_cache.borrow_mut().insert((key, ti), v.clone());
                    v
                }
            };
            match val {
                Val::Vector(samples) => {
                    for s in samples {
                        match index.get(&s.labels) {
                            Some(&i) => {
                                out[i].points.push((ti, s.value));
                                out[i].drop_name |= s.drop_name;
                            }
                            None => {
                                index.insert(s.labels.clone(), out.len());
                                out.push(Series {
                                    labels: s.labels,
                                    points: vec![(ti, s.value)],
                                    drop_name: s.drop_name,
                                });
                            }
                        }
                    }
                }
                Val::Scalar(v) => {
                    if out.is_empty() {
                        out.push(Series { labels: Arc::new(Labels::default()), points: Vec::new(), drop_name: false });
                    }
                    out[0].points.push((ti, v));
                }
                _ => return Err(QueryError::Execution("subquery over a non-vector expression".into())),
            }
            ti += step;
        }
        Ok(out)
    }
}

/// Position of an aggregation's parameter (annotations about it point there).
fn param_pos(expr: &Expr) -> usize {
    match &expr.kind {
        ExprKind::Aggregate { param: Some(p), .. } => p.pos,
        _ => expr.pos,
    }
}

pub(crate) fn resolve_at(at: AtModifier, start_ms: i64, end_ms: i64) -> i64 {
    match at {
        AtModifier::Ms(ms) => ms,
        AtModifier::Start => start_ms,
        AtModifier::End => end_ms,
    }
}

/// Collects, for every selector, the span of sample times it needs when `expr` is evaluated at
/// times in `[mint, maxt]`.
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

/// Whether `name` goes away with the metric name (`__type__`/`__unit__` describe the name).
#[inline]
pub(crate) fn is_name_label(name: &str) -> bool {
    name == METRIC_NAME || name == "__type__" || name == "__unit__"
}

/// `labels` without the metric name and the labels that describe it.
pub(crate) fn without_name(labels: &Labels) -> Labels {
    Labels::from_sorted(labels.iter().filter(|l| !is_name_label(&l.name)).cloned().collect())
}

/// Whether every step of `expr` yields distinct label sets by construction, before `__name__` is
/// removed: a grouping aggregation's groups are distinct (so the duplicate check can be skipped
/// unless removing a name changed a label set).
pub(crate) fn distinct_by_construction(expr: &Expr) -> bool {
    matches!(&expr.unparen().kind, ExprKind::Aggregate { op, .. } if op.is_plain_fold() || *op == AggOp::Quantile)
}

/// Removes `__name__` where a step's samples asked for it and checks the label sets are unique
/// (`distinct`: they were unique before any name was removed, see [`distinct_by_construction`]).
pub(crate) fn finish_step(samples: Vec<Sample>, distinct: bool) -> Result<Vec<(Arc<Labels>, f64)>, QueryError> {
    let mut out = Vec::with_capacity(samples.len());
    let mut renamed = false;
    for s in samples {
        let labels = if s.drop_name && s.labels.iter().any(|l| is_name_label(&l.name)) {
            renamed = true;
            Arc::new(without_name(&s.labels))
        } else {
            s.labels
        };
        out.push((labels, s.value));
    }
    if out.len() > 1 && (!distinct || renamed) {
        let mut seen: rustc_hash::FxHashSet<&Labels> =
            rustc_hash::FxHashSet::with_capacity_and_hasher(out.len(), Default::default());
        for (labels, _) in &out {
            if !seen.insert(labels) {
                return Err(QueryError::Execution("vector cannot contain metrics with the same labelset".into()));
            }
        }
    }
    Ok(out)
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
