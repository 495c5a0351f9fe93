//! The store's failure modes through the real `ringtail` binary: a data directory on a small
//! file system filled by ingest (the process stays up, writes get 507/503 with a reason, queries,
//! the custom metrics API, `/-/ready` and `/metrics` say why, and writes resume once space is
//! freed with every acknowledged sample kept); a restart on a full volume (read-only); a second
//! process on a locked data directory; label sets the series log cannot hold; restarts with a
//! larger and a smaller `--storage-size`.
//!
//! The small file system is a tmpfs in a private mount namespace (`unshare -rm`, no privileges
//! where user namespaces are allowed), kept by a `sleep` so that the volume outlives each
//! `ringtail` process; `ringtail` runs inside it through `nsenter`, and the test reaches the
//! volume through `/proc/<holder pid>/root`. Where `unshare` is not allowed those tests print
//! `SKIPPED:` and pass, or fail under `RINGTAIL_REQUIRE_PEERS=1` (as peer tests do).

mod ingest_common;

use ingest::proto::v1;
use ingest::remote_write::encode_body;
use ingest_common::*;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tsdb::now_ms;

const CT_V1: &str = "application/x-protobuf";
/// Bound on anything the tests wait for (a process to start, stop or exit).
const WAIT: Duration = Duration::from_secs(90);

/// A tmpfs of a fixed size in a private mount namespace, held by a `sleep` (killed on drop).
struct SmallVolume {
    holder: ChildGuard,
    /// Where the tmpfs is mounted, as the namespace sees it.
    mount_point: PathBuf,
}

impl SmallVolume {
    /// Mounts a tmpfs of `size` (e.g. `24m`) at `base/vol`, or says why it cannot (`None`: the
    /// test is skipped, or fails under `RINGTAIL_REQUIRE_PEERS=1`).
    fn create(test: &str, base: &Path, size: &str) -> Option<SmallVolume> {
        let mount_point = base.join("vol");
        std::fs::create_dir_all(&mount_point).expect("creating the mount point");
        let mut command = Command::new("unshare");
        command
            .args(["-rm", "sh", "-c", "mount -t tmpfs -o size=\"$1\" tmpfs \"$0\" && exec sleep 86400"])
            .arg(&mount_point)
            .arg(size);
        let log = base.join("unshare.log");
        let mut holder = ChildGuard::spawn("unshare", &mut command, &log);
        let mountinfo = format!("/proc/{}/mountinfo", holder.pid());
        let deadline = Instant::now() + WAIT;
        loop {
            let mounted = std::fs::read_to_string(&mountinfo).unwrap_or_default();
            if mounted.lines().any(|l| l.contains(&format!(" {} ", mount_point.display())) && l.contains("tmpfs")) {
                return Some(SmallVolume { holder, mount_point });
            }
            let exited = holder.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let reason = format!(
                    "`unshare -rm` + tmpfs mount failed ({exited:?}): {} (user namespaces not allowed here?)",
                    std::fs::read_to_string(&log).unwrap_or_default().trim()
                );
                if std::env::var(peer::REQUIRE_PEERS_ENV).is_ok_and(|v| v == "1") {
                    panic!("{test}: {reason}");
                }
                let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {reason}");
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The volume as this process sees it.
    fn view(&self) -> PathBuf {
        let inside = self.mount_point.strip_prefix("/").expect("absolute mount point");
        PathBuf::from(format!("/proc/{}/root", self.holder.pid())).join(inside)
    }

    /// `ringtail` run inside the namespace (nsenter execs it: the child's pid is ringtail's).
    fn ringtail(&self) -> Command {
        let mut command = Command::new("nsenter");
        command.args(["-t", &self.holder.pid().to_string(), "-U", "-m", "--", env!("CARGO_BIN_EXE_ringtail")]);
        command
    }

    /// Fills the volume with a file until the file system says it is full; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.view().join("filler");
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("creating the filler");
        for block in [1 << 20, 4096, 1] {
            let buf = vec![0u8; block];
            while file.write_all(&buf).is_ok() {}
        }
        path
    }
}

/// A running `ringtail serve` (killed on drop if still running).
struct Server {
    process: ChildGuard,
    addr: SocketAddr,
    secure_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Server {
    /// Starts `program serve` on `data_dir` with fresh ports; waits until `/-/ready` answers 200.
    async fn start(mut program: Command, data_dir: &Path, log: &Path, extra: &[&str]) -> Server {
        let server = Server::spawn(&mut program, data_dir, log, extra);
        server.wait_ready().await
    }

    fn spawn(program: &mut Command, data_dir: &Path, log: &Path, extra: &[&str]) -> Server {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let secure_port = free_port();
        program
            .args(["serve", "--standalone", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &addr.to_string(), "--secure-listen", &format!("127.0.0.1:{secure_port}")])
            .args(extra)
            .env("RINGTAIL_LOG", "info");
        let process = ChildGuard::spawn("ringtail", program, log);
        Server { process, addr, secure_port, data_dir: data_dir.to_path_buf(), log: log.to_path_buf() }
    }

    async fn wait_ready(mut self) -> Server {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(response) = client().get(format!("{}/-/ready", self.url())).send().await {
                if response.status().is_success() {
                    return self;
                }
            }
            if let Ok(Some(status)) = self.process.child.try_wait() {
                panic!("ringtail exited while starting ({status}):\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "ringtail not ready within {WAIT:?}:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the exit status and the log if the process is gone.
    fn assert_running(&mut self, context: &str) {
        if let Ok(Some(status)) = self.process.child.try_wait() {
            panic!("{context}: ringtail died ({status}):\n{}", self.log_text());
        }
    }

    /// SIGTERM, then waits for the exit (a clean shutdown flushes the store).
    fn stop(mut self) {
        let pid = self.process.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        wait_for_exit(&mut self.process, &self.log);
    }

    /// POSTs a 1.0 remote-write request; `None` when the connection failed.
    async fn write(&self, series: Vec<v1::TimeSeries>) -> Option<(u16, String)> {
        let body = encode_body(&v1::WriteRequest { timeseries: series, metadata: vec![] });
        let response = client()
            .post(format!("{}/api/v1/write", self.url()))
            .header("Content-Type", CT_V1)
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.unwrap_or_default()))
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = client().get(format!("{}{path}", self.url())).send().await.expect("GET");
        (response.status().as_u16(), response.text().await.unwrap_or_default())
    }

    /// The value of an instant query with one result.
    async fn query_scalar(&self, query: &str) -> f64 {
        let response = client()
            .get(format!("{}/api/v1/query", self.url()))
            .query(&[("query", query)])
            .send()
            .await
            .expect("query");
        assert_eq!(response.status(), 200, "{query}");
        let body: serde_json::Value = response.json().await.expect("query JSON");
        parse_prometheus_float(body["data"]["result"][0]["value"][1].as_str().unwrap_or("NaN"))
    }

    async fn export(&self, selector: &str) -> Vec<ExportedSeries> {
        export_from(&self.url(), selector).await
    }

    /// A GET on the metrics adapter (TLS, trusting the CA generated beside the data directory).
    async fn adapter_get(&self, path: &str) -> (u16, String) {
        let tls_dir = self.data_dir.with_file_name(format!(
            "{}-tls",
            self.data_dir.file_name().and_then(|n| n.to_str()).expect("data dir name")
        ));
        let pem = std::fs::read(tls_dir.join("ca.crt")).expect("generated CA");
        let https = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA pem"))
            .tls_built_in_root_certs(false)
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let response =
            https.get(format!("https://localhost:{}{path}", self.secure_port)).send().await.expect("adapter GET");
        (response.status().as_u16(), response.text().await.unwrap_or_default())
    }
}

/// Waits (bounded) until `process` exits; kills it and panics if it does not.
fn wait_for_exit(process: &mut ChildGuard, log: &Path) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(Some(status)) = process.child.try_wait() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = process.child.kill();
            panic!("process did not exit within {WAIT:?}:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `count` new pod series `fill_series{namespace="default", pod="pod-<i>", payload=…}`, one
/// sample each (value `i`), from index `first`; the payload makes each series cost more space.
fn new_pod_series(first: usize, count: usize, ts_ms: i64) -> Vec<v1::TimeSeries> {
    let payload = "p".repeat(200);
    (first..first + count)
        .map(|i| {
            let pod = format!("pod-{i}");
            series(
                &[("__name__", "fill_series"), ("namespace", "default"), ("pod", &pod), ("payload", &payload)],
                &[(ts_ms, i as f64)],
            )
        })
        .collect()
}

/// What the tests remember of a run of writes until the store refused one.
#[derive(Default)]
struct Fill {
    /// Indices of the pod series acknowledged with 2xx.
    acknowledged: Vec<usize>,
    next: usize,
    /// The refusal (status, body), if one came.
    refused: Option<(u16, String)>,
}

const SERIES_PER_REQUEST: usize = 500;

/// Writes new pod series until the store refuses a request or `max_requests` pass.
async fn write_until_refused(server: &mut Server, fill: &mut Fill, max_requests: usize) {
    for _ in 0..max_requests {
        let batch = new_pod_series(fill.next, SERIES_PER_REQUEST, now_ms());
        let answer = server.write(batch).await;
        server.assert_running("writing new series to a filling volume");
        let Some((status, body)) = answer else { panic!("remote-write connection failed:\n{}", server.log_text()) };
        match status {
            200..=299 => fill.acknowledged.extend(fill.next..fill.next + SERIES_PER_REQUEST),
            503 | 507 => {
                fill.refused = Some((status, body));
                fill.next += SERIES_PER_REQUEST;
                return;
            }
            other => panic!("unexpected remote-write answer {other}: {body}"),
        }
        fill.next += SERIES_PER_REQUEST;
    }
}

/// Every acknowledged pod series is exported with its sample.
async fn assert_acknowledged_kept(server: &Server, acknowledged: &[usize]) {
    let exported = server.export("{__name__=\"fill_series\"}").await;
    let stored: HashSet<(String, Vec<u64>)> = exported
        .iter()
        .map(|s| (s.metric.get("pod").cloned().unwrap_or_default(), s.floats().iter().map(|v| v.to_bits()).collect()))
        .collect();
    let missing: Vec<usize> = acknowledged
        .iter()
        .copied()
        .filter(|i| !stored.contains(&(format!("pod-{i}"), vec![(*i as f64).to_bits()])))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged series lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

fn metric_line(metrics: &str, line: &str) -> bool {
    metrics.lines().any(|l| l == line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_volume_refuses_writes_keeps_serving_and_recovers_without_loss() {
    let base = tempfile::tempdir().expect("temp dir");
    let test = "a_full_volume_refuses_writes_keeps_serving_and_recovers_without_loss";
    let Some(volume) = SmallVolume::create(test, base.path(), "24m") else { return };
    let mut server = Server::start(
        volume.ringtail(),
        &volume.mount_point,
        &base.path().join("ringtail.log"),
        &["--storage-size", "64MiB", "--config", &write_config(base.path())],
    )
    .await;

    let mut fill = Fill::default();
    write_until_refused(&mut server, &mut fill, 4).await;
    assert!(fill.refused.is_none() && !fill.acknowledged.is_empty(), "an empty volume takes writes");
    let filler = volume.fill();
    write_until_refused(&mut server, &mut fill, 2000).await;
    let Some((status, reason)) = fill.refused.clone() else {
        panic!("{} series written to a full volume and none refused", fill.next)
    };
    eprintln!("refused with {status}: {reason} after {} acknowledged series", fill.acknowledged.len());
    assert!(status == 507 || status == 503, "{status}");
    assert!(reason.contains("no space") || reason.contains("read-only"), "the body names the reason: {reason}");

    // Reads go on: the query API, the custom metrics API, readiness and self-metrics.
    // A refused request may have stored part of its series before the store ran out of space.
    let counted = server.query_scalar("count(fill_series)").await;
    assert!(counted >= fill.acknowledged.len() as f64, "every acknowledged series answers a query: {counted}");
    let (code, discovery) = server.adapter_get("/apis/custom.metrics.k8s.io/v1beta2").await;
    assert_eq!(code, 200, "{discovery}");
    assert!(discovery.contains("pods/fill_series"), "{discovery}");
    let (code, value) =
        server.adapter_get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/pod-0/fill_series").await;
    assert_eq!(code, 200, "{value}");
    let (code, ready) = server.get("/-/ready").await;
    assert_eq!(code, 200, "queries still work, so the pod stays ready");
    assert!(ready.contains("writes refused: "), "{ready}");
    let (_, metrics) = server.get("/metrics").await;
    assert!(metric_line(&metrics, "ringtail_tsdb_writes_accepted 0"), "{metrics}");
    let refused_reason = if status == 507 { "no_space" } else { "read_only" };
    assert!(metric_line(&metrics, &format!("ringtail_tsdb_writes_refused{{reason=\"{refused_reason}\"}} 1")));

    // Space comes back: writes pass again, and nothing acknowledged was lost.
    std::fs::remove_file(&filler).expect("removing the filler");
    let deadline = Instant::now() + WAIT;
    loop {
        fill.refused = None;
        write_until_refused(&mut server, &mut fill, 1).await;
        if fill.refused.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "writes still refused after space was freed: {:?}", fill.refused);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (code, ready) = server.get("/-/ready").await;
    assert_eq!((code, ready.contains("writes refused")), (200, false), "{ready}");
    let (_, metrics) = server.get("/metrics").await;
    assert!(metric_line(&metrics, "ringtail_tsdb_writes_accepted 1"), "{metrics}");
    assert_acknowledged_kept(&server, &fill.acknowledged).await;
    server.assert_running("after the volume was freed");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_restarted_on_a_full_volume_starts_read_only_and_answers_queries() {
    let base = tempfile::tempdir().expect("temp dir");
    let test = "a_store_restarted_on_a_full_volume_starts_read_only_and_answers_queries";
    let Some(volume) = SmallVolume::create(test, base.path(), "24m") else { return };
    let config = write_config(base.path());
    let args = ["--storage-size", "64MiB", "--config", &config];
    let mut server = Server::start(volume.ringtail(), &volume.mount_point, &base.path().join("first.log"), &args).await;
    let mut fill = Fill::default();
    write_until_refused(&mut server, &mut fill, 2).await;
    assert!(fill.refused.is_none());
    server.stop();

    volume.fill();
    let mut server =
        Server::start(volume.ringtail(), &volume.mount_point, &base.path().join("second.log"), &args).await;
    let counted = server.query_scalar("count(fill_series)").await;
    assert_eq!(counted, fill.acknowledged.len() as f64, "the store answers queries on a full volume");
    assert_acknowledged_kept(&server, &fill.acknowledged).await;
    write_until_refused(&mut server, &mut fill, 200).await;
    let Some((status, reason)) = fill.refused.clone() else { panic!("writes to a full volume were never refused") };
    eprintln!("restarted on a full volume: writes refused with {status}: {reason}");
    assert_eq!(status, 503, "a store opened on a full volume is read-only: {reason}");
    let (code, ready) = server.get("/-/ready").await;
    assert_eq!(code, 200);
    assert!(ready.contains("writes refused: the store is read-only"), "{ready}");
    server.assert_running("after refusing writes");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_data_dir_exits_naming_the_holder() {
    let base = tempfile::tempdir().expect("temp dir");
    let data_dir = base.path().join("data");
    let config = write_config(base.path());
    let first = Server::start(
        Command::new(env!("CARGO_BIN_EXE_ringtail")),
        &data_dir,
        &base.path().join("first.log"),
        &["--config", &config],
    )
    .await;
    let second_log = base.path().join("second.log");
    let mut second = Server::spawn(
        &mut Command::new(env!("CARGO_BIN_EXE_ringtail")),
        &data_dir,
        &second_log,
        &["--config", &config],
    );
    let status = wait_for_exit(&mut second.process, &second_log);
    let stderr = std::fs::read_to_string(&second_log).unwrap_or_default();
    assert!(!status.success(), "the second process must fail: {stderr}");
    assert!(stderr.contains(&first.process.pid().to_string()), "stderr names the holder's pid: {stderr}");
    let (code, _) = first.get("/-/healthy").await;
    assert_eq!(code, 200, "the first process is untouched");
    first.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_sets_the_series_log_cannot_hold_are_400_and_later_series_survive_a_restart() {
    let base = tempfile::tempdir().expect("temp dir");
    let data_dir = base.path().join("data");
    let config = write_config(base.path());
    let args = ["--config", config.as_str()];
    let ringtail = || Command::new(env!("CARGO_BIN_EXE_ringtail"));
    let server = Server::start(ringtail(), &data_dir, &base.path().join("first.log"), &args).await;
    let now = now_ms();
    let before = series(&[("__name__", "written_before")], &[(now, 1.0)]);
    assert_eq!(server.write(vec![before]).await.map(|a| a.0), Some(204));

    let names: Vec<String> = (0..70_000).map(|i| format!("l{i:05}")).collect();
    let mut many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    many.push(("__name__", "too_many_labels"));
    let (status, body) = server.write(vec![series(&many, &[(now, 1.0)])]).await.expect("answer");
    assert_eq!(status, 400, "70,000 labels: {body}");

    let big_value = "v".repeat(60_000);
    let big_names: Vec<String> = (0..36).map(|i| format!("big{i:02}")).collect();
    let mut big: Vec<(&str, &str)> = big_names.iter().map(|n| (n.as_str(), big_value.as_str())).collect();
    big.push(("__name__", "huge_label_set"));
    let (status, body) = server.write(vec![series(&big, &[(now, 1.0)])]).await.expect("answer");
    assert_eq!(status, 400, "a 2 MiB label set: {body}");

    let after = series(&[("__name__", "written_after"), ("job", "x")], &[(now, 2.0), (now + 1, 3.0)]);
    assert_eq!(server.write(vec![after]).await.map(|a| a.0), Some(204));
    server.stop();

    let server = Server::start(ringtail(), &data_dir, &base.path().join("second.log"), &args).await;
    for (selector, expected) in [("written_before", vec![1.0]), ("written_after", vec![2.0, 3.0])] {
        let exported = server.export(selector).await;
        assert_eq!(exported.len(), 1, "{selector} survives the restart:\n{}", server.log_text());
        assert_eq!(exported[0].floats(), expected, "{selector}");
    }
    for refused in ["too_many_labels", "huge_label_set"] {
        assert!(server.export(refused).await.is_empty(), "{refused} was never stored");
    }
    server.stop();
}

/// Budget steps of the restart test; the last is below what was written.
const BUDGET_STEPS: [&str; 3] = ["128MiB", "32MiB", "4MiB"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_with_a_larger_or_smaller_storage_size_keep_what_fits() {
    let base = tempfile::tempdir().expect("temp dir");
    let data_dir = base.path().join("data");
    let config = write_config(base.path());
    let ringtail = || Command::new(env!("CARGO_BIN_EXE_ringtail"));
    let log = |step: &str| base.path().join(format!("ringtail-{step}.log"));
    let server =
        Server::start(ringtail(), &data_dir, &log("64MiB"), &["--config", &config, "--storage-size", "64MiB"]).await;

    // Random values compress badly (~9 bytes a sample): 800,000 of them are ~7 MB, more than the
    // smallest budget holds.
    const SERIES: usize = 100;
    const SAMPLES: i64 = 8_000;
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let first_ts = now_ms() - SAMPLES * 1000 - 10_000;
    let mut written: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for chunk_start in (0..SAMPLES).step_by(1000) {
        let batch: Vec<v1::TimeSeries> = (0..SERIES)
            .map(|s| {
                let samples: Vec<(i64, f64)> =
                    (chunk_start..chunk_start + 1000).map(|i| (first_ts + i * 1000, rng.gen::<f64>() * 1e6)).collect();
                let name = format!("s{s:03}");
                written.entry(name.clone()).or_default().extend(&samples);
                series(&[("__name__", "budget_series"), ("series", &name)], &samples)
            })
            .collect();
        assert_eq!(server.write(batch).await.map(|a| a.0), Some(204));
    }
    server.stop();

    for step in BUDGET_STEPS {
        let server =
            Server::start(ringtail(), &data_dir, &log(step), &["--config", &config, "--storage-size", step]).await;
        let exported = server.export("{__name__=\"budget_series\"}").await;
        let stored: BTreeMap<String, Vec<(i64, f64)>> = exported
            .iter()
            .map(|s| {
                let name = s.metric.get("series").cloned().unwrap_or_default();
                (name, s.timestamps.iter().copied().zip(s.floats()).collect())
            })
            .collect();
        let kept: usize = stored.values().map(Vec::len).sum();
        eprintln!("--storage-size {step}: {kept} of {} samples kept", SERIES as i64 * SAMPLES);
        if step != "4MiB" {
            let differing = written.iter().filter(|(name, samples)| stored.get(*name) != Some(*samples)).count();
            assert!(
                differing == 0 && stored.len() == written.len(),
                "--storage-size {step} keeps everything, but {differing} of {SERIES} series differ ({kept} samples \
                 kept):\n{}",
                server.log_text()
            );
        } else {
            assert_eq!(stored.len(), SERIES, "every series keeps its newest samples");
            for (name, samples) in &stored {
                let all = &written[name];
                assert!(
                    !samples.is_empty() && all.ends_with(samples),
                    "{name}: the newest samples are kept, oldest dropped"
                );
            }
            assert!(kept < SERIES * SAMPLES as usize, "a 4 MiB budget cannot hold ~7 MB of samples");
        }
        server.stop();
    }
}

/// A config without scrape jobs (self-scraping would add series and samples to the counts).
fn write_config(dir: &Path) -> String {
    let path = dir.join("ringtail.yaml");
    std::fs::write(&path, "scrape_configs: []\n").expect("writing the config");
    path.display().to_string()
}
