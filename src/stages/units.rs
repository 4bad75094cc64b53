//! The units a held-out loss is read in besides nats per token: bits per onset and bits per quarter note, which
//! compare across token schemes (a timed onset is three tokens, a chord-scheme onset one). The LSTM's every epoch
//! and the n-gram floor are both scaled by the same [`LossUnits`], made once from the validation targets.

use crate::artifact::{LossUnits, Split, TokenScheme, WindowSet};
use crate::music::tokens::{TimeToken, time_token};

/// The units of the losses scored on `windows`' validation targets (the token after each whole window): targets
/// per note-or-chord target, and targets per quarter note the targets' shifts advance (timed schemes only).
pub fn loss_units(windows: &WindowSet) -> LossUnits {
    let (mut targets, mut onsets, mut quarters) = (0usize, 0usize, 0.0f64);
    let voiced = matches!(windows.scheme, TokenScheme::Notes { .. });
    for start in windows.starts(Split::Validation) {
        targets += 1;
        let (window, target) = windows.window(start);
        match time_token(&windows.tokens[target as usize]) {
            // Under `notes` an onset's pitches are several sound tokens: only the first, right after its shift,
            // starts it.
            None if voiced => {
                let before = window
                    .last()
                    .map(|&id| time_token(&windows.tokens[id as usize]));
                if matches!(before, Some(Some(TimeToken::Shift(_))) | None) {
                    onsets += 1;
                }
            }
            None => onsets += 1,
            Some(TimeToken::Shift(beats)) => quarters += beats,
            Some(TimeToken::Duration(_)) => {}
        }
    }
    let timed = windows.scheme.timed();
    LossUnits {
        tokens_per_onset: (onsets > 0).then(|| targets as f64 / onsets as f64),
        tokens_per_quarter: (timed && quarters > 0.0).then(|| targets as f64 / quarters),
    }
}
