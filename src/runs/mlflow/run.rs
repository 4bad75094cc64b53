//! What one report folder becomes in MLflow ([`RunExport`]): its parameters, its per-epoch metrics from
//! `loss.csv`, its tags and files, read from a finished report or from a run still in progress.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

use crate::exec::progress::PointProgress;
use crate::runs::compare::{RunSummary, find_file};
use crate::runs::manifest::Manifest;

/// How an MLflow run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Finished,
    Failed,
}

impl RunState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "RUNNING",
            RunState::Finished => "FINISHED",
            RunState::Failed => "FAILED",
        }
    }
}

/// One metric value at one step.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    pub key: String,
    pub value: f64,
    pub step: i64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
}

/// Everything one report folder gives MLflow.
#[derive(Debug, Clone)]
pub struct RunExport {
    /// The folder under the reports directory, `/`-separated: the tag it is found again by.
    pub key: String,
    pub experiment: String,
    pub run_name: String,
    pub state: RunState,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub params: BTreeMap<String, String>,
    /// Per-epoch values (step = epoch).
    pub history: Vec<MetricPoint>,
    /// Values logged once, when the run has finished (music metrics, per-onset losses).
    pub summary: Vec<MetricPoint>,
    pub tags: BTreeMap<String, String>,
    /// The report's files: artifact path → file.
    pub files: Vec<(String, PathBuf)>,
}

/// Files of a report folder that are not the run's results.
fn is_result_file(name: &str) -> bool {
    !name.starts_with('.') && name != crate::runs::progress::PROGRESS && name != "progress.lock"
}

fn millis(t: jiff::Timestamp) -> i64 {
    t.as_millisecond()
}

/// A parameter value as MLflow shows it: strings bare, everything else as JSON.
fn param_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The folder relative to the reports directory with `/` separators.
pub fn key_of(dir: &Path, reports_dir: &Path) -> String {
    let rel = match dir.strip_prefix(reports_dir) {
        Ok(rel) => rel.to_path_buf(),
        // Paths given differently (`./reports/…`, absolute) still name the same folder.
        Err(_) => match (std::path::absolute(dir), std::path::absolute(reports_dir)) {
            (Ok(d), Ok(r)) => d.strip_prefix(&r).map_or(d.clone(), Path::to_path_buf),
            _ => dir.to_path_buf(),
        },
    };
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The per-epoch columns of `loss.csv` as metrics: every numeric column but `epoch` (its step), so columns a later
/// version adds are exported too. `seconds` becomes `epoch_seconds`; timestamps run from `start_ms` by the epochs'
/// seconds.
fn history_of(loss_csv: Option<PathBuf>, start_ms: i64) -> Result<Vec<MetricPoint>> {
    let Some(path) = loss_csv else {
        return Ok(Vec::new());
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let headers = reader.headers()?.clone();
    let epoch_col = headers
        .iter()
        .position(|h| h == "epoch")
        .ok_or_else(|| anyhow!("`{}` has no `epoch` column", path.display()))?;
    let seconds_col = headers.iter().position(|h| h == "seconds");
    let mut points = Vec::new();
    let mut elapsed = 0.0;
    for row in reader.records() {
        // A live loss.csv may end in a row being written: stop there.
        let Ok(row) = row else { break };
        let Some(step) = row.get(epoch_col).and_then(|e| e.parse::<i64>().ok()) else {
            break;
        };
        if let Some(s) = seconds_col.and_then(|c| row.get(c)?.parse::<f64>().ok()) {
            elapsed += s;
        }
        let timestamp = start_ms + (elapsed * 1000.0) as i64;
        for (i, name) in headers.iter().enumerate() {
            // `best` marks the best epoch's row: a flag, not a curve.
            if i == epoch_col || name == "best" {
                continue;
            }
            let Some(value) = row
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite())
            else {
                continue;
            };
            let key = if name == "seconds" {
                "epoch_seconds".to_string()
            } else {
                name.to_string()
            };
            points.push(MetricPoint {
                key,
                value,
                step,
                timestamp,
            });
        }
    }
    Ok(points)
}

fn files_of(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for item in
        std::fs::read_dir(dir).with_context(|| format!("cannot list `{}`", dir.display()))?
    {
        let item = item?;
        let name = item.file_name().to_string_lossy().into_owned();
        if item.file_type()?.is_file() && is_result_file(&name) {
            files.push((name, item.path()));
        }
    }
    files.sort();
    Ok(files)
}

impl RunExport {
    /// A finished run (or sweep point) from its report folder.
    pub fn finished(dir: &Path, reports_dir: &Path) -> Result<Self> {
        // Read once: the summary is made from the same manifest the tags come from.
        let manifest = Manifest::read(dir)?;
        let summary = RunSummary::of(dir, reports_dir, &manifest)?;
        let started = manifest
            .started
            .parse::<jiff::Timestamp>()
            .with_context(|| format!("`{}`: the start time is not a time", dir.display()))?;
        let end_ms = manifest
            .finished
            .parse::<jiff::Timestamp>()
            .ok()
            .map(millis);
        let start_ms = millis(started);
        let done_ms = end_ms.unwrap_or(start_ms);
        let mut values = Vec::new();
        if let Some(m) = &summary.metrics
            && let Ok(Value::Object(fields)) = serde_json::to_value(m)
        {
            for (name, v) in fields {
                if let Some(value) = v.as_f64() {
                    values.push((format!("music.{name}"), value));
                }
            }
        }
        for (name, v) in [
            ("val_loss_per_onset", summary.val_loss_per_onset),
            ("best_val_loss_per_onset", summary.best_val_loss_per_onset),
            ("best_val_bits_per_onset", summary.best_val_bits_per_onset),
            (
                "best_val_bits_per_quarter",
                summary.best_val_bits_per_quarter,
            ),
            ("floor_val_loss", summary.floor_val_loss),
            ("val_loss_vs_floor", summary.val_loss_vs_floor),
            ("train_seconds", summary.train_seconds),
        ] {
            if let Some(v) = v {
                values.push((name.to_string(), v));
            }
        }
        let mut tags = Self::base_tags(&summary.experiment, &manifest.run_id, &summary.label);
        tags.insert("pipeline.status".into(), summary.status.clone());
        tags.insert(
            "pipeline.tool_version".into(),
            manifest.tool.version.clone(),
        );
        tags.insert("pipeline.device".into(), summary.device.clone());
        tags.insert(
            "pipeline.experiment_file".into(),
            manifest.experiment_file.clone(),
        );
        for s in &manifest.stages {
            if let Some(fp) = &s.fingerprint {
                tags.insert(format!("pipeline.fingerprint.{}", s.name), fp.hex());
            }
        }
        Ok(Self {
            key: key_of(dir, reports_dir),
            run_name: run_name(&manifest.run_id, &summary.label),
            experiment: summary.experiment.clone(),
            state: if summary.status == "ok" {
                RunState::Finished
            } else {
                RunState::Failed
            },
            start_ms,
            end_ms,
            // The parameters as fingerprinted (the manifest's), not the table's with unused defaults filled in.
            params: manifest
                .params()
                .iter()
                .map(|(k, v)| (k.clone(), param_text(v)))
                .collect(),
            history: history_of(find_file(dir, "loss.csv"), start_ms)?,
            summary: values
                .into_iter()
                .map(|(key, value)| MetricPoint {
                    key,
                    value,
                    step: 0,
                    timestamp: done_ms,
                })
                .collect(),
            tags,
            files: files_of(dir)?,
        })
    }

    /// A point of a run still in progress, from its board and its live files (`loss.csv`).
    pub fn in_progress(
        dir: &Path,
        reports_dir: &Path,
        experiment: &str,
        run_id: &str,
        started: jiff::Timestamp,
        point: &PointProgress,
    ) -> Result<Self> {
        let start_ms = millis(started);
        let mut tags = Self::base_tags(experiment, run_id, &point.label);
        tags.insert("pipeline.status".into(), "running".into());
        tags.insert(
            "pipeline.tool_version".into(),
            env!("CARGO_PKG_VERSION").into(),
        );
        Ok(Self {
            key: key_of(dir, reports_dir),
            run_name: run_name(run_id, &point.label),
            experiment: experiment.to_string(),
            state: RunState::Running,
            start_ms,
            end_ms: None,
            params: point
                .params
                .iter()
                .map(|(k, v)| (k.clone(), param_text(v)))
                .collect(),
            history: history_of(find_file(dir, "loss.csv"), start_ms)?,
            summary: Vec::new(),
            tags,
            files: files_of(dir)?,
        })
    }

    fn base_tags(experiment: &str, run_id: &str, label: &str) -> BTreeMap<String, String> {
        let mut tags = BTreeMap::new();
        tags.insert("pipeline.experiment".into(), experiment.to_string());
        tags.insert("pipeline.run_id".into(), run_id.to_string());
        if !label.is_empty() {
            tags.insert("pipeline.sweep_label".into(), label.to_string());
        }
        tags.insert("mlflow.source.name".into(), "pipeline".into());
        tags
    }
}

fn run_name(run_id: &str, label: &str) -> String {
    if label.is_empty() {
        run_id.to_string()
    } else {
        format!("{run_id} {label}")
    }
}
