//! `Evaluator` is the per-step half of evaluation: once `select` has read every selector's series
//! for the whole query, it evaluates the tree at each step against those decoded samples (a
//! window per series and step, no re-selection), caching what several steps share (subquery
//! steps, range-function results, fused aggregations, group hashes).
//!
//! Values carry `drop_name` instead of losing `__name__` immediately: Prometheus 3's delayed name
//! removal, so `label_replace` can still read the name and removal happens when a step finishes.

use crate::ast::{AggOp, AtModifier, Expr, ExprKind, VectorSelector};
use crate::budget::{CancelHandle, QueryBudget};
use crate::label_keys::{LabelSet, LabelSetPositions};
use crate::mathfns::Point;
use crate::select::{resolve_at, select_all, selector_key, Fetched, SelectedData, Selection};
use crate::{Annotations, EngineOptions, QueryError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tsdb::{Db, Labels, Matcher, METRIC_NAME};

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

/// Group hash per (aggregation node, label set address), with the label set kept alive.
pub(crate) type GroupCache = rustc_hash::FxHashMap<(usize, usize), (Arc<Labels>, u64)>;

/// Subqueries without an explicit step use this (Prometheus's default evaluation interval).
pub(crate) const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// Where evaluation stops when out of time ("query timed out in query execution").
pub(crate) const EXEC_STAGE: &str = "query execution";

/// Samples an entry of the subquery cache costs beyond its samples (the map entry and vector).
const CACHE_ENTRY_COST: usize = 6;

/// The share of the sample limit the subquery cache may hold (1/4): past it the cache is emptied,
/// since it only saves work, never decides an answer.
const CACHE_SHARE_DIVISOR: usize = 4;

/// One query's evaluation: the selected data, the caches steps share, annotations and budget.
pub(crate) struct Evaluator<'q> {
    pub query: &'q str,
    pub start_ms: i64,
    pub end_ms: i64,
    pub lookback_ms: i64,
    fetched: SelectedData,
    pub annotations: RefCell<Annotations>,
    /// Samples held, deadline and cancellation (see `budget`).
    pub budget: QueryBudget,
    subquery_cache: RefCell<HashMap<(usize, i64), Val>>,
    /// Samples the subquery cache holds in `budget`.
    subquery_cache_cost: std::cell::Cell<usize>,
    /// `true` while evaluating a range query (some annotations only apply there).
    pub is_range: bool,
    /// Step of the range query (0 for an instant query).
    pub interval_ms: i64,
    /// Range-function results precomputed for every step of the range query, per call node.
    pub step_cache: RefCell<HashMap<usize, crate::calls::StepMatrix>>,
    /// Results of fused range aggregations for every step, per aggregation node, each moved out
    /// when its step asks for it (see `fused_range_aggregate`).
    pub fused_cache: RefCell<HashMap<usize, Vec<Option<Vec<Sample>>>>>,
    /// Group hashes of aggregation inputs by (aggregation node, label set address); the `Arc`
    /// held here keeps the address from being reused by another label set.
    pub group_cache: RefCell<GroupCache>,
    /// Which group label set owns each resolved group hash (see `aggregate`).
    pub group_owners: RefCell<crate::aggregate::GroupOwners>,
    /// Label sets derived from series' label sets, kept across a range query's steps.
    pub derived: RefCell<DerivedLabels>,
    /// `label_replace`'s compiled regular expression, per call node (its arguments' address).
    pub label_regexes: RefCell<rustc_hash::FxHashMap<usize, regex::Regex>>,
}

impl<'q> Evaluator<'q> {
    /// Plans the selectors of `expr` for evaluation at `start..=end` and selects their data;
    /// `cancel` stops the query from another thread.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        db: &Db,
        options: &EngineOptions,
        cancel: Option<&CancelHandle>,
        query: &'q str,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        extra: &[Matcher],
        is_range: bool,
    ) -> Result<Self, QueryError> {
        let started = Instant::now();
        let lookback_ms = options.lookback.as_millis() as i64;
        let budget = QueryBudget::new(options.max_samples, started + options.timeout, cancel.cloned());
        let fetched = select_all(db, options, expr, start_ms, end_ms, extra, &budget)?;
        Ok(Evaluator {
            query,
            start_ms,
            end_ms,
            lookback_ms,
            fetched,
            annotations: RefCell::new(Annotations::default()),
            budget,
            subquery_cache: RefCell::new(HashMap::new()),
            subquery_cache_cost: std::cell::Cell::new(0),
            is_range,
            interval_ms: 0,
            step_cache: RefCell::new(HashMap::new()),
            fused_cache: RefCell::new(HashMap::new()),
            group_cache: RefCell::new(rustc_hash::FxHashMap::default()),
            group_owners: RefCell::new(rustc_hash::FxHashMap::default()),
            derived: RefCell::new(DerivedLabels::default()),
            label_regexes: RefCell::new(rustc_hash::FxHashMap::default()),
        })
    }

    /// The annotations the evaluation produced; the selected data is released.
    pub fn into_annotations(self) -> Annotations {
        self.annotations.into_inner()
    }

    /// Fails once the query is out of time or cancelled (checked at every step).
    pub fn check_interrupted(&self) -> Result<(), QueryError> {
        self.budget.check(EXEC_STAGE)
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

    /// Where `t_ms` falls among a range query's steps: `(its step, the number of steps)`; `None`
    /// outside a range query or off its step grid (a subquery's inner times), where whole-range
    /// tables do not apply.
    pub(crate) fn range_step(&self, t_ms: i64) -> Option<(usize, usize)> {
        let offset = t_ms - self.start_ms;
        if !self.is_range || self.interval_ms <= 0 || offset < 0 || offset % self.interval_ms != 0 || t_ms > self.end_ms
        {
            return None;
        }
        let steps = ((self.end_ms - self.start_ms) / self.interval_ms + 1) as usize;
        Some(((offset / self.interval_ms) as usize, steps))
    }

    pub fn at_time(&self, at: Option<AtModifier>) -> Option<i64> {
        at.map(|a| resolve_at(a, self.start_ms, self.end_ms))
    }

    /// The series data selected for `selector`, decoded (now, if the selection kept them
    /// compressed).
    pub fn data(&self, selector: &VectorSelector) -> Result<&[Fetched], QueryError> {
        match self.selection(selector) {
            Some(selection) => selection.decoded(&self.budget),
            None => Ok(&[]),
        }
    }

    /// The series selected for `selector`, as selected (see [`Selection`]).
    pub fn selection(&self, selector: &VectorSelector) -> Option<&Selection> {
        self.fetched.get(&selector_key(selector))
    }

    /// Evaluates `expr` at `t_ms`, failing when its value would not fit beside what the query
    /// holds.
    pub fn eval(&self, expr: &Expr, t_ms: i64) -> Result<Val, QueryError> {
        let value = self.eval_node(expr, t_ms)?;
        if let Val::Vector(samples) = &value {
            self.budget.fits(samples.len())?;
        }
        Ok(value)
    }

    fn eval_node(&self, expr: &Expr, t_ms: i64) -> Result<Val, QueryError> {
        match &expr.kind {
            ExprKind::Number(v) => Ok(Val::Scalar(*v)),
            ExprKind::String(s) => Ok(Val::Str(s.clone())),
            ExprKind::Paren(inner) => self.eval(inner, t_ms),
            ExprKind::Vector(selector) => Ok(Val::Vector(self.instant_selector(selector, t_ms, |_, v| v)?)),
            ExprKind::Matrix { selector, range_ms } => {
                let ref_t = self.at_time(selector.at).unwrap_or(t_ms) - selector.offset_ms;
                let mut out = Vec::new();
                let mut points = 0usize;
                for (i, f) in self.data(selector)?.iter().enumerate() {
                    self.budget.check_item(i, EXEC_STAGE)?;
                    let window = f.window(ref_t - range_ms, ref_t);
                    if !window.is_empty() {
                        // The copy of each window is new memory beside the selected data.
                        points += window.len();
                        self.budget.fits(points)?;
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
    ) -> Result<Vec<Sample>, QueryError> {
        let ref_t = self.at_time(selector.at).unwrap_or(t_ms) - selector.offset_ms;
        let data = self.data(selector)?;
        let mut out = Vec::with_capacity(data.len());
        for f in data {
            let Some((ts, v)) = f.instant_point(ref_t, self.lookback_ms) else { continue };
            out.push(Sample { labels: f.labels.clone(), value: value(ts, v), drop_name: false });
        }
        Ok(out)
    }

    /// Evaluates a subquery at `t_ms`: the inner expression at every multiple of the step inside
    /// `(ref - range, ref]`. A subquery with more steps than the sample limit is refused before
    /// its first step; the points and series it gathers count against the budget as they grow.
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
        let steps = range_ms / step.max(1);
        if steps > self.budget.max_samples() as i64 {
            return Err(QueryError::Execution(format!(
                "subquery of {steps} steps (range {range_ms} ms / step {step} ms) exceeds the query sample limit of {}",
                self.budget.max_samples()
            )));
        }
        let ref_t = self.at_time(at).unwrap_or(t_ms) - offset_ms;
        let lo = ref_t - range_ms;
        let mut ti = lo.div_euclid(step) * step;
        if ti <= lo {
            ti += step;
        }
        // The inner steps' series come back as the same `Arc`s: found by address first.
        let mut positions = LabelSetPositions::default();
        let mut out: Vec<Series> = Vec::new();
        // What `out` holds, in samples: its points and each series' label set and headers.
        let mut gathered = 0usize;
        let key = inner as *const Expr as usize;
        while ti <= ref_t {
            self.check_interrupted()?;
            let cached = self.subquery_cache.borrow().get(&(key, ti)).cloned();
            let val = match cached {
                Some(v) => v,
                None => {
                    let v = self.eval(inner, ti)?;
                    self.cache_subquery_step(key, ti, &v);
                    v
                }
            };
            match val {
                Val::Vector(samples) => {
                    gathered += samples.len();
                    for s in samples {
                        match positions.position(&s.labels) {
                            Some(i) => {
                                out[i].points.push((ti, s.value));
                                out[i].drop_name |= s.drop_name;
                            }
                            None => {
                                gathered += SERIES_COST + crate::budget::labels_cost(&s.labels);
                                positions.insert(s.labels.clone(), out.len());
                                out.push(Series {
                                    labels: s.labels,
                                    points: vec![(ti, s.value)],
                                    drop_name: s.drop_name,
                                });
                            }
                        }
                    }
                    self.budget.fits(gathered)?;
                }
                Val::Scalar(v) => {
                    if out.is_empty() {
                        out.push(Series { labels: Arc::new(Labels::default()), points: Vec::new(), drop_name: false });
                    }
                    out[0].points.push((ti, v));
                    gathered += 1;
                    self.budget.fits(gathered)?;
                }
                _ => return Err(QueryError::Execution("subquery over a non-vector expression".into())),
            }
            ti += step;
        }
        Ok(out)
    }

    /// Keeps a subquery step's value for later steps of the query when it fits in the cache's
    /// share of the budget; a full cache is emptied first.
    fn cache_subquery_step(&self, key: usize, ti: i64, value: &Val) {
        let cost = CACHE_ENTRY_COST
            + match value {
                Val::Vector(samples) => samples.len(),
                _ => 1,
            };
        let share = self.budget.max_samples() / CACHE_SHARE_DIVISOR;
        let held = self.subquery_cache_cost.get();
        if held + cost > share {
            self.subquery_cache.borrow_mut().clear();
            self.budget.release(held);
            self.subquery_cache_cost.set(0);
            if cost > share {
                return;
            }
        }
        if self.budget.try_hold(cost) {
            self.subquery_cache.borrow_mut().insert((key, ti), value.clone());
            self.subquery_cache_cost.set(self.subquery_cache_cost.get() + cost);
        }
    }
}

/// Samples a series of a gathered result costs beyond its points and labels: its entry in the
/// result and in the index by labels (with the maps' spare room) and its points' allocation,
/// about 190 bytes.
pub(crate) const SERIES_COST: usize = 12;

/// Position of an aggregation's parameter (annotations about it point there).
fn param_pos(expr: &Expr) -> usize {
    match &expr.kind {
        ExprKind::Aggregate { param: Some(p), .. } => p.pos,
        _ => expr.pos,
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
/// removed, so the duplicate check can be skipped unless removing a name changed a label set: a
/// grouping aggregation's groups are distinct; a selector picks each series the store holds once;
/// a vector compared with or combined with a number keeps its label sets.
pub(crate) fn distinct_by_construction(expr: &Expr) -> bool {
    match &expr.unparen().kind {
        ExprKind::Aggregate { op, .. } => op.is_plain_fold() || *op == AggOp::Quantile,
        ExprKind::Vector(_) => true,
        ExprKind::Neg(inner) => distinct_by_construction(inner),
        ExprKind::Binary { lhs, rhs, .. } => match (&lhs.unparen().kind, &rhs.unparen().kind) {
            (ExprKind::Number(_), _) => distinct_by_construction(rhs),
            (_, ExprKind::Number(_)) => distinct_by_construction(lhs),
            _ => false,
        },
        _ => false,
    }
}

/// Label sets derived from a series' label set by a fixed rule (without the metric name, without
/// `le`, relabelled), kept across a range query's steps by the rule and the address of the label
/// set each came from. A series' label set comes back as the same `Arc` at every step, so its
/// derived set is made once and comes back as the same `Arc` too (found by address, not hashed,
/// where steps are grouped or gathered). Equal sets the table makes are one `Arc`, so copies
/// without the name are equal exactly when their addresses are (a set a rule leaves as it was
/// stays its source's).
///
/// Only label sets something else holds beyond the step are kept (a set made for one step would
/// only grow the table), at most [`DERIVED_LABELS_MAX`]; the functions that keep a set hold it in
/// the query's budget (a copy without the name is the one the range query's answer holds).
#[derive(Default)]
pub(crate) struct DerivedLabels {
    /// By rule and the source's address: the source (held, so no other label set can take its
    /// address while it is here) and the set derived from it.
    by_source: rustc_hash::FxHashMap<(usize, usize), (Arc<Labels>, Arc<Labels>)>,
    /// Every derived set, so equal ones are shared.
    derived: LabelSet<Arc<Labels>>,
    /// Rules that derived a set equal to one kept before: two of their sources may have one
    /// derived set (see [`DerivedLabels::may_repeat`]).
    repeating_rules: rustc_hash::FxHashSet<usize>,
}

/// Label sets a [`DerivedLabels`] keeps at most (one per series and rule of the query).
const DERIVED_LABELS_MAX: usize = 1 << 20;

/// The rule of [`DerivedLabels`] that removes the metric name (other rules are the addresses of
/// the expression nodes that derive label sets, never 0).
const WITHOUT_NAME_RULE: usize = 0;

impl DerivedLabels {
    /// `derive(labels)` under `rule` (the same rule always derives the same set from the same
    /// labels), and whether the result is one this table keeps.
    pub(crate) fn derive(
        &mut self,
        rule: usize,
        labels: &Arc<Labels>,
        derive: impl FnOnce(&Labels) -> Labels,
    ) -> (Arc<Labels>, bool) {
        match self.get(rule, labels) {
            Some(derived) => (derived, true),
            None => self.insert(rule, labels, derive(labels)),
        }
    }

    /// The set derived from `labels` under `rule` before, if kept.
    pub(crate) fn get(&self, rule: usize, labels: &Arc<Labels>) -> Option<Arc<Labels>> {
        self.by_source.get(&(rule, Arc::as_ptr(labels) as usize)).map(|(_, derived)| derived.clone())
    }

    /// Keeps `derived` as what `rule` derives from `labels` (when `labels` outlives the step)
    /// and returns it, shared with an equal set kept before; and whether it is kept.
    pub(crate) fn insert(&mut self, rule: usize, labels: &Arc<Labels>, derived: Labels) -> (Arc<Labels>, bool) {
        // Only the caller's `labels` holds the source: it lives for this step only.
        if Arc::strong_count(labels) == 1 || self.by_source.len() >= DERIVED_LABELS_MAX {
            return (Arc::new(derived), false);
        }
        let derived = match self.derived.get(&derived) {
            Some(shared) => {
                self.repeating_rules.insert(rule);
                shared.clone()
            }
            None => {
                let derived = Arc::new(derived);
                self.derived.insert(derived.clone());
                derived
            }
        };
        self.by_source.insert((rule, Arc::as_ptr(labels) as usize), (labels.clone(), derived.clone()));
        (derived, true)
    }

    /// Whether two sources may have one kept set under `rule`. When not, the sets `rule` keeps
    /// for a step's distinct series are distinct too, and need no duplicate check.
    pub(crate) fn may_repeat(&self, rule: usize) -> bool {
        self.repeating_rules.contains(&rule)
    }

    /// Keeps `labels` as what `rule` derives from them (the rule leaves them as they are), when
    /// they outlive the step.
    pub(crate) fn insert_unchanged(&mut self, rule: usize, labels: &Arc<Labels>) {
        if Arc::strong_count(labels) > 1 && self.by_source.len() < DERIVED_LABELS_MAX {
            self.by_source.insert((rule, Arc::as_ptr(labels) as usize), (labels.clone(), labels.clone()));
        }
    }
}

/// Removes `__name__` where a step's samples asked for it and checks the label sets are unique
/// (`distinct`: they were unique before any name was removed, see [`distinct_by_construction`]).
/// A range query passes the label sets it keeps across steps.
pub(crate) fn finish_step(
    samples: Vec<Sample>,
    distinct: bool,
    mut derived: Option<&mut DerivedLabels>,
) -> Result<Vec<(Arc<Labels>, f64)>, QueryError> {
    let mut out = Vec::with_capacity(samples.len());
    let mut any_renamed = false;
    // Whether every label set is a kept copy (equal copies share one `Arc`).
    let mut all_kept = true;
    for s in samples {
        let labels = if s.drop_name && s.labels.iter().any(|l| is_name_label(&l.name)) {
            any_renamed = true;
            match derived.as_deref_mut() {
                Some(derived) => {
                    let (copy, kept) = derived.derive(WITHOUT_NAME_RULE, &s.labels, without_name);
                    all_kept &= kept;
                    copy
                }
                None => {
                    all_kept = false;
                    Arc::new(without_name(&s.labels))
                }
            }
        } else {
            all_kept = false;
            s.labels
        };
        out.push((labels, s.value));
    }
    if !distinct || any_renamed {
        check_unique_label_sets(out.iter().map(|(labels, _)| labels), all_kept)?;
    }
    Ok(out)
}

/// Refuses a step's vector that holds a label set twice, as Prometheus does. `all_interned`:
/// every set is one a [`DerivedLabels`] made, and equal ones share one `Arc`, so addresses are
/// compared instead of the label sets.
pub(crate) fn check_unique_label_sets<'a>(
    label_sets: impl ExactSizeIterator<Item = &'a Arc<Labels>>,
    all_interned: bool,
) -> Result<(), QueryError> {
    let len = label_sets.len();
    if len < 2 {
        return Ok(());
    }
    let repeated = if all_interned {
        let mut seen: rustc_hash::FxHashSet<usize> =
            rustc_hash::FxHashSet::with_capacity_and_hasher(len, Default::default());
        label_sets.into_iter().any(|labels| !seen.insert(Arc::as_ptr(labels) as usize))
    } else {
        let mut seen: LabelSet<&Labels> = LabelSet::with_capacity_and_hasher(len, Default::default());
        label_sets.into_iter().any(|labels| !seen.insert(&**labels))
    };
    match repeated {
        true => Err(QueryError::Execution("vector cannot contain metrics with the same labelset".into())),
        false => Ok(()),
    }
}
