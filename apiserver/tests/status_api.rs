//! `/api/v1/status/config`, `/api/v1/status/flags` and `/api/v1/status/runtimeinfo` next to
//! Prometheus 2.42's answers for the same scrape configuration: the same shapes and key sets,
//! the flags both have under the same names, secrets hidden by both. Skipped (saying so) when
//! Prometheus is not installed, unless `RINGTAIL_REQUIRE_PEERS=1`.

mod ingest_common;

use ingest_common::*;
use std::collections::BTreeSet;

async fn status(base: &str, what: &str) -> serde_json::Value {
    let response = client().get(format!("{base}/api/v1/status/{what}")).send().await.expect("request");
    assert_eq!(response.status(), 200, "{base} {what}");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "success", "{body}");
    body["data"].clone()
}

fn keys(value: &serde_json::Value) -> BTreeSet<String> {
    value.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_endpoints_as_prometheus() {
    if !peer::peers_installed("status_endpoints_as_prometheus", &[peer::PROMETHEUS]) {
        return;
    }
    let config = "global:\n  scrape_interval: 15s\n\
                  scrape_configs:\n- job_name: guarded\n  basic_auth: {username: someone, password: hunter2}\n  \
                  static_configs: [{targets: ['127.0.0.1:1']}]\n";
    let ringtail = Ringtail::start(Some(config), &["--retention", "2h"]).await;
    let prometheus = Prometheus::start(config).await;

    let (ours, theirs) = (status(&ringtail.url(), "runtimeinfo").await, status(&prometheus.url(), "runtimeinfo").await);
    assert_eq!(keys(&ours), keys(&theirs), "runtimeinfo keys");
    for key in keys(&theirs) {
        let kind = |v: &serde_json::Value| std::mem::discriminant(v);
        assert_eq!(kind(&ours[&key]), kind(&theirs[&key]), "runtimeinfo {key}: {} vs {}", ours[&key], theirs[&key]);
    }
    assert_eq!(ours["reloadConfigSuccess"], true);
    assert!(ours["GOMAXPROCS"].as_u64().is_some_and(|n| n >= 1));
    assert!(ours["storageRetention"].as_str().is_some_and(|r| r.starts_with("2h or ")), "{ours}");
    for time in ["startTime", "lastConfigTime"] {
        let text = ours[time].as_str().unwrap_or_default();
        assert!(humantime::parse_rfc3339(text).is_ok(), "{time} {text:?} is RFC 3339");
    }

    let (ours, theirs) = (status(&ringtail.url(), "config").await, status(&prometheus.url(), "config").await);
    assert_eq!(keys(&ours), keys(&theirs), "config keys");
    for (who, body) in [("Ringtail", &ours), ("Prometheus", &theirs)] {
        let yaml = body["yaml"].as_str().unwrap_or_default();
        let parsed: serde_yaml::Value = serde_yaml::from_str(yaml).expect("the config is YAML");
        assert_eq!(parsed["scrape_configs"][0]["job_name"].as_str(), Some("guarded"), "{who}: {yaml}");
        assert_eq!(parsed["scrape_configs"][0]["basic_auth"]["password"].as_str(), Some("<secret>"), "{who}: {yaml}");
        assert!(!yaml.contains("hunter2"), "{who} shows the password");
    }

    let (ours, theirs) = (status(&ringtail.url(), "flags").await, status(&prometheus.url(), "flags").await);
    assert!(ours.as_object().is_some_and(|o| o.values().all(|v| v.is_string())), "flag values are strings");
    let shared: BTreeSet<String> = keys(&ours).intersection(&keys(&theirs)).cloned().collect();
    for name in [
        "config.file",
        "storage.tsdb.path",
        "storage.tsdb.retention.time",
        "storage.tsdb.retention.size",
        "web.listen-address",
        "web.max-connections",
        "web.read-timeout",
        "web.enable-lifecycle",
        "web.enable-admin-api",
        "web.config.file",
        "query.lookback-delta",
        "query.max-samples",
        "query.timeout",
    ] {
        assert!(shared.contains(name), "{name} missing: ours {:?}", keys(&ours));
    }
    // Same settings, same spelling: the defaults both share.
    for name in ["query.lookback-delta", "web.enable-lifecycle", "web.config.file"] {
        assert_eq!(ours[name], theirs[name], "{name}");
    }
    assert_eq!(ours["storage.tsdb.retention.time"], "2h");
    assert_eq!(ours["web.listen-address"], ringtail.addr.to_string());
}
