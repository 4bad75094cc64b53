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
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::spec::diagnostic::{Diagnostic, Diagnostics, Source};
use crate::spec::experiment::{Experiment, Override, ParsedFile, TrainEdit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Grid,
    Zip,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    ValLoss,
    ValLossPerOnset,
    ValAccuracy,
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
            let value =
                crate::paths::replace_unsafe(value.trim_matches('"').trim_matches('\''), "._-+");
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join(",")
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

fn parse_sweep(value: &Spanned<DeValue>, source: &Source) -> Result<Sweep, Diagnostics> {
    let mut diags = Diagnostics::default();
    let DeValue::Table(table) = value.get_ref() else {
        return Err(Diagnostic::new("`sweep` must be a table")
            .at(source, value.span())
            .key("sweep")
            .hint("write `[sweep]` with lines like `\"model.layers\" = [1, 2, 3]`")
            .into());
    };
    let mut f = SweepFields {
        mode: Mode::Grid,
        mode_span: value.span(),
        repeat: 1,
        trials: None,
        seed: 0,
        prune: None,
        axes: Vec::new(),
    };
    for (key, v) in table {
        f.read(key.get_ref(), v, source, &mut diags);
    }
    check_fields(&f, value.span(), source, &mut diags);
    check_size(
        &f.axes,
        f.mode,
        f.trials.as_ref().map(|t| t.0),
        f.repeat,
        value.span(),
        source,
        &mut diags,
    );
    diags.into_result(Sweep {
        trials: f.trials.map_or(0, |t| t.0),
        axes: f.axes,
        mode: f.mode,
        repeat: f.repeat,
        seed: f.seed,
        prune: f.prune,
    })
}

/// `[sweep]` as read, key by key, before the checks between its keys.
struct SweepFields {
    mode: Mode,
    /// Where `mode` is written (the table when it is not).
    mode_span: Range<usize>,
    repeat: u32,
    trials: Option<(u32, Range<usize>)>,
    seed: u64,
    prune: Option<Prune>,
    axes: Vec<Axis>,
}

impl SweepFields {
    /// Reads one key of `[sweep]`: a setting, or an axis (`"stage.param" = [...]` or a distribution).
    fn read(&mut self, key: &str, v: &Spanned<DeValue>, source: &Source, diags: &mut Diagnostics) {
        match (key, v.get_ref()) {
            ("mode", DeValue::String(s)) => {
                self.mode_span = v.span();
                match mode_named(s) {
                    Some(mode) => self.mode = mode,
                    None => diags.push(
                        Diagnostic::new(format!("unknown sweep mode `{s}`"))
                            .at(source, v.span())
                            .key("sweep.mode")
                            .hint(MODES_HINT),
                    ),
                }
            }
            ("repeat", DeValue::Integer(i)) => match i.as_str().parse::<u32>() {
                Ok(n) if bounds::REPEAT.contains(&n) => self.repeat = n,
                _ => diags.push(
                    Diagnostic::new(format!(
                        "`repeat` must be between {} and {}, got {}",
                        bounds::REPEAT.start(),
                        bounds::REPEAT.end(),
                        i.as_str()
                    ))
                    .at(source, v.span())
                    .key("sweep.repeat"),
                ),
            },
            ("trials", DeValue::Integer(_)) => match whole(v, source) {
                Some(n) if bounds::TRIALS.contains(&n) => self.trials = Some((n as u32, v.span())),
                _ => diags.push(
                    Diagnostic::new(format!(
                        "`trials` must be between {} and {}, got {}",
                        bounds::TRIALS.start(),
                        bounds::TRIALS.end(),
                        &source.text[v.span()]
                    ))
                    .at(source, v.span())
                    .key("sweep.trials")
                    .hint("`trials` is how many points random mode draws"),
                ),
            },
            ("seed", DeValue::Integer(_)) => match whole(v, source) {
                Some(n) if n >= bounds::SEED_MIN => self.seed = n as u64,
                _ => diags.push(
                    Diagnostic::new(format!(
                        "`seed` must be 0 or more, got {}",
                        &source.text[v.span()]
                    ))
                    .at(source, v.span())
                    .key("sweep.seed"),
                ),
            },
            ("prune", DeValue::Table(t)) => self.prune = parse_prune(t, v.span(), source, diags),
            ("mode" | "repeat" | "trials" | "seed" | "prune", other) => diags.push(
                Diagnostic::new(format!("`{}` cannot be {}", key, other.type_str()))
                    .at(source, v.span())
                    .key(format!("sweep.{key}")),
            ),
            // `"model.lr" = { uniform = [..] }`: a distribution.
            (k, DeValue::Table(_)) if k.contains('.') => axis(k, v, source, &mut self.axes, diags),
            // `model.layers = [...]` without quotes is a nested table in TOML: accept it too.
            (stage, DeValue::Table(params)) => {
                for (param, list) in params {
                    axis(
                        &format!("{stage}.{}", param.get_ref()),
                        list,
                        source,
                        &mut self.axes,
                        diags,
                    );
                }
            }
            (k, _) => axis(k, v, source, &mut self.axes, diags),
        }
    }
}

const MODES_HINT: &str =
    "use \"grid\" (every combination), \"zip\" (lists side by side) or \"random\" (`trials` draws)";

fn mode_named(name: &str) -> Option<Mode> {
    match name {
        "grid" => Some(Mode::Grid),
        "zip" => Some(Mode::Zip),
        "random" => Some(Mode::Random),
        _ => None,
    }
}

/// An integer as written (underscores allowed), or `None` for anything else.
fn whole(v: &Spanned<DeValue>, source: &Source) -> Option<i64> {
    match v.get_ref() {
        DeValue::Integer(_) => source.text[v.span()].replace('_', "").parse().ok(),
        _ => None,
    }
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
pub const MAX_POINTS: u64 = 10_000;

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

/// `[sweep.prune]`, checked as far as it can be without the points.
/// The keys `[sweep.prune]` takes (the parser's and the schema's list).
pub const PRUNE_KEYS: &[&str] = &["method", "metric", "min_epochs", "reduction"];

/// The bounds of `[sweep]`'s numbers, declared once: the parser checks them and the schema states them.
pub mod bounds {
    use std::ops::RangeInclusive;

    /// `repeat`: runs per configuration.
    pub const REPEAT: RangeInclusive<u32> = 1..=1000;
    /// `trials`: points random mode draws (at most [`super::MAX_POINTS`]).
    pub const TRIALS: RangeInclusive<i64> = 1..=super::MAX_POINTS as i64;
    /// `seed`: the draws' seed.
    pub const SEED_MIN: i64 = 0;
    /// `[sweep.prune]`'s `min_epochs`: the first rung (as large as a training's `epochs` can be).
    pub const MIN_EPOCHS: RangeInclusive<u32> = 1..=u32::MAX;
    /// `[sweep.prune]`'s `reduction` (η).
    pub const REDUCTION: RangeInclusive<u32> = 2..=100;
}

fn parse_prune(
    table: &DeTable,
    span: Range<usize>,
    source: &Source,
    diags: &mut Diagnostics,
) -> Option<Prune> {
    let mut prune = Prune {
        metric: Metric::ValLoss,
        min_epochs: 1,
        reduction: 3,
        span: span.clone(),
        min_epochs_span: span.clone(),
        metric_span: span.clone(),
    };
    let mut ok = true;
    for (key, v) in table {
        let at = |d: Diagnostic| {
            d.at(source, v.span())
                .key(format!("sweep.prune.{}", key.get_ref()))
        };
        let text = &source.text[v.span()];
        let number = || match v.get_ref() {
            DeValue::Integer(_) => text.replace('_', "").parse::<u32>().ok(),
            _ => None,
        };
        match key.get_ref().as_ref() {
            "method" => match v.get_ref() {
                DeValue::String(m) if m.as_ref() == "asha" => {}
                _ => {
                    ok = false;
                    diags.push(at(Diagnostic::new(format!(
                        "unknown pruning method {text}"
                    ))
                    .hint("use `method = \"asha\"` (asynchronous successive halving)")));
                }
            },
            "metric" => match v.get_ref() {
                DeValue::String(m) => match Metric::ALL.iter().find(|x| x.name() == m.as_ref()) {
                    Some(&metric) => {
                        prune.metric = metric;
                        prune.metric_span = v.span();
                    }
                    None => {
                        ok = false;
                        let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
                        diags.push(at(Diagnostic::new(format!(
                            "there is no metric `{m}` to prune on"
                        ))
                        .hint(format!("use one of: {}", names.join(", ")))));
                    }
                },
                other => {
                    ok = false;
                    diags.push(at(Diagnostic::new(format!(
                        "`metric` cannot be {}",
                        other.type_str()
                    ))));
                }
            },
            "min_epochs" => match number() {
                Some(n) if bounds::MIN_EPOCHS.contains(&n) => {
                    prune.min_epochs = n;
                    prune.min_epochs_span = v.span();
                }
                _ => {
                    ok = false;
                    diags.push(at(Diagnostic::new(format!(
                        "`min_epochs` must be 1 or more, got {text}"
                    ))
                    .hint("`min_epochs` is the first rung: the epochs every trial trains")));
                }
            },
            "reduction" => match number() {
                Some(n) if bounds::REDUCTION.contains(&n) => prune.reduction = n,
                _ => {
                    ok = false;
                    diags.push(at(Diagnostic::new(format!("`reduction` must be between 2 and 100, got {text}"))
                        .hint("`reduction` (η) is how many trials reach a rung for each that goes on (3 is usual)")));
                }
            },
            other => {
                ok = false;
                let hint = crate::spec::diagnostic::did_you_mean(other, PRUNE_KEYS.iter().copied())
                    .unwrap_or_else(|| {
                        "the keys are `method`, `metric`, `min_epochs` and `reduction`".into()
                    });
                diags.push(at(Diagnostic::new(format!(
                    "unknown key `{other}` in `[sweep.prune]`"
                ))
                .hint(hint)));
            }
        }
    }
    ok.then_some(prune)
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
        diags.push(
            Diagnostic::new(format!("`{key}` is not a `stage.parameter` key"))
                .at(source, v.span())
                .key(format!("sweep.\"{key}\""))
                .hint("write e.g. `\"model.layers\" = [1, 2, 3]`"),
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
