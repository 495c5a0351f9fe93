//! What the hand-written JSON writers (query results, custom-metrics value lists) share: when a
//! string can be written between quotes as it is.

/// Whether serde_json would write `text` as a JSON string unchanged between quotes: no quote,
/// backslash or control character in it (nearly every label and object name).
pub(crate) fn is_verbatim(text: &str) -> bool {
    text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\')
}
