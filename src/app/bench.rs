//! `pipeline bench`: measurements to run by hand — training steps, sampling, and the MIDI stages — printed with
//! medians, so speed claims in the manual (docs/src/measurements.md) can be re-checked on any machine.

use std::collections::BTreeMap;
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
    let generator = crate::stages::Generator::Lstm(&t.model);
    let out = crate::stages::generate(&generator, &window, &params, None, &mut rng, || {})?;
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
    /// No more than the held-out files' own value (a copy rate: music the model never saw shares that much with
    /// the training files anyway).
    AtMostHeldOut,
    /// Below the shuffled reference's value (a distance from the held-out files: the held-out files' own is 0).
    BelowShuffled,
    /// Shown, not judged.
    None,
}

impl Target {
    fn text(self) -> String {
        match self {
            Target::NearerThanShuffled => "nearer held-out than shuffled is".into(),
            Target::Within(d) => format!("within {d} of held-out"),
            Target::AtLeast(n) => format!("at least {n}"),
            Target::AtMostHeldOut => "at most held-out".into(),
            Target::BelowShuffled => "below shuffled".into(),
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
            Target::AtMostHeldOut => Some(value <= held_out?),
            Target::BelowShuffled => Some(value < shuffled?),
            Target::None => None,
        }
    }
}

/// The rows of `bench music`: a metric's name, how to read it from a metrics object, and its target.
/// Reads one metric from a piece's (or a reference's) metrics.
type Metric = fn(&Metrics) -> Option<f64>;

const MUSIC_ROWS: [(&str, Metric, Target); 11] = [
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
    // Copying is judged by runs of 8 onsets, the same span of music whatever the token scheme: 8 tokens of the
    // notes scheme are about one and a half onsets, which any two chorales share.
    ("copy_rate_8", |m| m.copy_rate_8, Target::None),
    (
        "copy_rate_8_onsets",
        |m| m.copy_rate_8_onsets,
        Target::AtMostHeldOut,
    ),
    (
        "interval_distance",
        |m| m.interval_distance,
        Target::BelowShuffled,
    ),
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

/// The metrics files of one run folder (`metrics.json`, `metrics-2.json`, …), grouped by the report prefix of the
/// `sample` stage that wrote them: `""` for the first, `floor_music.` for a later one.
fn metrics_groups(dir: &Path) -> BTreeMap<String, Vec<std::path::PathBuf>> {
    let mut groups: BTreeMap<String, Vec<std::path::PathBuf>> = BTreeMap::new();
    for path in std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
    {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let prefix = match stem.rsplit_once("metrics-") {
            Some((p, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => match stem.strip_suffix("metrics") {
                Some(p) => p,
                None => continue,
            },
        };
        if prefix.is_empty() || prefix.ends_with('.') {
            groups.entry(prefix.to_string()).or_default().push(path);
        }
    }
    for files in groups.values_mut() {
        files.sort();
    }
    groups
}

fn read_metrics(files: &[std::path::PathBuf]) -> super::error::Result<Vec<MetricsReport>> {
    let usage = |m: String| super::error::Error::Usage(anyhow::anyhow!(m));
    files
        .iter()
        .map(|f| {
            let text = crate::paths::read_regular(f)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| usage(format!("cannot read `{}`: {e}", f.display())))?;
            serde_json::from_str(&text).map_err(|e| {
                usage(format!(
                    "`{}` is not a metrics file this version reads ({e}); run the experiment again",
                    f.display()
                ))
            })
        })
        .collect()
}

/// One row of a `bench music` table: metric, pieces, held-out, shuffled, uniform, target, verdict.
type MusicRow = [String; 7];

/// The rows of the pieces' metrics against the references of the first piece's file.
fn metric_rows(reports: &[MetricsReport]) -> Vec<MusicRow> {
    let first = &reports[0];
    let mut rows = Vec::new();
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
        let show = |v: Option<f64>| v.map_or("—".to_string(), figure);
        rows.push([
            name.to_string(),
            format!("{} ({}–{})", figure(mid), figure(lo), figure(hi)),
            show(h),
            show(s),
            show(u),
            target.text(),
            verdict(target.met(mid, h, s)).to_string(),
        ]);
    }
    rows
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "missed",
        None => "",
    }
}

/// The row that holds a training against its n-gram floor: its best held-out loss minus the floor's.
fn floor_row(run: &Path) -> Option<MusicRow> {
    let train = crate::runs::manifest::Manifest::read(run)
        .ok()?
        .train_summary()?;
    let (vs, floor) = (train.val_loss_vs_floor?, train.floor_val_loss?);
    Some([
        "val_loss_vs_floor".into(),
        format!("{vs:+.3} nats/token"),
        format!("floor {}", figure(floor)),
        "—".into(),
        "—".into(),
        format!(
            "below the n-gram floor (order {})",
            train.floor_order.unwrap_or(0)
        ),
        verdict(Some(vs < 0.0)).into(),
    ])
}

/// Aligned rows under a header, and the count of targets met.
fn music_table(rows: &[MusicRow]) -> String {
    let header: MusicRow = [
        "metric".to_string(),
        "pieces: median (low–high)".into(),
        "held-out".into(),
        "shuffled".into(),
        "uniform".into(),
        "target".into(),
        "".into(),
    ];
    let all: Vec<&MusicRow> = std::iter::once(&header).chain(rows).collect();
    let widths: Vec<usize> = (0..7)
        .map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &all {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let judged = rows.iter().filter(|r| !r[6].is_empty()).count();
    let met = rows.iter().filter(|r| r[6] == "met").count();
    out.push_str(&format!("targets met: {met} of {judged}\n\n"));
    out
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
        for (prefix, files) in metrics_groups(run) {
            let reports = read_metrics(&files)?;
            let reference = reports[0].reference.as_deref().unwrap_or("validation");
            let stage = match prefix.strip_suffix('.') {
                Some(stage) => format!(" (`{stage}`)"),
                None => String::new(),
            };
            out.push_str(&format!(
                "{}{stage}: {} piece(s); references from the {reference} files\n",
                crate::paths::display_path("", &run.display().to_string()),
                reports.len()
            ));
            let mut rows = metric_rows(&reports);
            // The training's own loss against the floor goes with the LSTM's pieces (the first sample stage's).
            if prefix.is_empty() {
                rows.extend(floor_row(run));
            }
            out.push_str(&music_table(&rows));
            judged += 1;
        }
    }
    if judged == 0 {
        return Err(usage(format!(
            "no generated music (metrics.json) under `{}`; the experiment needs a `sample` stage",
            dir.display()
        )));
    }
    Ok(out)
}

/// What `bench ngram` measures: the n-gram floor of an experiment's windows.
pub struct NgramBench<'a> {
    pub file: &'a Path,
    pub set: &'a [String],
    pub order: usize,
    pub runs: usize,
    /// Where to write the windows' ids for an independent check (`bench/kneser_ney.py`).
    pub export: Option<&'a Path>,
}

/// The experiment's first `ngram` stage's window stage (else its first `window` stage).
fn windows_stage(exp: &crate::spec::experiment::Experiment) -> Result<usize> {
    use crate::stages::StageKind;
    let graph = &exp.graph;
    graph
        .order()
        .iter()
        .copied()
        .find(|&i| graph.stages[i].kind() == StageKind::Ngram)
        .and_then(|i| graph.inputs_of(i).first().copied())
        .or_else(|| graph.order().iter().copied().find(|&i| graph.stages[i].kind() == StageKind::Window))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "`{}` has no `window` stage to fit an n-gram model on; give an experiment that cuts windows",
                exp.path.display()
            )
        })
}

/// The parameters of the first `train` stage that reads stage `windows`, as its fingerprint holds them.
fn train_params(
    exp: &crate::spec::experiment::Experiment,
    windows: usize,
) -> Option<std::collections::BTreeMap<String, serde_json::Value>> {
    let graph = &exp.graph;
    graph
        .order()
        .iter()
        .copied()
        .find(|&i| {
            graph.stages[i].kind() == crate::stages::StageKind::Train
                && graph.inputs_of(i).contains(&windows)
        })
        .map(|i| graph.stages[i].stage().params())
}

/// The windows stage `windows` makes, made without the cache.
fn experiment_windows(
    exp: &crate::spec::experiment::Experiment,
    windows: usize,
) -> Result<crate::artifact::WindowSet> {
    let graph = &exp.graph;
    // The window stage and everything upstream of it, run in the graph's order.
    let mut needed = vec![false; graph.stages.len()];
    let mut todo = vec![windows];
    while let Some(i) = todo.pop() {
        if !std::mem::replace(&mut needed[i], true) {
            todo.extend(graph.inputs_of(i));
        }
    }
    let mut made: Vec<Option<crate::artifact::Artifact>> = vec![None; graph.stages.len()];
    for &i in graph.order() {
        if !needed[i] {
            continue;
        }
        let inputs: Vec<&crate::artifact::Artifact> = graph
            .inputs_of(i)
            .iter()
            .filter_map(|&j| made[j].as_ref())
            .collect();
        let spec = &graph.stages[i];
        let out = crate::stages::run_detached(spec.stage(), &exp.base_dir, &inputs)
            .with_context(|| format!("stage `{}`", spec.name))?;
        made[i] = Some(out);
    }
    match made[windows].take() {
        Some(crate::artifact::Artifact::Windows(w)) => Ok(w),
        _ => anyhow::bail!("stage `{}` made no windows", graph.stages[windows].name),
    }
}

/// The process's resident memory now and at its peak, in bytes (Linux).
fn memory() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// `meta.json` beside the exported ids: their shape, the floor's held-out loss, and the recipe of the `train` stage
/// that reads them, so that a reference implementation trains the same model on the same ids
/// (`bench/torch_lm.py`) and checks the same floor (`bench/kneser_ney.py`).
#[derive(serde::Serialize)]
struct ExportMeta {
    order: usize,
    vocab: usize,
    seq_len: usize,
    /// The order-`order` floor's held-out loss, nats per token (`None` with no held-out tokens).
    floor_val_loss: Option<f64>,
    /// As the train stage's fingerprint holds them (parameters at their defaults are left out).
    train: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// Writes the windows' training and validation files (one file's ids a line) and `meta.json`.
fn export_windows(
    windows: &crate::artifact::WindowSet,
    dir: &Path,
    meta: &ExportMeta,
) -> Result<()> {
    use crate::artifact::Split;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    for (split, name) in [
        (Split::Train, "train.txt"),
        (Split::Validation, "validation.txt"),
    ] {
        let mut text = String::new();
        for f in windows.files.iter().filter(|f| f.split == split) {
            let ids: Vec<String> = windows.ids[f.offset..f.offset + f.len]
                .iter()
                .map(u32::to_string)
                .collect();
            text.push_str(&ids.join(" "));
            text.push('\n');
        }
        let path = dir.join(name);
        std::fs::write(&path, text)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    let path = dir.join("meta.json");
    std::fs::write(&path, serde_json::to_vec_pretty(meta)?)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

/// `bench ngram`: fit and score times (medians) and the peak memory of the n-gram floor on an experiment's windows,
/// with its held-out loss at every order.
pub fn ngram_report(bench: &NgramBench) -> super::error::Result<String> {
    use crate::nn::ngram::Model;
    use crate::stages::ngram::{fit, score};
    let study = super::load(bench.file, bench.set)?;
    let exp = &study.points[0].experiment;
    let stage = windows_stage(exp).map_err(super::error::Error::Failed)?;
    let windows = experiment_windows(exp, stage).map_err(super::error::Error::Failed)?;
    let (mut fits, mut scores) = (Vec::new(), Vec::new());
    let mut peak = None;
    let mut result = None;
    for run in 0..bench.runs.max(1) {
        let started = Instant::now();
        let model = Model::new(fit(&windows, bench.order));
        fits.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let scored = score(&model, &windows);
        scores.push(started.elapsed().as_secs_f64());
        if run == 0 {
            peak = memory().map(|(_, hwm)| hwm);
            result = Some((
                model.counts().sizes(),
                model.counts().tokens,
                model.heap_bytes(),
                scored,
            ));
        }
    }
    let (sizes, tokens, model_bytes, (nll, targets)) = result.expect("at least one run");
    if let Some(dir) = bench.export {
        let meta = ExportMeta {
            order: bench.order,
            vocab: windows.tokens.len(),
            seq_len: windows.seq_len,
            floor_val_loss: nll
                .last()
                .filter(|_| targets > 0)
                .map(|sum| sum / targets as f64),
            train: train_params(exp, stage),
        };
        export_windows(&windows, dir, &meta).map_err(super::error::Error::Failed)?;
    }
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    let mut out = format!(
        "ngram order {} on {} ({} training tokens, {} held-out targets, vocabulary {})\n  \
         fit: median {:.3} s, score: median {:.3} s over {} runs\n  \
         model in memory: {:.1} MiB ({:.0} bytes per training token); the whole process at its peak: {}\n",
        bench.order,
        exp.path.display(),
        tokens,
        targets,
        windows.tokens.len(),
        median(fits),
        median(scores),
        bench.runs.max(1),
        mib(model_bytes as u64),
        model_bytes as f64 / tokens.max(1) as f64,
        peak.map_or("not measured (Linux only)".to_string(), |b| format!(
            "{:.1} MiB",
            mib(b)
        )),
    );
    out.push_str("  order  ngrams  held-out nats/token\n");
    for (n, (size, sum)) in sizes.iter().zip(&nll).enumerate() {
        let loss = if targets > 0 {
            format!("{:.4}", sum / targets as f64)
        } else {
            "—".into()
        };
        out.push_str(&format!("  {:>5}  {size:>6}  {loss}\n", n + 1));
    }
    Ok(out)
}
