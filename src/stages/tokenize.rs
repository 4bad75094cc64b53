//! `tokenize`: turns each file's notes into note and chord tokens, grouping notes by exact onset tick.
//!
//! One distinct pitch at an onset is a note token named with octave and sharps (MIDI 60 = `C4`); two or more are a
//! chord token, the sorted distinct pitch classes joined by `.` (C4+E4+G4 → `0.4.7`, C4+C5 → `0`), as in the paper.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Params, RunContext, Stage, StageKind, StageOutput, params_of};
use crate::artifact::{Artifact, Note, TokenFile, TokenSet};

const PITCH_NAMES: [&str; 12] = [
    "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
];

/// `C4` for MIDI 60, `C-1` for 0, `G9` for 127.
pub fn pitch_name(key: u8) -> String {
    let octave = i32::from(key / 12) - 1;
    format!("{}{octave}", PITCH_NAMES[usize::from(key % 12)])
}

/// The token of a set of distinct pitches sounding at one onset.
pub fn token_for(pitches: &BTreeSet<u8>) -> String {
    match pitches.len() {
        0 => String::new(),
        1 => pitch_name(*pitches.first().expect("one pitch")),
        _ => {
            let classes: BTreeSet<u8> = pitches.iter().map(|p| p % 12).collect();
            classes
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(".")
        }
    }
}

/// The MIDI key of a pitch name (`C4` → 60, `C-1` → 0, `G9` → 127).
pub fn parse_pitch_name(name: &str) -> Option<u8> {
    let split = name.find(|c: char| c == '-' || c.is_ascii_digit())?;
    let (class, octave) = name.split_at(split);
    let class = PITCH_NAMES.iter().position(|&n| n == class)? as i32;
    let octave: i32 = octave.parse().ok()?;
    u8::try_from((octave + 1) * 12 + class)
        .ok()
        .filter(|&k| k <= 127)
}

/// Octave chords are voiced in when written back to MIDI: pitch classes become C4–B4.
pub const CHORD_BASE: u8 = 60;

/// The keys to play for a token: a note's own pitch; a chord's pitch classes in octave 4 (C4–B4), and a chord of one
/// pitch class (it came from octaves, e.g. C4+C5) as that octave, so that it reads back as the same token.
pub fn pitches_of(token: &str) -> Option<Vec<u8>> {
    if !is_chord(token) {
        return parse_pitch_name(token).map(|k| vec![k]);
    }
    let classes: Vec<u8> = token
        .split('.')
        .map(|c| c.parse::<u8>().ok().filter(|&c| c < 12))
        .collect::<Option<_>>()?;
    let mut keys: Vec<u8> = classes.iter().map(|c| CHORD_BASE + c).collect();
    if keys.len() == 1 {
        keys.push(keys[0] + 12);
    }
    Some(keys)
}

/// Whether a token is a chord (`0.4.7`) rather than a note (`C4`).
pub fn is_chord(token: &str) -> bool {
    token.starts_with(|c: char| c.is_ascii_digit())
}

/// Tokens of one file, in onset order.
pub fn tokenize_notes(notes: &[Note]) -> Vec<String> {
    let mut onsets: BTreeMap<u64, BTreeSet<u8>> = BTreeMap::new();
    for n in notes {
        onsets.entry(n.tick).or_default().insert(n.key);
    }
    onsets.values().map(token_for).collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokenize {}

impl Params for Tokenize {}

impl Stage for Tokenize {
    fn kind(&self) -> StageKind {
        StageKind::Tokenize
    }

    fn params(&self) -> BTreeMap<String, serde_json::Value> {
        params_of(self)
    }

    fn run(&self, _ctx: &mut RunContext, inputs: &[&Artifact]) -> anyhow::Result<StageOutput> {
        let notes = inputs[0].notes()?;
        let files: Vec<TokenFile> = notes
            .files
            .iter()
            .filter(|f| !f.notes.is_empty())
            .map(|f| TokenFile {
                path: f.path.clone(),
                tokens: tokenize_notes(&f.notes),
            })
            .collect();
        let total: usize = files.iter().map(|f| f.tokens.len()).sum();
        let chords: usize = files
            .iter()
            .flat_map(|f| &f.tokens)
            .filter(|t| is_chord(t))
            .count();
        Ok(StageOutput {
            summary: serde_json::json!({
                "files": files.len(),
                "tokens": total,
                "note_tokens": total - chords,
                "chord_tokens": chords,
            }),
            artifact: Artifact::Tokens(TokenSet {
                programs: notes.programs.clone(),
                files,
            }),
            files: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pitch_names_cover_the_midi_range() {
        assert_eq!(pitch_name(0), "C-1");
        assert_eq!(pitch_name(60), "C4");
        assert_eq!(pitch_name(61), "C#4");
        assert_eq!(pitch_name(73), "C#5");
        assert_eq!(pitch_name(69), "A4");
        assert_eq!(pitch_name(127), "G9");
    }

    #[test]
    fn pitch_names_parse_back() {
        for key in 0..=127u8 {
            assert_eq!(parse_pitch_name(&pitch_name(key)), Some(key));
        }
        assert_eq!(parse_pitch_name("H4"), None);
        assert_eq!(parse_pitch_name("G#9"), None, "MIDI stops at G9");
    }

    #[test]
    fn tokens_voice_back_to_themselves() {
        for token in ["C4", "C-1", "G9", "0.4.7", "0", "2.11", "1.3.6.8.10"] {
            let keys: BTreeSet<u8> = pitches_of(token).unwrap().into_iter().collect();
            assert_eq!(token_for(&keys), token);
        }
        assert_eq!(pitches_of("0.4.7").unwrap(), [60, 64, 67]);
    }

    #[test]
    fn chords_are_sorted_distinct_pitch_classes() {
        let set = |ps: &[u8]| ps.iter().copied().collect::<BTreeSet<u8>>();
        assert_eq!(token_for(&set(&[67, 60, 64])), "0.4.7");
        assert_eq!(token_for(&set(&[60, 72])), "0");
        assert_eq!(token_for(&set(&[71, 62])), "2.11");
        assert_eq!(token_for(&set(&[64])), "E4");
        assert!(is_chord("0.4.7") && is_chord("0") && !is_chord("C#4"));
    }

    #[test]
    fn notes_group_by_exact_onset() {
        let n = |tick, key| Note {
            tick,
            key,
            velocity: 100,
            program: 0,
        };
        let notes = [
            n(0, 60),
            n(0, 64),
            n(0, 60),
            n(1, 64),
            n(480, 67),
            n(480, 55),
        ];
        assert_eq!(tokenize_notes(&notes), ["0.4", "E4", "7"]);
    }
}
