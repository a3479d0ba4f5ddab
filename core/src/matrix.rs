//! Row-major matrix views with a row stride (in elements).

use crate::error::{Error, Result};
use crate::parallel::{Parallel, SharedMut, chunk_count};

/// A read-only row-major view: row `i` is `data[i*stride .. i*stride + cols]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    stride: usize,
}

fn needed_len(rows: usize, cols: usize, stride: usize) -> Option<usize> {
    if rows == 0 {
        return Some(0);
    }
    (rows - 1).checked_mul(stride)?.checked_add(cols)
}

fn check_shape(len: usize, rows: usize, cols: usize, stride: usize) -> Result<()> {
    if cols == 0 {
        return Err(Error::NoDimensions);
    }
    if stride < cols {
        return Err(Error::InvalidParameter {
            name: "row stride",
            reason: "smaller than the column count",
        });
    }
    let need = needed_len(rows, cols, stride).ok_or(Error::InvalidParameter {
        name: "shape",
        reason: "rows * stride overflows",
    })?;
    if len < need {
        return Err(Error::Shape {
            what: "matrix data",
            expected: need,
            got: len,
        });
    }
    Ok(())
}

impl<'a> MatRef<'a> {
    pub fn new(data: &'a [f32], rows: usize, cols: usize, stride: usize) -> Result<Self> {
        check_shape(data.len(), rows, cols, stride)?;
        Ok(Self {
            data,
            rows,
            cols,
            stride,
        })
    }

    /// A densely packed matrix (stride = cols).
    pub fn dense(data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        if cols != 0 && data.len() != rows * cols {
            return Err(Error::Shape {
                what: "matrix data",
                expected: rows * cols,
                got: data.len(),
            });
        }
        Self::new(data, rows, cols, cols)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn stride(&self) -> usize {
        self.stride
    }

    #[inline]
    pub fn row(&self, i: usize) -> &'a [f32] {
        let s = i * self.stride;
        &self.data[s..s + self.cols]
    }

    /// Every `step`-th row (rows 0, step, 2·step, …) as a view.
    pub fn every_nth_row(&self, step: usize) -> MatRef<'a> {
        let step = step.max(1);
        MatRef {
            data: self.data,
            rows: self.rows.div_ceil(step),
            cols: self.cols,
            stride: self.stride * step,
        }
    }

    /// Rows `start .. start + count` as a view.
    pub fn slice_rows(&self, start: usize, count: usize) -> MatRef<'a> {
        assert!(start + count <= self.rows, "rows out of range");
        let s = start * self.stride;
        let end = if count == 0 {
            s
        } else {
            (start + count - 1) * self.stride + self.cols
        };
        MatRef {
            data: &self.data[s..end],
            rows: count,
            cols: self.cols,
            stride: self.stride,
        }
    }

    /// The first non-finite entry, if any, as an error; and values whose squared distances
    /// overflow single precision (the largest |value| above √(f32::MAX / 4D)) or underflow
    /// it (every value below 1e-18 in magnitude, not all zero).
    pub fn check_values(&self) -> Result<()> {
        let mut largest = 0.0f32;
        for i in 0..self.rows {
            let row = self.row(i);
            let (finite, row_largest) = finite_and_largest(row);
            if !finite {
                let col = row.iter().position(|v| !v.is_finite()).unwrap_or(0);
                return Err(Error::NonFinite { row: i, col });
            }
            largest = largest.max(row_largest);
        }
        let limit = libm::sqrtf(f32::MAX / (4.0 * self.cols.max(1) as f32));
        if largest > limit || (largest > 0.0 && largest < SMALLEST_SCALE) {
            return Err(Error::Scale { largest, limit });
        }
        Ok(())
    }
}

/// Whether every value of `v` is finite, and the largest magnitude, in one pass of eight
/// lanes (v − v is 0 for a finite value and NaN otherwise).
fn finite_and_largest(v: &[f32]) -> (bool, f32) {
    use wide::f32x8;
    let (mut probe, mut largest) = (f32x8::ZERO, f32x8::ZERO);
    let mut chunks = v.chunks_exact(8);
    for c in chunks.by_ref() {
        let x = f32x8::from(<[f32; 8]>::try_from(c).unwrap_or_default());
        #[allow(clippy::eq_op)] // 0 for a finite x, NaN otherwise: the point of the probe
        {
            probe += x - x;
        }
        largest = largest.max(x.abs());
    }
    let mut finite = probe.to_array().iter().all(|p| *p == 0.0);
    let mut top = largest.to_array().iter().fold(0.0f32, |m, &l| m.max(l));
    for &x in chunks.remainder() {
        finite &= x.is_finite();
        top = top.max(x.abs());
    }
    (finite, top)
}

impl MatRef<'_> {
    /// Copies the matrix into `out` (rows × cols bytes, row-major) if every value is a whole
    /// number from 0 to 255, as in 8-bit images, and says whether it was: such rows can be
    /// compared exactly in integers, reading a quarter of the bytes. On `false`, `out` holds
    /// a partial copy.
    pub fn to_bytes(&self, par: &dyn Parallel, out: &mut [u8]) -> bool {
        use core::sync::atomic::{AtomicBool, Ordering};
        const ROWS: usize = 1024;
        let (rows, cols) = (self.rows, self.cols);
        if out.len() != rows * cols {
            return false;
        }
        let bytes = AtomicBool::new(true);
        let shared = SharedMut::new(out);
        par.run(chunk_count(rows, ROWS), &|t| {
            let (first, last) = (t * ROWS, ((t + 1) * ROWS).min(rows));
            // SAFETY: task t alone writes rows first..last.
            let dst = unsafe { shared.range(first * cols, last * cols) };
            for (i, d) in (first..last).zip(dst.chunks_exact_mut(cols.max(1))) {
                if !bytes.load(Ordering::Relaxed) {
                    return;
                }
                for (b, &v) in d.iter_mut().zip(self.row(i)) {
                    // `as` saturates and maps NaN to 0, so the round trip tells.
                    *b = v as u8;
                    if *b as f32 != v {
                        bytes.store(false, Ordering::Relaxed);
                        return;
                    }
                }
            }
        });
        bytes.load(Ordering::Relaxed)
    }
}

/// Below this largest magnitude, squared distances underflow single precision.
pub const SMALLEST_SCALE: f32 = 1e-18;

/// A mutable row-major view with a row stride.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    stride: usize,
}

impl<'a> MatMut<'a> {
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, stride: usize) -> Result<Self> {
        check_shape(data.len(), rows, cols, stride)?;
        Ok(Self {
            data,
            rows,
            cols,
            stride,
        })
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    #[inline]
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        let s = i * self.stride;
        &mut self.data[s..s + self.cols]
    }
    pub fn as_ref(&self) -> MatRef<'_> {
        MatRef {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            stride: self.stride,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_rows_and_shape_errors() {
        let d = [1.0, 2.0, 9.0, 3.0, 4.0];
        let m = MatRef::new(&d, 2, 2, 3).unwrap();
        assert_eq!(m.row(1), &[3.0, 4.0]);
        assert!(matches!(MatRef::new(&d, 3, 2, 3), Err(Error::Shape { .. })));
        assert!(matches!(MatRef::new(&d, 2, 0, 3), Err(Error::NoDimensions)));
        assert!(matches!(
            MatRef::new(&d, 2, 3, 2),
            Err(Error::InvalidParameter { .. })
        ));
        let bad = [1.0, f32::NAN];
        assert_eq!(
            MatRef::dense(&bad, 1, 2).unwrap().check_values(),
            Err(Error::NonFinite { row: 0, col: 1 })
        );
        // In the eight-lane part of a row and in its tail, NaN and both infinities.
        for col in [0, 5, 7, 8, 11, 16, 18] {
            for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut row = vec![1.0f32; 19 * 2];
                row[19 + col] = v;
                assert_eq!(
                    MatRef::dense(&row, 2, 19).unwrap().check_values(),
                    Err(Error::NonFinite { row: 1, col }),
                    "{v} at column {col}"
                );
            }
        }
        let (finite, largest) =
            finite_and_largest(&[1.0, -7.5, 3.0, 0.0, 2.0, 1.0, 1.0, 1.0, -9.0]);
        assert!(finite);
        assert_eq!(largest, 9.0);
    }
}
