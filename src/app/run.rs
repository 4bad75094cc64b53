//! `pipeline run` and `pipeline exec-stage`: load and check the experiment, make the report folders, run the
//! stages through the executor, write the reports and the index, and say how it went ([`RunReport`], whose
//! [`RunStats::exit_code`] is the command's exit code).

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::error::{Error, Result};
use super::{identity, load, open_cache};
use crate::exec::events::{Event, Reporter};
use crate::exec::progress::{Progress, Watcher};
use crate::exec::{self, Cause, Executor, Outcome, SlurmPlacement, Status, Target};
use crate::exit;
use crate::runs::progress::LiveFiles;
use crate::runs::report::{self, Report};
use crate::spec::diagnostic::{Diagnostic, did_you_mean};
use crate::spec::experiment::Experiment;
use crate::spec::sweep::Study;
use crate::store::{Cache, RemoteConfig, RemoteSummary};

const REPORTS_HINT: &str = "pass a writable directory with `--reports-dir` or `PIPELINE_REPORTS`";

/// What to run, and how.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub experiment: PathBuf,
    /// `--set` overrides as given.
    pub set: Vec<String>,
    pub cache_dir: PathBuf,
    /// A remote cache behind the local one.
    pub remote: Option<RemoteConfig>,
    pub reports_dir: PathBuf,
    /// Stages to re-run even when cached (with everything downstream).
    pub force: Vec<String>,
    /// Stages run at once.
    pub jobs: usize,
    /// After a failure, finish everything that does not depend on it.
    pub keep_going: bool,
    /// Each stage as a Slurm job instead of in this process.
    pub slurm: bool,
}

/// How many stages ended how, counting a stage that several sweep points share once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    pub ran: usize,
    pub cached: usize,
    pub failed: usize,
    pub not_run: usize,
    /// Ctrl-C stopped the run.
    pub interrupted: bool,
    /// A failure was the cache's (full, read-only), not a stage's.
    pub cache_failure: bool,
    /// `--remote-required`, and the remote could not be used.
    pub remote_failure: bool,
}

impl RunStats {
    pub fn of(outcomes: &[Outcome], interrupted: bool) -> Self {
        // A stage shared by several points ran (or was found) once: count each of the run's nodes once. A search's
        // pruned trial holds a shared stage it did not want (the n-gram floor) as not run: what it did counts.
        let mut nodes: std::collections::HashMap<usize, Status> = std::collections::HashMap::new();
        for r in outcomes.iter().flat_map(|o| &o.stages) {
            let status = nodes.entry(r.node).or_insert(r.status);
            if *status == Status::NotRun {
                *status = r.status;
            }
        }
        let count = |s: Status| nodes.values().filter(|&&n| n == s).count();
        Self {
            ran: count(Status::Ran),
            cached: count(Status::Cached),
            failed: count(Status::Failed),
            not_run: count(Status::NotRun),
            interrupted,
            remote_failure: false,
            cache_failure: outcomes.iter().any(|o| {
                o.failed()
                    .and_then(|f| f.error.as_ref())
                    .is_some_and(|e| e.cause == Cause::Cache)
            }),
        }
    }

    /// Every stage of the run (stopped ones aside).
    pub fn total(&self) -> usize {
        self.ran + self.cached + self.failed + self.not_run
    }

    /// 0 when everything ran or was cached; 130 after Ctrl-C; 3 when the cache failed; 1 when a stage did.
    pub fn exit_code(&self) -> u8 {
        if self.interrupted {
            exit::INTERRUPTED
        } else if self.remote_failure {
            exit::ENVIRONMENT
        } else if self.failed == 0 {
            exit::SUCCESS
        } else if self.cache_failure {
            exit::ENVIRONMENT
        } else {
            exit::STAGE_FAILED
        }
    }
}

/// How a run went.
#[derive(Debug)]
pub struct RunReport {
    /// The run's report folder (a sweep's holds one folder per point).
    pub dir: PathBuf,
    pub stats: RunStats,
    /// `stage `model` [layers=2] failed: …`, one per failed point.
    pub failures: Vec<String>,
    /// The number of points, for a sweep.
    pub points: Option<usize>,
    /// The stages Ctrl-C stopped while they ran.
    pub stopped: Vec<String>,
    pub cache_dir: PathBuf,
    /// `reports/index.html` could not be rewritten (the run itself is fine).
    pub index_error: Option<anyhow::Error>,
    /// With `[sweep.prune]`: how each trial ended, a line each.
    pub search_lines: Vec<String>,
    /// Things the user should know that did not stop the run (another file's runs under the same name).
    pub warnings: Vec<String>,
    /// What each training came to: its best validation loss, against the floor, the epoch kept and why it stopped.
    pub results: Vec<String>,
    /// `reports/index.html`, where every run is compared.
    pub index: PathBuf,
    /// What the run did with the remote, when one was set.
    pub remote: Option<RemoteSummary>,
}

/// Where the stages run.
fn executor(request: &RunRequest) -> Result<Executor> {
    if !request.slurm {
        return Ok(Executor::Local);
    }
    let fail = |e: anyhow::Error| {
        Error::environment(
            e,
            "the Slurm executor needs `sbatch` and a cache directory the nodes share",
        )
    };
    let exe = std::env::current_exe()
        .context("cannot find this program's path, which the Slurm jobs run")
        .map_err(fail)?;
    let cache_dir = &request.cache_dir;
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("cannot create `{}`", cache_dir.display()))
        .map_err(fail)?;
    let cache_dir = cache_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve `{}`", cache_dir.display()))
        .map_err(fail)?;
    Ok(Executor::Slurm(SlurmPlacement {
        exe,
        set: request.set.clone(),
        cache_dir,
        remote: request
            .remote
            .as_ref()
            .map(|r| crate::exec::slurm::RemoteJob { url: r.url.clone() }),
    }))
}

/// How the executor runs this request's stages.
fn options(request: &RunRequest) -> Result<exec::Options> {
    let executor = executor(request)?;
    let slurm = matches!(executor, Executor::Slurm(_));
    Ok(exec::Options {
        force: request.force.clone(),
        // Under Slurm jobs wait in its queue, not here: follow many at once.
        jobs: if slurm {
            request.jobs.max(64)
        } else {
            request.jobs
        },
        keep_going: request.keep_going,
        executor,
        ..Default::default()
    })
}

/// Runs every point of the experiment; `reporter` hears what happens as it happens.
pub fn run(request: &RunRequest, reporter: &dyn Watcher) -> Result<RunReport> {
    let opts = options(request)?;
    let slurm = matches!(opts.executor, Executor::Slurm(_));
    let mut study = load(&request.experiment, &request.set)?;
    if slurm {
        study.decide_auto(slurm_auto(&study.points[0].experiment)?);
    }
    let first = &study.points[0].experiment;
    check(first, &opts.force)?;
    let cache = open_cache(&request.cache_dir, request.remote.as_ref())?;
    let shared_name = shared_name(&study, &request.reports_dir, &request.experiment);
    let (dir, mut reports) = create_reports(&study, &request.reports_dir)?;
    let reports_error = |e: anyhow::Error| Error::environment(e, REPORTS_HINT);
    let targets: Vec<Target> = study
        .points
        .iter()
        .zip(&reports)
        .map(|(p, r)| Target {
            experiment: &p.experiment,
            identity: identity(&study, &p.label),
            label: p.label.clone(),
            report_dir: r.dir.clone(),
        })
        .collect();
    // Without a remote the nodes compute into this cache directory, so they must see it; with one, each job uses a
    // cache of its own on its node and the remote.
    if slurm && request.remote.is_none() {
        crate::exec::slurm::check_shared(&cache, &first.slurm.defaults).map_err(|e| {
            Error::environment(
                e,
                "pass a `--cache-dir` on a filesystem the Slurm nodes share",
            )
        })?;
    }
    // From here on the run keeps `progress.json` (and the pointer `pipeline ps` follows) up to date.
    let progress =
        crate::exec::progress::Progress::new(&study.name, &reports[0].run_id, planned(&study));
    let tracked = Tracked::start(reporter, &dir, &cache, progress, &request.reports_dir);
    let reporter: &dyn Reporter = &tracked;
    crate::interrupt::install();
    // Each point's manifest as its report wrote it, for the lines the run ends with.
    let mut manifests = Vec::with_capacity(study.points.len());
    let (outcomes, search) = if study.prune().is_some() {
        drop(targets);
        let found = super::search::search(&study, &reports, &cache, &opts, reporter)?;
        let mut outcomes = Vec::with_capacity(found.trials.len());
        for ((point, report), end) in study.points.iter().zip(&mut reports).zip(found.trials) {
            report.trial = end.info;
            let experiment = end.experiment.as_ref().unwrap_or(&point.experiment);
            manifests.push(
                report
                    .finish(experiment, &end.outcome, &cache)
                    .map_err(reports_error)?,
            );
            outcomes.push(end.outcome);
        }
        (outcomes, Some((found.lines, found.record)))
    } else {
        let outcomes = exec::run(&targets, &cache, &opts, reporter);
        for ((point, report), outcome) in study.points.iter().zip(&reports).zip(&outcomes) {
            manifests.push(
                report
                    .finish(&point.experiment, outcome, &cache)
                    .map_err(reports_error)?,
            );
        }
        (outcomes, None)
    };
    let (search_lines, search_record) = search.unzip();
    if study.is_sweep() {
        report::write_sweep_summary(&dir, &study, &reports, &outcomes, search_record)
            .map_err(reports_error)?;
    }
    // Uploads still in flight finish before the run says it is done.
    let remote = cache.finish_remote();
    drop(tracked);
    let index_error = refresh_index(&request.reports_dir, &dir);
    let mut stats = RunStats::of(&outcomes, crate::interrupt::requested());
    if let Some(r) = &remote
        && r.required
        && (r.down.is_some() || !r.failed_uploads.is_empty())
    {
        stats.remote_failure = true;
    }
    Ok(RunReport {
        remote,
        dir,
        stats,
        failures: failures(&study, &outcomes),
        points: study.is_sweep().then_some(study.points.len()),
        stopped: stopped(&outcomes),
        cache_dir: request.cache_dir.clone(),
        index_error,
        search_lines: search_lines.unwrap_or_default(),
        warnings: shared_name.into_iter().collect(),
        results: results(&study, &manifests),
        index: request.reports_dir.join("index.html"),
    })
}

/// Each point's stages in run order and their parameters, for the board.
fn planned(study: &Study) -> Vec<crate::exec::progress::PlannedPoint> {
    study
        .points
        .iter()
        .map(|p| {
            let graph = &p.experiment.graph;
            let order = graph.order().iter().map(|&i| &graph.stages[i]);
            crate::exec::progress::PlannedPoint {
                label: p.label.clone(),
                stages: order.clone().map(|s| s.name.clone()).collect(),
                trainings: order
                    .clone()
                    .filter(|s| s.kind() == crate::stages::StageKind::Train)
                    .map(|s| s.name.clone())
                    .collect(),
                params: order
                    .flat_map(|s| {
                        let params = s.stage().params();
                        params
                            .into_iter()
                            .map(move |(k, v)| (format!("{}.{k}", s.name), v))
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The stages Ctrl-C interrupted, each name once where neighbours repeat it.
fn stopped(outcomes: &[Outcome]) -> Vec<String> {
    let mut stopped: Vec<String> = outcomes
        .iter()
        .flat_map(|o| &o.stages)
        .filter(|r| r.status == Status::Interrupted)
        .map(|r| r.name.clone())
        .collect();
    stopped.dedup();
    stopped
}

/// The reporter a run hears through: keeps the board of the run ([`Progress`]) and its files up to date, then passes
/// every event (and the board) on.
struct Tracked<'a> {
    inner: &'a dyn Watcher,
    state: std::sync::Mutex<(Progress, LiveFiles)>,
    /// Rewrites the reports directory's index as the run goes, off the threads that run stages.
    index: IndexRefresher,
}

/// How often a run rewrites `index.html` at most while it runs (it also does when it starts and ends).
const INDEX_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A thread that rewrites `index.html` (only this run's experiment part, [`crate::runs::index::update`]) when
/// asked, at most every [`INDEX_EVERY`], so a stage's thread never waits for the page; the last request is written
/// before it stops.
struct IndexRefresher {
    wake: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IndexRefresher {
    fn start(reports_dir: &Path, folder: String) -> Self {
        let (wake, asked) = std::sync::mpsc::channel::<()>();
        let reports_dir = reports_dir.to_path_buf();
        let thread = std::thread::spawn(move || {
            use std::sync::mpsc::RecvTimeoutError;
            // Blocks until asked; ends when the run drops its side.
            while asked.recv().is_ok() {
                let _ = crate::runs::index::update(&reports_dir, &folder);
                // Requests during the pause are one more write after it.
                let until = std::time::Instant::now() + INDEX_EVERY;
                let mut pending = false;
                loop {
                    match asked
                        .recv_timeout(until.saturating_duration_since(std::time::Instant::now()))
                    {
                        Ok(()) => pending = true,
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                if pending {
                    let _ = crate::runs::index::update(&reports_dir, &folder);
                }
            }
        });
        Self {
            wake: Some(wake),
            thread: Some(thread),
        }
    }

    fn ask(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.send(());
        }
    }
}

impl Drop for IndexRefresher {
    fn drop(&mut self) {
        // The run writes the page itself when it ends: the thread stops without a last write.
        self.wake.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The top folder of `dir` under `reports_dir`: the experiment's, whose part of the index a run rewrites.
fn experiment_folder(dir: &Path, reports_dir: &Path) -> String {
    dir.strip_prefix(reports_dir)
        .ok()
        .and_then(|rel| rel.components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl<'a> Tracked<'a> {
    fn start(
        inner: &'a dyn Watcher,
        dir: &Path,
        cache: &Cache,
        progress: Progress,
        reports_dir: &Path,
    ) -> Self {
        let files = LiveFiles::start(dir, cache, &progress);
        inner.progress_changed(&progress);
        // The index shows the run as in progress from its start.
        let folder = experiment_folder(dir, reports_dir);
        let _ = crate::runs::index::update(reports_dir, &folder);
        Self {
            inner,
            state: std::sync::Mutex::new((progress, files)),
            index: IndexRefresher::start(reports_dir, folder),
        }
    }
}

impl Reporter for Tracked<'_> {
    fn event(&self, event: Event<'_>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (progress, files) = &mut *state;
        let changed = progress.apply(&event);
        // The index page shows no batches: a batch asks for no rewrite of it.
        let batch = matches!(event, Event::Batch { .. });
        let index_changed = changed && !batch;
        if changed {
            // Epochs and batches can stream in fast; everything else is written at once.
            files.write(progress, !(batch || matches!(event, Event::Epoch { .. })));
        }
        self.inner.event(event);
        if changed {
            self.inner.progress_changed(progress);
        }
        drop(state);
        // The page in a browser reloads itself; what it shows is as fresh as this.
        if index_changed {
            self.index.ask();
        }
    }

    fn progress(&self) -> &indicatif::MultiProgress {
        self.inner.progress()
    }
}

/// On Slurm, what `auto` means: what the training's resources give it, decided before anything is fingerprinted
/// and carried by each job, so the node computes the very fingerprint this machine expects. This build must be able
/// to give the training the GPU its resources ask for.
fn slurm_auto(first: &Experiment) -> Result<crate::nn::device::DeviceKind> {
    let train = first.slurm.resources(crate::stages::StageKind::Train);
    if train.requests_gpu() && !cfg!(feature = "cuda") {
        return Err(Diagnostic::new(
            "the Slurm resources of `train` request a GPU, but this build has no CUDA support",
        )
        .hint(
            "rebuild with `cargo build --release --features cuda`, or drop the GPU from \
             `[executor.slurm.train]`",
        )
        .into());
    }
    Ok(train.auto_device())
}

/// What is checked before anything is fingerprinted: `--force` names stages.
fn check(first: &Experiment, force: &[String]) -> Result<()> {
    for name in force {
        if first.graph.index_of(name).is_none() {
            let names = first.graph.stages.iter().map(|s| s.name.as_str());
            let hint = did_you_mean(name, names.clone()).unwrap_or_else(|| {
                format!("the stages are: {}", names.collect::<Vec<_>>().join(", "))
            });
            return Err(Diagnostic::new(format!(
                "`--force {name}`: there is no stage named `{name}`"
            ))
            .hint(hint)
            .into());
        }
    }
    Ok(())
}

/// Rewrites `index.html` (this run's experiment's part of it) now the run is over; an error only to be told.
fn refresh_index(reports_dir: &Path, dir: &Path) -> Option<anyhow::Error> {
    crate::runs::index::update(reports_dir, &experiment_folder(dir, reports_dir)).err()
}

/// The most trainings whose results a run lists at its end (a sweep's others are in `compare` and the index).
const RESULT_LINES: usize = 12;

/// A line per training of the run, as its report has it: `model: best validation loss 1.894 nats/token at epoch 7
/// of 9, 0.912 below the n-gram floor (2.806); stopped early (2 epochs without a lower loss), kept epoch 7`.
fn results(study: &Study, manifests: &[crate::runs::manifest::Manifest]) -> Vec<String> {
    let mut lines = Vec::new();
    for (point, manifest) in study.points.iter().zip(manifests) {
        for stage in manifest
            .stages
            .iter()
            .filter(|s| s.kind == crate::stages::StageKind::Train)
        {
            let Some(summary) = stage.summary_as::<crate::stages::TrainSummary>() else {
                continue;
            };
            let train = point.experiment.trains().find(|(n, _)| *n == stage.name);
            let at = match point.label.as_str() {
                "" => String::new(),
                label => format!(" [{label}]"),
            };
            lines.push(format!(
                "{}{at}: {}",
                stage.name,
                training_result(&summary, train.map(|(_, t)| t))
            ));
        }
    }
    if lines.len() > RESULT_LINES {
        let more = lines.len() - RESULT_LINES;
        lines.truncate(RESULT_LINES);
        lines.push(format!(
            "… and {more} more (`pipeline compare {}`)",
            study.name
        ));
    }
    lines
}

/// One training's result in words.
fn training_result(
    s: &crate::stages::TrainSummary,
    train: Option<&crate::stages::Train>,
) -> String {
    let mut out = match (s.best_val_loss, s.best_epoch) {
        (Some(loss), Some(epoch)) => format!(
            "best validation loss {loss:.3} nats/token at epoch {epoch} of {}",
            s.epochs
        ),
        _ => format!(
            "training loss {:.3} after {} epochs (no validation windows)",
            s.final_train_loss, s.epochs
        ),
    };
    if let (Some(floor), Some(vs)) = (s.floor_val_loss, s.val_loss_vs_floor) {
        let side = if vs < 0.0 { "below" } else { "above" };
        out += &format!(", {:.3} {side} the n-gram floor ({floor:.3})", vs.abs());
    }
    if s.stopped_early {
        let patience = train.map_or(String::new(), |t| {
            format!(" ({} epochs without a lower loss)", t.patience)
        });
        out += &format!("; stopped early{patience}");
    }
    match (train.is_some_and(|t| t.restore_best), s.best_epoch) {
        (true, Some(best)) => out += &format!(", kept epoch {best}"),
        _ if s.best_epoch.is_some() => out += &format!(", kept the last epoch ({})", s.epochs),
        _ => {}
    }
    out
}

/// A warning when the newest run under this experiment's name came from another file: a copied experiment that
/// kept its `name` joins the original's runs (its chart, `compare`, `bench music`'s default).
fn shared_name(study: &Study, reports_dir: &Path, file: &Path) -> Option<String> {
    let other = report::other_file_under(reports_dir, &study.name, file)?;
    Some(format!(
        "`{}` writes its runs under `{}`, where the last run came from another file, `{other}`: their runs are \
         compared as one experiment's; to keep them apart, give this file a `name` of its own (or drop `name`, \
         and its file name names it)",
        file.display(),
        reports_dir.join(&study.name).display()
    ))
}

/// The run's report folder, and one report per point (the folder itself, or a folder per point inside it).
fn create_reports(study: &Study, reports_dir: &Path) -> Result<(PathBuf, Vec<Report>)> {
    let reports_error = |e: anyhow::Error| Error::environment(e, REPORTS_HINT);
    let first = &study.points[0].experiment;
    let (dir, run_id) = Report::new_run_dir(reports_dir, &study.name).map_err(reports_error)?;
    let reports = if study.is_sweep() {
        study
            .points
            .iter()
            .map(|p| Report::create_in(dir.join(&p.label), run_id.clone(), &p.experiment, Some(p)))
            .collect::<anyhow::Result<_>>()
    } else {
        Report::create_in(dir.clone(), run_id.clone(), first, None).map(|r| vec![r])
    }
    .map_err(reports_error)?;
    Ok((dir, reports))
}

/// `stage `model` [layers=2] failed: …`, one line per point with a failed stage.
fn failures(study: &Study, outcomes: &[Outcome]) -> Vec<String> {
    study
        .points
        .iter()
        .zip(outcomes)
        .filter_map(|(p, o)| {
            o.failed().map(|f| {
                let at = if p.label.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", p.label)
                };
                format!("stage `{}`{at} failed: {}", f.name, f.message())
            })
        })
        .collect()
}

/// What `exec-stage` computed: the stage and its fingerprint, now in the cache.
#[derive(Debug)]
pub struct StageDone {
    pub stage: String,
    pub key: String,
}

/// Where `exec-stage` finds its job: a file in the shared cache, or the description itself (no shared cache).
pub enum JobSource {
    File(PathBuf),
    Inline(String),
}

/// `pipeline exec-stage JOB`: loads the experiment the job names, picks its sweep point, and computes that one stage
/// (its inputs are in the cache) with the same code and atomic store as a local run. Done when the entry the
/// submitter expects is in the cache (and, with a remote, uploaded to it).
///
/// With a remote the node uses a cache directory of its own (`PIPELINE_NODE_CACHE`, else `pipeline-cache` in the
/// node's temporary directory), reads the inputs through the remote and waits for its upload before it ends.
pub fn exec_stage(
    source: &JobSource,
    notify: crate::store::remote::Notify,
    reporter: &dyn Reporter,
) -> Result<StageDone> {
    let (job, job_file) = read_job(source)?;
    let mut study = load(&job.experiment, &job.set)?;
    // Before anything is fingerprinted: `auto` means what the submitter decided, not what this node has.
    if let Some(name) = &job.auto_device {
        let kind = crate::nn::device::DeviceKind::from_name(name).ok_or_else(|| {
            Error::Failed(anyhow::anyhow!(
                "the job's `auto_device` is `{name}`, not one of cpu, cuda, metal"
            ))
        })?;
        study.decide_auto(kind);
    }
    run_job(&job, job_file, &study, notify, reporter).map_err(Error::Failed)
}

/// The job description, from its file or from `--inline`, and the file when there is one.
fn read_job(source: &JobSource) -> Result<(crate::exec::slurm::JobSpec, Option<&Path>)> {
    Ok(match source {
        JobSource::File(path) => (
            std::fs::read(path)
                .with_context(|| format!("cannot read `{}`", path.display()))
                .and_then(|bytes| Ok(serde_json::from_slice(&bytes)?))
                .map_err(Error::Failed)?,
            Some(path),
        ),
        JobSource::Inline(text) => (
            serde_json::from_str(text)
                .context("cannot read the job description given with `--inline`")
                .map_err(Error::Failed)?,
            None,
        ),
    })
}

/// Computes the job's one stage (and what it needs that is not cached) into the job's cache, and checks that the
/// fingerprint is the one the submitter computed.
fn run_job(
    job: &crate::exec::slurm::JobSpec,
    job_file: Option<&Path>,
    study: &Study,
    notify: crate::store::remote::Notify,
    reporter: &dyn Reporter,
) -> anyhow::Result<StageDone> {
    let point = study
        .points
        .iter()
        .find(|p| p.label == job.label)
        .ok_or_else(|| anyhow::anyhow!("the experiment has no point `{}` any more", job.label))?;
    // The point as the submitter ran it: its rung's epochs, its repeat's seed (applying one again changes nothing).
    let mut experiment = point.experiment.clone();
    for e in &job.edits {
        experiment
            .edit_train(&e.stage, e.edit)
            .map_err(|why| anyhow::anyhow!("the job cannot be applied to the experiment: {why}"))?;
    }
    let cache = job_cache(job, notify)?;
    // Live files (`loss.csv`) go to the run's report folder when this node sees it, else beside the job.
    let report_dir = if job.report_dir.is_dir() {
        job.report_dir.clone()
    } else {
        let beside = match job_file {
            Some(file) => file.with_file_name("report"),
            None => cache.root().join("tmp").join(format!("report-{}", job.key)),
        };
        std::fs::create_dir_all(&beside)?;
        beside
    };
    let target = Target {
        experiment: &experiment,
        identity: identity(study, &point.label),
        label: point.label.clone(),
        report_dir,
    };
    let expected = blake3::Hash::from_hex(&job.key)
        .map(crate::fingerprint::Hash)
        .map_err(|e| anyhow::anyhow!("the job's fingerprint `{}` is not one: {e}", job.key))?;
    let opts = exec::Options {
        only: Some(job.stage.clone()),
        expected: Some(expected),
        force: if job.force {
            vec![job.stage.clone()]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    crate::interrupt::install();
    let outcomes = exec::run(std::slice::from_ref(&target), &cache, &opts, reporter);
    if let Some(remote) = cache.finish_remote() {
        if let Some(why) = &remote.down {
            anyhow::bail!("the remote `{}` cannot be used ({why})", remote.url);
        }
        if let Some(first) = remote.failed_uploads.first() {
            anyhow::bail!("{first}");
        }
    }
    let stage = outcomes[0]
        .stages
        .iter()
        .find(|s| s.name == job.stage)
        .ok_or_else(|| anyhow::anyhow!("the experiment has no stage `{}` any more", job.stage))?;
    if let Some(failed) = outcomes[0].failed() {
        anyhow::bail!("stage `{}` failed: {}", failed.name, failed.message());
    }
    let got = stage.fingerprint.map(|f| f.hex()).unwrap_or_default();
    if got != job.key {
        anyhow::bail!(
            "this node computed fingerprint {got} for `{}`, the submitting machine {}: the experiment or its \
             input files differ between them (is everything on a shared filesystem?)",
            job.stage,
            job.key
        );
    }
    Ok(StageDone {
        stage: job.stage.clone(),
        key: got,
    })
}

/// The cache a job computes into: the shared one, or with a remote one of the node's own in front of it.
fn job_cache(
    job: &crate::exec::slurm::JobSpec,
    notify: crate::store::remote::Notify,
) -> anyhow::Result<Cache> {
    let Some(r) = &job.remote else {
        return Cache::open(&job.cache_dir);
    };
    let dir = std::env::var_os("PIPELINE_NODE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("pipeline-cache"));
    // The submitter needs the result on the remote, whatever its kind and size: the job uploads it (and what it
    // makes on the way) whatever `--push` says, and fails if it cannot.
    let config = RemoteConfig {
        url: r.url.clone(),
        push: crate::store::PushPolicy::All,
        max_push_bytes: None,
        required: true,
        notify,
    };
    Ok(Cache::open(&dir)?.with_remote(crate::store::Remote::open(config)?))
}
