//! A small FFT for the interpolation repulsion: lengths m = f·2^k with f ∈ {1, 3, 5}.
//! Iterative radix-2 stages on the f interleaved subsequences, then one radix-f stage;
//! split real/imaginary arrays, twiddles in a caller-provided table. Stages with at least
//! eight butterflies per twiddle run through `wide`; a scalar twin does the same arithmetic.

use core::ops::{Add, Mul, Sub};

use crate::cpu;
use crate::error::{Result, ensure, ensure_len};
use crate::parallel::{Parallel, SharedMut, for_row_chunks2};
use crate::scratch::{Scratch, ScratchSize};
use wide::{f32x4, f32x8};

/// The odd factors a transform length may have besides its power of two.
const ODD_FACTORS: [usize; 3] = [1, 3, 5];

/// Precomputed tables for transforms of one size `m`.
#[derive(Clone, Copy)]
pub struct FftPlan<'a> {
    m: usize,
    /// The odd factor f of m = f·2^k.
    odd: usize,
    /// Twiddles for the radix-2 stage with half-size h live at [h, 2h): exp(−2πi j / 2h);
    /// the radix-f stage's exp(−2πi r·k / m) at [r·m/f + k] for 1 ≤ r < f, k < m/f.
    twr: &'a [f32],
    twi: &'a [f32],
    /// exp(−2πi e / f) for e < f.
    root_r: [f32; 5],
    root_i: [f32; 5],
    /// Where input element t goes before the stages: t = f·u + r lands at
    /// r·(m/f) + bit-reverse(u).
    rev: &'a [u32],
    /// Whether the 2-D passes may run compiled for AVX2 (`cpu::on_avx2`; the same bits).
    avx2: bool,
}

/// Lengths of the twiddle (two tables) and permutation tables for size `m`.
pub fn plan_len(m: usize) -> usize {
    m
}

/// Whether `m` is a length [`FftPlan`] supports: a power of two from 2 to 2^24, or 3·2^k or
/// 5·2^k up to `MAX_COLUMN` (those are permuted through a stack buffer).
pub fn supported_len(m: usize) -> bool {
    (2..=1 << 24).contains(&m)
        && ODD_FACTORS
            .iter()
            .any(|&f| m % f == 0 && (m / f).is_power_of_two() && (f == 1 || m <= MAX_COLUMN))
}

/// The smallest supported length at or above `want` (`usize::MAX` above 2^24).
pub fn next_supported_len(want: usize) -> usize {
    (want.max(2)..=1 << 24)
        .find(|&m| supported_len(m))
        .unwrap_or(usize::MAX)
}

impl<'a> FftPlan<'a> {
    /// Fills the tables (each `plan_len(m)` long) and returns the plan.
    pub fn new(
        m: usize,
        twr: &'a mut [f32],
        twi: &'a mut [f32],
        rev: &'a mut [u32],
    ) -> Result<Self> {
        ensure(
            supported_len(m),
            "fft size",
            "must be 2^k (2 to 2^24), or 3·2^k or 5·2^k up to 2048",
        )?;
        ensure_len("fft twiddles", m, twr.len().min(twi.len()))?;
        ensure_len("fft bit reversal", m, rev.len())?;
        let odd = ODD_FACTORS
            .into_iter()
            .find(|&f| m % f == 0 && (m / f).is_power_of_two())
            .unwrap_or(1);
        let big = m / odd;
        let mut h = 1;
        while h < big {
            for j in 0..h {
                let a = -core::f64::consts::PI * j as f64 / h as f64;
                twr[h + j] = libm::cos(a) as f32;
                twi[h + j] = libm::sin(a) as f32;
            }
            h *= 2;
        }
        for r in 1..odd {
            for k in 0..big {
                let a = -2.0 * core::f64::consts::PI * (r * k) as f64 / m as f64;
                twr[r * big + k] = libm::cos(a) as f32;
                twi[r * big + k] = libm::sin(a) as f32;
            }
        }
        let (mut root_r, mut root_i) = ([0.0f32; 5], [0.0f32; 5]);
        for e in 0..odd {
            let a = -2.0 * core::f64::consts::PI * e as f64 / odd as f64;
            root_r[e] = libm::cos(a) as f32;
            root_i[e] = libm::sin(a) as f32;
        }
        let bits = big.trailing_zeros();
        for (t, slot) in rev[..m].iter_mut().enumerate() {
            let (u, r) = (t / odd, t % odd);
            let reversed = if bits == 0 {
                0
            } else {
                (u as u32).reverse_bits() >> (32 - bits)
            };
            *slot = (r * big) as u32 + reversed;
        }
        Ok(FftPlan {
            m,
            odd,
            twr: &twr[..m],
            twi: &twi[..m],
            root_r,
            root_i,
            rev: &rev[..m],
            avx2: cpu::has_avx2_fma(),
        })
    }

    /// The same plan with the 2-D passes kept to the portable build's vector width.
    pub fn portable(self) -> Self {
        FftPlan {
            avx2: false,
            ..self
        }
    }

    pub fn size(&self) -> usize {
        self.m
    }

    /// In-place transform of one sequence. Forward uses exp(−2πi·), inverse exp(+2πi·)
    /// without the 1/m factor.
    pub fn run(&self, re: &mut [f32], im: &mut [f32], inverse: bool) {
        self.transform(re, im, inverse, true)
    }

    /// The scalar twin of [`run`](Self::run).
    pub fn run_scalar(&self, re: &mut [f32], im: &mut [f32], inverse: bool) {
        self.transform(re, im, inverse, false)
    }

    fn transform(&self, re: &mut [f32], im: &mut [f32], inverse: bool, simd: bool) {
        let m = self.m;
        let (re, im) = (&mut re[..m], &mut im[..m]);
        self.permute(re);
        self.permute(im);
        let sign = if inverse { -1.0f32 } else { 1.0 };
        let big = m / self.odd;
        let mut h = 1;
        while h < big {
            let (twr, twi) = (&self.twr[h..2 * h], &self.twi[h..2 * h]);
            for a in (0..m).step_by(2 * h) {
                let (lo_r, hi_r) = re[a..a + 2 * h].split_at_mut(h);
                let (lo_i, hi_i) = im[a..a + 2 * h].split_at_mut(h);
                if simd && h >= 8 {
                    butterflies_simd(lo_r, lo_i, hi_r, hi_i, twr, twi, sign);
                } else {
                    butterflies_scalar(lo_r, lo_i, hi_r, hi_i, twr, twi, sign);
                }
            }
            h *= 2;
        }
        odd_stage(self, re, im, sign, |v| v);
    }

    /// Moves element t to `rev[t]`, in place.
    fn permute(&self, x: &mut [f32]) {
        self.permute_in_place(&mut x[..self.m]);
    }

    /// Moves element t of `x` (m long) to `rev[t]`, with no buffer: bit reversal is its own
    /// inverse, so swapping pairs is enough; mixed lengths follow each cycle once.
    fn permute_in_place<T: Copy>(&self, x: &mut [T]) {
        let m = self.m;
        if self.odd == 1 {
            for i in 0..m {
                let j = self.rev[i] as usize;
                if j > i {
                    x.swap(i, j);
                }
            }
            return;
        }
        // Mixed lengths are at most MAX_COLUMN (checked in `new`).
        let mut moved = [0u64; MAX_COLUMN / 64];
        for start in 0..m {
            if moved[start / 64] >> (start % 64) & 1 == 1 {
                continue;
            }
            let (mut carry, mut t) = (x[start], start);
            loop {
                moved[t / 64] |= 1 << (t % 64);
                let to = self.rev[t] as usize;
                if to == start {
                    x[start] = carry;
                    break;
                }
                (carry, x[to]) = (x[to], carry);
                t = to;
            }
        }
    }
}

/// The last stage for m = f·M with f > 1: the f transforms of length M (of the elements
/// r, r + f, r + 2f, …), stored at [r·M, (r + 1)·M), combine into
/// X[k + q·M] = Σ_r exp(∓2πi r(k + qM)/m) F_r[k]. Generic over one sequence (f32) or many
/// (`Lanes`), so the SIMD path and its scalar twin do the same arithmetic.
#[inline(always)]
fn odd_stage<T>(plan: &FftPlan, re: &mut [T], im: &mut [T], sign: f32, splat: impl Fn(f32) -> T)
where
    T: Copy + Add<Output = T> + Sub<Output = T> + Mul<Output = T>,
{
    let f = plan.odd;
    if f == 1 {
        return;
    }
    let big = plan.m / f;
    for k in 0..big {
        let (mut tr, mut ti) = ([re[k]; 5], [im[k]; 5]);
        for r in 1..f {
            let at = r * big + k;
            let (wr, wi) = (splat(plan.twr[at]), splat(sign * plan.twi[at]));
            let (a, b) = (re[at], im[at]);
            tr[r] = a * wr - b * wi;
            ti[r] = a * wi + b * wr;
        }
        for q in 0..f {
            let (mut sr, mut si) = (tr[0], ti[0]);
            for r in 1..f {
                let e = (r * q) % f;
                if e == 0 {
                    sr = sr + tr[r];
                    si = si + ti[r];
                } else {
                    let (wr, wi) = (splat(plan.root_r[e]), splat(sign * plan.root_i[e]));
                    sr = sr + (tr[r] * wr - ti[r] * wi);
                    si = si + (tr[r] * wi + ti[r] * wr);
                }
            }
            re[q * big + k] = sr;
            im[q * big + k] = si;
        }
    }
}

#[inline(always)]
fn butterflies_scalar(
    lr: &mut [f32],
    li: &mut [f32],
    hr: &mut [f32],
    hi: &mut [f32],
    twr: &[f32],
    twi: &[f32],
    sign: f32,
) {
    for j in 0..lr.len() {
        let (wr, wi) = (twr[j], sign * twi[j]);
        let xr = hr[j] * wr - hi[j] * wi;
        let xi = hr[j] * wi + hi[j] * wr;
        hr[j] = lr[j] - xr;
        hi[j] = li[j] - xi;
        lr[j] += xr;
        li[j] += xi;
    }
}

#[inline(always)]
fn load(s: &[f32]) -> f32x8 {
    f32x8::from(<[f32; 8]>::try_from(&s[..8]).unwrap())
}

#[inline(always)]
fn store(s: &mut [f32], v: f32x8) {
    s[..8].copy_from_slice(&v.to_array());
}

#[inline(always)]
fn butterflies_simd(
    lr: &mut [f32],
    li: &mut [f32],
    hr: &mut [f32],
    hi: &mut [f32],
    twr: &[f32],
    twi: &[f32],
    sign: f32,
) {
    let sg = f32x8::splat(sign);
    for j in (0..lr.len()).step_by(8) {
        let (wr, wi) = (load(&twr[j..]), sg * load(&twi[j..]));
        let (r, i) = (load(&hr[j..]), load(&hi[j..]));
        let xr = r * wr - i * wi;
        let xi = r * wi + i * wr;
        let (a, b) = (load(&lr[j..]), load(&li[j..]));
        store(&mut hr[j..], a - xr);
        store(&mut hi[j..], b - xi);
        store(&mut lr[j..], a + xr);
        store(&mut li[j..], b + xi);
    }
}

/// Largest side of a 2-D transform (column blocks are buffered on the stack).
pub const MAX_COLUMN: usize = 2048;

/// Rows per parallel task in 2-D transforms.
const ROW_TASK: usize = 64;
/// Columns per block of the column pass, one per SIMD lane (see `columns`).
const COLUMN_LANES: usize = 8 * COLUMN_VECTORS;
const COLUMN_VECTORS: usize = 4;
type ColumnLanes = Lanes<COLUMN_VECTORS>;
/// Eight rows of the row pass, one per lane.
type RowLanes = Lanes<1>;

/// 8·K lanes as K eight-lane vectors, so that one block of columns spans whole cache lines.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Lanes<const K: usize>([V8; K]);

/// Eight f32 lanes as a plain array rather than a `wide` vector, whose width is fixed when
/// the crate is compiled: the compiler picks the width per function, two SSE registers in the
/// portable build and one AVX register in the copy `cpu::on_avx2` makes. Lane by lane the
/// same arithmetic either way.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct V8([f32; 8]);

impl V8 {
    const ZERO: Self = V8([0.0; 8]);
    #[inline(always)]
    fn splat(v: f32) -> Self {
        V8([v; 8])
    }
    /// Four lanes from `lo`, four from `hi`.
    #[inline(always)]
    fn join(lo: f32x4, hi: f32x4) -> Self {
        let (a, b) = (lo.to_array(), hi.to_array());
        V8([a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]])
    }
    /// The inverse of `join`.
    #[inline(always)]
    fn halves(self) -> (f32x4, f32x4) {
        let a = self.0;
        (
            f32x4::from([a[0], a[1], a[2], a[3]]),
            f32x4::from([a[4], a[5], a[6], a[7]]),
        )
    }
}

impl Add for V8 {
    type Output = Self;
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        V8(core::array::from_fn(|l| self.0[l] + o.0[l]))
    }
}

impl Sub for V8 {
    type Output = Self;
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        V8(core::array::from_fn(|l| self.0[l] - o.0[l]))
    }
}

impl Mul for V8 {
    type Output = Self;
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        V8(core::array::from_fn(|l| self.0[l] * o.0[l]))
    }
}

// SAFETY: plain floats; every bit pattern is valid.
unsafe impl<const K: usize> crate::scratch::Pod for Lanes<K> {}

impl<const K: usize> Lanes<K> {
    const ZERO: Self = Lanes([V8::ZERO; K]);
    #[inline(always)]
    fn splat(v: f32) -> Self {
        Lanes([V8::splat(v); K])
    }
}

impl<const K: usize> Add for Lanes<K> {
    type Output = Self;
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Lanes(core::array::from_fn(|k| self.0[k] + o.0[k]))
    }
}

impl<const K: usize> Sub for Lanes<K> {
    type Output = Self;
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        Lanes(core::array::from_fn(|k| self.0[k] - o.0[k]))
    }
}

impl<const K: usize> Mul for Lanes<K> {
    type Output = Self;
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        Lanes(core::array::from_fn(|k| self.0[k] * o.0[k]))
    }
}

/// Tasks of the column pass, each with its own block buffer in the scratch.
const COLUMN_TASKS: usize = 8;

/// Scratch for `fft2_forward` / `fft2_inverse` of size m: the column pass's block buffers
/// (2 MB at m = 1024; too big for a thread's stack).
pub fn fft2_scratch(m: usize) -> ScratchSize {
    ScratchSize::new().plus::<ColumnLanes>(COLUMN_TASKS * 2 * m)
}

/// 2-D forward transform of an m × m row-major grid, in place. Only the first
/// `nonzero_rows` rows of the input may be non-zero: the rest are taken as zero and never
/// read. `scratch`: `fft2_scratch(m).bytes()`.
pub fn fft2_forward(
    plan: &FftPlan,
    re: &mut [f32],
    im: &mut [f32],
    nonzero_rows: usize,
    par: &dyn Parallel,
    scratch: &mut [u8],
) -> Result<()> {
    let m = plan.size();
    rows(
        plan,
        &mut re[..nonzero_rows * m],
        &mut im[..nonzero_rows * m],
        false,
        par,
    );
    columns(
        plan,
        re,
        im,
        ColumnPass::Forward,
        nonzero_rows,
        m,
        m,
        par,
        scratch,
    )
}

/// Inverse of [`fft2_forward`], scaled by 1/m². Only the first `needed_rows` rows of the
/// output are computed. `scratch`: `fft2_scratch(m).bytes()`.
pub fn fft2_inverse(
    plan: &FftPlan,
    re: &mut [f32],
    im: &mut [f32],
    needed_rows: usize,
    par: &dyn Parallel,
    scratch: &mut [u8],
) -> Result<()> {
    let m = plan.size();
    columns(
        plan,
        re,
        im,
        ColumnPass::Inverse,
        m,
        needed_rows,
        m,
        par,
        scratch,
    )?;
    rows(
        plan,
        &mut re[..needed_rows * m],
        &mut im[..needed_rows * m],
        true,
        par,
    );
    let s = 1.0 / (m * m) as f32;
    re[..needed_rows * m].iter_mut().for_each(|v| *v *= s);
    im[..needed_rows * m].iter_mut().for_each(|v| *v *= s);
    Ok(())
}

/// Circular 2-D convolution, in place, of an m × m complex grid with a real, even kernel
/// given by its spectrum (`spectrum`: m × m, row-major, real because the kernel is real and
/// even, and already scaled by 1/m², so the result needs no scaling). Only the first
/// `nonzero_rows` rows of the input may be non-zero, and only the first `needed_rows` rows
/// of the result are computed. The column transforms, the product and the inverse column
/// transforms run block by block in cache, so the spectrum is never written out.
#[allow(clippy::too_many_arguments)]
pub fn fft2_convolve(
    plan: &FftPlan,
    re: &mut [f32],
    im: &mut [f32],
    spectrum: &[f32],
    nonzero_rows: usize,
    needed_rows: usize,
    par: &dyn Parallel,
    scratch: &mut [u8],
) -> Result<()> {
    let m = plan.size();
    ensure_len("fft grid", m * m, re.len().min(im.len()))?;
    ensure_len("kernel spectrum", m * m, spectrum.len())?;
    let (nonzero_rows, needed_rows) = (nonzero_rows.min(m), needed_rows.min(m));
    rows(
        plan,
        &mut re[..nonzero_rows * m],
        &mut im[..nonzero_rows * m],
        false,
        par,
    );
    let pass = ColumnPass::Filter(spectrum);
    columns(
        plan,
        re,
        im,
        pass,
        nonzero_rows,
        needed_rows,
        m,
        par,
        scratch,
    )?;
    rows(
        plan,
        &mut re[..needed_rows * m],
        &mut im[..needed_rows * m],
        true,
        par,
    );
    Ok(())
}

/// Columns of the half spectrum a real m × m grid needs: 0..=m/2 (the rest are the
/// complex conjugates of these, mirrored).
pub fn half_columns(m: usize) -> usize {
    m / 2 + 1
}

/// Rows untangled or re-tangled per parallel task.
const PAIR_TASK: usize = 32;

/// The size m and the row pairs covering `rows` rows of a real 2-D transform, once the
/// buffers are checked against them.
fn real_shape(
    plan: &FftPlan,
    rows: usize,
    packed_re: &[f32],
    packed_im: &[f32],
    re: &[f32],
    im: &[f32],
) -> Result<(usize, usize)> {
    let m = plan.size();
    ensure(
        m % 2 == 0,
        "fft size",
        "a real 2-D transform needs an even size",
    )?;
    let pairs = rows.min(m).div_ceil(2);
    ensure_len(
        "packed grid",
        pairs * m,
        packed_re.len().min(packed_im.len()),
    )?;
    ensure_len("fft grid", m * m, re.len().min(im.len()))?;
    Ok((m, pairs))
}

/// 2-D forward transform of a real m × m grid at about half the cost of a complex one. The
/// grid comes packed in pairs of rows, row 2r in `packed_re` row r and row 2r + 1 in
/// `packed_im` row r (each m × m/2, rows from `nonzero_rows` on zero); one complex row
/// transform serves both rows of a pair. The half spectrum, columns `0..half_columns(m)`,
/// lands in `re`, `im` (m × m, row-major); the packed rows are overwritten.
#[allow(clippy::too_many_arguments)]
pub fn fft2_forward_real(
    plan: &FftPlan,
    packed_re: &mut [f32],
    packed_im: &mut [f32],
    nonzero_rows: usize,
    re: &mut [f32],
    im: &mut [f32],
    par: &dyn Parallel,
    scratch: &mut [u8],
) -> Result<()> {
    let (m, pairs) = real_shape(plan, nonzero_rows, packed_re, packed_im, re, im)?;
    real_rows_forward(plan, packed_re, packed_im, pairs, re, im, par);
    let pass = ColumnPass::Forward;
    columns(
        plan,
        re,
        im,
        pass,
        2 * pairs,
        m,
        half_columns(m),
        par,
        scratch,
    )
}

/// The row half of [`fft2_forward_real`]: the first `pairs` packed row pairs transformed and
/// untangled into the half spectra of their two rows each.
fn real_rows_forward(
    plan: &FftPlan,
    packed_re: &mut [f32],
    packed_im: &mut [f32],
    pairs: usize,
    re: &mut [f32],
    im: &mut [f32],
    par: &dyn Parallel,
) {
    let m = plan.size();
    let (pr, pi) = (&mut packed_re[..pairs * m], &mut packed_im[..pairs * m]);
    rows(plan, pr, pi, false, par);
    let (pr, pi) = (&*pr, &*pi);
    let half = half_columns(m);
    // Z = A + iB row by row, so A = (Z[k] + conj Z[−k]) / 2 and B = (Z[k] − conj Z[−k]) / 2i.
    for_row_chunks2(
        par,
        pairs,
        PAIR_TASK,
        re,
        2 * m,
        im,
        2 * m,
        &|_, first, count, r, i| {
            for q in 0..count {
                let z = (first + q) * m;
                let (zr, zi) = (&pr[z..z + m], &pi[z..z + m]);
                let (a, b) = (2 * q * m, (2 * q + 1) * m);
                for k in 0..half {
                    let nk = (m - k) % m;
                    r[a + k] = 0.5 * (zr[k] + zr[nk]);
                    i[a + k] = 0.5 * (zi[k] - zi[nk]);
                    r[b + k] = 0.5 * (zi[k] + zi[nk]);
                    i[b + k] = 0.5 * (zr[nk] - zr[k]);
                }
            }
        },
    );
}

/// Inverse of [`fft2_forward_real`], scaled by 1/m²: from the half spectrum in `re`, `im`
/// (both overwritten) to the first `needed_rows` rows of the real grid, packed in pairs
/// as `fft2_forward_real` takes them.
#[allow(clippy::too_many_arguments)]
pub fn fft2_inverse_real(
    plan: &FftPlan,
    re: &mut [f32],
    im: &mut [f32],
    needed_rows: usize,
    packed_re: &mut [f32],
    packed_im: &mut [f32],
    par: &dyn Parallel,
    scratch: &mut [u8],
) -> Result<()> {
    let (m, pairs) = real_shape(plan, needed_rows, packed_re, packed_im, re, im)?;
    let pass = ColumnPass::Inverse;
    columns(
        plan,
        re,
        im,
        pass,
        m,
        2 * pairs,
        half_columns(m),
        par,
        scratch,
    )?;
    real_rows_inverse(plan, re, im, pairs, packed_re, packed_im, par);
    let s = 1.0 / (m * m) as f32;
    let (pr, pi) = (&mut packed_re[..pairs * m], &mut packed_im[..pairs * m]);
    for_row_chunks2(par, pairs, PAIR_TASK, pr, m, pi, m, &|_, _, _, r, i| {
        r.iter_mut().chain(i.iter_mut()).for_each(|v| *v *= s);
    });
    Ok(())
}

/// [`fft2_convolve`] for a real grid, packed in pairs of rows as [`fft2_forward_real`] takes
/// them and in place: the first `needed_rows` rows of its convolution with the kernel of
/// `spectrum` (m × m, real, scaled by 1/m²; only its first `half_columns(m)` columns are
/// read). `re`, `im` (m × m) are work space.
#[allow(clippy::too_many_arguments)]
pub fn fft2_convolve_real(
    plan: &FftPlan,
    packed_re: &mut [f32],
    packed_im: &mut [f32],
    spectrum: &[f32],
    nonzero_rows: usize,
    needed_rows: usize,
    re: &mut [f32],
    im: &mut [f32],
    par: &dyn Parallel,
    scratch: &mut [u8],
) -> Result<()> {
    let rows = nonzero_rows.max(needed_rows);
    let (m, _) = real_shape(plan, rows, packed_re, packed_im, re, im)?;
    ensure_len("kernel spectrum", m * m, spectrum.len())?;
    let (pairs_in, pairs_out) = (
        nonzero_rows.min(m).div_ceil(2),
        needed_rows.min(m).div_ceil(2),
    );
    real_rows_forward(plan, packed_re, packed_im, pairs_in, re, im, par);
    let pass = ColumnPass::Filter(spectrum);
    let (rows_in, rows_out) = (2 * pairs_in, 2 * pairs_out);
    columns(
        plan,
        re,
        im,
        pass,
        rows_in,
        rows_out,
        half_columns(m),
        par,
        scratch,
    )?;
    real_rows_inverse(plan, re, im, pairs_out, packed_re, packed_im, par);
    Ok(())
}

/// The row half of [`fft2_inverse_real`], unscaled: the half spectra of the first `pairs`
/// row pairs re-tangled and transformed back into packed rows.
fn real_rows_inverse(
    plan: &FftPlan,
    re: &[f32],
    im: &[f32],
    pairs: usize,
    packed_re: &mut [f32],
    packed_im: &mut [f32],
    par: &dyn Parallel,
) {
    let m = plan.size();
    let half = half_columns(m);
    let (pr, pi) = (&mut packed_re[..pairs * m], &mut packed_im[..pairs * m]);
    // Rows 2r and 2r + 1 are real, so their spectra A, B are Hermitian: Z = A + iB over the
    // whole row from the half, and its inverse is row 2r + i·row 2r + 1.
    for_row_chunks2(
        par,
        pairs,
        PAIR_TASK,
        pr,
        m,
        pi,
        m,
        &|_, first, count, zr, zi| {
            for q in 0..count {
                let (a, b) = (2 * (first + q) * m, (2 * (first + q) + 1) * m);
                let (ar, ai, br, bi) = (&re[a..a + m], &im[a..a + m], &re[b..b + m], &im[b..b + m]);
                let z = q * m;
                for k in 0..half {
                    zr[z + k] = ar[k] - bi[k];
                    zi[z + k] = ai[k] + br[k];
                }
                for k in half..m {
                    let j = m - k;
                    zr[z + k] = ar[j] + bi[j];
                    zi[z + k] = br[j] - ai[j];
                }
            }
        },
    );
    rows(plan, pr, pi, true, par);
}

/// Transforms `re.len() / m` rows: eight rows at a time, one per SIMD lane (gathered into a
/// buffer), so every stage runs eight wide; leftover rows go one by one.
fn rows(plan: &FftPlan, re: &mut [f32], im: &mut [f32], inverse: bool, par: &dyn Parallel) {
    let m = plan.size();
    let n = re.len() / m;
    if !(8..=MAX_COLUMN).contains(&m) {
        for q in 0..n {
            plan.run(
                &mut re[q * m..(q + 1) * m],
                &mut im[q * m..(q + 1) * m],
                inverse,
            );
        }
        return;
    }
    let sign = if inverse { -1.0f32 } else { 1.0 };
    for_row_chunks2(par, n, ROW_TASK, re, m, im, m, &|_, _, count, r, i| {
        let full = count - count % 8;
        let (lr, li) = (&mut r[..full * m], &mut i[..full * m]);
        cpu::on_avx2(
            plan.avx2,
            #[inline(always)]
            || row_groups(plan, lr, li, sign),
        );
        for q in full..count {
            plan.run(
                &mut r[q * m..(q + 1) * m],
                &mut i[q * m..(q + 1) * m],
                inverse,
            );
        }
    });
}

/// The row pass on whole groups of eight rows (`re.len()` a multiple of 8·m).
#[inline(always)]
fn row_groups(plan: &FftPlan, re: &mut [f32], im: &mut [f32], sign: f32) {
    let m = plan.size();
    let mut br = [RowLanes::ZERO; MAX_COLUMN];
    let mut bi = [RowLanes::ZERO; MAX_COLUMN];
    for (r, i) in re.chunks_exact_mut(8 * m).zip(im.chunks_exact_mut(8 * m)) {
        gather_rows(r, m, plan.rev, &mut br[..m]);
        gather_rows(i, m, plan.rev, &mut bi[..m]);
        lane_stages(plan, &mut br[..m], &mut bi[..m], sign);
        scatter_rows(&br[..m], m, r);
        scatter_rows(&bi[..m], m, i);
    }
}

/// Eight rows of length m (`src`, row-major) into eight lanes: element t of row l goes to
/// lane l of `out[rev[t]]`. Four elements of every row at a time, turned by two 4 × 4
/// transposes, instead of 64 scalar moves.
#[inline(always)]
fn gather_rows(src: &[f32], m: usize, rev: &[u32], out: &mut [RowLanes]) {
    let quads = m / 4;
    for q in 0..quads {
        let t = 4 * q;
        let four =
            |l: usize| f32x4::from(<[f32; 4]>::try_from(&src[l * m + t..l * m + t + 4]).unwrap());
        let lo = f32x4::transpose([four(0), four(1), four(2), four(3)]);
        let hi = f32x4::transpose([four(4), four(5), four(6), four(7)]);
        for c in 0..4 {
            out[rev[t + c] as usize] = Lanes([V8::join(lo[c], hi[c])]);
        }
    }
    for t in 4 * quads..m {
        let half = |h: usize| f32x4::from(core::array::from_fn(|l| src[(4 * h + l) * m + t]));
        out[rev[t] as usize] = Lanes([V8::join(half(0), half(1))]);
    }
}

/// The inverse move of [`gather_rows`], without the permutation: lane l of `lanes[t]` to
/// element t of row l of `dst`.
#[inline(always)]
fn scatter_rows(lanes: &[RowLanes], m: usize, dst: &mut [f32]) {
    let quads = m / 4;
    for q in 0..quads {
        let t = 4 * q;
        let halves: [(f32x4, f32x4); 4] = core::array::from_fn(|c| lanes[t + c].0[0].halves());
        let lo = f32x4::transpose(halves.map(|h| h.0));
        let hi = f32x4::transpose(halves.map(|h| h.1));
        for (l, v) in lo.iter().chain(&hi).enumerate() {
            dst[l * m + t..l * m + t + 4].copy_from_slice(&v.to_array());
        }
    }
    for t in 4 * quads..m {
        for (l, &x) in lanes[t].0[0].0.iter().enumerate() {
            dst[l * m + t] = x;
        }
    }
}

/// The butterfly stages on 8·K interleaved sequences (K eight-lane vectors per element) already
/// in bit-reversed order. Stages go in pairs (h, 2h), fused into one pass over the buffer:
/// every element meets the same butterflies in the same order as in separate radix-2 passes,
/// so every bit is the same, at half the memory traffic. Within each group of butterflies
/// the K vectors go one at a time, so a group's values and twiddles stay in registers (all
/// lanes at once spilled most of them to the stack).
#[inline(always)]
fn lane_stages<const K: usize>(
    plan: &FftPlan,
    br: &mut [Lanes<K>],
    bi: &mut [Lanes<K>],
    sign: f32,
) {
    let m = br.len();
    let bi = &mut bi[..m];
    let big = m / plan.odd;
    let tw = |t: usize| (V8::splat(plan.twr[t]), V8::splat(sign * plan.twi[t]));
    let mut h = 1;
    while 4 * h <= big {
        for a in (0..m).step_by(4 * h) {
            for j in 0..h {
                let p = [a + j, a + j + h, a + j + 2 * h, a + j + 3 * h];
                let (w1, w2, w3) = (tw(h + j), tw(2 * h + j), tw(2 * h + j + h));
                for v in 0..K {
                    let mut r = p.map(|q| br[q].0[v]);
                    let mut i = p.map(|q| bi[q].0[v]);
                    butterfly(&mut r, &mut i, 0, 1, w1);
                    butterfly(&mut r, &mut i, 2, 3, w1);
                    butterfly(&mut r, &mut i, 0, 2, w2);
                    butterfly(&mut r, &mut i, 1, 3, w3);
                    for (k, &q) in p.iter().enumerate() {
                        br[q].0[v] = r[k];
                        bi[q].0[v] = i[k];
                    }
                }
            }
        }
        h *= 4;
    }
    if h < big {
        for a in (0..m).step_by(2 * h) {
            for j in a..a + h {
                let w = tw(h + j - a);
                for v in 0..K {
                    let mut r = [br[j].0[v], br[j + h].0[v]];
                    let mut i = [bi[j].0[v], bi[j + h].0[v]];
                    butterfly(&mut r, &mut i, 0, 1, w);
                    (br[j].0[v], br[j + h].0[v]) = (r[0], r[1]);
                    (bi[j].0[v], bi[j + h].0[v]) = (i[0], i[1]);
                }
            }
        }
    }
    odd_stage(plan, br, bi, sign, Lanes::<K>::splat);
}

/// lo, hi ← lo + w·hi, lo − w·hi (the radix-2 butterfly's arithmetic, term by term).
#[inline(always)]
fn butterfly<const N: usize, T>(
    r: &mut [T; N],
    i: &mut [T; N],
    lo: usize,
    hi: usize,
    (wr, wi): (T, T),
) where
    T: Copy + Add<Output = T> + Sub<Output = T> + Mul<Output = T>,
{
    let xr = r[hi] * wr - i[hi] * wi;
    let xi = r[hi] * wi + i[hi] * wr;
    let (p, q) = (r[lo], i[lo]);
    r[hi] = p - xr;
    i[hi] = q - xi;
    r[lo] = p + xr;
    i[lo] = q + xi;
}

/// What the column pass does to each block of columns.
#[derive(Clone, Copy)]
enum ColumnPass<'a> {
    Forward,
    Inverse,
    /// Forward, times a real spectrum (m × m, row-major), then inverse: the column half of a
    /// convolution, without the spectrum ever leaving the block buffer.
    Filter(&'a [f32]),
}

/// Transforms the first `cols` columns of an m × m grid: `COLUMN_LANES` adjacent columns at a time, one
/// per SIMD lane, so no transpose is needed. Blocks of 32 columns (128 bytes of each row) took
/// 15 % less time than blocks of 8 on MNIST-70k's grids: each strided row access brings whole
/// cache lines and a page's translation for more columns. Each lane does exactly the scalar butterfly arithmetic.
/// Rows from `rows_in` on are taken as zero without reading them, and only the first
/// `rows_out` rows of the result are written back.
#[allow(clippy::too_many_arguments)]
fn columns(
    plan: &FftPlan,
    re: &mut [f32],
    im: &mut [f32],
    pass: ColumnPass,
    rows_in: usize,
    rows_out: usize,
    cols: usize,
    par: &dyn Parallel,
    scratch: &mut [u8],
) -> Result<()> {
    let m = plan.size();
    ensure(
        m <= MAX_COLUMN,
        "fft size",
        "2-D transforms are limited to 2048 per side",
    )?;
    let buffers = Scratch::new(scratch)
        .take_as_is::<ColumnLanes>(COLUMN_TASKS * 2 * m, "fft column buffers")?;
    let cols = cols.min(m);
    let (inverse, filter) = match pass {
        ColumnPass::Forward => (false, None),
        ColumnPass::Inverse => (true, None),
        ColumnPass::Filter(f) => (false, Some(f)),
    };
    // Columns past the last full block go one by one.
    for c in cols - cols % COLUMN_LANES..cols {
        let (mut cr, mut ci) = ([0.0f32; MAX_COLUMN], [0.0f32; MAX_COLUMN]);
        for r in 0..rows_in.min(m) {
            cr[r] = re[r * m + c];
            ci[r] = im[r * m + c];
        }
        plan.run(&mut cr[..m], &mut ci[..m], inverse);
        if let Some(f) = filter {
            for r in 0..m {
                cr[r] *= f[r * m + c];
                ci[r] *= f[r * m + c];
            }
            plan.run(&mut cr[..m], &mut ci[..m], true);
        }
        for r in 0..rows_out.min(m) {
            re[r * m + c] = cr[r];
            im[r * m + c] = ci[r];
        }
    }
    let blocks = cols / COLUMN_LANES;
    if blocks == 0 {
        return Ok(());
    }
    let (sr, si, sb) = (
        SharedMut::new(&mut re[..m * m]),
        SharedMut::new(&mut im[..m * m]),
        SharedMut::new(buffers),
    );
    let sign = if inverse { -1.0f32 } else { 1.0 };
    par.run(COLUMN_TASKS, &|task| {
        // SAFETY: task `task` alone uses its part of the buffers.
        let buf = unsafe { sb.range(task * 2 * m, (task + 1) * 2 * m) };
        let (br, bi) = buf.split_at_mut(m);
        let grid = ColumnGrid {
            re: &sr,
            im: &si,
            rows_in,
            rows_out: rows_out.min(m),
            filter,
            sign,
        };
        for block in blocks * task / COLUMN_TASKS..blocks * (task + 1) / COLUMN_TASKS {
            cpu::on_avx2(
                plan.avx2,
                #[inline(always)]
                || column_block(plan, &grid, block, br, bi),
            );
        }
    });
    Ok(())
}

/// What every block of one column pass shares.
struct ColumnGrid<'g, 'a> {
    re: &'g SharedMut<'a, f32>,
    im: &'g SharedMut<'a, f32>,
    rows_in: usize,
    rows_out: usize,
    filter: Option<&'g [f32]>,
    sign: f32,
}

/// One block of `COLUMN_LANES` columns through the pass, in the buffers `br`, `bi` (m each).
/// The caller gives each block to one task alone.
#[inline(always)]
fn column_block(
    plan: &FftPlan,
    g: &ColumnGrid,
    block: usize,
    br: &mut [ColumnLanes],
    bi: &mut [ColumnLanes],
) {
    let m = plan.size();
    let (sr, si, rows_in, rows_out) = (g.re, g.im, g.rows_in, g.rows_out);
    let c0 = block * COLUMN_LANES;
    // Gather the block in bit-reversed order: strided power-of-two accesses in place
    // would keep evicting each other from the cache.
    for r in 0..m {
        let t = plan.rev[r] as usize;
        if r >= rows_in {
            (br[t], bi[t]) = (ColumnLanes::ZERO, ColumnLanes::ZERO);
            continue;
        }
        // SAFETY: this task alone touches columns c0..c0 + COLUMN_LANES, within the grid.
        let at = |v: usize| r * m + c0 + 8 * v;
        unsafe {
            br[t] = Lanes(core::array::from_fn(|v| V8(sr.read_n::<8>(at(v)))));
            bi[t] = Lanes(core::array::from_fn(|v| V8(si.read_n::<8>(at(v)))));
        }
    }
    lane_stages(plan, br, bi, g.sign);
    if let Some(f) = g.filter {
        for r in 0..m {
            let row = &f[r * m + c0..r * m + c0 + COLUMN_LANES];
            for (v, w) in row.chunks_exact(8).enumerate() {
                let w = V8(<[f32; 8]>::try_from(w).unwrap());
                br[r].0[v] = br[r].0[v] * w;
                bi[r].0[v] = bi[r].0[v] * w;
            }
        }
        plan.permute_in_place(br);
        plan.permute_in_place(bi);
        lane_stages(plan, br, bi, -1.0);
    }
    for r in 0..rows_out {
        // SAFETY: as above.
        for v in 0..COLUMN_VECTORS {
            let at = r * m + c0 + 8 * v;
            unsafe {
                sr.write_n::<8>(at, br[r].0[v].0);
                si.write_n::<8>(at, bi[r].0[v].0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Rng, Serial};

    fn plan_tables(m: usize) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
        (vec![0.0; m], vec![0.0; m], vec![0; m])
    }

    #[test]
    fn matches_a_direct_dft_and_the_scalar_twin() {
        let mut r = Rng::new(1);
        for m in [
            2usize, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 40, 64, 96, 160, 512, 640, 768, 4096,
        ] {
            let (mut a, mut b, mut c) = plan_tables(m);
            let plan = FftPlan::new(m, &mut a, &mut b, &mut c).unwrap();
            let xr: Vec<f32> = (0..m).map(|_| r.normal() as f32).collect();
            let xi: Vec<f32> = (0..m).map(|_| r.normal() as f32).collect();
            for inverse in [false, true] {
                let (mut yr, mut yi) = (xr.clone(), xi.clone());
                plan.run(&mut yr, &mut yi, inverse);
                let (mut sr, mut si) = (xr.clone(), xi.clone());
                plan.run_scalar(&mut sr, &mut si, inverse);
                assert_eq!(yr, sr, "SIMD vs scalar twin (real), m = {m}");
                assert_eq!(yi, si, "SIMD vs scalar twin (imag), m = {m}");
                let sgn = if inverse { 1.0 } else { -1.0 };
                let (mut err, mut norm) = (0.0f64, 0.0f64);
                for k in 0..m {
                    let (mut dr, mut di) = (0.0f64, 0.0f64);
                    for t in 0..m {
                        let ang =
                            sgn * 2.0 * std::f64::consts::PI * ((k * t) % m) as f64 / m as f64;
                        dr += xr[t] as f64 * ang.cos() - xi[t] as f64 * ang.sin();
                        di += xr[t] as f64 * ang.sin() + xi[t] as f64 * ang.cos();
                    }
                    err += (dr - yr[k] as f64).powi(2) + (di - yi[k] as f64).powi(2);
                    norm += dr * dr + di * di;
                }
                // f32: relative error (norm) below 1e-5 up to m = 4096.
                assert!(
                    (err / norm).sqrt() < 1e-5,
                    "m = {m}: {:e}",
                    (err / norm).sqrt()
                );
            }
        }
    }

    #[test]
    fn supported_lengths() {
        assert!(
            [2, 3, 5, 6, 10, 768, 1280, 2048, 1 << 24]
                .iter()
                .all(|&m| supported_len(m))
        );
        // 7 is no factor; 3·1024 exceeds the mixed-length limit; 2^25 the size limit.
        assert!(
            [0, 1, 7, 448, 3072, 1 << 25]
                .iter()
                .all(|&m| !supported_len(m))
        );
        assert_eq!(next_supported_len(300), 320);
        assert_eq!(next_supported_len(641), 768);
        assert_eq!(next_supported_len(2049), 4096);
        assert_eq!(next_supported_len((1 << 24) + 1), usize::MAX);
    }

    #[test]
    fn two_d_round_trip_and_pruned_rows() {
        let m = 64;
        let (mut a, mut b, mut c) = plan_tables(m);
        let plan = FftPlan::new(m, &mut a, &mut b, &mut c).unwrap();
        let mut r = Rng::new(2);
        let mut re = vec![0.0f32; m * m];
        for v in &mut re[..20 * m] {
            *v = r.normal() as f32;
        }
        let orig = re.clone();
        let mut im = vec![0.0f32; m * m];
        let mut sc = vec![0u8; fft2_scratch(m).bytes()];
        fft2_forward(&plan, &mut re, &mut im, 20, &Serial, &mut sc).unwrap();
        // DC term is the sum of all values.
        let sum: f64 = orig.iter().map(|&v| v as f64).sum();
        assert!((re[0] as f64 - sum).abs() < 1e-3 * (1.0 + sum.abs()));
        fft2_inverse(&plan, &mut re, &mut im, m, &Serial, &mut sc).unwrap();
        for (x, y) in re.iter().zip(&orig) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        assert!(im.iter().all(|v| v.abs() < 1e-5));
    }
}

#[cfg(test)]
mod column_tests {
    use super::*;
    use crate::{Rng, Serial};

    /// Real grid of m × m with the first `rows` rows random, packed in pairs of rows.
    fn packed_real(m: usize, rows: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut r = Rng::new(seed);
        let mut x = vec![0.0f32; m * m];
        x[..rows * m]
            .iter_mut()
            .for_each(|v| *v = r.normal() as f32);
        let (mut pr, mut pi) = (vec![0.0f32; m * m / 2], vec![0.0f32; m * m / 2]);
        for row in 0..m {
            let dst = if row % 2 == 0 { &mut pr } else { &mut pi };
            dst[row / 2 * m..(row / 2 + 1) * m].copy_from_slice(&x[row * m..(row + 1) * m]);
        }
        (x, pr, pi)
    }

    /// Grid sizes (powers of two and mixed lengths), rows holding input, rows wanted.
    const CASES: [(usize, usize, usize); 9] = [
        (8, 8, 8),
        (12, 5, 7),
        (40, 20, 20),
        (48, 17, 30),
        (64, 32, 32),
        (80, 40, 40),
        (96, 48, 48),
        (320, 160, 160),
        (1024, 512, 512),
    ];

    #[test]
    fn real_transforms_match_the_complex_ones() {
        let pool = crate::threads::Threads::new(3);
        for (m, nonzero, needed) in CASES {
            let (mut a, mut b, mut c) = (vec![0.0; m], vec![0.0; m], vec![0; m]);
            let plan = FftPlan::new(m, &mut a, &mut b, &mut c).unwrap();
            let mut sc = vec![0u8; fft2_scratch(m).bytes()];
            // A real, even kernel, as the repulsion uses.
            let (_, f) = even_kernel(&plan, &mut sc);

            let (x, pr0, pi0) = packed_real(m, nonzero, m as u64);
            // Oracle: the complex path with a zero imaginary part.
            let (mut er, mut ei) = (x.clone(), vec![0.0f32; m * m]);
            fft2_forward(&plan, &mut er, &mut ei, nonzero, &Serial, &mut sc).unwrap();
            let spectrum = (er.clone(), ei.clone());
            for k in 0..m * m {
                er[k] *= f[k];
                ei[k] *= f[k];
            }
            fft2_inverse(&plan, &mut er, &mut ei, needed, &Serial, &mut sc).unwrap();

            let scale = x.iter().fold(0.0f32, |a, v| a.max(v.abs())) * m as f32;
            let mut bits = None;
            for par in [&Serial as &dyn Parallel, &pool] {
                let (mut pr, mut pi) = (pr0.clone(), pi0.clone());
                let (mut re, mut im) = (vec![f32::NAN; m * m], vec![f32::NAN; m * m]);
                fft2_forward_real(
                    &plan, &mut pr, &mut pi, nonzero, &mut re, &mut im, par, &mut sc,
                )
                .unwrap();
                let half = half_columns(m);
                for (row, col) in (0..m).flat_map(|r| (0..half).map(move |c| (r, c))) {
                    let k = row * m + col;
                    let err = (re[k] - spectrum.0[k])
                        .abs()
                        .max((im[k] - spectrum.1[k]).abs());
                    assert!(err <= 1e-5 * scale, "m {m} spectrum ({row}, {col}): {err}");
                    re[k] *= f[k];
                    im[k] *= f[k];
                }
                fft2_inverse_real(
                    &plan, &mut re, &mut im, needed, &mut pr, &mut pi, par, &mut sc,
                )
                .unwrap();
                let out: Vec<f32> = (0..needed * m)
                    .map(|k| {
                        let (row, col) = (k / m, k % m);
                        let g = if row % 2 == 0 { &pr } else { &pi };
                        g[row / 2 * m + col]
                    })
                    .collect();
                let top = er[..needed * m].iter().fold(0.0f32, |a, v| a.max(v.abs()));
                for k in 0..needed * m {
                    let err = (out[k] - er[k]).abs();
                    assert!(
                        err <= 1e-5 * top,
                        "m {m} value {k}: {} vs {}",
                        out[k],
                        er[k]
                    );
                }
                // The same bits on any number of threads.
                let now: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
                assert!(
                    bits.get_or_insert_with(|| now.clone()) == &now,
                    "m {m}: threads"
                );
            }
        }
    }

    /// A real, even kernel on an m × m circular grid and its spectrum scaled by 1/m².
    fn even_kernel(plan: &FftPlan, sc: &mut [u8]) -> (Vec<f32>, Vec<f32>) {
        let m = plan.size();
        let mut k = vec![0.0f32; m * m];
        for (row, col) in (0..m).flat_map(|r| (0..m).map(move |c| (r, c))) {
            let (dr, dc) = (row.min(m - row) as f32, col.min(m - col) as f32);
            k[row * m + col] = 1.0 / (1.0 + 0.1 * (dr * dr + dc * dc));
        }
        let (mut fr, mut fi) = (k.clone(), vec![0.0f32; m * m]);
        fft2_forward(plan, &mut fr, &mut fi, m, &Serial, sc).unwrap();
        let top = fr.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        assert!(
            fi.iter().all(|v| v.abs() <= 1e-5 * top),
            "even kernel, real spectrum"
        );
        let s = 1.0 / (m * m) as f32;
        fr.iter_mut().for_each(|v| *v *= s);
        (k, fr)
    }

    #[test]
    fn convolutions_equal_transform_product_inverse() {
        let pool = crate::threads::Threads::new(3);
        for (m, nonzero, needed) in CASES {
            let (mut a, mut b, mut c) = (vec![0.0; m], vec![0.0; m], vec![0; m]);
            let plan = FftPlan::new(m, &mut a, &mut b, &mut c).unwrap();
            let mut sc = vec![0u8; fft2_scratch(m).bytes()];
            let (kernel, f) = even_kernel(&plan, &mut sc);
            let mut r = Rng::new(m as u64 + 7);
            let mut x0r = vec![0.0f32; m * m];
            let mut x0i = vec![0.0f32; m * m];
            for v in x0r[..nonzero * m].iter_mut().chain(&mut x0i[..nonzero * m]) {
                *v = r.normal() as f32;
            }
            // Oracle: the separate passes, the product taken in the grid.
            let (mut or, mut oi) = (x0r.clone(), x0i.clone());
            rows(
                &plan,
                &mut or[..nonzero * m],
                &mut oi[..nonzero * m],
                false,
                &Serial,
            );
            let fwd = ColumnPass::Forward;
            columns(
                &plan, &mut or, &mut oi, fwd, nonzero, m, m, &Serial, &mut sc,
            )
            .unwrap();
            for k in 0..m * m {
                or[k] *= f[k];
                oi[k] *= f[k];
            }
            let inv = ColumnPass::Inverse;
            columns(&plan, &mut or, &mut oi, inv, m, needed, m, &Serial, &mut sc).unwrap();
            rows(
                &plan,
                &mut or[..needed * m],
                &mut oi[..needed * m],
                true,
                &Serial,
            );
            if m <= 12 {
                // And the definition: Σ_s x_s K_{t−s}, circularly.
                for t in 0..needed * m {
                    let (tr, tc) = (t / m, t % m);
                    let (mut vr, mut vi) = (0.0f64, 0.0f64);
                    for s in 0..m * m {
                        let (dr, dc) = ((tr + m - s / m) % m, (tc + m - s % m) % m);
                        let kv = kernel[dr * m + dc] as f64;
                        vr += x0r[s] as f64 * kv;
                        vi += x0i[s] as f64 * kv;
                    }
                    assert!(
                        (or[t] as f64 - vr).abs() < 1e-4 * (1.0 + vr.abs()),
                        "m {m} t {t}"
                    );
                    assert!(
                        (oi[t] as f64 - vi).abs() < 1e-4 * (1.0 + vi.abs()),
                        "m {m} t {t}"
                    );
                }
            }
            let runs = [
                (plan, &Serial as &dyn Parallel),
                (plan, &pool),
                (plan.portable(), &pool),
            ];
            for (plan, par) in runs {
                let (mut gr, mut gi) = (x0r.clone(), x0i.clone());
                fft2_convolve(&plan, &mut gr, &mut gi, &f, nonzero, needed, par, &mut sc).unwrap();
                for k in 0..needed * m {
                    assert_eq!(gr[k].to_bits(), or[k].to_bits(), "m {m} re {k}");
                    assert_eq!(gi[k].to_bits(), oi[k].to_bits(), "m {m} im {k}");
                }
            }

            // The real variant against the same passes on the packed rows.
            let (_, pr0, pi0) = packed_real(m, nonzero, m as u64 + 3);
            let (pairs_in, pairs_out) = (nonzero.div_ceil(2), needed.div_ceil(2));
            let (mut pr, mut pi) = (pr0.clone(), pi0.clone());
            let (mut wr, mut wi) = (vec![0.0f32; m * m], vec![0.0f32; m * m]);
            real_rows_forward(&plan, &mut pr, &mut pi, pairs_in, &mut wr, &mut wi, &Serial);
            let (h, rin, rout) = (half_columns(m), 2 * pairs_in, 2 * pairs_out);
            columns(&plan, &mut wr, &mut wi, fwd, rin, m, h, &Serial, &mut sc).unwrap();
            for k in 0..m * m {
                wr[k] *= f[k];
                wi[k] *= f[k];
            }
            columns(&plan, &mut wr, &mut wi, inv, m, rout, h, &Serial, &mut sc).unwrap();
            real_rows_inverse(&plan, &wr, &wi, pairs_out, &mut pr, &mut pi, &Serial);
            for (plan, par) in runs {
                let (mut qr, mut qi) = (pr0.clone(), pi0.clone());
                let (mut wr, mut wi) = (vec![f32::NAN; m * m], vec![f32::NAN; m * m]);
                fft2_convolve_real(
                    &plan, &mut qr, &mut qi, &f, nonzero, needed, &mut wr, &mut wi, par, &mut sc,
                )
                .unwrap();
                for k in 0..pairs_out * m {
                    assert_eq!(qr[k].to_bits(), pr[k].to_bits(), "m {m} real even rows {k}");
                    assert_eq!(qi[k].to_bits(), pi[k].to_bits(), "m {m} real odd rows {k}");
                }
            }
        }
    }

    #[test]
    fn two_d_transform_equals_scalar_rows_then_columns() {
        for m in [
            3usize, 4, 5, 6, 8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 320,
        ] {
            let (mut a, mut b, mut c) = (vec![0.0; m], vec![0.0; m], vec![0; m]);
            let plan = FftPlan::new(m, &mut a, &mut b, &mut c).unwrap();
            let mut r = Rng::new(m as u64);
            let re0: Vec<f32> = (0..m * m).map(|_| r.normal() as f32).collect();
            let im0: Vec<f32> = (0..m * m).map(|_| r.normal() as f32).collect();
            let mut sc = vec![0u8; fft2_scratch(m).bytes()];
            // Oracle: scalar twin on every row, then on every column.
            let (mut or, mut oi) = (re0.clone(), im0.clone());
            for q in 0..m {
                plan.run_scalar(
                    &mut or[q * m..(q + 1) * m],
                    &mut oi[q * m..(q + 1) * m],
                    false,
                );
            }
            for col in 0..m {
                let mut cr: Vec<f32> = (0..m).map(|q| or[q * m + col]).collect();
                let mut ci: Vec<f32> = (0..m).map(|q| oi[q * m + col]).collect();
                plan.run_scalar(&mut cr, &mut ci, false);
                for q in 0..m {
                    or[q * m + col] = cr[q];
                    oi[q * m + col] = ci[q];
                }
            }
            // Both vector widths (where the CPU has AVX2, `plan` uses it).
            for plan in [plan, plan.portable()] {
                let (mut re, mut im) = (re0.clone(), im0.clone());
                fft2_forward(&plan, &mut re, &mut im, m, &Serial, &mut sc).unwrap();
                for k in 0..m * m {
                    // Row pass: SIMD stages vs scalar twin are bit-identical; columns likewise.
                    assert_eq!(re[k].to_bits(), or[k].to_bits(), "m {m} k {k}");
                    assert_eq!(im[k].to_bits(), oi[k].to_bits(), "m {m} k {k}");
                }
            }
        }
    }
}
