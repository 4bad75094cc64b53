//! `pipeline bench`: measurements to run by hand — training steps, sampling, and the MIDI stages — printed with
//! medians, so speed claims in the README can be re-checked on any machine.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::music::metrics::{Metrics, MetricsReport};
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
        let loss = t.model.batch_loss(&x, &y, false, &mut dropout)?;
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

/// How a metric of the pieces is judged against the references (the baseline's targets, from issue 14).
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Nearer the held-out files' value than the shuffled reference's is.
    NearerThanShuffled,
    /// Within this much of the held-out files' value.
    Within(f64),
    AtLeast(f64),
    AtMost(f64),
    /// Shown, not judged.
    None,
}

impl Target {
    fn text(self) -> String {
        match self {
            Target::NearerThanShuffled => "nearer held-out than shuffled is".into(),
            Target::Within(d) => format!("within {d} of held-out"),
            Target::AtLeast(n) => format!("at least {n}"),
            Target::AtMost(n) => format!("at most {n}"),
            Target::None => String::new(),
        }
    }

    /// Whether `value` meets the target; `None` when there is nothing to judge or no reference to judge by.
    fn met(self, value: f64, held_out: Option<f64>, shuffled: Option<f64>) -> Option<bool> {
        match self {
            Target::NearerThanShuffled => {
                let (h, s) = (held_out?, shuffled?);
                // Equal to the held-out value is as near as can be, even where the shuffle is as near.
                Some((value - h).abs() < (s - h).abs() || value == h)
            }
            Target::Within(d) => Some((value - held_out?).abs() <= d),
            Target::AtLeast(n) => Some(value >= n),
            Target::AtMost(n) => Some(value <= n),
            Target::None => None,
        }
    }
}

/// The rows of `bench music`: a metric's name, how to read it from a metrics object, and its target.
/// Reads one metric from a piece's (or a reference's) metrics.
type Metric = fn(&Metrics) -> Option<f64>;

const MUSIC_ROWS: [(&str, Metric, Target); 10] = [
    (
        "mean_interval",
        |m| Some(m.mean_interval),
        Target::NearerThanShuffled,
    ),
    (
        "leap_share",
        |m| Some(m.leap_share),
        Target::NearerThanShuffled,
    ),
    (
        "scale_consistency",
        |m| Some(m.scale_consistency),
        Target::Within(0.05),
    ),
    (
        "distinct_iois",
        |m| Some(m.distinct_iois as f64),
        Target::AtLeast(4.0),
    ),
    ("copy_rate_8", |m| m.copy_rate_8, Target::AtMost(0.2)),
    ("interval_distance", |m| m.interval_distance, Target::None),
    ("ioi_entropy", |m| Some(m.ioi_entropy), Target::None),
    (
        "pitch_range",
        |m| Some(f64::from(m.pitch_range)),
        Target::None,
    ),
    ("polyphony", |m| Some(m.polyphony), Target::None),
    (
        "unique_tokens",
        |m| Some(m.unique_tokens as f64),
        Target::None,
    ),
];

/// The metrics files of one run folder: `metrics.json`, `metrics-2.json`, … (with a stage's report prefix).
fn metrics_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let Some(stem) = name.strip_suffix(".json") else {
                return false;
            };
            stem.ends_with("metrics")
                || stem
                    .rsplit_once("metrics-")
                    .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    files.sort();
    files
}

fn figure(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e6 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// `bench music`: for each run (sweep point) of `target`, every piece's metrics summed up as median (low–high)
/// beside the references of its first metrics file, and each target met or missed.
pub fn music_report(target: &str, reports_dir: &Path) -> super::error::Result<String> {
    use super::error::Error;
    let usage = |m: String| Error::Usage(anyhow::anyhow!(m));
    let dir = {
        let as_path = Path::new(target);
        if as_path.is_dir() {
            as_path.to_path_buf()
        } else {
            let experiment = reports_dir.join(target);
            // The newest run: run folders are named by their start time.
            let newest = std::fs::read_dir(&experiment)
                .ok()
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .max();
            newest.ok_or_else(|| {
                usage(format!(
                    "`{target}` is neither a report folder nor an experiment with runs under `{}`; run it first \
                     (`pipeline run experiments/{target}.toml`) or give a folder `pipeline run` printed",
                    reports_dir.display()
                ))
            })?
        }
    };
    let runs = crate::runs::compare::runs_under(&dir);
    let mut out = String::new();
    let mut judged = 0;
    for run in &runs {
        let files = metrics_files(run);
        if files.is_empty() {
            continue;
        }
        let reports: Vec<MetricsReport> = files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| usage(format!("cannot read `{}`: {e}", f.display())))?;
                serde_json::from_str(&text).map_err(|e| {
                    usage(format!(
                        "`{}` is not a metrics file this version reads ({e}); run the experiment again",
                        f.display()
                    ))
                })
            })
            .collect::<super::error::Result<_>>()?;
        let first = &reports[0];
        let reference = first.reference.as_deref().unwrap_or("validation");
        out.push_str(&format!(
            "{}: {} piece(s); references from the {reference} files\n",
            crate::paths::display_path("", &run.display().to_string()),
            reports.len()
        ));
        let mut rows = vec![[
            "metric".to_string(),
            "pieces: median (low–high)".into(),
            "held-out".into(),
            "shuffled".into(),
            "uniform".into(),
            "target".into(),
            "".into(),
        ]];
        let (mut met, mut targets) = (0, 0);
        for (name, get, target) in MUSIC_ROWS {
            let values: Vec<f64> = reports.iter().filter_map(|r| get(&r.generated)).collect();
            if values.is_empty() {
                continue;
            }
            let (lo, hi) = (
                values.iter().copied().fold(f64::INFINITY, f64::min),
                values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            );
            let mid = median(values.clone());
            let reference = |m: &Option<Metrics>| m.as_ref().and_then(get);
            let (h, s, u) = (
                reference(&first.held_out),
                reference(&first.shuffled),
                reference(&first.uniform),
            );
            let verdict = match target.met(mid, h, s) {
                Some(true) => "met",
                Some(false) => "missed",
                None => "",
            };
            if !verdict.is_empty() {
                targets += 1;
                met += usize::from(verdict == "met");
            }
            let show = |v: Option<f64>| v.map_or("—".to_string(), figure);
            rows.push([
                name.to_string(),
                format!("{} ({}–{})", figure(mid), figure(lo), figure(hi)),
                show(h),
                show(s),
                show(u),
                target.text(),
                verdict.to_string(),
            ]);
        }
        let widths: Vec<usize> = (0..7)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for row in &rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out.push_str(&format!("targets met: {met} of {targets}\n\n"));
        judged += 1;
    }
    if judged == 0 {
        return Err(usage(format!(
            "no generated music (metrics.json) under `{}`; the experiment needs a `sample` stage",
            dir.display()
        )));
    }
    Ok(out)
}
