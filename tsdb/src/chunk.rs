//! `ChunkEncoder` / `ChunkDecoder` are the sample compression: Gorilla delta-of-delta timestamps
//! and a value code that stores short decimals as mantissa deltas, falling back to Gorilla XOR.
//!
//! The bit layout is specified in `docs/format/chunks.md`; the golden-bytes test below pins it.
//!
//! Why decimals: Prometheus's XOR coding spends 40–60 bits on values such as `0.123` because their
//! binary mantissas are noisy, while the same value is the integer `123` at decimal scale 3. A
//! value is coded as a decimal only when `mantissa as f64 / 10^scale` reproduces its bits exactly,
//! so the code is lossless for every `f64` (NaN payloads, ±Inf, -0.0 and the staleness marker take
//! the XOR path).
//!
//! The encoder state is small and `Copy`: the head keeps it per series and encodes one sample at a
//! time into a `BitWriter` that resumes at the chunk's partial last byte. The decoder can hand its
//! state back (`ChunkDecoder::encoder_state`) so recovery resumes appending where it stopped.

use crate::bitstream::{BitReader, BitWriter, OutOfBits};
use crate::Sample;

/// Powers of ten exactly representable as `f64` used as decimal scales (4-bit scale field).
const POW10: [f64; 16] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
/// Mantissas stay below 2^53 so that `mantissa as f64` is exact.
const MAX_MANTISSA: f64 = 9_007_199_254_740_992.0;
/// After this many consecutive values that were not short decimals, the encoder only retries the
/// decimal search every `DECIMAL_RETRY_EVERY` samples (keeps random floats cheap to append).
const DECIMAL_MISS_LIMIT: u8 = 8;
const DECIMAL_RETRY_EVERY: u16 = 16;
/// Timestamp delta-of-delta buckets: Prometheus's XOR chunk widths (0/14/17/20/64 bits; Gorilla
/// used 7/9/12 for second-resolution timestamps).
const DOD_BUCKET_BITS: [u32; 5] = [0, 14, 17, 20, 64];
/// Decimal mantissa delta buckets: 6 bits hold small counter increments and integer gauge steps,
/// 13 bits a 3-decimal gauge moving by up to ±4.095.
const DELTA_BUCKET_BITS: [u32; 5] = [6, 13, 20, 32, 64];
/// Sentinel for "no XOR window yet".
const NO_WINDOW: u8 = 0xff;

/// Everything needed to append the next sample to a chunk (and to check ordering). `Copy` so an
/// append can encode into a scratch copy and commit only if the bytes fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderState {
    pub num_samples: u16,
    /// Bits used in the payload.
    pub bit_len: u32,
    /// The payload's last byte (partial when `bit_len % 8 != 0`).
    pub tail_byte: u8,
    pub first_ts_ms: i64,
    pub last_ts_ms: i64,
    last_delta_ms: i64,
    pub last_value_bits: u64,
    last_mantissa: i64,
    scale: u8,
    decimal_valid: bool,
    xor_leading: u8,
    xor_trailing: u8,
    decimal_misses: u8,
}

impl Default for EncoderState {
    fn default() -> Self {
        EncoderState {
            num_samples: 0,
            bit_len: 0,
            tail_byte: 0,
            first_ts_ms: 0,
            last_ts_ms: 0,
            last_delta_ms: 0,
            last_value_bits: 0,
            last_mantissa: 0,
            scale: 0,
            decimal_valid: false,
            xor_leading: NO_WINDOW,
            xor_trailing: 0,
            decimal_misses: 0,
        }
    }
}

/// Whether `v` fits in `n`-bit two's complement.
#[inline]
fn fits_signed(v: i64, n: u32) -> bool {
    match n {
        0 => v == 0,
        64.. => true,
        _ => {
            let half = 1i64 << (n - 1);
            (-half..half).contains(&v)
        }
    }
}

/// The mantissa of `v` at `scale` if `mantissa / 10^scale` reproduces `v` bit-exactly.
#[inline]
fn decimal_at(v: f64, scale: u8) -> Option<i64> {
    let scaled = v * POW10[scale as usize];
    // Also rejects NaN and ±Inf (comparisons with NaN are false).
    if scaled.abs().partial_cmp(&MAX_MANTISSA) != Some(std::cmp::Ordering::Less) {
        return None;
    }
    let mantissa = round_half_away(scaled);
    // Scale 0 (integers: counters, most gauges) needs no division.
    let back = if scale == 0 { mantissa as f64 } else { mantissa as f64 / POW10[scale as usize] };
    (back.to_bits() == v.to_bits()).then_some(mantissa)
}

/// `x.round() as i64` for `|x| < 2^53`, without the call to libm's `round` that baseline x86-64
/// makes for `f64::round`: truncation is one instruction, and `x − trunc(x)` is exact there.
#[inline]
fn round_half_away(x: f64) -> i64 {
    let truncated = x as i64;
    let fraction = x - truncated as f64;
    if fraction >= 0.5 {
        truncated + 1
    } else if fraction <= -0.5 {
        truncated - 1
    } else {
        truncated
    }
}

/// The smallest scale at which `v` is a short decimal.
fn decimal_min(v: f64) -> Option<(u8, i64)> {
    (0..POW10.len() as u8).find_map(|scale| decimal_at(v, scale).map(|m| (scale, m)))
}

/// Appends one sample's bits to `w` and advances `state`. The caller has already checked ordering.
#[inline(always)]
pub fn encode_sample(state: &mut EncoderState, w: &mut BitWriter, ts_ms: i64, value: f64) {
    if state.num_samples > 0 && encode_common_sample(state, w, ts_ms, value) {
        return;
    }
    encode_any_sample(state, w, ts_ms, value);
}

/// The common sample as one write of at most 49 bits: a timestamp delta-of-delta of up to 20
/// bits, then an unchanged value or a decimal mantissa delta of up to 20 bits at the chunk's
/// scale. The bits and the state are exactly what [`encode_any_sample`] produces; `false` (and
/// nothing written or changed) for any other sample.
#[inline(always)]
fn encode_common_sample(state: &mut EncoderState, w: &mut BitWriter, ts_ms: i64, value: f64) -> bool {
    let delta = ts_ms.wrapping_sub(state.last_ts_ms);
    let dod = delta.wrapping_sub(state.last_delta_ms);
    let Some((ts_code, ts_len)) = short_bucketed_code(dod, &DOD_BUCKET_BITS, 3) else {
        return false;
    };
    let bits = value.to_bits();
    let (value_code, value_len) = if bits == state.last_value_bits {
        (0, 1)
    } else {
        if !state.decimal_valid {
            return false;
        }
        let Some(mantissa) = decimal_at(value, state.scale) else {
            return false;
        };
        let Some((code, len)) = short_bucketed_code(mantissa.wrapping_sub(state.last_mantissa), &DELTA_BUCKET_BITS, 2)
        else {
            return false;
        };
        state.last_value_bits = bits;
        state.last_mantissa = mantissa;
        state.decimal_misses = 0;
        ((0b10 << len) | code, len + 2)
    };
    let len = ts_len + value_len;
    w.write_bits((ts_code << value_len) | value_code, len);
    state.last_delta_ms = delta;
    state.last_ts_ms = ts_ms;
    state.bit_len += len;
    state.num_samples += 1;
    true
}

/// What [`write_bucketed`] writes for `v` as one code and its length in bits, when `v` fits one
/// of the buckets up to `max_bucket` (below the last, so every prefix ends in its zero bit).
#[inline(always)]
fn short_bucketed_code(v: i64, widths: &[u32; 5], max_bucket: usize) -> Option<(u64, u32)> {
    (0..=max_bucket).find(|&i| fits_signed(v, widths[i])).map(|i| {
        let width = widths[i];
        let prefix = ((1u64 << i) - 1) << 1;
        let field = if width == 0 { 0 } else { (v as u64) & ((1u64 << width) - 1) };
        ((prefix << width) | field, i as u32 + 1 + width)
    })
}

/// [`encode_sample`] field by field: any sample, including the first of a chunk.
#[inline(never)]
fn encode_any_sample(state: &mut EncoderState, w: &mut BitWriter, ts_ms: i64, value: f64) {
    let start = w.bit_len();
    encode_ts(state, w, ts_ms);
    encode_value(state, w, value);
    state.bit_len += w.bit_len() - start;
    state.num_samples += 1;
}

#[inline]
fn encode_ts(state: &mut EncoderState, w: &mut BitWriter, ts_ms: i64) {
    if state.num_samples == 0 {
        w.write_bits(ts_ms as u64, 64);
        state.first_ts_ms = ts_ms;
        state.last_delta_ms = 0;
    } else {
        let delta = ts_ms.wrapping_sub(state.last_ts_ms);
        let dod = delta.wrapping_sub(state.last_delta_ms);
        write_bucketed(w, dod, &DOD_BUCKET_BITS);
        state.last_delta_ms = delta;
    }
    state.last_ts_ms = ts_ms;
}

#[inline]
fn encode_value(state: &mut EncoderState, w: &mut BitWriter, value: f64) {
    let bits = value.to_bits();
    let prev_bits = state.last_value_bits;
    if bits == prev_bits {
        w.write_bit(false);
        return;
    }
    state.last_value_bits = bits;
    if state.decimal_valid {
        if let Some(mantissa) = decimal_at(value, state.scale) {
            w.write_bits(0b10, 2);
            write_bucketed(w, mantissa.wrapping_sub(state.last_mantissa), &DELTA_BUCKET_BITS);
            state.last_mantissa = mantissa;
            state.decimal_misses = 0;
            return;
        }
    }
    let try_search = state.decimal_misses < DECIMAL_MISS_LIMIT || state.num_samples.is_multiple_of(DECIMAL_RETRY_EVERY);
    if let Some((scale, mantissa)) = if try_search { decimal_min(value) } else { None } {
        w.write_bits(0b110, 3);
        w.write_bits(u64::from(scale), 4);
        let zigzag = zigzag64(mantissa);
        let len = 64 - zigzag.leading_zeros();
        w.write_bits(u64::from(len), 6);
        w.write_bits(zigzag, len);
        state.scale = scale;
        state.last_mantissa = mantissa;
        state.decimal_valid = true;
        state.decimal_misses = 0;
        return;
    }
    state.decimal_valid = false;
    state.decimal_misses = state.decimal_misses.saturating_add(1);
    w.write_bits(0b111, 3);
    encode_xor(state, w, bits ^ prev_bits);
}

/// Writes `v` in the first bucket wide enough: bucket `i` is prefixed by `i` one bits and a zero
/// (the last bucket by ones only), followed by `v` in `widths[i]`-bit two's complement.
#[inline]
fn write_bucketed(w: &mut BitWriter, v: i64, widths: &[u32; 5]) {
    let last = widths.len() - 1;
    for (i, &width) in widths.iter().enumerate() {
        if i == last || fits_signed(v, width) {
            let ones = (1u64 << i) - 1;
            if i == last {
                w.write_bits(ones, i as u32);
            } else {
                w.write_bits(ones << 1, i as u32 + 1);
            }
            w.write_bits(v as u64, width);
            return;
        }
    }
}

/// Bits [`write_bucketed`] spends on `v`.
fn bucketed_bits(v: i64, widths: &[u32; 5]) -> usize {
    let last = widths.len() - 1;
    let bucket = widths.iter().position(|w| fits_signed(v, *w)).unwrap_or(last);
    bucket + usize::from(bucket != last) + widths[bucket] as usize
}

/// Reads a value written by [`write_bucketed`] with the same `widths`.
#[inline(always)]
fn read_bucketed(r: &mut BitReader<'_>, widths: &[u32; 5]) -> Result<i64, OutOfBits> {
    let max = widths.len() as u32 - 1;
    // Fast path: prefix and value from one word load.
    if let Some(word) = r.peek_word() {
        let bucket = word.leading_ones().min(max);
        let prefix = if bucket == max { max } else { bucket + 1 };
        let width = widths[bucket as usize];
        let used = prefix + width;
        if used <= BitReader::WORD_BITS && used as usize <= r.bits_left() {
            let value = if width == 0 { 0 } else { (word << prefix) >> (64 - width) };
            r.skip(used);
            return Ok(sign_extend(value, width));
        }
    }
    let bucket = r.read_unary(max)? as usize;
    let width = widths[bucket];
    Ok(sign_extend(r.read_bits(width)?, width))
}

/// Gorilla XOR with a reusable leading/trailing-zero window (Prometheus `xorWrite`). `xor` is never
/// zero here: equal values took the one-bit path.
#[inline]
fn encode_xor(state: &mut EncoderState, w: &mut BitWriter, xor: u64) {
    let leading = (xor.leading_zeros() as u8).min(31);
    let trailing = xor.trailing_zeros() as u8;
    if state.xor_leading != NO_WINDOW && leading >= state.xor_leading && trailing >= state.xor_trailing {
        w.write_bit(false);
        let sig = 64 - u32::from(state.xor_leading) - u32::from(state.xor_trailing);
        w.write_bits(xor >> state.xor_trailing, sig);
    } else {
        let sig = 64 - u32::from(leading) - u32::from(trailing);
        w.write_bit(true);
        w.write_bits(u64::from(leading), 5);
        // 64 significant bits do not fit in 6 bits; 0 stands for 64.
        w.write_bits(u64::from(sig & 63), 6);
        w.write_bits(xor >> trailing, sig);
        state.xor_leading = leading;
        state.xor_trailing = trailing;
    }
}

/// A payload that does not decode (torn, corrupt or foreign bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The payload ended before `num_samples` samples.
    Truncated,
    /// A field holds an impossible value.
    Invalid(&'static str),
}

impl From<OutOfBits> for DecodeError {
    fn from(_: OutOfBits) -> Self {
        DecodeError::Truncated
    }
}

/// Streams the samples of one chunk payload, oldest first. Yields `Err` once and then stops if the
/// payload is malformed.
#[derive(Debug, Clone)]
pub struct ChunkDecoder<'a> {
    reader: BitReader<'a>,
    remaining: u16,
    state: EncoderState,
    failed: bool,
}

impl<'a> ChunkDecoder<'a> {
    /// A decoder for `num_samples` samples at the start of `payload`.
    pub fn new(payload: &'a [u8], num_samples: u16) -> Self {
        ChunkDecoder {
            reader: BitReader::new(payload),
            remaining: num_samples,
            state: EncoderState::default(),
            failed: false,
        }
    }

    /// A decoder for the samples after `state` (a state the encoder had after writing sample
    /// `state.num_samples` of this chunk) in a chunk of `num_samples` samples. `data` holds the
    /// payload in its first `payload_len` bytes and may continue past it (bytes the reader never
    /// returns, which let it load whole words up to the payload's last bit).
    pub fn resume(data: &'a [u8], payload_len: usize, state: EncoderState, num_samples: u16) -> Self {
        let resumable = state.num_samples > 0 && state.num_samples <= num_samples;
        let (start_state, start_bits) =
            if resumable { (state, state.bit_len as usize) } else { (EncoderState::default(), 0) };
        ChunkDecoder {
            reader: BitReader::bounded(data, start_bits, payload_len),
            remaining: num_samples - start_state.num_samples,
            state: start_state,
            failed: false,
        }
    }

    /// After all samples were decoded: the state an encoder needs to keep appending to this
    /// payload (`tail_byte` is filled from `payload`).
    pub fn encoder_state(&self, payload: &[u8]) -> EncoderState {
        let mut state = self.state;
        state.bit_len = self.reader.position_bits() as u32;
        state.tail_byte = if state.bit_len.is_multiple_of(8) { 0 } else { payload[(state.bit_len / 8) as usize] };
        state
    }

    #[inline]
    fn decode_next(&mut self) -> Result<Sample, DecodeError> {
        decode_sample(&mut self.reader, &mut self.state)
    }
}

/// Decodes the sample after `s` from `r`, advancing both.
#[inline(always)]
fn decode_sample(r: &mut BitReader<'_>, s: &mut EncoderState) -> Result<Sample, DecodeError> {
    if s.num_samples > 0 {
        if let Some(sample) = decode_common_sample(r, s) {
            return Ok(sample);
        }
    }
    decode_any_sample(r, s)
}

/// The common sample from one word load: a timestamp delta-of-delta of up to 20 bits, then an
/// unchanged value or a decimal mantissa delta of up to 20 bits (regular scrapes of counters and
/// decimal gauges; at most 4 + 20 + 2 + 3 + 20 = 49 bits, within one word). `None`, with `r` and `s` untouched,
/// for anything else (the first sample, wide fields, XOR values, a new decimal base, the end of
/// the payload): [`decode_any_sample`] reads those, and reports malformed input.
#[inline(always)]
fn decode_common_sample(r: &mut BitReader<'_>, s: &mut EncoderState) -> Option<Sample> {
    const LAST_BUCKET: u32 = DOD_BUCKET_BITS.len() as u32 - 1;
    let word = r.peek_word()?;
    // Timestamp: `bucket` one bits, a zero, then the delta-of-delta (the last bucket is 64 bits
    // wide and takes the general path).
    let dod_bucket = word.leading_ones();
    if dod_bucket >= LAST_BUCKET {
        return None;
    }
    // 0/14/17/20 bits, computed rather than looked up: a load would lengthen the chain from one
    // sample's position to the next (the tests pin both against the tables).
    let dod_width = dod_bucket_width(dod_bucket);
    let mut used = dod_bucket + 1;
    let dod = field_at(word, used, dod_width);
    used += dod_width;
    // Value: `0` unchanged, `10` a decimal delta (bucketed like the timestamp).
    let value_code = word << used;
    let decimal_delta = value_code >> 62 == 0b10;
    let (mantissa, value_bits) = if value_code >> 63 == 0 {
        used += 1;
        (s.last_mantissa, s.last_value_bits)
    } else if decimal_delta && s.decimal_valid {
        used += 2;
        let delta_bucket = (word << used).leading_ones();
        if delta_bucket >= LAST_BUCKET - 1 {
            return None;
        }
        let delta_width = delta_bucket_width(delta_bucket);
        used += delta_bucket + 1;
        let mantissa = s.last_mantissa.wrapping_add(field_at(word, used, delta_width));
        used += delta_width;
        (mantissa, decimal_value(mantissa, s.scale).to_bits())
    } else {
        return None;
    };
    if used as usize > r.bits_left() {
        return None;
    }
    r.skip(used);
    let delta = s.last_delta_ms.wrapping_add(dod);
    let ts_ms = s.last_ts_ms.wrapping_add(delta);
    s.last_delta_ms = delta;
    s.last_ts_ms = ts_ms;
    if decimal_delta {
        s.decimal_misses = 0;
    }
    s.last_mantissa = mantissa;
    s.last_value_bits = value_bits;
    s.num_samples += 1;
    Some(Sample { ts_ms, value: f64::from_bits(value_bits) })
}

/// `DOD_BUCKET_BITS[bucket]` for the buckets below the last.
#[inline(always)]
fn dod_bucket_width(bucket: u32) -> u32 {
    if bucket == 0 {
        0
    } else {
        11 + 3 * bucket
    }
}

/// `DELTA_BUCKET_BITS[bucket]` for the buckets below the last two.
#[inline(always)]
fn delta_bucket_width(bucket: u32) -> u32 {
    6 + 7 * bucket
}

/// The `width`-bit two's-complement field of `word` that starts `offset` bits from its top
/// (`offset + width` ≤ 64).
#[inline(always)]
fn field_at(word: u64, offset: u32, width: u32) -> i64 {
    if width == 0 {
        0
    } else {
        ((word << offset) as i64) >> (64 - width)
    }
}

/// [`decode_sample`] for every sample shape, field by field with bounds checks.
#[inline(always)]
fn decode_any_sample(r: &mut BitReader<'_>, s: &mut EncoderState) -> Result<Sample, DecodeError> {
    let ts_ms = if s.num_samples == 0 {
        let ts = r.read_bits(64)? as i64;
        s.first_ts_ms = ts;
        s.last_delta_ms = 0;
        ts
    } else {
        let dod = read_bucketed(r, &DOD_BUCKET_BITS)?;
        let delta = s.last_delta_ms.wrapping_add(dod);
        s.last_delta_ms = delta;
        s.last_ts_ms.wrapping_add(delta)
    };
    s.last_ts_ms = ts_ms;
    match r.read_unary(3)? {
        0 => {}
        1 => {
            if !s.decimal_valid {
                return Err(DecodeError::Invalid("decimal delta without a decimal base"));
            }
            let delta = read_bucketed(r, &DELTA_BUCKET_BITS)?;
            s.last_mantissa = s.last_mantissa.wrapping_add(delta);
            s.decimal_misses = 0;
            s.last_value_bits = decimal_value(s.last_mantissa, s.scale).to_bits();
        }
        2 => {
            let scale = r.read_bits(4)? as u8;
            let len = r.read_bits(6)? as u32;
            let zigzag = r.read_bits(len)?;
            let mantissa = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
            s.scale = scale;
            s.last_mantissa = mantissa;
            s.decimal_valid = true;
            s.decimal_misses = 0;
            s.last_value_bits = decimal_value(mantissa, scale).to_bits();
        }
        _ => {
            let xor = if r.read_bit()? {
                let leading = r.read_bits(5)? as u8;
                let sig = match r.read_bits(6)? as u32 {
                    0 => 64,
                    n => n,
                };
                if u32::from(leading) + sig > 64 {
                    return Err(DecodeError::Invalid("XOR window wider than 64 bits"));
                }
                let trailing = (64 - u32::from(leading) - sig) as u8;
                s.xor_leading = leading;
                s.xor_trailing = trailing;
                r.read_bits(sig)? << trailing
            } else {
                if s.xor_leading == NO_WINDOW {
                    return Err(DecodeError::Invalid("XOR window reused before it was set"));
                }
                let sig = 64 - u32::from(s.xor_leading) - u32::from(s.xor_trailing);
                r.read_bits(sig)? << s.xor_trailing
            };
            s.decimal_valid = false;
            s.decimal_misses = s.decimal_misses.saturating_add(1);
            s.last_value_bits ^= xor;
        }
    }
    s.num_samples += 1;
    Ok(Sample { ts_ms, value: f64::from_bits(s.last_value_bits) })
}

/// `mantissa / 10^scale` (dividing by 1 is exact, so integers skip the division).
#[inline]
fn decimal_value(mantissa: i64, scale: u8) -> f64 {
    if scale == 0 {
        mantissa as f64
    } else {
        mantissa as f64 / POW10[scale as usize & 15]
    }
}

#[inline]
fn sign_extend(v: u64, bits: u32) -> i64 {
    match bits {
        0 => 0,
        64.. => v as i64,
        _ => {
            let shift = 64 - bits;
            ((v << shift) as i64) >> shift
        }
    }
}

impl ChunkDecoder<'_> {
    /// Calls `f` with every remaining sample, oldest first, until it returns `false`; a payload
    /// that does not decode stops the loop with the error. The same samples as iterating, in one
    /// loop without the iterator's per-sample bookkeeping (the hot path of queries).
    #[inline]
    pub fn for_each_until(&mut self, mut f: impl FnMut(Sample) -> bool) -> Result<(), DecodeError> {
        if self.failed {
            return Ok(());
        }
        // Reader and state in locals for the loop (kept in registers), written back after.
        let (mut reader, mut state) = (self.reader.clone(), self.state);
        let mut outcome = Ok(());
        while self.remaining > 0 {
            self.remaining -= 1;
            match decode_sample(&mut reader, &mut state) {
                Ok(sample) => {
                    if !f(sample) {
                        break;
                    }
                }
                Err(e) => {
                    self.failed = true;
                    outcome = Err(e);
                    break;
                }
            }
        }
        self.reader = reader;
        self.state = state;
        outcome
    }
}

impl Iterator for ChunkDecoder<'_> {
    type Item = Result<Sample, DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 || self.failed {
            return None;
        }
        self.remaining -= 1;
        let item = self.decode_next();
        self.failed = item.is_err();
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}

/// Encodes one sample after `state` into `w`, restarted. Its bytes belong at the returned
/// payload offset (they rewrite the partial tail byte); `state` is advanced.
#[inline(always)]
pub fn encode_next(state: &mut EncoderState, w: &mut BitWriter, ts_ms: i64, value: f64) -> usize {
    let start_byte = (state.bit_len / 8) as usize;
    w.restart(state.tail_byte, state.bit_len % 8);
    encode_sample(state, w, ts_ms, value);
    state.tail_byte = if state.bit_len.is_multiple_of(8) { 0 } else { w.bytes().last().copied().unwrap_or(0) };
    start_byte
}

/// Encodes a whole chunk into `dst` (appending). Used by tests, benchmarks and format tooling; the
/// store itself encodes sample by sample into mapped pages.
pub fn encode_chunk(dst: &mut Vec<u8>, samples: &[Sample]) -> EncoderState {
    let base = dst.len();
    let mut state = EncoderState::default();
    let mut w = BitWriter::resume(0, 0);
    for sample in samples {
        let start_byte = encode_next(&mut state, &mut w, sample.ts_ms, sample.value);
        dst.truncate(base + start_byte);
        dst.extend_from_slice(w.bytes());
    }
    state
}

/// Size in bytes of `samples` under Prometheus's XOR chunk encoding (2-byte sample count, varint
/// first timestamp, 64-bit first value, uvarint first delta, then delta-of-delta and XOR as in
/// `chunkenc/xor.go`). The baseline the decimal coding is compared against.
pub fn prometheus_xor_size_bytes(samples: &[Sample]) -> usize {
    let mut bits = 16usize;
    let (mut last_ts, mut last_delta, mut last_bits) = (0i64, 0i64, 0u64);
    let (mut leading, mut trailing) = (NO_WINDOW, 0u8);
    for (i, sample) in samples.iter().enumerate() {
        let value_bits = sample.value.to_bits();
        match i {
            0 => {
                bits += varint_len(zigzag64(sample.ts_ms)) * 8 + 64;
            }
            1 => {
                last_delta = sample.ts_ms.wrapping_sub(last_ts);
                bits += varint_len(last_delta as u64) * 8;
            }
            _ => {
                let delta = sample.ts_ms.wrapping_sub(last_ts);
                let dod = delta.wrapping_sub(last_delta);
                last_delta = delta;
                bits += bucketed_bits(dod, &DOD_BUCKET_BITS);
            }
        }
        if i > 0 {
            let xor = value_bits ^ last_bits;
            if xor == 0 {
                bits += 1;
            } else {
                let l = (xor.leading_zeros() as u8).min(31);
                let t = xor.trailing_zeros() as u8;
                if leading != NO_WINDOW && l >= leading && t >= trailing {
                    bits += 2 + (64 - leading as usize - trailing as usize);
                } else {
                    bits += 2 + 5 + 6 + (64 - l as usize - t as usize);
                    leading = l;
                    trailing = t;
                }
            }
        }
        last_ts = sample.ts_ms;
        last_bits = value_bits;
    }
    bits.div_ceil(8)
}

/// Zigzag coding: small magnitudes of either sign become small unsigned numbers.
pub(crate) fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn varint_len(mut v: u64) -> usize {
    let mut len = 1;
    while v >= 0x80 {
        v >>= 7;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::STALE_NAN_BITS;
    use proptest::prelude::*;

    fn decode_all(payload: &[u8], n: u16) -> Vec<Sample> {
        ChunkDecoder::new(payload, n).map(|s| s.unwrap()).collect()
    }

    fn assert_round_trip(samples: &[Sample]) {
        let mut payload = Vec::new();
        let state = encode_chunk(&mut payload, samples);
        assert_eq!(payload.len(), state.bit_len.div_ceil(8) as usize);
        let decoded = decode_all(&payload, samples.len() as u16);
        assert_eq!(decoded.len(), samples.len());
        for (a, b) in decoded.iter().zip(samples) {
            assert!(a.bit_eq(b), "{a:?} != {b:?}");
        }
    }

    fn special_value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            any::<u64>().prop_map(f64::from_bits),
            Just(f64::from_bits(STALE_NAN_BITS)),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(0.0),
            Just(-0.0),
            (-1_000_000i64..1_000_000).prop_map(|v| v as f64),
            (-1_000_000i64..1_000_000, 0u32..6).prop_map(|(m, s)| m as f64 / 10f64.powi(s as i32)),
        ]
    }

    fn timestamp_step() -> impl Strategy<Value = i64> {
        prop_oneof![Just(15_000i64), 0i64..100_000, any::<i64>(), Just(i64::MAX), Just(i64::MIN)]
    }

    proptest! {
        #[test]
        fn round_trips_any_sequence_bit_exactly(
            first_ts in any::<i64>(),
            steps in proptest::collection::vec((timestamp_step(), special_value()), 1..200),
        ) {
            let mut ts = first_ts;
            let samples: Vec<Sample> = steps.iter().map(|(step, v)| { ts = ts.wrapping_add(*step); Sample::new(ts, *v) }).collect();
            assert_round_trip(&samples);
        }

        #[test]
        fn decoder_state_resumes_encoding(samples in proptest::collection::vec((0i64..1_000_000, special_value()), 2..100), split in 1usize..100) {
            let samples: Vec<Sample> = samples.into_iter().map(|(t, v)| Sample::new(t, v)).collect();
            let split = split.min(samples.len() - 1);
            let mut payload = Vec::new();
            let full = encode_chunk(&mut payload, &samples);
            let mut partial = Vec::new();
            encode_chunk(&mut partial, &samples[..split]);
            let mut decoder = ChunkDecoder::new(&partial, split as u16);
            prop_assert!(decoder.by_ref().all(|s| s.is_ok()));
            let mut state = decoder.encoder_state(&partial);
            let mut w = BitWriter::resume(0, 0);
            for s in &samples[split..] {
                let start = encode_next(&mut state, &mut w, s.ts_ms, s.value);
                partial.truncate(start);
                partial.extend_from_slice(w.bytes());
            }
            prop_assert_eq!(&partial, &payload);
            prop_assert_eq!(state.bit_len, full.bit_len);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), n in any::<u16>()) {
            for _ in ChunkDecoder::new(&bytes, n) {}
        }

        /// The one-word path reads every payload, well-formed or not, exactly as the field-by-field
        /// path does: the same samples, the same error, and the same state to resume from.
        #[test]
        fn one_word_path_decodes_like_field_by_field(
            encoded in proptest::collection::vec((timestamp_step(), special_value()), 1..120),
            garbage in proptest::collection::vec(any::<u8>(), 0..48),
            keep_bytes in any::<prop::sample::Index>(),
            extra in 0u16..4,
        ) {
            let mut ts = 1_700_000_000_000i64;
            let samples: Vec<Sample> =
                encoded.iter().map(|(step, v)| { ts = ts.wrapping_add(*step); Sample::new(ts, *v) }).collect();
            let mut payload = Vec::new();
            encode_chunk(&mut payload, &samples);
            // Cut the payload anywhere and append noise: a torn or foreign chunk.
            payload.truncate(keep_bytes.index(payload.len() + 1));
            payload.extend_from_slice(&garbage);
            let n = samples.len() as u16 + extra;
            let (mut reader, mut state) = (BitReader::new(&payload), EncoderState::default());
            let mut expected = Vec::new();
            for _ in 0..n {
                let item = decode_any_sample(&mut reader, &mut state);
                let failed = item.is_err();
                expected.push(item);
                if failed {
                    break;
                }
            }
            let mut decoder = ChunkDecoder::new(&payload, n);
            let mut decoded = Vec::new();
            let outcome = decoder.for_each_until(|sample| {
                decoded.push(Ok(sample));
                true
            });
            if let Err(e) = outcome {
                decoded.push(Err(e));
            }
            prop_assert_eq!(decoded.len(), expected.len());
            for (a, b) in decoded.iter().zip(&expected) {
                match (a, b) {
                    (Ok(a), Ok(b)) => prop_assert!(a.bit_eq(b), "{:?} != {:?}", a, b),
                    (a, b) => prop_assert_eq!(a, b),
                }
            }
            if expected.last().is_none_or(|last| last.is_ok()) {
                prop_assert_eq!(decoder.reader.position_bits(), reader.position_bits());
                prop_assert_eq!(decoder.state, state);
            }
        }
    }

    proptest! {
        /// The one-write path encodes every sample exactly as the field-by-field path does: the
        /// same bits and the same state after each sample.
        #[test]
        fn one_write_path_encodes_like_field_by_field(
            first_ts in any::<i64>(),
            steps in proptest::collection::vec((timestamp_step(), special_value()), 1..160),
        ) {
            let (mut fast, mut slow) = (EncoderState::default(), EncoderState::default());
            let mut ts = first_ts;
            for (step, value) in steps {
                ts = ts.wrapping_add(step);
                let (mut fast_writer, mut slow_writer) = (
                    BitWriter::resume(fast.tail_byte, fast.bit_len % 8),
                    BitWriter::resume(slow.tail_byte, slow.bit_len % 8),
                );
                encode_sample(&mut fast, &mut fast_writer, ts, value);
                encode_any_sample(&mut slow, &mut slow_writer, ts, value);
                prop_assert_eq!(fast_writer.bytes(), slow_writer.bytes());
                prop_assert_eq!(fast_writer.bit_len(), slow_writer.bit_len());
                let tail = |state: &EncoderState, bytes: &[u8]| match state.bit_len % 8 {
                    0 => 0,
                    _ => bytes.last().copied().unwrap_or(0),
                };
                fast.tail_byte = tail(&fast, fast_writer.bytes());
                slow.tail_byte = tail(&slow, slow_writer.bytes());
                prop_assert_eq!(fast, slow);
            }
        }

        /// The truncating rounding equals `f64::round` wherever the decimal coding uses it.
        #[test]
        fn round_half_away_matches_round(
            x in prop_oneof![
                -9.007e15f64..9.007e15,
                (-1_000_000i64..1_000_000).prop_map(|m| m as f64 + 0.5),
                (-1_000_000i64..1_000_000).prop_map(|m| m as f64 - 0.5),
                any::<u64>().prop_map(f64::from_bits).prop_filter("in range", |x| x.abs() < MAX_MANTISSA),
            ],
        ) {
            prop_assert_eq!(round_half_away(x), x.round() as i64, "{}", x);
        }
    }

    #[test]
    fn round_half_away_at_the_edges() {
        for x in [
            0.49999999999999994,
            -0.49999999999999994,
            0.5,
            -0.5,
            1.5,
            -2.5,
            4503599627370495.5,
            9007199254740991.0,
            -9007199254740991.0,
            0.0,
            -0.0,
        ] {
            assert_eq!(round_half_away(x), x.round() as i64, "{x}");
        }
    }

    #[test]
    fn computed_bucket_widths_match_the_tables() {
        for bucket in 0..DOD_BUCKET_BITS.len() as u32 - 1 {
            assert_eq!(dod_bucket_width(bucket), DOD_BUCKET_BITS[bucket as usize]);
        }
        for bucket in 0..DELTA_BUCKET_BITS.len() as u32 - 2 {
            assert_eq!(delta_bucket_width(bucket), DELTA_BUCKET_BITS[bucket as usize]);
        }
    }

    #[test]
    fn special_values_round_trip() {
        let values = [
            f64::from_bits(STALE_NAN_BITS),
            f64::NAN,
            -0.0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::from_bits(0x7ff8_dead_beef_0001),
            f64::MIN_POSITIVE,
            f64::MAX,
            0.1 + 0.2,
            1e300,
            -123.456,
        ];
        let samples: Vec<Sample> = values.iter().enumerate().map(|(i, v)| Sample::new(i as i64 * 15_000, *v)).collect();
        assert_round_trip(&samples);
        let jumps =
            [Sample::new(i64::MIN, 1.0), Sample::new(0, 2.0), Sample::new(i64::MAX, 3.0), Sample::new(i64::MAX, 3.0)];
        assert_round_trip(&jumps);
    }

    /// Pins the bit layout documented in docs/format/chunks.md.
    #[test]
    fn golden_bytes() {
        let samples =
            [Sample::new(1000, 5.0), Sample::new(16_000, 7.0), Sample::new(31_000, 7.0), Sample::new(46_000, 7.25)];
        let mut payload = Vec::new();
        encode_chunk(&mut payload, &samples);
        // ts 1000 raw (64 bits); value 5: '110' scale 0000 len 000100 zigzag 1010
        // ts dod +15000: '110' + 17 bits; value 7: '10' '0' delta 000010
        // ts dod 0: '0'; value same: '0'
        // ts dod 0: '0'; value 7.25: '110' scale 0010 len 001010 zigzag(725)=1450=10110101010
        let expected_bits = concat!(
            "0000000000000000000000000000000000000000000000000000001111101000",
            "110",
            "0000",
            "000100",
            "1010",
            "110",
            "00011101010011000",
            "10",
            "0",
            "000010",
            "0",
            "0",
            "0",
            "110",
            "0010",
            "001011",
            "10110101010",
        );
        let mut expected = Vec::new();
        for chunk in expected_bits.as_bytes().chunks(8) {
            let mut byte = 0u8;
            for (i, b) in chunk.iter().enumerate() {
                byte |= (b - b'0') << (7 - i);
            }
            expected.push(byte);
        }
        assert_eq!(payload, expected);
        assert_eq!(decode_all(&payload, 4), samples);
    }

    #[test]
    fn counters_beat_gorilla_size() {
        // Counter with small integer increments at 15 s: mostly 1-bit timestamps and 9-bit values.
        let mut v = 1000.0;
        let mut x = 12345u64;
        let samples: Vec<Sample> = (0..400)
            .map(|i| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                v += ((x >> 33) % 8) as f64;
                Sample::new(1_700_000_000_000 + i * 15_000, v)
            })
            .collect();
        let mut payload = Vec::new();
        encode_chunk(&mut payload, &samples);
        let per_sample = payload.len() as f64 / samples.len() as f64;
        assert!(per_sample < 1.4, "{per_sample} bytes/sample");
        assert!(payload.len() < prometheus_xor_size_bytes(&samples));
    }
}
