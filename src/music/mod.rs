//! What songs are, apart from any model: the token vocabulary, reading MIDI from the wild, writing MIDI, General
//! MIDI names, a piece's key, music metrics, and SVG charts (piano rolls and loss curves).

pub(crate) mod gm;
pub mod ingest;
pub(crate) mod key;
pub(crate) mod metrics;
pub(crate) mod midi;
pub(crate) mod plot;
pub mod tokens;
