//! Real peer: vmagent scrapes a test target and remote-writes the same stream to Ringtail and to
//! a VictoriaMetrics single-node (vmagent has no query API of its own; VictoriaMetrics' export
//! shows exactly what vmagent sent). Every sample VictoriaMetrics holds must be in Ringtail with
//! the identical timestamp and value. Ringtail is paused (SIGSTOP, as a throttled or overloaded
//! process is) three times for 4 s meanwhile: vmagent's four queues then deliver the blocks it
//! held back in parallel, in any order, and the late ones must be stored too. Skipped (saying so)
//! when either is not installed, unless `RINGTAIL_REQUIRE_PEERS=1`.

mod ingest_common;

use ingest_common::*;
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vmagent_sample_arrives_identical() {
    if !peer::peers_installed("every_vmagent_sample_arrives_identical", &[peer::VICTORIA_METRICS, peer::VMAGENT]) {
        return;
    }
    let target = TestTarget::start().await;
    let ringtail = Ringtail::start(Some("scrape_configs: []\n"), &[]).await;
    let dir = tempfile::tempdir().unwrap();

    let vm_port = free_port();
    let mut vm_command = Command::new(peer::VICTORIA_METRICS.binary);
    vm_command
        .arg(format!("-storageDataPath={}", dir.path().join("vm").display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{vm_port}"))
        .arg("-retentionPeriod=10y")
        .arg("-search.disableCache");
    let _vm = ChildGuard::spawn("victoria-metrics", &mut vm_command, &dir.path().join("vm.log"));
    let vm_url = format!("http://127.0.0.1:{vm_port}");
    wait_http_ok(&format!("{vm_url}/health"), START_TIMEOUT).await;

    let scrape_config = dir.path().join("scrape.yml");
    std::fs::write(
        &scrape_config,
        format!("global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: demo\n    static_configs: [{{targets: ['{}']}}]\n", target.addr),
    )
    .unwrap();
    let agent_port = free_port();
    let mut agent_command = Command::new(peer::VMAGENT.binary);
    agent_command
        .arg(format!("-promscrape.config={}", scrape_config.display()))
        .arg(format!("-remoteWrite.url={}/api/v1/write", ringtail.url()))
        .arg(format!("-remoteWrite.url={vm_url}/api/v1/write"))
        .arg(format!("-httpListenAddr=127.0.0.1:{agent_port}"))
        .arg(format!("-remoteWrite.tmpDataPath={}", dir.path().join("vmagent").display()))
        .arg("-remoteWrite.flushInterval=1s");
    let _agent = ChildGuard::spawn("vmagent", &mut agent_command, &dir.path().join("vmagent.log"));

    let client = client();
    let vm_export = || async {
        let text = client
            .get(format!("{vm_url}/api/v1/export"))
            .query(&[("match[]", "{job=\"demo\"}")])
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let series: Vec<ExportedSeries> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        Some(series)
    };
    eventually("Ringtail to get vmagent's first scrapes", Duration::from_secs(60), || async {
        let exported = ringtail.export("{job=\"demo\"}").await;
        exported
            .iter()
            .any(|s| s.metric.get("__name__").map(String::as_str) == Some("up") && s.timestamps.len() >= 2)
            .then_some(())
    })
    .await;
    let signal = |name: &str| {
        let status = Command::new("kill").args([name, &ringtail.process.pid().to_string()]).status().unwrap();
        assert!(status.success(), "kill {name} of Ringtail's pid");
    };
    for _ in 0..3 {
        signal("-STOP");
        tokio::time::sleep(Duration::from_secs(4)).await;
        signal("-CONT");
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let expected = eventually("8 scrapes in VictoriaMetrics", Duration::from_secs(120), || async {
        let series = vm_export().await?;
        let up = series.iter().find(|s| s.metric.get("__name__").map(String::as_str) == Some("up"))?;
        (up.timestamps.len() >= 8).then_some(series)
    })
    .await;
    let expected: Vec<_> = expected
        .iter()
        .map(|s| (s.metric.clone(), s.timestamps.iter().copied().zip(s.floats()).collect::<Vec<_>>()))
        .collect();
    assert!(expected.len() >= 9, "target series plus up: {}", expected.len());
    wait_until_ringtail_holds(&ringtail, "{job=\"demo\"}", &expected).await;
}
