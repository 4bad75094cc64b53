//! The command line: parses arguments, calls the library, prints, and maps every outcome to an exit code.
//!
//! Data goes to stdout (the report path, `status` and `graph` output), so it can be scripted; progress, warnings
//! and errors go to stderr.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressDrawTarget};

use crate::cache::Cache;
use crate::diagnostic::{Diagnostic, Diagnostics, did_you_mean};
use crate::executor::{self, Status};
use crate::exit;
use crate::experiment::{Experiment, Override};
use crate::report::Report;

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
    /// Override a parameter: `--set windows.seq_len=64` (repeatable). Values are TOML; anything else is a string.
    #[arg(long = "set", value_name = "STAGE.KEY=VALUE")]
    set: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct CacheArgs {
    /// Where results are cached.
    #[arg(long, env = "PIPELINE_CACHE", default_value = "cache")]
    cache_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an experiment: every stage whose result is not cached, then write a report.
    Run {
        #[command(flatten)]
        experiment: ExperimentArgs,
        #[command(flatten)]
        cache: CacheArgs,
        /// Where report folders go.
        #[arg(long, env = "PIPELINE_REPORTS", default_value = "reports")]
        reports_dir: PathBuf,
        /// Re-run this stage and everything downstream of it, even if cached (repeatable).
        #[arg(long, value_name = "STAGE")]
        force: Vec<String>,
        /// Also list cached stages and say why each stage runs.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Show, per stage, whether it is cached or would run and why, without running anything.
    Status {
        #[command(flatten)]
        experiment: ExperimentArgs,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Print the stage graph.
    Graph {
        #[command(flatten)]
        experiment: ExperimentArgs,
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum GraphFormat {
    Text,
    Dot,
}

fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Parses the arguments, runs the command, returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(dispatch(cli))
}

fn load(args: &ExperimentArgs) -> Result<Experiment, u8> {
    let overrides: Result<Vec<Override>, Diagnostic> =
        args.set.iter().map(|s| Override::parse(s)).collect();
    let result = overrides
        .map_err(Diagnostics::from)
        .and_then(|o| Experiment::load(&args.file, &o));
    result.map_err(|d| {
        eprint!("{}", d.render(color()));
        exit::INVALID_EXPERIMENT
    })
}

fn open_cache(dir: &Path) -> Result<Cache, u8> {
    Cache::open(dir).map_err(|e| {
        eprintln!("error: {e:#}");
        eprintln!("hint: pass a writable directory with `--cache-dir` or `PIPELINE_CACHE`");
        exit::ENVIRONMENT
    })
}

fn dispatch(cli: Cli) -> u8 {
    let result = match cli.command {
        Command::Run {
            experiment,
            cache,
            reports_dir,
            force,
            verbose,
        } => run(&experiment, &cache.cache_dir, &reports_dir, force, verbose),
        Command::Status { experiment, cache } => status(&experiment, &cache.cache_dir),
        Command::Graph { experiment, format } => load(&experiment).map(|exp| {
            match format {
                GraphFormat::Text => print!("{}", exp.graph.to_text(&exp.name)),
                GraphFormat::Dot => println!("{}", exp.graph.to_dot(&exp.name)),
            }
            exit::SUCCESS
        }),
    };
    result.unwrap_or_else(|code| code)
}

fn run(
    args: &ExperimentArgs,
    cache_dir: &Path,
    reports_dir: &Path,
    force: Vec<String>,
    verbose: bool,
) -> Result<u8, u8> {
    let exp = load(args)?;
    for name in &force {
        if exp.graph.index_of(name).is_none() {
            let names = exp.graph.stages.iter().map(|s| s.name.as_str());
            let hint = did_you_mean(name, names.clone()).unwrap_or_else(|| {
                format!("the stages are: {}", names.collect::<Vec<_>>().join(", "))
            });
            eprint!(
                "{}",
                Diagnostics::from(
                    Diagnostic::new(format!(
                        "`--force {name}`: there is no stage named `{name}`"
                    ))
                    .hint(hint)
                )
                .render(color())
            );
            return Err(exit::INVALID_EXPERIMENT);
        }
    }
    let cache = open_cache(cache_dir)?;
    let report = Report::create(reports_dir, &exp).map_err(|e| {
        eprintln!("error: {e:#}");
        eprintln!("hint: pass a writable directory with `--reports-dir` or `PIPELINE_REPORTS`");
        exit::ENVIRONMENT
    })?;
    let progress = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let opts = executor::Options { force, verbose };
    let outcome = executor::run(&exp, &cache, &opts, &report.dir, &progress);
    if let Err(e) = report.finish(&exp, &outcome, &cache) {
        eprintln!("error: {e:#}");
        return Err(exit::ENVIRONMENT);
    }
    let total = outcome.stages.len();
    let (ran, cached) = (outcome.count(Status::Ran), outcome.count(Status::Cached));
    if let Some(failed) = outcome.failed() {
        eprintln!(
            "error: stage `{}` failed: {}",
            failed.name,
            failed.error.as_deref().unwrap_or("unknown error")
        );
        eprintln!("report: {}", report.dir.display());
        println!("{}", report.dir.display());
        return Ok(exit::STAGE_FAILED);
    }
    if ran == 0 {
        eprintln!("nothing to do: all {total} stages cached");
    } else {
        eprintln!("{ran} of {total} stages ran, {cached} cached");
    }
    eprintln!("report: {}", report.dir.display());
    println!("{}", report.dir.display());
    Ok(exit::SUCCESS)
}

fn status(args: &ExperimentArgs, cache_dir: &Path) -> Result<u8, u8> {
    let exp = load(args)?;
    let cache = open_cache(cache_dir)?;
    let lines = executor::plan(&exp, &cache);
    let width = lines.iter().map(|l| l.name.len()).max().unwrap_or(0);
    for l in &lines {
        println!("{:width$}  {}", l.name, l.reason);
    }
    Ok(exit::SUCCESS)
}
