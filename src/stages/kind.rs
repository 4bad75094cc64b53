//! The stage kinds the experiment file may name, as a plain enum: what each means is in the table (`table.rs`).

use serde::{Deserialize, Serialize};

/// Every stage kind the experiment file may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    MidiSource,
    DropDrums,
    ExtractInstrument,
    Tokenize,
    Augment,
    Vocab,
    Window,
    Train,
    Sample,
    Render,
    Ngram,
}
