//! The note and chord tokens of the paper's vocabulary: pitch names (MIDI 60 = `C4`), chord tokens (sorted distinct
//! pitch classes, `0.4.7`), and the keys a token plays when written back to MIDI. The tokenize stage makes them; MIDI
//! writing, piano rolls and music metrics read them.
//!
//! The timed scheme adds two kinds of token around each onset's note or chord: `+3/4` (the time since the previous
//! onset, in beats) before it and `~1/2` (how long it sounds) after it, as fractions of a beat on the tokenizer's
//! grid. [`timeline`] reads either scheme back as onsets in time.

use std::collections::BTreeSet;

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

/// `token` moved by `shift` semitones: a note to another note (`None` when it would leave 0–127), a chord to the
/// chord of its pitch classes moved (they wrap around the octave); time tokens stay as they are.
pub fn transpose(token: &str, shift: i8) -> Option<String> {
    if time_token(token).is_some() {
        return Some(token.to_string());
    }
    if is_chord(token) {
        let classes: std::collections::BTreeSet<u8> = token
            .split('.')
            .map(|c| {
                c.parse::<i32>()
                    .ok()
                    .map(|c| (c + i32::from(shift)).rem_euclid(12) as u8)
            })
            .collect::<Option<_>>()?;
        let names: Vec<String> = classes.iter().map(u8::to_string).collect();
        return Some(names.join("."));
    }
    let key = i32::from(parse_pitch_name(token)?) + i32::from(shift);
    u8::try_from(key).ok().filter(|k| *k <= 127).map(pitch_name)
}

/// Whether a token is a chord (`0.4.7`) rather than a note (`C4`).
pub fn is_chord(token: &str) -> bool {
    token.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_beats_counts_the_tokens_that_start_in_time() {
        let tokens: Vec<String> = [
            "C4", "~1", "+1", "D4", "~1/2", "+1/2", "E4", "~1", "+2", "F4", "~1",
        ]
        .map(String::from)
        .to_vec();
        // C4 at 0, D4 at 1, E4 at 1.5, F4 at 3.5.
        assert_eq!(within_beats(&tokens, 0.5, 1.0), 2);
        assert_eq!(within_beats(&tokens, 0.5, 2.0), 8);
        assert_eq!(within_beats(&tokens, 0.5, 60.0), tokens.len());
        // Chord tokens: one per `step` beats.
        let chords: Vec<String> = ["C4", "D4", "E4", "F4"].map(String::from).to_vec();
        assert_eq!(within_beats(&chords, 0.5, 1.0), 2);
        assert_eq!(within_beats(&chords, 0.5, 1.2), 3);
        assert_eq!(within_beats(&chords, 0.5, 60.0), 4);
    }

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
}

/// A time token's kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeToken {
    /// `+x`: the time from the previous onset to the next, in beats.
    Shift(f64),
    /// `~x`: how long the onset before it sounds, in beats.
    Duration(f64),
}

/// `steps` grid steps of `1/grid` beat as a reduced fraction of a beat: `1/4`, `3/2`, `2`.
pub fn beats_text(steps: u32, grid: u32) -> String {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let g = gcd(steps, grid).max(1);
    let (n, d) = (steps / g, grid / g);
    if d == 1 {
        n.to_string()
    } else {
        format!("{n}/{d}")
    }
}

/// `+3/4` → a shift of 0.75 beats, `~2` → a duration of 2 beats; anything else is not a time token.
pub fn time_token(token: &str) -> Option<TimeToken> {
    let (kind, rest) = token.split_at_checked(1)?;
    let beats = match rest.split_once('/') {
        Some((n, d)) => {
            let (n, d) = (n.parse::<u32>().ok()?, d.parse::<u32>().ok()?);
            (d > 0).then(|| f64::from(n) / f64::from(d))?
        }
        None => f64::from(rest.parse::<u32>().ok()?),
    };
    match kind {
        "+" => Some(TimeToken::Shift(beats)),
        "~" => Some(TimeToken::Duration(beats)),
        _ => None,
    }
}

/// How many of `tokens`, from the first, start within the first `beats` beats as [`timeline`] times them.
pub fn within_beats(tokens: &[String], step: f64, beats: f64) -> usize {
    if !tokens.iter().any(|t| time_token(t).is_some()) {
        return ((beats / step).ceil() as usize).min(tokens.len());
    }
    let mut now = 0.0;
    for (i, t) in tokens.iter().enumerate() {
        if let Some(TimeToken::Shift(b)) = time_token(t) {
            now += b;
            if now >= beats {
                return i;
            }
        }
    }
    tokens.len()
}

/// One onset of a token sequence: when (beats from the start), the keys it plays, and for how long (beats).
#[derive(Debug, Clone, PartialEq)]
pub struct Played {
    pub beat: f64,
    pub keys: Vec<u8>,
    pub beats: f64,
}

/// The sounds a token sequence plays. With time tokens (the timed and notes schemes), `+x` moves time on and `~x`
/// sets the length of the sound before it (one without lasts `step`); sound tokens in a row (the notes scheme's
/// pitches of one onset) are one sound, and a sound after a duration with no shift between starts another sound at
/// the same onset (`C3 ~2 E4 G4 ~1`: C3 for two beats, E4 and G4 for one). Without time tokens (the paper's tokens)
/// every token sounds `step` beats after the one before, for `step`. Tokens that play nothing are skipped.
pub fn timeline(tokens: &[String], step: f64) -> Vec<Played> {
    let timed = tokens.iter().any(|t| time_token(t).is_some());
    let mut out: Vec<Played> = Vec::new();
    let mut now = 0.0;
    // Whether the token before was a sound, so this one joins it.
    let mut joins = false;
    for (i, t) in tokens.iter().enumerate() {
        match time_token(t) {
            Some(TimeToken::Shift(b)) => {
                now += b;
                joins = false;
            }
            Some(TimeToken::Duration(b)) => {
                if let Some(last) = out.last_mut() {
                    last.beats = b;
                }
                joins = false;
            }
            None => {
                if !timed {
                    now = i as f64 * step;
                }
                let Some(keys) = pitches_of(t).filter(|k| !k.is_empty()) else {
                    continue;
                };
                match out.last_mut() {
                    Some(last) if timed && joins => last.keys.extend(keys),
                    _ => out.push(Played {
                        beat: now,
                        keys,
                        beats: step,
                    }),
                }
                joins = true;
            }
        }
    }
    out
}
