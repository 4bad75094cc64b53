//! The learning rate of a `train` stage, epoch by epoch: constant (the paper), halved on a plateau of the validation
//! loss, or a cosine down to zero, each after an optional linear warm-up. It is a function of the epoch and the
//! losses so far alone, so a resumed training gets exactly the rates an uninterrupted one did.

use serde::{Deserialize, Serialize};

use crate::artifact::EpochStats;

/// How the learning rate changes over a training.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// `learning_rate` throughout (the paper).
    #[default]
    Constant,
    /// Halved each time `lr_patience` epochs pass without a lower validation loss.
    Plateau,
    /// From `learning_rate` down to 0 over the epochs after the warm-up, along half a cosine.
    Cosine,
}

impl LrSchedule {
    pub fn is_constant(&self) -> bool {
        *self == Self::Constant
    }
}

/// A schedule with its settings.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub kind: LrSchedule,
    /// The rate it starts from (after the warm-up).
    pub base: f64,
    pub epochs: u32,
    /// Epochs of linear warm-up, from `base / (warmup + 1)` up to `base`.
    pub warmup: u32,
    /// For `plateau`: epochs without a lower validation loss before each halving.
    pub patience: u32,
}

impl Schedule {
    /// The rate of epoch `epoch` (0-based), given the epochs before it.
    pub fn rate(&self, epoch: usize, before: &[EpochStats]) -> f64 {
        let warmup = self.warmup as usize;
        if epoch < warmup {
            return self.base * (epoch + 1) as f64 / (warmup + 1) as f64;
        }
        match self.kind {
            LrSchedule::Constant => self.base,
            LrSchedule::Cosine => {
                let span = (self.epochs as usize).saturating_sub(warmup).max(1) as f64;
                let progress = (epoch - warmup) as f64 / span;
                self.base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            LrSchedule::Plateau => {
                self.base * 0.5f64.powi(self.halvings(&before[..epoch.min(before.len())]))
            }
        }
    }

    /// How many times the validation loss of `history` stalled for `patience` epochs.
    fn halvings(&self, history: &[EpochStats]) -> i32 {
        let (mut best, mut since, mut halvings) = (f64::INFINITY, 0u32, 0);
        for loss in history.iter().filter_map(|h| h.val_loss) {
            if loss < best {
                best = loss;
                since = 0;
            } else {
                since += 1;
                if since >= self.patience.max(1) {
                    halvings += 1;
                    since = 0;
                }
            }
        }
        halvings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epochs(losses: &[f64]) -> Vec<EpochStats> {
        losses
            .iter()
            .enumerate()
            .map(|(i, &l)| EpochStats {
                epoch: i + 1,
                train_loss: l,
                val_loss: Some(l),
                val_accuracy: None,
                seconds: 0.0,
            })
            .collect()
    }

    fn schedule(kind: LrSchedule, warmup: u32) -> Schedule {
        Schedule {
            kind,
            base: 0.01,
            epochs: 10,
            warmup,
            patience: 2,
        }
    }

    #[test]
    fn plateau_halves_after_each_stall_of_patience_epochs() {
        let s = schedule(LrSchedule::Plateau, 0);
        let h = epochs(&[3.0, 2.0, 2.5, 2.4, 1.9, 2.0, 2.1, 2.2, 2.3]);
        let rates: Vec<f64> = (0..=h.len()).map(|e| s.rate(e, &h)).collect();
        // Stalls end after epochs 4 (2.5, 2.4 ≥ 2.0), 7 (2.0, 2.1 ≥ 1.9) and 9 (2.2, 2.3).
        assert_eq!(
            rates,
            [
                0.01, 0.01, 0.01, 0.01, 0.005, 0.005, 0.005, 0.0025, 0.0025, 0.00125
            ]
        );
    }

    #[test]
    fn cosine_falls_from_the_rate_to_zero_after_a_linear_warm_up() {
        let s = schedule(LrSchedule::Cosine, 2);
        let r = |e| s.rate(e, &[]);
        assert!((r(0) - 0.01 / 3.0).abs() < 1e-12 && (r(1) - 0.02 / 3.0).abs() < 1e-12);
        assert!((r(2) - 0.01).abs() < 1e-12);
        assert!((r(6) - 0.005).abs() < 1e-12, "{}", r(6));
        assert!(r(9) < r(8) && r(9) > 0.0);
        assert_eq!(schedule(LrSchedule::Constant, 0).rate(7, &[]), 0.01);
    }
}
