//! Exit codes, in one place; docs/src/reference/exit-codes.md lists the same table, keep the two in step.

/// Everything ran (or was cached).
pub const SUCCESS: u8 = 0;
/// A stage failed; the report says which and why.
pub const STAGE_FAILED: u8 = 1;
/// The experiment file or the command line is invalid; nothing ran. (clap uses 2 for usage errors too.)
pub const INVALID_EXPERIMENT: u8 = 2;
/// The cache or report directory could not be used (permissions, disk full).
pub const ENVIRONMENT: u8 = 3;
/// Stopped by Ctrl-C (128 + SIGINT, as shells report it); what finished is cached, the same command continues.
pub const INTERRUPTED: u8 = 130;
