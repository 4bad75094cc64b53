//! The one interface the executor drives every stage through ([`Stage`]), and what a stage is given: its checks'
//! context ([`CheckContext`], [`Params`]), its run's context ([`RunContext`]), its files outside the cache
//! ([`ExternalInputs`]); and what it gives back ([`StageOutput`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::kind::StageKind;
use crate::artifact::{Artifact, ReportFile};
use crate::problem::Problem;

/// What parameter checks may look at: where relative paths start.
pub struct CheckContext {
    /// The directory of the experiment file.
    pub base_dir: PathBuf,
    /// What `device = "auto"` stands for in this experiment, decided when it is loaded.
    pub auto_device: crate::nn::device::DeviceKind,
}

/// A parameter that deserialized but makes no sense (`seq_len = 0`).
#[derive(Debug, Clone)]
pub struct ParamProblem {
    /// The parameter, as the experiment file names it.
    pub key: &'static str,
    pub problem: Problem,
}

impl ParamProblem {
    pub fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self {
            key,
            problem: Problem::new(message),
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.problem = self.problem.hint(hint);
        self
    }
}

#[derive(Debug)]
pub enum ParamError {
    /// Unknown keys, wrong types, a missing parameter: every one serde refused, each toml error with its span.
    Decode(Vec<toml::de::Error>),
    /// Values out of range.
    Invalid(Vec<ParamProblem>),
}

/// A stage's parameter struct: deserialized with `deny_unknown_fields`, completed from the context, then checked.
pub trait Params: DeserializeOwned + Serialize {
    /// Takes what the file does not say but the stage's results depend on (what `auto` means) from the context.
    fn complete(&mut self, _ctx: &CheckContext) {}

    fn check(&self, _ctx: &CheckContext) -> Vec<ParamProblem> {
        Vec::new()
    }
}

/// Files outside the cache that a stage's output depends on (the MIDI files of a source), by content.
#[derive(Debug, Clone, Default)]
pub struct ExternalInputs {
    /// How to show the files' paths to the user: the source path as written in the experiment.
    pub display_root: String,
    /// Relative path → blake3 of the bytes.
    pub files: BTreeMap<String, crate::fingerprint::Hash>,
    /// Absolute path of each file, to read it when the stage runs.
    pub locations: BTreeMap<String, PathBuf>,
    /// Entries that were found but cannot be read (a dangling link, a link loop): relative path → why. Skipped by
    /// the stage, with the reason, like any unreadable file; part of no fingerprint.
    pub unreadable: BTreeMap<String, String>,
}

impl ExternalInputs {
    /// The bytes of the file at `abs` (one of [`Self::locations`], under `rel`), checked against the hash the
    /// stage's fingerprint was made with, so a file edited mid-run is never cached under the old fingerprint.
    pub fn read(&self, rel: &str, abs: &Path) -> anyhow::Result<Vec<u8>> {
        let bytes =
            std::fs::read(abs).with_context(|| format!("cannot read `{}`", abs.display()))?;
        if self.files.get(rel) != Some(&crate::fingerprint::Hash::of(&bytes)) {
            anyhow::bail!(
                "`{}` changed while the run was reading it; run again",
                abs.display()
            );
        }
        Ok(bytes)
    }
}

/// What a stage run produced.
#[derive(Debug)]
pub struct StageOutput {
    pub artifact: Artifact,
    /// Small facts for the manifest (counts, kept programs); a JSON object.
    pub summary: serde_json::Value,
    pub files: Vec<ReportFile>,
}

/// A previous result to continue from: its output and its report files (in the cache, read-only).
pub struct Resume {
    pub artifact: std::sync::Arc<Artifact>,
    pub files: BTreeMap<String, PathBuf>,
}

/// Everything a running stage may use besides its inputs.
pub struct RunContext<'a> {
    pub stage: &'a str,
    pub base_dir: &'a Path,
    pub external: &'a ExternalInputs,
    pub progress: &'a MultiProgress,
    pub warnings: Vec<String>,
    /// The run's report folder, for files written as the stage goes (`loss.csv`).
    pub report_dir: &'a Path,
    /// Prefix for this stage's report files (empty unless two stages of its kind would write the same names).
    pub report_prefix: String,
    /// The stage's previous result, when [`Stage::resumable`] says it can be continued, or the checkpoint an
    /// interrupted run of this very stage left.
    pub resume: Option<Resume>,
    /// Where a long stage saves its progress as it goes (none outside the executor).
    pub checkpoint: Option<crate::store::Checkpoint>,
    /// Hears each finished epoch of a training, for the live view and `pipeline ps`.
    pub on_epoch: &'a dyn Fn(&EpochProgress),
    /// Called by a training after every batch: the board's line for the training moves within an epoch.
    pub on_batch: &'a dyn Fn(&BatchProgress),
}

/// Where a training stands within an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchProgress {
    /// The epoch under way, from 1, and the epochs asked for.
    pub epoch: usize,
    pub epochs: usize,
    /// Its batches done, and all of its batches.
    pub batch: usize,
    pub batches: usize,
}

/// Where a training stands after an epoch (or, resumed, before its first one).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochProgress {
    /// Epochs done, counting the ones a resumed training started from.
    pub epoch: usize,
    /// The epochs asked for.
    pub epochs: usize,
    pub train_loss: f64,
    pub val_loss: Option<f64>,
    /// How long the last epoch took (0 for the epochs a resumed training starts from).
    pub seconds: f64,
}

impl RunContext<'_> {
    /// Where a report file of this stage goes in the run's report folder.
    pub fn report_file(&self, name: &str) -> PathBuf {
        self.report_dir
            .join(format!("{}{name}", self.report_prefix))
    }

    /// Prints a note now (above any progress bar).
    pub fn note(&self, message: String) {
        let line = format!("    note: {}: {message}", self.stage);
        self.progress.suspend(|| eprintln!("{line}"));
    }

    /// Prints a warning now (above any progress bar) and keeps it for the report.
    pub fn warn(&mut self, message: String) {
        let line = format!("warning: {}: {message}", self.stage);
        self.progress.suspend(|| eprintln!("{line}"));
        self.warnings.push(message);
    }

    /// A progress bar for `len` units of work, labelled with the stage name; hidden when stderr is not a terminal.
    pub fn bar(&self, len: u64, unit: &str) -> ProgressBar {
        let bar = self.progress.add(ProgressBar::new(len));
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{prefix:>12}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{msg}}"
            ))
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_prefix(self.stage.to_string());
        bar
    }
}

/// One configured stage.
pub trait Stage: Send + Sync + fmt::Debug {
    fn kind(&self) -> StageKind;

    /// The parameters that determine the output, as they go into the fingerprint: the checked values with defaults
    /// filled in, so `top = 1` and a missing `top` hash the same.
    fn params(&self) -> BTreeMap<String, serde_json::Value>;

    /// Files outside the cache the output depends on.
    fn external_inputs(&self, _base_dir: &Path) -> anyhow::Result<ExternalInputs> {
        Ok(ExternalInputs::default())
    }

    /// Whether the output of a run with fingerprint `old` can be continued into one with `new` (a training with
    /// more epochs) instead of starting over.
    fn resumable(
        &self,
        _old: &crate::fingerprint::Fingerprint,
        _new: &crate::fingerprint::Fingerprint,
    ) -> bool {
        false
    }

    fn run(&self, ctx: &mut RunContext, inputs: &[&Artifact]) -> anyhow::Result<StageOutput>;
}

/// [`Stage::params`] for parameter structs: their serde form, field by field.
pub fn params_of<P: Serialize>(p: &P) -> BTreeMap<String, serde_json::Value> {
    match serde_json::to_value(p).expect("parameters are plain data") {
        serde_json::Value::Object(map) => map.into_iter().collect(),
        serde_json::Value::Null => BTreeMap::new(),
        other => panic!("parameters must serialize as a map, got {other}"),
    }
}

/// Writes rows as CSV into memory, for report files.
pub fn csv_bytes<R: Serialize>(rows: impl IntoIterator<Item = R>) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.serialize(row)?;
    }
    Ok(w.into_inner().map_err(|e| e.into_error())?)
}
