//! Ringtail's PromQL: a nom parser to a typed AST and an evaluator over the tsdb store.
//!
//! Map:
//! - `ast` — the syntax tree ([`Expr`]) with value types and positions.
//! - `parser` — [`parse`]: nom lexemes plus a precedence climber, Prometheus's error wording.
//! - `functions` — the function table (signatures, which names are supported).
//! - `eval` — the evaluator: plans each selector's time span, selects it from the store once, and
//!   evaluates the tree per step over the decoded samples.
//! - `calls`, `aggregate`, `binary` — functions, aggregation operators, binary operators.
//! - `mathfns` — the numeric core (rate extrapolation, Kahan sums, quantiles).
//! - [`promqltest`] — a runner for Prometheus's PromQL test scripts (`load`/`eval`/`clear`).
//!
//! Key design decision: evaluation is step-at-a-time over data selected once per selector for the
//! whole query range. A range query costs one store read per selector plus a binary search per
//! series and step, and aggregation hashes labels in place instead of allocating per sample.
//! Semantics are Prometheus 3's: left-open windows, delayed `__name__` removal.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let db = std::sync::Arc::new(tsdb::Db::open(tsdb::Options::new(dir.path())).unwrap());
//! let engine = query::Engine::new(db, query::EngineOptions::default());
//! assert_eq!(engine.instant("1 + 2 * 3", 0).unwrap(), query::Value::Scalar { ts_ms: 0, value: 7.0 });
//! ```
#![forbid(unsafe_code)]

mod aggregate;
pub mod ast;
mod binary;
mod calls;
mod eval;
pub mod functions;
mod mathfns;
mod parser;
pub mod promqltest;

pub use eval::Annotations;
pub use parser::{line_col, parse, parse_duration_ms, ParseError, MAX_DEPTH};

use ast::ValueType;
use eval::{finish_step, Evaluator, Val};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tsdb::{Db, Labels, Matcher};

/// A sample value as Prometheus writes it in messages and JSON (`1.5`, `+Inf`, `-Inf`, `NaN`;
/// shortest round-trip digits, never an exponent, as Go's `FormatFloat(v, 'f', -1, 64)`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5 m).
    pub lookback: Duration,
    /// Most samples one query may hold in memory at once.
    pub max_samples: usize,
    /// Longest a query may run.
    pub timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions { lookback: Duration::from_secs(300), max_samples: 50_000_000, timeout: Duration::from_secs(120) }
    }
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    pub labels: Labels,
    pub ts_ms: i64,
    pub value: f64,
}

/// One series of a matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

/// A query result.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { ts_ms: i64, value: f64 },
    String { ts_ms: i64, value: String },
    Vector(Vec<InstantSample>),
    Matrix(Vec<RangeSeries>),
}

/// A result with the warnings and infos the evaluation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutput {
    pub value: Value,
    pub annotations: Annotations,
}

/// Why a query failed. `Parse` maps to HTTP 400 (`bad_data`), `Execution` and `TooManySamples` to
/// 422, `Timeout` to 503, `Storage` to 500 (as Prometheus's API does).
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("parse error at char {position}: {message}")]
    Parse { position: usize, message: String },
    #[error("{0}")]
    Execution(String),
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    #[error("storage error: {0}")]
    Storage(#[from] tsdb::Error),
}

impl QueryError {
    /// The message without position decoration (what Prometheus's test scripts compare).
    pub fn message(&self) -> String {
        match self {
            QueryError::Parse { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

impl From<ParseError> for QueryError {
    fn from(e: ParseError) -> Self {
        QueryError::Parse { position: e.pos, message: e.message }
    }
}

/// Evaluates PromQL against a store.
pub struct Engine {
    db: Arc<Db>,
    options: EngineOptions,
}

impl Engine {
    pub fn new(db: Arc<Db>, options: EngineOptions) -> Self {
        Engine { db, options }
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
        let ev = Evaluator::prepare(&self.db, &self.options, query, expr, at_ms, at_ms, extra, false)?;
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
                let finished = finish_step(samples, eval::distinct_by_construction(expr))?;
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
        let mut ev = Evaluator::prepare(&self.db, &self.options, query, expr, start_ms, end_ms, extra, true)?;
        ev.interval_ms = step_ms;
        let mut index: HashMap<Arc<Labels>, usize> = HashMap::new();
        let mut out: Vec<RangeSeries> = Vec::new();
        let mut total_points = 0usize;
        let distinct = eval::distinct_by_construction(expr);
        let mut t = start_ms;
        while t <= end_ms {
            ev.check_deadline()?;
            let step_result: Vec<(Arc<Labels>, f64)> = match ev.eval(expr, t)? {
                Val::Scalar(v) => vec![(Arc::new(Labels::default()), v)],
                Val::Vector(samples) => finish_step(samples, distinct)?,
                _ => return Err(QueryError::Execution("range query step did not produce a vector".into())),
            };
            total_points += step_result.len();
            if total_points > self.options.max_samples {
                return Err(QueryError::TooManySamples("query execution"));
            }
            for (labels, value) in step_result {
                match index.get(&labels) {
                    Some(&i) => out[i].points.push((t, value)),
                    None => {
                        index.insert(labels.clone(), out.len());
                        out.push(RangeSeries { labels: Arc::unwrap_or_clone(labels), points: vec![(t, value)] });
                    }
                }
            }
            t += step_ms;
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(QueryOutput { value: Value::Matrix(out), annotations: ev.annotations.into_inner() })
    }
}
