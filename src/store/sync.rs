//! The cache and its remote together: read-through (a local miss is looked up remotely by one GET of the record,
//! then downloaded, re-hashed and checked exactly like a local entry before it is installed locally) and
//! write-behind (a stored entry, or a local hit the remote lacks, is uploaded in the background: blobs first, the
//! record last with a create-only put, so a half-uploaded entry is never visible and the first writer wins).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::cache::{
    Cache, Expect, FILES, FileRecord, Lookup, OUTPUT, RECORD, Record, check_artifact, check_file,
};
use super::remote::{Failure, RECORD_LIMIT, Remote};
use crate::artifact::ArtifactKind;
use crate::fingerprint::Hash;
use anyhow::Context as _;

impl Cache {
    /// The remote, when one is set (usable or not: see [`Remote::down`]).
    pub fn remote(&self) -> Option<&Arc<Remote>> {
        self.remote.as_ref()
    }

    /// Downloads the entry `key` into `staged` (its output and its `files/`, laid out as a local entry but without
    /// the record) and checks everything but its artifact: the record is its fingerprint's and names plain files
    /// (with `report_files`, only those), and every file matches the record's size and hash. Each file is streamed to
    /// disk and read no further than the size its record gives.
    ///
    /// A mismatch condemns the record, not the blob: other records may name the same blob correctly. Only a blob
    /// read whole whose bytes do not hash to its own name is wrong for everyone, and with `repair` it is deleted,
    /// or a re-upload of the same result would find it "already there".
    fn download(
        &self,
        remote: &Remote,
        key: &Hash,
        report_files: Option<&[&str]>,
        staged: &Path,
        repair: bool,
    ) -> Got {
        let text = match remote.block_on(remote.get(&remote.record_path(key), RECORD_LIMIT)) {
            Ok(t) => t,
            Err(Failure::NotFound) => return Got::Missing,
            Err(Failure::TooLarge) => {
                return Got::Damaged(format!("its record is larger than {RECORD_LIMIT} bytes"));
            }
            Err(Failure::Local(e)) => return Got::Local(e),
            Err(_) => return Got::Unusable,
        };
        let record: Record = match serde_json::from_slice(&text) {
            Ok(r) => r,
            Err(e) => return Got::Damaged(format!("unreadable record ({e})")),
        };
        if let Err(problem) = super::cache::check_record(&record, key, report_files) {
            return Got::Damaged(problem);
        }
        if !record.files.is_empty()
            && let Err(e) = fs::create_dir_all(staged.join(FILES))
        {
            return Got::Local(format!("cannot create `{}` ({e})", staged.display()));
        }
        let mut wanted = vec![(OUTPUT.to_string(), staged.join(OUTPUT), &record.output)];
        wanted.extend(
            record
                .files
                .iter()
                .map(|(n, f)| (n.clone(), staged.join(FILES).join(n), f)),
        );
        let transfers = wanted
            .iter()
            .map(|(_, dest, f)| (remote.blob_path(&f.hash), dest.clone(), f.bytes))
            .collect();
        let Ok(got) = remote.block_on(async { Ok(remote.download_all(transfers).await) }) else {
            return Got::Unusable;
        };
        for ((label, _, expected), streamed) in wanted.iter().zip(got) {
            let streamed = match streamed {
                Ok(s) => s,
                Err(Failure::NotFound) => {
                    return Got::Damaged(format!("its file `{label}` is missing"));
                }
                Err(Failure::Local(e)) => return Got::Local(e),
                Err(_) => return Got::Unusable,
            };
            match streamed.hash {
                Some(hash) if hash == expected.hash && streamed.bytes == expected.bytes => {}
                Some(hash) if hash != expected.hash => {
                    if repair {
                        let _ = remote.block_on(remote.delete(&remote.blob_path(&expected.hash)));
                    }
                    return Got::Damaged(format!("`{label}` does not match its recorded hash"));
                }
                _ => {
                    return Got::Damaged(format!(
                        "`{label}` is not the {} bytes its record says",
                        expected.bytes
                    ));
                }
            }
        }
        Got::Entry(Box::new(Downloaded { text, record }))
    }

    /// Deletes a damaged remote entry's record, so that no machine trusts it again (its blobs may be shared with
    /// intact entries and stay; `cache gc --remote` clears what nothing refers to).
    fn discard_remote(&self, remote: &Remote, key: &Hash) {
        let _ = remote.block_on(remote.delete(&remote.record_path(key)));
    }

    /// Looks `key` up on the remote and, when it is there and intact, installs it locally, checked exactly as a
    /// local entry is (the artifact decodes and is valid too). A damaged remote entry has its record deleted and is
    /// a [`Lookup::Damaged`]; `Err` says why the local cache could not take it.
    fn fetch_into(
        &self,
        remote: &Remote,
        key: &Hash,
        expect: Expect,
    ) -> std::result::Result<Lookup, String> {
        let damaged = |problem: String| {
            self.discard_remote(remote, key);
            Lookup::Damaged(format!(
                "the remote's copy was damaged ({problem}); its record was removed from the remote"
            ))
        };
        let staged = tempfile::Builder::new()
            .prefix("fetch-")
            .tempdir_in(self.tmp_dir())
            .map_err(|e| format!("cannot stage it in `{}` ({e})", self.tmp_dir().display()))?;
        // `download` checked the record and every file's hash; what is left of a local entry's checks is the artifact.
        let entry = match self.download(remote, key, Some(expect.report_files), staged.path(), true)
        {
            Got::Entry(e) => e,
            Got::Missing | Got::Unusable => return Ok(Lookup::Miss),
            Got::Local(e) => return Err(e),
            Got::Damaged(problem) => return Ok(damaged(problem)),
        };
        let output = fs::read(staged.path().join(OUTPUT)).map_err(|e| e.to_string())?;
        if let Err(problem) = check_artifact(&output, Some(expect.output)) {
            return Ok(damaged(problem));
        }
        super::cache::write_synced(&staged.path().join(RECORD), &entry.text)
            .map_err(|e| format!("{e:#}"))?;
        self.install(staged, key, false)
            .map_err(|e| format!("{e:#}"))?;
        let c = &remote.counters;
        c.fetched_entries.fetch_add(1, Ordering::Relaxed);
        c.fetched_bytes.fetch_add(
            entry.text.len() as u64 + entry.record.bytes(),
            Ordering::Relaxed,
        );
        Ok(Lookup::Fetched(Box::new(entry.record)))
    }

    /// [`Cache::fetch_into`] on a run's path: a local cache that cannot take the entry makes it a miss.
    pub(super) fn fetch(&self, remote: &Remote, key: &Hash, expect: Expect) -> Lookup {
        self.fetch_into(remote, key, expect).unwrap_or(Lookup::Miss)
    }

    /// Fetches the entry `key` into the local cache if it is not here (`cache pull`): `Ok(Ok(true))` when it came
    /// down, `Ok(Ok(false))` when it was here already, `Ok(Err(why))` when the remote could not give it, and `Err`
    /// when the local cache cannot take it (read-only, full): then no other entry can come down either.
    pub fn pull(
        &self,
        key: &Hash,
        expect: Expect,
    ) -> anyhow::Result<std::result::Result<bool, String>> {
        if self.peek(key, expect).is_some() {
            return Ok(Ok(false));
        }
        let remote = self.remote.clone().context("no remote is set")?;
        let fetched = self.fetch_into(&remote, key, expect).map_err(|e| {
            let dir = self.root().parent().unwrap_or(self.root());
            anyhow::anyhow!(
                "the local cache `{}` cannot take what comes down: {e}; make it writable or pass another \
                 `--cache-dir`",
                dir.display()
            )
        })?;
        Ok(match fetched {
            Lookup::Fetched(_) | Lookup::Hit(_) => Ok(true),
            Lookup::Damaged(problem) => Err(problem),
            Lookup::Miss => Err(match remote.down() {
                Some(why) => format!("the remote cannot be used ({why})"),
                None => "the remote does not have it".into(),
            }),
        })
    }

    /// Checks the remote entry `key` as a lookup would, changing nothing (`cache verify --remote`); its record
    /// when intact. `Err(None)`: the remote cannot be used.
    pub fn verify_remote(
        &self,
        key: &Hash,
    ) -> std::result::Result<(Record, ArtifactKind), Option<String>> {
        let remote = self.remote.clone().ok_or(None)?;
        // Staged in the cache's `tmp/` when it can be written, else in the system's: verify writes nothing that stays.
        let staged = tempfile::Builder::new()
            .prefix("verify-")
            .tempdir_in(self.tmp_dir())
            .or_else(|_| tempfile::tempdir())
            .map_err(|e| Some(format!("cannot stage it locally ({e})")))?;
        let entry = match self.download(&remote, key, None, staged.path(), false) {
            Got::Entry(e) => e,
            Got::Missing => return Err(Some("its record disappeared while checking".into())),
            Got::Unusable => return Err(None),
            Got::Local(e) => return Err(Some(format!("cannot stage it locally ({e})"))),
            Got::Damaged(problem) => return Err(Some(problem)),
        };
        let output = fs::read(staged.path().join(OUTPUT))
            .map_err(|e| Some(format!("cannot read it back locally ({e})")))?;
        let kind = check_artifact(&output, None).map_err(Some)?;
        Ok((entry.record, kind))
    }

    /// The remote's record of `key`, if it reads as its fingerprint's and (with `report_files`) names only those
    /// files; the files themselves are checked when the entry is fetched. What `status`, `cache du` and `cache gc`
    /// ask, changing nothing.
    pub fn peek_remote(&self, key: &Hash, report_files: Option<&[&str]>) -> Option<Record> {
        let remote = self.remote.as_ref()?;
        let text = remote
            .block_on(remote.get(&remote.record_path(key), RECORD_LIMIT))
            .ok()?;
        let record: Record = serde_json::from_slice(&text).ok()?;
        super::cache::check_record(&record, key, report_files).ok()?;
        Some(record)
    }

    /// Deletes the remote entry `key` (its record: the entry is gone at once).
    pub fn delete_remote_record(&self, key: &Hash) -> anyhow::Result<()> {
        let remote = self.remote.as_ref().context("no remote is set")?;
        self.delete_remote_object(&remote.record_path(key))
    }

    /// Deletes one object of the remote.
    pub fn delete_remote_object(&self, path: &object_store::path::Path) -> anyhow::Result<()> {
        let remote = self.remote.as_ref().context("no remote is set")?;
        remote
            .block_on(remote.delete(path))
            .map_err(|_| anyhow::anyhow!("cannot delete `{path}` on the remote `{}`", remote.url()))
    }

    /// Uploads the local entry `record` in the background, if the push policy takes its kind and size and the
    /// remote lacks it (one HEAD when it has it).
    pub(super) fn push(&self, record: &Record) {
        let Some(remote) = &self.remote else { return };
        if remote.down().is_some() || !remote.config.push.allows(&record.fingerprint.kind) {
            return;
        }
        if remote
            .config
            .max_push_bytes
            .is_some_and(|cap| record.bytes() > cap)
        {
            return;
        }
        let task = push_entry(remote.clone(), self.entry_dir(&record.key), record.clone());
        remote.spawn(task);
    }

    /// Uploads the local entry `record` now, unless the remote has it (`cache push`; no policy applies: it was
    /// asked for).
    pub fn push_now(&self, record: &Record) -> std::result::Result<(), String> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let task = push_entry(remote.clone(), self.entry_dir(&record.key), record.clone());
        remote
            .block_on(async { Ok(task.await) })
            .unwrap_or_else(|_| Err("stopped by an interrupt".into()))
    }

    /// Why nothing may run any more: the remote is required (`--remote-required`) and cannot be used.
    pub fn remote_refused(&self) -> Option<String> {
        let remote = self.remote.as_ref()?;
        let why = remote.down()?;
        remote.config.required.then(|| {
            format!(
                "the remote `{}` cannot be used ({why}) and `--remote-required` is set",
                remote.url()
            )
        })
    }

    /// Waits for the background uploads and says what this process did with the remote (`None`: no remote).
    pub fn finish_remote(&self) -> Option<super::remote::RemoteSummary> {
        let remote = self.remote.as_ref()?;
        let failed = remote.wait();
        Some(remote.summary(failed))
    }
}

/// What [`Cache::download`] found.
enum Got {
    Missing,
    /// The remote cannot be used (said once already).
    Unusable,
    /// The local disk could not take it.
    Local(String),
    Damaged(String),
    Entry(Box<Downloaded>),
}

/// A remote entry, downloaded into its staging folder and checked against its record: the record's text and the
/// record.
struct Downloaded {
    text: Vec<u8>,
    record: Record,
}

/// Uploads one file of a local entry as a blob, checked again against its record first (what goes up must be what
/// the record says): the bytes sent, `None` when the remote went down (said once already).
async fn put_local_blob(
    remote: &Remote,
    path: &Path,
    expected: &FileRecord,
    name: &str,
) -> std::result::Result<Option<u64>, String> {
    let bytes = check_file(path, expected)
        .map_err(|e| format!("cannot upload {name}: the local entry changed ({e})"))?;
    match remote.put_blob(bytes).await {
        Ok(n) => Ok(Some(n)),
        Err(Failure::Down) => Ok(None),
        Err(_) => Err(format!("cannot upload {name}: a file could not be written")),
    }
}

/// Uploads one local entry unless the remote has it: its files as blobs, then its record, create-only. When another
/// writer's record got there first, theirs stays: it must hold the same result (else a warning says the stage is
/// not deterministic), and either way the local entry stays as it is.
async fn push_entry(
    remote: Arc<Remote>,
    dir: PathBuf,
    record: Record,
) -> std::result::Result<(), String> {
    let key = record.key;
    let record_path = remote.record_path(&key);
    let name = format!("`{}` ({})", record.stage, key.short());
    match remote.head(&record_path).await {
        Ok(_) => return Ok(()),
        Err(Failure::NotFound) => {}
        // Said once already; the run's summary says it again.
        Err(_) => return Ok(()),
    }
    let mut files: Vec<(PathBuf, &FileRecord)> = vec![(dir.join(OUTPUT), &record.output)];
    files.extend(
        record
            .files
            .iter()
            .map(|(n, f)| (dir.join(FILES).join(n), f)),
    );
    let mut sent = 0u64;
    for (path, expected) in &files {
        match put_local_blob(&remote, path, expected, &name).await? {
            Some(n) => sent += n,
            None => return Ok(()),
        }
    }
    let text = fs::read(dir.join(RECORD))
        .map_err(|e| format!("cannot upload {name}: its local record is unreadable ({e})"))?;
    match remote.put(&record_path, text.clone(), true).await {
        Ok(()) => {
            // A remote gc may have deleted a blob this push found there, between finding it and the record landing:
            // each is looked for again now, and put back from the local copy if it went.
            for (path, expected) in &files {
                if let Err(Failure::NotFound) = remote.head(&remote.blob_path(&expected.hash)).await
                    && put_local_blob(&remote, path, expected, &name)
                        .await?
                        .is_none()
                {
                    return Ok(());
                }
            }
            remote
                .counters
                .pushed_entries
                .fetch_add(1, Ordering::Relaxed);
            remote
                .counters
                .pushed_bytes
                .fetch_add(sent + text.len() as u64, Ordering::Relaxed);
            Ok(())
        }
        Err(Failure::Exists) => {
            let theirs = remote
                .get(&record_path, RECORD_LIMIT)
                .await
                .ok()
                .and_then(|t| serde_json::from_slice::<Record>(&t).ok());
            match theirs {
                // The artifact is the result; report files may differ in what they time (`loss.csv`).
                Some(t) if t.output == record.output => Ok(()),
                _ => Err(format!(
                    "the remote already holds another result for {name} (is the stage not deterministic?); \
                     the first one stays there, this machine keeps its own"
                )),
            }
        }
        Err(Failure::Down) => Ok(()),
        Err(Failure::NotFound) => Err(format!("cannot upload {name}: the bucket is not there")),
        Err(Failure::TooLarge | Failure::Local(_)) => Err(format!(
            "cannot upload {name}: its record could not be written"
        )),
    }
}
