//! The use cases behind the commands, in terms of the layers below, with typed results that the CLI turns into
//! text and exit codes: [`run`] (run and exec-stage), [`inspect`] (status and graph), [`maintenance`] (cache
//! verify, du, gc), [`compare`], [`bench`], [`listen`] (the blind listening test). Every failure is one [`error::Error`], which knows its exit code.

pub mod bench;
pub mod compare;
pub mod error;
pub mod export;
pub mod inspect;
pub mod listen;
pub mod maintenance;
pub mod remote;
pub mod run;
pub mod search;

use std::path::Path;

use crate::spec::experiment::Override;
use crate::spec::sweep::Study;
use crate::store::{Cache, Remote, RemoteConfig};
use error::{Error, Result};

/// The experiment file with its `--set` overrides, checked: every point of its sweep.
pub fn load(file: &Path, set: &[String]) -> Result<Study> {
    Ok(Override::parse_all(set).and_then(|o| Study::load(file, &o))?)
}

/// The cache at `dir`, with `remote` behind it if given; an error says how to pass another.
pub fn open_cache(dir: &Path, remote: Option<&RemoteConfig>) -> Result<Cache> {
    let cache = Cache::open(dir).map_err(|e| {
        Error::environment(
            e,
            "pass a writable directory with `--cache-dir` or `PIPELINE_CACHE`",
        )
    })?;
    match remote {
        None => Ok(cache),
        Some(config) => {
            let remote = Remote::open(config.clone()).map_err(|e| {
                Error::environment(
                    e,
                    "pass `--remote s3://BUCKET/PREFIX` or `--remote file:///DIR` (or `PIPELINE_REMOTE`)",
                )
            })?;
            Ok(cache.with_remote(remote))
        }
    }
}

/// Identities under which each point's stage history is kept.
pub(crate) fn identity(study: &Study, label: &str) -> String {
    if label.is_empty() {
        study.name.clone()
    } else {
        format!("{}/{label}", study.name)
    }
}
