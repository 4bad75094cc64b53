//! Where a run stands, point by point, built from its events: which stage each sweep point is at, the epoch of its
//! training with the last losses and an ETA, and how many points are done, running, queued or failed. One model for
//! the live view on a terminal, `progress.json` in the report folder, `pipeline ps` and the index page, so they
//! always agree; it is plain data (serde) so another process can read it back.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::events::{Event, Reporter, Share, StageRef};
use super::outcome::Status;
use crate::stages::{BatchProgress, EpochProgress, NgramSummary, StageKind};

/// A reporter that also shows the board: told where the run stands after each event that changed it (whoever
/// runs keeps the board and calls this; the executor only emits events).
pub trait Watcher: Reporter {
    fn progress_changed(&self, _progress: &Progress) {}
}

/// A run in progress: every point and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub experiment: String,
    pub run_id: String,
    pub pid: u32,
    pub started: jiff::Timestamp,
    pub updated: jiff::Timestamp,
    pub points: Vec<PointProgress>,
}

/// One point of the run (the only one outside a sweep, with an empty label).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointProgress {
    pub label: String,
    /// Each stage of the point, in run order, and how it stands.
    pub stages: Vec<StageProgress>,
    /// The last epoch a training of this point reported.
    pub epoch: Option<EpochAt>,
    /// How far the epoch under way is: the board's bar moves within an epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchAt>,
    /// The held-out loss of the point's n-gram floor, once its `ngram` stage is done: shown beside the training's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<f64>,
    /// Every stage parameter as `stage.param` → value (defaults filled in), as the manifest will have them: what
    /// an export of the run in progress needs.
    #[serde(default)]
    pub params: std::collections::BTreeMap<String, serde_json::Value>,
    /// Its `train` stages, by name: once they are done, the point's model is (what a sweep's totals count first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trainings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageProgress {
    pub name: String,
    pub state: StageState,
    /// When it started running (or waiting for another run, or for its Slurm job).
    pub since: Option<jiff::Timestamp>,
    /// What it waits for, when it is not computing here: another run's claim, a Slurm job.
    pub note: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    Queued,
    Running,
    Done,
    Failed,
    Stopped,
}

/// A training's last epoch, and the mean time of the epochs this run computed (for the ETA).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochAt {
    pub stage: String,
    #[serde(flatten)]
    pub progress: EpochProgress,
    pub epochs_timed: usize,
    pub mean_epoch_seconds: f64,
}

/// A training's place within the epoch under way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchAt {
    pub stage: String,
    #[serde(flatten)]
    pub progress: BatchProgress,
}

/// How a point stands as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointState {
    /// Nothing of it has started.
    Queued,
    Running,
    /// Some stages done, none running now (a pruned search's trial between rungs).
    Waiting,
    Done,
    Failed,
    Stopped,
}

impl PointProgress {
    pub fn state(&self) -> PointState {
        let any = |s: StageState| self.stages.iter().any(|st| st.state == s);
        if any(StageState::Failed) {
            PointState::Failed
        } else if any(StageState::Stopped) {
            PointState::Stopped
        } else if any(StageState::Running) {
            PointState::Running
        } else if self.stages.iter().all(|s| s.state == StageState::Done) {
            PointState::Done
        } else if any(StageState::Done) {
            PointState::Waiting
        } else {
            PointState::Queued
        }
    }

    /// The stage it is at: the last one running, in run order.
    pub fn current(&self) -> Option<&StageProgress> {
        self.stages
            .iter()
            .rev()
            .find(|s| s.state == StageState::Running)
    }

    /// The first failure.
    pub fn failure(&self) -> Option<&StageProgress> {
        self.stages.iter().find(|s| s.state == StageState::Failed)
    }

    /// How much of the training at stage `stage` is done, in epochs, counting the epoch under way in batches; and the
    /// epochs asked for. `None` before it reports anything.
    fn trained(&self, stage: &str) -> Option<(f64, usize)> {
        let epoch = self.epoch.as_ref().filter(|at| at.stage == stage);
        let batch = self.batch.as_ref().filter(|at| at.stage == stage);
        let done = epoch.map_or(0, |at| at.progress.epoch);
        let epochs = epoch
            .map(|at| at.progress.epochs)
            .or(batch.map(|at| at.progress.epochs))?;
        let partial = batch
            .map(|at| at.progress)
            .filter(|b| b.epoch == done + 1 && b.batches > 0)
            .map_or(0.0, |b| b.batch as f64 / b.batches as f64);
        Some((done as f64 + partial, epochs))
    }

    /// Seconds until the current training ends, from the mean epoch time of this run's epochs.
    pub fn eta_seconds(&self) -> Option<f64> {
        let at = self.epoch.as_ref()?;
        let current = self.current()?;
        (at.stage == current.name && at.epochs_timed > 0).then(|| {
            let (done, epochs) = self
                .trained(&current.name)
                .unwrap_or((at.progress.epoch as f64, at.progress.epochs));
            (epochs as f64 - done).max(0.0) * at.mean_epoch_seconds
        })
    }
}

/// A point as the run starts: its label, its stages in run order, its parameters.
pub struct PlannedPoint {
    pub label: String,
    pub stages: Vec<String>,
    pub params: std::collections::BTreeMap<String, serde_json::Value>,
    /// The names of its `train` stages.
    pub trainings: Vec<String>,
}

/// Points per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Points whose every training is done (done points included): the sampling and rendering after it are short,
    /// so this is what a sweep's progress is.
    pub trained: usize,
    /// Points with a `train` stage at all (`trained` is shown only when several have).
    pub training: usize,
    pub done: usize,
    pub running: usize,
    pub waiting: usize,
    pub queued: usize,
    pub failed: usize,
    pub stopped: usize,
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A sweep's points are trained long before any is done; one point's own line says where it stands.
        if self.training > 1 {
            write!(f, "{} trained, ", self.trained)?;
        }
        write!(
            f,
            "{} done, {} running, {} queued, {} failed",
            self.done, self.running, self.queued, self.failed
        )?;
        if self.waiting > 0 {
            write!(f, ", {} waiting", self.waiting)?;
        }
        if self.stopped > 0 {
            write!(f, ", {} stopped", self.stopped)?;
        }
        Ok(())
    }
}

impl Progress {
    /// A run about to start: each point (label) with its stages in run order, all queued.
    pub fn new(experiment: &str, run_id: &str, points: Vec<PlannedPoint>) -> Self {
        let now = jiff::Timestamp::now();
        Self {
            experiment: experiment.to_string(),
            run_id: run_id.to_string(),
            pid: std::process::id(),
            started: now,
            updated: now,
            points: points
                .into_iter()
                .map(
                    |PlannedPoint {
                         label,
                         stages,
                         params,
                         trainings,
                     }| PointProgress {
                        label,
                        params,
                        trainings,
                        stages: stages
                            .into_iter()
                            .map(|name| StageProgress {
                                name,
                                state: StageState::Queued,
                                since: None,
                                note: None,
                                error: None,
                            })
                            .collect(),
                        epoch: None,
                        batch: None,
                        floor: None,
                    },
                )
                .collect(),
        }
    }

    /// Takes an event in; whether it changed anything.
    pub fn apply(&mut self, event: &Event<'_>) -> bool {
        let now = jiff::Timestamp::now();
        let changed = match event {
            Event::Running { stage, .. } => self.set(stage, StageState::Running, None, None),
            Event::Resuming { stage } => self.set(stage, StageState::Running, None, None),
            Event::WaitingForOther { stage } => self.set(
                stage,
                StageState::Running,
                Some("waiting for another run".into()),
                None,
            ),
            Event::SlurmQueued { stage, job_id } | Event::SlurmFollowing { stage, job_id } => self
                .set(
                    stage,
                    StageState::Running,
                    Some(format!("Slurm job {job_id} queued")),
                    None,
                ),
            Event::SlurmStarted { stage, job_id } => self.set(
                stage,
                StageState::Running,
                Some(format!("Slurm job {job_id}")),
                None,
            ),
            Event::Epoch { stage, progress } => {
                for point in self.points_mut(stage) {
                    let timed = progress.seconds > 0.0;
                    let (n, mean) = match &point.epoch {
                        Some(at) if at.stage == stage.name => {
                            (at.epochs_timed, at.mean_epoch_seconds)
                        }
                        _ => (0, 0.0),
                    };
                    let (n, mean) = if timed {
                        (n + 1, (mean * n as f64 + progress.seconds) / (n + 1) as f64)
                    } else {
                        (n, mean)
                    };
                    point.epoch = Some(EpochAt {
                        stage: stage.name.to_string(),
                        progress: **progress,
                        epochs_timed: n,
                        mean_epoch_seconds: mean,
                    });
                }
                true
            }
            Event::Batch { stage, progress } => {
                for point in self.points_mut(stage) {
                    point.batch = Some(BatchAt {
                        stage: stage.name.to_string(),
                        progress: **progress,
                    });
                }
                true
            }
            Event::Finished { stage, result } => {
                for point in self.points_mut(stage) {
                    point.batch.take_if(|at| at.stage == stage.name);
                }
                let state = match result.status {
                    Status::Cached | Status::Ran => StageState::Done,
                    Status::Failed => StageState::Failed,
                    Status::Interrupted => StageState::Stopped,
                    // An input failed or the run stopped: it stays queued, and the point shows the failure.
                    Status::NotRun => StageState::Queued,
                };
                let error = (state == StageState::Failed).then(|| result.message().to_string());
                let floor = result
                    .record
                    .as_ref()
                    .filter(|_| result.kind == StageKind::Ngram)
                    .and_then(|r| serde_json::from_value::<NgramSummary>(r.summary.clone()).ok())
                    .and_then(|n| n.val_loss);
                if let Some(floor) = floor {
                    for point in self.points_mut(stage) {
                        point.floor.get_or_insert(floor);
                    }
                }
                self.set(stage, state, None, error)
            }
            Event::Damaged { .. }
            | Event::Unrecorded { .. }
            | Event::SlurmCommand { .. }
            | Event::SlurmCancelled { .. }
            | Event::SlurmCancelFailed { .. } => false,
        };
        if changed {
            self.updated = now;
        }
        changed
    }

    fn set(
        &mut self,
        stage: &StageRef<'_>,
        state: StageState,
        note: Option<String>,
        error: Option<String>,
    ) -> bool {
        let now = jiff::Timestamp::now();
        let name = stage.name;
        for point in self.points_mut(stage) {
            if let Some(s) = point.stages.iter_mut().find(|s| s.name == name) {
                // A stage that ran once and runs again (the next rung of a pruned search) starts its clock anew.
                if state == StageState::Running
                    && (s.state != StageState::Running || s.since.is_none())
                {
                    s.since = Some(now);
                }
                if state != StageState::Running {
                    s.since = None;
                }
                s.state = state;
                s.note = note.clone();
                s.error = error.clone();
            }
        }
        true
    }

    /// The points a stage event is about.
    fn points_mut<'s>(
        &'s mut self,
        stage: &StageRef<'_>,
    ) -> impl Iterator<Item = &'s mut PointProgress> {
        let share = stage.share.clone();
        self.points.iter_mut().filter(move |p| match &share {
            Share::Alone => true,
            Share::Point(label) => p.label == *label,
            Share::SharedBy(labels) => labels.contains(&p.label),
        })
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for p in &self.points {
            if !p.trainings.is_empty() {
                t.training += 1;
                let done = |name: &String| {
                    p.stages
                        .iter()
                        .any(|s| &s.name == name && s.state == StageState::Done)
                };
                if p.trainings.iter().all(done) {
                    t.trained += 1;
                }
            }
            match p.state() {
                PointState::Done => t.done += 1,
                PointState::Running => t.running += 1,
                PointState::Waiting => t.waiting += 1,
                PointState::Queued => t.queued += 1,
                PointState::Failed => t.failed += 1,
                PointState::Stopped => t.stopped += 1,
            }
        }
        t
    }

    /// One line per running point: label, stage, epoch k/N, the last losses and the ETA (or what it waits for);
    /// and one per failed point, which stays while the others run.
    pub fn lines(&self, now: jiff::Timestamp) -> Vec<String> {
        let shown: Vec<&PointProgress> = self
            .points
            .iter()
            .filter(|p| matches!(p.state(), PointState::Running | PointState::Failed))
            .collect();
        let width = shown
            .iter()
            .map(|p| self.label_of(p).chars().count())
            .max()
            .unwrap_or(0);
        shown
            .into_iter()
            .map(|p| {
                let label = self.label_of(p);
                if let Some(failed) = p.failure() {
                    let error = failed.error.as_deref().unwrap_or("unknown error");
                    let first = error.lines().next().unwrap_or_default();
                    return format!(
                        "{label:<width$}  {}  failed: {}",
                        failed.name,
                        clip(first, 80)
                    );
                }
                let stage = p.current().expect("a running point has a running stage");
                let mut line = format!("{label:<width$}  {}", stage.name);
                if let Some(note) = &stage.note {
                    let _ = write!(line, ": {note}");
                } else if let Some(training) = training_line(p, &stage.name) {
                    line.push_str(&training);
                    return line;
                }
                if let Some(since) = stage.since {
                    let secs = (now - since).total(jiff::Unit::Second).unwrap_or(0.0);
                    let _ = write!(line, "  {}", duration(secs.max(0.0)));
                }
                line
            })
            .collect()
    }

    /// The point's label, or the experiment's name outside a sweep.
    pub fn label_of<'p>(&'p self, point: &'p PointProgress) -> &'p str {
        if point.label.is_empty() {
            &self.experiment
        } else {
            &point.label
        }
    }
}

/// `  epoch k/N [=====>    ]  train …  val …  floor …  ETA …` for a point training at `stage`: the epochs done, a bar
/// that counts the epoch under way by its batches, the last epoch's losses, the floor and the time left.
fn training_line(p: &PointProgress, stage: &str) -> Option<String> {
    let (done, epochs) = p.trained(stage)?;
    let mut line = format!(
        "  epoch {}/{epochs} {}",
        done.floor() as usize,
        bar(done / epochs.max(1) as f64)
    );
    if let Some(at) = p.epoch.as_ref().filter(|at| at.stage == stage) {
        let e = &at.progress;
        let _ = write!(line, "  train {:.4}", e.train_loss);
        if let Some(v) = e.val_loss {
            let _ = write!(line, "  val {v:.4}");
        }
    }
    if let Some(floor) = p.floor {
        let _ = write!(line, "  floor {floor:.4}");
    }
    if let Some(eta) = p.eta_seconds() {
        let _ = write!(line, "  ETA {}", duration(eta));
    }
    Some(line)
}

/// `[=====>    ]`: `fraction` (0 to 1) of 20 columns.
fn bar(fraction: f64) -> String {
    const WIDTH: usize = 20;
    let filled = (fraction.clamp(0.0, 1.0) * WIDTH as f64).round() as usize;
    let body = match filled {
        0 => String::new(),
        WIDTH => "=".repeat(WIDTH),
        n => format!("{}>", "=".repeat(n - 1)),
    };
    format!("[{body:<WIDTH$}]")
}

/// The first `max` characters of `text`, with `…` when cut.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// `42s`, `3m 05s`, `1h 02m`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::outcome::StageResult;
    use crate::fingerprint::Hash;

    fn board() -> Progress {
        let point = |label: &str| PlannedPoint {
            label: label.into(),
            stages: vec!["windows".to_string(), "train".to_string()],
            params: Default::default(),
            trainings: Vec::new(),
        };
        Progress::new("sweep", "run", vec![point("a"), point("b")])
    }

    fn epoch(epoch: usize, seconds: f64) -> EpochProgress {
        EpochProgress {
            epoch,
            epochs: 10,
            train_loss: 2.5,
            val_loss: Some(2.75),
            seconds,
        }
    }

    #[test]
    fn a_points_floor_shows_beside_its_training_once_the_ngram_stage_is_done() {
        let mut p = board();
        let a = Share::Point("a".into());
        let stage = |name| StageRef { name, share: &a };
        let zero = Hash::of(b"").hex();
        let record: crate::store::Record = serde_json::from_value(serde_json::json!({
            "key": zero,
            "fingerprint": { "kind": "ngram", "version": 1, "params": {}, "inputs": [] },
            "output": { "hash": zero, "bytes": 0 },
            "files": {},
            "summary": { "order": 5, "val_loss": 2.8056 },
            "warnings": [],
            "stage": "floor",
            "seconds": 0.0,
            "created": "",
        }))
        .unwrap();
        let mut floor = StageResult::new("floor", StageKind::Ngram, Status::Ran);
        floor.record = Some(record);
        p.apply(&Event::Finished {
            stage: stage("floor"),
            result: &floor,
        });
        assert_eq!((p.points[0].floor, p.points[1].floor), (Some(2.8056), None));
        p.apply(&Event::Running {
            stage: stage("train"),
            reasons: &[],
        });
        p.apply(&Event::Epoch {
            stage: stage("train"),
            progress: &epoch(1, 0.0),
        });
        assert_eq!(
            p.lines(jiff::Timestamp::now()),
            ["a  train  epoch 1/10 [=>                  ]  train 2.5000  val 2.7500  floor 2.8056"]
        );
    }

    /// One line per training: its bar moves with the batches of the epoch under way (and the ETA with it), and a
    /// training that stops early ends with a full bar at the epochs it ran.
    #[test]
    fn a_trainings_bar_moves_with_its_batches_and_ends_where_it_stops() {
        let mut p = board();
        let a = Share::Point("a".into());
        let train = StageRef {
            name: "train",
            share: &a,
        };
        p.apply(&Event::Running {
            stage: train,
            reasons: &[],
        });
        let batch = |epoch, batch| BatchProgress {
            epoch,
            epochs: 10,
            batch,
            batches: 4,
        };
        // Before its first epoch ends, the line is the bar alone.
        p.apply(&Event::Batch {
            stage: train,
            progress: &batch(1, 2),
        });
        assert_eq!(
            p.lines(jiff::Timestamp::now()),
            ["a  train  epoch 0/10 [>                   ]"]
        );
        p.apply(&Event::Epoch {
            stage: train,
            progress: &epoch(1, 4.0),
        });
        p.apply(&Event::Batch {
            stage: train,
            progress: &batch(2, 2),
        });
        // 1.5 epochs of 10 done, at 4 s an epoch: 8.5 epochs, 34 s, left.
        assert_eq!(p.points[0].eta_seconds(), Some(34.0));
        assert_eq!(
            p.lines(jiff::Timestamp::now()),
            ["a  train  epoch 1/10 [==>                 ]  train 2.5000  val 2.7500  ETA 34s"]
        );
        // Stopped early after epoch 3: the training says it ran 3 of 3.
        p.apply(&Event::Epoch {
            stage: train,
            progress: &EpochProgress {
                epochs: 3,
                ..epoch(3, 0.0)
            },
        });
        assert_eq!(
            p.lines(jiff::Timestamp::now()),
            ["a  train  epoch 3/3 [====================]  train 2.5000  val 2.7500  ETA 0s"]
        );
        p.apply(&Event::Finished {
            stage: train,
            result: &StageResult::new("train", StageKind::Train, Status::Ran),
        });
        assert!(p.points[0].batch.is_none());
    }

    /// A sweep's points are trained long before they are done (sampling and rendering come last, for every point
    /// at once), so the totals count the trained ones: never `0 done` until the very end.
    #[test]
    fn the_totals_count_points_whose_training_is_done() {
        let point = |label: &str| PlannedPoint {
            label: label.into(),
            stages: vec!["train".to_string(), "music".to_string()],
            params: Default::default(),
            trainings: vec!["train".to_string()],
        };
        let mut p = Progress::new("sweep", "run", vec![point("a"), point("b")]);
        let a = Share::Point("a".into());
        let stage = |name| StageRef { name, share: &a };
        p.apply(&Event::Finished {
            stage: stage("train"),
            result: &StageResult::new("train", StageKind::Train, Status::Ran),
        });
        p.apply(&Event::Running {
            stage: stage("music"),
            reasons: &[],
        });
        let t = p.totals();
        assert_eq!((t.trained, t.done, t.running), (1, 0, 1));
        assert_eq!(
            t.to_string(),
            "1 trained, 0 done, 1 running, 1 queued, 0 failed"
        );
    }

    #[test]
    fn events_move_points_from_queued_to_done_or_failed() {
        let mut p = board();
        let shared = Share::SharedBy(vec!["a".into(), "b".into()]);
        let windows = StageRef {
            name: "windows",
            share: &shared,
        };
        p.apply(&Event::Running {
            stage: windows,
            reasons: &[],
        });
        assert_eq!(p.totals().running, 2);
        let ok = StageResult::new("windows", StageKind::Window, Status::Ran);
        p.apply(&Event::Finished {
            stage: windows,
            result: &ok,
        });
        assert_eq!(p.totals().waiting, 2);

        let a = Share::Point("a".into());
        let train_a = StageRef {
            name: "train",
            share: &a,
        };
        p.apply(&Event::Running {
            stage: train_a,
            reasons: &[],
        });
        p.apply(&Event::Epoch {
            stage: train_a,
            progress: &epoch(2, 3.0),
        });
        p.apply(&Event::Epoch {
            stage: train_a,
            progress: &epoch(3, 5.0),
        });
        // Seven epochs left at a mean of four seconds.
        assert_eq!(p.points[0].eta_seconds(), Some(28.0));
        let lines = p.lines(jiff::Timestamp::now());
        assert_eq!(
            lines,
            ["a  train  epoch 3/10 [=====>              ]  train 2.5000  val 2.7500  ETA 28s"]
        );

        let b = Share::Point("b".into());
        let failed = StageResult::new("train", StageKind::Train, Status::Failed)
            .with_error(anyhow::anyhow!("the loss became NaN"));
        p.apply(&Event::Finished {
            stage: StageRef {
                name: "train",
                share: &b,
            },
            result: &failed,
        });
        assert_eq!(
            p.points[1].failure().and_then(|s| s.error.as_deref()),
            Some("the loss became NaN")
        );
        let t = p.totals();
        assert_eq!((t.running, t.failed, t.done), (1, 1, 0));
        // The failed point keeps its line while the other runs.
        assert_eq!(
            p.lines(jiff::Timestamp::now())[1],
            "b  train  failed: the loss became NaN"
        );
        assert_eq!(t.to_string(), "0 done, 1 running, 0 queued, 1 failed");
    }

    #[test]
    fn a_resumed_training_has_no_eta_until_an_epoch_is_timed() {
        let mut p = board();
        let a = Share::Point("a".into());
        let train = StageRef {
            name: "train",
            share: &a,
        };
        p.apply(&Event::Resuming { stage: train });
        p.apply(&Event::Epoch {
            stage: train,
            progress: &epoch(5, 0.0),
        });
        assert_eq!(p.points[0].eta_seconds(), None);
        p.apply(&Event::Epoch {
            stage: train,
            progress: &epoch(6, 2.0),
        });
        assert_eq!(p.points[0].eta_seconds(), Some(8.0));
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(duration(42.4), "42s");
        assert_eq!(duration(185.0), "3m 05s");
        assert_eq!(duration(3720.0), "1h 02m");
    }
}
