//! Judging an embedding (MATH §8): kNN recall and kNN classification accuracy.

use crate::error::{Result, ensure, ensure_len};
use crate::knn::{Kernel, Metric, exact_knn_query, query_norms_len};
use crate::matrix::MatRef;
use crate::observer::Silent;
use crate::parallel::Parallel;
use crate::rng::Rng;
use crate::scratch::{Scratch, ScratchSize};

/// Mean fraction of each row's `k` reference neighbours found among its `k` embedding
/// neighbours. Both lists are `n*k`, row-major.
pub fn knn_recall(reference: &[u32], found: &[u32], k: usize) -> Result<f64> {
    ensure(k >= 1, "k", "must be at least 1")?;
    ensure(
        reference.len() == found.len() && reference.len() % k == 0,
        "neighbour lists",
        "lengths differ or are not multiples of k",
    )?;
    let n = reference.len() / k;
    let mut hits = 0usize;
    for i in 0..n {
        let f = &found[i * k..(i + 1) * k];
        hits += reference[i * k..(i + 1) * k]
            .iter()
            .filter(|j| f.contains(j))
            .count();
    }
    Ok(hits as f64 / (n * k).max(1) as f64)
}

/// Scratch for `knn_accuracy`.
pub fn knn_accuracy_scratch(n: usize, dims: usize, k: usize) -> ScratchSize {
    ScratchSize::new()
        .plus::<u32>(n) // permutation
        .plus::<f32>(n * dims) // train then test rows
        .plus::<f32>(query_norms_len(n, n))
        .plus::<u32>(n * k)
        .plus::<f32>(n * k)
}

/// k-NN classification accuracy in `emb`: a seeded random `test_fraction` of the points is
/// classified by majority vote of its `k` nearest training points (ties go to the label of
/// the nearest tied neighbour).
pub fn knn_accuracy(
    emb: MatRef,
    labels: &[u32],
    k: usize,
    test_fraction: f64,
    seed: u64,
    par: &dyn Parallel,
    scratch: &mut [u8],
) -> Result<f64> {
    let (n, d) = (emb.rows(), emb.cols());
    ensure_len("labels", n, labels.len())?;
    ensure(
        test_fraction > 0.0 && test_fraction < 1.0,
        "test fraction",
        "must be in (0, 1)",
    )?;
    let n_test = (libm::round(n as f64 * test_fraction) as usize).clamp(1, n.saturating_sub(1));
    let n_train = n - n_test;
    ensure(
        k >= 1 && k <= n_train,
        "k",
        "must be between 1 and the number of training points",
    )?;
    let mut s = Scratch::new(scratch);
    let perm = s.take::<u32>(n, "permutation")?;
    let rows = s.take::<f32>(n * d, "split rows")?;
    let norms = s.take::<f32>(query_norms_len(n_train, n_test), "norms")?;
    let idx = s.take::<u32>(n_test * k, "neighbours")?;
    let dist = s.take::<f32>(n_test * k, "distances")?;
    for (i, p) in perm.iter_mut().enumerate() {
        *p = i as u32;
    }
    Rng::stream(seed, 0xacc).shuffle(perm);
    // perm[..n_test] are test points, the rest training points.
    for (slot, &p) in perm[n_test..].iter().chain(&perm[..n_test]).enumerate() {
        rows[slot * d..(slot + 1) * d].copy_from_slice(emb.row(p as usize));
    }
    let (train, test) = rows.split_at(n_train * d);
    let train = MatRef::dense(train, n_train, d)?;
    let test = MatRef::dense(test, n_test, d)?;
    exact_knn_query(
        train,
        test,
        k,
        Metric::SqEuclidean,
        Kernel::Simd,
        par,
        &mut Silent,
        norms,
        idx,
        dist,
    )?;
    let correct = (0..n_test)
        .filter(|&q| {
            let vote = majority(
                idx[q * k..(q + 1) * k]
                    .iter()
                    .map(|&j| labels[perm[n_test + j as usize] as usize]),
            );
            vote == labels[perm[q] as usize]
        })
        .count();
    Ok(correct as f64 / n_test as f64)
}

/// The most frequent label among (up to 64 of) the neighbours', nearest first; a tie goes
/// to the label seen first, that is, of the nearest tied neighbour.
fn majority(neighbour_labels: impl Iterator<Item = u32>) -> u32 {
    let votes: heapless::Vec<u32, 64> = neighbour_labels.take(64).collect();
    let mut best = (0usize, votes.first().copied().unwrap_or(0));
    for &l in &votes {
        let c = votes.iter().filter(|&&m| m == l).count();
        if c > best.0 {
            best = (c, l);
        }
    }
    best.1
}

/// Scratch for `knn_accuracy_against`.
pub fn knn_accuracy_against_scratch(n_train: usize, n_test: usize, k: usize) -> ScratchSize {
    ScratchSize::new()
        .plus::<f32>(query_norms_len(n_train, n_test))
        .plus::<u32>(n_test * k)
        .plus::<f32>(n_test * k)
}

/// k-NN classification accuracy of the `test` points by majority vote of their `k` nearest
/// `train` points: for example new points placed by transform into a fitted map.
#[allow(clippy::too_many_arguments)]
pub fn knn_accuracy_against(
    train: MatRef,
    train_labels: &[u32],
    test: MatRef,
    test_labels: &[u32],
    k: usize,
    par: &dyn Parallel,
    scratch: &mut [u8],
) -> Result<f64> {
    ensure_len("train labels", train.rows(), train_labels.len())?;
    ensure_len("test labels", test.rows(), test_labels.len())?;
    ensure(
        k >= 1 && k <= train.rows(),
        "k",
        "must be between 1 and the number of training points",
    )?;
    let n_test = test.rows();
    let mut s = Scratch::new(scratch);
    let norms = s.take::<f32>(query_norms_len(train.rows(), n_test), "norms")?;
    let idx = s.take::<u32>(n_test * k, "neighbours")?;
    let dist = s.take::<f32>(n_test * k, "distances")?;
    exact_knn_query(
        train,
        test,
        k,
        Metric::SqEuclidean,
        Kernel::Simd,
        par,
        &mut Silent,
        norms,
        idx,
        dist,
    )?;
    let correct = (0..n_test)
        .filter(|&q| {
            majority(
                idx[q * k..(q + 1) * k]
                    .iter()
                    .map(|&j| train_labels[j as usize]),
            ) == test_labels[q]
        })
        .count();
    Ok(correct as f64 / n_test.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Serial;

    #[test]
    fn recall_counts_overlaps() {
        assert_eq!(knn_recall(&[1, 2, 0, 2], &[2, 1, 2, 1], 2).unwrap(), 0.75);
    }

    #[test]
    fn separated_classes_are_classified_perfectly() {
        let n = 200;
        let emb: Vec<f32> = (0..n)
            .flat_map(|i| [(i % 2) as f32 * 100.0 + (i as f32) * 1e-3, 0.0])
            .collect();
        let labels: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
        let m = MatRef::dense(&emb, n, 2).unwrap();
        let mut s = vec![0u8; knn_accuracy_scratch(n, 2, 10).bytes()];
        assert_eq!(
            knn_accuracy(m, &labels, 10, 0.1, 3, &Serial, &mut s).unwrap(),
            1.0
        );
    }
}
