//! Ringtail's PromQL: a nom parser to a typed AST and an evaluator over the tsdb store.
//!
//! PROVISIONAL: this file fixes the public API (`Engine`, `Value`, `QueryError`) that the
//! apiserver and the adapter use; the query issue fills in the parser and evaluator behind it.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;
use tsdb::{Db, Labels, Matcher};

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

/// Why a query failed. `Parse` maps to HTTP 400 (`bad_data`), `Execution` to 422, `Timeout` and
/// `TooManySamples` to 503, `Storage` to 500.
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

/// Evaluates PromQL against a store.
pub struct Engine {
    #[allow(dead_code)]
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

    /// Evaluates `query` at one instant.
    pub fn instant(&self, query: &str, at_ms: i64) -> Result<Value, QueryError> {
        self.instant_with_matchers(query, at_ms, &[])
    }

    /// Evaluates `query` at one instant with `extra` matchers added to every vector selector
    /// (the adapter uses this to restrict to the objects a request names, without a regex).
    pub fn instant_with_matchers(&self, query: &str, at_ms: i64, extra: &[Matcher]) -> Result<Value, QueryError> {
        let _ = (query, at_ms, extra);
        Err(QueryError::Execution("PROVISIONAL: evaluator not written yet".into()))
    }

    /// Evaluates `query` at `start + k*step` for every k with the point not after `end`.
    pub fn range(&self, query: &str, start_ms: i64, end_ms: i64, step_ms: i64) -> Result<Value, QueryError> {
        let _ = (query, start_ms, end_ms, step_ms);
        Err(QueryError::Execution("PROVISIONAL: evaluator not written yet".into()))
    }
}
