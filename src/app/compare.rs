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
    // A cached re-run is counted under the run it reproduced (`reruns`), not shown as a row of its own.
    let runs = compare::fold_reruns(runs);
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

/// Draws the loss curves of `runs` into the SVG file `path`: one curve per distinct training (runs that share their
/// training, differing only in sampling, drew the same curve), each named by the parameters that differ between
/// the trainings and can change a loss — never by, say, a sampling temperature.
pub fn plot(runs: &[RunSummary], path: &Path) -> Result<()> {
    let mut trainings: Vec<&RunSummary> = Vec::new();
    for r in runs.iter().filter(|r| !r.history.is_empty()) {
        let drawn = r.training.is_some() && trainings.iter().any(|t| t.training == r.training);
        if !drawn {
            trainings.push(r);
        }
    }
    let varying: Vec<String> = compare::varying_params(&trainings)
        .into_iter()
        .filter(|k| trainings.iter().any(|t| t.training_params.contains(k)))
        .collect();
    let experiments_differ = trainings
        .iter()
        .any(|t| t.experiment != trainings[0].experiment);
    let labels: Vec<String> = trainings
        .iter()
        .map(|r| match (varying.is_empty(), experiments_differ) {
            (true, _) => r.name().to_string(),
            (false, false) => r.label_by(&varying),
            (false, true) => format!("{}: {}", r.experiment, r.label_by(&varying)),
        })
        .collect();
    // Trainings with the same parameters that still differ (another version of the tool trained one) are told
    // apart by when they ran.
    let curves: Vec<(String, Vec<EpochStats>)> = trainings
        .iter()
        .zip(&labels)
        .map(|(r, label)| {
            let twins = labels.iter().filter(|l| *l == label).count() > 1;
            let label = if twins {
                let minute: String = r.started.chars().take(16).collect();
                format!("{label} ({})", minute.replace('T', " "))
            } else {
                label.clone()
            };
            (label, r.history.clone())
        })
        .collect();
    let svg = crate::music::plot::loss_chart("loss", &curves, &compare::floors(runs))
        .map_err(Error::Usage)?;
    std::fs::write(path, svg)
        .map_err(|e| Error::environment(e.into(), "pass a writable path to `--plot`"))
}
