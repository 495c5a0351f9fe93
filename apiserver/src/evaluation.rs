//! `EvaluationSlots` bounds how many query evaluations one query surface (the adapter's metric
//! requests, the Prometheus API's queries) runs at once: two per core. The rest wait their turn
//! without a thread each, so a burst of requests costs queueing, not hundreds of blocking-pool
//! threads each with its own allocator heap.
//!
//! Evaluations run on the surface's own threads (at most one per slot), and each goes to the
//! thread that went idle last. Under a steady load one or two threads do nearly all the work, with
//! their caches and allocator heaps warm; tokio's blocking pool wakes its threads in turn, so every
//! evaluation there started on the coldest one (a third of a `pods/*` request's CPU over 1000 pods
//! was allocator misses).

use parking_lot::Mutex;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Weak};
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
    /// The work panicked, or no thread could be started for it.
    #[error("request task failed: {0}")]
    Task(String),
}

/// See the module documentation. Cheap to clone; clones share the slots.
#[derive(Debug, Clone)]
pub struct EvaluationSlots {
    semaphore: Arc<Semaphore>,
    threads: Arc<EvaluationThreads>,
}

impl Default for EvaluationSlots {
    fn default() -> Self {
        EvaluationSlots::with_slots(2 * std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

impl EvaluationSlots {
    /// Exactly `slots` evaluations at once (at least one).
    pub fn with_slots(slots: usize) -> Self {
        EvaluationSlots {
            semaphore: Arc::new(Semaphore::new(slots.max(1))),
            threads: Arc::new(EvaluationThreads { idle: Mutex::new(Vec::new()) }),
        }
    }

    /// Runs `work` on one of the surface's threads once a slot is free, waiting at most `wait` for one
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
        let (answer, answered) = tokio::sync::oneshot::channel();
        // The slot goes with the work, not with this future: a caller that stops waiting (its
        // client went away) must not free the slot while the evaluation still runs.
        let job: Job = Box::new(move || {
            let result = std::panic::catch_unwind(AssertUnwindSafe(work)).map_err(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the evaluation panicked".to_string());
                SlotError::Task(message)
            });
            Box::new(move || {
                let _ = answer.send(result);
                drop(permit);
            })
        });
        EvaluationThreads::dispatch(&self.threads, job)?;
        answered.await.unwrap_or_else(|_| Err(SlotError::Task("the evaluation thread ended".to_string())))
    }

    /// Refuses every waiting and later evaluation with [`SlotError::Closed`] (tests close the
    /// slots to see that answer; the server's shutdown ends its listeners instead).
    #[cfg(test)]
    pub(crate) fn close(&self) {
        self.semaphore.close();
    }
}

/// An evaluation: runs the work, and returns how to hand its result over (done once its thread
/// is back among the idle ones, so the caller's next evaluation finds it there).
type Job = Box<dyn FnOnce() -> Box<dyn FnOnce() + Send> + Send>;

/// One idle thread: where to send its next job.
type IdleThread = mpsc::Sender<Dispatched>;

/// A job as a thread receives it, with the thread's own sender, which the thread puts back on
/// the idle list when the job is done.
struct Dispatched {
    job: Job,
    thread: IdleThread,
}

/// The threads of one [`EvaluationSlots`]. A thread is started only for a job that found none
/// idle, and a thread goes back on the idle list before its job's slot is freed, so there are at
/// most as many threads as slots. Threads end when the slots are dropped.
#[derive(Debug)]
struct EvaluationThreads {
    /// The threads waiting for a job, the most recently idle last.
    idle: Mutex<Vec<IdleThread>>,
}

impl EvaluationThreads {
    /// Hands `job` to the most recently idle thread, or to a new one.
    fn dispatch(threads: &Arc<EvaluationThreads>, mut job: Job) -> Result<(), SlotError> {
        loop {
            let idle = threads.idle.lock().pop();
            let Some(thread) = idle else { break };
            // A thread ends only once the slots are gone, so this fails only in a race with the end.
            match thread.send(Dispatched { job, thread: thread.clone() }) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(returned)) => job = returned.job,
            }
        }
        let (thread, jobs) = mpsc::channel::<Dispatched>();
        let first = Dispatched { job, thread };
        let runtime = tokio::runtime::Handle::try_current().ok();
        let threads = Arc::downgrade(threads);
        std::thread::Builder::new()
            .name("ringtail-eval".to_string())
            .spawn(move || {
                let _runtime = runtime.as_ref().map(|r| r.enter());
                EvaluationThreads::work(&threads, first, jobs);
            })
            .map(drop)
            .map_err(|e| SlotError::Task(format!("could not start an evaluation thread: {e}")))
    }

    /// A thread's life: run a job, go back on the idle list, hand the result over, wait for the
    /// next job. While idle, only the idle list holds the thread's sender, so dropping the slots
    /// (and with them the list) ends the thread.
    fn work(threads: &Weak<EvaluationThreads>, first: Dispatched, jobs: mpsc::Receiver<Dispatched>) {
        let mut next = Some(first);
        while let Some(Dispatched { job, thread }) = next.take().or_else(|| jobs.recv().ok()) {
            let hand_over = job();
            let Some(threads) = threads.upgrade() else {
                hand_over();
                return;
            };
            threads.idle.lock().push(thread);
            drop(threads);
            hand_over();
        }
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

    fn thread_id() -> std::thread::ThreadId {
        std::thread::current().id()
    }

    #[tokio::test]
    async fn work_goes_to_the_thread_that_went_idle_last() {
        let slots = EvaluationSlots::with_slots(2);
        let first = slots.run(None, thread_id).await.expect("runs");
        assert_ne!(first, thread_id(), "evaluations run off the caller's thread");
        for _ in 0..5 {
            assert_eq!(slots.run(None, thread_id).await.expect("runs"), first, "one thread serves one at a time");
        }
        // While one thread is held, another serves; once released, the held one is the thread
        // that went idle last.
        let (started_tx, started) = std::sync::mpsc::channel::<std::thread::ThreadId>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = tokio::spawn({
            let slots = slots.clone();
            async move {
                slots
                    .run(None, move || {
                        let _ = started_tx.send(thread_id());
                        let _ = released.recv();
                    })
                    .await
            }
        });
        let held = tokio::task::spawn_blocking(move || started.recv()).await.expect("join").expect("holder started");
        let other = slots.run(None, thread_id).await.expect("runs");
        assert_ne!(other, held);
        release.send(()).expect("the holder waits");
        holder.await.expect("holder task").expect("runs");
        assert_eq!(slots.run(None, thread_id).await.expect("runs"), held);
    }

    #[tokio::test]
    async fn a_panicking_evaluation_is_an_error_and_its_thread_serves_on() {
        let slots = EvaluationSlots::with_slots(1);
        let panicked = slots.run(None, || -> u32 { panic!("boom in the evaluation") }).await;
        match panicked {
            Err(SlotError::Task(message)) => assert!(message.contains("boom in the evaluation"), "{message}"),
            other => panic!("expected a task error, got {:?}", other.map(|_| ())),
        }
        assert!(matches!(slots.run(None, || 7).await, Ok(7)));
    }

    /// Tells its channel when the thread holding it ends.
    struct ExitSignal(std::sync::mpsc::Sender<()>);

    impl Drop for ExitSignal {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }

    thread_local! {
        static EXIT_SIGNAL: std::cell::RefCell<Option<ExitSignal>> = const { std::cell::RefCell::new(None) };
    }

    #[tokio::test]
    async fn the_threads_end_with_their_slots() {
        let slots = EvaluationSlots::with_slots(1);
        let (signal, ended) = std::sync::mpsc::channel::<()>();
        slots.run(None, move || EXIT_SIGNAL.with(|s| *s.borrow_mut() = Some(ExitSignal(signal)))).await.expect("runs");
        assert!(ended.try_recv().is_err(), "the thread waits for more work while the slots exist");
        drop(slots);
        let ended = tokio::task::spawn_blocking(move || ended.recv_timeout(Duration::from_secs(10)));
        assert!(ended.await.expect("join").is_ok(), "the thread ended once the slots were dropped");
    }
}
