//! Fuzz target: the PromQL parser must return `Ok` or `Err` for any input — never panic, never
//! overflow the stack — and whatever parses must evaluate on an empty store without panicking.
//! Run with `cargo +nightly fuzz run parse` from `query/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

/// One scratch store for the whole fuzzing session (empty: evaluation paths, not data, matter).
fn engine() -> &'static query::Engine {
    static ENGINE: OnceLock<query::Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ringtail-query-fuzz-{}", std::process::id()));
        let mut options = tsdb::Options::new(dir);
        options.storage_size_bytes = 16 << 20;
        let db = tsdb::Db::open(options).expect("scratch store opens");
        query::Engine::new(Arc::new(db), query::EngineOptions::default())
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(expr) = query::parse(text) {
        let _ = expr.value_type();
        let _ = engine().instant(text, 0);
        let _ = engine().range(text, 0, 120_000, 60_000);
    }
});
