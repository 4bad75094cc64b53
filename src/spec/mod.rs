//! The experiment file, checked before anything runs: TOML → [`sweep::Study`] (the points of a sweep) →
//! [`experiment::Experiment`] → [`graph::Graph`] of stages, with every problem a located [`diagnostic::Diagnostic`];
//! [`schema`] describes the same file for editors.

pub(crate) mod diagnostic;
pub mod experiment;
pub(crate) mod graph;
pub(crate) mod resources;
pub mod schema;
pub mod sweep;
