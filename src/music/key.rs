//! A piece's key, estimated as Krumhansl and Kessler did: the major or minor key whose profile (how well each
//! degree of the scale is heard to fit, from their listening experiments) correlates best with how long each pitch
//! class sounds in the piece. `augment` uses it to move every file to C major or A minor before training, as
//! BachBot did, so that a model never has to guess which of twelve keys a window is in.

use super::tokens::timeline;

/// Krumhansl–Kessler probe-tone ratings of the major key's degrees, tonic first.
const MAJOR: [f64; 12] = [
    6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88,
];
/// The same for the minor key.
const MINOR: [f64; 12] = [
    6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17,
];

/// A major or minor key: its tonic's pitch class (0 = C) and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub tonic: u8,
    pub minor: bool,
}

impl Key {
    /// The shift in semitones, −5 to +6, that moves this key to C major (a major key) or A minor (a minor one).
    pub fn shift_to_c(self) -> i8 {
        let target = if self.minor { 9 } else { 0 };
        let up = (target - i32::from(self.tonic)).rem_euclid(12);
        (if up > 6 { up - 12 } else { up }) as i8
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NAMES: [&str; 12] = [
            "C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
        ];
        let mode = if self.minor { "minor" } else { "major" };
        write!(f, "{} {mode}", NAMES[usize::from(self.tonic % 12)])
    }
}

/// How many beats each pitch class sounds in a token sequence (chord tokens, which carry no time, count one each).
pub fn pitch_class_beats(tokens: &[String]) -> [f64; 12] {
    let mut beats = [0.0; 12];
    for played in timeline(tokens, 1.0) {
        for key in played.keys {
            beats[usize::from(key % 12)] += played.beats;
        }
    }
    beats
}

/// The key whose profile correlates best with `beats`; `None` when nothing sounds or every class sounds equally
/// (no key is heard then).
pub fn estimate(beats: &[f64; 12]) -> Option<Key> {
    let mut best: Option<(f64, Key)> = None;
    for (profile, minor) in [(&MAJOR, false), (&MINOR, true)] {
        for tonic in 0..12u8 {
            // The profile rotated so that its tonic sits on `tonic`.
            let rotated: [f64; 12] =
                std::array::from_fn(|class| profile[(class + 12 - usize::from(tonic)) % 12]);
            let Some(r) = correlation(beats, &rotated) else {
                continue;
            };
            if best.is_none_or(|(b, _)| r > b) {
                best = Some((r, Key { tonic, minor }));
            }
        }
    }
    best.map(|(_, key)| key)
}

/// Pearson's correlation, `None` when either side does not vary.
fn correlation(a: &[f64; 12], b: &[f64; 12]) -> Option<f64> {
    let mean = |x: &[f64; 12]| x.iter().sum::<f64>() / 12.0;
    let (ma, mb) = (mean(a), mean(b));
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma) * (x - ma);
        bb += (y - mb) * (y - mb);
    }
    (aa > 0.0 && bb > 0.0).then(|| ab / (aa * bb).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn scales_and_cadences_are_heard_in_their_keys() {
        // A G major scale with a long tonic, and a D minor one (harmonic: C#) ending on a long D.
        let g_major =
            tokens("+1 G4 ~4 +4 A4 ~1 +1 B4 ~1 +1 C5 ~1 +1 D5 ~2 +2 E5 ~1 +1 F#5 ~1 +1 G5 ~4");
        let d_minor =
            tokens("+1 D4 ~4 +4 E4 ~1 +1 F4 ~2 +2 G4 ~1 +1 A4 ~2 +2 A#4 ~1 +1 C#5 ~1 +1 D5 ~4");
        let g = estimate(&pitch_class_beats(&g_major)).unwrap();
        let d = estimate(&pitch_class_beats(&d_minor)).unwrap();
        assert_eq!(
            (g, d),
            (
                Key {
                    tonic: 7,
                    minor: false
                },
                Key {
                    tonic: 2,
                    minor: true
                }
            )
        );
        assert_eq!(
            (g.to_string(), d.to_string()),
            ("G major".into(), "D minor".into())
        );
        // The nearest way: G major up a fourth to C major, D minor down a fourth to A minor.
        assert_eq!((g.shift_to_c(), d.shift_to_c()), (5, -5));
    }

    #[test]
    fn shifts_take_the_short_way_round() {
        let shift = |tonic, minor| Key { tonic, minor }.shift_to_c();
        assert_eq!(shift(0, false), 0);
        assert_eq!(shift(9, true), 0);
        assert_eq!(shift(2, false), -2);
        assert_eq!(shift(11, false), 1);
        assert_eq!(shift(6, false), 6);
        assert_eq!(shift(0, true), -3);
        assert_eq!(shift(4, true), 5);
        for tonic in 0..12 {
            for minor in [false, true] {
                let s = shift(tonic, minor);
                assert!((-5..=6).contains(&s));
                let target = if minor { 9 } else { 0 };
                assert_eq!((i32::from(tonic) + i32::from(s)).rem_euclid(12), target);
            }
        }
    }

    #[test]
    fn silence_and_all_twelve_classes_have_no_key() {
        assert_eq!(estimate(&[0.0; 12]), None);
        assert_eq!(estimate(&[1.0; 12]), None);
    }
}
