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
use crate::stages::StageKind;

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
    /// The metrics of pieces 2, 3, … (`metrics-n.json`), when the run sampled more than one.
    pub piece_metrics: Vec<Metrics>,
    /// The same metrics of the references `metrics.json` holds (held-out files, shuffled, uniform), by name.
    pub references: Vec<(&'static str, Metrics)>,
    /// Each stage's name and fingerprint, in run order: two runs with the same made the same results.
    pub fingerprints: Vec<(String, String)>,
    /// Whether any stage ran (rather than came from the cache).
    pub computed: bool,
    /// `<stage>.seed` of each `train` stage: what `[sweep] repeat` varies, so runs that differ only there are one
    /// configuration trained several times.
    pub seed_keys: Vec<String>,
    /// The corpus its `midi_source` stages read: `31 files 3fc79d41` (the count and the start of the content hash).
    pub source: String,
    /// The `stage.param` keys whose stage can change a training's loss (see `StageKind::shapes_training`).
    pub training_params: BTreeSet<String>,
    /// The fingerprint of its last `train` stage: two runs with the same drew the same loss curves.
    pub training: Option<String>,
    /// The sweep point's values as written (`keys.transpose` → `[-5, 6]`), empty for plain runs.
    pub point_values: Vec<(String, String)>,
    /// Later runs that computed nothing and only reproduced this one (counted by [`fold_reruns`]; 0 as read).
    pub reruns: usize,
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
        let params = params_with_defaults(manifest);
        let training_params = training_params(manifest, &params);
        let train = manifest.train_summary();
        let train_seconds = train.as_ref().map(|t| t.seconds);
        let val_loss_per_onset = train.as_ref().and_then(|t| t.final_val_loss_per_onset);
        let best_val_loss_per_onset = train.as_ref().and_then(|t| t.best_val_loss_per_onset);
        let history = match find_file(dir, "loss.csv") {
            Some(p) => crate::artifact::read_losses(&p)?,
            None => Vec::new(),
        };
        let RunMusic {
            first: metrics,
            pieces: piece_metrics,
            references,
        } = music_of(dir);
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
            piece_metrics,
            references,
            fingerprints,
            computed,
            seed_keys: manifest
                .stages
                .iter()
                .filter(|s| s.kind == StageKind::Train)
                .map(|s| format!("{}.seed", s.name))
                .collect(),
            source: source_of(manifest),
            training_params,
            training: manifest
                .stages
                .iter()
                .rev()
                .find(|s| s.kind == StageKind::Train)
                .and_then(|s| s.fingerprint.map(|f| f.hex())),
            point_values: manifest
                .point
                .as_ref()
                .map(|p| p.values.clone().into_iter().collect())
                .unwrap_or_default(),
            reruns: 0,
        })
    }

    /// How a person reads the run's name in a table or a chart's legend: its point's values as written
    /// (`transpose=[-5,6] epochs=10`), or its folder.
    pub fn title(&self) -> String {
        if self.point_values.is_empty() {
            self.id.clone()
        } else {
            crate::spec::sweep::display_label(&self.point_values)
        }
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

    /// `layers=2 seq_len=64`: this run's values of the given parameters, as a table or a chart's legend names it.
    /// The parameters that shape training come first, as they tell runs' losses apart.
    pub fn label_by(&self, params: &[String]) -> String {
        let (shaping, rest): (Vec<&String>, Vec<&String>) = params
            .iter()
            .partition(|k| self.training_params.contains(*k));
        let values: Vec<(String, String)> = shaping
            .into_iter()
            .chain(rest)
            .map(|k| (k.clone(), self.params.get(k).map(cell).unwrap_or_default()))
            .collect();
        crate::spec::sweep::display_label(&values)
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

/// The runs that are not re-runs, each with the later runs that only reproduced it (nothing computed, the same
/// fingerprints), as indices into `runs`, oldest first: how the index and `compare` count a cached re-run under the
/// run it reproduced instead of as a row of its own.
pub fn rerun_groups<R: std::borrow::Borrow<RunSummary>>(runs: &[R]) -> Vec<(usize, Vec<usize>)> {
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| runs[a].borrow().started.cmp(&runs[b].borrow().started));
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for i in order {
        let run = runs[i].borrow();
        match groups
            .iter_mut()
            .find(|(o, _)| run.reproduces(runs[*o].borrow()))
        {
            Some((_, reruns)) => reruns.push(i),
            None => groups.push((i, Vec::new())),
        }
    }
    groups
}

/// `runs` without their re-runs, in the order given, each counting its re-runs in [`RunSummary::reruns`].
pub fn fold_reruns(runs: Vec<RunSummary>) -> Vec<RunSummary> {
    let mut counts = vec![None; runs.len()];
    for (original, reruns) in rerun_groups(&runs) {
        counts[original] = Some(reruns.len());
    }
    runs.into_iter()
        .zip(counts)
        .filter_map(|(mut r, count)| {
            r.reruns = count?;
            Some(r)
        })
        .collect()
}

/// A run's music metrics, as its report folder has them.
struct RunMusic {
    /// The first piece's (`metrics.json`).
    first: Option<Metrics>,
    /// Every later piece's (`metrics-n.json`).
    pieces: Vec<Metrics>,
    /// The references' that `metrics.json` holds (held-out files, shuffled, uniform), by name.
    references: Vec<(&'static str, Metrics)>,
}

/// The music metrics in `dir`; files that do not read are none.
fn music_of(dir: &Path) -> RunMusic {
    let read = |name: &str| {
        find_file(dir, name)
            .and_then(|p| crate::paths::read_regular(&p).ok())
            .and_then(|b| serde_json::from_slice::<MetricsReport>(&b).ok())
    };
    let report = read("metrics.json");
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
    let pieces = (2..)
        .map_while(|n| read(&format!("metrics-{n}.json")))
        .map(|m| m.generated)
        .collect();
    RunMusic {
        first: report.map(|m| m.generated),
        pieces,
        references,
    }
}

/// The keys of `params` (defaults filled in) whose stage can change a training's loss (see
/// `StageKind::shapes_training`).
fn training_params(manifest: &Manifest, params: &BTreeMap<String, Value>) -> BTreeSet<String> {
    let shaping: Vec<String> = manifest
        .stages
        .iter()
        .filter(|s| s.kind.shapes_training())
        .map(|s| format!("{}.", s.name))
        .collect();
    params
        .keys()
        .filter(|k| shaping.iter().any(|prefix| k.starts_with(prefix.as_str())))
        .cloned()
        .collect()
}

/// Every stage parameter as `stage.param` → value: as fingerprinted, and the kind's default for each parameter left
/// out where it does not apply (a `chord` tokenizer's `grid`), so a table of runs has no blank cells.
fn params_with_defaults(manifest: &Manifest) -> BTreeMap<String, Value> {
    let mut params = manifest.params();
    for stage in &manifest.stages {
        for (k, v) in stage.kind.defaults() {
            params.entry(format!("{}.{k}", stage.name)).or_insert(v);
        }
    }
    params
}

/// `31 files 3fc79d41`: how many files the run's `midi_source` stages read and the start of their content hash
/// (two runs with the same read the same music); empty when the manifest does not say.
fn source_of(manifest: &Manifest) -> String {
    let parts: Vec<String> = manifest
        .stages
        .iter()
        .filter(|s| s.kind == StageKind::MidiSource)
        .filter_map(|s| {
            let summary = s.summary_as::<crate::stages::SourceSummary>()?;
            let hash = s.output_hash?.hex();
            Some(format!("{} files {}", summary.files, &hash[..8]))
        })
        .collect();
    parts.join("; ")
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
    // Several floors (runs on other tokens or windows) are told apart by their value.
    if out.len() > 1 {
        for f in &mut out {
            f.label = format!("{}: {:.4}", f.label, f.loss);
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
    /// The parameter columns that cannot change a loss (sampling, rendering): a narrow terminal shows the losses
    /// before them.
    pub after_losses: BTreeSet<String>,
    /// How a person reads each row's `run` on a terminal (`transpose=[-5,6]`, where the cell keeps the folder's
    /// name for CSV and JSON); empty: the cells themselves.
    pub titles: Vec<String>,
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
    // What the runs read, when that differs between them: a copied experiment pointed at another corpus.
    let sources_differ = runs.iter().any(|r| r.source != runs[0].source);
    let any_reruns = runs.iter().any(|r| r.reruns > 0);
    let experiments_differ = runs.iter().any(|r| r.experiment != runs[0].experiment);
    let mut columns = vec!["run".to_string()];
    if experiments_differ {
        columns.push("experiment".to_string());
    }
    if sources_differ {
        columns.push("source".to_string());
    }
    columns.extend(varying.iter().cloned());
    columns.extend(FIXED_COLUMNS.iter().map(|s| s.to_string()));
    if any_reruns {
        columns.push("reruns".to_string());
    }
    if let Some(metric) = &search {
        columns.push(format!("search_{metric}"));
    }
    columns.extend(metric_names.iter().map(|s| s.to_string()));
    let rows = runs
        .iter()
        .map(|r| {
            let mut row = vec![Value::from(r.name())];
            if experiments_differ {
                row.push(Value::from(r.experiment.as_str()));
            }
            if sources_differ {
                row.push(Value::from(r.source.as_str()));
            }
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
            if any_reruns {
                row.push(Value::from(r.reruns));
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
    let after_losses = varying
        .iter()
        .filter(|k| !runs.iter().any(|r| r.training_params.contains(*k)))
        .cloned()
        .collect();
    Table {
        columns,
        rows,
        after_losses,
        titles: runs.iter().map(RunSummary::title).collect(),
    }
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
        let mut order: Vec<usize> = (0..self.rows.len()).collect();
        let rows = &self.rows;
        order.sort_by(|&a, &b| match (&rows[a][i], &rows[b][i]) {
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
        self.rows = order.iter().map(|&r| self.rows[r].clone()).collect();
        if !self.titles.is_empty() {
            self.titles = order.iter().map(|&r| self.titles[r].clone()).collect();
        }
        Ok(())
    }

    /// Aligned columns in at most `width` characters a line: the run's name is cut short with `…` (to 24
    /// characters), then the columns that say least are left out (see [`keep_order`]), then the name is cut to 12.
    /// Also gives the names of the columns left out, those that say most first.
    pub fn fitted(&self, width: usize) -> (String, Vec<String>) {
        let run = self.columns.iter().position(|c| c == "run");
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut cells: Vec<String> = r.iter().map(cell).collect();
                if let (Some(c), Some(title)) = (run, self.titles.get(i)) {
                    cells[c] = title.clone();
                }
                cells
            })
            .collect();
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                cells
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([self.columns[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line_width = |shown: &[usize], widths: &[usize]| -> usize {
            shown.iter().map(|&c| widths[c]).sum::<usize>() + 2 * shown.len().saturating_sub(1)
        };
        let mut shown: Vec<usize> = (0..self.columns.len()).collect();
        let mut widths = widths;
        // The run's name is cut to a readable length before any column goes: its parameters have columns too.
        let shorten_name = |widths: &mut Vec<usize>, shown: &[usize], shortest: usize| {
            let over = line_width(shown, widths).saturating_sub(width);
            if over > 0 && run == Some(0) {
                widths[0] = widths[0].saturating_sub(over).max(shortest.min(widths[0]));
            }
        };
        shorten_name(&mut widths, &shown, 24);
        let mut left_out = Vec::new();
        for c in keep_order(&self.columns, &self.after_losses)
            .into_iter()
            .rev()
        {
            if line_width(&shown, &widths) <= width || c == 0 {
                break;
            }
            shown.retain(|&s| s != c);
            left_out.insert(0, self.columns[c].clone());
        }
        shorten_name(&mut widths, &shown, 12);
        let mut out = String::new();
        let mut line = |items: &[String]| {
            let parts: Vec<String> = shown
                .iter()
                .map(|&c| {
                    let w = widths[c];
                    format!("{:<w$}", cut(&items[c], w))
                })
                .collect();
            let _ = writeln!(out, "{}", parts.join("  ").trim_end());
        };
        line(&self.columns);
        for r in &cells {
            line(r);
        }
        (out, left_out)
    }

    /// The table with only the named columns, in that order (`compare --columns`).
    pub fn select(&self, names: &[String]) -> Result<Table> {
        let at: Vec<usize> = names
            .iter()
            .map(|n| {
                self.columns.iter().position(|c| c == n).ok_or_else(|| {
                    let nearest = crate::spec::diagnostic::did_you_mean(
                        n,
                        self.columns.iter().map(String::as_str),
                    );
                    anyhow::anyhow!(
                        "no column `{n}`; {}",
                        nearest.unwrap_or_else(|| format!(
                            "the columns are: {}",
                            self.columns.join(", ")
                        ))
                    )
                })
            })
            .collect::<Result<_>>()?;
        Ok(Table {
            after_losses: self.after_losses.clone(),
            titles: self.titles.clone(),
            columns: at.iter().map(|&c| self.columns[c].clone()).collect(),
            rows: self
                .rows
                .iter()
                .map(|r| at.iter().map(|&c| r[c].clone()).collect())
                .collect(),
        })
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

/// The columns a reader needs most come first: the run, its held-out loss and how it stands against the floor, the
/// corpus and the parameters that shape training, how the seeds compare and how training ended, the parameters that
/// cannot change a loss (sampling), then every other figure in the table's order. A narrow terminal drops from
/// the end.
fn keep_order(columns: &[String], after_losses: &BTreeSet<String>) -> Vec<usize> {
    const LOSSES: [&str; 2] = ["best_val_loss", "val_loss_vs_floor"];
    const THEN: [&str; 11] = [
        "n",
        "vs_lowest",
        "epochs",
        "status",
        "reruns",
        "floor_val_loss",
        "val_accuracy",
        "scale_consistency",
        "seeds",
        "train_seconds",
        "final_val_loss",
    ];
    let first_figure = columns
        .iter()
        .position(|c| c == FIXED_COLUMNS[0] || c == "n")
        .unwrap_or(columns.len());
    let rank = |c: usize| -> usize {
        let name = columns[c].as_str();
        if c == 0 || name == "experiment" {
            0
        } else if let Some(i) = LOSSES.iter().position(|l| *l == name) {
            1 + i
        } else if c < first_figure && !after_losses.contains(name) {
            10
        } else if let Some(i) = THEN.iter().position(|t| *t == name) {
            20 + i
        } else if name.starts_with("search_") {
            22
        } else if c < first_figure {
            40
        } else {
            50
        }
    };
    let mut order: Vec<usize> = (0..columns.len()).collect();
    order.sort_by_key(|&c| rank(c));
    order
}

/// `text` in at most `width` characters, ending in `…` when it is longer (a run's name: the values it lists are
/// columns of their own).
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width || width < 2 {
        return text.to_string();
    }
    let kept: String = text.chars().take(width - 1).collect();
    format!("{kept}…")
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
