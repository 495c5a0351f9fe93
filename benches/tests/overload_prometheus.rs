//! Overload with a real sender, short: a real Prometheus 2.42 remote-writes past what a
//! CPU-confined Ringtail with a small in-flight budget takes. Ringtail must answer 503 (never
//! 429), keep `/-/ready`, PromQL and the custom metrics API answering, and once the load stops
//! hold every sample Prometheus holds. The `overload_soak` program runs the same harness longer;
//! its figures (latencies, peak RSS) are under `benches/results/`, none is asserted here.

mod support;

use ringtail_benches::overload::{self, SoakOptions};
use support::{peer_installed, ringtail_binary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_pushing_past_a_throttled_ringtail_gets_503_and_loses_nothing() {
    if !peer_installed(
        "prometheus_pushing_past_a_throttled_ringtail_gets_503_and_loses_nothing",
        "/usr/bin/prometheus",
        "prometheus",
    ) {
        return;
    }
    std::env::set_var("RINGTAIL_BIN", ringtail_binary());
    let options = SoakOptions {
        targets: 20,
        series_per_target: 500,
        // 2 % of one CPU and a budget smaller than one request: Prometheus's 32 shards queue past
        // the saturation wait, so Ringtail must refuse some requests.
        cpu_percent: 2,
        cpu_period_ms: 100,
        inflight_bytes: 64 << 10,
        load_seconds: 40,
        shards: 32,
        samples_per_send: 2000,
        drain_seconds: 300,
        ringtail_args: vec![],
    };
    let report = overload::run(options).await.unwrap_or_else(|e| panic!("overload soak failed: {e}"));
    eprintln!("{}", report.markdown());
    for (probe, stats) in [
        ("ready", &report.probes.ready),
        ("query", &report.probes.query),
        ("custom metrics", &report.probes.custom_metrics),
    ] {
        assert!(stats.failures.is_empty(), "{probe} requests failed during the overload: {:?}", stats.failures);
    }
    assert!(
        report.codes_during_load.get(&503).copied().unwrap_or(0.0) > 0.0,
        "Ringtail was never overloaded ({}): no 503",
        report.confinement
    );
    assert_eq!(report.codes_total.get(&429).copied().unwrap_or(0.0), 0.0, "answered 429");
    assert_eq!(report.prometheus_failed, 0.0);
    assert_eq!(report.prometheus_dropped, 0.0);
    assert!(report.series_compared > 20 * 500, "{} series compared", report.series_compared);
    assert_eq!(report.samples_lost, 0, "first lost: {:?}", report.first_lost);
}
