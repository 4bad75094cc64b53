//! What the executor reports while it runs: typed events, in the order they happen. The executor never prints; a
//! [`Reporter`] decides what to show and how (the CLI's prints lines to stderr, `-v` adds the cached stages and the
//! reasons). The model is nextest's runner → events → reporter.

use std::fmt;

use indicatif::MultiProgress;

use super::outcome::StageResult;
use crate::fingerprint::Reason;
use crate::stages::{BatchProgress, EpochProgress};

/// How a stage stands among the points of a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Share {
    /// A plain experiment, or a stage every point shares in a one-point sweep.
    Alone,
    /// The stage of one sweep point.
    Point(String),
    /// One result for these points (their labels).
    SharedBy(Vec<String>),
}

/// ` [layers=2]` for one point's stage, ` (shared by 3 points)` for a shared one: what follows a stage's name.
impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Share::Alone => Ok(()),
            Share::Point(label) => write!(f, " [{label}]"),
            Share::SharedBy(points) => write!(f, " (shared by {} points)", points.len()),
        }
    }
}

/// The stage an event is about.
#[derive(Debug, Clone, Copy)]
pub struct StageRef<'a> {
    pub name: &'a str,
    pub share: &'a Share,
}

/// Something that happened while running.
#[derive(Debug)]
pub enum Event<'a> {
    /// A stage that is not cached is about to be computed, for these reasons.
    Running {
        stage: StageRef<'a>,
        reasons: &'a [Reason],
    },
    /// Another process is computing the same entry; this run waits for it and takes its result.
    WaitingForOther { stage: StageRef<'a> },
    /// A training continues from the checkpoint an interrupted run left.
    Resuming { stage: StageRef<'a> },
    /// The cached entry was damaged (it is removed and recomputed).
    Damaged {
        stage: StageRef<'a>,
        problem: &'a str,
    },
    /// The entry is cached, but the cache cannot record that this experiment now stands at it (a read-only cache):
    /// only the explanation of a later miss suffers.
    Unrecorded {
        stage: StageRef<'a>,
        error: &'a anyhow::Error,
    },
    /// A training finished an epoch (or, resumed, starts from where it stood).
    Epoch {
        stage: StageRef<'a>,
        progress: &'a EpochProgress,
    },
    /// A training finished a batch.
    Batch {
        stage: StageRef<'a>,
        progress: &'a BatchProgress,
    },
    /// A stage is done: cached, ran, failed or stopped.
    Finished {
        stage: StageRef<'a>,
        result: &'a StageResult,
    },
    /// Slurm: the `sbatch` command about to be run.
    SlurmCommand { command: &'a str },
    /// Slurm: a job was submitted for the stage.
    SlurmQueued {
        stage: StageRef<'a>,
        job_id: &'a str,
    },
    /// Slurm: the stage follows a job an earlier run submitted, which is still queued or running.
    SlurmFollowing {
        stage: StageRef<'a>,
        job_id: &'a str,
    },
    /// Slurm: the job started on a node.
    SlurmStarted {
        stage: StageRef<'a>,
        job_id: &'a str,
    },
    /// Slurm: the job was cancelled at Ctrl-C.
    SlurmCancelled {
        stage: StageRef<'a>,
        job_id: &'a str,
    },
    /// Slurm: the job could not be cancelled at Ctrl-C.
    SlurmCancelFailed {
        job_id: &'a str,
        error: &'a anyhow::Error,
    },
}

/// Receives the executor's events, from any of its threads.
pub trait Reporter: Sync {
    fn event(&self, event: Event<'_>);

    /// Where stages draw their progress bars, so that the reporter's lines and the bars do not overwrite each other.
    fn progress(&self) -> &MultiProgress;
}
