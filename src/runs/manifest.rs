//! `manifest.json`, the record of one run: what ran and why, with which parameters, on which device, and which
//! report file came from which stage. One type, written by [`crate::runs::report`] and read back by every reader
//! (compare, the index page, `cache gc`, the tests), so the format has one definition.
//!
//! Readers are lenient: apart from the experiment's name and each stage's name and kind, a field that is missing
//! (an older manifest, or one written by hand) reads as empty. A stage summary stays JSON here; each stage kind owns
//! its shape, typed where something reads it back ([`TrainSummary`], [`WindowSummary`], `SourceSummary`).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::exec::{Outcome, Status};
use crate::fingerprint::{Hash, Reason};
use crate::stages::{FileNote, StageKind, TrainSummary, WindowSummary};

/// The file name of a run's manifest inside its report folder.
pub const MANIFEST: &str = "manifest.json";

/// One run, as its `manifest.json` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub experiment: String,
    #[serde(default)]
    pub run_id: String,
    /// The sweep point this run is, if any.
    pub point: Option<PointInfo>,
    #[serde(default)]
    pub experiment_file: String,
    /// The experiment file's absolute path, to tell two files that share a name apart (empty in older manifests).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub experiment_path: String,
    #[serde(default)]
    pub overrides: Vec<String>,
    #[serde(default)]
    pub started: String,
    #[serde(default)]
    pub finished: String,
    /// Always written; `None` only for a manifest that lacks it.
    pub status: Option<RunStatus>,
    #[serde(default)]
    pub tool: Tool,
    #[serde(default)]
    pub crates: BTreeMap<String, String>,
    /// The devices the run's trainings used, comma-separated (`cpu` when none trained).
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub stages: Vec<StageEntry>,
    /// Files the `midi_source` stages could not read, and why.
    #[serde(default)]
    pub skipped_files: Vec<FileNote>,
    /// The first `window` stage's summary.
    #[serde(default)]
    pub windows: Option<WindowSummary>,
    /// Report file → the stage that made it.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// For a trial of a pruned search: how it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<TrialInfo>,
}

/// Which sweep point a run is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointInfo {
    pub label: String,
    pub values: BTreeMap<String, String>,
}

/// How a trial ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Fate {
    /// It trained to the maximum.
    Complete { epochs: u32 },
    /// It stopped at `epochs`: ranked `rank` of the `of` trials that reached that rung, of which `kept` went on.
    Pruned {
        epochs: u32,
        rank: usize,
        of: usize,
        kept: usize,
    },
    /// Its own early stopping ended it at the rung of `epochs`.
    StoppedEarly { epochs: u32 },
}

/// One decision, as `sweep.json` records it: after `reported` trials had reported at `rung` (`epochs`), `trial`
/// ranked `rank` and went on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub trial: usize,
    pub rung: usize,
    pub epochs: u32,
    pub rank: usize,
    pub reported: usize,
}

/// How a trial of a pruned search ended (`[sweep.prune]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialInfo {
    pub fate: Fate,
    /// The metric pruning ranks by, and the trial's best value of it at its last rung.
    pub metric: String,
    pub value: Option<f64>,
    /// `pruned at epoch 3: val_loss 3.9120, rank 7 of 9 at rung 3 (kept: best 3)`.
    pub explanation: String,
    /// The best of the trials that trained to the end.
    #[serde(default)]
    pub winner: bool,
}

impl TrialInfo {
    /// `complete`, `pruned at 3`, `stopped early at 3`: for tables.
    pub fn status(&self) -> String {
        match &self.fate {
            Fate::Complete { .. } => "complete".into(),
            Fate::Pruned { epochs, .. } => format!("pruned at {epochs}"),
            Fate::StoppedEarly { epochs } => format!("stopped early at {epochs}"),
        }
    }
}

/// A pruned search in `sweep.json`: its settings, every promotion, and how each trial ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRecord {
    pub method: String,
    pub metric: String,
    pub min_epochs: u32,
    pub reduction: u32,
    /// The epochs of each rung.
    pub rungs: Vec<u32>,
    /// Every promotion to a higher rung, by rung and in the order decided there.
    pub promotions: Vec<Promotion>,
    pub trials: Vec<TrialRecord>,
    pub winner: Option<String>,
    /// Epochs trained by this run (0 when it found everything in the cache).
    pub epochs_trained: usize,
    /// Every training reported (false after an interruption).
    pub finished: bool,
}

/// One trial in [`SearchRecord`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    pub label: String,
    pub info: Option<TrialInfo>,
    pub explanation: String,
}

/// The tool that wrote a manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every stage ran or was cached.
    Ok,
    /// A stage failed.
    Failed,
    /// Stopped by Ctrl-C.
    Interrupted,
    /// Stopped by a failure elsewhere (another sweep point's stage).
    Incomplete,
}

impl RunStatus {
    pub fn of(outcome: &Outcome) -> Self {
        if outcome.failed().is_some() {
            Self::Failed
        } else if outcome.count(Status::Interrupted) > 0 {
            Self::Interrupted
        } else if outcome.count(Status::NotRun) > 0 {
            Self::Incomplete
        } else {
            Self::Ok
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Incomplete => "incomplete",
        }
    }
}

/// One stage of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageEntry {
    pub name: String,
    pub kind: StageKind,
    /// Always written; `None` only for a manifest that lacks it.
    pub status: Option<Status>,
    /// One line: why it ran (empty when cached).
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub reasons: Vec<Reason>,
    /// The parameters as fingerprinted: defaults filled in.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// How many sweep points share this stage's result.
    #[serde(default = "one")]
    pub shared_by: usize,
    pub fingerprint: Option<Hash>,
    pub output_hash: Option<Hash>,
    /// Size of the cached output.
    pub output_bytes: Option<u64>,
    #[serde(default)]
    pub seconds: f64,
    /// What the stage reported; its shape is the stage kind's (e.g. [`TrainSummary`]).
    pub summary: Option<serde_json::Value>,
    #[serde(default)]
    pub warnings: Vec<String>,
    pub error: Option<String>,
    /// Where the result came from: `computed` by this run, the `local` cache, or the `remote` one (absent for a
    /// stage that failed or did not run, and in manifests older than the remote cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// Where a stage's result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Computed,
    Local,
    Remote,
}

fn one() -> usize {
    1
}

impl StageEntry {
    /// The summary as the stage kind's type, if it has one that reads as `T`.
    pub fn summary_as<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_value(self.summary.clone()?).ok()
    }
}

impl Manifest {
    /// Reads `dir/manifest.json`; an error names the file.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let bytes = crate::paths::read_regular(&path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("`{}` is not a run manifest", path.display()))
    }

    /// The stage named `name`.
    pub fn stage(&self, name: &str) -> Option<&StageEntry> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Every parameter of every stage as `stage.param` → value.
    pub fn params(&self) -> BTreeMap<String, serde_json::Value> {
        self.stages
            .iter()
            .flat_map(|s| {
                s.params
                    .iter()
                    .map(move |(k, v)| (format!("{}.{k}", s.name), v.clone()))
            })
            .collect()
    }

    /// The summary of the run's (last) `train` stage.
    pub fn train_summary(&self) -> Option<TrainSummary> {
        self.stages
            .iter()
            .rev()
            .filter(|s| s.kind == StageKind::Train)
            .find_map(|s| s.summary_as::<TrainSummary>())
    }
}

/// Entry keys that the `keep` most recent runs of each experiment under `reports` refer to; and how many runs were
/// found in all. A manifest that cannot be read refers to nothing (its run cannot be re-shown from the cache anyway).
pub fn referenced_keys(reports: &Path, keep: usize) -> Result<(HashSet<String>, usize)> {
    // (experiment, run id) → the stage fingerprints of its manifests (a sweep run has one per point).
    let mut runs: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    if !reports.is_dir() {
        return Ok((HashSet::new(), 0));
    }
    for entry in walkdir::WalkDir::new(reports).max_depth(4) {
        let entry = entry.with_context(|| format!("cannot list `{}`", reports.display()))?;
        if entry.file_name() != MANIFEST {
            continue;
        }
        let Some(dir) = entry.path().parent() else {
            continue;
        };
        let Ok(manifest) = Manifest::read(dir) else {
            continue;
        };
        let keys = manifest
            .stages
            .iter()
            .filter_map(|s| s.fingerprint.map(|h| h.to_string()));
        runs.entry((manifest.experiment.clone(), manifest.run_id.clone()))
            .or_default()
            .extend(keys);
    }
    let found = runs.len();
    let mut per_experiment: BTreeMap<String, Vec<(String, Vec<String>)>> = BTreeMap::new();
    for ((experiment, run_id), keys) in runs {
        per_experiment
            .entry(experiment)
            .or_default()
            .push((run_id, keys));
    }
    let mut kept = HashSet::new();
    for runs in per_experiment.values_mut() {
        // Run ids start with the time they began, so they sort in time order.
        runs.sort_by(|a, b| b.0.cmp(&a.0));
        for (_, keys) in runs.iter().take(keep) {
            kept.extend(keys.iter().cloned());
        }
    }
    Ok((kept, found))
}

/// Every stage result the reports under `reports` refer to (of the experiment `experiment`, or of all): its
/// fingerprint and kind, once each, for `cache push` and `cache pull`. The second value counts the manifests read.
pub fn referenced_stages(
    reports: &Path,
    experiment: Option<&str>,
) -> Result<(Vec<(Hash, StageKind)>, usize)> {
    // By hex, so the order is stable and each result comes once.
    let mut out = BTreeMap::new();
    let mut manifests = 0;
    if !reports.is_dir() {
        return Ok((Vec::new(), 0));
    }
    for entry in walkdir::WalkDir::new(reports).max_depth(4) {
        let entry = entry.with_context(|| format!("cannot list `{}`", reports.display()))?;
        if entry.file_name() != MANIFEST {
            continue;
        }
        let Some(manifest) = entry.path().parent().and_then(|d| Manifest::read(d).ok()) else {
            continue;
        };
        if experiment.is_some_and(|e| e != manifest.experiment) {
            continue;
        }
        manifests += 1;
        for stage in &manifest.stages {
            if let Some(key) = stage.fingerprint
                && matches!(stage.status, Some(Status::Ran | Status::Cached))
            {
                out.insert(key.hex(), (key, stage.kind));
            }
        }
    }
    Ok((out.into_values().collect(), manifests))
}

/// The file name of a sweep's record inside the sweep's folder.
pub const SWEEP: &str = "sweep.json";

/// `sweep.json`: a sweep's axes and its points, each with its folder and outcome. (Fields in alphabetical order,
/// as the file has always had them.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRecord {
    /// Parameter → the values it takes, as written in the experiment file.
    pub axes: Option<BTreeMap<String, Vec<String>>>,
    pub experiment: String,
    /// `grid` or `zip`.
    pub mode: Option<String>,
    pub points: Vec<SweepPointRecord>,
    pub repeat: Option<u32>,
    /// With `[sweep.prune]`: the search's decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchRecord>,
}

/// One point of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPointRecord {
    /// Its folder inside the sweep's.
    pub dir: Option<String>,
    /// `stage `name`: why`, when it failed.
    pub error: Option<String>,
    pub label: String,
    pub status: RunStatus,
    pub values: BTreeMap<String, String>,
}

impl SweepRecord {
    /// Reads `dir/sweep.json`; an error names the file.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(SWEEP);
        let bytes = crate::paths::read_regular(&path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("`{}` is not a sweep record", path.display()))
    }
}
