//! `adapter_rules` fuzzes a prometheus-adapter rule file end to end, as `ringtail adapter-config
//! check` runs it: YAML → rules (selectors, regexes, `<<.Series>>`/`<<.LabelMatchers>>`/
//! `<<.GroupBy>>` templates) → series discovery in a store holding the series the shipped rules
//! expect → each served metric's query rendered for an example object. An error or an explanation,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Series the rules of `deploy/configmap.yaml` and `apiserver/tests/fixtures` select.
const SERIES: &[&[(&str, &str)]] = &[
    &[("__name__", "ei_scale_ratio"), ("namespace", "default"), ("pod", "web-0")],
    &[
        ("__name__", "seldon_model_infer_total"),
        ("model", "iris"),
        ("namespace", "seldon"),
        ("pod", "mlserver-0"),
        ("server", "mlserver"),
    ],
    &[("__name__", "istio_requests_total"), ("namespace", "default"), ("pod", "web-1")],
    &[("__name__", "DCGM_FI_DEV_GPU_UTIL"), ("namespace", "gpu"), ("pod", "train-0")],
    &[("__name__", "http_requests_total"), ("namespace", "default"), ("pod", "web-0"), ("service", "web")],
    &[("__name__", "cpu_capacity_remaining"), ("namespace", "default"), ("service", "web")],
    &[("__name__", "queue_messages_ready"), ("namespace", "default"), ("queue", "orders")],
    &[
        ("__name__", "up"),
        ("instance", "10.0.0.1:9090"),
        ("job", "kubernetes-pods"),
        ("namespace", "default"),
        ("node", "node-1"),
        ("pod", "web-0"),
    ],
];

/// The scratch store and the path each input is written to (explain reads a file, as the CLI does;
/// `scripts/fuzz` points `$TMPDIR` at a directory it removes afterwards).
struct Scratch {
    db: Arc<tsdb::Db>,
    rule_file: PathBuf,
}

fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ringtail-fuzz-adapter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the scratch directory is created");
        let mut options = tsdb::Options::in_memory();
        options.storage_size_bytes = 16 << 20;
        let db = Arc::new(tsdb::Db::open(options).expect("the scratch store opens"));
        let now_ms = tsdb::now_ms();
        let samples = [tsdb::Sample::new(now_ms - 60_000, 1.0), tsdb::Sample::new(now_ms, 2.0)];
        let batch: Vec<_> = SERIES.iter().map(|labels| tsdb::SeriesSamples::labels(labels, &samples)).collect();
        db.append(&batch).expect("the scratch series are stored");
        Scratch { db, rule_file: dir.join("adapter.yaml") }
    })
}

/// Long enough that the seeded samples stay visible for the whole run.
const LOOKBACK: Duration = Duration::from_secs(30 * 24 * 3600);

fuzz_target!(|data: &[u8]| {
    let scratch = scratch();
    std::fs::write(&scratch.rule_file, data).expect("the scratch rule file is written");
    let mut out = Vec::new();
    let _ = apiserver::adapter::check::explain(&scratch.rule_file, Some(scratch.db.clone()), LOOKBACK, &mut out);
});
