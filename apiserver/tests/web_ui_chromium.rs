//! The web UI at `/` driven by a real headless Chromium (Debian's `chromium`): the real `ringtail`
//! binary scrapes a test exporter and holds remote-written series for one good adapter rule and
//! two broken ones; each view is opened by its hash route, screenshotted into
//! `$CARGO_TARGET_TMPDIR/web-ui/`, and its DOM (after the page's scripts ran) is checked for what
//! a person should see: the target and its health, the served metric and the broken rules'
//! reasons, a query's table row and graph line, a recording rule's health, the store's series count.

mod ingest_common;

use ingest::proto::v1;
use ingest::remote_write::encode_body;
use ingest_common::peer::{peers_installed, Peer};
use ingest_common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's Chromium.
const CHROMIUM: Peer = Peer { binary: "/usr/bin/chromium", package: "chromium" };
/// Longest one Chromium run may take on a loaded 2-core machine before it is killed.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

/// One good rule (`ei_scale_ratio` per pod) and two broken ones: a `seriesQuery` matching
/// nothing, and `resources.overrides` naming a label the series lack.
const ADAPTER_RULES: &str = "rules:\n\
- seriesQuery: '{__name__=\"ei_scale_ratio\",namespace!=\"\",pod!=\"\"}'\n  resources:\n    overrides:\n      \
  namespace: {resource: namespace}\n      pod: {resource: pod}\n  \
  metricsQuery: 'avg(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n\
- seriesQuery: '{__name__=\"ei_nonexistent_total\"}'\n  resources:\n    overrides:\n      pod: {resource: pod}\n  \
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'\n\
- seriesQuery: '{__name__=\"ei_queue_depth\"}'\n  resources:\n    overrides:\n      container_name: {resource: pod}\n  \
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n";

/// The seeded value of `ei_scale_ratio`: no other series in the test has it, and a Quantity
/// carries it exactly (625m).
const SCALE_RATIO: f64 = 0.625;

/// Runs Chromium headless on `url` with its own profile dir; returns the DOM after the page's
/// scripts ran (`dump_dom`) or takes a screenshot into `screenshot`.
fn chromium(url: &str, profile: &Path, screenshot: Option<&Path>) -> String {
    let mut command = Command::new(CHROMIUM.binary);
    command
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            "--window-size=1280,900",
            "--virtual-time-budget=8000",
            // The page's console (script errors, policy violations) goes to stderr, checked below.
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
    match screenshot {
        Some(path) => command.arg(format!("--screenshot={}", path.display())),
        None => command.arg("--dump-dom"),
    };
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = command
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.reopen().unwrap()))
        .stderr(Stdio::from(err.reopen().unwrap()))
        .spawn()
        .expect("starting chromium");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break status;
        }
        if started.elapsed() > CHROMIUM_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish {url} in {CHROMIUM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(out.path()).unwrap_or_default();
    let stderr = std::fs::read_to_string(err.path()).unwrap_or_default();
    assert!(status.success(), "chromium failed on {url}: {status}\n{stderr}");
    for sign in ["Uncaught", "Content Security Policy", "Refused to"] {
        assert!(!stderr.contains(sign), "the page logged {sign:?} on {url}:\n{stderr}");
    }
    if let Some(path) = screenshot {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "no screenshot of {url} at {} ({size} bytes)\n{stderr}", path.display());
    }
    stdout
}

/// Opens `route`, saves its screenshot as `name.png` under `shots`, and returns its DOM once the
/// view says it is ready.
fn view(base: &str, route: &str, name: &str, shots: &Path, profiles: &Path) -> String {
    let url = format!("{base}/#/{route}");
    let profile = profiles.join(name);
    chromium(&url, &profile, Some(&shots.join(format!("{name}.png"))));
    let dom = chromium(&url, &profile, None);
    std::fs::write(shots.join(format!("{name}.html")), &dom).unwrap();
    assert!(dom.contains("data-state=\"ready\""), "the {name} view did not finish rendering:\n{dom}");
    dom
}

/// The text of the first `<div class="value">` after `<div class="label">{label}</div>`.
fn figure(dom: &str, label: &str) -> Option<String> {
    let rest = &dom[dom.find(&format!("<div class=\"label\">{label}</div>"))?..];
    let value = &rest[rest.find("<div class=\"value\">")? + "<div class=\"value\">".len()..];
    Some(value[..value.find('<')?].to_string())
}

async fn store_series(base: &str) -> u64 {
    let body: serde_json::Value =
        client().get(format!("{base}/api/ringtail/v1/store")).send().await.unwrap().json().await.unwrap();
    body["data"]["series"].as_u64().expect("series in /api/ringtail/v1/store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_shows_the_seeded_store_in_chromium() {
    if !peers_installed("every_view_shows_the_seeded_store_in_chromium", &[CHROMIUM]) {
        return;
    }
    let target = TestTarget::start().await;
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = rules_dir.path().join("adapter.yaml");
    std::fs::write(&rules, ADAPTER_RULES).unwrap();
    let rule_file = rules_dir.path().join("recording.yaml");
    std::fs::write(
        &rule_file,
        "groups:\n- name: ui\n  interval: 1s\n  rules:\n  - record: namespace:ei_scale_ratio:avg\n    \
         expr: avg by (namespace) (ei_scale_ratio)\n",
    )
    .unwrap();
    let config = format!(
        "rule_files: ['{}']\nscrape_configs:\n- job_name: exporter\n  scrape_interval: 1s\n  \
         static_configs: [{{targets: ['{}']}}]\n",
        rule_file.display(),
        target.addr
    );
    let secure = format!("127.0.0.1:{}", free_port());
    let rules_arg = rules.display().to_string();
    let ringtail = Ringtail::start(Some(&config), &["--adapter-config", &rules_arg, "--secure-listen", &secure]).await;
    let base = ringtail.url();

    let now = chrono::Utc::now().timestamp_millis();
    let samples: Vec<(i64, f64)> = (0..10).rev().map(|i| (now - i * 30_000, SCALE_RATIO)).collect();
    let depth: Vec<(i64, f64)> = samples.iter().map(|(t, _)| (*t, 7.0)).collect();
    let pod = [("namespace", "default"), ("pod", "web-0")];
    let timeseries = vec![
        series(&[&[("__name__", "ei_scale_ratio")][..], &pod[..]].concat(), &samples),
        series(&[&[("__name__", "ei_queue_depth")][..], &pod[..]].concat(), &depth),
    ];
    let response =
        post_write(&base, "application/x-protobuf", encode_body(&v1::WriteRequest { timeseries, metadata: vec![] }))
            .await;
    assert!(response.status().is_success(), "remote-write: {}", response.status());
    eventually("the exporter target is up", Duration::from_secs(60), || async {
        let body: serde_json::Value =
            client().get(format!("{base}/api/v1/targets")).send().await.ok()?.json().await.ok()?;
        let up = body["data"]["activeTargets"]
            .as_array()?
            .iter()
            .any(|t| t["scrapePool"] == "exporter" && t["health"] == "up");
        up.then_some(())
    })
    .await;

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-ui");
    std::fs::create_dir_all(&shots).unwrap();
    let profiles = tempfile::tempdir().unwrap();
    println!("web UI screenshots in {}", shots.display());

    let targets = view(&base, "targets", "targets", &shots, profiles.path());
    assert!(targets.contains(&format!("http://{}/metrics", target.addr)), "{targets}");
    assert!(targets.contains("<span class=\"badge up\">up</span>"), "{targets}");
    assert!(targets.contains(">exporter<"), "{targets}");

    let adapter = view(&base, "adapter", "adapter", &shots, profiles.path());
    assert!(adapter.contains(&rules_arg), "the rules' file is named: {adapter}");
    assert!(adapter.contains("<strong>ei_scale_ratio</strong></td><td>pods</td>"), "{adapter}");
    assert!(adapter.contains("/namespaces/default/pods/web-0/ei_scale_ratio"), "{adapter}");
    assert!(adapter.contains("no series match seriesQuery"), "{adapter}");
    assert!(adapter.contains("label container_name absent from ei_queue_depth"), "{adapter}");
    assert!(adapter.contains("2 problems in 2 of 3 rules"), "the summary counts the broken rules: {adapter}");

    let served = view(
        &base,
        "adapter?metric=ei_scale_ratio&resource=pods&namespace=default&name=web-0",
        "adapter-object-served",
        &shots,
        profiles.path(),
    );
    assert!(served.contains(&format!("Served value: <strong>{SCALE_RATIO}</strong>")), "{served}");
    let nothing = view(
        &base,
        "adapter?metric=ei_scale_ratio&resource=pods&namespace=default&name=web-9",
        "adapter-object-missing",
        &shots,
        profiles.path(),
    );
    assert!(nothing.contains("the query returns nothing for this object"), "{nothing}");
    let no_metric = view(
        &base,
        "adapter?metric=ei_queue_depth&resource=pods&namespace=default&name=web-0",
        "adapter-object-no-metric",
        &shots,
        profiles.path(),
    );
    assert!(no_metric.contains("label container_name absent from ei_queue_depth"), "{no_metric}");

    let table = view(&base, "query?expr=ei_scale_ratio&tab=table", "query-table", &shots, profiles.path());
    assert!(table.contains("ei_scale_ratio{namespace=\"default\", pod=\"web-0\"}"), "{table}");
    assert!(table.contains(&format!("<td>{SCALE_RATIO}</td>")), "{table}");
    let graph = view(&base, "query?expr=ei_scale_ratio&range=15m&tab=graph", "query-graph", &shots, profiles.path());
    let line = graph.find("class=\"series\"").map(|at| &graph[graph[..at].rfind("<path").unwrap_or(0)..at]);
    assert!(line.is_some_and(|p| p.contains("d=\"M") && p.contains('L')), "no graph line: {graph}");
    assert!(graph.contains("time (UTC)"), "{graph}");

    eventually("the recording rule has run", Duration::from_secs(60), || async {
        let body: serde_json::Value =
            client().get(format!("{base}/api/v1/rules")).send().await.ok()?.json().await.ok()?;
        (body["data"]["groups"][0]["rules"][0]["health"] == "ok").then_some(())
    })
    .await;
    let rules_view = view(&base, "rules", "rules", &shots, profiles.path());
    assert!(rules_view.contains("<strong>namespace:ei_scale_ratio:avg</strong>"), "{rules_view}");
    assert!(rules_view.contains("<span class=\"badge up\">ok</span>"), "{rules_view}");

    let before = store_series(&base).await;
    let store = view(&base, "store", "store", &shots, profiles.path());
    let after = store_series(&base).await;
    let shown: u64 = figure(&store, "Series")
        .and_then(|v| v.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("no series figure: {store}"));
    assert!((before..=after).contains(&shown), "series shown {shown}, store had {before}..={after}");
    assert!(shown >= 2, "{store}");
    assert!(!store.contains("null"), "a missing figure shows as null: {store}");
    assert!(figure(&store, "Ring fill").is_some_and(|v| v.ends_with('%')), "{store}");
    assert!(figure(&store, "Oldest sample").is_some_and(|v| v.ends_with("ago")), "{store}");
    drop(ringtail);
}
