//! The Slurm placement: a stage that is not cached becomes a Slurm job running `pipeline exec-stage` on a node; the
//! executor follows the job until its entry appears in the shared cache (or the job fails, or Ctrl-C cancels it).

use std::time::Instant;

use anyhow::{Context, Result};

use super::events::Event;
use super::node::{Job, Shared};
use super::placement::Placement;
use super::slurm;
use super::{Cause, SlurmPlacement, StageError, StageResult, Status};
use crate::paths::write_atomic;
use crate::store::Lookup;

impl Placement for SlurmPlacement {
    /// Runs a stage as a Slurm job and follows it to its end; the node stores the result in the shared cache.
    fn compute(&self, run: &Shared<'_>, job: Job<'_>, mut result: StageResult) -> StageResult {
        // The node reads the inputs and external files itself, from the shared cache and filesystem.
        let Job {
            id,
            fp,
            reasons,
            inputs: job_inputs,
            ..
        } = job;
        let placement = self;
        run.emit(Event::Running {
            stage: run.stage(id),
            reasons: &reasons,
        });
        let node = &run.nodes[id];
        let target = &run.targets[node.target];
        let exp = target.experiment;
        let spec = &exp.graph.stages[node.stage];
        let key = fp.hash();
        let dir = match run.cache.jobs_dir() {
            Ok(jobs) => jobs.join(key.hex()),
            Err(e) => return result.with_error(e),
        };
        let submitted_path = dir.join("submitted.json");
        let started = Instant::now();
        // `None`: another run's job stored the entry meanwhile.
        let submitted = (|| -> Result<Option<(String, bool)>> {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
            // One submitter at a time reads and writes the record: two runs of one stage follow one job.
            let lock_path = dir.join("submit.lock");
            let _submitting = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .and_then(|f| f.lock().map(|()| f))
                .with_context(|| format!("cannot lock `{}`", lock_path.display()))?;
            // A job an earlier invocation submitted that is still queued or running is followed, not repeated.
            if let Some(earlier) = std::fs::read(&submitted_path)
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
            if node.forced.is_none() && run.cache.peek(&key, spec.kind().expect()).is_some() {
                return Ok(None);
            }
            // A node without this cache reads the inputs from the remote: they must be there before the job starts
            // (uploads otherwise go up in the background). One HEAD each when they are.
            if placement.remote.is_some() {
                for record in job_inputs {
                    run.cache.push_now(record).map_err(|e| {
                        anyhow::anyhow!("an input the job needs is not on the remote: {e}")
                    })?;
                }
                if let Some(why) = run.cache.remote().and_then(|r| r.down()) {
                    anyhow::bail!(
                        "the job would read its inputs from the remote, which cannot be used ({why})"
                    );
                }
            }
            let job = slurm::JobSpec {
                experiment: std::path::absolute(&exp.path)?,
                set: placement.set.clone(),
                label: target.label.clone(),
                stage: spec.name.clone(),
                key: key.hex(),
                cache_dir: placement.cache_dir.clone(),
                report_dir: std::path::absolute(&target.report_dir)?,
                auto_device: Some(exp.slurm.resources(spec.kind()).auto_device().to_string()),
                force: node.forced.is_some(),
                remote: placement.remote.clone(),
            };
            let job_file = dir.join("job.json");
            write_atomic(&job_file, &[&serde_json::to_vec_pretty(&job)?], false)?;
            let (log, job_arg) = match placement.remote {
                None => (dir.join("slurm-%j.log"), slurm::JobArg::File(&job_file)),
                // The node cannot see `dir`: the description goes in the batch script, the log on the node.
                Some(_) => (node_log(), slurm::JobArg::Inline(&job)),
            };
            let args = slurm::sbatch_args(
                &exp.slurm.resources(spec.kind()),
                &spec.name,
                &log,
                &std::path::absolute(&exp.base_dir)?,
                &placement.exe,
                job_arg,
            )?;
            run.emit(Event::SlurmCommand {
                command: &slurm::shown("sbatch", &args),
            });
            let job_id = slurm::submit(&args)?;
            let submitted = slurm::Submitted {
                job_id: job_id.clone(),
            };
            write_atomic(&submitted_path, &[&serde_json::to_vec(&submitted)?], false)?;
            run.emit(Event::SlurmQueued {
                stage: run.stage(id),
                job_id: &job_id,
            });
            Ok(Some((job_id, true)))
        })();
        let (job_id, ours) = match submitted {
            Ok(Some(s)) => s,
            Ok(None) => {
                return match run.cache.peek(&key, spec.kind().expect()) {
                    Some(record) => run.found(id, fp, record, false, result),
                    None => result.with_error(anyhow::anyhow!(
                        "the entry another run stored has gone; run again"
                    )),
                };
            }
            Err(e) => return result.with_error(e.context("cannot submit the Slurm job")),
        };
        result.slurm_job = Some(job_id.clone());
        let log = match placement.remote {
            None => dir.join(format!("slurm-{job_id}.log")),
            Some(_) => node_log().with_file_name(format!("pipeline-slurm-{job_id}.log")),
        };
        result.slurm_log = Some(log.clone());
        let followed = slurm::follow(&job_id, |state| {
            if state == "RUNNING" {
                run.emit(Event::SlurmStarted {
                    stage: run.stage(id),
                    job_id: &job_id,
                });
            }
        });
        let end = match followed {
            Ok(end) => end,
            Err(e) if e.downcast_ref::<crate::interrupt::Interrupted>().is_some() => {
                if ours {
                    match slurm::cancel(&job_id) {
                        Ok(()) => run.emit(Event::SlurmCancelled {
                            stage: run.stage(id),
                            job_id: &job_id,
                        }),
                        Err(e) => run.emit(Event::SlurmCancelFailed {
                            job_id: &job_id,
                            error: &e,
                        }),
                    }
                    let _ = std::fs::remove_file(&submitted_path);
                }
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
        let _ = std::fs::remove_file(&submitted_path);
        // On a node without the submitter's file system, the job stored it on the remote, which this finds.
        match run.cache.lookup(&key, spec.kind().expect()) {
            Lookup::Hit(record) | Lookup::Fetched(record) => {
                if let Err(e) = run.remember(id, fp) {
                    return result.with_error(e);
                }
                result.status = Status::Ran;
                result.record = Some(*record);
                result.reasons = reasons;
                result.seconds = started.elapsed().as_secs_f64();
                result
            }
            _ => {
                let exit = end
                    .exit_code
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let how = if end.state == "UNKNOWN" {
                    "is no longer known to Slurm (and accounting has no record of it)".to_string()
                } else {
                    format!(
                        "ended {} (exit code {})",
                        end.state,
                        if exit.is_empty() { "unknown" } else { &exit }
                    )
                };
                result.error = Some(StageError {
                    cause: Cause::Stage,
                    message: format!(
                        "Slurm job {job_id} {how} without storing a result; the end of its log `{}`:\n{}",
                        log.display(),
                        slurm::tail(&log, 15)
                    ),
                });
                result
            }
        }
    }
}

/// Where a job without the shared cache writes its log: the node's temporary directory (as this machine names it;
/// a node's may differ, and then the log is only on the node).
fn node_log() -> std::path::PathBuf {
    std::env::temp_dir().join("pipeline-slurm-%j.log")
}
