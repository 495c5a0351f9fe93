//! `QueryBudget` is what one running query is measured against while it runs: the samples it
//! holds in memory (`EngineOptions::max_samples`, Prometheus's `--query.max-samples`), its deadline
//! (`EngineOptions::timeout`) and a [`CancelHandle`] another thread may fire (the HTTP handler does
//! when its client disconnects). Every loop that can run long asks [`QueryBudget::check`], so a
//! query that is out of time or cancelled stops using CPU and memory promptly.
//!
//! Memory is counted in samples of 16 bytes (a timestamp and a value). A label set a query creates
//! (`count_values`, `label_replace`, every new series of a range query's output) is charged its
//! approximate heap size in the same unit, so a query making millions of label sets is bounded
//! like one holding millions of points.

use crate::QueryError;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tsdb::Labels;

/// Stops a running query from another thread: [`CancelHandle::cancel`] makes the evaluation fail
/// with [`QueryError::Cancelled`] at its next check. Cheap to clone; clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    pub fn new() -> Self {
        CancelHandle::default()
    }

    /// Asks every evaluation holding this handle to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A guard that cancels when dropped: an async request handler holds it across the await of
    /// its evaluation, so a dropped request future (the client went away) stops the evaluation.
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }
}

/// See [`CancelHandle::cancel_on_drop`].
#[derive(Debug)]
pub struct CancelOnDrop(CancelHandle);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Bytes one counted sample stands for (Prometheus's `FPoint`: an i64 time and an f64 value).
const SAMPLE_BYTES: usize = 16;

/// Approximate heap bytes of a label set beyond its strings: the shared (`Arc`) vector and its
/// allocations and, per label, two `String` headers plus two allocations' bookkeeping.
/// Measured: a `count_values` range query failing at the default limit peaked at 1.3 GB RSS
/// with the set counted at 32 bytes and a series at 6 samples, about 26 bytes per counted
/// sample; these figures bring a counted sample near its 16 bytes.
const LABEL_SET_OVERHEAD_BYTES: usize = 64;
const LABEL_OVERHEAD_BYTES: usize = 80;

/// Items a per-item loop processes between two [`QueryBudget::check`]s (a clock read per item
/// would cost as much as the item).
pub(crate) const CHECK_EVERY_ITEMS: usize = 4096;

/// See the module documentation. Shared by reference with the selection's decode threads.
#[derive(Debug)]
pub(crate) struct QueryBudget {
    max_samples: usize,
    held: AtomicUsize,
    deadline: Instant,
    cancel: Option<CancelHandle>,
}

impl QueryBudget {
    pub fn new(max_samples: usize, deadline: Instant, cancel: Option<CancelHandle>) -> Self {
        QueryBudget { max_samples, held: AtomicUsize::new(0), deadline, cancel }
    }

    pub fn max_samples(&self) -> usize {
        self.max_samples
    }

    /// Fails once the query is cancelled or out of time; `stage` names where (Prometheus's
    /// wording: "query timed out in query execution").
    #[inline]
    pub fn check(&self, stage: &'static str) -> Result<(), QueryError> {
        if self.cancel.as_ref().is_some_and(CancelHandle::is_cancelled) {
            return Err(QueryError::Cancelled(stage));
        }
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout(stage));
        }
        Ok(())
    }

    /// [`QueryBudget::check`] at every [`CHECK_EVERY_ITEMS`]th item `i` of a per-item loop.
    #[inline]
    pub fn check_item(&self, i: usize, stage: &'static str) -> Result<(), QueryError> {
        if i.is_multiple_of(CHECK_EVERY_ITEMS) {
            self.check(stage)?;
        }
        Ok(())
    }

    /// Samples held for the rest of the query.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Samples still free.
    pub fn remaining(&self) -> usize {
        self.max_samples.saturating_sub(self.held())
    }

    /// Holds `samples` more for the rest of the query (until [`QueryBudget::release`]), failing
    /// when that passes the limit.
    pub fn hold(&self, samples: usize) -> Result<(), QueryError> {
        let before = self.held.fetch_add(samples, Ordering::Relaxed);
        if before.saturating_add(samples) > self.max_samples {
            return Err(QueryError::TooManySamples("query execution"));
        }
        Ok(())
    }

    /// Holds `samples` more if they fit, else holds nothing and answers `false` (for what is
    /// only an optimisation: a cache or a precomputed table the query can do without).
    pub fn try_hold(&self, samples: usize) -> bool {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(samples).filter(|&total| total <= self.max_samples)
            })
            .is_ok()
    }

    /// Gives back samples held with [`QueryBudget::hold`] or [`QueryBudget::try_hold`].
    pub fn release(&self, samples: usize) {
        let _ = self.held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| Some(held.saturating_sub(samples)));
    }

    /// Fails when a value of `samples` more, held briefly beside what the query holds, would
    /// pass the limit (a step's intermediate vector, a materialised range vector).
    #[inline]
    pub fn fits(&self, samples: usize) -> Result<(), QueryError> {
        if self.held().saturating_add(samples) > self.max_samples {
            return Err(QueryError::TooManySamples("query execution"));
        }
        Ok(())
    }
}

/// What a label set costs in samples (see the module documentation).
pub(crate) fn labels_cost(labels: &Labels) -> usize {
    let bytes: usize = labels.iter().map(|l| LABEL_OVERHEAD_BYTES + l.name.len() + l.value.len()).sum();
    bytes_cost(LABEL_SET_OVERHEAD_BYTES + bytes)
}

/// `bytes` in samples, rounded up.
#[inline]
pub(crate) fn bytes_cost(bytes: usize) -> usize {
    bytes.div_ceil(SAMPLE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn holding_past_the_limit_fails_and_optional_holds_are_refused() {
        let budget = QueryBudget::new(100, Instant::now() + Duration::from_secs(60), None);
        budget.hold(60).expect("fits");
        assert!(budget.fits(40).is_ok());
        assert!(matches!(budget.fits(41), Err(QueryError::TooManySamples(_))));
        assert!(!budget.try_hold(41), "an optional hold past the limit is refused");
        assert_eq!(budget.held(), 60, "and holds nothing");
        assert!(budget.try_hold(40));
        budget.release(50);
        assert_eq!(budget.remaining(), 50);
        assert!(matches!(budget.hold(51), Err(QueryError::TooManySamples(_))));
    }

    #[test]
    fn a_cancelled_or_expired_budget_stops_the_query() {
        let cancel = CancelHandle::new();
        let budget = QueryBudget::new(10, Instant::now() + Duration::from_secs(60), Some(cancel.clone()));
        assert!(budget.check("query execution").is_ok());
        drop(cancel.cancel_on_drop());
        assert!(matches!(budget.check("query execution"), Err(QueryError::Cancelled("query execution"))));
        let expired = QueryBudget::new(10, Instant::now(), None);
        std::thread::sleep(Duration::from_millis(2));
        assert!(matches!(expired.check("query execution"), Err(QueryError::Timeout(_))));
    }

    #[test]
    fn label_sets_cost_their_heap_size() {
        let small = labels_cost(&Labels::from_pairs([("a", "b")]));
        let big = labels_cost(&Labels::from_pairs([("a", "x".repeat(16_000))]));
        assert!(small >= 5, "{small}");
        assert!(big >= 1000, "{big}");
    }
}
