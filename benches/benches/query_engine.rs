//! PromQL evaluation in-process over the real store: the issue's two workloads over 10 000 series
//! (`sum by (pod) (rate(...[2m]))` and `histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))`),
//! as an instant query and as a 1 h range query at 15 s step. Data: fixed pattern, 65 minutes at
//! 15 s. Each measured query's result is checked before timing.
//!
//! `adapter_pods_selector` is the query the metrics adapter runs for an HPA's Pods metric over
//! 1 000 pods (`sum(bench_ratio{namespace="bench"}) by (pod)` with the label selector `app="web"`
//! as an extra matcher, as the adapter passes it), over 2 000 seven-label series.

/// The allocator the `ringtail` binary runs with, so allocation costs here are the served ones.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use query::{Engine, EngineOptions, Value};
use std::sync::Arc;
use tsdb::{Db, Options, Sample, SeriesSamples};

const SERIES: usize = 10_000;
const SCRAPE_MS: i64 = 15_000;
const STEPS: i64 = 65 * 4;

/// Labels and samples of one generated series.
type OwnedSeries = (Vec<(String, String)>, Vec<Sample>);

fn load(db: &Db) {
    let samples_for =
        |slope: f64| -> Vec<Sample> { (0..STEPS).map(|k| Sample::new(k * SCRAPE_MS, k as f64 * slope)).collect() };
    let mut owned: Vec<OwnedSeries> = Vec::with_capacity(2 * SERIES);
    for i in 0..SERIES {
        owned.push((
            vec![
                ("__name__".into(), "http_requests_total".into()),
                ("instance".into(), format!("i-{i}")),
                ("pod".into(), format!("pod-{}", i % 100)),
            ],
            samples_for(1.0 + (i % 7) as f64),
        ));
    }
    let bounds = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
    for h in 0..SERIES / bounds.len() {
        for (b, le) in bounds.iter().enumerate() {
            owned.push((
                vec![
                    ("__name__".into(), "x_bucket".into()),
                    ("instance".into(), format!("h-{h}")),
                    ("le".into(), le.to_string()),
                ],
                samples_for(1.0 + b as f64 + (h % 3) as f64),
            ));
        }
    }
    let pairs: Vec<Vec<(&str, &str)>> =
        owned.iter().map(|(l, _)| l.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()).collect();
    for chunk in pairs.iter().zip(&owned).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<SeriesSamples<'_>> = chunk.iter().map(|(l, (_, s))| SeriesSamples::labels(l, s)).collect();
        db.append(&batch).expect("append");
    }
}

fn result_len(v: &Value) -> usize {
    match v {
        Value::Vector(v) => v.len(),
        Value::Matrix(m) => m.len(),
        _ => 0,
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = Options::new(dir.path());
    options.storage_size_bytes = 512 << 20;
    let db = Arc::new(Db::open(options).expect("open"));
    load(&db);
    let engine = Engine::new(db, EngineOptions::default());
    let end = (STEPS - 1) * SCRAPE_MS;
    let mut group = c.benchmark_group("query_engine");
    group.sample_size(10);
    group.throughput(Throughput::Elements(SERIES as u64));
    for (name, query, want) in [
        ("rate_sum_by_pod", "sum by (pod) (rate(http_requests_total[2m]))", 100),
        ("histogram_quantile", "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))", 1),
    ] {
        let got = result_len(&engine.instant(query, end).expect("instant"));
        assert_eq!(got, want, "{query} instant");
        group.bench_function(format!("{name}/instant"), |b| b.iter(|| engine.instant(query, end).expect("instant")));
        let got = result_len(&engine.range(query, end - 3_600_000, end, SCRAPE_MS).expect("range"));
        assert_eq!(got, want, "{query} range");
        group.bench_function(format!("{name}/range_1h_15s"), |b| {
            b.iter(|| engine.range(query, end - 3_600_000, end, SCRAPE_MS).expect("range"))
        });
    }
    group.finish();
}

/// Pods of the adapter case carrying `app="web"` (as many again carry `app="other"`).
const ADAPTER_PODS: usize = 1_000;

fn bench_adapter_query(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = Options::new(dir.path());
    options.storage_size_bytes = 64 << 20;
    let db = Arc::new(Db::open(options).expect("open"));
    let mut owned: Vec<Vec<(String, String)>> = Vec::with_capacity(2 * ADAPTER_PODS);
    for app in ["web", "other"] {
        for i in 0..ADAPTER_PODS {
            owned.push(vec![
                ("__name__".into(), "bench_ratio".into()),
                ("app".into(), app.into()),
                ("container".into(), app.into()),
                ("instance".into(), format!("10.200.{}.{}:8080", i >> 8, i & 0xff)),
                ("job".into(), "kubernetes-pods".into()),
                ("namespace".into(), "bench".into()),
                ("node".into(), format!("node-{:03}", i % 50)),
                ("pod".into(), format!("{app}-{i}")),
            ]);
        }
    }
    let samples: Vec<Sample> = (0..8).map(|k| Sample::new(k * SCRAPE_MS, 1.0 + k as f64 / 10.0)).collect();
    let pairs: Vec<Vec<(&str, &str)>> =
        owned.iter().map(|l| l.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()).collect();
    let batch: Vec<SeriesSamples<'_>> = pairs.iter().map(|l| SeriesSamples::labels(l, &samples)).collect();
    db.append(&batch).expect("append");
    let engine = Engine::new(db, EngineOptions::default());
    let query = r#"sum(bench_ratio{namespace="bench"}) by (pod)"#;
    let selector = [tsdb::Matcher::equal("app", "web")];
    let at = 7 * SCRAPE_MS;
    let got = result_len(&engine.instant_with_matchers(query, at, &selector).expect("instant"));
    assert_eq!(got, ADAPTER_PODS, "{query} with app=web");
    let mut group = c.benchmark_group("query_engine");
    group.throughput(Throughput::Elements(ADAPTER_PODS as u64));
    group.bench_function("adapter_pods_selector/instant", |b| {
        b.iter(|| engine.instant_with_matchers(query, at, &selector).expect("instant"))
    });
    group.finish();
}

criterion_group!(benches, bench, bench_adapter_query);
criterion_main!(benches);
