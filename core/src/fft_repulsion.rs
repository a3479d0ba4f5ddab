//! FFT-accelerated interpolation repulsion for 1-D and 2-D embeddings (Linderman et al. 2019;
//! MATH §9). Charges are spread onto an equispaced grid by Lagrange interpolation, convolved
//! with the kernel K = (1 + r²/α)^−(α+1) by FFT, and interpolated back. The charges [1, y]
//! give φ0_i = Σ_j K_ij and φ1_i = Σ_j K_ij y_j, hence the forces y_i φ0_i − φ1_i. Z needs
//! Σ_ij K_ij ‖y_j‖² as well (w = K·(1 + r²/α), r² = ‖y_i‖² − 2 y_i·y_j + ‖y_j‖²), but K is
//! symmetric, also after interpolation (W K_grid Wᵀ), so that sum equals Σ_i ‖y_i‖² φ0_i
//! and no ‖y‖² charge is needed: three real convolutions for 2-D instead of four.

use crate::error::{Error, Result, ensure, ensure_len};
use crate::fft::{self, FftPlan};
use crate::gradient::{OutputKernel, TASK_ROWS, partials_len};
use crate::parallel::{Parallel, SharedMut, for_row_chunks, for_row_chunks_sum, for_row_chunks2};
use crate::scratch::{Scratch, ScratchSize};
use wide::f32x4;

/// Evaluates `$f::<P>(args)` with the const `P` set to the node count `$p` (1 to
/// `MAX_NODES`, as `FftParams::validate` ensures), so that the loops over an interval's
/// nodes in the spreading and the interpolation unroll.
macro_rules! with_nodes {
    ($p:expr, $f:ident::<P>($($arg:expr),* $(,)?)) => {
        match $p {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            4 => $f::<4>($($arg),*),
            5 => $f::<5>($($arg),*),
            6 => $f::<6>($($arg),*),
            7 => $f::<7>($($arg),*),
            _ => $f::<8>($($arg),*),
        }
    };
}

/// Grid settings. Defaults: 3 nodes per interval and at least 50 intervals (openTSNE's), and
/// intervals at most 0.8 units wide (openTSNE: 1). Transform lengths 2^k, 3·2^k and 5·2^k
/// put the actual width within 0.75 to 1 times that; 0.8 keeps the KL trajectory on MNIST
/// within 2.5 % of exact repulsion's (3.7 % at 1 unit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FftParams {
    pub nodes_per_interval: usize,
    pub min_intervals: usize,
    pub interval_width: f32,
    /// Largest transform length per dimension (2-D: 2^k, 3·2^k or 5·2^k; 1-D: 2^k); bounds
    /// memory and time. When the embedding outgrows it, intervals become wider than
    /// `interval_width`. The 2-D default, 768, holds 170 intervals (510 nodes) per side once
    /// the map spans 40 units; past 136 units they widen (MNIST-70k's final map, 192 units:
    /// 1.13 units, as 1024 did with twice the padding). A cap of 1024 gives 227 intervals
    /// there (0.85 units): KL 2.883 instead of 2.905, recall@10 0.361 instead of 0.358, for
    /// about 1 s more of a 15 s run on two threads.
    pub max_fft_2d: usize,
    pub max_fft_1d: usize,
}

impl Default for FftParams {
    fn default() -> Self {
        FftParams {
            nodes_per_interval: 3,
            min_intervals: 50,
            interval_width: 0.8,
            max_fft_2d: 768,
            max_fft_1d: 1 << 16,
        }
    }
}

const MAX_NODES: usize = 8;
/// Steps per doubling of the quantised interval width.
const WIDTH_STEPS: f32 = 32.0;
/// Marks a kernel spectrum cached in the scratch.
const CACHE_MAGIC: f32 = 20_231_122.0;
/// Smallest 1-D transform length.
const MIN_FFT_1D: usize = 4096;
/// The 2-D grid's padding is cut no lower than this many embedding units; maps up to this
/// extent keep the full padding of twice the nodes (see `period_2d`).
const FULL_PADDING_UNITS: f32 = 20.0;

/// The 2-D transform's period as a multiple of the nodes' span: 2 (zero padding to twice
/// the nodes, an exact linear convolution) for maps up to 20 units across, falling to 1.5
/// from 40 units on. Pairs less than half a period apart along both axes meet the kernel
/// at their distance; farther ones at the wrapped distance, at least the padding, where
/// K ~ r⁻⁴ is small. On MNIST-70k maps (11, 53 and 192 units across) a period of 1.5
/// times the extent moved the forces by 3.4e-3, 1.2e-3 and 2.9e-4 and Z by 1.4e-3, 1.1e-3
/// and 7.5e-4 (relative; 3 000 sampled points, exact sums), while the transforms of the
/// last iterations cost about half those of the padding to twice the nodes. On 3 000
/// points in seven clusters along a line 120 units long (mass at both ends: the worst
/// case for wrapping) it moved them by about 4e-3, under the grid's own 1e-2 to 2e-2;
/// with the heavier tails of dof 0.5 (K ~ r⁻³) the forces by about 7e-3 and Z by 5e-3.
fn period_2d(extent: f32) -> f32 {
    1.0 + (FULL_PADDING_UNITS / extent).clamp(0.5, 1.0)
}

impl FftParams {
    pub fn validate(&self) -> Result<()> {
        ensure(
            (1..=MAX_NODES).contains(&self.nodes_per_interval),
            "nodes per interval",
            "must be 1 to 8",
        )?;
        ensure(
            self.min_intervals >= 1,
            "min intervals",
            "must be at least 1",
        )?;
        ensure(
            self.interval_width.is_finite() && self.interval_width > 0.0,
            "interval width",
            "must be > 0",
        )?;
        ensure(
            self.max_fft_2d <= crate::fft::MAX_COLUMN,
            "max fft size",
            "2-D transforms are limited to 2048 per side",
        )?;
        ensure(
            self.max_fft_1d.is_power_of_two() && self.max_fft_1d >= 2 * self.nodes_per_interval,
            "max fft size",
            "1-D: must be a power of two >= 2 * nodes per interval",
        )?;
        ensure(
            crate::fft::supported_len(self.max_fft_2d)
                && self.max_fft_2d >= 2 * self.nodes_per_interval,
            "max fft size",
            "2-D: must be 2^k, 3·2^k or 5·2^k, and >= 2 * nodes per interval",
        )?;
        Ok(())
    }

    fn max_len(&self, dims: usize) -> usize {
        if dims == 1 {
            self.max_fft_1d
        } else {
            self.max_fft_2d
        }
    }
}

/// Grid values of the scratch: the kernel's spectrum (real: the kernel is real and even), the
/// complex grid carrying charges 1 and y_1 (2 arrays), and for 2-D the real grid of y_2,
/// packed in pairs of rows (one array) with the work space of its transform (two).
fn grid_cells(dims: usize, m: usize) -> usize {
    if dims == 1 { 3 * m } else { 6 * m * m }
}

/// Scratch for `repulsion_fft` on `n` points of a `dims`-D embedding (dims 1 or 2).
pub fn fft_scratch(n: usize, dims: usize, params: &FftParams) -> ScratchSize {
    let m = params.max_len(dims);
    let sort = if dims == 1 {
        ScratchSize::new()
    } else {
        sort_scratch(n, m)
    };
    sort.and(fft_scratch_grids(dims, m))
}

fn fft_scratch_grids(dims: usize, m: usize) -> ScratchSize {
    ScratchSize::new()
        .plus::<f32>(4) // cache key of the kernel spectrum
        .plus::<f32>(2 * fft::plan_len(m))
        .plus::<u32>(fft::plan_len(m))
        .plus::<f32>(grid_cells(dims, m))
        .plus::<u8>(if dims == 1 {
            0
        } else {
            fft::fft2_scratch(m).bytes()
        })
}

/// Interval rows per parallel task of the 2-D spreading.
const SPREAD_BAND: usize = 8;

/// Points per chunk of the band sort's parallel passes.
const SORT_CHUNK: usize = 8192;

/// Scratch of `sort_by_band` for `n` points and transforms of length `m`: each chunk's
/// count per band, the order, and the sorted coordinates.
fn sort_scratch(n: usize, m: usize) -> ScratchSize {
    ScratchSize::new()
        .plus::<u32>(n.div_ceil(SORT_CHUNK).max(1) * (m + 1) + m + 1)
        .plus::<u32>(n)
        .plus::<f32>(2 * n)
}

/// Counting sort of the points by their interval along the first axis, stable: the points
/// of interval b are `order[starts[b]..starts[b + 1]]`, in index order, and their
/// coordinates are copied to `sorted_y` in that order, so the sweeps read them in sequence.
/// Chunks of points count and place their points in parallel; each chunk's points of a band
/// follow the previous chunk's, so the order is the serial one.
#[allow(clippy::too_many_arguments)]
fn sort_by_band(
    y: &[f32],
    n: usize,
    grid: &Grid,
    par: &dyn Parallel,
    counts: &mut [u32],
    starts: &mut [u32],
    order: &mut [u32],
    sorted_y: &mut [f32],
) {
    let bands = grid.intervals;
    let chunks = n.div_ceil(SORT_CHUNK);
    let band = |i: usize| grid.interval(y[2 * i], 0);
    let counts = &mut counts[..chunks * bands];
    for_row_chunks(par, chunks, 1, counts, bands, &|_, c, _, count| {
        count.fill(0);
        for i in c * SORT_CHUNK..((c + 1) * SORT_CHUNK).min(n) {
            count[band(i)] += 1;
        }
    });
    // Each chunk's first place in each band, band by band.
    let mut at = 0u32;
    for b in 0..bands {
        starts[b] = at;
        for c in 0..chunks {
            let k = counts[c * bands + b];
            counts[c * bands + b] = at;
            at += k;
        }
    }
    starts[bands] = at;
    let (so, sy) = (SharedMut::new(&mut *order), SharedMut::new(&mut *sorted_y));
    for_row_chunks(par, chunks, 1, counts, bands, &|_, c, _, next| {
        for i in c * SORT_CHUNK..((c + 1) * SORT_CHUNK).min(n) {
            let b = band(i);
            let at = next[b] as usize;
            next[b] += 1;
            // SAFETY: every (chunk, band) owns its own run of places.
            unsafe {
                so.set(at, i as u32);
                sy.set(2 * at, y[2 * i]);
                sy.set(2 * at + 1, y[2 * i + 1]);
            }
        }
    });
}

/// The grid chosen for an embedding of this extent.
struct Grid {
    lo: [f32; 2],
    /// Interval width.
    width: f32,
    /// Intervals per dimension.
    intervals: usize,
    p: usize,
    /// Transform length per dimension.
    m: usize,
    /// 1 / width, so that locating a point multiplies.
    inv_width: f32,
    /// The nodes (k + ½)/p and 1 / Π_{q≠k} (t_k − t_q): the Lagrange weights without divisions.
    node: [f32; MAX_NODES],
    inv_denominator: [f32; MAX_NODES],
}

impl Grid {
    fn nodes(&self) -> usize {
        self.intervals * self.p
    }

    /// The interval of coordinate `x` along axis `a` (as `locate` finds it).
    #[inline(always)]
    fn interval(&self, x: f32, a: usize) -> usize {
        (((x - self.lo[a]) * self.inv_width) as usize).min(self.intervals - 1)
    }

    /// First node and Lagrange weights (`w`, one per node of an interval: `p` long) of
    /// coordinate `x` along axis `a`. Callers with a fixed-size `w` get it unrolled.
    #[inline(always)]
    fn locate(&self, x: f32, a: usize, w: &mut [f32]) -> usize {
        let p = w.len();
        debug_assert_eq!(p, self.p);
        let t = (x - self.lo[a]) * self.inv_width;
        let b = (t as usize).min(self.intervals - 1);
        let local = t - b as f32;
        // Lagrange basis on the nodes at `local` ∈ [0, 1].
        for k in 0..p {
            let mut v = self.inv_denominator[k];
            for q in 0..p {
                if q != k {
                    v *= local - self.node[q];
                }
            }
            w[k] = v;
        }
        b * p
    }
}

/// Whether an interval's P nodes can be read and written as four columns: P ≤ 4, and the
/// last interval's four columns inside the row of m (true unless the grid is tiny).
fn fits_four_lanes<const P: usize>(grid: &Grid, m: usize) -> bool {
    P <= 4 && (grid.intervals - 1) * P + 4 <= m
}

/// Spreads the charges [1, y₁, y₂] of `points` ((y₁, y₂) pairs, all in node rows from `r0`
/// on) onto a band's rows: charge 1 into `g0`, y₁ into `g1` (both from row `r0`), and y₂
/// into the packed real grid's even and odd rows of the band.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn spread<const P: usize>(
    grid: &Grid,
    m: usize,
    r0: usize,
    points: &[f32],
    g0: &mut [f32],
    g1: &mut [f32],
    even: &mut [f32],
    odd: &mut [f32],
) {
    let four_lanes = fits_four_lanes::<P>(grid, m);
    let (mut wx, mut wy) = ([0.0f32; P], [0.0f32; P]);
    for yi in points.chunks_exact(2) {
        let (x0, x1) = (yi[0], yi[1]);
        let bx = grid.locate(x0, 0, &mut wx);
        let by = grid.locate(x1, 1, &mut wy);
        for k in 0..P {
            let row = bx + k;
            let at = (row - r0) * m + by;
            let (half, at2) = if row % 2 == 0 {
                (&mut *even, (row / 2 - r0.div_ceil(2)) * m + by)
            } else {
                (&mut *odd, (row / 2 - r0 / 2) * m + by)
            };
            let (a0, a1, a2) = (wx[k], x0 * wx[k], x1 * wx[k]);
            if four_lanes {
                // Four columns at once; past the P nodes the weight is zero, and adding
                // a·0 leaves a cell as it was.
                let wy4 = f32x4::from(core::array::from_fn(|l| if l < P { wy[l] } else { 0.0 }));
                for (g, at, a) in [
                    (&mut *g0, at, a0),
                    (&mut *g1, at, a1),
                    (&mut *half, at2, a2),
                ] {
                    let c: &mut [f32; 4] = (&mut g[at..at + 4]).try_into().unwrap();
                    *c = (f32x4::from(*c) + f32x4::splat(a) * wy4).to_array();
                }
            } else {
                let c0: &mut [f32; P] = (&mut g0[at..at + P]).try_into().unwrap();
                let c1: &mut [f32; P] = (&mut g1[at..at + P]).try_into().unwrap();
                let c2: &mut [f32; P] = (&mut half[at2..at2 + P]).try_into().unwrap();
                for l in 0..P {
                    c0[l] += a0 * wy[l];
                    c1[l] += a1 * wy[l];
                    c2[l] += a2 * wy[l];
                }
            }
        }
    }
}

/// The potentials [φ0, φ1, φ2] at each of `points` ((y₁, y₂) pairs), interpolated from the
/// convolved grids [charge 1, y₁, packed y₂ even rows, odd rows], passed to `each` with
/// the point's place in `points`.
#[inline(always)]
fn interpolate<const P: usize>(
    grid: &Grid,
    m: usize,
    [qr, qi, pr, pi]: [&[f32]; 4],
    points: &[f32],
    each: &mut impl FnMut(usize, [f32; 3]),
) {
    let four_lanes = fits_four_lanes::<P>(grid, m);
    let (mut wx, mut wy) = ([0.0f32; P], [0.0f32; P]);
    for (k, yi) in points.chunks_exact(2).enumerate() {
        let bx = grid.locate(yi[0], 0, &mut wx);
        let by = grid.locate(yi[1], 1, &mut wy);
        let sources = |kx: usize| {
            let row = bx + kx;
            let packed = if row % 2 == 0 { pr } else { pi };
            [
                &qr[row * m + by..],
                &qi[row * m + by..],
                &packed[row / 2 * m + by..],
            ]
        };
        let mut acc = [0.0f32; 3];
        if four_lanes {
            // Down the node rows four columns at a time (zero weight past the P nodes), then
            // across the columns.
            let mut down = [f32x4::ZERO; 3];
            for (kx, &w) in wx.iter().enumerate() {
                for (v, g) in down.iter_mut().zip(sources(kx)) {
                    *v += f32x4::splat(w) * f32x4::from(<[f32; 4]>::try_from(&g[..4]).unwrap());
                }
            }
            let wy4 = f32x4::from(core::array::from_fn(|l| if l < P { wy[l] } else { 0.0 }));
            for (a, v) in acc.iter_mut().zip(down) {
                *a = (v * wy4).to_array()[..P].iter().sum();
            }
        } else {
            for (kx, &w) in wx.iter().enumerate() {
                for (a, g) in acc.iter_mut().zip(sources(kx)) {
                    let g: &[f32; P] = g[..P].try_into().unwrap();
                    let mut rk = 0.0f32;
                    for l in 0..P {
                        rk += wy[l] * g[l];
                    }
                    *a += w * rk;
                }
            }
        }
        each(k, acc);
    }
}

/// The per-axis minimum and maximum of a 1-D or 2-D embedding, eight values at a time (the
/// grid is chosen every iteration); an error names the first non-finite value.
fn bounds(y: &[f32], n: usize, dims: usize) -> Result<([f32; 2], [f32; 2])> {
    use wide::f32x8;
    let values = &y[..n * dims];
    let blocks = values.chunks_exact(8);
    let tail = blocks.remainder();
    let (mut lo8, mut hi8) = (f32x8::splat(f32::INFINITY), f32x8::splat(f32::NEG_INFINITY));
    // v·0 is 0 for finite v and NaN otherwise, and NaN survives the sum.
    let mut poison = f32x8::ZERO;
    for b in blocks {
        let v = f32x8::from(<[f32; 8]>::try_from(b).unwrap());
        lo8 = lo8.fast_min(v);
        hi8 = hi8.fast_max(v);
        poison += v * f32x8::ZERO;
    }
    let finite = poison.to_array().iter().all(|&v| v == 0.0) && tail.iter().all(|v| v.is_finite());
    if !finite {
        let at = values.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(Error::NonFinite {
            row: at / dims,
            col: at % dims,
        });
    }
    // Lane l holds axis l % dims (8 is a multiple of 1 and 2), as does the tail's value t.
    let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
    let lanes = lo8.to_array().into_iter().zip(hi8.to_array());
    for (l, (a, b)) in lanes.chain(tail.iter().map(|&v| (v, v))).enumerate() {
        lo[l % dims] = lo[l % dims].min(a);
        hi[l % dims] = hi[l % dims].max(b);
    }
    Ok((lo, hi))
}

fn choose_grid(y: &[f32], n: usize, dims: usize, params: &FftParams) -> Result<Grid> {
    let (lo, hi) = bounds(y, n, dims)?;
    let mut extent = 0.0f32;
    for a in 0..dims {
        extent = extent.max(hi[a] - lo[a]);
    }
    // Pad so the largest coordinate falls inside the last interval.
    let extent = extent * (1.0 + 1e-4) + 1e-6;
    ensure(
        extent.is_finite(),
        "embedding",
        "its extent overflows single precision (the optimisation diverged?)",
    )?;
    let p = params.nodes_per_interval;
    let cap = params.max_len(dims);
    let period = if dims == 1 { 2.0 } else { period_2d(extent) };
    let wanted = params
        .min_intervals
        .max(libm::ceilf(extent / params.interval_width) as usize)
        .min(cap);
    let m = if dims == 1 {
        // 1-D transforms are cheap and the near field dominates there: use a fine grid.
        (2 * p * wanted).next_power_of_two().max(MIN_FFT_1D)
    } else {
        // The next length of the form 2^k, 3·2^k or 5·2^k at or above what openTSNE's rule
        // asks for with its padding (see `period_2d`): intervals end up between 0.8 and 1
        // times `interval_width` (coarser only when capped by the max size).
        fft::next_supported_len(libm::ceilf(period * (p * wanted) as f32) as usize)
    };
    let m = m.min(params.max_len(dims));
    // Use every node the transform length pays for.
    let intervals = ((m as f32 / (period * p as f32)) as usize).max(1);
    // Round the width up to a step of a geometric ladder (2^(1/32), about 2 %), so that the
    // kernel's spectrum, which depends only on m and the node spacing, can be reused while
    // the embedding changes little between iterations.
    let raw = extent / intervals as f32;
    let width = libm::exp2f(libm::ceilf(libm::log2f(raw) * WIDTH_STEPS) / WIDTH_STEPS).max(raw);
    let node: [f32; MAX_NODES] = core::array::from_fn(|k| (k as f32 + 0.5) / p as f32);
    let inv_denominator = core::array::from_fn(|k| {
        let others = (0..p).filter(|&q| q != k);
        1.0 / others.fold(1.0f32, |v, q| v * (node[k] - node[q]))
    });
    Ok(Grid {
        lo,
        width,
        intervals,
        p,
        m,
        inv_width: 1.0 / width,
        node,
        inv_denominator,
    })
}

/// Repulsion by FFT interpolation: `rep_i ≈ Σ_{j≠i} w_ij^{(α+1)/α} (y_i − y_j)`; returns Z.
/// `scratch`: `fft_scratch(n, dims, params).bytes()`; `partials`: `gradient::partials_len(n)`.
#[allow(clippy::too_many_arguments)]
pub fn repulsion_fft(
    y: &[f32],
    n: usize,
    dims: usize,
    kernel: OutputKernel,
    params: &FftParams,
    par: &dyn Parallel,
    scratch: &mut [u8],
    rep: &mut [f32],
    partials: &mut [f64],
) -> Result<f64> {
    ensure(
        dims == 1 || dims == 2,
        "dims",
        "FFT repulsion needs 1-D or 2-D output",
    )?;
    params.validate()?;
    ensure_len("embedding", n * dims, y.len())?;
    ensure_len("repulsion output", n * dims, rep.len())?;
    ensure_len("partials", partials_len(n), partials.len())?;
    let grid = choose_grid(y, n, dims, params)?;
    let m = grid.m;
    let cells = if dims == 1 { m } else { m * m };
    let mut s = Scratch::new(scratch);
    let key = s.take_as_is::<f32>(4, "kernel cache key")?;
    let twr = s.take::<f32>(m, "fft twiddles")?;
    let twi = s.take::<f32>(m, "fft twiddles")?;
    let rev = s.take::<u32>(m, "fft bit reversal")?;
    let plan = FftPlan::new(m, twr, twi, rev)?;
    let spectrum = s.take_as_is::<f32>(cells, "kernel spectrum")?;
    // Overwritten (zeroed, then spread into) below. The third charge's grids stay empty in
    // 1-D.
    let qr = s.take_as_is::<f32>(cells, "charge grid")?;
    let qi = s.take_as_is::<f32>(cells, "charge grid")?;
    let third = if dims == 1 { 0 } else { cells };
    let (hr, hi) = (
        s.take_as_is::<f32>(third, "real transform space")?,
        s.take_as_is::<f32>(third, "real transform space")?,
    );
    let packed = s.take_as_is::<f32>(third, "packed real grid")?;
    let (pr, pi) = packed.split_at_mut(third / 2);
    let columns = if dims == 1 {
        &mut [][..]
    } else {
        s.take_as_is::<u8>(fft::fft2_scratch(m).bytes(), "fft column buffers")?
    };
    let sorting = if dims == 1 { 0 } else { 1 };
    let chunk_counts = n.div_ceil(SORT_CHUNK) * grid.intervals;
    let band_counts = s.take_as_is::<u32>(sorting * chunk_counts, "band counts")?;
    let band_starts = s.take_as_is::<u32>(sorting * (grid.intervals + 1), "band starts")?;
    let order = s.take_as_is::<u32>(sorting * n, "band order")?;
    let sorted_y = s.take_as_is::<f32>(sorting * 2 * n, "points in band order")?;

    // Kernel at every node offset, wrapped for a circular convolution of length m.
    let nodes = grid.nodes();
    let h = grid.width / grid.p as f32;
    let dof = kernel.dof();
    let kval = |r2: f32| -> f32 {
        let b = 1.0 / (1.0 + r2 / dof);
        if dof == 1.0 {
            b * b
        } else {
            libm::powf(b, dof + 1.0)
        }
    };
    // Node offset i of the circular convolution stands for the shorter way round, so the
    // kernel stays even (and its spectrum real). In 1-D (period ≥ twice the nodes) offsets
    // no pair of nodes has are left zero.
    let offset = |i: usize| -> Option<f32> {
        let wrapped = i.min(m - i);
        (dims == 2 || wrapped < nodes).then_some(wrapped as f32 * h)
    };
    // The spectrum is kept divided by the transform's size (m, or m² in 2-D), so that the
    // inverse transforms need no scaling pass. It is real up to rounding, which is dropped.
    let wanted_key = [m as f32, h, dof, CACHE_MAGIC + dims as f32];
    if key[..] == wanted_key[..] {
        // The spectrum from an earlier call on this scratch still applies.
    } else if dims == 1 {
        // The charge grid is free until the charges are spread.
        qi.fill(0.0);
        for i in 0..m {
            spectrum[i] = offset(i).map(|d| kval(d * d)).unwrap_or(0.0);
        }
        plan.run(spectrum, qi, false);
        let sc = 1.0 / m as f32;
        spectrum.iter_mut().for_each(|v| *v *= sc);
    } else {
        // Recomputed whenever the grid changes (about one iteration in five while the map
        // grows), so at half cost: the kernel is real and even, so its rows go through the
        // real transform in pairs (packed as it takes them; the packed grid is free until
        // the charges are spread, like the charge grid `qi` that takes the imaginary part),
        // each row's values are mirrored rather than evaluated twice, and the spectrum's
        // columns past the half equal their mirror images.
        let kernel_row = |r: usize, out: &mut [f32]| {
            out.fill(0.0);
            let Some(a) = offset(r) else { return };
            for j in 0..=m / 2 {
                let Some(b) = offset(j) else { break };
                let v = kval(a * a + b * b);
                out[j] = v;
                out[(m - j) % m] = v;
            }
        };
        for_row_chunks2(
            par,
            m / 2,
            16,
            pr,
            m,
            pi,
            m,
            &|_, first, count, even, odd| {
                for q in 0..count {
                    kernel_row(2 * (first + q), &mut even[q * m..(q + 1) * m]);
                    kernel_row(2 * (first + q) + 1, &mut odd[q * m..(q + 1) * m]);
                }
            },
        );
        fft::fft2_forward_real(&plan, pr, pi, m, spectrum, qi, par, columns)?;
        let half = fft::half_columns(m);
        let sc = 1.0 / (m * m) as f32;
        for_row_chunks(par, m, 64, spectrum, m, &|_, _, count, re| {
            for q in 0..count {
                let row = &mut re[q * m..(q + 1) * m];
                row[..half].iter_mut().for_each(|v| *v *= sc);
                for c in half..m {
                    row[c] = row[m - c];
                }
            }
        });
    }
    key.copy_from_slice(&wanted_key);

    // Spread the charges: charge 1 in the complex grid's real part, y_1 in its imaginary
    // part, and in 2-D y_2 in the packed real grid (node row r in row r / 2 of the even or
    // odd half). The transforms read only the first `nodes` rows.
    if dims == 1 {
        let mut w = [0.0f32; MAX_NODES];
        qr.fill(0.0);
        qi.fill(0.0);
        for &yi in &y[..n] {
            let b = grid.locate(yi, 0, &mut w[..grid.p]);
            for q in 0..grid.p {
                qr[b + q] += w[q];
                qi[b + q] += yi * w[q];
            }
        }
    } else {
        // Points in order of their interval along the first axis (stable), so that the
        // spreading and the interpolation sweep the grids band by band in cache instead of
        // jumping between rows (one thread, MNIST-70k's final map: 19.5–20.7 → 18.5–19.1 ms
        // per call). Each band of intervals owns its node rows, so bands spread in parallel
        // without sharing a cell, and every cell sums its points in the one sorted order.
        sort_by_band(y, n, &grid, par, band_counts, band_starts, order, sorted_y);
        if nodes % 2 == 1 {
            // The odd half's last row pairs with the last node row and is read as zero.
            pi[nodes / 2 * m..(nodes / 2 + 1) * m].fill(0.0);
        }
        let (sq, sp) = (
            (SharedMut::new(&mut *qr), SharedMut::new(&mut *qi)),
            (SharedMut::new(&mut *pr), SharedMut::new(&mut *pi)),
        );
        let (starts, sorted_y) = (&*band_starts, &*sorted_y);
        let bands = grid.intervals.div_ceil(SPREAD_BAND);
        par.run(bands, &|band| {
            let (b0, b1) = (
                band * SPREAD_BAND,
                ((band + 1) * SPREAD_BAND).min(grid.intervals),
            );
            let (r0, r1) = (b0 * grid.p, b1 * grid.p);
            // SAFETY: node rows [r0, r1) belong to this band alone: rows r0·m.. of the complex
            // grid, and the even and odd rows of the range in the packed halves.
            let (g0, g1, even, odd) = unsafe {
                (
                    sq.0.range(r0 * m, r1 * m),
                    sq.1.range(r0 * m, r1 * m),
                    sp.0.range(r0.div_ceil(2) * m, r1.div_ceil(2) * m),
                    sp.1.range(r0 / 2 * m, r1 / 2 * m),
                )
            };
            for g in [&mut *g0, &mut *g1, &mut *even, &mut *odd] {
                g.fill(0.0);
            }
            let points = &sorted_y[2 * starts[b0] as usize..2 * starts[b1] as usize];
            with_nodes!(grid.p, spread::<P>(&grid, m, r0, points, g0, g1, even, odd));
        });
    }

    // Convolve: forward transform, multiply by the kernel's spectrum, inverse transform.
    if dims == 1 {
        plan.run(qr, qi, false);
        for ((a, b), &f) in qr.iter_mut().zip(qi.iter_mut()).zip(&*spectrum) {
            *a *= f;
            *b *= f;
        }
        plan.run(qr, qi, true);
    } else {
        fft::fft2_convolve(&plan, qr, qi, spectrum, nodes, nodes, par, columns)?;
        fft::fft2_convolve_real(&plan, pr, pi, spectrum, nodes, nodes, hr, hi, par, columns)?;
    }

    // Interpolate the potentials back and combine them into forces and Z.
    let (qr, qi, pr, pi) = (&*qr, &*qi, &*pr, &*pi);
    let inv_dof = 1.0 / dof as f64;
    // Point i's force and share of Z from φ = [Σ K, Σ K y_j (per axis)] at y_i.
    let combine = |yi: &[f32], phi: [f64; 3], out: &mut [f32]| -> f64 {
        let mut norm2 = 0.0f64;
        let mut dot = 0.0f64;
        for a in 0..dims {
            let ya = yi[a] as f64;
            norm2 += ya * ya;
            dot += ya * phi[1 + a];
            out[a] = (ya * phi[0] - phi[1 + a]) as f32;
        }
        // Point i's share of Z: Σ_j K_ij (1 + (‖y_i‖² − 2 y_i·y_j + ‖y_j‖²)/α), with
        // Σ_j K_ij ‖y_j‖² swapped for ‖y_i‖² φ0_i (equal summed over i; see the top).
        let zi = phi[0] + (2.0 * norm2 * phi[0] - 2.0 * dot) * inv_dof;
        zi - 1.0 // minus the self-interaction K(0)·1
    };
    if dims == 1 {
        let z = for_row_chunks_sum(par, n, TASK_ROWS, rep, 1, partials, &|first, rows, out| {
            let mut wx = [0.0f32; MAX_NODES];
            let mut zsum = 0.0f64;
            for r in 0..rows {
                let yi = &y[first + r..first + r + 1];
                let bx = grid.locate(yi[0], 0, &mut wx[..grid.p]);
                let mut phi = [0.0f64; 3];
                for (ph, g) in phi.iter_mut().zip([qr, qi]) {
                    *ph = (0..grid.p).map(|k| (wx[k] * g[bx + k]) as f64).sum();
                }
                zsum += combine(yi, phi, &mut out[r..r + 1]);
            }
            zsum
        });
        return Ok(z);
    }
    // In 2-D, in the sorted order, in chunks of it; each point's force goes to its own row.
    let tasks = partials_len(n);
    let (so, sz) = (
        SharedMut::new(&mut *rep),
        SharedMut::new(&mut partials[..tasks]),
    );
    let (order, sorted_y) = (&*order, &*sorted_y);
    par.run(tasks, &|t| {
        let span = t * TASK_ROWS..((t + 1) * TASK_ROWS).min(n);
        let chunk = &order[span.clone()];
        let points = &sorted_y[2 * span.start..2 * span.end];
        let mut zsum = 0.0f64;
        let grids = [qr, qi, pr, pi];
        let mut each = |k: usize, phi: [f32; 3]| {
            let (i, yi) = (chunk[k] as usize, &points[2 * k..2 * k + 2]);
            let mut f = [0.0f32; 2];
            zsum += combine(yi, phi.map(|v| v as f64), &mut f);
            // SAFETY: `order` is a permutation, so point i's row is written by this task only.
            unsafe {
                so.set(2 * i, f[0]);
                so.set(2 * i + 1, f[1]);
            }
        };
        with_nodes!(grid.p, interpolate::<P>(&grid, m, grids, points, &mut each));
        // SAFETY: slot t is this task's.
        unsafe { sz.set(t, zsum) };
    });
    let z = partials[..tasks].iter().sum();
    Ok(z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradient::repulsion_exact;
    use crate::{Rng, Serial};

    #[test]
    fn bounds_match_a_scalar_scan_and_name_the_first_non_finite_value() {
        let mut r = Rng::new(5);
        for dims in [1usize, 2] {
            for n in [1usize, 3, 4, 7, 8, 9, 61, 1000] {
                let y: Vec<f32> = (0..n * dims).map(|_| (r.normal() * 10.0) as f32).collect();
                let (lo, hi) = bounds(&y, n, dims).unwrap();
                for a in 0..dims {
                    let axis = y.iter().skip(a).step_by(dims);
                    assert_eq!(lo[a], axis.clone().fold(f32::INFINITY, |m, &v| m.min(v)));
                    assert_eq!(hi[a], axis.fold(f32::NEG_INFINITY, |m, &v| m.max(v)));
                }
                for (at, bad) in [(0, f32::NAN), (n * dims / 2, f32::INFINITY)] {
                    let mut z = y.clone();
                    z[at] = bad;
                    z[n * dims - 1] = f32::NEG_INFINITY;
                    let first = at.min(n * dims - 1);
                    let (row, col) = (first / dims, first % dims);
                    assert_eq!(bounds(&z, n, dims), Err(Error::NonFinite { row, col }));
                }
            }
        }
    }

    /// Regression (fuzz target tsne_gradient): an embedding spanning ±3e38 overflowed the
    /// grid size computation; now it is an error naming the embedding.
    #[test]
    fn an_embedding_of_overflowing_extent_is_refused() {
        let params = FftParams {
            max_fft_2d: 64,
            ..FftParams::default()
        };
        let y = [-3e38f32, 0.0, 3e38, 1.0, 0.0, 2.0];
        let mut scratch = std::vec![0u8; fft_scratch(3, 2, &params).bytes()];
        let (mut rep, mut partials) = (
            [0.0f32; 6],
            std::vec![0.0f64; crate::gradient::partials_len(3)],
        );
        let kernel = crate::gradient::OutputKernel::new(1.0).unwrap();
        let r = repulsion_fft(
            &y,
            3,
            2,
            kernel,
            &params,
            &Serial,
            &mut scratch,
            &mut rep,
            &mut partials,
        );
        assert!(
            matches!(
                r,
                Err(Error::InvalidParameter {
                    name: "embedding",
                    ..
                })
            ),
            "{r:?}"
        );
        // Large but finite extents are capped at the largest grid, not overflowed.
        let y = [-1e30f32, 0.0, 1e30, 1.0, 0.0, 2.0];
        let r = repulsion_fft(
            &y,
            3,
            2,
            kernel,
            &params,
            &Serial,
            &mut scratch,
            &mut rep,
            &mut partials,
        );
        assert!(r.is_ok(), "{r:?}");
    }

    fn rel(a: &[f32], b: &[f32]) -> f64 {
        let num: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        num / b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
    }

    fn compare(dims: usize, dof: f32, n: usize, spread: f64, params: FftParams) -> (f64, f64) {
        let mut r = Rng::new(5 + dims as u64);
        // Clusters of different sizes, as in an embedding in progress.
        let y: Vec<f32> = (0..n * dims)
            .map(|i| {
                let c = (i / dims) % 7;
                (r.normal() * (0.3 + c as f64 * 0.4)
                    + (c as f64 - 3.0) * spread * if i % dims == 0 { 1.0 } else { 0.6 })
                    as f32
            })
            .collect();
        let k = OutputKernel::new(dof).unwrap();
        let (mut ex, mut ff) = (vec![0.0; n * dims], vec![0.0; n * dims]);
        let mut part = vec![0.0; partials_len(n)];
        let z_ex = repulsion_exact(&y, n, dims, k, &Serial, &mut ex, &mut part).unwrap();
        let mut sc = vec![0u8; fft_scratch(n, dims, &params).bytes()];
        let z_ff = repulsion_fft(
            &y, n, dims, k, &params, &Serial, &mut sc, &mut ff, &mut part,
        )
        .unwrap();
        (rel(&ff, &ex), (z_ff - z_ex).abs() / z_ex)
    }

    #[test]
    fn agrees_with_exact_repulsion() {
        // Tight clusters (sd 0.3 to 2.7) far apart stress the near field: interpolation error
        // grows like (interval width)³. On the default grid (intervals about 0.75 units wide
        // in these 2-D layouts) the forces of the two spread-out 2-D layouts are within 2e-2
        // (measured 1.3e-2 to 1.8e-2); intervals of at most 0.6 units bring every case within
        // 1e-2 (measured at most 9.2e-3 since the 2-D period shrank to 1.5 times the nodes'
        // span; 6.5e-3 before). 1-D grids are fine by default (at most 5.4e-4). Z is within
        // 1e-2 everywhere (at most 6.9e-3). Real MNIST embeddings are checked in tests/tests/fft_real.rs.
        let fine = FftParams {
            interval_width: 0.6,
            max_fft_2d: 2048,
            ..FftParams::default()
        };
        for dims in [1, 2] {
            for dof in [1.0f32, 0.5] {
                for spread in [0.5, 5.0, 20.0] {
                    for (params, grid) in [(FftParams::default(), "default"), (fine, "fine")] {
                        let (ef, ez) = compare(dims, dof, 3000, spread, params);
                        std::println!(
                            "dims {dims} dof {dof} spread {spread} {grid}: force {ef:.2e}, Z {ez:.2e}"
                        );
                        let tol = if dims == 2 && spread > 1.0 && grid == "default" {
                            2e-2
                        } else {
                            1e-2
                        };
                        assert!(
                            ef < tol && ez < 1e-2,
                            "dims {dims} dof {dof} spread {spread} {grid}: force {ef:e}, Z {ez:e}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn cached_kernel_spectrum_gives_the_same_result_as_a_fresh_one() {
        let n = 2000;
        let mut r = Rng::new(9);
        let y1: Vec<f32> = (0..n * 2).map(|_| (r.normal() * 10.0) as f32).collect();
        // A small step, as between two iterations: same quantised width, so the cache is used.
        let y2: Vec<f32> = y1.iter().map(|v| v * 1.001).collect();
        let k = OutputKernel::new(1.0).unwrap();
        let params = FftParams::default();
        let mut part = vec![0.0; partials_len(n)];
        let mut reused = vec![0u8; fft_scratch(n, 2, &params).bytes()];
        let mut out = vec![0.0; n * 2];
        repulsion_fft(
            &y1,
            n,
            2,
            k,
            &params,
            &Serial,
            &mut reused,
            &mut out,
            &mut part,
        )
        .unwrap();
        let z_cached = repulsion_fft(
            &y2,
            n,
            2,
            k,
            &params,
            &Serial,
            &mut reused,
            &mut out,
            &mut part,
        )
        .unwrap();
        let mut fresh = vec![0u8; fft_scratch(n, 2, &params).bytes()];
        let mut out2 = vec![0.0; n * 2];
        let z_fresh = repulsion_fft(
            &y2, n, 2, k, &params, &Serial, &mut fresh, &mut out2, &mut part,
        )
        .unwrap();
        assert_eq!(out, out2);
        assert_eq!(z_cached, z_fresh);
    }

    /// Scalar twins of the four-lane spreading and interpolation (three nodes per interval):
    /// the spread grids bit for bit, the potentials (summed down the rows first in the lanes,
    /// across them first here) within 1e-6 of their scale.
    #[test]
    fn four_lane_spreading_and_interpolation_match_scalar_loops() {
        let n = 3000;
        let mut r = Rng::new(17);
        let y: Vec<f32> = (0..2 * n).map(|_| (r.normal() * 30.0) as f32).collect();
        let params = FftParams::default();
        let grid = choose_grid(&y, n, 2, &params).unwrap();
        let (m, p) = (grid.m, grid.p);
        assert_eq!(p, 3);
        let cells = m * m;
        let mut g = [
            vec![0.0f32; cells],
            vec![0.0; cells],
            vec![0.0; cells / 2],
            vec![0.0; cells / 2],
        ];
        let [g0, g1, even, odd] = &mut g;
        spread::<3>(&grid, m, 0, &y, g0, g1, even, odd);
        let mut want = [
            vec![0.0f32; cells],
            vec![0.0; cells],
            vec![0.0; cells / 2],
            vec![0.0; cells / 2],
        ];
        let (mut wx, mut wy) = ([0.0f32; 3], [0.0f32; 3]);
        for yi in y.chunks_exact(2) {
            let bx = grid.locate(yi[0], 0, &mut wx);
            let by = grid.locate(yi[1], 1, &mut wy);
            for k in 0..p {
                let row = bx + k;
                for l in 0..p {
                    want[0][row * m + by + l] += wx[k] * wy[l];
                    want[1][row * m + by + l] += yi[0] * wx[k] * wy[l];
                    want[2 + row % 2][row / 2 * m + by + l] += yi[1] * wx[k] * wy[l];
                }
            }
        }
        for (a, b) in g.iter().zip(&want) {
            assert!(a.iter().zip(b).all(|(u, v)| u.to_bits() == v.to_bits()));
        }
        // Potentials from arbitrary grids.
        let src: [Vec<f32>; 4] = core::array::from_fn(|a| {
            (0..if a < 2 { cells } else { cells / 2 })
                .map(|_| r.normal() as f32)
                .collect()
        });
        let grids = [&src[0][..], &src[1][..], &src[2][..], &src[3][..]];
        let mut got = vec![[0.0f32; 3]; n];
        interpolate::<3>(&grid, m, grids, &y, &mut |k, phi| got[k] = phi);
        for (yi, phi) in y.chunks_exact(2).zip(&got) {
            let bx = grid.locate(yi[0], 0, &mut wx);
            let by = grid.locate(yi[1], 1, &mut wy);
            for c in 0..3 {
                let (mut sum, mut scale) = (0.0f64, 0.0f64);
                for k in 0..p {
                    let row = bx + k;
                    for l in 0..p {
                        let v = match c {
                            2 => grids[2 + row % 2][row / 2 * m + by + l],
                            _ => grids[c][row * m + by + l],
                        };
                        sum += (wx[k] * wy[l]) as f64 * v as f64;
                        scale += ((wx[k] * wy[l]) as f64 * v as f64).abs();
                    }
                }
                assert!(
                    (phi[c] as f64 - sum).abs() <= 1e-6 * scale,
                    "{} vs {sum}",
                    phi[c]
                );
            }
        }
    }

    #[test]
    fn transform_size_caps_are_checked() {
        let with = |max_fft_2d, max_fft_1d| FftParams {
            max_fft_2d,
            max_fft_1d,
            ..FftParams::default()
        };
        for ok in [768, 640, 1024, 2048] {
            assert!(with(ok, 1 << 16).validate().is_ok(), "2-D {ok}");
        }
        // Lengths the transform has no plan for, too large, or too small for one interval.
        for (bad, what) in [(1000, "2-D"), (7 * 128, "2-D"), (4096, "2048"), (4, "2-D")] {
            let e = with(bad, 1 << 16).validate().unwrap_err().to_string();
            assert!(e.contains("max fft size") && e.contains(what), "{bad}: {e}");
        }
        let e = with(768, 768).validate().unwrap_err().to_string();
        assert!(e.contains("max fft size") && e.contains("1-D"), "{e}");
    }

    #[test]
    fn tiny_grids_with_few_nodes_per_interval_work() {
        // Grids down to one node per side (too coarse to be accurate): the four-column
        // spreading and interpolation must stay inside the rows, and the result finite.
        let n = 200;
        let mut r = Rng::new(3);
        let y: Vec<f32> = (0..2 * n).map(|_| (r.normal() * 3.0) as f32).collect();
        let k = OutputKernel::new(1.0).unwrap();
        let mut part = vec![0.0; partials_len(n)];
        for p in 1..=4 {
            for max in [2 * p, 8, 16] {
                let params = FftParams {
                    nodes_per_interval: p,
                    min_intervals: 1,
                    max_fft_2d: fft::next_supported_len(max),
                    ..FftParams::default()
                };
                let mut sc = vec![0u8; fft_scratch(n, 2, &params).bytes()];
                let mut rep = vec![0.0; n * 2];
                let z = repulsion_fft(&y, n, 2, k, &params, &Serial, &mut sc, &mut rep, &mut part)
                    .unwrap();
                assert!(
                    z.is_finite() && rep.iter().all(|v| v.is_finite()),
                    "p {p} max {max}"
                );
            }
        }
    }

    #[test]
    fn identical_points_do_not_break_it() {
        let n = 50;
        let y = vec![2.0f32; n * 2];
        let k = OutputKernel::new(1.0).unwrap();
        let params = FftParams::default();
        let mut sc = vec![0u8; fft_scratch(n, 2, &params).bytes()];
        let (mut rep, mut part) = (vec![0.0; n * 2], vec![0.0; partials_len(n)]);
        let z = repulsion_fft(&y, n, 2, k, &params, &Serial, &mut sc, &mut rep, &mut part).unwrap();
        assert!((z - (n * (n - 1)) as f64).abs() < 1e-2 * z, "Z {z}");
        assert!(rep.iter().all(|v| v.abs() < 1e-3));
    }
}
