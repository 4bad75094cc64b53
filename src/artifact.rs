//! The data that flows between stages, and its kinds.
//!
//! Every stage output is an [`Artifact`]; the cache stores it as postcard bytes, and the blake3 of those bytes is the
//! content hash that downstream fingerprints are built from. Everything here is plain data with a deterministic
//! encoding (vectors, never hash maps), so equal results are byte-identical and early cut-off works.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a stage produces; used to check the wiring of the graph before anything runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// Parsed MIDI files ([`MidiCorpus`]).
    Midi,
    /// The notes of the selected instruments ([`NoteSet`]).
    Notes,
    /// Note and chord tokens per file ([`TokenSet`]).
    Tokens,
    /// Token ids per file and the id ↔ token mapping ([`Vocabulary`]).
    Vocab,
    /// Training and validation windows over the id sequences ([`WindowSet`]).
    Windows,
    /// A trained network with its vocabulary and windows ([`TrainedModel`]).
    Model,
    /// Generated tokens ([`Music`]).
    Music,
    /// Rendered audio ([`Audio`]).
    Audio,
    /// A fitted n-gram model with its windows ([`NgramModel`]).
    Ngram,
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArtifactKind::Midi => "MIDI files",
            ArtifactKind::Notes => "instrument notes",
            ArtifactKind::Tokens => "tokens",
            ArtifactKind::Vocab => "a vocabulary",
            ArtifactKind::Windows => "training windows",
            ArtifactKind::Model => "a trained model",
            ArtifactKind::Music => "generated music",
            ArtifactKind::Audio => "audio",
            ArtifactKind::Ngram => "an n-gram model",
        })
    }
}

/// A stage output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Artifact {
    Midi(MidiCorpus),
    Notes(NoteSet),
    Tokens(TokenSet),
    Vocab(Vocabulary),
    Windows(WindowSet),
    Model(Box<TrainedModel>),
    Music(Music),
    Audio(Audio),
    Ngram(Box<NgramModel>),
}

impl Artifact {
    pub fn kind(&self) -> ArtifactKind {
        match self {
            Artifact::Midi(_) => ArtifactKind::Midi,
            Artifact::Notes(_) => ArtifactKind::Notes,
            Artifact::Tokens(_) => ArtifactKind::Tokens,
            Artifact::Vocab(_) => ArtifactKind::Vocab,
            Artifact::Windows(_) => ArtifactKind::Windows,
            Artifact::Model(_) => ArtifactKind::Model,
            Artifact::Music(_) => ArtifactKind::Music,
            Artifact::Audio(_) => ArtifactKind::Audio,
            Artifact::Ngram(_) => ArtifactKind::Ngram,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("artifacts are plain data and always serialize")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }

    /// Checks what the stages index by without checking: every id within its vocabulary, every window inside its
    /// sequence, MIDI numbers in range, a model shape that can be built. An artifact read back from a cache (which
    /// may come from anyone) is only used once this passes, so a crafted one is an error here, not a panic later.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Artifact::Midi(c) => c.files.iter().try_for_each(|f| {
                tempo_in_range(f.tempo, &f.path)?;
                f.events.iter().try_for_each(|e| {
                    let (a, b) = match e.message {
                        Message::NoteOn { key, velocity } => (key, velocity),
                        Message::NoteOff { key } => (key, 0),
                        Message::ProgramChange { program } => (program, 0),
                    };
                    if e.channel > 15 || a > 127 || b > 127 {
                        return Err(format!("`{}` holds an event out of MIDI's range", f.path));
                    }
                    Ok(())
                })
            }),
            Artifact::Notes(n) => {
                programs_in_range(&n.programs)?;
                n.files.iter().try_for_each(|f| {
                    tempo_in_range(f.tempo, &f.path)?;
                    if f.notes
                        .iter()
                        .any(|n| n.key > 127 || n.velocity > 127 || n.program > 127)
                    {
                        return Err(format!("`{}` holds a note out of MIDI's range", f.path));
                    }
                    Ok(())
                })
            }
            Artifact::Tokens(t) => {
                programs_in_range(&t.programs)?;
                t.files
                    .iter()
                    .try_for_each(|f| tempo_in_range(f.tempo, &f.path))
            }
            Artifact::Vocab(v) => {
                programs_in_range(&v.programs)?;
                if v.counts.len() != v.tokens.len() {
                    return Err(format!(
                        "{} token counts for {} tokens",
                        v.counts.len(),
                        v.tokens.len()
                    ));
                }
                v.files.iter().try_for_each(|f| {
                    tempo_in_range(f.tempo, &f.path)?;
                    ids_in_range(&f.ids, v.tokens.len(), &f.path)
                })
            }
            Artifact::Windows(w) => w.validate(),
            Artifact::Model(m) => {
                m.windows.validate()?;
                m.config.validate()?;
                if m.config.vocab != m.windows.tokens.len() {
                    return Err(format!(
                        "the model predicts {} tokens but its vocabulary has {}",
                        m.config.vocab,
                        m.windows.tokens.len()
                    ));
                }
                Ok(())
            }
            Artifact::Music(m) => {
                if m.program > 127 {
                    return Err(format!("program {} is out of MIDI's range", m.program));
                }
                if !(m.step.is_finite() && m.step > 0.0) {
                    return Err(format!("a step of {} beats", m.step));
                }
                tempo_in_range(m.tempo, "the generated music")
            }
            Artifact::Audio(a) => {
                if !(a.generated_seconds.is_finite() && a.seed_seconds.is_finite()) {
                    return Err("audio of a non-finite length".into());
                }
                Ok(())
            }
            Artifact::Ngram(m) => {
                m.windows.validate()?;
                m.counts.validate()?;
                if m.counts.vocab != m.windows.tokens.len() {
                    return Err(format!(
                        "the n-gram model predicts {} tokens but its vocabulary has {}",
                        m.counts.vocab,
                        m.windows.tokens.len()
                    ));
                }
                Ok(())
            }
        }
    }
}

fn programs_in_range(programs: &[u8]) -> Result<(), String> {
    match programs.iter().find(|&&p| p > 127) {
        Some(p) => Err(format!("program {p} is out of MIDI's range")),
        None => Ok(()),
    }
}

fn ids_in_range(ids: &[u32], vocab: usize, what: &str) -> Result<(), String> {
    match ids.iter().find(|&&id| id as usize >= vocab) {
        Some(id) => Err(format!(
            "`{what}` holds token id {id}, past the vocabulary's {vocab} tokens"
        )),
        None => Ok(()),
    }
}

macro_rules! accessor {
    ($fn:ident, $variant:ident, $ty:ty) => {
        /// The payload, when the graph check guaranteed this kind.
        pub fn $fn(&self) -> anyhow::Result<&$ty> {
            match self {
                Artifact::$variant(x) => Ok(x),
                other => anyhow::bail!(
                    "expected {} as input, got {} (the graph check should have caught this)",
                    ArtifactKind::$variant,
                    other.kind()
                ),
            }
        }
    };
}

impl Artifact {
    accessor!(midi, Midi, MidiCorpus);
    accessor!(notes, Notes, NoteSet);
    accessor!(tokens, Tokens, TokenSet);
    accessor!(vocab, Vocab, Vocabulary);
    accessor!(windows, Windows, WindowSet);
    accessor!(model, Model, Box<TrainedModel>);
    accessor!(music, Music, Music);
    accessor!(ngram, Ngram, Box<NgramModel>);
}

/// MIDI files reduced to what the pipeline reads: notes and program changes on absolute ticks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MidiCorpus {
    pub files: Vec<Song>,
}

/// One MIDI file: every track merged into one time-ordered event list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Song {
    /// Path relative to the source directory, `/`-separated.
    pub path: String,
    /// Ticks per quarter note (metrical timing), or `None` for SMPTE timecode files.
    pub ticks_per_beat: Option<u16>,
    /// The file's first tempo, in microseconds per quarter note ([`DEFAULT_TEMPO`] when it sets none).
    pub tempo: u32,
    pub events: Vec<Event>,
}

/// MIDI's tempo when a file sets none: 500 000 µs per quarter note, 120 bpm.
pub const DEFAULT_TEMPO: u32 = 500_000;

/// The largest tempo a MIDI file can hold (a 24-bit field).
pub const MAX_TEMPO: u32 = 0xff_ffff;

/// The name of piece `n`'s (from 1) file: `stem.ext` for the first, `stem-n.ext` after it (`generated.mid`,
/// `generated-2.mid`, …), as the sample and render stages write them and the index and `listen` find them.
pub fn piece_file(stem: &str, n: usize, ext: &str) -> String {
    match n {
        1 => format!("{stem}.{ext}"),
        n => format!("{stem}-{n}.{ext}"),
    }
}

/// Beats per minute of a tempo in microseconds per quarter note.
pub fn bpm(tempo: u32) -> f64 {
    60_000_000.0 / f64::from(tempo.max(1))
}

fn tempo_in_range(tempo: u32, what: &str) -> Result<(), String> {
    if (1..=MAX_TEMPO).contains(&tempo) {
        Ok(())
    } else {
        Err(format!(
            "`{what}` has a tempo of {tempo} µs per beat, outside MIDI's 1–{MAX_TEMPO}"
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Absolute time in ticks from the start of the file.
    pub tick: u64,
    /// MIDI channel index 0–15 (channel 10 is index 9).
    pub channel: u8,
    pub message: Message,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A note-on with velocity > 0.
    NoteOn {
        key: u8,
        velocity: u8,
    },
    /// A note-off, or a note-on with velocity 0.
    NoteOff {
        key: u8,
    },
    ProgramChange {
        program: u8,
    },
}

/// The notes of the most frequent instruments, one list per file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteSet {
    /// The GM programs kept, best-ranked first.
    pub programs: Vec<u8>,
    pub files: Vec<NoteFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteFile {
    pub path: String,
    pub ticks_per_beat: Option<u16>,
    /// As [`Song::tempo`].
    pub tempo: u32,
    /// In time order (ties keep file order).
    pub notes: Vec<Note>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub tick: u64,
    /// How long it sounds, in ticks: to its note-off, to the next note-on of the same key and channel, or to the
    /// file's last event when it is never ended.
    pub ticks: u64,
    pub key: u8,
    pub velocity: u8,
    pub program: u8,
}

/// Note and chord tokens, one sequence per file that has notes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenSet {
    pub programs: Vec<u8>,
    /// How the tokens were made, so a primer file can be tokenized the same way.
    pub scheme: TokenScheme,
    pub files: Vec<TokenFile>,
}

/// How notes became tokens (the `tokenize` stage's settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenScheme {
    /// One note or chord token per onset, no time (the paper's).
    Chord,
    /// Shift, note or chord, duration per onset, on `grid` steps per beat, capped at `max_beats`.
    Timed { grid: u32, max_beats: u32 },
    /// Shift, then every note's pitch with its octave (lowest first) and durations, on the same grid and cap.
    Notes { grid: u32, max_beats: u32 },
}

impl TokenScheme {
    /// Whether the tokens carry time (shifts and durations).
    pub fn timed(self) -> bool {
        !matches!(self, Self::Chord)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenFile {
    pub path: String,
    /// As [`Song::tempo`].
    pub tempo: u32,
    pub tokens: Vec<String>,
    /// For a transposed copy (`augment`): the file it was made from and by how much; `None` for a file as read.
    pub origin: Option<Origin>,
}

/// Where a transposed copy came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The original file's path.
    pub source: String,
    /// Semitones, never 0.
    pub shift: i8,
}

/// The id ↔ token mapping and every file's tokens as ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vocabulary {
    pub programs: Vec<u8>,
    pub scheme: TokenScheme,
    /// `tokens[id]` is the token with that id; sorted.
    pub tokens: Vec<String>,
    /// `counts[id]`: occurrences in the corpus.
    pub counts: Vec<u64>,
    pub files: Vec<IdFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdFile {
    pub path: String,
    /// As [`Song::tempo`].
    pub tempo: u32,
    pub ids: Vec<u32>,
    /// As [`TokenFile::origin`].
    pub origin: Option<Origin>,
}

impl IdFile {
    /// The file this one is, or is a copy of: what the validation split is decided by.
    pub fn source(&self) -> &str {
        self.origin.as_ref().map_or(&self.path, |o| &o.source)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Validation,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Validation => "validation",
        })
    }
}

/// Windows of `seq_len` ids and the id that follows, stored as the id sequences plus file offsets: a window is
/// identified by its start offset, so memory stays O(tokens), never O(tokens × seq_len).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSet {
    pub seq_len: usize,
    pub programs: Vec<u8>,
    pub scheme: TokenScheme,
    /// The vocabulary, `tokens[id]`.
    pub tokens: Vec<String>,
    /// Every file's ids, concatenated in file order.
    pub ids: Vec<u32>,
    pub files: Vec<WindowFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowFile {
    pub path: String,
    /// As [`Song::tempo`].
    pub tempo: u32,
    /// Where the file's ids start in [`WindowSet::ids`].
    pub offset: usize,
    pub len: usize,
    pub split: Split,
}

impl WindowFile {
    /// Windows in this file: one per id that has `seq_len` ids before it inside the same file.
    pub fn window_count(&self, seq_len: usize) -> usize {
        self.len.saturating_sub(seq_len)
    }
}

impl WindowSet {
    /// Every file inside [`Self::ids`], every id inside the vocabulary, a window length of at least one.
    pub fn validate(&self) -> Result<(), String> {
        if self.seq_len == 0 {
            return Err("windows of length 0".into());
        }
        programs_in_range(&self.programs)?;
        for f in &self.files {
            tempo_in_range(f.tempo, &f.path)?;
            match f.offset.checked_add(f.len) {
                Some(end) if end <= self.ids.len() => {}
                _ => {
                    return Err(format!(
                        "`{}` spans ids {}..+{}, past the end of the {} ids",
                        f.path,
                        f.offset,
                        f.len,
                        self.ids.len()
                    ));
                }
            }
        }
        ids_in_range(&self.ids, self.tokens.len(), "the windows")
    }

    /// Start offsets (into [`Self::ids`]) of every window of one split, in file order.
    pub fn starts(&self, split: Split) -> impl Iterator<Item = usize> + '_ {
        self.files
            .iter()
            .filter(move |f| f.split == split)
            .flat_map(|f| f.offset..f.offset + f.window_count(self.seq_len))
    }

    pub fn count(&self, split: Split) -> usize {
        self.files
            .iter()
            .filter(|f| f.split == split)
            .map(|f| f.window_count(self.seq_len))
            .sum()
    }

    /// The input ids and the target id of the window starting at `start`.
    pub fn window(&self, start: usize) -> (&[u32], u32) {
        (
            &self.ids[start..start + self.seq_len],
            self.ids[start + self.seq_len],
        )
    }
}

/// A report file a stage contributes (`instruments.csv`); cached with its output.
#[derive(Debug, Clone)]
pub struct ReportFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// One epoch of training, as written to `loss.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
}

/// The format of `loss.csv`, one row per [`EpochStats`]: written by the train stage as it goes, read back by reports
/// and `compare`. `best` is 1 on the epoch with the lowest validation loss (marked once training is done; empty
/// while it runs and without validation); the last two columns are the validation loss in units that compare across
/// token schemes ([`LossUnits`]; empty where they do not apply). Its header:
pub const LOSS_HEADER: &str =
    "epoch,train_loss,val_loss,val_accuracy,seconds,best,val_bits_per_onset,val_bits_per_quarter\n";

impl EpochStats {
    /// This epoch as a `loss.csv` row (empty validation columns without a validation split); `best` marks it.
    pub fn loss_row(&self, best: Option<bool>, units: &LossUnits) -> String {
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
        let best = match best {
            Some(true) => "1",
            Some(false) => "0",
            None => "",
        };
        let loss = self.val_loss;
        format!(
            "{},{:.6},{},{},{:.6},{best},{},{}\n",
            self.epoch,
            self.train_loss,
            opt(loss),
            opt(self.val_accuracy),
            self.seconds,
            opt(loss.and_then(|l| units.bits_per_onset(l))),
            opt(loss.and_then(|l| units.bits_per_quarter(l))),
        )
    }
}

/// What turns a held-out loss in nats per token into units that compare across token schemes: the scored tokens
/// per onset (note or chord), and per quarter note of the music they cover (timed schemes only: chord tokens carry
/// no time). Made from the validation windows ([`crate::stages`]' `LossUnits::of`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LossUnits {
    /// Scored tokens per scored onset; `None` when no scored token is a note or chord.
    pub tokens_per_onset: Option<f64>,
    /// Scored tokens per quarter note they advance; `None` for tokens without time.
    pub tokens_per_quarter: Option<f64>,
}

impl LossUnits {
    pub fn nats_per_onset(&self, nats_per_token: f64) -> Option<f64> {
        self.tokens_per_onset.map(|r| nats_per_token * r)
    }

    pub fn bits_per_onset(&self, nats_per_token: f64) -> Option<f64> {
        self.nats_per_onset(nats_per_token)
            .map(|n| n / std::f64::consts::LN_2)
    }

    pub fn bits_per_quarter(&self, nats_per_token: f64) -> Option<f64> {
        self.tokens_per_quarter
            .map(|r| nats_per_token * r / std::f64::consts::LN_2)
    }
}

/// The epoch (numbered from 1) with the lowest validation loss, the first of equals; `None` without validation.
pub fn best_epoch(history: &[EpochStats]) -> Option<usize> {
    history
        .iter()
        .filter_map(|h| h.val_loss.map(|v| (h.epoch, v)))
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
        .map(|(epoch, _)| epoch)
}

/// Reads a `loss.csv`.
pub fn read_losses(path: &std::path::Path) -> anyhow::Result<Vec<EpochStats>> {
    use anyhow::Context;
    // Through `read_regular`: a FIFO left in a report folder must not hang a reader.
    let bytes = crate::paths::read_regular(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    reader
        .deserialize()
        .collect::<Result<Vec<EpochStats>, _>>()
        .with_context(|| format!("`{}` is not a loss table", path.display()))
}

/// A trained network: its configuration, weights and optimizer state (safetensors), its history, and the windows
/// and vocabulary it was trained on (sampling starts from one of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainedModel {
    pub config: crate::nn::model::ModelConfig,
    pub weights: Vec<u8>,
    pub optimizer: Vec<u8>,
    pub history: Vec<EpochStats>,
    /// Not the device it trained on: which GPU a lease picked must not change the artifact's hash (the stage's
    /// summary, in the record and the manifest, says where it ran).
    pub windows: WindowSet,
}

impl TrainedModel {
    pub fn epochs(&self) -> usize {
        self.history.len()
    }
}

/// Generated tokens and where generation started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Music {
    pub tokens: Vec<String>,
    /// The training window generation started from: its file and the offset of its first token in that file.
    pub start_file: String,
    pub start_offset: usize,
    /// That window's tokens.
    pub seed: Vec<String>,
    /// The first minute of that training file, to compare with.
    pub reference: Vec<String>,
    pub program: u8,
    /// Beats between successive tokens.
    pub step: f64,
    /// Microseconds per quarter note: the tempo of the file generation started from.
    pub tempo: u32,
    /// The tokens of pieces 2, 3, … (`count` above 1), each grown from its own start (absent before version 8 of
    /// the sample stage).
    #[serde(default)]
    pub more: Vec<Vec<String>>,
}

/// A fitted n-gram model (its counts) and the windows it was fitted on: sampling starts from one of them, as from a
/// trained LSTM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NgramModel {
    pub counts: crate::nn::ngram::Counts,
    pub windows: WindowSet,
}

/// What the render stage made (the WAV files themselves are its report files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audio {
    /// The SoundFont used, by file name; `None` when none was found and nothing was rendered.
    pub soundfont: Option<String>,
    pub sample_rate: u32,
    /// Length of `generated.wav` (the first piece) and `seed.wav`.
    pub generated_seconds: f64,
    pub seed_seconds: f64,
}
