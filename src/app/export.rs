//! `pipeline export mlflow` (and `run --export mlflow`): the selected report folders — finished runs, sweep points,
//! and runs still in progress — as MLflow runs on a tracking server ([`crate::runs::mlflow`]).

use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use crate::runs::mlflow::{Client, Done, MlflowError, RunExport};

/// What to export, and where.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// Report folders (or folders holding runs) or experiment names; none: everything under `reports_dir`.
    pub targets: Vec<String>,
    pub reports_dir: PathBuf,
    /// The tracking server (`--tracking-uri`, else `MLFLOW_TRACKING_URI`).
    pub tracking_uri: Option<String>,
}

/// How the export went, run by run.
#[derive(Debug)]
pub struct ExportReport {
    pub uri: String,
    /// Each run's key (its folder under the reports directory) and what was done.
    pub done: Vec<(String, Done)>,
    /// Folders not exported, and why (a run killed before it finished has no manifest to export).
    pub skipped: Vec<String>,
    /// Runs whose export failed, with the reason.
    pub failed: Vec<String>,
}

/// The folders `targets` name, as `compare` reads them: (finished run folders, live run folders).
fn select(targets: &[String], reports_dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let roots: Vec<PathBuf> = if targets.is_empty() {
        vec![reports_dir.to_path_buf()]
    } else {
        targets
            .iter()
            .map(|t| crate::runs::compare::target_dir(t, reports_dir).map_err(Error::Usage))
            .collect::<Result<_>>()?
    };
    let (mut finished, mut live) = (Vec::new(), Vec::new());
    for root in &roots {
        let f = crate::runs::compare::runs_under(root);
        let l = crate::runs::progress::under(root);
        if f.is_empty() && l.is_empty() {
            return Err(Error::Usage(anyhow::anyhow!(
                "no runs under `{}`: a report folder holds a `manifest.json` once its run has finished, and a \
                 `progress.json` while it runs",
                root.display()
            )));
        }
        finished.extend(f);
        live.extend(l);
    }
    finished.sort();
    finished.dedup();
    live.sort();
    live.dedup();
    Ok((finished, live))
}

/// Exports every selected run. A server that cannot be used fails the whole export (exit 3) before anything is
/// sent; a run that cannot be exported is reported and the others go on.
pub fn mlflow(request: &ExportRequest) -> Result<ExportReport> {
    let uri = request
        .tracking_uri
        .clone()
        .or_else(|| std::env::var("MLFLOW_TRACKING_URI").ok())
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            Error::Usage(anyhow::anyhow!(
                "no MLflow server given: pass `--tracking-uri http://HOST:PORT` or set MLFLOW_TRACKING_URI"
            ))
        })?;
    let (finished, live) = select(&request.targets, &request.reports_dir)?;
    crate::interrupt::install();
    let client = Client::new(&uri).map_err(server_error)?;
    client.ping().map_err(server_error)?;

    let mut exports: Vec<std::result::Result<RunExport, String>> = Vec::new();
    let mut skipped = Vec::new();
    for dir in &finished {
        exports.push(
            RunExport::finished(dir, &request.reports_dir)
                .map_err(|e| format!("`{}` cannot be exported: {e:#}", dir.display())),
        );
    }
    for dir in &live {
        live_exports(dir, &request.reports_dir, &mut exports, &mut skipped);
    }

    let mut done = Vec::new();
    let mut failed = Vec::new();
    for export in exports {
        let run = match export {
            Ok(run) => run,
            Err(why) => {
                failed.push(why);
                continue;
            }
        };
        match client.export(&run) {
            Ok(d) => done.push((run.key.clone(), d)),
            // The server went away mid-way: the rest would fail the same.
            Err(MlflowError::Server(why)) => {
                return Err(Error::environment(
                    anyhow::anyhow!("{why}"),
                    format!(
                        "{} of the runs were exported before it failed; export again once the server answers",
                        done.len()
                    ),
                ));
            }
            Err(MlflowError::Run(why)) => failed.push(format!("`{}`: {why}", run.key)),
            Err(MlflowError::Interrupted) => return Err(Error::Interrupted),
        }
    }
    Ok(ExportReport {
        uri: client.uri().to_string(),
        done,
        skipped,
        failed,
    })
}

/// The runs a live run's points make, from its `progress.json`: each point whose report is not written yet (those
/// are exported from their manifests), or why one is skipped.
fn live_exports(
    dir: &Path,
    reports_dir: &Path,
    exports: &mut Vec<std::result::Result<RunExport, String>>,
    skipped: &mut Vec<String>,
) {
    // Rewritten (atomically) every half second while the run goes on; one more look after a moment before
    // saying it cannot be read.
    let run = crate::runs::progress::read(dir).or_else(|| {
        std::thread::sleep(std::time::Duration::from_millis(200));
        crate::runs::progress::read(dir)
    });
    let Some(run) = run else {
        // Ended meanwhile (its manifest is there now) or unreadable: either way said, never dropped silently.
        skipped.push(format!(
            "`{}`: its `progress.json` could not be read (did the run just end?); export again",
            dir.display()
        ));
        return;
    };
    let p = &run.progress;
    for point in &p.points {
        let point_dir = if point.label.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(&point.label)
        };
        // A point whose report is written is exported from its manifest, with the finished runs.
        if point_dir.join(crate::runs::manifest::MANIFEST).is_file() {
            continue;
        }
        if !run.alive {
            skipped.push(format!(
                "`{}`: its run stopped before it finished (killed?), so it has no manifest to export",
                point_dir.display()
            ));
            continue;
        }
        exports.push(
            RunExport::in_progress(
                &point_dir,
                reports_dir,
                &p.experiment,
                &p.run_id,
                p.started,
                point,
            )
            .map_err(|e| format!("`{}` cannot be exported: {e:#}", point_dir.display())),
        );
    }
}

fn server_error(e: MlflowError) -> Error {
    if let MlflowError::Interrupted = e {
        return Error::Interrupted;
    }
    Error::environment(
        anyhow::anyhow!("{e}"),
        "is `mlflow server` running there? Start one with `mlflow server --host 127.0.0.1 --port 5000`, or pass \
         the right `--tracking-uri` (or MLFLOW_TRACKING_URI)",
    )
}
