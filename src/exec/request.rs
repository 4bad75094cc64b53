//! What a run is asked to do: the experiments (or sweep points) to run ([`Target`]), and how ([`Options`]: forced
//! stages, threads, fail-fast, where stages run).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::slurm;
use crate::fingerprint::Hash;
use crate::spec::experiment::Experiment;
use crate::stages::ExternalInputs;

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
    /// The files outside the cache that stages read (a source's MIDI files), hashed once and shared by every run
    /// made with a clone of these options: a search's trials and rungs hash the corpus once.
    pub externals: Externals,
}

/// Each stage's files outside the cache by (experiment directory, stage kind and parameters), hashed when first
/// asked for. A file that changes afterwards is caught when a stage reads it ([`crate::stages::ExternalInputs::read`]).
#[derive(Debug, Clone, Default)]
pub struct Externals(Arc<Mutex<HashMap<ExternalsKey, Result<ExternalInputs, String>>>>);

/// The experiment's directory (where relative paths start) and the stage's kind and parameters.
type ExternalsKey = (PathBuf, String);

impl Externals {
    /// The external inputs of the stage keyed `key`, computed by `hash` the first time.
    pub(super) fn get(
        &self,
        key: ExternalsKey,
        hash: impl FnOnce() -> Result<ExternalInputs, String>,
    ) -> Result<ExternalInputs, String> {
        if let Some(known) = self.0.lock().expect("not poisoned").get(&key) {
            return known.clone();
        }
        // Hashed outside the lock: a large corpus takes seconds, and other keys need not wait for it.
        let fresh = hash();
        self.0
            .lock()
            .expect("not poisoned")
            .entry(key)
            .or_insert(fresh)
            .clone()
    }
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
            externals: Externals::default(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn clones_of_the_options_hash_a_stage_s_files_once() {
        let opts = Options::default();
        let rung = opts.clone();
        let calls = Cell::new(0);
        let key = || (PathBuf::from("experiments"), "midi_source{}".to_string());
        let hash = || {
            calls.set(calls.get() + 1);
            Ok(ExternalInputs {
                display_root: "songs".into(),
                ..Default::default()
            })
        };
        let first = opts.externals.get(key(), hash).unwrap();
        let again = rung.externals.get(key(), hash).unwrap();
        assert_eq!(
            calls.get(),
            1,
            "the second run made from a clone hashed again"
        );
        assert_eq!(first.display_root, again.display_root);
        // Other options (another `pipeline run`) hash for themselves.
        Options::default().externals.get(key(), hash).unwrap();
        assert_eq!(calls.get(), 2);
    }
}
