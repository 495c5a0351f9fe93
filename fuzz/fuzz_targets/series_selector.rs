//! `series_selector` fuzzes the `match[]` series-selector parser (and the `start`/`end`/`step`
//! parameter parsers the same requests carry): a value or an error, never a panic; every matcher
//! parsed can be applied.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(matchers) = query::parse_selector(text) {
        for matcher in &matchers {
            let _ = matcher.matches(text);
            let _ = matcher.matches_empty();
        }
    }
    let _ = query::parse_duration_param_ms(text);
    let _ = query::parse_time_ms(text);
});
