//! `Parallel` on std threads (feature `std`), for frontends.

use crate::parallel::Parallel;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs tasks on `threads` scoped OS threads, handing out task numbers dynamically.
/// Results do not depend on the thread count, because the core's chunking does not.
pub struct Threads {
    threads: usize,
}

impl Threads {
    /// `threads == 0` means all available cores.
    pub fn new(threads: usize) -> Self {
        let threads = if threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            threads
        };
        Threads { threads }
    }
    pub fn count(&self) -> usize {
        self.threads
    }
}

impl Parallel for Threads {
    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        let workers = self.threads.min(tasks);
        if workers <= 1 {
            return (0..tasks).for_each(f);
        }
        let next = AtomicUsize::new(0);
        let work = || {
            loop {
                let t = next.fetch_add(1, Ordering::Relaxed);
                if t >= tasks {
                    break;
                }
                f(t);
            }
        };
        std::thread::scope(|s| {
            for _ in 1..workers {
                s.spawn(work);
            }
            work();
        });
    }
}
