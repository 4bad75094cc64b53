//! `pipeline`: declarative, cached experiments that turn MIDI files into trained LSTMs and new music.
//!
//! The flow is experiment file → [`experiment`] (checked schema) → [`graph`] (DAG) → [`executor`] (fingerprint,
//! [`cache`], run [`stages`]) → [`report`]. The network is in [`model`], its optimizers in [`optim`], device
//! selection in [`device`]. [`cli`] is the thin layer the binary calls.

pub mod artifact;
pub mod bench;
pub mod cache;
pub mod cli;
pub mod compare;
pub mod device;
pub mod diagnostic;
pub mod executor;
pub mod exit;
pub mod experiment;
pub mod fast_lstm;
pub mod fingerprint;
pub mod graph;
pub mod index;
pub mod ingest;
pub mod interrupt;
pub mod maintenance;
pub mod metrics;
pub mod midi;
pub mod model;
pub mod optim;
pub mod paths;
pub mod plot;
pub mod report;
pub mod slurm;
pub mod stages;
pub mod sweep;
pub mod tokens;
