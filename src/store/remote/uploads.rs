//! Multipart uploads that outlive their writer. S3 keeps the parts of an upload nobody completed or aborted — a
//! process killed mid-way, a remote that died under it — unseen by listings and billed, until someone aborts it.
//! So each multipart upload is named by a marker object, `v1/uploads/<object>.<upload>.json` (the object's path and
//! the upload's id), written before its first part and deleted once the upload is complete or aborted; `cache gc
//! --remote` aborts the uploads whose markers are older than its grace. A `file://` remote stages a multipart upload
//! as `<object>#<n>` beside the object; gc removes the stale ones.

use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt as _, PutPayload};

use super::{Failure, PART, Remote, TRANSFERS};
use crate::fingerprint::Hash;

/// What a marker holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Marker {
    path: String,
    id: String,
}

/// Markers are a few hundred bytes; anything larger is not one.
const MARKER_LIMIT: u64 = 64 << 10;

impl Remote {
    pub(crate) fn uploads_prefix(&self) -> ObjPath {
        self.root.clone().join("uploads")
    }

    /// Uploads `bytes` to `path` in [`PART`]-sized parts through S3's multipart API, its marker written first and
    /// deleted once it is complete, or aborted after a failure (left for gc when even the abort fails).
    pub(super) async fn put_parts(
        &self,
        s3: &dyn MultipartStore,
        path: &ObjPath,
        bytes: PutPayload,
        what: &str,
    ) -> Result<(), Failure> {
        let id = s3
            .create_multipart(path)
            .await
            .map_err(|e| self.classify(what, e))?;
        let name = path.filename().unwrap_or("object");
        let marker_path = self.uploads_prefix().join(format!(
            "{name}.{}.json",
            &Hash::of(id.as_bytes()).hex()[..16]
        ));
        let marker = Marker {
            path: path.to_string(),
            id: id.clone(),
        };
        let text = serde_json::to_vec(&marker).expect("a marker is plain strings");
        let sent = match self.store.put(&marker_path, text.into()).await {
            Ok(_) => self.send_parts(s3, path, &id, bytes).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => {
                let _ = self.store.delete(&marker_path).await;
                Ok(())
            }
            Err(e) => {
                if s3.abort_multipart(path, &id).await.is_ok() {
                    let _ = self.store.delete(&marker_path).await;
                }
                Err(self.classify(what, e))
            }
        }
    }

    /// The parts, a few at a time, then the completion.
    async fn send_parts(
        &self,
        s3: &dyn MultipartStore,
        path: &ObjPath,
        id: &String,
        bytes: PutPayload,
    ) -> object_store::Result<()> {
        let whole: bytes::Bytes = bytes.into();
        let parts = whole.len().div_ceil(PART);
        self.counters
            .requests
            .fetch_add(3 + parts as u64, std::sync::atomic::Ordering::Relaxed);
        let ids: Vec<PartId> = futures::stream::iter(0..parts)
            .map(|i| {
                let part = whole.slice(i * PART..((i + 1) * PART).min(whole.len()));
                s3.put_part(path, id, i, part.into())
            })
            .buffered(TRANSFERS)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<object_store::Result<_>>()?;
        s3.complete_multipart(path, id, ids).await.map(|_| ())
    }

    /// Aborts the multipart uploads older than `grace` that their writers left behind (S3), or removes their
    /// staged files (`file://`); with `dry_run` only counts them. How many there were.
    pub(crate) fn abort_stale_uploads(
        &self,
        grace: Duration,
        dry_run: bool,
    ) -> anyhow::Result<usize> {
        if let Some(dir) = &self.local_dir {
            return stale_staged_files(&dir.join(self.blobs_prefix().as_ref()), grace, dry_run);
        }
        let Some(s3) = &self.multipart else {
            return Ok(0);
        };
        let now = jiff::Timestamp::now().as_second();
        let mut stale = 0;
        for meta in self.list(&self.uploads_prefix())? {
            // Seconds are enough for a grace of minutes or days; a marker from the future is young.
            let age = now.saturating_sub(meta.last_modified.timestamp());
            if u64::try_from(age).map_or(true, |a| a < grace.as_secs()) {
                continue;
            }
            stale += 1;
            if dry_run {
                continue;
            }
            let marker = self
                .block_on(self.get(&meta.location, MARKER_LIMIT))
                .ok()
                .and_then(|t| serde_json::from_slice::<Marker>(&t).ok());
            if let Some(m) = marker {
                let path = ObjPath::from(m.path);
                let aborted = self.block_on(async {
                    match s3.abort_multipart(&path, &m.id).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                        Err(e) => {
                            Err(self.classify(&format!("aborting the upload of `{path}`"), e))
                        }
                    }
                });
                if aborted.is_err() {
                    anyhow::bail!(
                        "cannot abort a stale upload on the remote `{}` ({})",
                        self.config.url,
                        self.down().unwrap_or("it refused")
                    );
                }
            }
            // Aborted, gone already, or not a marker at all: either way nothing needs it.
            let _ = self.block_on(self.delete(&meta.location));
        }
        Ok(stale)
    }
}

/// The staged multipart files (`<object>#<n>`) in `dir` older than `grace`, removed unless `dry_run`.
fn stale_staged_files(
    dir: &std::path::Path,
    grace: Duration,
    dry_run: bool,
) -> anyhow::Result<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut stale = 0;
    for entry in entries.flatten() {
        let staged = entry.file_name().to_string_lossy().contains('#');
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age >= grace);
        if !(staged && old && entry.file_type().is_ok_and(|t| t.is_file())) {
            continue;
        }
        stale += 1;
        if !dry_run {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(stale)
}
