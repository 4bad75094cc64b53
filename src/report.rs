//! Run reports: `reports/<experiment>/<run id>/` with the experiment as run, what ran and why (`manifest.json`),
//! and the files stages contribute (`instruments.csv`, `vocab.csv`, `windows.csv`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cache::Cache;
use crate::executor::{Outcome, Status};
use crate::experiment::Experiment;
use crate::fingerprint::{Hash, Reason, explain};
use crate::stages::StageKind;
use crate::sweep::Point;

pub const MANIFEST: &str = "manifest.json";

/// A report folder being written.
#[derive(Debug)]
pub struct Report {
    pub dir: PathBuf,
    pub run_id: String,
    started: jiff::Timestamp,
    point: Option<PointInfo>,
}

/// Which sweep point a run is.
#[derive(Debug, Clone, Serialize)]
struct PointInfo {
    label: String,
    values: BTreeMap<String, String>,
}

impl Report {
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

    /// Creates a run's folder and writes `experiment.toml` into it at once, so even a run that fails says what it
    /// was.
    pub fn create(reports_root: &Path, exp: &Experiment) -> Result<Self> {
        let (dir, run_id) = Self::new_run_dir(reports_root, &exp.name)?;
        Self::create_in(dir, run_id, exp, None)
    }

    /// A report in a given folder (a sweep point's, inside the sweep's folder).
    pub fn create_in(
        dir: PathBuf,
        run_id: String,
        exp: &Experiment,
        point: Option<&Point>,
    ) -> Result<Self> {
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the report directory `{}`", dir.display()))?;
        fs::write(dir.join("experiment.toml"), &exp.text_as_run)
            .with_context(|| format!("cannot write into `{}`", dir.display()))?;
        Ok(Self {
            dir,
            run_id,
            started: jiff::Timestamp::now(),
            point: point.map(|p| PointInfo {
                label: p.label.clone(),
                values: p.values.iter().cloned().collect(),
            }),
        })
    }

    /// Copies the stages' report files out of the cache and writes `manifest.json`.
    pub fn finish(&self, exp: &Experiment, outcome: &Outcome, cache: &Cache) -> Result<()> {
        let mut report_files = BTreeMap::new();
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
            for name in record.files.keys() {
                let dest = format!("{}{name}", exp.graph.file_prefix(&s.name));
                // A copy, not a link: editing a report must never touch the cache.
                fs::copy(cache.file_path(&record.key, name), self.dir.join(&dest)).with_context(
                    || format!("cannot copy `{name}` of stage `{}` into the report", s.name),
                )?;
                report_files.insert(dest, s.name.clone());
            }
        }
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
            let svg = crate::plot::loss_chart(&title, &[(label, history)])?;
            fs::write(self.dir.join("loss.svg"), svg).with_context(|| {
                format!("cannot write `{}`", self.dir.join("loss.svg").display())
            })?;
        }
        let manifest = Manifest::new(self, exp, outcome, report_files);
        let path = self.dir.join(MANIFEST);
        fs::write(&path, serde_json::to_vec_pretty(&manifest)?)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        Ok(())
    }
}

#[derive(Serialize)]
struct Manifest<'a> {
    experiment: &'a str,
    run_id: &'a str,
    /// The sweep point this run is, if any.
    point: Option<&'a PointInfo>,
    experiment_file: String,
    overrides: Vec<String>,
    started: String,
    finished: String,
    status: &'static str,
    tool: Tool,
    crates: BTreeMap<&'static str, &'static str>,
    device: String,
    stages: Vec<StageEntry<'a>>,
    skipped_files: Vec<serde_json::Value>,
    windows: Option<serde_json::Value>,
    /// Report file → the stage that made it.
    files: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Tool {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct StageEntry<'a> {
    name: &'a str,
    kind: StageKind,
    status: Status,
    /// One line: why it ran (empty when cached).
    reason: String,
    reasons: &'a [Reason],
    /// The parameters as fingerprinted: defaults filled in.
    params: BTreeMap<String, serde_json::Value>,
    /// How many sweep points share this stage's result.
    shared_by: usize,
    fingerprint: Option<Hash>,
    output_hash: Option<Hash>,
    /// Size of the cached output.
    output_bytes: Option<u64>,
    seconds: f64,
    summary: Option<&'a serde_json::Value>,
    warnings: &'a [String],
    error: Option<&'a str>,
}

impl<'a> Manifest<'a> {
    fn new(
        report: &'a Report,
        exp: &'a Experiment,
        outcome: &'a Outcome,
        files: BTreeMap<String, String>,
    ) -> Self {
        let crates = env!("PIPELINE_CRATE_VERSIONS")
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let stages: Vec<StageEntry> = outcome
            .stages
            .iter()
            .map(|s| StageEntry {
                name: &s.name,
                kind: s.kind,
                status: s.status,
                reason: explain(&s.reasons),
                reasons: &s.reasons,
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
                summary: s.record.as_ref().map(|r| &r.summary),
                warnings: s.record.as_ref().map_or(&[][..], |r| &r.warnings),
                error: s.error.as_deref(),
            })
            .collect();
        let summaries_of = |kind: StageKind| {
            outcome
                .stages
                .iter()
                .filter(move |s| s.kind == kind)
                .filter_map(|s| s.record.as_ref().map(|r| &r.summary))
        };
        let skipped_files = summaries_of(StageKind::MidiSource)
            .flat_map(|s| s["skipped_files"].as_array().cloned().unwrap_or_default())
            .collect();
        let windows = summaries_of(StageKind::Window).next().cloned();
        let devices: Vec<&str> = summaries_of(StageKind::Train)
            .filter_map(|s| s["device"].as_str())
            .collect();
        let device = if devices.is_empty() {
            "cpu".to_string()
        } else {
            devices.join(",")
        };
        Manifest {
            experiment: &exp.name,
            run_id: &report.run_id,
            point: report.point.as_ref(),
            experiment_file: exp.path.display().to_string(),
            overrides: exp
                .overrides
                .iter()
                .map(|o| format!("{}={}", o.key, o.value))
                .collect(),
            started: report.started.to_string(),
            finished: jiff::Timestamp::now().to_string(),
            status: status_of(outcome),
            tool: Tool {
                name: env!("CARGO_PKG_NAME"),
                version: env!("CARGO_PKG_VERSION"),
            },
            crates,
            device,
            stages,
            skipped_files,
            windows,
            files,
        }
    }
}

/// A sweep's summary in its folder: `sweep.json` (the points, their folders and outcome), `summary.csv` (the
/// comparison table of the points) and `loss.svg` (every point's curves in one chart).
pub fn write_sweep_summary(
    dir: &Path,
    study: &crate::sweep::Study,
    reports: &[Report],
    outcomes: &[Outcome],
) -> Result<()> {
    let reports_root = dir.parent().and_then(Path::parent).unwrap_or(dir);
    let mut points = Vec::new();
    let mut runs = Vec::new();
    for ((point, report), outcome) in study.points.iter().zip(reports).zip(outcomes) {
        let failed = outcome.failed();
        points.push(serde_json::json!({
            "label": point.label,
            "values": point.values.iter().cloned().collect::<BTreeMap<_, _>>(),
            "dir": report.dir.file_name().map(|n| n.to_string_lossy().into_owned()),
            "status": status_of(outcome),
            "error": failed.map(|f| format!("stage `{}`: {}", f.name, f.error.as_deref().unwrap_or(""))),
        }));
        if let Ok(r) = crate::compare::RunSummary::read(&report.dir, reports_root) {
            runs.push(r);
        }
    }
    let sweep = study.sweep.as_ref();
    let summary = serde_json::json!({
        "experiment": study.name,
        "mode": sweep.map(|s| if s.mode == crate::sweep::Mode::Zip { "zip" } else { "grid" }),
        "repeat": sweep.map(|s| s.repeat),
        "axes": sweep.map(|s| s.axes.iter().map(|a| (a.key.clone(), a.values.iter().map(|v| v.0.clone()).collect::<Vec<_>>())).collect::<BTreeMap<_, _>>()),
        "points": points,
    });
    fs::write(dir.join("sweep.json"), serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("cannot write into `{}`", dir.display()))?;
    if !runs.is_empty() {
        fs::write(
            dir.join("summary.csv"),
            crate::compare::table(&runs).to_csv()?,
        )?;
        let curves: Vec<(String, Vec<crate::artifact::EpochStats>)> = runs
            .iter()
            .filter(|r| !r.history.is_empty())
            .map(|r| (r.name().to_string(), r.history.clone()))
            .collect();
        if !curves.is_empty() {
            fs::write(
                dir.join("loss.svg"),
                crate::plot::loss_chart(&study.name, &curves)?,
            )?;
        }
    }
    Ok(())
}

/// `ok`, `failed` (a stage failed), `interrupted` (Ctrl-C) or `incomplete` (stopped by a failure elsewhere).
pub fn status_of(outcome: &Outcome) -> &'static str {
    use crate::executor::Status;
    if outcome.failed().is_some() {
        "failed"
    } else if outcome.count(Status::Interrupted) > 0 {
        "interrupted"
    } else if outcome.count(Status::NotRun) > 0 {
        "incomplete"
    } else {
        "ok"
    }
}
