//! `adapter_label_selector` fuzzes the Kubernetes label-selector parser of the metrics API
//! (`labelSelector`, `metricLabelSelector`): a value or an error, never a panic; what parses can
//! be matched and rendered.
#![no_main]

use apiserver::adapter::rules::selector::LabelSelector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(selector) = LabelSelector::parse(text) {
        let _ = selector.matches(|name| (name.len() % 2 == 0).then_some(text));
        let _ = selector.to_k8s_json();
    }
});
