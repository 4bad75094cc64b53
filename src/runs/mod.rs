//! Everything under `reports/`: one folder per run with its manifest, sweep summaries, comparing runs, and the
//! index page.

pub(crate) mod asha;
pub(crate) mod compare;
pub(crate) mod index;
pub mod manifest;
pub mod mlflow;
pub mod progress;
pub(crate) mod repeats;
pub(crate) mod report;
