//! Sweeps: an experiment file's `[sweep]` table turned into points, each a checked [`Experiment`] of its own.
//!
//! ```toml
//! [sweep]
//! "model.layers" = [1, 2, 3]
//! "windows.seq_len" = [32, 64]
//! mode = "grid"   # every combination (default) | "zip": lists side by side | "random": `trials` draws
//! repeat = 1      # each point N times, the seed of every `train` stage + 0, 1, …
//! ```
//!
//! In `mode = "random"` a key may also be a distribution — `{ uniform = [a, b] }`, `{ log_uniform = [a, b] }`,
//! `{ int = [lo, hi] }` or `{ choice = [..] }` (a list is a choice) — and `trials = N` points are drawn from a
//! generator seeded by `seed`. `[sweep.prune]` adds successive-halving pruning (see [`Prune`]).
//!
//! A point is the experiment with its values applied as overrides whose spans point into the `[sweep]` table, so a
//! bad value is reported where it is written.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::spec::diagnostic::{Diagnostic, Diagnostics, Source, decode_problem};
use crate::spec::experiment::{Experiment, Override, ParsedFile, TrainEdit};
use crate::stages::decode_all;

/// How `[sweep]`'s lists combine into points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "SweepMode")]
pub enum Mode {
    /// Every combination.
    #[default]
    Grid,
    /// The lists side by side: the first values together, then the second, …
    Zip,
    /// `trials` draws, from lists and distributions.
    Random,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Grid => "grid",
            Mode::Zip => "zip",
            Mode::Random => "random",
        }
    }
}

/// The values one swept parameter takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// Values as written (TOML text, with their spans in the file); in random mode, a choice among them.
    List(Vec<(String, Range<usize>)>),
    Uniform(f64, f64),
    LogUniform(f64, f64),
    /// Whole numbers, both ends included.
    Int(i64, i64),
}

/// One swept parameter.
#[derive(Debug, Clone)]
pub struct Axis {
    /// `model.layers`.
    pub key: String,
    pub domain: Domain,
    /// Where it is written (the list or the distribution's table).
    pub span: Range<usize>,
}

impl Axis {
    /// How the values read in `sweep.json`: the list as written, or the distribution (`log_uniform [0.0001, 0.01]`).
    pub fn describe(&self) -> Vec<String> {
        match &self.domain {
            Domain::List(values) => values.iter().map(|v| v.0.clone()).collect(),
            Domain::Uniform(a, b) => vec![format!("uniform [{a}, {b}]")],
            Domain::LogUniform(a, b) => vec![format!("log_uniform [{a}, {b}]")],
            Domain::Int(a, b) => vec![format!("int [{a}, {b}]")],
        }
    }
}

/// `[sweep.prune]`: asynchronous successive halving (ASHA) over the trials' training.
///
/// ```toml
/// [sweep.prune]
/// method = "asha"        # the only one
/// metric = "val_loss"    # or "val_loss_per_onset", "train_loss" (minimised), "val_accuracy" (maximised)
/// min_epochs = 1         # the first rung
/// reduction = 3          # η: rungs at min_epochs·η^k, and 1/η of the trials go on from each
/// ```
///
/// The maximum is each trial's own `epochs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Prune {
    pub metric: Metric,
    pub min_epochs: u32,
    pub reduction: u32,
    /// The `[sweep.prune]` table, for errors found once the points are built.
    pub span: Range<usize>,
    pub min_epochs_span: Range<usize>,
    pub metric_span: Range<usize>,
}

/// What pruning ranks trials by: a column of `loss.csv`, or the per-onset validation loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "PruneMetric")]
pub enum Metric {
    /// The validation loss (minimised).
    #[default]
    ValLoss,
    /// The validation loss per onset, comparable across token schemes (minimised).
    ValLossPerOnset,
    /// The validation accuracy (maximised).
    ValAccuracy,
    /// The training loss (minimised), for runs without validation windows.
    TrainLoss,
}

impl Metric {
    pub const ALL: [Metric; 4] = [
        Metric::ValLoss,
        Metric::ValLossPerOnset,
        Metric::ValAccuracy,
        Metric::TrainLoss,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::ValLoss => "val_loss",
            Metric::ValLossPerOnset => "val_loss_per_onset",
            Metric::ValAccuracy => "val_accuracy",
            Metric::TrainLoss => "train_loss",
        }
    }

    /// Higher is better (accuracy); else lower is.
    pub fn maximised(self) -> bool {
        self == Metric::ValAccuracy
    }

    /// Needs validation windows.
    pub fn needs_validation(self) -> bool {
        self != Metric::TrainLoss
    }
}

#[derive(Debug, Clone)]
pub struct Sweep {
    pub axes: Vec<Axis>,
    pub mode: Mode,
    pub repeat: u32,
    /// Points drawn in random mode.
    pub trials: u32,
    /// Seeds random mode's draws.
    pub seed: u64,
    pub prune: Option<Prune>,
}

/// One variant of the experiment.
#[derive(Debug)]
pub struct Point {
    /// `layers=2,seq_len=64`: the varied values (drawn ones rounded), also the name of its report folder. Empty
    /// without a sweep.
    pub label: String,
    /// The varied parameters and their exact values, for summaries.
    pub values: Vec<(String, String)>,
    pub experiment: Experiment,
}

/// An experiment file with all its points.
#[derive(Debug)]
pub struct Study {
    pub name: String,
    pub sweep: Option<Sweep>,
    pub points: Vec<Point>,
}

impl Study {
    pub fn is_sweep(&self) -> bool {
        self.sweep.is_some()
    }

    /// The pruning settings, if the sweep prunes.
    pub fn prune(&self) -> Option<&Prune> {
        self.sweep.as_ref().and_then(|s| s.prune.as_ref())
    }

    /// Makes `device = "auto"` stand for `kind` in every point (see [`Experiment::decide_auto`]).
    pub fn decide_auto(&mut self, kind: crate::nn::device::DeviceKind) {
        for point in &mut self.points {
            point.experiment.decide_auto(kind);
        }
    }

    /// Point `i` with its `train` stage `stage` trained for `epochs` instead (a pruning rung): a typed copy.
    pub fn at_epochs(&self, i: usize, stage: &str, epochs: u32) -> Experiment {
        let mut rung = self.points[i].experiment.clone();
        rung.edit_train(stage, TrainEdit::Epochs(epochs))
            .expect("a rung edits the train stage the checks found");
        rung
    }

    /// Reads an experiment file; with a `[sweep]` table, builds and checks every point.
    pub fn load(path: &Path, overrides: &[Override]) -> Result<Self, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostic::new(format!(
                "cannot read experiment file `{}`: {e}",
                path.display()
            ))
            .hint("pass the path of a TOML experiment file, e.g. `experiments/baseline.toml`")
        })?;
        Self::from_text(path, &text, overrides)
    }

    /// Like [`Study::load`], for the text of the file at `path` (which locates relative paths and names errors).
    /// The text is parsed once, however many points, repeats and rungs are made from it.
    pub fn from_text(path: &Path, text: &str, overrides: &[Override]) -> Result<Self, Diagnostics> {
        let file = ParsedFile::parse(path, text)?;
        let source = file.source();
        let sweep = match file.root().get("sweep") {
            Some(value) => Some(parse_sweep(value, &source)?),
            None => None,
        };
        let Some(sweep) = sweep else {
            let experiment = file.experiment(overrides)?;
            return Ok(Self {
                name: experiment.name.clone(),
                sweep: None,
                points: vec![Point {
                    label: String::new(),
                    values: Vec::new(),
                    experiment,
                }],
            });
        };
        let mut diags = Diagnostics::default();
        for o in overrides {
            if let Some(axis) = sweep.axes.iter().find(|a| a.key == o.key) {
                diags.push(
                    Diagnostic::new(format!("`--set {}` changes a swept parameter", o.key))
                        .at(&source, axis.span.clone())
                        .hint("remove it from `[sweep]`, or drop the `--set`"),
                );
            }
        }
        let mut points = points(&file, &sweep, overrides, &mut diags)?;
        if let Some(prune) = &sweep.prune {
            check_prune(prune, &points, &source, &mut diags);
            check_prune_repeat(prune, sweep.repeat, &source, &mut diags);
        }
        unique_labels(&mut points);
        let name = points
            .first()
            .map(|p| p.experiment.name.clone())
            .unwrap_or_default();
        diags.into_result(Self {
            name,
            sweep: Some(sweep),
            points,
        })
    }
}

/// Every point of `sweep`: one per combination, or `repeat` per combination with the train stages' seeds moved on by
/// one each time. A problem every point shares is reported once.
fn points(
    file: &ParsedFile,
    sweep: &Sweep,
    overrides: &[Override],
    diags: &mut Diagnostics,
) -> Result<Vec<Point>, Diagnostics> {
    let mut points = Vec::new();
    let mut seen = HashSet::new();
    for combo in combinations(sweep) {
        let mut all: Vec<Override> = overrides.to_vec();
        all.extend(combo.iter().map(|(axis, v)| Override {
            key: sweep.axes[*axis].key.clone(),
            value: v.text.clone(),
            origin: Some(v.span.clone()),
        }));
        let pairs = |f: fn(&Value) -> &String| -> Vec<(String, String)> {
            combo
                .iter()
                .map(|(axis, v)| (sweep.axes[*axis].key.clone(), f(v).clone()))
                .collect()
        };
        let (values, shown) = (pairs(|v| &v.text), pairs(|v| &v.shown));
        let experiment = match file.experiment(&all) {
            Ok(e) => e,
            Err(d) => {
                for d in d.0 {
                    if seen.insert(d.render(false)) {
                        diags.push(d);
                    }
                }
                continue;
            }
        };
        if sweep.repeat == 1 {
            points.push(Point {
                label: label(&shown),
                values,
                experiment,
            });
            continue;
        }
        if experiment.trains().next().is_none() {
            diags.push(
                Diagnostic::new(
                    "`repeat` varies the seed of `train` stages, but the experiment has none",
                )
                .hint("remove `repeat`, or add a `train` stage"),
            );
            return Ok(points);
        }
        let point = Point {
            label: String::new(),
            values,
            experiment,
        };
        points.extend(repeats(&point, &shown, sweep.repeat));
    }
    Ok(points)
}

/// `repeat` copies of `point`, each repeat moving the seed of every train stage on by one: typed copies.
fn repeats(point: &Point, shown: &[(String, String)], repeat: u32) -> Vec<Point> {
    let seeds: Vec<(String, u64)> = point
        .experiment
        .trains()
        .map(|(name, t)| (name.to_string(), t.seed))
        .collect();
    (0..u64::from(repeat))
        .map(|r| {
            let mut values = point.values.clone();
            let mut shown = shown.to_vec();
            let mut experiment = point.experiment.clone();
            for (stage, seed) in &seeds {
                let edit = experiment
                    .edit_train(stage, TrainEdit::Seed(seed + r))
                    .expect("the stage is one of the experiment's trainings");
                values.push(edit.clone());
                shown.push(edit);
            }
            Point {
                label: label(&shown),
                values,
                experiment,
            }
        })
        .collect()
}

/// `layers=2,seq_len=64`: each value under its parameter's name (with the stage when two stages share it), quotes
/// removed, characters a folder name cannot hold replaced by `_`.
pub fn label(values: &[(String, String)]) -> String {
    named(values, |unquoted| {
        crate::paths::replace_unsafe(unquoted, "._-+")
    })
    .join(",")
}

/// `key="" transpose=[-5,6]`: a point's values as a person reads them (in tables and chart legends), where
/// [`label`] makes a folder name of them (`key=,transpose=_-5_6_`). Names are shortened as `label` does.
pub fn display_label(values: &[(String, String)]) -> String {
    named(values, |unquoted| {
        if unquoted.is_empty() {
            "\"\"".to_string()
        } else {
            unquoted.split_whitespace().collect()
        }
    })
    .join(" ")
}

/// `name=value` for each value: the parameter's own name, or `stage.name` when two stages' parameters share it; the
/// value without its quotes, as `show` writes it.
fn named(values: &[(String, String)], show: impl Fn(&str) -> String) -> Vec<String> {
    let short = |key: &str| key.rsplit('.').next().unwrap_or(key).to_string();
    values
        .iter()
        .map(|(key, value)| {
            let clash = values
                .iter()
                .filter(|(k, _)| short(k) == short(key))
                .count()
                > 1;
            let name = if clash { key.clone() } else { short(key) };
            format!(
                "{name}={}",
                show(value.trim_matches('"').trim_matches('\''))
            )
        })
        .collect()
}

/// Labels name report folders, so distinct points must not share one: values that differ only in characters a
/// folder name cannot hold (`"a/b"` and `"a_b"` both give `a_b`) get `~2`, `~3`, … in file order.
fn unique_labels(points: &mut [Point]) {
    let mut taken: HashSet<String> = HashSet::new();
    // The last suffix given to each label: many points sharing one go on from there, never from `~2` again.
    let mut last: HashMap<String, usize> = HashMap::new();
    for point in points {
        let mut label = point.label.clone();
        let n = last.entry(point.label.clone()).or_insert(1);
        while !taken.insert(label.clone()) {
            *n += 1;
            label = format!("{}~{n}", point.label);
        }
        point.label = label;
    }
}

/// One value of a point: the TOML text applied, where it comes from, and how its label shows it.
#[derive(Debug, Clone)]
struct Value {
    text: String,
    span: Range<usize>,
    shown: String,
}

impl Value {
    fn written((text, span): &(String, Range<usize>)) -> Self {
        Self {
            text: text.clone(),
            span: span.clone(),
            shown: text.clone(),
        }
    }
}

/// A drawn float as TOML text (exact: Rust prints the shortest text that reads back as the same number) and as a
/// label shows it (4 significant digits).
fn float_value(v: f64, span: &Range<usize>) -> Value {
    let text = format!("{v:?}");
    let shown = if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e6) {
        format!("{v:.3e}")
    } else {
        let decimals = (3 - v.abs().log10().floor() as i32).max(0) as usize;
        let fixed = format!("{v:.decimals$}");
        if fixed.contains('.') {
            fixed
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        } else {
            fixed
        }
    };
    Value {
        text,
        span: span.clone(),
        shown,
    }
}

/// One value of `axis` drawn from `rng`.
fn draw(axis: &Axis, rng: &mut ChaCha8Rng) -> Value {
    match &axis.domain {
        Domain::List(values) => Value::written(&values[rng.random_range(0..values.len())]),
        Domain::Uniform(a, b) => float_value(a + rng.random::<f64>() * (b - a), &axis.span),
        Domain::LogUniform(a, b) => {
            let (la, lb) = (a.ln(), b.ln());
            float_value((la + rng.random::<f64>() * (lb - la)).exp(), &axis.span)
        }
        Domain::Int(a, b) => {
            let v = rng.random_range(*a..=*b).to_string();
            Value {
                text: v.clone(),
                span: axis.span.clone(),
                shown: v,
            }
        }
    }
}

/// The points as lists of (axis, value).
fn combinations(sweep: &Sweep) -> Vec<Vec<(usize, Value)>> {
    let list = |a: &Axis| match &a.domain {
        Domain::List(values) => values.clone(),
        // Distributions outside random mode were refused when parsing.
        _ => Vec::new(),
    };
    match sweep.mode {
        Mode::Random => {
            // One generator for the whole sweep, drawn trial by trial and axis by axis in file order: the same seed
            // gives the same trials.
            let mut rng = ChaCha8Rng::seed_from_u64(sweep.seed);
            (0..sweep.trials)
                .map(|_| {
                    (0..sweep.axes.len())
                        .map(|a| (a, draw(&sweep.axes[a], &mut rng)))
                        .collect()
                })
                .collect()
        }
        Mode::Zip => {
            let lists: Vec<_> = sweep.axes.iter().map(list).collect();
            let n = lists.first().map_or(0, Vec::len);
            (0..n)
                .map(|i| {
                    (0..lists.len())
                        .map(|a| (a, Value::written(&lists[a][i])))
                        .collect()
                })
                .collect()
        }
        Mode::Grid => {
            let mut out: Vec<Vec<(usize, Value)>> = vec![Vec::new()];
            for (a, axis) in sweep.axes.iter().enumerate() {
                let values = list(axis);
                out = out
                    .into_iter()
                    .flat_map(|prefix| {
                        values.iter().map(move |v| {
                            let mut p = prefix.clone();
                            p.push((a, Value::written(v)));
                            p
                        })
                    })
                    .collect();
            }
            out
        }
    }
}

/// The experiment's `train` stages by name, each with the `epochs` it trains (what pruning's rungs end at).
pub fn trainings(exp: &Experiment) -> Vec<(&str, u32)> {
    exp.trains().map(|(name, t)| (name, t.epochs)).collect()
}

/// What `[sweep.prune]` needs of the points: one `train` stage, at least `min_epochs` epochs each, and a
/// validation split when the metric is a validation one.
/// Successive halving ranks single trainings: the seeds of one configuration would each be promoted or stopped on
/// their own luck, so `repeat` is refused beside `[sweep.prune]`.
fn check_prune_repeat(prune: &Prune, repeat: u32, source: &Source, diags: &mut Diagnostics) {
    if repeat > 1 {
        diags.push(
            Diagnostic::new(format!(
                "`repeat = {repeat}` cannot go with `[sweep.prune]`: successive halving ranks single trainings, so \
                 the seeds of one configuration would be promoted or stopped each on its own luck"
            ))
            .at(source, prune.span.clone())
            .key("sweep.repeat")
            .hint(
                "remove `repeat` to search, then run the best configuration with `repeat` and no \
                 `[sweep.prune]` to see its seed noise",
            ),
        );
    }
}

fn check_prune(prune: &Prune, points: &[Point], source: &Source, diags: &mut Diagnostics) {
    let Some(first) = points.first() else { return };
    let trains = trainings(&first.experiment);
    let [(train, epochs)] = trains[..] else {
        diags.push(
            Diagnostic::new(format!(
                "`[sweep.prune]` prunes one `train` stage, but the experiment has {}",
                trains.len()
            ))
            .at(source, prune.span.clone())
            .key("sweep.prune")
            .hint("pruning stops trainings early: the experiment needs exactly one `train` stage"),
        );
        return;
    };
    if points.iter().any(|p| trainings(&p.experiment) != trains) {
        diags.push(
            Diagnostic::new(format!(
                "with `[sweep.prune]` every trial trains to the same `{train}.epochs`, the last rung; the sweep varies it"
            ))
            .at(source, prune.span.clone())
            .key("sweep.prune")
            .hint("remove `epochs` from the sweep: pruning decides how long each trial trains"),
        );
        return;
    }
    if prune.min_epochs > epochs {
        diags.push(
            Diagnostic::new(format!(
                "`min_epochs = {}` is above `{train}.epochs = {epochs}`, the most a trial trains",
                prune.min_epochs
            ))
            .at(source, prune.min_epochs_span.clone())
            .key("sweep.prune.min_epochs")
            .hint("the first rung must come before the last epoch: lower `min_epochs` or raise `epochs`"),
        );
        return;
    }
    for point in points {
        let exp = &point.experiment;
        if prune.metric.needs_validation() {
            let no_split = exp.windows().any(|(_, w)| w.val_fraction == 0.0);
            if no_split {
                diags.push(
                    Diagnostic::new(format!(
                        "pruning on `{}` needs validation windows, but `val_fraction = 0` holds out no file",
                        prune.metric.name()
                    ))
                    .at(source, prune.metric_span.clone())
                    .key("sweep.prune.metric")
                    .hint("set `val_fraction` above 0 in the window stage, or prune on `train_loss`"),
                );
                return;
            }
        }
    }
}

/// `[sweep]`'s settings, as serde reads them and schemars describes them to editors (`pipeline schema`). Every other
/// key of `[sweep]` is a swept parameter (an [`Axis`]).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `grid`: every combination; `zip`: lists side by side; `random`: `trials` draws.
    #[serde(default)]
    pub mode: Mode,
    /// Runs per point, with every `train` stage's seed moved on by 0, 1, …
    #[serde(default = "one")]
    #[schemars(range(min = bounds::REPEAT.0, max = bounds::REPEAT.1))]
    pub repeat: u32,
    /// Random mode: how many points to draw.
    #[schemars(range(min = bounds::TRIALS.0, max = bounds::TRIALS.1))]
    pub trials: Option<u32>,
    /// Random mode: the draws' seed.
    #[serde(default)]
    pub seed: u64,
    /// Stop unpromising trials early (asynchronous successive halving).
    #[expect(
        dead_code,
        reason = "decoded apart (`read_prune`), so its problems are keyed `sweep.prune.…`; here for the schema"
    )]
    pub prune: Option<PruneSettings>,
}

/// `[sweep.prune]`: train every trial to a first rung, and only the best of each rung on to the next (ASHA).
/// Decoded into a [`Prune`].
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneSettings {
    /// The pruning method.
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "there is one method; decoding it refuses any other"
    )]
    pub method: PruneMethod,
    /// What decides which trials go on.
    #[serde(default)]
    pub metric: Metric,
    /// The first rung: the epochs every trial trains.
    #[serde(default = "one")]
    #[schemars(range(min = bounds::MIN_EPOCHS.0, max = bounds::MIN_EPOCHS.1))]
    pub min_epochs: u32,
    /// η: how many trials reach a rung for each that goes on (3 is usual).
    #[serde(default = "three")]
    #[schemars(range(min = bounds::REDUCTION.0, max = bounds::REDUCTION.1))]
    pub reduction: u32,
}

/// How `[sweep.prune]` prunes.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PruneMethod {
    /// Asynchronous successive halving, the only one.
    #[default]
    Asha,
}

fn one() -> u32 {
    1
}

fn three() -> u32 {
    3
}

/// The keys of `[sweep]` that are settings; every other key is a swept parameter.
const SETTING_KEYS: &[&str] = &["mode", "repeat", "trials", "seed", "prune"];

fn parse_sweep(value: &Spanned<DeValue>, source: &Source) -> Result<Sweep, Diagnostics> {
    let mut diags = Diagnostics::default();
    let DeValue::Table(table) = value.get_ref() else {
        return Err(Diagnostic::new("`sweep` must be a table")
            .at(source, value.span())
            .key("sweep")
            .hint("write `[sweep]` with lines like `\"model.layers\" = [1, 2, 3]`")
            .into());
    };
    let mut settings = DeTable::new();
    let mut axes = Vec::new();
    for (key, v) in table {
        if SETTING_KEYS.contains(&key.get_ref().as_ref()) {
            settings.insert(key.clone(), v.clone());
        } else {
            read_axes(key.get_ref(), v, source, &mut axes, &mut diags);
        }
    }
    let prune = settings.remove("prune");
    let span_of = |key: &str| settings.get(key).map(|v| v.span());
    let decoded = read_settings(&settings, value.span(), source, &mut diags);
    let prune = prune.and_then(|p| read_prune(p, source, &mut diags));
    let Some(s) = decoded else {
        return Err(diags);
    };
    let f = SweepFields {
        mode: s.mode,
        mode_span: span_of("mode").unwrap_or(value.span()),
        repeat: s.repeat,
        trials: s.trials.zip(span_of("trials")),
        axes,
    };
    check_fields(&f, value.span(), source, &mut diags);
    check_size(
        &f.axes,
        f.mode,
        s.trials,
        f.repeat,
        value.span(),
        source,
        &mut diags,
    );
    diags.into_result(Sweep {
        trials: s.trials.unwrap_or(0),
        axes: f.axes,
        mode: f.mode,
        repeat: f.repeat,
        seed: s.seed,
        prune,
    })
}

/// `[sweep]`'s settings (without `prune`) decoded and bound-checked, every problem in `diags`.
fn read_settings(
    table: &DeTable,
    span: Range<usize>,
    source: &Source,
    diags: &mut Diagnostics,
) -> Option<Settings> {
    let at = |m: String, at: Range<usize>| Diagnostic::new(m).at(source, at);
    let value = Spanned::new(span.clone(), DeValue::Table(table.clone()));
    let settings: Settings = match decode_all(value) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors {
                diags.push(decode_problem(e, table, "sweep", span.clone(), &at, ""));
            }
            return None;
        }
    };
    let before = diags.0.len();
    let problem = |key: &str, message: String| {
        Diagnostic::new(message)
            .at(source, table.get(key).map_or(span.clone(), |v| v.span()))
            .key(format!("sweep.{key}"))
    };
    if !in_bounds(settings.repeat, bounds::REPEAT) {
        diags.push(problem(
            "repeat",
            out_of_bounds("repeat", settings.repeat, bounds::REPEAT),
        ));
    }
    if let Some(trials) = settings.trials
        && !in_bounds(trials, bounds::TRIALS)
    {
        diags.push(
            problem("trials", out_of_bounds("trials", trials, bounds::TRIALS))
                .hint("`trials` is how many points random mode draws"),
        );
    }
    (diags.0.len() == before).then_some(settings)
}

/// `[sweep.prune]` decoded and bound-checked into a [`Prune`], every problem in `diags`.
fn read_prune(value: Spanned<DeValue>, source: &Source, diags: &mut Diagnostics) -> Option<Prune> {
    let span = value.span();
    let table = match value.get_ref() {
        DeValue::Table(t) => t.clone(),
        _ => DeTable::new(),
    };
    let at = |m: String, at: Range<usize>| Diagnostic::new(m).at(source, at);
    let p: PruneSettings = match decode_all(value) {
        Ok(p) => p,
        Err(errors) => {
            let fallback = "the keys are `method`, `metric`, `min_epochs` and `reduction`";
            for e in &errors {
                diags.push(decode_problem(
                    e,
                    &table,
                    "sweep.prune",
                    span.clone(),
                    &at,
                    fallback,
                ));
            }
            return None;
        }
    };
    let span_of = |key: &str| table.get(key).map_or(span.clone(), |v| v.span());
    let before = diags.0.len();
    if !in_bounds(p.min_epochs, bounds::MIN_EPOCHS) {
        diags.push(
            Diagnostic::new(format!(
                "`min_epochs` must be 1 or more, got {}",
                p.min_epochs
            ))
            .at(source, span_of("min_epochs"))
            .key("sweep.prune.min_epochs")
            .hint("`min_epochs` is the first rung: the epochs every trial trains"),
        );
    }
    if !in_bounds(p.reduction, bounds::REDUCTION) {
        diags.push(
            Diagnostic::new(out_of_bounds("reduction", p.reduction, bounds::REDUCTION))
                .at(source, span_of("reduction"))
                .key("sweep.prune.reduction")
                .hint("`reduction` (η) is how many trials reach a rung for each that goes on (3 is usual)"),
        );
    }
    (diags.0.len() == before).then(|| Prune {
        metric: p.metric,
        min_epochs: p.min_epochs,
        reduction: p.reduction,
        span: span.clone(),
        min_epochs_span: span_of("min_epochs"),
        metric_span: span_of("metric"),
    })
}

fn in_bounds(n: u32, (min, max): (u32, u32)) -> bool {
    (min..=max).contains(&n)
}

fn out_of_bounds(key: &str, n: u32, (min, max): (u32, u32)) -> String {
    format!("`{key}` must be between {min} and {max}, got {n}")
}

/// The axes one key of `[sweep]` declares: `"stage.param" = [...]` or a distribution, or (a dotted key written
/// without quotes, which TOML reads as a nested table) `stage.param = [...]`.
fn read_axes(
    key: &str,
    v: &Spanned<DeValue>,
    source: &Source,
    axes: &mut Vec<Axis>,
    diags: &mut Diagnostics,
) {
    match v.get_ref() {
        // `"model.lr" = { uniform = [..] }`: a distribution.
        DeValue::Table(_) if key.contains('.') => axis(key, v, source, axes, diags),
        // `model.layers = [...]` without quotes is a nested table in TOML: accept it too.
        DeValue::Table(params) => {
            for (param, list) in params {
                axis(
                    &format!("{key}.{}", param.get_ref()),
                    list,
                    source,
                    axes,
                    diags,
                );
            }
        }
        _ => axis(key, v, source, axes, diags),
    }
}

/// `[sweep]` as read, before the checks between its keys.
struct SweepFields {
    mode: Mode,
    /// Where `mode` is written (the table when it is not).
    mode_span: Range<usize>,
    repeat: u32,
    trials: Option<(u32, Range<usize>)>,
    axes: Vec<Axis>,
}

/// The checks between `[sweep]`'s keys: it varies something, `trials` and distributions go with random mode only,
/// and zipped lists are equally long.
fn check_fields(f: &SweepFields, span: Range<usize>, source: &Source, diags: &mut Diagnostics) {
    // `repeat` alone is a sweep too: one configuration trained with several seeds, to see their noise.
    if f.axes.is_empty() && (f.repeat == 1 || f.mode != Mode::Grid) {
        diags.push(
            Diagnostic::new("`[sweep]` varies nothing")
                .at(source, span.clone())
                .key("sweep")
                .hint("add lines like `\"model.layers\" = [1, 2, 3]`, or `repeat = 3` to train one configuration with 3 seeds"),
        );
    }
    if f.mode == Mode::Random {
        if f.trials.is_none() {
            diags.push(
                Diagnostic::new("`mode = \"random\"` needs `trials`, the number of points to draw")
                    .at(source, f.mode_span.clone())
                    .key("sweep.trials")
                    .hint("add e.g. `trials = 9` to `[sweep]`"),
            );
        }
    } else {
        if let Some((_, span)) = &f.trials {
            diags.push(
                Diagnostic::new("`trials` is for `mode = \"random\"`")
                    .at(source, span.clone())
                    .key("sweep.trials")
                    .hint("add `mode = \"random\"`, or remove `trials`"),
            );
        }
        for a in &f.axes {
            if !matches!(a.domain, Domain::List(_)) {
                diags.push(
                    Diagnostic::new(format!(
                        "`{}` is a distribution, which only `mode = \"random\"` draws from",
                        a.key
                    ))
                    .at(source, a.span.clone())
                    .key(format!("sweep.\"{}\"", a.key))
                    .hint("add `mode = \"random\"` and `trials = N`, or give a list of values"),
                );
            }
        }
    }
    if f.mode == Mode::Zip
        && let Some(first) = f.axes.first()
    {
        let len = |a: &Axis| match &a.domain {
            Domain::List(v) => v.len(),
            _ => 0,
        };
        for a in &f.axes[1..] {
            if len(a) != len(first) {
                diags.push(
                    Diagnostic::new(format!(
                        "with `mode = \"zip\"` every list needs the same length: `{}` has {} values, `{}` has {}",
                        first.key,
                        len(first),
                        a.key,
                        len(a)
                    ))
                    .at(source, a.span.clone())
                    .key(format!("sweep.\"{}\"", a.key))
                    .hint("give every list as many values, or use `mode = \"grid\"` for every combination"),
                );
            }
        }
    }
}

/// The most points a sweep may have, repeats included: each is at least one training, and every point is planned
/// (and its graph held) before anything runs. Larger spaces are searched by drawing from them (`mode = "random"`).
pub const MAX_POINTS: u64 = 100_000;

/// Refuses a sweep of more than [`MAX_POINTS`] points, counted from its lists before any point is made.
fn check_size(
    axes: &[Axis],
    mode: Mode,
    trials: Option<u32>,
    repeat: u32,
    span: Range<usize>,
    source: &Source,
    diags: &mut Diagnostics,
) {
    let lens = axes.iter().map(|a| match &a.domain {
        Domain::List(v) => v.len() as u64,
        _ => 1,
    });
    let (configurations, how) = match mode {
        Mode::Grid => (
            lens.clone().fold(1u64, u64::saturating_mul),
            lens.map(|n| n.to_string()).collect::<Vec<_>>().join(" × "),
        ),
        Mode::Zip => (lens.max().unwrap_or(0), "one per list value".to_string()),
        Mode::Random => (u64::from(trials.unwrap_or(0)), "trials".to_string()),
    };
    let points = configurations.saturating_mul(u64::from(repeat));
    if points > MAX_POINTS {
        let repeats = if repeat > 1 {
            format!(", each repeated {repeat} times")
        } else {
            String::new()
        };
        diags.push(
            Diagnostic::new(format!(
                "this sweep has {points} points ({configurations} configurations: {how}{repeats}); a sweep may have \
                 at most {MAX_POINTS}"
            ))
            .at(source, span)
            .key("sweep")
            .hint("sweep fewer values, or draw some of them: `mode = \"random\"` with `trials = N`"),
        );
    }
}

/// The bounds of `[sweep]`'s numbers, declared once: `schemars(range)` states them in the schema, the parser checks
/// them.
pub mod bounds {
    /// `repeat`: runs per configuration.
    pub const REPEAT: (u32, u32) = (1, 1000);
    /// `trials`: points random mode draws (at most [`super::MAX_POINTS`]).
    pub const TRIALS: (u32, u32) = (1, super::MAX_POINTS as u32);
    /// `[sweep.prune]`'s `min_epochs`: the first rung (as large as a training's `epochs` can be).
    pub const MIN_EPOCHS: (u32, u32) = (1, u32::MAX);
    /// `[sweep.prune]`'s `reduction` (η).
    pub const REDUCTION: (u32, u32) = (2, 100);
}

fn axis(
    key: &str,
    v: &Spanned<DeValue>,
    source: &Source,
    axes: &mut Vec<Axis>,
    diags: &mut Diagnostics,
) {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
        // `repet = 2`: a misspelt setting more likely than a parameter without its stage.
        let hint = crate::spec::diagnostic::did_you_mean(key, SETTING_KEYS.iter().copied())
            .unwrap_or_else(|| "write e.g. `\"model.layers\" = [1, 2, 3]`".into());
        diags.push(
            Diagnostic::new(format!("`{key}` is not a `stage.parameter` key"))
                .at(source, v.span())
                .key(format!("sweep.\"{key}\""))
                .hint(hint),
        );
        return;
    }
    let written = |items: &[Spanned<DeValue>]| -> Vec<(String, Range<usize>)> {
        items
            .iter()
            .map(|item| (source.text[item.span()].to_string(), item.span()))
            .collect()
    };
    let domain = match v.get_ref() {
        DeValue::Array(items) if !items.is_empty() => Some(Domain::List(written(items))),
        DeValue::Table(t) => distribution(key, t, v.span(), source, diags).map(|d| match d {
            Distribution::Choice(items) => Domain::List(written(items)),
            Distribution::Other(d) => d,
        }),
        _ => {
            diags.push(
                Diagnostic::new(format!(
                    "`{key}` in `[sweep]` must be a non-empty list of values, or a distribution"
                ))
                .at(source, v.span())
                .key(format!("sweep.\"{key}\""))
                .hint(format!(
                    "e.g. `\"{key}\" = [1, 2, 3]`, or with `mode = \"random\"` `{{ uniform = [0.1, 0.5] }}`"
                )),
            );
            None
        }
    };
    if let Some(domain) = domain {
        axes.push(Axis {
            key: key.to_string(),
            domain,
            span: v.span(),
        });
    }
}

enum Distribution<'a, 'b> {
    Choice(&'b [Spanned<DeValue<'a>>]),
    Other(Domain),
}

/// `{ uniform = [a, b] }`, `{ log_uniform = [a, b] }`, `{ int = [lo, hi] }` or `{ choice = [..] }`; `None` (with a
/// problem) for anything else.
fn distribution<'a, 'b>(
    key: &str,
    table: &'b DeTable<'a>,
    span: Range<usize>,
    source: &Source,
    diags: &mut Diagnostics,
) -> Option<Distribution<'a, 'b>> {
    match read_distribution(key, table, span, source) {
        Ok(d) => Some(d),
        Err((message, at)) => {
            diags.push(
                Diagnostic::new(message)
                    .at(source, at)
                    .key(format!("sweep.\"{key}\""))
                    .hint("a distribution is one of `{ uniform = [a, b] }`, `{ log_uniform = [a, b] }`, `{ int = [lo, hi] }`, `{ choice = [x, y, …] }`"),
            );
            None
        }
    }
}

/// The distribution `table` declares, or what is wrong with it and where.
fn read_distribution<'a, 'b>(
    key: &str,
    table: &'b DeTable<'a>,
    span: Range<usize>,
    source: &Source,
) -> Result<Distribution<'a, 'b>, (String, Range<usize>)> {
    let mut entries = table.iter();
    let (Some((kind, value)), None) = (entries.next(), entries.next()) else {
        return Err((format!("`{key}` must be one distribution"), span));
    };
    let name = kind.get_ref().as_ref();
    let items = match value.get_ref() {
        DeValue::Array(items) if !items.is_empty() => &items[..],
        _ => return Err((format!("`{name}` needs a non-empty list"), value.span())),
    };
    let bounds = || bounds(items, name, source).map_err(|m| (m, value.span()));
    match name {
        "choice" => Ok(Distribution::Choice(items)),
        "uniform" => bounds().map(|(a, b)| Distribution::Other(Domain::Uniform(a, b))),
        "log_uniform" => match bounds()? {
            (a, b) if a > 0.0 => Ok(Distribution::Other(Domain::LogUniform(a, b))),
            _ => Err((
                "`log_uniform` needs [low, high] above 0".into(),
                value.span(),
            )),
        },
        "int" => {
            let (a, b) = bounds()?;
            let whole = items
                .iter()
                .all(|i| matches!(i.get_ref(), DeValue::Integer(_)));
            if a.fract() != 0.0 || b.fract() != 0.0 || !whole {
                return Err((
                    "`int` needs two whole numbers, [lo, hi]".into(),
                    value.span(),
                ));
            }
            Ok(Distribution::Other(Domain::Int(a as i64, b as i64)))
        }
        other => Err((format!("unknown distribution `{other}`"), kind.span())),
    }
}

/// `[low, high]` of distribution `kind`, two finite numbers with low ≤ high.
fn bounds(items: &[Spanned<DeValue>], kind: &str, source: &Source) -> Result<(f64, f64), String> {
    let number = |item: &Spanned<DeValue>| -> Option<f64> {
        match item.get_ref() {
            DeValue::Integer(_) | DeValue::Float(_) => source.text[item.span()]
                .replace('_', "")
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite()),
            _ => None,
        }
    };
    let [a, b] = items else {
        return Err(format!("`{kind}` needs exactly two numbers, [low, high]"));
    };
    match (number(a), number(b)) {
        (Some(a), Some(b)) if a <= b => Ok((a, b)),
        (Some(_), Some(_)) => Err(format!("`{kind}` needs [low, high] with low ≤ high")),
        _ => Err(format!("`{kind}` needs two numbers")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_labels_keep_the_values_as_written() {
        let values = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            display_label(&values(&[
                ("keys.key", "\"\""),
                ("keys.transpose", "[-5, 6]"),
                ("model.epochs", "10")
            ])),
            "key=\"\" transpose=[-5,6] epochs=10"
        );
        assert_eq!(
            display_label(&values(&[
                ("a.seed", "1"),
                ("b.seed", "2"),
                ("t.scheme", "\"timed\"")
            ])),
            "a.seed=1 b.seed=2 scheme=timed"
        );
    }

    #[test]
    fn labels_are_single_safe_folder_names() {
        let values = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            label(&values(&[("model.layers", "2"), ("windows.seq_len", "64")])),
            "layers=2,seq_len=64"
        );
        let climbing = label(&values(&[("source.path", "\"../../etc\"")]));
        assert_eq!(climbing, "path=.._.._etc");
        assert!(!climbing.contains('/') && !climbing.starts_with('.'));
        assert_eq!(
            label(&values(&[("a.seed", "1"), ("b.seed", "2")])),
            "a.seed=1,b.seed=2"
        );
    }
}
