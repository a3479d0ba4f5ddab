//! Parallelism without std. The core splits work into chunks whose boundaries depend only on
//! the problem, never on the thread count; reductions combine per-chunk results in chunk
//! order. So one seed gives the same bits on any number of threads.

/// Runs `f(0) .. f(tasks - 1)`, in any order and on any threads, and returns when all are done.
pub trait Parallel: Sync {
    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync));
    /// How many tasks may run at once; kernels whose results do not depend on how work is
    /// split use it to split no finer than needed.
    fn threads(&self) -> usize {
        1
    }
}

/// Runs every task on the calling thread, in order.
pub struct Serial;

impl Parallel for Serial {
    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        (0..tasks).for_each(f)
    }
}

/// A slice that tasks may write to through disjoint ranges.
pub(crate) struct SharedMut<'a, T> {
    ptr: *mut T,
    len: usize,
    _life: core::marker::PhantomData<&'a mut [T]>,
}

unsafe impl<T: Send> Sync for SharedMut<'_, T> {}
unsafe impl<T: Send> Send for SharedMut<'_, T> {}

impl<'a, T> SharedMut<'a, T> {
    pub(crate) fn new(s: &'a mut [T]) -> Self {
        SharedMut {
            ptr: s.as_mut_ptr(),
            len: s.len(),
            _life: core::marker::PhantomData,
        }
    }

    /// # Safety
    /// Ranges handed out while others are alive must not overlap.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn range(&self, start: usize, end: usize) -> &'a mut [T] {
        assert!(
            start <= end && end <= self.len,
            "SharedMut range out of bounds"
        );
        // SAFETY: in bounds (checked above); disjointness is the caller's contract.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(start), end - start) }
    }
}

impl<T: Copy> SharedMut<'_, T> {
    /// # Safety
    /// `i < len`, and no other task writes element `i` meanwhile.
    #[inline(always)]
    pub(crate) unsafe fn get(&self, i: usize) -> T {
        debug_assert!(i < self.len);
        // SAFETY: in bounds per the contract.
        unsafe { self.ptr.add(i).read() }
    }

    /// # Safety
    /// `i < len`, and no other task reads or writes element `i` meanwhile.
    #[inline(always)]
    pub(crate) unsafe fn set(&self, i: usize, v: T) {
        debug_assert!(i < self.len);
        // SAFETY: in bounds per the contract.
        unsafe { self.ptr.add(i).write(v) }
    }
}

impl SharedMut<'_, f32> {
    /// # Safety
    /// `at + N <= len`, and no other task touches these elements meanwhile.
    #[inline(always)]
    pub(crate) unsafe fn read_n<const N: usize>(&self, at: usize) -> [f32; N] {
        debug_assert!(at + N <= self.len);
        // SAFETY: in bounds per the contract; unaligned read of plain floats.
        unsafe { self.ptr.add(at).cast::<[f32; N]>().read_unaligned() }
    }

    /// # Safety
    /// As for `read_n`.
    #[inline(always)]
    pub(crate) unsafe fn write_n<const N: usize>(&self, at: usize, v: [f32; N]) {
        debug_assert!(at + N <= self.len);
        // SAFETY: as above.
        unsafe { self.ptr.add(at).cast::<[f32; N]>().write_unaligned(v) }
    }
}

/// Number of chunks of `chunk` items covering `n`.
pub fn chunk_count(n: usize, chunk: usize) -> usize {
    n.div_ceil(chunk)
}

/// Calls `f(task, first_row, rows, out_rows)` for fixed chunks of `chunk` rows, where
/// `out_rows` is this chunk's part of `out` (`width` values per row).
pub(crate) fn for_row_chunks<T: Send>(
    par: &dyn Parallel,
    n: usize,
    chunk: usize,
    out: &mut [T],
    width: usize,
    f: &(dyn Fn(usize, usize, usize, &mut [T]) + Sync),
) {
    assert!(out.len() >= n * width);
    let shared = SharedMut::new(out);
    let tasks = chunk_count(n, chunk);
    par.run(tasks, &|t| {
        let start = t * chunk;
        let end = (start + chunk).min(n);
        // SAFETY: each task gets rows [start, end), disjoint from every other task's.
        let rows = unsafe { shared.range(start * width, end * width) };
        f(t, start, end - start, rows);
    });
}

/// Like `for_row_chunks` with two outputs of widths `wa` and `wb`.
#[allow(clippy::type_complexity)]
pub(crate) fn for_row_chunks2<A: Send, B: Send>(
    par: &dyn Parallel,
    n: usize,
    chunk: usize,
    a: &mut [A],
    wa: usize,
    b: &mut [B],
    wb: usize,
    f: &(dyn Fn(usize, usize, usize, &mut [A], &mut [B]) + Sync),
) {
    assert!(a.len() >= n * wa && b.len() >= n * wb);
    let (sa, sb) = (SharedMut::new(a), SharedMut::new(b));
    let tasks = chunk_count(n, chunk);
    par.run(tasks, &|t| {
        let start = t * chunk;
        let end = (start + chunk).min(n);
        // SAFETY: each task gets rows [start, end) of both outputs, disjoint across tasks.
        let (ra, rb) = unsafe {
            (
                sa.range(start * wa, end * wa),
                sb.range(start * wb, end * wb),
            )
        };
        f(t, start, end - start, ra, rb);
    });
}

/// Like `for_row_chunks`, where each chunk also returns a number; the numbers are stored in
/// `partials` (one per chunk) and summed in chunk order, so the total is thread-count independent.
pub(crate) fn for_row_chunks_sum<T: Send>(
    par: &dyn Parallel,
    n: usize,
    chunk: usize,
    out: &mut [T],
    width: usize,
    partials: &mut [f64],
    f: &(dyn Fn(usize, usize, &mut [T]) -> f64 + Sync),
) -> f64 {
    let tasks = chunk_count(n, chunk);
    assert!(out.len() >= n * width && partials.len() >= tasks);
    let (so, sp) = (SharedMut::new(out), SharedMut::new(&mut partials[..tasks]));
    par.run(tasks, &|t| {
        let start = t * chunk;
        let end = (start + chunk).min(n);
        // SAFETY: task t alone owns rows [start, end) of `out` and slot t of `partials`.
        let (rows, slot) = unsafe { (so.range(start * width, end * width), sp.range(t, t + 1)) };
        slot[0] = f(start, end - start, rows);
    });
    partials[..tasks].iter().sum()
}
