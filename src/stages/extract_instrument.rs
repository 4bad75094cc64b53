//! `extract_instrument`: keeps the notes of the `top` most frequent General MIDI programs of the corpus.
//!
//! A note's program is the last program change on its channel before it (0 when there is none). Programs are ranked
//! by note-on count over the whole corpus, most first, ties to the lower program number.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::kind::StageKind;
use super::stage::{ParamProblem, Params, RunContext, Stage, StageOutput, csv_bytes, params_of};
use crate::artifact::ReportFile;
use crate::artifact::{Artifact, Message, Note, NoteFile, NoteSet, Song};
use crate::music::gm::program_name;

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtractInstrument {
    /// Keep the N most frequent programs.
    #[serde(default = "default_top")]
    #[schemars(range(min = *TOP.start(), max = *TOP.end()))]
    pub top: u32,
}

fn default_top() -> u32 {
    1
}

/// `top`'s bounds (General MIDI's 128 programs), declared once for the schema and the check.
const TOP: std::ops::RangeInclusive<u32> = 1..=128;

impl Params for ExtractInstrument {
    fn check(&self, _: &super::stage::CheckContext) -> Vec<ParamProblem> {
        if !TOP.contains(&self.top) {
            return vec![
                ParamProblem::new(
                    "top",
                    format!(
                        "must be between {} and {}, got {}",
                        TOP.start(),
                        TOP.end(),
                        self.top
                    ),
                )
                .hint("`top` is how many of the most frequent instruments to keep"),
            ];
        }
        Vec::new()
    }
}

/// One row of `instruments.csv`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rank {
    pub rank: usize,
    pub program: u8,
    pub name: &'static str,
    pub notes: u64,
    pub kept: bool,
}

/// Calls `f(event_index, program)` for every note-on of a song, with the program in force on its channel.
/// For each event that is a note-on, the tick its note ends: its note-off, the next note-on of the same key on the
/// same channel (a re-strike), or the last event of the file.
fn note_ends(song: &Song) -> Vec<u64> {
    let last = song.events.last().map_or(0, |e| e.tick);
    let mut ends = vec![last; song.events.len()];
    let mut open: std::collections::HashMap<(u8, u8), usize> = std::collections::HashMap::new();
    for (i, e) in song.events.iter().enumerate() {
        match e.message {
            Message::NoteOn { key, .. } => {
                if let Some(j) = open.insert((e.channel, key), i) {
                    ends[j] = e.tick;
                }
            }
            Message::NoteOff { key } => {
                if let Some(j) = open.remove(&(e.channel, key)) {
                    ends[j] = e.tick;
                }
            }
            Message::ProgramChange { .. } => {}
        }
    }
    ends
}

/// The notes of `song` whose program `keep` marks, with their durations.
pub(super) fn notes_of(song: &Song, keep: &[bool; 128]) -> Vec<Note> {
    let mut notes = Vec::new();
    let ends = note_ends(song);
    for_each_note_on(song, |i, program| {
        if let (true, Message::NoteOn { key, velocity }) =
            (keep[usize::from(program)], song.events[i].message)
        {
            let tick = song.events[i].tick;
            notes.push(Note {
                tick,
                ticks: ends[i] - tick,
                key,
                velocity,
                program,
            });
        }
    });
    notes
}

fn for_each_note_on(song: &Song, mut f: impl FnMut(usize, u8)) {
    let mut program = [0u8; 16];
    for (i, e) in song.events.iter().enumerate() {
        match e.message {
            Message::ProgramChange { program: p } => program[usize::from(e.channel & 15)] = p,
            Message::NoteOn { .. } => f(i, program[usize::from(e.channel & 15)]),
            Message::NoteOff { .. } => {}
        }
    }
}

/// Ranks every program that plays at least one note: count descending, then program ascending.
pub fn rank_programs(songs: &[Song], top: usize) -> Vec<Rank> {
    let mut counts = [0u64; 128];
    for song in songs {
        for_each_note_on(song, |_, p| counts[usize::from(p & 127)] += 1);
    }
    let mut ranked: Vec<(u8, u64)> = (0..=127u8).zip(counts).filter(|&(_, n)| n > 0).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
        .into_iter()
        .enumerate()
        .map(|(i, (program, notes))| Rank {
            rank: i + 1,
            program,
            name: program_name(program),
            notes,
            kept: i < top,
        })
        .collect()
}

impl Stage for ExtractInstrument {
    fn kind(&self) -> StageKind {
        StageKind::ExtractInstrument
    }

    fn params(&self) -> BTreeMap<String, serde_json::Value> {
        params_of(self)
    }

    fn run(&self, _ctx: &mut RunContext, inputs: &[&Artifact]) -> anyhow::Result<StageOutput> {
        let corpus = inputs[0].midi()?;
        let ranking = rank_programs(&corpus.files, self.top as usize);
        if ranking.is_empty() {
            bail!(
                "no notes in any of the {} files (only drums, or empty files); nothing to extract",
                corpus.files.len()
            );
        }
        let programs: Vec<u8> = ranking
            .iter()
            .filter(|r| r.kept)
            .map(|r| r.program)
            .collect();
        let mut keep = [false; 128];
        for &p in &programs {
            keep[usize::from(p)] = true;
        }
        let files: Vec<NoteFile> = corpus
            .files
            .iter()
            .map(|song| {
                let notes = notes_of(song, &keep);
                NoteFile {
                    path: song.path.clone(),
                    ticks_per_beat: song.ticks_per_beat,
                    tempo: song.tempo,
                    notes,
                }
            })
            .collect();
        let kept_notes: usize = files.iter().map(|f| f.notes.len()).sum();
        let files_with_notes = files.iter().filter(|f| !f.notes.is_empty()).count();
        let kept: Vec<_> = ranking
            .iter()
            .filter(|r| r.kept)
            .map(|r| serde_json::json!({ "program": r.program, "name": r.name, "notes": r.notes }))
            .collect();
        Ok(StageOutput {
            summary: serde_json::json!({
                "programs_kept": kept,
                "notes_kept": kept_notes,
                "files_with_notes": files_with_notes,
            }),
            files: vec![ReportFile {
                name: "instruments.csv".into(),
                bytes: csv_bytes(&ranking)?,
            }],
            artifact: Artifact::Notes(NoteSet { programs, files }),
        })
    }
}
