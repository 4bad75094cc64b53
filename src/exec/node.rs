//! What running a node needs and does with the store, shared by the scheduler and the placements: the run's nodes
//! and targets ([`Shared`]), a found result recorded, inputs loaded (once, while needed), a resumable checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::Result;

use super::events::{Event, Reporter, Share, StageRef};
use super::outcome::{StageResult, Status};
use super::plan::Node;
use super::request::{Options, Target};
use crate::artifact::Artifact;
use crate::fingerprint::{Fingerprint, Reason};
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
}
