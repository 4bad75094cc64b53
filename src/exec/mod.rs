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
//! The parts: `plan` (unique nodes, `--force`, the cached-or-run decision `status` shares), `node` (one node
//! against the store), `placement` (where a missing stage is computed: here, or as a Slurm job in `remote`),
//! [`events`] (what the run reports; the executor never prints), and the scheduler here.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use serde::{Deserialize, Serialize};

pub(crate) mod events;
mod node;
mod placement;
mod plan;
pub mod progress;
mod remote;
pub(crate) mod slurm;

pub use plan::{PlanLine, plan, variants};

use crate::artifact::Artifact;
use crate::fingerprint::{Hash, Reason};
use crate::spec::experiment::Experiment;
use crate::stages::StageKind;
use crate::store::{Cache, Record};
use events::{Event, Reporter, Share};
use node::Shared;
use placement::{Local, Placement};
use plan::Node;

#[derive(Debug, Clone)]
pub struct Options {
    /// Stages to re-run even when cached (with everything downstream).
    pub force: Vec<String>,
    /// Stages run at once.
    pub jobs: usize,
    /// After a failure, finish everything that does not depend on it (default: start nothing new).
    pub keep_going: bool,
    /// Where stages run.
    pub executor: Executor,
    /// Run only this stage (and what it needs): how a Slurm node computes one stage.
    pub only: Option<String>,
    /// With `only`: the fingerprint the submitter expects of that stage. Checked before computing, so a node that
    /// sees other files or decides other parameters fails at once instead of storing a result nobody asked for.
    pub expected: Option<Hash>,
}

/// Where the executor runs a stage that is not cached.
#[derive(Debug, Clone, Default)]
pub enum Executor {
    /// In this process, on `jobs` threads.
    #[default]
    Local,
    /// As a Slurm job per stage, which runs `pipeline exec-stage` on a node.
    Slurm(SlurmPlacement),
}

impl Executor {
    fn placement(&self) -> &dyn Placement {
        match self {
            Executor::Local => &Local,
            Executor::Slurm(slurm) => slurm,
        }
    }
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
    /// With a remote, the nodes need not see `cache_dir`: each job uses a cache of its own and the remote.
    pub remote: Option<slurm::RemoteJob>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            force: Vec::new(),
            jobs: 1,
            keep_going: false,
            executor: Executor::Local,
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
    /// Why it failed or stopped.
    pub error: Option<StageError>,
    /// The Slurm job that ran the stage, and its log.
    pub slurm_job: Option<String>,
    pub slurm_log: Option<PathBuf>,
    /// How many points share this stage's result (1 outside sweeps).
    pub shared_by: usize,
    /// Cached because it was downloaded from the remote.
    pub fetched: bool,
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
            slurm_job: None,
            slurm_log: None,
            shared_by: 1,
            fetched: false,
        }
    }

    /// This result as failed with `e` (as interrupted when `e` is Ctrl-C's).
    fn with_error(self, e: anyhow::Error) -> Self {
        self.failed(e, Cause::Stage)
    }

    /// This result as failed because the cache could not be used (full, read-only); Ctrl-C's error still only
    /// stops it.
    fn with_cache_error(self, e: anyhow::Error) -> Self {
        self.failed(e, Cause::Cache)
    }

    fn with_remote_error(self, e: anyhow::Error) -> Self {
        self.failed(e, Cause::Remote)
    }

    fn failed(mut self, e: anyhow::Error, cause: Cause) -> Self {
        let interrupted = e.downcast_ref::<crate::interrupt::Interrupted>().is_some();
        if interrupted {
            self.status = Status::Interrupted;
        }
        self.error = Some(StageError {
            message: format!("{e:#}"),
            cause: if interrupted { Cause::Stage } else { cause },
        });
        self
    }

    /// The error's message, or `unknown error`.
    pub fn message(&self) -> &str {
        self.error
            .as_ref()
            .map_or("unknown error", |e| e.message.as_str())
    }
}

/// Why a stage failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageError {
    pub message: String,
    pub cause: Cause,
}

/// Whose failure it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The stage's own (bad input, a failed Slurm job, Ctrl-C).
    Stage,
    /// The cache's: it could not be written (full, read-only), so nothing new could be kept.
    Cache,
    /// The remote's: `--remote-required` is set and the remote cannot be used.
    Remote,
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
    reporter: &dyn Reporter,
) -> Vec<Outcome> {
    let (nodes, node_of) = plan::merge(targets, opts);
    let wanted = wanted(&nodes, targets, opts.only.as_deref());
    let scheduler = Scheduler::new(&nodes, &wanted, opts.keep_going);
    let artifacts: Mutex<HashMap<usize, Arc<Artifact>>> = Mutex::new(HashMap::new());
    let ctx = Shared {
        targets,
        nodes: &nodes,
        shares: shares(&nodes, targets),
        cache,
        opts,
        reporter,
        artifacts: &artifacts,
    };
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|| {
                while let Some((id, inputs)) = scheduler.next() {
                    let result = ctx.execute(id, &inputs);
                    ctx.emit(Event::Finished {
                        stage: ctx.stage(id),
                        result: &result,
                    });
                    scheduler.finish(id, result, &artifacts);
                }
            });
        }
    });
    outcomes(targets, &nodes, &node_of, scheduler.results())
}

/// Which nodes run: all of them, or with `only` that stage and what it needs.
fn wanted(nodes: &[Node], targets: &[Target], only: Option<&str>) -> Vec<bool> {
    let Some(stage) = only else {
        return vec![true; nodes.len()];
    };
    let mut wanted = vec![false; nodes.len()];
    let mut todo: Vec<usize> = (0..nodes.len())
        .filter(|&id| {
            let n = &nodes[id];
            targets[n.target].experiment.graph.stages[n.stage].name == stage
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

/// Whom each node's result belongs to, for the events: one sweep point, several, or a plain experiment.
fn shares(nodes: &[Node], targets: &[Target]) -> Vec<Share> {
    nodes
        .iter()
        .map(|node| match node.members.len() {
            1 if !targets[node.target].label.is_empty() => {
                Share::Point(targets[node.target].label.clone())
            }
            n if n > 1 && targets.len() > 1 => Share::SharedBy(
                node.members
                    .iter()
                    .map(|&(t, _)| targets[t].label.clone())
                    .collect(),
            ),
            _ => Share::Alone,
        })
        .collect()
}

/// Hands ready nodes to the workers and records what they finish, under one lock.
struct Scheduler<'a> {
    nodes: &'a [Node],
    /// The wanted consumers of each node.
    consumers: Vec<Vec<usize>>,
    keep_going: bool,
    board: Mutex<Board>,
    wake: Condvar,
}

impl<'a> Scheduler<'a> {
    fn new(nodes: &'a [Node], wanted: &[bool], keep_going: bool) -> Self {
        let mut consumers = vec![Vec::new(); nodes.len()];
        for (id, node) in nodes.iter().enumerate() {
            for &input in &node.inputs {
                // What a wanted stage needs is wanted, so dropping unwanted consumers leaves unwanted nodes none.
                if wanted[id] {
                    consumers[input].push(id);
                }
            }
        }
        let board = Board {
            results: vec![None; nodes.len()],
            waiting: nodes.iter().map(|n| n.inputs.len()).collect(),
            ready: (0..nodes.len())
                .filter(|&id| nodes[id].inputs.is_empty() && wanted[id])
                .collect(),
            running: 0,
            stopped: false,
            unread: consumers.iter().map(Vec::len).collect(),
        };
        Self {
            nodes,
            consumers,
            keep_going,
            board: Mutex::new(board),
            wake: Condvar::new(),
        }
    }

    /// The next node to run and its inputs' records, waiting while others run; `None` once nothing is left (or
    /// Ctrl-C stopped new starts and nothing runs).
    fn next(&self) -> Option<(usize, Vec<Record>)> {
        let mut b = self
            .board
            .lock()
            .expect("no worker panics holding the board");
        let id = loop {
            if crate::interrupt::requested() && !b.stopped {
                b.stopped = true;
                b.ready.clear();
            }
            if let Some(id) = b.ready.pop_front() {
                break id;
            }
            if b.running == 0 {
                return None;
            }
            b = self
                .wake
                .wait(b)
                .expect("no worker panics holding the board");
        };
        b.running += 1;
        let inputs = self.nodes[id]
            .inputs
            .iter()
            .map(|&n| {
                b.results[n]
                    .as_ref()
                    .and_then(|r| r.record.clone())
                    .expect("inputs succeeded")
            })
            .collect();
        Some((id, inputs))
    }

    /// Records a finished node: frees the artifacts nothing needs any more, readies its consumers when it
    /// succeeded, and stops new starts when it failed (unless `keep_going`).
    fn finish(
        &self,
        id: usize,
        result: StageResult,
        artifacts: &Mutex<HashMap<usize, Arc<Artifact>>>,
    ) {
        let mut b = self
            .board
            .lock()
            .expect("no worker panics holding the board");
        // Artifacts are held in memory only while a stage still needs them: a large corpus exists once or twice at
        // a time, not once per stage.
        {
            let mut held = artifacts.lock().expect("no panics holding artifacts");
            for &input in &self.nodes[id].inputs {
                b.unread[input] -= 1;
                if b.unread[input] == 0 {
                    held.remove(&input);
                }
            }
            if self.consumers[id].is_empty() {
                held.remove(&id);
            }
        }
        let ok = matches!(result.status, Status::Cached | Status::Ran);
        b.results[id] = Some(result);
        b.running -= 1;
        if ok {
            for &c in &self.consumers[id] {
                b.waiting[c] -= 1;
                if b.waiting[c] == 0 && !b.stopped {
                    b.ready.push_back(c);
                }
            }
        } else if !self.keep_going {
            b.stopped = true;
            b.ready.clear();
        }
        self.wake.notify_all();
    }

    fn results(self) -> Vec<Option<StageResult>> {
        self.board
            .into_inner()
            .expect("no worker panics holding the board")
            .results
    }
}

/// One outcome per target, its stages in run order; a stage that never ran is `NotRun`.
fn outcomes(
    targets: &[Target],
    nodes: &[Node],
    node_of: &[Vec<usize>],
    results: Vec<Option<StageResult>>,
) -> Vec<Outcome> {
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
