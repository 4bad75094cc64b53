//! Everything under `reports/`: one folder per run with its manifest, sweep summaries, comparing runs, seed repeats
//! folded, the index page, the blind listening test's page and answers, and which old run folders may go.

pub(crate) mod compare;
pub(crate) mod index;
pub(crate) mod listen;
pub mod manifest;
pub mod mlflow;
pub mod progress;
pub(crate) mod repeats;
pub(crate) mod report;
pub(crate) mod retention;
