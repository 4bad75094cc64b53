//! Running stages as Slurm jobs: the driver (`driver.rs`: `sbatch` command lines, the job description a node reads,
//! asking Slurm how a job stands, the check that the nodes share the cache directory), the follower that waits for
//! jobs (`follow.rs`), and the executor's Slurm placement (`placement.rs`: submit a stage's job, wait for it, collect
//! its result). This file is only the front door.

mod driver;
mod follow;
mod placement;

pub use driver::{
    JobArg, JobSpec, JobState, RemoteJob, Submitted, cancel, check_shared, sbatch_args, shown,
    state, submit, tail,
};
pub use follow::follow;
