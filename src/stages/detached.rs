//! Stages run outside the executor — no cache, no progress shown — for `pipeline bench`, the fuzz targets and
//! tests that measure one stage on its own.

use std::path::Path;

use indicatif::MultiProgress;

use super::stage::{ExternalInputs, RunContext, Stage};
use super::{drop_drums, extract_instrument, midi_source, sample, tokenize, vocab, window};
use crate::artifact::Artifact;

/// Sampling parameters with the defaults but for `length` and `mode` (for benchmarks).
pub fn sample_params(length: u32, mode: sample::SampleMode) -> sample::Sample {
    sample::Sample {
        length,
        temperature: 0.0,
        rhythm_temperature: None,
        top_k: 0,
        top_p: 1.0,
        count: 1,
        step: 0.5,
        seed: 7,
        primer: None,
        mode,
    }
}

/// Runs every MIDI stage of the baseline (read, drop drums, top instrument, tokens, vocabulary, windows of 100) over
/// a corpus directory in memory, without the cache, as `pipeline bench prep` times it. Returns the token count.
pub fn prepare(corpus: &Path) -> anyhow::Result<usize> {
    let source = midi_source::MidiSource {
        path: ".".into(),
        setup: None,
    };
    let external = source.external_inputs(corpus)?;
    detached(corpus, &external, |ctx| {
        let midi = source.run(ctx, &[])?.artifact;
        let tokens = tokens_of(ctx, &midi)?;
        let ids = vocab::Vocab {}.run(ctx, &[&tokens])?.artifact;
        let window = window::Window {
            seq_len: 100,
            val_fraction: 0.1,
            seed: 42,
        };
        let windows = window.run(ctx, &[&ids])?.artifact;
        Ok(windows.windows()?.ids.len())
    })
}

/// Drop drums, keep the most frequent instrument, tokenize.
fn tokens_of(ctx: &mut RunContext, midi: &Artifact) -> anyhow::Result<Artifact> {
    let no_drums = drop_drums::DropDrums {}.run(ctx, &[midi])?.artifact;
    let notes = extract_instrument::ExtractInstrument { top: 1 }
        .run(ctx, &[&no_drums])?
        .artifact;
    let paper = tokenize::Tokenize {
        scheme: tokenize::Scheme::Chord,
        grid: 12,
        max_beats: 4,
    };
    Ok(paper.run(ctx, &[&notes])?.artifact)
}

/// The token stage's output for one MIDI file's bytes, outside the executor (for the fuzz target): ingest, drop
/// drums, keep the most frequent instrument, tokenize. Files that cannot be read are errors, not panics.
pub fn tokenize_bytes(bytes: &[u8]) -> anyhow::Result<Artifact> {
    let song = crate::music::ingest::read_song("fuzz.mid", bytes)?.song;
    let midi = Artifact::Midi(crate::artifact::MidiCorpus { files: vec![song] });
    detached(&std::env::temp_dir(), &ExternalInputs::default(), |ctx| {
        tokens_of(ctx, &midi)
    })
}

/// Runs `f` with a context for stages outside the executor (benchmarks, tests, fuzzing): no cache, no progress
/// shown, report files under `dir`.
fn detached<R>(
    dir: &Path,
    external: &ExternalInputs,
    f: impl FnOnce(&mut RunContext) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    let progress = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
    let mut ctx = RunContext {
        stage: "detached",
        base_dir: dir,
        external,
        progress: &progress,
        warnings: Vec::new(),
        report_dir: dir,
        report_prefix: String::new(),
        resume: None,
        checkpoint: None,
        on_epoch: &|_| {},
        on_batch: &|_| {},
    };
    f(&mut ctx)
}

/// Runs one stage of an experiment outside the executor (no cache, nothing shown) on its inputs' outputs, reading its
/// external inputs (MIDI files) under `base_dir`; whatever report files it writes as it goes land in a temporary
/// folder that is removed afterwards. For `pipeline bench ngram`, which needs an experiment's windows.
pub fn run_detached(
    stage: &dyn Stage,
    base_dir: &Path,
    inputs: &[&Artifact],
) -> anyhow::Result<Artifact> {
    let external = stage.external_inputs(base_dir)?;
    let scratch = tempfile::tempdir()?;
    let progress = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
    let mut ctx = RunContext {
        stage: "detached",
        base_dir,
        external: &external,
        progress: &progress,
        warnings: Vec::new(),
        report_dir: scratch.path(),
        report_prefix: String::new(),
        resume: None,
        checkpoint: None,
        on_epoch: &|_| {},
        on_batch: &|_| {},
    };
    Ok(stage.run(&mut ctx, inputs)?.artifact)
}

/// Runs the window stage on a vocabulary outside the executor; for the memory test and benchmarks.
pub fn run_window(vocab: Artifact, seq_len: u32, val_fraction: f64) -> anyhow::Result<Artifact> {
    let window = window::Window {
        seq_len,
        val_fraction,
        seed: 42,
    };
    detached(&std::env::temp_dir(), &ExternalInputs::default(), |ctx| {
        Ok(window.run(ctx, &[&vocab])?.artifact)
    })
}
