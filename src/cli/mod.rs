//! The command line: arguments become requests for [`crate::app`]; its typed results become text on stdout and
//! stderr, and exit codes.
//!
//! Data goes to stdout (the report path, `status`, `graph` and `compare` output), so it can be scripted; progress,
//! warnings and errors go to stderr.

#[macro_use]
mod stdout;
mod args;
mod reporter;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::app::error::{Error, Result};
use crate::app::export::ExportRequest;
use crate::app::inspect::SweepOverview;
use crate::app::run::{RunReport, RunRequest, RunStats};
use crate::exit;
use crate::spec::diagnostic::Diagnostic;
use crate::spec::sweep::Mode;
use args::{
    Bench, BenchInput, CacheCommand, Cli, Command, ExecutorKind, ExperimentArgs, GraphFormat,
    TableFormat,
};
use reporter::Printer;

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

/// Prints an error as the CLI shows them: a diagnostic with its source lines, or `error:` and `hint:` lines.
fn show(error: &Error) {
    match error {
        Error::Invalid(d) => eprint!("{}", d.render(color())),
        other => {
            eprintln!("error: {other}");
            if let Some(hint) = other.hint() {
                eprintln!("hint: {hint}");
            }
        }
    }
}

/// `run --export mlflow`: the request, checked before anything runs (a server that does not answer now is only
/// warned about: the run is worth having, and `pipeline export mlflow` sends it later).
fn start_export(
    tracking: &args::TrackingArgs,
    reports_dir: &std::path::Path,
) -> Result<ExportRequest> {
    let uri = tracking.tracking_uri.clone().ok_or_else(|| {
        crate::app::error::Error::Usage(anyhow::anyhow!(
            "`--export mlflow` needs the server: pass `--tracking-uri http://HOST:PORT` or set MLFLOW_TRACKING_URI"
        ))
    })?;
    if let Err(e) = crate::runs::mlflow::Client::new(&uri).and_then(|c| c.ping()) {
        eprintln!("warning: {e}; the run goes on, and `pipeline export mlflow` can send it later");
    }
    Ok(ExportRequest {
        targets: Vec::new(),
        reports_dir: reports_dir.to_path_buf(),
        tracking_uri: Some(uri),
    })
}

/// Exports runs and says how each went (on stdout for `export`, on stderr after a run, whose stdout is its
/// report folder); the exit code.
fn export_runs(request: &ExportRequest, to_stdout: bool) -> u8 {
    let say = |line: String| {
        if to_stdout {
            outln!("{line}")
        } else {
            eprintln!("{line}")
        }
    };
    let report = match crate::app::export::mlflow(request) {
        Ok(r) => r,
        Err(e) => {
            show(&e);
            return e.code();
        }
    };
    use crate::runs::mlflow::Done;
    let (mut created, mut updated, mut unchanged) = (0, 0, 0);
    for (key, done) in &report.done {
        match done {
            Done::Created { epochs, files } => {
                created += 1;
                say(format!("created {key} ({epochs} epochs, {files} files)"));
            }
            Done::Updated { epochs, files } => {
                updated += 1;
                say(format!("updated {key} ({epochs} epochs, {files} files)"));
            }
            Done::Unchanged => {
                unchanged += 1;
                say(format!("unchanged {key}"));
            }
        }
    }
    for s in &report.skipped {
        eprintln!("skipped {s}");
    }
    for f in &report.failed {
        eprintln!("error: {f}");
    }
    eprintln!(
        "MLflow `{}`: {created} created, {updated} updated, {unchanged} unchanged, {} failed",
        report.uri,
        report.failed.len()
    );
    if report.failed.is_empty() {
        exit::SUCCESS
    } else {
        exit::STAGE_FAILED
    }
}

/// `pipeline ps`: every live run on the cache, its running points and totals.
fn ps(cache_dir: &std::path::Path) -> Result<u8> {
    let runs = crate::app::inspect::ps(cache_dir)?;
    if runs.is_empty() {
        outln!("no runs in progress on `{}`", cache_dir.display());
    }
    let now = jiff::Timestamp::now();
    for run in &runs {
        let p = &run.progress;
        let age = (now - p.started).total(jiff::Unit::Second).unwrap_or(0.0);
        outln!(
            "{} {}  pid {}  started {} ago  {}",
            p.experiment,
            p.run_id,
            p.pid,
            crate::exec::progress::duration(age.max(0.0)),
            run.dir.display()
        );
        for line in p.lines(now) {
            outln!("  {line}");
        }
        let n = p.points.len();
        outln!(
            "  {n} point{}: {}",
            if n == 1 { "" } else { "s" },
            p.totals()
        );
    }
    Ok(exit::SUCCESS)
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
            export,
            tracking,
        } => {
            let request = RunRequest {
                experiment: experiment.file,
                set: experiment.set,
                remote: remote_config(&cache.remote),
                cache_dir: cache.cache_dir,
                reports_dir: reports.reports_dir,
                force,
                jobs: usize::from(jobs),
                keep_going,
                slurm: executor == ExecutorKind::Slurm,
            };
            run_command(&request, verbose, export, &tracking)
        }
        Command::Export(args::ExportCommand::Mlflow {
            runs,
            tracking,
            reports,
        }) => Ok(export_runs(
            &ExportRequest {
                targets: runs,
                reports_dir: reports.reports_dir,
                tracking_uri: tracking.tracking_uri,
            },
            true,
        )),
        Command::Ps { cache_dir } => ps(&cache_dir),
        Command::ExecStage { job, inline } => exec_stage_command(job, inline),
        Command::Status { experiment, cache } => status(&experiment, &cache),
        Command::Graph { experiment, format } => graph(&experiment, format),
        Command::Bench(b) => bench(b),
        Command::Cache(c) => cache_command(c),
        Command::Schema { markdown } => {
            let schema = crate::spec::schema::experiment_schema();
            if markdown {
                out!("{}", crate::spec::schema::parameter_table(&schema));
            } else {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&schema).expect("a JSON value prints")
                );
            }
            Ok(exit::SUCCESS)
        }
        Command::Completions { shell } => {
            completions(shell);
            Ok(exit::SUCCESS)
        }
        Command::Listen(args) => listen_command(&args),
        Command::Compare {
            targets,
            reports,
            sort,
            format,
            plot,
            columns,
            width,
        } => compare(
            &targets,
            &reports.reports_dir,
            sort.as_deref(),
            (format, &columns, width),
            plot.as_deref(),
        ),
    };
    result.unwrap_or_else(|e| {
        show(&e);
        e.code()
    })
}

/// `run`: the run, its report, and with `--export mlflow` the export of that report once the run ends (not after an
/// interrupt); the export's failure is the exit code only when the run itself succeeded.
fn run_command(
    request: &RunRequest,
    verbose: bool,
    export: Option<args::Tracker>,
    tracking: &args::TrackingArgs,
) -> Result<u8> {
    // The tracking server is checked before anything runs.
    let export = match export {
        Some(args::Tracker::Mlflow) => Some(start_export(tracking, &request.reports_dir)?),
        None => None,
    };
    let printer = Printer::new(verbose);
    let result = crate::app::run::run(request, &printer);
    printer.clear_board();
    result.map(|report| {
        let code = finish_run(&report);
        match export {
            Some(mut e) if !report.stats.interrupted => {
                e.targets = vec![report.dir.display().to_string()];
                let exported = export_runs(&e, false);
                if code == exit::SUCCESS {
                    exported
                } else {
                    code
                }
            }
            _ => code,
        }
    })
}

/// `exec-stage` (what a Slurm job runs): one stage of a job file or of `--inline` JSON, into the cache.
fn exec_stage_command(job: Option<std::path::PathBuf>, inline: Option<String>) -> Result<u8> {
    use crate::app::run::JobSource;
    let source = match (job, inline) {
        (_, Some(text)) => JobSource::Inline(text),
        (Some(path), None) => JobSource::File(path),
        (None, None) => {
            eprintln!("error: `exec-stage` needs a job file or `--inline JSON`");
            return Ok(exit::INVALID_EXPERIMENT);
        }
    };
    let notify: crate::store::remote::Notify =
        std::sync::Arc::new(|message| eprintln!("warning: {message}"));
    crate::app::run::exec_stage(&source, notify, &Printer::new(false)).map(|done| {
        eprintln!(
            "stage `{}` is in the cache ({})",
            done.stage,
            &done.key[..12]
        );
        exit::SUCCESS
    })
}

/// `listen`: the page, or with `--results` the summary of its answers.
fn listen_command(args: &args::ListenArgs) -> Result<u8> {
    match &args.results {
        Some(file) => listen_results(file),
        None => listen(&crate::app::listen::Request {
            targets: &args.targets,
            reports_dir: &args.reports.reports_dir,
            out: args.out.as_deref(),
            pairs: args.pairs,
            seconds: args.seconds as f64,
            seed: args.seed,
            soundfont: args.soundfont.as_deref(),
        }),
    }
}

/// Writes the listening page and says what is on it.
fn listen(req: &crate::app::listen::Request) -> Result<u8> {
    let written = crate::app::listen::write_page(req)?;
    eprintln!(
        "{} pairs of {} clips ({:.1} s each) from {} sources: {}",
        written.pairs,
        written.clips,
        written.seconds,
        written.sources.len(),
        written.sources.join(", ")
    );
    eprintln!(
        "open it in a browser, answer every pair, export the answers, then `pipeline listen --results FILE`"
    );
    outln!("{}", written.page.display());
    Ok(exit::SUCCESS)
}

/// Each source's preference rate, with Wilson's 95 % interval and n.
fn listen_results(file: &std::path::Path) -> Result<u8> {
    let rows = crate::app::listen::results(file)?;
    let width = rows
        .iter()
        .map(|r| r.source.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    outln!(
        "{:<width$}  chosen  of n  rate   95 % interval (Wilson)",
        "source"
    );
    for r in &rows {
        outln!(
            "{:<width$}  {:>6}  {:>4}  {:.3}  {:.3}–{:.3}",
            r.source,
            r.chosen,
            r.n,
            r.rate,
            r.low,
            r.high
        );
    }
    Ok(exit::SUCCESS)
}

/// Writes the completion script for `shell` to stdout (clap_complete, from the same definitions clap parses).
fn completions(shell: args::Shell) {
    use clap::CommandFactory;
    let generator = match shell {
        args::Shell::Bash => clap_complete::Shell::Bash,
        args::Shell::Zsh => clap_complete::Shell::Zsh,
        args::Shell::Fish => clap_complete::Shell::Fish,
    };
    // Into memory first: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(generator, &mut Cli::command(), "pipeline", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
}

/// The closing count of a run that neither failed nor stopped: `12 of 35 stages ran (9 points), 11 cached`.
fn counted(stats: &RunStats, points: &str) -> String {
    // Without a failure or a stop, only a search leaves stages not run: those its pruned trials never reached.
    let pruned = match stats.not_run {
        0 => String::new(),
        n => format!(", {n} not run (pruned trials)"),
    };
    let (ran, cached) = (stats.ran, stats.cached);
    if ran == 0 {
        format!("nothing to do: all {cached} stages cached{points}{pruned}")
    } else {
        format!(
            "{ran} of {} stages ran{points}, {cached} cached{pruned}",
            stats.total()
        )
    }
}

/// What a finished run prints: its failures, or how many stages ran; the report folder (on stdout too, for scripts).
fn finish_run(report: &RunReport) -> u8 {
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(e) = &report.index_error {
        eprintln!("warning: could not update the reports index: {e:#}");
    }
    for line in &report.search_lines {
        eprintln!("  trial {line}");
    }
    let stats = &report.stats;
    let (ran, cached) = (stats.ran, stats.cached);
    let points = report
        .points
        .map(|n| format!(" ({n} points)"))
        .unwrap_or_default();
    if stats.interrupted {
        let during = match report.stopped.as_slice() {
            [] => String::new(),
            names => format!("; stopped during `{}`", names.join("`, `")),
        };
        eprintln!(
            "interrupted: {ran} stage(s) ran and {cached} were cached before the stop{during}. Run the same \
             command again to continue: finished stages are cached and training resumes from its last \
             completed epoch."
        );
    } else if !report.failures.is_empty() {
        for f in &report.failures {
            eprintln!("error: {f}");
        }
        if stats.remote_failure {
            eprintln!(
                "hint: check that the remote is reachable and its bucket exists (endpoint, region and credentials \
                 come from the `AWS_*` variables; a plain-http endpoint needs `AWS_ALLOW_HTTP=true`), or leave out \
                 `--remote-required` to go on with the local cache alone"
            );
        } else if stats.cache_failure {
            eprintln!(
                "hint: the cache directory `{}` could not be written (nothing half-written was kept): free some \
                 space (`pipeline cache gc` removes old results), make it writable, or pass another `--cache-dir`",
                report.cache_dir.display()
            );
        }
        if stats.not_run > 0 {
            eprintln!(
                "{} stage{} not run{points}",
                stats.not_run,
                if stats.not_run == 1 { "" } else { "s" }
            );
        }
    } else {
        eprintln!("{}", counted(stats, &points));
    }
    for line in &report.results {
        eprintln!("  {line}");
    }
    if let Some(remote) = &report.remote {
        for line in &remote.failed_uploads {
            eprintln!("warning: {line}");
        }
        match &remote.down {
            Some(why) if remote.required => eprintln!(
                "error: the remote `{}` could not be used ({why}) and `--remote-required` is set",
                remote.url
            ),
            Some(_) => eprintln!(
                "remote `{}`: not used after it failed; what this run made is in the local cache only (`pipeline \
                 cache push` uploads it later)",
                remote.url
            ),
            None => eprintln!(
                "remote `{}`: fetched {} result(s) ({}), uploaded {} ({}), {} request(s)",
                remote.url,
                remote.fetched_entries,
                indicatif::HumanBytes(remote.fetched_bytes),
                remote.pushed_entries,
                indicatif::HumanBytes(remote.pushed_bytes),
                remote.requests
            ),
        }
    }
    eprintln!("report: {}", report.dir.display());
    if report.index_error.is_none() {
        eprintln!("compare it with the others: {}", report.index.display());
    }
    outln!("{}", report.dir.display());
    stats.exit_code()
}

/// The remote the arguments name, if any (an empty `--remote ''` turns off a `PIPELINE_REMOTE`).
fn remote_config(args: &args::RemoteArgs) -> Option<crate::store::RemoteConfig> {
    let url = args.remote.as_deref().filter(|u| !u.trim().is_empty())?;
    let kinds: Vec<&str> = crate::stages::StageKind::ALL
        .iter()
        .map(|k| k.name())
        .collect();
    Some(crate::store::RemoteConfig {
        url: url.trim().to_string(),
        push: args
            .push
            .clone()
            .unwrap_or_else(|| crate::store::PushPolicy::default_kinds(&kinds)),
        max_push_bytes: args.push_max,
        required: args.remote_required,
        notify: std::sync::Arc::new(|message| eprintln!("warning: {message}")),
    })
}

fn open(cache: &args::CacheArgs) -> Result<crate::store::Cache> {
    crate::app::open_cache(&cache.cache_dir, remote_config(&cache.remote).as_ref())
}

/// `app::remote::push` or `app::remote::pull`: the cache, the reports directory, the experiment.
type Transfer =
    fn(&crate::store::Cache, &std::path::Path, Option<&str>) -> anyhow::Result<(String, bool)>;

/// `cache push` or `cache pull` (`how`): its report on stdout; exit 1 when something could not be moved.
fn transfer(args: &args::TransferArgs, how: Transfer) -> Result<u8> {
    let (report, ok) = how(
        &open(&args.cache)?,
        &args.reports.reports_dir,
        args.experiment.as_deref(),
    )
    .map_err(|error| Error::Environment { error, hint: None })?;
    out!("{report}");
    Ok(if ok {
        exit::SUCCESS
    } else {
        exit::STAGE_FAILED
    })
}

fn cache_command(command: CacheCommand) -> Result<u8> {
    use crate::app::{maintenance, remote};
    let failed = |error: anyhow::Error| Error::Environment { error, hint: None };
    let code = |ok: bool| {
        if ok {
            exit::SUCCESS
        } else {
            exit::STAGE_FAILED
        }
    };
    match command {
        CacheCommand::Verify { cache } => {
            let opened = open(&cache)?;
            let (report, intact) = if opened.remote().is_some() {
                remote::verify(&opened)
            } else {
                maintenance::verify(&opened)
            }
            .map_err(failed)?;
            out!("{report}");
            Ok(code(intact))
        }
        CacheCommand::Du { cache } => {
            let opened = open(&cache)?;
            let report = if opened.remote().is_some() {
                remote::du(&opened)
            } else {
                maintenance::du(&opened)
            };
            out!("{}", report.map_err(failed)?);
            Ok(exit::SUCCESS)
        }
        CacheCommand::Push(args) => transfer(&args, remote::push),
        CacheCommand::Pull(args) => transfer(&args, remote::pull),
        CacheCommand::Gc {
            cache,
            reports,
            keep,
            grace,
            dry_run,
            prune_reports,
        } => {
            let opened = open(&cache)?;
            if prune_reports {
                let pruned = maintenance::prune_reports(&reports.reports_dir, keep, grace, dry_run);
                out!("{}", pruned.map_err(failed)?);
            }
            let report = if opened.remote().is_some() {
                let policy = remote::RemoteGc {
                    keep,
                    grace,
                    dry_run,
                };
                remote::gc(&opened, &reports.reports_dir, policy)
            } else {
                let policy = maintenance::GcPolicy {
                    keep,
                    grace,
                    dry_run,
                };
                maintenance::gc(&opened, &reports.reports_dir, policy)
            };
            out!("{}", report.map_err(failed)?);
            Ok(exit::SUCCESS)
        }
    }
}

fn status(args: &ExperimentArgs, cache: &args::CacheArgs) -> Result<u8> {
    let status = crate::app::inspect::status(
        &args.file,
        &args.set,
        &cache.cache_dir,
        remote_config(&cache.remote).as_ref(),
    )?;
    if let Some(overview) = &status.overview {
        out!("{}", overview_text(overview));
    }
    for (label, lines) in &status.points {
        if status.overview.is_some() {
            outln!("\n[{label}]");
        }
        let width = lines.iter().map(|l| l.name.len()).max().unwrap_or(0);
        for l in lines {
            outln!("{:width$}  {}", l.name, l.reason);
        }
    }
    Ok(exit::SUCCESS)
}

/// `sweep: 9 points (grid over model.layers × windows.seq_len)` and which stages the points share.
fn overview_text(o: &SweepOverview) -> String {
    let axes: Vec<String> = o
        .axes
        .iter()
        .map(|(key, n)| format!("{key} ({n} values)"))
        .collect();
    let mode = if o.mode == Mode::Zip { "zip" } else { "grid" };
    let repeat = if o.repeat > 1 {
        format!(", each {} times", o.repeat)
    } else {
        String::new()
    };
    let mut out = format!(
        "sweep: {} points ({mode} over {}{repeat})\n",
        o.points,
        axes.join(" × ")
    );
    for (stage, n) in &o.variants {
        let what = if *n == 1 {
            "shared by all points".to_string()
        } else {
            format!("{n} variants")
        };
        out.push_str(&format!("  {stage}: {what}\n"));
    }
    out
}

fn graph(args: &ExperimentArgs, format: GraphFormat) -> Result<u8> {
    let (study, overview) = crate::app::inspect::graph(&args.file, &args.set)?;
    let exp = &study.points[0].experiment;
    match format {
        GraphFormat::Text => {
            out!("{}", exp.graph.to_text(&exp.name));
            out!(
                "{}",
                overview.as_ref().map(overview_text).unwrap_or_default()
            );
        }
        GraphFormat::Dot => outln!("{}", exp.graph.to_dot(&exp.name)),
    }
    Ok(exit::SUCCESS)
}

fn compare(
    targets: &[String],
    reports_dir: &std::path::Path,
    sort: Option<&str>,
    (format, columns, width): (TableFormat, &[String], Option<usize>),
    plot: Option<&std::path::Path>,
) -> Result<u8> {
    let (runs, mut table) = crate::app::compare::compare(targets, reports_dir, sort)?;
    if !columns.is_empty() {
        table = table.select(columns).map_err(Error::Usage)?;
    }
    match format {
        TableFormat::Table => {
            // Columns the user picked are all shown; else the table fits the terminal.
            let width = match width {
                Some(0) => usize::MAX,
                Some(w) => w,
                None if !columns.is_empty() => usize::MAX,
                None => terminal_width(),
            };
            let (text, left_out) = table.fitted(width);
            out!("{text}");
            if !left_out.is_empty() {
                let named = left_out.len().min(6);
                let more = match left_out.len() - named {
                    0 => String::new(),
                    n => format!(" and {n} more"),
                };
                eprintln!(
                    "{} columns left out to fit {width} characters: {}{more} (`--columns NAME,…` picks, \
                     `--width 0` shows all, `--format csv` keeps all)",
                    left_out.len(),
                    left_out[..named].join(", ")
                );
            }
        }
        TableFormat::Csv => out!("{}", table.to_csv().map_err(Error::Usage)?),
        TableFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&table.to_json()).unwrap_or_default()
        ),
    }
    if let Some(path) = plot {
        crate::app::compare::plot(&runs, path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(exit::SUCCESS)
}

/// The terminal's width when stdout is one, else `$COLUMNS`, else 160.
fn terminal_width() -> usize {
    terminal_size::terminal_size_of(std::io::stdout())
        .map(|(w, _)| usize::from(w.0))
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
        .unwrap_or(160)
}

fn bench(what: Bench) -> Result<u8> {
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
                .map_err(|e: String| Error::from(Diagnostic::new(e)))?;
            let (device, name, _lease) = choice
                .open(crate::nn::device::DeviceKind::here())
                .map_err(|e| Error::from(Diagnostic::new(e)))?;
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
        Bench::Ngram {
            file,
            set,
            order,
            runs,
            export,
        } => {
            let bench = crate::app::bench::NgramBench {
                file: &file,
                set: &set,
                order,
                runs,
                export: export.as_deref(),
            };
            return crate::app::bench::ngram_report(&bench).map(|text| {
                out!("{text}");
                exit::SUCCESS
            });
        }
        Bench::Music { target, reports } => {
            return crate::app::bench::music_report(&target, &reports.reports_dir).map(|text| {
                out!("{text}");
                exit::SUCCESS
            });
        }
    };
    out!("{}", report.map_err(Error::Failed)?);
    Ok(exit::SUCCESS)
}
