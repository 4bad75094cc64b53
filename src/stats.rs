//! Confidence intervals: the mean of a few seeds' results with Student's t (how far apart two configurations must be
//! before a difference is more than seed noise), and a share of choices with Wilson's score interval (a listening
//! test's preference rate). Quantiles come from `statrs`.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// A mean with its 95 % confidence interval: `mean ± half_width`, from `n` values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanInterval {
    pub mean: f64,
    /// Student's t at 97.5 % with n − 1 degrees of freedom × the standard error; `None` for a single value.
    pub half_width: Option<f64>,
    pub n: usize,
}

impl MeanInterval {
    /// The mean of the finite `values` and its interval; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Self> {
        let values: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let half_width = (n > 1).then(|| {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            t_975(n - 1) * (var / n as f64).sqrt()
        });
        Some(MeanInterval {
            mean,
            half_width,
            n,
        })
    }

    pub fn low(&self) -> f64 {
        self.mean - self.half_width.unwrap_or(0.0)
    }

    pub fn high(&self) -> f64 {
        self.mean + self.half_width.unwrap_or(0.0)
    }

    /// Whether the two intervals share any value: the difference between them is within seed noise.
    pub fn overlaps(&self, other: &MeanInterval) -> bool {
        self.low() <= other.high() && other.low() <= self.high()
    }
}

/// Student's t quantile at 0.975 with `df` degrees of freedom (12.706 for 1, 4.303 for 2, → 1.960).
pub fn t_975(df: usize) -> f64 {
    StudentsT::new(0.0, 1.0, df as f64)
        .expect("df ≥ 1 is a valid t distribution")
        .inverse_cdf(0.975)
}

/// The normal quantile at 0.975 (1.95996…).
pub fn z_975() -> f64 {
    Normal::standard().inverse_cdf(0.975)
}

/// Wilson's 95 % score interval of a share: `successes` of `n` trials → (low, high); `None` when `n = 0`.
pub fn wilson(successes: u64, n: u64) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let (k, n) = (successes as f64, n as f64);
    let z = z_975();
    let p = k / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_are_the_tables() {
        // Any statistics table: t(0.975; 1) = 12.706, t(0.975; 2) = 4.303, t(0.975; 30) = 2.042.
        assert!((t_975(1) - 12.706).abs() < 1e-3);
        assert!((t_975(2) - 4.303).abs() < 1e-3);
        assert!((t_975(30) - 2.042).abs() < 1e-3);
        assert!((z_975() - 1.95996).abs() < 1e-5);
    }

    #[test]
    fn a_mean_interval_by_hand() {
        // 1, 2, 3: mean 2, s = 1, se = 1/√3, half width 4.3027/√3 = 2.4841.
        let m = MeanInterval::of(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((m.mean, m.n), (2.0, 3));
        assert!((m.half_width.unwrap() - 2.4841).abs() < 1e-4, "{m:?}");
        assert_eq!(MeanInterval::of(&[5.0]).unwrap().half_width, None);
        assert!(MeanInterval::of(&[]).is_none());
        let far = MeanInterval::of(&[10.0, 10.1, 9.9]).unwrap();
        assert!(m.overlaps(&m) && !m.overlaps(&far));
    }

    #[test]
    fn wilson_intervals_by_hand() {
        // 8 of 10, z = 1.96: centre (0.8 + z²/20) / (1 + z²/10) = 0.99207 / 1.38415 = 0.71674, half
        // z / 1.38415 · √(0.8 · 0.2 / 10 + z² / 400) = 1.41601 · 0.16001 = 0.22658 → (0.4902, 0.9433).
        let (lo, hi) = wilson(8, 10).unwrap();
        assert!(
            (lo - 0.4902).abs() < 1e-4 && (hi - 0.9433).abs() < 1e-4,
            "{lo} {hi}"
        );
        // 0 of 5: (0, 0.4345).
        let (lo, hi) = wilson(0, 5).unwrap();
        assert!(lo.abs() < 1e-12 && (hi - 0.4345).abs() < 1e-4, "{lo} {hi}");
        assert!(wilson(0, 0).is_none());
    }
}
