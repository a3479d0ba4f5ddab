//! Carving typed scratch slices out of one caller-provided byte buffer.
//!
//! A routine states its needs with `ScratchSize` (an upper bound that includes alignment
//! padding); the caller allocates that many bytes once; the routine carves them with `Scratch`.

use crate::error::{Error, Result};

/// Plain-old-data types that any bit pattern makes valid.
/// # Safety
/// Implementors must be valid for every bit pattern, including all zeros.
pub unsafe trait Pod: Copy + 'static {}
unsafe impl Pod for u8 {}
unsafe impl Pod for u16 {}
unsafe impl Pod for i16 {}
unsafe impl Pod for u32 {}
unsafe impl Pod for u64 {}
unsafe impl Pod for usize {}
unsafe impl Pod for f32 {}
unsafe impl Pod for f64 {}

fn unsafe_zero<T: Pod>() -> T {
    // SAFETY: Pod types are valid for the all-zeros bit pattern.
    unsafe { core::mem::zeroed() }
}

/// Accumulates the bytes a sequence of `take` calls needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScratchSize {
    bytes: usize,
}

impl ScratchSize {
    pub const fn new() -> Self {
        ScratchSize { bytes: 0 }
    }
    pub fn plus<T: Pod>(self, len: usize) -> Self {
        let bytes = self.bytes + (core::mem::align_of::<T>() - 1) + len * core::mem::size_of::<T>();
        ScratchSize { bytes }
    }
    pub fn and(self, other: ScratchSize) -> Self {
        ScratchSize {
            bytes: self.bytes + other.bytes,
        }
    }
    pub fn max(self, other: ScratchSize) -> Self {
        ScratchSize {
            bytes: self.bytes.max(other.bytes),
        }
    }
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Hands out typed, zeroed sub-slices of a byte buffer.
pub struct Scratch<'a> {
    buf: &'a mut [u8],
}

impl<'a> Scratch<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Scratch { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The bytes not yet handed out, reborrowed (for a later stage to carve again).
    pub fn rest_mut(&mut self) -> &mut [u8] {
        self.buf
    }

    /// The bytes not yet handed out, for as long as the buffer lives.
    pub fn into_rest(self) -> &'a mut [u8] {
        self.buf
    }

    /// The next `len` elements of `T`, zero-filled.
    pub fn take<T: Pod>(&mut self, len: usize, what: &'static str) -> Result<&'a mut [T]> {
        let s = self.take_as_is::<T>(len, what)?;
        s.fill(unsafe_zero::<T>());
        Ok(s)
    }

    /// The next `len` elements of `T` with whatever the buffer held (for state a routine
    /// keeps between calls on the same scratch, and for buffers it overwrites anyway).
    pub fn take_as_is<T: Pod>(&mut self, len: usize, what: &'static str) -> Result<&'a mut [T]> {
        let buf = core::mem::take(&mut self.buf);
        let offset = buf.as_ptr().align_offset(core::mem::align_of::<T>());
        let bytes = len * core::mem::size_of::<T>();
        if offset == usize::MAX || buf.len() < offset + bytes {
            let got = buf.len();
            self.buf = buf;
            return Err(Error::BufferTooSmall {
                what,
                needed: offset.saturating_add(bytes),
                got,
            });
        }
        let (head, rest) = buf.split_at_mut(offset + bytes);
        self.buf = rest;
        let head = &mut head[offset..];
        // SAFETY: `head` is aligned for T, holds exactly len * size_of::<T>() bytes, and T is
        // Pod, so the zeroed bytes are a valid [T]. The borrow moves into the result.
        Ok(unsafe { core::slice::from_raw_parts_mut(head.as_mut_ptr().cast::<T>(), len) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carved_slices_fit_the_stated_size() {
        let size = ScratchSize::new()
            .plus::<u8>(3)
            .plus::<f64>(5)
            .plus::<u32>(7);
        let mut buf = vec![0xAAu8; size.bytes()];
        // Misalign on purpose: the bound must still hold.
        let mut s = Scratch::new(&mut buf[1..]);
        let _ = s.take::<u8>(2, "a").unwrap();
        let b = s.take::<f64>(5, "b").unwrap();
        assert_eq!(b, &[0.0; 5]);
        let c = s.take::<u32>(7, "c").unwrap();
        assert_eq!(c.len(), 7);
        assert!(matches!(
            s.take::<f64>(1000, "d"),
            Err(Error::BufferTooSmall { what: "d", .. })
        ));
    }
}
