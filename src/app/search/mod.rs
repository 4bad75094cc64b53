//! A sweep with `[sweep.prune]`: the trials' trainings run rung by rung on the executor's one scheduler, which asks
//! the search for the next job whenever a worker is free ([`exec::Feed`]), and ASHA (beside it, `asha.rs`) decides
//! which go on. A rung is the trial's experiment with fewer `epochs`, so each is
//! an ordinary cache entry, and going on to the next rung resumes the training from the last (no epoch is trained
//! twice). Only a trial that reaches the last rung runs the stages after training (sampling, audio).

use std::sync::Mutex;

use anyhow::{Context, anyhow};

use super::error::{Error, Result};
use crate::exec::events::Reporter;
use crate::exec::{self, Feed, Next, Options, Outcome, Release, Status, Target};
use crate::runs::manifest::Fate;
use asha::{Asha, TrialRung};

mod asha;
use crate::runs::manifest::{SearchRecord, TrialInfo, TrialRecord};
use crate::runs::report::Report;
use crate::spec::experiment::Experiment;
use crate::spec::sweep::{Metric, Study};
use crate::stages::{StageKind, TrainSummary};
use crate::store::Cache;

/// What one trial ended with: the experiment its last training ran when that was a rung below the last (`None`: the
/// point's own experiment), that run's outcome, and what the report says of it.
pub struct TrialEnd {
    pub experiment: Option<Experiment>,
    pub outcome: Outcome,
    pub info: Option<TrialInfo>,
}

/// The search's result: one end per trial (in point order), the record for `sweep.json`, and one line per trial
/// for the terminal.
pub struct SearchOutcome {
    pub trials: Vec<TrialEnd>,
    pub record: SearchRecord,
    pub lines: Vec<String>,
}

/// What a finished training says at its rung.
struct Reported {
    result: asha::Result,
    /// The metric as `loss.csv` has it (not oriented).
    value: f64,
    /// Epochs this training actually trained (0 when it was cached).
    trained: usize,
}

/// The trial's metric after its training to a rung: the best value over the epochs so far (one noisy epoch does not
/// decide), from the `loss.csv` the training stored with its result.
fn reported(metric: Metric, outcome: &Outcome, cache: &Cache) -> anyhow::Result<Reported> {
    let train = outcome
        .stages
        .iter()
        .find(|s| s.kind == StageKind::Train)
        .ok_or_else(|| anyhow!("the trial has no train stage"))?;
    if let Some(failed) = outcome.failed() {
        return Err(anyhow!(
            "stage `{}` failed: {}",
            failed.name,
            failed.message()
        ));
    }
    let record = train
        .record
        .as_ref()
        .ok_or_else(|| anyhow!("the training of the trial did not finish"))?;
    let summary: TrainSummary = serde_json::from_value(record.summary.clone())
        .context("the training's summary cannot be read")?;
    let history = crate::artifact::read_losses(&cache.file_path(&record.key, "loss.csv"))?;
    let per_onset = match (summary.final_val_loss_per_onset, summary.final_val_loss) {
        (Some(o), Some(v)) if v > 0.0 => o / v,
        _ => 1.0,
    };
    let values = history.iter().filter_map(|e| match metric {
        Metric::ValLoss => e.val_loss,
        Metric::ValLossPerOnset => e.val_loss.map(|v| v * per_onset),
        Metric::ValAccuracy => e.val_accuracy,
        Metric::TrainLoss => Some(e.train_loss),
    });
    let value = if metric.maximised() {
        values.fold(f64::NEG_INFINITY, f64::max)
    } else {
        values.fold(f64::INFINITY, f64::min)
    };
    if !value.is_finite() {
        return Err(anyhow!("the training recorded no {}", metric.name()));
    }
    let trained = match train.status {
        Status::Ran => summary.epochs - summary.resumed_from_epoch.unwrap_or(0),
        _ => 0,
    };
    Ok(Reported {
        result: asha::Result {
            score: if metric.maximised() { -value } else { value },
            stopped_early: summary.stopped_early,
        },
        value,
        trained,
    })
}

/// Where the search stands.
struct State {
    asha: Asha,
    /// Per trial: the rung and outcome of its latest training.
    last: Vec<Option<(usize, Outcome)>>,
    values: Vec<Vec<Option<f64>>>,
    trained: usize,
    errors: Vec<Option<String>>,
    stopped: bool,
    /// A trial failed without `--keep-going`: nothing new starts, as in any run.
    failed_fast: bool,
}

impl State {
    fn new(trials: usize, rungs: Vec<u32>, reduction: u32) -> Self {
        let levels = rungs.len();
        State {
            asha: Asha::new(trials, rungs, reduction),
            last: (0..trials).map(|_| None).collect(),
            values: vec![vec![None; levels]; trials],
            trained: 0,
            errors: vec![None; trials],
            stopped: false,
            failed_fast: false,
        }
    }

    /// What training `job` reported (or how it failed), and its outcome.
    fn record(
        &mut self,
        job: TrialRung,
        got: anyhow::Result<Reported>,
        outcome: Outcome,
        interrupted: bool,
        keep_going: bool,
    ) {
        match got {
            Ok(r) => {
                self.trained += r.trained;
                self.values[job.trial][job.rung] = Some(r.value);
                self.asha.report(job, r.result);
            }
            Err(_) if interrupted => self.stopped = true,
            Err(e) => {
                // A training that fails (a diverging loss) ends its trial; with `--keep-going` the search goes on
                // without it, else nothing new starts.
                self.errors[job.trial] = Some(format!("{e:#}"));
                if !keep_going {
                    self.stopped = true;
                    self.failed_fast = true;
                }
                self.asha.report(
                    job,
                    asha::Result {
                        score: f64::INFINITY,
                        stopped_early: true,
                    },
                );
            }
        }
        self.last[job.trial] = Some((job.rung, outcome));
        if interrupted {
            self.stopped = true;
        }
    }
}

/// The search as the scheduler's [`Feed`]: it releases trial `t`'s training to rung `r` as target `t × rungs + r`, and
/// ASHA hears each as it reports.
struct Search<'a> {
    cache: &'a Cache,
    metric: Metric,
    /// The train stage's name: a rung below the last runs only it and what it needs.
    train: String,
    rungs: usize,
    keep_going: bool,
    state: Mutex<State>,
}

impl Search<'_> {
    fn job(&self, target: usize) -> TrialRung {
        TrialRung {
            trial: target / self.rungs,
            rung: target % self.rungs,
        }
    }
}

impl Feed for Search<'_> {
    fn next_job(&self) -> Next {
        let mut s = self.state.lock().expect("not poisoned");
        if s.stopped {
            return Next::Over;
        }
        if let Some(job) = s.asha.next_job() {
            let last = job.rung + 1 == self.rungs;
            return Next::Run(Release {
                target: job.trial * self.rungs + job.rung,
                only: (!last).then(|| self.train.clone()),
            });
        }
        if s.asha.finished() {
            Next::Over
        } else {
            Next::Wait
        }
    }

    fn report(&self, target: usize, outcome: Outcome, cut: bool) {
        let interrupted = cut
            || outcome
                .stages
                .iter()
                .any(|s| s.status == Status::Interrupted);
        let got = reported(self.metric, &outcome, self.cache);
        self.state.lock().expect("not poisoned").record(
            self.job(target),
            got,
            outcome,
            interrupted,
            self.keep_going,
        );
    }
}

/// Runs the search over every point of `study` (each point a trial), `opts.jobs` trainings at a time, on the
/// executor's scheduler: the stages every trial shares run once, and the corpus is hashed once.
pub fn search(
    study: &Study,
    reports: &[Report],
    cache: &Cache,
    opts: &Options,
    reporter: &dyn Reporter,
) -> Result<SearchOutcome> {
    let prune = study.prune().expect("a pruned sweep");
    let (train, max) = crate::spec::sweep::trainings(&study.points[0].experiment)
        .first()
        .map(|&(name, epochs)| (name.to_string(), epochs))
        .expect("checked: one train stage");
    let rungs = asha::rungs(prune.min_epochs, prune.reduction, max);
    // Every trial at every rung below the last, made and checked before anything runs.
    let below: Vec<Vec<Experiment>> = (0..study.points.len())
        .map(|i| {
            rungs[..rungs.len() - 1]
                .iter()
                .map(|&epochs| study.at_epochs(i, &train, epochs))
                .collect()
        })
        .collect();
    let targets = targets(study, reports, &below);
    let search = Search {
        cache,
        metric: prune.metric,
        train,
        rungs: rungs.len(),
        keep_going: opts.keep_going,
        state: Mutex::new(State::new(
            study.points.len(),
            rungs.clone(),
            prune.reduction,
        )),
    };
    exec::run_fed(&targets, &search, cache, opts, reporter);
    drop(targets);
    let s = search.state.into_inner().expect("not poisoned");
    summarise(study, prune, rungs, below, s)
}

/// Every trial at every rung, trial by trial: the last rung is the point's own experiment.
fn targets<'a>(
    study: &'a Study,
    reports: &[Report],
    below: &'a [Vec<Experiment>],
) -> Vec<Target<'a>> {
    let mut targets = Vec::new();
    for (t, (point, report)) in study.points.iter().zip(reports).enumerate() {
        for experiment in below[t].iter().chain([&point.experiment]) {
            targets.push(Target {
                experiment,
                identity: super::identity(study, &point.label),
                label: point.label.clone(),
                report_dir: report.dir.clone(),
            });
        }
    }
    targets
}

/// The search's end: each trial's explanation and report entry, the winner (the best metric among the trials that
/// trained to the end), and the record for `sweep.json`.
fn summarise(
    study: &Study,
    prune: &crate::spec::sweep::Prune,
    rungs: Vec<u32>,
    mut below: Vec<Vec<Experiment>>,
    s: State,
) -> Result<SearchOutcome> {
    let n = study.points.len();
    let metric = prune.metric.name();
    let complete = |t: usize| matches!(s.asha.fate(t), Some(Fate::Complete { .. }));
    let winner = (0..n)
        .filter(|&t| complete(t) && s.errors[t].is_none())
        .min_by(|&a, &b| {
            let score = |t: usize| s.asha.last(t).map_or(f64::INFINITY, |(_, r)| r.score);
            score(a).total_cmp(&score(b)).then(a.cmp(&b))
        });
    let mut trials = Vec::with_capacity(n);
    let mut records = Vec::with_capacity(n);
    let mut lines = Vec::new();
    for (t, last) in s.last.into_iter().enumerate() {
        let label = study.points[t].label.clone();
        let fate = s.asha.fate(t);
        let value = s.asha.last(t).and_then(|(rung, _)| s.values[t][rung]);
        let explanation = explain(
            s.errors[t].as_deref(),
            fate.as_ref(),
            value,
            metric,
            winner == Some(t),
            s.failed_fast,
        );
        lines.push(format!("{label}: {explanation}"));
        let info = fate.clone().map(|fate| TrialInfo {
            fate,
            metric: metric.to_string(),
            value,
            explanation: explanation.clone(),
            winner: winner == Some(t),
        });
        records.push(TrialRecord {
            label: label.clone(),
            info: info.clone(),
            explanation,
        });
        let (experiment, outcome) = match last {
            Some((rung, outcome)) if rung + 1 < rungs.len() => {
                (Some(below[t].swap_remove(rung)), outcome)
            }
            Some((_, outcome)) => (None, outcome),
            // Never started (interrupted first): nothing of it ran.
            None => (None, Outcome { stages: Vec::new() }),
        };
        trials.push(TrialEnd {
            experiment,
            outcome,
            info,
        });
    }
    let record = SearchRecord {
        method: "asha".into(),
        metric: metric.to_string(),
        min_epochs: prune.min_epochs,
        reduction: prune.reduction,
        rungs,
        promotions: s.asha.decisions(),
        trials: records,
        winner: winner.map(|t| study.points[t].label.clone()),
        epochs_trained: s.trained,
        finished: s.asha.finished(),
    };
    if !record.finished && !s.stopped {
        return Err(Error::Failed(anyhow!(
            "the search ended before every training reported (a bug): {} of {} trials decided",
            (0..n).filter(|&t| s.asha.fate(t).is_some()).count(),
            n
        )));
    }
    Ok(SearchOutcome {
        trials,
        record,
        lines,
    })
}

/// How a trial ended, in words: its error, its fate at its last rung with the metric there, or why it never got
/// further (a failed trial without `--keep-going`, or an interrupt).
fn explain(
    error: Option<&str>,
    fate: Option<&Fate>,
    value: Option<f64>,
    metric: &str,
    winner: bool,
    failed_fast: bool,
) -> String {
    match (error, fate, value) {
        (Some(e), _, _) => format!("failed: {e}"),
        (None, Some(Fate::Complete { epochs }), Some(v)) => format!(
            "complete: {epochs} epochs, {metric} {v:.4}{}",
            if winner { " (the best)" } else { "" }
        ),
        (
            None,
            Some(Fate::Pruned {
                epochs,
                rank,
                of,
                kept,
            }),
            Some(v),
        ) => format!(
            "pruned at epoch {epochs}: {metric} {v:.4}, rank {rank} of {of} at rung {epochs} (kept: best {kept})"
        ),
        (None, Some(Fate::StoppedEarly { epochs }), Some(v)) => {
            format!("stopped early (patience) before epoch {epochs}: {metric} {v:.4}")
        }
        _ if failed_fast => {
            "not run (further): a trial failed and `--keep-going` was not given; run again \
                             with it to go on"
                .to_string()
        }
        _ => "interrupted before its training finished; run the same command again to continue"
            .to_string(),
    }
}
