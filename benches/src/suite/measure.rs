//! `measure` owns how every figure is taken: a process's CPU time (utime + stime from
//! `/proc/<pid>/stat`), its resident set now (`VmRSS`, also summed over the process tree) and at
//! peak (`VmHWM`), bytes on disk (the allocated blocks of every file under a directory, as `du`
//! counts them, and their apparent size), percentiles, an open-loop request generator recording
//! latency in an hdrhistogram, and timed PromQL queries.

use crate::{clock_ticks_per_second, cpu_seconds, peak_rss_mib};
use anyhow::{anyhow, Context, Result};
use hdrhistogram::Histogram;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Current resident set (`VmRSS`) of `pid` in MiB; NaN when it cannot be read.
pub fn rss_mib(pid: u32) -> f64 {
    status_field_kib(pid, "VmRSS:").map(|kib| kib / 1024.0).unwrap_or(f64::NAN)
}

/// Anonymous resident memory (`RssAnon`: heap, stacks, anonymous maps; no file-backed pages such
/// as a memory-mapped store) of `pid` in MiB; NaN when it cannot be read.
pub fn anon_rss_mib(pid: u32) -> f64 {
    status_field_kib(pid, "RssAnon:").map(|kib| kib / 1024.0).unwrap_or(f64::NAN)
}

/// Peak resident set (`VmHWM`) of `pid` in MiB; NaN when it cannot be read.
pub fn peak_mib(pid: u32) -> f64 {
    peak_rss_mib(pid)
}

fn status_field_kib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds (user + system) `pid` has used so far.
pub fn cpu(pid: u32) -> Result<f64> {
    static TICKS: OnceLock<f64> = OnceLock::new();
    let ticks = *TICKS.get_or_init(clock_ticks_per_second);
    cpu_seconds(pid, ticks).map_err(|e| anyhow!("reading CPU time of process {pid}: {e}"))
}

/// Waits until `pid` uses less than a tenth of a core over half a second (work left over from
/// an overload, such as abandoned queries, would otherwise land on the next measurement), at
/// most `limit`; returns how long it waited.
pub async fn wait_idle(pid: u32, limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    let window = Duration::from_millis(500);
    loop {
        let before = cpu(pid)?;
        tokio::time::sleep(window).await;
        let used = cpu(pid)? - before;
        if used < 0.1 * window.as_secs_f64() || started.elapsed() >= limit {
            return Ok(started.elapsed());
        }
    }
}

/// Bytes allocated on disk under `dir` (512-byte blocks of every file, as `du` counts them;
/// sparse preallocated files count only what was written).
pub fn disk_bytes(dir: &Path) -> Result<u64> {
    disk_usage(dir).map(|usage| usage.allocated_bytes)
}

/// What the files under a directory take: allocated blocks and their apparent sizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// 512-byte blocks of every file (`du`); a sparse file counts only its written pages.
    pub allocated_bytes: u64,
    /// Sum of file lengths (`du --apparent-size`); a sparse file counts in full.
    pub apparent_bytes: u64,
}

/// [`DiskUsage`] of every file under `dir`; files removed while walking (compaction) are skipped.
pub fn disk_usage(dir: &Path) -> Result<DiskUsage> {
    let mut usage = DiskUsage::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let entries = match std::fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("listing {}", path.display())),
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                usage.allocated_bytes += meta.blocks() * 512;
                usage.apparent_bytes += meta.len();
            }
        }
    }
    Ok(usage)
}

/// Resident memory of `pid` and every process it started, in bytes: `VmRSS` and `RssAnon` summed
/// over the tree (children from `/proc/<pid>/task/*/children`). `None` when `pid` is gone.
pub fn tree_memory_bytes(pid: u32) -> Option<(u64, u64)> {
    let mut rss = 0;
    let mut anon = 0;
    let mut pending = vec![pid];
    while let Some(next) = pending.pop() {
        let (Some(rss_kib), anon_kib) = (status_field_kib(next, "VmRSS:"), status_field_kib(next, "RssAnon:")) else {
            if next == pid {
                return None;
            }
            continue;
        };
        rss += (rss_kib * 1024.0) as u64;
        anon += (anon_kib.unwrap_or(0.0) * 1024.0) as u64;
        pending.extend(child_pids(next));
    }
    Some((rss, anon))
}

fn child_pids(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return vec![] };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

/// The `q` quantile (0..=1) of sorted `values` (nearest rank); NaN when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Sorts `values` ascending (NaN last).
pub fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// An empty latency histogram in microseconds: 1 µs to 600 s at 3 significant digits.
pub fn latency_histogram() -> Result<Histogram<u64>> {
    Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).context("creating a latency histogram")
}

/// Records `elapsed` in a [`latency_histogram`] (saturating at its top, at least 1 µs).
pub fn record_latency(histogram: &mut Histogram<u64>, elapsed: Duration) {
    histogram.saturating_record((elapsed.as_micros() as u64).max(1));
}

/// The `q` quantile (0..=1) of a [`latency_histogram`] in milliseconds; NaN when it is empty.
pub fn histogram_quantile_ms(histogram: &Histogram<u64>, q: f64) -> f64 {
    if histogram.is_empty() {
        return f64::NAN;
    }
    histogram.value_at_quantile(q) as f64 / 1000.0
}

/// Validates a response body of a load request.
pub type ResponseCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Latency of an open-loop run.
pub struct LoadResult {
    /// Microseconds from each request's intended send time to its complete response.
    pub histogram: Histogram<u64>,
    pub requests: u64,
    pub failures: u64,
}

impl LoadResult {
    /// The `q` quantile in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        histogram_quantile_ms(&self.histogram, q)
    }
}

/// Sends `make()` at `rate` per second for `duration`, open loop (a request is sent on schedule
/// whether or not earlier ones finished, and its latency counts from the scheduled instant, so a
/// stalled server is not hidden by coordinated omission). `check` validates each response body;
/// a wrong body, an error status or a timeout is a failure (recorded at its latency).
pub async fn open_loop(
    rate: u64,
    duration: Duration,
    make: impl Fn() -> reqwest::RequestBuilder,
    check: ResponseCheck,
) -> Result<LoadResult> {
    let histogram = Arc::new(Mutex::new(latency_histogram()?));
    let failures = Arc::new(AtomicU64::new(0));
    let period = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let total = (duration.as_secs_f64() * rate as f64).round() as u64;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let intended = started + period * i as u32;
        tokio::time::sleep_until(intended.into()).await;
        let request = make();
        let (histogram, failures, check) = (histogram.clone(), failures.clone(), check.clone());
        tasks.push(tokio::spawn(async move {
            let ok = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    response.text().await.map(|body| check(&body)).unwrap_or(false)
                }
                _ => false,
            };
            let elapsed = intended.elapsed();
            if let Ok(mut h) = histogram.lock() {
                record_latency(&mut h, elapsed);
            }
            if !ok {
                failures.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.context("a load request task panicked")?;
    }
    let histogram = histogram.lock().map_err(|_| anyhow!("latency histogram lock poisoned"))?.clone();
    Ok(LoadResult { requests: histogram.len(), histogram, failures: failures.load(Ordering::Relaxed) })
}

/// A PromQL query through the Prometheus HTTP API: instant at `time_s`, or a range ending there.
#[derive(Clone, Debug)]
pub struct PromQuery {
    pub expr: String,
    pub time_s: f64,
    /// `Some((range, step))` for a range query.
    pub range: Option<(Duration, Duration)>,
}

impl PromQuery {
    fn path_and_params(&self) -> (&'static str, Vec<(&'static str, String)>) {
        match self.range {
            None => ("/query", vec![("query", self.expr.clone()), ("time", format!("{:.3}", self.time_s))]),
            Some((range, step)) => (
                "/query_range",
                vec![
                    ("query", self.expr.clone()),
                    ("start", format!("{:.3}", self.time_s - range.as_secs_f64())),
                    ("end", format!("{:.3}", self.time_s)),
                    ("step", format!("{}", step.as_secs_f64())),
                ],
            ),
        }
    }
}

/// Runs `query` once against the API at `api_url` (`…/api/v1`) with `extra` parameters; returns
/// the wall time to the complete body and the number of result series. A failed query or one
/// with no series is an error.
pub async fn time_query(
    client: &reqwest::Client,
    api_url: &str,
    query: &PromQuery,
    extra: &[(&str, &str)],
) -> Result<(Duration, usize)> {
    let (path, mut params) = query.path_and_params();
    params.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let started = Instant::now();
    let response = client.post(format!("{api_url}{path}")).form(&params).send().await.context("sending a query")?;
    let status = response.status();
    let body = response.bytes().await.context("reading a query response")?;
    let elapsed = started.elapsed();
    let json: serde_json::Value = serde_json::from_slice(&body).with_context(|| {
        format!("{api_url}{path}: {status}, not JSON: {}", String::from_utf8_lossy(&body[..body.len().min(200)]))
    })?;
    if !status.is_success() || json["status"] != "success" {
        return Err(anyhow!(
            "{api_url}{path} `{}`: {status} {}",
            query.expr,
            json.to_string().chars().take(300).collect::<String>()
        ));
    }
    let series = json["data"]["result"].as_array().map_or(0, Vec::len);
    Ok((elapsed, series))
}

/// CPU seconds (user + system) the bench process itself has used so far: the load generator's
/// or the exporter's side, reported apart from the server's.
pub fn own_cpu() -> Result<f64> {
    cpu(std::process::id())
}

/// The soft and hard open-files limits of this process (`Max open files` in `/proc/self/limits`;
/// `u64::MAX` for `unlimited`); `None` when they cannot be read.
pub fn open_files_limits() -> Option<(u64, u64)> {
    process_open_files_limits(std::process::id())
}

fn process_open_files_limits(pid: u32) -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    parse_open_files_limits(&limits)
}

/// Raises `pid`'s soft open-files limit to its hard limit with util-linux `prlimit` (the crate
/// forbids `unsafe`, so no `setrlimit` here; a process may raise its own soft limit up to the hard
/// one). Whether the soft limit now equals the hard one.
fn raise_open_files_soft_limit(pid: u32) -> bool {
    let Some((soft, hard)) = process_open_files_limits(pid) else { return false };
    if soft >= hard {
        return true;
    }
    let hard_text = if hard == u64::MAX { "unlimited".to_string() } else { hard.to_string() };
    let raised = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={hard_text}:{hard_text}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    raised && process_open_files_limits(pid).is_some_and(|(soft, hard)| soft >= hard)
}

fn parse_open_files_limits(limits: &str) -> Option<(u64, u64)> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let mut next = || fields.next().map(|f| if f == "unlimited" { Ok(u64::MAX) } else { f.parse::<u64>() });
    Some((next()?.ok()?, next()?.ok()?))
}

/// Makes sure this process may open `needed` files for `what`: a soft limit below that is raised
/// to the hard limit (systems started afterwards inherit it); an error naming the fix when even
/// that is too low or cannot be raised. Unknown limits pass.
pub fn ensure_open_files(needed: u64, what: &str) -> Result<()> {
    if open_files_limits().is_some_and(|(soft, hard)| soft < needed && hard >= needed) {
        raise_open_files_soft_limit(std::process::id());
    }
    match open_files_limits() {
        Some((soft, hard)) if soft < needed => Err(anyhow!(
            "{what} need up to {needed} open files but `ulimit -n` is {soft} (hard limit {hard}): run \
             `ulimit -n {needed}` in the shell before ringtail-bench{}",
            if hard < needed { " (as root: the hard limit is lower)" } else { "" }
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_open_files_limit_is_raised_to_the_hard_one() -> Result<()> {
        if std::process::Command::new("prlimit").arg("--version").output().is_err() {
            return Ok(()); // util-linux's prlimit is not installed: nothing to check here
        }
        let Some((_, hard)) = open_files_limits() else { return Ok(()) };
        let low = hard.min(256);
        if low == hard {
            return Ok(()); // no room to lower the soft limit below the hard one
        }
        let mut child = std::process::Command::new("sh")
            .args(["-c", &format!("ulimit -Sn {low} && exec sleep 30")])
            .spawn()
            .context("starting sh")?;
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_open_files_limits(pid).is_none_or(|(soft, _)| soft != low) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let lowered = process_open_files_limits(pid);
        let raised = raise_open_files_soft_limit(pid);
        let after = process_open_files_limits(pid);
        child.kill().context("stopping the child")?;
        child.wait().context("reaping the child")?;
        assert_eq!(lowered, Some((low, hard)));
        assert!(raised);
        assert_eq!(after, Some((hard, hard)));
        Ok(())
    }

    #[test]
    fn open_files_limits_parse() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files_limits(limits), Some((1024, 524_288)));
        let unlimited = "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limits(unlimited), Some((u64::MAX, u64::MAX)));
        assert_eq!(parse_open_files_limits("Max processes 5 5 processes\n"), None);
        assert!(ensure_open_files(1, "one file").is_ok());
        if open_files_limits().is_some_and(|(_, hard)| hard < u64::MAX - 1) {
            let error = ensure_open_files(u64::MAX - 1, "everything").map_err(|e| e.to_string());
            assert!(error.is_err_and(|e| e.contains("ulimit -n")));
        }
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let values = sorted(vec![5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(quantile(&values, 0.5), 3.0);
        assert_eq!(quantile(&values, 0.99), 5.0);
        assert_eq!(quantile(&values, 0.0), 1.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn histogram_quantiles_in_ms() -> Result<()> {
        let mut histogram = latency_histogram()?;
        assert!(histogram_quantile_ms(&histogram, 0.5).is_nan());
        for ms in 1..=1000u64 {
            record_latency(&mut histogram, Duration::from_millis(ms));
        }
        record_latency(&mut histogram, Duration::ZERO);
        assert_eq!(histogram.len(), 1001);
        assert!((histogram_quantile_ms(&histogram, 0.5) - 500.0).abs() < 1.0);
        assert!((histogram_quantile_ms(&histogram, 0.999) - 999.0).abs() < 1.0);
        Ok(())
    }

    #[test]
    fn own_process_tree_has_memory() {
        let (rss, anon) = tree_memory_bytes(std::process::id()).expect("this process is alive");
        assert!(rss > 0 && anon > 0 && anon <= rss, "rss {rss}, anon {anon}");
    }

    #[test]
    fn disk_usage_counts_sparse_files_apart() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let file = std::fs::File::create(dir.path().join("sparse"))?;
        file.set_len(64 << 20)?;
        let usage = disk_usage(dir.path())?;
        assert_eq!(usage.apparent_bytes, 64 << 20);
        assert!(usage.allocated_bytes < 1 << 20, "{usage:?}");
        Ok(())
    }

    #[test]
    fn disk_bytes_counts_written_blocks() -> Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("a"), vec![1u8; 10_000])?;
        std::fs::create_dir(dir.path().join("sub"))?;
        std::fs::write(dir.path().join("sub/b"), vec![1u8; 5_000])?;
        assert!(disk_bytes(dir.path())? >= 15_000);
        Ok(())
    }
}
