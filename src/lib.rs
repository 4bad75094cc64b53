//! `pipeline`: declarative, cached experiments that turn MIDI files into trained LSTMs and new music.
//!
//! The crate is in layers; each imports only the ones below it (`tests/it/layers.rs` checks this, and that no two
//! files import each other in a circle). Top to bottom:
//!
//! - [`cli`]: arguments → requests for [`app`]; typed results → text and exit codes.
//! - [`app`]: the use cases (run, status, graph, exec-stage, cache maintenance, bench).
//! - [`runs`]: everything under `reports/`: the run manifest, report folders, compare, the index page.
//! - [`exec`]: plan a sweep's unique stages, schedule them, run each against the store, here or on Slurm.
//! - [`spec`]: the experiment file → a checked study, experiment and stage graph; diagnostics; Slurm resources.
//! - [`stages`]: the stage kinds, one module each.
//! - [`store`]: the content-addressed cache, its locks, history and garbage collection.
//! - [`fingerprint`]: what a stage's key hashes, and why a key changed.
//! - [`music`]: the token vocabulary, MIDI in and out, General MIDI names, music metrics, charts.
//! - [`artifact`]: the typed values stages exchange, and their validation.
//! - [`nn`]: the LSTM model, its fast CPU layer, optimizers, devices.
//! - base: [`problem`], [`paths`], [`interrupt`], [`exit`], [`stats`] (confidence intervals).

pub(crate) mod app;
pub mod artifact;
pub(crate) mod cli;
pub(crate) mod exec;
pub(crate) mod exit;
pub(crate) mod fingerprint;
pub(crate) mod interrupt;
pub(crate) mod music;
pub(crate) mod nn;
pub(crate) mod paths;
pub(crate) mod problem;
pub(crate) mod runs;
pub(crate) mod spec;
pub(crate) mod stages;
pub(crate) mod stats;
pub(crate) mod store;

// The public surface: what the binary, the integration tests and the fuzz targets use (and `artifact`, the values
// stages exchange). Everything else is crate-private, so the compiler reports what nothing uses.
pub use cli::main;
pub use exec::Status;
pub use fingerprint::Hash;
pub use music::ingest::{Ingest, read_song};
pub use music::tokens::{parse_pitch_name, pitches_of, token_for};
pub use runs::manifest::{Manifest, RunStatus, SearchRecord, StageEntry, SweepRecord};
pub use spec::experiment::{Experiment, Override};
pub use spec::sweep::Study;
pub use stages::render;
pub use stages::{run_window, tokenize_bytes};
