//! The history that explains misses: `v1/stages/<experiment>/<stage>.json` holds the fingerprint each stage of an
//! experiment last ran (or was found cached) with, so the next miss can say what changed. Never used to decide
//! whether something is cached.

use std::fs;
use std::path::PathBuf;

use anyhow::Result;

use super::cache::Cache;
use crate::fingerprint::Fingerprint;
use crate::paths::write_atomic_via;

impl Cache {
    fn last_path(&self, experiment: &str, stage: &str) -> PathBuf {
        self.root
            .join("stages")
            .join(experiment)
            .join(format!("{stage}.json"))
    }

    /// The fingerprint `stage` of `experiment` last ran (or was found cached) with.
    pub fn last(&self, experiment: &str, stage: &str) -> Option<Fingerprint> {
        let text = fs::read(self.last_path(experiment, stage)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn set_last(&self, experiment: &str, stage: &str, fingerprint: &Fingerprint) -> Result<()> {
        let path = self.last_path(experiment, stage);
        let dir = path.parent().expect("has a parent");
        fs::create_dir_all(dir)?;
        // An experiment's folder may be a link someone left; never write through one that leads out of the cache.
        crate::paths::ensure_inside(&self.root.join("stages"), dir, "the cache directory")?;
        write_atomic_via(
            &self.tmp_dir(),
            &path,
            &[&serde_json::to_vec_pretty(fingerprint)?],
            false,
        )
    }
}
