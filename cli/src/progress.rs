//! Progress on stderr: a bar on a terminal, a line every 50 iterations otherwise.

use ember_core::{Control, Observer, Progress, Stage};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub struct Reporter {
    /// (stage, seconds) in the order the stages ran.
    pub timings: Vec<(Stage, f64)>,
    started: std::time::Instant,
    quiet: bool,
    tty: bool,
    bar: Option<ProgressBar>,
    stage: Option<Stage>,
    /// What the reported loss is called: "KL" for t-SNE and I-Con, "loss" otherwise.
    loss_name: &'static str,
}

impl Reporter {
    pub fn new(quiet: bool, loss_name: &'static str) -> Self {
        Reporter {
            timings: Vec::new(),
            started: std::time::Instant::now(),
            quiet,
            tty: std::io::stderr().is_terminal(),
            bar: None,
            stage: None,
            loss_name,
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
    }

    /// Closes the timing of the last stage and returns "neighbours 1.2 s, …".
    pub fn timing_summary(&mut self) -> String {
        if let Some(st) = self.stage.take() {
            self.timings
                .push((st, self.started.elapsed().as_secs_f64()));
        }
        self.timings
            .iter()
            .map(|(st, t)| format!("{} {t:.2} s", stage_name(*st)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn start(&mut self, stage: Stage, total: usize) {
        self.finish();
        self.stage = Some(stage);
        let label = stage_name(stage);
        if self.tty {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>10} [{bar:40}] {pos}/{len} {msg} ({elapsed})",
                )
                .unwrap()
                .progress_chars("=> "),
            );
            bar.set_prefix(label);
            self.bar = Some(bar);
        } else if stage == Stage::Knn || stage == Stage::Optimize {
            eprintln!("{label}: {total} steps");
        }
    }
}

impl Observer for Reporter {
    fn observe(&mut self, p: &Progress) -> Control {
        if self.stage != Some(p.stage) {
            let now = std::time::Instant::now();
            if let Some(prev) = self.stage {
                self.timings
                    .push((prev, (now - self.started).as_secs_f64()));
            }
            self.started = now;
            if self.quiet {
                self.stage = Some(p.stage);
            } else {
                self.start(p.stage, p.total);
            }
        }
        if self.quiet {
            return Control::Continue;
        }
        if let Some(loss) = p.loss {
            let name = self.loss_name;
            if let Some(b) = &self.bar {
                b.set_message(format!("{name} {loss:.4}"));
            } else {
                eprintln!("  iteration {:>4}/{}  {name} {loss:.4}", p.done, p.total);
            }
        }
        if let Some(b) = &self.bar {
            b.set_position(p.done as u64);
        }
        Control::Continue
    }
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Knn => "neighbours",
        Stage::Affinities => "affinities",
        Stage::Init => "init",
        Stage::Optimize => "optimise",
    }
}
