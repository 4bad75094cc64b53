//! Where a stage that is not cached is computed. The scheduler decides what runs and when; a [`Placement`] computes
//! one node and leaves its entry in the cache: [`Local`] in this process, [`super::SlurmPlacement`] as a Slurm job
//! (in `slurm/placement.rs`). Another cluster engine is one more implementation; the scheduler does not change.

use std::sync::Arc;
use std::time::Instant;

use super::events::Event;
use super::node::{Job, Shared};
use super::outcome::{StageResult, Status};
use super::request::Executor;
use crate::artifact::Artifact;
use crate::stages::{RunContext, StageOutput};
use crate::store::EntryMeta;

/// Computes nodes that are not cached.
pub(super) trait Placement: Sync {
    /// Computes `job` of `run`; returns `result` completed: ran (with the stored record), cached (another process
    /// stored it meanwhile), failed or interrupted.
    fn compute(&self, run: &Shared<'_>, job: Job<'_>, result: StageResult) -> StageResult;
}

/// The placement `executor` names.
pub(super) fn of(executor: &Executor) -> &dyn Placement {
    match executor {
        Executor::Local => &Local,
        Executor::Slurm(slurm) => slurm,
    }
}

/// In this process, on one of the scheduler's threads.
pub(super) struct Local;

impl Placement for Local {
    fn compute(&self, run: &Shared<'_>, job: Job<'_>, mut result: StageResult) -> StageResult {
        let Job {
            id,
            fp,
            inputs,
            external,
            reasons,
        } = job;
        let node = &run.nodes[id];
        let key = fp.hash();
        // Another process may be computing the same entry: wait for it, then take its result.
        let _claim = match run.cache.claim(&key, || {
            run.emit(Event::WaitingForOther {
                stage: run.stage(id),
            })
        }) {
            Ok(c) => c,
            // The lock lives in the cache: a read-only or full cache cannot compute anything new.
            Err(e) => return result.with_cache_error(e),
        };
        if node.forced.is_none()
            && let Some(record) = run.cache.peek(&key, spec_of(run, id).kind().expect())
        {
            return run.found(id, fp, record, false, result);
        }
        run.emit(Event::Running {
            stage: run.stage(id),
            reasons: &reasons,
        });
        let loaded = match node
            .inputs
            .iter()
            .zip(inputs)
            .map(|(input, record)| run.load(*input, record))
            .collect::<anyhow::Result<Vec<_>>>()
        {
            Ok(loaded) => loaded,
            Err(e) => return result.with_error(e),
        };
        let checkpoint = run.cache.checkpoint(&key);
        let resume = match node.forced {
            // A forced run starts over: an interrupted run's progress does not count either.
            Some(_) => {
                checkpoint.clear();
                None
            }
            None => run.resume(id, fp, &checkpoint),
        };
        let (output, meta) = match run_stage(run, id, external, resume, &checkpoint, &loaded) {
            Ok(done) => done,
            Err(e) => return result.with_error(e),
        };
        let seconds = meta.seconds;
        let bytes = output.artifact.to_bytes();
        let record = match run
            .cache
            .store(fp, &bytes, &output.files, meta, node.forced.is_some())
        {
            Ok(r) => r,
            Err(e) => {
                return result.with_cache_error(e.context("cannot store the result in the cache"));
            }
        };
        checkpoint.clear();
        if let Err(e) = run.remember(id, fp) {
            return result.with_cache_error(
                e.context("stored the result, but cannot record it in the cache"),
            );
        }
        run.artifacts
            .lock()
            .expect("no panics holding artifacts")
            .insert(id, Arc::new(output.artifact));
        result.status = Status::Ran;
        result.reasons = reasons;
        result.record = Some(record);
        result.seconds = seconds;
        result
    }
}

fn spec_of<'a>(run: &'a Shared<'_>, id: usize) -> &'a crate::spec::graph::StageSpec {
    let node = &run.nodes[id];
    &run.targets[node.target].experiment.graph.stages[node.stage]
}

/// Runs node `id`'s stage on its loaded inputs; returns its output and what its cache entry says of it.
fn run_stage(
    run: &Shared<'_>,
    id: usize,
    external: &crate::stages::ExternalInputs,
    resume: Option<crate::stages::Resume>,
    checkpoint: &crate::store::Checkpoint,
    loaded: &[Arc<Artifact>],
) -> anyhow::Result<(StageOutput, EntryMeta)> {
    let target = &run.targets[run.nodes[id].target];
    let exp = target.experiment;
    let spec = spec_of(run, id);
    let on_epoch = |progress: &crate::stages::EpochProgress| {
        run.emit(Event::Epoch {
            stage: run.stage(id),
            progress,
        })
    };
    let on_batch = |progress: &crate::stages::BatchProgress| {
        run.emit(Event::Batch {
            stage: run.stage(id),
            progress,
        })
    };
    let mut ctx = RunContext {
        stage: &spec.name,
        base_dir: &exp.base_dir,
        external,
        progress: run.reporter.progress(),
        warnings: Vec::new(),
        report_dir: &target.report_dir,
        report_prefix: exp.graph.file_prefix(&spec.name),
        resume,
        checkpoint: Some(checkpoint.clone()),
        on_epoch: &on_epoch,
        on_batch: &on_batch,
    };
    let refs: Vec<&Artifact> = loaded.iter().map(|a| a.as_ref()).collect();
    let started = Instant::now();
    let mut output = spec.stage().run(&mut ctx, &refs)?;
    let seconds = started.elapsed().as_secs_f64();
    // Lookups refuse entries naming other files, so an undeclared one would never be a hit again.
    if let Some(f) = output
        .files
        .iter()
        .find(|f| !spec.kind().report_files().contains(&f.name.as_str()))
    {
        anyhow::bail!(
            "internal error: the stage made `{}`, which `StageKind::report_files` does not list",
            f.name
        );
    }
    let meta = EntryMeta {
        stage: spec.name.clone(),
        summary: std::mem::take(&mut output.summary),
        warnings: std::mem::take(&mut ctx.warnings),
        seconds,
    };
    Ok((output, meta))
}
