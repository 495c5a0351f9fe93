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
//!
//! Under a CPU limit (a cgroup quota, see `cpu_limit`) priorities are not enough: once
//! the process has used its quota for the CFS period, the kernel stops every thread until the next
//! period, and a probe that arrives then waits out the rest of it (up to 90 ms of Kubernetes's
//! 100 ms period with a limit of 0.1 CPU). So the workers pace themselves (`Pacer`): before a job
//! they look at the whole process's CPU time, and while it runs above `1 − headroom` of the limit
//! they wait, which keeps the process out of throttling and leaves the headroom to queries and
//! probes. Requests then queue for the in-flight budget and get 503, as under any overload.

use crate::cpu_limit::{self, CpuLimit};
use parking_lot::Mutex;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default niceness added to the workers (`--worker-nice`).
pub const DEFAULT_NICE: i32 = 5;
/// Default share of a CPU limit the workers leave to everything else (`--cpu-limit-headroom`).
pub const DEFAULT_CPU_LIMIT_HEADROOM: f64 = 0.3;
/// How often the pacer reads the CPU limit again (a container's limit can be resized in place).
const LIMIT_READ_EVERY: Duration = Duration::from_secs(1);
/// Longest single wait of a paced worker before it looks again.
const MAX_PACE_WAIT: Duration = Duration::from_millis(50);
/// Shortest wait: waking up to find a few microseconds still owed would spend on switching
/// threads the CPU the wait is meant to save.
const MIN_PACE_WAIT: Duration = Duration::from_millis(2);

type Job = Box<dyn FnOnce() + Send>;

/// The worker threads and the queue feeding them; the threads end when the pool is dropped and
/// the queue is empty.
#[derive(Debug)]
pub struct Workers {
    jobs: crossbeam::channel::Sender<Job>,
    pacer: Arc<Pacer>,
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
    /// Under a CPU limit they keep `headroom` of it (0..0.9; 0: no pacing) free for other threads.
    pub fn start(threads: usize, nice: i32, headroom: f64) -> std::io::Result<Workers> {
        let threads = threads.max(1);
        let nice = nice.clamp(0, 19);
        let pacer = Arc::new(Pacer::new(headroom));
        let (jobs, queue) = crossbeam::channel::unbounded::<Job>();
        let warned = Arc::new(AtomicBool::new(false));
        for index in 0..threads {
            let queue = queue.clone();
            let warned = warned.clone();
            let pacer = pacer.clone();
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
                    pacer.wait_for_headroom();
                    job();
                }
            })?;
        }
        tracing::debug!(threads, nice, headroom, "workers started");
        Ok(Workers { jobs, pacer })
    }

    /// Workers for the CPUs this process may use (its cgroup quota and affinity included).
    pub fn for_available_cpus(nice: i32, headroom: f64) -> std::io::Result<Workers> {
        Workers::start(std::thread::available_parallelism().map_or(1, usize::from), nice, headroom)
    }

    /// Seconds the workers have waited so far to stay under the CPU limit.
    pub fn paced_seconds(&self) -> f64 {
        self.pacer.waited_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// The CPU limit the workers pace against, as last read.
    pub fn cpu_limit(&self) -> Option<CpuLimit> {
        self.pacer.state.lock().limit
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

/// The workers' figures in `/metrics`: time paced, and the CPU limit paced against.
#[derive(Debug)]
pub(crate) struct WorkersCollector(pub(crate) Arc<Workers>);

impl prometheus_client::collector::Collector for WorkersCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let paced = ConstCounter::new(self.0.paced_seconds());
        paced.encode(encoder.encode_descriptor(
            "ringtail_worker_paced_seconds",
            "Time the worker threads (remote-write decoding, store upkeep) waited to keep the process under its CPU limit",
            None,
            paced.metric_type(),
        )?)?;
        let limit = ConstGauge::new(self.0.cpu_limit().map_or(0.0, |l| l.cpus));
        limit.encode(encoder.encode_descriptor(
            "ringtail_cpu_limit_cores",
            "The CPU limit (cgroup quota) the process runs under, in CPUs; 0 when none was found",
            None,
            limit.metric_type(),
        )?)
    }
}

/// Keeps the process's CPU use under `1 − headroom` of its CPU limit by holding workers back
/// between jobs: a leaky bucket over the process's CPU time (every thread's, so queries count
/// too), filled by what the process used and drained at the allowed rate. Above a small burst
/// the next job waits until the bucket is back down. A job, once started, runs to its end, so a
/// period can still see one job's worth more.
#[derive(Debug)]
struct Pacer {
    /// Share of the limit left to others; 0 turns pacing off.
    headroom: f64,
    state: Mutex<PaceState>,
    waited_ns: AtomicU64,
}

#[derive(Debug, Default)]
struct PaceState {
    limit: Option<CpuLimit>,
    limit_read_at: Option<Instant>,
    /// When the bucket was last updated, and the process CPU time then.
    seen_at: Option<(Instant, Duration)>,
    /// CPU seconds used beyond the allowed rate, not yet drained.
    excess: f64,
}

impl PaceState {
    /// Updates the bucket with the process CPU time `cpu` at `now`; how long to wait before the
    /// next job (`None`: go), when the process may use `allowed` CPUs with bursts of `burst` CPU
    /// seconds.
    fn observe(&mut self, now: Instant, cpu: Duration, allowed: f64, burst: f64) -> Option<Duration> {
        if let Some((then, cpu_then)) = self.seen_at {
            let used = cpu.saturating_sub(cpu_then).as_secs_f64();
            let drained = allowed * now.saturating_duration_since(then).as_secs_f64();
            self.excess = (self.excess + used - drained).max(0.0);
        }
        self.seen_at = Some((now, cpu));
        (self.excess > burst).then(|| Duration::from_secs_f64((self.excess - burst) / allowed))
    }
}

impl Pacer {
    fn new(headroom: f64) -> Pacer {
        Pacer {
            headroom: if headroom.is_finite() { headroom.clamp(0.0, 0.9) } else { 0.0 },
            state: Mutex::new(PaceState::default()),
            waited_ns: AtomicU64::new(0),
        }
    }

    fn wait_for_headroom(&self) {
        if self.headroom == 0.0 {
            return;
        }
        while let Some(wait) = self.delay() {
            let wait = wait.clamp(MIN_PACE_WAIT, MAX_PACE_WAIT);
            std::thread::sleep(wait);
            self.waited_ns.fetch_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }

    fn delay(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut state = self.state.lock();
        if state.limit_read_at.is_none_or(|at| now.duration_since(at) >= LIMIT_READ_EVERY) {
            state.limit = cpu_limit::detect();
            state.limit_read_at = Some(now);
        }
        let limit = state.limit?;
        let allowed = limit.cpus * (1.0 - self.headroom);
        // Half the headroom of one period: what a burst may take before the workers hold back.
        let burst = limit.cpus * limit.period.as_secs_f64() * self.headroom / 2.0;
        state.observe(now, process_cpu_time(), allowed, burst)
    }
}

/// CPU time of every thread of this process so far.
fn process_cpu_time() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(u64::try_from(time.tv_sec).unwrap_or(0), u32::try_from(time.tv_nsec).unwrap_or(0))
}

/// Adds `nice` to the calling thread's niceness (Linux sets it per thread).
#[cfg(target_os = "linux")]
pub(crate) fn lower_own_priority(nice: i32) -> std::io::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    let thread = rustix::thread::gettid();
    let current = rustix::process::getpriority_process(Some(thread))?;
    rustix::process::setpriority_process(Some(thread), current.saturating_add(nice).min(19))?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn lower_own_priority(_nice: i32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_workers_and_return_their_results() {
        let workers = Workers::start(2, DEFAULT_NICE, DEFAULT_CPU_LIMIT_HEADROOM).unwrap();
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
        let workers = Workers::start(1, 0, 0.0).unwrap();
        let failed = workers.run(|| -> u32 { panic!("decoder bug") }).await;
        assert!(matches!(failed, Err(WorkerError::Panicked)), "{failed:?}");
        assert_eq!(workers.run(|| 7).await.unwrap(), 7, "the one worker still takes jobs");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn workers_run_at_the_lowered_priority() {
        let own = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let workers = Workers::start(1, 3, 0.0).unwrap();
        let theirs = workers
            .run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(theirs, (own + 3).min(19));
    }

    #[test]
    fn the_pacer_holds_back_only_past_the_allowed_rate_and_its_burst() {
        let mut state = PaceState::default();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let cpu = Duration::from_millis;
        // 0.07 CPUs allowed, bursts of 1.5 ms.
        let (allowed, burst) = (0.07, 0.0015);
        assert_eq!(state.observe(at(0), cpu(0), allowed, burst), None, "the first look only starts the bucket");
        assert_eq!(state.observe(at(100), cpu(7), allowed, burst), None, "exactly the allowed rate");
        assert_eq!(state.observe(at(200), cpu(15), allowed, burst), None, "1 ms over: within the burst");
        let wait = state.observe(at(300), cpu(25), allowed, burst).unwrap();
        // 1 ms + 3 ms over, minus the 1.5 ms burst: 2.5 ms of CPU to drain at 0.07 CPUs.
        assert!((wait.as_secs_f64() - 0.0025 / 0.07).abs() < 1e-9, "{wait:?}");
        assert_eq!(state.observe(at(400), cpu(25), allowed, burst), None, "idle drains the bucket");
        assert_eq!(state.excess, 0.0, "never below empty: idle time is not saved up");
    }

    #[test]
    fn without_headroom_nothing_waits() {
        let off = Pacer::new(0.0);
        off.wait_for_headroom();
        assert_eq!(off.waited_ns.load(Ordering::Relaxed), 0);
        assert!(off.state.lock().limit_read_at.is_none(), "pacing off does not even look for a limit");
        assert_eq!(Pacer::new(f64::NAN).headroom, 0.0);
        assert_eq!(Pacer::new(5.0).headroom, 0.9);
    }
}
