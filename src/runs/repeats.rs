//! Seed noise: runs that differ only in the seeds of their `train` stages (`[sweep] repeat = N`) are one
//! configuration trained N times. [`fold`] turns the comparison table into one row per configuration, every number
//! its mean ± 95 % interval over the seeds (Student's t, [`MeanInterval`]) with every seed's value kept, and marks
//! the configurations whose held-out loss cannot be told apart from the lowest's.
//!
//! A folded cell is a JSON object `{"mean", "ci95", "n", "values"}`; [`super::compare::Table`] prints it as
//! `mean ± ci95` and writes `col` and `col_ci95` columns in CSV.

use std::borrow::Borrow;

use serde_json::{Value, json};

use super::compare::{RunSummary, Table};
use crate::artifact::EpochStats;
use crate::stats::MeanInterval;

/// The configuration a run belongs to: its experiment and every parameter but the seeds `repeat` varies.
fn configuration(run: &RunSummary) -> String {
    let params: Vec<(&String, &Value)> = run
        .params
        .iter()
        .filter(|(k, _)| !run.seed_keys.contains(k))
        .collect();
    serde_json::to_string(&(&run.experiment, params)).expect("plain data")
}

/// Indices of `runs` by configuration, in first-seen order; a run that only reproduced another of its group (the
/// same fingerprints: a cached re-run) is left out, as it is not another seed.
pub fn groups<R: Borrow<RunSummary>>(runs: &[R]) -> Vec<Vec<usize>> {
    let runs: Vec<&RunSummary> = runs.iter().map(Borrow::borrow).collect();
    let mut keys: Vec<String> = Vec::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let key = configuration(run);
        match keys.iter().position(|k| *k == key) {
            Some(g) => {
                if !groups[g]
                    .iter()
                    .any(|&j| runs[j].fingerprints == run.fingerprints)
                {
                    groups[g].push(i);
                }
            }
            None => {
                keys.push(key);
                groups.push(vec![i]);
            }
        }
    }
    groups
}

/// A folded cell: a column's values over a configuration's runs.
fn fold_cell(values: &[&Value]) -> Value {
    if values.iter().all(|v| v.is_null()) {
        return Value::Null;
    }
    let numbers: Vec<f64> = values.iter().filter_map(|v| v.as_f64()).collect();
    if numbers.len() == values.iter().filter(|v| !v.is_null()).count() {
        let m = MeanInterval::of(&numbers).expect("some value");
        return json!({ "mean": m.mean, "ci95": m.half_width, "n": m.n, "values": values });
    }
    let mut distinct: Vec<String> = values.iter().map(|v| super::compare::cell(v)).collect();
    distinct.dedup();
    Value::from(distinct.join("/"))
}

/// A configuration's validation loss per epoch over its seeds: the mean curve (training loss averaged too) and the
/// 95 % interval around it, for the epochs every seed reached.
pub fn mean_curve(runs: &[&RunSummary]) -> (Vec<EpochStats>, Vec<(usize, f64, f64)>) {
    let epochs = runs.iter().map(|r| r.history.len()).min().unwrap_or(0);
    let mut curve = Vec::with_capacity(epochs);
    let mut band = Vec::with_capacity(epochs);
    for e in 0..epochs {
        let at = |f: fn(&EpochStats) -> Option<f64>| -> Vec<f64> {
            runs.iter().filter_map(|r| f(&r.history[e])).collect()
        };
        let val = MeanInterval::of(&at(|h| h.val_loss));
        if let Some(v) = &val {
            band.push((e + 1, v.low(), v.high()));
        }
        curve.push(EpochStats {
            epoch: e + 1,
            train_loss: MeanInterval::of(&at(|h| Some(h.train_loss))).map_or(f64::NAN, |t| t.mean),
            val_loss: val.map(|v| v.mean),
            val_accuracy: MeanInterval::of(&at(|h| h.val_accuracy)).map(|a| a.mean),
            seconds: 0.0,
        });
    }
    (curve, band)
}

/// The interval a folded cell holds.
fn interval(cell: &Value) -> Option<MeanInterval> {
    Some(MeanInterval {
        mean: cell.get("mean")?.as_f64()?,
        half_width: cell.get("ci95").and_then(Value::as_f64),
        n: cell.get("n")?.as_u64()? as usize,
    })
}

/// One row per configuration when one was trained with several seeds; `None` when every configuration ran once
/// (the table is then the runs' own).
pub fn fold(table: &Table, runs: &[RunSummary]) -> Option<Table> {
    let groups = groups(runs);
    if groups.iter().all(|g| g.len() < 2) {
        return None;
    }
    let seed_keys: Vec<&String> = runs.iter().flat_map(|r| &r.seed_keys).collect();
    let first_fixed = table
        .columns
        .iter()
        .position(|c| c == super::compare::FIXED_COLUMNS[0])
        .unwrap_or(table.columns.len());
    // The run's name, the varied parameters but the seeds, `n` and the seeds, then every figure folded.
    let varied: Vec<usize> = (1..first_fixed)
        .filter(|&c| !seed_keys.contains(&&table.columns[c]))
        .collect();
    let names: Vec<String> = varied.iter().map(|&c| table.columns[c].clone()).collect();
    // `experiment` and `source` are columns too, but no parameters to name a configuration by.
    let params: Vec<String> = names.iter().filter(|n| n.contains('.')).cloned().collect();
    let mut columns = vec!["run".to_string()];
    columns.extend(names.iter().cloned());
    columns.extend(["n".to_string(), "seeds".to_string()]);
    columns.extend(table.columns[first_fixed..].iter().cloned());
    let mut rows: Vec<Vec<Value>> = groups
        .iter()
        .map(|g| {
            let mut row = vec![Value::from(configuration_name(&runs[g[0]], &params))];
            row.extend(varied.iter().map(|&c| table.rows[g[0]][c].clone()));
            row.push(Value::from(g.len()));
            row.push(Value::from(seeds_of(g, runs)));
            row.extend((first_fixed..table.columns.len()).map(|c| {
                let cells: Vec<&Value> = g.iter().map(|&i| &table.rows[i][c]).collect();
                // Re-runs of the configuration's seeds add up; every figure is a mean over them.
                if table.columns[c] == "reruns" {
                    Value::from(cells.iter().filter_map(|v| v.as_u64()).sum::<u64>())
                } else {
                    fold_cell(&cells)
                }
            }));
            row
        })
        .collect();
    mark_distinguishable(&mut columns, &mut rows);
    Some(Table {
        columns,
        rows,
        after_losses: table.after_losses.clone(),
        // The configurations' names are already a person's (`layers=2 seq_len=64`).
        titles: Vec::new(),
    })
}

/// A configuration's name: the values of the parameters that differ between configurations, or its experiment.
fn configuration_name(run: &RunSummary, varied: &[String]) -> String {
    if varied.is_empty() {
        run.experiment.clone()
    } else {
        run.label_by(varied)
    }
}

/// Each run's train seeds (`42`, or `42+7` with two `train` stages), space-separated, in the group's order.
fn seeds_of(group: &[usize], runs: &[RunSummary]) -> String {
    let seeds: Vec<String> = group
        .iter()
        .map(|&i| {
            let r = &runs[i];
            r.seed_keys
                .iter()
                .map(|k| {
                    r.params
                        .get(k)
                        .map(super::compare::cell)
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    seeds.join(" ")
}

/// A `vs_lowest` column after `seeds`: `lowest` for the configuration with the lowest mean `best_val_loss`,
/// `overlaps lowest` where the two 95 % intervals overlap (not distinguishable from seed noise), `above` otherwise.
fn mark_distinguishable(columns: &mut Vec<String>, rows: &mut [Vec<Value>]) {
    let Some(c) = columns.iter().position(|c| c == "best_val_loss") else {
        return;
    };
    let intervals: Vec<Option<MeanInterval>> = rows.iter().map(|r| interval(&r[c])).collect();
    let Some(lowest) = intervals
        .iter()
        .flatten()
        .min_by(|a, b| a.mean.total_cmp(&b.mean))
        .cloned()
    else {
        return;
    };
    let at = columns
        .iter()
        .position(|c| c == "seeds")
        .map_or(columns.len(), |i| i + 1);
    columns.insert(at, "vs_lowest".into());
    for (row, i) in rows.iter_mut().zip(&intervals) {
        let verdict = match i {
            None => Value::Null,
            Some(i) if i.mean == lowest.mean => "lowest".into(),
            Some(i) if i.overlaps(&lowest) => "overlaps lowest".into(),
            Some(_) => "above".into(),
        };
        row.insert(at, verdict);
    }
}
