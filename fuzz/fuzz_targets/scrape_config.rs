//! `scrape_config` fuzzes the scrape configuration (`global` and `scrape_configs`, YAML): a file
//! loads and resolves into jobs or gets an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(configs) = ingest::ScrapeConfigs::from_yaml(text) {
        let _ = configs.resolve();
    }
});
