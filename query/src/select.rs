//! `select` is the first half of evaluation: it plans which time span and which labels every
//! selector of a query needs over the whole query range (`plan`), then reads each selector's series
//! from the store once and decodes them (`select_all`, in parallel for many series). The
//! per-step half (`eval`) then only takes windows of these [`Fetched`] series.
//!
//! The range selector of a range function in a range query is an exception: its series stay
//! compressed ([`Selection::Compressed`]) because the step table of the call (`calls::RangeJob`)
//! reads each series once and can decode it into a scratch buffer on the spot — a query over
//! 100k series then never holds their decoded samples (16 bytes each) at once. Whatever else
//! reads such a selector decodes it then ([`Selection::decoded`]).

use crate::ast::{AggOp, AtModifier, Expr, ExprKind, ValueType, VectorSelector};
use crate::budget::QueryBudget;
use crate::functions::FuncKind;
use crate::mathfns::Point;
use crate::{EngineOptions, QueryError};
use std::cell::{Cell, OnceCell};
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

/// A selected series still compressed (see [`Selection::Compressed`]).
pub(crate) struct CompressedSeries {
    pub labels: Arc<Labels>,
    pub counter_like: bool,
    pub samples: tsdb::SelectedSeries,
}

/// The series selected for one selector.
pub(crate) enum Selection {
    /// Decoded when selected.
    Decoded(Vec<Fetched>),
    /// Kept compressed for a consumer that decodes each series on the spot; decoded on first
    /// use by anything else.
    Compressed { series: Vec<CompressedSeries>, decoded: OnceCell<Vec<Fetched>> },
}

impl Selection {
    /// How many series were selected.
    pub fn len(&self) -> usize {
        match self {
            Selection::Decoded(series) => series.len(),
            Selection::Compressed { series, .. } => series.len(),
        }
    }

    /// The `i`th series' labels and whether its name looks like a counter's.
    pub fn labels(&self, i: usize) -> Option<(&Arc<Labels>, bool)> {
        match self {
            Selection::Decoded(series) => series.get(i).map(|f| (&f.labels, f.counter_like)),
            Selection::Compressed { series, .. } => series.get(i).map(|c| (&c.labels, c.counter_like)),
        }
    }

    /// The decoded series (decoding them now if they are still compressed), holding their
    /// samples in `budget` as selection does.
    pub fn decoded(&self, budget: &QueryBudget) -> Result<&[Fetched], QueryError> {
        match self {
            Selection::Decoded(series) => Ok(series),
            Selection::Compressed { series, decoded } => {
                if let Some(done) = decoded.get() {
                    return Ok(done);
                }
                let fetched = decode_in_parallel(series, budget)?;
                Ok(decoded.get_or_init(|| fetched))
            }
        }
    }

    /// Each series' points for a consumer that reads every series once: borrowed when decoded,
    /// else the compressed series (see [`PointSource::points`]).
    pub fn sources(&self) -> Vec<PointSource<'_>> {
        match self {
            Selection::Decoded(series) => series.iter().map(|f| PointSource::Decoded(&f.points)).collect(),
            Selection::Compressed { series, decoded } => match decoded.get() {
                Some(done) => done.iter().map(|f| PointSource::Decoded(&f.points)).collect(),
                None => series.iter().map(|c| PointSource::Compressed(&c.samples)).collect(),
            },
        }
    }
}

/// Where a consumer of [`Selection::sources`] finds one series' points.
#[derive(Clone, Copy)]
pub(crate) enum PointSource<'a> {
    Decoded(&'a [Point]),
    Compressed(&'a tsdb::SelectedSeries),
}

impl<'a> PointSource<'a> {
    /// The series' points (staleness markers left out), decoding into `scratch` when compressed
    /// and holding the decoded samples in `budget` as selection does.
    pub fn points<'s>(self, scratch: &'s mut Vec<Point>, budget: &QueryBudget) -> Result<&'s [Point], QueryError>
    where
        'a: 's,
    {
        match self {
            PointSource::Decoded(points) => Ok(points),
            PointSource::Compressed(series) => {
                decode_into(series, scratch, None, budget)?;
                Ok(scratch)
            }
        }
    }
}

/// Decodes `series` into `points` (replacing what they held) and the times of its staleness
/// markers into `stale_ts` (or only counts them), and holds the samples in `budget` (a marker
/// as half a sample). The claimed sample count is known before decoding: a series that cannot
/// fit is refused before the buffer grows.
fn decode_into(
    series: &tsdb::SelectedSeries,
    points: &mut Vec<Point>,
    stale_ts: Option<&mut Vec<i64>>,
    budget: &QueryBudget,
) -> Result<(), QueryError> {
    budget.fits(series.max_samples())?;
    points.clear();
    points.reserve(series.max_samples());
    append_samples(series, points, stale_ts, budget)
}

/// [`decode_into`] after its checks: appends `series`' samples to `points` (growing it as
/// needed) and holds them in `budget`.
fn append_samples(
    series: &tsdb::SelectedSeries,
    points: &mut Vec<Point>,
    mut stale_ts: Option<&mut Vec<i64>>,
    budget: &QueryBudget,
) -> Result<(), QueryError> {
    let mut stale = 0usize;
    series.for_each_sample(|sample| {
        if is_stale_nan(sample.value) {
            stale += 1;
            if let Some(times) = stale_ts.as_deref_mut() {
                times.push(sample.ts_ms);
            }
        } else {
            points.push((sample.ts_ms, sample.value));
        }
    });
    budget.hold(points.len() + stale / 2)
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

impl Fetched {
    /// What an instant selector takes from this series at `ref_t`: its newest point in the
    /// lookback window `(ref_t - lookback_ms, ref_t]`, unless a staleness marker follows that
    /// point by `ref_t`.
    #[inline]
    pub fn instant_point(&self, ref_t: i64, lookback_ms: i64) -> Option<Point> {
        let &(ts, v) = self.window(ref_t - lookback_ms, ref_t).last()?;
        self.unless_stale((ts, v), ref_t)
    }

    /// The series' points and staleness markers, without its window cursor: what a walk
    /// over the steps of a range query reads, shareable between threads.
    pub fn walk(&self) -> PointsWalk<'_> {
        PointsWalk { points: &self.points, stale_ts: &self.stale_ts }
    }

    /// `point` unless a staleness marker follows it by `ref_t`.
    #[inline]
    fn unless_stale(&self, point: Point, ref_t: i64) -> Option<Point> {
        self.walk().unless_stale(point, ref_t)
    }
}

/// One selected series' points and staleness markers (see [`Fetched::walk`]).
#[derive(Clone, Copy)]
pub(crate) struct PointsWalk<'a> {
    points: &'a [Point],
    stale_ts: &'a [i64],
}

impl PointsWalk<'_> {
    /// [`Fetched::instant_point`] for a caller walking `ref_t` forward through one series:
    /// `end` is its cursor (0 at first; then the number of points up to the last `ref_t`), so
    /// each call looks only at the points since the last. A `ref_t` that moves back, or a first
    /// call, is searched.
    #[inline]
    pub fn instant_point(&self, end: &mut usize, ref_t: i64, lookback_ms: i64) -> Option<Point> {
        let points = self.points;
        if *end == 0 || *end > points.len() || points[*end - 1].0 > ref_t {
            *end = points.partition_point(|p| p.0 <= ref_t);
        }
        while *end < points.len() && points[*end].0 <= ref_t {
            *end += 1;
        }
        let &(ts, v) = points.get(end.checked_sub(1)?)?;
        if ts <= ref_t - lookback_ms {
            return None;
        }
        self.unless_stale((ts, v), ref_t)
    }

    /// `point` unless a staleness marker follows it by `ref_t`.
    #[inline]
    fn unless_stale(&self, point: Point, ref_t: i64) -> Option<Point> {
        if self.stale_ts.is_empty() {
            return Some(point);
        }
        let si = self.stale_ts.partition_point(|&s| s <= point.0);
        if si < self.stale_ts.len() && self.stale_ts[si] <= ref_t {
            return None;
        }
        Some(point)
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

/// The selected series of every selector of a query, by [`selector_key`].
pub(crate) type SelectedData = HashMap<usize, Selection>;

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
    let mut streamed_keys = Vec::new();
    if start_ms < end_ms {
        streamed_selectors(expr, &mut streamed_keys);
    }
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
            fetched.insert(key, Selection::Decoded(newest.into_iter().map(Fetched::newest).collect()));
            continue;
        }
        let selected = select_in_parallel(db, &matchers, lo, hi, keep.as_deref())?;
        budget.check(SELECT_STAGE)?;
        let mut series: Vec<CompressedSeries> = Vec::with_capacity(selected.len());
        for mut samples in selected {
            let labels = std::mem::take(&mut samples.labels);
            series.push(CompressedSeries { counter_like: is_counter_like(&labels), labels: Arc::new(labels), samples });
        }
        let selection = if streamed_keys.contains(&key) {
            Selection::Compressed { series, decoded: OnceCell::new() }
        } else {
            Selection::Decoded(decode_in_parallel(&series, budget)?)
        };
        fetched.insert(key, selection);
    }
    Ok(fetched)
}

/// Decodes `items` into evaluation series, split over the cores for many series, holding every
/// series' samples in `budget`.
fn decode_in_parallel(items: &[CompressedSeries], budget: &QueryBudget) -> Result<Vec<Fetched>, QueryError> {
    let decoded =
        crate::parallel::in_parts(items, PARALLEL_DECODE_MIN_SERIES, "decode", |_, part| decode_series(part, budget));
    let mut series = Vec::with_capacity(items.len());
    for part in decoded {
        series.extend(part?);
    }
    Ok(series)
}

/// [`Db::select_projected`] with the series' chunks copied a part per core.
fn select_in_parallel(
    db: &Db,
    matchers: &[Matcher],
    mint_ms: i64,
    maxt_ms: i64,
    keep: Option<&[String]>,
) -> Result<Vec<tsdb::SelectedSeries>, QueryError> {
    let plan = db.plan_selection(matchers, mint_ms, maxt_ms);
    let parts =
        crate::parallel::in_ranges(
            plan.len(),
            PARALLEL_SELECT_MIN_SERIES,
            "select",
            |part| Ok(plan.select(part, keep)),
        );
    let mut selected = Vec::with_capacity(plan.len());
    for part in parts {
        selected.extend(part?);
    }
    Ok(selected)
}

/// Below this many matching series one thread copies them all.
const PARALLEL_SELECT_MIN_SERIES: usize = 2_000;

/// Where selection stops when out of time ("query timed out in query preparation").
const SELECT_STAGE: &str = "query preparation";

/// Below this many selected series one thread decodes them all (spawning costs more).
const PARALLEL_DECODE_MIN_SERIES: usize = 2_000;

/// Decodes `items` into evaluation series, holding each series' samples in `budget` before
/// decoding the next.
fn decode_series(items: &[CompressedSeries], budget: &QueryBudget) -> Result<Vec<Fetched>, QueryError> {
    let mut out = Vec::with_capacity(items.len());
    // Each series decodes into a buffer sized like the previous series' points, not for its
    // claimed count: the claim covers whole chunks (several times a short window), and memory a
    // query touches without reading is memory the kernel must clear for it first. The series of
    // one selector mostly hold as many points in the window, so the guess is mostly exact; a
    // buffer left much larger than its points is shrunk.
    let mut expected_points = 0;
    for (i, item) in items.iter().enumerate() {
        budget.check_item(i, SELECT_STAGE)?;
        budget.fits(item.samples.max_samples())?;
        let mut points = Vec::with_capacity(expected_points.min(item.samples.max_samples()));
        let mut stale_ts = Vec::new();
        append_samples(&item.samples, &mut points, Some(&mut stale_ts), budget)?;
        if points.capacity() > points.len() + points.len() / 4 + 16 {
            points.shrink_to_fit();
        }
        expected_points = points.len();
        let (labels, counter_like) = (item.labels.clone(), item.counter_like);
        out.push(Fetched { labels, counter_like, points, stale_ts, cursor: Cell::default() });
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

/// The range selectors of a range query that a range function's step table reads (the matrix
/// is the function's first argument, not below a subquery, whose steps are its own): the ones
/// kept compressed (see the module doc), by [`selector_key`].
fn streamed_selectors(expr: &Expr, out: &mut Vec<usize>) {
    match &expr.kind {
        ExprKind::Vector(_) | ExprKind::Matrix { .. } | ExprKind::Subquery { .. } => {}
        ExprKind::Number(_) | ExprKind::String(_) => {}
        ExprKind::Paren(e) | ExprKind::Neg(e) => streamed_selectors(e, out),
        ExprKind::Binary { lhs, rhs, .. } => {
            streamed_selectors(lhs, out);
            streamed_selectors(rhs, out);
        }
        ExprKind::Aggregate { param, expr: inner, .. } => {
            if let Some(p) = param {
                streamed_selectors(p, out);
            }
            streamed_selectors(inner, out);
        }
        ExprKind::Call { func, args } => {
            let table_reads_first = func.kind != FuncKind::AbsentOverTime
                && func.arg_types.first() == Some(&ValueType::Matrix)
                && crate::calls::constant_params(func, args).is_some();
            for (i, arg) in args.iter().enumerate() {
                match &arg.unparen().kind {
                    ExprKind::Matrix { selector, .. } if i == 0 && table_reads_first => {
                        out.push(selector_key(selector))
                    }
                    _ => streamed_selectors(arg, out),
                }
            }
        }
    }
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
            | MadOverTime
            | PredictLinear
            | HoltWinters
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
            | Acos
            | Acosh
            | Asin
            | Asinh
            | Atan
            | Atanh
            | Cos
            | Cosh
            | Sin
            | Sinh
            | Tan
            | Tanh
            | Deg
            | Rad
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

    /// A store of counters (with a reset, a gap and a staleness marker) and gauges, for
    /// comparing range queries, whose range functions read compressed series, with instant
    /// queries, which decode them.
    fn mixed_engine(max_samples: usize) -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(Db::open(Options::new(dir.path())).expect("open"));
        type OwnedSeries = (Vec<(String, String)>, Vec<Sample>);
        let mut owned: Vec<OwnedSeries> = Vec::new();
        for pod in 0..6 {
            let mut counter = Vec::new();
            let mut gauge = Vec::new();
            for k in 0..80i64 {
                let ts = k * 15_000 + pod * 1_000;
                if pod == 2 && (30..36).contains(&k) {
                    continue; // a gap longer than the windows
                }
                let reset_at = 20 + pod;
                let count = if k < reset_at { k * (pod + 1) } else { (k - reset_at) * 2 };
                let value = if pod == 3 && k == 50 { tsdb::stale_nan() } else { count as f64 };
                counter.push(Sample::new(ts, value));
                gauge.push(Sample::new(ts, ((k * 7 + pod * 3) % 11) as f64 - 4.5));
            }
            let labels = |name: &str| {
                vec![
                    ("__name__".to_string(), name.to_string()),
                    ("pod".to_string(), format!("p{pod}")),
                    ("job".to_string(), format!("j{}", pod % 2)),
                ]
            };
            owned.push((labels("c_total"), counter));
            owned.push((labels("g"), gauge));
        }
        let pairs: Vec<Vec<(&str, &str)>> =
            owned.iter().map(|(l, _)| l.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()).collect();
        let batch: Vec<SeriesSamples<'_>> =
            pairs.iter().zip(&owned).map(|(l, (_, samples))| SeriesSamples::labels(l, samples)).collect();
        db.append(&batch).expect("append");
        let options = EngineOptions { max_samples, ..EngineOptions::default() };
        (dir, Engine::new(db, options))
    }

    fn by_labels(value: Value) -> std::collections::BTreeMap<Labels, Vec<(i64, f64)>> {
        match value {
            Value::Matrix(series) => series.into_iter().map(|s| (s.labels, s.points)).collect(),
            Value::Vector(samples) => samples.into_iter().map(|s| (s.labels, vec![(s.ts_ms, s.value)])).collect(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn range_functions_over_compressed_series_agree_with_instant_queries_at_every_step() {
        let (_dir, engine) = mixed_engine(50_000_000);
        let queries = [
            "rate(c_total[1m])",
            "sum by (job) (increase(c_total[2m]))",
            "max_over_time(g[45s])",
            "count_over_time(c_total[1m])",
            "avg by (job) (avg_over_time(g[2m]))",
            "rate(c_total[1m] offset 30s) * 2",
            "deriv(g[2m]) + irate(c_total[1m])",
            "rate(c_total[1m] offset 20s)",
            "rate(c_total[1m] @ 600)",
            "quantile_over_time(0.5, g[2m]) - changes(g[2m])",
            "predict_linear(g[2m], 60)",
            "predict_linear(c_total[1m] offset 30s, -120)",
            "predict_linear(g[2m] @ 600, 30)",
            "predict_linear(g[2m], scalar(count(g)))",
            "holt_winters(g[2m], 0.3, 0.6)",
            "double_exponential_smoothing(g[2m], scalar(count(g)) / 10, 0.5)",
            "mad_over_time(g[2m])",
        ];
        for step_ms in [15_000, 20_000] {
            for query in queries {
                let range = by_labels(engine.range(query, 90_000, 1_170_000, step_ms).expect(query));
                assert!(!range.is_empty(), "{query}");
                let mut t = 90_000;
                while t <= 1_170_000 {
                    let instant = by_labels(engine.instant(query, t).expect(query));
                    for (labels, point) in &instant {
                        let (_, want) = point[0];
                        let got = range.get(labels).and_then(|points| points.iter().find(|p| p.0 == t));
                        let Some(&(_, got)) = got else { panic!("{query} at {t}: {labels:?} missing from the range") };
                        let close = (got - want).abs() <= 1e-9 * want.abs().max(1.0) || (got.is_nan() && want.is_nan());
                        assert!(close, "{query} step {step_ms} at {t} {labels:?}: range {got}, instant {want}");
                    }
                    let in_range = range.values().filter(|points| points.iter().any(|p| p.0 == t)).count();
                    assert_eq!(in_range, instant.len(), "{query} step {step_ms} at {t}");
                    t += step_ms;
                }
            }
        }
    }

    #[test]
    fn range_functions_over_compressed_series_count_their_samples_against_the_limit() {
        let (_dir, small) = mixed_engine(400);
        let err = small.range("sum(rate(c_total[10m]))", 600_000, 1_170_000, 15_000).expect_err("over the limit");
        assert!(matches!(err, crate::QueryError::TooManySamples(_)), "{err:?}");
        let (_dir, large) = mixed_engine(5_000);
        large.range("sum(rate(c_total[10m]))", 600_000, 1_170_000, 15_000).expect("within the limit");
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
