//! Ringtail's PromQL: a nom parser to a typed AST and an evaluator over the tsdb store.
//!
//! Map:
//! - [`ast`] — the syntax tree ([`ast::Expr`]) with value types and positions.
//! - `parser` — [`parse`]: nom lexemes plus a precedence climber, Prometheus's error wording.
//! - `params` — the other textual forms of the HTTP API, one parser each: [`parse_selector`],
//!   [`parse_time_ms`], [`parse_duration_ms`] and [`parse_duration_param_ms`].
//! - [`functions`] — the function table (signatures, which names are supported).
//! - `engine` — [`Engine`]: runs a query at an instant or over a range and shapes the result.
//! - `budget` — what a running query is measured against: samples held, deadline, and a
//!   [`CancelHandle`] (checked in every loop that can run long).
//! - `select` — plans each selector's time span and labels, selects it from the store once.
//! - `eval` — evaluates the tree per step over the selected samples.
//! - `estimate` — a lower bound of a range query's output, so an obvious excess is refused up front.
//! - `calls`, `aggregate`, `binary` — functions, aggregation operators, binary operators.
//! - `mathfns` — the numeric core (rate extrapolation, Kahan sums, regression, smoothing, quantiles).
//! - `value`, `error` — what a query returns ([`Value`], [`QueryOutput`]) and why it fails
//!   ([`QueryError`], [`ParseError`]); leaves that import nothing from the evaluator.
//! - `promqltest` (cargo feature `promqltest`) — a runner for Prometheus's PromQL test scripts
//!   (`load`/`eval`/`clear`), for the `ringtail promql-test` command and the conformance test.
//!
//! Key design decision: evaluation is step-at-a-time over data selected once per selector for the
//! whole query range. A range query costs one store read per selector plus a window per series
//! and step, and aggregation hashes labels in place instead of allocating per sample.
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
mod budget;
mod calls;
mod engine;
mod error;
mod estimate;
mod eval;
pub mod functions;
mod label_keys;
mod mathfns;
mod parallel;
mod params;
mod parser;
#[cfg(feature = "promqltest")]
pub mod promqltest;
mod select;
mod value;

pub use budget::{CancelHandle, CancelOnDrop};
pub use engine::{Engine, EngineOptions};
pub use error::{ParamError, ParseError, QueryError, SelectorError};
pub use params::{parse_duration_ms, parse_duration_param_ms, parse_selector, parse_time_ms};
pub use parser::{line_col, parse};
pub use value::{format_value, write_value, Annotations, InstantSample, QueryOutput, RangeSeries, Value};
