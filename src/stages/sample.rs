//! `sample`: generates new music from a trained model, starting from a randomly chosen training window (or the
//! start of a user's MIDI file, `primer`), and writes it as `generated.mid` and `generated.csv`, at the tempo of the
//! file it started from.
//!
//! By default the model reads the starting window once and then one token at a time, keeping its LSTM state (O(1)
//! per token); `mode = "window"` re-runs it over the last `seq_len` tokens for every token, as the paper did.
//! Sampling runs on the CPU, so the same seed gives the same music on every machine. `metrics.json` holds the
//! piece's music metrics beside the training corpus's.

use std::collections::BTreeMap;

use anyhow::Context;
use candle_core::{Device, Tensor};
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::drop_drums::DRUM_CHANNEL;
use super::extract_instrument::notes_of;
use super::grammar::Grammar;
use super::kind::StageKind;
use super::real::Real;
use super::stage::{
    CheckContext, ExternalInputs, ParamProblem, Params, RunContext, Stage, StageOutput, params_of,
};
use super::tokenize::tokens_of;
use crate::artifact::ReportFile;
use crate::artifact::{Artifact, Music, Split, TokenScheme, WindowSet};
use crate::fingerprint::Hash;
use crate::music::gm::program_name;
use crate::music::ingest::read_song;
use crate::music::metrics;
use crate::music::midi;
use crate::music::plot::RollPart;
use crate::music::tokens::{TimeToken, time_token, within_beats};

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// Tokens to generate (the paper: 500).
    #[serde(default = "d::length")]
    #[schemars(range(min = *LENGTH.start(), max = *LENGTH.end()))]
    pub length: u32,
    /// 0 = always the most likely token (the paper); above 0, sample from softmax(logits / temperature).
    #[serde(default)]
    #[schemars(transform = TEMPERATURE.in_schema())]
    pub temperature: f64,
    /// The temperature the time tokens (shifts and durations) of the `timed` and `notes` schemes are drawn at among
    /// themselves (whether a time token comes at all stays at `temperature`); left out, `temperature`. Above
    /// `temperature`, pieces get more varied rhythms without their pitches wandering out of key as they do when
    /// everything is sampled hotter. Left out of the fingerprint when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = RHYTHM_TEMPERATURE.in_schema())]
    pub rhythm_temperature: Option<f64>,
    /// Sample only among the k most likely tokens; 0 = all.
    #[serde(default)]
    pub top_k: u32,
    /// Nucleus sampling: only among the most likely tokens whose probabilities add up to `top_p`; 1 = all. Left out
    /// of the fingerprint at 1, so samples from before it existed stay cached.
    #[serde(default = "d::top_p", skip_serializing_if = "d::is_one")]
    #[schemars(transform = TOP_P.in_schema())]
    #[schemars(extend("default" = 1.0))]
    pub top_p: f64,
    /// Pieces to generate, each from its own starting window: `generated.mid`, `generated-2.mid`, … (with their
    /// CSV, metrics and piano roll). Left out of the fingerprint at 1.
    #[serde(default = "d::count", skip_serializing_if = "d::is_single")]
    #[schemars(range(min = 1, max = MAX_PIECES))]
    #[schemars(extend("default" = 1))]
    pub count: u32,
    /// Beats between successive tokens (the paper: 0.5).
    #[serde(default = "d::step")]
    #[schemars(transform = STEP.in_schema())]
    pub step: f64,
    /// Picks the starting window and drives sampling.
    #[serde(default = "d::seed")]
    pub seed: u64,
    /// A MIDI file (relative to the experiment file) whose first `seq_len` tokens, made as the training tokens
    /// were, start every piece instead of a random training window. Hashed as an external input; left out of the
    /// fingerprint when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primer: Option<String>,
    /// "stateful": keep the LSTM state and feed one token at a time (O(1) per token); "window": re-run the model
    /// over the last `seq_len` tokens for every token, as the paper did.
    #[serde(default = "d::mode")]
    pub mode: SampleMode,
}

/// How `sample` feeds the model: `stateful` (one token at a time) or `window` (the last `seq_len` tokens, as the paper).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SampleMode {
    Stateful,
    Window,
}

mod d {
    pub fn length() -> u32 {
        500
    }
    pub fn step() -> f64 {
        0.5
    }
    pub fn top_p() -> f64 {
        1.0
    }
    pub fn is_one(x: &f64) -> bool {
        *x == 1.0
    }
    pub fn count() -> u32 {
        1
    }
    pub fn is_single(n: &u32) -> bool {
        *n == 1
    }
    pub fn seed() -> u64 {
        7
    }
    pub fn mode() -> super::SampleMode {
        super::SampleMode::Stateful
    }
}

/// `length`'s bounds, declared once for the schema and the check.
const LENGTH: std::ops::RangeInclusive<u32> = 1..=1_000_000;
const TEMPERATURE: Real = Real::at_least(0.0);
const RHYTHM_TEMPERATURE: Real = Real::above(0.0);
const TOP_P: Real = Real::above(0.0).at_most(1.0);
/// From one MIDI tick (of 480 a beat) to 16 bars of 4/4.
const STEP: Real = Real::at_least(1.0 / midi::TICKS_PER_BEAT as f64).at_most(64.0);

impl Params for Sample {
    fn check(&self, ctx: &CheckContext) -> Vec<ParamProblem> {
        let mut p = Vec::new();
        if let Some(primer) = &self.primer {
            let at = ctx.base_dir.join(primer);
            if !at.is_file() {
                p.push(
                    ParamProblem::new("primer", format!("no file at `{}`", at.display())).hint(
                        "`primer` is a MIDI file to start from, relative to the experiment file",
                    ),
                );
            }
        }
        if !LENGTH.contains(&self.length) {
            p.push(ParamProblem::new(
                "length",
                format!(
                    "must be between {} and {}, got {}",
                    LENGTH.start(),
                    LENGTH.end(),
                    self.length
                ),
            ));
        }
        p.extend(TEMPERATURE.check("temperature", self.temperature).map(|e| {
            e.hint("0 always picks the most likely token; 1 samples from the model's distribution")
        }));
        if let Some(rhythm) = self.rhythm_temperature {
            p.extend(
                RHYTHM_TEMPERATURE
                    .check("rhythm_temperature", rhythm)
                    .map(|e| e.hint("leave it out to sample time tokens at `temperature`")),
            );
        }
        p.extend(TOP_P.check("top_p", self.top_p).map(|e| {
            e.hint("`top_p` keeps the most likely tokens whose probabilities add up to it (0.9 is common); 1 keeps all")
        }));
        if !(1..=MAX_PIECES).contains(&self.count) {
            p.push(ParamProblem::new(
                "count",
                format!("must be between 1 and {MAX_PIECES}, got {}", self.count),
            ));
        }
        p.extend(STEP.check("step", self.step).map(|e| {
            e.hint("`step` is the time between successive tokens in beats (the paper: 0.5)")
        }));
        p
    }
}

/// The input's model, ready to generate, and the windows it learnt from.
struct Loaded<'a> {
    windows: &'a WindowSet,
    model: LoadedModel,
}

enum LoadedModel {
    Lstm(std::sync::Arc<crate::nn::model::Model>),
    Ngram(crate::nn::ngram::Model),
}

impl<'a> Loaded<'a> {
    fn of(input: &'a Artifact) -> anyhow::Result<Self> {
        match input {
            Artifact::Model(trained) => Ok(Loaded {
                windows: &trained.windows,
                model: LoadedModel::Lstm(
                    crate::nn::model::load(&trained.config, &trained.weights, &Device::Cpu)
                        .context("cannot load the trained weights")?,
                ),
            }),
            Artifact::Ngram(fitted) => Ok(Loaded {
                windows: &fitted.windows,
                model: LoadedModel::Ngram(crate::nn::ngram::Model::new(fitted.counts.clone())),
            }),
            other => anyhow::bail!(
                "expected a trained model or an n-gram model as input, got {} (the graph check should have \
                 caught this)",
                other.kind()
            ),
        }
    }

    fn generator(&self) -> Generator<'_> {
        match &self.model {
            LoadedModel::Lstm(lstm) => Generator::Lstm(lstm),
            LoadedModel::Ngram(ngram) => Generator::Ngram(ngram),
        }
    }
}

/// Where a piece starts: a window of a training file, or the primer.
#[derive(Clone)]
struct Start {
    /// The file, as the corpus or the experiment names it.
    path: String,
    /// The window's first token in that file.
    offset: usize,
    window: Vec<u32>,
    /// The file's ids, from its first (for the reference excerpt).
    file_ids: Vec<u32>,
    tempo: u32,
    primed: bool,
}

/// One generated piece: where it started, its tokens and seed window, its metrics and its report files.
struct Piece {
    start: Start,
    tokens: Vec<String>,
    seed: Vec<String>,
    report: metrics::MetricsReport,
    files: Vec<ReportFile>,
}

/// A start drawn from the training windows `starts`.
fn random_start(windows: &WindowSet, starts: &[usize], rng: &mut ChaCha8Rng) -> Start {
    let at = starts[rng.random_range(0..starts.len())];
    let file = windows
        .files
        .iter()
        .find(|f| (f.offset..f.offset + f.len).contains(&at))
        .expect("a window lies in a file");
    Start {
        path: file.path.clone(),
        offset: at - file.offset,
        window: windows.window(at).0.to_vec(),
        file_ids: windows.ids[file.offset..file.offset + file.len].to_vec(),
        tempo: file.tempo,
        primed: false,
    }
}

/// The first `windows.seq_len` ids of the primer file, tokenized as the training files were: its notes on the
/// model's instruments (all its notes off the drum channel when it has none there). Onsets with a token the
/// vocabulary lacks are skipped whole (a timed onset's shift, sound and duration together), and reported.
fn primer(ctx: &mut RunContext, windows: &WindowSet, rel: &str) -> anyhow::Result<Start> {
    let abs = ctx
        .external
        .locations
        .get(rel)
        .ok_or_else(|| anyhow::anyhow!("the primer `{rel}` was not hashed before the run"))?;
    let bytes = ctx.external.read(rel, abs)?;
    let ingest = read_song(rel, &bytes)
        .map_err(|e| anyhow::anyhow!("cannot read the primer `{rel}`: {e}; choose a MIDI file"))?;
    for repair in &ingest.repairs {
        ctx.warn(format!("primer `{rel}`: {repair}"));
    }
    let mut song = ingest.song;
    song.events.retain(|e| e.channel != DRUM_CHANNEL);
    let mut keep = [false; 128];
    for &p in &windows.programs {
        keep[usize::from(p & 127)] = true;
    }
    let mut notes = notes_of(&song, &keep);
    if notes.is_empty() {
        notes = notes_of(&song, &[true; 128]);
        if !notes.is_empty() {
            let names: Vec<&str> = windows.programs.iter().map(|&p| program_name(p)).collect();
            ctx.note(format!(
                "the primer `{rel}` plays none of the model's instruments ({}): all its {} notes off the drum \
                 channel start the pieces",
                names.join(", "),
                notes.len()
            ));
        }
    }
    anyhow::ensure!(
        !notes.is_empty(),
        "the primer `{rel}` has no notes off the drum channel; choose a file with a melody"
    );
    let tokens = tokens_of(&notes, song.ticks_per_beat, windows.scheme);
    let id = |t: &String| windows.tokens.binary_search(t).ok().map(|i| i as u32);
    // Onsets: a timed one is its shift (none for the first), sound and duration; a chord-scheme one is one token.
    let mut onsets: Vec<&[String]> = Vec::new();
    let mut from = 0;
    for i in 1..=tokens.len() {
        let boundary = i == tokens.len()
            || match windows.scheme {
                TokenScheme::Chord => true,
                TokenScheme::Timed { .. } | TokenScheme::Notes { .. } => {
                    matches!(time_token(&tokens[i]), Some(TimeToken::Shift(_)))
                }
            };
        if boundary {
            onsets.push(&tokens[from..i]);
            from = i;
        }
    }
    let mut ids = Vec::new();
    let mut unseen: std::collections::BTreeSet<&str> = Default::default();
    let mut skipped = 0;
    for onset in &onsets {
        match onset.iter().map(id).collect::<Option<Vec<u32>>>() {
            Some(known) => ids.extend(known),
            None => {
                skipped += 1;
                unseen.extend(onset.iter().filter(|t| id(t).is_none()).map(String::as_str));
            }
        }
    }
    if skipped > 0 {
        let shown: Vec<String> = unseen.iter().take(8).map(|t| format!("`{t}`")).collect();
        let more = if unseen.len() > 8 { ", …" } else { "" };
        ctx.warn(format!(
            "the primer `{rel}`: {skipped} of its {} onsets use {} token(s) the model never saw ({}{more}) and \
             were skipped",
            onsets.len(),
            unseen.len(),
            shown.join(", ")
        ));
    }
    anyhow::ensure!(
        !ids.is_empty(),
        "none of the primer `{rel}`'s tokens is in the model's vocabulary; choose a file in the corpus's style"
    );
    if ids.len() < windows.seq_len {
        ctx.note(format!(
            "the primer `{rel}` gives {} tokens, fewer than `seq_len = {}`: the pieces start from all of them",
            ids.len(),
            windows.seq_len
        ));
    }
    Ok(Start {
        path: rel.to_string(),
        offset: 0,
        window: ids[..ids.len().min(windows.seq_len)].to_vec(),
        file_ids: ids,
        tempo: song.tempo,
        primed: true,
    })
}

/// The most pieces one `sample` stage makes (their report files are listed in the stage table).
pub const MAX_PIECES: u32 = 8;

/// Picks the next token from logits: argmax at temperature 0, else a draw from the tempered softmax of the `top_k`
/// most likely tokens (all when 0), cut to the most likely ones whose probabilities reach `top_p` (all at 1).
pub fn choose(
    logits: &[f32],
    temperature: f64,
    top_k: usize,
    top_p: f64,
    rng: &mut impl Rng,
) -> usize {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            .map_or(0, |(i, _)| i)
    };
    if temperature == 0.0 {
        return argmax();
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if top_k > 0 {
        order.truncate(top_k);
    }
    let max = f64::from(logits[order[0]]);
    let mut weights: Vec<f64> = order
        .iter()
        .map(|&i| ((f64::from(logits[i]) - max) / temperature).exp())
        .collect();
    if top_p < 1.0 {
        // The nucleus: the shortest prefix (most likely first) whose share of the mass reaches top_p.
        let total: f64 = weights.iter().sum();
        let mut mass = 0.0;
        let keep = weights
            .iter()
            .position(|w| {
                mass += w / total;
                mass >= top_p
            })
            .map_or(weights.len(), |i| i + 1);
        weights.truncate(keep);
    }
    match WeightedIndex::new(&weights) {
        Ok(dist) => order[dist.sample(rng)],
        Err(_) => argmax(),
    }
}

/// What proposes the next token: a trained LSTM, or an n-gram model (the floor's pieces).
pub enum Generator<'a> {
    Lstm(&'a crate::nn::model::Model),
    Ngram(&'a crate::nn::ngram::Model),
}

/// Draws each next token of a piece: masked to what the grammar allows next, the time tokens tempered apart.
struct Picker<'a> {
    params: &'a Sample,
    grammar: Option<&'a Grammar>,
    state: super::grammar::State,
    /// The temperature the time tokens are drawn at among themselves ([`Grammar::temper_time`]).
    rhythm: Option<f64>,
}

impl<'a> Picker<'a> {
    /// A picker for a piece that goes on from `window`.
    fn new(
        params: &'a Sample,
        grammar: Option<&'a Grammar>,
        window: &[u32],
    ) -> anyhow::Result<Self> {
        // At temperature 0 every token is the most likely one: there is nothing to temper (`run` warns).
        let rhythm = params
            .rhythm_temperature
            .filter(|_| params.temperature > 0.0);
        if rhythm.is_some() && grammar.is_none() {
            anyhow::bail!(
                "`rhythm_temperature` is set, but these tokens have no time tokens to apply it to (the `chord` \
                 scheme); use `scheme = \"timed\"` or `\"notes\"` in the tokenize stage, or leave \
                 `rhythm_temperature` out"
            );
        }
        Ok(Self {
            params,
            grammar,
            state: grammar.map(|g| g.state_after(window)).unwrap_or_default(),
            rhythm,
        })
    }

    /// The next token, given the model's logits for it.
    fn pick<R: Rng>(&mut self, mut logits: Vec<f32>, rng: &mut R) -> u32 {
        if let Some(g) = self.grammar {
            g.mask(self.state, &mut logits);
            if let Some(rhythm) = self.rhythm {
                g.temper_time(&mut logits, self.params.temperature, rhythm);
            }
        }
        let p = self.params;
        let next = choose(&logits, p.temperature, p.top_k as usize, p.top_p, rng) as u32;
        if let Some(g) = self.grammar {
            self.state = g.update(self.state, next);
        }
        next
    }
}

/// Generates `params.length` token ids after `window`. With a `grammar` (tokens with time), each token is drawn only
/// among those the scheme's order allows next, so the piece reads as onsets and round-trips through MIDI. An
/// n-gram model's log-probabilities stand for logits (so `temperature`, `top_k` and `top_p` mean the same); it reads
/// only its last `order − 1` tokens, so `mode` makes no difference to it.
pub fn generate<R: Rng>(
    generator: &Generator,
    window: &[u32],
    params: &Sample,
    grammar: Option<&Grammar>,
    rng: &mut R,
    mut tick: impl FnMut(),
) -> anyhow::Result<Vec<u32>> {
    let device = Device::Cpu;
    let mut generated = Vec::with_capacity(params.length as usize);
    let mut picker = Picker::new(params, grammar, window)?;
    let mut pick = |logits: Vec<f32>, rng: &mut R| picker.pick(logits, rng);
    let floats = |t: Tensor| -> candle_core::Result<Vec<f32>> {
        t.to_dtype(candle_core::DType::F32)?.to_vec1()
    };
    let model = match generator {
        Generator::Lstm(model) => model,
        Generator::Ngram(ngram) => {
            let mut history = window.to_vec();
            let context = ngram.order() - 1;
            for _ in 0..params.length {
                let recent = &history[history.len().saturating_sub(context)..];
                let logits = ngram
                    .distribution(recent)
                    .iter()
                    .map(|p| p.ln() as f32)
                    .collect();
                let next = pick(logits, rng);
                generated.push(next);
                history.push(next);
                tick();
            }
            return Ok(generated);
        }
    };
    match params.mode {
        SampleMode::Stateful => {
            let mut states = model.zero_states(&device)?;
            let mut logits = None;
            for &id in window {
                logits = Some(model.step(id, &mut states)?);
            }
            for _ in 0..params.length {
                let next = pick(floats(logits.take().expect("a non-empty window"))?, rng);
                generated.push(next);
                logits = Some(model.step(next, &mut states)?);
                tick();
            }
        }
        SampleMode::Window => {
            let mut window = window.to_vec();
            for _ in 0..params.length {
                let x = Tensor::from_slice(&window, (1, window.len()), &device)?;
                let next = pick(floats(model.forward(&x, None)?.squeeze(0)?)?, rng);
                generated.push(next);
                window.remove(0);
                window.push(next);
                tick();
            }
        }
    }
    Ok(generated)
}

/// The token files of one split, each on its own.
fn files_of(windows: &WindowSet, split: Split) -> Vec<Vec<String>> {
    windows
        .files
        .iter()
        .filter(|f| f.split == split)
        .map(|f| {
            windows.ids[f.offset..f.offset + f.len]
                .iter()
                .map(|&id| windows.tokens[id as usize].clone())
                .collect()
        })
        .collect()
}

impl Sample {
    /// Piece `n`'s report files: `generated.mid`, `.csv`, `.svg` and `metrics.json` for piece 1, `generated-n.…` and
    /// `metrics-n.json` after it.
    fn piece_files(&self, n: u32, piece: &Piece, program: u8) -> anyhow::Result<Vec<ReportFile>> {
        let Piece {
            start,
            tokens,
            seed,
            report,
            ..
        } = piece;
        let mut csv = String::from("index,token\n");
        for (i, t) in tokens.iter().enumerate() {
            csv.push_str(&format!("{i},{t}\n"));
        }
        let title = match n {
            1 => "generated".to_string(),
            n => format!("piece {n}"),
        };
        let name = |stem, ext| crate::artifact::piece_file(stem, n as usize, ext);
        let (after, seed_label) = if start.primed {
            ("the start of", "primer")
        } else {
            ("a training excerpt from", "seed window (training data)")
        };
        let roll = crate::music::plot::piano_roll(
            &format!("{title}, after {after} {}", start.path),
            &[
                RollPart {
                    tokens: seed,
                    label: seed_label.into(),
                },
                RollPart {
                    tokens,
                    label: "generated".into(),
                },
            ],
            self.step,
            start.tempo,
        )?;
        Ok(vec![
            ReportFile {
                name: name("generated", "mid"),
                bytes: midi::write_tokens(tokens, program, self.step, start.tempo)?,
            },
            ReportFile {
                name: name("generated", "csv"),
                bytes: csv.into_bytes(),
            },
            ReportFile {
                name: name("metrics", "json"),
                bytes: serde_json::to_vec_pretty(report)?,
            },
            ReportFile {
                name: name("generated", "svg"),
                bytes: roll.into_bytes(),
            },
        ])
    }

    /// The first minute of the file the first piece started from, at its tempo, and its piano roll.
    fn reference(
        &self,
        start: &Start,
        windows: &WindowSet,
    ) -> anyhow::Result<(Vec<String>, String)> {
        let whole: Vec<String> = start
            .file_ids
            .iter()
            .map(|&id| windows.tokens[id as usize].clone())
            .collect();
        let minute = within_beats(&whole, self.step, crate::artifact::bpm(start.tempo));
        let reference = whole[..minute].to_vec();
        let what = if start.primed {
            "the primer"
        } else {
            "training data"
        };
        let roll = crate::music::plot::piano_roll(
            &format!("{what}: the first minute of {}", start.path),
            &[RollPart {
                tokens: &reference,
                label: start.path.clone(),
            }],
            self.step,
            start.tempo,
        )?;
        Ok((reference, roll))
    }

    /// For each piece, as many tokens of a held-out file as the piece has, from a seeded onset (`held-out.mid`,
    /// `held-out-2.mid`, …): music the model never saw, to listen to beside its pieces (`pipeline listen`). None
    /// without validation files.
    fn held_out_excerpts(
        &self,
        windows: &WindowSet,
        program: u8,
    ) -> anyhow::Result<Vec<ReportFile>> {
        let files: Vec<_> = windows
            .files
            .iter()
            .filter(|f| f.split == Split::Validation && f.len > 0)
            .collect();
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let mut key = b"held-out excerpts".to_vec();
        key.extend_from_slice(&self.seed.to_le_bytes());
        let mut rng = ChaCha8Rng::from_seed(*blake3::hash(&key).as_bytes());
        let length = self.length as usize;
        let timed = windows.scheme.timed();
        (1..=self.count)
            .map(|n| {
                let file = files[rng.random_range(0..files.len())];
                let tokens: Vec<String> = windows.ids[file.offset..file.offset + file.len]
                    .iter()
                    .map(|&id| windows.tokens[id as usize].clone())
                    .collect();
                // An excerpt starts on an onset: a note or chord, right after its shift when tokens carry time.
                let onset = |i: usize| {
                    time_token(&tokens[i]).is_none()
                        && (!timed
                            || i == 0
                            || matches!(time_token(&tokens[i - 1]), Some(TimeToken::Shift(_))))
                };
                let starts: Vec<usize> = (0..tokens.len().saturating_sub(length).max(1))
                    .filter(|&i| onset(i))
                    .collect();
                let from = match starts.len() {
                    0 => 0,
                    k => starts[rng.random_range(0..k)],
                };
                let excerpt = &tokens[from..(from + length).min(tokens.len())];
                Ok(ReportFile {
                    name: crate::artifact::piece_file("held-out", n as usize, "mid"),
                    bytes: midi::write_tokens(excerpt, program, self.step, file.tempo)?,
                })
            })
            .collect()
    }
}

impl Sample {
    /// Warns about settings that are valid but change nothing (the schema cannot say so).
    fn warn_ineffective(&self, ctx: &mut RunContext) {
        if self.rhythm_temperature.is_some() && self.temperature == 0.0 {
            ctx.warn(
                "`rhythm_temperature` has no effect at `temperature = 0`, where every token is the most likely one; \
                 set `temperature` above 0 (0.75 is a start)"
                    .to_string(),
            );
        }
    }
}

impl Stage for Sample {
    fn kind(&self) -> StageKind {
        StageKind::Sample
    }

    fn params(&self) -> BTreeMap<String, serde_json::Value> {
        params_of(self)
    }

    fn external_inputs(&self, base_dir: &std::path::Path) -> anyhow::Result<ExternalInputs> {
        let Some(primer) = &self.primer else {
            return Ok(ExternalInputs::default());
        };
        let at = base_dir.join(primer);
        let bytes = std::fs::read(&at)
            .with_context(|| format!("cannot read the primer `{}`", at.display()))?;
        Ok(ExternalInputs {
            display_root: String::new(),
            files: [(primer.clone(), Hash::of(&bytes))].into(),
            locations: [(primer.clone(), at)].into(),
            unreadable: BTreeMap::new(),
        })
    }

    fn run(&self, ctx: &mut RunContext, inputs: &[&Artifact]) -> anyhow::Result<StageOutput> {
        let loaded = Loaded::of(inputs[0])?;
        let windows = loaded.windows;
        let generator = loaded.generator();
        let grammar = super::grammar::Grammar::of(&windows.tokens, windows.scheme);
        self.warn_ineffective(ctx);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let starts: Vec<usize> = windows.starts(Split::Train).collect();
        let program = windows.programs.first().copied().unwrap_or(0);
        let name = |id: &u32| windows.tokens[*id as usize].clone();
        // Copies are judged against what the model trained on (the training files, each on its own); structure
        // against the files it never saw.
        let (training, held_out) = (
            files_of(windows, Split::Train),
            files_of(windows, Split::Validation),
        );
        // Every piece is measured against the same references: made once.
        let references =
            metrics::References::new(self.step, &training, &held_out, &windows.tokens, self.seed);
        let primed = match &self.primer {
            Some(rel) => Some(primer(ctx, windows, rel)?),
            None => None,
        };
        // Piece `n`: a start drawn from the one generator, in order, so piece 1 is what `count = 1` makes (with a
        // primer, every piece starts from it); its files are `generated.mid` … for piece 1 and `generated-n.mid` …
        // after it.
        let mut compose = |n: u32| -> anyhow::Result<Piece> {
            let start = match &primed {
                Some(p) => p.clone(),
                None => random_start(windows, &starts, &mut rng),
            };
            let window = &start.window;
            let bar = ctx.bar(u64::from(self.length), "tokens");
            let ids = generate(&generator, window, self, grammar.as_ref(), &mut rng, || {
                bar.inc(1)
            })?;
            bar.finish_and_clear();
            let tokens: Vec<String> = ids.iter().map(name).collect();
            let seed: Vec<String> = window.iter().map(name).collect();
            let report = references.report(&tokens);
            let mut piece = Piece {
                start,
                tokens,
                seed,
                report,
                files: Vec::new(),
            };
            piece.files = self.piece_files(n, &piece, program)?;
            Ok(piece)
        };
        let first = compose(1)?;
        let more = (2..=self.count)
            .map(&mut compose)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let Piece {
            start,
            tokens,
            seed,
            report,
            files,
        } = first;
        let more_tokens: Vec<Vec<String>> = more.iter().map(|p| p.tokens.clone()).collect();
        let (reference, reference_roll) = self.reference(&start, windows)?;
        Ok(StageOutput {
            summary: serde_json::json!({
                "tokens": tokens.len(),
                "metrics": report.generated,
                "start_file": start.path,
                "start_offset": start.offset,
                "primer": start.primed,
                "seed": seed.join(" "),
                "tempo_bpm": crate::artifact::bpm(start.tempo),
                "program": program,
            }),
            files: files
                .into_iter()
                .chain([ReportFile {
                    name: "reference.svg".into(),
                    bytes: reference_roll.into_bytes(),
                }])
                .chain(more.into_iter().flat_map(|p| p.files))
                .chain(self.held_out_excerpts(windows, program)?)
                .collect(),
            artifact: Artifact::Music(Music {
                tokens,
                start_file: start.path.clone(),
                start_offset: start.offset,
                seed,
                reference,
                program,
                step: self.step,
                tempo: start.tempo,
                more: more_tokens,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How often each token is drawn from `logits` in 4,000 draws.
    fn draws(logits: &[f32], top_k: usize, top_p: f64) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = vec![0; logits.len()];
        for _ in 0..4000 {
            counts[choose(logits, 1.0, top_k, top_p, &mut rng)] += 1;
        }
        counts
    }

    /// Where a sound and time tokens may both come next, `rhythm_temperature` tempers the time tokens among
    /// themselves: the sounds keep their probabilities, and so the time tokens their share.
    #[test]
    fn rhythm_temperature_tempers_only_the_time_tokens() {
        let mut vocabulary: Vec<String> = ["+1", "~1", "~2", "C3", "E4"].map(String::from).to_vec();
        vocabulary.sort();
        let id = |t: &str| vocabulary.iter().position(|x| x == t).unwrap();
        let scheme = TokenScheme::Notes {
            grid: 12,
            max_beats: 4,
        };
        let grammar = Grammar::of(&vocabulary, scheme).unwrap();
        // After `C3` the next is a higher pitch (E4) or the onset's duration (~1, ~2).
        let mut logits = vec![0f32; vocabulary.len()];
        logits[id("~1")] = 4f32.ln();
        let share = |rhythm: Option<f64>| {
            let params = Sample {
                temperature: 1.0,
                rhythm_temperature: rhythm,
                ..crate::stages::detached::sample_params(10, SampleMode::Stateful)
            };
            let mut rng = ChaCha8Rng::seed_from_u64(3);
            let mut counts = vec![0usize; vocabulary.len()];
            for _ in 0..8000 {
                let mut picker = Picker::new(&params, Some(&grammar), &[id("C3") as u32]).unwrap();
                counts[picker.pick(logits.clone(), &mut rng) as usize] += 1;
            }
            counts
                .iter()
                .map(|&n| n as f64 / 8000.0)
                .collect::<Vec<_>>()
        };
        // At one temperature: E4, ~1, ~2 as 1 : 4 : 1. With the time tokens at 2 among themselves, the durations
        // keep their 5/6 together (the onset closes as often), split 4^(1/2) : 1 = 2 : 1.
        for (rhythm, expected) in [
            (None, [1.0 / 6.0, 4.0 / 6.0]),
            (Some(2.0), [1.0 / 6.0, 5.0 / 9.0]),
        ] {
            let p = share(rhythm);
            assert!(
                (p[id("E4")] - expected[0]).abs() < 0.02,
                "{rhythm:?}: {p:?}"
            );
            assert!(
                (p[id("~1")] - expected[1]).abs() < 0.02,
                "{rhythm:?}: {p:?}"
            );
            assert_eq!(
                p[id("+1")] + p[id("C3")],
                0.0,
                "the grammar still applies: {p:?}"
            );
        }
        // Without time tokens (the chord scheme) it is refused, naming the parameter.
        let params = Sample {
            temperature: 1.0,
            rhythm_temperature: Some(2.0),
            ..crate::stages::detached::sample_params(10, SampleMode::Stateful)
        };
        let err = Picker::new(&params, None, &[]).err().unwrap().to_string();
        assert!(
            err.contains("`rhythm_temperature`") && err.contains("scheme"),
            "{err}"
        );
    }

    #[test]
    fn top_p_keeps_the_smallest_set_of_likely_tokens_that_reaches_it() {
        // Probabilities 0.5, 0.3, 0.2 at temperature 1.
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let all = draws(&logits, 0, 1.0);
        assert!(all.iter().all(|&n| n > 500), "{all:?}");
        // 0.5 < 0.75 ≤ 0.5 + 0.3: the nucleus is the first two.
        let nucleus = draws(&logits, 0, 0.75);
        assert_eq!(nucleus[2], 0, "{nucleus:?}");
        assert!(nucleus[0] > nucleus[1] && nucleus[1] > 1000, "{nucleus:?}");
        // A nucleus below the top token's share is the top token alone.
        assert_eq!(draws(&logits, 0, 0.1), [4000, 0, 0]);
        // With top_k as well, both cuts apply.
        assert_eq!(draws(&logits, 1, 0.9), [4000, 0, 0]);
    }
}
