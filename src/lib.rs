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
//! - base: [`paths`], [`interrupt`], [`exit`].

pub mod app;
pub mod artifact;
pub mod cli;
pub mod exec;
pub mod exit;
pub mod fingerprint;
pub mod interrupt;
pub mod music;
pub mod nn;
pub mod paths;
pub mod runs;
pub mod spec;
pub mod stages;
pub mod store;
