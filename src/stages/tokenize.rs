//! `tokenize`: turns each file's notes into note and chord tokens.
//!
//! One distinct pitch at an onset is a note token named with octave and sharps (MIDI 60 = `C4`); two or more are a
//! chord token, the sorted distinct pitch classes joined by `.` (C4+E4+G4 → `0.4.7`, C4+C5 → `0`), as in the paper.
//!
//! `scheme = "chord"` (the default, the paper's) groups notes by exact onset tick and keeps nothing of time.
//! `scheme = "timed"` puts every onset on a grid of `grid` steps per beat (notes on one step are one chord) and
//! writes, per onset, the time since the previous one (`+1/2`), the note or chord, and how long it sounds (`~1/4`,
//! its longest note), both capped at `max_beats`: rhythm and rests survive, as in miditok's TSD.
//! `scheme = "notes"` keeps the voicing too: per onset the shift, then every note's own pitch token (`C3 E4 G4`,
//! lowest first), each run of notes of one length followed by that length (`C3 ~2 E4 G4 ~1`: the bass two beats, the
//! rest one; one duration for the whole onset when all are equal).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::kind::StageKind;
use super::stage::{Params, RunContext, Stage, StageOutput, params_of};
use crate::artifact::{Artifact, Note, TokenFile, TokenScheme, TokenSet};
use crate::music::tokens::{beats_text, is_chord, pitch_name, time_token, token_for};

/// Tokens of one file, in onset order.
pub fn tokenize_notes(notes: &[Note]) -> Vec<String> {
    let mut onsets: BTreeMap<u64, BTreeSet<u8>> = BTreeMap::new();
    for n in notes {
        onsets.entry(n.tick).or_default().insert(n.key);
    }
    onsets.values().map(token_for).collect()
}

/// The timed tokens of one file whose beat is `ticks_per_beat` ticks long.
pub fn tokenize_timed(
    notes: &[Note],
    ticks_per_beat: u16,
    grid: u32,
    max_beats: u32,
) -> Vec<String> {
    let step = f64::from(ticks_per_beat) / f64::from(grid);
    let cap = grid * max_beats;
    let steps = |ticks: u64| (ticks as f64 / step).round() as u64;
    // Grid step → (keys, longest duration in steps).
    let mut onsets: BTreeMap<u64, (BTreeSet<u8>, u64)> = BTreeMap::new();
    for n in notes {
        let slot = onsets.entry(steps(n.tick)).or_default();
        slot.0.insert(n.key);
        slot.1 = slot.1.max(steps(n.ticks));
    }
    let mut tokens = Vec::with_capacity(onsets.len() * 3);
    let mut previous = None;
    for (at, (keys, length)) in &onsets {
        if let Some(p) = previous {
            let shift = u32::try_from(at - p).unwrap_or(u32::MAX).min(cap);
            tokens.push(format!("+{}", beats_text(shift, grid)));
        }
        tokens.push(token_for(keys));
        let length = u32::try_from(*length).unwrap_or(u32::MAX).clamp(1, cap);
        tokens.push(format!("~{}", beats_text(length, grid)));
        previous = Some(*at);
    }
    tokens
}

/// The `notes` tokens of one file whose beat is `ticks_per_beat` ticks long.
///
/// A key struck again while it still sounds ends there (what one MIDI channel can play; the notes may come from
/// several), so every note's length is what a written file gives back and tokens → MIDI → tokens is exact.
pub fn tokenize_voiced(
    notes: &[Note],
    ticks_per_beat: u16,
    grid: u32,
    max_beats: u32,
) -> Vec<String> {
    let step = f64::from(ticks_per_beat) / f64::from(grid);
    let cap = u64::from(grid * max_beats);
    let steps = |ticks: u64| (ticks as f64 / step).round() as u64;
    // Grid step → key → its length in steps (a key struck twice on one step: the longer).
    let mut onsets: BTreeMap<u64, BTreeMap<u8, u64>> = BTreeMap::new();
    for n in notes {
        let length = onsets
            .entry(steps(n.tick))
            .or_default()
            .entry(n.key)
            .or_default();
        *length = (*length).max(steps(n.ticks));
    }
    let mut next_strike: BTreeMap<u8, u64> = BTreeMap::new();
    for (at, keys) in onsets.iter_mut().rev() {
        for (key, length) in keys.iter_mut() {
            let until = next_strike.get(key).map_or(u64::MAX, |next| next - at);
            *length = (*length).min(until).clamp(1, cap);
            next_strike.insert(*key, *at);
        }
    }
    let mut tokens = Vec::new();
    let mut previous: Option<u64> = None;
    for (at, keys) in &onsets {
        if let Some(p) = previous {
            let shift = u32::try_from((at - p).min(cap)).unwrap_or(u32::MAX);
            tokens.push(format!("+{}", beats_text(shift, grid)));
        }
        let keys: Vec<(u8, u64)> = keys.iter().map(|(k, l)| (*k, *l)).collect();
        for (i, (key, length)) in keys.iter().enumerate() {
            tokens.push(pitch_name(*key));
            if keys.get(i + 1).is_none_or(|(_, next)| next != length) {
                tokens.push(format!("~{}", beats_text(*length as u32, grid)));
            }
        }
        previous = Some(*at);
    }
    tokens
}

/// The tokens of one file's notes under `scheme` (a file without metrical timing is read as 480 ticks a beat).
pub fn tokens_of(notes: &[Note], ticks_per_beat: Option<u16>, scheme: TokenScheme) -> Vec<String> {
    match scheme {
        TokenScheme::Chord => tokenize_notes(notes),
        TokenScheme::Timed { grid, max_beats } => tokenize_timed(
            notes,
            ticks_per_beat.unwrap_or(FALLBACK_TICKS_PER_BEAT),
            grid,
            max_beats,
        ),
        TokenScheme::Notes { grid, max_beats } => tokenize_voiced(
            notes,
            ticks_per_beat.unwrap_or(FALLBACK_TICKS_PER_BEAT),
            grid,
            max_beats,
        ),
    }
}

/// How notes become tokens.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// The paper's: one note or chord token per onset, no time.
    #[default]
    Chord,
    /// Time since the previous onset, note or chord, duration.
    Timed,
    /// Time since the previous onset, then every note's pitch with its octave, lowest first, and durations: the
    /// voicing survives.
    Notes,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tokenize {
    #[serde(default)]
    pub scheme: Scheme,
    /// Grid steps per beat for `timed` and `notes` (12: sixteenths and eighth-note triplets).
    #[serde(default = "default_grid")]
    #[schemars(range(min = *GRID.start(), max = *GRID.end()))]
    pub grid: u32,
    /// The longest shift or duration `timed` and `notes` write, in beats; longer ones are cut to it.
    #[serde(default = "default_max_beats")]
    #[schemars(range(min = *MAX_BEATS.start(), max = *MAX_BEATS.end()))]
    pub max_beats: u32,
}

impl Tokenize {
    /// The settings the tokens record, so a primer file can be tokenized the same way later.
    pub fn scheme(&self) -> TokenScheme {
        match self.scheme {
            Scheme::Chord => TokenScheme::Chord,
            Scheme::Timed => TokenScheme::Timed {
                grid: self.grid,
                max_beats: self.max_beats,
            },
            Scheme::Notes => TokenScheme::Notes {
                grid: self.grid,
                max_beats: self.max_beats,
            },
        }
    }
}

fn default_grid() -> u32 {
    12
}

fn default_max_beats() -> u32 {
    4
}

/// Files without a metrical timing (SMPTE time code) are read as if a beat were this many ticks.
const FALLBACK_TICKS_PER_BEAT: u16 = 480;

/// `grid`'s bounds, declared once for the schema and the check.
const GRID: std::ops::RangeInclusive<u32> = 1..=96;
/// `max_beats`'s bounds.
const MAX_BEATS: std::ops::RangeInclusive<u32> = 1..=64;

impl Params for Tokenize {
    fn check(&self, _: &super::stage::CheckContext) -> Vec<super::stage::ParamProblem> {
        let mut p = Vec::new();
        if !GRID.contains(&self.grid) {
            p.push(
                super::stage::ParamProblem::new(
                    "grid",
                    format!("must be between {} and {}, got {}", GRID.start(), GRID.end(), self.grid),
                )
                    .hint("`grid` is the steps per beat onsets and durations are rounded to (12: sixteenths and triplets)"),
            );
        }
        if !MAX_BEATS.contains(&self.max_beats) {
            p.push(
                super::stage::ParamProblem::new(
                    "max_beats",
                    format!(
                        "must be between {} and {}, got {}",
                        MAX_BEATS.start(),
                        MAX_BEATS.end(),
                        self.max_beats
                    ),
                )
                .hint("`max_beats` caps the rests and durations `timed` writes, in beats"),
            );
        }
        p
    }
}

impl Stage for Tokenize {
    fn kind(&self) -> StageKind {
        StageKind::Tokenize
    }

    /// Nothing for the paper's scheme (so its results from before the timed scheme stay cached); the grid and cap
    /// only for `timed`.
    fn params(&self) -> BTreeMap<String, serde_json::Value> {
        match self.scheme {
            Scheme::Chord => BTreeMap::new(),
            Scheme::Timed | Scheme::Notes => params_of(self),
        }
    }

    fn run(&self, _ctx: &mut RunContext, inputs: &[&Artifact]) -> anyhow::Result<StageOutput> {
        let notes = inputs[0].notes()?;
        let files: Vec<TokenFile> = notes
            .files
            .iter()
            .filter(|f| !f.notes.is_empty())
            .map(|f| TokenFile {
                path: f.path.clone(),
                tempo: f.tempo,
                tokens: tokens_of(&f.notes, f.ticks_per_beat, self.scheme()),
                origin: None,
            })
            .collect();
        let total: usize = files.iter().map(|f| f.tokens.len()).sum();
        let chords: usize = files
            .iter()
            .flat_map(|f| &f.tokens)
            .filter(|t| is_chord(t))
            .count();
        let times: usize = files
            .iter()
            .flat_map(|f| &f.tokens)
            .filter(|t| time_token(t).is_some())
            .count();
        Ok(StageOutput {
            summary: serde_json::json!({
                "files": files.len(),
                "tokens": total,
                "note_tokens": total - chords - times,
                "chord_tokens": chords,
                "time_tokens": times,
            }),
            artifact: Artifact::Tokens(TokenSet {
                programs: notes.programs.clone(),
                scheme: self.scheme(),
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
            ticks: 1,
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

    fn note(tick: u64, ticks: u64, key: u8) -> Note {
        Note {
            tick,
            ticks,
            key,
            velocity: 90,
            program: 0,
        }
    }

    /// Tokens → a MIDI file → its notes (as `extract_instrument` reads them) → tokens again, by `tokenize`.
    fn through_midi(
        tokens: &[String],
        tokenize: impl Fn(&[Note], u16) -> Vec<String>,
    ) -> Vec<String> {
        let bytes =
            crate::music::midi::write_tokens(tokens, 0, 0.5, crate::artifact::DEFAULT_TEMPO)
                .unwrap();
        let song = crate::music::ingest::read_song("x.mid", &bytes)
            .unwrap()
            .song;
        let notes = super::super::extract_instrument::notes_of(&song, &[true; 128]);
        tokenize(&notes, song.ticks_per_beat.unwrap())
    }

    /// Timed tokens through MIDI and back.
    fn round_trip(tokens: &[String], grid: u32) -> Vec<String> {
        through_midi(tokens, |notes, tpb| tokenize_timed(notes, tpb, grid, 4))
    }

    /// Notes-scheme tokens through MIDI and back.
    fn voiced_round_trip(tokens: &[String]) -> Vec<String> {
        through_midi(tokens, |notes, tpb| tokenize_voiced(notes, tpb, 12, 4))
    }

    fn seq(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn timed_tokens_say_when_what_and_how_long() {
        // 480 ticks a beat, grid 12 (40 ticks a step): C4 for a beat, an eighth-note triplet chord a beat later
        // (nudged by 7 ticks, rounded to the grid), a rest of 9 beats (cut to 4), then a sixteenth.
        let notes = [
            note(0, 480, 60),
            note(487, 160, 60),
            note(480, 150, 64),
            note(480, 160, 67),
            note(487 + 9 * 480, 120, 72),
        ];
        assert_eq!(
            tokenize_timed(&notes, 480, 12, 4),
            seq("C4 ~1 +1 0.4.7 ~1/3 +4 C5 ~1/4")
        );
    }

    #[test]
    fn timed_tokens_round_trip_through_midi() {
        for tokens in [
            "C4 ~1 +1 0.4.7 ~1/3 +1/3 D4 ~2/3 +2/3 0 ~1/2 +4 B3 ~4",
            "A#2 ~1/12 +1/12 A#2 ~1/12 +1/12 C7 ~3/2",
            "E4 ~1/4",
        ] {
            assert_eq!(round_trip(&seq(tokens), 12), seq(tokens), "{tokens}");
        }
    }

    #[test]
    fn a_real_file_round_trips_once_its_overlaps_are_resolved() {
        // A key struck again while it still sounds ends there (MIDI cannot play one key twice on a channel), so
        // the first trip may shorten such durations; after it, the tokens are a fixed point.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/openmsx");
        let Some(path) = std::fs::read_dir(&dir).ok().and_then(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "mid"))
                .min()
        }) else {
            panic!("no MIDI files under {}", dir.display());
        };
        let bytes = std::fs::read(&path).unwrap();
        let song = crate::music::ingest::read_song("song.mid", &bytes)
            .unwrap()
            .song;
        let notes = super::super::extract_instrument::notes_of(&song, &[true; 128]);
        let tokens = tokenize_timed(&notes, song.ticks_per_beat.unwrap_or(480), 12, 4);
        assert!(tokens.len() > 100, "{}", path.display());
        let once = round_trip(&tokens, 12);
        assert_eq!(round_trip(&once, 12), once, "{}", path.display());
        // Onsets and pitches survive the first trip untouched.
        let sounds = |t: &[String]| -> Vec<String> {
            t.iter().filter(|t| !t.starts_with('~')).cloned().collect()
        };
        assert_eq!(sounds(&once), sounds(&tokens));
    }

    #[test]
    fn notes_tokens_keep_every_voice_with_its_octave_and_length() {
        // A C-major chord with a held bass (two beats) under three one-beat notes, then a D4 a beat later.
        let notes = [
            note(0, 960, 48),
            note(0, 480, 64),
            note(0, 480, 67),
            note(0, 480, 72),
            note(480, 480, 62),
        ];
        assert_eq!(
            tokenize_voiced(&notes, 480, 12, 4),
            seq("C3 ~2 E4 G4 C5 ~1 +1 D4 ~1")
        );
        // All of one length: one duration for the onset.
        let notes = [note(0, 240, 60), note(0, 240, 64)];
        assert_eq!(tokenize_voiced(&notes, 480, 12, 4), seq("C4 E4 ~1/2"));
    }

    #[test]
    fn notes_tokens_round_trip_through_midi_with_overlapping_voices_and_restrikes() {
        // Two voices overlapping in time; a key struck again while it sounds (from another channel: it is cut there,
        // what one channel can play); a rest longer than the cap.
        let notes = [
            note(0, 1920, 48),
            note(0, 480, 64),
            note(240, 960, 67),
            note(480, 480, 64),
            note(960, 480, 48),
            note(960 + 10 * 480, 120, 72),
        ];
        let tokens = tokenize_voiced(&notes, 480, 12, 4);
        assert_eq!(
            tokens,
            seq("C3 ~2 E4 ~1 +1/2 G4 ~2 +1/2 E4 ~1 +1 C3 ~1 +4 C5 ~1/4")
        );
        assert_eq!(voiced_round_trip(&tokens), tokens);
        for made_up in [
            "C3 ~2 E4 G4 C5 ~1 +1 D4 ~1",
            "A0 ~1/12 C8 ~4 +1/12 A0 ~1/12 +1/12 B0 C1 ~3/2",
            "E4 ~1/4",
        ] {
            assert_eq!(voiced_round_trip(&seq(made_up)), seq(made_up), "{made_up}");
        }
    }

    #[test]
    fn notes_tokens_round_trip_exactly_on_every_openmsx_file() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/openmsx");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "mid"))
            .collect();
        files.sort();
        assert!(files.len() >= 30, "{} files", files.len());
        for path in files {
            let bytes = std::fs::read(&path).unwrap();
            let song = crate::music::ingest::read_song("song.mid", &bytes)
                .unwrap()
                .song;
            let notes = super::super::extract_instrument::notes_of(&song, &[true; 128]);
            let tokens = tokenize_voiced(&notes, song.ticks_per_beat.unwrap_or(480), 12, 4);
            assert!(tokens.len() > 100, "{}", path.display());
            assert!(voiced_round_trip(&tokens) == tokens, "{}", path.display());
        }
    }
}
