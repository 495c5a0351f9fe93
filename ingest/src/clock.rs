//! `now_ms` is the wall clock ingestion stamps scraped samples with and bounds remote-written
//! samples by (`max_future_ms`): milliseconds since the Unix epoch, as Prometheus timestamps.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 if the clock is set before 1970.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
