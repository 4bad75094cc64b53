//! `pipeline`: declarative, cached experiments that turn MIDI files into training data for sequence models.
//!
//! The flow is experiment file → [`experiment`] (checked schema) → [`graph`] (DAG) → [`executor`] (fingerprint,
//! [`cache`], run [`stages`]) → [`report`]. [`cli`] is the thin layer the binary calls.

pub mod artifact;
pub mod cache;
pub mod cli;
pub mod diagnostic;
pub mod executor;
pub mod exit;
pub mod experiment;
pub mod fingerprint;
pub mod graph;
pub mod midi;
pub mod report;
pub mod stages;
