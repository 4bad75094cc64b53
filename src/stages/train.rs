//! `train`: fits the paper's LSTM to the training windows with Candle, writing `loss.csv` as it goes.
//!
//! Batches are drawn from a shuffle seeded by `(seed, epoch)` and dropout masks from a generator seeded the same
//! way, so epoch N does the same work whether it runs in one go or after a resume; extending a finished training
//! (raising only `epochs`) continues from the saved weights and optimizer state and gives the same result as
//! training the longer run at once.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use anyhow::{Context, bail};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::kind::StageKind;
use super::schedule::{LrSchedule, Schedule};
use super::stage::{
    BatchProgress, CheckContext, EpochProgress, ParamProblem, Params, RunContext, Stage,
    StageOutput, params_of,
};
use super::units::loss_units;
use crate::artifact::ReportFile;
use crate::artifact::{
    Artifact, EpochStats, LOSS_HEADER, Split, TrainedModel, WindowSet, best_epoch,
};
use crate::fingerprint::Fingerprint;
use crate::nn::device::{DeviceChoice, DeviceKind};
use crate::nn::model::{Dropout, InputMode, Model, ModelConfig, Trainable};
use crate::nn::optim::{Optimizer, OptimizerKind};

/// Each whole-number parameter's bounds, declared once: the schema states them (`schemars(range)`) and
/// [`Params::check`] enforces them.
mod bounds {
    use crate::stages::real::Real;

    pub const DROPOUT: Real = Real::at_least(0.0).below(1.0);
    pub const LEARNING_RATE: Real = Real::above(0.0);
    pub const CLIP_NORM: Real = Real::at_least(0.0);
    pub const LAYERS: (u32, u32) = (1, 16);
    pub const HIDDEN: (u32, u32) = (1, 8_192);
    pub const DENSE: (u32, u32) = (0, 8_192);
    pub const EMBED_DIM: (u32, u32) = (1, 8_192);
    pub const EPOCHS: (u32, u32) = (1, 1_000_000);
    pub const BATCH_SIZE: (u32, u32) = (1, 1_048_576);
    pub const PATIENCE: (u32, u32) = (0, 1_000_000);
    pub const EPOCH_WINDOWS: (u32, u32) = (0, 1_073_741_824);
    pub const LR_PATIENCE: (u32, u32) = (1, 1_000_000);
    pub const WARMUP: (u32, u32) = (0, 1_000_000);
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Train {
    /// Stacked LSTM layers (the paper: 3).
    #[serde(default = "d::layers")]
    #[schemars(range(min = bounds::LAYERS.0, max = bounds::LAYERS.1))]
    pub layers: u32,
    /// Units per LSTM layer (the paper: 512).
    #[serde(default = "d::hidden")]
    #[schemars(range(min = bounds::HIDDEN.0, max = bounds::HIDDEN.1))]
    pub hidden: u32,
    /// Dropout after each LSTM layer, 0 to below 1 (the paper: 0.3).
    #[serde(default = "d::dropout")]
    #[schemars(transform = bounds::DROPOUT.in_schema())]
    pub dropout: f64,
    /// Units of the dense layer before the output (the paper: 256).
    #[serde(default = "d::dense")]
    #[schemars(range(min = bounds::DENSE.0, max = bounds::DENSE.1))]
    pub dense: u32,
    #[serde(default = "d::input")]
    pub input: InputMode,
    /// Size of a token's embedding with `input = "embedding"`.
    #[serde(default = "d::embed_dim")]
    #[schemars(range(min = bounds::EMBED_DIM.0, max = bounds::EMBED_DIM.1))]
    pub embed_dim: u32,
    /// Passes over the training windows (the paper: 200).
    #[serde(default = "d::epochs")]
    #[schemars(range(min = bounds::EPOCHS.0, max = bounds::EPOCHS.1))]
    pub epochs: u32,
    /// Windows per training step (the paper: 64).
    #[serde(default = "d::batch_size")]
    #[schemars(range(min = bounds::BATCH_SIZE.0, max = bounds::BATCH_SIZE.1))]
    pub batch_size: u32,
    #[serde(default = "d::optimizer")]
    pub optimizer: OptimizerKind,
    /// The optimizer's step size (the paper: RMSprop at 0.001).
    #[serde(default = "d::learning_rate")]
    #[schemars(transform = bounds::LEARNING_RATE.in_schema())]
    pub learning_rate: f64,
    /// Drives the initial weights, each epoch's shuffle and dropout.
    #[serde(default = "d::seed")]
    pub seed: u64,
    #[serde(default = "d::device")]
    pub device: DeviceChoice,
    /// What `device = "auto"` stands for: not written in the file but decided when the experiment is loaded
    /// ([`Params::complete`]), the same on the machine that fingerprints a training and the one that runs it. The
    /// fingerprint holds the kind (`cpu`, `cuda`, `metal`), never `auto`.
    #[serde(skip, default = "DeviceKind::here")]
    #[schemars(skip)]
    pub auto_device: DeviceKind,
    /// Stop after this many epochs without a lower validation loss; 0 = never (the paper). Left out of the
    /// fingerprint when 0, so trainings from before it existed stay cached.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = bounds::PATIENCE.0, max = bounds::PATIENCE.1))]
    #[schemars(extend("default" = 0))]
    pub patience: u32,
    /// Store the weights (and optimizer state) of the epoch with the lowest validation loss instead of the last.
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("default" = false))]
    pub restore_best: bool,
    /// Train each epoch on this many training windows, drawn afresh from the epoch's shuffle; 0 = all of them (the
    /// paper). Transposed copies multiply the windows; this keeps an epoch's cost while every epoch sees other
    /// keys. Left out of the fingerprint when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = bounds::EPOCH_WINDOWS.0, max = bounds::EPOCH_WINDOWS.1))]
    #[schemars(extend("default" = 0))]
    pub epoch_windows: u32,
    /// What a window is trained to predict: `last`, the token after it (the paper), or `all`, the token after
    /// every prefix of it — `seq_len` targets for about the cost of one. Validation always scores the token after
    /// the window, so the two compare. Left out of the fingerprint at `last`.
    #[serde(default, skip_serializing_if = "Targets::is_last")]
    #[schemars(extend("default" = "last"))]
    pub targets: Targets,
    /// How the learning rate changes: `constant` (the paper), `plateau` (halved each time `lr_patience` epochs
    /// pass without a lower validation loss) or `cosine` (down to 0 over `epochs`). Left out of the fingerprint at
    /// `constant`.
    #[serde(default, skip_serializing_if = "LrSchedule::is_constant")]
    #[schemars(extend("default" = "constant"))]
    pub lr_schedule: LrSchedule,
    /// For `lr_schedule = "plateau"`: epochs without a lower validation loss before each halving.
    #[serde(default = "d::lr_patience", skip_serializing_if = "d::is_lr_patience")]
    #[schemars(range(min = bounds::LR_PATIENCE.0, max = bounds::LR_PATIENCE.1))]
    #[schemars(extend("default" = 2))]
    pub lr_patience: u32,
    /// Epochs over which the rate rises linearly to `learning_rate` first (any schedule); 0 = none.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = bounds::WARMUP.0, max = bounds::WARMUP.1))]
    #[schemars(extend("default" = 0))]
    pub warmup: u32,
    /// The largest global L2 norm of the gradients; a larger one is scaled down to it before each step. 0 = no
    /// clipping (the paper). Left out of the fingerprint at 0.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    #[schemars(transform = bounds::CLIP_NORM.in_schema())]
    #[schemars(extend("default" = 0.0))]
    pub clip_norm: f64,
}

/// What a window is trained to predict: the token after it (`last`, the paper) or after every prefix (`all`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Targets {
    #[default]
    Last,
    All,
}

impl Targets {
    fn is_last(&self) -> bool {
        *self == Targets::Last
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
}

/// Defaults: the paper's model and training.
mod d {
    use super::*;
    pub fn layers() -> u32 {
        3
    }
    pub fn hidden() -> u32 {
        512
    }
    pub fn dropout() -> f64 {
        0.3
    }
    pub fn dense() -> u32 {
        256
    }
    pub fn input() -> InputMode {
        InputMode::Scalar
    }
    pub fn embed_dim() -> u32 {
        64
    }
    pub fn epochs() -> u32 {
        200
    }
    pub fn batch_size() -> u32 {
        64
    }
    pub fn optimizer() -> OptimizerKind {
        OptimizerKind::Rmsprop
    }
    pub fn learning_rate() -> f64 {
        0.001
    }
    pub fn seed() -> u64 {
        42
    }
    pub fn device() -> DeviceChoice {
        DeviceChoice::Auto
    }
    pub fn lr_patience() -> u32 {
        2
    }
    pub fn is_lr_patience(n: &u32) -> bool {
        *n == lr_patience()
    }
}

fn in_range(
    problems: &mut Vec<ParamProblem>,
    key: &'static str,
    value: u32,
    (lo, hi): (u32, u32),
    what: &str,
) {
    if !(lo..=hi).contains(&value) {
        problems.push(
            ParamProblem::new(key, format!("must be between {lo} and {hi}, got {value}"))
                .hint(format!("`{key}` is {what}")),
        );
    }
}

/// What a `train` stage reports in the run manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainSummary {
    /// The device it trained on (`cpu`, `cuda:0`, …).
    pub device: String,
    pub parameters: usize,
    pub epochs: usize,
    /// The checkpoint it went on from, if it did.
    pub resumed_from_epoch: Option<usize>,
    pub train_windows: usize,
    /// The training windows each epoch trained on (`epoch_windows`, or all of them).
    pub windows_per_epoch: usize,
    pub final_train_loss: f64,
    pub final_val_loss: Option<f64>,
    pub final_val_accuracy: Option<f64>,
    /// Training time, summed over epochs (across resumptions).
    pub seconds: f64,
    /// The epoch with the lowest validation loss (the stored model's with `restore_best`).
    pub best_epoch: Option<usize>,
    /// Whether `patience` ended the training before `epochs`.
    pub stopped_early: bool,
    /// The final validation loss per onset: the held-out negative log-likelihood over every predicted token, divided
    /// by the predicted tokens that are notes or chords. Equal to `final_val_loss` for the paper's tokens; with timed
    /// tokens (three per onset) it is what compares with them.
    pub final_val_loss_per_onset: Option<f64>,
    /// The same for the epoch with the lowest validation loss (the stored one, with `restore_best`).
    pub best_val_loss_per_onset: Option<f64>,
    /// The lowest validation loss of any epoch (nats per token).
    pub best_val_loss: Option<f64>,
    /// It in bits per onset and per quarter note (timed tokens only): units that compare across token schemes.
    pub best_val_bits_per_onset: Option<f64>,
    pub best_val_bits_per_quarter: Option<f64>,
    /// The held-out loss of the experiment's `ngram` stage on the same windows (nats per token), filled in by the
    /// report, not by the stage: the floor this training is measured against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_val_loss: Option<f64>,
    /// `best_val_loss − floor_val_loss`: negative when the LSTM predicts the held-out music better than the floor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss_vs_floor: Option<f64>,
    /// The floor's order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_order: Option<usize>,
    /// The learning rate the last epoch trained at: `learning_rate` as the schedule left it (none in summaries from
    /// before schedules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_learning_rate: Option<f64>,
}

impl Params for Train {
    fn complete(&mut self, ctx: &CheckContext) {
        self.auto_device = ctx.auto_device;
    }

    fn check(&self, _: &CheckContext) -> Vec<ParamProblem> {
        let mut p = Vec::new();
        in_range(
            &mut p,
            "layers",
            self.layers,
            bounds::LAYERS,
            "the number of stacked LSTM layers (the paper: 3)",
        );
        in_range(
            &mut p,
            "hidden",
            self.hidden,
            bounds::HIDDEN,
            "the units per LSTM layer (the paper: 512)",
        );
        in_range(
            &mut p,
            "dense",
            self.dense,
            bounds::DENSE,
            "the dense layer's width, 0 for none (the paper: 256)",
        );
        in_range(
            &mut p,
            "embed_dim",
            self.embed_dim,
            bounds::EMBED_DIM,
            "the embedding width with `input = \"embedding\"`",
        );
        in_range(
            &mut p,
            "epochs",
            self.epochs,
            bounds::EPOCHS,
            "the number of passes over the training windows",
        );
        in_range(
            &mut p,
            "patience",
            self.patience,
            bounds::PATIENCE,
            "the epochs without a lower validation loss after which training stops (0 = never)",
        );
        in_range(
            &mut p,
            "epoch_windows",
            self.epoch_windows,
            bounds::EPOCH_WINDOWS,
            "the training windows each epoch draws (0 = all)",
        );
        in_range(
            &mut p,
            "batch_size",
            self.batch_size,
            bounds::BATCH_SIZE,
            "the windows per training step",
        );
        p.extend(bounds::DROPOUT.check("dropout", self.dropout).map(|e| {
            e.hint("`dropout` is the share of activations zeroed while training (the paper: 0.3)")
        }));
        p.extend(
            bounds::LEARNING_RATE
                .check("learning_rate", self.learning_rate)
                .map(|e| e.hint("the paper used RMSprop with 0.001")),
        );
        self.check_schedule(&mut p);
        if let Err(e) = self.device.check() {
            p.push(ParamProblem {
                key: "device",
                problem: e,
            });
        }
        p
    }
}

impl Train {
    /// The learning-rate schedule's and clipping's settings.
    fn check_schedule(&self, p: &mut Vec<ParamProblem>) {
        in_range(
            p,
            "lr_patience",
            self.lr_patience,
            bounds::LR_PATIENCE,
            "the epochs without a lower validation loss before `plateau` halves the rate",
        );
        in_range(
            p,
            "warmup",
            self.warmup,
            bounds::WARMUP,
            "the epochs the rate rises over before the schedule starts (all of them when it is `epochs` or more)",
        );
        p.extend(
            bounds::CLIP_NORM
                .check("clip_norm", self.clip_norm)
                .map(|e| {
                    e.hint("`clip_norm` caps the gradients' global L2 norm; 0 turns clipping off")
                }),
        );
    }

    /// Whether `patience` ends the training here: that many epochs since the lowest validation loss.
    fn stops(&self, history: &[EpochStats]) -> bool {
        self.patience > 0
            && best_epoch(history).is_some_and(|b| history.len() - b >= self.patience as usize)
    }

    fn config(&self, vocab: usize) -> ModelConfig {
        ModelConfig {
            vocab,
            layers: self.layers as usize,
            hidden: self.hidden as usize,
            dropout: self.dropout as f32,
            dense: self.dense as usize,
            input: self.input,
            embed_dim: self.embed_dim as usize,
        }
    }
}

/// Where a training stands after the last epoch of `history`.
fn progress_of(history: &[EpochStats], epochs: u32) -> EpochProgress {
    let last = history.last().expect("at least one epoch");
    EpochProgress {
        epoch: history.len(),
        epochs: epochs as usize,
        train_loss: last.train_loss,
        val_loss: last.val_loss,
        seconds: last.seconds,
    }
}

/// The error of a training that diverged `at` during epoch `epoch` (from 0): the last good weights (before that
/// epoch) are kept in the report as `model.last-good.safetensors`, and the error says where.
fn diverged(ctx: &RunContext, last_good: &[u8], epoch: usize, at: String) -> anyhow::Error {
    let kept = ctx.report_file("model.last-good.safetensors");
    if let Err(e) = std::fs::write(&kept, last_good) {
        return anyhow::anyhow!(
            "{at}; the last good weights could not be kept in `{}`: {e}",
            kept.display()
        );
    }
    let which = match epoch {
        0 => "the initial weights are".to_string(),
        n => format!("the weights after epoch {n} are"),
    };
    anyhow::anyhow!(
        "{at}; {which} in `{}`; try a lower `learning_rate`",
        kept.display()
    )
}

/// A generator for one purpose in one epoch, so every epoch's randomness is independent of where training started.
fn rng_for(seed: u64, epoch: usize, purpose: u64) -> ChaCha8Rng {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(epoch as u64).to_le_bytes());
    key[16..].copy_from_slice(&purpose.to_le_bytes());
    ChaCha8Rng::from_seed(*blake3::hash(&key).as_bytes())
}

/// The `(batch, seq_len)` inputs and `(batch)` targets of the windows starting at `starts`.
pub fn batch_tensors(
    windows: &WindowSet,
    starts: &[usize],
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let mut inputs = Vec::with_capacity(starts.len() * windows.seq_len);
    let mut targets = Vec::with_capacity(starts.len());
    for &s in starts {
        let (x, y) = windows.window(s);
        inputs.extend_from_slice(x);
        targets.push(y);
    }
    Ok((
        Tensor::from_vec(inputs, (starts.len(), windows.seq_len), device)?,
        Tensor::from_vec(targets, starts.len(), device)?,
    ))
}

/// The `(batch, seq_len)` inputs and the `(batch, seq_len)` tokens that follow each of their prefixes.
fn batch_tensors_every(
    windows: &WindowSet,
    starts: &[usize],
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let n = windows.seq_len;
    let mut inputs = Vec::with_capacity(starts.len() * n);
    let mut targets = Vec::with_capacity(starts.len() * n);
    for &s in starts {
        inputs.extend_from_slice(&windows.ids[s..s + n]);
        targets.extend_from_slice(&windows.ids[s + 1..s + n + 1]);
    }
    Ok((
        Tensor::from_vec(inputs, (starts.len(), n), device)?,
        Tensor::from_vec(targets, starts.len() * n, device)?,
    ))
}

/// Mean loss and accuracy over the validation windows, without dropout: the token after each window, scored
/// in batches of [`scoring_batch`] windows and summed per window, so the result does not depend on the batch.
fn evaluate(
    model: &Model,
    windows: &WindowSet,
    device: &Device,
) -> candle_core::Result<Option<(f64, f64)>> {
    let starts: Vec<usize> = windows.starts(Split::Validation).collect();
    if starts.is_empty() {
        return Ok(None);
    }
    let (mut nll, mut correct) = (0.0, 0usize);
    let hidden = model.config().hidden;
    for chunk in starts.chunks(scoring_batch(device, windows.seq_len, hidden)) {
        let (x, y) = batch_tensors(windows, chunk, device)?;
        let logits = model.score(&x)?;
        let log_p = candle_nn::ops::log_softmax(&logits, 1)?
            .gather(&y.unsqueeze(1)?, 1)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        nll -= log_p.iter().map(|&l| f64::from(l)).sum::<f64>();
        correct += logits
            .argmax(1)?
            .eq(&y)?
            .to_dtype(candle_core::DType::U32)?
            .sum_all()?
            .to_scalar::<u32>()? as usize;
    }
    Ok(Some((
        nll / starts.len() as f64,
        correct as f64 / starts.len() as f64,
    )))
}

/// Windows per scoring batch, whatever the training's batch. On the CPU, 48 sequences per thread: each thread
/// runs its own slice of the batch, and 48 rows fill gemm's 6-row AVX-512 (and 4- and 3-row AVX2) kernels with no
/// narrow remainder, where the 32 per thread of a batch of 64 on two cores left a 2-row one (scoring the Bach
/// chorales' held-out windows took 6 % longer so). At most 256 MB of input gates, for long windows and many
/// threads; on a GPU, 256 windows.
fn scoring_batch(device: &Device, seq_len: usize, hidden: usize) -> usize {
    if !device.is_cpu() {
        return 256;
    }
    let wanted = 48 * candle_core::utils::get_num_threads().max(1);
    let cap = (256 << 20) / (seq_len * 4 * hidden * std::mem::size_of::<f32>()).max(1);
    wanted.min(cap).max(1)
}

impl Stage for Train {
    fn kind(&self) -> StageKind {
        StageKind::Train
    }

    /// The kind of device as resolved on this machine (`auto` → `cuda` or `cpu`), since results differ between kinds;
    /// `embed_dim` only where it is used.
    fn params(&self) -> BTreeMap<String, serde_json::Value> {
        let mut p = params_of(self);
        p.insert(
            "device".into(),
            self.device.kind(self.auto_device).name().into(),
        );
        if self.input == InputMode::Scalar {
            p.remove("embed_dim");
        }
        p
    }

    /// A finished training can be extended: same everything, more epochs.
    fn resumable(&self, old: &Fingerprint, new: &Fingerprint) -> bool {
        // The old training's parameters, read back typed from its (untrusted) fingerprint: one that does not read
        // as a training is not continued.
        let params = serde_json::Value::Object(old.params.clone().into_iter().collect());
        let Ok(mut before) = serde_json::from_value::<Train>(params) else {
            return false;
        };
        let longer = before.epochs < self.epochs;
        before.epochs = self.epochs;
        old.kind == new.kind
            && old.version == new.version
            && old
                .inputs
                .iter()
                .map(|i| i.hash)
                .eq(new.inputs.iter().map(|i| i.hash))
            && longer
            && before.params() == new.params
            // A cosine's every rate depends on `epochs`: a longer one is another training from the start.
            && self.lr_schedule != LrSchedule::Cosine
    }

    fn run(&self, ctx: &mut RunContext, inputs: &[&Artifact]) -> anyhow::Result<StageOutput> {
        let windows = inputs[0].windows()?;
        let (device, device_name, _lease) = self
            .device
            .open(self.auto_device)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let cfg = self.config(windows.tokens.len());
        self.check_fits(&cfg, windows, &device, &device_name)?;
        self.check_validation(windows)?;
        let (trainable, mut optimizer, mut history, resumed_from_epoch) =
            self.start(ctx, &cfg, &device)?;
        let units = loss_units(windows);
        let mut log = LossLog::create(ctx, &history, &units)?;
        if !history.is_empty() {
            (ctx.on_epoch)(&EpochProgress {
                seconds: 0.0,
                ..progress_of(&history, self.epochs)
            });
        }
        let run = Running::new(self, &cfg, windows, &device, &trainable.model);
        let mut last_good = trainable.to_safetensors()?;
        // With `restore_best`, the weights and optimizer state of the best epoch so far: what is stored.
        let mut kept: Option<(Vec<u8>, Vec<u8>)> = None;
        if self.restore_best && !history.is_empty() && best_epoch(&history) == Some(history.len()) {
            kept = Some((last_good.clone(), optimizer.state_bytes()?));
        }
        let schedule = self.schedule();
        for epoch in history.len()..self.epochs as usize {
            if self.stops(&history) {
                break;
            }
            optimizer.set_learning_rate(schedule.rate(epoch, &history));
            let stats = run.epoch(ctx, epoch, &mut optimizer, &last_good)?;
            let row = stats.loss_row(None, &units);
            history.push(stats);
            last_good = trainable.to_safetensors()?;
            if self.restore_best && best_epoch(&history) == Some(history.len()) {
                kept = Some((last_good.clone(), optimizer.state_bytes()?));
            }
            if let Some(checkpoint) = &ctx.checkpoint {
                // Timings are kept here (not in the final output) so a resumed loss.csv still has them.
                let (weights, state) = match &kept {
                    Some((w, o)) => (w.clone(), o.clone()),
                    None => (last_good.clone(), optimizer.state_bytes()?),
                };
                let progress = run.snapshot(&weights, state, history.clone());
                checkpoint.save(&Artifact::Model(Box::new(progress)))?;
            }
            // The row goes out after the checkpoint, so an epoch the live loss.csv shows is never lost to a kill.
            log.write(&row)?;
            (ctx.on_epoch)(&progress_of(&history, self.epochs));
        }
        if history.len() < self.epochs as usize {
            // Stopped early: the board's bar ends here, at the epochs it ran, not at the epochs asked for.
            (ctx.on_epoch)(&EpochProgress {
                epochs: history.len(),
                seconds: 0.0,
                ..progress_of(&history, self.epochs)
            });
        }
        let (weights, state) = match kept {
            Some(k) => k,
            None => (last_good, optimizer.state_bytes()?),
        };
        let summary = self.summary(&run, &device_name, &history, resumed_from_epoch, &units);
        self.output(&run, &device_name, history, weights, state, summary, &units)
    }
}

/// What every epoch of one training shares: the model and its data, and how epochs are cut into batches.
struct Running<'a> {
    cfg: &'a ModelConfig,
    windows: &'a WindowSet,
    device: &'a Device,
    model: &'a Model,
    seed: u64,
    epochs: u32,
    clip_norm: f64,
    /// A loss at every step of a window, or only after its last.
    every: bool,
    train_starts: Vec<usize>,
    per_epoch: usize,
    batch: usize,
    batches: usize,
}

impl<'a> Running<'a> {
    fn new(
        train: &Train,
        cfg: &'a ModelConfig,
        windows: &'a WindowSet,
        device: &'a Device,
        model: &'a Model,
    ) -> Self {
        let train_starts: Vec<usize> = windows.starts(Split::Train).collect();
        let per_epoch = match train.epoch_windows as usize {
            0 => train_starts.len(),
            n => n.min(train_starts.len()),
        };
        let batch = train.batch_size as usize;
        Self {
            cfg,
            windows,
            device,
            model,
            seed: train.seed,
            epochs: train.epochs,
            clip_norm: train.clip_norm,
            every: train.targets == Targets::All,
            train_starts,
            per_epoch,
            batch,
            batches: per_epoch.div_ceil(batch),
        }
    }

    /// Trains epoch `epoch` (0-based) and validates: its stats. A loss that stops being a number is divergence,
    /// an error naming the epoch (and where the last good weights are).
    fn epoch(
        &self,
        ctx: &RunContext,
        epoch: usize,
        optimizer: &mut Optimizer,
        last_good: &[u8],
    ) -> anyhow::Result<EpochStats> {
        let started = Instant::now();
        let mut order = self.train_starts.clone();
        order.shuffle(&mut rng_for(self.seed, epoch, 0));
        order.truncate(self.per_epoch);
        let mut dropout = Dropout::new(self.cfg.dropout, rng_for(self.seed, epoch, 1));
        let mut total = 0.0;
        for (b, chunk) in order.chunks(self.batch).enumerate() {
            crate::interrupt::check()?;
            let (x, y) = if self.every {
                batch_tensors_every(self.windows, chunk, self.device)?
            } else {
                batch_tensors(self.windows, chunk, self.device)?
            };
            let loss = self.model.batch_loss(&x, &y, self.every, &mut dropout)?;
            let value = f64::from(loss.to_scalar::<f32>()?);
            if !value.is_finite() {
                let at = format!(
                    "the training loss became {value} in epoch {} (batch {})",
                    epoch + 1,
                    b + 1
                );
                return Err(diverged(ctx, last_good, epoch, at));
            }
            let mut grads = loss.backward()?;
            if self.clip_norm > 0.0 {
                optimizer.clip(&mut grads, self.clip_norm)?;
            }
            optimizer.step(&grads)?;
            total += value * chunk.len() as f64;
            (ctx.on_batch)(&BatchProgress {
                epoch: epoch + 1,
                epochs: self.epochs as usize,
                batch: b + 1,
                batches: self.batches,
            });
        }
        let val = evaluate(self.model, self.windows, self.device)?;
        // A validation loss that is not a number is divergence too (the last step's update broke the weights):
        // never a model to cache, nor an epoch to call best.
        if let Some((loss, _)) = val.filter(|v| !v.0.is_finite()) {
            let at = format!(
                "the validation loss became {loss} after epoch {}",
                epoch + 1
            );
            return Err(diverged(ctx, last_good, epoch, at));
        }
        Ok(EpochStats {
            epoch: epoch + 1,
            train_loss: total / self.per_epoch as f64,
            val_loss: val.map(|v| v.0),
            val_accuracy: val.map(|v| v.1),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The model as it stands: what a checkpoint holds after each epoch, and what the stage returns at the end.
    fn snapshot(
        &self,
        weights: &[u8],
        optimizer: Vec<u8>,
        history: Vec<EpochStats>,
    ) -> TrainedModel {
        TrainedModel {
            config: self.cfg.clone(),
            weights: weights.to_vec(),
            optimizer,
            history,
            windows: self.windows.clone(),
        }
    }
}

/// The live `loss.csv`: a row per epoch as it ends, so the board, `ps` and a kill see every finished epoch.
struct LossLog(std::fs::File);

impl LossLog {
    /// Starts it with the epochs `history` already has (a resumed training's).
    fn create(
        ctx: &RunContext,
        history: &[EpochStats],
        units: &crate::artifact::LossUnits,
    ) -> anyhow::Result<Self> {
        let path = ctx.report_file("loss.csv");
        let mut file = std::fs::File::create(&path)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        file.write_all(LOSS_HEADER.as_bytes())?;
        for s in history {
            file.write_all(s.loss_row(None, units).as_bytes())?;
        }
        file.flush()?;
        Ok(Self(file))
    }

    fn write(&mut self, row: &str) -> anyhow::Result<()> {
        self.0.write_all(row.as_bytes())?;
        self.0.flush()?;
        Ok(())
    }
}

impl Train {
    /// A shape the parameter checks allow can still be far beyond this machine or GPU (16 × 8192 units): said
    /// before allocating, instead of being killed or running out of GPU memory half-way.
    fn check_fits(
        &self,
        cfg: &ModelConfig,
        windows: &WindowSet,
        device: &Device,
        device_name: &str,
    ) -> anyhow::Result<()> {
        let every = self.targets == Targets::All;
        let needed = cfg.training_bytes(self.batch_size as usize, windows.seq_len, every);
        if let Some(free) = crate::nn::device::free_memory(device)
            && needed > free
        {
            let gib = |b: u128| b as f64 / f64::from(1u32 << 30);
            anyhow::bail!(
                "training this model needs at least {:.1} GiB ({} parameters, batches of {} windows of {}), but \
                 only {:.1} GiB of memory is free on {device_name}; lower `hidden`, `layers` or `batch_size`",
                gib(needed),
                cfg.parameter_count(),
                self.batch_size,
                windows.seq_len,
                gib(free)
            );
        }
        Ok(())
    }

    /// What reads the validation loss needs validation windows: `patience` and the `plateau` schedule.
    fn check_validation(&self, windows: &WindowSet) -> anyhow::Result<()> {
        if windows.starts(Split::Validation).next().is_some() {
            return Ok(());
        }
        if self.patience > 0 {
            bail!(
                "`patience = {}` stops on the validation loss, but there are no validation windows; set \
                 `val_fraction` above 0 in the window stage, or `patience = 0`",
                self.patience
            );
        }
        if self.lr_schedule == LrSchedule::Plateau {
            bail!(
                "`lr_schedule = \"plateau\"` follows the validation loss, but there are no validation windows; set \
                 `val_fraction` above 0 in the window stage, or use another schedule"
            );
        }
        Ok(())
    }

    fn schedule(&self) -> Schedule {
        Schedule {
            kind: self.lr_schedule,
            base: self.learning_rate,
            epochs: self.epochs,
            warmup: self.warmup,
            patience: self.lr_patience,
        }
    }

    /// The model, optimizer and epochs to go on from: a checkpoint's or a shorter finished training's when the run
    /// context has one of this shape, else fresh ones. The fourth value: the epochs it resumed after.
    fn start(
        &self,
        ctx: &RunContext,
        cfg: &ModelConfig,
        device: &Device,
    ) -> anyhow::Result<(Trainable, Optimizer, Vec<EpochStats>, Option<usize>)> {
        let optimizer_of =
            |t: &Trainable| Optimizer::new(self.optimizer, self.learning_rate, t.named_vars());
        let resumed = match ctx.resume.as_ref().map(|r| r.artifact.as_ref()) {
            // Fewer epochs: a finished shorter training or a checkpoint; as many: a checkpoint of the last epoch.
            Some(Artifact::Model(prev))
                if prev.config == *cfg && prev.epochs() <= self.epochs as usize =>
            {
                prev
            }
            _ => {
                let t = Trainable::init(cfg, self.seed, device)?;
                let o = optimizer_of(&t)?;
                return Ok((t, o, Vec::new(), None));
            }
        };
        let t = Trainable::from_safetensors(cfg, &resumed.weights, device)?;
        let mut o = optimizer_of(&t)?;
        o.load_state(&resumed.optimizer)?;
        // Epoch timings live in the previous run's `loss.csv`, not in the model.
        let timings: Vec<EpochStats> = ctx
            .resume
            .as_ref()
            .and_then(|r| r.files.get("loss.csv"))
            .and_then(|p| crate::artifact::read_losses(p).ok())
            .unwrap_or_default();
        let mut history: Vec<EpochStats> = resumed
            .history
            .iter()
            .map(|h| EpochStats {
                seconds: timings
                    .iter()
                    .find(|t| t.epoch == h.epoch)
                    .map_or(h.seconds, |t| t.seconds),
                ..h.clone()
            })
            .collect();
        // With `restore_best` what was kept is the best epoch's state: go on from there. The epochs after it run
        // again, exactly as they ran before (every epoch's randomness depends only on its number).
        if self.restore_best
            && let Some(best) = best_epoch(&history)
        {
            history.truncate(best);
        }
        ctx.note(format!(
            "resuming from the {} epochs already trained",
            history.len()
        ));
        let from = history.len();
        Ok((t, o, history, Some(from)))
    }

    /// The summary of a finished training.
    fn summary(
        &self,
        run: &Running,
        device_name: &str,
        history: &[EpochStats],
        resumed_from_epoch: Option<usize>,
        units: &crate::artifact::LossUnits,
    ) -> TrainSummary {
        let last = history.last().expect("at least one epoch");
        let best = best_epoch(history);
        let best_loss = best.and_then(|b| history[b - 1].val_loss);
        TrainSummary {
            device: device_name.to_string(),
            parameters: run.cfg.parameter_count(),
            epochs: history.len(),
            resumed_from_epoch,
            train_windows: run.train_starts.len(),
            windows_per_epoch: run.per_epoch,
            final_train_loss: last.train_loss,
            final_val_loss: last.val_loss,
            final_val_accuracy: last.val_accuracy,
            seconds: history.iter().map(|h| h.seconds).sum::<f64>(),
            best_epoch: best,
            stopped_early: history.len() < self.epochs as usize,
            final_val_loss_per_onset: last.val_loss.and_then(|l| units.nats_per_onset(l)),
            best_val_loss_per_onset: best_loss.and_then(|l| units.nats_per_onset(l)),
            best_val_loss: best_loss,
            best_val_bits_per_onset: best_loss.and_then(|l| units.bits_per_onset(l)),
            best_val_bits_per_quarter: best_loss.and_then(|l| units.bits_per_quarter(l)),
            final_learning_rate: Some(self.schedule().rate(history.len() - 1, history)),
            ..TrainSummary::default()
        }
    }

    /// The stage's output: the stored model (`weights` and optimizer `state`, the best epoch's with
    /// `restore_best`), `loss.csv` with the best epoch marked, the weights and `model.json`.
    #[allow(clippy::too_many_arguments)]
    fn output(
        &self,
        run: &Running,
        device_name: &str,
        history: Vec<EpochStats>,
        weights: Vec<u8>,
        state: Vec<u8>,
        summary: TrainSummary,
        units: &crate::artifact::LossUnits,
    ) -> anyhow::Result<StageOutput> {
        let best = best_epoch(&history);
        let mut loss_bytes = LOSS_HEADER.as_bytes().to_vec();
        for s in &history {
            loss_bytes.extend_from_slice(s.loss_row(best.map(|b| b == s.epoch), units).as_bytes());
        }
        let model_json = serde_json::to_vec_pretty(&serde_json::json!({
            "config": run.cfg,
            "tokens": run.windows.tokens,
            "programs": run.windows.programs,
            "seq_len": run.windows.seq_len,
            "epochs": history.len(),
            "device": device_name,
            "optimizer": self.optimizer,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
        }))?;
        // Without timings, so that the same training gives byte-identical output (and early cut-off works).
        let untimed = history
            .into_iter()
            .map(|h| EpochStats { seconds: 0.0, ..h })
            .collect();
        let trained = run.snapshot(&weights, state, untimed);
        Ok(StageOutput {
            summary: serde_json::to_value(summary)?,
            files: vec![
                ReportFile {
                    name: "loss.csv".into(),
                    bytes: loss_bytes,
                },
                ReportFile {
                    name: "model.safetensors".into(),
                    bytes: weights,
                },
                ReportFile {
                    name: "model.json".into(),
                    bytes: model_json,
                },
            ],
            artifact: Artifact::Model(Box::new(trained)),
        })
    }
}
