//! `BitWriter` and `BitReader` are the MSB-first bit streams chunk payloads are made of.
//!
//! The writer encodes one sample at a time into a small stack buffer that starts at the partial
//! last byte of the chunk, so an append copies only the few bytes it changed into the mapped page
//! (see `head.rs`). The reader is bounds-checked: garbage input yields `Err`, never a panic
//! (recovery decodes whatever it finds on disk).

/// Largest number of bytes one `BitWriter` may produce: one resumed partial byte plus the worst
/// sample (a 68-bit timestamp and a 79-bit value are 19 bytes).
pub const WRITER_CAPACITY_BYTES: usize = 40;

/// Bits written MSB-first into a fixed stack buffer. `buf[0]` is the resumed partial byte.
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
        let acc = if used_bits == 0 { 0 } else { u64::from(tail_byte >> (8 - used_bits)) };
        BitWriter { buf: [0; WRITER_CAPACITY_BYTES], full_bytes: 0, acc, acc_bits: used_bits }
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
        self.acc = (self.acc << n) | value;
        self.acc_bits += n;
        while self.acc_bits >= 8 {
            self.acc_bits -= 8;
            self.buf[self.full_bytes] = (self.acc >> self.acc_bits) as u8;
            self.full_bytes += 1;
        }
        self.acc &= (1u64 << self.acc_bits) - 1;
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
    pub fn bytes(&mut self) -> &[u8] {
        let mut len = self.full_bytes;
        if self.acc_bits > 0 {
            self.buf[len] = (self.acc << (8 - self.acc_bits)) as u8;
            len += 1;
        }
        &self.buf[..len]
    }
}

/// The stream ended before the requested bits (a torn or foreign payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBits;

/// Bounds-checked MSB-first reader over a byte slice.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    pos_bits: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos_bits: 0 }
    }

    /// Bits consumed so far.
    #[inline]
    pub fn position_bits(&self) -> usize {
        self.pos_bits
    }

    /// Reads `n` bits (n ≤ 64) as an unsigned number.
    #[inline]
    pub fn read_bits(&mut self, n: u32) -> Result<u64, OutOfBits> {
        if n == 0 {
            return Ok(0);
        }
        if self.pos_bits + n as usize > self.data.len() * 8 {
            return Err(OutOfBits);
        }
        let byte = self.pos_bits / 8;
        let bit_off = (self.pos_bits % 8) as u32;
        // Fast path (Prometheus `readBitsFast`): one unaligned big-endian load covers the bits.
        if n + bit_off <= 64 && byte + 8 <= self.data.len() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&self.data[byte..byte + 8]);
            let word = u64::from_be_bytes(word);
            self.pos_bits += n as usize;
            return Ok((word << bit_off) >> (64 - n));
        }
        let mut value = 0u64;
        for _ in 0..n {
            let b = self.data[self.pos_bits / 8] >> (7 - (self.pos_bits % 8)) & 1;
            value = (value << 1) | u64::from(b);
            self.pos_bits += 1;
        }
        Ok(value)
    }

    #[inline]
    pub fn read_bit(&mut self) -> Result<bool, OutOfBits> {
        Ok(self.read_bits(1)? == 1)
    }

    /// Counts leading one bits up to `max` (consuming them and the terminating zero, if any):
    /// the unary bucket prefixes of the chunk format.
    #[inline]
    pub fn read_unary(&mut self, max: u32) -> Result<u32, OutOfBits> {
        let mut ones = 0;
        while ones < max && self.read_bit()? {
            ones += 1;
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
