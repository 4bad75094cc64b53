//! The integration tests, in one crate (one link of the whole candle graph instead of one per file): each module
//! runs the real `pipeline` binary on MIDI files it writes, in temporary project folders. `support` is the harness.
//! Run one area with `cargo test --release --test it <module>::`.
//!
//! They run on `libtest-mimic` rather than the standard harness, so that a test which lacks something from the
//! system (a SoundFont, a Slurm cluster: [`support::REQUIREMENTS`]) ends *ignored* with its reason, and the run
//! closes with the count and a list of what skipped and why, where the standard harness could only call it passed.

#[macro_use]
extern crate it_collect;

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

fn main() -> std::process::ExitCode {
    let args = libtest_mimic::Arguments::from_args();
    let conclusion = libtest_mimic::run(&args, support::trials());
    support::say_skips();
    conclusion.exit_code()
}
