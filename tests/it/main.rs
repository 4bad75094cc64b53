//! The integration tests, in one crate (one link of the whole candle graph instead of one per file): each module
//! runs the real `pipeline` binary on MIDI files it writes, in temporary project folders. `support` is the harness.
//! Run one area with `cargo test --release --test it <module>::`.

mod support;

mod browser;
mod cache;
mod compare;
mod completions;
mod concurrent;
mod escape;
mod full_disk;
mod interrupt;
mod layers;
mod listen;
mod live;
mod malformed;
mod mlflow;
mod ngram;
mod remote;
mod render;
mod repeats;
mod requirements;
mod scale;
mod schema;
mod search;
mod slurm;
mod stages;
mod sweep;
mod train;
mod untrusted_cache;
mod validation;
mod window_memory;
