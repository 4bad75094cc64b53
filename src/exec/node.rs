//! Running one node against the store: fingerprint it from its inputs' content, take it from the cache when it is
//! there (the one [`decide`] function `status` uses too), else hand it to the placement, which computes and stores it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::Result;

use super::events::{Event, Reporter, Share, StageRef};
use super::plan::{Decision, Node, Probe, decide, fingerprint_of};
use super::{Options, StageResult, Status, Target};
use crate::artifact::Artifact;
use crate::fingerprint::{Fingerprint, InputHash, Reason};
use crate::stages::{ExternalInputs, Resume};
use crate::store::{Cache, Checkpoint, Record};

/// One node to compute, as the scheduler hands it over.
pub(super) struct Job<'a> {
    pub(super) id: usize,
    pub(super) fp: &'a Fingerprint,
    /// The records of its inputs, in order.
    pub(super) inputs: &'a [Record],
    /// Its files outside the cache, read and hashed.
    pub(super) external: &'a ExternalInputs,
    /// Why it runs.
    pub(super) reasons: Vec<Reason>,
}

/// What executing a node needs: the run's nodes and targets, the store, and where events go.
pub(super) struct Shared<'a> {
    pub(super) targets: &'a [Target<'a>],
    pub(super) nodes: &'a [Node],
    /// How each node stands among the sweep's points.
    pub(super) shares: Vec<Share>,
    pub(super) cache: &'a Cache,
    pub(super) opts: &'a Options,
    pub(super) reporter: &'a dyn Reporter,
    /// Artifacts in memory, by node: computed here, or loaded once for the stages that read them.
    pub(super) artifacts: &'a Mutex<HashMap<usize, Arc<Artifact>>>,
}

impl Shared<'_> {
    /// The stage of node `id`, as events name it.
    pub(super) fn stage(&self, id: usize) -> StageRef<'_> {
        let node = &self.nodes[id];
        StageRef {
            name: &self.targets[node.target].experiment.graph.stages[node.stage].name,
            share: &self.shares[id],
        }
    }

    pub(super) fn emit(&self, event: Event<'_>) {
        self.reporter.event(event);
    }

    /// The node's entry is in the cache: take it. Recording that every member now stands at `fp` only explains later
    /// misses, so a cache that cannot record it (a read-only, shared, precomputed one) still serves the hit.
    pub(super) fn found(
        &self,
        id: usize,
        fp: &Fingerprint,
        record: Record,
        fetched: bool,
        mut result: StageResult,
    ) -> StageResult {
        if let Err(e) = self.remember(id, fp) {
            self.emit(Event::Unrecorded {
                stage: self.stage(id),
                error: &e,
            });
        }
        result.status = Status::Cached;
        result.fetched = fetched;
        result.record = Some(record);
        result
    }

    /// Records that every member of the node now stands at `fp`.
    pub(super) fn remember(&self, id: usize, fp: &Fingerprint) -> Result<()> {
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
    pub(super) fn load(&self, input: usize, record: &Record) -> Result<Arc<Artifact>> {
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
    pub(super) fn resume(
        &self,
        id: usize,
        fp: &Fingerprint,
        checkpoint: &Checkpoint,
    ) -> Option<Resume> {
        let node = &self.nodes[id];
        let target = &self.targets[node.target];
        let spec = &target.experiment.graph.stages[node.stage];
        let previous = self
            .cache
            .last(&target.identity, &spec.name)
            .filter(|old| spec.stage().resumable(old, fp))
            .and_then(|old| {
                self.cache.pin(&old.hash());
                self.cache.peek(&old.hash(), spec.kind().expect())
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
        self.emit(Event::Resuming {
            stage: self.stage(id),
        });
        Some(Resume {
            artifact: Arc::new(artifact),
            files: BTreeMap::new(),
        })
    }

    /// Runs node `id` (its inputs' records `input_records`): cached, or computed by the placement.
    pub(super) fn execute(&self, id: usize, input_records: &[Record]) -> StageResult {
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

        let decision = decide(
            self.cache,
            &target.identity,
            &spec.name,
            spec.kind(),
            &fp,
            node.forced.as_ref(),
            Probe::Take,
        );
        // The lookup is where a required remote is found unusable: nothing goes on without it.
        if let Some(why) = self.cache.remote_refused() {
            return result.with_remote_error(anyhow::anyhow!(why));
        }
        match decision {
            Decision::Cached { record, fetched } => self.found(id, &fp, *record, fetched, result),
            Decision::Run { reasons, damaged } => {
                if let Some(problem) = &damaged {
                    self.emit(Event::Damaged {
                        stage: self.stage(id),
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
                self.opts.executor.placement().compute(self, job, result)
            }
        }
    }
}
