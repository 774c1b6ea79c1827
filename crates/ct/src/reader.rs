//! A bounds-checked cursor over the TLS presentation language structures CT uses (big-endian integers,
//! length-prefixed vectors). Every error names the field and its absolute byte offset in the whole input,
//! including inside nested vectors, so a bad log entry can be located exactly.

use super::entry::{Buffer, DecodeError, DecodeErrorKind};

/// Reads `buf[pos..end]`; `pos <= end <= buf.len()` always holds.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    buffer: Buffer,
}

impl<'a> Reader<'a> {
    /// A reader over the whole of `buf`, which is the input named `buffer` in errors.
    pub(crate) fn new(buf: &'a [u8], buffer: Buffer) -> Self {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
            buffer,
        }
    }

    /// Absolute offset of the next byte to read.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// True when everything up to this reader's end has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// An error about `field` at absolute offset `offset`.
    pub(crate) fn error(
        &self,
        field: &'static str,
        offset: usize,
        kind: DecodeErrorKind,
    ) -> DecodeError {
        DecodeError {
            buffer: self.buffer,
            field,
            offset,
            kind,
        }
    }

    /// The bytes already read since absolute offset `start`.
    pub(crate) fn read_since(
        &self,
        start: usize,
        field: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        self.buf.get(start..self.pos).ok_or_else(|| {
            let kind = DecodeErrorKind::Truncated {
                needed: self.pos.saturating_sub(start),
                available: 0,
            };
            self.error(field, start, kind)
        })
    }

    /// The next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let available = self.remaining();
        let truncated = || {
            let kind = DecodeErrorKind::Truncated {
                needed: n,
                available,
            };
            self.error(field, self.pos, kind)
        };
        if n > available {
            return Err(truncated());
        }
        let bytes = self.buf.get(self.pos..self.pos + n).ok_or_else(truncated)?;
        self.pos += n;
        Ok(bytes)
    }

    /// The next `N` bytes as an array reference.
    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<&'a [u8; N], DecodeError> {
        let at = self.pos;
        let available = self.remaining();
        self.bytes(N, field)?.try_into().map_err(|_| {
            let kind = DecodeErrorKind::Truncated {
                needed: N,
                available,
            };
            self.error(field, at, kind)
        })
    }

    /// A big-endian unsigned integer of `width` (at most 8) bytes.
    fn uint(&mut self, width: usize, field: &'static str) -> Result<u64, DecodeError> {
        let bytes = self.bytes(width, field)?;
        Ok(bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b)))
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(*self.array::<2>(field)?))
    }

    pub(crate) fn u40(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.uint(5, field)
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(*self.array::<8>(field)?))
    }

    /// A vector with a `len_width`-byte length prefix, as a reader confined to its contents
    /// (so nested lengths are checked against the vector's declared end, not the input's).
    pub(crate) fn sub(
        &mut self,
        len_width: usize,
        field: &'static str,
    ) -> Result<Reader<'a>, DecodeError> {
        let at = self.pos;
        let declared = self.uint(len_width, field)?;
        let available = self.remaining();
        let len = usize::try_from(declared)
            .ok()
            .filter(|&len| len <= available)
            .ok_or_else(|| {
                self.error(
                    field,
                    at,
                    DecodeErrorKind::LengthPastEnd {
                        declared,
                        available,
                    },
                )
            })?;
        let inner = Reader {
            buf: self.buf,
            pos: self.pos,
            end: self.pos + len,
            buffer: self.buffer,
        };
        self.pos += len;
        Ok(inner)
    }

    /// The contents of a vector with a `len_width`-byte length prefix.
    pub(crate) fn vector(
        &mut self,
        len_width: usize,
        field: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        let mut inner = self.sub(len_width, field)?;
        let len = inner.remaining();
        inner.bytes(len, field)
    }

    /// An `ASN.1Cert` (`opaque<1..2^24-1>`): a non-empty DER blob with a 3-byte length.
    pub(crate) fn certificate(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let der = self.vector(3, field)?;
        if der.is_empty() {
            return Err(self.error(field, at, DecodeErrorKind::EmptyCertificate));
        }
        Ok(der)
    }

    /// Checks that nothing is left after the structure named `field`.
    pub(crate) fn finish(&self, field: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(self.error(field, self.pos, DecodeErrorKind::TrailingBytes { count })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_big_endian() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5, 6, 7], Buffer::DataTile);
        assert_eq!(r.u16("a"), Ok(0x0102));
        assert_eq!(r.u40("b"), Ok(0x03_0405_0607));
        assert!(r.is_empty());
    }

    #[test]
    fn nested_vectors_report_absolute_offsets_and_their_own_end() {
        // outer vector (u8 len 4) = [inner u16 len 5, 0xaa, 0xbb], then 2 bytes outside it.
        let mut r = Reader::new(&[4, 0, 5, 0xaa, 0xbb, 0xcc, 0xdd], Buffer::ExtraData);
        let mut outer = r.sub(1, "outer").expect("outer fits");
        let e = outer.vector(2, "inner").expect_err("inner runs past outer");
        assert_eq!(
            (e.buffer, e.field, e.offset),
            (Buffer::ExtraData, "inner", 1)
        );
        assert_eq!(
            e.kind,
            DecodeErrorKind::LengthPastEnd {
                declared: 5,
                available: 2
            }
        );
        assert_eq!(r.position(), 5);
        assert_eq!(
            r.finish("all").map_err(|e| (e.offset, e.kind)),
            Err((5, DecodeErrorKind::TrailingBytes { count: 2 }))
        );
    }
}
