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
//! against the store), `placement` (where a missing stage is computed: here, or as a Slurm job by `slurm::placement`),
//! [`events`] (what the run reports; the executor never prints), `scheduler`, and what a run is asked (`request`) and
//! what it did (`outcome`). This file is only the front door.

pub(crate) mod events;
mod feed;
mod node;
mod outcome;
mod placement;
mod plan;
pub mod progress;
mod request;
mod scheduler;
pub(crate) mod slurm;

pub use feed::{Feed, Next, Release};
pub use outcome::{Cause, Outcome, Status};
pub use plan::{PlanLine, plan, variants};
pub use request::{Executor, Options, SlurmPlacement, Target};
pub use scheduler::{run, run_fed};
