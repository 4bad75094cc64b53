//! Checkpoints: where a long stage saves its progress while it runs (`v1/checkpoints/<key>.bin`), and, with a
//! remote, on the remote too, so a training killed on one machine resumes on another.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::cache::Cache;
use super::remote::Remote;
use crate::artifact::Artifact;
use crate::fingerprint::Hash;
use crate::paths::write_atomic_via;

/// What a checkpoint file starts with (the format's name and version).
const MAGIC: &[u8; 8] = b"PLCKPT02";

/// Where a long stage saves its progress while it runs, so an interrupted or killed run continues from there: one file
/// `v1/checkpoints/<fingerprint>.bin` holding [`MAGIC`], the fingerprint it belongs to, the blake3 hash of the artifact
/// bytes, then those bytes, replaced whole by a rename each time. It is removed once the stage's entry is stored.
///
/// The fingerprint inside is what binds it: a file is a name anyone can copy over, and another training's checkpoint
/// of the same shape would otherwise be resumed as this one's, and its model cached and pushed under this key.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    path: PathBuf,
    /// The cache's `tmp/`: a save killed half-way leaves its partial file there, where `cache gc` clears it.
    staging: PathBuf,
    /// The fingerprint of the stage it belongs to.
    key: Hash,
    /// The remote it is also saved to.
    remote: Option<Arc<Remote>>,
}

impl Checkpoint {
    /// Saves locally, then (waiting for it: the next epoch may be on another machine) on the remote. A remote that
    /// fails is said once and skipped from then on; the local checkpoint is what counts here.
    pub fn save(&self, artifact: &Artifact) -> Result<()> {
        let bytes = artifact.to_bytes();
        let hash = Hash::of(&bytes);
        let parts: [&[u8]; 4] = [MAGIC, self.key.as_bytes(), hash.as_bytes(), &bytes];
        write_atomic_via(&self.staging, &self.path, &parts, true)
            .context("cannot write a checkpoint")?;
        if let Some(remote) = &self.remote {
            let framed = parts.concat();
            let _ = remote.block_on(remote.put(&remote.checkpoint_path(&self.key), framed, false));
        }
        Ok(())
    }

    /// The saved artifact, if there is one and it is intact: the local one, else the remote's (kept locally once
    /// checked). A damaged one is removed.
    pub fn load(&self) -> Option<Artifact> {
        if let Some(a) = fs::read(&self.path).ok().and_then(|b| self.decode(&b)) {
            return Some(a);
        }
        self.clear_local();
        let remote = self.remote.as_ref()?;
        let path = remote.checkpoint_path(&self.key);
        // Streamed to disk, not held twice in memory; what is on disk is read back once, as a local one is.
        let staged = tempfile::NamedTempFile::new_in(&self.staging).ok()?;
        let streamed = remote.block_on(remote.download_to(&path, staged.path(), u64::MAX));
        let bytes = streamed.ok().and_then(|_| fs::read(staged.path()).ok())?;
        match self.decode(&bytes) {
            Some(a) => {
                let _ = write_atomic_via(&self.staging, &self.path, &[&bytes], true);
                Some(a)
            }
            None => {
                let _ = remote.block_on(remote.delete(&path));
                None
            }
        }
    }

    /// The artifact of a checkpoint file's bytes, if they are this stage's (the magic, then this fingerprint), intact
    /// (the blake3 of the rest, then the rest) and valid.
    fn decode(&self, bytes: &[u8]) -> Option<Artifact> {
        let rest = bytes.strip_prefix(&MAGIC[..])?;
        let rest = rest.strip_prefix(&self.key.as_bytes()[..])?;
        let (hash, artifact) = rest.split_at_checked(32)?;
        (Hash::of(artifact).as_bytes()[..] == *hash)
            .then(|| Artifact::from_bytes(artifact).ok())
            .flatten()
            .filter(|a| a.validate().is_ok())
    }

    fn clear_local(&self) {
        let _ = fs::remove_file(&self.path);
    }

    /// Removes it here and (in the background) on the remote: the stage finished, or starts over.
    pub fn clear(&self) {
        self.clear_local();
        if let Some(remote) = &self.remote {
            let path = remote.checkpoint_path(&self.key);
            let r = remote.clone();
            remote.spawn(async move {
                let _ = r.delete(&path).await;
                Ok(())
            });
        }
    }
}

impl Cache {
    /// The checkpoint slot of the stage run with this fingerprint.
    pub fn checkpoint(&self, key: &Hash) -> Checkpoint {
        Checkpoint {
            path: self.checkpoints_dir().join(format!("{}.bin", key.hex())),
            staging: self.tmp_dir(),
            key: *key,
            remote: self
                .remote
                .as_ref()
                .filter(|r| r.config.push != super::remote::PushPolicy::None)
                .cloned(),
        }
    }
}
