//! Optimizers whose state can be saved and restored exactly, so a training run can be extended (more epochs) or
//! resumed after a crash with the same result as one uninterrupted run.
//!
//! candle-nn has SGD and AdamW but keeps their state private and has no RMSprop (the paper's optimizer); these
//! follow the usual definitions (RMSprop and Adam as in Keras: ρ = 0.9, β = (0.9, 0.999), ε = 1e-7).

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
const WEIGHT_DECAY: f64 = 0.01;

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
                    let update = (g / (v.sqrt()? + EPS)?)?;
                    p.set(&(p.as_tensor() - (update * self.lr)?)?)?;
                    self.v[i] = Some(v);
                }
                OptimizerKind::Adam | OptimizerKind::Adamw => {
                    let m = self.m[i].as_ref().expect("Adam keeps a first moment");
                    let v = self.v[i].as_ref().expect("Adam keeps a second moment");
                    let m = ((m * BETA1)? + (g * (1.0 - BETA1))?)?;
                    let v = ((v * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
                    let m_hat = (&m / (1.0 - BETA1.powi(t)))?;
                    let v_hat = (&v / (1.0 - BETA2.powi(t)))?;
                    let update = (m_hat / (v_hat.sqrt()? + EPS)?)?;
                    let base = if self.kind == OptimizerKind::Adamw {
                        (p.as_tensor() * (1.0 - self.lr * WEIGHT_DECAY))?
                    } else {
                        p.as_tensor().clone()
                    };
                    p.set(&(base - (update * self.lr)?)?)?;
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
