//! The use cases behind the commands: what `pipeline` does, in terms of the layers below, with typed results that
//! the CLI turns into text and exit codes.

pub mod bench;
pub mod maintenance;
