//! The Slurm driver: `sbatch` command lines from the experiment's resources ([`crate::spec::resources`]), the job
//! description a node reads (`pipeline exec-stage`), asking Slurm how a job stands, and the check that the cache
//! directory is shared with the nodes. Slurm's own tools are the interface; nothing here schedules anything.
//!
//! Jobs live under `cache/v1/jobs/<fingerprint>/` ([`Cache::jobs_dir`]): `job.json` (what to run), `submitted.json`
//! (the job id, so a later invocation waits for a job that is still queued or running instead of submitting it
//! twice) and the job's log. The node computes the stage with the same code and the same atomic cache rules as a local run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::spec::resources::Resources;
use crate::store::Cache;

/// What a node needs to compute one stage: `pipeline exec-stage` reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    /// The experiment file, absolute.
    pub experiment: PathBuf,
    /// `--set` overrides as given on the command line.
    pub set: Vec<String>,
    /// The sweep point's label (empty for a plain experiment).
    pub label: String,
    /// What the run changed in the point after reading the file (a pruning rung's epochs), applied on the node to
    /// the same point: typed, never `--set` text.
    #[serde(default)]
    pub edits: Vec<crate::spec::experiment::StageEdit>,
    pub stage: String,
    /// The fingerprint the submitter computed; the node must arrive at the same one.
    pub key: String,
    pub cache_dir: PathBuf,
    /// The run's report folder, where a training writes `loss.csv` as it goes (when the node can reach it).
    pub report_dir: PathBuf,
    /// What `device = "auto"` means for this job, as the submitter decided from its resources.
    #[serde(default)]
    pub auto_device: Option<String>,
    /// `--force`d: recompute even if the node finds the entry cached.
    #[serde(default)]
    pub force: bool,
    /// With a remote: the node does not see `cache_dir`; it computes into a cache of its own with this remote
    /// behind it, and the submitter takes the result from the remote.
    #[serde(default)]
    pub remote: Option<RemoteJob>,
}

/// The remote a job uses (credentials travel in the job's environment, which `sbatch` exports). The job uploads
/// everything it makes and fails if it cannot, whatever the submitter's `--push`: the submitter needs the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteJob {
    pub url: String,
}

/// How a job gets its description: a file in the shared cache, or inline in the batch script (no shared cache).
pub enum JobArg<'a> {
    File(&'a Path),
    Inline(&'a JobSpec),
}

/// A submitted job, remembered in the cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submitted {
    pub job_id: String,
}

/// The `sbatch` arguments (without the program name) that run `exe exec-stage <job.json>` for a stage.
pub fn sbatch_args(
    resources: &Resources,
    stage: &str,
    log: &Path,
    workdir: &Path,
    exe: &Path,
    job: JobArg<'_>,
) -> Result<Vec<String>> {
    let quote = |p: &Path| -> Result<String> {
        let s = p
            .to_str()
            .ok_or_else(|| anyhow!("`{}` is not valid UTF-8", p.display()))?;
        Ok(shlex::try_quote(s)
            .map_err(|e| anyhow!("cannot quote `{s}`: {e}"))?
            .into_owned())
    };
    let mut args = vec![
        "--parsable".to_string(),
        format!("--job-name=pipeline-{stage}"),
        format!("--output={}", log.display()),
        format!("--chdir={}", workdir.display()),
    ];
    args.extend(resources.sbatch_options());
    let job = match job {
        JobArg::File(path) => quote(path)?,
        JobArg::Inline(spec) => {
            let json = serde_json::to_string(spec)?;
            let quoted =
                shlex::try_quote(&json).map_err(|e| anyhow!("cannot quote the job: {e}"))?;
            format!("--inline {quoted}")
        }
    };
    args.push(format!("--wrap=exec {} exec-stage {job}", quote(exe)?));
    Ok(args)
}

/// A command line as a shell would read it, for `-v`.
pub fn shown(program: &str, args: &[String]) -> String {
    std::iter::once(program.to_string())
        .chain(
            args.iter()
                .map(|a| shlex::try_quote(a).map_or_else(|_| a.clone(), |q| q.into_owned())),
        )
        .collect::<Vec<_>>()
        .join(" ")
}

fn slurm_command(program: &str, args: &[String]) -> Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| {
        format!("cannot run `{program}`: is Slurm installed here (and SLURM_CONF set if needed)?")
    })?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            shown(program, args),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The job id in what `sbatch --parsable` printed (`id` or `id;cluster`).
fn parsed_job_id(out: &str) -> Option<String> {
    let id = out.trim().split(';').next()?;
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then(|| id.to_string())
}

/// Submits with `sbatch`; returns the job id.
pub fn submit(args: &[String]) -> Result<String> {
    let out = slurm_command("sbatch", args)?;
    parsed_job_id(&out).ok_or_else(|| anyhow!("sbatch printed `{}`, not a job id", out.trim()))
}

pub fn cancel(job_id: &str) -> Result<()> {
    slurm_command("scancel", &[job_id.to_string()]).map(|_| ())
}

/// A job's state as Slurm reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobState {
    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, … or `UNKNOWN` once Slurm has forgotten the job.
    pub state: String,
    /// `exit:signal`, as `scontrol` prints it.
    pub exit_code: String,
}

impl JobState {
    pub fn finished(&self) -> bool {
        ended(&self.state)
    }
}

/// Whether a job in this Slurm state is over (anything but queued, running, or on its way in or out).
pub fn ended(state: &str) -> bool {
    !matches!(
        state,
        "PENDING"
            | "RUNNING"
            | "CONFIGURING"
            | "COMPLETING"
            | "SUSPENDED"
            | "REQUEUED"
            | "RESIZING"
    )
}

/// The state of one job (`scontrol show job`): `UNKNOWN` when Slurm says it has no such job (it forgets finished
/// jobs after `MinJobAge`) and accounting (`sacct`) has no record of it either. Failing to reach Slurm at all is an
/// error, never taken for an ended job.
pub fn state(job_id: &str) -> Result<JobState> {
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", job_id])
        .output()
        .context("cannot run `scontrol`: is Slurm installed here?")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.trim().is_empty() {
        let err = String::from_utf8_lossy(&out.stderr);
        // Unknown to Slurm, or known but with nothing to say: ask accounting. Anything else is Slurm unreachable.
        let forgotten = unknown_job(&err) || out.status.success();
        if !forgotten {
            bail!("`scontrol show job {job_id}` failed: {}", err.trim());
        }
        return Ok(accounted(job_id).unwrap_or(JobState {
            state: "UNKNOWN".into(),
            exit_code: String::new(),
        }));
    }
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_string()
    };
    Ok(JobState {
        state: field("JobState"),
        exit_code: field("ExitCode"),
    })
}

/// Whether Slurm's message says the job id is not one it knows (as opposed to Slurm being unreachable).
fn unknown_job(stderr: &str) -> bool {
    stderr.contains("Invalid job id")
}

/// What Slurm's accounting remembers of a job it has forgotten; `None` without accounting or record.
fn accounted(job_id: &str) -> Option<JobState> {
    let out = Command::new("sacct")
        .args(["-n", "-X", "-P", "-j", job_id, "-o", "State,ExitCode"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (state, exit) = text.lines().next()?.split_once('|')?;
    // `CANCELLED by 0` → `CANCELLED`.
    let state = state.split_whitespace().next()?.to_string();
    Some(JobState {
        state,
        exit_code: exit.trim().to_string(),
    })
}

/// The states of several jobs in one `squeue` call: id → state, for the jobs Slurm still lists. `Ok(None)` when
/// one of the ids is no longer known (squeue then refuses them all).
pub fn states(job_ids: &[String]) -> Result<Option<BTreeMap<String, String>>> {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-o", "%i|%T", "-j"])
        .arg(job_ids.join(","))
        .output()
        .context("cannot run `squeue`: is Slurm installed here?")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if unknown_job(&err) {
            return Ok(None);
        }
        bail!("`squeue` failed: {}", err.trim());
    }
    Ok(Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('|'))
            .map(|(id, state)| (id.trim().to_string(), state.trim().to_string()))
            .collect(),
    ))
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Checks that a Slurm job can write into `cache_root` and that this machine then sees what it wrote: the cache
/// must be on a filesystem every node shares.
pub fn check_shared(cache: &Cache, resources: &Resources) -> Result<()> {
    let probes = cache.jobs_dir()?.join("probes");
    std::fs::create_dir_all(&probes)?;
    let token = format!(
        "{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_millisecond()
    );
    let marker = probes.join(&token);
    let mut args = vec![
        "--parsable".to_string(),
        "--wait".to_string(),
        "--job-name=pipeline-shared-cache-check".to_string(),
        // Not into the cache: on a node that cannot see it, the job must still run and fail to write the marker.
        "--output=/dev/null".to_string(),
    ];
    let mut probe_resources = resources.clone();
    probe_resources.gres = None;
    args.extend(probe_resources.sbatch_options());
    let target = marker
        .to_str()
        .and_then(|s| shlex::try_quote(s).ok())
        .ok_or_else(|| anyhow!("`{}` cannot be passed to a job", marker.display()))?;
    args.push(format!("--wrap=echo shared > {target}"));
    // Not `slurm_command`: with `--wait`, sbatch exits with the job's status, and on a node that does not share the
    // cache the job is expected to fail; only a missing job id means the check itself could not run.
    let out = Command::new("sbatch")
        .args(&args)
        .output()
        .context("cannot run `sbatch`: is Slurm installed here (and SLURM_CONF set if needed)?")?;
    if parsed_job_id(&String::from_utf8_lossy(&out.stdout)).is_none() {
        bail!(
            "the check that the cache directory is shared with the Slurm nodes could not be submitted: `{}` failed: {}",
            shown("sbatch", &args),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // The marker may take a moment to appear on a network filesystem.
    let started = Instant::now();
    while !marker.is_file() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let ok = marker.is_file();
    let _ = std::fs::remove_file(&marker);
    if !ok {
        bail!(
            "the cache directory `{}` is not shared with the Slurm nodes: a job wrote a file there and this machine \
             does not see it. Put the cache (`--cache-dir` or PIPELINE_CACHE) on a filesystem every node mounts at \
             the same path",
            cache.root().parent().unwrap_or(cache.root()).display()
        );
    }
    Ok(())
}
