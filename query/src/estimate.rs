//! `least_output_points` is a lower bound of the points a range query will return, known from
//! the selected data before the first step: a query whose result must pass the sample limit
//! (every series at a 1 ms step) is refused up front instead of computed until it fails.
//!
//! Only shapes whose output has one series per selected series are estimated: a plain
//! selector, under parentheses, unary minus, element-wise functions and arithmetic with a number.
//! Anything else (an aggregation, a comparison that may filter) gives no estimate.

use crate::ast::{BinOp, Expr, ExprKind, VectorSelector};
use crate::eval::{Evaluator, EXEC_STAGE};
use crate::functions::FuncKind;
use crate::select::Fetched;

/// At least how many points the range query `expr` over `start_ms..=end_ms` at `step_ms`
/// returns, or `None` when its shape is not estimated or it obviously fits the budget.
pub(crate) fn least_output_points(
    ev: &Evaluator<'_>,
    expr: &Expr,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
) -> Option<usize> {
    let selector = one_series_per_input(expr)?;
    if selector.at.is_some() {
        return None;
    }
    let steps = usize::try_from((end_ms - start_ms) / step_ms + 1).ok()?;
    // Every series at every step still fits: counting is not worth a pass over the samples.
    if ev.selection(selector)?.len().saturating_mul(steps) <= ev.budget.remaining() {
        return None;
    }
    let data = ev.data(selector).ok()?;
    let grid = Grid { start_ms, step_ms, steps, offset_ms: selector.offset_ms };
    let mut total = 0usize;
    for (i, f) in data.iter().enumerate() {
        if ev.budget.check_item(i, EXEC_STAGE).is_err() {
            return None;
        }
        total = total.saturating_add(visible_steps(f, &grid, ev.lookback_ms));
    }
    Some(total)
}

/// The selector whose series the output of `expr` maps one to one, if it has that shape.
fn one_series_per_input(expr: &Expr) -> Option<&VectorSelector> {
    match &expr.unparen().kind {
        ExprKind::Vector(selector) => Some(selector),
        ExprKind::Neg(inner) => one_series_per_input(inner),
        ExprKind::Call { func, args } if maps_each_sample(func.kind) => one_series_per_input(args.first()?),
        ExprKind::Binary { op, lhs, rhs, return_bool: false, .. } if is_arithmetic(*op) => {
            match (&lhs.unparen().kind, &rhs.unparen().kind) {
                (ExprKind::Number(_), _) => one_series_per_input(rhs),
                (_, ExprKind::Number(_)) => one_series_per_input(lhs),
                _ => None,
            }
        }
        _ => None,
    }
}

fn is_arithmetic(op: BinOp) -> bool {
    matches!(op, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod | BinOp::Pow | BinOp::Atan2)
}

/// Functions with one output sample per input sample whatever their arguments (`clamp` is not
/// one: with min above max it returns nothing).
fn maps_each_sample(kind: FuncKind) -> bool {
    use FuncKind::*;
    matches!(
        kind,
        Abs | Ceil
            | Floor
            | Round
            | Sqrt
            | Exp
            | Ln
            | Log2
            | Log10
            | Sgn
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

/// The evaluation times of a range query, shifted by a selector's offset.
struct Grid {
    start_ms: i64,
    step_ms: i64,
    steps: usize,
    offset_ms: i64,
}

impl Grid {
    /// How many evaluation times fall in `[from_ms, to_ms)` of the selector's (offset) time.
    fn count_in(&self, from_ms: i64, to_ms: i64) -> usize {
        let index_at_or_after = |ms: i64| -> usize {
            let delta = ms.saturating_add(self.offset_ms).saturating_sub(self.start_ms);
            if delta <= 0 {
                0
            } else {
                usize::try_from((delta - 1) / self.step_ms + 1).unwrap_or(usize::MAX).min(self.steps)
            }
        };
        index_at_or_after(to_ms).saturating_sub(index_at_or_after(from_ms))
    }
}

/// At how many evaluation times of `grid` the instant selector sees series `f`: a sample at
/// `ts` is seen in `[ts, ts + lookback)` until a staleness marker after it.
fn visible_steps(f: &Fetched, grid: &Grid, lookback_ms: i64) -> usize {
    let mut total = 0usize;
    let mut stale = f.stale_ts.iter().peekable();
    let mut current: Option<(i64, i64)> = None;
    for &(ts, _) in &f.points {
        while stale.next_if(|&&s| s <= ts).is_some() {}
        let end = stale.peek().map_or(ts + lookback_ms, |&&s| s.min(ts + lookback_ms));
        current = match current {
            Some((from, to)) if ts <= to => Some((from, to.max(end))),
            Some((from, to)) => {
                total += grid.count_in(from, to);
                Some((ts, end))
            }
            None => Some((ts, end)),
        };
    }
    if let Some((from, to)) = current {
        total += grid.count_in(from, to);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_steps_each_sample_is_seen_at_until_a_staleness_marker() {
        let grid = Grid { start_ms: 0, step_ms: 10, steps: 101, offset_ms: 0 };
        assert_eq!(grid.count_in(0, 10), 1);
        assert_eq!(grid.count_in(-50, 1), 1);
        assert_eq!(grid.count_in(995, 5_000), 1, "only step 1000 is left");
        let f = |points: Vec<i64>, stale_ts: Vec<i64>| crate::select::Fetched::for_tests(points, stale_ts);
        // Seen from 100 for a 50 ms lookback: steps 100..=140.
        assert_eq!(visible_steps(&f(vec![100], vec![]), &grid, 50), 5);
        // Overlapping windows count once; a marker at 125 ends the second sample's early.
        assert_eq!(visible_steps(&f(vec![100, 120], vec![125]), &grid, 50), 3);
        assert_eq!(visible_steps(&f(vec![], vec![]), &grid, 50), 0);
    }
}
