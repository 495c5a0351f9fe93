//! `WireReader` is a zero-copy walker over the protobuf wire format: it yields field numbers with
//! borrowed payloads, so the remote-write decoder can take `&str` labels straight out of the
//! decompressed buffer instead of allocating a `String` per label as a generated decoder would.
//!
//! Varints are decoded with `prost::encoding::decode_varint`; everything else here is slicing.

use prost::encoding::{decode_varint, WireType};

/// Why a protobuf buffer could not be walked. Cheap to build: the hot path returns it by value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated message at byte {offset}")]
    Truncated { offset: usize },
    #[error("invalid varint at byte {offset}")]
    BadVarint { offset: usize },
    #[error("unsupported wire type {wire_type} for field {field} at byte {offset}")]
    BadWireType { field: u32, wire_type: u64, offset: usize },
    #[error("field {field} has wire type {got:?}, expected {expected:?} (byte {offset})")]
    UnexpectedWireType { field: u32, got: WireType, expected: WireType, offset: usize },
    #[error("field {field} is not valid UTF-8 (byte {offset})")]
    InvalidUtf8 { field: u32, offset: usize },
}

/// One field of a message: its number and its payload.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub number: u32,
    pub value: FieldValue<'a>,
    /// Offset of the field's key inside the buffer the reader started on (for error messages).
    pub offset: usize,
}

/// The payload of one field, by wire type.
#[derive(Debug, Clone, Copy)]
pub enum FieldValue<'a> {
    Varint(u64),
    Fixed64(u64),
    /// No remote-write field is fixed32; the walker steps over unknown ones (only tests read it).
    #[allow(dead_code)]
    Fixed32(u32),
    Bytes(&'a [u8]),
}

impl<'a> Field<'a> {
    /// The payload of a length-delimited field (a sub-message, string, bytes or packed repeated).
    #[inline]
    pub fn bytes(&self) -> Result<&'a [u8], WireError> {
        match self.value {
            FieldValue::Bytes(b) => Ok(b),
            other => Err(self.unexpected(other, WireType::LengthDelimited)),
        }
    }

    /// A length-delimited field read as UTF-8 text.
    #[inline]
    pub fn str(&self) -> Result<&'a str, WireError> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|_| WireError::InvalidUtf8 { field: self.number, offset: self.offset })
    }

    /// A `double` field.
    #[inline]
    pub fn f64(&self) -> Result<f64, WireError> {
        match self.value {
            FieldValue::Fixed64(bits) => Ok(f64::from_bits(bits)),
            other => Err(self.unexpected(other, WireType::SixtyFourBit)),
        }
    }

    /// An `int64` field (two's complement varint, not zigzag).
    #[inline]
    pub fn i64(&self) -> Result<i64, WireError> {
        match self.value {
            FieldValue::Varint(v) => Ok(v as i64),
            other => Err(self.unexpected(other, WireType::Varint)),
        }
    }

    /// A `uint32` field.
    #[inline]
    pub fn u32(&self) -> Result<u32, WireError> {
        match self.value {
            FieldValue::Varint(v) => Ok(v as u32),
            other => Err(self.unexpected(other, WireType::Varint)),
        }
    }

    fn unexpected(&self, got: FieldValue<'_>, expected: WireType) -> WireError {
        let got = match got {
            FieldValue::Varint(_) => WireType::Varint,
            FieldValue::Fixed64(_) => WireType::SixtyFourBit,
            FieldValue::Fixed32(_) => WireType::ThirtyTwoBit,
            FieldValue::Bytes(_) => WireType::LengthDelimited,
        };
        WireError::UnexpectedWireType { field: self.number, got, expected, offset: self.offset }
    }
}

/// Iterates the fields of one message buffer. Unknown fields are returned like any other; callers
/// ignore the numbers they do not know, which is how protobuf skips them.
pub struct WireReader<'a> {
    rest: &'a [u8],
    len: usize,
    /// Offset of `rest`'s start inside the outermost buffer, for error positions.
    base: usize,
}

impl<'a> WireReader<'a> {
    /// Walks `buf`, reporting offsets relative to `base`.
    pub fn new(buf: &'a [u8], base: usize) -> Self {
        WireReader { rest: buf, len: buf.len(), base }
    }

    /// Bytes of the buffer consumed so far (the start of the next field, relative to the buffer).
    #[inline]
    pub fn consumed(&self) -> usize {
        self.len - self.rest.len()
    }

    /// Absolute offset of the next unread byte.
    #[inline]
    fn position(&self) -> usize {
        self.base + (self.len - self.rest.len())
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, WireError> {
        let offset = self.position();
        if self.rest.is_empty() {
            return Err(WireError::Truncated { offset });
        }
        decode_varint(&mut self.rest).map_err(|_| WireError::BadVarint { offset })
    }

    /// The next field, or `None` at the end of the buffer.
    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Field<'a>, WireError>> {
        if self.rest.is_empty() {
            return None;
        }
        Some(self.read_field())
    }

    fn read_field(&mut self) -> Result<Field<'a>, WireError> {
        let offset = self.position();
        let key = self.varint()?;
        let number = (key >> 3) as u32;
        let value = match key & 7 {
            0 => FieldValue::Varint(self.varint()?),
            1 => FieldValue::Fixed64(u64::from_le_bytes(self.take_array::<8>(offset)?)),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| WireError::Truncated { offset })?;
                if len > self.rest.len() {
                    return Err(WireError::Truncated { offset });
                }
                let (payload, rest) = self.rest.split_at(len);
                self.rest = rest;
                FieldValue::Bytes(payload)
            }
            5 => FieldValue::Fixed32(u32::from_le_bytes(self.take_array::<4>(offset)?)),
            wire_type => return Err(WireError::BadWireType { field: number, wire_type, offset }),
        };
        if number == 0 {
            return Err(WireError::BadWireType { field: 0, wire_type: key & 7, offset });
        }
        Ok(Field { number, value, offset })
    }

    #[inline]
    fn take_array<const N: usize>(&mut self, offset: usize) -> Result<[u8; N], WireError> {
        if self.rest.len() < N {
            return Err(WireError::Truncated { offset });
        }
        let (head, rest) = self.rest.split_at(N);
        self.rest = rest;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        Ok(out)
    }
}

/// Decodes a packed repeated varint field (`repeated uint32 x = n [packed]`) into `out`.
pub fn decode_packed_u32(mut payload: &[u8], field: u32, offset: usize, out: &mut Vec<u32>) -> Result<(), WireError> {
    while !payload.is_empty() {
        let v = decode_varint(&mut payload).map_err(|_| WireError::BadVarint { offset })?;
        out.push(u32::try_from(v).map_err(|_| WireError::BadWireType { field, wire_type: 0, offset })?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Probe {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(double, tag = "2")]
        value: f64,
        #[prost(int64, tag = "3")]
        ts: i64,
        #[prost(uint32, repeated, tag = "4")]
        refs: Vec<u32>,
        #[prost(fixed32, tag = "5")]
        small: u32,
    }

    #[test]
    fn walks_every_wire_type_prost_writes() {
        let probe = Probe { name: "up".into(), value: 1.5, ts: -7, refs: vec![1, 300, 70000], small: 9 };
        let buf = probe.encode_to_vec();
        let mut reader = WireReader::new(&buf, 0);
        let mut refs = Vec::new();
        let mut seen = Vec::new();
        while let Some(field) = reader.next() {
            let field = field.unwrap();
            seen.push(field.number);
            match field.number {
                1 => assert_eq!(field.str().unwrap(), "up"),
                2 => assert_eq!(field.f64().unwrap(), 1.5),
                3 => assert_eq!(field.i64().unwrap(), -7),
                4 => decode_packed_u32(field.bytes().unwrap(), 4, field.offset, &mut refs).unwrap(),
                5 => assert!(matches!(field.value, FieldValue::Fixed32(9))),
                n => panic!("unexpected field {n}"),
            }
        }
        assert_eq!(seen, vec![1, 2, 3, 4, 5]);
        assert_eq!(refs, vec![1, 300, 70000]);
    }

    #[test]
    fn truncation_is_an_error_not_a_panic() {
        let probe = Probe { name: "a_long_enough_name".into(), ..Default::default() };
        let buf = probe.encode_to_vec();
        for cut in 1..buf.len() {
            let mut reader = WireReader::new(&buf[..cut], 0);
            let result: Result<Vec<_>, _> = std::iter::from_fn(|| reader.next()).collect();
            assert!(result.is_err(), "cut at {cut} decoded");
        }
    }

    #[test]
    fn wrong_wire_type_is_reported_with_field() {
        // Field 1 as a varint where a string is expected.
        let buf = [0x08, 0x01];
        let field = WireReader::new(&buf, 0).next().unwrap().unwrap();
        assert!(matches!(field.str(), Err(WireError::UnexpectedWireType { field: 1, .. })));
    }
}
