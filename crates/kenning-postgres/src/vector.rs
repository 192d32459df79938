//! pgvector's `vector` type in its binary wire format: a 16-bit dimension,
//! 16 unused bits, then the values as big-endian float4.

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// An embedding as a `vector` parameter or column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Vector(pub Vec<f32>);

/// An embedding borrowed as a `vector` parameter (a bulk load writes
/// millions without copying them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct VectorRef<'a>(pub &'a [f32]);

impl ToSql for VectorRef<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let dim = i16::try_from(self.0.len()).map_err(|_| "vector too long for pgvector")?;
        out.reserve(4 + 4 * self.0.len());
        out.put_i16(dim);
        out.put_i16(0);
        for x in self.0 {
            out.put_f32(*x);
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "vector"
    }

    to_sql_checked!();
}

impl ToSql for Vector {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        VectorRef(&self.0).to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "vector"
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Vector {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let (head, values) = raw
            .split_at_checked(4)
            .ok_or("vector shorter than its header")?;
        let dim = u16::from_be_bytes([head[0], head[1]]) as usize;
        if values.len() != dim * 4 {
            return Err(format!("vector of {dim} values has {} bytes", values.len()).into());
        }
        Ok(Vector(
            values
                .chunks_exact(4)
                .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ))
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "vector"
    }
}
