//! `BitWriter` and `BitReader` are the MSB-first bit streams chunk payloads are made of.
//!
//! The writer encodes one sample at a time into a small stack buffer that starts at the partial
//! last byte of the chunk, so an append copies only the few bytes it changed into the mapped page
//! (see `head.rs`). The reader is bounds-checked: garbage input yields `Err`, never a panic
//! (recovery decodes whatever it finds on disk).

/// Largest number of bytes one `BitWriter` may produce: one resumed partial byte plus the worst
/// sample (a 68-bit timestamp and a 79-bit value are 19 bytes).
pub const WRITER_CAPACITY_BYTES: usize = 40;

/// Bits written MSB-first into a fixed stack buffer. `buf[0]` is the resumed partial byte; while
/// bits are pending, `buf[full_bytes]` holds them at its top, so [`BitWriter::bytes`] only reads.
#[derive(Clone)]
pub struct BitWriter {
    buf: [u8; WRITER_CAPACITY_BYTES],
    full_bytes: usize,
    acc: u64,
    acc_bits: u32,
}

impl BitWriter {
    /// Starts a writer that continues after `used_bits` (0..8) bits of `tail_byte`.
    #[inline]
    pub fn resume(tail_byte: u8, used_bits: u32) -> Self {
        debug_assert!(used_bits < 8, "BUG: used_bits {used_bits} >= 8");
        let mut writer = BitWriter { buf: [0; WRITER_CAPACITY_BYTES], full_bytes: 0, acc: 0, acc_bits: 0 };
        writer.restart(tail_byte, used_bits);
        writer
    }

    /// Starts this writer over as [`BitWriter::resume`] does, without clearing its buffer (every
    /// byte [`BitWriter::bytes`] returns is written first).
    #[inline]
    pub fn restart(&mut self, tail_byte: u8, used_bits: u32) {
        debug_assert!(used_bits < 8, "BUG: used_bits {used_bits} >= 8");
        let used_bits = used_bits % 8;
        self.full_bytes = 0;
        self.acc_bits = used_bits;
        (self.acc, self.buf[0]) = match used_bits {
            0 => (0, 0),
            _ => (u64::from(tail_byte >> (8 - used_bits)), tail_byte & !(0xff >> used_bits)),
        };
    }

    /// Appends the low `n` bits of `value` (n ≤ 64), most significant first.
    #[inline]
    pub fn write_bits(&mut self, value: u64, n: u32) {
        if n > 56 {
            self.write_bits(value >> 32, n - 32);
            self.write_bits(value & 0xffff_ffff, 32);
            return;
        }
        if n == 0 {
            return;
        }
        let value = value & ((1u64 << n) - 1);
        // At most 7 pending bits and 56 new ones: they fit the accumulator.
        self.acc = (self.acc << n) | value;
        self.acc_bits += n;
        let whole_bytes = (self.acc_bits / 8) as usize;
        let kept_bits = self.acc_bits % 8;
        // The whole bytes and the pending bits (at the top of the byte after them, the rest of it
        // zero) go out in one 8-byte store; bytes past them are rewritten later or never read.
        // Near the buffer's end, one at a time.
        let aligned = self.acc << (64 - self.acc_bits);
        if let Some(dst) = self.buf.get_mut(self.full_bytes..self.full_bytes + 8) {
            dst.copy_from_slice(&aligned.to_be_bytes());
        } else {
            let written = whole_bytes + usize::from(kept_bits > 0);
            for (i, byte) in aligned.to_be_bytes().iter().take(written).enumerate() {
                self.buf[self.full_bytes + i] = *byte;
            }
        }
        self.full_bytes += whole_bytes;
        self.acc_bits = kept_bits;
        self.acc &= (1u64 << kept_bits) - 1;
    }

    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    /// Bits written so far, counting the resumed bits of the first byte.
    #[inline]
    pub fn bit_len(&self) -> u32 {
        self.full_bytes as u32 * 8 + self.acc_bits
    }

    /// The bytes to store, starting with the (rewritten) resumed byte; the last one may be partial
    /// with its unused low bits zero.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.full_bytes + usize::from(self.acc_bits > 0)]
    }
}

/// The stream ended before the requested bits (a torn or foreign payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBits;

/// Bounds-checked MSB-first reader over a byte slice.
///
/// The readable bits may end before the slice does ([`BitReader::bounded`]): bytes past the limit
/// are never returned but let the fast path use whole 8-byte loads up to the last readable bit.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    pos_bits: usize,
    limit_bits: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos_bits: 0, limit_bits: data.len() * 8 }
    }

    /// A reader of the first `limit_bytes` bytes of `data` (clamped to its length), starting at
    /// bit `start_bits`.
    pub fn bounded(data: &'a [u8], start_bits: usize, limit_bytes: usize) -> Self {
        let limit_bits = limit_bytes.min(data.len()) * 8;
        BitReader { data, pos_bits: start_bits.min(limit_bits), limit_bits }
    }

    /// Bits consumed so far.
    #[inline]
    pub fn position_bits(&self) -> usize {
        self.pos_bits
    }

    /// The next `n` bits (n ≤ 64, at most the bits left) without consuming them.
    #[inline]
    fn peek_bits(&self, n: u32) -> u64 {
        let byte = self.pos_bits / 8;
        let bit_off = (self.pos_bits % 8) as u32;
        // Fast path (Prometheus `readBitsFast`): one unaligned big-endian load covers the bits.
        if n + bit_off <= 64 && byte + 8 <= self.data.len() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&self.data[byte..byte + 8]);
            let word = u64::from_be_bytes(word);
            return (word << bit_off) >> (64 - n);
        }
        (self.pos_bits..self.pos_bits + n as usize)
            .fold(0u64, |value, pos| (value << 1) | u64::from(self.data[pos / 8] >> (7 - (pos % 8)) & 1))
    }

    /// The next bits MSB-aligned in one word, when a whole 8-byte load is possible: at least
    /// [`BitReader::WORD_BITS`] of them are from the stream (the caller checks the limit with
    /// [`BitReader::bits_left`] before consuming them by [`BitReader::skip`]).
    #[inline]
    pub fn peek_word(&self) -> Option<u64> {
        let byte = self.pos_bits / 8;
        let bytes: [u8; 8] = self.data.get(byte..byte + 8)?.try_into().ok()?;
        Some(u64::from_be_bytes(bytes) << (self.pos_bits % 8))
    }

    /// Bits a [`BitReader::peek_word`] word is guaranteed to hold.
    pub const WORD_BITS: u32 = 57;

    /// Bits left before the limit.
    #[inline]
    pub fn bits_left(&self) -> usize {
        self.limit_bits - self.pos_bits
    }

    /// Consumes `n` bits already checked against [`BitReader::bits_left`].
    #[inline]
    pub fn skip(&mut self, n: u32) {
        self.pos_bits = (self.pos_bits + n as usize).min(self.limit_bits);
    }

    /// Reads `n` bits (n ≤ 64) as an unsigned number.
    #[inline]
    pub fn read_bits(&mut self, n: u32) -> Result<u64, OutOfBits> {
        if n == 0 {
            return Ok(0);
        }
        if self.pos_bits + n as usize > self.limit_bits {
            return Err(OutOfBits);
        }
        let value = self.peek_bits(n);
        self.pos_bits += n as usize;
        Ok(value)
    }

    #[inline]
    pub fn read_bit(&mut self) -> Result<bool, OutOfBits> {
        Ok(self.read_bits(1)? == 1)
    }

    /// Counts leading one bits up to `max` (consuming them and the terminating zero, if any):
    /// the unary bucket prefixes of the chunk format. `max` is below 64.
    #[inline]
    pub fn read_unary(&mut self, max: u32) -> Result<u32, OutOfBits> {
        let left = self.limit_bits - self.pos_bits;
        let n = ((max + 1) as usize).min(left) as u32;
        if n == 0 {
            return if max == 0 { Ok(0) } else { Err(OutOfBits) };
        }
        let ones = (self.peek_bits(n) << (64 - n)).leading_ones().min(max);
        if ones == max {
            self.pos_bits += max as usize;
        } else if ones < n {
            self.pos_bits += ones as usize + 1;
        } else {
            // Only ones up to the end: the terminating zero is missing.
            return Err(OutOfBits);
        }
        Ok(ones)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn resumed_writer_keeps_previous_bits() {
        let mut w = BitWriter::resume(0b1010_0000, 3);
        w.write_bits(0b11, 2);
        assert_eq!(w.bytes(), &[0b1011_1000]);
        assert_eq!(w.bit_len(), 5);
    }

    #[test]
    fn reader_reports_end_of_data() {
        let mut r = BitReader::new(&[0xff]);
        assert_eq!(r.read_bits(8), Ok(0xff));
        assert_eq!(r.read_bit(), Err(OutOfBits));
    }

    #[test]
    fn unary_prefixes_read_like_bit_by_bit() {
        // 0 | 10 | 110 | 111 (max 3) | 1110 with max 4 | truncated 11
        let mut w = BitWriter::resume(0, 0);
        for (v, n) in [(0b0, 1), (0b10, 2), (0b110, 3), (0b111, 3), (0b1110, 4), (0b11, 2)] {
            w.write_bits(v, n);
        }
        let bytes = w.bytes().to_vec();
        let mut r = BitReader::bounded(&bytes, 0, bytes.len());
        assert_eq!(r.read_unary(3), Ok(0));
        assert_eq!(r.read_unary(3), Ok(1));
        assert_eq!(r.read_unary(3), Ok(2));
        assert_eq!(r.read_unary(3), Ok(3));
        assert_eq!(r.read_unary(4), Ok(3));
        assert_eq!(r.position_bits(), 13);
        // The last two bits are ones with nothing after them inside the 15 written bits.
        let mut truncated = BitReader::bounded(&bytes, 13, bytes.len());
        assert_eq!(truncated.read_unary(1), Ok(1));
        assert_eq!(BitReader::new(&[0xff]).read_unary(0), Ok(0));
    }

    #[test]
    fn bounded_reader_stops_at_its_limit_not_the_slice_end() {
        let data = [0xffu8; 16];
        let mut r = BitReader::bounded(&data, 4, 2);
        assert_eq!(r.read_bits(12), Ok(0xfff));
        assert_eq!(r.read_bit(), Err(OutOfBits));
        let mut ones = BitReader::bounded(&data, 14, 2);
        assert_eq!(ones.read_unary(3), Err(OutOfBits));
    }

    proptest! {
        #[test]
        fn round_trips_any_field_sequence(fields in proptest::collection::vec((any::<u64>(), 0u32..=64), 0..4),
                                          lead in 0u32..8) {
            let mut w = BitWriter::resume(0xff, lead);
            for (v, n) in &fields {
                w.write_bits(*v, *n);
            }
            let bytes = w.bytes().to_vec();
            let mut r = BitReader::new(&bytes);
            prop_assert_eq!(r.read_bits(lead).unwrap(), (1u64 << lead) - 1);
            for (v, n) in &fields {
                let mask = if *n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                prop_assert_eq!(r.read_bits(*n).unwrap(), v & mask);
            }
        }
    }
}
