//! The order a token scheme's tokens come in, which the sampler keeps so that every generated piece decodes: under
//! `timed`, shift → note or chord → duration → shift; under `notes`, shift → pitches rising, each run of them closed
//! by its duration → the next shift. The paper's tokens have no order to keep.

use crate::artifact::TokenScheme;
use crate::music::tokens::{TimeToken, parse_pitch_name, time_token};

/// What kind of token an id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Shift,
    Sound,
    Duration,
}

/// A vocabulary's grammar: each id's class and, for a pitch token, its key.
#[derive(Debug)]
pub struct Grammar {
    classes: Vec<Class>,
    keys: Vec<Option<u8>>,
    /// The notes scheme: several rising pitches per onset.
    voiced: bool,
}

/// Where a sequence stands: the class of its last token and, under `notes`, the highest key of its current onset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    last: Option<Class>,
    top: Option<u8>,
}

impl Grammar {
    /// The grammar of `vocabulary` under `scheme`; `None` for the paper's tokens, which may come in any order.
    pub fn of(vocabulary: &[String], scheme: TokenScheme) -> Option<Self> {
        scheme.timed().then(|| Self {
            classes: vocabulary
                .iter()
                .map(|t| match time_token(t) {
                    Some(TimeToken::Shift(_)) => Class::Shift,
                    Some(TimeToken::Duration(_)) => Class::Duration,
                    None => Class::Sound,
                })
                .collect(),
            keys: vocabulary.iter().map(|t| parse_pitch_name(t)).collect(),
            voiced: matches!(scheme, TokenScheme::Notes { .. }),
        })
    }

    /// The state after `ids`, from the start.
    pub fn state_after(&self, ids: &[u32]) -> State {
        ids.iter()
            .fold(State::default(), |state, &id| self.update(state, id))
    }

    /// The state after `id` follows `state`.
    pub fn update(&self, state: State, id: u32) -> State {
        let class = self.classes.get(id as usize).copied();
        State {
            last: class,
            top: match class {
                Some(Class::Shift) | None => None,
                Some(Class::Sound) => self.keys[id as usize],
                Some(Class::Duration) => state.top,
            },
        }
    }

    /// Whether `id` may follow `state`.
    pub fn allows(&self, state: State, id: usize) -> bool {
        let (Some(last), Some(&class)) = (state.last, self.classes.get(id)) else {
            return true;
        };
        if !self.voiced {
            return class
                == match last {
                    Class::Sound => Class::Duration,
                    Class::Duration => Class::Shift,
                    Class::Shift => Class::Sound,
                };
        }
        let rises = || self.keys[id].is_some_and(|k| state.top.is_none_or(|top| k > top));
        match (last, class) {
            (Class::Shift, Class::Sound) => self.keys[id].is_some(),
            (Class::Sound, Class::Duration) | (Class::Duration, Class::Shift) => true,
            (Class::Sound | Class::Duration, Class::Sound) => rises(),
            _ => false,
        }
    }

    /// Re-tempers the time tokens (shifts and durations) among themselves: where sampling at `temperature` gives
    /// the time tokens together the share P, each time token `t` gets P · softmax(logit / `rhythm`)ₜ instead, written
    /// back as the logit that one division by `temperature` turns into it. So `rhythm` changes which shift or duration
    /// comes, never whether one comes: under `notes`, where an onset's next token is a higher pitch or its
    /// duration, tempering the duration alone would change how many notes each onset gets.
    pub fn temper_time(&self, logits: &mut [f32], temperature: f64, rhythm: f64) {
        let time: Vec<usize> = (0..logits.len())
            .filter(|&i| {
                matches!(self.classes.get(i), Some(Class::Shift | Class::Duration))
                    && logits[i].is_finite()
            })
            .collect();
        let Some(max) = time.iter().map(|&i| f64::from(logits[i])).reduce(f64::max) else {
            return;
        };
        // log Σ exp((l − max) / τ), for the share at `temperature` and the spread at `rhythm`.
        let log_sum = |tau: f64| {
            time.iter()
                .map(|&i| ((f64::from(logits[i]) - max) / tau).exp())
                .sum::<f64>()
                .ln()
        };
        let (share, spread) = (log_sum(temperature), log_sum(rhythm));
        for &i in &time {
            let l = (f64::from(logits[i]) - max) / rhythm - spread + share;
            logits[i] = (temperature * l + max) as f32;
        }
    }

    /// Sets the logits of the ids that may not follow `state` to −∞ (none, if that would leave nothing).
    pub fn mask(&self, state: State, logits: &mut [f32]) {
        if !(0..logits.len()).any(|id| self.allows(state, id)) {
            return;
        }
        for (id, l) in logits.iter_mut().enumerate() {
            if !self.allows(state, id) {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary(tokens: &str) -> Vec<String> {
        let mut v: Vec<String> = tokens.split_whitespace().map(str::to_string).collect();
        v.sort();
        v
    }

    fn id(v: &[String], t: &str) -> u32 {
        v.iter().position(|x| x == t).unwrap() as u32
    }

    /// Under `notes`, pitches rise within an onset, every run is closed by a duration before the next shift, and
    /// a shift is followed by a pitch.
    #[test]
    fn notes_pitches_rise_within_an_onset_and_durations_close_it() {
        let v = vocabulary("+1 +1/2 ~1 ~2 C3 E4 G4 C5");
        let g = Grammar::of(
            &v,
            TokenScheme::Notes {
                grid: 12,
                max_beats: 4,
            },
        )
        .unwrap();
        let ids = |s: &str| s.split_whitespace().map(|t| id(&v, t)).collect::<Vec<_>>();
        let may = |history: &str, next: &str| {
            g.allows(g.state_after(&ids(history)), id(&v, next) as usize)
        };
        assert!(may("C3", "E4") && may("C3", "~2") && !may("C3", "+1"));
        assert!(!may("E4", "C3") && !may("E4", "E4"));
        assert!(
            may("C3 ~2", "E4") && may("C3 ~2", "+1") && !may("C3 ~2", "C3") && !may("C3 ~2", "~1")
        );
        assert!(may("C3 ~2 +1", "C3") && !may("C3 ~2 +1", "~1") && !may("C3 ~2 +1", "+1/2"));
        // Timed: sound, duration, shift, in turn.
        let g = Grammar::of(
            &v,
            TokenScheme::Timed {
                grid: 12,
                max_beats: 4,
            },
        )
        .unwrap();
        let may = |history: &str, next: &str| {
            g.allows(g.state_after(&ids(history)), id(&v, next) as usize)
        };
        assert!(!may("C3", "E4") && may("C3", "~2") && may("C3 ~2", "+1") && !may("C3 ~2", "E4"));
        assert!(Grammar::of(&v, TokenScheme::Chord).is_none());
    }
}
