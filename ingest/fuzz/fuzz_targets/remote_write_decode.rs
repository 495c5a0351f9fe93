//! Fuzz target: snappy + 1.0/2.0 decoding of arbitrary bodies must never panic, and whatever
//! decodes must pass label validation.
#![no_main]

use ingest::remote_write::{decode_request, decompress_snappy, DecodeLimits, Protocol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits { max_decompressed_bytes: 1 << 20, ..DecodeLimits::default() };
    for protocol in [Protocol::V1, Protocol::V2] {
        // Raw protobuf (as if already decompressed) and the snappy path.
        if let Ok(decoded) = decode_request(protocol, data, 0, &limits) {
            for series in decoded.batch() {
                if let Some(labels) = series.series.labels() {
                    assert!(tsdb::validate_labels(labels).is_ok());
                }
            }
        }
        let mut scratch = Vec::new();
        if decompress_snappy(data, limits.max_decompressed_bytes, &mut scratch).is_ok() {
            let _ = decode_request(protocol, &scratch, 0, &limits);
        }
    }
});
