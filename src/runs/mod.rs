//! Everything under `reports/`: one folder per run with its manifest, sweep summaries, comparing runs, and the
//! index page.

pub mod compare;
pub mod index;
pub mod manifest;
pub mod report;
