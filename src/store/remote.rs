//! The remote behind the local cache: an object store (`s3://bucket/prefix` on any S3-compatible server, or
//! `file:///dir`) that machines share results through, via the `object_store` crate.
//!
//! Layout under the URL's prefix: `v1/entries/<key>/record.json` (the commit point, written last with a create-only
//! put), `v1/blobs/<blake3 of the content>` (every file of every entry, content-addressed so two writers of one
//! entry can never overwrite each other's bytes, and identical files are stored once) and
//! `v1/checkpoints/<key>.bin` (a training in progress, replaced after each epoch).
//!
//! This module is the transport: paths, one tokio runtime, bounded parallel transfers, retries (object_store's, with
//! backoff), multipart for large files, the background uploads a run waits for at its end, and the one rule for an
//! unreachable remote: the first failure is said once, and from then on the run carries on with the local cache
//! alone. What an entry is and how it is checked stays in the cache (`store/mod.rs`, `store/sync.rs`).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart,
};

use crate::fingerprint::Hash;

mod uploads;

/// Files from this size go up in parts (S3 wants parts of at least 5 MiB).
const MULTIPART_FROM: usize = 16 << 20;
pub(super) const PART: usize = 8 << 20;
/// Transfers in flight at once, over all uploads and downloads of this process.
pub(super) const TRANSFERS: usize = 8;
/// Blobs from this size are looked for (one HEAD) before uploading them again.
const HEAD_BEFORE_PUT: usize = 1 << 20;
/// A record is a few kilobytes; a larger object where one should be is refused unread.
pub(crate) const RECORD_LIMIT: u64 = 1 << 20;

/// The longest a request may wait for the next bytes from the server, and the longest retries of one request may go
/// on: together they keep a stalled remote (one that accepts connections and never answers) under a minute.
const READ_TIMEOUT: Duration = Duration::from_secs(15);
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// Resolves once the user asked the process to stop (the flag is a plain atomic, so it is polled).
async fn interrupted() {
    while !crate::interrupt::requested() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Which stage kinds' results are uploaded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushPolicy {
    All,
    None,
    Kinds(BTreeSet<String>),
}

impl PushPolicy {
    /// The default: everything but audio, which is large and quick to render again from the sampled MIDI.
    pub fn default_kinds(all: &[&str]) -> Self {
        Self::Kinds(
            all.iter()
                .filter(|k| **k != "render")
                .map(|k| k.to_string())
                .collect(),
        )
    }

    pub fn allows(&self, kind: &str) -> bool {
        match self {
            Self::All => true,
            Self::None => false,
            Self::Kinds(kinds) => kinds.contains(kind),
        }
    }
}

/// How to reach the remote and what to send it.
#[derive(Clone)]
pub struct RemoteConfig {
    /// `s3://bucket/prefix` or `file:///absolute/dir`.
    pub url: String,
    pub push: PushPolicy,
    /// Entries larger than this (all files together) stay local.
    pub max_push_bytes: Option<u64>,
    /// An unreachable remote fails the run (exit 3) instead of being a warning.
    pub required: bool,
    /// Where its warnings go.
    pub notify: Notify,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &self.url)
            .field("push", &self.push)
            .field("max_push_bytes", &self.max_push_bytes)
            .field("required", &self.required)
            .finish()
    }
}

/// What a remote operation can end in, apart from success.
#[derive(Debug)]
pub(crate) enum Failure {
    NotFound,
    /// A create-only put found the object there.
    Exists,
    /// The remote cannot be used (unreachable, refused, misconfigured); already said once.
    Down,
    /// The object is larger than the reader's limit; it was not read further.
    TooLarge,
    /// Writing what came down to the local disk failed.
    Local(String),
}

/// What [`Remote::download_to`] wrote.
#[derive(Debug)]
pub(crate) struct Streamed {
    pub(crate) bytes: u64,
    /// The blake3 of the whole object; `None` when it was larger than the limit (and so not read whole).
    pub(crate) hash: Option<Hash>,
}

/// Requests and bytes, for `-v` and the benchmark.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) fetched_entries: AtomicU64,
    pub(crate) fetched_bytes: AtomicU64,
    pub(crate) pushed_entries: AtomicU64,
    pub(crate) pushed_bytes: AtomicU64,
}

/// What a run did with the remote, said at its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteSummary {
    pub url: String,
    pub requests: u64,
    pub fetched_entries: u64,
    pub fetched_bytes: u64,
    pub pushed_entries: u64,
    pub pushed_bytes: u64,
    /// Why the remote stopped being used, if it did.
    pub down: Option<String>,
    /// Uploads that failed, one line each.
    pub failed_uploads: Vec<String>,
    pub required: bool,
}

/// Warnings the remote gives while a run goes on (the CLI prints them); set by whoever opens the cache.
pub type Notify = Arc<dyn Fn(&str) + Send + Sync>;

pub struct Remote {
    pub(crate) config: RemoteConfig,
    store: Arc<dyn ObjectStore>,
    /// The same store's multipart API, where uploads are tracked ([`uploads`]): S3.
    multipart: Option<Arc<dyn object_store::multipart::MultipartStore>>,
    /// The directory of a `file://` remote.
    local_dir: Option<std::path::PathBuf>,
    /// `<prefix>/v1`.
    root: ObjPath,
    rt: tokio::runtime::Runtime,
    transfers: Arc<tokio::sync::Semaphore>,
    down: OnceLock<String>,
    uploads: Mutex<Vec<tokio::task::JoinHandle<std::result::Result<(), String>>>>,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.config.url)
            .finish()
    }
}

impl Remote {
    /// Connects nothing yet (object stores are HTTP: the first request says whether it is reachable); checks the
    /// URL and builds the client.
    pub fn open(config: RemoteConfig) -> Result<Self> {
        let url = config.url.as_str();
        type Stores = (
            Arc<dyn ObjectStore>,
            Option<Arc<dyn object_store::multipart::MultipartStore>>,
            Option<std::path::PathBuf>,
            String,
        );
        let (store, multipart, local_dir, prefix): Stores = if let Some(rest) =
            url.strip_prefix("s3://")
        {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            anyhow::ensure!(
                !bucket.is_empty(),
                "the remote `{url}` names no bucket; write `s3://BUCKET/PREFIX`"
            );
            let retry = object_store::RetryConfig {
                backoff: object_store::BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: 4,
                retry_timeout: RETRY_TIMEOUT,
            };
            // Client options given here replace the ones `from_env` read, so `AWS_ALLOW_HTTP` is read again.
            let allow_http = std::env::var("AWS_ALLOW_HTTP")
                .is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
            let client = object_store::ClientOptions::new()
                .with_allow_http(allow_http)
                .with_connect_timeout(Duration::from_secs(5))
                .with_read_timeout(READ_TIMEOUT)
                // A whole request (a 16 MiB blob, an 8 MiB part) may take longer on a slow link, as long as bytes
                // keep coming.
                .with_timeout(Duration::from_secs(600));
            tls_provider();
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .with_context(|| {
                        format!(
                            "cannot use the remote `{url}` (endpoint, region and credentials come from the \
                             `AWS_*` environment variables, e.g. `AWS_ENDPOINT_URL`, `AWS_REGION`, \
                             `AWS_ACCESS_KEY_ID`; a plain-http endpoint needs `AWS_ALLOW_HTTP=true`)"
                        )
                    })?;
            let s3 = Arc::new(s3);
            (
                s3.clone(),
                Some(s3),
                None,
                prefix.trim_matches('/').to_string(),
            )
        } else if let Some(path) = url.strip_prefix("file://") {
            anyhow::ensure!(
                path.starts_with('/'),
                "the remote `{url}` is not an absolute path; write `file:///absolute/dir`"
            );
            std::fs::create_dir_all(path)
                .with_context(|| format!("cannot create the remote directory `{path}`"))?;
            let local = object_store::local::LocalFileSystem::new_with_prefix(path)
                .with_context(|| format!("cannot use the remote directory `{path}`"))?;
            (Arc::new(local), None, Some(path.into()), String::new())
        } else {
            anyhow::bail!("the remote `{url}` is neither `s3://BUCKET/PREFIX` nor `file:///DIR`");
        };
        let root = if prefix.is_empty() {
            ObjPath::from("v1")
        } else {
            ObjPath::from(format!("{prefix}/v1"))
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pipeline-remote")
            .enable_all()
            .build()
            .context("cannot start the remote's I/O threads")?;
        Ok(Self {
            config,
            store,
            multipart,
            local_dir,
            root,
            rt,
            transfers: Arc::new(tokio::sync::Semaphore::new(TRANSFERS)),
            down: OnceLock::new(),
            uploads: Mutex::default(),
            counters: Counters::default(),
        })
    }

    pub fn url(&self) -> &str {
        &self.config.url
    }

    /// Why the remote is not used any more, if it is not.
    pub fn down(&self) -> Option<&str> {
        self.down.get().map(String::as_str)
    }

    pub(crate) fn record_path(&self, key: &Hash) -> ObjPath {
        self.root
            .clone()
            .join("entries")
            .join(key.hex())
            .join("record.json")
    }

    pub(crate) fn blob_path(&self, hash: &Hash) -> ObjPath {
        self.root.clone().join("blobs").join(hash.hex())
    }

    pub(crate) fn checkpoint_path(&self, key: &Hash) -> ObjPath {
        self.root
            .clone()
            .join("checkpoints")
            .join(format!("{}.bin", key.hex()))
    }

    pub(crate) fn entries_prefix(&self) -> ObjPath {
        self.root.clone().join("entries")
    }

    pub(crate) fn checkpoints_prefix(&self) -> ObjPath {
        self.root.clone().join("checkpoints")
    }

    pub(crate) fn blobs_prefix(&self) -> ObjPath {
        self.root.clone().join("blobs")
    }

    /// The first failure of the remote turns it off for the rest of the process, said once.
    fn failed(&self, what: &str, e: &object_store::Error) -> Failure {
        let reason = format!("{what}: {e}");
        if self.down.set(reason.clone()).is_ok() {
            let then = if self.config.required {
                "`--remote-required` is set, so the run stops"
            } else {
                "continuing with the local cache only (`--remote-required` makes this an error)"
            };
            (self.config.notify)(&format!(
                "the remote `{}` cannot be used ({reason}); {then}",
                self.config.url
            ));
        }
        Failure::Down
    }

    fn classify(&self, what: &str, e: object_store::Error) -> Failure {
        match e {
            // S3 answers 404 for a missing bucket too: that is a remote that cannot be used, not a miss.
            object_store::Error::NotFound { .. } if e.to_string().contains("NoSuchBucket") => {
                self.failed(what, &e)
            }
            object_store::Error::NotFound { .. } => Failure::NotFound,
            object_store::Error::AlreadyExists { .. } => Failure::Exists,
            e => self.failed(what, &e),
        }
    }

    fn check_up(&self) -> std::result::Result<(), Failure> {
        match self.down() {
            Some(_) => Err(Failure::Down),
            None => Ok(()),
        }
    }

    /// Runs `fut` to completion from a plain thread, or until the user asks the process to stop (Ctrl-C,
    /// SIGTERM): then `None`, and the remote is not used again by this process — a stalled server never holds an
    /// interrupt up.
    fn until_interrupted<F: std::future::Future>(&self, fut: F) -> Option<F::Output> {
        self.rt.block_on(async {
            let work = std::pin::pin!(fut);
            let stop = std::pin::pin!(interrupted());
            match futures::future::select(work, stop).await {
                futures::future::Either::Left((out, _)) => Some(out),
                futures::future::Either::Right(_) => {
                    let _ = self.down.set("stopped by an interrupt".into());
                    None
                }
            }
        })
    }

    /// Runs a remote operation to completion from a plain thread; an interrupt makes it [`Failure::Down`].
    pub(crate) fn block_on<T>(
        &self,
        fut: impl std::future::Future<Output = std::result::Result<T, Failure>>,
    ) -> std::result::Result<T, Failure> {
        self.until_interrupted(fut).unwrap_or(Err(Failure::Down))
    }

    /// Reads `path` chunk by chunk into `sink`, stopping as soon as more than `limit` bytes came: the bytes read
    /// then, `None` when it stopped early. Memory is one chunk, whatever the object's size.
    async fn read_bounded(
        &self,
        path: &ObjPath,
        limit: u64,
        sink: &mut (dyn FnMut(&[u8]) -> std::io::Result<()> + Send),
    ) -> std::result::Result<Option<u64>, Failure> {
        self.check_up()?;
        let _permit = self.transfers.acquire().await.expect("never closed");
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let what = format!("reading `{path}`");
        let result = self
            .store
            .get(path)
            .await
            .map_err(|e| self.classify(&what, e))?;
        let mut stream = result.into_stream();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.classify(&what, e))?;
            total = total.saturating_add(chunk.len() as u64);
            if total > limit {
                return Ok(None);
            }
            sink(&chunk).map_err(|e| Failure::Local(format!("{what}: {e}")))?;
        }
        Ok(Some(total))
    }

    /// The whole object at `path`, when it is at most `limit` bytes ([`Failure::TooLarge`] otherwise).
    pub(crate) async fn get(
        &self,
        path: &ObjPath,
        limit: u64,
    ) -> std::result::Result<Vec<u8>, Failure> {
        let mut out = Vec::new();
        let mut sink = |chunk: &[u8]| {
            out.extend_from_slice(chunk);
            Ok(())
        };
        match self.read_bounded(path, limit, &mut sink).await? {
            Some(_) => Ok(out),
            None => Err(Failure::TooLarge),
        }
    }

    /// Streams the object at `path` into the new file `dest`, hashing it on the way and stopping once it is longer
    /// than `limit` (what a record says it holds): a wrong object costs at most `limit` + one chunk of disk and
    /// one chunk of memory.
    pub(crate) async fn download_to(
        &self,
        path: &ObjPath,
        dest: &std::path::Path,
        limit: u64,
    ) -> std::result::Result<Streamed, Failure> {
        use std::io::Write as _;
        let local =
            |e: std::io::Error| Failure::Local(format!("writing `{}`: {e}", dest.display()));
        let file = std::fs::File::create(dest).map_err(local)?;
        let mut out = std::io::BufWriter::new(file);
        let mut hasher = blake3::Hasher::new();
        let mut sink = |chunk: &[u8]| {
            hasher.update(chunk);
            out.write_all(chunk)
        };
        let read = self.read_bounded(path, limit, &mut sink).await?;
        let Some(bytes) = read else {
            return Ok(Streamed {
                bytes: limit.saturating_add(1),
                hash: None,
            });
        };
        let file = out.into_inner().map_err(|e| local(e.into_error()))?;
        file.sync_all().map_err(local)?;
        Ok(Streamed {
            bytes,
            hash: Some(Hash(hasher.finalize())),
        })
    }

    pub(crate) async fn head(&self, path: &ObjPath) -> std::result::Result<ObjectMeta, Failure> {
        self.check_up()?;
        let _permit = self.transfers.acquire().await.expect("never closed");
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.store
            .head(path)
            .await
            .map_err(|e| self.classify(&format!("looking up `{path}`"), e))
    }

    /// Writes `bytes` at `path`; with `create_only`, fails with [`Failure::Exists`] when something is there.
    pub(crate) async fn put(
        &self,
        path: &ObjPath,
        bytes: impl Into<PutPayload>,
        create_only: bool,
    ) -> std::result::Result<(), Failure> {
        let bytes: PutPayload = bytes.into();
        self.check_up()?;
        let _permit = self.transfers.acquire().await.expect("never closed");
        let what = format!("writing `{path}`");
        let len = bytes.content_length();
        if len >= MULTIPART_FROM && !create_only {
            if let Some(s3) = &self.multipart {
                return self.put_parts(s3.as_ref(), path, bytes, &what).await;
            }
            // A `file://` remote: parts are staged beside the object and renamed into place; an upload that fails
            // part-way is aborted, so nothing appears.
            let upload = self
                .store
                .put_multipart(path)
                .await
                .map_err(|e| self.classify(&what, e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
            for chunk in bytes.iter() {
                writer.write(chunk);
            }
            self.counters
                .requests
                .fetch_add(2 + len.div_ceil(PART) as u64, Ordering::Relaxed);
            writer.finish().await.map_err(|e| self.classify(&what, e))?;
        } else {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let opts = PutOptions {
                mode: if create_only {
                    PutMode::Create
                } else {
                    PutMode::Overwrite
                },
                ..Default::default()
            };
            self.store
                .put_opts(path, bytes, opts)
                .await
                .map_err(|e| self.classify(&what, e))?;
        }
        Ok(())
    }

    pub(crate) async fn delete(&self, path: &ObjPath) -> std::result::Result<(), Failure> {
        self.check_up()?;
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.classify(&format!("deleting `{path}`"), e)),
        }
    }

    /// Every object under `prefix` (maintenance commands only: never on a run's path).
    pub(crate) fn list(&self, prefix: &ObjPath) -> Result<Vec<ObjectMeta>> {
        if let Some(why) = self.down() {
            anyhow::bail!("the remote `{}` cannot be used ({why})", self.config.url);
        }
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let listed = self.until_interrupted(self.store.list(Some(prefix)).try_collect::<Vec<_>>());
        let Some(listed) = listed else {
            anyhow::bail!(crate::interrupt::Interrupted);
        };
        listed
            .with_context(|| format!("cannot list `{prefix}` on the remote `{}`", self.config.url))
    }

    /// The key of an entry's record path, if it is one (`…/entries/<key>/record.json`).
    pub(crate) fn key_of_record(&self, path: &ObjPath) -> Option<Hash> {
        let mut parts: Vec<_> = path.parts().collect();
        let name = parts.pop()?;
        let key = parts.pop()?;
        (name.as_ref() == "record.json")
            .then(|| blake3::Hash::from_hex(key.as_ref()).ok().map(Hash))
            .flatten()
    }

    /// The content hash a blob's path names, if it is one.
    pub(crate) fn hash_of_blob(&self, path: &ObjPath) -> Option<Hash> {
        let name = path.filename()?;
        blake3::Hash::from_hex(name).ok().map(Hash)
    }

    /// Uploads `bytes` as a blob unless it is there (create-only: a blob's name is its content, so one that exists
    /// with the right size is already right; one of another size is wrong for everyone and is replaced).
    pub(crate) async fn put_blob(&self, bytes: Vec<u8>) -> std::result::Result<u64, Failure> {
        let path = self.blob_path(&Hash::of(&bytes));
        let len = bytes.len() as u64;
        let there = |meta: &ObjectMeta| meta.size == len;
        // Cheap to clone (shared bytes): it may go up twice.
        let payload = PutPayload::from(bytes);
        if len >= HEAD_BEFORE_PUT as u64 && self.head(&path).await.is_ok_and(|m| there(&m)) {
            return Ok(0);
        }
        // Large blobs go up in parts, which S3 cannot make create-only; content addressing makes overwriting one
        // with the same bytes harmless.
        let create_only = len < MULTIPART_FROM as u64;
        match self.put(&path, payload.clone(), create_only).await {
            Ok(()) => Ok(len),
            Err(Failure::Exists) => match self.head(&path).await {
                Ok(meta) if there(&meta) => Ok(0),
                Ok(_) => self.put(&path, payload, false).await.map(|()| len),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Runs `task` in the background; [`Remote::wait`] waits for every one.
    pub(crate) fn spawn(
        &self,
        task: impl std::future::Future<Output = std::result::Result<(), String>> + Send + 'static,
    ) {
        let handle = self.rt.spawn(task);
        self.uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    /// Waits for every background upload; the failures, one line each.
    pub(crate) fn wait(&self) -> Vec<String> {
        let mut failures = Vec::new();
        loop {
            let handles: Vec<_> =
                std::mem::take(&mut *self.uploads.lock().unwrap_or_else(|e| e.into_inner()));
            if handles.is_empty() {
                return failures;
            }
            let aborts: Vec<_> = handles.iter().map(|h| h.abort_handle()).collect();
            let Some(results) = self.until_interrupted(futures::future::join_all(handles)) else {
                // Stopped: uploads in flight are dropped (a multipart one is aborted as it goes; `cache gc --remote`
                // clears what a killed one leaves); their entries stay local, and a later run pushes them.
                aborts.iter().for_each(tokio::task::AbortHandle::abort);
                failures.push(
                    "uploads were stopped by an interrupt; `pipeline cache push` sends them later"
                        .into(),
                );
                return failures;
            };
            for r in results {
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failures.push(e),
                    Err(e) => failures.push(format!("an upload stopped: {e}")),
                }
            }
        }
    }

    /// What this process did with the remote so far.
    pub fn summary(&self, failed_uploads: Vec<String>) -> RemoteSummary {
        let c = &self.counters;
        RemoteSummary {
            url: self.config.url.clone(),
            requests: c.requests.load(Ordering::Relaxed),
            fetched_entries: c.fetched_entries.load(Ordering::Relaxed),
            fetched_bytes: c.fetched_bytes.load(Ordering::Relaxed),
            pushed_entries: c.pushed_entries.load(Ordering::Relaxed),
            pushed_bytes: c.pushed_bytes.load(Ordering::Relaxed),
            down: self.down().map(str::to_string),
            failed_uploads,
            required: self.config.required,
        }
    }

    /// Streams several objects to files at once (bounded by the transfer limit), in order: `(object, file,
    /// limit)` each.
    pub(crate) async fn download_all(
        &self,
        wanted: Vec<(ObjPath, std::path::PathBuf, u64)>,
    ) -> Vec<std::result::Result<Streamed, Failure>> {
        futures::stream::iter(wanted)
            .map(|(p, dest, limit)| async move { self.download_to(&p, &dest, limit).await })
            .buffered(TRANSFERS)
            .collect()
            .await
    }
}

/// Makes ring the process's TLS provider before the first HTTPS client is built: reqwest is built without one of its
/// own (see `Cargo.toml`), and would panic building a client otherwise. Installing fails, harmlessly, when a provider
/// (this one, from an earlier remote) is already in place.
fn tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(dir: &std::path::Path) -> Remote {
        Remote::open(RemoteConfig {
            url: format!("file://{}", dir.display()),
            push: PushPolicy::All,
            max_push_bytes: None,
            required: false,
            notify: Arc::new(|_| {}),
        })
        .unwrap()
    }

    /// A large blob goes up in parts and comes back whole; a second upload of it is one HEAD.
    #[test]
    fn large_files_go_up_in_parts_and_come_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let r = remote(dir.path());
        let bytes: Vec<u8> = (0..MULTIPART_FROM + PART + 12345)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let hash = Hash::of(&bytes);
        assert_eq!(
            r.block_on(r.put_blob(bytes.clone())).ok(),
            Some(bytes.len() as u64)
        );
        let back = r
            .block_on(r.get(&r.blob_path(&hash), u64::MAX))
            .ok()
            .unwrap();
        assert!(back == bytes, "the blob came back different");
        let before = r.counters.requests.load(Ordering::Relaxed);
        assert_eq!(r.block_on(r.put_blob(bytes)).ok(), Some(0));
        assert_eq!(r.counters.requests.load(Ordering::Relaxed) - before, 1);
    }

    /// A create-only put over an existing object fails as `Exists`, leaving the first one.
    #[test]
    fn a_create_only_put_keeps_the_first_writer() {
        let dir = tempfile::tempdir().unwrap();
        let r = remote(dir.path());
        let path = r.record_path(&Hash::of(b"k"));
        assert!(r.block_on(r.put(&path, b"first".to_vec(), true)).is_ok());
        assert!(matches!(
            r.block_on(r.put(&path, b"second".to_vec(), true)),
            Err(Failure::Exists)
        ));
        assert_eq!(r.block_on(r.get(&path, 5)).ok().unwrap(), b"first");
        assert!(matches!(
            r.block_on(r.get(&path, 4)),
            Err(Failure::TooLarge)
        ));
    }
}
