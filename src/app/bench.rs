//! `pipeline bench`: measurements to run by hand — training steps, sampling, and the MIDI stages — printed with
//! medians, so speed claims in the README can be re-checked on any machine.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::nn::model::{Dropout, InputMode, ModelConfig, Trainable};
use crate::nn::optim::{Optimizer, OptimizerKind};

/// The shape of a training benchmark.
#[derive(Debug, Clone)]
pub struct TrainShape {
    pub layers: usize,
    pub hidden: usize,
    pub seq_len: usize,
    pub batch: usize,
    pub input: InputMode,
    pub vocab: usize,
    pub dense: usize,
    pub embed_dim: usize,
}

impl TrainShape {
    pub fn config(&self) -> ModelConfig {
        ModelConfig {
            vocab: self.vocab,
            layers: self.layers,
            hidden: self.hidden,
            dropout: 0.3,
            dense: self.dense,
            input: self.input,
            embed_dim: self.embed_dim,
        }
    }

    /// Matrix-product FLOPs of one forward pass (2·m·n·k per product): the input projection and the recurrence of
    /// every layer at every step, the dense layer and the output layer.
    pub fn forward_flops(&self) -> f64 {
        let (b, t, h) = (self.batch as f64, self.seq_len as f64, self.hidden as f64);
        let mut width = self.config().input_dim() as f64;
        let mut flops = 0.0;
        for _ in 0..self.layers {
            flops += 2.0 * b * t * width * 4.0 * h + 2.0 * b * t * h * 4.0 * h;
            width = h;
        }
        if self.dense > 0 {
            flops += 2.0 * b * width * self.dense as f64;
            width = self.dense as f64;
        }
        flops + 2.0 * b * width * self.vocab as f64
    }

    /// Forward, and backward counted at twice the forward.
    pub fn step_flops(&self) -> f64 {
        3.0 * self.forward_flops()
    }
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The machine's f32 matrix-product speed in GFLOP/s: the best of a few 1024³ products through candle (the same
/// gemm and threads training uses).
pub fn sgemm_peak(device: &Device) -> Result<f64> {
    let n = 1024;
    let a = Tensor::randn(0f32, 1.0, (n, n), device)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), device)?;
    let mut best = f64::INFINITY;
    for _ in 0..6 {
        let start = Instant::now();
        let c = a.matmul(&b)?;
        c.sum_all()?.to_scalar::<f32>()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n as f64).powi(3) / best / 1e9)
}

/// Median milliseconds of one training step (forward, backward, RMSprop) on random data, after `warmup` steps.
pub fn train_step_ms(
    shape: &TrainShape,
    steps: usize,
    warmup: usize,
    device: &Device,
    fast: bool,
) -> Result<Vec<f64>> {
    let cfg = shape.config();
    let mut t = Trainable::init(&cfg, 1, device)?;
    t.model.set_fast(fast);
    let mut opt = Optimizer::new(OptimizerKind::Rmsprop, 1e-3, t.named_vars())?;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let ids: Vec<u32> = (0..shape.batch * shape.seq_len)
        .map(|_| rng.random_range(0..shape.vocab as u32))
        .collect();
    let targets: Vec<u32> = (0..shape.batch)
        .map(|_| rng.random_range(0..shape.vocab as u32))
        .collect();
    let x = Tensor::from_vec(ids, (shape.batch, shape.seq_len), device)?;
    let y = Tensor::from_vec(targets, shape.batch, device)?;
    let mut dropout = Dropout::new(cfg.dropout, ChaCha8Rng::seed_from_u64(3));
    let mut times = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let start = Instant::now();
        let logits = t.model.forward(&x, Some(&mut dropout))?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        opt.step(&loss.backward()?)?;
        loss.to_dtype(DType::F32)?.to_scalar::<f32>()?; // waits for the device
        if i >= warmup {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times)
}

/// Seconds to generate `length` tokens with the paper's sampling from a random model, in both modes.
pub fn sample_seconds(
    cfg: &ModelConfig,
    seq_len: usize,
    length: u32,
    mode: crate::stages::SampleMode,
) -> Result<f64> {
    let t = Trainable::init(cfg, 1, &Device::Cpu)?;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let window: Vec<u32> = (0..seq_len)
        .map(|_| rng.random_range(0..cfg.vocab as u32))
        .collect();
    let params = crate::stages::sample_params(length, mode);
    let start = Instant::now();
    let out = crate::stages::generate(&t.model, &window, &params, &[], &mut rng, || {})?;
    anyhow::ensure!(
        out.len() == length as usize,
        "generated {} tokens",
        out.len()
    );
    Ok(start.elapsed().as_secs_f64())
}

/// Seconds for all MIDI stages over a corpus (read, drop drums, extract, tokenize, vocabulary, windows), without
/// the cache; returns the token count too.
pub fn prep_seconds(corpus: &Path) -> Result<(f64, usize)> {
    let start = Instant::now();
    let tokens = crate::stages::prepare(corpus)
        .with_context(|| format!("preparing `{}`", corpus.display()))?;
    Ok((start.elapsed().as_secs_f64(), tokens))
}

fn threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// `bench train`: median ms/step, windows/s, GFLOP/s and the share of the machine's sgemm.
pub fn train_report(
    shape: &TrainShape,
    steps: usize,
    device: &Device,
    name: &str,
    fast: bool,
) -> Result<String> {
    let peak = sgemm_peak(device)?;
    let times = train_step_ms(shape, steps.max(1), 2, device, fast)?;
    let (min, max) = (
        times.iter().copied().fold(f64::INFINITY, f64::min),
        times.iter().copied().fold(0.0, f64::max),
    );
    let count = times.len();
    let ms = median(times);
    let gflops = shape.step_flops() / (ms / 1e3) / 1e9;
    let s = shape;
    Ok(format!(
        "train {}x{} seq_len {} batch {} {:?} vocab {} dense {} on {name} ({} threads, {} LSTM)\n  \
         median {ms:.1} ms/step over {count} steps (min {min:.1}, max {max:.1})\n  \
         {:.0} windows/s\n  \
         {gflops:.1} GFLOP/s of matrix products ({:.2} GFLOP per step)\n  \
         {:.0}% of this machine's sgemm ({peak:.1} GFLOP/s, 1024³ in candle)\n",
        s.layers,
        s.hidden,
        s.seq_len,
        s.batch,
        s.input,
        s.vocab,
        s.dense,
        threads(),
        if fast { "fused" } else { "plain" },
        s.batch as f64 / (ms / 1e3),
        s.step_flops() / 1e9,
        100.0 * gflops / peak,
    ))
}

/// `bench sample`: generating `length` tokens with the paper's model, in both sampling modes.
pub fn sample_report(length: u32, runs: usize) -> Result<String> {
    let cfg = ModelConfig {
        vocab: 154,
        layers: 3,
        hidden: 512,
        dropout: 0.3,
        dense: 256,
        input: InputMode::Scalar,
        embed_dim: 64,
    };
    let runs = runs.max(1);
    let mut out = format!(
        "sample {length} tokens, paper model (3x512, dense 256, vocab 154, windows of 100), cpu, {} threads\n",
        threads()
    );
    for mode in [
        crate::stages::SampleMode::Stateful,
        crate::stages::SampleMode::Window,
    ] {
        let times: Vec<f64> = (0..runs)
            .map(|_| sample_seconds(&cfg, 100, length, mode))
            .collect::<Result<_>>()?;
        out.push_str(&format!(
            "  {mode:?}: median {:.3} s over {runs} runs\n",
            median(times)
        ));
    }
    Ok(out)
}

/// `bench prep`: all MIDI stages over a corpus, without the cache.
pub fn prep_report(corpus: &Path, runs: usize) -> Result<String> {
    let runs = runs.max(1);
    let mut times = Vec::with_capacity(runs);
    let mut tokens = 0;
    for _ in 0..runs {
        let (s, t) = prep_seconds(corpus)?;
        times.push(s);
        tokens = t;
    }
    Ok(format!(
        "prep {}: all MIDI stages, no cache: median {:.1} ms over {runs} runs ({tokens} tokens)\n",
        corpus.display(),
        median(times) * 1e3
    ))
}
