//! `ngram`: the floor every LSTM is measured against — an interpolated modified Kneser–Ney n-gram model
//! ([`crate::nn::ngram`]) fitted on the training files (transposed copies included, as the LSTM sees them) and
//! scored on the validation files at exactly the positions the train stage's `val_loss` scores: the token after each
//! whole window, with no more context than the window.
//!
//! Its summary and `ngram.csv` give the held-out loss of every order 1..=`order`, so a user sees where more context
//! stops helping, in nats per token and in bits per onset and per quarter note ([`super::units`]).

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::kind::StageKind;
use super::stage::{
    CheckContext, ParamProblem, Params, RunContext, Stage, StageOutput, csv_bytes, params_of,
};
use super::units::loss_units;
use crate::artifact::ReportFile;
use crate::artifact::{Artifact, LossUnits, NgramModel, Split, WindowSet};
use crate::nn::ngram::{Counts, MAX_ORDER, Model};

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ngram {
    /// Tokens of context plus one: 5 conditions each token on the 4 before it. Every order from 1 up to it is
    /// scored, so the report shows where more context stops helping.
    #[serde(default = "default_order")]
    #[schemars(range(min = 1, max = MAX_ORDER))]
    pub order: u32,
}

fn default_order() -> u32 {
    5
}

impl Params for Ngram {
    fn check(&self, _: &CheckContext) -> Vec<ParamProblem> {
        if (1..=MAX_ORDER as u32).contains(&self.order) {
            return Vec::new();
        }
        vec![
            ParamProblem::new(
                "order",
                format!("must be between 1 and {MAX_ORDER}, got {}", self.order),
            )
            .hint("`order` is the n of the n-grams: 5 conditions each token on the 4 before it"),
        ]
    }
}

/// The held-out loss of one order's model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrderLoss {
    pub order: usize,
    /// Distinct n-grams of this order in the training files.
    pub ngrams: usize,
    /// Nats per token, at the positions the LSTM's `val_loss` scores.
    pub val_loss: f64,
    pub val_loss_per_onset: Option<f64>,
    pub val_bits_per_onset: Option<f64>,
    /// `None` for tokens that carry no time (the chord scheme).
    pub val_bits_per_quarter: Option<f64>,
    /// The discounts for counts of 1, 2 and 3+ of this order as the model's highest.
    pub discounts: [f64; 3],
}

/// What an `ngram` stage reports in the run manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NgramSummary {
    pub order: usize,
    /// Tokens of the training files (copies included) it was fitted on.
    pub train_tokens: u64,
    /// The validation targets scored.
    pub validation_targets: usize,
    /// The held-out loss of the model of order `order`: the floor (nats per token); `None` without validation.
    pub val_loss: Option<f64>,
    pub val_loss_per_onset: Option<f64>,
    pub val_bits_per_onset: Option<f64>,
    pub val_bits_per_quarter: Option<f64>,
    /// Every order from 1 to `order` (empty without validation).
    pub orders: Vec<OrderLoss>,
    pub fit_seconds: f64,
    pub score_seconds: f64,
}

/// The model of every order's summed negative log-likelihood (nats) over the validation targets, and how many.
pub fn score(model: &Model, windows: &WindowSet) -> (Vec<f64>, usize) {
    let mut nll = vec![0.0; model.order()];
    let mut p = vec![0.0; model.order()];
    let mut targets = 0;
    for start in windows.starts(Split::Validation) {
        let (window, target) = windows.window(start);
        model.probabilities(window, target, &mut p);
        for (sum, p) in nll.iter_mut().zip(&p) {
            *sum -= p.ln();
        }
        targets += 1;
    }
    (nll, targets)
}

/// Fits the counts on `windows`' training files.
pub fn fit(windows: &WindowSet, order: usize) -> Counts {
    let sequences = windows
        .files
        .iter()
        .filter(|f| f.split == Split::Train)
        .map(|f| &windows.ids[f.offset..f.offset + f.len]);
    Counts::fit(sequences, order, windows.tokens.len())
}

fn order_losses(model: &Model, nll: &[f64], targets: usize, units: &LossUnits) -> Vec<OrderLoss> {
    let sizes = model.counts().sizes();
    nll.iter()
        .zip(model.discounts())
        .enumerate()
        .map(|(i, (&sum, discounts))| {
            let loss = sum / targets as f64;
            OrderLoss {
                order: i + 1,
                ngrams: sizes[i],
                val_loss: loss,
                val_loss_per_onset: units.nats_per_onset(loss),
                val_bits_per_onset: units.bits_per_onset(loss),
                val_bits_per_quarter: units.bits_per_quarter(loss),
                discounts,
            }
        })
        .collect()
}

impl Stage for Ngram {
    fn kind(&self) -> StageKind {
        StageKind::Ngram
    }

    fn params(&self) -> BTreeMap<String, serde_json::Value> {
        params_of(self)
    }

    fn run(&self, ctx: &mut RunContext, inputs: &[&Artifact]) -> anyhow::Result<StageOutput> {
        let windows = inputs[0].windows()?;
        let order = self.order as usize;
        let started = Instant::now();
        let counts = fit(windows, order);
        let train_tokens = counts.tokens;
        let model = Model::new(counts);
        let fit_seconds = started.elapsed().as_secs_f64();
        crate::interrupt::check()?;
        let started = Instant::now();
        let (nll, targets) = score(&model, windows);
        let score_seconds = started.elapsed().as_secs_f64();
        let orders = if targets == 0 {
            ctx.warn(
                "no validation windows: the floor has nothing to be scored on; set `val_fraction` above 0 in \
                 the window stage"
                    .into(),
            );
            Vec::new()
        } else {
            order_losses(&model, &nll, targets, &loss_units(windows))
        };
        let top = orders.last();
        let summary = NgramSummary {
            order,
            train_tokens,
            validation_targets: targets,
            val_loss: top.map(|o| o.val_loss),
            val_loss_per_onset: top.and_then(|o| o.val_loss_per_onset),
            val_bits_per_onset: top.and_then(|o| o.val_bits_per_onset),
            val_bits_per_quarter: top.and_then(|o| o.val_bits_per_quarter),
            orders: orders.clone(),
            fit_seconds,
            score_seconds,
        };
        let rows = orders.iter().map(|o| Row {
            order: o.order,
            ngrams: o.ngrams,
            val_loss: o.val_loss,
            val_loss_per_onset: o.val_loss_per_onset,
            val_bits_per_onset: o.val_bits_per_onset,
            val_bits_per_quarter: o.val_bits_per_quarter,
            d1: o.discounts[0],
            d2: o.discounts[1],
            d3_plus: o.discounts[2],
        });
        Ok(StageOutput {
            summary: serde_json::to_value(summary)?,
            files: vec![ReportFile {
                name: "ngram.csv".into(),
                bytes: csv_bytes(rows)?,
            }],
            artifact: Artifact::Ngram(Box::new(NgramModel {
                counts: model.into_counts(),
                windows: windows.clone(),
            })),
        })
    }
}

/// A row of `ngram.csv`.
#[derive(Serialize)]
struct Row {
    order: usize,
    ngrams: usize,
    val_loss: f64,
    val_loss_per_onset: Option<f64>,
    val_bits_per_onset: Option<f64>,
    val_bits_per_quarter: Option<f64>,
    d1: f64,
    d2: f64,
    d3_plus: f64,
}
