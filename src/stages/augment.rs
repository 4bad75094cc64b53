//! `augment`: more training data from the same music — every file copied at every transposition in
//! `transpose = [lo, hi]` semitones that keeps all its notes on the keyboard (0–127). A copy is tagged with its
//! source file and shift, so `window` can keep a held-out file and all its copies out of training.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    CheckContext, ParamProblem, Params, RunContext, Stage, StageKind, StageOutput, params_of,
};
use crate::artifact::{Artifact, Origin, TokenFile, TokenSet};
use crate::music::tokens::transpose;

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// The lowest and highest shift in semitones, both included (e.g. `[-5, 6]`: every key of the octave).
    #[schemars(inner(range(min = -WIDEST, max = WIDEST)))]
    pub transpose: [i8; 2],
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

/// Every file, each followed by its copies in shift order.
pub fn augment(set: &TokenSet, [lo, hi]: [i8; 2]) -> TokenSet {
    let mut files = Vec::new();
    // Copies of copies are not made: a file that is already a copy is kept as it is.
    for file in &set.files {
        files.push(file.clone());
        if file.origin.is_none() {
            files.extend(
                (lo..=hi)
                    .filter(|&s| s != 0)
                    .filter_map(|s| copy_of(file, s)),
            );
        }
    }
    TokenSet {
        programs: set.programs.clone(),
        scheme: set.scheme,
        files,
    }
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
        let out = augment(set, self.transpose);
        let copies = out.files.iter().filter(|f| f.origin.is_some()).count()
            - set.files.iter().filter(|f| f.origin.is_some()).count();
        Ok(StageOutput {
            summary: serde_json::json!({
                "files": set.files.len(),
                "copies": copies,
                "tokens": out.files.iter().map(|f| f.tokens.len()).sum::<usize>(),
            }),
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
        let out = augment(&set, [-2, 1]);
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
        assert_eq!(augment(&set, [0, 0]).files, set.files);
    }
}
