//! Ringtail's benchmark crate. [`suite`] is the benchmark suite behind the `ringtail-bench`
//! program (every system under test started on loopback, six workloads, a report folder with
//! Markdown, SVG charts and JSON). [`kill_soak`] kills Ringtail with SIGKILL at random moments
//! under write load and checks every acknowledged sample after each restart (`kill_soak`
//! program); [`overload`] pushes a real Prometheus past a CPU-confined Ringtail and compares what
//! each holds (`overload_soak` program). This file holds the plumbing the suite and the older
//! side-by-side programs in `src/bin/` share: starting a peer server process (killed on drop),
//! free loopback ports, finding the `ringtail` binary, waiting for readiness, reading a process's
//! CPU time and peak RSS from `/proc`, remote-write 1.0 requests, `--flag N` option parsing and
//! the `main` of a side-by-side program.
#![forbid(unsafe_code)]

pub mod kill_soak;
pub mod overload;
pub mod suite;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process started by a benchmark, killed (and reaped) on drop, with the temporary
/// directory holding its data and log (removed after the process is gone).
pub struct Peer {
    /// A short name for reports.
    pub name: &'static str,
    /// The running process.
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    dir: tempfile::TempDir,
}

impl Peer {
    /// Starts `program args…` with the extra environment `envs`, stdin closed and stdout and
    /// stderr written to `dir/<log>`; the peer is reached at `http://127.0.0.1:<port>`. Does not
    /// wait for readiness.
    pub fn start(
        name: &'static str,
        program: &Path,
        args: &[String],
        envs: &[(&str, &str)],
        port: u16,
        dir: tempfile::TempDir,
        log: &str,
    ) -> Result<Peer, String> {
        let out = std::fs::File::create(dir.path().join(log)).map_err(|e| format!("creating {log}: {e}"))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(program)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| format!("starting {name} ({}): {e}", program.display()))?;
        Ok(Peer { name, child, url: format!("http://127.0.0.1:{port}"), dir })
    }

    /// The peer's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// [`wait_ok`], except that it fails as soon as the process has exited (a peer that died at
    /// start is not waited for).
    pub async fn wait_ready(
        &mut self,
        client: &reqwest::Client,
        url: &str,
        timeout: Duration,
        every: Duration,
    ) -> Result<(), String> {
        let (name, child) = (self.name, &mut self.child);
        poll_ok(client, url, timeout, every, || match child.try_wait() {
            Ok(Some(status)) => Some(format!("{name} exited ({status}) before {url} answered")),
            _ => None,
        })
        .await
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released), never handed out twice by this process.
/// It comes from below the kernel's ephemeral range (32768+), so none of the connections the
/// suite opens can be holding it when the server it is meant for binds it.
pub fn free_port() -> Result<u16, String> {
    use rand::Rng;
    const FIRST_PORT: u16 = 20_000;
    const LAST_PORT: u16 = 32_000;
    static HANDED_OUT: std::sync::Mutex<Option<std::collections::HashSet<u16>>> = std::sync::Mutex::new(None);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(Default::default);
    let span = LAST_PORT - FIRST_PORT;
    let start = rand::thread_rng().gen_range(0..span);
    for step in 0..span {
        let port = FIRST_PORT + (start + step) % span;
        if !handed_out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    Err(format!("no free loopback port in {FIRST_PORT}..{LAST_PORT}"))
}

/// The `ringtail` binary: `$RINGTAIL_BIN`, else the one next to the running program.
pub fn ringtail_bin() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("RINGTAIL_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let candidate = exe.parent().map(|d| d.join("ringtail")).ok_or("no parent dir")?;
    if candidate.exists() {
        Ok(candidate)
    } else {
        Err(format!(
            "{} not found: build it with cargo build --release -p ringtail-apiserver or set RINGTAIL_BIN",
            candidate.display()
        ))
    }
}

/// Polls `url` with GET every `every` until it answers 2xx; an error after `timeout`.
pub async fn wait_ok(client: &reqwest::Client, url: &str, timeout: Duration, every: Duration) -> Result<(), String> {
    poll_ok(client, url, timeout, every, || None).await
}

/// Polls `url` every `every` until it answers 2xx; an error at `timeout`, or the one `gone`
/// returns (checked after every miss).
async fn poll_ok(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    every: Duration,
    mut gone: impl FnMut() -> Option<String>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if let Some(reason) = gone() {
            return Err(reason);
        }
        if Instant::now() > deadline {
            return Err(format!("{url} did not become ready"));
        }
        tokio::time::sleep(every).await;
    }
}

/// A remote-write 1.0 POST of `body` (a snappy-compressed `WriteRequest`) to `url`, with the
/// headers Prometheus sends; the caller sends it and judges the answer.
pub fn remote_write_request(client: &reqwest::Client, url: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
}

/// Sends one remote-write 1.0 request, once; an answer other than 2xx is an error quoting it.
pub async fn remote_write_once(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<(), String> {
    let response =
        remote_write_request(client, url, body).send().await.map_err(|e| format!("remote-write to {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(format!("remote-write to {url}: {status}: {text:.300}"));
    }
    Ok(())
}

/// The `main` of a side-by-side program: options from `parse_options` (exit 2 with the message
/// when they are wrong), `run` on a multi-threaded tokio runtime (exit 1 with `name failed:
/// <error>` when it fails).
pub fn run_main<O, F>(name: &str, parse_options: fn() -> Result<O, String>, run: fn(O) -> F)
where
    F: std::future::Future<Output = Result<(), String>>,
{
    let options = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("starting tokio: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(options)) {
        eprintln!("{name} failed: {e}");
        std::process::exit(1);
    }
}

/// Peak resident set (`VmHWM`) of `pid` in MiB; NaN when it cannot be read.
pub fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// User + system CPU seconds of `pid` (from `/proc/<pid>/stat`).
pub fn cpu_seconds(pid: u32, ticks_per_second: f64) -> Result<f64, String> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or("malformed stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).ok_or("no utime")?;
    let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).ok_or("no stime")?;
    Ok((utime + stime) / ticks_per_second)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when that fails).
pub fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Parses the program's arguments as `--flag N` pairs. `flags` gives each accepted flag with its
/// default; the result holds the values in the same order, each at least 1. An unknown flag, a
/// missing value or a non-number is an error naming the flags and their defaults.
pub fn parse_number_flags(flags: &[(&str, u64)]) -> Result<Vec<u64>, String> {
    parse_number_flags_from(std::env::args().skip(1), flags)
}

/// [`parse_number_flags`] over the given arguments.
pub fn parse_number_flags_from(
    args: impl IntoIterator<Item = String>,
    flags: &[(&str, u64)],
) -> Result<Vec<u64>, String> {
    let mut values: Vec<u64> = flags.iter().map(|(_, default)| *default).collect();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        let n: u64 = value.parse().map_err(|_| format!("{arg}: not a number: {value}"))?;
        let Some(slot) = flags.iter().position(|(flag, _)| *flag == arg) else {
            let known: Vec<String> = flags.iter().map(|(flag, default)| format!("{flag} N [{default}]")).collect();
            return Err(format!("unknown flag {arg} (flags: {})", known.join(", ")));
        };
        values[slot] = n.max(1);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn number_flags() {
        let flags = [("--seconds", 20), ("--rate", 500)];
        assert_eq!(parse_number_flags_from(args(&[]), &flags), Ok(vec![20, 500]));
        assert_eq!(parse_number_flags_from(args(&["--rate", "0"]), &flags), Ok(vec![20, 1]));
        assert_eq!(
            parse_number_flags_from(args(&["--x", "1"]), &flags),
            Err("unknown flag --x (flags: --seconds N [20], --rate N [500])".to_string())
        );
        assert!(parse_number_flags_from(args(&["--rate"]), &flags).is_err());
        assert!(parse_number_flags_from(args(&["--rate", "a"]), &flags).is_err());
    }
}
