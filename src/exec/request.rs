//! What a run is asked to do: the experiments (or sweep points) to run ([`Target`]), and how ([`Options`]: forced
//! stages, threads, fail-fast, where stages run).

use std::path::PathBuf;

use super::slurm;
use crate::fingerprint::Hash;
use crate::spec::experiment::Experiment;

#[derive(Debug, Clone)]
pub struct Options {
    /// Stages to re-run even when cached (with everything downstream).
    pub force: Vec<String>,
    /// Stages run at once.
    pub jobs: usize,
    /// After a failure, finish everything that does not depend on it (default: start nothing new).
    pub keep_going: bool,
    /// Where stages run.
    pub executor: Executor,
    /// Run only this stage (and what it needs): how a Slurm node computes one stage.
    pub only: Option<String>,
    /// With `only`: the fingerprint the submitter expects of that stage. Checked before computing, so a node that
    /// sees other files or decides other parameters fails at once instead of storing a result nobody asked for.
    pub expected: Option<Hash>,
}

/// Where the executor runs a stage that is not cached.
#[derive(Debug, Clone, Default)]
pub enum Executor {
    /// In this process, on `jobs` threads.
    #[default]
    Local,
    /// As a Slurm job per stage, which runs `pipeline exec-stage` on a node.
    Slurm(SlurmPlacement),
}

/// What every job needs to find its way back.
#[derive(Debug, Clone)]
pub struct SlurmPlacement {
    /// This binary, which the nodes run (it must be on the shared filesystem).
    pub exe: PathBuf,
    /// The `--set` arguments as given.
    pub set: Vec<String>,
    /// The cache directory, absolute.
    pub cache_dir: PathBuf,
    /// With a remote, the nodes need not see `cache_dir`: each job uses a cache of its own and the remote.
    pub remote: Option<slurm::RemoteJob>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            force: Vec::new(),
            jobs: 1,
            keep_going: false,
            executor: Executor::Local,
            only: None,
            expected: None,
        }
    }
}

/// One experiment (or sweep point) to run.
pub struct Target<'a> {
    pub experiment: &'a Experiment,
    /// The name its stages' last fingerprints are kept under (`baseline`, `baseline/layers=2`).
    pub identity: String,
    /// `layers=2,seq_len=64` for a sweep point, empty otherwise.
    pub label: String,
    pub report_dir: PathBuf,
}
