//! Approximate k-nearest neighbours: random-projection trees seed the neighbour heaps, then
//! NN-descent ("a neighbour of a neighbour is probably a neighbour") refines them
//! (Dong, Charikar & Li 2011; MATH §9).
//!
//! Deterministic on any number of threads: each tree is split from its own seeded stream,
//! each heap is seeded from its point's leaf-mates by the task that owns it, and every later
//! parallel step either owns the heaps it changes (a range of rows) or proposes updates that
//! are applied in chunk order, so each heap sees its offers in the same order however the
//! work is split. The candidate lists' reservoir
//! draws are keyed by list and count, not taken from a shared stream.

use crate::error::{Error, Result, ensure, ensure_len};
use crate::knn::Metric;
use crate::matrix::MatRef;
use crate::observer::{Control, Observer, Progress, Stage};
use crate::parallel::{Parallel, SharedMut, chunk_count, for_row_chunks, for_row_chunks2};
use crate::rng::Rng;
use crate::scratch::{Scratch, ScratchSize};
use crate::simd;

#[derive(Clone, Copy, Debug, PartialEq)]
/// Defaults chosen on MNIST-70k (784-D, 2 cores, in the 64-D projection with 2k candidates):
/// 8 trees, 20 candidates and 3 rounds reach recall@90 ≈ 0.935 in less time than 4 trees and
/// 4 rounds (0.933); at k = 14, 0.965 (pool 32, 16 candidates). BENCHMARKS.md lists the
/// alternatives measured.
pub struct NnDescentParams {
    /// Random-projection trees for the initial graph.
    pub trees: usize,
    /// Largest leaf of a tree (0 = max(k, 16)).
    pub leaf_size: usize,
    /// Largest number of new (and of old) candidates per point and round (the projected
    /// search takes at most half its pool; `neighbours::default_pool`).
    pub max_candidates: usize,
    pub max_rounds: usize,
    /// Stop when a round changes fewer than delta · N · k heap entries.
    pub delta: f32,
    pub seed: u64,
    /// Whether to search in the data's dominant subspace and then rank each point's `pool`
    /// candidates by their full distances (`neighbours::search`).
    pub projection: Projection,
    /// Candidates per point kept by the projected search (0 = `default_pool(k)`).
    pub pool: usize,
}

impl Default for NnDescentParams {
    fn default() -> Self {
        NnDescentParams {
            trees: 8,
            leaf_size: 0,
            max_candidates: 20,
            max_rounds: 3,
            delta: 0.001,
            seed: 42,
            projection: Projection::Auto,
            pool: 0,
        }
    }
}

/// Where the approximate search runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projection {
    /// On the full rows.
    Off,
    /// In a projection of this many dimensions, when the data has at least twice as many.
    Dims(usize),
    /// `Dims(AUTO_PROJECTION_DIMS)`. Measured on MNIST-70k (784-D, 2 cores): for UMAP's
    /// k = 14, 4.2 s at recall 0.984 against 5.3–5.9 s at 0.975 on the full rows; for
    /// t-SNE's k = 90, 9.2 s at recall 0.933 against 11–13 s at 0.961, and the same map
    /// quality (10-NN accuracy 0.970, recall@10 0.357 either way).
    Auto,
}

pub const AUTO_PROJECTION_DIMS: usize = 64;

impl Projection {
    /// Dimensions of the projected search on `d`-column rows, if any.
    pub fn dims(self, d: usize) -> Option<usize> {
        let r = match self {
            Projection::Off => return None,
            Projection::Dims(r) => r,
            Projection::Auto => AUTO_PROJECTION_DIMS,
        };
        (r > 0 && d >= 2 * r).then_some(r)
    }
}

/// Points per parallel task in the local join.
const TASK_ROWS: usize = 128;
/// Rows per task of the final sort.
const SORT_ROWS: usize = 1024;
/// Points per wave of the local join.
const WAVE: usize = 1024;
/// Parallel tasks of one wave.
const MAX_WAVE_TASKS: usize = WAVE.div_ceil(TASK_ROWS);
/// Most row ranges that apply heap updates in parallel.
const MAX_APPLY_PARTS: usize = 16;
/// Updates whose offers a part gathers at a time in `apply_updates` (two offers each, 24 KB
/// of stack).
const APPLY_BLOCK: usize = 1024;

/// Applies `segs` in order: each update offers b to a's heap and, when flagged, a to b's.
/// The rows are split into one range per thread; every range scans all updates and applies
/// those for its rows, so each heap sees its updates in the same order however the rows are
/// split. Returns how many heaps changed.
fn apply_updates(par: &dyn Parallel, segs: &[&[Update]], heaps: &SharedHeaps) -> usize {
    // A power of two, so that finding a row's part takes a mask, not a division.
    let threads = par.threads().clamp(1, MAX_APPLY_PARTS);
    let parts = 1usize << (usize::BITS - 1 - threads.leading_zeros());
    let changed = core::sync::atomic::AtomicUsize::new(0);
    par.run(parts, &|t| {
        // Part t owns the rows of every parts-th block: a wave's offers fall mostly on rows
        // near each other (the search runs in a spatial order), and contiguous ranges
        // would give them all to one part.
        let mine = |row: u32| (row as usize / APPLY_ROWS) & (parts - 1) == t;
        // The heaps' duplicate scans compare eight indices a step where the CPU has AVX2
        // (integer compares: the same result either way).
        let count = crate::cpu::on_avx2(
            true,
            #[inline(always)]
            || {
                let mut count = 0;
                // The offers for this part's rows, gathered a block at a time without a
                // branch per update (with several parts, whether a row is ours follows no
                // pattern), then applied in the updates' order.
                let mut offers = [(0u32, 0u32, 0f32); 2 * APPLY_BLOCK];
                for seg in segs {
                    for block in seg.chunks(APPLY_BLOCK) {
                        let mut m = 0;
                        for u in block {
                            let d = u.d.abs();
                            offers[m] = (u.a, u.b, d);
                            m += mine(u.a) as usize;
                            offers[m] = (u.b, u.a, d);
                            m += (u.both() & mine(u.b)) as usize;
                        }
                        for &(row, j, d) in &offers[..m] {
                            // SAFETY: part t alone touches the heaps of its rows.
                            count += unsafe { heaps.heap(row as usize) }.push(d, j) as usize;
                        }
                    }
                }
                count
            },
        );
        changed.fetch_add(count, core::sync::atomic::Ordering::Relaxed);
    });
    changed.into_inner()
}

/// Rows per block of the heaps' division among the parts that apply updates.
const APPLY_ROWS: usize = 64;

/// Candidate pairs one point can contribute per round: new×new/2 + new×old.
fn pairs_per_point(mc: usize) -> usize {
    mc * (mc - 1) / 2 + mc * mc
}

fn wave_points(n: usize) -> usize {
    WAVE.min(n)
}

/// Capacity of the update buffer (also used for the pairs of tree leaves).
fn update_capacity(n: usize, mc: usize) -> usize {
    wave_points(n) * pairs_per_point(mc).max(1)
}

/// Largest leaf: a leaf's work is quadratic, so it is bounded by the update buffer's size.
fn max_leaf(n: usize, mc: usize) -> usize {
    let cap = update_capacity(n, mc);
    ((libm::sqrt(2.0 * cap as f64) as usize).max(2)).min(n.max(2))
}

/// Largest leaf of the trees for heaps of `k` entries on `n` points.
fn tree_leaf(n: usize, k: usize, p: &NnDescentParams) -> usize {
    leaf_size(p, k).min(max_leaf(n, p.max_candidates.max(1)))
}

fn leaf_size(p: &NnDescentParams, k: usize) -> usize {
    if p.leaf_size == 0 {
        k.max(16)
    } else {
        p.leaf_size.max(2)
    }
}

/// The trees' random streams: tree t draws from stream `TREE_STREAM + t`.
const TREE_STREAM: u64 = 0x7472_6565_0000;
/// Pending subtrees of a split: the smaller half goes first, so at most one per level of
/// halving is ever pending.
const TREE_STACK: usize = 2 * (usize::BITS as usize + 1);
/// Tasks that seed the heaps from the trees, each with its own candidate buffer.
const SEED_TASKS: usize = 64;

/// Scratch for `nn_descent` on `n` points of `d` columns.
pub fn nn_descent_scratch(
    n: usize,
    d: usize,
    k: usize,
    metric: Metric,
    params: &NnDescentParams,
) -> ScratchSize {
    let mc = params.max_candidates.max(1);
    let mut s = ScratchSize::new()
        .plus::<f32>(n) // norms
        .plus::<u8>(n * k) // "new" flags
        .plus::<u32>(n) // heap lengths
        .plus::<f32>(n) // worst distance of each full heap
        .plus::<u32>(params.trees * n) // tree permutations
        .plus::<u32>(params.trees * n) // each point's leaf in each tree
        .plus::<u32>(params.trees * 2 * n) // tree leaves
        .plus::<u64>(SEED_TASKS * mates_len(params.trees, tree_leaf(n, k, params))) // leaf-mates
        .plus::<u32>(2 * n * mc) // candidate lists
        .plus::<u32>(2 * n) // candidate counts
        .plus::<u32>(2 * n) // candidates seen (reservoir sampling)
        .plus::<u32>(chunk_count(wave_points(n), TASK_ROWS)) // updates per chunk
        .plus::<Update>(update_capacity(n, mc));
    if metric == Metric::Cosine {
        s = s.plus::<f32>(n * d);
    }
    s
}

/// A candidate pair: b joins a's heap, and a joins b's too when `d` carries a minus sign
/// (distances are never negative; a pair only for b's heap is stored the other way round).
/// Twelve bytes: every range of rows streams every update.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
struct Update {
    a: u32,
    b: u32,
    d: f32,
}

impl Update {
    /// The pair (a, b) at distance d offered to a's heap, b's heap, or both (meaningless if
    /// neither). `d` must not be negative.
    #[inline(always)]
    fn new(a: u32, b: u32, d: f32, to_a: bool, to_b: bool) -> Update {
        let (a, b) = if to_a { (a, b) } else { (b, a) };
        let both = ((to_a & to_b) as u32) << 31;
        Update {
            a,
            b,
            d: f32::from_bits(d.to_bits() | both),
        }
    }

    #[inline(always)]
    fn both(&self) -> bool {
        self.d.is_sign_negative()
    }
}

// SAFETY: plain u32/f32 fields.
unsafe impl crate::scratch::Pod for Update {}

/// Rows the search measures squared distances between.
trait Rows: Sync {
    fn dist(&self, a: usize, b: usize) -> f32;
    /// `dist(a, b)` for four b at once, bit for bit: rows that override it keep four
    /// streams of loads in flight, as the scattered rows miss the caches.
    #[inline(always)]
    fn dist4(&self, a: usize, b: [usize; 4]) -> [f32; 4] {
        b.map(|b| self.dist(a, b))
    }
    /// For a tree split between rows `a` and `b`: positive for a row `x` nearer to `a`,
    /// negative for one nearer to `b`.
    fn side(&self, x: usize, a: usize, b: usize) -> f32;
}

/// f32 rows: squared Euclidean distances through the norm identity.
struct Space<'a> {
    x: MatRef<'a>,
    norms: &'a [f32],
}

impl Rows for Space<'_> {
    #[inline(always)]
    fn dist(&self, a: usize, b: usize) -> f32 {
        let d =
            self.norms[a] + self.norms[b] - 2.0 * simd::dot_unrolled(self.x.row(a), self.x.row(b));
        if d > 0.0 { d } else { 0.0 }
    }

    #[inline(always)]
    fn side(&self, x: usize, a: usize, b: usize) -> f32 {
        // Nearer to a than to b  ⇔  x·(a − b) > (‖a‖² − ‖b‖²) / 2; both products in one pass
        // over x.
        let [da, db] = simd::dot_1xn(self.x.row(x), [self.x.row(a), self.x.row(b)]);
        da - db - 0.5 * (self.norms[a] - self.norms[b])
    }
}

/// Rows quantised to 16-bit integers (`quantise`): exact integer distances from half the
/// bytes of f32 rows, two values multiplied and paired per lane.
pub struct QuantisedRows<'a> {
    q: &'a [i16],
    stride: usize,
    /// The rows' typical spread in steps (see `resolved`).
    spread_steps: f64,
}

impl Rows for QuantisedRows<'_> {
    #[inline(always)]
    fn dist(&self, a: usize, b: usize) -> f32 {
        let s = self.stride;
        simd::sq_dist_i16(&self.q[a * s..(a + 1) * s], &self.q[b * s..(b + 1) * s]) as f32
    }

    #[inline(always)]
    fn dist4(&self, a: usize, b: [usize; 4]) -> [f32; 4] {
        let s = self.stride;
        let row = |i: usize| &self.q[i * s..(i + 1) * s];
        simd::sq_dist_i16_x4(row(a), b.map(row)).map(|d| d as f32)
    }

    #[inline(always)]
    fn side(&self, x: usize, a: usize, b: usize) -> f32 {
        let s = self.stride;
        let row = |i: usize| &self.q[i * s..(i + 1) * s];
        let [da, db] = simd::sq_dist_i16_x2(row(x), [row(a), row(b)]);
        (db as i64 - da as i64) as f32
    }
}

impl QuantisedRows<'_> {
    /// Whether the quantisation keeps the rows apart: their typical spread (the root sum
    /// over columns of the squared mean absolute deviation) spans at least `MIN_SPREAD_STEPS`
    /// steps. A few far outliers stretch the common scale until the rest collapse onto a
    /// few values, while hardly moving the mean absolute deviations; such data are searched
    /// in f32.
    pub fn resolved(&self) -> bool {
        self.spread_steps >= MIN_SPREAD_STEPS
    }
}

/// See `QuantisedRows::resolved`. Rounding moves a squared distance by about
/// √(r/6) steps' worth; at this spread that is a fraction of a per cent of typical distances.
const MIN_SPREAD_STEPS: f64 = 1024.0;

/// Row length of `quantise`'s output for `r` columns: a multiple of eight (zero padded).
pub fn quantised_stride(r: usize) -> usize {
    r.div_ceil(8) * 8
}

/// Quantises the `n` rows of `r` columns in `z` into `out` (n × `quantised_stride(r)`):
/// each column is centred on the middle of its range and all are scaled by one factor (so
/// distances keep their proportions), chosen so that any squared distance fits in 31 bits.
/// Rounding moves each coordinate by at most half a step of 1/2 896 of the widest column's
/// half-range at r = 64. Returns None if a value is not finite or r > `MAX_QUANTISED_COLS`.
pub fn quantise<'a>(
    z: &[f32],
    n: usize,
    r: usize,
    out: &'a mut [i16],
) -> Option<QuantisedRows<'a>> {
    let stride = quantised_stride(r);
    if r > MAX_QUANTISED_COLS || z.len() < n * r || out.len() < n * stride {
        return None;
    }
    // Column ranges and means, then mean absolute deviations, row by row.
    let mut lo = [f32::INFINITY; MAX_QUANTISED_COLS];
    let mut hi = [f32::NEG_INFINITY; MAX_QUANTISED_COLS];
    let mut mean = [0.0f64; MAX_QUANTISED_COLS];
    for row in z[..n * r].chunks_exact(r) {
        for (c, &v) in row.iter().enumerate() {
            if !v.is_finite() {
                return None;
            }
            lo[c] = lo[c].min(v);
            hi[c] = hi[c].max(v);
            mean[c] += v as f64;
        }
    }
    let mut mad = [0.0f64; MAX_QUANTISED_COLS];
    let count = n.max(1) as f64;
    mean[..r].iter_mut().for_each(|m| *m /= count);
    for row in z[..n * r].chunks_exact(r) {
        for (c, &v) in row.iter().enumerate() {
            mad[c] += (v as f64 - mean[c]).abs();
        }
    }
    let spread = libm::sqrt(
        mad[..r]
            .iter()
            .map(|m| (m / count) * (m / count))
            .sum::<f64>(),
    );
    let half = (0..r).fold(0.0f32, |h, c| h.max(0.5 * hi[c] - 0.5 * lo[c]));
    // |difference| ≤ 2·limit per column, so a row's squared distance is at most
    // stride · (2·limit)² < 2^31.
    let limit = libm::floor(libm::sqrt((1u64 << 31) as f64 / stride as f64) / 2.0) - 1.0;
    let scale = if half > 0.0 { limit / half as f64 } else { 0.0 };
    let mid: [f32; MAX_QUANTISED_COLS] = core::array::from_fn(|c| 0.5 * lo[c] + 0.5 * hi[c]);
    for (o, row) in out[..n * stride]
        .chunks_exact_mut(stride)
        .zip(z.chunks_exact(r))
    {
        for c in 0..r {
            let v = libm::round((row[c] - mid[c]) as f64 * scale);
            o[c] = v.clamp(-limit, limit) as i16;
        }
        o[r..].fill(0);
    }
    Some(QuantisedRows {
        q: out,
        stride,
        spread_steps: spread * scale,
    })
}

/// Widest rows `quantise` takes.
pub const MAX_QUANTISED_COLS: usize = 256;

/// One point's neighbour heap: a bounded max-heap on (distance, index) plus "new" flags.
struct Heap<'a> {
    d: &'a mut [f32],
    ix: &'a mut [u32],
    fl: &'a mut [u8],
    len: &'a mut u32,
    /// `d[0]` once the heap is full, +∞ before: kept apart from the heaps so that the local
    /// join's filter, and a refusal, need not touch the heap's memory.
    worst: &'a mut f32,
}

/// Whether `ix` holds `j`: blocks of 16 compared without early exit, which vectorises.
#[inline(always)]
fn holds(ix: &[u32], j: u32) -> bool {
    let mut blocks = ix.chunks_exact(16);
    for b in &mut blocks {
        if b.iter().fold(false, |acc, &v| acc | (v == j)) {
            return true;
        }
    }
    blocks.remainder().contains(&j)
}

#[inline(always)]
fn less(da: f32, ia: u32, db: f32, ib: u32) -> bool {
    da < db || (da == db && ia < ib)
}

impl Heap<'_> {
    /// Inserts j unless present or no better than the worst; returns whether it changed.
    #[inline(always)]
    fn push(&mut self, dv: f32, j: u32) -> bool {
        if dv > *self.worst {
            return false;
        }
        let k = self.d.len();
        let len = *self.len as usize;
        if len == k && !less(dv, j, self.d[0], self.ix[0]) {
            return false;
        }
        if holds(&self.ix[..len], j) {
            return false;
        }
        if len < k {
            let mut c = len;
            *self.len += 1;
            while c > 0 {
                let p = (c - 1) / 2;
                if less(self.d[p], self.ix[p], dv, j) {
                    self.d[c] = self.d[p];
                    self.ix[c] = self.ix[p];
                    self.fl[c] = self.fl[p];
                    c = p;
                } else {
                    break;
                }
            }
            self.d[c] = dv;
            self.ix[c] = j;
            self.fl[c] = 1;
        } else {
            self.sift_down(k, dv, j, 1);
        }
        if *self.len as usize == k {
            *self.worst = self.d[0];
        }
        true
    }

    fn sift_down(&mut self, len: usize, dv: f32, j: u32, flag: u8) {
        let mut p = 0;
        loop {
            let l = 2 * p + 1;
            if l >= len {
                break;
            }
            let r = l + 1;
            let c = if r < len && less(self.d[l], self.ix[l], self.d[r], self.ix[r]) {
                r
            } else {
                l
            };
            if less(dv, j, self.d[c], self.ix[c]) {
                self.d[p] = self.d[c];
                self.ix[p] = self.ix[c];
                self.fl[p] = self.fl[c];
                p = c;
            } else {
                break;
            }
        }
        self.d[p] = dv;
        self.ix[p] = j;
        self.fl[p] = flag;
    }
}

/// Approximate k-NN of every row of `x` (self excluded), written like `knn::exact_knn`:
/// `idx`, `dist` are `n*k`, each row ascending by (distance, index).
#[allow(clippy::too_many_arguments)]
pub fn nn_descent(
    x: MatRef,
    k: usize,
    metric: Metric,
    params: &NnDescentParams,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    scratch: &mut [u8],
    idx: &mut [u32],
    dist: &mut [f32],
) -> Result<()> {
    let (n, dim) = (x.rows(), x.cols());
    check(n, k, params, idx, dist)?;
    let mut s = Scratch::new(scratch);
    let norms = s.take::<f32>(n, "norms")?;
    // Cosine distance ranks like Euclidean distance between unit vectors: work on those.
    let xs = if metric == Metric::Cosine {
        let unit = s.take::<f32>(n * dim, "unit rows")?;
        for i in 0..n {
            let r = x.row(i);
            let nr = libm::sqrtf(simd::dot(r, r));
            let inv = if nr > 0.0 { 1.0 / nr } else { 0.0 };
            for (o, v) in unit[i * dim..(i + 1) * dim].iter_mut().zip(r) {
                *o = v * inv;
            }
        }
        MatRef::dense(unit, n, dim)?
    } else {
        x
    };
    for (i, nv) in norms.iter_mut().enumerate() {
        let r = xs.row(i);
        *nv = simd::dot(r, r);
    }
    let space = Space { x: xs, norms };
    descend(&space, n, k, params, par, obs, &mut s, idx, dist, true)?;
    if metric == Metric::Cosine {
        // ‖a − b‖² = 2 (1 − cos) for unit vectors.
        dist.iter_mut().for_each(|v| *v *= 0.5);
    }
    Ok(())
}

/// `nn_descent` (squared Euclidean) on rows from `quantise`; `scratch` as
/// `nn_descent_scratch(n, 0, k, Metric::SqEuclidean, params)`. Distances come out in the
/// quantised units, and each row as a max-heap on (distance, index), not sorted: these lists
/// are candidates that `neighbours::search` ranks again by full distance.
#[allow(clippy::too_many_arguments)]
pub fn nn_descent_quantised(
    rows: &QuantisedRows,
    n: usize,
    k: usize,
    params: &NnDescentParams,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    scratch: &mut [u8],
    idx: &mut [u32],
    dist: &mut [f32],
) -> Result<()> {
    ensure(
        rows.q.len() >= n * rows.stride,
        "quantised rows",
        "fewer than n rows",
    )?;
    check(n, k, params, idx, dist)?;
    descend(
        rows,
        n,
        k,
        params,
        par,
        obs,
        &mut Scratch::new(scratch),
        idx,
        dist,
        false,
    )
}

fn check(n: usize, k: usize, params: &NnDescentParams, idx: &[u32], dist: &[f32]) -> Result<()> {
    if n < 2 {
        return Err(Error::TooFewPoints { n, min: 2 });
    }
    ensure(k >= 1 && k < n, "k", "must satisfy 1 <= k <= N - 1")?;
    ensure(n < u32::MAX as usize, "N", "more than 2^32 - 1 points")?;
    ensure(params.trees >= 1, "trees", "at least one tree is needed")?;
    ensure(
        params.max_candidates >= 1,
        "max candidates",
        "must be at least 1",
    )?;
    ensure(
        params.delta.is_finite() && params.delta >= 0.0,
        "delta",
        "must be a finite number >= 0",
    )?;
    ensure_len("knn indices", n * k, idx.len())?;
    ensure_len("knn distances", n * k, dist.len())?;
    Ok(())
}

/// The search itself: trees, then NN-descent rounds, then (with `sort_rows`) each heap sorted
/// ascending.
#[allow(clippy::too_many_arguments)]
fn descend<S: Rows>(
    space: &S,
    n: usize,
    k: usize,
    params: &NnDescentParams,
    par: &dyn Parallel,
    obs: &mut dyn Observer,
    s: &mut Scratch,
    idx: &mut [u32],
    dist: &mut [f32],
    sort_rows: bool,
) -> Result<()> {
    let mc = params.max_candidates;
    let flags = s.take::<u8>(n * k, "flags")?;
    let lens = s.take::<u32>(n, "heap lengths")?;
    let worst = s.take::<f32>(n, "worst heap distances")?;
    worst.fill(f32::INFINITY);
    let trees = params.trees;
    let perms = s.take::<u32>(trees * n, "tree permutations")?;
    let leaf_of = s.take::<u32>(trees * n, "leaf of each point")?;
    let leaves = s.take::<u32>(trees * 2 * n, "tree leaves")?;
    let leaf = tree_leaf(n, k, params);
    let mates = s.take::<u64>(SEED_TASKS * mates_len(trees, leaf), "leaf-mates")?;
    let cands = s.take::<u32>(2 * n * mc, "candidates")?;
    let counts = s.take::<u32>(2 * n, "candidate counts")?;
    let seen = s.take::<u32>(2 * n, "candidates seen")?;
    let chunk_updates = s.take::<u32>(chunk_count(wave_points(n), TASK_ROWS), "update counts")?;
    let updates = s.take_as_is::<Update>(update_capacity(n, mc), "updates")?;

    let mut rng = Rng::stream(params.seed, 0x4e4e);

    // 1. Random-projection trees: points sharing a leaf become candidates for each other.
    // Each tree is split by its own task from its own stream; then every heap is filled at
    // once from its point's leaf-mates (`seed_heaps`).
    {
        let (sp, sl, so) = (
            SharedMut::new(&mut *perms),
            SharedMut::new(&mut *leaves),
            SharedMut::new(&mut *leaf_of),
        );
        par.run(trees, &|t| {
            // SAFETY: task t alone uses part t of each buffer.
            let (perm, out, of) = unsafe {
                (
                    sp.range(t * n, (t + 1) * n),
                    sl.range(t * 2 * n, (t + 1) * 2 * n),
                    so.range(t * n, (t + 1) * n),
                )
            };
            let mut rng = Rng::stream(params.seed, TREE_STREAM + t as u64);
            let count = build_tree(space, leaf, &mut rng, perm, out);
            for l in 0..count {
                for &p in &perm[out[2 * l] as usize..out[2 * l + 1] as usize] {
                    of[p as usize] = l as u32;
                }
            }
        });
    }
    let forest = Forest {
        n,
        trees,
        leaf,
        perms,
        leaves,
        leaf_of,
    };
    let heaps = SharedHeaps::new(idx, dist, flags, lens, worst, k);
    seed_heaps(space, &forest, &heaps, mates, par);

    // 2. NN-descent rounds. The local join runs in waves of points: within a wave, chunks
    // evaluate their candidate pairs in parallel into slots big enough for every pair, and
    // the wave's updates are applied in chunk order before the next wave starts.
    let ppp = pairs_per_point(mc);
    let wave = wave_points(n);
    for round in 0..params.max_rounds {
        let key = rand_core::RngCore::next_u64(&mut rng);
        build_candidates(par, idx, flags, lens, k, mc, cands, counts, seen, key);
        let (newc, oldc) = cands.split_at(n * mc);
        let (ncount, ocount) = counts.split_at(n);
        let mut changed = 0usize;
        for w0 in (0..n).step_by(wave) {
            let rows_in_wave = wave.min(n - w0);
            let tasks = chunk_count(rows_in_wave, TASK_ROWS);
            {
                let worst_r = &*worst;
                let upd_counts = SharedMut::new(&mut chunk_updates[..tasks]);
                for_row_chunks(
                    par,
                    rows_in_wave,
                    TASK_ROWS,
                    &mut updates[..rows_in_wave * ppp],
                    ppp,
                    &|t, first, rows, out| {
                        let rows = w0 + first..w0 + first + rows;
                        // Compiled a second time for AVX2 where the CPU has it (the same
                        // pairs; see `join_rows`).
                        let used = crate::cpu::on_avx2(
                            true,
                            #[inline(always)]
                            || {
                                join_rows(
                                    space,
                                    (newc, oldc),
                                    (ncount, ocount),
                                    mc,
                                    worst_r,
                                    rows,
                                    out,
                                )
                            },
                        );
                        // SAFETY: task t alone writes slot t.
                        unsafe { upd_counts.range(t, t + 1)[0] = used as u32 };
                    },
                );
            }
            let mut segs: heapless::Vec<&[Update], MAX_WAVE_TASKS> = heapless::Vec::new();
            for t in 0..tasks {
                let base = t * TASK_ROWS * ppp;
                let _ = segs.push(&updates[base..base + chunk_updates[t] as usize]);
            }
            let heaps = SharedHeaps::new(idx, dist, flags, lens, worst, k);
            changed += apply_updates(par, &segs, &heaps);
        }
        let p = Progress {
            stage: Stage::Knn,
            done: round + 1,
            total: params.max_rounds,
            loss: None,
        };
        if obs.observe(&p) == Control::Stop {
            return Err(Error::Cancelled);
        }
        if (changed as f64) <= params.delta as f64 * (n * k) as f64 {
            break;
        }
    }

    // Rows that never filled (tiny or degenerate data) are completed by brute force.
    for i in 0..n {
        if (lens[i] as usize) < k {
            let heaps = SharedHeaps::new(idx, dist, flags, lens, worst, k);
            // SAFETY: one row at a time, on this thread alone.
            let mut h = unsafe { heaps.heap(i) };
            for j in (0..n).filter(|&j| j != i) {
                h.push(space.dist(i, j), j as u32);
            }
        }
    }
    if !sort_rows {
        return Ok(());
    }
    for_row_chunks2(par, n, SORT_ROWS, dist, k, idx, k, &|_, _, rows, d, ix| {
        for r in 0..rows {
            crate::knn::heap_sort(&mut d[r * k..(r + 1) * k], &mut ix[r * k..(r + 1) * k]);
        }
    });
    Ok(())
}

/// The local join of `rows`: each point's new candidates paired with each other and with
/// its old ones, every pair that either heap may want written to `out` (in this order);
/// returns how many were written. `cands` and `counts`: the new and the old lists.
#[inline(always)]
fn join_rows<S: Rows>(
    space: &S,
    cands: (&[u32], &[u32]),
    counts: (&[u32], &[u32]),
    mc: usize,
    worst: &[f32],
    rows: core::ops::Range<usize>,
    out: &mut [Update],
) -> usize {
    let mut used = 0usize;
    for i in rows {
        let nn = &cands.0[i * mc..i * mc + counts.0[i] as usize];
        let oo = &cands.1[i * mc..i * mc + counts.1[i] as usize];
        for (ai, &a) in nn.iter().enumerate() {
            let mut offer = |b: u32, dv: f32| {
                if a == b {
                    return;
                }
                // A heap's worst distance only falls, so a pair refused here would be
                // refused when applied.
                let (to_a, to_b) = (dv < worst[a as usize], dv < worst[b as usize]);
                // Written either way, kept only if wanted: whether a heap wants a pair
                // follows no pattern.
                out[used] = Update::new(a, b, dv, to_a, to_b);
                used += (to_a | to_b) as usize;
            };
            for part in [&nn[ai + 1..], oo] {
                let mut quads = part.chunks_exact(4);
                for q in &mut quads {
                    let bs = [q[0], q[1], q[2], q[3]];
                    let d = space.dist4(a as usize, bs.map(|b| b as usize));
                    for (b, dv) in bs.into_iter().zip(d) {
                        offer(b, dv);
                    }
                }
                for &b in quads.remainder() {
                    offer(b, space.dist(a as usize, b as usize));
                }
            }
        }
    }
    used
}

/// The heap arrays shared by tasks that each own a disjoint set of rows.
struct SharedHeaps<'a> {
    idx: SharedMut<'a, u32>,
    dist: SharedMut<'a, f32>,
    flags: SharedMut<'a, u8>,
    lens: SharedMut<'a, u32>,
    worst: SharedMut<'a, f32>,
    k: usize,
}

impl<'a> SharedHeaps<'a> {
    fn new(
        idx: &'a mut [u32],
        dist: &'a mut [f32],
        flags: &'a mut [u8],
        lens: &'a mut [u32],
        worst: &'a mut [f32],
        k: usize,
    ) -> Self {
        SharedHeaps {
            idx: SharedMut::new(idx),
            dist: SharedMut::new(dist),
            flags: SharedMut::new(flags),
            lens: SharedMut::new(lens),
            worst: SharedMut::new(worst),
            k,
        }
    }

    /// # Safety
    /// No other task uses row `i` while the heap lives.
    #[inline(always)]
    unsafe fn heap(&self, i: usize) -> Heap<'a> {
        let k = self.k;
        // SAFETY: the caller owns row i.
        unsafe {
            Heap {
                d: self.dist.range(i * k, (i + 1) * k),
                ix: self.idx.range(i * k, (i + 1) * k),
                fl: self.flags.range(i * k, (i + 1) * k),
                len: &mut self.lens.range(i, i + 1)[0],
                worst: &mut self.worst.range(i, i + 1)[0],
            }
        }
    }
}

/// The trees of the first step, with each point's leaf in each.
struct Forest<'a> {
    n: usize,
    trees: usize,
    /// Largest leaf.
    leaf: usize,
    /// Tree t's points grouped by leaf: `perms[t·n..(t + 1)·n]`.
    perms: &'a [u32],
    /// Tree t's leaf l spans its perm's [leaves[t·2n + 2l], leaves[t·2n + 2l + 1]).
    leaves: &'a [u32],
    /// Point i's leaf in tree t: `leaf_of[t·n + i]`.
    leaf_of: &'a [u32],
}

/// Each seeding task's share of the leaf-mate scratch: its points' mates (up to `trees · leaf`)
/// and a hash set of them at most half full.
fn mates_len(trees: usize, leaf: usize) -> usize {
    let most = trees * leaf;
    most + 2 * most.next_power_of_two()
}

/// Fills every heap with the nearest of its leaf-mates in all trees, by (distance, index):
/// the set that offering every pair of a leaf to both heaps would leave, without a
/// duplicate scan and a sift per offer. `mates` holds `SEED_TASKS · mates_len` keys.
fn seed_heaps<S: Rows>(
    space: &S,
    forest: &Forest,
    heaps: &SharedHeaps,
    mates: &mut [u64],
    par: &dyn Parallel,
) {
    let Forest {
        n,
        trees,
        leaf,
        perms,
        leaves,
        leaf_of,
    } = *forest;
    let k = heaps.k;
    let sm = SharedMut::new(mates);
    let per = mates_len(trees, leaf);
    par.run(SEED_TASKS, &|task| {
        // SAFETY: this task alone uses its part of the buffer and the heaps of its rows.
        let (buf, set) =
            unsafe { sm.range(task * per, (task + 1) * per) }.split_at_mut(trees * leaf);
        let mask = set.len() - 1;
        for i in n * task / SEED_TASKS..n * (task + 1) / SEED_TASKS {
            // Each distinct mate once, through a hash set whose slots are (i + 1, j): a slot
            // left by an earlier point reads as free, so the set is never cleared.
            let tag = (i as u64 + 1) << 32;
            let mut distinct = 0;
            for t in 0..trees {
                let l = leaf_of[t * n + i] as usize;
                let (st, en) = (leaves[t * 2 * n + 2 * l], leaves[t * 2 * n + 2 * l + 1]);
                for &j in &perms[t * n + st as usize..t * n + en as usize] {
                    if j as usize == i {
                        continue;
                    }
                    let key = tag | j as u64;
                    let mut at = (j.wrapping_mul(0x9e37_79b1) as usize) & mask;
                    loop {
                        if set[at] >> 32 != tag >> 32 {
                            set[at] = key;
                            buf[distinct] = j as u64;
                            distinct += 1;
                            break;
                        }
                        if set[at] == key {
                            break;
                        }
                        at = (at + 1) & mask;
                    }
                }
            }
            // (distance, index) as one key: distances are never negative, so their bits
            // order like the numbers.
            let keys = &mut buf[..distinct];
            let key = |d: f32, j: u64| ((d.to_bits() as u64) << 32) | j;
            let mut quads = keys.chunks_exact_mut(4);
            for q in &mut quads {
                let d = space.dist4(i, [q[0], q[1], q[2], q[3]].map(|j| j as usize));
                for (k, d) in q.iter_mut().zip(d) {
                    *k = key(d, *k);
                }
            }
            for k in quads.into_remainder() {
                *k = key(space.dist(i, *k as usize), *k);
            }
            let kept = distinct.min(k);
            if kept < distinct {
                keys.select_nth_unstable(kept);
            }
            let keys = &mut keys[..kept];
            // Descending: a valid max-heap, the worst entry first.
            keys.sort_unstable_by(|a, b| b.cmp(a));
            // SAFETY: rows of this task only.
            let h = unsafe { heaps.heap(i) };
            for (q, &key) in keys.iter().enumerate() {
                h.d[q] = f32::from_bits((key >> 32) as u32);
                h.ix[q] = key as u32;
                h.fl[q] = 1;
            }
            *h.len = kept as u32;
            *h.worst = if kept == k { h.d[0] } else { f32::INFINITY };
        }
    });
}

/// One random-projection tree over all `perm.len()` points: `perm` ends grouped by leaf,
/// leaf l spanning perm[out[2l]..out[2l + 1]]. Returns the number of leaves.
fn build_tree<S: Rows>(
    space: &S,
    leaf: usize,
    rng: &mut Rng,
    perm: &mut [u32],
    out: &mut [u32],
) -> usize {
    let n = perm.len();
    for (i, p) in perm.iter_mut().enumerate() {
        *p = i as u32;
    }
    let mut nleaves = 0;
    let mut stack = [0u32; TREE_STACK];
    (stack[0], stack[1]) = (0, n as u32);
    let mut sp = 2;
    while sp > 0 {
        sp -= 2;
        let (st, en) = (stack[sp] as usize, stack[sp + 1] as usize);
        if en - st <= leaf {
            (out[2 * nleaves], out[2 * nleaves + 1]) = (st as u32, en as u32);
            nleaves += 1;
            continue;
        }
        let mid = split(space, &mut perm[st..en], rng) + st;
        let (lo, hi) = ([st as u32, mid as u32], [mid as u32, en as u32]);
        // The larger half waits below the smaller, which is split next.
        let (wait, next) = if mid - st > en - mid {
            (lo, hi)
        } else {
            (hi, lo)
        };
        stack[sp..sp + 4].copy_from_slice(&[wait[0], wait[1], next[0], next[1]]);
        sp += 4;
    }
    nleaves
}

/// Splits `perm` by the hyperplane equidistant from two random points; returns the size of
/// the first part. Falls back to halving when the hyperplane separates nothing (duplicates).
fn split<S: Rows>(space: &S, perm: &mut [u32], rng: &mut Rng) -> usize {
    let m = perm.len();
    let a = perm[rng.below(m)] as usize;
    let mut b = perm[rng.below(m)] as usize;
    for _ in 0..8 {
        if b != a && space.dist(a, b) > 0.0 {
            break;
        }
        b = perm[rng.below(m)] as usize;
    }
    let mut lo = 0;
    for q in 0..m {
        let side = space.side(perm[q] as usize, a, b);
        let left = if side == 0.0 {
            rng.below(2) == 0
        } else {
            side > 0.0
        };
        if left {
            perm.swap(lo, q);
            lo += 1;
        }
    }
    if lo == 0 || lo == m { m / 2 } else { lo }
}

/// New and old candidate lists (forward and reverse), each bounded by `mc` through
/// reservoir sampling; marks the sampled new neighbours old. Each thread owns a range of
/// rows and scans every heap for the entries that reach its rows, so every list sees its
/// candidates in the same order on any thread count; the reservoir's draws are keyed by
/// (`key`, list, number seen) rather than taken from one shared stream.
#[allow(clippy::too_many_arguments)]
fn build_candidates(
    par: &dyn Parallel,
    idx: &[u32],
    flags: &mut [u8],
    lens: &[u32],
    k: usize,
    mc: usize,
    cands: &mut [u32],
    counts: &mut [u32],
    seen: &mut [u32],
    key: u64,
) {
    let n = lens.len();
    let parts = par.threads().clamp(1, MAX_APPLY_PARTS);
    let part = n.div_ceil(parts).max(1);
    let flags_r = &*flags;
    let (all_ids, all_counts, all_seen) = (
        SharedMut::new(&mut *cands),
        SharedMut::new(&mut *counts),
        SharedMut::new(&mut *seen),
    );
    par.run(parts, &|t| {
        let (lo, hi) = ((t * part).min(n), ((t + 1) * part).min(n));
        if lo == hi {
            return;
        }
        // SAFETY: part t alone touches rows lo..hi of both lists.
        let lists = unsafe {
            [
                (
                    all_ids.range(lo * mc, hi * mc),
                    all_counts.range(lo, hi),
                    all_seen.range(lo, hi),
                ),
                (
                    all_ids.range((n + lo) * mc, (n + hi) * mc),
                    all_counts.range(n + lo, n + hi),
                    all_seen.range(n + lo, n + hi),
                ),
            ]
        };
        let [mut new, mut old] = lists;
        for l in [&mut new, &mut old] {
            l.1.fill(0);
            l.2.fill(0);
        }
        let mut add = |list: usize, i: usize, j: u32| {
            let (ids, count, seen) = if list == 0 { &mut new } else { &mut old };
            let r = i - lo;
            let s = seen[r] as usize;
            seen[r] += 1;
            if s < mc {
                ids[r * mc + s] = j;
                count[r] += 1;
            } else {
                let slot = (list * n + i) as u64;
                let draw = key
                    .wrapping_add(slot.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                    .wrapping_add(s as u64);
                let pick = crate::rng::keyed_below(draw, s + 1);
                if pick < mc {
                    ids[r * mc + pick] = j;
                }
            }
        };
        for i in 0..n {
            let mine = (lo..hi).contains(&i);
            for c in 0..lens[i] as usize {
                let j = idx[i * k + c];
                let list = if flags_r[i * k + c] == 1 { 0 } else { 1 };
                if mine {
                    add(list, i, j);
                }
                if (lo..hi).contains(&(j as usize)) {
                    add(list, j as usize, i as u32);
                }
            }
        }
    });
    // Sampled new neighbours are old from now on.
    let (cands_r, counts_r) = (&*cands, &*counts);
    let sf = SharedMut::new(flags);
    par.run(parts, &|t| {
        let (lo, hi) = ((t * part).min(n), ((t + 1) * part).min(n));
        // SAFETY: part t alone writes the flags of rows lo..hi.
        let fl = unsafe { sf.range(lo * k, hi * k) };
        for i in lo..hi {
            let newc = &cands_r[i * mc..i * mc + counts_r[i] as usize];
            for c in 0..lens[i] as usize {
                let f = &mut fl[(i - lo) * k + c];
                if *f == 1 && newc.contains(&idx[i * k + c]) {
                    *f = 0;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knn::{Kernel, exact_knn};
    use crate::{Serial, Silent};

    fn data(n: usize, d: usize) -> Vec<f32> {
        let mut r = Rng::new(3);
        // A mixture of 10 Gaussian clusters.
        let centres: Vec<f32> = (0..10 * d).map(|_| (r.normal() * 3.0) as f32).collect();
        (0..n * d)
            .map(|i| centres[((i / d) % 10) * d + i % d] + r.normal() as f32)
            .collect()
    }

    fn recall(a: &[u32], b: &[u32], k: usize) -> f64 {
        crate::metrics::knn_recall(a, b, k).unwrap()
    }

    /// The exact k nearest neighbours of every row.
    fn exact(m: MatRef, k: usize, metric: Metric) -> Vec<u32> {
        let n = m.rows();
        let (mut norms, mut ei, mut ed) = (vec![0.0; n], vec![0u32; n * k], vec![0.0; n * k]);
        let (kernel, par) = (Kernel::Simd, &Serial);
        exact_knn(
            m,
            k,
            metric,
            kernel,
            par,
            &mut Silent,
            &mut norms,
            &mut ei,
            &mut ed,
        )
        .unwrap();
        ei
    }

    /// The heaps `seed_heaps` fills hold what offering every pair of every leaf to both
    /// heaps one by one leaves, and each is a valid max-heap.
    #[test]
    fn seeded_heaps_equal_offering_every_leaf_pair() {
        let (n, d, k, trees, leaf) = (700, 6, 12, 5, 19);
        // Duplicated rows give ties, broken by index either way.
        let mut x = data(n, d);
        x.copy_within(0..50 * d, 100 * d);
        let m = MatRef::dense(&x, n, d).unwrap();
        let norms: Vec<f32> = (0..n).map(|i| simd::dot(m.row(i), m.row(i))).collect();
        let space = Space {
            x: m,
            norms: &norms,
        };
        let (mut perms, mut leaves, mut leaf_of) = (
            vec![0u32; trees * n],
            vec![0u32; trees * 2 * n],
            vec![0u32; trees * n],
        );
        let mut counts = vec![0; trees];
        for t in 0..trees {
            let mut rng = Rng::stream(9, t as u64);
            let (perm, out) = (&mut perms[t * n..(t + 1) * n], &mut leaves[t * 2 * n..]);
            counts[t] = build_tree(&space, leaf, &mut rng, perm, out);
            for l in 0..counts[t] {
                for &p in &perm[out[2 * l] as usize..out[2 * l + 1] as usize] {
                    leaf_of[t * n + p as usize] = l as u32;
                }
            }
        }
        let heaps = || {
            (
                vec![0u32; n * k],
                vec![0f32; n * k],
                vec![0u8; n * k],
                vec![0u32; n],
                vec![f32::INFINITY; n],
            )
        };
        let (mut si, mut sd, mut sf, mut sl, mut sw) = heaps();
        let forest = Forest {
            n,
            trees,
            leaf,
            perms: &perms,
            leaves: &leaves,
            leaf_of: &leaf_of,
        };
        let mut mates = vec![0u64; SEED_TASKS * mates_len(trees, leaf)];
        let seeded = SharedHeaps::new(&mut si, &mut sd, &mut sf, &mut sl, &mut sw, k);
        seed_heaps(&space, &forest, &seeded, &mut mates, &Serial);
        let (mut oi, mut od, mut of, mut ol, mut ow) = heaps();
        let offered = SharedHeaps::new(&mut oi, &mut od, &mut of, &mut ol, &mut ow, k);
        for t in 0..trees {
            let perm = &perms[t * n..(t + 1) * n];
            for l in 0..counts[t] {
                let (st, en) = (
                    leaves[t * 2 * n + 2 * l] as usize,
                    leaves[t * 2 * n + 2 * l + 1] as usize,
                );
                assert!(en - st <= leaf && en > st);
                for a in st..en {
                    for b in a + 1..en {
                        let dv = space.dist(perm[a] as usize, perm[b] as usize);
                        // SAFETY: one thread.
                        unsafe {
                            offered.heap(perm[a] as usize).push(dv, perm[b]);
                            offered.heap(perm[b] as usize).push(dv, perm[a]);
                        }
                    }
                }
            }
        }
        for i in 0..n {
            // SAFETY: one thread.
            let (h, g) = unsafe { (seeded.heap(i), offered.heap(i)) };
            assert_eq!(*h.len, *g.len, "row {i}");
            assert_eq!(h.worst.to_bits(), g.worst.to_bits(), "row {i}");
            let len = *h.len as usize;
            let sorted = |d: &[f32], ix: &[u32]| {
                let mut v: Vec<(u32, u32)> = d
                    .iter()
                    .map(|v| v.to_bits())
                    .zip(ix.iter().copied())
                    .collect();
                v.sort();
                v
            };
            assert_eq!(
                sorted(&h.d[..len], &h.ix[..len]),
                sorted(&g.d[..len], &g.ix[..len]),
                "row {i}"
            );
            assert!(h.fl[..len].iter().all(|&f| f == 1));
            for c in 1..len {
                let p = (c - 1) / 2;
                assert!(
                    !less(h.d[p], h.ix[p], h.d[c], h.ix[c]),
                    "row {i}: not a max-heap at {c}"
                );
            }
        }
    }

    #[test]
    fn high_recall_against_exact_search_and_deterministic() {
        let (n, d, k) = (3000, 20, 15);
        let x = data(n, d);
        let m = MatRef::dense(&x, n, d).unwrap();
        for metric in [Metric::SqEuclidean, Metric::Cosine] {
            let ei = exact(m, k, metric);
            let p = NnDescentParams::default();
            let mut sc = vec![0u8; nn_descent_scratch(n, d, k, metric, &p).bytes()];
            let (mut ai, mut ad) = (vec![0u32; n * k], vec![0.0; n * k]);
            nn_descent(
                m,
                k,
                metric,
                &p,
                &Serial,
                &mut Silent,
                &mut sc,
                &mut ai,
                &mut ad,
            )
            .unwrap();
            let rc = recall(&ei, &ai, k);
            assert!(rc >= 0.95, "{metric:?}: recall {rc}");
            for i in 0..n {
                assert!(!ai[i * k..(i + 1) * k].contains(&(i as u32)));
                assert!(ad[i * k..(i + 1) * k].windows(2).all(|w| w[0] <= w[1]));
            }
            let (mut bi, mut bd) = (vec![0u32; n * k], vec![0.0; n * k]);
            nn_descent(
                m,
                k,
                metric,
                &p,
                &Serial,
                &mut Silent,
                &mut sc,
                &mut bi,
                &mut bd,
            )
            .unwrap();
            assert_eq!(ai, bi);
        }
    }

    #[test]
    fn quantised_rows_keep_distances_and_recall() {
        let (n, d, k) = (3000, 20, 15);
        let x = data(n, d);
        let m = MatRef::dense(&x, n, d).unwrap();
        let stride = quantised_stride(d);
        assert_eq!(stride, 24);
        let mut q = vec![0i16; n * stride];
        let rows = quantise(&x, n, d, &mut q).unwrap();
        assert!(rows.resolved());
        // Quantised distances are the f32 ones times one factor, up to rounding.
        let space_d = |a: usize, b: usize| -> f64 {
            (0..d)
                .map(|c| (x[a * d + c] as f64 - x[b * d + c] as f64).powi(2))
                .sum()
        };
        let scale = rows.dist(0, 1) as f64 / space_d(0, 1);
        for (a, b) in [(2, 3), (10, 2000), (5, 2999), (1234, 77)] {
            let ratio = rows.dist(a, b) as f64 / space_d(a, b);
            assert!(
                (ratio / scale - 1.0).abs() < 1e-2,
                "{a} {b}: {ratio} vs {scale}"
            );
        }
        let metric = Metric::SqEuclidean;
        let ei = exact(m, k, metric);
        let p = NnDescentParams::default();
        let mut sc = vec![0u8; nn_descent_scratch(n, 0, k, metric, &p).bytes()];
        let (mut ai, mut ad) = (vec![0u32; n * k], vec![0.0; n * k]);
        let run = |sc: &mut [u8], ai: &mut [u32], ad: &mut [f32], par: &dyn Parallel| {
            nn_descent_quantised(&rows, n, k, &p, par, &mut Silent, sc, ai, ad).unwrap()
        };
        run(&mut sc, &mut ai, &mut ad, &Serial);
        let rc = recall(&ei, &ai, k);
        assert!(rc >= 0.95, "recall {rc}");
        let (mut bi, mut bd) = (vec![0u32; n * k], vec![0.0; n * k]);
        run(&mut sc, &mut bi, &mut bd, &crate::threads::Threads::new(3));
        assert_eq!(ai, bi);
        assert_eq!(ad, bd);

        // One far outlier squeezes everything else onto a few steps: not resolved.
        let mut y = x.clone();
        y[0] = 1e6;
        assert!(!quantise(&y, n, d, &mut q).unwrap().resolved());
        y[0] = f32::NAN;
        assert!(quantise(&y, n, d, &mut q).is_none());
    }

    #[test]
    fn duplicates_and_tiny_inputs_terminate() {
        let (n, d, k) = (200, 3, 10);
        let x = vec![1.0f32; n * d];
        let m = MatRef::dense(&x, n, d).unwrap();
        let p = NnDescentParams::default();
        let mut sc = vec![0u8; nn_descent_scratch(n, d, k, Metric::SqEuclidean, &p).bytes()];
        let (mut ai, mut ad) = (vec![0u32; n * k], vec![0.0; n * k]);
        nn_descent(
            m,
            k,
            Metric::SqEuclidean,
            &p,
            &Serial,
            &mut Silent,
            &mut sc,
            &mut ai,
            &mut ad,
        )
        .unwrap();
        assert!(ad.iter().all(|&v| v == 0.0));
        let x = [0.0f32, 1.0, 3.0];
        let m = MatRef::dense(&x, 3, 1).unwrap();
        let mut sc = vec![0u8; nn_descent_scratch(3, 1, 2, Metric::SqEuclidean, &p).bytes()];
        let (mut ai, mut ad) = (vec![0u32; 6], vec![0.0; 6]);
        nn_descent(
            m,
            2,
            Metric::SqEuclidean,
            &p,
            &Serial,
            &mut Silent,
            &mut sc,
            &mut ai,
            &mut ad,
        )
        .unwrap();
        assert_eq!(ai, [1, 2, 0, 2, 1, 0]);
    }
}
