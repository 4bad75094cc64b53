//! What songs are, apart from any model: the token vocabulary, reading MIDI from the wild, writing MIDI, General
//! MIDI names, music metrics, and SVG charts (piano rolls and loss curves).

pub mod gm;
pub mod ingest;
pub mod metrics;
pub mod midi;
pub mod plot;
pub mod tokens;
