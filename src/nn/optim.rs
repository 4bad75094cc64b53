//! Optimizers whose state can be saved and restored exactly, so a training run can be extended (more epochs) or
//! resumed after a crash with the same result as one uninterrupted run.
//!
//! candle-nn has SGD and AdamW but keeps their state private and has no RMSprop (the paper's optimizer). These
//! compute exactly Keras's updates (`keras.optimizers.RMSprop`, `Adam`, `AdamW`; the paper trained with Keras), which
//! differ from PyTorch's in where ε goes:
//!
//! - RMSprop (ρ = 0.9, ε = 1e-7): `v ← ρv + (1−ρ)g²`, `θ ← θ − lr·g / √(v + ε)` (PyTorch: `/(√v + ε)`).
//! - Adam (β = (0.9, 0.999), ε = 1e-7): `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//!   `θ ← θ − α·m / (√v + ε)` with `α = lr·√(1−β₂ᵗ)/(1−β₁ᵗ)`: ε is Kingma and Ba's "ε hat", added to the
//!   uncorrected √v (PyTorch adds it to the bias-corrected one).
//! - AdamW: Adam after `θ ← θ − lr·λ·θ`, with Keras's default λ = 0.004 (PyTorch's is 0.01).

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

/// The optimizer: `rmsprop` (the paper), `adam`, `adamw` or `sgd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Rmsprop,
    Adam,
    Adamw,
    Sgd,
}

const RHO: f64 = 0.9;
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-7;
/// Keras's `AdamW(weight_decay=0.004)` default.
const WEIGHT_DECAY: f64 = 0.004;

/// An optimizer over named parameters with its per-parameter state.
pub struct Optimizer {
    kind: OptimizerKind,
    lr: f64,
    params: Vec<(String, Var)>,
    /// First moment (Adam) per parameter.
    m: Vec<Option<Tensor>>,
    /// Mean square (RMSprop) or second moment (Adam) per parameter.
    v: Vec<Option<Tensor>>,
    step: u64,
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, lr: f64, params: Vec<(String, Var)>) -> Result<Self> {
        let mut m = Vec::with_capacity(params.len());
        let mut v = Vec::with_capacity(params.len());
        for (_, p) in &params {
            let zeros = || p.as_tensor().zeros_like();
            let (needs_m, needs_v) = match kind {
                OptimizerKind::Sgd => (false, false),
                OptimizerKind::Rmsprop => (false, true),
                OptimizerKind::Adam | OptimizerKind::Adamw => (true, true),
            };
            m.push(if needs_m { Some(zeros()?) } else { None });
            v.push(if needs_v { Some(zeros()?) } else { None });
        }
        Ok(Self {
            kind,
            lr,
            params,
            m,
            v,
            step: 0,
        })
    }

    /// The rate the next steps take (a schedule's, epoch by epoch); the moments and step count stay.
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Scales `grads` down so that their global L2 norm (over every parameter) is at most `max_norm`; the norm
    /// before scaling.
    pub fn clip(&self, grads: &mut GradStore, max_norm: f64) -> Result<f64> {
        let mut squares = 0.0f64;
        for (_, p) in &self.params {
            if let Some(g) = grads.get(p.as_tensor()) {
                squares += f64::from(
                    g.sqr()?
                        .sum_all()?
                        .to_dtype(candle_core::DType::F32)?
                        .to_scalar::<f32>()?,
                );
            }
        }
        let norm = squares.sqrt();
        if norm > max_norm && norm.is_finite() {
            let scale = max_norm / norm;
            for (_, p) in &self.params {
                if let Some(g) = grads.remove(p.as_tensor()) {
                    grads.insert(p.as_tensor(), (g * scale)?);
                }
            }
        }
        Ok(norm)
    }

    /// Applies one update from the gradients of `loss.backward()`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        for (i, (_, p)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            match self.kind {
                OptimizerKind::Sgd => p.set(&(p.as_tensor() - (g * self.lr)?)?)?,
                OptimizerKind::Rmsprop => {
                    let v = self.v[i].as_ref().expect("RMSprop keeps a mean square");
                    let v = ((v * RHO)? + (g.sqr()? * (1.0 - RHO))?)?;
                    let update = (g / (&v + EPS)?.sqrt()?)?;
                    p.set(&(p.as_tensor() - (update * self.lr)?)?)?;
                    self.v[i] = Some(v);
                }
                OptimizerKind::Adam | OptimizerKind::Adamw => {
                    let m = self.m[i].as_ref().expect("Adam keeps a first moment");
                    let v = self.v[i].as_ref().expect("Adam keeps a second moment");
                    let m = ((m * BETA1)? + (g * (1.0 - BETA1))?)?;
                    let v = ((v * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
                    let alpha = self.lr * (1.0 - BETA2.powi(t)).sqrt() / (1.0 - BETA1.powi(t));
                    let update = (&m / (v.sqrt()? + EPS)?)?;
                    let base = if self.kind == OptimizerKind::Adamw {
                        (p.as_tensor() * (1.0 - self.lr * WEIGHT_DECAY))?
                    } else {
                        p.as_tensor().clone()
                    };
                    p.set(&(base - (update * alpha)?)?)?;
                    self.m[i] = Some(m);
                    self.v[i] = Some(v);
                }
            }
        }
        Ok(())
    }

    /// The state as named tensors: `m.<param>`, `v.<param>` and `step`.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            if let Some(m) = &self.m[i] {
                out.insert(format!("m.{name}"), m.clone());
            }
            if let Some(v) = &self.v[i] {
                out.insert(format!("v.{name}"), v.clone());
            }
        }
        out.insert(
            "step".into(),
            Tensor::new(&[self.step as u32], &Device::Cpu)?,
        );
        Ok(out)
    }

    pub fn state_bytes(&self) -> anyhow::Result<Vec<u8>> {
        Ok(safetensors::serialize(&self.state()?, None)?)
    }

    /// Restores what [`Optimizer::state_bytes`] saved.
    pub fn load_state(&mut self, bytes: &[u8]) -> Result<()> {
        let device = self
            .params
            .first()
            .map(|(_, p)| p.device().clone())
            .unwrap_or(Device::Cpu);
        let state = candle_core::safetensors::load_buffer(bytes, &device)?;
        for (i, (name, _)) in self.params.iter().enumerate() {
            if self.m[i].is_some() {
                self.m[i] = Some(take(&state, &format!("m.{name}"))?);
            }
            if self.v[i].is_some() {
                self.v[i] = Some(take(&state, &format!("v.{name}"))?);
            }
        }
        self.step = u64::from(take(&state, "step")?.to_vec1::<u32>()?[0]);
        Ok(())
    }
}

fn take(state: &HashMap<String, Tensor>, name: &str) -> Result<Tensor> {
    state.get(name).cloned().ok_or_else(|| {
        candle_core::Error::Msg(format!("the saved optimizer state has no `{name}`"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    /// Three steps on θ = [1, −2] with the loss `θ·[0.5, −1.5]` (so the gradient is [0.5, −1.5] every step) and
    /// lr = 0.1, in f64; the parameters after each step.
    fn three_steps(kind: OptimizerKind) -> Vec<[f64; 2]> {
        let dev = Device::Cpu;
        let theta = Var::from_tensor(&Tensor::new(&[1.0f64, -2.0], &dev).unwrap()).unwrap();
        let c = Tensor::new(&[0.5f64, -1.5], &dev).unwrap();
        let mut opt = Optimizer::new(kind, 0.1, vec![("theta".into(), theta.clone())]).unwrap();
        (0..3)
            .map(|_| {
                let loss = (theta.as_tensor() * &c).unwrap().sum_all().unwrap();
                opt.step(&loss.backward().unwrap()).unwrap();
                let v: Vec<f64> = theta
                    .as_tensor()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                [v[0], v[1]]
            })
            .collect()
    }

    fn assert_close(got: &[[f64; 2]], want: &[[f64; 2]]) {
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            assert!((g - w).abs() < 1e-12, "got {got:?}, want {want:?}");
        }
    }

    /// Keras RMSprop by hand, first step of θ₀ = 1, g = 0.5: v = 0.1·0.25 = 0.025,
    /// θ = 1 − 0.1·0.5/√(0.025 + 1e-7) = 0.6837728664… (PyTorch's `/(√v + ε)` gives 0.6837725…, which fails here).
    #[test]
    fn rmsprop_is_keras_rmsprop() {
        assert_close(
            &three_steps(OptimizerKind::Rmsprop),
            &[
                [0.6837728664367966, -1.6837723042559753],
                [0.45435737405609966, -1.4543565972176584],
                [0.26226282822441516, -1.2622619253707537],
            ],
        );
    }

    /// Keras Adam by hand, first step of θ₀ = 1, g = 0.5: m = 0.05, v = 0.00025, α = 0.1·√0.001/0.1 = 0.0316227…,
    /// θ = 1 − α·0.05/(√0.00025 + 1e-7) = 0.9000006324… (PyTorch's ε placement gives 0.90000002).
    #[test]
    fn adam_is_keras_adam() {
        assert_close(
            &three_steps(OptimizerKind::Adam),
            &[
                [0.9000006324515321, -1.9000002108180662],
                [0.8000010797749726, -1.800000359926325],
                [0.7000014451046599, -1.700000481703184],
            ],
        );
    }

    /// Keras AdamW: θ ← θ − 0.1·0.004·θ, then the Adam step above: 1 − 0.0004 − 0.0999993675… = 0.8996006324….
    #[test]
    fn adamw_is_keras_adamw() {
        assert_close(
            &three_steps(OptimizerKind::Adamw),
            &[
                [0.8996006324515321, -1.8992002108180663],
                [0.799241239521992, -1.7984406798419978],
                [0.6989219083558705, -1.69772142534692],
            ],
        );
    }

    /// θ ← θ − lr·g: 1 − 0.05, −2 + 0.15, three times.
    #[test]
    fn sgd_is_plain_gradient_descent() {
        assert_close(
            &three_steps(OptimizerKind::Sgd),
            &[[0.95, -1.85], [0.9, -1.7], [0.85, -1.55]],
        );
    }

    /// Clipping scales every gradient by one factor so their global norm is `max_norm`: with the gradient
    /// [0.5, −1.5] (norm √2.5) and `max_norm` 1, SGD at lr 0.1 moves θ by 0.1 × [0.5, −1.5] / √2.5; a larger
    /// `max_norm` changes nothing.
    #[test]
    fn clipping_scales_the_gradients_to_the_global_norm() {
        let dev = Device::Cpu;
        let step = |max_norm: f64| {
            let theta = Var::from_tensor(&Tensor::new(&[1.0f64, -2.0], &dev).unwrap()).unwrap();
            let c = Tensor::new(&[0.5f64, -1.5], &dev).unwrap();
            let mut opt = Optimizer::new(
                OptimizerKind::Sgd,
                0.1,
                vec![("theta".into(), theta.clone())],
            )
            .unwrap();
            let mut grads = (theta.as_tensor() * &c)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let norm = opt.clip(&mut grads, max_norm).unwrap();
            opt.step(&grads).unwrap();
            (norm, theta.as_tensor().to_vec1::<f64>().unwrap())
        };
        let (norm, clipped) = step(1.0);
        assert!((norm - 2.5f64.sqrt()).abs() < 1e-6, "{norm}");
        let s = 0.1 / 2.5f64.sqrt();
        assert!(
            (clipped[0] - (1.0 - 0.5 * s)).abs() < 1e-9
                && (clipped[1] - (-2.0 + 1.5 * s)).abs() < 1e-9
        );
        let (_, free) = step(10.0);
        assert!(
            (free[0] - 0.95).abs() < 1e-12 && (free[1] + 1.85).abs() < 1e-12,
            "{free:?}"
        );
    }
}
