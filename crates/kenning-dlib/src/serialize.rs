//! A reader for dlib's binary serialization (`dlib/serialize.h`), over a
//! byte slice.
//!
//! The format has no header, alignment or checksum: values follow each other
//! and the reader must know the schema. Every read checks the remaining
//! length first, and every count is checked against the bytes left before
//! anything is allocated, so malformed files give a [`DlibError`] rather
//! than a panic or a huge allocation.

use crate::DlibError;

/// Smallest encoding of one dlib integer (control byte + 1 magnitude byte).
pub const MIN_INT_BYTES: usize = 2;
/// Smallest encoding of one dlib float (two integers: mantissa, exponent).
pub const MIN_FLOAT_BYTES: usize = 2 * MIN_INT_BYTES;

/// A row-major matrix of f32 read from a `dlib::matrix<float>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// `rows * cols` values, row-major.
    pub data: Vec<f32>,
}

/// A DNN parameter tensor (`resizable_tensor`), NCHW.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// (num_samples, k, nr, nc).
    pub shape: [usize; 4],
    /// The values, row-major over (n, k, r, c).
    pub data: Vec<f32>,
}

/// Cursor over dlib-serialized bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Current byte offset.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every byte has been consumed.
    pub fn is_eof(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Errors with [`DlibError::TrailingBytes`] unless at the end.
    pub fn expect_eof(&self) -> Result<(), DlibError> {
        if self.is_eof() {
            Ok(())
        } else {
            Err(DlibError::TrailingBytes {
                offset: self.pos,
                count: self.remaining(),
            })
        }
    }

    /// Takes the next `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DlibError> {
        if n > self.remaining() {
            return Err(DlibError::Truncated {
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, DlibError> {
        Ok(self.bytes(1)?[0])
    }

    /// Reads one integer as (negative, magnitude).
    ///
    /// Control byte: bit 7 = sign, bits 0-3 = number of little-endian
    /// magnitude bytes (1..=8); bits 4-6 must be zero (dlib uses them to
    /// recognise its old ASCII float format, never valid for an integer).
    fn int_parts(&mut self) -> Result<(bool, u64), DlibError> {
        let offset = self.pos;
        let control = self.byte()?;
        let n = usize::from(control & 0x0f);
        if control & 0x70 != 0 || n == 0 || n > 8 {
            return Err(DlibError::BadInteger { offset, control });
        }
        let mag = self
            .bytes(n)?
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        Ok((control & 0x80 != 0, mag))
    }

    /// An unsigned integer (any C++ unsigned type).
    pub fn read_u64(&mut self) -> Result<u64, DlibError> {
        let offset = self.pos;
        match self.int_parts()? {
            (false, m) => Ok(m),
            (true, _) => Err(DlibError::Invalid {
                offset,
                what: "negative value for an unsigned integer".into(),
            }),
        }
    }

    /// A signed integer (any C++ signed type).
    pub fn read_i64(&mut self) -> Result<i64, DlibError> {
        let offset = self.pos;
        let (neg, m) = self.int_parts()?;
        let v = if neg {
            0i64.checked_sub_unsigned(m)
        } else {
            i64::try_from(m).ok()
        };
        v.ok_or(DlibError::Invalid {
            offset,
            what: "integer out of the i64 range".into(),
        })
    }

    /// An unsigned integer that must fit in `usize`.
    pub fn read_usize(&mut self) -> Result<usize, DlibError> {
        let offset = self.pos;
        usize::try_from(self.read_u64()?).map_err(|_| DlibError::Invalid {
            offset,
            what: "size out of range".into(),
        })
    }

    /// A non-negative signed integer as `usize` (dlib stores sizes as `long`).
    pub fn read_size_signed(&mut self) -> Result<usize, DlibError> {
        let offset = self.pos;
        usize::try_from(self.read_i64()?).map_err(|_| DlibError::Invalid {
            offset,
            what: "negative size".into(),
        })
    }

    /// A bool: ASCII '1' or '0'.
    pub fn read_bool(&mut self) -> Result<bool, DlibError> {
        let offset = self.pos;
        match self.byte()? {
            b'1' => Ok(true),
            b'0' => Ok(false),
            _ => Err(DlibError::Invalid {
                offset,
                what: "bool that is neither '0' nor '1'".into(),
            }),
        }
    }

    /// A float or double as (mantissa, exponent); value = m * 2^e, with the
    /// special exponents 32000 = +inf, 32001 = -inf, 32002 = NaN.
    ///
    /// The mantissa comes first, despite the comment in dlib's header.
    fn float_parts(&mut self) -> Result<(i64, i16), DlibError> {
        let offset = self.pos;
        // Bits 4-6 set in the first control byte mean dlib's old ASCII float
        // format, which no supported model file uses.
        if self.buf.get(self.pos).is_some_and(|&c| c & 0x70 != 0) {
            return Err(DlibError::Invalid {
                offset,
                what: "old-format (ASCII) float".into(),
            });
        }
        let m = self.read_i64()?;
        let e_off = self.pos;
        let e = self.read_i64()?;
        let e = i16::try_from(e).map_err(|_| DlibError::Invalid {
            offset: e_off,
            what: "float exponent out of range".into(),
        })?;
        Ok((m, e))
    }

    /// A double.
    pub fn read_f64(&mut self) -> Result<f64, DlibError> {
        let (m, e) = self.float_parts()?;
        Ok(match e {
            32000 => f64::INFINITY,
            32001 => f64::NEG_INFINITY,
            32002 => f64::NAN,
            _ => ldexp(m as f64, i32::from(e)),
        })
    }

    /// A float. dlib converts the mantissa to the target type, then scales
    /// it; every float written from an f32 has a mantissa of at most 24
    /// bits, so this is exact.
    pub fn read_f32(&mut self) -> Result<f32, DlibError> {
        let (m, e) = self.float_parts()?;
        Ok(match e {
            32000 => f32::INFINITY,
            32001 => f32::NEG_INFINITY,
            32002 => f32::NAN,
            _ => ldexp(f64::from(m as f32), i32::from(e)) as f32,
        })
    }

    /// A `std::string`: length, then raw bytes (must be UTF-8 here).
    pub fn read_string(&mut self) -> Result<String, DlibError> {
        let n = self.read_usize()?;
        let offset = self.pos;
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| DlibError::Invalid {
            offset,
            what: "string is not UTF-8".into(),
        })
    }

    /// A vector/array element count, checked against the bytes left given
    /// that each element takes at least `min_elem_bytes`.
    pub fn read_count(&mut self, min_elem_bytes: usize) -> Result<usize, DlibError> {
        let offset = self.pos;
        let n = self.read_u64()?;
        let need = n.saturating_mul(min_elem_bytes.max(1) as u64);
        if need > self.remaining() as u64 {
            return Err(DlibError::CountTooLarge {
                offset,
                count: n,
                remaining: self.remaining(),
            });
        }
        Ok(n as usize)
    }

    /// A `std::vector<T>` whose elements are read by `f`, each taking at
    /// least `min_elem_bytes`.
    pub fn read_vec<T>(
        &mut self,
        min_elem_bytes: usize,
        mut f: impl FnMut(&mut Self) -> Result<T, DlibError>,
    ) -> Result<Vec<T>, DlibError> {
        let n = self.read_count(min_elem_bytes)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(f(self)?);
        }
        Ok(v)
    }

    /// A `dlib::matrix<float>`: -nr, -nc (positive in the old format), then
    /// the elements row-major.
    pub fn read_matrix_f32(&mut self) -> Result<Matrix, DlibError> {
        let offset = self.pos;
        let nr = self.read_i64()?.unsigned_abs();
        let nc = self.read_i64()?.unsigned_abs();
        let n = nr.saturating_mul(nc);
        if n.saturating_mul(MIN_FLOAT_BYTES as u64) > self.remaining() as u64 {
            return Err(DlibError::CountTooLarge {
                offset,
                count: n,
                remaining: self.remaining(),
            });
        }
        let data = (0..n)
            .map(|_| self.read_f32())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Matrix {
            rows: nr as usize,
            cols: nc as usize,
            data,
        })
    }

    /// A `dlib::vector<float,2>`: x then y.
    pub fn read_point_f32(&mut self) -> Result<[f32; 2], DlibError> {
        Ok([self.read_f32()?, self.read_f32()?])
    }

    /// Expects the integer `expected` (a version number), naming `what`.
    pub fn expect_version(&mut self, expected: i64, what: &'static str) -> Result<(), DlibError> {
        let offset = self.pos;
        let found = self.read_i64()?;
        if found == expected {
            Ok(())
        } else {
            Err(DlibError::UnexpectedVersion {
                offset,
                what,
                expected,
                found,
            })
        }
    }

    /// Reads four non-negative integers (a tensor or alias tensor shape).
    fn read_shape4(&mut self) -> Result<[usize; 4], DlibError> {
        Ok([
            self.read_size_signed()?,
            self.read_size_signed()?,
            self.read_size_signed()?,
            self.read_size_signed()?,
        ])
    }

    /// A `resizable_tensor`: version 2, (n, k, nr, nc), then raw
    /// little-endian f32 values (not dlib's float encoding).
    pub fn read_tensor(&mut self) -> Result<Tensor, DlibError> {
        self.expect_version(2, "tensor")?;
        let offset = self.pos;
        let shape = self.read_shape4()?;
        let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let bytes = n.and_then(|n| n.checked_mul(4));
        let Some(bytes) = bytes.filter(|&b| b <= self.remaining()) else {
            return Err(DlibError::CountTooLarge {
                offset,
                count: n.map_or(u64::MAX, |n| n as u64),
                remaining: self.remaining(),
            });
        };
        let data = self
            .bytes(bytes)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Tensor { shape, data })
    }

    /// An `alias_tensor`: version 1 and (n, k, nr, nc); no data or offset.
    pub fn read_alias_tensor(&mut self) -> Result<[usize; 4], DlibError> {
        self.expect_version(1, "alias_tensor")?;
        self.read_shape4()
    }
}

/// x * 2^e without intermediate overflow or underflow of the power.
fn ldexp(mut x: f64, mut e: i32) -> f64 {
    // 2^±1000 is representable; stepping keeps the power finite and non-zero.
    while e > 1000 {
        x *= 2f64.powi(1000);
        e -= 1000;
    }
    while e < -1000 {
        x *= 2f64.powi(-1000);
        e += 1000;
    }
    x * 2f64.powi(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(b: &[u8]) -> Reader<'_> {
        Reader::new(b)
    }

    #[test]
    fn integers_from_the_notes() {
        assert_eq!(r(&[0x01, 0x00]).read_i64().unwrap(), 0);
        assert_eq!(r(&[0x01, 0x01]).read_u64().unwrap(), 1);
        assert_eq!(r(&[0x81, 0x0a]).read_i64().unwrap(), -10);
        assert_eq!(r(&[0x02, 0xf4, 0x01]).read_u64().unwrap(), 500);
        assert_eq!(r(&[0x01, 0x96]).read_u64().unwrap(), 150);
        assert_eq!(r(&[0x02, 0x80, 0x12]).read_u64().unwrap(), 4736);
        assert_eq!(
            r(&[0x88, 0, 0, 0, 0, 0, 0, 0, 0x80]).read_i64().unwrap(),
            i64::MIN
        );
    }

    #[test]
    fn malformed_integers_are_errors() {
        // N = 0, N > 8, bits 4-6 set, truncated magnitude, empty input,
        // negative for unsigned, magnitude beyond i64.
        assert!(matches!(
            r(&[0x00]).read_i64(),
            Err(DlibError::BadInteger { .. })
        ));
        assert!(matches!(
            r(&[0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0]).read_i64(),
            Err(DlibError::BadInteger { .. })
        ));
        assert!(matches!(
            r(&[0x11, 0x00]).read_i64(),
            Err(DlibError::BadInteger { .. })
        ));
        assert!(matches!(
            r(&[0x02, 0xf4]).read_i64(),
            Err(DlibError::Truncated { .. })
        ));
        assert!(matches!(
            r(&[]).read_i64(),
            Err(DlibError::Truncated { .. })
        ));
        assert!(matches!(
            r(&[0x81, 0x0a]).read_u64(),
            Err(DlibError::Invalid { .. })
        ));
        assert!(r(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
            .read_i64()
            .is_err());
    }

    #[test]
    fn floats_from_the_notes() {
        // Mantissa first: 0xC6B86E * 2^-24.
        let v = r(&[0x03, 0x6e, 0xb8, 0xc6, 0x81, 0x18]).read_f32().unwrap();
        assert!((v - 0.776_251_7).abs() < 1e-7);
        assert_eq!(v, 0xC6B86E as f32 / 16_777_216.0);
        assert_eq!(r(&[0x01, 0x10, 0x81, 0x04]).read_f64().unwrap(), 1.0);
        assert_eq!(r(&[0x01, 0x00, 0x01, 0x0b]).read_f64().unwrap(), 0.0);
        // First split threshold of the shape predictor.
        let t = r(&[0x83, 0x0c, 0x90, 0xb2, 0x81, 0x18]).read_f32().unwrap();
        assert!((t + 0.69751).abs() < 1e-5, "{t}");
        assert_eq!(
            r(&[0x01, 0x01, 0x02, 0x00, 0x7d]).read_f64().unwrap(),
            f64::INFINITY
        );
        assert!(r(&[0x01, 0x01, 0x02, 0x02, 0x7d])
            .read_f32()
            .unwrap()
            .is_nan());
        // Old ASCII format marker and an exponent beyond i16.
        assert!(r(&[0x31, 0x00]).read_f32().is_err());
        assert!(r(&[0x01, 0x01, 0x03, 0x00, 0x00, 0x01]).read_f32().is_err());
        assert!(r(&[0x03, 0x6e, 0xb8, 0xc6]).read_f32().is_err());
    }

    #[test]
    fn bools_strings_vectors_matrices() {
        assert!(r(b"1").read_bool().unwrap());
        assert!(!r(b"0").read_bool().unwrap());
        assert!(r(b"x").read_bool().is_err());
        assert_eq!(
            r(&[0x01, 0x05, b'c', b'o', b'n', b'_', b'4'])
                .read_string()
                .unwrap(),
            "con_4"
        );
        assert!(r(&[0x01, 0x05, b'c', b'o']).read_string().is_err());
        let v = r(&[0x01, 0x02, 0x01, 0x07, 0x01, 0x08])
            .read_vec(MIN_INT_BYTES, |r| r.read_u64())
            .unwrap();
        assert_eq!(v, vec![7, 8]);
        // A count far beyond the remaining bytes fails before allocating.
        assert!(matches!(
            r(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
                .read_vec(MIN_INT_BYTES, |r| r.read_u64()),
            Err(DlibError::CountTooLarge { .. })
        ));
        // 2x1 matrix (negated dims, new format) of 1.0 and 0.0.
        let m = r(&[
            0x81, 0x02, 0x81, 0x01, 0x01, 0x10, 0x81, 0x04, 0x01, 0x00, 0x01, 0x0b,
        ])
        .read_matrix_f32()
        .unwrap();
        assert_eq!((m.rows, m.cols, m.data), (2, 1, vec![1.0, 0.0]));
        assert!(
            r(&[0x84, 0xff, 0xff, 0xff, 0x7f, 0x84, 0xff, 0xff, 0xff, 0x7f])
                .read_matrix_f32()
                .is_err()
        );
    }

    #[test]
    fn tensors() {
        let empty = r(&[0x01, 0x02, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00])
            .read_tensor()
            .unwrap();
        assert_eq!(empty.shape, [0, 0, 0, 0]);
        let mut b = vec![0x01, 0x02, 0x01, 0x01, 0x01, 0x02, 0x01, 0x01, 0x01, 0x01];
        b.extend_from_slice(&1.5f32.to_le_bytes());
        b.extend_from_slice(&(-2.0f32).to_le_bytes());
        let t = r(&b).read_tensor().unwrap();
        assert_eq!((t.shape, t.data), ([1, 2, 1, 1], vec![1.5, -2.0]));
        assert!(r(&b[..b.len() - 1]).read_tensor().is_err());
        // Wrong version; huge dims.
        assert!(r(&[0x01, 0x03]).read_tensor().is_err());
        assert!(r(&[
            0x01, 0x02, 0x04, 0xff, 0xff, 0xff, 0x7f, 0x04, 0xff, 0xff, 0xff, 0x7f, 0x01, 0x02,
            0x01, 0x02
        ])
        .read_tensor()
        .is_err());
        assert_eq!(
            r(&[0x01, 0x01, 0x01, 0x01, 0x01, 0x20, 0x01, 0x01, 0x01, 0x01])
                .read_alias_tensor()
                .unwrap(),
            [1, 32, 1, 1]
        );
    }
}
