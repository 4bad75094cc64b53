//! The stage kinds: what each one takes, makes and means, behind one [`Stage`] interface the executor drives.
//!
//! Adding a kind is: a module with a parameter struct (serde, `deny_unknown_fields`, checked by [`Params::check`])
//! and a [`Stage`] impl, plus one row in [`StageKind`]. The executor never looks inside a stage; it hashes
//! [`Stage::params`] and the inputs, and caches whatever [`Stage::run`] returns.

mod detached;
mod drop_drums;
mod extract_instrument;
mod midi_source;
pub mod render;
mod sample;
pub mod tokenize;
mod train;
mod vocab;
mod window;

pub use detached::{prepare, run_window, sample_params, tokenize_bytes};
pub use midi_source::{FileNote, SourceSummary};
pub use sample::{Mode as SampleMode, generate};
pub use train::TrainSummary;
pub use window::WindowSummary;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::artifact::ReportFile;
use crate::artifact::{Artifact, ArtifactKind};

/// Every stage kind the experiment file may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    MidiSource,
    DropDrums,
    ExtractInstrument,
    Tokenize,
    Vocab,
    Window,
    Train,
    Sample,
    Render,
}

impl StageKind {
    pub const ALL: [StageKind; 9] = [
        StageKind::MidiSource,
        StageKind::DropDrums,
        StageKind::ExtractInstrument,
        StageKind::Tokenize,
        StageKind::Vocab,
        StageKind::Window,
        StageKind::Train,
        StageKind::Sample,
        StageKind::Render,
    ];

    /// The name used in `kind = "…"`.
    pub fn name(self) -> &'static str {
        match self {
            StageKind::MidiSource => "midi_source",
            StageKind::DropDrums => "drop_drums",
            StageKind::ExtractInstrument => "extract_instrument",
            StageKind::Tokenize => "tokenize",
            StageKind::Vocab => "vocab",
            StageKind::Window => "window",
            StageKind::Train => "train",
            StageKind::Sample => "sample",
            StageKind::Render => "render",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Implementation version, part of every fingerprint: bump it when a change to the stage's code changes its
    /// output, so old cache entries stop matching.
    pub fn version(self) -> u32 {
        match self {
            // 2: tolerant reader (repairs, containers) and ingest.csv.
            StageKind::MidiSource => 2,
            // 2: lists files that held only drums.
            StageKind::DropDrums => 2,
            StageKind::ExtractInstrument => 1,
            StageKind::Tokenize => 1,
            StageKind::Vocab => 1,
            StageKind::Window => 1,
            // 2: fused LSTM layer op and bulk dropout masks (same maths, different rounding and random draws).
            // 3: RMSprop, Adam and AdamW compute Keras's updates (ε placement, AdamW's decay 0.004).
            StageKind::Train => 3,
            // 2: keeps the seed window and a reference excerpt; piano rolls.
            StageKind::Sample => 2,
            StageKind::Render => 1,
        }
    }

    /// The kind of each input, in order.
    pub fn inputs(self) -> &'static [ArtifactKind] {
        match self {
            StageKind::MidiSource => &[],
            StageKind::DropDrums => &[ArtifactKind::Midi],
            StageKind::ExtractInstrument => &[ArtifactKind::Midi],
            StageKind::Tokenize => &[ArtifactKind::Notes],
            StageKind::Vocab => &[ArtifactKind::Tokens],
            StageKind::Window => &[ArtifactKind::Vocab],
            StageKind::Train => &[ArtifactKind::Windows],
            StageKind::Sample => &[ArtifactKind::Model],
            StageKind::Render => &[ArtifactKind::Music],
        }
    }

    /// Every report file a stage of this kind may make. A cache entry naming any other file is not trusted: the
    /// names become paths in the report folder.
    pub fn report_files(self) -> &'static [&'static str] {
        match self {
            StageKind::MidiSource => &["ingest.csv"],
            StageKind::DropDrums => &[],
            StageKind::ExtractInstrument => &["instruments.csv"],
            StageKind::Tokenize => &[],
            StageKind::Vocab => &["vocab.csv"],
            StageKind::Window => &["windows.csv"],
            StageKind::Train => &["loss.csv", "model.safetensors", "model.json"],
            StageKind::Sample => &[
                "generated.mid",
                "generated.csv",
                "metrics.json",
                "generated.svg",
                "reference.svg",
            ],
            StageKind::Render => &["generated.wav", "seed.wav"],
        }
    }

    pub fn output(self) -> ArtifactKind {
        match self {
            StageKind::MidiSource | StageKind::DropDrums => ArtifactKind::Midi,
            StageKind::ExtractInstrument => ArtifactKind::Notes,
            StageKind::Tokenize => ArtifactKind::Tokens,
            StageKind::Vocab => ArtifactKind::Vocab,
            StageKind::Window => ArtifactKind::Windows,
            StageKind::Train => ArtifactKind::Model,
            StageKind::Sample => ArtifactKind::Music,
            StageKind::Render => ArtifactKind::Audio,
        }
    }

    /// The stage kinds whose output this kind can take as input `i`.
    pub fn producers_of(kind: ArtifactKind) -> Vec<&'static str> {
        Self::ALL
            .into_iter()
            .filter(|k| k.output() == kind)
            .map(|k| k.name())
            .collect()
    }

    /// Builds the stage from its parameter table. Errors carry the offending key and the toml error (with span).
    pub fn build<'de, D>(self, params: D, ctx: &CheckContext) -> Result<Box<dyn Stage>, ParamError>
    where
        D: serde::Deserializer<'de, Error = toml::de::Error>,
    {
        match self {
            StageKind::MidiSource => build::<midi_source::MidiSource, _>(params, ctx),
            StageKind::DropDrums => build::<drop_drums::DropDrums, _>(params, ctx),
            StageKind::ExtractInstrument => {
                build::<extract_instrument::ExtractInstrument, _>(params, ctx)
            }
            StageKind::Tokenize => build::<tokenize::Tokenize, _>(params, ctx),
            StageKind::Vocab => build::<vocab::Vocab, _>(params, ctx),
            StageKind::Window => build::<window::Window, _>(params, ctx),
            StageKind::Train => build::<train::Train, _>(params, ctx),
            StageKind::Sample => build::<sample::Sample, _>(params, ctx),
            StageKind::Render => build::<render::Render, _>(params, ctx),
        }
    }
}

impl fmt::Display for StageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What parameter checks may look at: where relative paths start.
pub struct CheckContext {
    /// The directory of the experiment file.
    pub base_dir: PathBuf,
}

/// A parameter that deserialized but makes no sense (`seq_len = 0`).
#[derive(Debug, Clone)]
pub struct ParamProblem {
    pub key: &'static str,
    pub message: String,
    pub hint: Option<String>,
}

impl ParamProblem {
    pub fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self {
            key,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

#[derive(Debug)]
pub enum ParamError {
    /// Unknown key, wrong type: the toml error knows the span.
    Decode(toml::de::Error),
    /// Values out of range.
    Invalid(Vec<ParamProblem>),
}

/// A stage's parameter struct: deserialized with `deny_unknown_fields`, then checked.
pub trait Params: DeserializeOwned + Serialize {
    fn check(&self, _ctx: &CheckContext) -> Vec<ParamProblem> {
        Vec::new()
    }
}

fn build<'de, P, D>(params: D, ctx: &CheckContext) -> Result<Box<dyn Stage>, ParamError>
where
    P: Params + Stage + 'static,
    D: serde::Deserializer<'de, Error = toml::de::Error>,
{
    let p = P::deserialize(params).map_err(ParamError::Decode)?;
    let problems = p.check(ctx);
    if problems.is_empty() {
        Ok(Box::new(p))
    } else {
        Err(ParamError::Invalid(problems))
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
