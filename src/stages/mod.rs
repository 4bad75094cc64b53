//! The stage kinds: what each one takes, makes and means, behind one [`Stage`] interface the executor drives.
//!
//! Adding a kind is: a module with a parameter struct (serde, `deny_unknown_fields`, checked by [`Params::check`])
//! and a [`Stage`] impl, plus its variant in [`StageKind`] and its row in `KINDS` (name, version, input and output
//! artifact kinds, report files, constructor). The executor never looks inside a stage; it hashes
//! [`Stage::params`] and the inputs, and caches whatever [`Stage::run`] returns.

mod augment;
mod detached;
mod drop_drums;
mod extract_instrument;
mod grammar;
mod midi_source;
pub mod ngram;
pub mod render;
mod sample;
pub mod schedule;
pub(crate) mod tokenize;
mod train;
pub mod units;
mod vocab;
mod window;

pub use detached::{prepare, run_detached, run_window, sample_params, tokenize_bytes};
pub use midi_source::{FileNote, SourceSummary};
pub use ngram::NgramSummary;
pub use sample::{Generator, Mode as SampleMode, generate};
pub use train::{Train, TrainSummary};
pub use window::{Window, WindowSummary};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::DeValue;

pub use crate::artifact::ReportFile;
use crate::artifact::{Artifact, ArtifactKind};
use crate::problem::Problem;

/// Every stage kind the experiment file may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    MidiSource,
    DropDrums,
    ExtractInstrument,
    Tokenize,
    Augment,
    Vocab,
    Window,
    Train,
    Sample,
    Render,
    Ngram,
}

/// Builds a stage of one kind from its parameter table (deserialized with `deny_unknown_fields`, then checked).
type Builder = for<'de> fn(Spanned<DeValue<'de>>, &CheckContext) -> Result<StageParams, ParamError>;

/// Declares [`StageParams`] with one variant per kind, holding that kind's parameter struct.
macro_rules! stage_params {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// A stage's checked parameters, typed: one variant per kind. Edits (a rung's epochs, a repeat's seed) are
        /// made on these structs and cloned, never by re-reading the file or a parameter by its name.
        #[derive(Debug, Clone)]
        pub enum StageParams {
            $($variant($ty),)*
        }

        impl StageParams {
            /// The stage these parameters configure, as the executor drives it.
            pub fn as_stage(&self) -> &dyn Stage {
                match self {
                    $(Self::$variant(p) => p,)*
                }
            }
        }

        $(impl From<$ty> for StageParams {
            fn from(p: $ty) -> Self {
                Self::$variant(p)
            }
        })*
    };
}

stage_params! {
    MidiSource(midi_source::MidiSource),
    DropDrums(drop_drums::DropDrums),
    ExtractInstrument(extract_instrument::ExtractInstrument),
    Tokenize(tokenize::Tokenize),
    Augment(augment::Augment),
    Vocab(vocab::Vocab),
    Window(window::Window),
    Train(train::Train),
    Sample(sample::Sample),
    Render(render::Render),
    Ngram(ngram::Ngram),
}

/// Everything the checks, the executor and the cache know about a stage kind: one row each, in [`KINDS`].
struct KindRow {
    kind: StageKind,
    /// The name used in `kind = "…"`.
    name: &'static str,
    /// Implementation version, part of every fingerprint: bump it when a change to the stage's code changes its
    /// output, so old cache entries stop matching.
    version: u32,
    /// The kinds each input may be, in order (most take one kind; `sample` takes a trained model or an n-gram).
    inputs: &'static [&'static [ArtifactKind]],
    output: ArtifactKind,
    /// Every report file a stage of this kind may make. A cache entry naming any other file is not trusted: the
    /// names become paths in the report folder.
    report_files: &'static [&'static str],
    build: Builder,
    /// The JSON Schema of its parameters (`pipeline schema`), from the same struct `build` reads them into.
    schema: fn() -> schemars::Schema,
}

/// The stage kinds, in the order of [`StageKind`]'s variants (checked when compiling).
const KINDS: [KindRow; 11] = [
    KindRow {
        kind: StageKind::MidiSource,
        name: "midi_source",
        // 2: tolerant reader (repairs, containers) and ingest.csv.
        // 3: files keep their first tempo.
        version: 3,
        inputs: &[],
        output: ArtifactKind::Midi,
        report_files: &["ingest.csv"],
        build: build::<midi_source::MidiSource>,
        schema: schema_of::<midi_source::MidiSource>,
    },
    KindRow {
        kind: StageKind::DropDrums,
        name: "drop_drums",
        // 2: lists files that held only drums.
        // 3: files keep their tempo.
        version: 3,
        inputs: &[&[ArtifactKind::Midi]],
        output: ArtifactKind::Midi,
        report_files: &[],
        build: build::<drop_drums::DropDrums>,
        schema: schema_of::<drop_drums::DropDrums>,
    },
    KindRow {
        kind: StageKind::ExtractInstrument,
        name: "extract_instrument",
        // 2: notes keep their durations.
        // 3: files keep their tempo.
        version: 3,
        inputs: &[&[ArtifactKind::Midi]],
        output: ArtifactKind::Notes,
        report_files: &["instruments.csv"],
        build: build::<extract_instrument::ExtractInstrument>,
        schema: schema_of::<extract_instrument::ExtractInstrument>,
    },
    KindRow {
        kind: StageKind::Tokenize,
        name: "tokenize",
        // 2: files carry where a transposed copy came from (`augment`).
        // 3: files keep their tempo; the set records its scheme.
        version: 3,
        inputs: &[&[ArtifactKind::Notes]],
        output: ArtifactKind::Tokens,
        report_files: &[],
        build: build::<tokenize::Tokenize>,
        schema: schema_of::<tokenize::Tokenize>,
    },
    KindRow {
        kind: StageKind::Augment,
        name: "augment",
        // 2: time tokens are kept as they are (version 1 made no copy of a timed file).
        // 3: copies keep their file's tempo.
        version: 3,
        inputs: &[&[ArtifactKind::Tokens]],
        output: ArtifactKind::Tokens,
        report_files: &[],
        build: build::<augment::Augment>,
        schema: schema_of::<augment::Augment>,
    },
    KindRow {
        kind: StageKind::Vocab,
        name: "vocab",
        // 2: files carry where a transposed copy came from.
        // 3: files keep their tempo; the vocabulary records the scheme.
        version: 3,
        inputs: &[&[ArtifactKind::Tokens]],
        output: ArtifactKind::Vocab,
        report_files: &["vocab.csv"],
        build: build::<vocab::Vocab>,
        schema: schema_of::<vocab::Vocab>,
    },
    KindRow {
        kind: StageKind::Window,
        name: "window",
        // 2: files keep their tempo; the set records the scheme.
        version: 2,
        inputs: &[&[ArtifactKind::Vocab]],
        output: ArtifactKind::Windows,
        report_files: &["windows.csv"],
        build: build::<window::Window>,
        schema: schema_of::<window::Window>,
    },
    KindRow {
        kind: StageKind::Train,
        name: "train",
        // 2: fused LSTM layer op and bulk dropout masks (same maths, different rounding and random draws).
        // 3: RMSprop, Adam and AdamW compute Keras's updates (ε placement, AdamW's decay 0.004).
        // 4: loss.csv gives the validation loss in bits per onset and per quarter note; the best validation loss.
        // 5: validation scored in batches of its own size and summed per window (the same losses to about 1e-7).
        version: 5,
        inputs: &[&[ArtifactKind::Windows]],
        output: ArtifactKind::Model,
        report_files: &["loss.csv", "model.safetensors", "model.json"],
        build: build::<train::Train>,
        schema: schema_of::<train::Train>,
    },
    KindRow {
        kind: StageKind::Sample,
        name: "sample",
        // 2: keeps the seed window and a reference excerpt; piano rolls.
        // 3: structural metrics, and the held-out, shuffled and uniform references in metrics.json.
        // 4: pieces play at the tempo of the file they start from; `primer`.
        // 5: the held-out files' own copy rates in metrics.json; n-gram models as input; held-out excerpts.
        // 6: a corpus's scale consistency and pitch range are its files' (each file in its own key), not its notes'
        //    pooled across keys.
        // 7: each reference's `interval_distance` is measured on excerpts of the piece's own length.
        version: 7,
        inputs: &[&[ArtifactKind::Model, ArtifactKind::Ngram]],
        output: ArtifactKind::Music,
        // Pieces 2 to `sample::MAX_PIECES` (with `count`) add their own four.
        report_files: &[
            "generated.mid",
            "generated.csv",
            "metrics.json",
            "generated.svg",
            "reference.svg",
            "generated-2.mid",
            "generated-2.csv",
            "metrics-2.json",
            "generated-2.svg",
            "generated-3.mid",
            "generated-3.csv",
            "metrics-3.json",
            "generated-3.svg",
            "generated-4.mid",
            "generated-4.csv",
            "metrics-4.json",
            "generated-4.svg",
            "generated-5.mid",
            "generated-5.csv",
            "metrics-5.json",
            "generated-5.svg",
            "generated-6.mid",
            "generated-6.csv",
            "metrics-6.json",
            "generated-6.svg",
            "generated-7.mid",
            "generated-7.csv",
            "metrics-7.json",
            "generated-7.svg",
            "generated-8.mid",
            "generated-8.csv",
            "metrics-8.json",
            "generated-8.svg",
            "held-out.mid",
            "held-out-2.mid",
            "held-out-3.mid",
            "held-out-4.mid",
            "held-out-5.mid",
            "held-out-6.mid",
            "held-out-7.mid",
            "held-out-8.mid",
        ],
        build: build::<sample::Sample>,
        schema: schema_of::<sample::Sample>,
    },
    KindRow {
        kind: StageKind::Render,
        name: "render",
        version: 1,
        inputs: &[&[ArtifactKind::Music]],
        output: ArtifactKind::Audio,
        report_files: &["generated.wav", "seed.wav"],
        build: build::<render::Render>,
        schema: schema_of::<render::Render>,
    },
    KindRow {
        kind: StageKind::Ngram,
        name: "ngram",
        version: 1,
        inputs: &[&[ArtifactKind::Windows]],
        output: ArtifactKind::Ngram,
        report_files: &["ngram.csv"],
        build: build::<ngram::Ngram>,
        schema: schema_of::<ngram::Ngram>,
    },
];

impl StageKind {
    /// Every kind, in [`KINDS`] order. Building it checks that each row sits at its variant's index.
    pub const ALL: [StageKind; KINDS.len()] = {
        let mut all = [StageKind::MidiSource; KINDS.len()];
        let mut i = 0;
        while i < KINDS.len() {
            assert!(
                KINDS[i].kind as usize == i,
                "KINDS must list the kinds in the order of StageKind's variants"
            );
            all[i] = KINDS[i].kind;
            i += 1;
        }
        all
    };

    fn row(self) -> &'static KindRow {
        &KINDS[self as usize]
    }

    /// The name used in `kind = "…"`.
    pub fn name(self) -> &'static str {
        self.row().name
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The JSON Schema of its parameters (see [`KindRow::schema`]).
    pub fn params_schema(self) -> schemars::Schema {
        (self.row().schema)()
    }

    /// Implementation version, part of every fingerprint (see [`KindRow::version`]).
    pub fn version(self) -> u32 {
        self.row().version
    }

    /// The kinds each input may be, in order.
    pub fn inputs(self) -> &'static [&'static [ArtifactKind]] {
        self.row().inputs
    }

    /// What a cache entry of this kind must hold: its report files, and its output kind.
    pub fn expect(self) -> crate::store::Expect<'static> {
        crate::store::Expect {
            report_files: self.report_files(),
            output: self.output(),
        }
    }

    /// Every report file a stage of this kind may make (see [`KindRow::report_files`]).
    pub fn report_files(self) -> &'static [&'static str] {
        self.row().report_files
    }

    pub fn output(self) -> ArtifactKind {
        self.row().output
    }

    /// The stage kinds whose output is one of `kinds` (what an input slot accepts).
    pub fn producers_of(kinds: &[ArtifactKind]) -> Vec<&'static str> {
        Self::ALL
            .into_iter()
            .filter(|k| kinds.contains(&k.output()))
            .map(|k| k.name())
            .collect()
    }

    /// Builds the stage from its parameter table. Errors carry the offending key and the toml error (with span).
    pub fn build(
        self,
        params: Spanned<DeValue<'_>>,
        ctx: &CheckContext,
    ) -> Result<StageParams, ParamError> {
        (self.row().build)(params, ctx)
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
    /// Unknown key, wrong type: the toml error knows the span.
    Decode(toml::de::Error),
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

/// The JSON Schema of a kind's parameters, as schemars derives it from the struct serde reads them into (doc
/// comments become descriptions, `serde(default = …)` defaults, `schemars(range)` the ranges `check` enforces).
fn schema_of<P: schemars::JsonSchema>() -> schemars::Schema {
    schemars::SchemaGenerator::new(schemars::generate::SchemaSettings::draft2020_12())
        .into_root_schema_for::<P>()
}

fn build<P>(params: Spanned<DeValue<'_>>, ctx: &CheckContext) -> Result<StageParams, ParamError>
where
    P: Params + Into<StageParams>,
{
    let mut p = P::deserialize(params.into_deserializer()).map_err(ParamError::Decode)?;
    p.complete(ctx);
    let problems = p.check(ctx);
    if problems.is_empty() {
        Ok(p.into())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// A number's bounds as the schema states them, with the range its type (`uint32`, …) holds.
    struct Bounds {
        min: Option<(f64, bool)>,
        max: Option<(f64, bool)>,
        integer: bool,
    }

    impl Bounds {
        fn of(property: &Value) -> Option<Self> {
            let types = match &property["type"] {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => return None,
            };
            let integer = types.contains(&"integer");
            if !integer && !types.contains(&"number") {
                return None;
            }
            let number = |k: &str| property.get(k).and_then(Value::as_f64);
            let format_max = match property["format"].as_str() {
                Some("uint32") => Some(f64::from(u32::MAX)),
                _ => None,
            };
            let min = number("exclusiveMinimum")
                .map(|m| (m, true))
                .or(number("minimum").map(|m| (m, false)));
            let max = number("exclusiveMaximum")
                .map(|m| (m, true))
                .or(number("maximum").map(|m| (m, false)))
                .or(format_max.map(|m| (m, false)));
            Some(Self { min, max, integer })
        }

        fn allows(&self, v: f64) -> bool {
            let above = self
                .min
                .is_none_or(|(m, ex)| if ex { v > m } else { v >= m });
            let below = self
                .max
                .is_none_or(|(m, ex)| if ex { v < m } else { v <= m });
            above && below
        }

        /// Values on and around each bound, and far out where a side is open.
        fn probes(&self) -> Vec<f64> {
            let step = if self.integer { 1.0 } else { 1e-6 };
            let mut v = Vec::new();
            for (bound, _) in self.min.iter().chain(&self.max) {
                v.extend([bound - step, *bound, bound + step]);
            }
            if self.min.is_none() {
                v.extend([-1e9, -1.0, 0.0]);
            }
            if self.max.is_none() {
                v.extend([1e6, 1e9]);
            }
            v.retain(|x| !self.integer || *x >= 0.0 || self.min.is_none_or(|(m, _)| m < 0.0));
            v
        }
    }

    /// Other parameters a probe needs so that only the probed one can be wrong (a warm-up needs epochs beyond it).
    fn companions(kind: StageKind, key: &str) -> &'static str {
        match (kind, key) {
            (StageKind::Train, "warmup") => "epochs = 1000000\n",
            (StageKind::MidiSource, _) => "path = \"data/openmsx\"\n",
            _ => "",
        }
    }

    /// Whether validation refuses `key = value` in a table of kind `kind` because of `key`.
    fn refused(kind: StageKind, key: &str, value: f64, integer: bool) -> bool {
        let literal = if integer {
            format!("{}", value as i64)
        } else {
            format!("{value:e}")
        };
        let text = format!("{}{key} = {literal}\n", companions(kind, key));
        let table = toml::de::DeTable::parse(&text).expect("a probe is valid TOML");
        let ctx = CheckContext {
            base_dir: PathBuf::from("."),
            auto_device: crate::nn::device::DeviceKind::Cpu,
        };
        let value = Spanned::new(0..text.len(), DeValue::Table(table.into_inner()));
        match kind.build(value, &ctx) {
            Ok(_) => false,
            // A value its type cannot hold (a negative `u32`) fails to decode.
            Err(ParamError::Decode(_)) => true,
            Err(ParamError::Invalid(problems)) => {
                let ours = problems.iter().any(|p| p.key == key);
                assert!(
                    ours,
                    "{kind} `{text}`: problems with other keys: {problems:?}"
                );
                ours
            }
        }
    }

    #[test]
    fn the_schema_and_the_validator_agree_on_every_bound() {
        let mut checked = 0;
        for kind in StageKind::ALL {
            let schema = serde_json::to_value(kind.params_schema()).unwrap();
            let Some(Value::Object(properties)) = schema.get("properties") else {
                continue;
            };
            for (key, property) in properties {
                let Some(bounds) = Bounds::of(property) else {
                    continue;
                };
                for v in bounds.probes() {
                    let schema_says = bounds.allows(v);
                    let validator_says = !refused(kind, key, v, bounds.integer);
                    assert_eq!(
                        schema_says,
                        validator_says,
                        "{kind}.{key} = {v}: the schema {} it, validation {} it",
                        if schema_says { "allows" } else { "refuses" },
                        if validator_says { "allows" } else { "refuses" },
                    );
                    checked += 1;
                }
            }
        }
        assert!(
            checked > 100,
            "only {checked} probes: the schema lost its numbers"
        );
    }
}
