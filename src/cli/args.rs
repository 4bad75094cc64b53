//! The command line as clap parses it: commands, their arguments, and the parsers for values clap has none for.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::store::PushPolicy;

#[derive(Parser, Debug)]
#[command(
    name = "pipeline",
    version,
    about = "Train sequence models on MIDI: declarative, cached, reported"
)]
pub struct Cli {
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(clap::Args, Debug)]
pub(super) struct ExperimentArgs {
    /// The experiment file (TOML).
    pub(super) file: PathBuf,
    /// Override a parameter: `--set windows.seq_len=64` (repeatable; applies to every sweep point). Values are
    /// TOML; anything else is a string.
    #[arg(long = "set", value_name = "STAGE.KEY=VALUE")]
    pub(super) set: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub(super) struct CacheArgs {
    /// Where results are cached.
    #[arg(long, env = "PIPELINE_CACHE", default_value = "cache")]
    pub(super) cache_dir: PathBuf,
    #[command(flatten)]
    pub(super) remote: RemoteArgs,
}

#[derive(clap::Args, Debug)]
pub(super) struct RemoteArgs {
    /// A remote cache behind the local one, shared with other machines: `s3://BUCKET/PREFIX` (endpoint, region
    /// and credentials from the `AWS_*` environment variables) or `file:///DIR`.
    #[arg(long, env = "PIPELINE_REMOTE", value_name = "URL")]
    pub(super) remote: Option<String>,
    /// Which results are uploaded to the remote: `all`, `none`, or stage kinds separated by commas (default: all
    /// but `render`, whose audio is large and quick to make again).
    #[arg(long, env = "PIPELINE_PUSH", value_name = "all|none|KINDS", value_parser = parse_push)]
    pub(super) push: Option<PushPolicy>,
    /// Results larger than this stay local, e.g. `200MB` or `1GiB`.
    #[arg(long, env = "PIPELINE_PUSH_MAX", value_name = "SIZE", value_parser = parse_size)]
    pub(super) push_max: Option<u64>,
    /// Fail (exit 3) when the remote cannot be used, instead of going on with the local cache alone.
    #[arg(long, env = "PIPELINE_REMOTE_REQUIRED")]
    pub(super) remote_required: bool,
}

/// `all`, `none` or `train,sample`: stage kinds by name.
pub(super) fn parse_push(text: &str) -> Result<PushPolicy, String> {
    match text.trim() {
        "all" => return Ok(PushPolicy::All),
        "none" => return Ok(PushPolicy::None),
        _ => {}
    }
    let kinds: Vec<&str> = crate::stages::StageKind::ALL
        .iter()
        .map(|k| k.name())
        .collect();
    let mut chosen = std::collections::BTreeSet::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !kinds.contains(&name) {
            return Err(format!(
                "`{name}` is not a stage kind; write `all`, `none`, or some of {} separated by commas",
                kinds.join(", ")
            ));
        }
        chosen.insert(name.to_string());
    }
    if chosen.is_empty() {
        return Err("write `all`, `none`, or stage kinds separated by commas".into());
    }
    Ok(PushPolicy::Kinds(chosen))
}

/// `200MB`, `1GiB`, `5000` (bytes), for clap.
pub(super) fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("`{text}` is not a size like `200MB` or `1GiB` ({e})"))
}

#[derive(clap::Args, Debug)]
pub(super) struct ReportsArgs {
    /// Where report folders go.
    #[arg(long, env = "PIPELINE_REPORTS", default_value = "reports")]
    pub(super) reports_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub(super) enum Command {
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
        /// At the end, export the run (every sweep point) to this tracker, as `pipeline export` does.
        #[arg(long, value_enum, value_name = "TRACKER")]
        export: Option<Tracker>,
        #[command(flatten)]
        tracking: TrackingArgs,
    },
    /// Compute one stage from a job description in the cache: what a Slurm job runs on its node.
    #[command(hide = true)]
    ExecStage {
        /// `cache/v1/jobs/<fingerprint>/job.json`.
        #[arg(required_unless_present = "inline")]
        job: Option<PathBuf>,
        /// The job description itself (JSON), for nodes that do not share the cache directory.
        #[arg(long, conflicts_with = "job")]
        inline: Option<String>,
    },
    /// List the runs in progress on this cache (from any shell): each running point's stage, epoch, losses, ETA.
    Ps {
        /// The cache the runs use.
        #[arg(long, env = "PIPELINE_CACHE", default_value = "cache")]
        cache_dir: PathBuf,
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
    /// Measure: speed (`bench train`, `bench sample`, `bench prep`) and music (`bench music`).
    #[command(subcommand)]
    Bench(Bench),
    /// Check, measure or prune the cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Print a JSON Schema (draft 2020-12) of the experiment file, for editors: `pipeline schema >
    /// experiment.schema.json`, then `#:schema ./experiment.schema.json` atop a TOML file.
    Schema {
        /// Print the stage kinds and their parameters as a Markdown table instead (the manual's stage reference, docs/src/reference/stages.md).
        #[arg(long)]
        markdown: bool,
    },
    /// Print a shell completion script: `pipeline completions bash > ~/.local/share/bash-completion/completions/pipeline`.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Send runs to the tracker people already use (MLflow).
    #[command(subcommand)]
    Export(ExportCommand),
    /// A blind listening test: one self-contained page that plays pairs of clips — the runs' generated pieces, the
    /// n-gram floor's, held-out excerpts — in a seeded random order, unlabelled until the end, and exports the
    /// answers; `--results FILE.json` gives each source's preference rate with its 95 % interval.
    Listen(ListenArgs),
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
        /// Show these columns, in this order (any format): `--columns run,best_val_loss,val_loss_vs_floor`.
        #[arg(long, value_name = "NAME,…", value_delimiter = ',')]
        columns: Vec<String>,
        /// The table's width in characters; columns that say least are left out to fit (default: the terminal's,
        /// else 160). `--width 0`: every column.
        #[arg(long, value_name = "N")]
        width: Option<usize>,
    },
}

/// Where `--export` sends runs.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tracker {
    /// An MLflow tracking server (`--tracking-uri`).
    Mlflow,
}

#[derive(clap::Args, Debug)]
pub(super) struct TrackingArgs {
    /// The MLflow tracking server, e.g. `http://127.0.0.1:5000` (credentials from MLFLOW_TRACKING_USERNAME and
    /// MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN).
    #[arg(long, env = "MLFLOW_TRACKING_URI", value_name = "URL")]
    pub(super) tracking_uri: Option<String>,
}

#[derive(Subcommand, Debug)]
pub(super) enum ExportCommand {
    /// Every selected run (and sweep point) as an MLflow run: parameters, per-epoch losses, music metrics, tags
    /// and the report's files. Exporting again only adds what is new (a run that was still training).
    Mlflow {
        /// Report folders (a run's, or a sweep's) or experiment names; none: every run in the reports directory.
        runs: Vec<String>,
        #[command(flatten)]
        tracking: TrackingArgs,
        #[command(flatten)]
        reports: ReportsArgs,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ExecutorKind {
    Local,
    Slurm,
}

/// What `cache push` and `cache pull` move: the results of the reports (of one experiment, or all).
#[derive(clap::Args, Debug)]
pub(super) struct TransferArgs {
    #[command(flatten)]
    pub(super) cache: CacheArgs,
    #[command(flatten)]
    pub(super) reports: ReportsArgs,
    /// Only the results of this experiment's reports.
    #[arg(long, value_name = "NAME")]
    pub(super) experiment: Option<String>,
}

#[derive(Subcommand, Debug)]
pub(super) enum CacheCommand {
    /// Re-hash every entry and list the damaged ones (exit 1 if any); with a remote set, the remote's entries.
    Verify {
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Size of the cache per stage kind; with a remote set, of the remote.
    Du {
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Upload to the remote every result the reports refer to (of one experiment, or all) that it lacks.
    Push(TransferArgs),
    /// Download from the remote every result the reports refer to (of one experiment, or all) that is not here.
    Pull(TransferArgs),
    /// Remove entries that no report of the last N runs of each experiment refers to, damaged entries, and data
    /// crashed runs left behind. With a remote set, this cleans the remote instead: the reports named with
    /// `--reports-dir` decide what stays.
    Gc {
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        reports: ReportsArgs,
        /// Runs per experiment whose results are kept.
        #[arg(long, default_value_t = 5, value_name = "N")]
        keep: usize,
        /// Keep everything younger than this, e.g. `30m`, `2h`, `0s` (a run may have just made it); default `1h`,
        /// and `7d` on a remote, which other machines' runs write to.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        grace: Option<std::time::Duration>,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Also remove the report folders of runs before the last N of each experiment (those older than the
        /// grace, and not running).
        #[arg(long = "reports")]
        prune_reports: bool,
    },
}

/// `30m`, `2h 30m`, `90s`, `0s` (jiff's friendly format), for clap.
pub(super) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let d: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("`{text}` is not a duration such as `30m`, `2h` or `0s` ({e})"))?;
    std::time::Duration::try_from(d).map_err(|_| format!("`{text}` is negative"))
}

#[derive(Subcommand, Debug)]
pub(super) enum Bench {
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
    /// The music metrics of a run's pieces (their median, low and high) beside the held-out files, their
    /// shuffled and uniform references, and whether each of the baseline's targets is met.
    Music {
        /// A run's report folder, or an experiment name (its newest run).
        #[arg(default_value = "baseline")]
        target: String,
        #[command(flatten)]
        reports: ReportsArgs,
    },
    /// The n-gram floor on an experiment's windows (made without the cache): fit and score times, peak memory, and
    /// the held-out loss of every order.
    Ngram {
        /// The experiment whose windows to fit on: those its first `ngram` stage reads, else its first `window`
        /// stage's.
        #[arg(default_value = "experiments/baseline.toml")]
        file: PathBuf,
        /// Override a parameter, as `pipeline run --set` does (`--set source.path=/tmp/corpus`).
        #[arg(long = "set", value_name = "STAGE.KEY=VALUE")]
        set: Vec<String>,
        #[arg(long, default_value_t = 5, value_parser = within(1, crate::nn::ngram::MAX_ORDER))]
        order: usize,
        #[arg(long, default_value_t = 3, value_parser = within(1, 1000))]
        runs: usize,
        /// Also write the windows' training and validation ids here (`train.txt`, `validation.txt`, `meta.json`),
        /// for `bench/kneser_ney.py` to check the model independently.
        #[arg(long, value_name = "DIR")]
        export: Option<PathBuf>,
    },
    /// All MIDI stages over a corpus, without the cache.
    Prep {
        #[arg(long, default_value = "data/openmsx")]
        corpus: PathBuf,
        #[arg(long, default_value_t = 7, value_parser = within(1, 1000))]
        runs: usize,
    },
}

#[derive(clap::Args, Debug)]
pub(super) struct ListenArgs {
    /// Report folders or experiment names whose pieces to play.
    #[arg(required_unless_present = "results", conflicts_with = "results")]
    pub(super) targets: Vec<String>,
    #[command(flatten)]
    pub(super) reports: ReportsArgs,
    /// Where to write the page (default: `listen.html` in the reports directory).
    #[arg(long, value_name = "FILE.html")]
    pub(super) out: Option<PathBuf>,
    /// Pairs for every two sources.
    #[arg(long, default_value_t = 4, value_parser = within(1, 100))]
    pub(super) pairs: usize,
    /// Seconds of each clip (all are cut to the shortest piece when one is shorter).
    #[arg(long, default_value_t = 15, value_parser = within(1, 600))]
    pub(super) seconds: usize,
    /// Drives which clips are paired and their order.
    #[arg(long, default_value_t = 1)]
    pub(super) seed: u64,
    /// The SoundFont to play every clip with (default: $PIPELINE_SOUNDFONT, then the system's).
    #[arg(long, value_name = "FILE.sf2")]
    pub(super) soundfont: Option<PathBuf>,
    /// Summarise the answers a page exported instead: each source's preference rate, Wilson's 95 % interval, n.
    #[arg(long, value_name = "FILE.json")]
    pub(super) results: Option<PathBuf>,
}

/// A clap parser for a whole number in `lo..=hi`: anything else is a usage error (exit 2) naming the range.
pub(super) fn within(lo: usize, hi: usize) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |text| match text.parse::<usize>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("`{text}` must be a whole number from {lo} to {hi}")),
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(super) enum BenchInput {
    Scalar,
    Embedding,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(super) enum GraphFormat {
    Text,
    Dot,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(super) enum TableFormat {
    Table,
    Csv,
    Json,
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// `pipeline --help` lists every command with what it does: a doc comment that lands on the wrong variant
    /// leaves one blank and gives another two descriptions.
    #[test]
    fn every_command_says_what_it_does() {
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            assert!(
                !about.is_empty(),
                "`pipeline {}` has no description",
                sub.get_name()
            );
            for nested in sub.get_subcommands() {
                let about = nested
                    .get_about()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                assert!(
                    !about.is_empty(),
                    "`pipeline {} {}` has no description",
                    sub.get_name(),
                    nested.get_name()
                );
            }
        }
    }
}

#[cfg(test)]
mod reference {
    use super::Cli;
    use clap::CommandFactory;

    /// The manual's command reference names every command and subcommand clap knows: a command added without its
    /// line there fails here.
    #[test]
    fn the_manual_names_every_command() {
        let page = include_str!("../../docs/src/reference/commands.md");
        let mut missing = Vec::new();
        for sub in Cli::command().get_subcommands() {
            let name = sub.get_name();
            // `help` is clap's; a hidden command is the tool's own (a Slurm job's entry point), not a user's.
            if name == "help" || sub.is_hide_set() {
                continue;
            }
            let lines: Vec<&str> = page
                .lines()
                .filter(|l| l.contains(&format!("`pipeline {name}")))
                .collect();
            if lines.is_empty() {
                missing.push(name.to_string());
            }
            for nested in sub
                .get_subcommands()
                .map(|n| n.get_name())
                .filter(|n| *n != "help")
            {
                if !lines.iter().any(|l| l.contains(nested)) {
                    missing.push(format!("{name} {nested}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "docs/src/reference/commands.md lacks: {}",
            missing.join(", ")
        );
    }
}
