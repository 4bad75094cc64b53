//! The blind listening test: pairs of clips — runs' generated pieces, the n-gram floor's, held-out excerpts — in a
//! seeded random order on one self-contained page (audio inline, no network), with nothing on the page saying
//! which clip came from where until every pair is answered; then the answers as JSON, and their summary: each
//! source's preference rate with Wilson's 95 % interval.
//!
//! Sources come from report folders: each `sample` stage's pieces (`generated*.mid`, with the stage's report
//! prefix) and the held-out excerpts the first one writes (`held-out*.mid`). The page keeps the answer key XOR-ed
//! with a random pad, so no source's name is in the page (its DOM, its script) before the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::runs::manifest::Manifest;
use crate::stages::StageKind;

/// Where held-out excerpts are filed, whatever run they come from.
pub const HELD_OUT: &str = "held-out";

/// One MIDI file to play, and the source it stands for.
#[derive(Debug, Clone)]
pub struct Piece {
    pub source: String,
    pub midi: PathBuf,
}

/// A rendered clip on the page.
#[derive(Debug, Clone)]
pub struct Clip {
    pub source: String,
    /// The MIDI file it was rendered from, as shown in the answers.
    pub file: String,
    pub wav: Vec<u8>,
}

/// The pieces of one run folder: each `sample` stage's (named `run: stage` when `named`, else `stage`), and the
/// held-out excerpts.
pub fn pieces_of(dir: &Path, run_name: &str, named: bool) -> Result<Vec<Piece>> {
    let manifest = Manifest::read(dir)?;
    let samples: Vec<&str> = manifest
        .stages
        .iter()
        .filter(|s| s.kind == StageKind::Sample)
        .map(|s| s.name.as_str())
        .collect();
    let mut pieces = Vec::new();
    for (i, stage) in samples.iter().enumerate() {
        // The first sample stage writes plain names; later ones their stage's prefix (`spec::graph::file_prefix`).
        let prefix = if i == 0 {
            String::new()
        } else {
            format!("{stage}.")
        };
        let source = if named {
            format!("{run_name}: {stage}")
        } else {
            stage.to_string()
        };
        for midi in numbered(dir, &format!("{prefix}generated")) {
            pieces.push(Piece {
                source: source.clone(),
                midi,
            });
        }
        if i == 0 {
            for midi in numbered(dir, &format!("{prefix}{HELD_OUT}")) {
                pieces.push(Piece {
                    source: HELD_OUT.into(),
                    midi,
                });
            }
        }
    }
    Ok(pieces)
}

/// `stem.mid`, `stem-2.mid`, … in `dir`, in order.
fn numbered(dir: &Path, stem: &str) -> Vec<PathBuf> {
    (1..)
        .map(|n| dir.join(crate::artifact::piece_file(stem, n, "mid")))
        .take_while(|p| p.is_file())
        .collect()
}

/// A pair to judge: two clips by index, in the order they are played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub first: usize,
    pub second: usize,
}

/// `per_pair` pairs for every two sources, each a random clip of each in a random order, all shuffled; seeded.
pub fn pairs(clips: &[Clip], per_pair: usize, seed: u64) -> Vec<Pair> {
    let mut sources: Vec<&str> = Vec::new();
    for c in clips {
        if !sources.contains(&c.source.as_str()) {
            sources.push(&c.source);
        }
    }
    let of =
        |s: &str| -> Vec<usize> { (0..clips.len()).filter(|&i| clips[i].source == s).collect() };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for (i, a) in sources.iter().enumerate() {
        for b in &sources[i + 1..] {
            let (xs, ys) = (of(a), of(b));
            for _ in 0..per_pair {
                let (x, y) = (
                    xs[rng.random_range(0..xs.len())],
                    ys[rng.random_range(0..ys.len())],
                );
                out.push(if rng.random_bool(0.5) {
                    Pair {
                        first: x,
                        second: y,
                    }
                } else {
                    Pair {
                        first: y,
                        second: x,
                    }
                });
            }
        }
    }
    out.shuffle(&mut rng);
    out
}

/// What the page exports: every answer, with the sources revealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answers {
    /// `pipeline-listen-1`.
    pub format: String,
    pub seed: u64,
    /// The length every clip was cut to.
    pub seconds: f64,
    pub trials: Vec<Answer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub trial: usize,
    pub first: String,
    pub second: String,
    pub first_file: String,
    pub second_file: String,
    /// `first` or `second`.
    pub chosen: String,
}

pub const FORMAT: &str = "pipeline-listen-1";

/// The answer key: each clip's source and file, as JSON XOR-ed with a random pad, both base64.
fn sealed_key(clips: &[Clip], rng: &mut ChaCha8Rng) -> (String, String) {
    let key = serde_json::json!({
        "sources": clips.iter().map(|c| &c.source).collect::<Vec<_>>(),
        "files": clips.iter().map(|c| &c.file).collect::<Vec<_>>(),
    });
    let plain = serde_json::to_vec(&key).expect("plain data");
    let mut pad = vec![0u8; plain.len()];
    rng.fill_bytes(&mut pad);
    let sealed: Vec<u8> = plain.iter().zip(&pad).map(|(a, b)| a ^ b).collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    (b64.encode(sealed), b64.encode(pad))
}

/// The self-contained page: every clip inline as a WAV, the pairs, the sealed key, and the script that plays,
/// records and reveals.
pub fn page(clips: &[Clip], pairs: &[Pair], seed: u64, seconds: f64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x006b_6579);
    let (sealed, pad) = sealed_key(clips, &mut rng);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut audio = String::from("[");
    for c in clips {
        let _ = write!(audio, "\"data:audio/wav;base64,{}\",", b64.encode(&c.wav));
    }
    audio.push(']');
    let pairs_js: Vec<String> = pairs
        .iter()
        .map(|p| format!("[{},{}]", p.first, p.second))
        .collect();
    PAGE.replace("{{CLIPS}}", &audio)
        .replace("{{PAIRS}}", &format!("[{}]", pairs_js.join(",")))
        .replace("{{SEALED}}", &sealed)
        .replace("{{PAD}}", &pad)
        .replace("{{SEED}}", &seed.to_string())
        .replace("{{SECONDS}}", &format!("{seconds:.2}"))
        .replace("{{FORMAT}}", FORMAT)
        .replace("{{COUNT}}", &pairs.len().to_string())
}

const PAGE: &str = include_str!("listen.html");

/// One source's line of the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preference {
    pub source: String,
    /// Pairs it was in, and those in which it was chosen.
    pub n: u64,
    pub chosen: u64,
    pub rate: f64,
    /// Wilson's 95 % score interval of the rate.
    pub low: f64,
    pub high: f64,
}

/// Reads and checks an answers file.
pub fn read_answers(path: &Path) -> Result<Answers> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let answers: Answers = serde_json::from_str(&text).with_context(|| {
        format!("`{}` is not a listening test's answers (export them from the page `pipeline listen` wrote)", path.display())
    })?;
    if answers.format != FORMAT {
        bail!(
            "`{}` has answers in format `{}`; this version reads `{FORMAT}`",
            path.display(),
            answers.format
        );
    }
    if let Some(a) = answers
        .trials
        .iter()
        .find(|a| a.chosen != "first" && a.chosen != "second")
    {
        bail!(
            "`{}`: trial {} chose `{}`, neither `first` nor `second`",
            path.display(),
            a.trial,
            a.chosen
        );
    }
    if answers.trials.is_empty() {
        bail!(
            "`{}` holds no answers: finish the test on the page, then export",
            path.display()
        );
    }
    Ok(answers)
}

/// Each source's preference rate over the pairs it was in, with Wilson's interval, most preferred first.
pub fn preferences(answers: &Answers) -> Vec<Preference> {
    let mut tally: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for a in &answers.trials {
        let (won, lost) = if a.chosen == "first" {
            (&a.first, &a.second)
        } else {
            (&a.second, &a.first)
        };
        let w = tally.entry(won).or_default();
        w.0 += 1;
        w.1 += 1;
        tally.entry(lost).or_default().0 += 1;
    }
    let mut out: Vec<Preference> = tally
        .into_iter()
        .map(|(source, (n, chosen))| {
            let (low, high) = crate::stats::wilson(chosen, n).expect("n ≥ 1");
            Preference {
                source: source.to_string(),
                n,
                chosen,
                rate: chosen as f64 / n as f64,
                low,
                high,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.rate
            .total_cmp(&a.rate)
            .then_with(|| a.source.cmp(&b.source))
    });
    out
}
