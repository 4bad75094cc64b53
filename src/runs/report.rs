//! Run reports: `reports/<experiment>/<run id>/` with the experiment as run, what ran and why (`manifest.json`),
//! and the files stages contribute (`instruments.csv`, `vocab.csv`, `windows.csv`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::exec::{Outcome, Status};
use crate::fingerprint::explain;
use crate::music::plot::Floor;
use crate::runs::manifest::{
    MANIFEST, Manifest, Origin, PointInfo, RunStatus, SWEEP, StageEntry, SweepPointRecord,
    SweepRecord, Tool,
};
use crate::spec::experiment::Experiment;
use crate::spec::sweep::Point;
use crate::stages::{NgramSummary, SourceSummary, StageKind, TrainSummary, WindowSummary};
use crate::store::Cache;

/// A report folder being written.
#[derive(Debug)]
pub struct Report {
    pub dir: PathBuf,
    pub run_id: String,
    started: jiff::Timestamp,
    point: Option<PointInfo>,
    /// Set before [`Report::finish`] for a trial of a pruned search.
    pub trial: Option<crate::runs::manifest::TrialInfo>,
}

/// `path` as an absolute path (symbolic links resolved when it exists), as manifests record the experiment file.
pub fn absolute_file(path: &Path) -> String {
    fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Another experiment file that wrote the newest run under `reports_root/experiment` (read from that run's manifest,
/// or its first point's): a run of `file` would join its runs. `None` when the newest run is this file's, or there
/// is none, or it does not say.
pub fn other_file_under(reports_root: &Path, experiment: &str, file: &Path) -> Option<String> {
    let mut runs: Vec<PathBuf> = fs::read_dir(reports_root.join(experiment))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    runs.sort();
    let newest = runs.pop()?;
    let manifest = crate::runs::compare::runs_under(&newest)
        .first()
        .and_then(|dir| Manifest::read(dir).ok())?;
    let ours = absolute_file(file);
    (!manifest.experiment_path.is_empty() && manifest.experiment_path != ours)
        .then_some(manifest.experiment_path)
}

impl Report {
    /// The same folder in the experiment's run before this one (`reports/<experiment>/<earlier run id>[/<point>]`),
    /// if there is one.
    fn previous_run(&self) -> Option<PathBuf> {
        let run_dir = self
            .dir
            .ancestors()
            .find(|a| a.file_name().is_some_and(|n| n == self.run_id.as_str()))?;
        let tail = self.dir.strip_prefix(run_dir).ok()?;
        let mut earlier: Vec<PathBuf> = fs::read_dir(run_dir.parent()?)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n < self.run_id.as_str())
            })
            .map(|e| e.path().join(tail))
            .collect();
        earlier.sort();
        earlier.pop().filter(|p| p.is_dir())
    }

    /// Puts a report file in place as `dest`: a hard link to the previous run's `dest` when that is a regular file
    /// holding exactly the bytes the cache record names (so a cached re-run does not copy megabytes of audio again),
    /// else a copy of the cache's file `src`. Never a link into the cache itself: editing a report must not touch
    /// it. (Two runs' identical files then share their bytes; a filesystem without hard links gets a copy.)
    fn place(
        &self,
        src: &Path,
        expected: &crate::store::FileRecord,
        dest: &str,
        previous: Option<&Path>,
    ) -> std::io::Result<()> {
        let target = self.dir.join(dest);
        if let Some(previous) = previous
            && fs::symlink_metadata(previous)
                .is_ok_and(|m| m.file_type().is_file() && m.len() == expected.bytes)
            && crate::paths::read_regular(previous)
                .is_ok_and(|bytes| crate::fingerprint::Hash::of(&bytes) == expected.hash)
            && fs::hard_link(previous, &target).is_ok()
        {
            return Ok(());
        }
        fs::copy(src, &target).map(|_| ())
    }

    /// A new, unique folder `root/<experiment>/<run id>` (run ids sort by start time).
    pub fn new_run_dir(reports_root: &Path, experiment: &str) -> Result<(PathBuf, String)> {
        let base = jiff::Timestamp::now()
            .strftime("%Y%m%d-%H%M%S-%3f")
            .to_string();
        let parent = reports_root.join(experiment);
        fs::create_dir_all(&parent).with_context(|| {
            format!("cannot create the report directory `{}`", parent.display())
        })?;
        crate::paths::ensure_inside(reports_root, &parent, "the reports directory")?;
        let mut n = 0;
        loop {
            let run_id = if n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let dir = parent.join(&run_id);
            match fs::create_dir(&dir) {
                Ok(()) => return Ok((dir, run_id)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot create the report directory `{}`", dir.display())
                    });
                }
            }
        }
    }

    /// A run's report in `dir` (from [`Report::new_run_dir`], or a sweep point's inside the sweep's folder), with
    /// `experiment.toml` written into it at once, so even a run that fails says what it was.
    pub fn create_in(
        dir: PathBuf,
        run_id: String,
        exp: &Experiment,
        point: Option<&Point>,
    ) -> Result<Self> {
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the report directory `{}`", dir.display()))?;
        fs::write(dir.join("experiment.toml"), exp.text_as_run())
            .with_context(|| format!("cannot write into `{}`", dir.display()))?;
        Ok(Self {
            dir,
            run_id,
            started: jiff::Timestamp::now(),
            point: point.map(|p| PointInfo {
                label: p.label.clone(),
                values: p.values.iter().cloned().collect(),
            }),
            trial: None,
        })
    }

    /// Copies the stages' report files out of the cache (or links the previous run's identical ones) and writes
    /// `manifest.json`.
    pub fn finish(&self, exp: &Experiment, outcome: &Outcome, cache: &Cache) -> Result<Manifest> {
        let mut report_files = BTreeMap::new();
        let previous = self.previous_run();
        for s in &outcome.stages {
            // The Slurm job's log, for stages that ran (or failed) as a job.
            if let (Some(log), Some(job)) = (&s.slurm_log, &s.slurm_job)
                && log.is_file()
            {
                let dest = format!("{}.slurm-{job}.log", s.name);
                fs::copy(log, self.dir.join(&dest))
                    .with_context(|| format!("cannot copy the Slurm log of stage `{}`", s.name))?;
                report_files.insert(dest, s.name.clone());
            }
            let Some(record) = &s.record else { continue };
            for (name, expected) in &record.files {
                let dest = format!("{}{name}", exp.graph.file_prefix(&s.name));
                let from_previous = previous.as_ref().map(|p| p.join(&dest));
                self.place(
                    &cache.file_path(&record.key, name),
                    expected,
                    &dest,
                    from_previous.as_deref(),
                )
                .with_context(|| {
                    format!("cannot copy `{name}` of stage `{}` into the report", s.name)
                })?;
                report_files.insert(dest, s.name.clone());
            }
        }
        let manifest = Manifest::new(self, exp, outcome, report_files.clone());
        if let Some(name) = report_files
            .keys()
            .find(|n| *n == "loss.csv" || n.ends_with(".loss.csv"))
        {
            let history = crate::artifact::read_losses(&self.dir.join(name))?;
            let title = match &self.point {
                Some(p) => format!("{} — {}", exp.name, p.label),
                None => format!("{} — {}", exp.name, self.run_id),
            };
            let label = self
                .point
                .as_ref()
                .map_or_else(|| self.run_id.clone(), |p| p.label.clone());
            let floors: Vec<Floor> = manifest
                .train_summary()
                .and_then(|t| floor_of(&t))
                .into_iter()
                .collect();
            let svg = crate::music::plot::loss_chart(&title, &[(label, history)], &floors)?;
            fs::write(self.dir.join("loss.svg"), svg).with_context(|| {
                format!("cannot write `{}`", self.dir.join("loss.svg").display())
            })?;
        }
        let path = self.dir.join(MANIFEST);
        fs::write(&path, serde_json::to_vec_pretty(&manifest)?)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        Ok(manifest)
    }
}

impl Manifest {
    fn new(
        report: &Report,
        exp: &Experiment,
        outcome: &Outcome,
        files: BTreeMap<String, String>,
    ) -> Self {
        let crates = env!("PIPELINE_CRATE_VERSIONS")
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let stages: Vec<StageEntry> = outcome
            .stages
            .iter()
            .map(|s| StageEntry {
                name: s.name.clone(),
                kind: s.kind,
                status: Some(s.status),
                reason: explain(&s.reasons),
                reasons: s.reasons.clone(),
                params: exp
                    .graph
                    .index_of(&s.name)
                    .map(|i| exp.graph.stages[i].stage().params())
                    .unwrap_or_default(),
                shared_by: s.shared_by,
                fingerprint: s.fingerprint,
                output_hash: s.record.as_ref().map(|r| r.output.hash),
                output_bytes: s.record.as_ref().map(|r| r.output.bytes),
                seconds: s.seconds,
                summary: s.record.as_ref().map(|r| r.summary.clone()),
                warnings: s
                    .record
                    .as_ref()
                    .map_or_else(Vec::new, |r| r.warnings.clone()),
                error: s.error.as_ref().map(|e| e.message.clone()),
                origin: match s.status {
                    Status::Ran => Some(Origin::Computed),
                    Status::Cached if s.fetched => Some(Origin::Remote),
                    Status::Cached => Some(Origin::Local),
                    _ => None,
                },
            })
            .collect();
        let mut stages = stages;
        measure_against_floors(&mut stages, exp);
        let of_kind = |kind: StageKind| stages.iter().filter(move |s| s.kind == kind);
        let skipped_files = of_kind(StageKind::MidiSource)
            .filter_map(|s| s.summary_as::<SourceSummary>())
            .flat_map(|s| s.skipped_files)
            .collect();
        let windows = of_kind(StageKind::Window).find_map(|s| s.summary_as::<WindowSummary>());
        let devices: Vec<String> = of_kind(StageKind::Train)
            .filter_map(|s| s.summary_as::<TrainSummary>())
            .map(|t| t.device)
            .collect();
        let device = if devices.is_empty() {
            "cpu".to_string()
        } else {
            devices.join(",")
        };
        Manifest {
            experiment: exp.name.clone(),
            run_id: report.run_id.clone(),
            point: report.point.clone(),
            experiment_file: exp.path.display().to_string(),
            experiment_path: absolute_file(&exp.path),
            overrides: exp
                .overrides
                .iter()
                .map(|o| format!("{}={}", o.key, o.value))
                .collect(),
            started: report.started.to_string(),
            finished: jiff::Timestamp::now().to_string(),
            status: Some(RunStatus::of(outcome)),
            tool: Tool {
                name: env!("CARGO_PKG_NAME").to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
            crates,
            device,
            stages,
            skipped_files,
            windows,
            files,
            trial: report.trial.clone(),
        }
    }
}

/// The line a training's loss chart draws for its floor, if it has one.
pub fn floor_of(train: &TrainSummary) -> Option<Floor> {
    Some(Floor {
        label: format!("n-gram floor (order {})", train.floor_order?),
        loss: train.floor_val_loss?,
    })
}

/// Fills in each training's floor: the held-out loss of an `ngram` stage reading the same windows (the first such,
/// in the file's order), and how far the training's best held-out loss is above (positive) or below it.
fn measure_against_floors(stages: &mut [StageEntry], exp: &Experiment) {
    let graph = &exp.graph;
    let inputs = |name: &str| graph.index_of(name).map(|i| graph.inputs_of(i));
    let floors: Vec<(Vec<usize>, NgramSummary)> = stages
        .iter()
        .filter(|s| s.kind == StageKind::Ngram)
        .filter_map(|s| Some((inputs(&s.name)?, s.summary_as::<NgramSummary>()?)))
        .filter(|(_, n)| n.val_loss.is_some())
        .collect();
    for entry in stages.iter_mut().filter(|s| s.kind == StageKind::Train) {
        let Some(mut train) = entry.summary_as::<TrainSummary>() else {
            continue;
        };
        let Some(windows) = inputs(&entry.name) else {
            continue;
        };
        let Some((_, floor)) = floors.iter().find(|(w, _)| *w == windows) else {
            continue;
        };
        train.floor_val_loss = floor.val_loss;
        train.floor_order = Some(floor.order);
        train.val_loss_vs_floor = train.best_val_loss.zip(floor.val_loss).map(|(b, f)| b - f);
        entry.summary = serde_json::to_value(train).ok();
    }
}

/// A sweep's summary in its folder: `sweep.json` (the points, their folders and outcome), `summary.csv` (the
/// comparison table of the points) and `loss.svg` (every point's curves in one chart).
pub fn write_sweep_summary(
    dir: &Path,
    study: &crate::spec::sweep::Study,
    reports: &[Report],
    outcomes: &[Outcome],
    search: Option<crate::runs::manifest::SearchRecord>,
) -> Result<()> {
    let reports_root = dir.parent().and_then(Path::parent).unwrap_or(dir);
    let mut points = Vec::new();
    let mut runs = Vec::new();
    for ((point, report), outcome) in study.points.iter().zip(reports).zip(outcomes) {
        let failed = outcome.failed();
        points.push(SweepPointRecord {
            dir: report
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned()),
            error: failed.map(|f| {
                format!(
                    "stage `{}`: {}",
                    f.name,
                    f.error.as_ref().map_or("", |e| e.message.as_str())
                )
            }),
            label: point.label.clone(),
            status: RunStatus::of(outcome),
            values: point.values.iter().cloned().collect(),
        });
        if let Ok(r) = crate::runs::compare::RunSummary::read(&report.dir, reports_root) {
            runs.push(r);
        }
    }
    let sweep = study.sweep.as_ref();
    let summary = SweepRecord {
        axes: sweep.map(|s| {
            s.axes
                .iter()
                .map(|a| (a.key.clone(), a.describe()))
                .collect()
        }),
        experiment: study.name.clone(),
        mode: sweep.map(|s| s.mode.name().to_string()),
        points,
        repeat: sweep.map(|s| s.repeat),
        search,
    };
    fs::write(dir.join(SWEEP), serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("cannot write into `{}`", dir.display()))?;
    if !runs.is_empty() {
        fs::write(
            dir.join("summary.csv"),
            crate::runs::compare::table(&runs).to_csv()?,
        )?;
        let drawn: Vec<&crate::runs::compare::RunSummary> =
            runs.iter().filter(|r| !r.history.is_empty()).collect();
        let curves: Vec<(String, Vec<crate::artifact::EpochStats>)> = drawn
            .iter()
            .map(|r| {
                let label = match &r.trial {
                    Some(t) if t.winner => format!("{} (best)", r.name()),
                    Some(t) if !matches!(t.fate, crate::runs::manifest::Fate::Complete { .. }) => {
                        format!("{} ({})", r.name(), t.status())
                    }
                    _ => r.name().to_string(),
                };
                (label, r.history.clone())
            })
            .collect();
        // A pruned search's stopped trials are drawn pale.
        let faded: Vec<bool> = drawn
            .iter()
            .map(|r| {
                r.trial.as_ref().is_some_and(|t| {
                    !matches!(t.fate, crate::runs::manifest::Fate::Complete { .. })
                })
            })
            .collect();
        if !curves.is_empty() {
            let floors = crate::runs::compare::floors(drawn.iter().copied());
            fs::write(
                dir.join("loss.svg"),
                crate::music::plot::loss_chart_faded(&study.name, &curves, &faded, &floors)?,
            )?;
        }
    }
    Ok(())
}
