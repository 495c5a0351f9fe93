//! `exposition_text` fuzzes the exposition parser in Text mode: any UTF-8 page parses or gets an
//! error with a line and column; every parsed sample has a metric name.
#![no_main]

use ingest::exposition::{parse, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse(text, Format::Text) {
        Ok(page) => {
            for sample in page.samples() {
                assert!(!sample.name.is_empty(), "a sample without a name: {:?}", sample.series);
                let _ = page.labels(sample);
            }
        }
        Err(e) => assert!(e.line >= 1 && e.column >= 1, "error position {}:{}", e.line, e.column),
    }
});
