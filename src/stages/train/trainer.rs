//! The `train` stage itself: the memory check, resuming, the epoch loop with its live `loss.csv`, early stopping
//! and the NaN guard, checkpoints, and the result with its summary.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use anyhow::{Context, bail};
use candle_core::Device;
use rand::seq::SliceRandom;

use super::batches::{batch_tensors, batch_tensors_every, evaluate, rng_for};
use super::params::{Targets, Train, TrainSummary};
use crate::artifact::ReportFile;
use crate::artifact::{
    Artifact, EpochStats, LOSS_HEADER, Split, TrainedModel, WindowSet, best_epoch,
};
use crate::fingerprint::Fingerprint;
use crate::nn::model::{Dropout, InputMode, Model, ModelConfig, Trainable};
use crate::nn::optim::Optimizer;
use crate::stages::kind::StageKind;
use crate::stages::schedule::{LrSchedule, Schedule};
use crate::stages::stage::{
    BatchProgress, EpochProgress, RunContext, Stage, StageOutput, params_of,
};
use crate::stages::units::loss_units;

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
