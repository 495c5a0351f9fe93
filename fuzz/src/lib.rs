//! `ringtail_fuzz` is the harness the fuzz targets share: a scratch store and receiver per fuzzing
//! process, and the checks each remote-write input must pass. Every target is one libFuzzer process
//! (`fuzz_targets/*.rs`); `scripts/fuzz` runs them one after another and builds their seed corpus.
//!
//! The scratch state lives in a `static OnceLock`: libFuzzer calls the target as a plain function
//! with no context, so a fuzzing process has nowhere else to keep a store between inputs. Stores
//! are in memory ([`tsdb::Options::in_memory`]): nothing is left behind, and no disk is timed.

use ingest::remote_write::{decode_request, DecodeLimits, Protocol};
use ingest::{IngestLimits, Receiver};
use std::sync::{Arc, OnceLock};

/// The "now" every input is decoded and stored at, fixed so that a crash replays exactly.
pub const NOW_MS: i64 = 1_764_892_800_000;

/// Largest decompressed body in the harness: libFuzzer inputs are far smaller, and a small bound
/// keeps the snappy-header checks reachable.
const MAX_DECOMPRESSED_BYTES: usize = 1 << 20;

/// Live series the scratch store takes before the receiver's own limit refuses new ones, so that a
/// run of millions of inputs has bounded memory (the limit path is exercised too).
const MAX_ACTIVE_SERIES: usize = 20_000;

/// An in-memory store with a receiver in front of it.
pub struct ScratchStore {
    pub db: Arc<tsdb::Db>,
    pub receiver: Receiver,
}

impl ScratchStore {
    /// Opens an empty in-memory store of `storage_size_bytes`.
    pub fn open(storage_size_bytes: u64) -> ScratchStore {
        let mut options = tsdb::Options::in_memory();
        options.storage_size_bytes = storage_size_bytes;
        let db = Arc::new(tsdb::Db::open(options).expect("the scratch store opens"));
        let limits = DecodeLimits { max_decompressed_bytes: MAX_DECOMPRESSED_BYTES, ..DecodeLimits::default() };
        let series_limits = IngestLimits { max_active_series: MAX_ACTIVE_SERIES, ..IngestLimits::default() };
        let receiver = Receiver::new(db.clone(), limits).with_limits(series_limits);
        ScratchStore { db, receiver }
    }
}

fn scratch_store() -> &'static ScratchStore {
    static STORE: OnceLock<ScratchStore> = OnceLock::new();
    STORE.get_or_init(|| ScratchStore::open(32 << 20))
}

/// One remote-write input: `data` is taken as the decompressed protobuf of `protocol` (decoded
/// alone, then snappy-compressed and sent through the receiver into the store) and as a raw body
/// (which exercises the snappy header and block checks). Decoding must give a value or an error;
/// what decodes must pass the store's label rule; a refused request must leave the store as it was.
pub fn remote_write(protocol: Protocol, data: &[u8]) {
    let limits = DecodeLimits { max_decompressed_bytes: MAX_DECOMPRESSED_BYTES, ..DecodeLimits::default() };
    if let Ok(decoded) = decode_request(protocol, data, NOW_MS, &limits) {
        for series in decoded.batch() {
            if let Some(labels) = series.series.labels() {
                assert!(tsdb::validate_labels(labels).is_ok(), "decoded labels break the store's rule: {labels:?}");
            }
        }
    }
    let store = scratch_store();
    store_unchanged_if_refused(store, protocol, data);
    let body = snap::raw::Encoder::new().compress_vec(data).expect("a fuzz input is small enough for snappy");
    store_unchanged_if_refused(store, protocol, &body);
}

fn store_unchanged_if_refused(store: &ScratchStore, protocol: Protocol, body: &[u8]) {
    let before = store.db.stats();
    if store.receiver.remote_write(protocol, body, NOW_MS).is_err() {
        let after = store.db.stats();
        assert_eq!(
            (before.series_created, before.samples, before.duplicates),
            (after.series_created, after.samples, after.duplicates),
            "a refused request changed the store"
        );
    }
}
