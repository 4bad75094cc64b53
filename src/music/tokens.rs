//! The note and chord tokens of the paper's vocabulary: pitch names (MIDI 60 = `C4`), chord tokens (sorted distinct
//! pitch classes, `0.4.7`), and the keys a token plays when written back to MIDI. The tokenize stage makes them; MIDI
//! writing, piano rolls and music metrics read them.

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

/// Whether a token is a chord (`0.4.7`) rather than a note (`C4`).
/// `token` moved by `shift` semitones: a note to another note (`None` when it would leave 0–127), a chord to the
/// chord of its pitch classes moved (they wrap around the octave).
pub fn transpose(token: &str, shift: i8) -> Option<String> {
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

pub fn is_chord(token: &str) -> bool {
    token.starts_with(|c: char| c.is_ascii_digit())
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
}
