//! Planning: a sweep's stages merged into unique nodes, what `--force` re-runs, and the one decision — cached, or
//! run and why — that both `pipeline run` and `pipeline status` make.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::request::{Options, Target};
use crate::fingerprint::{Fingerprint, Hash, InputHash, Reason, explain};
use crate::spec::experiment::Experiment;
use crate::stages::{ExternalInputs, StageKind};
use crate::store::{Cache, Lookup, Record};

/// Whether a stage is cached, and if not, why it must run.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Its entry is in the cache and intact (`fetched`: it came from the remote, or for `status`, is there).
    Cached { record: Box<Record>, fetched: bool },
    /// It must run, for these reasons. `damaged`: why the entry that was there could not be used.
    Run {
        reasons: Vec<Reason>,
        damaged: Option<String>,
    },
}

/// How [`decide`] may touch the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Only read (`pipeline status`).
    Look,
    /// Also remove a damaged entry, since the caller recomputes it (`pipeline run`).
    Take,
}

/// Cached, or run and why: for a stage `stage` of the experiment kept under `identity`, whose fingerprint is `fp`
/// and which `--force` may have named (`forced`).
pub(crate) fn decide(
    cache: &Cache,
    identity: &str,
    stage: &str,
    kind: StageKind,
    fp: &Fingerprint,
    forced: Option<&Reason>,
    probe: Probe,
) -> Decision {
    if let Some(reason) = forced {
        return Decision::Run {
            reasons: vec![reason.clone()],
            damaged: None,
        };
    }
    let key = fp.hash();
    let miss = || Decision::Run {
        reasons: miss_reasons(cache, identity, stage, fp),
        damaged: None,
    };
    match probe {
        Probe::Look => match cache.peek(&key, kind.expect()) {
            Some(record) => Decision::Cached {
                record: Box::new(record),
                fetched: false,
            },
            None => match cache.peek_remote(&key, Some(kind.report_files())) {
                Some(record) => Decision::Cached {
                    record: Box::new(record),
                    fetched: true,
                },
                None => miss(),
            },
        },
        Probe::Take => match cache.lookup(&key, kind.expect()) {
            Lookup::Hit(record) => Decision::Cached {
                record,
                fetched: false,
            },
            Lookup::Fetched(record) => Decision::Cached {
                record,
                fetched: true,
            },
            Lookup::Miss => miss(),
            Lookup::Damaged(problem) => Decision::Run {
                reasons: vec![Reason::EntryMissing],
                damaged: Some(problem),
            },
        },
    }
}

/// Why a stage must run, given that its fingerprint `fp` has no intact entry.
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
pub(super) fn forced(exp: &Experiment, names: &[String]) -> HashMap<usize, Reason> {
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
pub(super) struct Node {
    /// The first target that has it, and the stage's index there; its spec and report folder are used.
    pub(super) target: usize,
    pub(super) stage: usize,
    pub(super) inputs: Vec<usize>,
    /// Every (target, stage index) this node stands for.
    pub(super) members: Vec<(usize, usize)>,
    pub(super) forced: Option<Reason>,
    /// The stage's files outside the cache (MIDI files, a SoundFont), or why they cannot be read.
    pub(super) external: std::result::Result<ExternalInputs, String>,
}

/// What makes two points' stages one node: the stage's kind, version, parameters and input *nodes*, and its
/// external files (or, when they cannot be read, the error: the same failure is one node too).
#[derive(Debug, Clone, PartialEq, Eq, std::hash::Hash)]
struct NodeKey {
    stage: Hash,
    external: std::result::Result<Hash, String>,
}

impl NodeKey {
    /// A digest of the key, standing for this node among the inputs of the nodes after it.
    fn digest(&self) -> Hash {
        let external = match &self.external {
            Ok(files) => format!("files:{files}"),
            Err(e) => format!("unreadable:{e}"),
        };
        Hash::of(format!("{}\n{external}", self.stage).as_bytes())
    }
}

/// The targets' stages merged into unique nodes (in an order where inputs come first), and for each target the
/// node of each of its stages.
pub(super) fn merge(targets: &[Target], opts: &Options) -> (Vec<Node>, Vec<Vec<usize>>) {
    let mut nodes: Vec<Node> = Vec::new();
    let mut keys: Vec<Hash> = Vec::new();
    let mut by_key: HashMap<NodeKey, usize> = HashMap::new();
    // MIDI files are read and hashed once per source, however many points (and, in a search, runs) use it.
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
            let external = opts.externals.get(ext_key, || {
                stage
                    .external_inputs(&exp.base_dir)
                    .map_err(|e| format!("{e:#}"))
            });
            let inputs: Vec<usize> = exp.graph.inputs_of(i).iter().map(|j| map[*j]).collect();
            let stage_key = Fingerprint {
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
                files: Default::default(),
                files_root: String::new(),
            }
            .hash_with_root();
            let files_key = external.as_ref().map_err(Clone::clone).map(|x| {
                Fingerprint {
                    kind: String::new(),
                    version: 0,
                    params: Default::default(),
                    inputs: Vec::new(),
                    files: x.files.clone(),
                    files_root: x.display_root.clone(),
                }
                .hash_with_root()
            });
            let key = NodeKey {
                stage: stage_key,
                external: files_key,
            };
            let digest = key.digest();
            let id = *by_key.entry(key).or_insert_with(|| {
                nodes.push(Node {
                    target: t,
                    stage: i,
                    inputs,
                    members: Vec::new(),
                    forced: None,
                    external,
                });
                keys.push(digest);
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

/// A stage's fingerprint from its configuration and its inputs' content hashes.
pub(super) fn fingerprint_of(
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
        match decide(
            cache,
            identity,
            &spec.name,
            spec.kind(),
            &fp,
            None,
            Probe::Look,
        ) {
            Decision::Cached { record, fetched } => {
                line.cached = true;
                line.reason = if fetched { "cached (remote)" } else { "cached" }.into();
                hashes.insert(i, record.output.hash);
            }
            Decision::Run { reasons, .. } => {
                line.reason = format!("would run: {}", explain(&reasons));
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
