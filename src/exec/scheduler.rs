//! The scheduler: runs the merged graph's nodes on up to `jobs` threads as their inputs finish, fail-fast or
//! `keep_going`, and collects one [`Outcome`] per target. Each node is fingerprinted from its inputs' content, taken
//! from the cache when it is there (the one [`decide`] function `status` uses too), else handed to the placement,
//! which computes and stores it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use super::events::{Event, Reporter, Share};
use super::node::{Job, Shared};
use super::outcome::{Outcome, StageResult, Status};
use super::plan::{self, Decision, Node, Probe, decide, fingerprint_of};
use super::request::{Options, Target};
use crate::artifact::Artifact;
use crate::fingerprint::InputHash;
use crate::store::{Cache, Record};

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
                    let result = execute(&ctx, id, &inputs);
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

/// Runs node `id` (its inputs' records `input_records`): cached, or computed by the placement.
pub(super) fn execute(run: &Shared<'_>, id: usize, input_records: &[Record]) -> StageResult {
    let node = &run.nodes[id];
    let target = &run.targets[node.target];
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
    if let (Some(only), Some(expected)) = (&run.opts.only, &run.opts.expected)
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
    run.cache.pin(&key);

    let decision = decide(
        run.cache,
        &target.identity,
        &spec.name,
        spec.kind(),
        &fp,
        node.forced.as_ref(),
        Probe::Take,
    );
    // The lookup is where a required remote is found unusable: nothing goes on without it.
    if let Some(why) = run.cache.remote_refused() {
        return result.with_remote_error(anyhow::anyhow!(why));
    }
    match decision {
        Decision::Cached { record, fetched } => run.found(id, &fp, *record, fetched, result),
        Decision::Run { reasons, damaged } => {
            if let Some(problem) = &damaged {
                run.emit(Event::Damaged {
                    stage: run.stage(id),
                    problem,
                });
            }
            let job = Job {
                id,
                fp: &fp,
                inputs: input_records,
                external,
                reasons,
            };
            super::placement::of(&run.opts.executor).compute(run, job, result)
        }
    }
}
