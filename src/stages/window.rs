//! `window`: cuts training examples (`seq_len` ids → the next id, stride 1, never across files) and holds out whole
//! files for validation.
//!
//! The output keeps the id sequences and per-file offsets, not the windows themselves: O(tokens) memory.

use std::collections::BTreeMap;

use anyhow::bail;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::kind::StageKind;
use super::stage::{ParamProblem, Params, RunContext, Stage, StageOutput, csv_bytes, params_of};
use crate::artifact::ReportFile;
use crate::artifact::{Artifact, IdFile, Split, WindowFile, WindowSet};

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Ids per input window.
    #[serde(default = "default_seq_len")]
    #[schemars(range(min = *SEQ_LEN.start(), max = *SEQ_LEN.end()))]
    pub seq_len: u32,
    /// Share of files held out for validation (0 = train on everything).
    #[serde(default = "default_val_fraction")]
    #[schemars(range(min = 0.0), extend("exclusiveMaximum" = 1.0))]
    pub val_fraction: f64,
    /// Drives which files are held out.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_seq_len() -> u32 {
    100
}
fn default_val_fraction() -> f64 {
    0.1
}
fn default_seed() -> u64 {
    42
}

/// `seq_len`'s bounds, declared once for the schema and the check.
const SEQ_LEN: std::ops::RangeInclusive<u32> = 1..=1_000_000;

impl Params for Window {
    fn check(&self, _: &super::stage::CheckContext) -> Vec<ParamProblem> {
        let mut problems = Vec::new();
        if !SEQ_LEN.contains(&self.seq_len) {
            problems.push(
                ParamProblem::new(
                    "seq_len",
                    format!(
                        "must be between {} and {}, got {}",
                        SEQ_LEN.start(),
                        SEQ_LEN.end(),
                        self.seq_len
                    ),
                )
                .hint("`seq_len` is the number of tokens the model sees before predicting the next (the paper: 100)"),
            );
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            problems.push(
                ParamProblem::new(
                    "val_fraction",
                    format!("must be at least 0 and below 1, got {}", self.val_fraction),
                )
                .hint("`val_fraction` is the share of files held out for validation; 0 trains on everything"),
            );
        }
        problems
    }
}

/// How many of `files` files are held out: `round(files × fraction)`, at least 1 when the fraction is above 0.
pub fn validation_count(files: usize, fraction: f64) -> usize {
    if fraction <= 0.0 {
        0
    } else {
        ((files as f64 * fraction).round() as usize).max(1)
    }
}

/// Which files (by index) are held out: the first `count` of a seeded shuffle.
pub fn validation_files(files: usize, count: usize, seed: u64) -> Vec<bool> {
    let mut order: Vec<usize> = (0..files).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut held_out = vec![false; files];
    for &i in &order[..count.min(files)] {
        held_out[i] = true;
    }
    held_out
}

#[derive(Serialize)]
struct Row<'a> {
    file: &'a str,
    split: Split,
    tokens: usize,
    windows: usize,
}

impl Stage for Window {
    fn kind(&self) -> StageKind {
        StageKind::Window
    }

    fn params(&self) -> BTreeMap<String, serde_json::Value> {
        params_of(self)
    }

    fn run(&self, ctx: &mut RunContext, inputs: &[&Artifact]) -> anyhow::Result<StageOutput> {
        let vocab = inputs[0].vocab()?;
        let seq_len = self.seq_len as usize;
        // Sources in order of first appearance: without `augment`, the files themselves.
        let mut seen = std::collections::HashSet::new();
        let sources: Vec<&str> = vocab
            .files
            .iter()
            .map(IdFile::source)
            .filter(|s| seen.insert(*s))
            .collect();
        let n = sources.len();
        let val_count = validation_count(n, self.val_fraction);
        if val_count >= n && val_count > 0 {
            bail!(
                "`val_fraction = {}` would hold out all {n} file(s), leaving nothing to train on; \
                 set `val_fraction = 0` or add files",
                self.val_fraction
            );
        }
        // The split is by source file: a held-out file is validated as it is, and none of its transposed copies is
        // trained on (or validated: a copy is the same music).
        let held_out = validation_files(n, val_count, self.seed);
        let held: BTreeMap<&str, bool> = sources.iter().copied().zip(held_out).collect();
        let mut ids = Vec::with_capacity(vocab.files.iter().map(|f| f.ids.len()).sum());
        let mut files = Vec::with_capacity(vocab.files.len());
        let mut copy_windows = 0;
        for file in &vocab.files {
            let split = match (held[file.source()], &file.origin) {
                (true, Some(_)) => continue,
                (true, None) => Split::Validation,
                (false, _) => Split::Train,
            };
            let f = WindowFile {
                path: file.path.clone(),
                tempo: file.tempo,
                offset: ids.len(),
                len: file.ids.len(),
                split,
            };
            if file.origin.is_some() {
                copy_windows += f.window_count(seq_len);
            }
            files.push(f);
            ids.extend_from_slice(&file.ids);
        }
        let set = WindowSet {
            seq_len,
            programs: vocab.programs.clone(),
            scheme: vocab.scheme,
            tokens: vocab.tokens.clone(),
            ids,
            files,
        };
        let (train, val) = (set.count(Split::Train), set.count(Split::Validation));
        if train == 0 {
            bail!(
                "no training windows: a window needs {} tokens but the longest file has {}; \
                 lower `seq_len`",
                seq_len + 1,
                vocab.files.iter().map(|f| f.ids.len()).max().unwrap_or(0)
            );
        }
        if val_count > 0 && val == 0 {
            ctx.warn(format!(
                "the {val_count} validation file(s) are too short for `seq_len = {seq_len}`: no validation windows"
            ));
        }
        let rows = set.files.iter().map(|f| Row {
            file: &f.path,
            split: f.split,
            tokens: f.len,
            windows: f.window_count(seq_len),
        });
        let report = csv_bytes(rows)?;
        Ok(StageOutput {
            summary: serde_json::to_value(WindowSummary {
                seq_len,
                train_windows: train,
                validation_windows: val,
                train_files: n - val_count,
                validation_files: val_count,
                train_windows_from_copies: copy_windows,
            })?,
            files: vec![ReportFile {
                name: "windows.csv".into(),
                bytes: report,
            }],
            artifact: Artifact::Windows(set),
        })
    }
}

/// What a `window` stage reports in the run manifest (as its `windows`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowSummary {
    pub seq_len: usize,
    pub train_windows: usize,
    pub validation_windows: usize,
    pub train_files: usize,
    pub validation_files: usize,
    /// Training windows cut from transposed copies (`augment`); left out when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub train_windows_from_copies: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_count_rounds_and_keeps_at_least_one() {
        assert_eq!(validation_count(31, 0.1), 3);
        assert_eq!(validation_count(4, 0.1), 1);
        assert_eq!(validation_count(10, 0.0), 0);
        assert_eq!(validation_count(10, 0.25), 3);
    }

    #[test]
    fn the_split_depends_only_on_the_seed() {
        let a = validation_files(20, 4, 42);
        assert_eq!(a, validation_files(20, 4, 42));
        assert_eq!(a.iter().filter(|&&v| v).count(), 4);
        assert_ne!(a, validation_files(20, 4, 43));
    }
}
