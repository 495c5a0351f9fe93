//! `EvaluationSlots` bounds how many query evaluations one query surface (the adapter's metric
//! requests, the Prometheus API's queries) runs at once: two per core. The rest wait their turn
//! without a thread each, so a burst of requests costs queueing, not hundreds of blocking-pool
//! threads each with its own allocator heap.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Why [`EvaluationSlots::run`] did not return the work's result.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// No slot freed within the allowed wait.
    #[error("query timed out in query queue")]
    TimedOut,
    /// The slots were closed (the server is stopping).
    #[error("the server is shutting down")]
    Closed,
    /// The work panicked or was cancelled.
    #[error("request task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// See the module documentation. Cheap to clone; clones share the slots.
#[derive(Debug, Clone)]
pub struct EvaluationSlots {
    semaphore: Arc<Semaphore>,
}

impl Default for EvaluationSlots {
    fn default() -> Self {
        EvaluationSlots::with_slots(2 * std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

impl EvaluationSlots {
    /// Exactly `slots` evaluations at once (at least one).
    pub fn with_slots(slots: usize) -> Self {
        EvaluationSlots { semaphore: Arc::new(Semaphore::new(slots.max(1))) }
    }

    /// Runs `work` on the blocking pool once a slot is free, waiting at most `wait` for one
    /// (`None`: as long as it takes). The slot is held until `work` returns, even when the
    /// returned future is dropped first (so a caller that gives up should also make `work` stop,
    /// as the query API does with a `query::CancelHandle`).
    pub async fn run<T: Send + 'static>(
        &self,
        wait: Option<Duration>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, SlotError> {
        let slot = self.semaphore.clone().acquire_owned();
        let acquired = match wait {
            Some(wait) => tokio::time::timeout(wait, slot).await.map_err(|_| SlotError::TimedOut)?,
            None => slot.await,
        };
        let permit = acquired.map_err(|_| SlotError::Closed)?;
        // The slot goes with the work, not with this future: a caller that stops waiting (its
        // client went away) must not free the slot while the evaluation still runs.
        Ok(tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await?)
    }

    /// Refuses every waiting and later evaluation with [`SlotError::Closed`] (tests close the
    /// slots to see that answer; the server's shutdown ends its listeners instead).
    #[cfg(test)]
    pub(crate) fn close(&self) {
        self.semaphore.close();
    }
}

/// Occupying slots in tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{EvaluationSlots, SlotError};

    /// Starts work that holds one slot of `slots` (once one is free) until the returned sender
    /// sends; the task answers `true` when it was released that way.
    pub(crate) fn occupy_one(
        slots: &EvaluationSlots,
    ) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<Result<bool, SlotError>>) {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let slots = slots.clone();
        let holder = tokio::spawn(async move { slots.run(None, move || released.recv().is_ok()).await });
        (release, holder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_waits_for_a_free_slot() {
        let slots = EvaluationSlots::with_slots(1);
        let (release, holder) = test_support::occupy_one(&slots);
        // The holder has the only slot once a short wait times out.
        while slots.run(Some(Duration::from_millis(5)), || ()).await.is_ok() {
            tokio::task::yield_now().await;
        }
        assert!(matches!(slots.run(Some(Duration::from_millis(20)), || 1).await, Err(SlotError::TimedOut)));
        let queued = tokio::spawn({
            let slots = slots.clone();
            async move { slots.run(None, || 2).await }
        });
        release.send(()).expect("the holder waits for this");
        assert!(matches!(holder.await.expect("holder task"), Ok(true)));
        assert!(matches!(queued.await.expect("queued task"), Ok(2)));
        slots.close();
        assert!(matches!(slots.run(None, || 3).await, Err(SlotError::Closed)));
    }

    #[tokio::test]
    async fn a_dropped_caller_leaves_the_slot_busy_until_its_work_returns() {
        let slots = EvaluationSlots::with_slots(1);
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let caller = tokio::spawn({
            let slots = slots.clone();
            async move {
                slots
                    .run(None, move || {
                        let _ = started_tx.send(());
                        released.recv().is_ok()
                    })
                    .await
            }
        });
        tokio::task::spawn_blocking(move || started.recv()).await.expect("join").expect("the work started");
        caller.abort();
        assert!(caller.await.expect_err("aborted").is_cancelled());
        assert!(
            matches!(slots.run(Some(Duration::from_millis(20)), || 1).await, Err(SlotError::TimedOut)),
            "the abandoned work still holds the only slot"
        );
        release.send(()).expect("the work waits for this");
        assert!(matches!(slots.run(None, || 2).await, Ok(2)));
    }
}
