//! Protocol-buffer wire format: a writer that appends fields to a byte
//! buffer and a reader that walks the fields of one message without
//! interpreting them.
//!
//! Only what ONNX needs is here: varints, 32/64-bit fixed values and
//! length-delimited fields. Groups (wire types 3 and 4) are deprecated and
//! never used by ONNX, so the reader reports them as errors.

use crate::OnnxError;

/// Wire type of varint fields (int32, int64, uint64, bool, enum).
pub const WIRE_VARINT: u8 = 0;
/// Wire type of 64-bit fixed fields (double, fixed64).
pub const WIRE_FIXED64: u8 = 1;
/// Wire type of length-delimited fields (string, bytes, messages, packed).
pub const WIRE_LEN: u8 = 2;
/// Wire type of 32-bit fixed fields (float, fixed32).
pub const WIRE_FIXED32: u8 = 5;

/// Appends protobuf fields to a growing byte buffer.
#[derive(Debug, Default, Clone)]
pub struct ProtoWriter {
    buf: Vec<u8>,
}

impl ProtoWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The encoded bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The encoded bytes written so far, borrowed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Appends bytes verbatim (used to copy untouched fields through).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn tag(&mut self, field: u32, wire: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire));
    }

    /// A varint field holding an unsigned value.
    pub fn uint64(&mut self, field: u32, v: u64) {
        self.tag(field, WIRE_VARINT);
        self.varint(v);
    }

    /// A varint field holding a signed value (int32/int64/enum; negative
    /// values take ten bytes, as protobuf specifies for non-zigzag ints).
    pub fn int64(&mut self, field: u32, v: i64) {
        self.uint64(field, v as u64);
    }

    /// A 32-bit float field.
    pub fn float(&mut self, field: u32, v: f32) {
        self.tag(field, WIRE_FIXED32);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A length-delimited field with raw bytes.
    pub fn bytes(&mut self, field: u32, v: &[u8]) {
        self.tag(field, WIRE_LEN);
        self.varint(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    /// A string field.
    pub fn string(&mut self, field: u32, v: &str) {
        self.bytes(field, v.as_bytes());
    }

    /// A packed repeated int64 field.
    pub fn packed_int64(&mut self, field: u32, values: &[i64]) {
        let mut inner = ProtoWriter::new();
        for &v in values {
            inner.varint(v as u64);
        }
        self.bytes(field, &inner.buf);
    }

    /// A packed repeated float field.
    pub fn packed_float(&mut self, field: u32, values: &[f32]) {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(field, &bytes);
    }

    /// A nested message field, encoded by `f` into a scratch writer (the
    /// length prefix has to be known before the body is appended).
    pub fn message(&mut self, field: u32, f: impl FnOnce(&mut ProtoWriter)) {
        let mut inner = ProtoWriter::new();
        f(&mut inner);
        self.bytes(field, &inner.buf);
    }
}

/// The value of one field as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WireValue<'a> {
    /// A varint (wire type 0).
    Varint(u64),
    /// A 64-bit fixed value (wire type 1).
    Fixed64(u64),
    /// A length-delimited payload (wire type 2).
    Len(&'a [u8]),
    /// A 32-bit fixed value (wire type 5).
    Fixed32(u32),
}

/// One field of a message: its number, its value and its complete encoded
/// bytes (tag included), so it can be copied through unchanged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WireField<'a> {
    /// Field number.
    pub number: u32,
    /// Decoded value.
    pub value: WireValue<'a>,
    /// The field's bytes, tag through payload.
    pub raw: &'a [u8],
}

impl<'a> WireField<'a> {
    /// The payload of a length-delimited field, or an error naming `what`.
    pub fn len_payload(&self, what: &'static str) -> Result<&'a [u8], OnnxError> {
        match self.value {
            WireValue::Len(b) => Ok(b),
            _ => Err(OnnxError::UnexpectedWireType { field: what }),
        }
    }

    /// The value of a varint field, or an error naming `what`.
    pub fn varint(&self, what: &'static str) -> Result<u64, OnnxError> {
        match self.value {
            WireValue::Varint(v) => Ok(v),
            _ => Err(OnnxError::UnexpectedWireType { field: what }),
        }
    }

    /// A string field's text, or an error naming `what`.
    pub fn string(&self, what: &'static str) -> Result<&'a str, OnnxError> {
        std::str::from_utf8(self.len_payload(what)?)
            .map_err(|_| OnnxError::InvalidUtf8 { field: what })
    }
}

/// Iterates over the fields of one encoded message.
///
/// `base` is the message's offset in the outermost buffer, used only to make
/// error offsets meaningful.
#[derive(Debug, Clone)]
pub struct WireReader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    failed: bool,
}

impl<'a> WireReader<'a> {
    /// A reader over a whole message.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            base: 0,
            failed: false,
        }
    }

    /// A reader over a nested message at absolute offset `base`.
    pub fn with_base(buf: &'a [u8], base: usize) -> Self {
        Self {
            buf,
            pos: 0,
            base,
            failed: false,
        }
    }

    fn read_varint(&mut self) -> Result<u64, OnnxError> {
        let start = self.base + self.pos;
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(OnnxError::Truncated { offset: start });
            };
            self.pos += 1;
            // The tenth byte may only contribute the top bit of a u64.
            if shift == 63 && b > 1 {
                return Err(OnnxError::BadVarint { offset: start });
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(OnnxError::BadVarint { offset: start })
    }

    fn take(&mut self, n: usize, start: usize) -> Result<&'a [u8], OnnxError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(OnnxError::Truncated { offset: start })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn next_field(&mut self) -> Result<WireField<'a>, OnnxError> {
        let begin = self.pos;
        let start = self.base + begin;
        let key = self.read_varint()?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(OnnxError::BadFieldNumber { offset: start });
        }
        let value = match (key & 7) as u8 {
            WIRE_VARINT => WireValue::Varint(self.read_varint()?),
            WIRE_FIXED64 => {
                let b = self.take(8, start)?;
                WireValue::Fixed64(u64::from_le_bytes(b.try_into().expect("8 bytes")))
            }
            WIRE_LEN => {
                let n = self.read_varint()?;
                let n = usize::try_from(n).map_err(|_| OnnxError::Truncated { offset: start })?;
                WireValue::Len(self.take(n, start)?)
            }
            WIRE_FIXED32 => {
                let b = self.take(4, start)?;
                WireValue::Fixed32(u32::from_le_bytes(b.try_into().expect("4 bytes")))
            }
            other => {
                return Err(OnnxError::UnsupportedWireType {
                    wire_type: other,
                    offset: start,
                })
            }
        };
        Ok(WireField {
            number: number as u32,
            value,
            raw: &self.buf[begin..self.pos],
        })
    }

    /// Offset (absolute) of the next unread byte.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }
}

impl<'a> Iterator for WireReader<'a> {
    type Item = Result<WireField<'a>, OnnxError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let r = self.next_field();
        // After an error the position is meaningless; stop iterating.
        self.failed = r.is_err();
        Some(r)
    }
}

/// Decodes a packed (or single) repeated varint payload into i64 values.
pub fn decode_packed_varints(payload: &[u8]) -> Result<Vec<i64>, OnnxError> {
    let mut r = WireReader::new(payload);
    let mut out = Vec::with_capacity(payload.len().min(1 << 16));
    while r.pos < payload.len() {
        out.push(r.read_varint()? as i64);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back_fields() {
        let mut w = ProtoWriter::new();
        w.uint64(1, 300);
        w.int64(2, -1);
        w.string(3, "hi");
        w.float(4, 1.5);
        w.packed_int64(5, &[1, -2, 150]);
        w.message(6, |m| m.uint64(1, 7));
        let bytes = w.into_bytes();
        // 300 is the protobuf documentation's example: 0xac 0x02.
        assert_eq!(&bytes[..3], &[0x08, 0xac, 0x02]);
        let fields: Vec<_> = WireReader::new(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(fields.len(), 6);
        assert_eq!(fields[0].value, WireValue::Varint(300));
        assert_eq!(fields[1].value, WireValue::Varint(u64::MAX));
        assert_eq!(fields[2].string("s").unwrap(), "hi");
        assert_eq!(fields[3].value, WireValue::Fixed32(1.5f32.to_bits()));
        assert_eq!(
            decode_packed_varints(fields[4].len_payload("p").unwrap()).unwrap(),
            vec![1, -2, 150]
        );
        let inner: Vec<_> = WireReader::new(fields[5].len_payload("m").unwrap())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(inner[0].value, WireValue::Varint(7));
        let joined: Vec<u8> = fields.iter().flat_map(|f| f.raw.iter().copied()).collect();
        assert_eq!(joined, bytes);
    }

    #[test]
    fn malformed_input_is_an_error() {
        // Truncated varint, length past the end, group wire type, overlong varint, field 0.
        for bad in [
            &[0x08, 0x80][..],
            &[0x0a, 0x05, 0x01],
            &[0x0b],
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ],
            &[0x00, 0x01],
        ] {
            let r: Result<Vec<_>, _> = WireReader::new(bad).collect();
            assert!(r.is_err(), "{bad:?}");
        }
    }
}
