//! Shared by the examples (not an example itself: cargo only builds `examples/*.rs`).
use ember_core::knn::{Kernel, Metric, exact_knn_query};
use ember_core::threads::Threads;
use ember_core::{MatRef, Silent};

/// Recall of the approximate lists `idx` (k per row) on `queries` evenly spaced rows,
/// against exact search.
pub fn recall(m: MatRef, idx: &[u32], k: usize, queries: usize, par: &Threads) -> f64 {
    let (n, d) = (m.rows(), m.cols());
    let q = queries.min(n);
    let step = n / q;
    let qx: Vec<f32> = (0..q).flat_map(|i| m.row(i * step).to_vec()).collect();
    let qm = MatRef::dense(&qx, q, d).unwrap();
    let mut norms = vec![0.0; n + q];
    let (mut ei, mut ed) = (vec![0u32; q * (k + 1)], vec![0f32; q * (k + 1)]);
    exact_knn_query(
        m,
        qm,
        k + 1,
        Metric::SqEuclidean,
        Kernel::Simd,
        par,
        &mut Silent,
        &mut norms,
        &mut ei,
        &mut ed,
    )
    .unwrap();
    let mut hits = 0;
    for i in 0..q {
        let found = &idx[i * step * k..(i * step + 1) * k];
        hits += ei[i * (k + 1)..(i + 1) * (k + 1)]
            .iter()
            .filter(|&&j| j as usize != i * step)
            .take(k)
            .filter(|j| found.contains(j))
            .count();
    }
    hits as f64 / (q * k) as f64
}
