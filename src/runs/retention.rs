//! Which report folders `cache gc --reports` lets go: every run of an experiment beyond its `keep` most recent, older
//! than the grace, and not running. The cache's own keep rule (`manifest::referenced_keys`) counts runs the same way,
//! so removing these folders first lets the cache free what only they referred to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::runs::manifest::{MANIFEST, Manifest};

/// A run's report folder (`reports/<experiment>/<run id>`; a sweep's holds its points) that the keep rule lets go.
#[derive(Debug, Clone, PartialEq)]
pub struct OldRun {
    pub experiment: String,
    pub run_id: String,
    pub dir: PathBuf,
    /// Its files' bytes (a file linked from a newer run's folder stays there, so the disk gains less).
    pub bytes: u64,
}

/// The runs under `reports` beyond the `keep` most recent of their experiment, last modified longer than `grace`
/// ago, with no run's board in them (a run in progress, or one killed mid-way that `pipeline ps` has yet to forget).
pub fn old_runs(reports: &Path, keep: usize, grace: Duration) -> Result<Vec<OldRun>> {
    let mut per_experiment: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    if !reports.is_dir() {
        return Ok(Vec::new());
    }
    for entry in walkdir::WalkDir::new(reports).max_depth(4) {
        let entry = entry.with_context(|| format!("cannot list `{}`", reports.display()))?;
        if entry.file_name() != MANIFEST || !entry.file_type().is_file() {
            continue;
        }
        let Some(dir) = entry.path().parent() else {
            continue;
        };
        let Ok(manifest) = Manifest::read(dir) else {
            continue;
        };
        // The run's own folder: the manifest's, or (a sweep point's) the one above it named by the run id.
        let Some(run_dir) = dir
            .ancestors()
            .take_while(|a| a.starts_with(reports) && *a != reports)
            .find(|a| a.file_name().is_some_and(|n| n == manifest.run_id.as_str()))
        else {
            continue;
        };
        per_experiment
            .entry(manifest.experiment.clone())
            .or_default()
            .insert(manifest.run_id.clone(), run_dir.to_path_buf());
    }
    let now = std::time::SystemTime::now();
    let mut old = Vec::new();
    for (experiment, runs) in per_experiment {
        // Run ids begin with the time the run started: the newest sort last.
        for (run_id, dir) in runs.into_iter().rev().skip(keep) {
            let young = std::fs::symlink_metadata(&dir)
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() < grace)
                .unwrap_or(true);
            if young || !crate::runs::progress::under(&dir).is_empty() {
                continue;
            }
            let bytes = crate::store::size_of(&dir);
            old.push(OldRun {
                experiment: experiment.clone(),
                run_id,
                dir,
                bytes,
            });
        }
    }
    Ok(old)
}

/// Removes the folders of `runs`, each checked to be a real directory inside `reports` (never through a link that
/// leads out of it), then rewrites the index without them.
pub fn remove(reports: &Path, runs: &[OldRun]) -> Result<()> {
    for run in runs {
        let meta = std::fs::symlink_metadata(&run.dir)
            .with_context(|| format!("cannot read `{}`", run.dir.display()))?;
        anyhow::ensure!(
            meta.is_dir(),
            "`{}` is not a directory; left alone",
            run.dir.display()
        );
        crate::paths::ensure_inside(reports, &run.dir, "the reports directory")?;
        std::fs::remove_dir_all(&run.dir)
            .with_context(|| format!("cannot remove `{}`", run.dir.display()))?;
    }
    let mut folders: Vec<String> = runs
        .iter()
        .filter_map(|r| r.dir.parent()?.file_name()?.to_str().map(str::to_string))
        .collect();
    folders.dedup();
    for folder in folders {
        crate::runs::index::update(reports, &folder)?;
    }
    Ok(())
}
