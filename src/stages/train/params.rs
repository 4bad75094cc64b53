//! The `train` stage's parameters: their bounds (declared once, for the schema and the checks), defaults and
//! checks, and the summary a training reports.

use serde::{Deserialize, Serialize};

use crate::artifact::{EpochStats, best_epoch};
use crate::nn::device::{DeviceChoice, DeviceKind};
use crate::nn::model::{InputMode, ModelConfig};
use crate::nn::optim::OptimizerKind;
use crate::stages::schedule::LrSchedule;
use crate::stages::stage::{CheckContext, ParamProblem, Params};

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
    pub(super) fn stops(&self, history: &[EpochStats]) -> bool {
        self.patience > 0
            && best_epoch(history).is_some_and(|b| history.len() - b >= self.patience as usize)
    }

    pub(super) fn config(&self, vocab: usize) -> ModelConfig {
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
