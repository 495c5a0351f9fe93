//! `remote_write_v1` fuzzes remote-write 1.0 bodies: decoding alone and the receiver's whole path
//! (snappy, decoding, limits, append) into a scratch store. See `ringtail_fuzz::remote_write`.
#![no_main]

use ingest::remote_write::Protocol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringtail_fuzz::remote_write(Protocol::V1, data));
