//! The Slurm placement: a stage that is not cached becomes a Slurm job running `pipeline exec-stage` on a node; the
//! executor follows the job until its entry appears in the shared cache (or the job fails, or Ctrl-C cancels it).

use std::time::Instant;

use anyhow::{Context, Result};

use crate::exec::events::Event;
use crate::exec::node::{Job, Shared};
use crate::exec::outcome::{Cause, StageError, StageResult, Status};
use crate::exec::placement::Placement;
use crate::exec::request::{SlurmPlacement, Target};
use crate::exec::slurm;
use crate::paths::write_atomic;
use crate::store::Lookup;

impl Placement for SlurmPlacement {
    /// Runs a stage as a Slurm job and follows it to its end; the node stores the result in the shared cache.
    /// Three parts: [`SlurmPlacement::submit`] (or follow a job an earlier run submitted), [`SlurmPlacement::wait`]
    /// and [`collect`].
    fn compute(&self, run: &Shared<'_>, job: Job<'_>, mut result: StageResult) -> StageResult {
        // The node reads the inputs and external files itself, from the shared cache and filesystem.
        let Job {
            id,
            fp,
            reasons,
            inputs,
            ..
        } = job;
        run.emit(Event::Running {
            stage: run.stage(id),
            reasons: &reasons,
        });
        let at = match JobFiles::of(run, id, fp) {
            Ok(at) => at,
            Err(e) => return result.with_error(e),
        };
        let started = Instant::now();
        let (job_id, ours) = match self.submit(run, id, &at, inputs) {
            Ok(Some(submitted)) => submitted,
            // Another run's job stored the entry meanwhile.
            Ok(None) => {
                return match run.cache.peek(&at.key, at.spec.kind().expect()) {
                    Some(record) => run.found(id, fp, record, false, result),
                    None => result.with_error(anyhow::anyhow!(
                        "the entry another run stored has gone; run again"
                    )),
                };
            }
            Err(e) => return result.with_error(e.context("cannot submit the Slurm job")),
        };
        result.slurm_job = Some(job_id.clone());
        let log = match self.remote {
            None => at.dir.join(format!("slurm-{job_id}.log")),
            Some(_) => node_log().with_file_name(format!("pipeline-slurm-{job_id}.log")),
        };
        result.slurm_log = Some(log.clone());
        let end = match self.wait(run, id, &job_id, ours, &at) {
            Ok(end) => end,
            Err(e) if e.downcast_ref::<crate::interrupt::Interrupted>().is_some() => {
                result.status = Status::Interrupted;
                result.error = Some(StageError {
                    message: "interrupted".into(),
                    cause: Cause::Stage,
                });
                return result;
            }
            // The job may still be running: its record stays, so the next run follows it instead of submitting.
            Err(e) => return result.with_error(e),
        };
        let _ = std::fs::remove_file(&at.submitted);
        let ran = Ran {
            job_id: &job_id,
            end,
            log: &log,
            reasons,
            started,
        };
        collect(run, id, fp, &at, ran, result)
    }
}

/// Where one stage's job keeps its files: `cache/v1/jobs/<fingerprint>/`.
struct JobFiles<'a> {
    key: crate::fingerprint::Hash,
    dir: std::path::PathBuf,
    /// `submitted.json`: the job id, so a later run follows a job still queued or running instead of repeating it.
    submitted: std::path::PathBuf,
    target: &'a Target<'a>,
    spec: &'a crate::spec::graph::StageSpec,
}

impl<'a> JobFiles<'a> {
    fn of(run: &'a Shared<'_>, id: usize, fp: &crate::fingerprint::Fingerprint) -> Result<Self> {
        let node = &run.nodes[id];
        let target = &run.targets[node.target];
        let spec = &target.experiment.graph.stages[node.stage];
        let key = fp.hash();
        let dir = run.cache.jobs_dir()?.join(key.hex());
        Ok(Self {
            key,
            submitted: dir.join("submitted.json"),
            dir,
            target,
            spec,
        })
    }
}

/// How a job ended, and what the summary of a failed one needs.
struct Ran<'a> {
    job_id: &'a str,
    end: slurm::JobState,
    log: &'a std::path::Path,
    reasons: Vec<crate::fingerprint::Reason>,
    started: Instant,
}

impl SlurmPlacement {
    /// Submits the job, or finds the one an earlier run submitted that is still queued or running. Returns its id
    /// and whether this run submitted it (and so may cancel it), or `None` when another run's job stored the
    /// entry meanwhile.
    fn submit(
        &self,
        run: &Shared<'_>,
        id: usize,
        at: &JobFiles<'_>,
        inputs: &[crate::store::Record],
    ) -> Result<Option<(String, bool)>> {
        std::fs::create_dir_all(&at.dir)
            .with_context(|| format!("cannot create `{}`", at.dir.display()))?;
        // One submitter at a time reads and writes the record: two runs of one stage follow one job.
        let lock_path = at.dir.join("submit.lock");
        let _submitting = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .and_then(|f| f.lock().map(|()| f))
            .with_context(|| format!("cannot lock `{}`", lock_path.display()))?;
        if let Some(earlier) = std::fs::read(&at.submitted)
            .ok()
            .and_then(|b| serde_json::from_slice::<slurm::Submitted>(&b).ok())
            && !slurm::state(&earlier.job_id)?.finished()
        {
            run.emit(Event::SlurmFollowing {
                stage: run.stage(id),
                job_id: &earlier.job_id,
            });
            return Ok(Some((earlier.job_id, false)));
        }
        // Looked up before the lock was ours: another submitter's job may have finished since.
        if run.nodes[id].forced.is_none()
            && run.cache.peek(&at.key, at.spec.kind().expect()).is_some()
        {
            return Ok(None);
        }
        self.inputs_on_the_remote(run, inputs)?;
        let args = self.sbatch_args(run, id, at)?;
        run.emit(Event::SlurmCommand {
            command: &slurm::shown("sbatch", &args),
        });
        let job_id = slurm::submit(&args)?;
        let submitted = slurm::Submitted {
            job_id: job_id.clone(),
        };
        write_atomic(&at.submitted, &[&serde_json::to_vec(&submitted)?], false)?;
        run.emit(Event::SlurmQueued {
            stage: run.stage(id),
            job_id: &job_id,
        });
        Ok(Some((job_id, true)))
    }

    /// A node without this cache reads the inputs from the remote: they must be there before the job starts
    /// (uploads otherwise go up in the background). One HEAD each when they are.
    fn inputs_on_the_remote(
        &self,
        run: &Shared<'_>,
        inputs: &[crate::store::Record],
    ) -> Result<()> {
        if self.remote.is_none() {
            return Ok(());
        }
        for record in inputs {
            run.cache
                .push_now(record)
                .map_err(|e| anyhow::anyhow!("an input the job needs is not on the remote: {e}"))?;
        }
        if let Some(why) = run.cache.remote().and_then(|r| r.down()) {
            anyhow::bail!(
                "the job would read its inputs from the remote, which cannot be used ({why})"
            );
        }
        Ok(())
    }

    /// Writes the job's description and returns the `sbatch` arguments that run it.
    fn sbatch_args(&self, run: &Shared<'_>, id: usize, at: &JobFiles<'_>) -> Result<Vec<String>> {
        let exp = at.target.experiment;
        let resources = exp.slurm.resources(at.spec.kind());
        let job = slurm::JobSpec {
            experiment: std::path::absolute(&exp.path)?,
            set: self.set.clone(),
            label: at.target.label.clone(),
            edits: exp.edits.clone(),
            stage: at.spec.name.clone(),
            key: at.key.hex(),
            cache_dir: self.cache_dir.clone(),
            report_dir: std::path::absolute(&at.target.report_dir)?,
            auto_device: Some(resources.auto_device().name().to_string()),
            force: run.nodes[id].forced.is_some(),
            remote: self.remote.clone(),
        };
        let job_file = at.dir.join("job.json");
        write_atomic(&job_file, &[&serde_json::to_vec_pretty(&job)?], false)?;
        let (log, job_arg) = match self.remote {
            None => (at.dir.join("slurm-%j.log"), slurm::JobArg::File(&job_file)),
            // The node cannot see the job's folder: the description goes in the batch script, the log on the node.
            Some(_) => (node_log(), slurm::JobArg::Inline(&job)),
        };
        slurm::sbatch_args(
            &resources,
            &at.spec.name,
            &log,
            &std::path::absolute(&exp.base_dir)?,
            &self.exe,
            job_arg,
        )
    }

    /// Follows the job to its end. On Ctrl-C a job this run submitted is cancelled (and its record removed) before
    /// the interruption is returned.
    fn wait(
        &self,
        run: &Shared<'_>,
        id: usize,
        job_id: &str,
        ours: bool,
        at: &JobFiles<'_>,
    ) -> Result<slurm::JobState> {
        let followed = slurm::follow(job_id, |state| {
            if state == "RUNNING" {
                run.emit(Event::SlurmStarted {
                    stage: run.stage(id),
                    job_id,
                });
            }
        });
        if let Err(e) = &followed
            && e.downcast_ref::<crate::interrupt::Interrupted>().is_some()
            && ours
        {
            match slurm::cancel(job_id) {
                Ok(()) => run.emit(Event::SlurmCancelled {
                    stage: run.stage(id),
                    job_id,
                }),
                Err(e) => run.emit(Event::SlurmCancelFailed { job_id, error: &e }),
            }
            let _ = std::fs::remove_file(&at.submitted);
        }
        followed
    }
}

/// The ended job's result: the entry it stored (on a node without the submitter's file system, on the remote, which
/// the lookup finds), or an error with the end of its log.
fn collect(
    run: &Shared<'_>,
    id: usize,
    fp: &crate::fingerprint::Fingerprint,
    at: &JobFiles<'_>,
    ran: Ran<'_>,
    mut result: StageResult,
) -> StageResult {
    match run.cache.lookup(&at.key, at.spec.kind().expect()) {
        Lookup::Hit(record) | Lookup::Fetched(record) => {
            if let Err(e) = run.remember(id, fp) {
                return result.with_error(e);
            }
            result.status = Status::Ran;
            result.record = Some(*record);
            result.reasons = ran.reasons;
            result.seconds = ran.started.elapsed().as_secs_f64();
            result
        }
        _ => {
            let exit = ran.end.exit_code.split(':').next().unwrap_or_default();
            let how = if ran.end.state == "UNKNOWN" {
                "is no longer known to Slurm (and accounting has no record of it)".to_string()
            } else {
                format!(
                    "ended {} (exit code {})",
                    ran.end.state,
                    if exit.is_empty() { "unknown" } else { exit }
                )
            };
            result.error = Some(StageError {
                cause: Cause::Stage,
                message: format!(
                    "Slurm job {} {how} without storing a result; the end of its log `{}`:\n{}",
                    ran.job_id,
                    ran.log.display(),
                    slurm::tail(ran.log, 15)
                ),
            });
            result
        }
    }
}

/// Where a job without the shared cache writes its log: the node's temporary directory (as this machine names it;
/// a node's may differ, and then the log is only on the node).
fn node_log() -> std::path::PathBuf {
    std::env::temp_dir().join("pipeline-slurm-%j.log")
}
