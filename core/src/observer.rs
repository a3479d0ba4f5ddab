//! Progress reporting and cancellation. The core calls the observer between units of work,
//! always from the calling thread.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub enum Stage {
    Knn = 0,
    Affinities = 1,
    Init = 2,
    Optimize = 3,
}

#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub stage: Stage,
    /// Units done so far in this stage (rows for kNN, iterations for the optimiser).
    pub done: usize,
    pub total: usize,
    /// KL(P‖Q) when the optimiser computed it at this step.
    pub loss: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

pub trait Observer {
    fn observe(&mut self, progress: &Progress) -> Control;
}

/// An observer that never stops anything.
pub struct Silent;

impl Observer for Silent {
    fn observe(&mut self, _: &Progress) -> Control {
        Control::Continue
    }
}

impl<F: FnMut(&Progress) -> Control> Observer for F {
    fn observe(&mut self, progress: &Progress) -> Control {
        self(progress)
    }
}

/// Tells the observer a stage begins (done = 0); `Err(Cancelled)` if it says stop.
pub(crate) fn enter(obs: &mut dyn Observer, stage: Stage, total: usize) -> crate::Result<()> {
    report(obs, stage, 0, total)
}

/// Tells the observer `done` of `total` steps of `stage` are done (no loss); `Err(Cancelled)`
/// if it asks to stop.
pub(crate) fn report(
    obs: &mut dyn Observer,
    stage: Stage,
    done: usize,
    total: usize,
) -> crate::Result<()> {
    match obs.observe(&Progress {
        stage,
        done,
        total,
        loss: None,
    }) {
        Control::Stop => Err(crate::Error::Cancelled),
        Control::Continue => Ok(()),
    }
}
