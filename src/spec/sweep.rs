//! Sweeps: an experiment file's `[sweep]` table turned into points, each a checked [`Experiment`] of its own.
//!
//! ```toml
//! [sweep]
//! "model.layers" = [1, 2, 3]
//! "windows.seq_len" = [32, 64]
//! mode = "grid"   # every combination (default) | "zip": lists side by side
//! repeat = 1      # each point N times, the seed of every `train` stage + 0, 1, …
//! ```
//!
//! A point is the experiment with its values applied as overrides whose spans point into the `[sweep]` table, so a
//! bad value is reported where it is written.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::spec::diagnostic::{Diagnostic, Diagnostics, Source};
use crate::spec::experiment::{Experiment, Override};
use crate::stages::StageKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Grid,
    Zip,
}

/// One swept parameter and its values (as TOML text, with their spans in the file).
#[derive(Debug, Clone)]
pub struct Axis {
    /// `model.layers`.
    pub key: String,
    pub values: Vec<(String, Range<usize>)>,
}

#[derive(Debug, Clone)]
pub struct Sweep {
    pub axes: Vec<Axis>,
    pub mode: Mode,
    pub repeat: u32,
}

/// One variant of the experiment.
#[derive(Debug)]
pub struct Point {
    /// `layers=2,seq_len=64`: the varied values, also the name of its report folder. Empty without a sweep.
    pub label: String,
    /// The varied parameters and their values, for summaries.
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
    pub fn from_text(path: &Path, text: &str, overrides: &[Override]) -> Result<Self, Diagnostics> {
        let source = Source::new(path.display().to_string(), text);
        let sweep = match DeTable::parse(text) {
            Ok(root) => match root.get_ref().get("sweep") {
                Some(value) => Some(parse_sweep(value, &source)?),
                None => None,
            },
            // The single-experiment path reports syntax errors with their location.
            Err(_) => None,
        };
        let Some(sweep) = sweep else {
            let experiment = Experiment::from_text(path, text, overrides)?;
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
                        .at(&source, axis.values[0].1.clone())
                        .hint("remove it from `[sweep]`, or drop the `--set`"),
                );
            }
        }
        let mut points = Vec::new();
        let mut seen = HashSet::new();
        for combo in combinations(&sweep) {
            let mut all: Vec<Override> = overrides.to_vec();
            all.extend(combo.iter().map(|(axis, i)| {
                let (value, span) = &sweep.axes[*axis].values[*i];
                Override {
                    key: sweep.axes[*axis].key.clone(),
                    value: value.clone(),
                    origin: Some(span.clone()),
                }
            }));
            let values: Vec<(String, String)> = combo
                .iter()
                .map(|(axis, i)| {
                    (
                        sweep.axes[*axis].key.clone(),
                        sweep.axes[*axis].values[*i].0.clone(),
                    )
                })
                .collect();
            let experiment = match Experiment::from_text(path, text, &all) {
                Ok(e) => e,
                Err(d) => {
                    // The same problem appears in every point: report it once.
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
                    label: label(&values),
                    values,
                    experiment,
                });
                continue;
            }
            // Each repeat moves the seed of every train stage on by one.
            let seeds: Vec<(String, u64)> = experiment
                .graph
                .stages
                .iter()
                .filter(|s| s.kind() == StageKind::Train)
                .map(|s| {
                    let seed = s
                        .stage()
                        .params()
                        .get("seed")
                        .and_then(|v| v.as_u64())
                        .unwrap_or(0);
                    (format!("{}.seed", s.name), seed)
                })
                .collect();
            for r in 0..u64::from(sweep.repeat) {
                let mut vals = values.clone();
                let mut with_seed = all.clone();
                for (key, seed) in &seeds {
                    let value = (seed + r).to_string();
                    vals.push((key.clone(), value.clone()));
                    with_seed.push(Override {
                        key: key.clone(),
                        value,
                        origin: None,
                    });
                }
                points.push(Point {
                    label: label(&vals),
                    values: vals,
                    experiment: Experiment::from_text(path, text, &with_seed)?,
                });
            }
        }
        if sweep.repeat > 1
            && points.first().is_some_and(|p| {
                !p.experiment
                    .graph
                    .stages
                    .iter()
                    .any(|s| s.kind() == StageKind::Train)
            })
        {
            diags.push(
                Diagnostic::new(
                    "`repeat` varies the seed of `train` stages, but the experiment has none",
                )
                .hint("remove `repeat`, or add a `train` stage"),
            );
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
    for point in points {
        let mut label = point.label.clone();
        let mut n = 1;
        while !taken.insert(label.clone()) {
            n += 1;
            label = format!("{}~{n}", point.label);
        }
        point.label = label;
    }
}

/// The points as lists of (axis, value index).
fn combinations(sweep: &Sweep) -> Vec<Vec<(usize, usize)>> {
    match sweep.mode {
        Mode::Zip => {
            let n = sweep.axes.first().map_or(0, |a| a.values.len());
            (0..n)
                .map(|i| (0..sweep.axes.len()).map(|a| (a, i)).collect())
                .collect()
        }
        Mode::Grid => {
            let mut out: Vec<Vec<(usize, usize)>> = vec![Vec::new()];
            for (a, axis) in sweep.axes.iter().enumerate() {
                out = out
                    .into_iter()
                    .flat_map(|prefix| {
                        (0..axis.values.len()).map(move |i| {
                            let mut p = prefix.clone();
                            p.push((a, i));
                            p
                        })
                    })
                    .collect();
            }
            out
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
    let mut mode = Mode::Grid;
    let mut repeat = 1;
    let mut axes = Vec::new();
    for (key, v) in table {
        match (key.get_ref().as_ref(), v.get_ref()) {
            ("mode", DeValue::String(s)) => match s.as_ref() {
                "grid" => mode = Mode::Grid,
                "zip" => mode = Mode::Zip,
                other => diags.push(
                    Diagnostic::new(format!("unknown sweep mode `{other}`"))
                        .at(source, v.span())
                        .key("sweep.mode")
                        .hint("use \"grid\" (every combination) or \"zip\" (lists side by side)"),
                ),
            },
            ("repeat", DeValue::Integer(i)) => match i.as_str().parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) => repeat = n,
                _ => diags.push(
                    Diagnostic::new(format!(
                        "`repeat` must be between 1 and 1000, got {}",
                        i.as_str()
                    ))
                    .at(source, v.span())
                    .key("sweep.repeat"),
                ),
            },
            ("mode" | "repeat", other) => diags.push(
                Diagnostic::new(format!(
                    "`{}` cannot be {}",
                    key.get_ref(),
                    other.type_str()
                ))
                .at(source, v.span())
                .key(format!("sweep.{}", key.get_ref())),
            ),
            // `model.layers = [...]` without quotes is a nested table in TOML: accept it too.
            (stage, DeValue::Table(params)) => {
                for (param, list) in params {
                    axis(
                        &format!("{stage}.{}", param.get_ref()),
                        list,
                        source,
                        &mut axes,
                        &mut diags,
                    );
                }
            }
            (k, _) => axis(k, v, source, &mut axes, &mut diags),
        }
    }
    if axes.is_empty() {
        diags.push(
            Diagnostic::new("`[sweep]` varies nothing")
                .at(source, value.span())
                .key("sweep")
                .hint("add lines like `\"model.layers\" = [1, 2, 3]`"),
        );
    }
    if mode == Mode::Zip
        && let Some(first) = axes.first()
    {
        for a in &axes[1..] {
            if a.values.len() != first.values.len() {
                diags.push(
                    Diagnostic::new(format!(
                        "with `mode = \"zip\"` every list needs the same length: `{}` has {} values, `{}` has {}",
                        first.key,
                        first.values.len(),
                        a.key,
                        a.values.len()
                    ))
                    .at(source, a.values[0].1.start..a.values.last().expect("non-empty").1.end)
                    .key(format!("sweep.\"{}\"", a.key))
                    .hint("give every list as many values, or use `mode = \"grid\"` for every combination"),
                );
            }
        }
    }
    diags.into_result(Sweep { axes, mode, repeat })
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
    match v.get_ref() {
        DeValue::Array(items) if !items.is_empty() => axes.push(Axis {
            key: key.to_string(),
            values: items
                .iter()
                .map(|item| (source.text[item.span()].to_string(), item.span()))
                .collect(),
        }),
        _ => diags.push(
            Diagnostic::new(format!(
                "`{key}` in `[sweep]` must be a non-empty list of values"
            ))
            .at(source, v.span())
            .key(format!("sweep.\"{key}\""))
            .hint(format!("e.g. `\"{key}\" = [1, 2, 3]`")),
        ),
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
