//! `tokenize`: turns each file's notes into note and chord tokens, grouping notes by exact onset tick.
//!
//! One distinct pitch at an onset is a note token named with octave and sharps (MIDI 60 = `C4`); two or more are a
//! chord token, the sorted distinct pitch classes joined by `.` (C4+E4+G4 → `0.4.7`, C4+C5 → `0`), as in the paper.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Params, RunContext, Stage, StageKind, StageOutput, params_of};
use crate::artifact::{Artifact, Note, TokenFile, TokenSet};
use crate::music::tokens::{is_chord, token_for};

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
                origin: None,
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
