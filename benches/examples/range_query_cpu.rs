//! One PromQL range query run over and over in-process against the real store, to profile and
//! A/B the evaluator without HTTP: `cargo run --release -p ringtail-benches --example
//! range_query_cpu -- --pods 1000 'avg by (pod) (http_requests_in_flight{namespace="sel"})'`.
//!
//! The store holds 10 namespaces (`sel`, `ns1`…`ns9`) of `--pods` pods, each pod 30 series: 10
//! `http_requests_in_flight` gauges (by `handler`), 10 `http_requests_total` counters (by `code`)
//! and the 10 `http_request_duration_seconds_bucket` buckets of one histogram, 65 minutes at 15 s.
//! The query runs as a 1 h range at 15 s for `--seconds`; the median and fastest run are printed.
//! Pin it to one core (`taskset -c 0`) to read CPU per query. With `--keep-store DIR` it writes
//! the store and stops, so a `ringtail serve` on it can be timed with the served path (HTTP,
//! JSON) included.

/// The allocator the `ringtail` binary runs with, so allocation costs here are the served ones.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::Parser;
use query::{Engine, EngineOptions, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsdb::{Db, Options, Sample, SeriesSamples};

const SCRAPE_MS: i64 = 15_000;
const STEPS: i64 = 65 * 4;
const BUCKETS: [&str; 10] = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];

#[derive(Parser)]
struct Args {
    /// Pods per namespace (the query selects one namespace's).
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// How long to run the query for.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Write the store to this directory and stop instead of querying it, for a server to open
    /// (`ringtail serve --data-dir DIR --storage-size 2GiB`; the data starts at time 0). The
    /// query is then not run.
    #[arg(long)]
    keep_store: Option<std::path::PathBuf>,
    /// The PromQL expression.
    query: String,
}

/// Labels and samples of one generated series.
type OwnedSeries = (Vec<(String, String)>, Vec<Sample>);

/// One namespace's series.
fn namespace_series(namespace: &str, pods: usize) -> Vec<OwnedSeries> {
    let mut out = Vec::with_capacity(pods * 30);
    for p in 0..pods {
        let pod = format!("web-7d9f8c6b5-{p:05}");
        let labels = |name: &str, extra: (&str, String)| {
            let mut labels = vec![
                ("__name__".to_string(), name.to_string()),
                ("job".to_string(), "kubernetes-pods".to_string()),
                ("namespace".to_string(), namespace.to_string()),
                ("pod".to_string(), pod.clone()),
                (extra.0.to_string(), extra.1),
            ];
            labels.sort();
            labels
        };
        for h in 0..10i64 {
            let series = |f: &dyn Fn(i64) -> f64| (0..STEPS).map(|k| Sample::new(k * SCRAPE_MS, f(k))).collect();
            let gauge = move |k: i64| ((k * 7 + h * 3 + p as i64) % 13) as f64;
            let counter = move |k: i64| (k * (h + 1)) as f64;
            out.push((labels("http_requests_in_flight", ("handler", format!("/h{h}"))), series(&gauge)));
            out.push((labels("http_requests_total", ("code", format!("{}", 200 + h))), series(&counter)));
            let bucket = ("le", BUCKETS[h as usize].to_string());
            out.push((labels("http_request_duration_seconds_bucket", bucket), series(&counter)));
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut options = Options::new(args.keep_store.as_deref().unwrap_or(dir.path()));
    options.storage_size_bytes = 2 << 30;
    let db = Arc::new(Db::open(options)?);
    for namespace in std::iter::once("sel".to_string()).chain((1..10).map(|n| format!("ns{n}"))) {
        let owned = namespace_series(&namespace, args.pods);
        for chunk in owned.chunks(1000) {
            let pairs: Vec<Vec<(&str, &str)>> =
                chunk.iter().map(|(l, _)| l.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()).collect();
            let batch: Vec<SeriesSamples<'_>> =
                pairs.iter().zip(chunk).map(|(l, (_, s))| SeriesSamples::labels(l, s)).collect();
            db.append(&batch)?;
        }
    }
    if args.keep_store.is_some() {
        db.flush()?;
        return Ok(());
    }
    let engine = Engine::new(db, EngineOptions::default());
    let end = (STEPS - 1) * SCRAPE_MS;
    let started = Instant::now();
    let mut times = Vec::new();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        let run = Instant::now();
        let value = engine.range(&args.query, end - 3_600_000, end, SCRAPE_MS).context("the query failed")?;
        times.push(run.elapsed());
        if times.len() == 1 {
            if let Value::Matrix(series) = &value {
                println!("{} series", series.len());
            }
        }
    }
    times.sort();
    let (Some(median), Some(fastest)) = (times.get(times.len() / 2), times.first()) else {
        anyhow::bail!("no run finished in {} s", args.seconds);
    };
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    println!("runs {} median {:.2} ms fastest {:.2} ms", times.len(), ms(median), ms(fastest));
    Ok(())
}
