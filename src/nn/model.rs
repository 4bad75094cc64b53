//! The network of the paper as a Candle model: LSTM layers with dropout between them, a dense layer, dropout, and a
//! linear layer to the vocabulary, trained with categorical cross-entropy.
//!
//! Parameters are named as in PyTorch (`lstm.0.weight_ih`, gates in the order i, f, g, o) and become the safetensors
//! keys. Initialisation and dropout draw from seeded ChaCha generators on the host, never from the device's RNG
//! (candle cannot seed its CPU RNG), so the same seed gives the same weights and losses.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{D, DType, Device, Module, Result, Shape, Tensor, Var};
use candle_nn::init::Init;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Embedding, Linear, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// How token ids enter the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputMode {
    /// `id / vocab_size` as one float per step, as in the paper.
    Scalar,
    /// A learned vector per token.
    Embedding,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub vocab: usize,
    pub layers: usize,
    pub hidden: usize,
    pub dropout: f32,
    /// Units of the dense layer before the output; 0 = none.
    pub dense: usize,
    pub input: InputMode,
    pub embed_dim: usize,
}

impl ModelConfig {
    /// The shapes the train stage's parameter checks allow, for a configuration read back from a cache: an
    /// impossible one (no layers, no units, a vocabulary of 0) is an error here rather than a panic or an
    /// allocation of terabytes when the model is built.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let within = |name: &str, v: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("a model with {name} = {v} (allowed: {lo}–{hi})"))
            }
        };
        within("layers", self.layers, 1, 16)?;
        within("hidden", self.hidden, 1, 8192)?;
        within("dense", self.dense, 0, 8192)?;
        within("vocab", self.vocab, 1, 1 << 24)?;
        if self.input == InputMode::Embedding {
            within("embed_dim", self.embed_dim, 1, 8192)?;
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("a model with dropout = {}", self.dropout));
        }
        Ok(())
    }

    /// Width of the features fed to the first LSTM layer.
    pub fn input_dim(&self) -> usize {
        match self.input {
            InputMode::Scalar => 1,
            InputMode::Embedding => self.embed_dim,
        }
    }

    /// A lower bound on the memory a training step of `batch` windows of `seq_len` needs, in bytes: weights,
    /// gradients and two optimizer moments (f32), and each layer's gates and states for every step (kept for the
    /// backward pass, twice over for their gradients).
    /// With `every` (a loss at every step), the dense layer and the logits are kept for every step too.
    pub fn training_bytes(&self, batch: usize, seq_len: usize, every: bool) -> u128 {
        let params = self.parameter_count() as u128;
        let activations =
            (batch * seq_len) as u128 * (6 * self.hidden as u128) * self.layers as u128 * 2;
        let heads = if every { batch * seq_len } else { batch } as u128;
        (params * 4 + activations + heads * (self.vocab + self.dense) as u128 * 2) * 4
    }

    /// Parameter count, from the shapes alone.
    pub fn parameter_count(&self) -> usize {
        let h = self.hidden;
        let mut n = match self.input {
            InputMode::Scalar => 0,
            InputMode::Embedding => self.vocab * self.embed_dim,
        };
        let mut width = self.input_dim();
        for _ in 0..self.layers {
            n += 4 * h * width + 4 * h * h + 8 * h;
            width = h;
        }
        if self.dense > 0 {
            n += width * self.dense + self.dense;
            width = self.dense;
        }
        n + width * self.vocab + self.vocab
    }
}

/// Inverted-dropout masks drawn from a seeded generator.
pub struct Dropout {
    rng: ChaCha8Rng,
    p: f32,
}

impl Dropout {
    pub fn new(p: f32, rng: ChaCha8Rng) -> Self {
        Self { rng, p }
    }

    /// `x` with each element zeroed with probability `p` and the rest scaled by 1 / (1 − p).
    pub fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        if self.p <= 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 / (1.0 - self.p);
        // 24 random bits per element, drawn in bulk (the generator's wide refill): one `random::<f32>()` call per
        // element was 3% of a paper-size step. An element is dropped when its bits fall below p·2²⁴.
        let threshold = (self.p as f64 * (1u32 << 24) as f64) as u32;
        let mut bits = vec![0u32; x.elem_count()];
        self.rng.fill(&mut bits[..]);
        let mask: Vec<f32> = bits
            .iter()
            .map(|&b| if b >> 8 < threshold { 0.0 } else { keep })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        x * mask
    }
}

/// One LSTM layer (PyTorch's equations and layout).
#[derive(Debug, Clone)]
pub struct Lstm {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    hidden: usize,
}

/// The recurrent state of one layer: `(h, c)`, each `(batch, hidden)`.
pub type LstmState = (Tensor, Tensor);

impl Lstm {
    pub fn new(in_dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / (hidden as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Ok(Self {
            w_ih: vb.get_with_hints((4 * hidden, in_dim), "weight_ih", init)?,
            w_hh: vb.get_with_hints((4 * hidden, hidden), "weight_hh", init)?,
            b_ih: vb.get_with_hints(4 * hidden, "bias_ih", init)?,
            b_hh: vb.get_with_hints(4 * hidden, "bias_hh", init)?,
            hidden,
        })
    }

    pub fn zero_state(&self, batch: usize, device: &Device, dtype: DType) -> Result<LstmState> {
        let z = Tensor::zeros((batch, self.hidden), dtype, device)?;
        Ok((z.clone(), z))
    }

    /// One step from pre-projected input gates `xg` (`(batch, 4·hidden)`, input weights and both biases applied).
    fn cell(&self, xg: &Tensor, (h, c): &LstmState) -> Result<LstmState> {
        let gates = (xg + h.matmul(&self.w_hh.t()?)?)?;
        let chunks = gates.chunk(4, 1)?;
        let i = candle_nn::ops::sigmoid(&chunks[0])?;
        let f = candle_nn::ops::sigmoid(&chunks[1])?;
        let g = chunks[2].tanh()?;
        let o = candle_nn::ops::sigmoid(&chunks[3])?;
        let c = ((f * c)? + (i * g)?)?;
        let h = (o * c.tanh()?)?;
        Ok((h, c))
    }

    /// Input projection of every step at once: one large matmul instead of one per step.
    fn project(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let bias = (&self.b_ih + &self.b_hh)?;
        x.reshape((b * t, d))?
            .matmul(&self.w_ih.t()?)?
            .broadcast_add(&bias)?
            .reshape((b, t, 4 * self.hidden))
    }

    /// Runs a whole sequence `(batch, steps, in)` from a zero state and returns every step's output `(batch, steps,
    /// hidden)`. On the CPU in f32 with `fast`, the recurrence and its backward pass are one custom op
    /// ([`crate::nn::fast_lstm`]); elsewhere, plain candle ops step by step.
    pub fn forward_from_zero(&self, x: &Tensor, fast: bool) -> Result<Tensor> {
        if fast && x.device().is_cpu() && x.dtype() == DType::F32 {
            let w = Tensor::cat(&[&self.w_ih, &self.w_hh], 1)?;
            let bias = (&self.b_ih + &self.b_hh)?;
            return x
                .contiguous()?
                .apply_op3(&w, &bias, crate::nn::fast_lstm::LstmLayer::new());
        }
        let state = self.zero_state(x.dim(0)?, x.device(), x.dtype())?;
        Ok(self.forward(x, state)?.0)
    }

    /// Runs a whole sequence `(batch, steps, in)` from `state`; returns every step's output `(batch, steps,
    /// hidden)` and the final state.
    pub fn forward(&self, x: &Tensor, state: LstmState) -> Result<(Tensor, LstmState)> {
        let steps = x.dim(1)?;
        let xg = self.project(x)?;
        let mut state = state;
        let mut outputs = Vec::with_capacity(steps);
        for t in 0..steps {
            state = self.cell(&xg.narrow(1, t, 1)?.squeeze(1)?, &state)?;
            outputs.push(state.0.clone());
        }
        Ok((Tensor::stack(&outputs, 1)?, state))
    }
}

/// A linear layer initialised as PyTorch does: weight and bias uniform in ±1/√in.
fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let bound = 1.0 / (in_dim as f64).sqrt();
    let init = Init::Uniform {
        lo: -bound,
        up: bound,
    };
    let w = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
    let b = vb.get_with_hints(out_dim, "bias", init)?;
    Ok(Linear::new(w, Some(b)))
}

/// The network.
#[derive(Debug, Clone)]
pub struct Model {
    cfg: ModelConfig,
    /// Use the fused CPU LSTM where it applies (see [`Lstm::forward_from_zero`]).
    fast: bool,
    embed: Option<Embedding>,
    lstms: Vec<Lstm>,
    dense: Option<Linear>,
    out: Linear,
}

impl Model {
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let embed = match cfg.input {
            InputMode::Scalar => None,
            InputMode::Embedding => Some(candle_nn::embedding(
                cfg.vocab,
                cfg.embed_dim,
                vb.pp("embed"),
            )?),
        };
        let mut lstms = Vec::with_capacity(cfg.layers);
        let mut width = cfg.input_dim();
        for l in 0..cfg.layers {
            lstms.push(Lstm::new(width, cfg.hidden, vb.pp("lstm").pp(l))?);
            width = cfg.hidden;
        }
        let dense = if cfg.dense > 0 {
            let d = linear(width, cfg.dense, vb.pp("dense"))?;
            width = cfg.dense;
            Some(d)
        } else {
            None
        };
        let out = linear(width, cfg.vocab, vb.pp("out"))?;
        Ok(Self {
            cfg: cfg.clone(),
            fast: true,
            embed,
            lstms,
            dense,
            out,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Chooses between the fused CPU LSTM (the default) and plain candle ops, for comparisons.
    pub fn set_fast(&mut self, fast: bool) {
        self.fast = fast;
    }

    /// Token ids `(batch, steps)` → input features `(batch, steps, input_dim)`.
    fn features(&self, ids: &Tensor) -> Result<Tensor> {
        match &self.embed {
            Some(e) => e.forward(ids),
            None => (ids.to_dtype(self.out.weight().dtype())? / self.cfg.vocab as f64)?
                .unsqueeze(D::Minus1),
        }
    }

    /// A zero recurrent state for every layer, for [`Model::step`].
    pub fn zero_states(&self, device: &Device) -> Result<Vec<LstmState>> {
        let dtype = self.out.weight().dtype();
        self.lstms
            .iter()
            .map(|l| l.zero_state(1, device, dtype))
            .collect()
    }

    /// Feeds one token and returns the logits for the next `(vocab)`, carrying the LSTM state: O(1) work per token,
    /// for stateful sampling.
    pub fn step(&self, id: u32, states: &mut [LstmState]) -> Result<Tensor> {
        let device = self.out.weight().device().clone();
        let mut x = self.features(&Tensor::new(&[[id]], &device)?)?;
        for (lstm, state) in self.lstms.iter().zip(states.iter_mut()) {
            let xg = lstm.project(&x)?.squeeze(1)?;
            *state = lstm.cell(&xg, state)?;
            x = state.0.unsqueeze(1)?;
        }
        let mut x = x.squeeze(1)?;
        if let Some(dense) = &self.dense {
            x = dense.forward(&x)?.relu()?;
        }
        self.out.forward(&x)?.squeeze(0)
    }

    /// Logits over the vocabulary `(batch, vocab)` for the token after each window `(batch, steps)`. With
    /// `dropout`, training-mode dropout is applied.
    pub fn forward(&self, ids: &Tensor, dropout: Option<&mut Dropout>) -> Result<Tensor> {
        self.run(ids, dropout, false)
    }

    /// Logits `(batch, vocab)` for the token after each window `(batch, steps)`, for scoring held-out windows: as
    /// [`Model::forward`] without dropout, faster where the fused CPU LSTM applies. There, the whole stack runs
    /// step by step keeping only its state ([`crate::nn::fast_score`]), and the first layer's input projection is a
    /// lookup: every token's projection is computed once
    /// per call (a `vocab × 4·hidden` table, a few thousandths of the batch's work) instead of once per step of
    /// every window, which was an eleventh of a scoring pass at `embed_dim = 64`.
    pub fn score(&self, ids: &Tensor) -> Result<Tensor> {
        let dtype = self.out.weight().dtype();
        if !(self.fast && ids.device().is_cpu() && dtype == DType::F32) {
            return self.run(ids, None, false);
        }
        let tokens = Tensor::arange(0u32, self.cfg.vocab as u32, ids.device())?.unsqueeze(1)?;
        let first = &self.lstms[0];
        let table = first
            .project(&self.features(&tokens)?)?
            .squeeze(1)?
            .detach();
        let upper: Vec<crate::nn::fast_score::Upper> = self.lstms[1..]
            .iter()
            .map(|lstm| {
                Ok(crate::nn::fast_score::Upper {
                    w: Tensor::cat(&[&lstm.w_ih, &lstm.w_hh], 1)?.detach(),
                    bias: (&lstm.b_ih + &lstm.b_hh)?.detach(),
                })
            })
            .collect::<Result<_>>()?;
        let mut x = crate::nn::fast_score::score_last(ids, &table, &first.w_hh.detach(), &upper)?;
        if let Some(dense) = &self.dense {
            x = dense.forward(&x)?.relu()?;
        }
        self.out.forward(&x)
    }

    /// The training loss of one batch, with training-mode dropout: the cross-entropy of the logits for the token
    /// after each window `ids` `(batch, steps)` against `targets` `(batch)`, or with `every` for the token after
    /// every prefix against `targets` `(batch · steps)` (step `t`'s logits predict the window's token `t + 1`, the
    /// last step's the token after the window). What the train stage minimises, on every device.
    pub fn batch_loss(
        &self,
        ids: &Tensor,
        targets: &Tensor,
        every: bool,
        dropout: &mut Dropout,
    ) -> Result<Tensor> {
        let logits = self.run(ids, Some(dropout), every)?;
        let logits = if every {
            logits.reshape((targets.dim(0)?, self.cfg.vocab))?
        } else {
            logits
        };
        candle_nn::loss::cross_entropy(&logits, targets)
    }

    fn run(&self, ids: &Tensor, mut dropout: Option<&mut Dropout>, every: bool) -> Result<Tensor> {
        let mut x = self.features(ids)?;
        let last = self.lstms.len() - 1;
        for (l, lstm) in self.lstms.iter().enumerate() {
            let out = lstm.forward_from_zero(&x, self.fast)?;
            x = if l == last && !every {
                out.narrow(1, out.dim(1)? - 1, 1)?.squeeze(1)?
            } else {
                out
            };
            if l != last
                && let Some(d) = dropout.as_deref_mut()
            {
                x = d.apply(&x)?;
            }
        }
        if let Some(dense) = &self.dense {
            x = dense.forward(&x)?.relu()?;
            if let Some(d) = dropout {
                x = d.apply(&x)?;
            }
        }
        self.out.forward(&x)
    }
}

/// A VarBuilder backend that creates every parameter from a generator seeded by the training seed and the
/// parameter's name, so initial weights do not depend on the order layers are built in, nor on the device.
struct SeededInit {
    vars: VarMap,
    seed: u64,
}

impl SeededInit {
    fn values(&self, shape: &Shape, name: &str, init: Init) -> Result<Vec<f32>> {
        let name_hash = blake3::hash(name.as_bytes());
        let salt = u64::from_le_bytes(name_hash.as_bytes()[..8].try_into().expect("8 bytes"));
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ salt);
        let n = shape.elem_count();
        let uniform = |rng: &mut ChaCha8Rng, lo: f64, up: f64| {
            (0..n).map(|_| rng.random_range(lo..up) as f32).collect()
        };
        let normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| {
            (0..n)
                .map(|_| (mean + std * Distribution::<f64>::sample(&StandardNormal, rng)) as f32)
                .collect::<Vec<f32>>()
        };
        Ok(match init {
            Init::Const(v) => vec![v as f32; n],
            Init::Uniform { lo, up } => uniform(&mut rng, lo, up),
            Init::Randn { mean, stdev } => normal(&mut rng, mean, stdev),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    candle_nn::init::NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        uniform(&mut rng, -bound, bound)
                    }
                    candle_nn::init::NormalOrUniform::Normal => normal(&mut rng, 0.0, std),
                }
            }
        })
    }
}

impl SimpleBackend for SeededInit {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self
            .vars
            .data()
            .lock()
            .expect("the var map lock is never poisoned");
        if let Some(v) = data.get(name) {
            if v.shape() != &s {
                candle_core::bail!(
                    "parameter `{name}` has shape {:?}, expected {s:?}",
                    v.shape()
                );
            }
            return Ok(v.as_tensor().clone());
        }
        let values = self.values(&s, name, h)?;
        let var = Var::from_tensor(&Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?)?;
        let t = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        let data = self
            .vars
            .data()
            .lock()
            .expect("the var map lock is never poisoned");
        match data.get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!("no parameter named `{name}`"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars
            .data()
            .lock()
            .expect("the var map lock is never poisoned")
            .contains_key(name)
    }
}

/// A model whose parameters are trainable variables.
pub struct Trainable {
    pub model: Model,
    pub vars: VarMap,
}

impl Trainable {
    /// A freshly initialised model: the same `seed` gives the same weights.
    pub fn init(cfg: &ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::init_with_dtype(cfg, seed, DType::F32, device)
    }

    /// As [`Trainable::init`], in another precision (f64 for gradient checks).
    pub fn init_with_dtype(
        cfg: &ModelConfig,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let vars = VarMap::new();
        let backend: Box<dyn SimpleBackend> = Box::new(SeededInit {
            vars: vars.clone(),
            seed,
        });
        let vb = VarBuilder::from_backend(backend, dtype, device.clone());
        let model = Model::new(cfg, vb)?;
        Ok(Self { model, vars })
    }

    /// A model with the weights of a safetensors file, still trainable.
    pub fn from_safetensors(cfg: &ModelConfig, bytes: &[u8], device: &Device) -> Result<Self> {
        let t = Self::init(cfg, 0, device)?;
        let loaded = candle_core::safetensors::load_buffer(bytes, device)?;
        for (name, var) in t.named_vars() {
            let Some(value) = loaded.get(&name) else {
                candle_core::bail!("the saved weights have no `{name}`");
            };
            var.set(value)?;
        }
        Ok(t)
    }

    /// Every parameter, sorted by name (a fixed order for optimizers and files).
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let data = self
            .vars
            .data()
            .lock()
            .expect("the var map lock is never poisoned");
        let mut vars: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// The weights as safetensors bytes.
    pub fn to_safetensors(&self) -> anyhow::Result<Vec<u8>> {
        let tensors: HashMap<String, Tensor> = self
            .named_vars()
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect();
        Ok(safetensors::serialize(&tensors, None)?)
    }
}

/// A frozen model for inference, from safetensors bytes.
pub fn load(cfg: &ModelConfig, weights: &[u8], device: &Device) -> Result<Arc<Model>> {
    let tensors = candle_core::safetensors::load_buffer(weights, device)?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    Ok(Arc::new(Model::new(cfg, vb)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(input: InputMode) -> ModelConfig {
        ModelConfig {
            vocab: 10,
            layers: 2,
            hidden: 8,
            dropout: 0.0,
            dense: 5,
            input,
            embed_dim: 3,
        }
    }

    #[test]
    fn shapes_and_parameter_counts_for_both_input_modes() {
        // Scalar: LSTM 0 has 4·8·1 + 4·8·8 + 2·32 = 352, LSTM 1 4·8·8 + 4·8·8 + 64 = 576, dense 8·5 + 5 = 45,
        // output 5·10 + 10 = 60. Embedding adds 10·3 = 30 and widens LSTM 0's input to 3 (+ 4·8·2 = 64).
        for (input, expected) in [(InputMode::Scalar, 1033), (InputMode::Embedding, 1127)] {
            let c = cfg(input);
            let t = Trainable::init(&c, 1, &Device::Cpu).unwrap();
            let total: usize = t.named_vars().iter().map(|(_, v)| v.elem_count()).sum();
            assert_eq!(total, expected, "{input:?}");
            assert_eq!(c.parameter_count(), expected);
            let shapes: HashMap<String, Vec<usize>> = t
                .named_vars()
                .into_iter()
                .map(|(k, v)| (k, v.dims().to_vec()))
                .collect();
            assert_eq!(shapes["lstm.0.weight_ih"], [32, c.input_dim()]);
            assert_eq!(shapes["lstm.1.weight_hh"], [32, 8]);
            assert_eq!(shapes["dense.weight"], [5, 8]);
            assert_eq!(shapes["out.weight"], [10, 5]);
            let ids =
                Tensor::new(&[[1u32, 2, 3, 4], [5, 6, 7, 8], [9, 0, 1, 2]], &Device::Cpu).unwrap();
            assert_eq!(t.model.forward(&ids, None).unwrap().dims(), [3, 10]);
        }
    }

    #[test]
    fn scoring_gives_the_logits_of_the_plain_forward_pass_for_both_input_modes() {
        for input in [InputMode::Scalar, InputMode::Embedding] {
            // Seven windows: more than one thread's slice where there are several, and an uneven split; 101: slices
            // that gemm takes in several blocks of rows.
            for (layers, windows) in [(1, 7), (3, 7), (2, 101)] {
                let c = ModelConfig {
                    layers,
                    ..cfg(input)
                };
                let mut t = Trainable::init(&c, 3, &Device::Cpu).unwrap();
                let rows: Vec<Vec<u32>> = (0..windows)
                    .map(|r| (0..6).map(|s| (r * 3 + s * 7) % 10).collect())
                    .collect();
                let ids = Tensor::new(rows, &Device::Cpu).unwrap();
                let scored = t.model.score(&ids).unwrap();
                t.model.set_fast(false);
                let plain = t.model.forward(&ids, None).unwrap();
                assert_eq!(scored.dims(), [windows as usize, 10]);
                let diff = (scored - plain)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(diff < 1e-5, "{input:?}, {layers} layers: differs by {diff}");
            }
        }
    }

    #[test]
    fn scoring_refuses_a_token_outside_the_vocabulary() {
        let t = Trainable::init(&cfg(InputMode::Embedding), 3, &Device::Cpu).unwrap();
        let ids = Tensor::new(&[[1u32, 10]], &Device::Cpu).unwrap();
        let e = t.model.score(&ids).unwrap_err().to_string();
        assert!(e.contains("10") && e.contains("vocabulary"), "{e}");
    }

    #[test]
    fn the_same_seed_gives_the_same_weights() {
        let c = cfg(InputMode::Embedding);
        let a = Trainable::init(&c, 7, &Device::Cpu)
            .unwrap()
            .to_safetensors()
            .unwrap();
        let b = Trainable::init(&c, 7, &Device::Cpu)
            .unwrap()
            .to_safetensors()
            .unwrap();
        let other = Trainable::init(&c, 8, &Device::Cpu)
            .unwrap()
            .to_safetensors()
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, other);
    }

    /// PyTorch's documented LSTM equations, written out for one unit in plain f64:
    /// i = σ(W_ii x + b_ii + W_hi h + b_hi), f = σ(…), g = tanh(…), o = σ(…), c' = f c + i g, h' = o tanh(c').
    #[test]
    fn one_unit_matches_the_lstm_equations() {
        let dev = Device::Cpu;
        let w_ih = [0.5, -0.3, 0.8, 0.1];
        let w_hh = [0.2, 0.4, -0.6, 0.7];
        let b_ih = [0.1, 0.0, -0.1, 0.2];
        let b_hh = [0.0, 0.3, 0.05, -0.1];
        let mut tensors = HashMap::new();
        tensors.insert(
            "weight_ih".to_string(),
            Tensor::from_slice(&w_ih, (4, 1), &dev).unwrap(),
        );
        tensors.insert(
            "weight_hh".to_string(),
            Tensor::from_slice(&w_hh, (4, 1), &dev).unwrap(),
        );
        tensors.insert(
            "bias_ih".to_string(),
            Tensor::from_slice(&b_ih, 4, &dev).unwrap(),
        );
        tensors.insert(
            "bias_hh".to_string(),
            Tensor::from_slice(&b_hh, 4, &dev).unwrap(),
        );
        let lstm = Lstm::new(1, 1, VarBuilder::from_tensors(tensors, DType::F64, &dev)).unwrap();
        let xs = [0.5f64, -1.0, 2.0];
        let x = Tensor::from_slice(&xs, (1, 3, 1), &dev).unwrap();
        let state = lstm.zero_state(1, &dev, DType::F64).unwrap();
        let (out, _) = lstm.forward(&x, state).unwrap();
        let got: Vec<f64> = out.flatten_all().unwrap().to_vec1().unwrap();

        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let (mut h, mut c) = (0.0f64, 0.0f64);
        for (t, &x) in xs.iter().enumerate() {
            let pre = |k: usize| w_ih[k] * x + b_ih[k] + w_hh[k] * h + b_hh[k];
            let (i, f, g, o) = (sig(pre(0)), sig(pre(1)), pre(2).tanh(), sig(pre(3)));
            c = f * c + i * g;
            h = o * c.tanh();
            assert!((got[t] - h).abs() < 1e-12, "step {t}: {} vs {h}", got[t]);
        }
    }

    /// The fused CPU LSTM's hand-written backward pass agrees with candle autograd through the plain step-by-step
    /// LSTM: every parameter's gradient to 1e-4 relative (norm of the difference over the norm), for both input modes,
    /// several layers and batches with more steps than the gates have units.
    #[test]
    fn the_fast_lstm_has_autograds_gradients() {
        let dev = Device::Cpu;
        // 3 and 9 sequences: split unevenly over threads, with W_hh read in place and from panels. 100 sequences
        // of 20 units: products split into row blocks, over a full panel and a partial one.
        for (input, batch, hidden) in [
            (InputMode::Scalar, 3usize, 12usize),
            (InputMode::Embedding, 3, 12),
            (InputMode::Scalar, 9, 12),
            (InputMode::Embedding, 9, 12),
            (InputMode::Embedding, 100, 20),
        ] {
            let c = ModelConfig {
                vocab: 17,
                layers: 3,
                hidden,
                dropout: 0.0,
                dense: 9,
                input,
                embed_dim: 5,
            };
            let mut t = Trainable::init(&c, 11, &dev).unwrap();
            let ids: Vec<u32> = (0..batch as u32 * 20)
                .map(|i| (i * 7 + i / 3) % 17)
                .collect();
            let ids = Tensor::from_vec(ids, (batch, 20), &dev).unwrap();
            let targets: Vec<u32> = (0..batch as u32).map(|i| (i * 5 + 1) % 17).collect();
            let targets = Tensor::from_vec(targets, batch, &dev).unwrap();
            let grads = |m: &Model| {
                let loss =
                    candle_nn::loss::cross_entropy(&m.forward(&ids, None).unwrap(), &targets)
                        .unwrap();
                (loss.to_scalar::<f32>().unwrap(), loss.backward().unwrap())
            };
            let (fast_loss, fast) = grads(&t.model);
            t.model.set_fast(false);
            let (plain_loss, plain) = grads(&t.model);
            assert!(
                (fast_loss - plain_loss).abs() < 1e-5,
                "{fast_loss} vs {plain_loss}"
            );
            for (name, var) in t.named_vars() {
                let a = fast.get(var.as_tensor()).unwrap();
                let b = plain.get(var.as_tensor()).unwrap();
                let l2 = |t: &Tensor| {
                    t.sqr()
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap()
                        .sqrt()
                };
                let (diff, norm) = (l2(&(a - b).unwrap()), l2(b));
                assert!(
                    diff <= 1e-4 * norm.max(1e-12),
                    "{input:?} batch {batch} {name}: |Δ| {diff} vs |g| {norm}"
                );
            }
        }
    }

    /// The fused LSTM is CPU-only: on CUDA (and Metal) the train stage runs the plain candle LSTM. Run here on the
    /// CPU the way a GPU training runs it — `Model::batch_loss` with dropout between the layers and after the dense
    /// one, backward, the optimizer's step, eight batches — the plain path ends with the fused path's weights: every
    /// parameter to 1e-4 relative (norm of the difference over the norm of what training changed), and the same
    /// losses to 1e-5, for both input modes, both kinds of targets and the paper's RMSprop and Adam.
    #[test]
    fn the_plain_lstm_trains_as_the_fused_one() {
        use crate::nn::optim::{Optimizer, OptimizerKind};
        let dev = Device::Cpu;
        for (input, every, kind) in [
            (InputMode::Scalar, false, OptimizerKind::Rmsprop),
            (InputMode::Embedding, false, OptimizerKind::Rmsprop),
            (InputMode::Embedding, true, OptimizerKind::Rmsprop),
            (InputMode::Scalar, true, OptimizerKind::Adam),
        ] {
            let c = ModelConfig {
                vocab: 17,
                layers: 3,
                hidden: 24,
                dropout: 0.25,
                dense: 9,
                input,
                embed_dim: 5,
            };
            let (batch, steps) = (6usize, 12usize);
            let train = |fast: bool| {
                let mut t = Trainable::init(&c, 5, &dev).unwrap();
                t.model.set_fast(fast);
                let initial: Vec<Vec<f32>> = t
                    .named_vars()
                    .iter()
                    .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
                    .collect();
                let mut opt = Optimizer::new(kind, 0.01, t.named_vars()).unwrap();
                let mut dropout = Dropout::new(c.dropout, ChaCha8Rng::seed_from_u64(9));
                let mut losses = Vec::new();
                for b in 0..8u32 {
                    let ids: Vec<u32> = (0..(batch * steps) as u32)
                        .map(|i| (i * 7 + i / 5 + b * 3) % 17)
                        .collect();
                    let ids = Tensor::from_vec(ids, (batch, steps), &dev).unwrap();
                    let n = if every { batch * steps } else { batch } as u32;
                    let targets: Vec<u32> = (0..n).map(|i| (i * 5 + b + 1) % 17).collect();
                    let targets = Tensor::from_vec(targets, n as usize, &dev).unwrap();
                    let loss = t
                        .model
                        .batch_loss(&ids, &targets, every, &mut dropout)
                        .unwrap();
                    losses.push(loss.to_scalar::<f32>().unwrap());
                    opt.step(&loss.backward().unwrap()).unwrap();
                }
                let trained: Vec<(String, Vec<f32>)> = t
                    .named_vars()
                    .into_iter()
                    .map(|(name, v)| {
                        let values = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
                        (name, values)
                    })
                    .collect();
                (losses, initial, trained)
            };
            let (fused_losses, initial, fused) = train(true);
            let (plain_losses, _, plain) = train(false);
            for (b, (f, p)) in fused_losses.iter().zip(&plain_losses).enumerate() {
                assert!(
                    (f - p).abs() < 1e-5,
                    "{input:?} every={every} {kind:?} batch {b}: loss {f} fused vs {p} plain"
                );
            }
            // Both paths really ran: their rounding differs somewhere (a path compared with itself would not).
            assert!(
                fused.iter().zip(&plain).any(|((_, f), (_, p))| f != p),
                "{input:?} every={every} {kind:?}: the fused and plain trainings are bit for bit the same"
            );
            // The Euclidean distance of two parameters' values.
            let distance = |a: &[f32], b: &[f32]| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (x - y) * (x - y))
                    .sum::<f32>()
                    .sqrt()
            };
            for (((name, f), (_, p)), init) in fused.iter().zip(&plain).zip(&initial) {
                let diff = distance(f, p);
                let moved = distance(p, init);
                assert!(moved > 0.0, "{input:?} {name} did not train");
                assert!(
                    diff <= 1e-4 * moved,
                    "{input:?} every={every} {kind:?} {name}: |fused − plain| {diff} vs |Δ training| {moved}"
                );
            }
        }
    }

    /// Autograd's gradients through the whole network (both input modes) agree with central finite differences.
    #[test]
    fn gradients_match_finite_differences() {
        let dev = Device::Cpu;
        for input in [InputMode::Scalar, InputMode::Embedding] {
            let c = cfg(input);
            let t = Trainable::init_with_dtype(&c, 3, DType::F64, &dev).unwrap();
            let ids = Tensor::new(&[[1u32, 2, 3, 4], [5, 6, 7, 8]], &dev).unwrap();
            let targets = Tensor::new(&[3u32, 9], &dev).unwrap();
            let loss = |m: &Model| -> f64 {
                candle_nn::loss::cross_entropy(&m.forward(&ids, None).unwrap(), &targets)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let l = candle_nn::loss::cross_entropy(&t.model.forward(&ids, None).unwrap(), &targets)
                .unwrap();
            let grads = l.backward().unwrap();
            for (name, var) in t.named_vars() {
                let g: Vec<f64> = grads
                    .get(var.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let orig: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
                // A few coordinates of every parameter.
                for k in [0, orig.len() / 2, orig.len() - 1] {
                    let eps = 1e-6;
                    let mut bumped = orig.clone();
                    bumped[k] += eps;
                    var.set(&Tensor::from_vec(bumped.clone(), var.shape(), &dev).unwrap())
                        .unwrap();
                    let up = loss(&t.model);
                    bumped[k] -= 2.0 * eps;
                    var.set(&Tensor::from_vec(bumped, var.shape(), &dev).unwrap())
                        .unwrap();
                    let down = loss(&t.model);
                    var.set(&Tensor::from_vec(orig.clone(), var.shape(), &dev).unwrap())
                        .unwrap();
                    let numeric = (up - down) / (2.0 * eps);
                    let err = (numeric - g[k]).abs() / numeric.abs().max(g[k].abs()).max(1e-6);
                    assert!(
                        err < 1e-4,
                        "{input:?} {name}[{k}]: autograd {} vs numeric {numeric}",
                        g[k]
                    );
                }
            }
        }
    }

    /// Feeding a window token by token gives the logits of running the whole window at once.
    #[test]
    fn stepping_matches_the_whole_window() {
        let dev = Device::Cpu;
        let c = ModelConfig {
            vocab: 11,
            layers: 2,
            hidden: 7,
            dropout: 0.3,
            dense: 5,
            input: InputMode::Scalar,
            embed_dim: 4,
        };
        let t = Trainable::init(&c, 2, &dev).unwrap();
        let ids = [3u32, 1, 4, 1, 5, 9, 2, 6];
        let whole: Vec<f32> = t
            .model
            .forward(&Tensor::new(&[ids], &dev).unwrap(), None)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut states = t.model.zero_states(&dev).unwrap();
        let mut last = Vec::new();
        for id in ids {
            last = t
                .model
                .step(id, &mut states)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
        }
        for (a, b) in whole.iter().zip(&last) {
            assert!((a - b).abs() < 1e-5, "{whole:?} vs {last:?}");
        }
    }
}
