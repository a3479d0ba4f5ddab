//! FFT-interpolation repulsion on real embeddings (MNIST digits): agreement with the exact
//! sums, and the same KL trajectory as exact repulsion.

use ember_core::affinity::CsrRef;
use ember_core::fft_repulsion::{FftParams, fft_scratch, repulsion_fft};
use ember_core::gradient::{OutputKernel, partials_len, repulsion_exact};
use ember_core::threads::Threads;
use ember_core::tsne::{self, Repulsion, TsneParams};
use ember_core::{Control, MatRef, Progress, Stage};

fn rel(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    num / b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
}

/// A t-SNE embedding of the first `n` digits, stopped after `iters` iterations.
fn embedding(n: usize, iters: usize) -> Vec<f32> {
    let (x, _) = ember_tests::mnist(n);
    let m = MatRef::dense(&x, n, 784).unwrap();
    let params = TsneParams {
        repulsion: Repulsion::BarnesHut,
        ..Default::default()
    };
    let mut sc = vec![0u8; tsne::tsne_scratch(n, 784, &params).bytes()];
    let mut y = vec![0.0; n * 2];
    let mut stop = |p: &Progress| {
        if p.stage == Stage::Optimize && p.done == iters {
            Control::Stop
        } else {
            Control::Continue
        }
    };
    let _ = tsne::tsne(m, &params, &Threads::new(2), &mut stop, &mut sc, &mut y);
    y
}

#[test]
fn fft_repulsion_matches_exact_on_mnist_embeddings() {
    let n = 3000;
    let par = Threads::new(2);
    // The default grid (3 nodes per interval, intervals at most 0.8 units wide, transforms
    // of at most 768 per side, a period of 1.5 to 2 times the nodes' span): on the
    // spread-out final embedding that is a 3e-2 force error (measured 2.5e-2 to 3.1e-2).
    // Intervals of 0.6 units with transforms up to 2048 per side meet the 1e-2
    // floor there (measured 5.9e-3 to 7.9e-3), at 3 to 5 times the FFT cost.
    let fine = FftParams {
        interval_width: 0.6,
        max_fft_2d: 2048,
        ..FftParams::default()
    };
    for iters in [100, 750] {
        let y = embedding(n, iters);
        for dof in [1.0f32, 0.5] {
            let k = OutputKernel::new(dof).unwrap();
            let (mut ex, mut ff) = (vec![0.0; n * 2], vec![0.0; n * 2]);
            let mut part = vec![0.0; partials_len(n)];
            let z_ex = repulsion_exact(&y, n, 2, k, &par, &mut ex, &mut part).unwrap();
            let default_tol = if iters == 100 { 1e-2 } else { 3.5e-2 };
            for (name, params, force_tol) in [
                ("default", FftParams::default(), default_tol),
                ("fine", fine, 1e-2),
            ] {
                let mut sc = vec![0u8; fft_scratch(n, 2, &params).bytes()];
                let z_ff =
                    repulsion_fft(&y, n, 2, k, &params, &par, &mut sc, &mut ff, &mut part).unwrap();
                let (ef, ez) = (rel(&ff, &ex), (z_ff - z_ex).abs() / z_ex);
                println!(
                    "after {iters} iterations, dof {dof}, {name} grid: force error {ef:.2e}, Z error {ez:.2e}"
                );
                assert!(
                    ef < force_tol && ez < 1e-2,
                    "iters {iters} dof {dof} {name}: force {ef:e}, Z {ez:e}"
                );
            }
        }
    }
}

#[test]
fn fft_gives_the_exact_kl_trajectory() {
    let n = 2000;
    let (x, _) = ember_tests::mnist(n);
    let m = MatRef::dense(&x, n, 784).unwrap();
    let par = Threads::new(2);
    let mut curves = vec![];
    for repulsion in [Repulsion::Exact, Repulsion::Fft] {
        let params = TsneParams {
            repulsion,
            ..Default::default()
        };
        let mut sc = vec![0u8; tsne::tsne_scratch(n, 784, &params).bytes()];
        let mut y = vec![0.0; n * 2];
        let mut kl = vec![];
        let mut obs = |p: &Progress| {
            if let Some(l) = p.loss {
                kl.push(l);
            }
            Control::Continue
        };
        tsne::tsne(m, &params, &par, &mut obs, &mut sc, &mut y).unwrap();
        curves.push(kl);
    }
    println!("KL exact {:?}\nKL fft   {:?}", curves[0], curves[1]);
    for (a, b) in curves[0].iter().zip(&curves[1]) {
        // Tolerance: 4 % of KL at every 50th iteration with the default grid. The largest gap
        // is at the end; it depends on where rounding sends the trajectories: on 2 000 digits
        // it measured 1.7 to 2.6 % over seeds 1 to 3 (before and after the breadth-first point
        // order) and 3.1 % for this test's seed (1.9 % before that order).
        assert!(
            (a - b).abs() < 0.04 * a,
            "exact {:?}\nfft   {:?}",
            curves[0],
            curves[1]
        );
    }
}

#[test]
fn csr_type_is_public() {
    // The affinity matrix type is part of the public API that optimize() takes.
    let indptr = [0usize, 1, 2];
    let c = CsrRef {
        indptr: &indptr,
        indices: &[1, 0],
        values: &[0.5, 0.5],
    };
    assert_eq!(c.nnz(), 2);
}
