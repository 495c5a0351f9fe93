//! `Sample` is one (timestamp, value) point, and the staleness marker Prometheus uses.

/// The bit pattern of Prometheus's staleness marker (`value.StaleNaN`): a NaN that never results
/// from arithmetic, so it survives storage and marks the end of a series.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as a float.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `value` is the staleness marker (compared bit-exactly; other NaNs are ordinary values).
#[inline]
pub fn is_stale_nan(value: f64) -> bool {
    value.to_bits() == STALE_NAN_BITS
}

/// One point of a series: milliseconds since the Unix epoch and a float value.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub ts_ms: i64,
    pub value: f64,
}

impl Sample {
    pub fn new(ts_ms: i64, value: f64) -> Self {
        Sample { ts_ms, value }
    }

    /// Bit-exact equality (NaN payloads included), as storage must preserve it.
    pub fn bit_eq(&self, other: &Sample) -> bool {
        self.ts_ms == other.ts_ms && self.value.to_bits() == other.value.to_bits()
    }
}

impl PartialEq for Sample {
    fn eq(&self, other: &Self) -> bool {
        self.bit_eq(other)
    }
}

/// The wall clock as a sample timestamp: milliseconds since the Unix epoch (0 if the clock is
/// before it). Every part of Ringtail that stamps or ages samples reads this one clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
