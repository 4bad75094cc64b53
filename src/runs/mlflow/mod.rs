//! Report folders as MLflow runs, through MLflow's REST API (`/api/2.0/mlflow/…`, artifacts through the server's
//! proxy, `/api/2.0/mlflow-artifacts/…`): what a run becomes ([`RunExport`], from a finished report or from a run
//! still in progress) and the client that writes it, idempotently.
//!
//! One report folder is one MLflow run in the experiment named after the pipeline experiment, found again by its
//! tag `pipeline.key` (the folder's path under the reports directory). Exporting again logs only what the MLflow
//! run lacks: parameters it does not have, the epochs after its last logged step, artifacts it does not have at
//! that size. A run is marked `pipeline.export = complete` only once everything is there; until then it says
//! `partial`, in the MLflow UI too, and the next export finishes it.
//!
//! `run.rs` makes the [`RunExport`] of a report folder; `client.rs` is the HTTP client that writes it. This file is
//! only the front door.

mod client;
mod run;

pub use client::{Client, Done, MlflowError};
pub use run::RunExport;
