//! The stage kinds: what each one takes, makes and means, behind one [`Stage`] interface the executor drives.
//!
//! Adding a kind is: a module with a parameter struct (serde, `deny_unknown_fields`, checked by [`Params::check`])
//! and a [`Stage`] impl, plus its variant in [`StageKind`] (`kind.rs`) and its row in `KINDS` and `StageParams`
//! (`table.rs`: name, version, input and output artifact kinds, report files, constructor). The executor never
//! looks inside a stage; it hashes [`Stage::params`] and the inputs, and caches whatever [`Stage::run`] returns.
//! This file is only the front door: the interface is in `stage.rs`.

mod augment;
mod decode;
mod detached;
mod drop_drums;
mod extract_instrument;
mod grammar;
mod kind;
mod midi_source;
pub mod ngram;
mod real;
pub mod render;
mod sample;
pub mod schedule;
mod stage;
mod table;
pub(crate) mod tokenize;
mod train;
pub mod units;
mod vocab;
mod window;

pub use decode::decode_all;
pub use detached::{prepare, run_detached, run_window, sample_params, tokenize_bytes};
pub use kind::StageKind;
pub use midi_source::{FileNote, SourceSummary};
pub use ngram::NgramSummary;
pub use sample::{Generator, SampleMode, generate};
pub use stage::{
    BatchProgress, CheckContext, EpochProgress, ExternalInputs, ParamError, Resume, RunContext,
    Stage, StageOutput,
};
pub use table::StageParams;
pub use train::{Train, TrainSummary};
pub use window::{Window, WindowSummary};
