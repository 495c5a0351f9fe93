//! Reloading the `--config` file without a restart, through the real binary: SIGHUP under load
//! (an unchanged target keeps being scraped with no gap, a removed one ends with a staleness
//! marker, a new one starts), a broken file refused with the old configuration kept and
//! `ringtail_config_last_reload_successful` at 0, and `POST /-/reload` behind
//! `--web.enable-lifecycle`.

mod ingest_common;

use ingest_common::*;
use std::time::Duration;

fn config(jobs: &[(&str, std::net::SocketAddr)]) -> String {
    let mut text = String::from("scrape_configs:\n");
    for (name, addr) in jobs {
        text.push_str(&format!(
            "- job_name: {name}\n  scrape_interval: 1s\n  static_configs: [{{targets: ['{addr}']}}]\n"
        ));
    }
    text
}

fn config_path(ringtail: &Ringtail) -> std::path::PathBuf {
    ringtail.dir.path().join("ringtail.yaml")
}

/// Replaces the config file as a ConfigMap update does: a new file renamed over the old one.
fn write_config(ringtail: &Ringtail, text: &str) {
    let staged = ringtail.dir.path().join("ringtail.yaml.new");
    std::fs::write(&staged, text).expect("writing the new config");
    std::fs::rename(&staged, config_path(ringtail)).expect("replacing the config");
}

fn hangup(ringtail: &Ringtail) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &ringtail.process.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

async fn self_metric(ringtail: &Ringtail, name: &str) -> Option<f64> {
    let text = client().get(format!("{}/metrics", ringtail.url())).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn query_range(ringtail: &Ringtail, query: &str, start: f64, end: f64) -> Vec<f64> {
    let body: serde_json::Value = client()
        .get(format!("{}/api/v1/query_range", ringtail.url()))
        .query(&[
            ("query", query.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", "1".to_string()),
        ])
        .send()
        .await
        .expect("query_range")
        .json()
        .await
        .expect("json");
    let result = &body["data"]["result"];
    assert_eq!(result.as_array().map(Vec::len), Some(1), "{body}");
    result[0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|pair| pair[1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_changed_scrape_config_without_a_gap() {
    let (a, b, c) = (TestTarget::start().await, TestTarget::start().await, TestTarget::start().await);
    let ringtail = Ringtail::start(Some(&config(&[("a", a.addr), ("c", c.addr)])), &[]).await;
    eventually("a few scrapes of a and c", Duration::from_secs(60), || async {
        let a_up = ringtail.export("up{job=\"a\"}").await;
        let c_up = ringtail.export("up{job=\"c\"}").await;
        (a_up.first()?.timestamps.len() >= 4 && !c_up.is_empty()).then_some(())
    })
    .await;
    assert_eq!(self_metric(&ringtail, "ringtail_config_last_reload_successful").await, Some(1.0));

    write_config(&ringtail, &config(&[("a", a.addr), ("b", b.addr)]));
    let reloaded_at = tsdb::now_ms() as f64 / 1000.0;
    hangup(&ringtail);
    eventually("job b to be scraped", Duration::from_secs(30), || async {
        let up = ringtail.export("up{job=\"b\"}").await;
        (up.first()?.floats().last() == Some(&1.0)).then_some(())
    })
    .await;
    eventually("job c's series to end with a staleness marker", Duration::from_secs(30), || async {
        let up = ringtail.export("up{job=\"c\"}").await;
        up.first()?.floats().last().is_some_and(|v| tsdb::is_stale_nan(*v)).then_some(())
    })
    .await;
    // Unchanged job a: a sample in every 2 s window around the reload, and no staleness marker.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let counts =
        query_range(&ringtail, "count_over_time(up{job=\"a\"}[2s])", reloaded_at - 4.0, reloaded_at + 3.0).await;
    assert!(counts.len() >= 7 && counts.iter().all(|n| *n >= 1.0), "a gap in job a's scrapes: {counts:?}");
    let a_values = ringtail.export("up{job=\"a\"}").await[0].floats();
    assert!(a_values.iter().all(|v| *v == 1.0), "job a was never marked stale: {a_values:?}");

    // A broken file is refused: the old jobs keep running and the gauge says so.
    write_config(&ringtail, "scrape_configs:\n- job_name: a\n  scrape_interval: soon\n");
    eventually("the poll to refuse the broken file", Duration::from_secs(30), || async {
        (self_metric(&ringtail, "ringtail_config_last_reload_successful").await == Some(0.0)).then_some(())
    })
    .await;
    let before = ringtail.export("up{job=\"b\"}").await[0].timestamps.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(ringtail.export("up{job=\"b\"}").await[0].timestamps.len() > before, "job b still scraped");
    assert!(ringtail.log().contains("new configuration refused"), "{}", ringtail.log());

    let response = client().post(format!("{}/-/reload", ringtail.url())).send().await.expect("post");
    assert_eq!(response.status().as_u16(), 403, "no --web.enable-lifecycle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_with_the_lifecycle_flag() {
    let (a, b) = (TestTarget::start().await, TestTarget::start().await);
    let ringtail =
        Ringtail::start(Some(&config(&[("a", a.addr)])), &["--web.enable-lifecycle", "--log.format=logfmt"]).await;
    write_config(&ringtail, "scrape_configs: [{job_name: a, static_configs: [{targets: [x]}]}, {job_name: a}]\n");
    let response = client().post(format!("{}/-/reload", ringtail.url())).send().await.expect("post");
    assert_eq!(response.status().as_u16(), 500);
    let message = response.text().await.unwrap_or_default();
    assert!(message.contains("failed to reload config") && message.contains("twice"), "{message}");
    // The 5xx is logged once with its cause, as a logfmt line.
    let log = ringtail.log();
    let logged: Vec<&str> = log.lines().filter(|l| l.contains("msg=\"request failed\"")).collect();
    assert_eq!(logged.len(), 1, "{log}");
    assert!(
        logged[0].starts_with("ts=")
            && logged[0].contains(" level=warn ")
            && logged[0].contains(" path=/-/reload ")
            && logged[0].contains(" status=500 ")
            && logged[0].contains("cause=\"failed to reload config:"),
        "{}",
        logged[0]
    );
    assert_eq!(self_metric(&ringtail, "ringtail_config_last_reload_successful").await, Some(0.0));

    write_config(&ringtail, &config(&[("a", a.addr), ("b", b.addr)]));
    let response = client().post(format!("{}/-/reload", ringtail.url())).send().await.expect("post");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(self_metric(&ringtail, "ringtail_config_last_reload_successful").await, Some(1.0));
    eventually("job b to be scraped", Duration::from_secs(30), || async {
        let up = ringtail.export("up{job=\"b\"}").await;
        (up.first()?.floats().last() == Some(&1.0)).then_some(())
    })
    .await;
}
