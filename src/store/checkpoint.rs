//! Checkpoints: where a long stage saves its progress while it runs (`v1/checkpoints/<key>.bin`).

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::Cache;
use crate::artifact::Artifact;
use crate::fingerprint::Hash;
use crate::paths::write_atomic_via;

/// Where a long stage saves its progress while it runs, so an interrupted or killed run continues from there: one file
/// `v1/checkpoints/<fingerprint>.bin` holding the blake3 hash of the artifact bytes, then those bytes, replaced whole
/// by a rename each time. It is removed once the stage's entry is stored.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    path: PathBuf,
    /// The cache's `tmp/`: a save killed half-way leaves its partial file there, where `cache gc` clears it.
    staging: PathBuf,
}

impl Checkpoint {
    pub fn save(&self, artifact: &Artifact) -> Result<()> {
        let bytes = artifact.to_bytes();
        write_atomic_via(
            &self.staging,
            &self.path,
            &[Hash::of(&bytes).as_bytes(), &bytes],
            true,
        )
        .context("cannot write a checkpoint")
    }

    /// The saved artifact, if there is one and it is intact; a damaged one is removed.
    pub fn load(&self) -> Option<Artifact> {
        let bytes = fs::read(&self.path).ok()?;
        let intact = bytes.len() >= 32 && Hash::of(&bytes[32..]).as_bytes()[..] == bytes[..32];
        match intact
            .then(|| Artifact::from_bytes(&bytes[32..]).ok())
            .flatten()
            .filter(|a| a.validate().is_ok())
        {
            Some(a) => Some(a),
            None => {
                self.clear();
                None
            }
        }
    }

    pub fn clear(&self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl Cache {
    /// The checkpoint slot of the stage run with this fingerprint.
    pub fn checkpoint(&self, key: &Hash) -> Checkpoint {
        Checkpoint {
            path: self.checkpoints_dir().join(format!("{}.bin", key.hex())),
            staging: self.tmp_dir(),
        }
    }
}
