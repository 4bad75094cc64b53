//! The table of stage kinds (`KINDS`: name, version, input and output artifact kinds, report files, constructor,
//! schema), what [`StageKind`]'s methods read, and [`StageParams`], the closed set of every kind's parameters.

use std::fmt;

use toml::Spanned;
use toml::de::DeValue;

use super::kind::StageKind;
use super::stage::{CheckContext, ParamError, Params, Stage};
use super::{
    augment, drop_drums, extract_instrument, midi_source, ngram, render, sample, tokenize, train,
    vocab, window,
};
use crate::artifact::ArtifactKind;

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
        // 6: validation scored by the whole stack a step at a time, an upper layer's two products as one (the same
        //    losses to about 1e-7).
        version: 6,
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
        // 8: the artifact carries every piece's tokens, for the render stage to play each.
        // 9: `rhythm_temperature` tempers the time tokens among themselves, keeping their share (it had scaled
        //    their logits, which under `notes` changed how many notes an onset gets).
        version: 9,
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
        // 2: every piece is rendered (`generated-n.wav`), not only the first.
        version: 2,
        inputs: &[&[ArtifactKind::Music]],
        output: ArtifactKind::Audio,
        report_files: &[
            "generated.wav",
            "seed.wav",
            "generated-2.wav",
            "generated-3.wav",
            "generated-4.wav",
            "generated-5.wav",
            "generated-6.wav",
            "generated-7.wav",
            "generated-8.wav",
        ],
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

    /// Each parameter's default, as its schema states it (those left out of fingerprints where they do not apply
    /// included: a `chord` tokenizer's `grid`).
    pub fn defaults(self) -> std::collections::BTreeMap<String, serde_json::Value> {
        self.params_schema()
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| {
                p.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.get("default")?.clone())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether its parameters can change a training's loss: every kind but those that only read a trained model or
    /// the windows beside it (sampling, rendering, the n-gram floor).
    pub fn shapes_training(self) -> bool {
        !matches!(self, Self::Sample | Self::Render | Self::Ngram)
    }

    /// Whether its parameter table takes `param` (as its schema lists it).
    pub fn takes(self, param: &str) -> bool {
        self.params_schema()
            .get("properties")
            .and_then(|p| p.as_object())
            .is_some_and(|p| p.contains_key(param))
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
    let mut p: P = super::decode::decode_all(params).map_err(ParamError::Decode)?;
    p.complete(ctx);
    let problems = p.check(ctx);
    if problems.is_empty() {
        Ok(p.into())
    } else {
        Err(ParamError::Invalid(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::path::PathBuf;

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
