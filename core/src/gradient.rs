//! The t-SNE gradient (MATH §3), split into attraction over the sparse P and dense repulsion.
//!
//! With w_ij = (1 + r²/α)^(−α) and Z = Σ_{k≠l} w_kl:
//!   ∂KL/∂y_i = 4 [ ρ Σ_j p_ij w_ij^{1/α} (y_i − y_j)  −  (1/Z) Σ_j w_ij^{(α+1)/α} (y_i − y_j) ]
//! The kernels here return the two sums (`attr`, `rep`) and Z; callers combine them.

use crate::affinity::CsrRef;
use crate::bh;
use crate::error::{Result, ensure, ensure_len};
use crate::fft_repulsion::{FftParams, fft_scratch, repulsion_fft};
use crate::parallel::{Parallel, chunk_count, for_row_chunks_sum};
use crate::scratch::{Scratch, ScratchSize};

/// Points per parallel task in the gradient kernels.
pub const TASK_ROWS: usize = 128;

/// Length of the per-task partial-sum scratch the kernels need for `n` points.
pub fn partials_len(n: usize) -> usize {
    chunk_count(n, TASK_ROWS)
}

/// The heavy-tailed output kernel, α = `dof` (α = 1: Cauchy).
#[derive(Clone, Copy, Debug)]
pub struct OutputKernel {
    dof: f32,
}

impl OutputKernel {
    pub fn new(dof: f32) -> Result<Self> {
        ensure(
            dof.is_finite() && dof > 0.0,
            "dof",
            "degrees of freedom must be a finite number > 0",
        )?;
        Ok(OutputKernel { dof })
    }
    pub fn dof(&self) -> f32 {
        self.dof
    }
    /// (w, w^{1/α}) at squared distance r2.
    #[inline(always)]
    pub fn eval(&self, r2: f32) -> (f32, f32) {
        if self.dof == 1.0 {
            let w = 1.0 / (1.0 + r2);
            (w, w)
        } else {
            let b = 1.0 / (1.0 + r2 / self.dof);
            (libm::powf(b, self.dof), b)
        }
    }
}

#[inline(always)]
pub(crate) fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    let mut s = 0.0;
    for (x, y) in a.iter().zip(b) {
        let d = x - y;
        s += d * d;
    }
    s
}

/// `attr_i = Σ_j p_ij w_ij^{1/α} (y_i − y_j)`. Returns Σ_ij p_ij ln w_ij (for the KL
/// divergence) when `with_log_w`, else 0. `partials`: `partials_len(n)`.
#[allow(clippy::too_many_arguments)]
pub fn attraction(
    p: CsrRef,
    y: &[f32],
    dims: usize,
    kernel: OutputKernel,
    with_log_w: bool,
    par: &dyn Parallel,
    attr: &mut [f32],
    partials: &mut [f64],
) -> Result<f64> {
    let n = p.rows();
    ensure_len("embedding", n * dims, y.len())?;
    ensure_len("attraction output", n * dims, attr.len())?;
    ensure_len("partials", partials_len(n), partials.len())?;
    Ok(for_row_chunks_sum(
        par,
        n,
        TASK_ROWS,
        attr,
        dims,
        partials,
        &|first, rows, out| match (dims == 2 && kernel.dof() == 1.0, with_log_w) {
            (true, false) => attraction_rows_2d_cauchy::<false>(p, y, first, rows, out),
            (true, true) => attraction_rows_2d_cauchy::<true>(p, y, first, rows, out),
            _ => attraction_rows(p, y, dims, kernel, with_log_w, first, rows, out),
        },
    ))
}

/// Points per column block of [`PackedP`]: columns are stored as 16-bit offsets in their block.
const PACK_BLOCK: usize = 1 << 16;

/// P for the hot attraction kernel (2-D, Cauchy): 4 bytes per non-zero instead of 8. Each
/// row's entries are grouped by block of 65 536 columns and stored as 16-bit offsets there,
/// and the values are rounded to bfloat16 (relative error at most 2⁻⁸, far below the FFT
/// repulsion's). Streaming P bounds that kernel on two threads, so halving P's bytes shortens
/// every iteration. Each row's run in a block is padded with zeros (at the block's first
/// column) to a multiple of eight entries, so the kernel needs no scalar remainder: about
/// 3 % more bytes for 10–15 % of the kernel's time (`perf`, MNIST-70k).
pub struct PackedP<'a> {
    blocks: usize,
    /// Start of row i's block b at `i * blocks + b`; `n * blocks + 1` entries.
    starts: &'a [u32],
    cols: &'a [u16],
    vals: &'a [u16],
}

/// Scratch for [`pack_p`] with `n` rows and up to `nnz` non-zeros.
pub fn packed_p_scratch(n: usize, nnz: usize) -> ScratchSize {
    let blocks = n.div_ceil(PACK_BLOCK).max(1);
    let entries = nnz + (PACK_LANES - 1) * n * blocks;
    ScratchSize::new()
        .plus::<u32>(n * blocks + 1)
        .plus::<u16>(entries)
        .plus::<u16>(entries)
}

/// Entries per step of the packed kernel; each row's run in a block is a multiple of this.
const PACK_LANES: usize = 8;

/// `v` rounded to the nearest bfloat16 (ties to even), as its 16 bits.
pub fn to_bf16(v: f32) -> u16 {
    let b = v.to_bits();
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

#[inline(always)]
fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Packs `p` (already checked against its rows) into `scratch` (`packed_p_scratch`).
pub fn pack_p<'a>(p: CsrRef, scratch: &'a mut [u8]) -> Result<PackedP<'a>> {
    let (n, nnz) = (p.rows(), p.nnz());
    ensure(nnz <= u32::MAX as usize, "P", "more than 2³² non-zeros")?;
    let blocks = n.div_ceil(PACK_BLOCK).max(1);
    let entries = nnz + (PACK_LANES - 1) * n * blocks;
    ensure(
        entries <= u32::MAX as usize,
        "P",
        "more than 2³² packed entries",
    )?;
    let mut s = Scratch::new(scratch);
    let starts = s.take::<u32>(n * blocks + 1, "packed P row starts")?;
    let cols = s.take::<u16>(entries, "packed P columns")?;
    let vals = s.take::<u16>(entries, "packed P values")?;
    let mut at = 0usize;
    for i in 0..n {
        let (ci, vi) = p.row(i);
        for b in 0..blocks {
            starts[i * blocks + b] = at as u32;
            for (&j, &v) in ci.iter().zip(vi) {
                if j as usize / PACK_BLOCK == b {
                    cols[at] = (j as usize % PACK_BLOCK) as u16;
                    vals[at] = to_bf16(v);
                    at += 1;
                }
            }
            // A zero value adds nothing while y is finite (the repulsion rejects a map that
            // is not, naming the value).
            while (at - starts[i * blocks + b] as usize) % PACK_LANES != 0 {
                (cols[at], vals[at]) = (0, 0);
                at += 1;
            }
        }
    }
    starts[n * blocks] = at as u32;
    Ok(PackedP {
        blocks,
        starts,
        cols,
        vals,
    })
}

/// The 2-D Cauchy attraction (`attraction` with dims 2 and α = 1) from packed P.
pub fn attraction_packed(
    p: &PackedP,
    y: &[f32],
    par: &dyn Parallel,
    attr: &mut [f32],
    partials: &mut [f64],
) -> Result<()> {
    let n = (p.starts.len() - 1) / p.blocks;
    ensure_len("embedding", n * 2, y.len())?;
    ensure_len("attraction output", n * 2, attr.len())?;
    ensure_len("partials", partials_len(n), partials.len())?;
    for_row_chunks_sum(par, n, TASK_ROWS, attr, 2, partials, &|first, rows, out| {
        attraction_rows_packed(p, y, first, rows, out);
        0.0
    });
    Ok(())
}

/// Eight edges at a time per column block (each row's runs are whole multiples of eight),
/// then the lanes summed in order. `attraction_rows_packed_scalar` does the same in scalars.
fn attraction_rows_packed(p: &PackedP, y: &[f32], first: usize, rows: usize, out: &mut [f32]) {
    use wide::f32x8;
    let one = f32x8::splat(1.0);
    for r in 0..rows {
        let i = first + r;
        prefetch_row_nta(p, i + AHEAD_ROWS);
        let (xi, yi) = (y[2 * i], y[2 * i + 1]);
        let (vx, vy) = (f32x8::splat(xi), f32x8::splat(yi));
        let (mut fx, mut fy) = (f32x8::ZERO, f32x8::ZERO);
        let row = &p.starts[i * p.blocks..=(i + 1) * p.blocks];
        for (b, w) in row.windows(2).enumerate() {
            let (cols, vals) = (
                &p.cols[w[0] as usize..w[1] as usize],
                &p.vals[w[0] as usize..w[1] as usize],
            );
            let base = 2 * b * PACK_BLOCK;
            for (cj, cv) in cols.chunks_exact(8).zip(vals.chunks_exact(8)) {
                let pair = |l: usize| -> u64 {
                    let j = base + 2 * cj[l] as usize;
                    debug_assert!(j + 2 <= y.len());
                    // SAFETY: `pack_p` takes columns from a CSR checked against n rows, and
                    // `y` holds 2n values (checked by the caller).
                    unsafe { y.as_ptr().add(j).cast::<u64>().read_unaligned() }
                };
                let (xs, ys) = deinterleave(core::array::from_fn(pair));
                let dx = vx - xs;
                let dy = vy - ys;
                let pv = f32x8::from(core::array::from_fn::<f32, 8, _>(|l| from_bf16(cv[l])));
                let q = pv / (one + dx * dx + dy * dy);
                fx += q * dx;
                fy += q * dy;
            }
        }
        out[2 * r] = fx.to_array().iter().sum::<f32>();
        out[2 * r + 1] = fy.to_array().iter().sum::<f32>();
    }
}

/// Rows of P asked for ahead of the attraction kernel.
const AHEAD_ROWS: usize = 4;

/// Asks for row `i` of P (if any) as non-temporal: P streams through once per iteration, and
/// filling the caches with it evicts the coordinates y the kernel gathers. MNIST-70k
/// t-SNE, eleven alternations: optimise median 8.91 → 8.18 s on two threads, same bits.
#[inline(always)]
fn prefetch_row_nta(p: &PackedP, i: usize) {
    if i * p.blocks + p.blocks >= p.starts.len() {
        return;
    }
    let (s, e) = (
        p.starts[i * p.blocks] as usize,
        p.starts[(i + 1) * p.blocks] as usize,
    );
    for at in (s..e).step_by(32) {
        prefetch_nta(p.cols[at..].as_ptr());
        prefetch_nta(p.vals[at..].as_ptr());
    }
}

#[inline(always)]
fn prefetch_nta(at: *const u16) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        use core::arch::x86_64::{_MM_HINT_NTA, _mm_prefetch};
        _mm_prefetch::<{ _MM_HINT_NTA }>(at.cast::<i8>())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Eight (x, y) pairs, each as the 8 bytes it occupies, as a vector of the x and a vector of
/// the y: two pairs per vector through 64-bit lanes and four unpacks per four pairs, rather
/// than sixteen single-lane inserts.
#[inline(always)]
fn deinterleave(q: [u64; 8]) -> (wide::f32x8, wide::f32x8) {
    use wide::f32x4;
    const {
        assert!(
            cfg!(target_endian = "little"),
            "x is the low half of a pair's u64"
        )
    };
    let two = |a: usize| {
        // SAFETY: two 64-bit lanes and four f32 lanes are the same 16 plain bytes.
        unsafe { core::mem::transmute::<wide::u64x2, f32x4>(wide::u64x2::new([q[a], q[a + 1]])) }
    };
    let four = |a: usize| {
        // (x0 y0 x1 y1), (x2 y2 x3 y3) → (x0 x2 y0 y2), (x1 x3 y1 y3) → (x0 x1 x2 x3), (y0 …)
        let (u, w) = (two(a).unpack_lo(two(a + 2)), two(a).unpack_hi(two(a + 2)));
        (u.unpack_lo(w).to_array(), u.unpack_hi(w).to_array())
    };
    let ((x0, y0), (x1, y1)) = (four(0), four(4));
    let join = |a: [f32; 4], b: [f32; 4]| {
        wide::f32x8::from([a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]])
    };
    (join(x0, x1), join(y0, y1))
}

/// Scalar twin of `attraction_rows_packed` (the same operations, lane by lane).
#[cfg(test)]
fn attraction_rows_packed_scalar(
    p: &PackedP,
    y: &[f32],
    first: usize,
    rows: usize,
    out: &mut [f32],
) {
    for r in 0..rows {
        let i = first + r;
        let (xi, yi) = (y[2 * i], y[2 * i + 1]);
        let (mut fx, mut fy) = ([0.0f32; 8], [0.0f32; 8]);
        let row = &p.starts[i * p.blocks..=(i + 1) * p.blocks];
        for (b, w) in row.windows(2).enumerate() {
            let (s, e) = (w[0] as usize, w[1] as usize);
            assert_eq!((e - s) % PACK_LANES, 0, "a padded run");
            for c0 in (s..e).step_by(8) {
                for l in 0..8 {
                    let j = b * PACK_BLOCK + p.cols[c0 + l] as usize;
                    let (dx, dy) = (xi - y[2 * j], yi - y[2 * j + 1]);
                    let q = from_bf16(p.vals[c0 + l]) / (1.0 + dx * dx + dy * dy);
                    fx[l] += q * dx;
                    fy[l] += q * dy;
                }
            }
        }
        out[2 * r] = fx.iter().sum::<f32>();
        out[2 * r + 1] = fy.iter().sum::<f32>();
    }
}

/// The plain kernel for any dimension and α; also the oracle for the SIMD one.
#[allow(clippy::too_many_arguments)]
fn attraction_rows(
    p: CsrRef,
    y: &[f32],
    dims: usize,
    kernel: OutputKernel,
    with_log_w: bool,
    first: usize,
    rows: usize,
    out: &mut [f32],
) -> f64 {
    let mut acc_log = 0.0f64;
    for r in 0..rows {
        let i = first + r;
        let yi = &y[i * dims..(i + 1) * dims];
        let o = &mut out[r * dims..(r + 1) * dims];
        o.fill(0.0);
        let (cols, vals) = p.row(i);
        for (&j, &pij) in cols.iter().zip(vals) {
            let yj = &y[j as usize * dims..(j as usize + 1) * dims];
            let (w, wa) = kernel.eval(sq_dist(yi, yj));
            let c = pij * wa;
            for d in 0..dims {
                o[d] += c * (yi[d] - yj[d]);
            }
            if with_log_w {
                acc_log += pij as f64 * libm::log(w as f64);
            }
        }
    }
    acc_log
}

/// The hot case, 2-D output with the Cauchy kernel: eight edges at a time. With `LOG`, also
/// returns Σ p ln w = −Σ p ln(1 + d²) for the KL divergence, through `fastmath::log2_fast`
/// (absolute error about 1e-6 per logarithm, so about 1e-6 in the KL, as Σ p = 1) rather than
/// libm's f64 logarithm, which made each KL evaluation cost as much as eight iterations.
fn attraction_rows_2d_cauchy<const LOG: bool>(
    p: CsrRef,
    y: &[f32],
    first: usize,
    rows: usize,
    out: &mut [f32],
) -> f64 {
    use crate::fastmath::{log2_fast, log2_fast_x8};
    use wide::f32x8;
    let one = f32x8::splat(1.0);
    let mut sum_p_log2 = 0.0f64;
    for r in 0..rows {
        let i = first + r;
        let (xi, yi) = (y[2 * i], y[2 * i + 1]);
        let (cols, vals) = p.row(i);
        let body = cols.len() - cols.len() % 8;
        let (mut fx, mut fy, mut lw) = (f32x8::ZERO, f32x8::ZERO, f32x8::ZERO);
        let (vx, vy) = (f32x8::splat(xi), f32x8::splat(yi));
        for (cj, cv) in cols[..body]
            .chunks_exact(8)
            .zip(vals[..body].chunks_exact(8))
        {
            let q: [[f32; 2]; 8] = core::array::from_fn(|l| {
                let j = 2 * cj[l] as usize;
                <[f32; 2]>::try_from(&y[j..j + 2]).unwrap()
            });
            let dx = vx - f32x8::from(q.map(|v| v[0]));
            let dy = vy - f32x8::from(q.map(|v| v[1]));
            let pv = f32x8::from(<[f32; 8]>::try_from(cv).unwrap());
            let d = one + dx * dx + dy * dy;
            let q = pv / d;
            fx += q * dx;
            fy += q * dy;
            if LOG {
                lw += pv * log2_fast_x8(d);
            }
        }
        let (mut sx, mut sy, mut sl) = (
            fx.to_array().iter().sum::<f32>(),
            fy.to_array().iter().sum::<f32>(),
            lw.to_array().iter().sum::<f32>(),
        );
        for c in body..cols.len() {
            let j = cols[c] as usize;
            let (dx, dy) = (xi - y[2 * j], yi - y[2 * j + 1]);
            let d = 1.0 + dx * dx + dy * dy;
            let q = vals[c] / d;
            sx += q * dx;
            sy += q * dy;
            if LOG {
                sl += vals[c] * log2_fast(d);
            }
        }
        out[2 * r] = sx;
        out[2 * r + 1] = sy;
        sum_p_log2 += sl as f64;
    }
    -core::f64::consts::LN_2 * sum_p_log2
}

/// Exact O(N²) repulsion: `rep_i = Σ_{j≠i} w_ij^{(α+1)/α} (y_i − y_j)`; returns Z.
/// `partials`: `partials_len(n)`.
pub fn repulsion_exact(
    y: &[f32],
    n: usize,
    dims: usize,
    kernel: OutputKernel,
    par: &dyn Parallel,
    rep: &mut [f32],
    partials: &mut [f64],
) -> Result<f64> {
    ensure_len("embedding", n * dims, y.len())?;
    ensure_len("repulsion output", n * dims, rep.len())?;
    ensure_len("partials", partials_len(n), partials.len())?;
    Ok(for_row_chunks_sum(
        par,
        n,
        TASK_ROWS,
        rep,
        dims,
        partials,
        &|first, rows, out| {
            let mut z = 0.0f64;
            for r in 0..rows {
                let i = first + r;
                let yi = &y[i * dims..(i + 1) * dims];
                let o = &mut out[r * dims..(r + 1) * dims];
                o.fill(0.0);
                let mut zi = 0.0f32;
                for j in 0..n {
                    if j == i {
                        continue;
                    }
                    let yj = &y[j * dims..(j + 1) * dims];
                    let (w, wa) = kernel.eval(sq_dist(yi, yj));
                    zi += w;
                    let c = w * wa;
                    for d in 0..dims {
                        o[d] += c * (yi[d] - yj[d]);
                    }
                }
                z += zi as f64;
            }
            z
        },
    ))
}

/// Which repulsion kernel computes the dense term.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RepulsionMethod {
    Exact,
    /// Barnes–Hut with opening angle θ (2-D and 3-D output).
    BarnesHut {
        theta: f32,
    },
    /// FFT-accelerated interpolation (1-D and 2-D output).
    Fft(FftParams),
}

/// Scratch bytes `repulsion` needs for this method.
pub fn repulsion_scratch(method: RepulsionMethod, n: usize, dims: usize) -> ScratchSize {
    match method {
        RepulsionMethod::Exact => ScratchSize::new(),
        RepulsionMethod::BarnesHut { .. } => ScratchSize::new()
            .plus::<bh::BhNode>(bh::nodes_len(n))
            .plus::<u32>(n),
        RepulsionMethod::Fft(p) => fft_scratch(n, dims, &p),
    }
}

/// Scratch for `kl_gradient`: typed buffers the caller allocates.
pub struct GradientScratch<'a> {
    pub attr: &'a mut [f32],
    pub rep: &'a mut [f32],
    pub partials: &'a mut [f64],
    /// `repulsion_scratch(method, n, dims).bytes()`.
    pub repulsion: &'a mut [u8],
}

/// Repulsion by the chosen method; returns Z.
#[allow(clippy::too_many_arguments)]
pub fn repulsion(
    method: RepulsionMethod,
    y: &[f32],
    n: usize,
    dims: usize,
    kernel: OutputKernel,
    par: &dyn Parallel,
    scratch: &mut [u8],
    rep: &mut [f32],
    partials: &mut [f64],
) -> Result<f64> {
    match method {
        RepulsionMethod::Exact => repulsion_exact(y, n, dims, kernel, par, rep, partials),
        RepulsionMethod::BarnesHut { theta } => {
            let mut s = Scratch::new(scratch);
            let nodes = s.take::<bh::BhNode>(bh::nodes_len(n), "bh nodes")?;
            let perm = s.take::<u32>(n, "bh permutation")?;
            bh::repulsion_bh(y, n, dims, kernel, theta, par, nodes, perm, rep, partials)
        }
        RepulsionMethod::Fft(p) => {
            repulsion_fft(y, n, dims, kernel, &p, par, scratch, rep, partials)
        }
    }
}

/// The full gradient ∂KL/∂y (with P multiplied by `exaggeration`) into `grad`; returns Z.
#[allow(clippy::too_many_arguments)]
pub fn kl_gradient(
    p: CsrRef,
    y: &[f32],
    dims: usize,
    kernel: OutputKernel,
    exaggeration: f32,
    method: RepulsionMethod,
    par: &dyn Parallel,
    s: GradientScratch,
    grad: &mut [f32],
) -> Result<f64> {
    let n = p.rows();
    ensure_len("gradient", n * dims, grad.len())?;
    attraction(p, y, dims, kernel, false, par, s.attr, s.partials)?;
    let z = repulsion(
        method,
        y,
        n,
        dims,
        kernel,
        par,
        s.repulsion,
        s.rep,
        s.partials,
    )?;
    let inv_z = (1.0 / z) as f32;
    for ((g, a), r) in grad[..n * dims]
        .iter_mut()
        .zip(&s.attr[..n * dims])
        .zip(&s.rep[..n * dims])
    {
        *g = 4.0 * (exaggeration * a - r * inv_z);
    }
    Ok(z)
}

/// KL(P‖Q) computed directly in O(N²), f64; the oracle for tests and small problems.
pub fn kl_divergence_exact(p: CsrRef, y: &[f32], dims: usize, kernel: OutputKernel) -> f64 {
    let n = p.rows();
    let mut z = 0.0f64;
    for i in 0..n {
        for j in 0..n {
            if i != j {
                z += kernel
                    .eval(sq_dist(
                        &y[i * dims..(i + 1) * dims],
                        &y[j * dims..(j + 1) * dims],
                    ))
                    .0 as f64;
            }
        }
    }
    let mut kl = 0.0;
    for i in 0..n {
        let (cols, vals) = p.row(i);
        for (&j, &pij) in cols.iter().zip(vals) {
            if pij > 0.0 {
                let j = j as usize;
                let w = kernel
                    .eval(sq_dist(
                        &y[i * dims..(i + 1) * dims],
                        &y[j * dims..(j + 1) * dims],
                    ))
                    .0 as f64;
                kl += pij as f64 * libm::log(pij as f64 * z / w);
            }
        }
    }
    kl
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Rng, Serial};

    /// KL(P‖Q) entirely in f64, the finite-difference oracle.
    fn kl_f64(p: CsrRef, y: &[f64], dims: usize, dof: f64) -> f64 {
        let n = p.rows();
        let w = |i: usize, j: usize| {
            let r2: f64 = (0..dims)
                .map(|c| (y[i * dims + c] - y[j * dims + c]).powi(2))
                .sum();
            (1.0 + r2 / dof).powf(-dof)
        };
        let z: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| w(i, j))
            .sum();
        let mut kl = 0.0;
        for i in 0..n {
            let (c, v) = p.row(i);
            for (&j, &pij) in c.iter().zip(v) {
                kl += pij as f64 * (pij as f64 * z / w(i, j as usize)).ln();
            }
        }
        kl
    }

    fn random_p(n: usize, k: usize, r: &mut Rng) -> (Vec<usize>, Vec<u32>, Vec<f32>) {
        let mut idx = vec![0u32; n * k];
        let mut pc = vec![0f32; n * k];
        for i in 0..n {
            let mut c = vec![];
            while c.len() < k {
                let j = r.below(n) as u32;
                if j as usize != i && !c.contains(&j) {
                    c.push(j);
                }
            }
            idx[i * k..(i + 1) * k].copy_from_slice(&c);
            for q in 0..k {
                pc[i * k + q] = (1.0 / k as f64) as f32 * (0.5 + r.uniform() as f32);
            }
        }
        let (mut ip, mut ind, mut val, mut cur) = (
            vec![0; n + 1],
            vec![0; 2 * n * k],
            vec![0.0; 2 * n * k],
            vec![0; n],
        );
        let nnz = crate::affinity::symmetrize(
            &idx, &pc, k, &Serial, &mut ip, &mut ind, &mut val, &mut cur,
        )
        .unwrap();
        ind.truncate(nnz);
        val.truncate(nnz);
        // Renormalise exactly (the conditional rows above do not sum to one).
        let s: f64 = val.iter().map(|&v| v as f64).sum();
        val.iter_mut().for_each(|v| *v = (*v as f64 / s) as f32);
        (ip, ind, val)
    }

    #[test]
    fn simd_attraction_matches_the_scalar_kernel() {
        let mut r = Rng::new(12);
        let (n, k) = (500, 17);
        let (ip, ind, val) = random_p(n, k, &mut r);
        let p = CsrRef {
            indptr: &ip,
            indices: &ind,
            values: &val,
        };
        let y: Vec<f32> = (0..n * 2).map(|_| (r.normal() * 5.0) as f32).collect();
        let kernel = OutputKernel::new(1.0).unwrap();
        let mut simd_out = vec![0.0; n * 2];
        let mut part = vec![0.0; partials_len(n)];
        let fast_log_w =
            attraction(p, &y, 2, kernel, true, &Serial, &mut simd_out, &mut part).unwrap();
        let mut scalar_out = vec![0.0; n * 2];
        let log_w = attraction_rows(p, &y, 2, kernel, true, 0, n, &mut scalar_out);
        // Σ p ln w through the fast logarithm: within 1e-5 of libm's (Σ p = 1).
        let sum_p: f64 = val.iter().map(|&v| v as f64).sum();
        assert!(
            (fast_log_w - log_w).abs() <= 1e-5 * sum_p,
            "{fast_log_w} vs {log_w}"
        );
        // Same terms, summed in eight lanes instead of one: 1e-5 relative per point (norm).
        for i in 0..n {
            let (a, b) = (&simd_out[2 * i..2 * i + 2], &scalar_out[2 * i..2 * i + 2]);
            let err = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
            let norm = (b[0].powi(2) + b[1].powi(2)).sqrt();
            assert!(err <= 1e-5 * norm + 1e-12, "point {i}: {a:?} vs {b:?}");
        }
    }

    #[test]
    fn packed_attraction_matches_its_scalar_twin_and_the_full_precision_kernel() {
        // 70 000 points, so rows span two column blocks; six random partners per row.
        let mut r = Rng::new(13);
        let (n, k) = (70_000, 6);
        let mut ip = vec![0usize];
        let (mut ind, mut val) = (vec![], vec![]);
        for _ in 0..n {
            let mut row: Vec<u32> = (0..k + r.below(20)).map(|_| r.below(n) as u32).collect();
            row.sort_unstable();
            row.dedup();
            for j in row {
                ind.push(j);
                val.push((r.uniform() * 1e-6) as f32);
            }
            ip.push(ind.len());
        }
        let p = CsrRef {
            indptr: &ip,
            indices: &ind,
            values: &val,
        };
        let mut sc = vec![0u8; packed_p_scratch(n, p.nnz()).bytes()];
        let pp = pack_p(p, &mut sc).unwrap();
        assert_eq!(pp.blocks, 2);
        let y: Vec<f32> = (0..n * 2).map(|_| (r.normal() * 30.0) as f32).collect();
        let mut part = vec![0.0; partials_len(n)];
        let mut packed = vec![0.0; n * 2];
        attraction_packed(
            &pp,
            &y,
            &crate::threads::Threads::new(3),
            &mut packed,
            &mut part,
        )
        .unwrap();
        let mut twin = vec![0.0; n * 2];
        attraction_rows_packed_scalar(&pp, &y, 0, n, &mut twin);
        assert!(
            packed
                .iter()
                .zip(&twin)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        // Against the f32 kernel on the same values rounded to bfloat16: the same terms
        // summed in another order (1e-5 of the sum of the terms' sizes); against the
        // unrounded P: each term within bfloat16's 2⁻⁸, so the sum within 2⁻⁸ of that size.
        let size: Vec<f32> = (0..n)
            .map(|i| {
                let (cols, vals) = p.row(i);
                let term = |(&j, &v): (&u32, &f32)| {
                    let j = j as usize;
                    let (dx, dy) = (y[2 * i] - y[2 * j], y[2 * i + 1] - y[2 * j + 1]);
                    v * (dx * dx + dy * dy).sqrt() / (1.0 + dx * dx + dy * dy)
                };
                cols.iter().zip(vals).map(term).sum()
            })
            .collect();
        let rounded: Vec<f32> = val.iter().map(|&v| from_bf16(to_bf16(v))).collect();
        for (values, tol) in [(&rounded, 1e-5f32), (&val, 1.0 / 256.0)] {
            let q = CsrRef { values, ..p };
            let mut full = vec![0.0; n * 2];
            let kernel = OutputKernel::new(1.0).unwrap();
            attraction(q, &y, 2, kernel, false, &Serial, &mut full, &mut part).unwrap();
            for i in 0..n {
                let (a, b) = (&packed[2 * i..2 * i + 2], &full[2 * i..2 * i + 2]);
                let err = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
                assert!(
                    err <= tol * size[i],
                    "point {i}: {a:?} vs {b:?} (tol {tol})"
                );
            }
        }
    }

    #[test]
    fn gradient_matches_central_differences() {
        let mut r = Rng::new(8);
        let (n, k) = (40, 5);
        let (ip, ind, val) = random_p(n, k, &mut r);
        let p = CsrRef {
            indptr: &ip,
            indices: &ind,
            values: &val,
        };
        for dims in [1, 2, 3] {
            for dof in [1.0f32, 0.6, 3.0] {
                let y: Vec<f32> = (0..n * dims).map(|_| (r.normal() * 2.0) as f32).collect();
                let kernel = OutputKernel::new(dof).unwrap();
                let mut grad = vec![0.0; n * dims];
                let (mut a, mut rp, mut part) = (
                    vec![0.0; n * dims],
                    vec![0.0; n * dims],
                    vec![0.0; partials_len(n)],
                );
                let scratch = GradientScratch {
                    attr: &mut a,
                    rep: &mut rp,
                    partials: &mut part,
                    repulsion: &mut [],
                };
                kl_gradient(
                    p,
                    &y,
                    dims,
                    kernel,
                    1.0,
                    RepulsionMethod::Exact,
                    &Serial,
                    scratch,
                    &mut grad,
                )
                .unwrap();
                let y64: Vec<f64> = y.iter().map(|&v| v as f64).collect();
                let h = 1e-5;
                let mut num = vec![0.0f64; n * dims];
                for c in 0..n * dims {
                    let (mut yp, mut ym) = (y64.clone(), y64.clone());
                    yp[c] += h;
                    ym[c] -= h;
                    num[c] = (kl_f64(p, &yp, dims, dof as f64) - kl_f64(p, &ym, dims, dof as f64))
                        / (2.0 * h);
                }
                let err: f64 = num
                    .iter()
                    .zip(&grad)
                    .map(|(a, b)| (a - *b as f64).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let norm: f64 = num.iter().map(|a| a * a).sum::<f64>().sqrt();
                // f32 gradient vs f64 central differences: relative error (norm) below 1e-4.
                assert!(
                    err / norm < 1e-4,
                    "dims {dims} dof {dof}: relative error {:e}",
                    err / norm
                );
                // The KL the optimiser reports (Σp log p − Σp log w + log Z) equals the oracle.
                let mut part2 = vec![0.0; partials_len(n)];
                let slw =
                    attraction(p, &y, dims, kernel, true, &Serial, &mut a, &mut part2).unwrap();
                let z = repulsion_exact(&y, n, dims, kernel, &Serial, &mut rp, &mut part2).unwrap();
                let ent: f64 = val.iter().map(|&v| v as f64 * (v as f64).ln()).sum();
                let kl = ent - slw + z.ln();
                let oracle = kl_f64(p, &y64, dims, dof as f64);
                assert!(
                    (kl - oracle).abs() < 1e-5 * oracle.abs().max(1.0),
                    "KL {kl} vs {oracle}"
                );
                assert!(
                    (kl_divergence_exact(p, &y, dims, kernel) - oracle).abs()
                        < 1e-5 * oracle.abs().max(1.0)
                );
            }
        }
    }
}
