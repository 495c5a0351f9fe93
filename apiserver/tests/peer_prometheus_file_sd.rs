//! Real peer: Ringtail and Prometheus 2.42 run the same `file_sd_configs` over the same files.
//! Their `/api/v1/targets` (discovered labels and labels) and their `up` series must agree, also
//! after a file is edited, and after it is broken (both keep the file's previous targets).
//! Skipped (saying so) when Prometheus is not installed, unless `RINGTAIL_REQUIRE_PEERS=1`.

mod ingest_common;

use ingest_common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

type LabelSet = BTreeMap<String, String>;

/// `(scrapeUrl, discoveredLabels, labels)` of every active target, sorted.
async fn active_targets(base: &str) -> Vec<(String, LabelSet, LabelSet)> {
    let body: serde_json::Value =
        client().get(format!("{base}/api/v1/targets")).send().await.expect("targets").json().await.expect("json");
    let labels = |v: &serde_json::Value| -> LabelSet { serde_json::from_value(v.clone()).unwrap_or_default() };
    let mut out: Vec<(String, LabelSet, LabelSet)> = body["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            (
                t["scrapeUrl"].as_str().unwrap_or_default().to_string(),
                labels(&t["discoveredLabels"]),
                labels(&t["labels"]),
            )
        })
        .collect();
    out.sort();
    out
}

/// Label sets (without `__name__`) of the `up{job="files"} == 1` series of the current
/// `targets`, through the server's query API (a removed target's `up` lingers until its
/// staleness marker, which Prometheus writes a little later).
async fn up_series(base: &str, targets: &[(String, LabelSet, LabelSet)]) -> BTreeSet<LabelSet> {
    let body: serde_json::Value = client()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", "up{job=\"files\"} == 1")])
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("json");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let mut labels: LabelSet = serde_json::from_value(s["metric"].clone()).unwrap_or_default();
            labels.remove("__name__");
            labels
        })
        .filter(|labels| targets.iter().any(|t| &t.2 == labels))
        .collect()
}

/// Waits until Prometheus shows active targets satisfying `ready`, each with `up` 1, then until
/// Ringtail shows the same targets (discovered labels and labels) and the same `up` series.
async fn both_agree(
    what: &str,
    ringtail: &Ringtail,
    prometheus: &Prometheus,
    ready: impl Fn(&[(String, LabelSet, LabelSet)]) -> bool,
) -> Vec<(String, LabelSet, LabelSet)> {
    let (theirs, their_up) = eventually(&format!("Prometheus: {what}"), Duration::from_secs(60), || async {
        let targets = active_targets(&prometheus.url()).await;
        let up = up_series(&prometheus.url(), &targets).await;
        (ready(&targets) && up.len() == targets.len()).then_some((targets, up))
    })
    .await;
    eventually(&format!("Ringtail: {what}"), Duration::from_secs(60), || async {
        let targets = active_targets(&ringtail.url()).await;
        (targets == theirs && up_series(&ringtail.url(), &targets).await == their_up).then_some(targets)
    })
    .await
}

/// Replaces `path`'s contents at once (a reader never sees a truncated file: an empty file is a
/// valid, empty target list).
fn replace_file(path: &std::path::Path, contents: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents).expect("writing the new file");
    std::fs::rename(&temporary, path).expect("renaming it into place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_targets_follow_file_edits_as_prometheus() {
    if !peer::peers_installed("file_sd_targets_follow_file_edits_as_prometheus", &[peer::PROMETHEUS]) {
        return;
    }
    let (a, b) = (TestTarget::start().await, TestTarget::start().await);
    let sd = tempfile::tempdir().expect("temp dir");
    let json = sd.path().join("web.json");
    let yaml = sd.path().join("db.yml");
    std::fs::write(&json, format!(r#"[{{"targets": ["{}"], "labels": {{"team": "web"}}}}]"#, a.addr)).expect("json");
    std::fs::write(&yaml, format!("- targets: ['{}']\n  labels: {{env: prod}}\n", b.addr)).expect("yaml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n- job_name: files\n  file_sd_configs:\n  - files: ['{dir}/*.json']\n    refresh_interval: 3s\n  - files: ['{dir}/*.yml']\n\
         \x20 relabel_configs:\n  - {{source_labels: [__meta_filepath], regex: '.*/(.*)', target_label: sd_file}}\n",
        dir = sd.path().display()
    );
    // The json entry's short refresh_interval also covers a Prometheus whose inotify watch cannot
    // be added (a shared machine out of watches); the yml entry relies on the watch / polling.
    let ringtail = Ringtail::start(Some(&config), &[]).await;
    let prometheus = Prometheus::start(&config).await;

    let first = both_agree("both files' targets", &ringtail, &prometheus, |t| t.len() == 2).await;
    let (_, discovered, labels) = first.iter().find(|t| t.2.contains_key("team")).expect("the json target");
    assert_eq!(discovered.get("__meta_filepath").map(String::as_str), json.to_str());
    assert_eq!(labels.get("sd_file").map(String::as_str), Some("web.json"));

    // Edit: the json file gains a second group (target b under another label).
    replace_file(
        &json,
        &format!(
            r#"[{{"targets": ["{}"], "labels": {{"team": "web"}}}}, {{"targets": ["{}"], "labels": {{"team": "api"}}}}]"#,
            a.addr, b.addr
        ),
    );
    both_agree("the edited json file", &ringtail, &prometheus, |t| t.len() == 3).await;

    // Broken: the yaml file's previous target stays; a removed file takes its targets away.
    replace_file(&yaml, "- targets: ['unterminated\n");
    eventually("both to log the bad file", Duration::from_secs(60), || async {
        let theirs = std::fs::read_to_string(prometheus.dir.path().join("prometheus.log")).unwrap_or_default();
        (ringtail.log().contains("file_sd: error reading file") && theirs.contains("Error reading file")).then_some(())
    })
    .await;
    both_agree("the broken yaml file", &ringtail, &prometheus, |t| t.len() == 3).await;
    std::fs::remove_file(&json).expect("removing json");
    let last = both_agree("the removed json file", &ringtail, &prometheus, |t| t.len() == 1).await;
    assert_eq!(last[0].2.get("env").map(String::as_str), Some("prod"));
}

/// Ringtail alone: a relative `files` pattern is relative to the config file's directory, and a
/// file appearing after start is picked up by polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_file_sd_paths_follow_the_config_file() {
    let target = TestTarget::start().await;
    let config = "scrape_configs:\n- job_name: files\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  \
                  file_sd_configs: [{files: ['targets/*.yaml']}]\n";
    let ringtail = Ringtail::start(Some(config), &[]).await;
    assert!(active_targets(&ringtail.url()).await.is_empty());
    let dir = ringtail.dir.path().join("targets");
    std::fs::create_dir(&dir).expect("targets dir");
    replace_file(&dir.join("a.yaml"), &format!("- targets: ['{}']\n", target.addr));
    let targets = eventually("the new file's target", Duration::from_secs(30), || async {
        let targets = active_targets(&ringtail.url()).await;
        (!targets.is_empty()).then_some(targets)
    })
    .await;
    assert_eq!(targets.len(), 1);
    let path = dir.join("a.yaml");
    assert_eq!(targets[0].1.get("__meta_filepath").map(String::as_str), path.to_str());
}

/// `http_sd_configs`: one endpoint answers both systems. Its targets, an edit, a failing answer
/// (both keep the previous targets) and an empty list must show the same in both; both must send
/// the same refresh-interval header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sd_targets_follow_the_endpoint_as_prometheus() {
    if !peer::peers_installed("http_sd_targets_follow_the_endpoint_as_prometheus", &[peer::PROMETHEUS]) {
        return;
    }
    use std::sync::{Arc, Mutex};
    let (a, b) = (TestTarget::start().await, TestTarget::start().await);
    // (status, body) the endpoint answers; the refresh headers it was sent, per asker.
    let answer =
        Arc::new(Mutex::new((200u16, format!(r#"[{{"targets": ["{}"], "labels": {{"team": "web"}}}}]"#, a.addr))));
    let asked: Arc<Mutex<BTreeSet<(String, String)>>> = Arc::default();
    let (answer_for_endpoint, asked_by_endpoint) = (answer.clone(), asked.clone());
    let endpoint = axum::Router::new().route(
        "/targets",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let (answer, asked) = (answer_for_endpoint.clone(), asked_by_endpoint.clone());
            async move {
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let product = header("user-agent").split('/').next().unwrap_or("").to_string();
                asked.lock().unwrap().insert((product, header("x-prometheus-refresh-interval-seconds")));
                let (status, body) = answer.lock().unwrap().clone();
                let status = axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK);
                (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint_addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, endpoint).await;
    });
    let url = format!("http://{endpoint_addr}/targets");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n- job_name: files\n  http_sd_configs:\n  - url: '{url}'\n    refresh_interval: 2s\n\
         \x20 relabel_configs:\n  - {{source_labels: [__meta_url], target_label: sd_url}}\n"
    );
    let ringtail = Ringtail::start(Some(&config), &[]).await;
    let prometheus = Prometheus::start(&config).await;

    let first = both_agree("the endpoint's target", &ringtail, &prometheus, |t| t.len() == 1).await;
    assert_eq!(first[0].1.get("__meta_url"), Some(&url));
    assert_eq!(first[0].2.get("sd_url"), Some(&url));

    *answer.lock().unwrap() = (
        200,
        format!(
            r#"[{{"targets": ["{}"], "labels": {{"team": "web"}}}}, {{"targets": ["{}"], "labels": {{"team": "api"}}}}]"#,
            a.addr, b.addr
        ),
    );
    both_agree("the edited answer", &ringtail, &prometheus, |t| t.len() == 2).await;

    // A failing endpoint: both keep the last good answer's targets.
    *answer.lock().unwrap() = (500, "{\"error\": \"down\"}".to_string());
    eventually("both to log the failing answer", Duration::from_secs(60), || async {
        let theirs = std::fs::read_to_string(prometheus.dir.path().join("prometheus.log")).unwrap_or_default();
        (ringtail.log().contains("http_sd: the answer is not used") && theirs.contains("500")).then_some(())
    })
    .await;
    both_agree("the failing endpoint", &ringtail, &prometheus, |t| t.len() == 2).await;

    *answer.lock().unwrap() = (200, "[]".to_string());
    both_agree("the empty answer", &ringtail, &prometheus, |t| t.is_empty()).await;
    let asked = asked.lock().unwrap().clone();
    let header_of =
        |product: &str| asked.iter().filter(|(p, _)| p == product).map(|(_, h)| h.clone()).collect::<Vec<_>>();
    assert_eq!(header_of("Ringtail"), header_of("Prometheus"), "{asked:?}");
    assert_eq!(header_of("Ringtail"), vec!["2".to_string()]);
    server.abort();
}
