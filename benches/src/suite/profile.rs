//! "Where the time goes": `ProfileSession` samples a system's on-CPU stacks with `perf record`
//! while a workload's measured window runs, and sums the samples into a few categories (decode,
//! index, storage, evaluation, HTTP, TLS, JSON, compression, allocation, runtime, kernel, other)
//! and the busiest leaf functions — one line per workload in the report, so the next bottleneck is
//! visible without opening a profiler.
//!
//! How a sample is categorised (`categorise`), a well-defined rule:
//! 1. a sample whose leaf frame is in the kernel (`[kernel.kallsyms]`, `[vdso]`) or in a libc
//!    system-call wrapper (`write`, `epoll_wait`, `__futex_…`) is **kernel**, whatever called it:
//!    page faults, futex waits, socket reads and `madvise` are the kernel's time;
//! 2. otherwise the frames are read from the leaf towards the root, and the first frame whose
//!    symbol belongs to a category decides (allocator functions are their own category, so a
//!    `memcpy` inside `realloc` is allocation). Generic frames (`memcpy`, `core::`, `alloc::`,
//!    `std::`, futures combinators, unresolved addresses) are skipped. A few libraries count only
//!    when nothing above them does: hash maps and regexes (index unless, say, the PromQL
//!    aggregation called them), zstd (compression unless the store's series log called it);
//! 3. a sample with no categorised frame is **other**.
//!
//! A symbol's owner is read from its path with generic arguments removed: `<A as B>::m` is tried
//! as `A`, then `B` (so `<F as axum::handler::Handler>::call` is HTTP and a `Serialize` impl is
//! JSON); a `drop_in_place<T>` belongs to `T`. Within one path the rule table's order decides
//! (`tsdb::index::` is index before `tsdb::` is storage).
//!
//! Stacks come from DWARF unwinding (`--call-graph dwarf`): the release build keeps no frame
//! pointers, so frame-pointer chains end after the leaf. Only the top [`DWARF_STACK_BYTES`] of each
//! thread's stack are copied, enough for the leaf and its nearest callers, which is all the rule
//! reads; the data file is capped at [`MAX_DATA_MIB`] (a longer window is profiled for its first
//! part, and the report says so). `perf` runs as a child process stopped by its pid with SIGINT;
//! when it is missing or fails, sampling is skipped and the report says why.

use crate::suite::systems::SystemKind;
use crate::suite::Suite;
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// The `perf` program (looked up on `PATH`; `/usr/bin/perf` on the development machine).
const PERF: &str = "perf";
/// Samples per second of each thread's CPU time: low enough that the sampled process loses well
/// under 1 % (each sample copies [`DWARF_STACK_BYTES`] of stack), high enough for a few hundred
/// samples in a one-second window on one busy core. A prime, so sampling never falls in step with
/// a periodic task.
pub const SAMPLE_HZ: u32 = 293;
/// Bytes of user stack copied per sample for DWARF unwinding: the leaf and its nearest callers,
/// past the 4 KiB scratch buffer the standard library's sort keeps on the stack.
pub const DWARF_STACK_BYTES: u32 = 8192;
/// Cap of one session's `perf.data` in MiB (`perf record --max-size`): about 60 000 samples, over
/// 100 s of two busy cores; perf stops recording there and the rest of the window is not sampled.
pub const MAX_DATA_MIB: u64 = 512;
/// How long `perf record` may take to attach before the window starts without it.
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `perf record` may take to flush and exit after SIGINT before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `perf script` may take to unwind and print one session's samples.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);
/// Leaf functions kept per session (the busiest), summed per workload; the report shows 5.
pub const LEAVES_KEPT: usize = 40;
/// Frames of one sample read from `perf script` (deeper ones are ignored; the rule reads upwards
/// from the leaf and rarely needs more than a few).
pub const MAX_FRAMES: usize = 128;

/// Where a sample's time went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Request decoding: snappy, protobuf, remote-write and exposition parsing (`ingest::`).
    Decode,
    /// Series lookup: the store's index and postings, label matching, series hash maps.
    Index,
    /// The store's data path: chunk encoding and decoding, append, ring, mmap, series log.
    Storage,
    /// PromQL evaluation and aggregation, rule evaluation, the adapter's provider.
    Evaluation,
    /// hyper, h2, axum, tower, routing, the apiserver's HTTP glue.
    Http,
    /// rustls and its crypto (ring).
    Tls,
    /// JSON encoding: serde_json, the apiserver's JSON writers, number formatting.
    Json,
    /// Response and request compression (gzip/deflate, zstd).
    Compression,
    /// The allocator: malloc, free, realloc, mimalloc, vector growth.
    Allocation,
    /// The async runtime and synchronisation: tokio, mio, locks.
    Runtime,
    /// The kernel: system calls, page faults, scheduling.
    Kernel,
    /// Nothing above matched.
    Other,
}

impl Category {
    /// Every category, in the report's tie-break order.
    pub const ALL: [Category; 12] = [
        Category::Evaluation,
        Category::Index,
        Category::Storage,
        Category::Decode,
        Category::Http,
        Category::Tls,
        Category::Json,
        Category::Compression,
        Category::Allocation,
        Category::Runtime,
        Category::Kernel,
        Category::Other,
    ];

    /// The name used in the report.
    pub fn name(self) -> &'static str {
        match self {
            Category::Decode => "decode",
            Category::Index => "index",
            Category::Storage => "storage",
            Category::Evaluation => "evaluation",
            Category::Http => "HTTP",
            Category::Tls => "TLS",
            Category::Json => "JSON",
            Category::Compression => "compression",
            Category::Allocation => "allocation",
            Category::Runtime => "runtime",
            Category::Kernel => "kernel",
            Category::Other => "other",
        }
    }
}

/// What the profiler saw of one system during one workload, summed over its measured windows.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadProfile {
    pub workload: String,
    pub system: SystemKind,
    /// Measured windows sampled.
    pub windows: usize,
    /// Samples taken over those windows.
    pub samples: u64,
    /// Samples per category.
    pub categories: BTreeMap<Category, u64>,
    /// Samples per leaf function (shortened name), the busiest [`LEAVES_KEPT`] of each window.
    pub leaves: BTreeMap<String, LeafCount>,
    /// Windows where perf stopped at [`MAX_DATA_MIB`] before the window ended.
    pub capped_windows: usize,
    /// Windows that could not be sampled.
    pub failed_windows: usize,
    /// Why (some) windows were not sampled: the first reason met.
    pub not_profiled: Option<String>,
}

/// Samples of one leaf function and the category its samples went to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LeafCount {
    pub samples: u64,
    pub category: Category,
}

impl WorkloadProfile {
    fn new(workload: &str, system: SystemKind) -> WorkloadProfile {
        WorkloadProfile {
            workload: workload.to_string(),
            system,
            windows: 0,
            samples: 0,
            categories: BTreeMap::new(),
            leaves: BTreeMap::new(),
            capped_windows: 0,
            failed_windows: 0,
            not_profiled: None,
        }
    }

    /// Categories by share, largest first (ties in [`Category::ALL`] order), `other` last.
    pub fn shares(&self) -> Vec<(Category, f64)> {
        let total = self.samples.max(1) as f64;
        let mut shares: Vec<(Category, u64)> = Category::ALL
            .iter()
            .filter_map(|c| self.categories.get(c).map(|&n| (*c, n)))
            .filter(|&(c, n)| n > 0 && c != Category::Other)
            .collect();
        shares.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        if let Some(&other) = self.categories.get(&Category::Other).filter(|&&n| n > 0) {
            shares.push((Category::Other, other));
        }
        shares.into_iter().map(|(c, n)| (c, n as f64 * 100.0 / total)).collect()
    }

    /// The `count` busiest leaf functions: name, share of all samples in %, category.
    pub fn top_leaves(&self, count: usize) -> Vec<(&str, f64, Category)> {
        let total = self.samples.max(1) as f64;
        let mut leaves: Vec<(&String, &LeafCount)> = self.leaves.iter().collect();
        leaves.sort_by(|a, b| b.1.samples.cmp(&a.1.samples).then_with(|| a.0.cmp(b.0)));
        leaves
            .into_iter()
            .take(count)
            .map(|(name, leaf)| (name.as_str(), leaf.samples as f64 * 100.0 / total, leaf.category))
            .collect()
    }

    fn add(&mut self, fold: &ProfileFold) {
        self.windows += 1;
        self.samples += fold.samples;
        for (&category, &n) in &fold.categories {
            *self.categories.entry(category).or_default() += n;
        }
        for (name, leaf) in fold.busiest_leaves(LEAVES_KEPT) {
            let entry =
                self.leaves.entry(name.to_string()).or_insert(LeafCount { samples: 0, category: leaf.category });
            entry.samples += leaf.samples;
        }
    }
}

/// Every workload's profiles of one run, kept in `Results`. Behind a lock because a session that
/// cannot start records why through the shared `&Suite` it was given.
#[derive(Debug, Default)]
pub struct ProfileStore {
    profiles: Mutex<Vec<WorkloadProfile>>,
}

impl ProfileStore {
    /// A copy of every workload's profile, in the order the workloads first profiled.
    pub fn profiles(&self) -> Vec<WorkloadProfile> {
        self.profiles.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The profile of `system` during `workload`, if it was ever asked for.
    pub fn get(&self, workload: &str, system: SystemKind) -> Option<WorkloadProfile> {
        self.profiles().into_iter().find(|p| p.workload == workload && p.system == system)
    }

    fn update<T>(&self, workload: &str, system: SystemKind, change: impl FnOnce(&mut WorkloadProfile) -> T) -> T {
        let mut profiles = self.profiles.lock().unwrap_or_else(PoisonError::into_inner);
        let index = match profiles.iter().position(|p| p.workload == workload && p.system == system) {
            Some(index) => index,
            None => {
                profiles.push(WorkloadProfile::new(workload, system));
                profiles.len() - 1
            }
        };
        change(&mut profiles[index])
    }

    /// Records that a window of `workload` was not sampled; true when `reason` is the first one
    /// (the caller then says it once).
    fn not_sampled(&self, workload: &str, system: SystemKind, reason: String) -> bool {
        self.update(workload, system, |profile| {
            profile.failed_windows += 1;
            if profile.not_profiled.is_some() {
                return false;
            }
            profile.not_profiled = Some(reason);
            true
        })
    }
}

impl Serialize for ProfileStore {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.profiles().serialize(serializer)
    }
}

/// Busiest leaf functions listed under a workload's line.
pub const LEAVES_SHOWN: usize = 5;

/// The report's "where the time goes" paragraph for `system` in one workload: category shares by
/// sample count, then the [`LEAVES_SHOWN`] busiest leaf functions; "not profiled" and why when
/// nothing was sampled.
pub fn report_paragraph(profile: Option<&WorkloadProfile>, system: SystemKind) -> String {
    let who = match system {
        SystemKind::Ringtail => "Ringtail",
        SystemKind::Prometheus => "Prometheus",
        SystemKind::VictoriaMetrics => "VictoriaMetrics",
    };
    let Some(profile) = profile.filter(|p| p.samples > 0) else {
        let why = match profile {
            None => "this workload does not sample it".to_string(),
            Some(p) if p.windows > 0 => format!("no sample in {} windows (the process was idle)", p.windows),
            Some(p) => p.not_profiled.clone().unwrap_or_else(|| "no window was sampled".into()),
        };
        return format!("**Where {who}'s time goes:** not profiled — {why}.\n");
    };
    let percent = |share: f64| if share < 0.5 { "<1 %".to_string() } else { format!("{share:.0} %") };
    let shares: Vec<String> =
        profile.shares().iter().map(|(category, share)| format!("{} {}", category.name(), percent(*share))).collect();
    let windows = if profile.windows == 1 { "1 window".to_string() } else { format!("{} windows", profile.windows) };
    let mut text =
        format!("**Where {who}'s time goes** ({} samples over {windows}): {}", profile.samples, shares.join(", "));
    if profile.capped_windows > 0 {
        text.push_str(&format!(
            "; perf stopped at its {MAX_DATA_MIB} MiB cap in {} of them, so their later part is not sampled",
            profile.capped_windows
        ));
    }
    if profile.failed_windows > 0 {
        let why = profile.not_profiled.as_deref().unwrap_or("unknown");
        text.push_str(&format!("; {} more windows could not be profiled ({why})", profile.failed_windows));
    }
    text.push_str(".\n\nBusiest functions (self time, share of all samples):\n\n");
    for (name, share, category) in profile.top_leaves(LEAVES_SHOWN) {
        text.push_str(&format!("- `{}` {} ({})\n", name.replace('`', "'"), percent(share), category.name()));
    }
    text
}

/// One sampling session of one system during one workload's measured window.
pub struct ProfileSession {
    workload: &'static str,
    system: SystemKind,
    /// `perf record`, killed if the session is dropped without `finish`.
    child: tokio::process::Child,
    /// Holds `perf.data` and perf's log; removed with the session.
    dir: tempfile::TempDir,
}

impl ProfileSession {
    /// Starts sampling `pid` (the system's process, all threads) for `workload`; `None` when
    /// sampling is unavailable on this machine (recorded once as the workload's reason) or switched
    /// off (`--no-profile`). Returns once perf samples (0.3–0.6 s on the 2-core machine, at most
    /// [`ATTACH_TIMEOUT`]), so call it before the window's clock starts.
    pub fn start(suite: &Suite, workload: &'static str, system: SystemKind, pid: u32) -> Option<ProfileSession> {
        if !suite.scale.profile {
            suite.results.profiles.update(workload, system, |p| {
                p.not_profiled.get_or_insert_with(|| "switched off (--no-profile)".into());
            });
            return None;
        }
        let started = spawn_record(PERF, pid).and_then(|(mut child, dir)| {
            // On failure `child` is killed as it is dropped.
            wait_attached(&mut child, &dir.path().join("record.log")).map(|()| (child, dir))
        });
        match started {
            Ok((child, dir)) => Some(ProfileSession { workload, system, child, dir }),
            Err(reason) => {
                // The report's paragraph gives the reason; the log says it once as it happens.
                if suite.results.profiles.not_sampled(workload, system, reason.clone()) {
                    suite.log(format!("{workload}: not profiling {}: {reason}", system.name()));
                }
                None
            }
        }
    }

    /// Stops sampling and adds what was sampled to `workload`'s profile for `system` (summed over
    /// every session of the workload).
    pub async fn finish(mut self, suite: &mut Suite) {
        let (workload, system) = (self.workload, self.system);
        match self.collect().await {
            Ok((fold, capped)) => suite.results.profiles.update(workload, system, |profile| {
                profile.add(&fold);
                profile.capped_windows += usize::from(capped);
            }),
            Err(reason) => {
                if suite.results.profiles.not_sampled(workload, system, reason.clone()) {
                    suite.note(workload, format!("a window of {} could not be profiled: {reason}", system.name()));
                }
            }
        }
    }

    /// Stops `perf record` and folds its samples; whether perf stopped at its size cap.
    async fn collect(&mut self) -> Result<(ProfileFold, bool), String> {
        let exited_early = stop_record(&mut self.child).await?;
        let log = std::fs::read_to_string(self.dir.path().join("record.log")).unwrap_or_default();
        if let Some(status) = exited_early.filter(|s| !s.success()) {
            return Err(format!("perf record exited early ({status}): {}", last_line(&log)));
        }
        let data = self.dir.path().join("perf.data");
        let size = std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
        if size == 0 {
            return Err(format!("perf record wrote no data: {}", last_line(&log)));
        }
        let capped = log.contains("size limit reached");
        let fold = fold_script(&data, self.dir.path()).await?;
        Ok((fold, capped))
    }
}

/// Starts `perf record` on `pid` writing into a fresh temporary directory.
fn spawn_record(program: &str, pid: u32) -> Result<(tokio::process::Child, tempfile::TempDir), String> {
    let dir = tempfile::Builder::new()
        .prefix("ringtail-bench-perf-")
        .tempdir()
        .map_err(|e| format!("creating a temporary directory for perf: {e}"))?;
    let log = std::fs::File::create(dir.path().join("record.log")).map_err(|e| format!("creating perf's log: {e}"))?;
    let log_err = log.try_clone().map_err(|e| format!("creating perf's log: {e}"))?;
    let child = tokio::process::Command::new(program)
        .args(record_args(pid, &dir.path().join("perf.data")))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("`{program}` could not be started ({e}); install perf (linux-perf) to see the profile"))?;
    Ok((child, dir))
}

/// `perf record`'s arguments: cpu-clock (hardware counters are often missing on VMs), every thread
/// of `pid`, DWARF call stacks, capped output.
fn record_args(pid: u32, output: &Path) -> Vec<String> {
    vec![
        "record".into(),
        "-e".into(),
        "cpu-clock".into(),
        "-F".into(),
        SAMPLE_HZ.to_string(),
        "--call-graph".into(),
        format!("dwarf,{DWARF_STACK_BYTES}"),
        format!("--max-size={MAX_DATA_MIB}M"),
        // Enable 1 ms after attaching, which makes perf say "Events enabled" (`wait_attached`).
        "-D".into(),
        "1".into(),
        // No copy of every sampled binary (170 MB for Ringtail) into ~/.debug, and no build-id
        // pass at the end: `perf script` reads the binaries where they are.
        "--no-buildid-cache".into(),
        "--no-buildid".into(),
        "-p".into(),
        pid.to_string(),
        "-o".into(),
        output.display().to_string(),
    ]
}

/// Blocks until `perf record` says it samples (it needs 0.3–0.6 s to attach to a large process on
/// the 2-core machine; a short window would otherwise pass unsampled), at most [`ATTACH_TIMEOUT`].
/// Blocking is fine for the suite's sequential driver; on a runtime worker thread the runtime is
/// told first (`block_in_place`) so other tasks move elsewhere.
fn wait_attached(child: &mut tokio::process::Child, log: &Path) -> Result<(), String> {
    let mut wait = || {
        let started = std::time::Instant::now();
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains(ENABLED_MESSAGE) {
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("perf record exited at start ({status}): {}", last_line(&text)));
            }
            if started.elapsed() > ATTACH_TIMEOUT {
                return Err(format!("perf record did not start sampling within {ATTACH_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
        _ => wait(),
    }
}

/// What `perf record -D` prints when sampling begins.
const ENABLED_MESSAGE: &str = "Events enabled";

/// Sends SIGINT to `perf record` (it then writes its data and exits) and waits; kills it after
/// [`STOP_TIMEOUT`]. The exit status when perf had already exited on its own (the sampled process
/// exited, perf stopped at its size cap, or it failed).
async fn stop_record(child: &mut tokio::process::Child) -> Result<Option<ExitStatus>, String> {
    if let Ok(Some(status)) = child.try_wait() {
        return Ok(Some(status));
    }
    let Some(pid) = child.id() else { return Ok(None) };
    let signalled = tokio::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map_err(|e| format!("sending SIGINT to perf ({pid}): {e}"))?;
    if !signalled.success() {
        // It exited between try_wait and kill.
        return child.wait().await.map(Some).map_err(|e| format!("waiting for perf: {e}"));
    }
    match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
        // Stopped by our SIGINT: perf exits by re-raising it, which is no failure.
        Ok(result) => result.map(|_| None).map_err(|e| format!("waiting for perf: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!("perf record did not stop within {STOP_TIMEOUT:?} of SIGINT"))
        }
    }
}

/// Runs `perf script` over `data` and folds its output line by line.
async fn fold_script(data: &Path, dir: &Path) -> Result<ProfileFold, String> {
    let log = std::fs::File::create(dir.join("script.log")).map_err(|e| format!("creating perf's log: {e}"))?;
    let mut child = tokio::process::Command::new(PERF)
        .args(script_args(data))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("`{PERF} script` could not be started: {e}"))?;
    let stdout = child.stdout.take().ok_or("perf script has no output pipe")?;
    let read = async {
        let mut fold = ProfileFold::default();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Some(line) = lines.next_line().await.map_err(|e| format!("reading perf script's output: {e}"))? {
            fold.line(&line);
        }
        fold.end_sample();
        let status = child.wait().await.map_err(|e| format!("waiting for perf script: {e}"))?;
        Ok::<_, String>((fold, status))
    };
    let (fold, status) = tokio::time::timeout(SCRIPT_TIMEOUT, read)
        .await
        .map_err(|_| format!("perf script took longer than {SCRIPT_TIMEOUT:?}"))??;
    if !status.success() && fold.samples == 0 {
        let log = std::fs::read_to_string(dir.join("script.log")).unwrap_or_default();
        return Err(format!("perf script failed ({status}): {}", last_line(&log)));
    }
    Ok(fold)
}

/// `perf script`'s arguments: one header line per sample, then one `address symbol (dso)` line
/// per frame, leaf first; inlined frames left out (resolving them runs addr2line per address).
fn script_args(data: &Path) -> Vec<String> {
    vec![
        "script".into(),
        "-i".into(),
        data.display().to_string(),
        "--no-inline".into(),
        "-F".into(),
        "comm,tid,ip,sym,dso".into(),
    ]
}

fn last_line(text: &str) -> String {
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output").trim().to_string()
}

/// One frame of a sample as `perf script` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The demangled symbol, `[unknown]` when unresolved.
    pub symbol: String,
    /// The object it is in: a path, `[kernel.kallsyms]`, `[vdso]`, `[unknown]`.
    pub dso: String,
}

impl Frame {
    fn in_kernel(&self) -> bool {
        self.dso.starts_with("[kernel") || self.dso == "[vdso]" || self.dso.ends_with(".ko")
    }
}

/// Parses a frame line of `perf script` (`\t  11a6453 http::request::Parts::new (/bin/ringtail)`);
/// `None` for anything else.
pub fn parse_frame(line: &str) -> Option<Frame> {
    if !line.starts_with(char::is_whitespace) {
        return None;
    }
    let (address, rest) = line.trim().split_once(' ')?;
    if !address.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let rest = rest.trim();
    let (symbol, dso) = match rest.rfind(" (") {
        Some(at) if rest.ends_with(')') => (&rest[..at], &rest[at + 2..rest.len() - 1]),
        _ => (rest, "[unknown]"),
    };
    Some(Frame { symbol: symbol.trim().to_string(), dso: dso.to_string() })
}

/// Sums `perf script` output into categories and leaf functions, one line at a time.
#[derive(Debug, Default)]
pub struct ProfileFold {
    pub samples: u64,
    pub categories: BTreeMap<Category, u64>,
    leaves: HashMap<String, HashMap<Category, u64>>,
    frames: Vec<Frame>,
    in_sample: bool,
}

impl ProfileFold {
    /// Takes one line of `perf script` output: a sample's header starts a sample, indented lines
    /// are its frames (leaf first), a blank line ends it.
    pub fn line(&mut self, line: &str) {
        if line.trim().is_empty() {
            self.end_sample();
        } else if line.starts_with(char::is_whitespace) {
            // A frame; an indented line that is none (a perf warning) is skipped.
            if let Some(frame) = parse_frame(line).filter(|_| self.frames.len() < MAX_FRAMES) {
                self.frames.push(frame);
            }
            self.in_sample = true;
        } else {
            // A header: a sample without its blank separator still counts.
            self.end_sample();
            self.in_sample = true;
        }
    }

    /// Counts the sample in progress, if any.
    pub fn end_sample(&mut self) {
        if !self.in_sample {
            return;
        }
        self.in_sample = false;
        let category = categorise(&self.frames);
        self.samples += 1;
        *self.categories.entry(category).or_default() += 1;
        let leaf = match self.frames.first() {
            Some(frame) if frame.in_kernel() => format!("[kernel] {}", frame.symbol),
            Some(frame) => shorten(&frame.symbol),
            None => "[no stack]".to_string(),
        };
        *self.leaves.entry(leaf).or_default().entry(category).or_default() += 1;
        self.frames.clear();
    }

    /// The `count` busiest leaf functions with their samples and main category.
    pub fn busiest_leaves(&self, count: usize) -> Vec<(&str, LeafCount)> {
        let mut leaves: Vec<(&str, LeafCount)> = self
            .leaves
            .iter()
            .map(|(name, by_category)| {
                let samples = by_category.values().sum();
                let category = by_category
                    .iter()
                    .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                    .map_or(Category::Other, |(c, _)| *c);
                (name.as_str(), LeafCount { samples, category })
            })
            .collect();
        leaves.sort_by(|a, b| b.1.samples.cmp(&a.1.samples).then_with(|| a.0.cmp(b.0)));
        leaves.truncate(count);
        leaves
    }
}

/// How one frame's symbol counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The frame decides the sample's category.
    Owned(Category),
    /// The category, unless a frame further up is owned.
    Fallback(Category),
    /// Says nothing about where the time goes (`memcpy`, `core::`, an unresolved address).
    Generic,
}

/// The category of a sample whose frames are `frames`, leaf first (the rule in the module doc).
pub fn categorise(frames: &[Frame]) -> Category {
    let Some(leaf) = frames.first() else { return Category::Other };
    if leaf.in_kernel() {
        return Category::Kernel;
    }
    let mut fallback = None;
    for frame in frames.iter().filter(|f| !f.in_kernel()) {
        match classify(&frame.symbol) {
            Class::Owned(category) => return category,
            Class::Fallback(category) => {
                fallback.get_or_insert(category);
            }
            Class::Generic => {}
        }
    }
    fallback.unwrap_or(Category::Other)
}

/// Rust path prefixes and their class, in priority order: the first that a candidate path (see
/// `owner_paths`) starts with decides.
const PATH_RULES: &[(&str, Class)] = {
    use Category::*;
    use Class::{Fallback, Generic, Owned};
    &[
        // Allocation: the global allocator and vector growth.
        ("alloc::alloc::", Owned(Allocation)),
        ("alloc::raw_vec::", Owned(Allocation)),
        ("__rust_", Owned(Allocation)),
        ("__rdl_", Owned(Allocation)),
        ("mimalloc::", Owned(Allocation)),
        ("libmimalloc_sys::", Owned(Allocation)),
        ("tikv_jemallocator::", Owned(Allocation)),
        // Response compression before tower_http's HTTP.
        ("tower_http::compression", Owned(Compression)),
        ("tower_http::decompression", Owned(Compression)),
        ("async_compression::", Owned(Compression)),
        ("flate2::", Owned(Compression)),
        ("miniz_oxide::", Owned(Compression)),
        ("zlib_rs::", Owned(Compression)),
        ("crc32fast::", Owned(Compression)),
        ("adler2::", Owned(Compression)),
        ("adler::", Owned(Compression)),
        ("brotli", Owned(Compression)),
        ("zstd::", Fallback(Compression)),
        ("zstd_safe::", Fallback(Compression)),
        ("zstd_sys::", Fallback(Compression)),
        // TLS.
        ("rustls::", Owned(Tls)),
        ("tokio_rustls::", Owned(Tls)),
        ("rustls_pki_types::", Owned(Tls)),
        ("webpki::", Owned(Tls)),
        ("ring::", Owned(Tls)),
        ("aws_lc_rs::", Owned(Tls)),
        ("aws_lc_sys::", Owned(Tls)),
        // JSON: the apiserver's own writers and serde types before its HTTP glue.
        ("serde_json::", Owned(Json)),
        ("serde::", Owned(Json)),
        ("ryu::", Owned(Json)),
        ("itoa::", Owned(Json)),
        ("apiserver::http::prom_api::write_", Owned(Json)),
        ("apiserver::adapter::http::pod_metrics_json", Owned(Json)),
        ("apiserver::adapter::http::value_list_json", Owned(Json)),
        ("apiserver::adapter::http::k8s_types", Owned(Json)),
        // PromQL's sample-value formatting, called once per point by the JSON writers.
        ("query::value::write_value", Owned(Json)),
        ("query::value::format_value", Owned(Json)),
        ("query::value::push_plain_decimal", Owned(Json)),
        // Index: series lookup, before the rest of the store and ingest.
        ("tsdb::index::", Owned(Index)),
        ("tsdb::matcher::", Owned(Index)),
        ("tsdb::labels::", Owned(Index)),
        ("tsdb::db::cardinality", Owned(Index)),
        ("ingest::series_cache", Owned(Index)),
        ("hashbrown::", Fallback(Index)),
        ("std::collections::hash", Fallback(Index)),
        ("std::hash::", Fallback(Index)),
        ("core::hash::", Fallback(Index)),
        ("rustc_hash::", Fallback(Index)),
        ("foldhash::", Fallback(Index)),
        ("ahash::", Fallback(Index)),
        ("xxhash_rust::", Fallback(Index)),
        ("twox_hash::", Fallback(Index)),
        ("regex::", Fallback(Index)),
        ("regex_automata::", Fallback(Index)),
        ("regex_syntax::", Fallback(Index)),
        ("aho_corasick::", Fallback(Index)),
        // Storage: the rest of the store.
        ("ingest::remote_write::store", Owned(Storage)),
        ("tsdb::", Owned(Storage)),
        ("memmap2::", Owned(Storage)),
        // Decode: request bodies and pages.
        ("snap::", Owned(Decode)),
        ("prost::", Owned(Decode)),
        ("ingest::", Owned(Decode)),
        ("apiserver::scrape", Owned(Decode)),
        // Evaluation.
        ("query::", Owned(Evaluation)),
        ("apiserver::evaluation", Owned(Evaluation)),
        ("apiserver::rules::", Owned(Evaluation)),
        ("apiserver::adapter::provider::", Owned(Evaluation)),
        ("apiserver::adapter::rules::", Owned(Evaluation)),
        ("libm::", Fallback(Evaluation)),
        // HTTP.
        ("hyper::", Owned(Http)),
        ("hyper_util::", Owned(Http)),
        ("h2::", Owned(Http)),
        ("http::", Owned(Http)),
        ("httparse::", Owned(Http)),
        ("http_body::", Owned(Http)),
        ("http_body_util::", Owned(Http)),
        ("httpdate::", Owned(Http)),
        ("headers::", Owned(Http)),
        ("axum::", Owned(Http)),
        ("axum_core::", Owned(Http)),
        ("tower::", Owned(Http)),
        ("tower_http::", Owned(Http)),
        ("tower_service::", Owned(Http)),
        ("tower_layer::", Owned(Http)),
        ("matchit::", Owned(Http)),
        ("form_urlencoded::", Owned(Http)),
        ("serde_urlencoded::", Owned(Http)),
        ("percent_encoding::", Owned(Http)),
        ("url::", Owned(Http)),
        ("reqwest::", Owned(Http)),
        ("apiserver::http::", Owned(Http)),
        ("apiserver::listener", Owned(Http)),
        ("apiserver::adapter::http::", Owned(Http)),
        ("apiserver::adapter::serve", Owned(Http)),
        // Runtime and synchronisation.
        ("tokio::", Owned(Runtime)),
        ("mio::", Owned(Runtime)),
        ("parking_lot::", Owned(Runtime)),
        ("parking_lot_core::", Owned(Runtime)),
        ("lock_api::", Owned(Runtime)),
        ("crossbeam", Owned(Runtime)),
        ("futures_channel::", Owned(Runtime)),
        ("futures_executor::", Owned(Runtime)),
        ("std::sync::", Owned(Runtime)),
        ("std::thread::", Owned(Runtime)),
        ("std::sys::sync::", Owned(Runtime)),
        // Everything else in core, alloc and std is a helper of its caller.
        ("core::", Generic),
        ("alloc::", Generic),
        ("std::", Generic),
    ]
};

/// C symbols (no `::`): exact name or prefix, and their class, in priority order.
const C_RULES: &[(&str, bool, Class)] = {
    use Category::*;
    use Class::{Fallback, Generic, Owned};
    &[
        // Generic byte helpers first (`__memcpy_avx_unaligned_erms` is no allocator).
        ("__mem", false, Generic),
        ("__str", false, Generic),
        ("mem", false, Generic),
        ("bcmp", true, Generic),
        // Allocation: mimalloc, glibc, jemalloc.
        ("mi_", false, Owned(Allocation)),
        ("_mi_", false, Owned(Allocation)),
        ("__mi_", false, Owned(Allocation)),
        ("malloc", true, Owned(Allocation)),
        ("free", true, Owned(Allocation)),
        ("cfree", true, Owned(Allocation)),
        ("realloc", true, Owned(Allocation)),
        ("calloc", true, Owned(Allocation)),
        ("posix_memalign", true, Owned(Allocation)),
        ("aligned_alloc", true, Owned(Allocation)),
        ("__libc_malloc", false, Owned(Allocation)),
        ("__libc_free", false, Owned(Allocation)),
        ("__libc_realloc", false, Owned(Allocation)),
        ("__libc_calloc", false, Owned(Allocation)),
        ("_int_", false, Owned(Allocation)),
        ("malloc_consolidate", true, Owned(Allocation)),
        ("sysmalloc", true, Owned(Allocation)),
        ("tcache_", false, Owned(Allocation)),
        ("je_", false, Owned(Allocation)),
        ("_rjem_", false, Owned(Allocation)),
        // System-call wrappers: the kernel's time even when the leaf is the wrapper.
        ("__GI_", false, Owned(Kernel)),
        ("__libc_", false, Owned(Kernel)),
        ("__futex", false, Owned(Kernel)),
        ("futex", false, Owned(Kernel)),
        ("__lll_lock_wait", false, Owned(Kernel)),
        ("syscall", true, Owned(Kernel)),
        ("epoll_", false, Owned(Kernel)),
        ("__epoll", false, Owned(Kernel)),
        ("read", true, Owned(Kernel)),
        ("write", true, Owned(Kernel)),
        ("__read", false, Owned(Kernel)),
        ("__write", false, Owned(Kernel)),
        ("writev", true, Owned(Kernel)),
        ("readv", true, Owned(Kernel)),
        ("__send", false, Owned(Kernel)),
        ("__recv", false, Owned(Kernel)),
        ("send", true, Owned(Kernel)),
        ("recv", true, Owned(Kernel)),
        ("sendto", true, Owned(Kernel)),
        ("recvfrom", true, Owned(Kernel)),
        ("sendmsg", true, Owned(Kernel)),
        ("recvmsg", true, Owned(Kernel)),
        ("accept4", true, Owned(Kernel)),
        ("madvise", true, Owned(Kernel)),
        ("__madvise", true, Owned(Kernel)),
        ("mmap", false, Owned(Kernel)),
        ("__mmap", false, Owned(Kernel)),
        ("munmap", true, Owned(Kernel)),
        ("__munmap", true, Owned(Kernel)),
        ("mprotect", true, Owned(Kernel)),
        ("__mprotect", true, Owned(Kernel)),
        ("pread64", true, Owned(Kernel)),
        ("pwrite64", true, Owned(Kernel)),
        ("__pread64", true, Owned(Kernel)),
        ("__pwrite64", true, Owned(Kernel)),
        ("fsync", true, Owned(Kernel)),
        ("fdatasync", true, Owned(Kernel)),
        ("__close", false, Owned(Kernel)),
        ("close", true, Owned(Kernel)),
        ("clock_gettime", false, Owned(Kernel)),
        ("__clock_gettime", false, Owned(Kernel)),
        ("__vdso_", false, Owned(Kernel)),
        ("sched_yield", true, Owned(Kernel)),
        ("nanosleep", false, Owned(Kernel)),
        ("__nanosleep", false, Owned(Kernel)),
        ("clock_nanosleep", false, Owned(Kernel)),
        ("__clock_nanosleep", false, Owned(Kernel)),
        // Crypto of ring (and aws-lc), in C and assembly.
        ("ring_core_", false, Owned(Tls)),
        ("aws_lc_", false, Owned(Tls)),
        ("GFp_", false, Owned(Tls)),
        ("_aesni_", false, Owned(Tls)),
        ("aesni_", false, Owned(Tls)),
        ("aes_hw_", false, Owned(Tls)),
        ("gcm_", false, Owned(Tls)),
        ("__bn_", false, Owned(Tls)),
        ("bn_", false, Owned(Tls)),
        ("__ecp_nistz256", false, Owned(Tls)),
        ("ecp_nistz256", false, Owned(Tls)),
        ("sha256_block", false, Owned(Tls)),
        ("sha512_block", false, Owned(Tls)),
        ("ChaCha20", false, Owned(Tls)),
        ("chacha20_", false, Owned(Tls)),
        ("x25519", false, Owned(Tls)),
        // zstd (the store's series log), zlib.
        ("ZSTD", false, Fallback(Compression)),
        ("HUF_", false, Fallback(Compression)),
        ("_HUF_", false, Fallback(Compression)),
        ("FSE_", false, Fallback(Compression)),
        ("HIST_", false, Fallback(Compression)),
        ("BIT_", false, Fallback(Compression)),
        ("COVER_", false, Fallback(Compression)),
        ("XXH", false, Fallback(Compression)),
        ("deflate", false, Owned(Compression)),
        ("inflate", false, Owned(Compression)),
        ("crc32", false, Owned(Compression)),
        ("adler32", false, Owned(Compression)),
        // libm, called by PromQL functions.
        ("__ieee754_", false, Fallback(Evaluation)),
        ("exp", true, Fallback(Evaluation)),
        ("log", true, Fallback(Evaluation)),
        ("pow", true, Fallback(Evaluation)),
        ("__exp", false, Fallback(Evaluation)),
        ("__log", false, Fallback(Evaluation)),
        ("__pow", false, Fallback(Evaluation)),
    ]
};

/// The class of one demangled symbol (see the module doc).
pub fn classify(symbol: &str) -> Class {
    let symbol = strip_hash(symbol.trim());
    if symbol.is_empty() || symbol.starts_with('[') {
        return Class::Generic;
    }
    if !symbol.contains("::") {
        let name = symbol.split(['.', '@']).next().unwrap_or(symbol);
        return C_RULES
            .iter()
            .find(|(pattern, exact, _)| if *exact { name == *pattern } else { name.starts_with(pattern) })
            .map_or(Class::Generic, |&(_, _, class)| class);
    }
    for path in owner_paths(symbol) {
        if let Some(&(_, class)) = PATH_RULES.iter().find(|(prefix, _)| path.starts_with(prefix)) {
            if class != Class::Generic {
                return class;
            }
        }
    }
    Class::Generic
}

/// Removes a legacy-mangling hash suffix (`::h0123456789abcdef`).
fn strip_hash(symbol: &str) -> &str {
    match symbol.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => head,
        _ => symbol,
    }
}

/// The paths that may own `symbol`, most specific first, generic arguments removed:
/// `<A as B>::m` gives `A` then `B`; `core::ptr::drop_in_place<T>` gives `T` then itself;
/// any other path gives itself.
fn owner_paths(symbol: &str) -> Vec<String> {
    if let Some(inner) = symbol.strip_prefix('<') {
        let Some(close) = matching_close(inner) else { return vec![strip_generics(symbol)] };
        let qualifier = &inner[..close];
        let (self_type, trait_path) = match split_top_level(qualifier, " as ") {
            Some((a, b)) => (a, Some(b)),
            None => (qualifier, None),
        };
        let mut paths = vec![strip_generics(trim_reference(self_type))];
        paths.extend(trait_path.map(strip_generics));
        return paths;
    }
    if let Some(argument) = symbol.strip_prefix("core::ptr::drop_in_place<") {
        if let Some(close) = matching_close(argument) {
            let mut paths = owner_paths(trim_reference(&argument[..close]));
            paths.push(strip_generics(symbol));
            return paths;
        }
    }
    vec![strip_generics(symbol)]
}

fn trim_reference(ty: &str) -> &str {
    let mut ty = ty.trim();
    for prefix in ["&mut ", "&", "*const ", "*mut ", "dyn "] {
        while let Some(rest) = ty.strip_prefix(prefix) {
            ty = rest.trim_start();
        }
    }
    ty
}

/// Index in `text` of the `>` closing an already opened `<` (a `->` arrow is no bracket).
fn matching_close(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut previous = ' ';
    for (i, c) in text.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if previous != '-' => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
        previous = c;
    }
    None
}

/// Splits `text` at the first `separator` outside any `<…>`, `(…)` or `[…]`.
fn split_top_level<'a>(text: &'a str, separator: &str) -> Option<(&'a str, &'a str)> {
    let mut depth = 0i32;
    let mut previous = ' ';
    for (i, c) in text.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' if previous != '-' => depth -= 1,
            ')' | ']' => depth -= 1,
            _ => {}
        }
        if depth == 0 && text[i..].starts_with(separator) {
            return Some((&text[..i], &text[i + separator.len()..]));
        }
        previous = c;
    }
    None
}

/// `text` without any `<…>` generic arguments; an inherent-impl segment (`read::<impl tsdb::Db>::f`)
/// becomes its type's path (`read::tsdb::Db::f`), a trait-impl one (`<impl Debug for T>`) `T`'s.
fn strip_generics(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    let mut previous = ' ';
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if depth == 0 && rest.starts_with("<impl ") {
            if let Some(close) = matching_close(&rest[1..]) {
                let inner = &rest["<impl ".len()..close + 1];
                let ty = split_top_level(inner, " for ").map_or(inner, |(_, ty)| ty);
                out.push_str(&strip_generics(trim_reference(ty)));
                rest = &rest[close + 2..];
                previous = '>';
                continue;
            }
        }
        match c {
            '<' => depth += 1,
            '>' if previous != '-' && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
        previous = c;
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A short name for the report: generic arguments removed, long paths elided in the middle
/// (`query::…::RangeJob::run`), `<A as B>::m` as `<A as B>::m` with each side shortened.
pub fn shorten(symbol: &str) -> String {
    let symbol = strip_hash(symbol.trim());
    if let Some(argument) = symbol.strip_prefix("core::ptr::drop_in_place<") {
        if let Some(close) = matching_close(argument) {
            return format!("drop_in_place<{}>", shorten(trim_reference(&argument[..close])));
        }
    }
    if let Some(inner) = symbol.strip_prefix('<') {
        if let Some(close) = matching_close(inner) {
            let qualifier = &inner[..close];
            let rest = strip_generics(&inner[close + 1..]);
            return match split_top_level(qualifier, " as ") {
                Some((a, b)) => {
                    let b = strip_generics(b);
                    let trait_name = b.rsplit("::").next().unwrap_or(&b);
                    format!("<{} as {trait_name}>{rest}", short_path(&strip_generics(trim_reference(a))))
                }
                None => format!("<{}>{rest}", short_path(&strip_generics(qualifier))),
            };
        }
    }
    short_path(&strip_generics(symbol))
}

/// `a::b::c::d` as `a::…::c::d`; paths of up to three segments as they are.
fn short_path(path: &str) -> String {
    let segments: Vec<&str> = path.split("::").collect();
    if segments.len() <= 3 {
        return path.to_string();
    }
    let n = segments.len();
    format!("{}::…::{}::{}", segments[0], segments[n - 2], segments[n - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(symbol: &str, dso: &str) -> Frame {
        Frame { symbol: symbol.into(), dso: dso.into() }
    }

    /// Real `perf script --no-inline -F comm,tid,ip,sym,dso` output of Ringtail under load
    /// (a few samples, trimmed to their first frames).
    const CAPTURED: &str = "\
tokio-rt-worker 17371 
\t         11a6453 http::request::Parts::new (/tmp/helperc/ringtail-rel)
\t          60f269 <hyper::proto::h1::dispatch::Server<S,hyper::body::incoming::Incoming> as hyper::proto::h1::dispatch::Dispatch>::recv_msg (/tmp/helperc/ringtail-rel)
\t          648234 hyper::proto::h1::dispatch::Dispatcher<D,Bs,I,T>::poll_catch (/tmp/helperc/ringtail-rel)
\tffffffffffffffff [unknown] ([unknown])

tokio-rt-worker 17374 
\tffffffff822382f7 clear_page_erms ([kernel.kallsyms])
\tffffffff81607966 folio_zero_user ([kernel.kallsyms])
\tffffffff81000c82 asm_exc_page_fault ([kernel.kallsyms])
\t          6cd726 mi_page_free_list_extend (/tmp/helperc/ringtail-rel)
\t          6e044d _mi_malloc_generic (/tmp/helperc/ringtail-rel)
\t          fc346f alloc::raw_vec::RawVecInner<A>::finish_grow (/tmp/helperc/ringtail-rel)

tokio-rt-worker 17371 
\t         110ad74 dtoa::Buffer::format (/tmp/helperc/ringtail-rel)
\t         1109651 prometheus_client::encoding::text::MetricEncoder::encode_histogram (/tmp/helperc/ringtail-rel)
\t          7a3137 <F as axum::handler::Handler<(M,T1),S>>::call::{{closure}} (/tmp/helperc/ringtail-rel)

tokio-rt-worker 17372 
\t          7f3a10 __memmove_avx_unaligned_erms (/usr/lib/x86_64-linux-gnu/libc.so.6)
\t         1230001 <alloc::vec::Vec<T,A> as core::clone::Clone>::clone (/tmp/helperc/ringtail-rel)
\t         1230456 query::calls::RangeJob::run (/tmp/helperc/ringtail-rel)

tokio-rt-worker 17372 
\t         1244f00 core::ptr::drop_in_place<tsdb::select::SelectedSeries> (/tmp/helperc/ringtail-rel)
";

    #[test]
    fn frames_are_parsed_from_captured_output() {
        let frames: Vec<Frame> = CAPTURED.lines().filter_map(parse_frame).collect();
        assert_eq!(frames[0], frame("http::request::Parts::new", "/tmp/helperc/ringtail-rel"));
        assert_eq!(
            frames[1].symbol,
            "<hyper::proto::h1::dispatch::Server<S,hyper::body::incoming::Incoming> as \
             hyper::proto::h1::dispatch::Dispatch>::recv_msg"
        );
        assert_eq!(frames[3], frame("[unknown]", "[unknown]"));
        assert_eq!(frames[4], frame("clear_page_erms", "[kernel.kallsyms]"));
        assert!(parse_frame("tokio-rt-worker 17371 ").is_none());
        assert!(parse_frame("").is_none());
        assert!(parse_frame("\tnot-hex symbol (x)").is_none());
        // A symbol perf printed without its object.
        assert_eq!(parse_frame("\t  abc foo"), Some(frame("foo", "[unknown]")));
    }

    /// The captured `perf script` text, folded (the last sample closed).
    fn captured_fold() -> ProfileFold {
        let mut fold = ProfileFold::default();
        for line in CAPTURED.lines() {
            fold.line(line);
        }
        fold.end_sample();
        fold
    }

    #[test]
    fn captured_output_folds_into_categories() {
        let mut fold = ProfileFold::default();
        for line in CAPTURED.lines() {
            fold.line(line);
        }
        // The last sample has no blank line after it.
        fold.end_sample();
        assert_eq!(fold.samples, 5);
        let count = |c| fold.categories.get(&c).copied().unwrap_or(0);
        // hyper's request head, the prometheus-client page under an axum handler.
        assert_eq!(count(Category::Http), 2);
        // A page fault under mimalloc is the kernel's.
        assert_eq!(count(Category::Kernel), 1);
        // memmove in Vec::clone under PromQL's range job.
        assert_eq!(count(Category::Evaluation), 1);
        assert_eq!(count(Category::Storage), 1);
        let leaves = fold.busiest_leaves(10);
        assert!(leaves
            .iter()
            .any(|(name, leaf)| *name == "[kernel] clear_page_erms" && leaf.category == Category::Kernel));
        assert!(leaves.iter().any(|(name, _)| *name == "http::…::Parts::new"));
    }

    #[test]
    fn kernel_leaf_wins_and_allocators_own_their_copies() {
        let ringtail = "/bin/ringtail";
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
        // A futex wait: libc wrapper leaf.
        let futex = [frame("__futex_abstimed_wait_common", libc), frame("tokio::runtime::park::Inner::park", ringtail)];
        assert_eq!(categorise(&futex), Category::Kernel);
        // A vDSO clock read.
        assert_eq!(categorise(&[frame("__vdso_clock_gettime", "[vdso]")]), Category::Kernel);
        // memcpy inside realloc is allocation, not its caller's.
        let realloc = [
            frame("__memcpy_avx_unaligned_erms", libc),
            frame("_mi_theap_realloc_zero", ringtail),
            frame("query::aggregate::sum", ringtail),
        ];
        assert_eq!(categorise(&realloc), Category::Allocation);
        assert_eq!(categorise(&[frame("alloc::raw_vec::RawVecInner<A>::finish_grow", ringtail)]), Category::Allocation);
        assert_eq!(categorise(&[frame("free", libc)]), Category::Allocation);
        assert_eq!(categorise(&[]), Category::Other);
        assert_eq!(categorise(&[frame("[unknown]", "[unknown]")]), Category::Other);
    }

    #[test]
    fn hash_maps_count_as_index_unless_their_caller_is_known() {
        let bin = "/bin/ringtail";
        let probe = frame("hashbrown::raw::RawTable<T,A>::reserve_rehash", bin);
        assert_eq!(categorise(std::slice::from_ref(&probe)), Category::Index);
        assert_eq!(categorise(&[probe.clone(), frame("query::aggregate::Groups::insert", bin)]), Category::Evaluation);
        assert_eq!(
            categorise(&[
                probe,
                frame("core::ops::function::FnOnce::call_once", bin),
                frame("ingest::series_cache::SeriesCache::get", bin)
            ]),
            Category::Index
        );
        // zstd under the series log is the store's.
        let zstd = frame("ZSTD_compressBlock_doubleFast", bin);
        assert_eq!(categorise(&[zstd.clone(), frame("tsdb::series_log::SeriesLog::append", bin)]), Category::Storage);
        assert_eq!(categorise(&[zstd]), Category::Compression);
    }

    #[test]
    fn symbols_are_owned_by_the_right_part() {
        let cases = [
            ("tsdb::index::postings::Postings::intersect", Category::Index),
            ("<tsdb::index::postings::Iter as core::iter::traits::iterator::Iterator>::next", Category::Index),
            ("tsdb::chunk::xor::XorIter::next", Category::Storage),
            ("tsdb::ring::Ring::append", Category::Storage),
            ("ingest::remote_write::decode::decode_request", Category::Decode),
            ("ingest::exposition::parse_line", Category::Decode),
            ("snap::decompress::Decoder::decompress", Category::Decode),
            ("prost::encoding::decode_varint_slow", Category::Decode),
            ("ingest::series_cache::SeriesCache::lookup", Category::Index),
            ("query::engine::Engine::eval<tsdb::db::Db>", Category::Evaluation),
            ("core::ptr::drop_in_place<query::value::Matrix>", Category::Evaluation),
            ("apiserver::adapter::provider::lookup::Provider::custom", Category::Evaluation),
            ("<F as axum::handler::Handler<(M,T1),S>>::call::{{closure}}", Category::Http),
            ("httparse::simd::avx2::match_uri_vectored", Category::Http),
            ("apiserver::http::prom_api::query::{{closure}}", Category::Http),
            ("apiserver::http::prom_api::write_labels", Category::Json),
            ("<apiserver::adapter::http::k8s_types::MetricValue as serde::ser::Serialize>::serialize", Category::Json),
            ("<&mut serde_json::ser::Serializer<W,F> as serde::ser::Serializer>::serialize_str", Category::Json),
            ("ryu::pretty::format64", Category::Json),
            ("query::value::push_plain_decimal", Category::Json),
            ("apiserver::adapter::http::value_list_json::write_metric_value_list", Category::Json),
            ("rustls::conn::ConnectionCommon<Data>::read_tls", Category::Tls),
            ("ring_core_0_17_14__aes_hw_ctr32_encrypt_blocks", Category::Tls),
            ("_aesni_ctr32_ghash_6x", Category::Tls),
            ("ring::aead::aes_gcm::seal", Category::Tls),
            ("miniz_oxide::deflate::core::compress_inner", Category::Compression),
            ("<flate2::zio::Writer<W,D> as std::io::Write>::write", Category::Compression),
            ("tokio::runtime::scheduler::multi_thread::worker::Context::run", Category::Runtime),
            ("std::sync::mpmc::list::Channel<T>::recv", Category::Runtime),
        ];
        for (symbol, category) in cases {
            assert_eq!(categorise(&[frame(symbol, "/bin/ringtail")]), category, "{symbol}");
        }
        for generic in [
            "core::fmt::write",
            "<alloc::vec::Vec<T,A> as core::clone::Clone>::clone",
            "bytes::bytes_mut::BytesMut::reserve_inner",
            "__memset_avx2_unaligned_erms",
            "ringtail::main",
            "[unknown]",
        ] {
            assert_eq!(classify(generic), Class::Generic, "{generic}");
        }
        assert_eq!(classify("tsdb::db::read::<impl tsdb::db::Db>::select_ids"), Class::Owned(Category::Storage));
        assert_eq!(
            classify("query::value::<impl core::fmt::Display for query::value::Matrix>::fmt"),
            Class::Owned(Category::Evaluation)
        );
        // `tsdb::ring` is no `ring::` crypto, a legacy hash suffix is ignored.
        assert_eq!(classify("tsdb::ring::Ring::slot::h0123456789abcdef"), Class::Owned(Category::Storage));
    }

    #[test]
    fn names_are_shortened_for_the_report() {
        assert_eq!(shorten("query::calls::RangeJob::run"), "query::…::RangeJob::run");
        assert_eq!(shorten("tsdb::head::Head::append"), "tsdb::…::Head::append");
        assert_eq!(shorten("hashbrown::raw::RawTable<T,A>::reserve_rehash"), "hashbrown::…::RawTable::reserve_rehash");
        assert_eq!(shorten("http::request::Parts::new"), "http::…::Parts::new");
        assert_eq!(shorten("free"), "free");
        assert_eq!(shorten("tsdb::db::read::<impl tsdb::db::Db>::select_ids"), "tsdb::…::Db::select_ids");
        assert_eq!(
            shorten("query::value::<impl core::fmt::Display for query::value::Matrix<T>>::fmt"),
            "query::…::Matrix::fmt"
        );
        assert_eq!(
            shorten("<hyper::proto::h1::dispatch::Server<S,hyper::body::incoming::Incoming> as hyper::proto::h1::dispatch::Dispatch>::recv_msg"),
            "<hyper::…::dispatch::Server as Dispatch>::recv_msg"
        );
        assert_eq!(
            shorten("<F as axum::handler::Handler<(M,T1),S>>::call::{{closure}}"),
            "<F as Handler>::call::{{closure}}"
        );
        assert_eq!(shorten("<[T]>::sort_by"), "<[T]>::sort_by");
        assert_eq!(shorten("core::ptr::drop_in_place<query::value::Matrix>"), "drop_in_place<query::value::Matrix>");
        assert_eq!(
            shorten("core::ptr::drop_in_place<alloc::vec::Vec<tsdb::select::SelectedSeries>>"),
            "drop_in_place<alloc::vec::Vec>"
        );
    }

    #[test]
    fn profiles_sum_over_windows_and_rank_shares() {
        let fold = captured_fold();
        let mut profile = WorkloadProfile::new("w", SystemKind::Ringtail);
        profile.add(&fold);
        profile.add(&fold);
        assert_eq!((profile.windows, profile.samples), (2, 10));
        let shares = profile.shares();
        assert_eq!(shares[0], (Category::Http, 40.0));
        assert!((shares.iter().map(|(_, s)| s).sum::<f64>() - 100.0).abs() < 1e-9);
        let top = profile.top_leaves(5);
        assert_eq!(top.len(), 5);
        assert!(top.iter().all(|&(_, share, _)| share == 20.0));
    }

    #[test]
    fn report_paragraph_reads_well() {
        let fold = captured_fold();
        let mut profile = WorkloadProfile::new("w", SystemKind::Ringtail);
        profile.add(&fold);
        let text = report_paragraph(Some(&profile), SystemKind::Ringtail);
        assert!(
            text.starts_with("**Where Ringtail's time goes** (5 samples over 1 window): HTTP 40 %, evaluation 20 %,"),
            "{text}"
        );
        assert!(text.contains("- `[kernel] clear_page_erms` 20 % (kernel)\n"), "{text}");
        assert_eq!(text.matches("\n- `").count(), LEAVES_SHOWN, "{text}");
        assert!(
            report_paragraph(None, SystemKind::Ringtail).contains("not profiled — this workload does not sample it")
        );
        let mut off = WorkloadProfile::new("w", SystemKind::Ringtail);
        off.not_profiled = Some("switched off (--no-profile)".into());
        assert!(
            report_paragraph(Some(&off), SystemKind::Ringtail).contains("not profiled — switched off (--no-profile).")
        );
    }

    #[test]
    fn store_keeps_the_first_reason_once() {
        let store = ProfileStore::default();
        assert!(store.not_sampled("w", SystemKind::Ringtail, "perf missing".into()));
        assert!(!store.not_sampled("w", SystemKind::Ringtail, "perf missing again".into()));
        let profile = store.get("w", SystemKind::Ringtail).map(|p| (p.failed_windows, p.not_profiled));
        assert_eq!(profile, Some((2, Some("perf missing".to_string()))));
        let json = serde_json::to_value(&store).map(|v| v[0]["not_profiled"].clone()).ok();
        assert_eq!(json, Some(serde_json::json!("perf missing")));
    }

    #[tokio::test]
    async fn a_missing_perf_is_a_reason_not_a_panic() {
        let error = spawn_record("/nonexistent/ringtail-bench-no-perf", std::process::id()).err();
        assert!(error.is_some_and(|e| e.contains("could not be started")));
    }

    #[tokio::test]
    async fn a_perf_that_exits_at_start_is_a_reason() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let log = dir.path().join("record.log");
        std::fs::write(&log, "Error: No permissions to read /sys/kernel/tracing\n").map_err(|e| e.to_string())?;
        let mut child = tokio::process::Command::new("false").kill_on_drop(true).spawn().map_err(|e| e.to_string())?;
        let error = wait_attached(&mut child, &log).err().unwrap_or_default();
        assert!(error.contains("exited at start") && error.contains("No permissions"), "{error}");
        std::fs::write(&log, "Events disabled\nEvents enabled\n").map_err(|e| e.to_string())?;
        assert_eq!(wait_attached(&mut child, &log), Ok(()));
        Ok(())
    }

    #[test]
    fn record_arguments_cap_the_data() {
        let args = record_args(42, Path::new("/tmp/x/perf.data"));
        assert!(args.contains(&"--max-size=512M".to_string()));
        assert!(args.contains(&"--no-buildid-cache".to_string()));
        assert!(args.windows(2).any(|w| w[0] == "-p" && w[1] == "42"));
        assert!(args.windows(2).any(|w| w[0] == "--call-graph" && w[1] == "dwarf,8192"));
        assert!(script_args(Path::new("/tmp/x/perf.data")).contains(&"--no-inline".to_string()));
    }
}
