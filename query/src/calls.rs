//! `eval_call` runs a function call at one step: range-vector functions slide over the window of
//! each series (borrowed straight from the selected samples, no copy), the others map an instant
//! vector. Semantics follow Prometheus 3's `promql/functions.go`.

use crate::ast::{Expr, ExprKind};
use crate::eval::{DerivedLabels, Evaluator, Sample, Series, Val};
use crate::functions::{FuncKind, Function};
use crate::mathfns::{self, Bucket, Point};
use crate::select::PointSource;
use crate::QueryError;
use chrono::{Datelike, TimeZone, Timelike};
use std::cmp::Ordering;
use std::sync::Arc;
use tsdb::{Labels, MatchOp, METRIC_NAME};

impl Evaluator<'_> {
    pub(crate) fn eval_call(&self, call: &Expr, func: &Function, args: &[Expr], t_ms: i64) -> Result<Val, QueryError> {
        if let Some(i) = func.arg_types.iter().position(|t| *t == crate::ast::ValueType::Matrix) {
            return self.eval_range_call(func, args, i, t_ms);
        }
        let t_s = t_ms as f64 / 1000.0;
        match func.kind {
            FuncKind::Time => return Ok(Val::Scalar(t_s)),
            FuncKind::Pi => return Ok(Val::Scalar(std::f64::consts::PI)),
            FuncKind::Vector => {
                let v = self.scalar_arg(&args[0], t_ms)?;
                return Ok(Val::Vector(vec![Sample {
                    labels: Arc::new(Labels::default()),
                    value: v,
                    drop_name: false,
                }]));
            }
            FuncKind::Scalar => {
                let v = self.vector_arg(&args[0], t_ms)?;
                return Ok(Val::Scalar(if v.len() == 1 { v[0].value } else { f64::NAN }));
            }
            FuncKind::Timestamp => {
                let samples = match &args[0].unparen().kind {
                    ExprKind::Vector(sel) => self.instant_selector(sel, t_ms, |ts, _| ts as f64 / 1000.0)?,
                    _ => {
                        let mut v = self.vector_arg(&args[0], t_ms)?;
                        v.iter_mut().for_each(|s| s.value = t_s);
                        v
                    }
                };
                return Ok(Val::Vector(mark_drop(samples)));
            }
            FuncKind::Absent => {
                let v = self.vector_arg(&args[0], t_ms)?;
                if !v.is_empty() {
                    return Ok(Val::Vector(Vec::new()));
                }
                return Ok(Val::Vector(vec![absent_sample(&args[0])]));
            }
            FuncKind::HistogramQuantile => return self.histogram_quantile(args, t_ms),
            FuncKind::LabelReplace => return self.label_replace(args, t_ms),
            FuncKind::LabelJoin => return self.label_join(args, t_ms),
            FuncKind::Sort | FuncKind::SortDesc => {
                if self.is_range {
                    self.warn(
                        call.pos,
                        "sort is ineffective for range queries since results are always ordered by labels",
                    );
                }
                let mut v = self.vector_arg(&args[0], t_ms)?;
                let desc = func.kind == FuncKind::SortDesc;
                v.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    _ if desc => b.value.partial_cmp(&a.value).unwrap_or(Ordering::Equal),
                    _ => a.value.partial_cmp(&b.value).unwrap_or(Ordering::Equal),
                });
                return Ok(Val::Vector(v));
            }
            FuncKind::SortByLabel | FuncKind::SortByLabelDesc => {
                if self.is_range {
                    self.warn(
                        call.pos,
                        "sort is ineffective for range queries since results are always ordered by labels",
                    );
                }
                let mut v = self.vector_arg(&args[0], t_ms)?;
                let names: Vec<String> =
                    args[1..].iter().map(|a| self.string_arg(a, t_ms)).collect::<Result<_, _>>()?;
                let desc = func.kind == FuncKind::SortByLabelDesc;
                v.sort_by(|a, b| {
                    let order = compare_by_labels(&a.labels, &b.labels, &names);
                    if desc {
                        order.reverse()
                    } else {
                        order
                    }
                });
                return Ok(Val::Vector(v));
            }
            _ => {}
        }
        // Element-wise functions of one vector (dates default to `vector(time())`).
        let mut v = if args.is_empty() {
            vec![Sample { labels: Arc::new(Labels::default()), value: t_s, drop_name: false }]
        } else {
            self.vector_arg(&args[0], t_ms)?
        };
        let extra: Vec<f64> = args.iter().skip(1).map(|a| self.scalar_arg(a, t_ms)).collect::<Result<_, _>>()?;
        if func.kind == FuncKind::Clamp && extra[0] > extra[1] {
            return Ok(Val::Vector(Vec::new()));
        }
        for s in &mut v {
            s.value = elementwise(func.kind, s.value, &extra);
            s.drop_name = true;
        }
        Ok(Val::Vector(v))
    }

    fn vector_arg(&self, arg: &Expr, t_ms: i64) -> Result<Vec<Sample>, QueryError> {
        match self.eval(arg, t_ms)? {
            Val::Vector(v) => Ok(v),
            _ => Err(QueryError::Execution("expected an instant vector argument".into())),
        }
    }

    fn scalar_arg(&self, arg: &Expr, t_ms: i64) -> Result<f64, QueryError> {
        match self.eval(arg, t_ms)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(QueryError::Execution("expected a scalar argument".into())),
        }
    }

    fn string_arg(&self, arg: &Expr, t_ms: i64) -> Result<String, QueryError> {
        match self.eval(arg, t_ms)? {
            Val::Str(s) => Ok(s),
            _ => Err(QueryError::Execution("expected a string argument".into())),
        }
    }

    fn eval_range_call(
        &self,
        func: &Function,
        args: &[Expr],
        matrix_index: usize,
        t_ms: i64,
    ) -> Result<Val, QueryError> {
        let mut scalars = [f64::NAN; 2];
        for (slot, arg) in scalars.iter_mut().zip(args.iter().enumerate().filter(|(i, _)| *i != matrix_index)) {
            *slot = self.scalar_arg(arg.1, t_ms)?;
        }
        let params = RangeParams { scalars, eval_ms: t_ms };
        // Prometheus checks the factors only when a series has samples to smooth.
        let invalid = if func.kind == FuncKind::HoltWinters { smoothing_factors_error(scalars) } else { None };
        if func.kind == FuncKind::QuantileOverTime {
            let q = scalars[0];
            if !(0.0..=1.0).contains(&q) {
                self.warn(
                    args[0].pos,
                    &format!("quantile value should be between 0 and 1, got {}", crate::format_value(q)),
                );
            }
        }
        let arg = &args[matrix_index];
        if let Some(v) = self.precomputed_range_call(func, args, matrix_index, t_ms)? {
            return Ok(v);
        }
        let mut out = Vec::with_capacity(64);
        let mut any_points = false;
        let mut scratch: Vec<f64> = Vec::new();
        match &arg.unparen().kind {
            ExprKind::Matrix { selector, range_ms } => {
                let ref_t = self.at_time(selector.at).unwrap_or(t_ms) - selector.offset_ms;
                let lo = ref_t - range_ms;
                let data = self.data(selector)?;
                out.reserve(data.len());
                for f in data {
                    let points = f.window(lo, ref_t);
                    if points.is_empty() {
                        continue;
                    }
                    any_points = true;
                    if let Some(message) = &invalid {
                        return Err(QueryError::Execution(message.clone()));
                    }
                    let value = range_value(func.kind, points, lo, ref_t, params, &mut scratch);
                    if let Some(v) = value {
                        if !f.counter_like {
                            self.counter_info(func.kind, &f.labels, arg.unparen().pos);
                        }
                        out.push(Sample { labels: f.labels.clone(), value: v, drop_name: !func.keeps_metric_name() });
                    }
                }
            }
            ExprKind::Subquery { expr, range_ms, step_ms, offset_ms, at } => {
                let ref_t = self.at_time(*at).unwrap_or(t_ms) - offset_ms;
                let lo = ref_t - range_ms;
                let series: Vec<Series> = self.subquery(expr, *range_ms, *step_ms, *offset_ms, *at, t_ms)?;
                for s in series {
                    if s.points.is_empty() {
                        continue;
                    }
                    any_points = true;
                    if let Some(message) = &invalid {
                        return Err(QueryError::Execution(message.clone()));
                    }
                    if let Some(v) = range_value(func.kind, &s.points, lo, ref_t, params, &mut scratch) {
                        let drop_name = if func.keeps_metric_name() { s.drop_name } else { true };
                        out.push(Sample { labels: s.labels, value: v, drop_name });
                    }
                }
            }
            _ => return Err(QueryError::Execution(format!("expected a range vector in call to {}", func.name))),
        }
        if func.kind == FuncKind::AbsentOverTime {
            if any_points {
                return Ok(Val::Vector(Vec::new()));
            }
            return Ok(Val::Vector(vec![absent_sample(arg)]));
        }
        Ok(Val::Vector(out))
    }

    /// A range function over a plain selector during a range query, answered from results
    /// computed series by series for every step at once (Prometheus's order too): one pass over
    /// each series' samples instead of one visit per step, which touches memory step-major.
    fn precomputed_range_call(
        &self,
        func: &Function,
        args: &[Expr],
        matrix_index: usize,
        t_ms: i64,
    ) -> Result<Option<Val>, QueryError> {
        let Some(scalars) = constant_params(func, args) else { return Ok(None) };
        let arg = &args[matrix_index];
        let Some(step) = self.precompute_range_steps(func, arg, matrix_index, scalars, t_ms)? else {
            return Ok(None);
        };
        let ExprKind::Matrix { selector, .. } = &arg.unparen().kind else { return Ok(None) };
        let Some(selection) = self.selection(selector) else { return Ok(None) };
        let cache = self.step_cache.borrow();
        let Some(m) = cache.get(&(arg as *const Expr as usize)) else { return Ok(None) };
        let drop_name = !func.keeps_metric_name();
        let mut out = Vec::with_capacity(selection.len());
        m.for_each_at(step, |i, value| {
            if let Some((labels, _)) = selection.labels(i) {
                out.push(Sample { labels: labels.clone(), value, drop_name });
            }
        });
        Ok(Some(Val::Vector(out)))
    }

    /// When `func(arg, scalars…)` at `t_ms` can be answered from a step table (a range query
    /// step, `arg` a plain range selector, the scalar arguments the same at every step), makes
    /// sure the table is in `step_cache` under `arg`'s address and returns the step's row; `None`
    /// when it cannot.
    pub(crate) fn precompute_range_steps(
        &self,
        func: &Function,
        arg: &Expr,
        matrix_index: usize,
        scalars: [f64; 2],
        t_ms: i64,
    ) -> Result<Option<usize>, QueryError> {
        let ExprKind::Matrix { selector, range_ms } = &arg.unparen().kind else { return Ok(None) };
        let Some((step, steps)) = self.range_step(t_ms) else { return Ok(None) };
        if matrix_index != 0 || func.kind == FuncKind::AbsentOverTime {
            return Ok(None);
        }
        let Some(selection) = self.selection(selector) else { return Ok(None) };
        let cells = steps.saturating_mul(selection.len());
        if cells > MAX_PRECOMPUTED_POINTS {
            return Ok(None);
        }
        let key = arg as *const Expr as usize;
        let mut cache = self.step_cache.borrow_mut();
        if let std::collections::hash_map::Entry::Vacant(slot) = cache.entry(key) {
            // The table (a value and a flag per cell) is kept for the rest of the query; without
            // room for it the call is evaluated step by step instead.
            if !self.budget.try_hold(crate::budget::bytes_cost(cells.saturating_mul(STEP_CELL_BYTES))) {
                return Ok(None);
            }
            let at = self.at_time(selector.at);
            let job = RangeJob {
                kind: func.kind,
                scalars,
                start_ms: self.start_ms,
                interval_ms: self.interval_ms,
                steps,
                at_ms: at,
                offset_ms: selector.offset_ms,
                range_ms: *range_ms,
                budget: &self.budget,
            };
            let m = job.run(&selection.sources())?;
            for i in 0..selection.len() {
                match selection.labels(i) {
                    Some((labels, false)) if m.has_values(i) => {
                        self.counter_info(func.kind, labels, arg.unparen().pos);
                        break;
                    }
                    _ => {}
                }
            }
            slot.insert(m);
        }
        Ok(Some(step))
    }

    /// Prometheus's "metric might not be a counter" info for rate-like functions.
    fn counter_info(&self, kind: FuncKind, labels: &Labels, pos: usize) {
        if !matches!(kind, FuncKind::Rate | FuncKind::Increase | FuncKind::Irate) {
            return;
        }
        let name = labels.get(METRIC_NAME).unwrap_or("");
        if !name.is_empty() && !["_total", "_sum", "_count", "_bucket"].iter().any(|s| name.ends_with(s)) {
            self.info(
                pos,
                &format!("metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {name:?}"),
            );
        }
    }

    fn histogram_quantile(&self, args: &[Expr], t_ms: i64) -> Result<Val, QueryError> {
        let q = self.scalar_arg(&args[0], t_ms)?;
        let input = self.vector_arg(&args[1], t_ms)?;
        if !(0.0..=1.0).contains(&q) {
            self.warn(
                args[0].pos,
                &format!("quantile value should be between 0 and 1, got {}", crate::format_value(q)),
            );
        }
        // A histogram's buckets differ only by `le`: each bucket's set without it is its group.
        // In a range query each bucket's set comes back at every step and so does its group's
        // (kept in `derived`, one `Arc` per group), found by address; only the first bucket of
        // each group, or a set made for one step, is looked up by value.
        let rule = args.as_ptr() as usize;
        let mut derived = self.derived.borrow_mut();
        let mut positions = crate::label_keys::LabelSetPositions::default();
        let mut groups: Vec<(Arc<Labels>, Vec<Bucket>)> = Vec::new();
        for s in input {
            let le = s.labels.get("le").unwrap_or("");
            let Some(upper_bound) = parse_le(le) else {
                let name = s.labels.get(METRIC_NAME).unwrap_or("");
                self.warn(
                    args[1].pos,
                    &format!(
                        "bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {name:?}"
                    ),
                );
                continue;
            };
            let without_le = |labels: &Labels| {
                let mut key = labels.clone();
                key.remove("le");
                key
            };
            let (key, kept) = match derived.get(rule, &s.labels) {
                Some(key) => (key, true),
                None if self.is_range => self.keep_derived(&mut derived, rule, &s.labels, without_le(&s.labels))?,
                None => (Arc::new(without_le(&s.labels)), false),
            };
            let gi = match positions.position(&key) {
                Some(i) => {
                    // A kept set equal to the group's comes back at the next steps: by address.
                    if kept {
                        positions.alias(&key, i);
                    }
                    i
                }
                None => {
                    positions.insert(key.clone(), groups.len());
                    groups.push((key, Vec::new()));
                    groups.len() - 1
                }
            };
            groups[gi].1.push(Bucket { upper_bound, count: s.value });
        }
        let mut out = Vec::with_capacity(groups.len());
        for (labels, mut buckets) in groups {
            let r = mathfns::bucket_quantile(q, &mut buckets);
            if r.forced_monotonic {
                let name = labels.get(METRIC_NAME).unwrap_or("");
                self.info(
                    args[1].pos,
                    &format!(
                        "input to histogram_quantile needed to be fixed for monotonicity (see \
                         https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) \
                         for metric name {name:?}"
                    ),
                );
            }
            out.push(Sample { labels, value: r.value, drop_name: true });
        }
        Ok(Val::Vector(out))
    }

    /// `labels`, derived from `source` by `rule`, kept in `derived` for the rest of the range
    /// query when it keeps it (see `DerivedLabels::insert`), and then held in the query's budget;
    /// and whether it is kept.
    fn keep_derived(
        &self,
        derived: &mut DerivedLabels,
        rule: usize,
        source: &Arc<Labels>,
        labels: Labels,
    ) -> Result<(Arc<Labels>, bool), QueryError> {
        let (labels, kept) = derived.insert(rule, source, labels);
        if kept {
            self.budget.hold(crate::budget::labels_cost(&labels))?;
        }
        Ok((labels, kept))
    }

    fn label_replace(&self, args: &[Expr], t_ms: i64) -> Result<Val, QueryError> {
        let mut v = self.vector_arg(&args[0], t_ms)?;
        let dst = self.string_arg(&args[1], t_ms)?;
        let replacement = self.string_arg(&args[2], t_ms)?;
        let src = self.string_arg(&args[3], t_ms)?;
        let pattern = self.string_arg(&args[4], t_ms)?;
        // The arguments are literals: one call node compiles its expression once per query.
        let rule = args.as_ptr() as usize;
        let cached = self.label_regexes.borrow().get(&rule).cloned();
        let regex = match cached {
            Some(regex) => regex,
            None => {
                let regex =
                    regex::RegexBuilder::new(&format!("^(?s:{pattern})$")).size_limit(1 << 20).build().map_err(
                        |e| QueryError::Execution(format!("invalid regular expression in label_replace(): {e}")),
                    )?;
                self.label_regexes.borrow_mut().insert(rule, regex.clone());
                regex
            }
        };
        if !valid_label_name(&dst) {
            return Err(QueryError::Execution(format!("invalid destination label name in label_replace(): {dst}")));
        }
        // Each new label set is held beside the input; a replacement that repeats a group can
        // grow a value many times over (and nested calls compound it), so the largest value a
        // replacement can expand to is checked before it is built.
        let group_refs = replacement.matches('$').count();
        let mut created = 0usize;
        // In a range query a series' result is kept for the next steps (see `DerivedLabels`).
        let mut derived = self.is_range.then(|| self.derived.borrow_mut());
        // Whether every result is a kept set (equal ones are one `Arc`), for the duplicate check.
        let mut all_kept = derived.is_some();
        for (i, s) in v.iter_mut().enumerate() {
            self.budget.check_item(i, crate::eval::EXEC_STAGE)?;
            if let Some(kept) = derived.as_ref().and_then(|d| d.get(rule, &s.labels)) {
                // A series the expression left as it was keeps its own label set.
                let changed = !Arc::ptr_eq(&kept, &s.labels);
                all_kept &= changed;
                if changed && dst == METRIC_NAME {
                    s.drop_name = false;
                }
                s.labels = kept;
                continue;
            }
            let value = s.labels.get(&src).unwrap_or("");
            let Some(caps) = regex.captures(value) else {
                all_kept = false;
                if let Some(derived) = derived.as_mut() {
                    derived.insert_unchanged(rule, &s.labels);
                }
                continue;
            };
            {
                let largest = group_refs.saturating_mul(value.len()).saturating_add(replacement.len());
                self.budget.fits(created.saturating_add(crate::budget::bytes_cost(largest)))?;
                let mut result = String::new();
                caps.expand(&replacement, &mut result);
                let mut labels = (*s.labels).clone();
                labels.set(&dst, &result);
                created += crate::budget::labels_cost(&labels);
                self.budget.fits(created)?;
                s.labels = match derived.as_mut() {
                    Some(derived) => {
                        let (labels, kept) = self.keep_derived(derived, rule, &s.labels, labels)?;
                        all_kept &= kept;
                        labels
                    }
                    None => Arc::new(labels),
                };
                if dst == METRIC_NAME {
                    s.drop_name = false;
                }
            }
        }
        // As Prometheus, even inside another expression (which would otherwise merge them).
        check_relabelled_step(&v, derived.as_deref(), rule, all_kept)?;
        Ok(Val::Vector(v))
    }

    fn label_join(&self, args: &[Expr], t_ms: i64) -> Result<Val, QueryError> {
        let mut v = self.vector_arg(&args[0], t_ms)?;
        let dst = self.string_arg(&args[1], t_ms)?;
        let sep = self.string_arg(&args[2], t_ms)?;
        let srcs: Vec<String> = args[3..].iter().map(|a| self.string_arg(a, t_ms)).collect::<Result<_, _>>()?;
        if !valid_label_name(&dst) {
            return Err(QueryError::Execution(format!("invalid destination label name in label_join(): {dst}")));
        }
        for src in &srcs {
            if src.is_empty() {
                return Err(QueryError::Execution(format!("invalid source label name in label_join(): {src}")));
            }
        }
        let mut created = 0usize;
        // In a range query a series' result is kept for the next steps (see `DerivedLabels`).
        let rule = args.as_ptr() as usize;
        let mut derived = self.is_range.then(|| self.derived.borrow_mut());
        // Whether every result is a kept set (equal ones are one `Arc`), for the duplicate check.
        let mut all_kept = derived.is_some();
        for (i, s) in v.iter_mut().enumerate() {
            self.budget.check_item(i, crate::eval::EXEC_STAGE)?;
            if let Some(kept) = derived.as_ref().and_then(|d| d.get(rule, &s.labels)) {
                all_kept &= !Arc::ptr_eq(&kept, &s.labels);
                s.labels = kept;
                if dst == METRIC_NAME {
                    s.drop_name = false;
                }
                continue;
            }
            let joined: Vec<&str> = srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect();
            let joined_len = joined.iter().map(|p| p.len()).sum::<usize>()
                + sep.len().saturating_mul(joined.len().saturating_sub(1));
            self.budget.fits(created.saturating_add(crate::budget::bytes_cost(joined_len)))?;
            let joined = joined.join(&sep);
            let mut labels = (*s.labels).clone();
            labels.set(&dst, &joined);
            created += crate::budget::labels_cost(&labels);
            self.budget.fits(created)?;
            s.labels = match derived.as_mut() {
                Some(derived) => {
                    let (labels, kept) = self.keep_derived(derived, rule, &s.labels, labels)?;
                    all_kept &= kept;
                    labels
                }
                None => Arc::new(labels),
            };
            if dst == METRIC_NAME {
                s.drop_name = false;
            }
        }
        check_relabelled_step(&v, derived.as_deref(), rule, all_kept)?;
        Ok(Val::Vector(v))
    }
}

/// Refuses a step of `label_replace` / `label_join` (rule `rule`) results holding a label set
/// twice. Results all kept under a rule that never made one set for two sources are distinct
/// (a step's series are), so they are not checked again.
fn check_relabelled_step(
    step: &[Sample],
    derived: Option<&DerivedLabels>,
    rule: usize,
    all_kept: bool,
) -> Result<(), QueryError> {
    if all_kept && derived.is_some_and(|derived| !derived.may_repeat(rule)) {
        return Ok(());
    }
    crate::eval::check_unique_label_sets(step.iter().map(|s| &s.labels), all_kept)
}

/// Largest steps × series table precomputed for one call (beyond it, evaluation goes per step).
pub(crate) const MAX_PRECOMPUTED_POINTS: usize = 50_000_000;

/// Bytes of one cell of a [`StepMatrix`]: an `f64` value and a `bool` flag.
const STEP_CELL_BYTES: usize = 9;

/// One range function over every step of a range query, for a set of series: what
/// [`RangeJob::run`] needs, plain data and the (thread-safe) budget, so the series can be split
/// across threads.
struct RangeJob<'b> {
    kind: FuncKind,
    /// The call's scalar arguments (constant over the query, see [`constant_params`]).
    scalars: [f64; 2],
    start_ms: i64,
    interval_ms: i64,
    steps: usize,
    at_ms: Option<i64>,
    offset_ms: i64,
    range_ms: i64,
    budget: &'b crate::budget::QueryBudget,
}

/// Below this many series one thread does the whole table (spawning costs more than it saves).
const PARALLEL_MIN_SERIES: usize = 2_000;

impl RangeJob<'_> {
    /// Computes the step table, series split over the available cores (each series is walked
    /// once, oldest step first, with a forward-moving window), each core writing its own part.
    fn run(&self, series: &[PointSource<'_>]) -> Result<StepMatrix, QueryError> {
        let parts =
            crate::parallel::in_parts(series, PARALLEL_MIN_SERIES, "range", |first, part| self.run_part(first, part));
        Ok(StepMatrix { steps: self.steps, parts: parts.into_iter().collect::<Result<_, _>>()? })
    }

    /// The values of `series` (the series from index `first` on), step-major within the part.
    /// Compressed series are decoded one at a time into a buffer the part reuses.
    fn run_part(&self, first: usize, series: &[PointSource<'_>]) -> Result<StepPart, QueryError> {
        let len = series.len();
        let mut part =
            StepPart { first, len, values: vec![0.0; len * self.steps], present: vec![false; len * self.steps] };
        let mut scratch = Vec::new();
        let counter = matches!(self.kind, FuncKind::Rate | FuncKind::Increase);
        // Counter resets up to each point (`resets_upto[i]`: among points 1..=i), so a window
        // without one skips the correction pass.
        let mut resets_upto: Vec<u32> = Vec::new();
        let mut decoded: Vec<Point> = Vec::new();
        // The rate's divisions, reused while a series' points sit at the same places in window
        // after window (a steady scrape read at a step that is a multiple of its interval).
        let mut timing = mathfns::WindowTiming::default();
        for (j, source) in series.iter().enumerate() {
            // A series costs a window per step: check more often than per-item loops do.
            if j.is_multiple_of(64) {
                self.budget.check(crate::eval::EXEC_STAGE)?;
            }
            let points = source.points(&mut decoded, self.budget)?;
            if counter {
                resets_upto.clear();
                let mut resets = 0u32;
                let mut previous = f64::NAN;
                for p in points.iter() {
                    resets += u32::from(p.1 < previous);
                    previous = p.1;
                    resets_upto.push(resets);
                }
            }
            let (mut start, mut end) = (0usize, 0usize);
            for k in 0..self.steps {
                let t = self.start_ms + k as i64 * self.interval_ms;
                let ref_t = self.at_ms.unwrap_or(t) - self.offset_ms;
                let lo = ref_t - self.range_ms;
                if k == 0 || self.at_ms.is_some() {
                    start = points.partition_point(|p| p.0 <= lo);
                    end = points.partition_point(|p| p.0 <= ref_t);
                } else {
                    while start < points.len() && points[start].0 <= lo {
                        start += 1;
                    }
                    while end < points.len() && points[end].0 <= ref_t {
                        end += 1;
                    }
                }
                if start < end {
                    let window = &points[start..end];
                    let value = if counter {
                        let has_resets = resets_upto[end - 1] != resets_upto[start];
                        let is_rate = self.kind == FuncKind::Rate;
                        mathfns::extrapolated_rate_timed(window, lo, ref_t, true, is_rate, has_resets, &mut timing)
                    } else {
                        let params = RangeParams { scalars: self.scalars, eval_ms: t };
                        range_value(self.kind, window, lo, ref_t, params, &mut scratch)
                    };
                    if let Some(v) = value {
                        part.values[k * len + j] = v;
                        part.present[k * len + j] = true;
                    }
                }
            }
        }
        Ok(part)
    }
}

/// A range function's values for every step of a range query, step-major (`[step * series + i]`).
pub(crate) struct StepMatrix {
    /// Number of steps.
    pub steps: usize,
    /// Consecutive runs of series, in series order, each computed by one worker.
    parts: Vec<StepPart>,
}

/// The values of series `first..first + len` at every step, step-major (`[step * len + j]`).
struct StepPart {
    first: usize,
    len: usize,
    values: Vec<f64>,
    present: Vec<bool>,
}

impl StepMatrix {
    /// Calls `f(series, value)` for every series with a value at `step`, in series order.
    #[inline]
    pub fn for_each_at(&self, step: usize, mut f: impl FnMut(usize, f64)) {
        if step >= self.steps {
            return;
        }
        for part in &self.parts {
            let row = step * part.len;
            let present = &part.present[row..row + part.len];
            let values = &part.values[row..row + part.len];
            for (j, (&here, &value)) in present.iter().zip(values).enumerate() {
                if here {
                    f(part.first + j, value);
                }
            }
        }
    }

    /// Whether series `i` has a value at any step.
    pub fn has_values(&self, i: usize) -> bool {
        self.parts
            .iter()
            .find(|p| i >= p.first && i < p.first + p.len)
            .is_some_and(|p| (0..self.steps).any(|k| p.present[k * p.len + i - p.first]))
    }
}

/// `sort_by_label`'s order: the listed labels' values in natural order (digit runs compare as
/// numbers, so `cpu="2"` precedes `cpu="10"`), then the whole label sets, so ties stay stable.
fn compare_by_labels(a: &Labels, b: &Labels, names: &[String]) -> Ordering {
    for name in names {
        let order = natural_cmp(a.get(name).unwrap_or(""), b.get(name).unwrap_or(""));
        if order != Ordering::Equal {
            return order;
        }
    }
    a.cmp(b)
}

/// Natural order as the natsort package Prometheus uses (github.com/facette/natsort) decides
/// it, made a total order (a sort may panic on less): the strings are runs of digits and of
/// non-digits; two digit runs compare as numbers, anything else as bytes; a string whose runs are
/// a prefix of the other's comes first. Where natsort answers "less" both ways (`a1` / `a01`,
/// equal numbers spelt differently) the bytes decide; digit runs of any length compare by value
/// (natsort falls back to bytes past 19 digits).
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut xs, mut ys) = (Chunks(a), Chunks(b));
    loop {
        let order = match (xs.next(), ys.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let digits = |s: &str| s.bytes().next().is_some_and(|c| c.is_ascii_digit());
                if digits(x) && digits(y) {
                    let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                    x.len().cmp(&y.len()).then_with(|| x.cmp(y))
                } else {
                    x.cmp(y)
                }
            }
        };
        if order != Ordering::Equal {
            return order;
        }
    }
}

/// The alternating digit / non-digit runs of a string.
struct Chunks<'a>(&'a str);

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a str;

    /// The next run, never empty.
    fn next(&mut self) -> Option<&'a str> {
        let digit = self.0.as_bytes().first()?.is_ascii_digit();
        let end = self.0.bytes().position(|c| c.is_ascii_digit() != digit).unwrap_or(self.0.len());
        let (chunk, rest) = self.0.split_at(end);
        self.0 = rest;
        Some(chunk)
    }
}

fn valid_label_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c != '\u{fffd}')
}

fn parse_le(le: &str) -> Option<f64> {
    match le.trim() {
        "" => None,
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        other => other.parse::<f64>().ok(),
    }
}

fn mark_drop(mut v: Vec<Sample>) -> Vec<Sample> {
    v.iter_mut().for_each(|s| s.drop_name = true);
    v
}

/// The sample `absent`/`absent_over_time` return: labels from the argument's equality matchers.
fn absent_sample(arg: &Expr) -> Sample {
    let matchers = match &arg.kind {
        ExprKind::Vector(sel) | ExprKind::Matrix { selector: sel, .. } => sel.matchers.as_slice(),
        _ => &[],
    };
    let mut labels = Labels::default();
    let mut seen: Vec<&str> = Vec::new();
    for m in matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if m.op == MatchOp::Equal && !seen.contains(&m.name.as_str()) {
            labels.set(&m.name, &m.value);
            seen.push(&m.name);
        } else {
            labels.remove(&m.name);
        }
    }
    Sample { labels: Arc::new(labels), value: 1.0, drop_name: false }
}

/// What a range function reads besides its window: the scalar arguments after (or before) the
/// range vector, in order (`quantile_over_time`'s φ, `predict_linear`'s seconds ahead,
/// `holt_winters`' smoothing and trend factors; NaN where absent), and the evaluation time,
/// where `predict_linear` puts its intercept (not the window's end: `@` and `offset` move the
/// window, never the prediction's origin).
#[derive(Debug, Clone, Copy)]
struct RangeParams {
    scalars: [f64; 2],
    eval_ms: i64,
}

/// The scalar arguments of a call to a range function when they are number literals, so a step
/// table computed once holds every step's value; `None` when one can vary from step to step, or
/// when `holt_winters`' factors are out of range (the step-by-step path reports that error, only
/// when a series has samples, as Prometheus does).
pub(crate) fn constant_params(func: &Function, args: &[Expr]) -> Option<[f64; 2]> {
    let mut scalars = [f64::NAN; 2];
    let mut slots = scalars.iter_mut();
    for arg in args {
        match arg.unparen().kind {
            ExprKind::Matrix { .. } | ExprKind::Subquery { .. } => {}
            ExprKind::Number(v) => *slots.next()? = v,
            _ => return None,
        }
    }
    if func.kind == FuncKind::HoltWinters && smoothing_factors_error(scalars).is_some() {
        return None;
    }
    Some(scalars)
}

/// Prometheus's error for `holt_winters` factors outside (0, 1) (NaN passes, as there).
fn smoothing_factors_error([sf, tf]: [f64; 2]) -> Option<String> {
    if sf <= 0.0 || sf >= 1.0 {
        return Some(format!("invalid smoothing factor. Expected: 0 < sf < 1, got: {}", go_fixed(sf)));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Some(format!("invalid trend factor. Expected: 0 < tf < 1, got: {}", go_fixed(tf)));
    }
    None
}

/// A float as Go's `%f` prints it (six decimals, `+Inf`/`-Inf`).
fn go_fixed(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if v.is_nan() {
        return "NaN".into();
    }
    format!("{v:.6}")
}

/// One range function over one series' window `(lo, hi]`. `None`: no output for this series.
fn range_value(
    kind: FuncKind,
    points: &[Point],
    lo: i64,
    hi: i64,
    params: RangeParams,
    scratch: &mut Vec<f64>,
) -> Option<f64> {
    let values = || points.iter().map(|p| p.1);
    match kind {
        FuncKind::Rate => mathfns::extrapolated_rate(points, lo, hi, true, true),
        FuncKind::Increase => mathfns::extrapolated_rate(points, lo, hi, true, false),
        FuncKind::Delta => mathfns::extrapolated_rate(points, lo, hi, false, false),
        FuncKind::Irate => mathfns::instant_value(points, true),
        FuncKind::Idelta => mathfns::instant_value(points, false),
        FuncKind::Deriv => {
            if points.len() < 2 {
                return None;
            }
            Some(mathfns::linear_regression(points, points[0].0).0)
        }
        FuncKind::Resets => Some(points.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64),
        FuncKind::Changes => {
            Some(points.windows(2).filter(|w| !(w[1].1 == w[0].1 || (w[1].1.is_nan() && w[0].1.is_nan()))).count()
                as f64)
        }
        FuncKind::AvgOverTime => Some(mathfns::mean(values())),
        FuncKind::MinOverTime => Some(values().fold(f64::NAN, |m, v| if m.is_nan() || v < m { v } else { m })),
        FuncKind::MaxOverTime => Some(values().fold(f64::NAN, |m, v| if m.is_nan() || v > m { v } else { m })),
        FuncKind::SumOverTime => {
            let (s, c) = values().fold((0.0, 0.0), |(s, c), v| mathfns::kahan_inc(v, s, c));
            Some(s + c)
        }
        FuncKind::CountOverTime => Some(points.len() as f64),
        FuncKind::LastOverTime => points.last().map(|p| p.1),
        FuncKind::QuantileOverTime => {
            scratch.clear();
            scratch.extend(values());
            Some(mathfns::quantile(params.scalars[0], scratch))
        }
        FuncKind::MadOverTime => Some(mathfns::median_absolute_deviation(values(), scratch)),
        FuncKind::PredictLinear => {
            if points.len() < 2 {
                return None;
            }
            let (slope, intercept) = mathfns::linear_regression(points, params.eval_ms);
            Some(slope * params.scalars[0] + intercept)
        }
        FuncKind::HoltWinters => mathfns::holt_winters(values(), params.scalars[0], params.scalars[1]),
        FuncKind::StddevOverTime => Some(mathfns::variance(values()).sqrt()),
        FuncKind::StdvarOverTime => Some(mathfns::variance(values())),
        FuncKind::PresentOverTime => Some(1.0),
        FuncKind::AbsentOverTime => None,
        _ => None,
    }
}

/// Element-wise math; `extra` holds the scalar arguments after the vector.
fn elementwise(kind: FuncKind, v: f64, extra: &[f64]) -> f64 {
    match kind {
        FuncKind::Abs => v.abs(),
        FuncKind::Ceil => v.ceil(),
        FuncKind::Floor => v.floor(),
        FuncKind::Round => {
            // Prometheus rounds half up (towards +Inf) to the nearest multiple of `to_nearest`.
            let to_nearest = extra.first().copied().unwrap_or(1.0);
            let inverse = 1.0 / to_nearest;
            (v * inverse + 0.5).floor() / inverse
        }
        FuncKind::Sqrt => v.sqrt(),
        FuncKind::Exp => v.exp(),
        FuncKind::Ln => v.ln(),
        FuncKind::Log2 => v.log2(),
        FuncKind::Log10 => v.log10(),
        FuncKind::Sgn => {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        }
        FuncKind::Clamp => v.max(extra[0]).min(extra[1]),
        FuncKind::ClampMin => v.max(extra[0]),
        FuncKind::ClampMax => v.min(extra[0]),
        // Rust's and Go's math agree here: NaN outside each function's domain, ±Inf kept by
        // `deg`/`rad` (Prometheus's `v * 180 / math.Pi` and `v * math.Pi / 180`, in that order).
        FuncKind::Acos => v.acos(),
        FuncKind::Acosh => v.acosh(),
        FuncKind::Asin => v.asin(),
        FuncKind::Asinh => v.asinh(),
        FuncKind::Atan => v.atan(),
        FuncKind::Atanh => v.atanh(),
        FuncKind::Cos => v.cos(),
        FuncKind::Cosh => v.cosh(),
        FuncKind::Sin => v.sin(),
        FuncKind::Sinh => v.sinh(),
        FuncKind::Tan => v.tan(),
        FuncKind::Tanh => v.tanh(),
        FuncKind::Deg => v * 180.0 / std::f64::consts::PI,
        FuncKind::Rad => v * std::f64::consts::PI / 180.0,
        FuncKind::DayOfWeek
        | FuncKind::DayOfMonth
        | FuncKind::DayOfYear
        | FuncKind::Hour
        | FuncKind::Minute
        | FuncKind::Month
        | FuncKind::Year
        | FuncKind::DaysInMonth => date_part(kind, v),
        _ => f64::NAN,
    }
}

/// A calendar field of the Unix time `seconds` (UTC), as Prometheus's date functions.
fn date_part(kind: FuncKind, seconds: f64) -> f64 {
    if !seconds.is_finite() {
        return f64::NAN;
    }
    let Some(t) = chrono::Utc.timestamp_opt(seconds as i64, 0).single() else { return f64::NAN };
    let v = match kind {
        FuncKind::DayOfWeek => t.weekday().num_days_from_sunday(),
        FuncKind::DayOfMonth => t.day(),
        FuncKind::DayOfYear => t.ordinal(),
        FuncKind::Hour => t.hour(),
        FuncKind::Minute => t.minute(),
        FuncKind::Month => t.month(),
        FuncKind::Year => return f64::from(t.year()),
        FuncKind::DaysInMonth => {
            let (y, m) = (t.year(), t.month());
            let next = if m == 12 {
                chrono::NaiveDate::from_ymd_opt(y + 1, 1, 1)
            } else {
                chrono::NaiveDate::from_ymd_opt(y, m + 1, 1)
            };
            let this = chrono::NaiveDate::from_ymd_opt(y, m, 1);
            match (next, this) {
                (Some(n), Some(c)) => (n - c).num_days() as u32,
                _ => return f64::NAN,
            }
        }
        _ => return f64::NAN,
    };
    f64::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Engine, EngineOptions, Value};
    use tsdb::{Db, Options, Sample, SeriesSamples};

    /// A test series: its labels and its `k`th value.
    type TestSeries<'a> = (&'a [(&'a str, &'a str)], fn(i64) -> f64);

    /// An engine over `series`, `points` samples each, every 15 s from 0.
    fn engine_with(series: &[TestSeries<'_>], points: i64) -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(Db::open(Options::new(dir.path())).expect("open"));
        let samples: Vec<Vec<Sample>> =
            series.iter().map(|(_, f)| (0..points).map(|k| Sample::new(k * 15_000, f(k))).collect()).collect();
        let batch: Vec<SeriesSamples<'_>> =
            series.iter().zip(&samples).map(|((labels, _), s)| SeriesSamples::labels(labels, s)).collect();
        db.append(&batch).expect("append");
        (dir, Engine::new(db, EngineOptions::default()))
    }

    fn values(value: Value) -> Vec<(String, f64)> {
        match value {
            Value::Vector(v) => v.into_iter().map(|s| (s.labels.to_string(), s.value)).collect(),
            Value::Scalar { value, .. } => vec![(String::new(), value)],
            other => panic!("unexpected {other:?}"),
        }
    }

    fn one(engine: &Engine, query: &str, t_ms: i64) -> f64 {
        let v = values(engine.instant(query, t_ms).expect(query));
        assert_eq!(v.len(), 1, "{query}: {v:?}");
        v[0].1
    }

    /// `m` is the time in seconds: a perfect line, so a prediction is the time it predicts for.
    fn line() -> (tempfile::TempDir, Engine) {
        engine_with(&[(&[("__name__", "m")], |k| (k * 15) as f64)], 80)
    }

    #[test]
    fn predict_linear_extrapolates_from_the_evaluation_time_not_the_window_end() {
        let (_dir, engine) = line();
        assert!((one(&engine, "predict_linear(m[5m], 60)", 600_000) - 660.0).abs() < 1e-9);
        // `offset` and `@` move the window; the intercept stays at the evaluation time.
        assert!((one(&engine, "predict_linear(m[5m] offset 2m, 0)", 600_000) - 600.0).abs() < 1e-9);
        assert!((one(&engine, "predict_linear(m[5m] @ 300, 30)", 900_000) - 930.0).abs() < 1e-9);
        assert!((one(&engine, "predict_linear(m[5m:1m], -100)", 600_000) - 500.0).abs() < 1e-9);
        // One point is no line.
        assert!(values(engine.instant("predict_linear(m[10s], 60)", 600_000).expect("query")).is_empty());
    }

    #[test]
    fn predict_linear_of_a_constant_or_infinite_series() {
        let (_dir, engine) =
            engine_with(&[(&[("__name__", "c")], |_| 7.0), (&[("__name__", "i")], |_| f64::INFINITY)], 40);
        assert_eq!(one(&engine, "predict_linear(c[5m], 1e6)", 500_000), 7.0);
        assert!(one(&engine, "predict_linear(i[5m], 60)", 500_000).is_nan());
    }

    #[test]
    fn holt_winters_rejects_factors_outside_the_open_unit_interval_only_with_samples() {
        let (_dir, engine) = line();
        for (query, message) in [
            ("holt_winters(m[5m], 1, 0.5)", "invalid smoothing factor. Expected: 0 < sf < 1, got: 1.000000"),
            ("holt_winters(m[5m], 0.5, 0)", "invalid trend factor. Expected: 0 < tf < 1, got: 0.000000"),
            ("double_exponential_smoothing(m[5m], -Inf, 0.5)", "got: -Inf"),
            ("holt_winters(m[5m:1m], 0.5, 1.5)", "got: 1.500000"),
        ] {
            let err = engine.instant(query, 600_000).expect_err(query).to_string();
            assert!(err.contains(message), "{query}: {err}");
            let err = engine.range(query, 300_000, 600_000, 60_000).expect_err(query).to_string();
            assert!(err.contains(message), "{query} as a range query: {err}");
        }
        // Nothing to smooth, nothing to complain about (as in Prometheus).
        assert!(values(engine.instant("holt_winters(nothing[5m], 2, 2)", 600_000).expect("query")).is_empty());
        assert!(one(&engine, "holt_winters(m[5m], NaN, 0.5)", 600_000).is_nan());
    }

    #[test]
    fn holt_winters_follows_a_line_and_smooths_a_step() {
        let (_dir, engine) = line();
        assert!((one(&engine, "holt_winters(m[5m], 0.5, 0.5)", 600_000) - 600.0).abs() < 1e-9);
        // Hand-computed: values 0, 10, 10, 10 with sf = tf = 0.5.
        let mut level = 0.0;
        let mut trend = 10.0;
        let mut previous;
        // first step: trend kept
        previous = level;
        level = 0.5 * 10.0 + 0.5 * (level + trend);
        for _ in 0..2 {
            trend = 0.5 * (level - previous) + 0.5 * trend;
            previous = level;
            level = 0.5 * 10.0 + 0.5 * (level + trend);
        }
        assert_eq!(mathfns::holt_winters([0.0, 10.0, 10.0, 10.0].into_iter(), 0.5, 0.5), Some(level));
        assert_eq!(mathfns::holt_winters([1.0].into_iter(), 0.5, 0.5), None);
    }

    #[test]
    fn trigonometry_keeps_go_semantics_at_the_edges() {
        let e = |kind, v| elementwise(kind, v, &[]);
        assert!(e(FuncKind::Acos, 2.0).is_nan() && e(FuncKind::Asin, -1.5).is_nan());
        assert!(e(FuncKind::Acosh, 0.5).is_nan() && e(FuncKind::Atanh, 2.0).is_nan());
        assert_eq!(e(FuncKind::Atanh, 1.0), f64::INFINITY);
        assert_eq!(e(FuncKind::Atanh, -1.0), f64::NEG_INFINITY);
        assert!(e(FuncKind::Sin, f64::INFINITY).is_nan() && e(FuncKind::Cos, f64::NEG_INFINITY).is_nan());
        assert_eq!(e(FuncKind::Tanh, f64::INFINITY), 1.0);
        assert_eq!(e(FuncKind::Cosh, f64::NEG_INFINITY), f64::INFINITY);
        assert_eq!(e(FuncKind::Atan, f64::NEG_INFINITY), -std::f64::consts::FRAC_PI_2);
        for kind in [FuncKind::Deg, FuncKind::Rad] {
            assert_eq!(e(kind, f64::INFINITY), f64::INFINITY);
            assert_eq!(e(kind, f64::NEG_INFINITY), f64::NEG_INFINITY);
            assert!(e(kind, f64::NAN).is_nan());
            assert_eq!(e(kind, -0.0).to_bits(), (-0.0f64).to_bits());
        }
        assert_eq!(e(FuncKind::Deg, std::f64::consts::PI), 180.0);
        assert_eq!(e(FuncKind::Rad, 180.0), std::f64::consts::PI);
    }

    #[test]
    fn pi_atan2_and_trig_calls_evaluate_like_prometheus() {
        let (_dir, engine) = engine_with(&[(&[("__name__", "y"), ("a", "1")], |_| 10.0)], 4);
        assert_eq!(engine.instant("pi()", 0).expect("pi"), Value::Scalar { ts_ms: 0, value: std::f64::consts::PI });
        assert_eq!(one(&engine, "10 atan2 20", 0), 10f64.atan2(20.0));
        // `atan2` binds like `*`: tighter than `+`, looser than `^`.
        assert_eq!(one(&engine, "1 + 2 atan2 2 ^ 2", 0), 1.0 + 2f64.atan2(4.0));
        let v = values(engine.instant("y atan2 y", 30_000).expect("query"));
        assert_eq!(v, vec![("{a=\"1\"}".to_string(), std::f64::consts::FRAC_PI_4)], "drops the metric name");
        let v = values(engine.instant("sin(y)", 30_000).expect("query"));
        assert_eq!(v, vec![("{a=\"1\"}".to_string(), 10f64.sin())]);
        assert!(crate::parse("y atan2 bool y").is_err());
    }

    #[test]
    fn mad_over_time_edge_cases() {
        let mut scratch = Vec::new();
        let mad = |v: &[f64], s: &mut Vec<f64>| mathfns::median_absolute_deviation(v.iter().copied(), s);
        assert_eq!(mad(&[4.0, 6.0, 2.0, 1.0, 999.0, 1.0, 2.0], &mut scratch), 1.0);
        assert_eq!(mad(&[5.0], &mut scratch), 0.0);
        assert!(mad(&[1.0, 2.0, f64::NAN, 4.0], &mut scratch).is_nan());
    }

    #[test]
    fn natural_order_is_total_and_numeric_in_digit_runs() {
        use std::cmp::Ordering::*;
        assert_eq!(natural_cmp("2", "10"), Less);
        assert_eq!(natural_cmp("cpu10", "cpu9"), Greater);
        assert_eq!(natural_cmp("1.2.3", "1.11.3"), Less);
        assert_eq!(natural_cmp("4m600", "4m1000"), Less);
        // natsort says "less" both ways here; a sort needs one answer.
        assert_eq!(natural_cmp("a1", "a01"), natural_cmp("a01", "a1").reverse());
        assert_ne!(natural_cmp("a1", "a01"), Equal);
        assert_eq!(natural_cmp("", "x"), Less);
        assert_eq!(natural_cmp("x", "x1"), Less);
        let huge = "123456789012345678901234567890";
        assert_eq!(natural_cmp(huge, "99"), Greater);
        let mut words = vec!["b", "a10", "", "a9", "a01", "a1", "10", "9", huge, "a"];
        words.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(words, vec!["", "9", "10", huge, "a", "a01", "a1", "a9", "a10", "b"]);
    }

    #[test]
    fn sort_by_label_orders_naturally_then_by_all_labels() {
        let (_dir, engine) = engine_with(
            &[
                (&[("__name__", "s"), ("cpu", "10"), ("g", "x")], |_| 1.0),
                (&[("__name__", "s"), ("cpu", "2"), ("g", "y")], |_| 2.0),
                (&[("__name__", "s"), ("cpu", "2"), ("g", "x")], |_| 3.0),
                (&[("__name__", "s"), ("g", "z")], |_| 4.0),
            ],
            4,
        );
        let order =
            |q: &str| values(engine.instant(q, 30_000).expect(q)).into_iter().map(|(_, v)| v).collect::<Vec<_>>();
        assert_eq!(order("sort_by_label(s, \"cpu\")"), vec![4.0, 3.0, 2.0, 1.0]);
        assert_eq!(order("sort_by_label_desc(s, \"cpu\")"), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(order("sort_by_label(s, \"g\", \"cpu\")"), vec![3.0, 1.0, 2.0, 4.0]);
        assert_eq!(order("sort_by_label(s)"), vec![1.0, 3.0, 2.0, 4.0], "no label: the whole label sets");
        let v = values(engine.instant("sort_by_label(s, \"cpu\")", 30_000).expect("query"));
        assert!(v[0].0.starts_with("s{"), "keeps the metric name: {v:?}");
    }
}
