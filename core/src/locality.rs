//! Point orders that keep graph neighbours close in memory.
//!
//! The gradient kernels gather each point's neighbours' coordinates. In the input's order
//! those gathers land anywhere in the embedding; after a breadth-first relabelling of the
//! kNN graph most of them stay in the first-level cache, and points that are consecutive in
//! memory are also close in the map. t-SNE runs on the relabelled problem and hands the
//! embedding back in the caller's order. UMAP and the NE spectrum do not: their per-edge SGD
//! gave less accurate s = 0 panels in this order (see BENCHMARKS.md), cause not yet known.

use crate::error::{Error, Result, ensure_len};
use crate::scratch::Scratch;

/// Refuses neighbour lists with an unset (`u32::MAX`) or out-of-range entry.
pub fn check_neighbour_indices(idx: &[u32], n: usize) -> Result<()> {
    match idx.iter().find(|&&j| j as usize >= n) {
        None => Ok(()),
        Some(&j) => Err(Error::InvalidParameter {
            name: "neighbour index",
            reason: if j == u32::MAX {
                "unset"
            } else {
                "out of range"
            },
        }),
    }
}

/// A breadth-first order of the directed kNN graph `idx` (`n × k`), from point 0 and then
/// from each point not yet reached, in index order. `order[r]` is the point placed at row r;
/// `inv[i]` is point i's row. Deterministic: it depends on the graph alone.
pub fn breadth_first_order(
    idx: &[u32],
    k: usize,
    order: &mut [u32],
    inv: &mut [u32],
) -> Result<()> {
    let n = order.len();
    ensure_len("neighbour lists", n * k, idx.len())?;
    ensure_len("inverse order", n, inv.len())?;
    check_neighbour_indices(idx, n)?;
    const UNSEEN: u32 = u32::MAX;
    inv.fill(UNSEEN);
    let (mut placed, mut head) = (0usize, 0usize);
    for start in 0..n {
        if inv[start] != UNSEEN {
            continue;
        }
        inv[start] = placed as u32;
        order[placed] = start as u32;
        placed += 1;
        // `order[head..placed]` is the queue.
        while head < placed {
            let i = order[head] as usize;
            head += 1;
            for &j in &idx[i * k..(i + 1) * k] {
                if inv[j as usize] == UNSEEN {
                    inv[j as usize] = placed as u32;
                    order[placed] = j;
                    placed += 1;
                }
            }
        }
    }
    Ok(())
}

/// Rewrites the neighbour lists (`idx`, with one value per entry in `vals`) for a new order:
/// row r becomes old row `order[r]`, and every neighbour is renamed through `inv`.
/// `tmp_idx`, `tmp_vals`: `n × k` each.
pub fn relabel_neighbours(
    idx: &mut [u32],
    vals: &mut [f32],
    k: usize,
    order: &[u32],
    inv: &[u32],
    tmp_idx: &mut [u32],
    tmp_vals: &mut [f32],
) -> Result<()> {
    let n = order.len();
    for (name, len) in [
        ("neighbour lists", idx.len()),
        ("neighbour values", vals.len()),
        ("relabelling scratch", tmp_idx.len()),
        ("relabelling scratch", tmp_vals.len()),
    ] {
        ensure_len(name, n * k, len)?;
    }
    ensure_len("inverse order", n, inv.len())?;
    for (r, &old) in order.iter().enumerate() {
        let (src, dst) = (old as usize * k..(old as usize + 1) * k, r * k..(r + 1) * k);
        for (t, &j) in tmp_idx[dst.clone()].iter_mut().zip(&idx[src.clone()]) {
            *t = inv[j as usize];
        }
        tmp_vals[dst].copy_from_slice(&vals[src]);
    }
    idx[..n * k].copy_from_slice(&tmp_idx[..n * k]);
    vals[..n * k].copy_from_slice(&tmp_vals[..n * k]);
    Ok(())
}

/// `breadth_first_order` and `relabel_neighbours` in one step, with the symmetric graph's
/// buffers as temporaries: `indices` (at least n·k + n) and `values` (at least n·k), which
/// `affinity::symmetrize` fills afterwards. `order` (n) receives the order.
pub fn relabel_breadth_first(
    idx: &mut [u32],
    vals: &mut [f32],
    k: usize,
    order: &mut [u32],
    indices: &mut [u32],
    values: &mut [f32],
) -> Result<()> {
    let n = order.len();
    ensure_len("graph indices", n * k + n, indices.len())?;
    ensure_len("graph values", n * k, values.len())?;
    let (tmp_idx, tail) = indices.split_at_mut(n * k);
    let inv = &mut tail[..n];
    breadth_first_order(idx, k, order, inv)?;
    relabel_neighbours(idx, vals, k, order, inv, tmp_idx, &mut values[..n * k])
}

/// Which way `move_rows` moves the rows of an embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Towards {
    /// From the caller's order into `order`: row r becomes row `order[r]` of the input.
    Order,
    /// Back: row `order[r]` becomes row r of the input.
    Caller,
}

/// Moves the rows (`width` values each) of `y` in place, through a copy in `scratch`
/// (`y.len()` f32).
pub fn move_rows(
    y: &mut [f32],
    width: usize,
    order: &[u32],
    towards: Towards,
    scratch: &mut [u8],
) -> Result<()> {
    ensure_len("embedding", order.len() * width, y.len())?;
    let copy = Scratch::new(scratch).take::<f32>(y.len(), "embedding copy")?;
    copy.copy_from_slice(y);
    for (r, &old) in order.iter().enumerate() {
        let (o, r) = (old as usize * width, r * width);
        match towards {
            Towards::Order => y[r..r + width].copy_from_slice(&copy[o..o + width]),
            Towards::Caller => y[o..o + width].copy_from_slice(&copy[r..r + width]),
        }
    }
    Ok(())
}

/// Coordinates whose spread `spatial_order` measures in one pass over a cell's rows.
const SPREAD_COLUMNS: usize = 64;

/// An order of the points (rows of `z`, `n × r`) in which points near in space are mostly
/// near in the order: the leaves, left to right, of a k-d tree that splits each cell at the
/// median of its widest coordinate, down to `leaf` points. Deterministic (ties go by index).
pub fn spatial_order(z: &[f32], n: usize, r: usize, leaf: usize, order: &mut [u32]) -> Result<()> {
    ensure_len("points", n * r, z.len())?;
    ensure_len("order", n, order.len())?;
    for (t, o) in order.iter_mut().enumerate() {
        *o = t as u32;
    }
    if r == 0 {
        return Ok(());
    }
    let leaf = leaf.max(1);
    // Depth first, the larger half pushed first: at most one pending cell per level.
    let mut stack = [(0usize, 0usize); 2 * usize::BITS as usize];
    let mut top = 1;
    stack[0] = (0, n);
    while top > 0 {
        top -= 1;
        let (lo, hi) = stack[top];
        if hi - lo <= leaf {
            continue;
        }
        let cell = &mut order[lo..hi];
        let (mut widest, mut width) = (0, 0.0f32);
        // Each point's row read once per block of coordinates (not once per coordinate):
        // the rows are scattered, and a pass per coordinate would fetch each one r times.
        for c0 in (0..r).step_by(SPREAD_COLUMNS) {
            let cols = SPREAD_COLUMNS.min(r - c0);
            let (mut a, mut b) = (
                [f32::INFINITY; SPREAD_COLUMNS],
                [f32::NEG_INFINITY; SPREAD_COLUMNS],
            );
            for &i in cell.iter() {
                let row = &z[i as usize * r + c0..i as usize * r + c0 + cols];
                for ((a, b), &v) in a.iter_mut().zip(b.iter_mut()).zip(row) {
                    *a = a.min(v);
                    *b = b.max(v);
                }
            }
            for c in 0..cols {
                if b[c] - a[c] > width {
                    (widest, width) = (c0 + c, b[c] - a[c]);
                }
            }
        }
        if width.is_nan() || width <= 0.0 {
            continue;
        }
        let mid = cell.len() / 2;
        let key = |i: &u32| z[*i as usize * r + widest];
        cell.select_nth_unstable_by(mid, |a, b| key(a).total_cmp(&key(b)).then(a.cmp(b)));
        stack[top] = (lo + mid, hi);
        stack[top + 1] = (lo, lo + mid);
        top += 2;
    }
    Ok(())
}

/// Rearranges the rows (`width` values each) of `rows` in place, following each cycle of
/// the permutation once: towards `Order`, row r becomes the old row `order[r]`; towards
/// `Caller`, the way back. `seen` (`order.len().div_ceil(64)` words) and `tmp`
/// (`2 · width`) are work space.
pub fn permute_rows<T: Copy>(
    rows: &mut [T],
    width: usize,
    order: &[u32],
    towards: Towards,
    seen: &mut [u64],
    tmp: &mut [T],
) -> Result<()> {
    let n = order.len();
    ensure_len("rows", n * width, rows.len())?;
    ensure_len("permutation marks", n.div_ceil(64), seen.len())?;
    ensure_len("row buffer", 2 * width, tmp.len())?;
    let seen = &mut seen[..n.div_ceil(64)];
    seen.fill(0);
    let (carry, spare) = tmp[..2 * width].split_at_mut(width);
    let row = |t: usize| t * width..(t + 1) * width;
    for start in 0..n {
        if seen[start / 64] >> (start % 64) & 1 == 1 {
            continue;
        }
        carry.copy_from_slice(&rows[row(start)]);
        let mut t = start;
        loop {
            seen[t / 64] |= 1 << (t % 64);
            match towards {
                // Row t takes row order[t]; the cycle closes with the saved first row.
                Towards::Order => {
                    let from = order[t] as usize;
                    if from == start {
                        rows[row(t)].copy_from_slice(carry);
                        break;
                    }
                    rows.copy_within(row(from), t * width);
                    t = from;
                }
                // Row t goes to row order[t], whose old content is carried on.
                Towards::Caller => {
                    let to = order[t] as usize;
                    spare.copy_from_slice(&rows[row(to)]);
                    rows[row(to)].copy_from_slice(carry);
                    carry.copy_from_slice(spare);
                    if to == start {
                        break;
                    }
                    t = to;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    /// A ring of n points, each linked to its k nearest along it, listed in a shuffled order.
    fn shuffled_ring(n: usize, k: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
        let mut name: Vec<u32> = (0..n as u32).collect();
        Rng::new(seed).shuffle(&mut name);
        let mut idx = vec![0u32; n * k];
        for p in 0..n {
            for c in 0..k {
                let step = c / 2 + 1;
                let q = if c % 2 == 0 {
                    (p + step) % n
                } else {
                    (p + n - step) % n
                };
                idx[name[p] as usize * k + c] = name[q];
            }
        }
        (idx, name)
    }

    #[test]
    fn order_is_a_permutation_with_its_inverse_and_keeps_neighbours_close() {
        let (n, k) = (2000, 6);
        let (idx, _) = shuffled_ring(n, k, 3);
        let (mut order, mut inv) = (vec![0u32; n], vec![0u32; n]);
        breadth_first_order(&idx, k, &mut order, &mut inv).unwrap();
        let mut seen = vec![false; n];
        for (r, &o) in order.iter().enumerate() {
            assert!(!seen[o as usize], "point {o} placed twice");
            seen[o as usize] = true;
            assert_eq!(inv[o as usize] as usize, r);
        }
        // Shuffled, neighbours sit about n/3 rows apart; breadth-first, within a few rows.
        let gap = |rank: &dyn Fn(usize) -> usize| {
            (0..n)
                .flat_map(|i| {
                    idx[i * k..(i + 1) * k]
                        .iter()
                        .map(move |&j| (i, j as usize))
                })
                .map(|(i, j)| rank(i).abs_diff(rank(j)))
                .sum::<usize>() as f64
                / (n * k) as f64
        };
        let before = gap(&|i| i);
        let after = gap(&|i| inv[i] as usize);
        assert!(
            before > 300.0 && after < 10.0,
            "mean gap {before} -> {after}"
        );
        // The same graph gives the same order.
        let (mut again, mut inv2) = (vec![0u32; n], vec![0u32; n]);
        breadth_first_order(&idx, k, &mut again, &mut inv2).unwrap();
        assert_eq!(order, again);
    }

    #[test]
    fn spatial_order_keeps_space_neighbours_close_and_rows_move_both_ways() {
        // Points on a shuffled line in 3-D (the second coordinate carries it).
        let n = 3000;
        let mut place: Vec<u32> = (0..n as u32).collect();
        Rng::new(4).shuffle(&mut place);
        let z: Vec<f32> = place
            .iter()
            .flat_map(|&p| [0.5, p as f32 * 0.01, -1.0])
            .collect();
        let mut order = vec![0u32; n];
        spatial_order(&z, n, 3, 8, &mut order).unwrap();
        let mut inv = vec![0u32; n];
        for (r, &o) in order.iter().enumerate() {
            inv[o as usize] = r as u32;
        }
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert!(
            sorted.iter().enumerate().all(|(t, &o)| o as usize == t),
            "a permutation"
        );
        // Consecutive points of the line: about n/3 rows apart before, a few after.
        let mut by_place = vec![0usize; n];
        for (i, &p) in place.iter().enumerate() {
            by_place[p as usize] = i;
        }
        let gap = |rank: &dyn Fn(usize) -> usize| {
            by_place
                .windows(2)
                .map(|w| rank(w[0]).abs_diff(rank(w[1])))
                .sum::<usize>() as f64
                / (n - 1) as f64
        };
        let (before, after) = (gap(&|i| i), gap(&|i| inv[i] as usize));
        assert!(
            before > 500.0 && after < 20.0,
            "mean gap {before} -> {after}"
        );
        let mut again = vec![0u32; n];
        spatial_order(&z, n, 3, 8, &mut again).unwrap();
        assert_eq!(order, again);
        // Rows in place, there and back.
        let mut rows = z.clone();
        let (mut seen, mut tmp) = (vec![0u64; n.div_ceil(64)], vec![0f32; 6]);
        permute_rows(&mut rows, 3, &order, Towards::Order, &mut seen, &mut tmp).unwrap();
        for (r, &o) in order.iter().enumerate() {
            assert_eq!(
                rows[3 * r..3 * r + 3],
                z[3 * o as usize..3 * o as usize + 3]
            );
        }
        permute_rows(&mut rows, 3, &order, Towards::Caller, &mut seen, &mut tmp).unwrap();
        assert_eq!(rows, z);
    }

    #[test]
    fn unreachable_points_are_placed_too() {
        // Two components, and point 4 that nobody lists.
        let idx = [1, 0, 3, 2, 0];
        let (mut order, mut inv) = ([0u32; 5], [0u32; 5]);
        breadth_first_order(&idx, 1, &mut order, &mut inv).unwrap();
        assert_eq!(order, [0, 1, 2, 3, 4]);
        let bad = [1, 0, 9];
        let (mut o3, mut i3) = ([0u32; 3], [0u32; 3]);
        assert!(breadth_first_order(&bad, 1, &mut o3, &mut i3).is_err());
    }

    #[test]
    fn relabelled_lists_are_the_same_graph_and_rows_round_trip() {
        let (n, k) = (500, 4);
        let (mut idx, _) = shuffled_ring(n, k, 9);
        let original = idx.clone();
        let mut vals: Vec<f32> = (0..n * k).map(|e| e as f32).collect();
        let (mut order, mut inv) = (vec![0u32; n], vec![0u32; n]);
        breadth_first_order(&idx, k, &mut order, &mut inv).unwrap();
        let (mut ti, mut tv) = (vec![0u32; n * k], vec![0f32; n * k]);
        relabel_neighbours(&mut idx, &mut vals, k, &order, &inv, &mut ti, &mut tv).unwrap();
        for r in 0..n {
            let old = order[r] as usize;
            for c in 0..k {
                assert_eq!(order[idx[r * k + c] as usize], original[old * k + c]);
                assert_eq!(vals[r * k + c], (old * k + c) as f32);
            }
        }
        let y: Vec<f32> = (0..2 * n).map(|v| v as f32 * 0.5).collect();
        let (mut moved, mut sc) = (y.clone(), vec![0u8; 4 * (2 * n + 1)]);
        move_rows(&mut moved, 2, &order, Towards::Order, &mut sc).unwrap();
        assert_eq!(moved[2 * 7 + 1], y[2 * order[7] as usize + 1]);
        move_rows(&mut moved, 2, &order, Towards::Caller, &mut sc).unwrap();
        assert_eq!(moved, y);
    }
}
