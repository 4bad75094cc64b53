//! What a run did: each stage's [`StageResult`] (its [`Status`], fingerprint, record, time, and why it failed), and
//! one [`Outcome`] per target.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::fingerprint::{Hash, Reason};
use crate::stages::StageKind;
use crate::store::Record;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Cached,
    Ran,
    Failed,
    /// Stopped by Ctrl-C while running; its progress (training epochs) is checkpointed.
    Interrupted,
    /// Not run: an input failed, or the run stopped at another failure or at Ctrl-C.
    NotRun,
}

#[derive(Debug, Clone)]
pub struct StageResult {
    pub name: String,
    pub kind: StageKind,
    pub status: Status,
    pub reasons: Vec<Reason>,
    pub fingerprint: Option<Hash>,
    pub record: Option<Record>,
    pub seconds: f64,
    /// Why it failed or stopped.
    pub error: Option<StageError>,
    /// The Slurm job that ran the stage, and its log.
    pub slurm_job: Option<String>,
    pub slurm_log: Option<PathBuf>,
    /// How many points share this stage's result (1 outside sweeps).
    pub shared_by: usize,
    /// The run's node this is: every point that shares the stage holds the same, so a count of a run's stages counts
    /// it once.
    pub node: usize,
    /// Cached because it was downloaded from the remote.
    pub fetched: bool,
}

impl StageResult {
    pub(super) fn new(name: &str, kind: StageKind, status: Status) -> Self {
        Self {
            name: name.to_string(),
            kind,
            status,
            reasons: Vec::new(),
            fingerprint: None,
            record: None,
            seconds: 0.0,
            error: None,
            slurm_job: None,
            slurm_log: None,
            shared_by: 1,
            node: 0,
            fetched: false,
        }
    }

    /// This result as failed with `e` (as interrupted when `e` is Ctrl-C's).
    pub(super) fn with_error(self, e: anyhow::Error) -> Self {
        self.failed(e, Cause::Stage)
    }

    /// This result as failed because the cache could not be used (full, read-only); Ctrl-C's error still only
    /// stops it.
    pub(super) fn with_cache_error(self, e: anyhow::Error) -> Self {
        self.failed(e, Cause::Cache)
    }

    pub(super) fn with_remote_error(self, e: anyhow::Error) -> Self {
        self.failed(e, Cause::Remote)
    }

    fn failed(mut self, e: anyhow::Error, cause: Cause) -> Self {
        let interrupted = e.downcast_ref::<crate::interrupt::Interrupted>().is_some();
        if interrupted {
            self.status = Status::Interrupted;
        }
        self.error = Some(StageError {
            message: format!("{e:#}"),
            cause: if interrupted { Cause::Stage } else { cause },
        });
        self
    }

    /// The error's message, or `unknown error`.
    pub fn message(&self) -> &str {
        self.error
            .as_ref()
            .map_or("unknown error", |e| e.message.as_str())
    }
}

/// Why a stage failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageError {
    pub message: String,
    pub cause: Cause,
}

/// Whose failure it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The stage's own (bad input, a failed Slurm job, Ctrl-C).
    Stage,
    /// The cache's: it could not be written (full, read-only), so nothing new could be kept.
    Cache,
    /// The remote's: `--remote-required` is set and the remote cannot be used.
    Remote,
}

#[derive(Debug)]
pub struct Outcome {
    /// In run order.
    pub stages: Vec<StageResult>,
}

impl Outcome {
    pub fn failed(&self) -> Option<&StageResult> {
        self.stages.iter().find(|s| s.status == Status::Failed)
    }

    pub fn count(&self, status: Status) -> usize {
        self.stages.iter().filter(|s| s.status == status).count()
    }
}
