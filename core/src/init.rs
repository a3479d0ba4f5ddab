//! Initial embeddings: PCA (subspace iteration + a small Rayleigh–Ritz problem solved with
//! nalgebra on a fixed 8×8 matrix) and Gaussian random. Both scaled so the first coordinate
//! has standard deviation 1e-4, as openTSNE does.

use crate::error::{Error, Result, ensure, ensure_len};
use crate::matrix::MatRef;
use crate::parallel::{Parallel, for_row_chunks};
use crate::rng::Rng;
use crate::scratch::{Scratch, ScratchSize};
use nalgebra::{SMatrix, SymmetricEigen};

/// Size of the iterated subspace (and of the Rayleigh–Ritz matrix).
pub const PCA_BLOCK: usize = 8;
/// Subspace iterations; the top components converge like (λ_{9}/λ_d)^iterations.
pub const PCA_ITERS: usize = 12;
/// Standard deviation of the first coordinate after initialisation.
pub const INIT_STD: f32 = 1e-4;

const TASK_ROWS: usize = 256;
/// Row chunks for the Xᵀ U reduction (fixed, for thread-count independent sums).
const REDUCE_TASKS: usize = 8;

/// Scratch for `pca` with `n` points of `d` columns.
pub fn pca_scratch(n: usize, d: usize) -> ScratchSize {
    let r = PCA_BLOCK.min(d);
    ScratchSize::new()
        .plus::<f64>(d) // mean
        .plus::<f64>(d * r) // V
        .plus::<f64>(n * r) // U
        .plus::<f64>(REDUCE_TASKS * d * r) // partial XᵀU
}

/// Projects `x` onto its first `dims` principal components into `y` (`n × dims`), scaled so
/// the first coordinate has standard deviation `INIT_STD`. Signs are fixed so that each
/// component's largest loading is positive.
pub fn pca_init(
    x: MatRef,
    dims: usize,
    seed: u64,
    par: &dyn Parallel,
    scratch: &mut [u8],
    y: &mut [f32],
) -> Result<()> {
    let (n, d) = (x.rows(), x.cols());
    ensure(
        (1..=PCA_BLOCK).contains(&dims),
        "dims",
        "PCA initialisation supports 1 to 8 output dimensions",
    )?;
    ensure(
        dims <= d,
        "dims",
        "PCA initialisation needs at least as many input columns as output dimensions",
    )?;
    ensure_len("embedding", n * dims, y.len())?;
    let r = PCA_BLOCK.min(d);
    let mut s = Scratch::new(scratch);
    let mean = s.take::<f64>(d, "pca mean")?;
    let v = s.take::<f64>(d * r, "pca basis")?;
    let u = s.take::<f64>(n * r, "pca scores")?;
    let partial = s.take::<f64>(REDUCE_TASKS * d * r, "pca partial sums")?;

    for i in 0..n {
        for (m, &xv) in mean.iter_mut().zip(x.row(i)) {
            *m += xv as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    let mut rng = Rng::stream(seed, 0x9ca);
    v.iter_mut().for_each(|e| *e = rng.normal());
    orthonormalize(v, d, r);

    for _ in 0..PCA_ITERS {
        scores(x, mean, v, r, par, u);
        // V ← orthonormal basis of Xcᵀ U.
        let chunk = n.div_ceil(REDUCE_TASKS).max(1);
        for_row_chunks(par, REDUCE_TASKS, 1, partial, d * r, &|t, _, _, acc| {
            acc.fill(0.0);
            for i in (t * chunk)..((t + 1) * chunk).min(n) {
                let ui = &u[i * r..(i + 1) * r];
                for (f, &xv) in x.row(i).iter().enumerate() {
                    let xc = xv as f64 - mean[f];
                    let row = &mut acc[f * r..(f + 1) * r];
                    for c in 0..r {
                        row[c] += xc * ui[c];
                    }
                }
            }
        });
        v.fill(0.0);
        for t in 0..REDUCE_TASKS {
            for (a, b) in v.iter_mut().zip(&partial[t * d * r..(t + 1) * d * r]) {
                *a += b;
            }
        }
        orthonormalize(v, d, r);
    }
    scores(x, mean, v, r, par, u);

    // Rayleigh–Ritz: T = UᵀU = Vᵀ C V (scaled); unused rows/columns get −1 on the diagonal so
    // they sort below every real (non-negative) eigenvalue and never mix with them.
    let mut t = SMatrix::<f64, PCA_BLOCK, PCA_BLOCK>::zeros();
    for i in 0..n {
        let ui = &u[i * r..(i + 1) * r];
        for a in 0..r {
            for b in 0..r {
                t[(a, b)] += ui[a] * ui[b];
            }
        }
    }
    for a in r..PCA_BLOCK {
        t[(a, a)] = -1.0;
    }
    let eig = SymmetricEigen::new(t);
    let mut order: [usize; PCA_BLOCK] = core::array::from_fn(|i| i);
    order.sort_unstable_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));

    for c in 0..dims {
        let e = eig.eigenvectors.column(order[c]);
        // Sign: the largest loading of V·e is positive.
        let mut best = (0.0f64, 1.0f64);
        for f in 0..d {
            let l: f64 = (0..r).map(|a| v[f * r + a] * e[a]).sum();
            if l.abs() > best.0 {
                best = (l.abs(), l.signum());
            }
        }
        for i in 0..n {
            let s: f64 = (0..r).map(|a| u[i * r + a] * e[a]).sum();
            y[i * dims + c] = (s * best.1) as f32;
        }
    }
    scale_first_std(y, n, dims)
}

/// U = (X − mean) V, n × r.
fn scores(x: MatRef, mean: &[f64], v: &[f64], r: usize, par: &dyn Parallel, u: &mut [f64]) {
    let n = x.rows();
    for_row_chunks(par, n, TASK_ROWS, u, r, &|_, first, rows, out| {
        for q in 0..rows {
            let o = &mut out[q * r..(q + 1) * r];
            o.fill(0.0);
            for (f, &xv) in x.row(first + q).iter().enumerate() {
                let xc = xv as f64 - mean[f];
                let vr = &v[f * r..(f + 1) * r];
                for c in 0..r {
                    o[c] += xc * vr[c];
                }
            }
        }
    });
}

/// Modified Gram–Schmidt on the r columns of a d × r row-major matrix. A column that
/// vanishes (rank-deficient data) is replaced by a fixed unit vector orthogonalised again.
fn orthonormalize(v: &mut [f64], d: usize, r: usize) {
    for c in 0..r {
        for attempt in 0..=d {
            for p in 0..c {
                let dot: f64 = (0..d).map(|f| v[f * r + c] * v[f * r + p]).sum();
                for f in 0..d {
                    v[f * r + c] -= dot * v[f * r + p];
                }
            }
            let norm = libm::sqrt((0..d).map(|f| v[f * r + c] * v[f * r + c]).sum::<f64>());
            if norm > 1e-12 {
                for f in 0..d {
                    v[f * r + c] /= norm;
                }
                break;
            }
            for f in 0..d {
                v[f * r + c] = if f == (c + attempt) % d { 1.0 } else { 0.0 };
            }
        }
    }
}

/// Scales `y` so its first coordinate has standard deviation `INIT_STD` (after centring).
pub fn scale_first_std(y: &mut [f32], n: usize, dims: usize) -> Result<()> {
    let mut mean = [0.0f64; 16];
    ensure(dims <= 16, "dims", "at most 16 for scaling")?;
    for i in 0..n {
        for c in 0..dims {
            mean[c] += y[i * dims + c] as f64;
        }
    }
    for m in &mut mean[..dims] {
        *m /= n as f64;
    }
    let var: f64 = (0..n)
        .map(|i| {
            let c = y[i * dims] as f64 - mean[0];
            c * c
        })
        .sum::<f64>()
        / n as f64;
    if var.is_nan() || var <= 0.0 {
        return Err(Error::InvalidParameter {
            name: "initialisation",
            reason: "the first component has zero variance (constant data)",
        });
    }
    let s = INIT_STD as f64 / libm::sqrt(var);
    for i in 0..n {
        for c in 0..dims {
            y[i * dims + c] = ((y[i * dims + c] as f64 - mean[c]) * s) as f32;
        }
    }
    Ok(())
}

/// Gaussian random initialisation with standard deviation `INIT_STD` per coordinate.
pub fn random_init(n: usize, dims: usize, seed: u64, y: &mut [f32]) -> Result<()> {
    ensure_len("embedding", n * dims, y.len())?;
    let mut rng = Rng::stream(seed, 0x7a4d);
    for v in &mut y[..n * dims] {
        *v = (rng.normal() * INIT_STD as f64) as f32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Serial;

    #[test]
    fn pca_finds_the_dominant_directions() {
        // Points spread mostly along (1,1,0,0,0), then along (0,0,1,0,0), plus small noise.
        let (n, d) = (500, 5);
        let mut r = Rng::new(4);
        let mut x = vec![0.0f32; n * d];
        for i in 0..n {
            let (a, b) = (r.normal() * 10.0, r.normal() * 3.0);
            for f in 0..d {
                x[i * d + f] = (r.normal() * 0.1) as f32 + 7.0;
            }
            x[i * d] += a as f32;
            x[i * d + 1] += a as f32;
            x[i * d + 2] += b as f32;
        }
        let m = MatRef::dense(&x, n, d).unwrap();
        let mut scratch = vec![0u8; pca_scratch(n, d).bytes()];
        let mut y = vec![0.0f32; n * 2];
        pca_init(m, 2, 1, &Serial, &mut scratch, &mut y).unwrap();
        // First coordinate ∝ projection on (1,1)/√2, second ∝ x2: check correlations.
        let corr = |c: usize, f: &dyn Fn(usize) -> f64| {
            let a: Vec<f64> = (0..n).map(|i| y[i * 2 + c] as f64).collect();
            let b: Vec<f64> = (0..n).map(f).collect();
            let (ma, mb) = (
                a.iter().sum::<f64>() / n as f64,
                b.iter().sum::<f64>() / n as f64,
            );
            let cov: f64 = a.iter().zip(&b).map(|(p, q)| (p - ma) * (q - mb)).sum();
            let va: f64 = a.iter().map(|p| (p - ma).powi(2)).sum();
            let vb: f64 = b.iter().map(|q| (q - mb).powi(2)).sum();
            cov / (va * vb).sqrt()
        };
        assert!(corr(0, &|i| (x[i * d] + x[i * d + 1]) as f64) > 0.999);
        assert!(corr(1, &|i| x[i * d + 2] as f64).abs() > 0.99);
        let sd0 = (y
            .iter()
            .step_by(2)
            .map(|v| (*v as f64).powi(2))
            .sum::<f64>()
            / n as f64)
            .sqrt();
        assert!((sd0 - 1e-4).abs() < 1e-8, "std {sd0}");
    }
}
