//! The command line: parses arguments, calls the library, prints, and maps every outcome to an exit code.
//!
//! Data goes to stdout (the report path, `status`, `graph` and `compare` output), so it can be scripted; progress,
//! warnings and errors go to stderr.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressDrawTarget};

use crate::exec::{self, Placement, SlurmPlacement, Status, Target};
use crate::exit;
use crate::runs::compare::{self, RunSummary};
use crate::runs::report::{self, Report};
use crate::spec::diagnostic::{Diagnostic, Diagnostics, did_you_mean};
use crate::spec::experiment::Override;
use crate::spec::sweep::Study;
use crate::store::Cache;

#[derive(Parser, Debug)]
#[command(
    name = "pipeline",
    version,
    about = "Train sequence models on MIDI: declarative, cached, reported"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug)]
struct ExperimentArgs {
    /// The experiment file (TOML).
    file: PathBuf,
    /// Override a parameter: `--set windows.seq_len=64` (repeatable; applies to every sweep point). Values are
    /// TOML; anything else is a string.
    #[arg(long = "set", value_name = "STAGE.KEY=VALUE")]
    set: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct CacheArgs {
    /// Where results are cached.
    #[arg(long, env = "PIPELINE_CACHE", default_value = "cache")]
    cache_dir: PathBuf,
}

#[derive(clap::Args, Debug)]
struct ReportsArgs {
    /// Where report folders go.
    #[arg(long, env = "PIPELINE_REPORTS", default_value = "reports")]
    reports_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an experiment (every point of a sweep): every stage whose result is not cached, then write reports.
    Run {
        #[command(flatten)]
        experiment: ExperimentArgs,
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        reports: ReportsArgs,
        /// Re-run this stage and everything downstream of it, even if cached (repeatable).
        #[arg(long, value_name = "STAGE")]
        force: Vec<String>,
        /// Also list cached stages and say why each stage runs.
        #[arg(short, long)]
        verbose: bool,
        /// Stages (and sweep points) to run at once; CPU training stages share one pool of threads.
        #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: u16,
        /// When a stage fails, finish everything that does not depend on it, then exit non-zero.
        #[arg(long)]
        keep_going: bool,
        /// Where stages run: in this process, or each as a Slurm job (`[executor.slurm]` sets resources).
        #[arg(long, value_enum, default_value_t = ExecutorKind::Local)]
        executor: ExecutorKind,
    },
    /// Compute one stage from a job description in the cache: what a Slurm job runs on its node.
    #[command(hide = true)]
    ExecStage {
        /// `cache/v1/jobs/<fingerprint>/job.json`.
        job: PathBuf,
    },
    /// Show, per stage, whether it is cached or would run and why, without running anything.
    Status {
        #[command(flatten)]
        experiment: ExperimentArgs,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Print the stage graph (and, for a sweep, its points and which stages they share).
    Graph {
        #[command(flatten)]
        experiment: ExperimentArgs,
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
    },
    /// Measure speed: `bench train`, `bench sample`, `bench prep`.
    #[command(subcommand)]
    Bench(Bench),
    /// Check, measure or prune the cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Compare runs: one row per run with the parameters that differ, losses, time, device and music metrics.
    Compare {
        /// Report folders (a run's, or a sweep's) or experiment names; none: every run in the reports directory.
        targets: Vec<String>,
        #[command(flatten)]
        reports: ReportsArgs,
        /// Sort the rows by this column (e.g. `best_val_loss`).
        #[arg(long, value_name = "COLUMN")]
        sort: Option<String>,
        #[arg(long, value_enum, default_value_t = TableFormat::Table)]
        format: TableFormat,
        /// Also draw the runs' loss curves into this SVG file.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ExecutorKind {
    Local,
    Slurm,
}

#[derive(Subcommand, Debug)]
enum CacheCommand {
    /// Re-hash every entry and list the damaged ones (exit 1 if any).
    Verify {
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Size of the cache per stage kind.
    Du {
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Remove entries that no report of the last N runs of each experiment refers to, damaged entries, and data
    /// crashed runs left behind.
    Gc {
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        reports: ReportsArgs,
        /// Runs per experiment whose results are kept.
        #[arg(long, default_value_t = 5, value_name = "N")]
        keep: usize,
        /// Keep everything younger than this, e.g. `30m`, `2h`, `0s` (a run may have just made it).
        #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = parse_duration)]
        grace: std::time::Duration,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `30m`, `2h 30m`, `90s`, `0s` (jiff's friendly format), for clap.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let d: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("`{text}` is not a duration such as `30m`, `2h` or `0s` ({e})"))?;
    std::time::Duration::try_from(d).map_err(|_| format!("`{text}` is negative"))
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// Training steps (forward, backward, RMSprop) on random data: median ms/step, windows/s, GFLOP/s and the share
    /// of this machine's measured sgemm speed.
    Train {
        #[arg(long, default_value_t = 2, value_parser = within(1, 16))]
        layers: usize,
        #[arg(long, default_value_t = 256, value_parser = within(1, 8192))]
        hidden: usize,
        #[arg(long, default_value_t = 64, value_parser = within(1, 100_000))]
        seq_len: usize,
        #[arg(long, default_value_t = 64, value_parser = within(1, 1 << 20))]
        batch: usize,
        #[arg(long, value_enum, default_value_t = BenchInput::Scalar)]
        input: BenchInput,
        #[arg(long, default_value_t = 150, value_parser = within(1, 1 << 24))]
        vocab: usize,
        /// Width of the dense layer (0 = none).
        #[arg(long, default_value_t = 256, value_parser = within(0, 8192))]
        dense: usize,
        #[arg(long, default_value_t = 64, value_parser = within(1, 8192))]
        embed_dim: usize,
        /// Timed steps, after 2 warm-up steps.
        #[arg(long, default_value_t = 10, value_parser = within(1, 100_000))]
        steps: usize,
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Time candle's plain step-by-step LSTM instead of the fused CPU one.
        #[arg(long)]
        plain: bool,
    },
    /// Generating 500 tokens with the paper's model (3 × 512, windows of 100), stateful and window mode.
    Sample {
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        length: u32,
        #[arg(long, default_value_t = 5, value_parser = within(1, 1000))]
        runs: usize,
    },
    /// All MIDI stages over a corpus, without the cache.
    Prep {
        #[arg(long, default_value = "data/openmsx")]
        corpus: PathBuf,
        #[arg(long, default_value_t = 7, value_parser = within(1, 1000))]
        runs: usize,
    },
}

/// A clap parser for a whole number in `lo..=hi`: anything else is a usage error (exit 2) naming the range.
fn within(lo: usize, hi: usize) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |text| match text.parse::<usize>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("`{text}` must be a whole number from {lo} to {hi}")),
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BenchInput {
    Scalar,
    Embedding,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum GraphFormat {
    Text,
    Dot,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TableFormat {
    Table,
    Csv,
    Json,
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Parses the arguments, runs the command, returns the exit code.
pub fn main() -> ExitCode {
    pin_thread_count();
    let cli = Cli::parse();
    ExitCode::from(dispatch(cli))
}

/// candle works out the core count on every matrix product (reading `/sys`) unless `RAYON_NUM_THREADS` is set, which
/// took several percent of a training step: decide it once, as candle would, for candle and rayon alike.
fn pin_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        // SAFETY: this runs first thing in `main`, before any other thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
}

fn invalid(d: impl Into<Diagnostics>) -> u8 {
    eprint!("{}", d.into().render(color()));
    exit::INVALID_EXPERIMENT
}

fn load(args: &ExperimentArgs) -> Result<Study, u8> {
    Override::parse_all(&args.set)
        .and_then(|o| Study::load(&args.file, &o))
        .map_err(invalid)
}

/// Prints an error and gives the exit code `code`, for `map_err`.
fn exit_with(code: u8) -> impl Fn(anyhow::Error) -> u8 + Copy {
    move |e| {
        eprintln!("error: {e:#}");
        code
    }
}

fn environment(e: anyhow::Error, hint: &str) -> u8 {
    eprintln!("error: {e:#}");
    eprintln!("hint: {hint}");
    exit::ENVIRONMENT
}

fn open_cache(dir: &Path) -> Result<Cache, u8> {
    Cache::open(dir).map_err(|e| {
        environment(
            e,
            "pass a writable directory with `--cache-dir` or `PIPELINE_CACHE`",
        )
    })
}

fn dispatch(cli: Cli) -> u8 {
    let result = match cli.command {
        Command::Run {
            experiment,
            cache,
            reports,
            force,
            verbose,
            jobs,
            keep_going,
            executor,
        } => {
            let mut opts = exec::Options {
                force,
                verbose,
                jobs: usize::from(jobs),
                keep_going,
                ..Default::default()
            };
            if executor == ExecutorKind::Slurm {
                match slurm_placement(&experiment, &cache.cache_dir) {
                    Ok(p) => {
                        opts.placement = Placement::Slurm(p);
                        // Jobs wait in Slurm's queue, not here: follow many at once.
                        opts.jobs = opts.jobs.max(64);
                    }
                    Err(code) => return code,
                }
            }
            run(&experiment, &cache.cache_dir, &reports.reports_dir, opts)
        }
        Command::ExecStage { job } => exec_stage(&job),
        Command::Status { experiment, cache } => status(&experiment, &cache.cache_dir),
        Command::Graph { experiment, format } => graph(&experiment, format),
        Command::Bench(b) => bench(b),
        Command::Cache(c) => cache_command(c),
        Command::Compare {
            targets,
            reports,
            sort,
            format,
            plot,
        } => compare(
            &targets,
            &reports.reports_dir,
            sort.as_deref(),
            format,
            plot.as_deref(),
        ),
    };
    result.unwrap_or_else(|code| code)
}

fn slurm_placement(args: &ExperimentArgs, cache_dir: &Path) -> Result<SlurmPlacement, u8> {
    let fail = |e: anyhow::Error| {
        environment(
            e,
            "the Slurm executor needs `sbatch` and a cache directory the nodes share",
        )
    };
    let exe = std::env::current_exe()
        .context("cannot find this program's path, which the Slurm jobs run")
        .map_err(fail)?;
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("cannot create `{}`", cache_dir.display()))
        .map_err(fail)?;
    let cache_dir = cache_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve `{}`", cache_dir.display()))
        .map_err(fail)?;
    Ok(SlurmPlacement {
        exe,
        set: args.set.clone(),
        cache_dir,
    })
}

/// `pipeline exec-stage JOB`: loads the experiment the job names, picks its sweep point, and computes that one stage
/// (its inputs are in the cache) with the same code and atomic store as a local run. Exit 0 when the entry the
/// submitter expects is in the cache.
fn exec_stage(job_file: &Path) -> Result<u8, u8> {
    let failed = exit_with(exit::STAGE_FAILED);
    let job: crate::exec::slurm::JobSpec = std::fs::read(job_file)
        .with_context(|| format!("cannot read `{}`", job_file.display()))
        .and_then(|bytes| Ok(serde_json::from_slice(&bytes)?))
        .map_err(failed)?;
    // Before anything is fingerprinted: `auto` means what the submitter decided, not what this node has.
    if let Some(kind) = &job.auto_device {
        crate::nn::device::decide_auto(kind);
    }
    let study = load(&ExperimentArgs {
        file: job.experiment.clone(),
        set: job.set.clone(),
    })?;
    (|| -> anyhow::Result<u8> {
        let point = study
            .points
            .iter()
            .find(|p| p.label == job.label)
            .ok_or_else(|| {
                anyhow::anyhow!("the experiment has no point `{}` any more", job.label)
            })?;
        let cache = Cache::open(&job.cache_dir)?;
        // Live files (`loss.csv`) go to the run's report folder when this node sees it, else beside the job.
        let report_dir = if job.report_dir.is_dir() {
            job.report_dir.clone()
        } else {
            let beside = job_file.with_file_name("report");
            std::fs::create_dir_all(&beside)?;
            beside
        };
        let target = Target {
            experiment: &point.experiment,
            identity: identity(&study, &point.label),
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
        let progress = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        crate::interrupt::install();
        let outcomes = exec::run(std::slice::from_ref(&target), &cache, &opts, &progress);
        let stage = outcomes[0]
            .stages
            .iter()
            .find(|s| s.name == job.stage)
            .ok_or_else(|| {
                anyhow::anyhow!("the experiment has no stage `{}` any more", job.stage)
            })?;
        if let Some(failed) = outcomes[0].failed() {
            anyhow::bail!(
                "stage `{}` failed: {}",
                failed.name,
                failed.error.as_deref().unwrap_or("unknown error")
            );
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
        eprintln!("stage `{}` is in the cache ({})", job.stage, &got[..12]);
        Ok(exit::SUCCESS)
    })()
    .map_err(failed)
}

fn cache_command(command: CacheCommand) -> Result<u8, u8> {
    use crate::app::maintenance;
    let failed = exit_with(exit::ENVIRONMENT);
    match command {
        CacheCommand::Verify { cache } => {
            let (report, intact) =
                maintenance::verify(&open_cache(&cache.cache_dir)?).map_err(failed)?;
            print!("{report}");
            Ok(if intact {
                exit::SUCCESS
            } else {
                exit::STAGE_FAILED
            })
        }
        CacheCommand::Du { cache } => {
            print!(
                "{}",
                maintenance::du(&open_cache(&cache.cache_dir)?).map_err(failed)?
            );
            Ok(exit::SUCCESS)
        }
        CacheCommand::Gc {
            cache,
            reports,
            keep,
            grace,
            dry_run,
        } => {
            let cache = open_cache(&cache.cache_dir)?;
            let policy = maintenance::GcPolicy {
                keep,
                grace,
                dry_run,
            };
            print!(
                "{}",
                maintenance::gc(&cache, &reports.reports_dir, policy).map_err(failed)?
            );
            Ok(exit::SUCCESS)
        }
    }
}

/// Identities under which each point's stage history is kept.
fn identity(study: &Study, label: &str) -> String {
    if label.is_empty() {
        study.name.clone()
    } else {
        format!("{}/{label}", study.name)
    }
}

fn run(
    args: &ExperimentArgs,
    cache_dir: &Path,
    reports_dir: &Path,
    opts: exec::Options,
) -> Result<u8, u8> {
    let study = load(args)?;
    let first = &study.points[0].experiment;
    if let Placement::Slurm(_) = &opts.placement {
        // Before anything is fingerprinted: on Slurm, `auto` is what the training's resources give it, decided here
        // and carried by each job, so the node computes the very fingerprint this machine expects.
        let train = first.slurm.resources(crate::stages::StageKind::Train);
        if train.requests_gpu() && !cfg!(feature = "cuda") {
            return Err(invalid(
                Diagnostic::new(
                    "the Slurm resources of `train` request a GPU, but this build has no CUDA support",
                )
                .hint(
                    "rebuild with `cargo build --release --features cuda`, or drop the GPU from \
                     `[executor.slurm.train]`",
                ),
            ));
        }
        crate::nn::device::decide_auto(train.auto_device());
    }
    for name in &opts.force {
        if first.graph.index_of(name).is_none() {
            let names = first.graph.stages.iter().map(|s| s.name.as_str());
            let hint = did_you_mean(name, names.clone()).unwrap_or_else(|| {
                format!("the stages are: {}", names.collect::<Vec<_>>().join(", "))
            });
            return Err(invalid(
                Diagnostic::new(format!(
                    "`--force {name}`: there is no stage named `{name}`"
                ))
                .hint(hint),
            ));
        }
    }
    let cache = open_cache(cache_dir)?;
    let reports_hint = "pass a writable directory with `--reports-dir` or `PIPELINE_REPORTS`";
    let (dir, run_id) =
        Report::new_run_dir(reports_dir, &study.name).map_err(|e| environment(e, reports_hint))?;
    let reports: Vec<Report> = if study.is_sweep() {
        study
            .points
            .iter()
            .map(|p| Report::create_in(dir.join(&p.label), run_id.clone(), &p.experiment, Some(p)))
            .collect::<anyhow::Result<_>>()
    } else {
        Report::create_in(dir.clone(), run_id.clone(), first, None).map(|r| vec![r])
    }
    .map_err(|e| environment(e, reports_hint))?;

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
    if let Placement::Slurm(_) = &opts.placement {
        crate::exec::slurm::check_shared(&cache, &first.slurm.defaults).map_err(|e| {
            environment(
                e,
                "pass a `--cache-dir` on a filesystem the Slurm nodes share",
            )
        })?;
    }
    let progress = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    crate::interrupt::install();
    let outcomes = exec::run(&targets, &cache, &opts, &progress);
    for ((point, report), outcome) in study.points.iter().zip(&reports).zip(&outcomes) {
        report
            .finish(&point.experiment, outcome, &cache)
            .map_err(|e| environment(e, reports_hint))?;
    }
    if study.is_sweep() {
        report::write_sweep_summary(&dir, &study, &reports, &outcomes)
            .map_err(|e| environment(e, reports_hint))?;
    }
    if let Err(e) = crate::runs::index::write(reports_dir) {
        eprintln!("warning: could not update the reports index: {e:#}");
    }

    let failures: Vec<String> = study
        .points
        .iter()
        .zip(&outcomes)
        .filter_map(|(p, o)| {
            o.failed().map(|f| {
                let at = if p.label.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", p.label)
                };
                format!(
                    "stage `{}`{at} failed: {}",
                    f.name,
                    f.error.as_deref().unwrap_or("unknown error")
                )
            })
        })
        .collect();
    // A stage shared by several points ran (or was found) once: count it once.
    let count = |s: Status| -> usize {
        let shares: f64 = outcomes
            .iter()
            .flat_map(|o| &o.stages)
            .filter(|r| r.status == s)
            .map(|r| 1.0 / r.shared_by.max(1) as f64)
            .sum();
        shares.round() as usize
    };
    let (ran, cached) = (count(Status::Ran), count(Status::Cached));
    let total = ran + cached + count(Status::Failed) + count(Status::NotRun);
    let points = if study.is_sweep() {
        format!(" ({} points)", study.points.len())
    } else {
        String::new()
    };
    if crate::interrupt::requested() {
        let mut stopped: Vec<&str> = outcomes
            .iter()
            .flat_map(|o| &o.stages)
            .filter(|r| r.status == Status::Interrupted)
            .map(|r| r.name.as_str())
            .collect();
        stopped.dedup();
        let during = match stopped.as_slice() {
            [] => String::new(),
            names => format!("; stopped during `{}`", names.join("`, `")),
        };
        eprintln!(
            "interrupted: {ran} stage(s) ran and {cached} were cached before the stop{during}. Run the same \
             command again to continue: finished stages are cached and training resumes from its last \
             completed epoch."
        );
        eprintln!("report: {}", dir.display());
        println!("{}", dir.display());
        return Ok(exit::INTERRUPTED);
    }
    let cache_failed = outcomes
        .iter()
        .any(|o| o.failed().is_some_and(|f| f.cache_failure));
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("error: {f}");
        }
        if cache_failed {
            eprintln!(
                "hint: the cache directory `{}` could not be written (nothing half-written was kept): free some \
                 space (`pipeline cache gc` removes old results), make it writable, or pass another `--cache-dir`",
                cache_dir.display()
            );
        }
        let skipped = count(Status::NotRun);
        if skipped > 0 {
            eprintln!(
                "{skipped} stage{} not run{points}",
                if skipped == 1 { "" } else { "s" }
            );
        }
    } else if ran == 0 {
        eprintln!("nothing to do: all {total} stages cached{points}");
    } else {
        eprintln!("{ran} of {total} stages ran{points}, {cached} cached");
    }
    eprintln!("report: {}", dir.display());
    println!("{}", dir.display());
    Ok(if failures.is_empty() {
        exit::SUCCESS
    } else if cache_failed {
        exit::ENVIRONMENT
    } else {
        exit::STAGE_FAILED
    })
}

fn status(args: &ExperimentArgs, cache_dir: &Path) -> Result<u8, u8> {
    let study = load(args)?;
    let cache = open_cache(cache_dir)?;
    if study.is_sweep() {
        print!("{}", sweep_overview(&study));
    }
    for point in &study.points {
        if study.is_sweep() {
            println!("\n[{}]", point.label);
        }
        let lines = exec::plan(&point.experiment, &identity(&study, &point.label), &cache);
        let width = lines.iter().map(|l| l.name.len()).max().unwrap_or(0);
        for l in &lines {
            println!("{:width$}  {}", l.name, l.reason);
        }
    }
    Ok(exit::SUCCESS)
}

/// `sweep: 9 points (grid over model.layers × windows.seq_len)` and which stages the points share.
fn sweep_overview(study: &Study) -> String {
    let Some(sweep) = &study.sweep else {
        return String::new();
    };
    let targets: Vec<Target> = study
        .points
        .iter()
        .map(|p| Target {
            experiment: &p.experiment,
            identity: String::new(),
            label: p.label.clone(),
            report_dir: PathBuf::new(),
        })
        .collect();
    let axes: Vec<String> = sweep
        .axes
        .iter()
        .map(|a| format!("{} ({} values)", a.key, a.values.len()))
        .collect();
    let mode = if sweep.mode == crate::spec::sweep::Mode::Zip {
        "zip"
    } else {
        "grid"
    };
    let repeat = if sweep.repeat > 1 {
        format!(", each {} times", sweep.repeat)
    } else {
        String::new()
    };
    let mut out = format!(
        "sweep: {} points ({mode} over {}{repeat})\n",
        study.points.len(),
        axes.join(" × ")
    );
    for (stage, n) in exec::variants(&targets) {
        let what = if n == 1 {
            "shared by all points".to_string()
        } else {
            format!("{n} variants")
        };
        out.push_str(&format!("  {stage}: {what}\n"));
    }
    out
}

fn graph(args: &ExperimentArgs, format: GraphFormat) -> Result<u8, u8> {
    let study = load(args)?;
    let exp = &study.points[0].experiment;
    match format {
        GraphFormat::Text => {
            print!("{}", exp.graph.to_text(&exp.name));
            print!("{}", sweep_overview(&study));
        }
        GraphFormat::Dot => println!("{}", exp.graph.to_dot(&exp.name)),
    }
    Ok(exit::SUCCESS)
}

fn compare(
    targets: &[String],
    reports_dir: &Path,
    sort: Option<&str>,
    format: TableFormat,
    plot: Option<&Path>,
) -> Result<u8, u8> {
    let usage = exit_with(exit::INVALID_EXPERIMENT);
    let dirs = compare::resolve(targets, reports_dir).map_err(usage)?;
    if dirs.is_empty() {
        return Err(usage(anyhow::anyhow!(
            "no runs under `{}` yet; run an experiment first",
            reports_dir.display()
        )));
    }
    let runs: Vec<RunSummary> = dirs
        .iter()
        .map(|d| RunSummary::read(d, reports_dir))
        .collect::<anyhow::Result<_>>()
        .map_err(usage)?;
    let mut table = compare::table(&runs);
    if let Some(column) = sort {
        table.sort_by(column).map_err(usage)?;
    }
    match format {
        TableFormat::Table => print!("{}", table.to_text()),
        TableFormat::Csv => print!("{}", table.to_csv().map_err(usage)?),
        TableFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&table.to_json()).unwrap_or_default()
        ),
    }
    if let Some(path) = plot {
        let varying = compare::varying_params(&runs);
        let curves: Vec<(String, Vec<crate::artifact::EpochStats>)> = runs
            .iter()
            .filter(|r| !r.history.is_empty())
            .map(|r| {
                (
                    if varying.is_empty() {
                        r.name().to_string()
                    } else {
                        r.label_by(&varying)
                    },
                    r.history.clone(),
                )
            })
            .collect();
        let svg = crate::music::plot::loss_chart("loss", &curves).map_err(usage)?;
        std::fs::write(path, svg)
            .map_err(|e| environment(e.into(), "pass a writable path to `--plot`"))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(exit::SUCCESS)
}

fn bench(what: Bench) -> Result<u8, u8> {
    let report = match what {
        Bench::Train {
            layers,
            hidden,
            seq_len,
            batch,
            input,
            vocab,
            dense,
            embed_dim,
            steps,
            device,
            plain,
        } => {
            let choice: crate::nn::device::DeviceChoice = device
                .parse()
                .map_err(|e: String| invalid(Diagnostic::new(e)))?;
            let (device, name, _lease) = choice
                .open()
                .map_err(|e| invalid(Diagnostic::new(e.message).hint(e.hint)))?;
            let shape = crate::app::bench::TrainShape {
                layers,
                hidden,
                seq_len,
                batch,
                input: match input {
                    BenchInput::Scalar => crate::nn::model::InputMode::Scalar,
                    BenchInput::Embedding => crate::nn::model::InputMode::Embedding,
                },
                vocab,
                dense,
                embed_dim,
            };
            crate::app::bench::train_report(&shape, steps, &device, &name, !plain)
        }
        Bench::Sample { length, runs } => crate::app::bench::sample_report(length, runs),
        Bench::Prep { corpus, runs } => crate::app::bench::prep_report(&corpus, runs),
    };
    print!("{}", report.map_err(exit_with(exit::STAGE_FAILED))?);
    Ok(exit::SUCCESS)
}
