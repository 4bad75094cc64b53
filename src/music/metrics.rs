//! Music metrics: objective numbers that say whether a generated piece is varied, whether it is copied from the
//! training data, and whether it is shaped like music at all. Each is defined in one line in docs/src/guide/music-metrics.md and tested
//! on hand-made sequences.
//!
//! Token metrics read the tokens; structural metrics read the piece as onsets (when, and which keys sound): melodic
//! intervals between successive onsets' top notes, leaps, scale consistency, range, polyphony, inter-onset intervals,
//! and how far the piece's interval histogram is from the held-out files'. [`report`] computes them for the piece and
//! for references made the same way: the training corpus, the held-out files, the held-out files shuffled (same
//! notes, order destroyed) and a uniform random token stream — a number means something only beside those.

use std::collections::{BTreeMap, HashMap, HashSet};

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::music::tokens::{is_chord, parse_pitch_name, pitches_of, timeline};

/// The n of the n-grams `copy_rate_8` counts.
pub const COPY_NGRAM: usize = 8;

/// Metrics of one token sequence. The copy metrics need training data and are absent for the corpus itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub tokens: usize,
    /// Distinct tokens.
    pub unique_tokens: usize,
    /// Distinct pitch classes (0–11) sounding in any token.
    pub pitch_classes_used: usize,
    /// Shannon entropy in bits of the histogram of pitch classes (a chord counts each of its classes once).
    pub pitch_class_entropy: f64,
    /// Share of tokens that are chords.
    pub chord_ratio: f64,
    /// Longest run of one token repeated back to back.
    pub longest_repeat: usize,
    /// Share of the piece's 8-token n-grams that occur somewhere in the training sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_rate_8: Option<f64>,
    /// Length of the longest span of the piece that occurs verbatim in the training sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longest_copy: Option<usize>,
    /// Share of the piece's runs of 8 onsets (a timed onset is its shift, sound and duration) that occur somewhere
    /// in the training sequences: the copy rate whatever the token scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_rate_8_onsets: Option<f64>,
    /// Best share, over the 24 major and minor scales, of sounding notes that belong to the scale (of a corpus: of
    /// its notes, each file fitted with its own scale).
    #[serde(default)]
    pub scale_consistency: f64,
    /// Mean |semitones| between successive onsets' top notes.
    #[serde(default)]
    pub mean_interval: f64,
    /// Share of those steps that leap more than an octave.
    #[serde(default)]
    pub leap_share: f64,
    /// Highest minus lowest key, in semitones (of a corpus: the median over its files).
    #[serde(default)]
    pub pitch_range: u8,
    /// Mean number of keys sounding at an onset.
    #[serde(default)]
    pub polyphony: f64,
    /// Distinct inter-onset intervals (in 1/48 beats).
    #[serde(default)]
    pub distinct_iois: usize,
    /// Shannon entropy in bits of the inter-onset intervals.
    #[serde(default)]
    pub ioi_entropy: f64,
    /// Jensen–Shannon divergence in bits (0 = the same, 1 = nothing shared) between the histogram of |melodic
    /// intervals| (0–24 semitones, wider ones as 24) and the held-out files'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_distance: Option<f64>,
}

/// One onset of a piece: when (in beats) and which keys sound.
#[derive(Debug, Clone, PartialEq)]
pub struct Onset {
    pub beat: f64,
    pub keys: Vec<u8>,
}

/// The onsets of a token sequence ([`timeline`]: time tokens where there are, else one token per `step` beats);
/// sounds at one time (the notes scheme's notes of different lengths) are one onset, keys lowest first.
pub fn onsets(tokens: &[String], step: f64) -> Vec<Onset> {
    let mut out: Vec<Onset> = Vec::new();
    for p in timeline(tokens, step) {
        match out.last_mut() {
            Some(last) if last.beat == p.beat => {
                last.keys.extend(p.keys);
                last.keys.sort_unstable();
                last.keys.dedup();
            }
            _ => out.push(Onset {
                beat: p.beat,
                keys: p.keys,
            }),
        }
    }
    out
}

/// The widest |interval| the histogram tells apart; wider ones count as this.
const WIDEST: usize = 24;

/// Successive onsets' top-note intervals, never across two files.
fn intervals(files: &[Vec<Onset>]) -> Vec<i32> {
    files
        .iter()
        .flat_map(|f| {
            f.windows(2).map(|w| {
                let top = |o: &Onset| i32::from(*o.keys.iter().max().expect("an onset sounds"));
                top(&w[1]) - top(&w[0])
            })
        })
        .collect()
}

/// The normalized histogram of |intervals|, 0..=WIDEST.
fn histogram_of(intervals: &[i32]) -> [f64; WIDEST + 1] {
    let mut h = [0.0; WIDEST + 1];
    for i in intervals {
        h[(i.unsigned_abs() as usize).min(WIDEST)] += 1.0;
    }
    let n = intervals.len().max(1) as f64;
    h.map(|x| x / n)
}

/// Excerpts per reference that a piece's `interval_distance` is compared with.
const EXCERPTS: usize = 32;

/// Jensen–Shannon divergence of two distributions, in bits (0 to 1).
fn js_divergence(p: &[f64], q: &[f64]) -> f64 {
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter()
            .zip(m)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, y)| x * (x / y).log2())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(q).map(|(a, b)| (a + b) / 2.0).collect();
    (kl(p, &m) + kl(q, &m)) / 2.0
}

/// Shannon entropy in bits of a histogram of counts.
fn entropy<'a>(counts: impl IntoIterator<Item = &'a usize>) -> f64 {
    let counts: Vec<usize> = counts.into_iter().copied().filter(|&n| n > 0).collect();
    let total: usize = counts.iter().sum();
    counts
        .iter()
        .map(|&n| {
            let p = n as f64 / total as f64;
            p * (1.0 / p).log2()
        })
        .sum()
}

/// The structural metrics of `files` (each a piece or a corpus file, intervals never crossing two) into `m`.
fn structure(m: &mut Metrics, files: &[Vec<Onset>]) {
    let keys: Vec<u8> = files
        .iter()
        .flatten()
        .flat_map(|o| o.keys.iter().copied())
        .collect();
    // Per file, then summed: files in different keys pooled would look out of key when each is in its own.
    let in_scale: usize = files.iter().map(|f| best_in_scale(f)).sum();
    m.scale_consistency = if keys.is_empty() {
        0.0
    } else {
        in_scale as f64 / keys.len() as f64
    };
    let steps = intervals(files);
    m.mean_interval = if steps.is_empty() {
        0.0
    } else {
        steps
            .iter()
            .map(|i| f64::from(i.unsigned_abs()))
            .sum::<f64>()
            / steps.len() as f64
    };
    m.leap_share = if steps.is_empty() {
        0.0
    } else {
        steps.iter().filter(|i| i.unsigned_abs() > 12).count() as f64 / steps.len() as f64
    };
    // A typical file's range, as a piece is one file (pooled, every file's lowest and highest note would count).
    let mut ranges: Vec<u8> = files.iter().filter_map(|f| pitch_range(f)).collect();
    ranges.sort_unstable();
    m.pitch_range = ranges
        .get(ranges.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0);
    let onsets = files.iter().map(Vec::len).sum::<usize>();
    m.polyphony = if onsets == 0 {
        0.0
    } else {
        keys.len() as f64 / onsets as f64
    };
    let mut iois: BTreeMap<i64, usize> = BTreeMap::new();
    for f in files {
        for w in f.windows(2) {
            *iois
                .entry(((w[1].beat - w[0].beat) * 48.0).round() as i64)
                .or_default() += 1;
        }
    }
    m.distinct_iois = iois.len();
    m.ioi_entropy = entropy(iois.values());
}

/// How many of a file's sounding notes the best-fitting of the 24 major and minor scales holds.
fn best_in_scale(file: &[Onset]) -> usize {
    const MAJOR: [usize; 7] = [0, 2, 4, 5, 7, 9, 11];
    const MINOR: [usize; 7] = [0, 2, 3, 5, 7, 8, 10];
    let mut classes = [0usize; 12];
    for k in file.iter().flat_map(|o| &o.keys) {
        classes[usize::from(k % 12)] += 1;
    }
    (0..12)
        .flat_map(|tonic| {
            [MAJOR, MINOR].map(|scale| {
                scale
                    .iter()
                    .map(|d| classes[(tonic + d) % 12])
                    .sum::<usize>()
            })
        })
        .max()
        .unwrap_or(0)
}

/// Highest minus lowest key of a file, `None` when nothing sounds.
fn pitch_range(file: &[Onset]) -> Option<u8> {
    let keys = file.iter().flat_map(|o| o.keys.iter().copied());
    Some(keys.clone().max()? - keys.min()?)
}

/// The pitch classes of a token: a note's one, a chord's listed ones.
pub fn pitch_classes(token: &str) -> Vec<u8> {
    if is_chord(token) {
        token.split('.').filter_map(|c| c.parse().ok()).collect()
    } else {
        parse_pitch_name(token)
            .map(|k| vec![k % 12])
            .unwrap_or_default()
    }
}

fn shape_metrics(tokens: &[String]) -> Metrics {
    let unique: HashSet<&String> = tokens.iter().collect();
    let mut histogram = [0usize; 12];
    for t in tokens {
        for pc in pitch_classes(t) {
            histogram[usize::from(pc % 12)] += 1;
        }
    }
    let total: usize = histogram.iter().sum();
    let entropy = histogram
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| {
            let p = n as f64 / total as f64;
            p * (1.0 / p).log2()
        })
        .sum::<f64>();
    let mut longest_repeat = 0;
    let mut run = 0;
    for (i, t) in tokens.iter().enumerate() {
        run = if i > 0 && tokens[i - 1] == *t {
            run + 1
        } else {
            1
        };
        longest_repeat = longest_repeat.max(run);
    }
    Metrics {
        tokens: tokens.len(),
        unique_tokens: unique.len(),
        pitch_classes_used: histogram.iter().filter(|&&n| n > 0).count(),
        pitch_class_entropy: entropy,
        // Of the tokens that play something (time tokens aside).
        chord_ratio: match tokens.iter().filter(|t| pitches_of(t).is_some()).count() {
            0 => 0.0,
            playing => tokens.iter().filter(|t| is_chord(t)).count() as f64 / playing as f64,
        },
        longest_repeat,
        ..Metrics::default()
    }
}

/// Metrics of a corpus (its sequences taken together; nothing spans two of them), each token `step` beats long.
pub fn corpus(sequences: &[Vec<String>], step: f64) -> Metrics {
    let all: Vec<String> = sequences.iter().flatten().cloned().collect();
    let mut m = shape_metrics(&all);
    // A run never continues across a file boundary.
    m.longest_repeat = sequences
        .iter()
        .map(|s| shape_metrics(s).longest_repeat)
        .max()
        .unwrap_or(0);
    let files: Vec<Vec<Onset>> = sequences.iter().map(|s| onsets(s, step)).collect();
    structure(&mut m, &files);
    m
}

/// Metrics of a generated piece against the training sequences (n-grams never span two sequences).
#[cfg(test)]
pub fn generated(piece: &[String], step: f64, training: &[Vec<String>]) -> Metrics {
    generated_against(piece, step, &CopyIndex::new(training))
}

fn generated_against(piece: &[String], step: f64, index: &CopyIndex) -> Metrics {
    let mut m = shape_metrics(piece);
    structure(&mut m, &[onsets(piece, step)]);
    m.copy_rate_8 = Some(index.token_rate(&[piece]).unwrap_or(0.0));
    m.copy_rate_8_onsets = Some(index.onset_rate(&[piece]).unwrap_or(0.0));
    m.longest_copy = Some(longest_copy(piece, index));
    m
}

/// A sequence cut into onsets: with time tokens, a new onset starts at every shift (an onset of the notes scheme
/// holds several pitches and durations); otherwise every token is one.
fn onset_groups(tokens: &[String]) -> Vec<&[String]> {
    use crate::music::tokens::{TimeToken, time_token};
    let timed = tokens.iter().any(|t| time_token(t).is_some());
    let mut groups = Vec::new();
    let mut from = 0;
    for i in 1..=tokens.len() {
        let boundary = i == tokens.len()
            || !timed
            || matches!(time_token(&tokens[i]), Some(TimeToken::Shift(_)));
        if boundary {
            groups.push(&tokens[from..i]);
            from = i;
        }
    }
    groups
}

/// The runs of [`COPY_NGRAM`] tokens and of as many onsets in the training sequences, for copy rates.
struct CopyIndex<'a> {
    training: &'a [Vec<String>],
    tokens: HashSet<&'a [String]>,
    onsets: HashSet<Vec<&'a [String]>>,
    /// Where each token occurs: (sequence, position).
    positions: HashMap<&'a str, Vec<(usize, usize)>>,
}

impl<'a> CopyIndex<'a> {
    fn new(training: &'a [Vec<String>]) -> Self {
        let tokens = training
            .iter()
            .flat_map(|s| s.windows(COPY_NGRAM))
            .collect();
        let onsets = training
            .iter()
            .flat_map(|s| {
                let groups = onset_groups(s);
                groups
                    .windows(COPY_NGRAM)
                    .map(<[_]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut positions: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
        for (s, seq) in training.iter().enumerate() {
            for (j, t) in seq.iter().enumerate() {
                positions.entry(t).or_default().push((s, j));
            }
        }
        CopyIndex {
            training,
            tokens,
            onsets,
            positions,
        }
    }

    /// The share of `files`' runs of 8 tokens found in the training sequences; `None` when they have none.
    fn token_rate<S: AsRef<[String]>>(&self, files: &[S]) -> Option<f64> {
        let grams: Vec<&[String]> = files
            .iter()
            .flat_map(|f| f.as_ref().windows(COPY_NGRAM))
            .collect();
        (!grams.is_empty()).then(|| {
            grams.iter().filter(|g| self.tokens.contains(*g)).count() as f64 / grams.len() as f64
        })
    }

    /// The same for runs of 8 onsets.
    fn onset_rate<S: AsRef<[String]>>(&self, files: &[S]) -> Option<f64> {
        let (mut found, mut all) = (0usize, 0usize);
        for f in files {
            for gram in onset_groups(f.as_ref()).windows(COPY_NGRAM) {
                all += 1;
                found += usize::from(self.onsets.contains(gram));
            }
        }
        (all > 0).then(|| found as f64 / all as f64)
    }
}

/// The longest span of `piece` found verbatim in one of the training sequences: for every pair of equal
/// positions, extend the match; positions are indexed by token (in [`CopyIndex`]) so only candidate starts are tried.
fn longest_copy(piece: &[String], index: &CopyIndex) -> usize {
    let mut best = 0;
    for i in 0..piece.len() {
        if piece.len() - i <= best {
            break;
        }
        for &(s, j) in index
            .positions
            .get(piece[i].as_str())
            .map_or(&[][..], Vec::as_slice)
        {
            let seq = &index.training[s];
            let len = piece[i..]
                .iter()
                .zip(&seq[j..])
                .take_while(|(a, b)| a == b)
                .count();
            best = best.max(len);
        }
    }
    best
}

/// `metrics.json`: the piece and, for reading it against, the corpus it was trained on, the held-out files, and the
/// held-out files' shuffled and uniform-random references.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsReport {
    pub generated: Metrics,
    /// The training files.
    pub corpus: Metrics,
    /// The files held out from training (the training files when none are: `reference` says which).
    #[serde(default)]
    pub held_out: Option<Metrics>,
    /// The held-out files with each file's tokens shuffled: the same notes, their order destroyed.
    #[serde(default)]
    pub shuffled: Option<Metrics>,
    /// Tokens drawn uniformly from the vocabulary, as many per file as the held-out files have.
    #[serde(default)]
    pub uniform: Option<Metrics>,
    /// `validation` or `training`: which files `held_out` and the references are made from.
    #[serde(default)]
    pub reference: Option<String>,
}

/// Every metric of `piece` (each token `step` beats long) and of the references, seeded by `seed`.
#[cfg(test)]
pub fn report(
    piece: &[String],
    step: f64,
    training: &[Vec<String>],
    held_out: &[Vec<String>],
    vocabulary: &[String],
    seed: u64,
) -> MetricsReport {
    References::new(step, training, held_out, vocabulary, seed).report(piece)
}

/// What every piece of a `sample` stage is measured against, computed once: the training corpus's metrics and its
/// copy index, the held-out files (or the training files when none are held out) with their own copy rates, and
/// their shuffled and uniform references.
pub struct References<'a> {
    step: f64,
    index: CopyIndex<'a>,
    /// The held-out files' interval histogram, which `interval_distance` compares with.
    target: [f64; WIDEST + 1],
    /// Every interval of the held-out files, of their shuffle and of the noise, in order: a piece's
    /// `interval_distance` is set beside excerpts of its own length from each ([`References::excerpt_distance`]).
    intervals: [Vec<i32>; 3],
    seed: u64,
    corpus: Metrics,
    held_out: Metrics,
    shuffled: Metrics,
    uniform: Metrics,
    name: &'static str,
}

impl<'a> References<'a> {
    /// The references of `training` and `held_out`, seeded by `seed`.
    pub fn new(
        step: f64,
        training: &'a [Vec<String>],
        held_out: &'a [Vec<String>],
        vocabulary: &[String],
        seed: u64,
    ) -> Self {
        let (reference, name) = if held_out.iter().any(|f| f.len() > 1) {
            (held_out, "validation")
        } else {
            (training, "training")
        };
        let intervals_of = |files: &[Vec<String>]| {
            intervals(&files.iter().map(|s| onsets(s, step)).collect::<Vec<_>>())
        };
        let held_out_intervals = intervals_of(reference);
        let target = histogram_of(&held_out_intervals);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let shuffled: Vec<Vec<String>> = reference
            .iter()
            .map(|f| {
                let mut f = f.clone();
                f.shuffle(&mut rng);
                f
            })
            .collect();
        let uniform: Vec<Vec<String>> = reference
            .iter()
            .map(|f| {
                (0..f.len())
                    .filter_map(|_| vocabulary.choose(&mut rng).cloned())
                    .collect()
            })
            .collect();
        let index = CopyIndex::new(training);
        let mut held = corpus(reference, step);
        // The memorisation reference: how much of music the model never saw is found in the training files anyway
        // (none when the references are the training files themselves).
        if name == "validation" {
            held.copy_rate_8 = index.token_rate(reference);
            held.copy_rate_8_onsets = index.onset_rate(reference);
        }
        References {
            step,
            target,
            intervals: [
                held_out_intervals,
                intervals_of(&shuffled),
                intervals_of(&uniform),
            ],
            seed,
            corpus: corpus(training, step),
            held_out: held,
            shuffled: corpus(&shuffled, step),
            uniform: corpus(&uniform, step),
            index,
            name,
        }
    }

    /// The mean distance from the held-out files' histogram of [`EXCERPTS`] excerpts of `n` successive intervals
    /// drawn from `intervals` (all of them when there are no more than `n`). A histogram of a few hundred intervals
    /// lies away from any other by chance alone, so a piece set beside whole references (thousands of intervals;
    /// the held-out files' own distance 0) was judged against numbers no piece of its length reaches: at equal
    /// lengths, excerpts of the held-out files themselves are not 0 either.
    fn excerpt_distance(&self, intervals: &[i32], n: usize) -> f64 {
        if n == 0 || intervals.len() <= n {
            return js_divergence(&histogram_of(intervals), &self.target);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ n as u64);
        let sum: f64 = (0..EXCERPTS)
            .map(|_| {
                let start = rng.random_range(0..=intervals.len() - n);
                js_divergence(&histogram_of(&intervals[start..start + n]), &self.target)
            })
            .sum();
        sum / EXCERPTS as f64
    }

    /// The piece's metrics beside the references.
    pub fn report(&self, piece: &[String]) -> MetricsReport {
        let mut generated = generated_against(piece, self.step, &self.index);
        let piece_intervals = intervals(&[onsets(piece, self.step)]);
        generated.interval_distance =
            Some(js_divergence(&histogram_of(&piece_intervals), &self.target));
        // Each reference's distance at the piece's length: what the piece is judged against.
        let [held_out, shuffled, uniform] =
            [&self.held_out, &self.shuffled, &self.uniform].map(|m| m.clone());
        let at_length = |mut m: Metrics, intervals: &[i32]| {
            m.interval_distance = Some(self.excerpt_distance(intervals, piece_intervals.len()));
            m
        };
        MetricsReport {
            generated,
            corpus: self.corpus.clone(),
            held_out: Some(at_length(held_out, &self.intervals[0])),
            shuffled: Some(at_length(shuffled, &self.intervals[1])),
            uniform: Some(at_length(uniform, &self.intervals[2])),
            reference: Some(self.name.to_string()),
        }
    }
}

/// Flattens metrics for tables: (name, value) in the order of docs/src/guide/music-metrics.md.
pub fn columns(m: &Metrics) -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("unique_tokens", m.unique_tokens.into()),
        ("pitch_classes_used", m.pitch_classes_used.into()),
        ("pitch_class_entropy", m.pitch_class_entropy.into()),
        ("chord_ratio", m.chord_ratio.into()),
        ("longest_repeat", m.longest_repeat.into()),
        ("copy_rate_8", m.copy_rate_8.into()),
        ("copy_rate_8_onsets", m.copy_rate_8_onsets.into()),
        ("longest_copy", m.longest_copy.into()),
        ("scale_consistency", m.scale_consistency.into()),
        ("mean_interval", m.mean_interval.into()),
        ("leap_share", m.leap_share.into()),
        ("pitch_range", m.pitch_range.into()),
        ("polyphony", m.polyphony.into()),
        ("distinct_iois", m.distinct_iois.into()),
        ("ioi_entropy", m.ioi_entropy.into()),
        ("interval_distance", m.interval_distance.into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn unique_tokens_and_pitch_classes() {
        let m = generated(&seq("C4 C5 E4 0.4.7 C4"), 0.5, &[]);
        assert_eq!(m.unique_tokens, 4);
        // C, E from notes; C, E, G from the chord.
        assert_eq!(m.pitch_classes_used, 3);
        assert_eq!(m.chord_ratio, 0.2);
    }

    #[test]
    fn entropy_in_bits() {
        // Four equally frequent pitch classes: 2 bits; one class only: 0 bits.
        assert!((generated(&seq("C4 D4 E4 F4"), 0.5, &[]).pitch_class_entropy - 2.0).abs() < 1e-12);
        assert_eq!(
            generated(&seq("C4 C5 C3"), 0.5, &[]).pitch_class_entropy,
            0.0
        );
        // C counted twice (note and chord), E and G once: H(1/2, 1/4, 1/4) = 1.5 bits.
        assert!((generated(&seq("C4 0.4.7"), 0.5, &[]).pitch_class_entropy - 1.5).abs() < 1e-12);
    }

    #[test]
    fn longest_repeat_counts_back_to_back_runs() {
        assert_eq!(
            generated(&seq("C4 C4 D4 D4 D4 C4"), 0.5, &[]).longest_repeat,
            3
        );
        assert_eq!(generated(&seq("C4"), 0.5, &[]).longest_repeat, 1);
        assert_eq!(
            corpus(&[seq("C4 C4"), seq("C4 C4 C4 D4")], 0.5).longest_repeat,
            3,
            "runs stop at file ends"
        );
    }

    #[test]
    fn copy_rate_counts_8_grams_found_in_training() {
        let training = vec![seq("a b c d e f g h i j")];
        // 10 tokens → 3 n-grams: "a…h" and "b…i" are in the training data, "b…i x"-ending is not.
        let piece = seq("a b c d e f g h i x");
        let m = generated(&piece, 0.5, &training);
        assert!((m.copy_rate_8.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.longest_copy, Some(9));
        assert_eq!(
            generated(&seq("x y"), 0.5, &training).copy_rate_8,
            Some(0.0)
        );
    }

    #[test]
    fn copies_never_span_two_training_files() {
        let training = vec![seq("a b c"), seq("d e f")];
        assert_eq!(
            generated(&seq("b c d e"), 0.5, &training).longest_copy,
            Some(2)
        );
        assert_eq!(generated(&seq("z"), 0.5, &training).longest_copy, Some(0));
    }

    /// Scale-wise melodies in C major, each 64 notes: the kind of structure music has and noise lacks.
    fn melodies() -> Vec<Vec<String>> {
        let scale = ["C4", "D4", "E4", "F4", "G4", "A4", "B4", "C5"];
        (0..6)
            .map(|f| {
                (0..64)
                    .map(|i| {
                        // Up and down the scale, starting at a different degree in each file.
                        let pos = (i + f) % 14;
                        let degree = if pos < 8 { pos } else { 14 - pos };
                        scale[degree].to_string()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn structural_metrics_rank_music_above_its_shuffle_and_noise() {
        let files = melodies();
        let (training, held_out) = files.split_at(4);
        // A wide vocabulary, as a real one is: every key from C2 to C7.
        let vocabulary: Vec<String> = (36u8..=96).map(crate::music::tokens::pitch_name).collect();
        let r = report(&held_out[0], 0.5, training, held_out, &vocabulary, 1);
        assert_eq!(r.reference.as_deref(), Some("validation"));
        let (music, shuffled, uniform) =
            (r.held_out.unwrap(), r.shuffled.unwrap(), r.uniform.unwrap());
        assert!(
            music.mean_interval < shuffled.mean_interval,
            "{music:?}\n{shuffled:?}"
        );
        assert!(
            shuffled.mean_interval < uniform.mean_interval,
            "{shuffled:?}\n{uniform:?}"
        );
        assert!(
            music.leap_share <= shuffled.leap_share && shuffled.leap_share < uniform.leap_share
        );
        let distance = |m: &Metrics| m.interval_distance.unwrap();
        // Each reference at the piece's length (63 intervals of the 126 held out): excerpts of the held-out files
        // lie near their whole, though not on it.
        assert!(distance(&music) < 0.05, "{music:?}");
        assert!(
            distance(&music) < distance(&shuffled) && distance(&shuffled) < distance(&uniform),
            "{music:?}\n{shuffled:?}\n{uniform:?}"
        );
        // Shuffling keeps the notes: the scale and the range stay; noise has neither.
        assert_eq!(music.scale_consistency, 1.0);
        assert_eq!(shuffled.scale_consistency, 1.0);
        assert!(uniform.scale_consistency < 0.8, "{uniform:?}");
        assert_eq!(music.pitch_range, 12);
        assert!(uniform.pitch_range > 40);
        // A piece copied from one held-out file is next to the held-out files and far from the shuffle.
        let copied = r.generated.interval_distance.unwrap();
        assert!(
            copied < 0.001 && copied < distance(&shuffled) / 10.0,
            "{copied}"
        );
    }

    #[test]
    fn a_piece_is_set_beside_references_of_its_own_length() {
        let files = melodies();
        let (training, held_out) = files.split_at(4);
        let vocabulary: Vec<String> = (36u8..=96).map(crate::music::tokens::pitch_name).collect();
        let at = |piece: &[String]| {
            let r = report(piece, 0.5, training, held_out, &vocabulary, 1);
            let d = |m: Option<Metrics>| m.unwrap().interval_distance.unwrap();
            (d(r.held_out), d(r.shuffled), d(r.generated.into()))
        };
        let (held_short, shuffled_short, piece_short) = at(&held_out[0][..9]);
        let (held_long, shuffled_long, _) = at(&held_out[0]);
        // Eight intervals lie further from any whole by chance than 63 do, the shuffle's as well as the music's.
        assert!(
            shuffled_short > shuffled_long,
            "{shuffled_short} {shuffled_long}"
        );
        assert!(held_short > held_long, "{held_short} {held_long}");
        // An excerpt of the held-out music is judged level with excerpts of it, and below the shuffle's.
        assert!(
            piece_short < shuffled_short,
            "{piece_short} {shuffled_short}"
        );
        // The same piece gets the same references: the excerpts are seeded.
        assert_eq!(
            at(&held_out[0][..9]),
            (held_short, shuffled_short, piece_short)
        );
    }

    #[test]
    fn a_corpus_is_in_key_when_each_file_is_in_its_own() {
        // A C major scale and an F# major scale: each file wholly in its key, the two pooled in none.
        let c = seq("C4 D4 E4 F4 G4 A4 B4 C5");
        let f_sharp = seq("F#4 G#4 A#4 B4 C#5 D#5 F5 F#5");
        let m = corpus(&[c.clone(), f_sharp.clone()], 0.5);
        assert_eq!(m.scale_consistency, 1.0);
        let pooled = corpus(&[[c.clone(), f_sharp].concat()], 0.5);
        assert!(pooled.scale_consistency < 0.8, "{pooled:?}");
        // The range is a typical file's (the median), not from the lowest note of one to the highest of another.
        let low = seq("C2 D2 E2");
        assert_eq!(corpus(&[c.clone(), low.clone(), c], 0.5).pitch_range, 12);
        assert_eq!(corpus(&[low], 0.5).pitch_range, 4);
    }

    #[test]
    fn intervals_leaps_polyphony_and_iois_on_a_known_piece() {
        let piece = seq("C4 C6 E4 G4");
        let m = generated(&piece, 0.5, &[]);
        // |C6-C4| = 24, |E4-C6| = 20, |G4-E4| = 3.
        assert!((m.mean_interval - 47.0 / 3.0).abs() < 1e-12);
        assert!((m.leap_share - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.pitch_range, 24);
        assert_eq!(m.polyphony, 1.0);
        // One token per step: one inter-onset interval, no entropy.
        assert_eq!(m.distinct_iois, 1);
        assert_eq!(m.ioi_entropy, 0.0);
        let onsets = [
            Onset {
                beat: 0.0,
                keys: vec![60, 64],
            },
            Onset {
                beat: 1.0,
                keys: vec![62],
            },
            Onset {
                beat: 1.5,
                keys: vec![64],
            },
            Onset {
                beat: 2.5,
                keys: vec![65],
            },
        ];
        let mut m = Metrics::default();
        structure(&mut m, &[onsets.to_vec()]);
        assert_eq!(m.polyphony, 5.0 / 4.0);
        // Intervals of 1, 0.5 and 1 beats: two distinct, H(2/3, 1/3).
        assert_eq!(m.distinct_iois, 2);
        let h = (2.0 / 3.0) * (1.5f64).log2() + (1.0 / 3.0) * 3f64.log2();
        assert!((m.ioi_entropy - h).abs() < 1e-12);
    }

    #[test]
    fn jensen_shannon_is_zero_for_equal_and_one_for_disjoint_histograms() {
        assert_eq!(js_divergence(&[0.5, 0.5, 0.0], &[0.5, 0.5, 0.0]), 0.0);
        assert!((js_divergence(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
    }
}
