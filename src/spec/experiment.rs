//! The experiment file: TOML → checked [`Experiment`], with `--set` overrides, before anything runs.
//!
//! Parsing keeps every span (`toml::de::DeTable`), so each problem points at its file, line, column and key. Stage
//! parameters are read into each kind's own struct with `deny_unknown_fields`, then range-checked; the wiring is
//! checked by [`crate::spec::graph`]. All problems are collected and reported together.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use crate::nn::device::DeviceKind;
use crate::problem::Problem;
use crate::spec::diagnostic::{Diagnostic, Diagnostics, Source, decode_problem, did_you_mean};
use crate::spec::graph::{Graph, StageSpec};
use crate::spec::resources::{Resources, SlurmConfig};
use crate::stages::{CheckContext, ParamError, StageKind, StageParams, Train, Window};

/// Keys allowed at the top of an experiment file.
const TOP_LEVEL_KEYS: [&str; 4] = ["name", "stages", "sweep", "executor"];

/// One `--set key=value` from the command line.
#[derive(Debug, Clone)]
pub struct Override {
    /// `windows.seq_len`, or a top-level key such as `name`.
    pub key: String,
    pub value: String,
    /// Where the value's text is in the experiment file, for values from its `[sweep]` table; `None` for `--set`.
    pub origin: Option<Range<usize>>,
}

impl Override {
    /// Parses every `--set` argument, as `pipeline run` does.
    pub fn parse_all(args: &[String]) -> Result<Vec<Self>, Diagnostics> {
        args.iter()
            .map(|s| Self::parse(s))
            .collect::<Result<_, _>>()
            .map_err(Diagnostics::from)
    }

    /// Parses `stage.param=value`.
    pub fn parse(arg: &str) -> Result<Self, Diagnostic> {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(Diagnostic::new(format!("`--set {arg}` has no `=`"))
                .hint("write `--set stage.parameter=value`, e.g. `--set windows.seq_len=64`"));
        };
        let key = key.trim();
        let parts = key.split('.').count();
        if key.is_empty() || parts > 2 || key.split('.').any(str::is_empty) {
            return Err(
                Diagnostic::new(format!("`--set {arg}`: `{key}` is not a parameter name"))
                    .hint("write `--set stage.parameter=value`, e.g. `--set windows.seq_len=64`"),
            );
        }
        Ok(Self {
            key: key.to_string(),
            value: value.to_string(),
            origin: None,
        })
    }

    fn arg(&self) -> String {
        format!("--set {}={}", self.key, self.value)
    }
}

/// A checked experiment, ready to plan and run. Cloning it is how a sweep's repeat or a search's rung is made: a
/// typed edit of a copy ([`Experiment::edit_train`]), never a re-read of the file.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    /// `[executor.slurm]`: where stages run with `--executor slurm` (not part of any fingerprint).
    pub slurm: SlurmConfig,
    /// The experiment file as given on the command line.
    pub path: PathBuf,
    /// Relative paths in stage parameters start here.
    pub base_dir: PathBuf,
    /// Everything applied to the file to make this experiment, in order: `--set` overrides, a sweep point's values,
    /// then typed edits (a repeat's seed, a rung's epochs) as the file would write them.
    pub overrides: Vec<Override>,
    /// The typed edits among them, in order: what a Slurm job applies on the node to make the same experiment.
    pub edits: Vec<StageEdit>,
    pub graph: Graph,
    /// The file's text, shared by every experiment made from it.
    file: Arc<FileText>,
}

/// A change to a `train` stage made after the file was read: what a repeat and a pruning rung vary. Each names the
/// parameter it sets as the file spells it (a test holds the names to the struct's serde names).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainEdit {
    Epochs(u32),
    Seed(u64),
}

/// A [`TrainEdit`] of the `train` stage named `stage`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageEdit {
    pub stage: String,
    pub edit: TrainEdit,
}

impl TrainEdit {
    /// The parameter's key in the file.
    pub fn key(self) -> &'static str {
        match self {
            Self::Epochs(_) => "epochs",
            Self::Seed(_) => "seed",
        }
    }

    /// The value as the file would write it.
    pub fn value(self) -> String {
        match self {
            Self::Epochs(n) => n.to_string(),
            Self::Seed(n) => n.to_string(),
        }
    }

    fn apply(self, t: &mut Train) {
        match self {
            Self::Epochs(n) => t.epochs = n,
            Self::Seed(n) => t.seed = n,
        }
    }
}

impl Experiment {
    /// Parses and checks an experiment's text (read from `path`). Every problem found is returned, each with its
    /// location.
    pub fn from_text(path: &Path, text: &str, overrides: &[Override]) -> Result<Self, Diagnostics> {
        ParsedFile::parse(path, text)?.experiment(overrides)
    }

    /// The `train` stages by name, with their parameters.
    pub fn trains(&self) -> impl Iterator<Item = (&str, &Train)> {
        self.graph.stages.iter().filter_map(|s| match s.params() {
            StageParams::Train(t) => Some((s.name.as_str(), t)),
            _ => None,
        })
    }

    /// The `window` stages by name, with their parameters.
    pub fn windows(&self) -> impl Iterator<Item = (&str, &Window)> {
        self.graph.stages.iter().filter_map(|s| match s.params() {
            StageParams::Window(w) => Some((s.name.as_str(), w)),
            _ => None,
        })
    }

    /// Sets one parameter of the `train` stage `stage` (as [`Experiment::trains`] names them) and records the
    /// change among [`Experiment::overrides`] and [`Experiment::edits`], so reports and Slurm jobs see it. Returns
    /// the recorded `stage.key` and value; an error when the experiment has no `train` stage of that name (a job
    /// made from another version of the file).
    pub fn edit_train(&mut self, stage: &str, edit: TrainEdit) -> Result<(String, String), String> {
        let train = self
            .graph
            .stages
            .iter_mut()
            .find(|s| s.name == stage)
            .and_then(|spec| match spec.params_mut() {
                StageParams::Train(t) => Some(t),
                _ => None,
            })
            .ok_or_else(|| format!("the experiment has no `train` stage named `{stage}`"))?;
        edit.apply(train);
        let (key, value) = (format!("{stage}.{}", edit.key()), edit.value());
        self.edits.push(StageEdit {
            stage: stage.to_string(),
            edit,
        });
        self.overrides.push(Override {
            key: key.clone(),
            value: value.clone(),
            origin: None,
        });
        Ok((key, value))
    }

    /// Makes `device = "auto"` stand for `kind` in every training: what a Slurm submitter decides from the
    /// training's resources (and its jobs are told), before anything is fingerprinted.
    pub fn decide_auto(&mut self, kind: DeviceKind) {
        for spec in &mut self.graph.stages {
            if let StageParams::Train(t) = spec.params_mut() {
                t.auto_device = kind;
            }
        }
    }

    /// The file as run: the original text with every override and edit written in, comments and layout kept. A
    /// sweep point's file has no `[sweep]` table: it is the plain experiment of that point, runnable as it is.
    pub fn text_as_run(&self) -> String {
        self.file.with_overrides(&self.overrides)
    }
}

/// An experiment file's text, shared by every experiment made from it, with the editable document (toml_edit) that
/// report copies are written from: parsed at most once, when the first copy is asked for.
#[derive(Debug)]
struct FileText {
    text: Arc<str>,
    doc: OnceLock<Option<toml_edit::DocumentMut>>,
}

impl FileText {
    fn with_overrides(&self, overrides: &[Override]) -> String {
        if overrides.is_empty() {
            return self.text.to_string();
        }
        let doc = self.doc.get_or_init(|| self.text.parse().ok());
        match doc {
            Some(doc) => text_as_run(doc.clone(), overrides),
            None => self.text.to_string(),
        }
    }
}

/// An experiment file parsed once, with every span: each experiment made from it (a sweep's points) starts from a
/// copy of its tree with that experiment's overrides inserted.
pub struct ParsedFile<'t> {
    path: &'t Path,
    file: Arc<FileText>,
    root: DeTable<'t>,
}

impl<'t> ParsedFile<'t> {
    /// Parses the text of the file at `path`; a syntax error is reported with its location.
    pub fn parse(path: &'t Path, text: &'t str) -> Result<Self, Diagnostics> {
        let file = Arc::new(FileText {
            text: text.into(),
            doc: OnceLock::new(),
        });
        match DeTable::parse(text) {
            Ok(root) => Ok(Self {
                path,
                file,
                root: root.into_inner(),
            }),
            Err(e) => {
                let sources = Sources::new(path, &file.text, &[]);
                Err(toml_error(&sources, &e, None).into())
            }
        }
    }

    /// The file as diagnostics point into it (sharing its text).
    pub fn source(&self) -> Source {
        Source::new(self.path.display().to_string(), Arc::clone(&self.file.text))
    }

    /// The file's top-level tree, as written.
    pub fn root(&self) -> &DeTable<'t> {
        &self.root
    }

    /// The experiment the file makes with `overrides` applied, checked. Every problem found is returned, each with
    /// its location.
    pub fn experiment(&self, overrides: &[Override]) -> Result<Experiment, Diagnostics> {
        let path = self.path;
        let sources = Sources::new(path, &self.file.text, overrides);
        let mut diags = Diagnostics::default();
        let mut root = self.root.clone();
        apply_overrides(&mut root, overrides, &sources, &mut diags);

        let (name, slurm) = top_level(&root, path, &sources, &mut diags);
        let base_dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let ctx = CheckContext {
            base_dir: base_dir.clone(),
            auto_device: DeviceKind::here(),
        };
        let (specs, broken) = stage_specs(&root, &sources, &ctx, &mut diags);
        let graph = Graph::build(specs, &broken, &sources.file, &mut diags);
        diags.into_result(Experiment {
            name,
            slurm,
            path: path.to_path_buf(),
            base_dir,
            overrides: overrides.to_vec(),
            edits: Vec::new(),
            graph,
            file: Arc::clone(&self.file),
        })
    }
}

/// A file stem made safe to name the report folder: other characters become `_`, leading dots go (so `..` cannot
/// climb out of the reports directory).
fn folder_name(stem: &str) -> String {
    let safe = crate::paths::replace_unsafe(stem, "_-.");
    let safe = safe.trim_start_matches('.');
    if safe.is_empty() {
        "experiment".into()
    } else {
        safe.into()
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// The texts that spans point into: the file, then each `--set` value at an offset past the file's end, so one
/// number says both which text and where.
struct Sources {
    file: Source,
    /// (start offset of the `--set` argument in the shared span space, the argument, offset of the value inside it).
    overrides: Vec<(usize, Source, usize)>,
}

impl Sources {
    fn new(path: &Path, text: &Arc<str>, overrides: &[Override]) -> Self {
        let mut next = text.len() + 1;
        let overrides = overrides
            .iter()
            .map(|o| {
                let arg = o.arg();
                let value_at = arg.len() - o.value.len();
                let start = next;
                next += arg.len() + 1;
                (start, Source::new("command line", arg), value_at)
            })
            .collect();
        Self {
            file: Source::new(path.display().to_string(), Arc::clone(text)),
            overrides,
        }
    }

    fn diag(&self, message: impl Into<Problem>, span: Range<usize>) -> Diagnostic {
        let d = Diagnostic::new(message);
        for (start, source, _) in self.overrides.iter().rev() {
            if span.start >= *start {
                let shift = |x: usize| x - start;
                return d.at(source, shift(span.start)..shift(span.end.max(span.start)));
            }
        }
        d.at(&self.file, span)
    }
}

/// Inserts each `--set` value into the parsed document, with spans that point at the command line.
fn apply_overrides<'a>(
    root: &mut DeTable<'a>,
    overrides: &'a [Override],
    sources: &Sources,
    diags: &mut Diagnostics,
) {
    for (i, o) in overrides.iter().enumerate() {
        // Sweep values point into the file itself; `--set` values into the command line's span space.
        let start = o
            .origin
            .as_ref()
            .map_or(sources.overrides[i].0 + sources.overrides[i].2, |r| r.start);
        let mut value = match DeValue::parse(&o.value) {
            Ok(v) => v,
            // Not TOML (`data/other`): take it as the string the user meant.
            Err(_) => Spanned::new(0..o.value.len(), DeValue::String(o.value.as_str().into())),
        };
        shift_spans(&mut value, start);
        // A `--set` key points at itself (`--set hidden=64`: at `hidden`); a sweep's at the value it came from.
        let key_span = match &o.origin {
            None => {
                let key_start = sources.overrides[i].0 + "--set ".len();
                key_start..key_start + o.key.len()
            }
            Some(_) => start..start + o.value.len(),
        };
        match o.key.split_once('.') {
            None => {
                root.insert(Spanned::new(key_span, o.key.as_str().into()), value);
            }
            Some((stage, param)) => {
                let stage_table = root
                    .get_mut("stages")
                    .and_then(|s| match s.get_mut() {
                        DeValue::Table(t) => t.get_mut(stage),
                        _ => None,
                    })
                    .map(|t| t.get_mut());
                match stage_table {
                    Some(DeValue::Table(t)) => {
                        t.insert(Spanned::new(key_span, param.into()), value);
                    }
                    // The stage exists but is no table (`source = 1`): its own check says so, at its place.
                    Some(_) => {}
                    None => {
                        let names = stage_names(root);
                        let hint = did_you_mean(stage, names.iter().map(String::as_str))
                            .unwrap_or_else(|| format!("the stages are: {}", names.join(", ")));
                        let (_, arg, _) = &sources.overrides[i];
                        let at = "--set ".len();
                        let d = Diagnostic::new(format!("there is no stage named `{stage}`"))
                            .key(o.key.clone())
                            .hint(hint);
                        diags.push(match &o.origin {
                            Some(span) => d.at(&sources.file, span.clone()),
                            None => d.at(arg, at..at + stage.len()),
                        });
                    }
                }
            }
        }
    }
}

fn stage_names(root: &DeTable) -> Vec<String> {
    match root.get("stages").map(|s| s.get_ref()) {
        Some(DeValue::Table(t)) => t.keys().map(|k| k.get_ref().to_string()).collect(),
        _ => Vec::new(),
    }
}

/// Moves every span in a parsed `--set` value by `by`.
fn shift_spans(value: &mut Spanned<DeValue>, by: usize) {
    let span = value.span();
    let mut inner = std::mem::replace(value.get_mut(), DeValue::Boolean(false));
    match &mut inner {
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                shift_spans(item, by);
            }
        }
        DeValue::Table(t) => {
            let old = std::mem::take(t);
            for (k, mut v) in old {
                shift_spans(&mut v, by);
                let ks = k.span();
                t.insert(Spanned::new(ks.start + by..ks.end + by, k.into_inner()), v);
            }
        }
        _ => {}
    }
    *value = Spanned::new(span.start + by..span.end + by, inner);
}

/// The `[executor]` table: `[executor.slurm]` resources for every stage, and `[executor.slurm.<kind>]` per kind.
fn executor_config(
    value: &Spanned<DeValue<'_>>,
    sources: &Sources,
    diags: &mut Diagnostics,
) -> SlurmConfig {
    let mut config = SlurmConfig::default();
    let DeValue::Table(table) = value.get_ref() else {
        diags.push(
            sources
                .diag("`executor` must be a table", value.span())
                .key("executor")
                .hint(
                    "write `[executor.slurm]` with `sbatch` settings such as `partition = \"gpu\"`",
                ),
        );
        return config;
    };
    for (key, value) in table {
        if key.get_ref() != "slurm" {
            diags.push(
                sources
                    .diag(format!("unknown executor `{}`", key.get_ref()), key.span())
                    .key(format!("executor.{}", key.get_ref()))
                    .hint("the executors with settings are: `slurm` (`[executor.slurm]`)"),
            );
            continue;
        }
        let DeValue::Table(slurm) = value.get_ref() else {
            diags.push(
                sources
                    .diag("`executor.slurm` must be a table", value.span())
                    .key("executor.slurm"),
            );
            continue;
        };
        let mut defaults = DeTable::new();
        for (k, v) in slurm {
            match (StageKind::from_name(k.get_ref()), v.get_ref()) {
                (Some(kind), DeValue::Table(_)) => {
                    let key = format!("executor.slurm.{}", kind.name());
                    if let Some(r) = resources(v.clone(), &key, sources, diags) {
                        config.per_kind.insert(kind.name(), r);
                    }
                }
                (None, DeValue::Table(_)) => diags.push(
                    sources
                        .diag(format!("`{}` is not a stage kind", k.get_ref()), k.span())
                        .key(format!("executor.slurm.{}", k.get_ref()))
                        .hint(did_you_mean(k.get_ref(), StageKind::ALL.map(|k| k.name())).unwrap_or_else(|| {
                            "per-kind settings go in tables named after a stage kind, e.g. `[executor.slurm.train]`"
                                .into()
                        })),
                ),
                _ => {
                    defaults.insert(k.clone(), v.clone());
                }
            }
        }
        let defaults = Spanned::new(value.span(), DeValue::Table(defaults));
        if let Some(r) = resources(defaults, "executor.slurm", sources, diags) {
            config.defaults = r;
        }
    }
    config
}

fn resources(
    value: Spanned<DeValue<'_>>,
    key: &str,
    sources: &Sources,
    diags: &mut Diagnostics,
) -> Option<Resources> {
    let (span, value_table) = (value.span(), value.get_ref().clone());
    match <Resources as serde::Deserialize>::deserialize(value.into_deserializer()) {
        Ok(r) => Some(r),
        Err(e) => {
            let table = match value_table {
                DeValue::Table(t) => t,
                _ => DeTable::new(),
            };
            diags.push(decode_problem(
                &e,
                &table,
                key,
                span,
                &|m, at| sources.diag(m, at),
                "`sbatch` settings are partition, account, qos, gres, cpus, mem, time and extra",
            ));
            None
        }
    }
}

fn toml_error(sources: &Sources, e: &toml::de::Error, key: Option<String>) -> Diagnostic {
    let mut message = crate::spec::diagnostic::in_users_words(e.message().trim());
    let mut hint = None;
    if message.contains("duplicate key") {
        hint = Some(
            "each stage needs its own name, and each key may appear once per table".to_string(),
        );
    }
    if let Some(first) = message.get(..1) {
        message = first.to_lowercase() + &message[1..];
    }
    let mut d = match e.span() {
        Some(span) => sources.diag(message, span),
        None => Diagnostic::new(message).at(&sources.file, 0..0),
    };
    if let Some(key) = key {
        d = d.key(key);
    }
    if let Some(hint) = hint {
        d = d.hint(hint);
    }
    d
}

/// The experiment's name (the file's stem unless `name` says otherwise) and executor settings, from the top-level
/// keys; unknown keys are problems.
fn top_level(
    root: &DeTable,
    path: &Path,
    sources: &Sources,
    diags: &mut Diagnostics,
) -> (String, SlurmConfig) {
    let mut name = path
        .file_stem()
        .map(|s| folder_name(&s.to_string_lossy()))
        .unwrap_or_else(|| "experiment".into());
    let mut slurm = SlurmConfig::default();
    for (key, value) in root {
        match key.get_ref().as_ref() {
            "name" => match value.get_ref() {
                DeValue::String(s) if valid_name(s) => name = s.to_string(),
                DeValue::String(s) => diags.push(
                    sources
                        .diag(
                            format!("`{s}` is not a usable experiment name"),
                            value.span(),
                        )
                        .key("name")
                        .hint("use letters, digits, `_`, `-` and `.`; it names the report folder"),
                ),
                other => diags.push(
                    sources
                        .diag(
                            format!("`name` must be a string, not {}", other.type_str()),
                            value.span(),
                        )
                        .key("name"),
                ),
            },
            "stages" | "sweep" => {}
            "executor" => slurm = executor_config(value, sources, diags),
            other => {
                let mut d = sources
                    .diag(format!("unknown top-level key `{other}`"), key.span())
                    .key(other.to_string());
                let owners = stages_taking(root, other);
                let hint = if let Some(first) = owners.first() {
                    let all = owners.iter().map(|s| format!("`{s}.{other}`"));
                    format!(
                        "`{other}` is a stage's parameter: name its stage, {} (as in `--set {first}.{other}=…`)",
                        all.collect::<Vec<_>>().join(" or ")
                    )
                } else {
                    did_you_mean(other, TOP_LEVEL_KEYS).unwrap_or_else(|| {
                        "the top level holds `name` and `[stages.NAME]` tables".into()
                    })
                };
                d = d.hint(hint);
                diags.push(d);
            }
        }
    }
    (name, slurm)
}

/// The stages declared in `root` whose kind takes a parameter named `param`.
fn stages_taking(root: &DeTable, param: &str) -> Vec<String> {
    let Some(DeValue::Table(stages)) = root.get("stages").map(|s| s.get_ref()) else {
        return Vec::new();
    };
    let kind_of = |table: &DeValue| match table {
        DeValue::Table(t) => match t.get("kind").map(|k| k.get_ref()) {
            Some(DeValue::String(k)) => StageKind::from_name(k),
            _ => None,
        },
        _ => None,
    };
    stages
        .iter()
        .filter(|(_, t)| kind_of(t.get_ref()).is_some_and(|k| k.takes(param)))
        .map(|(name, _)| name.get_ref().to_string())
        .collect()
}

/// Every `[stages.NAME]` table checked and built, and the names of those too broken to build (no `kind`, not a
/// table), whose problems are already in `diags`.
fn stage_specs(
    root: &DeTable,
    sources: &Sources,
    ctx: &CheckContext,
    diags: &mut Diagnostics,
) -> (Vec<StageSpec>, Vec<String>) {
    let mut specs = Vec::new();
    let mut broken = Vec::new();
    match root.get("stages").map(|v| (v.span(), v.get_ref())) {
        None => diags.push(
            Diagnostic::new("the experiment declares no stages")
                .at(&sources.file, 0..0)
                .hint("add stages as `[stages.NAME]` tables with a `kind`, e.g. `[stages.source]` with `kind = \"midi_source\"`"),
        ),
        Some((span, DeValue::Table(stages))) => {
            if stages.is_empty() {
                diags.push(sources.diag("`[stages]` is empty", span).key("stages"));
            }
            for (name, value) in stages {
                match stage_spec(name, value, sources, ctx, diags) {
                    Some(spec) => specs.push(spec),
                    None => broken.push(name.get_ref().to_string()),
                }
            }
        }
        Some((span, other)) => diags.push(
            sources
                .diag(format!("`stages` must be a table, not {}", other.type_str()), span)
                .key("stages")
                .hint("declare stages as `[stages.NAME]` tables"),
        ),
    }
    (specs, broken)
}

fn valid_stage_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Checks one `[stages.NAME]` table and builds its stage.
fn stage_spec(
    name: &Spanned<std::borrow::Cow<str>>,
    value: &Spanned<DeValue>,
    sources: &Sources,
    ctx: &CheckContext,
    diags: &mut Diagnostics,
) -> Option<StageSpec> {
    let stage_name = name.get_ref().to_string();
    let key = format!("stages.{stage_name}");
    if !valid_stage_name(&stage_name) {
        diags.push(
            sources
                .diag(format!("`{stage_name}` is not a usable stage name"), name.span())
                .key(key.clone())
                .hint("use letters, digits, `_` and `-` (names appear in `--set NAME.key=value` and in paths)"),
        );
    }
    let DeValue::Table(table) = value.get_ref() else {
        diags.push(
            sources
                .diag(
                    format!(
                        "stage `{stage_name}` must be a table, not {}",
                        value.get_ref().type_str()
                    ),
                    value.span(),
                )
                .key(key)
                .hint(format!(
                    "declare it as `[stages.{stage_name}]` with a `kind` and its parameters"
                )),
        );
        return None;
    };
    let mut params = table.clone();
    let at = StageAt {
        name,
        key: &key,
        sources,
    };
    let kind = at.kind(params.remove("kind"), diags);
    let inputs = at.inputs(params.remove("inputs"), diags);
    let kind = kind?;
    let table_value = Spanned::new(value.span(), DeValue::Table(params.clone()));
    let built = match kind.build(table_value, ctx) {
        Ok(stage) => Some(stage),
        Err(ParamError::Decode(errors)) => {
            for e in &errors {
                diags.push(at.decode_problem(kind, &params, e));
            }
            None
        }
        Err(ParamError::Invalid(problems)) => {
            for p in problems {
                let span = params
                    .get(p.key)
                    .map(|v| v.span())
                    .unwrap_or_else(|| name.span());
                diags.push(
                    sources
                        .diag(p.problem, span)
                        .key(format!("{key}.{}", p.key)),
                );
            }
            None
        }
    };
    Some(StageSpec {
        name: stage_name,
        kind,
        built,
        inputs,
        span: name.span(),
    })
}

/// A stage table being checked: its name as written, its key (`stages.NAME`) and the files problems point into.
struct StageAt<'a, 'n> {
    name: &'a Spanned<std::borrow::Cow<'n, str>>,
    key: &'a str,
    sources: &'a Sources,
}

impl StageAt<'_, '_> {
    /// The stage's `kind`, or `None` (with a problem) when it is missing, not a string or not a kind.
    fn kind(&self, value: Option<Spanned<DeValue>>, diags: &mut Diagnostics) -> Option<StageKind> {
        let kinds: Vec<_> = StageKind::ALL.iter().map(|k| k.name()).collect();
        let (problem, span, hint) = match value.as_ref().map(|v| (v.get_ref(), v.span())) {
            None => (
                format!("stage `{}` has no `kind`", self.name.get_ref()),
                self.name.span(),
                Some(format!("add `kind = \"…\"`, one of: {}", kinds.join(", "))),
            ),
            Some((DeValue::String(s), span)) => match StageKind::from_name(s) {
                Some(k) => return Some(k),
                None => (
                    format!("unknown stage kind `{s}`"),
                    span,
                    Some(
                        did_you_mean(s, kinds.iter().copied())
                            .unwrap_or_else(|| format!("the kinds are: {}", kinds.join(", "))),
                    ),
                ),
            },
            Some((other, span)) => (
                format!("`kind` must be a string, not {}", other.type_str()),
                span,
                None,
            ),
        };
        let mut d = self
            .sources
            .diag(problem, span)
            .key(format!("{}.kind", self.key));
        if let Some(hint) = hint {
            d = d.hint(hint);
        }
        diags.push(d);
        None
    }

    /// The stage's `inputs`: a list of stage names, or one name.
    fn inputs(
        &self,
        value: Option<Spanned<DeValue>>,
        diags: &mut Diagnostics,
    ) -> Vec<Spanned<String>> {
        let Some(v) = value else {
            return Vec::new();
        };
        match v.get_ref() {
            DeValue::Array(items) => inputs_of(items, self.key, self.sources, diags),
            DeValue::String(s) => vec![Spanned::new(v.span(), s.to_string())],
            other => {
                diags.push(
                    self.sources
                        .diag(
                            format!(
                                "`inputs` must be a list of stage names, not {}",
                                other.type_str()
                            ),
                            v.span(),
                        )
                        .key(format!("{}.inputs", self.key))
                        .hint("e.g. `inputs = [\"source\"]`"),
                );
                Vec::new()
            }
        }
    }

    /// The problem of a parameter table serde could not decode, at the parameter its span points at (an unknown
    /// one with the nearest known name; a missing one, which has no span, at the stage).
    fn decode_problem(&self, kind: StageKind, params: &DeTable, e: &toml::de::Error) -> Diagnostic {
        decode_problem(
            e,
            params,
            self.key,
            self.name.span(),
            &|m, at| self.sources.diag(m, at),
            &format!(
                "`{}` takes no such parameter; docs/src/reference/stages.md (or `pipeline schema --markdown`) lists its parameters",
                kind.name()
            ),
        )
    }
}

fn inputs_of(
    items: &DeArray,
    key: &str,
    sources: &Sources,
    diags: &mut Diagnostics,
) -> Vec<Spanned<String>> {
    let mut out = Vec::new();
    for item in items.iter() {
        match item.get_ref() {
            DeValue::String(s) => out.push(Spanned::new(item.span(), s.to_string())),
            other => diags.push(
                sources
                    .diag(
                        format!(
                            "an input must be a stage name (a string), not {}",
                            other.type_str()
                        ),
                        item.span(),
                    )
                    .key(format!("{key}.inputs")),
            ),
        }
    }
    out
}

/// The experiment's document with overrides written in, keeping comments and layout (toml_edit).
fn text_as_run(mut doc: toml_edit::DocumentMut, overrides: &[Override]) -> String {
    let from_sweep = overrides.iter().any(|o| o.origin.is_some());
    if from_sweep {
        doc.remove("sweep");
    }
    for o in overrides {
        let value = o
            .value
            .parse::<toml_edit::Value>()
            .unwrap_or_else(|_| toml_edit::Value::from(o.value.as_str()));
        match o.key.split_once('.') {
            None => doc[o.key.as_str()] = toml_edit::Item::Value(value),
            Some((stage, param)) => {
                // Validation has seen a table here; never index blindly all the same.
                if let Some(table) = doc
                    .get_mut("stages")
                    .and_then(|s| s.get_mut(stage))
                    .and_then(|t| t.as_table_like_mut())
                {
                    let mut value = value;
                    // The comment after the old value stays beside the new one.
                    if let Some(old) = table.get(param).and_then(toml_edit::Item::as_value) {
                        *value.decor_mut() = old.decor().clone();
                    }
                    table.insert(param, toml_edit::Item::Value(value));
                }
            }
        }
    }
    doc.to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small valid experiment over `data/openmsx` with one training (`model`), for the spec's unit tests.
    pub(crate) const FILE: &str = r#"
name = "edits"
[stages.source]
kind = "midi_source"
path = "data/openmsx"
[stages.notes]
kind = "extract_instrument"
inputs = ["source"]
[stages.tokens]
kind = "tokenize"
inputs = ["notes"]
[stages.vocab]
kind = "vocab"
inputs = ["tokens"]
[stages.windows]
kind = "window"
inputs = ["vocab"]
[stages.model]
kind = "train"
inputs = ["windows"]
epochs = 7 # the run's length
seed = 3
"#;

    #[test]
    fn a_train_edit_names_the_parameter_it_sets_as_the_file_does() {
        let exp = Experiment::from_text(Path::new("x.toml"), FILE, &[]).unwrap();
        for edit in [TrainEdit::Epochs(11), TrainEdit::Seed(99)] {
            let mut edited = exp.clone();
            let (key, value) = edited.edit_train("model", edit).unwrap();
            assert_eq!(key, format!("model.{}", edit.key()));
            // The typed change is the one the file's key would make.
            let by_key = Experiment::from_text(
                Path::new("x.toml"),
                FILE,
                &[Override::parse(&format!("{key}={value}")).unwrap()],
            )
            .unwrap();
            let params =
                |e: &Experiment| serde_json::to_value(e.trains().next().unwrap().1).unwrap();
            assert_eq!(params(&edited), params(&by_key), "{edit:?}");
            assert_ne!(params(&edited), params(&exp), "{edit:?} changed nothing");
            // And the report's copy of the file says so, comments kept.
            let text = edited.text_as_run();
            assert!(
                text.contains(&format!("{} = {value}", edit.key())),
                "{text}"
            );
            assert!(text.contains("# the run's length"), "{text}");
        }
        // The original is untouched by its copies' edits.
        assert_eq!(exp.trains().next().unwrap().1.epochs, 7);
        assert!(exp.overrides.is_empty());
        assert!(
            exp.clone()
                .edit_train("windows", TrainEdit::Seed(1))
                .is_err()
        );
    }
}
