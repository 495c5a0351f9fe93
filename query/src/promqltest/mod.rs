//! `promqltest` runs Prometheus's PromQL test scripts (`load`/`clear`/`eval`, described in
//! `shared/promql-conformance/upstream/README-upstream.md`) against Ringtail's engine and store.
//!
//! Data goes through the real [`tsdb::Db`] (a fresh store in a temporary directory per `clear`).
//! An eval is skipped only when it uses something outside Ringtail's subset (the `features`
//! module decides exactly as the conformance inventory does); every other eval is run, and every
//! instant eval also as a range query from t−1m to t+1m (the upstream harness's extra check).
//!
//! This module holds the public API and the report (`EvalResult`, `Summary`); `script` reads the
//! script format (series lines, the value notation, eval lines and their expectations), `run`
//! executes a script against the engine and compares the results.

mod features;
mod run;
mod script;

pub use run::run_script;

use crate::EngineOptions;
use std::collections::BTreeMap;
use std::path::Path;

/// Why a script could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Syntax { file: String, line: usize, message: String },
    #[error("store error: {0}")]
    Store(#[from] tsdb::Error),
    #[error("cannot create a temporary store directory: {0}")]
    TempDir(std::io::Error),
}

/// What happened to one eval.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    Failed(String),
    /// Outside the subset; the features that put it there.
    Skipped(Vec<String>),
}

/// One eval's id (`file:line`) and outcome.
#[derive(Debug, Clone)]
pub struct EvalResult {
    pub id: String,
    pub query: String,
    pub outcome: Outcome,
}

/// Totals over any number of scripts.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Skipped evals per feature outside the subset (an eval counts under each of its features).
    pub skip_reasons: BTreeMap<String, usize>,
}

impl Summary {
    pub fn add(&mut self, results: &[EvalResult]) {
        for r in results {
            match &r.outcome {
                Outcome::Passed => self.passed += 1,
                Outcome::Failed(_) => self.failed += 1,
                Outcome::Skipped(reasons) => {
                    self.skipped += 1;
                    for reason in reasons {
                        *self.skip_reasons.entry(reason.clone()).or_default() += 1;
                    }
                }
            }
        }
    }

    /// The closing line: `N passed, M failed, K skipped`.
    pub fn line(&self) -> String {
        format!("{} passed, {} failed, {} skipped", self.passed, self.failed, self.skipped)
    }
}

/// Runner settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub engine: EngineOptions,
    /// Disk budget of each temporary store.
    pub storage_size_bytes: u64,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { engine: EngineOptions::default(), storage_size_bytes: 64 << 20 }
    }
}

/// Runs one script file.
pub fn run_file(path: &Path, options: &RunOptions) -> Result<Vec<EvalResult>, ScriptError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ScriptError::Read { path: path.display().to_string(), source })?;
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    run_script(&name, &text, options)
}
