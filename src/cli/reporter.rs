//! The executor's events as lines on stderr, between the progress bars: what ran, failed, waited or was queued;
//! with `-v` also what was cached, why each stage runs, and the `sbatch` command lines.

use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::exec::Status;
use crate::exec::events::{Event, Reporter, StageRef};
use crate::exec::progress::{Progress, Watcher};
use crate::fingerprint::explain;

/// Prints events to stderr; on a terminal, also the live board: a line per running point and the totals.
pub(super) struct Printer {
    progress: MultiProgress,
    verbose: bool,
    /// The board's lines, drawn by indicatif (so only on a terminal) above the stages' own progress bars.
    board: Mutex<Vec<ProgressBar>>,
}

impl Printer {
    pub(super) fn new(verbose: bool) -> Self {
        Self {
            progress: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            verbose,
            board: Mutex::new(Vec::new()),
        }
    }

    /// Takes the board off the screen (the run is over; its summary follows).
    pub(super) fn clear_board(&self) {
        for bar in self
            .board
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            bar.finish_and_clear();
            self.progress.remove(&bar);
        }
    }

    fn say(&self, line: String) {
        self.progress.suspend(|| eprintln!("{line}"));
    }

    /// `  queued model [layers=2]: …`: a right-aligned verb, the stage and how it is shared, and what happened.
    fn line(&self, verb: &str, stage: StageRef<'_>, rest: &str) {
        self.say(format!("{verb:>8} {}{}{rest}", stage.name, stage.share));
    }
}

impl Reporter for Printer {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Running { stage, reasons } if self.verbose => {
                self.line("running", stage, &format!(": {}", explain(reasons)))
            }
            Event::Running { .. } => {}
            Event::WaitingForOther { stage } => {
                self.line("waiting", stage, ": another run is computing it")
            }
            Event::Resuming { stage } => self.line(
                "resuming",
                stage,
                ": continuing from the checkpoint of an interrupted run",
            ),
            Event::Damaged { stage, problem } => self.say(format!(
                "warning: {}: the cached result was damaged ({problem}); recomputing it",
                stage.name
            )),
            Event::Unrecorded { stage, error } => self.say(format!(
                "warning: {}: cached, but the cache cannot record it ({error:#})",
                stage.name
            )),
            Event::Finished { stage, result } => match result.status {
                Status::Cached if result.fetched => {
                    let size =
                        indicatif::HumanBytes(result.record.as_ref().map_or(0, |r| r.bytes()));
                    self.line("fetched", stage, &format!(" from the remote ({size})"))
                }
                Status::Cached if self.verbose => self.line("cached", stage, ""),
                Status::Ran => {
                    let job = result
                        .slurm_job
                        .as_ref()
                        .map(|j| format!(", Slurm job {j}"))
                        .unwrap_or_default();
                    // Why it ran, short (with `-v` the `running` line said it in full).
                    let why = match result.reasons.as_slice() {
                        _ if self.verbose => String::new(),
                        [] | [crate::fingerprint::Reason::NeverRan] => String::new(),
                        [one] => format!(": {one}"),
                        [first, rest @ ..] => {
                            format!(": {first} (and {} more; `-v` lists them)", rest.len())
                        }
                    };
                    self.line(
                        "ran",
                        stage,
                        &format!(" ({:.2}s{job}){why}", result.seconds),
                    )
                }
                Status::Failed => self.line("failed", stage, &format!(": {}", result.message())),
                Status::Interrupted => self.line("stopped", stage, ""),
                Status::Cached | Status::NotRun => {}
            },
            Event::Epoch { .. } | Event::Batch { .. } => {}
            Event::SlurmCommand { command } if self.verbose => {
                self.say(format!("{:>8} {command}", ""))
            }
            Event::SlurmCommand { .. } => {}
            Event::SlurmQueued { stage, job_id } => {
                self.line("queued", stage, &format!(": Slurm job {job_id}"))
            }
            Event::SlurmFollowing { stage, job_id } => self.line(
                "waiting",
                stage,
                &format!(": Slurm job {job_id}, submitted by an earlier run"),
            ),
            Event::SlurmStarted { stage, job_id } => {
                self.line("running", stage, &format!(": Slurm job {job_id} started"))
            }
            Event::SlurmCancelled { stage, job_id } => {
                self.line("stopped", stage, &format!(": cancelled Slurm job {job_id}"))
            }
            Event::SlurmCancelFailed { job_id, error } => self.say(format!(
                "warning: could not cancel Slurm job {job_id}: {error:#}"
            )),
        }
    }

    fn progress(&self) -> &MultiProgress {
        &self.progress
    }
}

impl Watcher for Printer {
    fn progress_changed(&self, progress: &Progress) {
        if self.progress.is_hidden() {
            return;
        }
        let mut lines = progress.lines(jiff::Timestamp::now());
        if progress.points.len() > 1 {
            lines.push(format!(
                "{} points: {}",
                progress.points.len(),
                progress.totals()
            ));
        }
        let mut board = self.board.lock().unwrap_or_else(|e| e.into_inner());
        while board.len() > lines.len() {
            let bar = board.pop().expect("longer than lines");
            bar.finish_and_clear();
            self.progress.remove(&bar);
        }
        while board.len() < lines.len() {
            // Inserted above the stages' bars, in order.
            let bar = self
                .progress
                .insert(board.len(), ProgressBar::new_spinner());
            bar.set_style(ProgressStyle::with_template("{msg}").expect("static template"));
            board.push(bar);
        }
        for (bar, line) in board.iter().zip(lines) {
            bar.set_message(line);
        }
    }
}
