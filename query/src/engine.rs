//! `Engine` is the query entry point: it parses a query, has the evaluator select its data and
//! evaluate it at one instant or at every step of a range, and shapes the result into a
//! [`Value`] (removing `__name__` where asked, checking label sets are unique, enforcing the
//! sample limit). [`EngineOptions`] are its limits.

use crate::ast::{self, ValueType};
use crate::budget::{labels_cost, CancelHandle};
use crate::eval::{self, finish_step, Evaluator, Val};
use crate::label_keys::LabelSetPositions;
use crate::mathfns::Point;
use crate::parser::parse;
use crate::{InstantSample, QueryError, QueryOutput, RangeSeries, Value};
use std::sync::Arc;
use std::time::Duration;
use tsdb::{Db, Labels, Matcher};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5 m).
    pub lookback: Duration,
    /// Most samples one query may hold in memory at once (Prometheus's `--query.max-samples`):
    /// selected samples, intermediate values, caches and the result, label sets the query
    /// creates counted by their size (see `budget`).
    pub max_samples: usize,
    /// Longest a query may run.
    pub timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { lookback: Duration::from_secs(300), max_samples: 50_000_000, timeout: Duration::from_secs(120) }
    }
}

/// Evaluates PromQL against a store.
pub struct Engine {
    db: Arc<Db>,
    options: EngineOptions,
    cancel: Option<CancelHandle>,
}

impl Engine {
    pub fn new(db: Arc<Db>, options: EngineOptions) -> Self {
        Engine { db, options, cancel: None }
    }

    /// This engine with every query it runs stopped (failing with [`QueryError::Cancelled`])
    /// once `cancel` fires. Cheap: a request handler makes one per request.
    pub fn with_cancel(mut self, cancel: CancelHandle) -> Self {
        self.cancel = Some(cancel);
        self
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The store the engine reads.
    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// Evaluates `query` at one instant.
    pub fn instant(&self, query: &str, at_ms: i64) -> Result<Value, QueryError> {
        self.instant_with_matchers(query, at_ms, &[])
    }

    /// Evaluates `query` at one instant with `extra` matchers added to every vector selector
    /// (the adapter uses this to restrict to the objects a request names, without a regex).
    pub fn instant_with_matchers(&self, query: &str, at_ms: i64, extra: &[Matcher]) -> Result<Value, QueryError> {
        self.instant_query(query, at_ms, extra).map(|o| o.value)
    }

    /// Evaluates `query` at one instant and returns the annotations too.
    pub fn instant_query(&self, query: &str, at_ms: i64, extra: &[Matcher]) -> Result<QueryOutput, QueryError> {
        let expr = parse(query)?;
        self.instant_expr(query, &expr, at_ms, extra)
    }

    /// Evaluates an already parsed expression (`query` is its text, for annotation positions).
    pub fn instant_expr(
        &self,
        query: &str,
        expr: &ast::Expr,
        at_ms: i64,
        extra: &[Matcher],
    ) -> Result<QueryOutput, QueryError> {
        let ev =
            Evaluator::prepare(&self.db, &self.options, self.cancel.as_ref(), query, expr, at_ms, at_ms, extra, false)?;
        let result = ev.eval(expr, at_ms)?;
        // Releasing the selected series first leaves the result the only owner of label sets it
        // shares with them, so they are moved out below instead of copied.
        let annotations = ev.into_annotations();
        let value = match result {
            Val::Scalar(value) => Value::Scalar { ts_ms: at_ms, value },
            Val::Str(value) => Value::String { ts_ms: at_ms, value },
            Val::Vector(samples) => {
                if samples.len() > self.options.max_samples {
                    return Err(QueryError::TooManySamples("query execution"));
                }
                let finished = finish_step(samples, eval::distinct_by_construction(expr), None)?;
                Value::Vector(
                    finished
                        .into_iter()
                        .map(|(labels, value)| InstantSample {
                            labels: Arc::unwrap_or_clone(labels),
                            ts_ms: at_ms,
                            value,
                        })
                        .collect(),
                )
            }
            Val::Matrix(series) => {
                let mut out: Vec<RangeSeries> = series
                    .into_iter()
                    .map(|s| {
                        let labels =
                            if s.drop_name { eval::without_name(&s.labels) } else { Arc::unwrap_or_clone(s.labels) };
                        RangeSeries { labels, points: s.points }
                    })
                    .collect();
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                if out.windows(2).any(|w| w[0].labels == w[1].labels) {
                    return Err(QueryError::Execution("vector cannot contain metrics with the same labelset".into()));
                }
                Value::Matrix(out)
            }
        };
        Ok(QueryOutput { value, annotations })
    }

    /// Evaluates `query` at `start + k*step` for every k with the point not after `end`.
    pub fn range(&self, query: &str, start_ms: i64, end_ms: i64, step_ms: i64) -> Result<Value, QueryError> {
        self.range_query(query, start_ms, end_ms, step_ms, &[]).map(|o| o.value)
    }

    /// Range evaluation with extra matchers and annotations.
    pub fn range_query(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        extra: &[Matcher],
    ) -> Result<QueryOutput, QueryError> {
        let expr = parse(query)?;
        self.range_expr(query, &expr, start_ms, end_ms, step_ms, extra)
    }

    /// Range evaluation of an already parsed expression.
    pub fn range_expr(
        &self,
        query: &str,
        expr: &ast::Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        extra: &[Matcher],
    ) -> Result<QueryOutput, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::Execution("zero or negative query resolution step widths are not accepted".into()));
        }
        if end_ms < start_ms {
            return Err(QueryError::Execution("end timestamp must not be before start time".into()));
        }
        let ty = expr.value_type();
        if ty != ValueType::Scalar && ty != ValueType::Vector {
            return Err(QueryError::Execution(format!(
                "invalid expression type \"{ty}\" for range query, must be Scalar or instant Vector"
            )));
        }
        let mut ev = Evaluator::prepare(
            &self.db,
            &self.options,
            self.cancel.as_ref(),
            query,
            expr,
            start_ms,
            end_ms,
            extra,
            true,
        )?;
        ev.interval_ms = step_ms;
        if let Some(points) = crate::estimate::least_output_points(&ev, expr, start_ms, end_ms, step_ms) {
            ev.budget.fits(points)?;
        }
        // An aggregation that folds every step at once gathers its groups' points itself.
        if let Some(series) = ev.fused_range_series(expr)? {
            // Held as the step-by-step gathering below holds them: each point and each series.
            let cost = series
                .iter()
                .map(|(labels, points)| points.len() + eval::SERIES_COST + labels_cost(labels))
                .fold(0usize, usize::saturating_add);
            ev.budget.hold(cost)?;
            let annotations = ev.annotations.take();
            drop(ev);
            return Ok(QueryOutput { value: Value::Matrix(sorted_matrix(series)), annotations });
        }
        // Label sets are shared with the step results while gathering; the output gets its own
        // copies once `positions` is gone (so each is held once, not twice).
        let mut positions = LabelSetPositions::default();
        let mut gathered: Vec<(Arc<Labels>, Vec<Point>)> = Vec::new();
        let distinct = eval::distinct_by_construction(expr);
        let mut t = start_ms;
        while t <= end_ms {
            ev.check_interrupted()?;
            let step_result: Vec<(Arc<Labels>, f64)> = match ev.eval(expr, t)? {
                Val::Scalar(v) => vec![(Arc::new(Labels::default()), v)],
                Val::Vector(samples) => finish_step(samples, distinct, Some(&mut ev.derived.borrow_mut()))?,
                _ => return Err(QueryError::Execution("range query step did not produce a vector".into())),
            };
            // The output is held until the query ends: each point, and each new series' label
            // set (a `count_values` or `label_replace` result can make new ones at every step).
            let mut step_cost = step_result.len();
            for (labels, value) in step_result {
                match positions.position(&labels) {
                    Some(i) => gathered[i].1.push((t, value)),
                    None => {
                        step_cost += eval::SERIES_COST + labels_cost(&labels);
                        positions.insert(labels.clone(), gathered.len());
                        gathered.push((labels, vec![(t, value)]));
                    }
                }
            }
            ev.budget.hold(step_cost)?;
            t += step_ms;
        }
        let annotations = ev.annotations.take();
        drop(positions);
        drop(ev);
        Ok(QueryOutput { value: Value::Matrix(sorted_matrix(gathered)), annotations })
    }
}

/// A range query's gathered series as its answer, in label order (each label set unshared
/// once the evaluation that shared it is gone, so mostly moved rather than copied).
fn sorted_matrix(gathered: Vec<(Arc<Labels>, Vec<Point>)>) -> Vec<RangeSeries> {
    let mut out: Vec<RangeSeries> = gathered
        .into_iter()
        .map(|(labels, points)| RangeSeries { labels: Arc::unwrap_or_clone(labels), points })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}
