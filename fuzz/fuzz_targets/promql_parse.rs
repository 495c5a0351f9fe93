//! `promql_parse` fuzzes the PromQL parser: any UTF-8 text parses or gets an error whose position
//! lies inside the text — never a panic and never a stack overflow (long chains, deep nesting).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match query::parse(text) {
        Ok(expr) => {
            let _ = expr.value_type();
        }
        Err(e) => {
            assert!(e.pos <= text.len(), "error position {} past the end ({} bytes)", e.pos, text.len());
            let _ = query::line_col(text, e.pos);
        }
    }
});
