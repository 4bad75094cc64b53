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

pub const MANIFEST: &str = "manifest.json";

/// A report folder being written.
#[derive(Debug)]
pub struct Report {
    pub dir: PathBuf,
    pub run_id: String,
    started: jiff::Timestamp,
}

impl Report {
    /// Creates the folder (run ids sort by start time) and writes `experiment.toml` into it at once, so even a run
    /// that fails says what it was.
    pub fn create(reports_root: &Path, exp: &Experiment) -> Result<Self> {
        let started = jiff::Timestamp::now();
        let base = started.strftime("%Y%m%d-%H%M%S-%3f").to_string();
        let parent = reports_root.join(&exp.name);
        fs::create_dir_all(&parent).with_context(|| {
            format!("cannot create the report directory `{}`", parent.display())
        })?;
        let mut n = 0;
        let (dir, run_id) = loop {
            let run_id = if n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let dir = parent.join(&run_id);
            match fs::create_dir(&dir) {
                Ok(()) => break (dir, run_id),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot create the report directory `{}`", dir.display())
                    });
                }
            }
        };
        fs::write(dir.join("experiment.toml"), &exp.text_as_run)
            .with_context(|| format!("cannot write into `{}`", dir.display()))?;
        Ok(Self {
            dir,
            run_id,
            started,
        })
    }

    /// Copies the stages' report files out of the cache and writes `manifest.json`.
    pub fn finish(&self, exp: &Experiment, outcome: &Outcome, cache: &Cache) -> Result<()> {
        let mut report_files = BTreeMap::new();
        for s in &outcome.stages {
            let Some(record) = &s.record else { continue };
            for name in record.files.keys() {
                let dest = format!("{}{name}", file_prefix(exp, &s.name));
                // A copy, not a link: editing a report must never touch the cache.
                fs::copy(cache.file_path(&record.key, name), self.dir.join(&dest)).with_context(
                    || format!("cannot copy `{name}` of stage `{}` into the report", s.name),
                )?;
                report_files.insert(dest, s.name.clone());
            }
        }
        let manifest = Manifest::new(self, exp, outcome, report_files);
        let path = self.dir.join(MANIFEST);
        fs::write(&path, serde_json::to_vec_pretty(&manifest)?)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        Ok(())
    }
}

/// Report files of a stage are prefixed with `<stage>.` when the experiment has another stage of the same kind
/// (which would write the same names).
pub fn file_prefix(exp: &Experiment, stage: &str) -> String {
    let Some(i) = exp.graph.index_of(stage) else {
        return String::new();
    };
    let kind = exp.graph.stages[i].kind();
    if exp.graph.stages.iter().filter(|s| s.kind() == kind).count() > 1 {
        format!("{stage}.")
    } else {
        String::new()
    }
}

#[derive(Serialize)]
struct Manifest<'a> {
    experiment: &'a str,
    run_id: &'a str,
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
    fingerprint: Option<Hash>,
    output_hash: Option<Hash>,
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
                fingerprint: s.fingerprint,
                output_hash: s.record.as_ref().map(|r| r.output.hash),
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
            experiment_file: exp.path.display().to_string(),
            overrides: exp
                .overrides
                .iter()
                .map(|o| format!("{}={}", o.key, o.value))
                .collect(),
            started: report.started.to_string(),
            finished: jiff::Timestamp::now().to_string(),
            status: if outcome.failed().is_some() {
                "failed"
            } else {
                "ok"
            },
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
