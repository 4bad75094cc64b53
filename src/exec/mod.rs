//! Runs experiments' stages against the cache: fingerprint, look up, run what is missing — several points of a
//! sweep at once, sharing every stage they have in common, on up to `--jobs` threads.
//!
//! A stage's fingerprint covers its kind, version, parameters and the *content hashes* of its inputs, so a stage that
//! re-runs and produces byte-identical output leaves its dependents cached (early cut-off). Before running, stages of
//! all points are merged into one graph of unique nodes: two points' stages are the same node when their kind,
//! parameters, external files and input nodes are the same, so a sweep computes each shared stage once even when
//! its points run in parallel. Artifacts are loaded from the cache only when a stage that needs them runs, and
//! dropped once no stage needs them.
//!
//! Where a missing stage is computed is the [`Placement`]: in this process, or as a Slurm job (the `remote` module); the
//! graph, fingerprints, cache and results are the same either way.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use anyhow::Result;
use indicatif::MultiProgress;
use serde::{Deserialize, Serialize};

mod remote;
pub mod slurm;

use crate::artifact::Artifact;
use crate::fingerprint::{Fingerprint, Hash, InputHash, Reason, explain};
use crate::spec::experiment::Experiment;
use crate::stages::{ExternalInputs, Resume, RunContext, StageKind};
use crate::store::{Cache, Checkpoint, EntryMeta, Lookup, Record};

#[derive(Debug, Clone)]
pub struct Options {
    /// Stages to re-run even when cached (with everything downstream).
    pub force: Vec<String>,
    /// Print cached stages and the reason for each run on stderr.
    pub verbose: bool,
    /// Stages run at once.
    pub jobs: usize,
    /// After a failure, finish everything that does not depend on it (default: start nothing new).
    pub keep_going: bool,
    /// Where stages run.
    pub placement: Placement,
    /// Run only this stage (and what it needs): how a Slurm node computes one stage.
    pub only: Option<String>,
    /// With `only`: the fingerprint the submitter expects of that stage. Checked before computing, so a node that
    /// sees other files or decides other parameters fails at once instead of storing a result nobody asked for.
    pub expected: Option<Hash>,
}

/// Where the executor runs a stage that is not cached.
#[derive(Debug, Clone, Default)]
pub enum Placement {
    /// In this process, on `jobs` threads.
    #[default]
    Local,
    /// As a Slurm job per stage, which runs `pipeline exec-stage` on a node.
    Slurm(SlurmPlacement),
}

/// What every job needs to find its way back.
#[derive(Debug, Clone)]
pub struct SlurmPlacement {
    /// This binary, which the nodes run (it must be on the shared filesystem).
    pub exe: PathBuf,
    /// The `--set` arguments as given.
    pub set: Vec<String>,
    /// The cache directory, absolute.
    pub cache_dir: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            force: Vec::new(),
            verbose: false,
            jobs: 1,
            keep_going: false,
            placement: Placement::Local,
            only: None,
            expected: None,
        }
    }
}

/// One experiment (or sweep point) to run.
pub struct Target<'a> {
    pub experiment: &'a Experiment,
    /// The name its stages' last fingerprints are kept under (`baseline`, `baseline/layers=2`).
    pub identity: String,
    /// `layers=2,seq_len=64` for a sweep point, empty otherwise.
    pub label: String,
    pub report_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Cached,
    Ran,
    Failed,
    /// Stopped by Ctrl-C while running; its progress (training epochs) is checkpointed.
    Interrupted,
    /// Not run: an input failed, or the run stopped at another failure or at Ctrl-C.
    NotRun,
}

#[derive(Debug, Clone)]
pub struct StageResult {
    pub name: String,
    pub kind: StageKind,
    pub status: Status,
    pub reasons: Vec<Reason>,
    pub fingerprint: Option<Hash>,
    pub record: Option<Record>,
    pub seconds: f64,
    pub error: Option<String>,
    /// The failure was the cache's (disk full, read-only), not the stage's.
    pub cache_failure: bool,
    /// The Slurm job that ran the stage, and its log.
    pub slurm_job: Option<String>,
    pub slurm_log: Option<PathBuf>,
    /// How many points share this stage's result (1 outside sweeps).
    pub shared_by: usize,
}

impl StageResult {
    fn new(name: &str, kind: StageKind, status: Status) -> Self {
        Self {
            name: name.to_string(),
            kind,
            status,
            reasons: Vec::new(),
            fingerprint: None,
            record: None,
            seconds: 0.0,
            error: None,
            cache_failure: false,
            slurm_job: None,
            slurm_log: None,
            shared_by: 1,
        }
    }

    /// This result as failed with `e` (as interrupted when `e` is Ctrl-C's).
    fn with_error(mut self, e: anyhow::Error) -> Self {
        if e.downcast_ref::<crate::interrupt::Interrupted>().is_some() {
            self.status = Status::Interrupted;
        }
        self.error = Some(format!("{e:#}"));
        self
    }
}

#[derive(Debug)]
pub struct Outcome {
    /// In run order.
    pub stages: Vec<StageResult>,
}

impl Outcome {
    pub fn failed(&self) -> Option<&StageResult> {
        self.stages.iter().find(|s| s.status == Status::Failed)
    }

    pub fn count(&self, status: Status) -> usize {
        self.stages.iter().filter(|s| s.status == status).count()
    }
}

/// Why stage `i` must run, given that its fingerprint `fp` has no intact entry.
fn miss_reasons(cache: &Cache, identity: &str, stage: &str, fp: &Fingerprint) -> Vec<Reason> {
    match cache.last(identity, stage) {
        None => vec![Reason::NeverRan],
        Some(old) if old.hash() == fp.hash() => vec![Reason::EntryMissing],
        Some(old) => {
            let reasons = fp.diff(&old);
            if reasons.is_empty() {
                vec![Reason::Unrecorded]
            } else {
                reasons
            }
        }
    }
}

/// Which stages `--force` re-runs, and the reason for each.
fn forced(exp: &Experiment, names: &[String]) -> HashMap<usize, Reason> {
    let mut out = HashMap::new();
    for name in names {
        if let Some(i) = exp.graph.index_of(name) {
            for d in exp.graph.descendants(i) {
                let reason = if d == i {
                    Reason::Forced
                } else {
                    Reason::UpstreamForced {
                        stage: name.clone(),
                    }
                };
                // A stage named itself keeps `Forced` even when it is also downstream of another.
                if reason == Reason::Forced || !out.contains_key(&d) {
                    out.insert(d, reason);
                }
            }
        }
    }
    out
}

/// A stage as it runs: unique across all targets.
struct Node {
    /// The first target that has it, and the stage's index there; its spec and report folder are used.
    target: usize,
    stage: usize,
    inputs: Vec<usize>,
    /// Every (target, stage index) this node stands for.
    members: Vec<(usize, usize)>,
    forced: Option<Reason>,
    external: std::result::Result<ExternalInputs, String>,
}

/// The targets' stages merged into unique nodes (in an order where inputs come first), and for each target the
/// node of each of its stages.
fn merge(targets: &[Target], opts: &Options) -> (Vec<Node>, Vec<Vec<usize>>) {
    let mut nodes: Vec<Node> = Vec::new();
    let mut keys: Vec<Hash> = Vec::new();
    let mut by_key: HashMap<Hash, usize> = HashMap::new();
    // MIDI files are read and hashed once per source, however many points use it.
    let mut externals: HashMap<(PathBuf, String), std::result::Result<ExternalInputs, String>> =
        HashMap::new();
    let mut node_of = Vec::with_capacity(targets.len());
    for (t, target) in targets.iter().enumerate() {
        let exp = target.experiment;
        let forced = forced(exp, &opts.force);
        let mut map = vec![usize::MAX; exp.graph.stages.len()];
        for &i in exp.graph.order() {
            let stage = exp.graph.stages[i].stage();
            let params = stage.params();
            let ext_key = (
                exp.base_dir.clone(),
                format!(
                    "{}{}",
                    stage.kind(),
                    serde_json::to_string(&params).unwrap_or_default()
                ),
            );
            let external = externals
                .entry(ext_key)
                .or_insert_with(|| {
                    stage
                        .external_inputs(&exp.base_dir)
                        .map_err(|e| format!("{e:#}"))
                })
                .clone();
            let inputs: Vec<usize> = exp.graph.inputs_of(i).iter().map(|j| map[*j]).collect();
            // The node key: a fingerprint with input *nodes* in place of input content.
            let (files, files_root) = match &external {
                Ok(x) => (x.files.clone(), x.display_root.clone()),
                Err(e) => (Default::default(), e.clone()),
            };
            let key = Fingerprint {
                kind: stage.kind().name().to_string(),
                version: stage.kind().version(),
                params,
                inputs: inputs
                    .iter()
                    .map(|n| InputHash {
                        stage: String::new(),
                        hash: keys[*n],
                    })
                    .collect(),
                files,
                files_root,
            }
            .hash_with_root();
            let id = *by_key.entry(key).or_insert_with(|| {
                nodes.push(Node {
                    target: t,
                    stage: i,
                    inputs,
                    members: Vec::new(),
                    forced: None,
                    external,
                });
                keys.push(key);
                nodes.len() - 1
            });
            nodes[id].members.push((t, i));
            if let Some(reason) = forced.get(&i) {
                nodes[id].forced.get_or_insert_with(|| reason.clone());
            }
            map[i] = id;
        }
        node_of.push(map);
    }
    (nodes, node_of)
}

/// What the worker threads share.
struct Board {
    results: Vec<Option<StageResult>>,
    /// Inputs each node still waits for.
    waiting: Vec<usize>,
    ready: VecDeque<usize>,
    running: usize,
    stopped: bool,
    /// Consumers of each node that have not finished yet.
    unread: Vec<usize>,
}

/// Runs every stage of every target that is not cached, up to `opts.jobs` at a time, and returns one outcome per
/// target. Fail-fast by default: after a failure nothing new starts (running stages finish); with `keep_going`,
/// only what depends on the failure is skipped.
pub fn run(
    targets: &[Target],
    cache: &Cache,
    opts: &Options,
    progress: &MultiProgress,
) -> Vec<Outcome> {
    let (nodes, node_of) = merge(targets, opts);
    let mut consumers = vec![Vec::new(); nodes.len()];
    for (id, node) in nodes.iter().enumerate() {
        for &input in &node.inputs {
            consumers[input].push(id);
        }
    }
    // With `only`, just that stage and what it needs.
    let wanted: Vec<bool> = match &opts.only {
        None => vec![true; nodes.len()],
        Some(stage) => {
            let mut wanted = vec![false; nodes.len()];
            let mut todo: Vec<usize> = (0..nodes.len())
                .filter(|&id| {
                    let n = &nodes[id];
                    targets[n.target].experiment.graph.stages[n.stage].name == *stage
                })
                .collect();
            while let Some(id) = todo.pop() {
                if !wanted[id] {
                    wanted[id] = true;
                    todo.extend(&nodes[id].inputs);
                }
            }
            wanted
        }
    };
    // What a wanted stage needs is wanted, so dropping unwanted consumers leaves unwanted nodes none.
    for consumers in &mut consumers {
        consumers.retain(|&c| wanted[c]);
    }
    let board = Mutex::new(Board {
        results: vec![None; nodes.len()],
        waiting: nodes.iter().map(|n| n.inputs.len()).collect(),
        ready: (0..nodes.len())
            .filter(|&id| nodes[id].inputs.is_empty() && wanted[id])
            .collect(),
        running: 0,
        stopped: false,
        unread: consumers.iter().map(Vec::len).collect(),
    });
    let wake = Condvar::new();
    let artifacts: Mutex<HashMap<usize, Arc<Artifact>>> = Mutex::new(HashMap::new());
    let ctx = Shared {
        targets,
        nodes: &nodes,
        cache,
        opts,
        progress,
        artifacts: &artifacts,
    };

    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let (id, inputs) = {
                        let mut b = board.lock().expect("no worker panics holding the board");
                        let id = loop {
                            if crate::interrupt::requested() && !b.stopped {
                                b.stopped = true;
                                b.ready.clear();
                            }
                            if let Some(id) = b.ready.pop_front() {
                                break id;
                            }
                            if b.running == 0 {
                                return;
                            }
                            b = wake.wait(b).expect("no worker panics holding the board");
                        };
                        b.running += 1;
                        let inputs: Vec<Record> = nodes[id]
                            .inputs
                            .iter()
                            .map(|&n| {
                                b.results[n]
                                    .as_ref()
                                    .and_then(|r| r.record.clone())
                                    .expect("inputs succeeded")
                            })
                            .collect();
                        (id, inputs)
                    };
                    let result = ctx.execute(id, &inputs);
                    ctx.report(id, &result);
                    let mut b = board.lock().expect("no worker panics holding the board");
                    // Artifacts are held in memory only while a stage still needs them: a large corpus exists
                    // once or twice at a time, not once per stage.
                    {
                        let mut held = artifacts.lock().expect("no panics holding artifacts");
                        for &input in &nodes[id].inputs {
                            b.unread[input] -= 1;
                            if b.unread[input] == 0 {
                                held.remove(&input);
                            }
                        }
                        if consumers[id].is_empty() {
                            held.remove(&id);
                        }
                    }
                    let ok = matches!(result.status, Status::Cached | Status::Ran);
                    b.results[id] = Some(result);
                    b.running -= 1;
                    if ok {
                        for &c in &consumers[id] {
                            b.waiting[c] -= 1;
                            if b.waiting[c] == 0 && !b.stopped {
                                b.ready.push_back(c);
                            }
                        }
                    } else if !opts.keep_going {
                        b.stopped = true;
                        b.ready.clear();
                    }
                    wake.notify_all();
                }
            });
        }
    });

    let results = board
        .into_inner()
        .expect("no worker panics holding the board")
        .results;
    targets
        .iter()
        .enumerate()
        .map(|(t, target)| {
            let graph = &target.experiment.graph;
            let stages = graph
                .order()
                .iter()
                .map(|&i| {
                    let id = node_of[t][i];
                    let spec = &graph.stages[i];
                    let mut r = results[id].clone().unwrap_or_else(|| {
                        StageResult::new(&spec.name, spec.kind(), Status::NotRun)
                    });
                    r.name = spec.name.clone();
                    r.shared_by = nodes[id].members.len();
                    r
                })
                .collect();
            Outcome { stages }
        })
        .collect()
}

/// What executing a node needs.
struct Shared<'a> {
    targets: &'a [Target<'a>],
    nodes: &'a [Node],
    cache: &'a Cache,
    opts: &'a Options,
    progress: &'a MultiProgress,
    artifacts: &'a Mutex<HashMap<usize, Arc<Artifact>>>,
}

impl Shared<'_> {
    fn say(&self, line: String) {
        self.progress.suspend(|| eprintln!("{line}"));
    }

    /// ` [layers=2]` for a stage of one sweep point, ` (shared by 3 points)` for a shared one.
    fn tag(&self, id: usize) -> String {
        let node = &self.nodes[id];
        match node.members.len() {
            1 if !self.targets[node.target].label.is_empty() => {
                format!(" [{}]", self.targets[node.target].label)
            }
            1 => String::new(),
            n if self.targets.len() > 1 => format!(" (shared by {n} points)"),
            _ => String::new(),
        }
    }

    fn report(&self, id: usize, result: &StageResult) {
        let tag = self.tag(id);
        match result.status {
            Status::Cached if self.opts.verbose => {
                self.say(format!("{:>8} {}{tag}", "cached", result.name))
            }
            Status::Ran => self.say(format!(
                "{:>8} {}{tag} ({:.2}s{})",
                "ran",
                result.name,
                result.seconds,
                result
                    .slurm_job
                    .as_ref()
                    .map(|j| format!(", Slurm job {j}"))
                    .unwrap_or_default()
            )),
            Status::Failed => self.say(format!(
                "{:>8} {}{tag}: {}",
                "failed",
                result.name,
                result.error.as_deref().unwrap_or("unknown error")
            )),
            Status::Interrupted => self.say(format!("{:>8} {}{tag}", "stopped", result.name)),
            _ => {}
        }
    }

    /// With `-v`, why a stage is about to run.
    fn say_why(&self, id: usize, reasons: &[Reason]) {
        if self.opts.verbose {
            let node = &self.nodes[id];
            let name = &self.targets[node.target].experiment.graph.stages[node.stage].name;
            self.say(format!(
                "{:>8} {name}{}: {}",
                "running",
                self.tag(id),
                explain(reasons)
            ));
        }
    }

    /// The node's entry is in the cache: take it. Recording that every member now stands at `fp` only explains later
    /// misses, so a cache that cannot record it (a read-only, shared, precomputed one) still serves the hit.
    fn found(
        &self,
        id: usize,
        fp: &Fingerprint,
        record: Record,
        mut result: StageResult,
    ) -> StageResult {
        if let Err(e) = self.remember(id, fp) {
            self.say(format!(
                "warning: {}: cached, but the cache cannot record it ({e:#})",
                result.name
            ));
        }
        result.status = Status::Cached;
        result.record = Some(record);
        result
    }

    /// Records that every member of the node now stands at `fp`.
    fn remember(&self, id: usize, fp: &Fingerprint) -> Result<()> {
        for &(t, i) in &self.nodes[id].members {
            let target = &self.targets[t];
            self.cache.set_last(
                &target.identity,
                &target.experiment.graph.stages[i].name,
                fp,
            )?;
        }
        Ok(())
    }

    /// An input's artifact: kept in memory if it ran in this process, else read from the cache.
    fn load(&self, input: usize, record: &Record) -> Result<Arc<Artifact>> {
        if let Some(a) = self
            .artifacts
            .lock()
            .expect("no panics holding artifacts")
            .get(&input)
        {
            return Ok(a.clone());
        }
        let artifact = Arc::new(self.cache.load(record)?);
        self.artifacts
            .lock()
            .expect("no panics holding artifacts")
            .insert(input, artifact.clone());
        Ok(artifact)
    }

    /// What a stage can continue from (more epochs): its previous result, when [`crate::stages::Stage::resumable`]
    /// says so; failing that, the checkpoint an interrupted run of this same stage left.
    fn resume(&self, id: usize, fp: &Fingerprint, checkpoint: &Checkpoint) -> Option<Resume> {
        let node = &self.nodes[id];
        let target = &self.targets[node.target];
        let spec = &target.experiment.graph.stages[node.stage];
        let previous = self
            .cache
            .last(&target.identity, &spec.name)
            .filter(|old| spec.stage().resumable(old, fp))
            .and_then(|old| {
                self.cache.pin(&old.hash());
                self.cache.peek(&old.hash(), spec.kind().report_files())
            })
            .and_then(|record| {
                let artifact = Arc::new(self.cache.load(&record).ok()?);
                let files = record
                    .files
                    .keys()
                    .map(|name| (name.clone(), self.cache.file_path(&record.key, name)))
                    .collect();
                Some(Resume { artifact, files })
            });
        if previous.is_some() {
            return previous;
        }
        let artifact = checkpoint.load()?;
        self.say(format!(
            "{:>8} {}{}: continuing from the checkpoint of an interrupted run",
            "resuming",
            spec.name,
            self.tag(id)
        ));
        Some(Resume {
            artifact: Arc::new(artifact),
            files: BTreeMap::new(),
        })
    }

    fn execute(&self, id: usize, input_records: &[Record]) -> StageResult {
        let node = &self.nodes[id];
        let target = &self.targets[node.target];
        let exp = target.experiment;
        let spec = &exp.graph.stages[node.stage];
        let mut result = StageResult::new(&spec.name, spec.kind(), Status::Failed);
        let external = match &node.external {
            Ok(x) => x,
            Err(e) => return result.with_error(anyhow::anyhow!("{e}")),
        };
        let inputs: Vec<InputHash> = exp
            .graph
            .inputs_of(node.stage)
            .iter()
            .zip(input_records)
            .map(|(j, record)| InputHash {
                stage: exp.graph.stages[*j].name.clone(),
                hash: record.output.hash,
            })
            .collect();
        let fp = fingerprint_of(exp, node.stage, inputs, external);
        let key = fp.hash();
        result.fingerprint = Some(key);
        if let (Some(only), Some(expected)) = (&self.opts.only, &self.opts.expected)
            && *only == spec.name
            && key != *expected
        {
            return result.with_error(anyhow::anyhow!(
                "this node computes fingerprint {} for `{only}`, the submitting machine {}: the experiment, its \
                 input files or the device kind differ between them (is everything on a shared filesystem?)",
                key.hex(),
                expected.hex()
            ));
        }
        // From here until this process exits, `cache gc` keeps this entry (found, computed or waited for).
        self.cache.pin(&key);

        let reasons = match &node.forced {
            Some(reason) => vec![reason.clone()],
            None => match self.cache.lookup(&key, spec.kind().report_files()) {
                Lookup::Hit(record) => return self.found(id, &fp, *record, result),
                Lookup::Miss => miss_reasons(self.cache, &target.identity, &spec.name, &fp),
                Lookup::Damaged(problem) => {
                    self.say(format!(
                        "warning: {}: the cached result was damaged ({problem}); recomputing it",
                        spec.name
                    ));
                    vec![Reason::EntryMissing]
                }
            },
        };
        if let Placement::Slurm(placement) = &self.opts.placement {
            self.say_why(id, &reasons);
            return self.run_on_slurm(id, placement, &fp, result, reasons);
        }
        // Another process may be computing the same entry: wait for it, then take its result.
        let _claim = match self.cache.claim(&key, || {
            self.say(format!(
                "{:>8} {}{}: another run is computing it",
                "waiting",
                spec.name,
                self.tag(id)
            ))
        }) {
            Ok(c) => c,
            // The lock lives in the cache: a read-only or full cache cannot compute anything new.
            Err(e) => {
                result.cache_failure = e.downcast_ref::<crate::interrupt::Interrupted>().is_none();
                return result.with_error(e);
            }
        };
        if node.forced.is_none()
            && let Some(record) = self.cache.peek(&key, spec.kind().report_files())
        {
            return self.found(id, &fp, record, result);
        }
        self.say_why(id, &reasons);

        let mut loaded = Vec::with_capacity(node.inputs.len());
        for (input, record) in node.inputs.iter().zip(input_records) {
            match self.load(*input, record) {
                Ok(a) => loaded.push(a),
                Err(e) => return result.with_error(e),
            }
        }
        let refs: Vec<&Artifact> = loaded.iter().map(|a| a.as_ref()).collect();
        let checkpoint = self.cache.checkpoint(&key);
        let resume = match node.forced {
            // A forced run starts over: an interrupted run's progress does not count either.
            Some(_) => {
                checkpoint.clear();
                None
            }
            None => self.resume(id, &fp, &checkpoint),
        };
        let mut ctx = RunContext {
            stage: &spec.name,
            base_dir: &exp.base_dir,
            external,
            progress: self.progress,
            warnings: Vec::new(),
            report_dir: &target.report_dir,
            report_prefix: exp.graph.file_prefix(&spec.name),
            resume,
            checkpoint: Some(checkpoint.clone()),
        };
        let started = Instant::now();
        let output = match spec.stage().run(&mut ctx, &refs) {
            Ok(o) => o,
            Err(e) => return result.with_error(e),
        };
        let seconds = started.elapsed().as_secs_f64();
        // Lookups refuse entries naming other files, so an undeclared one would never be a hit again.
        if let Some(f) = output
            .files
            .iter()
            .find(|f| !spec.kind().report_files().contains(&f.name.as_str()))
        {
            return result.with_error(anyhow::anyhow!(
                "internal error: the stage made `{}`, which `StageKind::report_files` does not list",
                f.name
            ));
        }
        let bytes = output.artifact.to_bytes();
        let meta = EntryMeta {
            stage: spec.name.clone(),
            summary: output.summary,
            warnings: std::mem::take(&mut ctx.warnings),
            seconds,
        };
        let record = match self
            .cache
            .store(&fp, &bytes, &output.files, meta, node.forced.is_some())
        {
            Ok(r) => r,
            Err(e) => {
                result.cache_failure = true;
                return result.with_error(e.context("cannot store the result in the cache"));
            }
        };
        checkpoint.clear();
        if let Err(e) = self.remember(id, &fp) {
            result.cache_failure = true;
            return result
                .with_error(e.context("stored the result, but cannot record it in the cache"));
        }
        self.artifacts
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

/// A stage's fingerprint from its configuration and its inputs' content hashes.
fn fingerprint_of(
    exp: &Experiment,
    i: usize,
    inputs: Vec<InputHash>,
    external: &ExternalInputs,
) -> Fingerprint {
    let stage = exp.graph.stages[i].stage();
    Fingerprint {
        kind: stage.kind().name().to_string(),
        version: stage.kind().version(),
        params: stage.params(),
        inputs,
        files: external.files.clone(),
        files_root: external.display_root.clone(),
    }
}

/// What `pipeline status` prints for one stage.
#[derive(Debug, Serialize)]
pub struct PlanLine {
    pub name: String,
    pub kind: StageKind,
    pub cached: bool,
    pub fingerprint: Option<Hash>,
    pub reason: String,
}

/// Works out, without running or changing anything, which stages are cached and why the others would run.
pub fn plan(exp: &Experiment, identity: &str, cache: &Cache) -> Vec<PlanLine> {
    let mut hashes: HashMap<usize, Hash> = HashMap::new();
    let mut lines = Vec::new();
    for &i in exp.graph.order() {
        let spec = &exp.graph.stages[i];
        let mut line = PlanLine {
            name: spec.name.clone(),
            kind: spec.kind(),
            cached: false,
            fingerprint: None,
            reason: String::new(),
        };
        let input_ids = exp.graph.inputs_of(i);
        let pending: Vec<&str> = input_ids
            .iter()
            .filter(|j| !hashes.contains_key(j))
            .map(|j| exp.graph.stages[*j].name.as_str())
            .collect();
        if !pending.is_empty() {
            // The input's new output is unknown until it runs; if it comes out identical, this stage stays cached.
            let own: Vec<Reason> = cache
                .last(identity, &spec.name)
                .map(|old| {
                    let mut probe = old.clone();
                    probe.params = spec.stage().params();
                    probe.diff(&old)
                })
                .unwrap_or_default();
            line.reason = if own.is_empty() {
                format!("would run if `{}` changes its output", pending.join("`, `"))
            } else {
                format!("would run: {}", explain(&own))
            };
            lines.push(line);
            continue;
        }
        let inputs = input_ids
            .iter()
            .map(|j| InputHash {
                stage: exp.graph.stages[*j].name.clone(),
                hash: hashes[j],
            })
            .collect();
        let external = match spec.stage().external_inputs(&exp.base_dir) {
            Ok(x) => x,
            Err(e) => {
                line.reason = format!("would fail: {e:#}");
                lines.push(line);
                continue;
            }
        };
        let fp = fingerprint_of(exp, i, inputs, &external);
        let key = fp.hash();
        line.fingerprint = Some(key);
        match cache.peek(&key, spec.kind().report_files()) {
            Some(record) => {
                line.cached = true;
                line.reason = "cached".into();
                hashes.insert(i, record.output.hash);
            }
            None => {
                line.reason = format!(
                    "would run: {}",
                    explain(&miss_reasons(cache, identity, &spec.name, &fp))
                )
            }
        }
        lines.push(line);
    }
    lines
}

/// For `graph` and `status` of a sweep: per stage name, how many distinct variants the points have (1 = shared by
/// all), without running anything.
pub fn variants(targets: &[Target]) -> Vec<(String, usize)> {
    let (_, node_of) = merge(targets, &Options::default());
    let Some(first) = targets.first() else {
        return Vec::new();
    };
    let graph = &first.experiment.graph;
    graph
        .order()
        .iter()
        .map(|&i| {
            let distinct: HashSet<usize> = node_of.iter().map(|m| m[i]).collect();
            (graph.stages[i].name.clone(), distinct.len())
        })
        .collect()
}
