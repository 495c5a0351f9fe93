//! `aggregate` is PromQL's aggregation operators over one step's vector (`sum avg min max count
//! group stddev stdvar topk bottomk quantile count_values` with `by`/`without`).
//!
//! Groups are found by hashing the grouping labels in place (with the engine's keyed label hash,
//! see `label_keys`), so a sample costs a hash and a map probe, never an allocation; a group's
//! label set is built once, when the group first appears.

use crate::ast::{AggOp, Expr, ExprKind, ValueType};
use crate::budget::{labels_cost, QueryBudget};
use crate::eval::{Evaluator, Sample, Val, EXEC_STAGE};
use crate::mathfns::Point;
use crate::mathfns::{kahan_inc, quantile};
use crate::select::{Fetched, PointsWalk};
use crate::QueryError;
use rustc_hash::FxHashMap as HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tsdb::{Labels, METRIC_NAME};

struct Group {
    labels: Arc<Labels>,
    drop_name: bool,
    fold: Fold,
    /// Every value, for `quantile`.
    values: Vec<f64>,
}

/// The running state of one group's aggregation at one step, without its labels: what
/// [`Fold::add`] updates for every operator but `quantile` (which also keeps the values).
#[derive(Clone, Copy, Default)]
struct Fold {
    count: f64,
    value: f64,
    kahan_c: f64,
    mean: f64,
    incremental_mean: bool,
}

#[inline]
fn in_group(name: &str, grouping: &[String], without: bool) -> bool {
    let listed = grouping.iter().any(|g| g == name);
    if without {
        !listed && !crate::eval::is_name_label(name)
    } else {
        listed
    }
}

fn group_hash(labels: &Labels, grouping: &[String], without: bool) -> u64 {
    let mut h = crate::label_keys::label_hasher();
    for l in labels.iter() {
        if in_group(&l.name, grouping, without) {
            l.name.hash(&mut h);
            l.value.hash(&mut h);
        }
    }
    h.finish()
}

/// Groups an instant aggregation reserves room for up front at most.
const EXPECTED_GROUPS_MAX: usize = 1 << 12;

/// The group label set that owns each resolved group hash, per aggregation node.
pub(crate) type GroupOwners = HashMap<(usize, u64), Arc<Labels>>;

/// The hash to try after `h` was found taken by a different group.
#[inline]
fn next_probe(h: u64) -> u64 {
    h.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1)
}

/// The group hash of `labels`, moved past any hash already owned by a different group.
fn resolve_group(
    node: usize,
    labels: &Arc<Labels>,
    grouping: &[String],
    without: bool,
    owners: &mut GroupOwners,
) -> u64 {
    let mut h = group_hash(labels, grouping, without);
    loop {
        match owners.get(&(node, h)) {
            None => {
                owners.insert((node, h), group_labels_shared(labels, grouping, without));
                return h;
            }
            Some(owner) if is_group_of(owner, labels, grouping, without) => return h,
            Some(_) => h = next_probe(h),
        }
    }
}

fn group_labels(labels: &Labels, grouping: &[String], without: bool) -> Labels {
    Labels::from_sorted(labels.iter().filter(|l| in_group(&l.name, grouping, without)).cloned().collect())
}

/// The group label set of a sample's `labels`: the sample's own set, shared, when every label
/// of it is a grouping label (`by (pod)` over series selected down to `pod`), else a new one.
fn group_labels_shared(labels: &Arc<Labels>, grouping: &[String], without: bool) -> Arc<Labels> {
    if labels.iter().all(|l| in_group(&l.name, grouping, without)) {
        labels.clone()
    } else {
        Arc::new(group_labels(labels, grouping, without))
    }
}

/// Whether `group` is the group label set of a sample's `labels`.
fn is_group_of(group: &Arc<Labels>, labels: &Arc<Labels>, grouping: &[String], without: bool) -> bool {
    Arc::ptr_eq(group, labels) || group.iter().eq(labels.iter().filter(|l| in_group(&l.name, grouping, without)))
}

/// Aggregates `input` by `op`. `param` is the evaluated parameter of topk/bottomk/quantile/
/// count_values; `param_pos` is where it is written (for the warning about bad quantiles).
#[allow(clippy::too_many_arguments)]
pub(crate) fn aggregate(
    ev: &Evaluator<'_>,
    op: AggOp,
    param: Option<Val>,
    input: Vec<Sample>,
    grouping: &[String],
    without: bool,
    node: usize,
    param_pos: usize,
) -> Result<Val, QueryError> {
    let scalar_param = match &param {
        Some(Val::Scalar(v)) => Some(*v),
        _ => None,
    };
    match op {
        AggOp::Topk | AggOp::Bottomk => {
            let k = scalar_param.unwrap_or(f64::NAN);
            if k.is_nan() {
                return Err(QueryError::Execution("Parameter value is NaN".into()));
            }
            if k >= 9.2e18 || k <= -9.2e18 {
                return Err(QueryError::Execution(format!("Scalar value {} overflows int64", crate::format_value(k))));
            }
            let k = k as i64;
            if k < 1 {
                return Ok(Val::Vector(Vec::new()));
            }
            return Ok(Val::Vector(top_bottom(input, k as usize, op == AggOp::Topk, grouping, without)));
        }
        AggOp::CountValues => {
            let Some(Val::Str(label)) = param else {
                return Err(QueryError::Execution("count_values needs a string parameter".into()));
            };
            return count_values(&ev.budget, input, &label, grouping, without).map(Val::Vector);
        }
        AggOp::Quantile => {
            let q = scalar_param.unwrap_or(f64::NAN);
            if !(0.0..=1.0).contains(&q) {
                ev.warn(
                    param_pos,
                    &format!("quantile value should be between 0 and 1, got {}", crate::format_value(q)),
                );
            }
        }
        _ => {}
    }
    // Sized for one group per sample (`by (pod)` over pods, the adapter's shape), up to a bound so
    // `sum(x)` over a million series does not reserve a million groups.
    let expected_groups = input.len().min(EXPECTED_GROUPS_MAX);
    let mut index: HashMap<u64, usize> = HashMap::with_capacity_and_hasher(expected_groups, Default::default());
    let mut groups: Vec<Group> = Vec::with_capacity(expected_groups);
    if ev.is_range {
        // Range queries meet the same label sets at every step: remember their group hashes,
        // each resolved against the group label set that owns it across steps.
        let mut cache = ev.group_cache.borrow_mut();
        let mut owners = ev.group_owners.borrow_mut();
        for (i, s) in input.into_iter().enumerate() {
            ev.budget.check_item(i, EXEC_STAGE)?;
            let key = (node, Arc::as_ptr(&s.labels) as usize);
            let h = match cache.get(&key) {
                Some((_, h)) => *h,
                None => {
                    let h = resolve_group(node, &s.labels, grouping, without, &mut owners);
                    cache.insert(key, (s.labels.clone(), h));
                    h
                }
            };
            let gi = *index.entry(h).or_insert_with(|| {
                let labels = match owners.get(&(node, h)) {
                    Some(l) => l.clone(),
                    None => group_labels_shared(&s.labels, grouping, without),
                };
                groups.push(Group::new(labels));
                groups.len() - 1
            });
            let g = &mut groups[gi];
            g.drop_name |= s.drop_name;
            accumulate(op, g, s.value);
        }
    } else {
        // One step: a hash taken by another group's label set moves on to the next hash, so a
        // collision never merges two groups.
        for (i, s) in input.into_iter().enumerate() {
            ev.budget.check_item(i, EXEC_STAGE)?;
            let mut h = group_hash(&s.labels, grouping, without);
            let gi = loop {
                match index.get(&h) {
                    None => {
                        index.insert(h, groups.len());
                        groups.push(Group::new(group_labels_shared(&s.labels, grouping, without)));
                        break groups.len() - 1;
                    }
                    Some(&gi) if is_group_of(&groups[gi].labels, &s.labels, grouping, without) => break gi,
                    Some(_) => h = next_probe(h),
                }
            };
            let g = &mut groups[gi];
            g.drop_name |= s.drop_name;
            accumulate(op, g, s.value);
        }
    }
    let q = scalar_param.unwrap_or(f64::NAN);
    Ok(Val::Vector(groups.into_iter().map(|g| g.finish(op, q)).collect()))
}

impl Group {
    fn new(labels: Arc<Labels>) -> Group {
        Group { labels, drop_name: false, fold: Fold::default(), values: Vec::new() }
    }

    /// The group's output sample (`q`: the quantile parameter).
    fn finish(mut self, op: AggOp, q: f64) -> Sample {
        let value = match op {
            AggOp::Quantile => quantile(q, &mut self.values),
            _ => self.fold.result(op),
        };
        let drop_name = self.drop_name && self.labels.get(METRIC_NAME).is_some();
        Sample { labels: self.labels, value, drop_name }
    }
}

impl Evaluator<'_> {
    /// `op by/without (…) (f(selector[r]))` or `op by/without (…) (selector)` at a step of a
    /// range query, for the aggregations without a parameter: the per-series values of every
    /// step come from the call's step table (or, for a plain selector, from each series' newest
    /// sample in the lookback window, as step-by-step selection picks it), each series' group
    /// is resolved once, and the groups of every step are accumulated in one pass, in the same
    /// series order as step-by-step evaluation (so sums round the same way). The result of each
    /// step is kept for the query; `None` when the shape does not apply.
    pub(crate) fn fused_range_aggregate(
        &self,
        node: usize,
        op: AggOp,
        inner: &Expr,
        grouping: &[String],
        without: bool,
        t_ms: i64,
    ) -> Result<Option<Val>, QueryError> {
        let fused = FusedAggregate { node, op, grouping, without };
        Ok(match self.fused(&fused, inner, t_ms, Want::Step)? {
            Some(Folded::Step(step)) => step,
            Some(Folded::Series(_)) | None => None,
        })
    }

    /// A range query's whole answer when `expr` is an aggregation [`fused_range_aggregate`]
    /// folds: each group's points, gathered by the fold itself rather than from a vector per
    /// step. `None` when the shape does not apply (the query then goes step by step).
    ///
    /// [`fused_range_aggregate`]: Evaluator::fused_range_aggregate
    pub(crate) fn fused_range_series(&self, expr: &Expr) -> Result<Option<GroupSeries>, QueryError> {
        let ExprKind::Aggregate { op, param: None, expr: inner, grouping, without } = &expr.unparen().kind else {
            return Ok(None);
        };
        let node = expr.unparen() as *const Expr as usize;
        let fused = FusedAggregate { node, op: *op, grouping, without: *without };
        Ok(match self.fused(&fused, inner, self.start_ms, Want::Series)? {
            Some(Folded::Series(series)) => Some(series),
            Some(Folded::Step(_)) | None => None,
        })
    }

    /// The fused aggregation `fused` of `inner`: step `t_ms`'s vector or every group's points,
    /// as `want` asks; `None` when the shape does not apply.
    fn fused(
        &self,
        fused: &FusedAggregate<'_>,
        inner: &Expr,
        t_ms: i64,
        want: Want,
    ) -> Result<Option<Folded>, QueryError> {
        if !fused.op.is_plain_fold() {
            return Ok(None);
        }
        match &inner.unparen().kind {
            ExprKind::Call { func, args } => {
                let [arg] = args.as_slice() else { return Ok(None) };
                if func.arg_types.first() != Some(&ValueType::Matrix) {
                    return Ok(None);
                }
                let Some(step) = self.precompute_range_steps(func, arg, 0, [f64::NAN; 2], t_ms)? else {
                    return Ok(None);
                };
                if want == Want::Step {
                    if let Some(kept) = self.take_fused_step(fused.node, step) {
                        return Ok(Some(Folded::Step(kept)));
                    }
                }
                let ExprKind::Matrix { selector, .. } = &arg.unparen().kind else { return Ok(None) };
                let Some(selection) = self.selection(selector) else { return Ok(None) };
                let step_cache = self.step_cache.borrow();
                let Some(m) = step_cache.get(&(arg as *const Expr as usize)) else { return Ok(None) };
                let labels = (0..selection.len()).map_while(|i| selection.labels(i).map(|(labels, _)| labels));
                let drop_name = !func.keeps_metric_name();
                self.fold_steps(fused, labels, m.steps, drop_name, want.step(step), &MatrixSteps(m))
            }
            ExprKind::Vector(selector) => {
                let Some((step, steps)) = self.range_step(t_ms) else { return Ok(None) };
                if want == Want::Step {
                    if let Some(kept) = self.take_fused_step(fused.node, step) {
                        return Ok(Some(Folded::Step(kept)));
                    }
                }
                let data = self.data(selector)?;
                let at = self.at_time(selector.at);
                let labels = data.iter().map(|series| &series.labels);
                let source = SelectorSteps {
                    data: data.iter().map(Fetched::walk).collect(),
                    start_ms: self.start_ms,
                    interval_ms: self.interval_ms,
                    at_ms: at,
                    offset_ms: selector.offset_ms,
                    lookback_ms: self.lookback_ms,
                };
                self.fold_steps(fused, labels, steps, false, want.step(step), &source)
            }
            _ => Ok(None),
        }
    }

    /// Accumulates every step of a fused aggregation: `labels` are the input series' label sets
    /// in series order, `source` gives their values a block of steps at a time. With a `step`,
    /// keeps every step's result in `fused_cache` and returns that step's; without, returns
    /// every group's points. `None` (step by step instead) when the table would not fit, or
    /// when the groups' points would need their metric name dropped.
    ///
    /// Steps are folded a block at a time, as many as [`FOLD_BLOCK_FOLDS`] and
    /// [`FOLD_BLOCK_VALUES`] allow (every step of a range query over 1000 groups and 10k series):
    /// a series' points are then walked once per block instead of once per step, and each of its
    /// values goes to the next fold of its group's row; going step by step over thousands of
    /// series missed the cache at every series. Each step's groups still receive their values in
    /// series order and appear in the order of their first series, so every bit is as before.
    /// Consecutive ranges of steps are folded on the cores at once (a step's fold never needs
    /// another step's).
    fn fold_steps<'l, S: StepValues>(
        &self,
        fused: &FusedAggregate<'_>,
        labels: impl Iterator<Item = &'l Arc<Labels>>,
        steps: usize,
        drop_name: bool,
        step: Option<usize>,
        source: &S,
    ) -> Result<Option<Folded>, QueryError> {
        let FusedAggregate { node, op, grouping, without } = *fused;
        // Each series' group, resolved once.
        let mut owners = GroupOwners::default();
        let mut group_of_hash: HashMap<u64, u32> = HashMap::default();
        let mut group_labels: Vec<Arc<Labels>> = Vec::new();
        let mut series_group: Vec<u32> = Vec::new();
        for labels in labels {
            let h = resolve_group(node, labels, grouping, without, &mut owners);
            let next = group_labels.len() as u32;
            let gi = *group_of_hash.entry(h).or_insert(next);
            if gi == next {
                let owned = owners.get(&(node, h)).cloned();
                group_labels.push(owned.unwrap_or_else(|| group_labels_shared(labels, grouping, without)));
            }
            series_group.push(gi);
        }
        if steps.saturating_mul(group_labels.len()) > crate::calls::MAX_PRECOMPUTED_POINTS {
            return Ok(None);
        }
        // A group's output drops `__name__` when the function drops it and the group has one.
        let drops_name: Vec<bool> =
            group_labels.iter().map(|labels| drop_name && labels.get(METRIC_NAME).is_some()).collect();
        if step.is_none() && drops_name.contains(&true) {
            return Ok(None);
        }
        let groups = FoldGroups { op, series_group, labels: group_labels, drops_name };
        // The table keeps a value per group and step for the rest of the query; without room
        // for it the aggregation goes step by step instead.
        let table_cost = steps.saturating_mul(groups.labels.len().max(1));
        if !self.budget.try_hold(table_cost) {
            return Ok(None);
        }
        // Parts of the steps on several cores when there is enough to fold, and (for vectors
        // per step, whose samples each hold their group's label set) enough values per group
        // that the label sets' shared counts are not what the parts contend on.
        let values = groups.series_group.len().saturating_mul(steps);
        let per_group_enough =
            step.is_none() || groups.series_group.len() >= PARALLEL_FOLD_SERIES_PER_GROUP * groups.labels.len();
        let parallel_from = if values >= PARALLEL_FOLD_MIN_VALUES && per_group_enough { 2 } else { usize::MAX };
        let budget = &self.budget;
        match step {
            Some(step) => {
                let parts = crate::parallel::in_ranges(steps, parallel_from, "aggregation", |range| {
                    let first = range.start;
                    let mut results: Vec<Vec<Sample>> = (0..range.len()).map(|_| Vec::new()).collect();
                    groups.fold(source, range, steps, budget, |k, gi, value| {
                        if let Some(step_results) = results.get_mut(k - first) {
                            step_results.push(Sample {
                                labels: groups.labels[gi].clone(),
                                value,
                                drop_name: groups.drops_name[gi],
                            });
                        }
                    })?;
                    Ok(results)
                });
                let mut results: Vec<Option<Vec<Sample>>> = Vec::with_capacity(steps);
                for part in parts {
                    results.extend(part?.into_iter().map(Some));
                }
                let out = results.get_mut(step).and_then(Option::take).map(Val::Vector);
                self.fused_cache.borrow_mut().insert(node, results);
                Ok(Some(Folded::Step(out)))
            }
            None => {
                let (start_ms, interval_ms) = (self.start_ms, self.interval_ms);
                let parts = crate::parallel::in_ranges(steps, parallel_from, "aggregation", |range| {
                    let mut points: Vec<Vec<Point>> = (0..groups.labels.len()).map(|_| Vec::new()).collect();
                    groups.fold(source, range, steps, budget, |k, gi, value| {
                        points[gi].push((start_ms + k as i64 * interval_ms, value));
                    })?;
                    Ok(points)
                });
                let mut parts = parts.into_iter();
                let mut points = match parts.next() {
                    Some(first) => first?,
                    None => Vec::new(),
                };
                for part in parts {
                    for (group_points, more) in points.iter_mut().zip(part?) {
                        group_points.extend(more);
                    }
                }
                let series = groups.labels.into_iter().zip(points).filter(|(_, points)| !points.is_empty()).collect();
                Ok(Some(Folded::Series(series)))
            }
        }
    }

    /// Step `step` of the fused aggregation `node` computed before, moved out: a range query
    /// asks for each step once. `Some(None)` when it was asked for already (the step is then
    /// evaluated on its own); `None` when nothing was computed for `node`.
    fn take_fused_step(&self, node: usize, step: usize) -> Option<Option<Val>> {
        let mut cache = self.fused_cache.borrow_mut();
        let steps = cache.get_mut(&node)?;
        Some(steps.get_mut(step).and_then(Option::take).map(Val::Vector))
    }
}

/// What a fused aggregation is asked for: one step's vector (every step's kept for the query),
/// or every group's points at once (the aggregation is the range query's whole expression).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Step,
    Series,
}

impl Want {
    /// The step whose vector [`Evaluator::fold_steps`] is asked for: `step` for [`Want::Step`],
    /// none for [`Want::Series`].
    fn step(self, step: usize) -> Option<usize> {
        (self == Want::Step).then_some(step)
    }
}

/// Every group of a fused aggregation with a value at some step: its label set and its points.
pub(crate) type GroupSeries = Vec<(Arc<Labels>, Vec<Point>)>;

/// What a fused aggregation gives back (see [`Want`]).
enum Folded {
    /// The step's vector; `None` when it was taken already.
    Step(Option<Val>),
    /// Every group with a value at some step: its label set and its points.
    Series(GroupSeries),
}

/// Values a fused aggregation folds (steps × series) before its steps are split over the cores.
const PARALLEL_FOLD_MIN_VALUES: usize = 1 << 19;
/// Input series per group (on average) below which a fold that makes a vector per step stays
/// on one core: each of its samples clones its group's label set, and parts cloning the same
/// sets from two cores would spend more on the shared counts than they save.
const PARALLEL_FOLD_SERIES_PER_GROUP: usize = 8;

/// Folds a block may hold at once (steps × groups; 40 bytes each, about 10 MB) over all the
/// parts folding at once: past it, blocks are shorter, down to one step, so the fold never
/// holds much more than one step's groups beyond its table.
const FOLD_BLOCK_FOLDS: usize = 1 << 18;
/// Values a block may fold (steps × series, some tens of milliseconds of work): past it, blocks
/// are shorter, so the query's deadline and cancellation are checked between them that often.
const FOLD_BLOCK_VALUES: usize = 1 << 23;

/// The groups of a fused aggregation: its operator, each input series' group, and each
/// group's label set and whether its output drops the metric name.
struct FoldGroups {
    op: AggOp,
    series_group: Vec<u32>,
    labels: Vec<Arc<Labels>>,
    drops_name: Vec<bool>,
}

impl FoldGroups {
    /// Folds the steps `range` of a query of `steps` steps, a block at a time: calls
    /// `emit(step, group, value)` for every group with a value at each step, steps in order and
    /// a step's groups in the order of their first series.
    fn fold<S: StepValues>(
        &self,
        source: &S,
        range: std::ops::Range<usize>,
        steps: usize,
        budget: &QueryBudget,
        mut emit: impl FnMut(usize, usize, f64),
    ) -> Result<(), QueryError> {
        let op = self.op;
        let group_count = self.labels.len();
        // The parts folding at once share the block budget.
        let parts = steps.div_ceil(range.len().max(1)).max(1);
        // A block's folds, laid out in the order the source gives values (series by series: a
        // group's steps side by side; step by step: a step's groups side by side), and per step
        // the groups with a value, in the order of their first series.
        let block_steps = (FOLD_BLOCK_FOLDS / parts / group_count.max(1))
            .min(FOLD_BLOCK_VALUES / self.series_group.len().max(1))
            .clamp(1, range.len().max(1));
        let mut folds: Vec<Fold> = vec![Fold::default(); group_count.saturating_mul(block_steps)];
        let mut order: Vec<Vec<u32>> = (0..block_steps).map(|_| Vec::new()).collect();
        let fold_at = |gi: usize, b: usize| if S::SERIES_MAJOR { gi * block_steps + b } else { b * group_count + gi };
        let mut cursor = source.cursor();
        for block_start in range.clone().step_by(block_steps) {
            budget.check(EXEC_STAGE)?;
            let block = block_start..(block_start + block_steps).min(range.end);
            source.values_in(&mut cursor, block.clone(), |k, i, value| {
                let Some(&gi) = self.series_group.get(i) else { return };
                let Some(b) = k.checked_sub(block_start).filter(|b| *b < block_steps) else { return };
                let Some(fold) = folds.get_mut(fold_at(gi as usize, b)) else { return };
                if fold.count == 0.0 {
                    order[b].push(gi);
                }
                fold.add(op, value);
            });
            for (b, step_order) in order.iter_mut().enumerate().take(block.len()) {
                for gi in step_order.drain(..) {
                    let gi = gi as usize;
                    // Taken, so the block after this one starts from empty folds.
                    let fold = std::mem::take(&mut folds[fold_at(gi, b)]);
                    emit(block_start + b, gi, fold.result(op));
                }
            }
        }
        Ok(())
    }
}

/// The input of a fused aggregation, a block of steps at a time (generic, so the fold's
/// per-value work is inlined into the walk). Shared by the parts folding at once, each with a
/// cursor of its own.
trait StepValues: Sync {
    /// Whether [`StepValues::values_in`] goes series by series (each series over the block's
    /// steps) rather than step by step: the fold lays its table out in the same order.
    const SERIES_MAJOR: bool;

    /// Where one walk over the steps is (its blocks come in step order).
    type Cursor;

    /// A cursor for a walk starting at any step.
    fn cursor(&self) -> Self::Cursor;

    /// Calls `each(step, series, value)` for every series with a value at each step of `block`,
    /// in series order within each step (steps may interleave).
    fn values_in(&self, cursor: &mut Self::Cursor, block: std::ops::Range<usize>, each: impl FnMut(usize, usize, f64));
}

/// A range function's values, already computed for every step.
struct MatrixSteps<'m>(&'m crate::calls::StepMatrix);

impl StepValues for MatrixSteps<'_> {
    const SERIES_MAJOR: bool = false;
    type Cursor = ();

    fn cursor(&self) {}

    fn values_in(&self, _: &mut (), block: std::ops::Range<usize>, mut each: impl FnMut(usize, usize, f64)) {
        for k in block {
            self.0.for_each_at(k, |i, value| each(k, i, value));
        }
    }
}

/// What an instant vector selector picks at each step: series by series, each walking its
/// points once over the block's steps.
struct SelectorSteps<'d> {
    data: Vec<PointsWalk<'d>>,
    start_ms: i64,
    interval_ms: i64,
    at_ms: Option<i64>,
    offset_ms: i64,
    lookback_ms: i64,
}

impl StepValues for SelectorSteps<'_> {
    const SERIES_MAJOR: bool = true;
    /// Per series, its cursor for [`PointsWalk::instant_point`].
    type Cursor = Vec<usize>;

    fn cursor(&self) -> Vec<usize> {
        vec![0; self.data.len()]
    }

    fn values_in(
        &self,
        cursors: &mut Vec<usize>,
        block: std::ops::Range<usize>,
        mut each: impl FnMut(usize, usize, f64),
    ) {
        for (i, (series, end)) in self.data.iter().zip(cursors.iter_mut()).enumerate() {
            for k in block.clone() {
                let t = self.start_ms + k as i64 * self.interval_ms;
                let ref_t = self.at_ms.unwrap_or(t) - self.offset_ms;
                if let Some((_, value)) = series.instant_point(end, ref_t, self.lookback_ms) {
                    each(k, i, value);
                }
            }
        }
    }
}

/// What a fused aggregation computes: the aggregation node, its operator and grouping.
#[derive(Clone, Copy)]
struct FusedAggregate<'g> {
    node: usize,
    op: AggOp,
    grouping: &'g [String],
    without: bool,
}

#[inline]
fn accumulate(op: AggOp, g: &mut Group, v: f64) {
    g.fold.add(op, v);
    if op == AggOp::Quantile {
        g.values.push(v);
    }
}

impl Fold {
    /// Takes `v` into the fold (`quantile` only counts it: its values are the group's).
    #[inline]
    fn add(&mut self, op: AggOp, v: f64) {
        self.count += 1.0;
        let first = self.count == 1.0;
        match op {
            AggOp::Sum => {
                if first {
                    self.value = v;
                } else {
                    (self.value, self.kahan_c) = kahan_inc(v, self.value, self.kahan_c);
                }
            }
            AggOp::Avg => {
                if first {
                    self.value = v;
                    self.mean = v;
                    return;
                }
                if !self.incremental_mean {
                    let (new_v, new_c) = kahan_inc(v, self.value, self.kahan_c);
                    if !new_v.is_infinite() {
                        (self.value, self.kahan_c) = (new_v, new_c);
                        return;
                    }
                    // The running sum would overflow: continue as an incremental mean.
                    self.incremental_mean = true;
                    self.mean = self.value / (self.count - 1.0);
                    self.kahan_c /= self.count - 1.0;
                }
                if self.mean.is_infinite() {
                    if v.is_infinite() && (self.mean > 0.0) == (v > 0.0) {
                        return;
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        return;
                    }
                }
                let current = self.mean + self.kahan_c;
                (self.mean, self.kahan_c) = kahan_inc(v / self.count - current / self.count, self.mean, self.kahan_c);
            }
            AggOp::Min => {
                if first || self.value > v || self.value.is_nan() {
                    self.value = v;
                }
            }
            AggOp::Max => {
                if first || self.value < v || self.value.is_nan() {
                    self.value = v;
                }
            }
            AggOp::Stddev | AggOp::Stdvar => {
                if first {
                    self.mean = v;
                    self.value = if v.is_finite() { 0.0 } else { f64::NAN };
                    return;
                }
                let delta = v - self.mean;
                self.mean += delta / self.count;
                self.value += delta * (v - self.mean);
            }
            AggOp::Count | AggOp::Group | AggOp::Quantile | AggOp::Topk | AggOp::Bottomk | AggOp::CountValues => {}
        }
    }

    /// The aggregate so far, for every operator but `quantile`.
    #[inline]
    fn result(&self, op: AggOp) -> f64 {
        match op {
            AggOp::Sum => self.value + self.kahan_c,
            AggOp::Avg if self.incremental_mean => self.mean + self.kahan_c,
            AggOp::Avg => (self.value + self.kahan_c) / self.count,
            AggOp::Min | AggOp::Max => self.value,
            AggOp::Count => self.count,
            AggOp::Group => 1.0,
            AggOp::Stdvar => self.value / self.count,
            AggOp::Stddev => (self.value / self.count).sqrt(),
            AggOp::Quantile | AggOp::Topk | AggOp::Bottomk | AggOp::CountValues => f64::NAN,
        }
    }
}

/// `topk`/`bottomk`: per group the `k` largest (smallest) samples, best first, NaN last.
fn top_bottom(input: Vec<Sample>, k: usize, top: bool, grouping: &[String], without: bool) -> Vec<Sample> {
    let mut index: HashMap<u64, usize> = HashMap::default();
    let mut groups: Vec<Vec<Sample>> = Vec::new();
    for s in input {
        let h = group_hash(&s.labels, grouping, without);
        let gi = *index.entry(h).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[gi].push(s);
    }
    let mut out = Vec::new();
    for mut g in groups {
        g.sort_by(|a, b| {
            use std::cmp::Ordering;
            match (a.value.is_nan(), b.value.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                _ if top => b.value.partial_cmp(&a.value).unwrap_or(Ordering::Equal),
                _ => a.value.partial_cmp(&b.value).unwrap_or(Ordering::Equal),
            }
        });
        g.truncate(k);
        out.extend(g);
    }
    out
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `count_values`: one output series per distinct (group, value), each a new label set held in
/// `budget` beside the input.
fn count_values(
    budget: &QueryBudget,
    input: Vec<Sample>,
    label: &str,
    grouping: &[String],
    without: bool,
) -> Result<Vec<Sample>, QueryError> {
    if !valid_label_name(label) {
        return Err(QueryError::Execution(format!("invalid label name {label:?}")));
    }
    let mut index: crate::label_keys::LabelMap<Arc<Labels>, usize> = Default::default();
    let mut out: Vec<Sample> = Vec::new();
    let mut created = 0usize;
    for (n, s) in input.into_iter().enumerate() {
        budget.check_item(n, EXEC_STAGE)?;
        let mut labels = group_labels(&s.labels, grouping, without);
        labels.set(label, &crate::format_value(s.value));
        match index.get(&labels) {
            Some(&i) => out[i].value += 1.0,
            None => {
                created += crate::eval::SERIES_COST + labels_cost(&labels);
                budget.fits(created)?;
                let labels = Arc::new(labels);
                index.insert(labels.clone(), out.len());
                out.push(Sample { labels, value: 1.0, drop_name: false });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_collision_never_merges_groups() {
        let grouping = vec!["pod".to_string()];
        let b = Arc::new(Labels::from_pairs([("pod", "b"), ("x", "1")]));
        let mut owners = GroupOwners::default();
        let b_hash = group_hash(&b, &grouping, false);
        // Pretend group {pod="a"} already owns the hash {pod="b"} gets.
        owners.insert((1, b_hash), Arc::new(Labels::from_pairs([("pod", "a")])));
        let resolved = resolve_group(1, &b, &grouping, false, &mut owners);
        assert_ne!(resolved, b_hash);
        assert_eq!(resolve_group(1, &b, &grouping, false, &mut owners), resolved, "stable once resolved");
        assert_eq!(owners[&(1, resolved)].get("pod"), Some("b"));
    }

    #[test]
    fn without_drops_the_metric_name_and_listed_labels() {
        let labels = Labels::from_pairs([("__name__", "m"), ("__type__", "counter"), ("job", "j"), ("pod", "p")]);
        let g = group_labels(&labels, &["pod".to_string()], true);
        assert_eq!(g, Labels::from_pairs([("job", "j")]));
    }
}
