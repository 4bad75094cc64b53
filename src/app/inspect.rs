//! `pipeline status` and `pipeline graph`: what an experiment would do, without running anything.

use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::identity;
use super::{load, open_cache};
use crate::exec::{self, PlanLine, Target};
use crate::spec::sweep::{Mode, Study};

/// Per point (its label, empty for a plain experiment): each stage, cached or why it would run.
pub struct PlanStatus {
    pub overview: Option<SweepOverview>,
    pub points: Vec<(String, Vec<PlanLine>)>,
}

/// `pipeline status`.
pub fn status(
    file: &Path,
    set: &[String],
    cache_dir: &Path,
    remote: Option<&crate::store::RemoteConfig>,
) -> Result<PlanStatus> {
    let study = load(file, set)?;
    // Looking up writes nothing: without a remote the cache is only read (and not created when missing).
    let cache = match remote {
        None => crate::store::Cache::open_existing(cache_dir).map_err(|e| {
            Error::environment(
                e,
                "pass the cache the runs use with `--cache-dir` or `PIPELINE_CACHE`",
            )
        })?,
        Some(_) => open_cache(cache_dir, remote)?,
    };
    let points = study
        .points
        .iter()
        .map(|point| {
            let lines = exec::plan(&point.experiment, &identity(&study, &point.label), &cache);
            (point.label.clone(), lines)
        })
        .collect();
    Ok(PlanStatus {
        overview: SweepOverview::of(&study),
        points,
    })
}

/// A sweep at a glance: its points, axes, and which stages its points share.
pub struct SweepOverview {
    pub points: usize,
    pub mode: Mode,
    /// Each parameter swept, and how many values it takes.
    pub axes: Vec<(String, usize)>,
    pub repeat: u32,
    /// Per stage, how many distinct variants the points have (1: shared by all).
    pub variants: Vec<(String, usize)>,
}

impl SweepOverview {
    /// `None` for a plain experiment.
    pub fn of(study: &Study) -> Option<Self> {
        let sweep = study.sweep.as_ref()?;
        let targets: Vec<Target> = study
            .points
            .iter()
            .map(|p| Target {
                experiment: &p.experiment,
                identity: String::new(),
                label: p.label.clone(),
                report_dir: PathBuf::new(),
            })
            .collect();
        Some(Self {
            points: study.points.len(),
            mode: sweep.mode,
            axes: sweep
                .axes
                .iter()
                .map(|a| (a.key.clone(), a.describe().len()))
                .collect(),
            repeat: sweep.repeat,
            variants: exec::variants(&targets),
        })
    }
}

/// `pipeline graph`: the first point's experiment (whose graph every point shares), and the sweep at a glance.
pub fn graph(file: &Path, set: &[String]) -> Result<(Study, Option<SweepOverview>)> {
    let study = load(file, set)?;
    let overview = SweepOverview::of(&study);
    Ok((study, overview))
}

/// `pipeline ps`: the runs in progress on the cache at `cache_dir`, from the files they keep up to date.
pub fn ps(cache_dir: &Path) -> Result<Vec<crate::runs::progress::Followed>> {
    crate::runs::progress::on_cache(cache_dir).map_err(|e| {
        Error::environment(
            e,
            "pass the cache the runs use with `--cache-dir` or `PIPELINE_CACHE`",
        )
    })
}
