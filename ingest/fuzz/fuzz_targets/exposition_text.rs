//! Fuzz target: the text 0.0.4 exposition parser must return Ok or a positioned error, never panic.
#![no_main]

use ingest::exposition::{parse, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = parse(text, Format::Text) {
            assert!(e.line >= 1 && e.column >= 1);
        }
    }
});
