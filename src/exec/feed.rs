//! Work handed to a run while it is under way: a [`Feed`] releases one target at a time as the scheduler's workers
//! free up, and hears each target's outcome as soon as its stages are done. This is how a pruned search runs its
//! trials' rungs on the one scheduler: which training comes next depends on what the earlier ones reported.

use super::outcome::Outcome;

/// A target to run now: its index among the run's targets, and with `only` just that stage and what it needs (a
/// rung below the last trains, and samples nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub target: usize,
    pub only: Option<String>,
}

/// What a feed has for a free worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Run(Release),
    /// Nothing until a target in flight reports.
    Wait,
    /// Nothing more, ever.
    Over,
}

/// The source of a run's targets. Called with the scheduler's lock held, so both calls must be quick (no training,
/// no waiting on the scheduler).
pub trait Feed: Sync {
    /// The next target for a free worker.
    fn next_job(&self) -> Next;
    /// Released target `target` is done: every stage it wanted finished or cannot run. `cut`: the run stopped (Ctrl-C,
    /// or a failure elsewhere without `--keep-going`) before it was done, so its outcome is partial.
    fn report(&self, target: usize, outcome: Outcome, cut: bool);
}
