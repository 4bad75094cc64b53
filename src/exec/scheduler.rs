//! The scheduler: runs the merged graph's nodes on up to `jobs` threads as their inputs finish, fail-fast or
//! `keep_going`, and collects one [`Outcome`] per target. Each node is fingerprinted from its inputs' content, taken
//! from the cache when it is there (the one [`decide`] function `status` uses too), else handed to the placement,
//! which computes and stores it. Targets are either all wanted from the start ([`run`]) or released one at a time by
//! a [`Feed`] as workers free up ([`run_fed`], a pruned search).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use super::events::{Event, Reporter, Share};
use super::feed::{Feed, Next, Release};
use super::node::{Job, Shared};
use super::outcome::{Outcome, StageResult, Status};
use super::plan::{self, Decision, Node, Probe, decide, fingerprint_of};
use super::request::{Options, Target};
use crate::artifact::Artifact;
use crate::fingerprint::InputHash;
use crate::store::{Cache, Record};

struct Board {
    results: Vec<Option<StageResult>>,
    /// Nodes some released target needs.
    wanted: Vec<bool>,
    /// The wanted consumers of each node.
    consumers: Vec<Vec<usize>>,
    /// Inputs each wanted node still waits for.
    waiting: Vec<usize>,
    /// Wanted nodes that can never run: an input failed, or could not run itself.
    blocked: Vec<bool>,
    ready: VecDeque<usize>,
    running: usize,
    stopped: bool,
    /// Consumers of each node that have not finished yet.
    unread: Vec<usize>,
    /// Targets a feed released whose outcome it has not heard yet, with the nodes each wants.
    flights: Vec<(usize, Vec<usize>)>,
    /// The feed releases nothing more (or there is none).
    over: bool,
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
    let scheduler = Scheduler::new(&nodes, &node_of, targets, opts, None);
    {
        let mut b = scheduler.lock();
        for target in 0..targets.len() {
            let only = opts.only.clone();
            scheduler.release(&mut b, &Release { target, only });
        }
    }
    work(&scheduler, cache, opts, reporter);
    scheduler.outcomes()
}

/// Runs the targets `feed` releases, at most `opts.jobs` of them in flight, on the same workers and with the same
/// rules as [`run`]: a stage that several released targets share runs once. Each target's outcome goes to the feed.
pub fn run_fed(
    targets: &[Target],
    feed: &dyn Feed,
    cache: &Cache,
    opts: &Options,
    reporter: &dyn Reporter,
) {
    let (nodes, node_of) = plan::merge(targets, opts);
    let scheduler = Scheduler::new(&nodes, &node_of, targets, opts, Some(feed));
    work(&scheduler, cache, opts, reporter);
}

/// The workers: each takes the next ready node, executes it and records it, until nothing is left.
fn work(scheduler: &Scheduler<'_>, cache: &Cache, opts: &Options, reporter: &dyn Reporter) {
    let artifacts: Mutex<HashMap<usize, Arc<Artifact>>> = Mutex::new(HashMap::new());
    let ctx = Shared {
        targets: scheduler.targets,
        nodes: scheduler.nodes,
        shares: shares(scheduler.nodes, scheduler.targets),
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
}

/// The nodes a target wants, in an order where inputs come first: all of its stages, or with `only` that stage and
/// what it needs.
fn wanted_by(target: &Target, nodes_of_target: &[usize], only: Option<&str>) -> Vec<usize> {
    let graph = &target.experiment.graph;
    let mut stages = vec![only.is_none(); graph.stages.len()];
    if let Some(name) = only {
        let mut todo: Vec<usize> = (0..graph.stages.len())
            .filter(|&i| graph.stages[i].name == name)
            .collect();
        while let Some(i) = todo.pop() {
            if !stages[i] {
                stages[i] = true;
                todo.extend(graph.inputs_of(i));
            }
        }
    }
    let mut ids: Vec<usize> = (0..stages.len())
        .filter(|&i| stages[i])
        .map(|i| nodes_of_target[i])
        .collect();
    // Node ids are made inputs first (`plan::merge`).
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Whom each node's result belongs to, for the events: one sweep point, several, or a plain experiment. The targets
/// of one point (a search's rungs) count once.
fn shares(nodes: &[Node], targets: &[Target]) -> Vec<Share> {
    nodes
        .iter()
        .map(|node| {
            let labels = points_of(node, targets);
            match labels.len() {
                1 if !labels[0].is_empty() => Share::Point(labels[0].clone()),
                n if n > 1 => Share::SharedBy(labels),
                _ => Share::Alone,
            }
        })
        .collect()
}

/// The labels of the points a node stands for, each once, in target order.
fn points_of(node: &Node, targets: &[Target]) -> Vec<String> {
    let mut seen = HashSet::new();
    node.members
        .iter()
        .map(|&(t, _)| &targets[t].label)
        .filter(|label| seen.insert(label.as_str()))
        .cloned()
        .collect()
}

/// How many stages of points a node stands for: a stage two points share counts twice, the same stage of one point's
/// targets (a search's rungs) once.
fn shared_by(nodes: &[Node], targets: &[Target]) -> Vec<usize> {
    nodes
        .iter()
        .map(|node| {
            let distinct: HashSet<(&str, usize)> = node
                .members
                .iter()
                .map(|&(t, i)| (targets[t].label.as_str(), i))
                .collect();
            distinct.len()
        })
        .collect()
}

/// Hands ready nodes to the workers, releases a feed's targets and records what they finish, under one lock.
struct Scheduler<'a> {
    nodes: &'a [Node],
    node_of: &'a [Vec<usize>],
    targets: &'a [Target<'a>],
    /// Per node, for the outcomes: see [`shared_by`].
    shared_by: Vec<usize>,
    keep_going: bool,
    feed: Option<&'a dyn Feed>,
    /// Targets a feed may have in flight at once.
    flight_limit: usize,
    board: Mutex<Board>,
    wake: Condvar,
}

impl<'a> Scheduler<'a> {
    /// A scheduler with nothing wanted yet.
    fn new(
        nodes: &'a [Node],
        node_of: &'a [Vec<usize>],
        targets: &'a [Target<'a>],
        opts: &Options,
        feed: Option<&'a dyn Feed>,
    ) -> Self {
        let n = nodes.len();
        let board = Board {
            results: vec![None; n],
            wanted: vec![false; n],
            consumers: vec![Vec::new(); n],
            waiting: vec![0; n],
            blocked: vec![false; n],
            ready: VecDeque::new(),
            running: 0,
            stopped: false,
            unread: vec![0; n],
            flights: Vec::new(),
            over: feed.is_none(),
        };
        Self {
            nodes,
            node_of,
            targets,
            shared_by: shared_by(nodes, targets),
            keep_going: opts.keep_going,
            feed,
            flight_limit: opts.jobs.max(1),
            board: Mutex::new(board),
            wake: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board
            .lock()
            .expect("no worker panics holding the board")
    }

    /// Wants the nodes `release` names, readying those whose inputs are done; returns them.
    fn release(&self, b: &mut Board, release: &Release) -> Vec<usize> {
        let t = release.target;
        let ids = wanted_by(&self.targets[t], &self.node_of[t], release.only.as_deref());
        for &id in &ids {
            if b.wanted[id] {
                continue;
            }
            b.wanted[id] = true;
            let mut waiting = 0;
            for &input in &self.nodes[id].inputs {
                b.consumers[input].push(id);
                b.unread[input] += 1;
                match &b.results[input] {
                    Some(r) if succeeded(r) => {}
                    Some(_) => b.blocked[id] = true,
                    None if b.blocked[input] => b.blocked[id] = true,
                    None => waiting += 1,
                }
            }
            b.waiting[id] = waiting;
            if waiting == 0 && !b.blocked[id] && !b.stopped {
                b.ready.push_back(id);
            }
        }
        ids
    }

    /// The next node to run and its inputs' records, waiting while others run; `None` once nothing is left (or
    /// Ctrl-C stopped new starts and nothing runs).
    fn next(&self) -> Option<(usize, Vec<Record>)> {
        let mut b = self.lock();
        let id = loop {
            if crate::interrupt::requested() && !b.stopped {
                b.stopped = true;
                b.ready.clear();
            }
            if let Some(id) = b.ready.pop_front() {
                break id;
            }
            if self.pull(&mut b) {
                continue;
            }
            if b.running == 0 {
                // Nothing runs, nothing is ready, and the feed (if any) has nothing: what is still in flight was cut.
                self.settle(&mut b, true);
                self.wake.notify_all();
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

    /// Asks the feed for a target when a worker is free and fewer than the limit are in flight; whether it released
    /// one.
    fn pull(&self, b: &mut Board) -> bool {
        let Some(feed) = self.feed else {
            return false;
        };
        if b.over || b.stopped || b.flights.len() >= self.flight_limit {
            return false;
        }
        match feed.next_job() {
            Next::Run(release) => {
                let ids = self.release(b, &release);
                b.flights.push((release.target, ids));
                // A target whose stages others already ran is done at once.
                self.settle(b, false);
                true
            }
            Next::Wait => false,
            Next::Over => {
                b.over = true;
                false
            }
        }
    }

    /// Tells the feed of every target in flight that is done (with `cut`, of every one: the run is over).
    fn settle(&self, b: &mut Board, cut: bool) {
        let Some(feed) = self.feed else {
            return;
        };
        let mut i = 0;
        while i < b.flights.len() {
            let done = b.flights[i]
                .1
                .iter()
                .all(|&id| b.results[id].is_some() || b.blocked[id]);
            if done || cut {
                let (t, wanted) = b.flights.swap_remove(i);
                let outcome = outcome(
                    t,
                    self.targets,
                    self.node_of,
                    &self.shared_by,
                    &b.results,
                    Some(&wanted),
                );
                feed.report(t, outcome, cut && !done);
            } else {
                i += 1;
            }
        }
    }

    /// Records a finished node: frees the artifacts nothing needs any more, readies its consumers when it
    /// succeeded, and stops new starts when it failed (unless `keep_going`).
    fn finish(
        &self,
        id: usize,
        result: StageResult,
        artifacts: &Mutex<HashMap<usize, Arc<Artifact>>>,
    ) {
        let mut b = self.lock();
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
            if b.consumers[id].is_empty() {
                held.remove(&id);
            }
        }
        let ok = succeeded(&result);
        b.results[id] = Some(result);
        b.running -= 1;
        if ok {
            for c in b.consumers[id].clone() {
                b.waiting[c] -= 1;
                if b.waiting[c] == 0 && !b.stopped {
                    b.ready.push_back(c);
                }
            }
        } else {
            block_downstream(&mut b, id);
            if !self.keep_going {
                b.stopped = true;
                b.ready.clear();
            }
        }
        self.settle(&mut b, false);
        self.wake.notify_all();
    }

    /// One outcome per target, once the workers are done.
    fn outcomes(self) -> Vec<Outcome> {
        let results = self
            .board
            .into_inner()
            .expect("no worker panics holding the board")
            .results;
        (0..self.targets.len())
            .map(|t| {
                outcome(
                    t,
                    self.targets,
                    self.node_of,
                    &self.shared_by,
                    &results,
                    None,
                )
            })
            .collect()
    }
}

/// Whether a node's result lets its consumers run.
fn succeeded(result: &StageResult) -> bool {
    matches!(result.status, Status::Cached | Status::Ran)
}

/// Marks everything wanted downstream of failed node `id` as never to run.
fn block_downstream(b: &mut Board, id: usize) {
    let mut todo = b.consumers[id].clone();
    while let Some(c) = todo.pop() {
        if !b.blocked[c] {
            b.blocked[c] = true;
            todo.extend(b.consumers[c].iter().copied());
        }
    }
}

/// Target `t`'s outcome, its stages in run order; a stage that never ran is `NotRun`. With `wanted` (a released
/// target's nodes, sorted), so is a stage it did not want: another target may have run it, but not for this one, and
/// its outcome must not depend on when that happened.
fn outcome(
    t: usize,
    targets: &[Target],
    node_of: &[Vec<usize>],
    shared_by: &[usize],
    results: &[Option<StageResult>],
    wanted: Option<&[usize]>,
) -> Outcome {
    let graph = &targets[t].experiment.graph;
    let stages = graph
        .order()
        .iter()
        .map(|&i| {
            let id = node_of[t][i];
            let spec = &graph.stages[i];
            let mut r = results[id]
                .clone()
                .filter(|_| wanted.is_none_or(|w| w.binary_search(&id).is_ok()))
                .unwrap_or_else(|| StageResult::new(&spec.name, spec.kind(), Status::NotRun));
            r.name = spec.name.clone();
            r.shared_by = shared_by[id].max(1);
            r.node = id;
            r
        })
        .collect();
    Outcome { stages }
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
