//! `augment`: more training data from the same music — every file copied at every transposition in
//! `transpose = [lo, hi]` semitones that keeps all its notes on the keyboard (0–127). A copy is tagged with its
//! source file and shift, so `window` can keep a held-out file and all its copies out of training.
//!
//! With `key = "c"` every file is first moved to C major or A minor (its key estimated by [`crate::music::key`]),
//! held-out files too: the tokens then say where a note sits in its key rather than which key a piece is in, and
//! copies (if any) are made from the moved file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::kind::StageKind;
use super::stage::{CheckContext, ParamProblem, Params, RunContext, Stage, StageOutput, params_of};
use crate::artifact::{Artifact, Origin, TokenFile, TokenSet};
use crate::music::key::{self, Key};
use crate::music::tokens::transpose;

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// The lowest and highest shift in semitones, both included (e.g. `[-5, 6]`: every key of the octave).
    #[schemars(inner(range(min = -WIDEST, max = WIDEST)))]
    pub transpose: [i8; 2],
    /// `as_is` (files keep their keys) or `c`: every file, held-out ones included, moved first to C major or A
    /// minor by the nearest shift (−5 to +6 semitones). Left out of the fingerprint at `as_is`.
    #[serde(default, skip_serializing_if = "KeyMode::is_as_is")]
    #[schemars(extend("default" = "as_is"))]
    pub key: KeyMode,
}

/// Whether `augment` moves every file to one key before copying.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum KeyMode {
    #[default]
    AsIs,
    /// C major for major keys, A minor for minor ones.
    C,
}

impl KeyMode {
    fn is_as_is(&self) -> bool {
        *self == KeyMode::AsIs
    }
}

/// The widest shift: two octaves either way.
const WIDEST: i8 = 24;

impl Params for Augment {
    fn check(&self, _: &CheckContext) -> Vec<ParamProblem> {
        let [lo, hi] = self.transpose;
        if lo > hi || lo < -WIDEST || hi > WIDEST {
            vec![
                ParamProblem::new(
                    "transpose",
                    format!("must be [lo, hi] with -{WIDEST} ≤ lo ≤ hi ≤ {WIDEST}, got [{lo}, {hi}]"),
                )
                .hint("`transpose = [-5, 6]` makes every file in all 12 keys; `[0, 0]` makes no copies"),
            ]
        } else {
            Vec::new()
        }
    }
}

/// `file` moved by `shift` semitones, if every note stays in 0–127.
fn copy_of(file: &TokenFile, shift: i8) -> Option<TokenFile> {
    let tokens = file
        .tokens
        .iter()
        .map(|t| transpose(t, shift))
        .collect::<Option<Vec<_>>>()?;
    Some(TokenFile {
        path: format!("{}@{shift:+}", file.path),
        tempo: file.tempo,
        tokens,
        origin: Some(Origin {
            source: file.path.clone(),
            shift,
        }),
    })
}

/// `file` moved to C major or A minor (the path and origin unchanged: it stands for the file as read), with the key
/// it was in; as it is, with no key, when no key is heard or no octave of the shift keeps its notes on the keyboard.
fn in_c(file: &TokenFile) -> (TokenFile, Option<Key>) {
    let Some(found) = key::estimate(&key::pitch_class_beats(&file.tokens)) else {
        return (file.clone(), None);
    };
    let shift = found.shift_to_c();
    // The nearest shift first, then the same move an octave the other way (a piece high or low on the keyboard).
    let other = if shift > 0 { shift - 12 } else { shift + 12 };
    for s in [shift, other] {
        if s == 0 {
            return (file.clone(), Some(found));
        }
        if let Some(tokens) = file.tokens.iter().map(|t| transpose(t, s)).collect() {
            let moved = TokenFile {
                tokens,
                ..file.clone()
            };
            return (moved, Some(found));
        }
    }
    (file.clone(), None)
}

/// What moving the files to one key did: how many were found in a major and in a minor key, and how many were left
/// as they were (no key heard, or no room on the keyboard).
#[derive(Debug, Default, PartialEq)]
pub struct KeysFound {
    pub major: usize,
    pub minor: usize,
    pub kept: usize,
}

/// Every file (each moved to C major or A minor first with `KeyMode::C`), each followed by its copies in shift order.
pub fn augment(set: &TokenSet, [lo, hi]: [i8; 2], mode: KeyMode) -> (TokenSet, KeysFound) {
    let mut files = Vec::new();
    let mut found = KeysFound::default();
    // Copies of copies are not made: a file that is already a copy is kept as it is.
    for file in &set.files {
        let file = match mode {
            KeyMode::C if file.origin.is_none() => {
                let (moved, key) = in_c(file);
                match key {
                    Some(Key { minor: true, .. }) => found.minor += 1,
                    Some(_) => found.major += 1,
                    None => found.kept += 1,
                }
                moved
            }
            _ => file.clone(),
        };
        let copies: Vec<TokenFile> = match file.origin {
            None => (lo..=hi)
                .filter(|&s| s != 0)
                .filter_map(|s| copy_of(&file, s))
                .collect(),
            Some(_) => Vec::new(),
        };
        files.push(file);
        files.extend(copies);
    }
    let set = TokenSet {
        programs: set.programs.clone(),
        scheme: set.scheme,
        files,
    };
    (set, found)
}

impl Stage for Augment {
    fn kind(&self) -> StageKind {
        StageKind::Augment
    }

    fn params(&self) -> BTreeMap<String, serde_json::Value> {
        params_of(self)
    }

    fn run(&self, _ctx: &mut RunContext, inputs: &[&Artifact]) -> anyhow::Result<StageOutput> {
        let set = inputs[0].tokens()?;
        let (out, keys) = augment(set, self.transpose, self.key);
        let copies = out.files.iter().filter(|f| f.origin.is_some()).count()
            - set.files.iter().filter(|f| f.origin.is_some()).count();
        let mut summary = serde_json::json!({
            "files": set.files.len(),
            "copies": copies,
            "tokens": out.files.iter().map(|f| f.tokens.len()).sum::<usize>(),
        });
        if self.key == KeyMode::C {
            summary["in_major"] = keys.major.into();
            summary["in_minor"] = keys.minor.into();
            summary["key_kept"] = keys.kept.into();
        }
        Ok(StageOutput {
            summary,
            artifact: Artifact::Tokens(out),
            files: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, tokens: &str) -> TokenFile {
        TokenFile {
            path: path.into(),
            tempo: crate::artifact::DEFAULT_TEMPO,
            tokens: tokens.split_whitespace().map(str::to_string).collect(),
            origin: None,
        }
    }

    #[test]
    fn every_shift_that_stays_on_the_keyboard_makes_a_tagged_copy() {
        let set = TokenSet {
            programs: vec![0],
            scheme: crate::artifact::TokenScheme::Chord,
            files: vec![
                file("a.mid", "C4 E4 0.4.7"),
                file("top.mid", "G9 C4"),
                file("timed.mid", "C4 ~1/2 +1/2 0.4.7 ~3"),
            ],
        };
        let (out, _) = augment(&set, [-2, 1], KeyMode::AsIs);
        let paths: Vec<&str> = out.files.iter().map(|f| f.path.as_str()).collect();
        // G9 (127) cannot go up: `top.mid` has no +1 copy.
        assert_eq!(
            paths,
            [
                "a.mid",
                "a.mid@-2",
                "a.mid@-1",
                "a.mid@+1",
                "top.mid",
                "top.mid@-2",
                "top.mid@-1",
                "timed.mid",
                "timed.mid@-2",
                "timed.mid@-1",
                "timed.mid@+1"
            ]
        );
        // Time tokens keep their time.
        assert_eq!(out.files[8].tokens, ["A#3", "~1/2", "+1/2", "2.5.10", "~3"]);
        assert_eq!(out.files[1].tokens, ["A#3", "D4", "2.5.10"]);
        assert_eq!(out.files[3].tokens, ["C#4", "F4", "1.5.8"]);
        assert_eq!(
            out.files[1].origin,
            Some(Origin {
                source: "a.mid".into(),
                shift: -2
            })
        );
        assert!(out.files[0].origin.is_none());
        // No copies at [0, 0].
        assert_eq!(augment(&set, [0, 0], KeyMode::AsIs).0.files, set.files);
    }

    #[test]
    fn key_c_moves_every_file_to_c_major_or_a_minor_before_copying() {
        let set = TokenSet {
            programs: vec![0],
            scheme: crate::artifact::TokenScheme::Notes {
                grid: 12,
                max_beats: 4,
            },
            files: vec![
                // G major (up a fourth to C), D minor (down a fourth to A minor), G major reaching G9 (so down a
                // fifth instead), and silence (no key: left as it is).
                file(
                    "g.mid",
                    "+1 G4 B4 D5 ~4 +4 C5 ~1 +1 D5 ~1 +1 F#4 A4 ~1 +1 G4 ~4",
                ),
                file("d.mid", "+1 D4 F4 A4 ~4 +4 C#4 E4 A4 ~2 +2 D4 ~4"),
                file("high.mid", "+1 G8 B8 D9 ~4 +4 C9 ~1 +1 F#8 A8 ~1 +1 G9 ~4"),
                file("rest.mid", "+1"),
            ],
        };
        let (out, found) = augment(&set, [0, 1], KeyMode::C);
        let tokens = |path: &str| {
            out.files
                .iter()
                .find(|f| f.path == path)
                .unwrap()
                .tokens
                .join(" ")
        };
        assert_eq!(
            tokens("g.mid"),
            "+1 C5 E5 G5 ~4 +4 F5 ~1 +1 G5 ~1 +1 B4 D5 ~1 +1 C5 ~4"
        );
        assert_eq!(tokens("d.mid"), "+1 A3 C4 E4 ~4 +4 G#3 B3 E4 ~2 +2 A3 ~4");
        assert_eq!(
            tokens("high.mid"),
            "+1 C8 E8 G8 ~4 +4 F8 ~1 +1 B7 D8 ~1 +1 C9 ~4"
        );
        assert_eq!(tokens("rest.mid"), "+1");
        // Copies are made from the moved file, and the moved file keeps its own name (it stands for the file).
        assert_eq!(
            tokens("g.mid@+1"),
            "+1 C#5 F5 G#5 ~4 +4 F#5 ~1 +1 G#5 ~1 +1 C5 D#5 ~1 +1 C#5 ~4"
        );
        assert!(
            out.files
                .iter()
                .filter(|f| !f.path.contains('@'))
                .all(|f| f.origin.is_none())
        );
        assert_eq!(
            found,
            KeysFound {
                major: 2,
                minor: 1,
                kept: 1
            }
        );
    }
}
