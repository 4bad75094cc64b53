//! Reading finished runs back from their report folders, and comparing them: one row per run with the parameters
//! that differ, the losses, the training time, the device and the music metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde_json::Value;

use crate::artifact::EpochStats;
use crate::music::metrics::{self, Metrics, MetricsReport};
use crate::runs::manifest::{MANIFEST, Manifest};

/// A finished run, as its report folder tells it.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub dir: PathBuf,
    /// The folder relative to the reports directory (`baseline/20261124-…/layers=2`), or as given.
    pub id: String,
    pub experiment: String,
    /// The sweep point's label, empty for plain runs.
    pub label: String,
    pub status: String,
    pub started: String,
    /// Every stage parameter as `stage.param` → value (defaults filled in).
    pub params: BTreeMap<String, Value>,
    pub history: Vec<EpochStats>,
    pub train_seconds: Option<f64>,
    /// For a trial of a pruned search: how it ended.
    pub trial: Option<crate::runs::manifest::TrialInfo>,
    /// The last training's validation loss per onset (comparable across tokenization schemes).
    pub val_loss_per_onset: Option<f64>,
    /// The same for the epoch with the lowest validation loss.
    pub best_val_loss_per_onset: Option<f64>,
    /// The best validation loss in bits per onset and per quarter note (timed tokens).
    pub best_val_bits_per_onset: Option<f64>,
    pub best_val_bits_per_quarter: Option<f64>,
    /// The held-out loss of the experiment's n-gram floor on the same windows, its order, and the best validation
    /// loss minus it (negative: better than the floor).
    pub floor_val_loss: Option<f64>,
    pub floor_order: Option<usize>,
    pub val_loss_vs_floor: Option<f64>,
    /// Training windows cut from transposed copies (`augment`).
    pub copy_windows: Option<usize>,
    pub device: String,
    pub metrics: Option<Metrics>,
    /// The same metrics of the references `metrics.json` holds (held-out files, shuffled, uniform), by name.
    pub references: Vec<(&'static str, Metrics)>,
    /// Each stage's name and fingerprint, in run order: two runs with the same made the same results.
    pub fingerprints: Vec<(String, String)>,
    /// Whether any stage ran (rather than came from the cache).
    pub computed: bool,
    /// `<stage>.seed` of each `train` stage: what `[sweep] repeat` varies, so runs that differ only there are one
    /// configuration trained several times.
    pub seed_keys: Vec<String>,
}

/// The first file in `dir` named `name` or `<stage>.name`.
pub(crate) fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let direct = dir.join(name);
    if direct.is_file() {
        return Some(direct);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&format!(".{name}")))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

impl RunSummary {
    pub fn read(dir: &Path, reports_dir: &Path) -> Result<Self> {
        Self::of(dir, reports_dir, &Manifest::read(dir)?)
    }

    /// The run in `dir` from its manifest, already read.
    pub fn of(dir: &Path, reports_dir: &Path, manifest: &Manifest) -> Result<Self> {
        let params = manifest.params();
        let train = manifest.train_summary();
        let train_seconds = train.as_ref().map(|t| t.seconds);
        let val_loss_per_onset = train.as_ref().and_then(|t| t.final_val_loss_per_onset);
        let best_val_loss_per_onset = train.as_ref().and_then(|t| t.best_val_loss_per_onset);
        let history = match find_file(dir, "loss.csv") {
            Some(p) => crate::artifact::read_losses(&p)?,
            None => Vec::new(),
        };
        let report = find_file(dir, "metrics.json")
            .and_then(|p| crate::paths::read_regular(&p).ok())
            .and_then(|b| serde_json::from_slice::<MetricsReport>(&b).ok());
        let references = report
            .as_ref()
            .map(|r| {
                // With nothing held out, the references are made from the training files (`reference` says so).
                let own = if r.reference.as_deref() == Some("training") {
                    "training"
                } else {
                    "held-out"
                };
                [
                    (own, &r.held_out),
                    ("shuffled", &r.shuffled),
                    ("uniform", &r.uniform),
                ]
                .into_iter()
                .filter_map(|(name, m)| m.clone().map(|m| (name, m)))
                .collect()
            })
            .unwrap_or_default();
        let metrics = report.map(|m| m.generated);
        let fingerprints = manifest
            .stages
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.fingerprint.map(|f| f.hex()).unwrap_or_default(),
                )
            })
            .collect();
        let computed = manifest
            .stages
            .iter()
            .any(|s| s.status != Some(crate::exec::Status::Cached));
        let id = dir
            .strip_prefix(reports_dir)
            .unwrap_or(dir)
            .display()
            .to_string();
        Ok(Self {
            dir: dir.to_path_buf(),
            id,
            experiment: manifest.experiment.clone(),
            label: manifest
                .point
                .as_ref()
                .map(|p| p.label.clone())
                .unwrap_or_default(),
            status: manifest
                .status
                .map_or_else(String::new, |s| s.as_str().to_string()),
            started: manifest.started.clone(),
            params,
            history,
            train_seconds,
            val_loss_per_onset,
            best_val_loss_per_onset,
            best_val_bits_per_onset: train.as_ref().and_then(|t| t.best_val_bits_per_onset),
            best_val_bits_per_quarter: train.as_ref().and_then(|t| t.best_val_bits_per_quarter),
            floor_val_loss: train.as_ref().and_then(|t| t.floor_val_loss),
            floor_order: train.as_ref().and_then(|t| t.floor_order),
            val_loss_vs_floor: train.as_ref().and_then(|t| t.val_loss_vs_floor),
            trial: manifest.trial.clone(),
            copy_windows: manifest
                .windows
                .as_ref()
                .map(|w| w.train_windows_from_copies),
            device: manifest.device.clone(),
            metrics,
            references,
            fingerprints,
            computed,
            seed_keys: manifest
                .stages
                .iter()
                .filter(|s| s.kind == crate::stages::StageKind::Train)
                .map(|s| format!("{}.seed", s.name))
                .collect(),
        })
    }

    /// Whether this run only reproduced `earlier`: nothing computed, every stage at the same fingerprint.
    pub fn reproduces(&self, earlier: &RunSummary) -> bool {
        !self.computed
            && self.status == "ok"
            && earlier.status == "ok"
            && self.fingerprints == earlier.fingerprints
            && self.started > earlier.started
    }

    /// The lowest training loss of any epoch.
    pub fn best_train_loss(&self) -> Option<f64> {
        min(self.history.iter().map(|h| h.train_loss))
    }

    /// The lowest validation loss of any epoch.
    pub fn best_val_loss(&self) -> Option<f64> {
        min(self.history.iter().filter_map(|h| h.val_loss))
    }

    /// `layers=2,seq_len=64`: this run's values of the given parameters, as sweep points are named.
    pub fn label_by(&self, params: &[String]) -> String {
        let values: Vec<(String, String)> = params
            .iter()
            .map(|k| (k.clone(), self.params.get(k).map(cell).unwrap_or_default()))
            .collect();
        crate::spec::sweep::label(&values)
    }

    /// How the run is named in tables and charts: its point label, or its folder.
    pub fn name(&self) -> &str {
        if self.label.is_empty() {
            &self.id
        } else {
            &self.label
        }
    }
}

/// The distinct floors of `runs`, for a chart of their losses (one line per order and value).
pub fn floors<'a>(
    runs: impl IntoIterator<Item = &'a RunSummary>,
) -> Vec<crate::music::plot::Floor> {
    let mut out: Vec<crate::music::plot::Floor> = Vec::new();
    for r in runs {
        if let (Some(order), Some(loss)) = (r.floor_order, r.floor_val_loss)
            && !out.iter().any(|f| f.loss == loss)
        {
            out.push(crate::music::plot::Floor {
                label: format!("n-gram floor (order {order})"),
                loss,
            });
        }
    }
    out
}

/// Every run folder (one holding a manifest) under `dir`, sorted.
pub fn runs_under(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && e.file_name() == MANIFEST)
        .filter_map(|e| e.path().parent().map(Path::to_path_buf))
        .collect();
    out.sort();
    out
}

/// The folder a `compare` or `export` argument names: a folder as given, or an experiment under the reports
/// directory.
pub fn target_dir(target: &str, reports_dir: &Path) -> Result<PathBuf> {
    let as_path = PathBuf::from(target);
    if as_path.is_dir() {
        Ok(as_path)
    } else if reports_dir.join(target).is_dir() {
        Ok(reports_dir.join(target))
    } else {
        bail!(
            "`{target}` is neither a report folder nor an experiment under `{}`; give a folder printed by \
             `pipeline run`, or an experiment name",
            reports_dir.display()
        );
    }
}

/// Resolves `compare` arguments: report folders (or folders holding runs, like a sweep's), or experiment names under
/// the reports directory. No argument: every run there.
pub fn resolve(targets: &[String], reports_dir: &Path) -> Result<Vec<PathBuf>> {
    if targets.is_empty() {
        return Ok(runs_under(reports_dir));
    }
    let mut out = Vec::new();
    for t in targets {
        let dir = target_dir(t, reports_dir)?;
        let runs = runs_under(&dir);
        if runs.is_empty() {
            bail!(
                "no runs (folders with a `{MANIFEST}`) under `{}`",
                dir.display()
            );
        }
        out.extend(runs);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// A table of runs: named columns, one row per run.
#[derive(Debug, Clone)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// The columns after the varying parameters, in order.
pub const FIXED_COLUMNS: [&str; 16] = [
    "epochs",
    "final_train_loss",
    "best_train_loss",
    "final_val_loss",
    "best_val_loss",
    "val_accuracy",
    "val_loss_per_onset",
    "best_val_loss_per_onset",
    "best_val_bits_per_onset",
    "best_val_bits_per_quarter",
    "floor_val_loss",
    "val_loss_vs_floor",
    "train_seconds",
    "copy_windows",
    "device",
    "status",
];

fn min(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.fold(None, |m, v| Some(m.map_or(v, |m: f64| m.min(v))))
}

/// The parameters whose values are not the same in every run.
pub fn varying_params<R: std::borrow::Borrow<RunSummary>>(runs: &[R]) -> Vec<String> {
    let keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.borrow().params.keys()).collect();
    keys.into_iter()
        .filter(|k| {
            let first = runs[0].borrow().params.get(*k);
            runs.iter().any(|r| r.borrow().params.get(*k) != first)
        })
        .cloned()
        .collect()
}

/// One row per run: the varying parameters, the loss figures, time, device, and the music metrics.
pub fn table(runs: &[RunSummary]) -> Table {
    let varying = if runs.len() > 1 {
        varying_params(runs)
    } else {
        Vec::new()
    };
    let metric_names: Vec<&'static str> = metrics::columns(&Metrics::default())
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    // Trials of a pruned search add the metric they were ranked by, after their status.
    let search = runs
        .iter()
        .find_map(|r| r.trial.as_ref())
        .map(|t| t.metric.clone());
    let mut columns = vec!["run".to_string()];
    columns.extend(varying.iter().cloned());
    columns.extend(FIXED_COLUMNS.iter().map(|s| s.to_string()));
    if let Some(metric) = &search {
        columns.push(format!("search_{metric}"));
    }
    columns.extend(metric_names.iter().map(|s| s.to_string()));
    let rows = runs
        .iter()
        .map(|r| {
            let mut row = vec![Value::from(r.name())];
            row.extend(
                varying
                    .iter()
                    .map(|k| r.params.get(k).cloned().unwrap_or(Value::Null)),
            );
            let last = r.history.last();
            row.push(last.map_or(Value::Null, |l| l.epoch.into()));
            row.push(last.map_or(Value::Null, |l| l.train_loss.into()));
            row.push(r.best_train_loss().into());
            row.push(last.and_then(|l| l.val_loss).into());
            row.push(r.best_val_loss().into());
            row.push(last.and_then(|l| l.val_accuracy).into());
            row.push(r.val_loss_per_onset.into());
            row.push(r.best_val_loss_per_onset.into());
            row.push(r.best_val_bits_per_onset.into());
            row.push(r.best_val_bits_per_quarter.into());
            row.push(r.floor_val_loss.into());
            row.push(r.val_loss_vs_floor.into());
            row.push(r.train_seconds.into());
            row.push(r.copy_windows.into());
            row.push(Value::from(r.device.as_str()));
            match &r.trial {
                Some(t) => row.push(Value::from(t.status())),
                None => row.push(Value::from(r.status.as_str())),
            }
            if search.is_some() {
                row.push(r.trial.as_ref().and_then(|t| t.value).into());
            }
            match r.metrics.as_ref() {
                Some(m) => row.extend(metrics::columns(m).into_iter().map(|(_, v)| v)),
                None => row.extend(metric_names.iter().map(|_| Value::Null)),
            }
            row
        })
        .collect();
    Table { columns, rows }
}

impl Table {
    /// Sorts rows by a column: numbers numerically, missing values last.
    pub fn sort_by(&mut self, column: &str) -> Result<()> {
        self.sort_by_order(column, false)
    }

    /// [`Table::sort_by`], highest first when `descending`; missing values stay last either way.
    pub fn sort_by_order(&mut self, column: &str, descending: bool) -> Result<()> {
        let Some(i) = self.columns.iter().position(|c| c == column) else {
            bail!(
                "no column `{column}`; the columns are: {}",
                self.columns.join(", ")
            );
        };
        self.rows.sort_by(|a, b| match (&a[i], &b[i]) {
            (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
            (Value::Null, _) => std::cmp::Ordering::Greater,
            (_, Value::Null) => std::cmp::Ordering::Less,
            (x, y) => {
                let order = match (sort_number(x), sort_number(y)) {
                    (Some(x), Some(y)) => x.total_cmp(&y),
                    _ => cell(x).cmp(&cell(y)),
                };
                if descending { order.reverse() } else { order }
            }
        });
        Ok(())
    }

    /// Aligned columns for a terminal.
    pub fn to_text(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(cell).collect())
            .collect();
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                cells
                    .iter()
                    .map(|r| r[i].len())
                    .chain([c.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let line = |out: &mut String, items: &[String]| {
            let parts: Vec<String> = items
                .iter()
                .zip(&widths)
                .map(|(s, w)| format!("{s:<w$}"))
                .collect();
            let _ = writeln!(out, "{}", parts.join("  ").trim_end());
        };
        line(&mut out, &self.columns);
        for r in &cells {
            line(&mut out, r);
        }
        out
    }

    /// CSV; a column of folded seeds (`mean ± ci95`) is two: `col` (the mean) and `col_ci95`.
    pub fn to_csv(&self) -> Result<String> {
        let folded: Vec<bool> = (0..self.columns.len())
            .map(|c| self.rows.iter().any(|r| r[c].get("mean").is_some()))
            .collect();
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = Vec::new();
        for (c, name) in self.columns.iter().enumerate() {
            header.push(name.clone());
            if folded[c] {
                header.push(format!("{name}_ci95"));
            }
        }
        w.write_record(&header)?;
        for r in &self.rows {
            let mut record = Vec::new();
            for (c, v) in r.iter().enumerate() {
                match (folded[c], v.get("mean")) {
                    (true, Some(mean)) => {
                        record.push(cell(mean));
                        record.push(v.get("ci95").map(cell).unwrap_or_default());
                    }
                    (true, None) => record.extend([cell(v), String::new()]),
                    (false, _) => record.push(cell(v)),
                }
            }
            w.write_record(&record)?;
        }
        Ok(String::from_utf8(
            w.into_inner().map_err(|e| e.into_error())?,
        )?)
    }

    /// An array of objects, one per run, column → value.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|r| {
                    Value::Object(
                        self.columns
                            .iter()
                            .cloned()
                            .zip(r.iter().cloned())
                            .collect(),
                    )
                })
                .collect(),
        )
    }
}

/// The number a cell sorts by: a number, or a folded cell's mean.
fn sort_number(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.get("mean")?.as_f64())
}

/// A value as a table cell: numbers with 4 decimals when fractional, strings without quotes, null as empty, a
/// folded cell as `mean ± ci95` (the mean alone from one value).
pub fn cell(v: &Value) -> String {
    if let Some(mean) = v.get("mean") {
        return match v.get("ci95").filter(|c| !c.is_null()) {
            Some(ci) => format!("{} ± {}", cell(mean), cell(ci)),
            None => cell(mean),
        };
    }
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => format!("{:.4}", n.as_f64().unwrap_or(0.0)),
        other => other.to_string(),
    }
}
