//! `pipeline compare`: finished runs read back from their report folders, as one table, and their loss curves as
//! one chart.

use std::path::Path;

use super::error::{Error, Result};
use crate::artifact::EpochStats;
use crate::runs::compare::{self, RunSummary, Table};

/// The runs `targets` name (report folders or experiment names; none: every run under `reports_dir`), and their
/// table, sorted by `sort` when given.
pub fn compare(
    targets: &[String],
    reports_dir: &Path,
    sort: Option<&str>,
) -> Result<(Vec<RunSummary>, Table)> {
    let dirs = compare::resolve(targets, reports_dir).map_err(Error::Usage)?;
    if dirs.is_empty() {
        return Err(Error::Usage(anyhow::anyhow!(
            "no runs under `{}` yet; run an experiment first",
            reports_dir.display()
        )));
    }
    let runs: Vec<RunSummary> = dirs
        .iter()
        .map(|d| RunSummary::read(d, reports_dir))
        .collect::<anyhow::Result<_>>()
        .map_err(Error::Usage)?;
    // Seeds of one configuration (`[sweep] repeat`) fold into one row, mean ± 95 % interval.
    let per_run = compare::table(&runs);
    let mut table = crate::runs::repeats::fold(&per_run, &runs).unwrap_or(per_run);
    // A pruned search's trials sort by the metric they were ranked by, best first, unless told otherwise.
    let search = runs
        .iter()
        .find_map(|r| r.trial.as_ref())
        .map(|t| (format!("search_{}", t.metric), t.metric == "val_accuracy"));
    match (sort, search) {
        (Some(column), _) => table.sort_by(column).map_err(Error::Usage)?,
        (None, Some((column, descending))) => table
            .sort_by_order(&column, descending)
            .map_err(Error::Usage)?,
        (None, None) => {}
    }
    Ok((runs, table))
}

/// Draws the loss curves of `runs` into the SVG file `path`, each named by the parameters that differ.
pub fn plot(runs: &[RunSummary], path: &Path) -> Result<()> {
    let varying = compare::varying_params(runs);
    let curves: Vec<(String, Vec<EpochStats>)> = runs
        .iter()
        .filter(|r| !r.history.is_empty())
        .map(|r| {
            (
                if varying.is_empty() {
                    r.name().to_string()
                } else {
                    r.label_by(&varying)
                },
                r.history.clone(),
            )
        })
        .collect();
    let svg = crate::music::plot::loss_chart("loss", &curves, &compare::floors(runs))
        .map_err(Error::Usage)?;
    std::fs::write(path, svg)
        .map_err(|e| Error::environment(e.into(), "pass a writable path to `--plot`"))
}
