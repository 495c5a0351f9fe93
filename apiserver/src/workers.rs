//! `Workers` is the pool of threads for the work that must yield to queries, the metrics APIs
//! and the health probes when the CPU is short: decompressing, decoding and storing remote-write
//! requests, and the store's upkeep (flushing mapped pages, the maintenance pass).
//!
//! Why: Ringtail sits on the HPA's critical path. When senders push more than its CPU share can
//! take (a pod's CPU limit, a Prometheus catching up), ingest must be what slows down — its
//! requests wait for the in-flight budget, then get 503 and are retried — not a custom-metrics
//! request or `/-/ready`. Linux weighs the threads of one cgroup on one CPU by their nice value: at
//! nice 5 a busy worker gets about a third of what a query thread gets when both want the CPU, and
//! all of it when nothing else runs, so an idle node ingests as fast as before. A fixed set of
//! threads (as many as the CPUs the process may use) also keeps decoding's allocations on a few
//! threads.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Default niceness added to the workers (`--worker-nice`).
pub const DEFAULT_NICE: i32 = 5;

type Job = Box<dyn FnOnce() + Send>;

/// The worker threads and the queue feeding them; the threads end when the pool is dropped and
/// the queue is empty.
#[derive(Debug)]
pub struct Workers {
    jobs: crossbeam::channel::Sender<Job>,
}

/// Why a job gave no result.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("a worker failed while doing its job (a bug; see the log)")]
    Panicked,
    #[error("the workers are gone")]
    Gone,
}

impl Workers {
    /// Starts `threads` workers (at least one) at niceness `nice` (0: the process's own; clamped
    /// to 0..=19). A worker whose priority cannot be lowered runs at the process's and says so once.
    pub fn start(threads: usize, nice: i32) -> std::io::Result<Workers> {
        let threads = threads.max(1);
        let nice = nice.clamp(0, 19);
        let (jobs, queue) = crossbeam::channel::unbounded::<Job>();
        let warned = Arc::new(AtomicBool::new(false));
        for index in 0..threads {
            let queue = queue.clone();
            let warned = warned.clone();
            std::thread::Builder::new().name(format!("ringtail-worker-{index}")).spawn(move || {
                if let Err(e) = lower_own_priority(nice) {
                    if !warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            nice,
                            error = %e,
                            "cannot lower the workers' priority: remote-write and store upkeep compete with queries for the CPU"
                        );
                    }
                }
                for job in queue {
                    job();
                }
            })?;
        }
        tracing::debug!(threads, nice, "workers started");
        Ok(Workers { jobs })
    }

    /// Workers for the CPUs this process may use (its cgroup quota and affinity included).
    pub fn for_available_cpus(nice: i32) -> std::io::Result<Workers> {
        Workers::start(std::thread::available_parallelism().map_or(1, usize::from), nice)
    }

    /// Runs `work` on a worker and waits for its result without blocking the async runtime. A
    /// panic in `work` is caught there (the worker lives on) and reported as `Panicked`.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, WorkerError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(work));
            // The requester may have gone (client disconnected): nobody to tell.
            let _ = done.send(outcome.map_err(|_| WorkerError::Panicked));
        });
        self.jobs.send(job).map_err(|_| WorkerError::Gone)?;
        result.await.map_err(|_| WorkerError::Gone)?
    }
}

/// Adds `nice` to the calling thread's niceness (Linux sets it per thread).
#[cfg(target_os = "linux")]
fn lower_own_priority(nice: i32) -> std::io::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    let thread = rustix::thread::gettid();
    let current = rustix::process::getpriority_process(Some(thread))?;
    rustix::process::setpriority_process(Some(thread), current.saturating_add(nice).min(19))?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn lower_own_priority(_nice: i32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_workers_and_return_their_results() {
        let workers = Workers::start(2, DEFAULT_NICE).unwrap();
        let caller = std::thread::current().id();
        let (sum, thread_name, thread) = workers
            .run(|| {
                let current = std::thread::current();
                ((1..=10).sum::<u32>(), current.name().map(str::to_string), current.id())
            })
            .await
            .unwrap();
        assert_eq!(sum, 55);
        assert!(thread_name.is_some_and(|n| n.starts_with("ringtail-worker-")));
        assert_ne!(thread, caller);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_worker_survives() {
        let workers = Workers::start(1, 0).unwrap();
        let failed = workers.run(|| -> u32 { panic!("decoder bug") }).await;
        assert!(matches!(failed, Err(WorkerError::Panicked)), "{failed:?}");
        assert_eq!(workers.run(|| 7).await.unwrap(), 7, "the one worker still takes jobs");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn workers_run_at_the_lowered_priority() {
        let own = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let workers = Workers::start(1, 3).unwrap();
        let theirs = workers
            .run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(theirs, (own + 3).min(19));
    }
}
