//! Resident memory per active series beyond the mapped sample data: creates 100k series with
//! Kubernetes-like labels, appends a few samples to each, and prints the growth of anonymous RSS
//! (heap: index, series state) and file-backed RSS (mapped head slots) per series, from
//! `/proc/self/status`. A measurement program, not a timed benchmark.

use tsdb::{Db, Options, Sample, SeriesSamples};

const SERIES: usize = 100_000;

/// (RssAnon, RssFile) in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("RssAnon:"), field("RssFile:"))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes every bench binary
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::open(Options::new(dir.path())).expect("open");
    let (anon_before, file_before) = rss();
    let mut ids = Vec::with_capacity(SERIES);
    for i in 0..SERIES {
        let pod = format!("api-{:08x}-{:05}", i / 7, i % 100_000);
        let instance = format!("10.{}.{}.{}:8080", i / 65536, (i / 256) % 256, i % 256);
        let namespace = format!("team-{}", i % 50);
        let labels = [
            ("__name__", "http_requests_total"),
            ("job", "api"),
            ("namespace", namespace.as_str()),
            ("pod", pod.as_str()),
            ("instance", instance.as_str()),
            ("code", if i % 3 == 0 { "200" } else { "500" }),
        ];
        ids.push(db.resolve(&labels).expect("resolve"));
    }
    for step in 0..10i64 {
        let entries: Vec<_> = ids.iter().map(|id| (*id, Sample::new(step * 15_000, step as f64))).collect();
        db.append(&entries.iter().map(|(id, s)| SeriesSamples::id(*id, std::slice::from_ref(s))).collect::<Vec<_>>())
            .expect("append");
    }
    let (anon_after, file_after) = rss();
    let per_series_anon = (anon_after.saturating_sub(anon_before)) as f64 / SERIES as f64;
    let per_series_file = (file_after.saturating_sub(file_before)) as f64 / SERIES as f64;
    assert_eq!(db.stats().series as usize, SERIES, "BUG: series missing");
    println!(
        "tsdb_memory: {SERIES} series: {per_series_anon:.0} bytes/series anonymous RSS (index + series state), \
         {per_series_file:.0} bytes/series file-backed RSS (mapped head slots)"
    );
}
