//! Music metrics: objective numbers that say whether a generated piece is varied, and whether it is copied from
//! the training data. Each is defined in one line in the README and tested on hand-made sequences.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::music::tokens::{is_chord, parse_pitch_name};

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
        chord_ratio: if tokens.is_empty() {
            0.0
        } else {
            tokens.iter().filter(|t| is_chord(t)).count() as f64 / tokens.len() as f64
        },
        longest_repeat,
        copy_rate_8: None,
        longest_copy: None,
    }
}

/// Metrics of the training corpus itself (its sequences taken together).
pub fn corpus(sequences: &[Vec<String>]) -> Metrics {
    let all: Vec<String> = sequences.iter().flatten().cloned().collect();
    let mut m = shape_metrics(&all);
    // A run never continues across a file boundary.
    m.longest_repeat = sequences
        .iter()
        .map(|s| shape_metrics(s).longest_repeat)
        .max()
        .unwrap_or(0);
    m
}

/// Metrics of a generated piece against the training sequences (n-grams never span two sequences).
pub fn generated(piece: &[String], training: &[Vec<String>]) -> Metrics {
    let mut m = shape_metrics(piece);
    let grams: HashSet<&[String]> = training
        .iter()
        .flat_map(|s| s.windows(COPY_NGRAM))
        .collect();
    let piece_grams: Vec<&[String]> = piece.windows(COPY_NGRAM).collect();
    m.copy_rate_8 = Some(if piece_grams.is_empty() {
        0.0
    } else {
        piece_grams.iter().filter(|g| grams.contains(*g)).count() as f64 / piece_grams.len() as f64
    });
    m.longest_copy = Some(longest_copy(piece, training));
    m
}

/// The longest span of `piece` found verbatim in one of the `training` sequences: for every pair of equal
/// positions, extend the match; positions are indexed by token so only candidate starts are tried.
fn longest_copy(piece: &[String], training: &[Vec<String>]) -> usize {
    let mut positions: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
    for (s, seq) in training.iter().enumerate() {
        for (j, t) in seq.iter().enumerate() {
            positions.entry(t).or_default().push((s, j));
        }
    }
    let mut best = 0;
    for i in 0..piece.len() {
        if piece.len() - i <= best {
            break;
        }
        for &(s, j) in positions
            .get(piece[i].as_str())
            .map_or(&[][..], Vec::as_slice)
        {
            let seq = &training[s];
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

/// `metrics.json`: the piece and, for reading it against, the corpus it was trained on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsReport {
    pub generated: Metrics,
    pub corpus: Metrics,
}

/// Flattens metrics for tables: (name, value) in the order of the README.
pub fn columns(m: &Metrics) -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("unique_tokens", m.unique_tokens.into()),
        ("pitch_classes_used", m.pitch_classes_used.into()),
        ("pitch_class_entropy", m.pitch_class_entropy.into()),
        ("chord_ratio", m.chord_ratio.into()),
        ("longest_repeat", m.longest_repeat.into()),
        ("copy_rate_8", m.copy_rate_8.into()),
        ("longest_copy", m.longest_copy.into()),
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
        let m = generated(&seq("C4 C5 E4 0.4.7 C4"), &[]);
        assert_eq!(m.unique_tokens, 4);
        // C, E from notes; C, E, G from the chord.
        assert_eq!(m.pitch_classes_used, 3);
        assert_eq!(m.chord_ratio, 0.2);
    }

    #[test]
    fn entropy_in_bits() {
        // Four equally frequent pitch classes: 2 bits; one class only: 0 bits.
        assert!((generated(&seq("C4 D4 E4 F4"), &[]).pitch_class_entropy - 2.0).abs() < 1e-12);
        assert_eq!(generated(&seq("C4 C5 C3"), &[]).pitch_class_entropy, 0.0);
        // C counted twice (note and chord), E and G once: H(1/2, 1/4, 1/4) = 1.5 bits.
        assert!((generated(&seq("C4 0.4.7"), &[]).pitch_class_entropy - 1.5).abs() < 1e-12);
    }

    #[test]
    fn longest_repeat_counts_back_to_back_runs() {
        assert_eq!(generated(&seq("C4 C4 D4 D4 D4 C4"), &[]).longest_repeat, 3);
        assert_eq!(generated(&seq("C4"), &[]).longest_repeat, 1);
        assert_eq!(
            corpus(&[seq("C4 C4"), seq("C4 C4 C4 D4")]).longest_repeat,
            3,
            "runs stop at file ends"
        );
    }

    #[test]
    fn copy_rate_counts_8_grams_found_in_training() {
        let training = vec![seq("a b c d e f g h i j")];
        // 10 tokens → 3 n-grams: "a…h" and "b…i" are in the training data, "b…i x"-ending is not.
        let piece = seq("a b c d e f g h i x");
        let m = generated(&piece, &training);
        assert!((m.copy_rate_8.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.longest_copy, Some(9));
        assert_eq!(generated(&seq("x y"), &training).copy_rate_8, Some(0.0));
    }

    #[test]
    fn copies_never_span_two_training_files() {
        let training = vec![seq("a b c"), seq("d e f")];
        assert_eq!(generated(&seq("b c d e"), &training).longest_copy, Some(2));
        assert_eq!(generated(&seq("z"), &training).longest_copy, Some(0));
    }
}
