//! Approximate kNN (random-projection trees + NN-descent, on the full rows or in a
//! projection) on real data: recall against exact search, and the same bits on any number
//! of threads.

use ember_core::knn::{Kernel, Metric, exact_knn};
use ember_core::metrics::knn_recall;
use ember_core::neighbours::{KnnMethod, search, search_scratch};
use ember_core::nndescent::{NnDescentParams, Projection};
use ember_core::threads::Threads;
use ember_core::{MatRef, Parallel, Serial, Silent};

/// The exact neighbour lists (k per row) the approximate ones are scored against.
fn exact_lists(m: MatRef, k: usize, metric: Metric, par: &Threads) -> Vec<u32> {
    let n = m.rows();
    let (mut norms, mut ei, mut ed) = (vec![0.0; n], vec![0u32; n * k], vec![0.0; n * k]);
    exact_knn(
        m,
        k,
        metric,
        Kernel::Simd,
        par,
        &mut Silent,
        &mut norms,
        &mut ei,
        &mut ed,
    )
    .unwrap();
    ei
}

/// The approximate search's lists and distances.
fn approx_lists(
    m: MatRef,
    k: usize,
    metric: Metric,
    p: &NnDescentParams,
    par: &dyn Parallel,
) -> (Vec<u32>, Vec<f32>) {
    let n = m.rows();
    let method = KnnMethod::Approx;
    let mut sc = vec![0u8; search_scratch(n, m.cols(), k, metric, method, p).bytes()];
    let (mut ai, mut ad) = (vec![0u32; n * k], vec![0.0; n * k]);
    search(
        m,
        k,
        metric,
        method,
        p,
        par,
        &mut Silent,
        &mut sc,
        &mut ai,
        &mut ad,
    )
    .unwrap();
    (ai, ad)
}

/// Recall@k of the search with `projection` on MNIST 10k for each (metric, k), at least
/// the floor of 0.95; distances ascend, no row holds itself, and 1 and 2 threads
/// give the same bits (checked at k = 15).
fn check_recall(projection: Projection, cases: &[(Metric, usize)]) {
    let n = 10_000;
    let (x, _) = ember_tests::mnist(n);
    let m = MatRef::dense(&x, n, 784).unwrap();
    let par = Threads::new(2);
    let p = NnDescentParams {
        projection,
        ..Default::default()
    };
    for &(metric, k) in cases {
        let ei = exact_lists(m, k, metric, &par);
        let (ai, ad) = approx_lists(m, k, metric, &p, &par);
        let recall = knn_recall(&ei, &ai, k).unwrap();
        println!("MNIST 10k, {projection:?}, {metric:?}, k = {k}: recall {recall:.4}");
        assert!(
            recall >= 0.95,
            "{projection:?}, {metric:?}, k = {k}: recall {recall}"
        );
        for i in 0..n {
            let row = &ad[i * k..(i + 1) * k];
            assert!(
                row.windows(2).all(|w| w[0] <= w[1]),
                "row {i} not ascending"
            );
            assert!(
                !ai[i * k..(i + 1) * k].contains(&(i as u32)),
                "row {i} holds itself"
            );
        }
        if k == 15 {
            let (si, sd) = approx_lists(m, k, metric, &p, &Serial);
            assert_eq!(ai, si, "1 thread and 2 threads must agree");
            assert_eq!(ad, sd);
        }
    }
}

#[test]
fn nn_descent_on_full_rows_recall_on_mnist() {
    check_recall(
        Projection::Off,
        &[(Metric::SqEuclidean, 15), (Metric::SqEuclidean, 90)],
    );
}

/// NN-descent in the 64-D dominant subspace, candidates ranked by their full distances.
#[test]
fn projected_search_recall_on_mnist() {
    check_recall(
        Projection::Dims(64),
        &[
            (Metric::SqEuclidean, 15),
            (Metric::SqEuclidean, 90),
            (Metric::Cosine, 15),
        ],
    );
}
