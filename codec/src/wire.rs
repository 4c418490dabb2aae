//! Wire primitives: LEB128 varints, fixed-width integers and a bounds-checked reader.
//!
//! Every read is checked against the end of its input and reports a [`Short`] instead of
//! panicking, so the envelope and frame decoders can turn any cut or garbled input into a
//! typed error.

use bytes::BufMut;

/// Appends `value` as an unsigned LEB128 varint: 7 bits per byte, low bits first, the high
/// bit set on every byte but the last.
#[inline]
pub(crate) fn put_varint(buf: &mut impl BufMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// How many bytes [`put_varint`] writes for `value`.
#[inline]
pub(crate) fn varint_len(value: u64) -> usize {
    // One byte per started group of 7 significant bits; zero still takes one byte.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends a length-prefixed byte string.
#[inline]
pub(crate) fn put_bytes(buf: &mut impl BufMut, bytes: &[u8]) {
    put_varint(buf, bytes.len() as u64);
    buf.put_slice(bytes);
}

/// A read that ran past the end of its input or found a varint that does not fit a `u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Short {
    /// The input ended inside the field.
    Truncated,
    /// A varint longer than ten bytes, or whose tenth byte carries bits beyond 64.
    VarintOverflow,
}

/// A cursor over a byte slice whose every read is bounds-checked.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `input`.
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Reader { input, pos: 0 }
    }

    /// How many bytes have been read.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// How many bytes are left.
    pub(crate) fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    /// Reads one byte.
    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, Short> {
        let byte = *self.input.get(self.pos).ok_or(Short::Truncated)?;
        self.pos += 1;
        Ok(byte)
    }

    /// Reads a little-endian `u64`.
    #[inline]
    pub(crate) fn u64_le(&mut self) -> Result<u64, Short> {
        let bytes = self.take(8)?;
        let mut array = [0; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }

    /// Reads an unsigned LEB128 varint of at most ten bytes.
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64, Short> {
        // The one-byte case is by far the most common (ids, small lengths); keep it short.
        let first = self.u8()?;
        if first < 0x80 {
            return Ok(u64::from(first));
        }
        let mut value = u64::from(first & 0x7f);
        let mut shift = 7;
        loop {
            let byte = self.u8()?;
            if shift == 63 && byte > 1 {
                return Err(Short::VarintOverflow);
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
            shift += 7;
            if shift > 63 {
                return Err(Short::VarintOverflow);
            }
        }
    }

    /// Reads a varint that must fit a `u32`.
    #[inline]
    pub(crate) fn varint_u32(&mut self) -> Result<u32, Short> {
        u32::try_from(self.varint()?).map_err(|_| Short::VarintOverflow)
    }

    /// Takes the next `len` bytes.
    #[inline]
    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], Short> {
        let end = self.pos.checked_add(len).ok_or(Short::Truncated)?;
        let bytes = self.input.get(self.pos..end).ok_or(Short::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Varints round-trip at every width boundary and report their exact length.
    #[test]
    fn varints_round_trip_at_width_boundaries() {
        let mut values = vec![0, 1, u64::MAX, u64::MAX - 1];
        for shift in (7..64).step_by(7) {
            values.extend([(1u64 << shift) - 1, 1u64 << shift]);
        }
        for value in values {
            let mut buf = Vec::new();
            put_varint(&mut buf, value);
            assert_eq!(buf.len(), varint_len(value), "length of {value}");
            let mut reader = Reader::new(&buf);
            assert_eq!(reader.varint(), Ok(value));
            assert_eq!(reader.remaining(), 0);
        }
    }

    /// A varint with bits past 64, or longer than ten bytes, is refused rather than wrapped.
    #[test]
    fn overlong_varints_are_refused() {
        let too_big = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(Reader::new(&too_big).varint(), Err(Short::VarintOverflow));
        let too_long = [0x80; 11];
        assert_eq!(Reader::new(&too_long).varint(), Err(Short::VarintOverflow));
        assert_eq!(Reader::new(&[0x80, 0x80]).varint(), Err(Short::Truncated));
    }

    /// Reads past the end report `Truncated` and leave the position unchanged.
    #[test]
    fn reads_past_the_end_are_truncated() {
        let mut reader = Reader::new(&[1, 2, 3]);
        assert_eq!(reader.u64_le(), Err(Short::Truncated));
        assert_eq!(reader.position(), 0);
        assert_eq!(reader.take(usize::MAX), Err(Short::Truncated));
        assert_eq!(reader.take(3), Ok(&[1, 2, 3][..]));
        assert_eq!(reader.u8(), Err(Short::Truncated));
    }
}
