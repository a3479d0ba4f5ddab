//! `Parallel` on std threads (feature `std`), for frontends.

use crate::parallel::Parallel;
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs tasks on the calling thread and `threads − 1` persistent workers, handing out task
/// numbers dynamically. Results do not depend on the thread count, because the core's chunking
/// does not. The workers start once, not per call: a t-SNE run makes about 10 000 parallel
/// calls, and spawning threads for each would cost more than the work of the small ones.
pub struct Threads {
    threads: usize,
    pool: Option<Pool>,
}

struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Set while a call is running; a nested or concurrent call runs serially instead.
    busy: AtomicBool,
}

struct Shared {
    state: Mutex<State>,
    /// Workers wait here for the next job.
    wake: Condvar,
    /// The caller waits here for the workers to finish the job.
    finished: Condvar,
    /// The next task number of the current job.
    next: AtomicUsize,
    /// `State::generation`, readable without the lock, for the workers' spin.
    generation: AtomicU64,
    /// `State::running`, readable without the lock, for the caller's spin.
    running: AtomicUsize,
}

struct State {
    /// Counts jobs; a worker runs each generation once.
    generation: u64,
    job: Option<Job>,
    /// Workers that have not yet finished the current job.
    running: usize,
    panic: Option<Box<dyn Any + Send>>,
    shutdown: bool,
    /// Workers asleep on `wake`, and whether the caller sleeps on `finished`: a hand-off
    /// makes a system call only for a thread that is asleep.
    sleeping: usize,
    caller_sleeps: bool,
}

#[derive(Clone, Copy)]
struct Job {
    /// Borrowed from `run`, which does not return before every worker is done with it.
    f: *const (dyn Fn(usize) + Sync + 'static),
    tasks: usize,
}

// SAFETY: `f` is Sync and only called while `run` keeps it alive (see `Threads::run`).
unsafe impl Send for Job {}

/// How long a worker spins for the next job, and the caller for the workers to finish,
/// before sleeping. A t-SNE iteration makes a dozen calls a few microseconds apart, and
/// waking a sleeping thread took tens of microseconds each time: on two cores, 7 % of the
/// optimisation went idle in those hand-offs.
const SPIN: Duration = Duration::from_micros(200);

/// Spins until `done` or `SPIN` has passed (the caller then checks under the lock).
fn spin_until(done: impl Fn() -> bool) {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if done() {
                return;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= SPIN {
            return;
        }
    }
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
        let pool = (threads > 1).then(|| {
            let shared = Arc::new(Shared {
                state: Mutex::new(State {
                    generation: 0,
                    job: None,
                    running: 0,
                    panic: None,
                    shutdown: false,
                    sleeping: 0,
                    caller_sleeps: false,
                }),
                wake: Condvar::new(),
                finished: Condvar::new(),
                next: AtomicUsize::new(0),
                generation: AtomicU64::new(0),
                running: AtomicUsize::new(0),
            });
            let workers = (1..threads)
                .map(|_| {
                    let s = Arc::clone(&shared);
                    std::thread::spawn(move || worker(&s))
                })
                .collect();
            Pool {
                shared,
                workers,
                busy: AtomicBool::new(false),
            }
        });
        Threads { threads, pool }
    }

    pub fn count(&self) -> usize {
        self.threads
    }
}

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    // Nothing panics while holding the lock; recover the state anyway rather than cascade.
    s.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn take_tasks(next: &AtomicUsize, job: Job) {
    loop {
        let t = next.fetch_add(1, Ordering::Relaxed);
        if t >= job.tasks {
            break;
        }
        // SAFETY: `run` keeps `f` alive until this job's `running` count reaches zero, which
        // happens only after this call returns.
        unsafe { (*job.f)(t) };
    }
}

fn worker(shared: &Shared) {
    let mut seen = 0u64;
    loop {
        spin_until(|| shared.generation.load(Ordering::Acquire) != seen);
        let job = {
            let mut st = lock(shared);
            while st.generation == seen && !st.shutdown {
                st.sleeping += 1;
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                st.sleeping -= 1;
            }
            if st.shutdown {
                return;
            }
            seen = st.generation;
            st.job
        };
        let outcome = match job {
            Some(job) => catch_unwind(AssertUnwindSafe(|| take_tasks(&shared.next, job))),
            None => Ok(()),
        };
        let mut st = lock(shared);
        if let Err(p) = outcome {
            st.panic.get_or_insert(p);
        }
        st.running -= 1;
        shared.running.store(st.running, Ordering::Release);
        if st.running == 0 && st.caller_sleeps {
            shared.finished.notify_one();
        }
    }
}

impl Parallel for Threads {
    fn threads(&self) -> usize {
        self.count()
    }

    fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        let Some(pool) = &self.pool else {
            return (0..tasks).for_each(f);
        };
        if tasks <= 1 || pool.busy.swap(true, Ordering::Acquire) {
            return (0..tasks).for_each(f);
        }
        let shared = &*pool.shared;
        // SAFETY: only the lifetime is erased. Every worker reports this job finished
        // (`running` reaches zero) before this function returns or unwinds, and none touches
        // `f` after that.
        let f: *const (dyn Fn(usize) + Sync + 'static) = unsafe {
            std::mem::transmute::<
                *const (dyn Fn(usize) + Sync + '_),
                *const (dyn Fn(usize) + Sync + 'static),
            >(f)
        };
        let job = Job { f, tasks };
        let asleep = {
            let mut st = lock(shared);
            st.job = Some(job);
            st.running = pool.workers.len();
            shared.running.store(st.running, Ordering::Relaxed);
            shared.next.store(0, Ordering::Relaxed);
            st.generation += 1;
            shared.generation.store(st.generation, Ordering::Release);
            st.sleeping > 0
        };
        if asleep {
            shared.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| take_tasks(&shared.next, job)));
        spin_until(|| shared.running.load(Ordering::Acquire) == 0);
        let theirs = {
            // Taken even after the spin saw zero: the workers' last touch of the state is
            // under this lock.
            let mut st = lock(shared);
            while st.running > 0 {
                st.caller_sleeps = true;
                st = shared.finished.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.caller_sleeps = false;
            st.job = None;
            st.panic.take()
        };
        pool.busy.store(false, Ordering::Release);
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if let Some(p) = theirs {
            resume_unwind(p);
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            lock(&pool.shared).shutdown = true;
            pool.shared.wake.notify_all();
            for w in pool.workers {
                let _ = w.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_once_on_any_number_of_threads() {
        for threads in [1, 2, 3, 8] {
            let pool = Threads::new(threads);
            for tasks in [0, 1, 2, 7, 1000] {
                let hits: Vec<AtomicU32> = (0..tasks).map(|_| AtomicU32::new(0)).collect();
                pool.run(tasks, &|t| {
                    hits[t].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn nested_calls_run_serially_instead_of_deadlocking() {
        let pool = Threads::new(2);
        let total = AtomicU32::new(0);
        pool.run(4, &|_| {
            pool.run(3, &|_| {
                total.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(total.load(Ordering::Relaxed), 12);
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_and_the_pool_still_works() {
        let pool = Threads::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(64, &|t| {
                if t == 40 {
                    panic!("task 40");
                }
            })
        }));
        assert!(r.is_err());
        let count = AtomicU32::new(0);
        pool.run(100, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 100);
    }
}
