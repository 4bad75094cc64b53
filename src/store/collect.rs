//! What the cache holds and what collection removes from it: every entry checked ([`Cache::entries`]), sizes per
//! stage kind ([`Cache::usage`]), [`Cache::prune`], and on the remote [`remote_entries`] and [`Cache::prune_remote`]. The store owns its layout, so these are the only code that
//! walks it; they return typed results, which the command line words.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use super::cache::{Cache, Expect};
use super::remote::{Failure, Remote};
use crate::fingerprint::Hash;

/// What an entry of a stage kind, named as in its record, may hold; `None` for a kind this program does not know.
/// The stage kinds are a layer above the store, so their callers pass this in.
pub type Kinds<'a> = &'a dyn Fn(&str) -> Option<Expect<'static>>;

/// One entry as found on disk.
pub struct EntryInfo {
    pub dir: PathBuf,
    pub key: Option<Hash>,
    /// Its stage kind, or why it cannot be trusted.
    pub kind: std::result::Result<String, String>,
    pub bytes: u64,
}

impl EntryInfo {
    /// Its key, shortened, or its folder when the folder's name is not a key.
    pub fn short(&self) -> String {
        match &self.key {
            Some(k) => k.short(),
            None => self.dir.display().to_string(),
        }
    }
}

/// One line of [`Cache::usage`]: a stage kind (or `(damaged)`, `(checkpoints)`, `(temporary)`), how many entries
/// and their bytes.
pub struct Usage {
    pub kind: String,
    pub count: usize,
    pub bytes: u64,
}

/// What [`Cache::prune`] keeps besides the entries it is told to.
#[derive(Debug, Clone, Copy)]
pub struct PrunePolicy {
    /// Entries, checkpoints and job folders younger than this are kept: a run may have just made them.
    pub grace: Duration,
    /// Only say what would be removed.
    pub dry_run: bool,
}

impl PrunePolicy {
    /// The grace period when none is given: an hour, longer than a run takes between making an entry and
    /// recording that it uses it.
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
}

/// Something [`Cache::prune`] removed (or would).
pub enum Pruned {
    /// An entry no kept run refers to (`kind`: its stage kind), or a damaged one (`kind`: why).
    Entry {
        name: String,
        kind: std::result::Result<String, String>,
    },
    /// A checkpoint or Slurm job folder (`job`) of a stage that finished (`finished`) or that no kept run refers to.
    Progress {
        key: String,
        job: bool,
        finished: bool,
    },
    /// A marker a shared-cache check could not remove (`jobs/probes/NAME`).
    Probe { name: String },
    /// Temporary data an interrupted run left (`tmp/NAME`).
    Temporary { name: String },
}

/// What [`Cache::prune`] did: each item with its bytes, in the order found, and what it kept.
pub struct Removal {
    pub removed: Vec<(Pruned, u64)>,
    /// Entries kept, and their bytes.
    pub kept: usize,
    pub kept_bytes: u64,
    /// Running processes whose entries were kept.
    pub processes: usize,
}

impl Removal {
    pub fn bytes(&self) -> u64 {
        self.removed.iter().map(|(_, b)| b).sum()
    }
}

/// Leftovers in `tmp/` older than this are from crashed runs; younger ones may belong to a run going on now.
const STALE_TMP: Duration = Duration::from_secs(3600);

impl Cache {
    /// Every entry, re-hashed: its kind when intact, else why not.
    pub fn entries(&self, kinds: Kinds) -> Result<Vec<EntryInfo>> {
        self.entry_dirs()?
            .into_iter()
            .map(|(key, dir)| {
                let kind = match &key {
                    Some(k) => {
                        self.verify(k, &dir, None)
                            .and_then(|r| match kinds(&r.fingerprint.kind) {
                                Some(expect) => self
                                    .verify(k, &dir, Some(expect))
                                    .map(|_| r.fingerprint.kind),
                                None => {
                                    Err(format!("an unknown stage kind `{}`", r.fingerprint.kind))
                                }
                            })
                    }
                    None => Err("its directory name is not an entry key".to_string()),
                };
                Ok(EntryInfo {
                    bytes: size_of(&dir),
                    dir,
                    key,
                    kind,
                })
            })
            .collect()
    }

    /// Entries and bytes per stage kind (damaged ones apart), then checkpoints and temporary data.
    pub fn usage(&self, kinds: Kinds) -> Result<Vec<Usage>> {
        let mut per_kind: BTreeMap<String, (usize, u64)> = BTreeMap::new();
        for e in self.entries(kinds)? {
            let kind = e.kind.unwrap_or_else(|_| "(damaged)".into());
            let slot = per_kind.entry(kind).or_default();
            slot.0 += 1;
            slot.1 += e.bytes;
        }
        let mut rows: Vec<Usage> = per_kind
            .into_iter()
            .map(|(kind, (count, bytes))| Usage { kind, count, bytes })
            .collect();
        for (name, dir) in [
            ("(checkpoints)", self.checkpoints_dir()),
            ("(temporary)", self.tmp_dir()),
        ] {
            let count = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
            if count > 0 {
                rows.push(Usage {
                    kind: name.into(),
                    count,
                    bytes: size_of(&dir),
                });
            }
        }
        Ok(rows)
    }

    /// Removes entries that `referenced` (keys in hex) does not name and that no running process uses, damaged
    /// entries, checkpoints and Slurm job folders of finished or unreferenced stages, stale temporary data and lock
    /// files nobody holds. Safe beside any number of runs (see [`Cache::pin`]): from the lock it takes on, no run
    /// pins anything until it is done, so what is pinned then is all that is in use.
    pub fn prune(
        &self,
        mut referenced: HashSet<String>,
        policy: PrunePolicy,
        kinds: Kinds,
    ) -> Result<Removal> {
        let _exclusive = self.exclusive_for_gc()?;
        let (live, processes) = self.pinned(policy.dry_run)?;
        referenced.extend(live);
        let mut pruning = Pruning {
            policy,
            now: SystemTime::now(),
            removal: Removal {
                removed: Vec::new(),
                kept: 0,
                kept_bytes: 0,
                processes,
            },
        };
        for e in self.entries(kinds)? {
            let wanted = e
                .key
                .as_ref()
                .is_some_and(|k| referenced.contains(&k.hex()));
            if e.kind.is_ok() && (wanted || pruning.young(&e.dir.join("record.json"))) {
                pruning.removal.kept += 1;
                pruning.removal.kept_bytes += e.bytes;
                continue;
            }
            let what = Pruned::Entry {
                name: e.short(),
                kind: e.kind,
            };
            if !policy.dry_run {
                // Renamed away in one step, so a reader never sees half an entry.
                self.discard(&e.dir)?;
            }
            pruning.removal.removed.push((what, e.bytes));
        }
        self.prune_progress(&referenced, &mut pruning)?;
        for item in std::fs::read_dir(self.tmp_dir())? {
            let path = item?.path();
            if pruning.stale(&path) {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                let what = Pruned::Temporary {
                    name: name.into_owned(),
                };
                pruning.remove(what, &path)?;
            }
        }
        if !policy.dry_run {
            // Recreated by the next run that computes that entry.
            self.remove_free_locks();
        }
        Ok(pruning.removal)
    }

    /// A checkpoint or Slurm job folder per fingerprint: dropped once its entry exists (the stage finished) or once
    /// `referenced` does not name it; kept while a process computes its stage, and while it is young.
    fn prune_progress(&self, referenced: &HashSet<String>, pruning: &mut Pruning) -> Result<()> {
        for (dir, job) in [(self.checkpoints_dir(), false), (self.jobs_dir()?, true)] {
            for item in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = item.path();
                let name = item.file_name().to_string_lossy().into_owned();
                let hex = name.strip_suffix(".bin").unwrap_or(&name);
                let Ok(key) = blake3::Hash::from_hex(hex).map(Hash) else {
                    // `jobs/probes/`: markers of shared-cache checks that could not clean up after themselves.
                    if name == "probes" {
                        for probe in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                            if pruning.stale(&probe.path()) {
                                let name = probe.file_name().to_string_lossy().into_owned();
                                pruning.remove(Pruned::Probe { name }, &probe.path())?;
                            }
                        }
                    }
                    continue;
                };
                if self.claimed(hex) || pruning.young(&path) {
                    continue;
                }
                let finished = self.has_entry(&key);
                if !finished && referenced.contains(hex) {
                    continue;
                }
                let what = Pruned::Progress {
                    key: key.short(),
                    job,
                    finished,
                };
                pruning.remove(what, &path)?;
            }
        }
        Ok(())
    }
}

/// A prune under way: its policy, its clock and what it has done.
struct Pruning {
    policy: PrunePolicy,
    now: SystemTime,
    removal: Removal,
}

impl Pruning {
    fn age(&self, path: &Path) -> Option<Duration> {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| self.now.duration_since(t).ok())
    }

    fn young(&self, path: &Path) -> bool {
        self.age(path).is_some_and(|a| a < self.policy.grace)
    }

    fn stale(&self, path: &Path) -> bool {
        self.age(path).unwrap_or_default() >= STALE_TMP.max(self.policy.grace)
    }

    /// Removes the file or folder at `path` (unless this is a dry run) and records it.
    fn remove(&mut self, what: Pruned, path: &Path) -> Result<()> {
        let bytes = size_of(path);
        if !self.policy.dry_run {
            let gone = if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
            // Gone already (its run removed it meanwhile) is what was wanted.
            gone.or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
            .with_context(|| format!("cannot remove `{}`", path.display()))?;
        }
        self.removal.removed.push((what, bytes));
        Ok(())
    }
}

/// Bytes of all files under `path`.
pub fn size_of(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// What [`Cache::prune_remote`] keeps besides the entries it is told to.
#[derive(Debug, Clone, Copy)]
pub struct RemotePrunePolicy {
    /// Nothing younger than this is touched: another machine may have just made it.
    pub grace: Duration,
    /// Only say what would be removed.
    pub dry_run: bool,
}

impl RemotePrunePolicy {
    /// The grace period when none is given: a week, as machines sharing a remote may push at any time and clocks
    /// differ.
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
}

/// What [`Cache::prune_remote`] did.
pub struct RemoteRemoval {
    /// Entries removed (short keys), in the order listed.
    pub entries: Vec<String>,
    /// Entries kept because their records cannot be read (short keys): damaged, for `cache verify` to name.
    pub skipped: Vec<String>,
    /// Blobs no remaining record names, and their bytes.
    pub blobs: usize,
    pub blob_bytes: u64,
    pub checkpoints: usize,
    /// Multipart uploads a killed writer left unfinished, aborted.
    pub uploads: usize,
    /// Entries kept.
    pub kept: usize,
    /// Entries pushed while the prune ran that named a blob it had deleted, removed (a miss now, not damage).
    pub orphaned: usize,
}

/// When an object was last written (the epoch for a time jiff cannot hold: then it is never young).
fn modified(meta: &object_store::ObjectMeta) -> jiff::Timestamp {
    jiff::Timestamp::from_second(meta.last_modified.timestamp())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Every entry key on the remote, with its record's age.
pub fn remote_entries(remote: &Remote) -> Result<Vec<(Hash, jiff::Timestamp)>> {
    let mut out = Vec::new();
    for meta in remote.list(&remote.entries_prefix())? {
        if let Some(key) = remote.key_of_record(&meta.location) {
            out.push((key, modified(&meta)));
        }
    }
    Ok(out)
}

impl Cache {
    /// Collects the remote: a mark phase from `referenced` (keys in hex), then a sweep of the records nothing marks,
    /// then of the blobs no remaining record names, then of stale checkpoints and unfinished uploads, never touching
    /// anything younger than the policy's grace.
    ///
    /// Safe beside pushes: a push may write a new record naming an old blob at any moment. The records are listed
    /// again just before the blobs go, and a blob a record written meanwhile names is kept; a record written after
    /// that listing is checked once the blobs are gone, and one naming a blob this prune deleted is removed (a miss,
    /// computed and pushed again later), unless its writer already uploaded the blob again (a push checks its blobs
    /// after writing its record). Either way no entry is left damaged.
    pub fn prune_remote(
        &self,
        referenced: &HashSet<String>,
        policy: RemotePrunePolicy,
    ) -> Result<RemoteRemoval> {
        let remote = self
            .remote()
            .map(|r| r.as_ref())
            .context("no remote is set")?;
        let now = jiff::Timestamp::now();
        let young = |at: jiff::Timestamp| {
            now.duration_since(at)
                .try_into()
                .map(|d: Duration| d < policy.grace)
                .unwrap_or(true)
        };
        let mut marks = Marking {
            cache: self,
            remote,
            dry_run: policy.dry_run,
            skipped: Vec::new(),
            seen: HashSet::new(),
            named: HashSet::new(),
        };
        let mut entries = Vec::new();
        let mut live: Vec<Hash> = Vec::new();
        for (key, at) in remote_entries(remote)? {
            if referenced.contains(&key.hex()) || young(at) {
                marks.seen.insert(key);
                live.push(key);
                continue;
            }
            entries.push(key.short());
            if !policy.dry_run {
                self.delete_remote_record(&key)?;
            }
        }
        marks.name_blobs_of(&live)?;
        // Blobs are shared: one is garbage only when no remaining record names it.
        let candidates: Vec<_> = remote
            .list(&remote.blobs_prefix())?
            .into_iter()
            .filter(|meta| !young(modified(meta)))
            .filter_map(|meta| Some((remote.hash_of_blob(&meta.location)?, meta)))
            .filter(|(hash, _)| !marks.named.contains(hash))
            .collect();
        // Records pushed since the first listing may name some of them.
        marks.name_blobs_of_new_records()?;
        let (mut blobs, mut blob_bytes) = (0, 0u64);
        let mut deleted: HashSet<Hash> = HashSet::new();
        for (hash, meta) in candidates {
            if marks.named.contains(&hash) {
                continue;
            }
            blobs += 1;
            blob_bytes = blob_bytes.saturating_add(meta.size);
            if !policy.dry_run {
                self.delete_remote_object(&meta.location)?;
                deleted.insert(hash);
            }
        }
        let orphaned = marks.drop_new_records_naming(&deleted)?;
        let mut checkpoints = 0;
        for meta in remote.list(&remote.checkpoints_prefix())? {
            if young(modified(&meta)) {
                continue;
            }
            checkpoints += 1;
            if !policy.dry_run {
                self.delete_remote_object(&meta.location)?;
            }
        }
        // Uploads a killed writer or a dying remote left unfinished: their parts are kept (and billed) until aborted.
        let uploads = remote.abort_stale_uploads(policy.grace, policy.dry_run)?;
        Ok(RemoteRemoval {
            entries,
            skipped: marks.skipped,
            blobs,
            blob_bytes,
            checkpoints,
            uploads,
            kept: live.len(),
            orphaned,
        })
    }
}

/// What a remote prune knows as it goes: the records it has listed, the blobs they name, the records it could not
/// read.
struct Marking<'a> {
    cache: &'a Cache,
    remote: &'a Remote,
    dry_run: bool,
    skipped: Vec<String>,
    /// Every live record key listed so far (a record this prune deleted that a push writes again is new).
    seen: HashSet<Hash>,
    /// Every blob a live record names.
    named: HashSet<Hash>,
}

impl Marking<'_> {
    /// Adds the blobs `keys`' records name. A record that cannot be read is damaged (records are written whole):
    /// it is kept for `cache verify` to name and a run to discard, and the prune goes on without it.
    fn name_blobs_of(&mut self, keys: &[Hash]) -> Result<()> {
        for key in keys {
            let Some(record) = self.cache.peek_remote(key, None) else {
                if let Some(why) = self.remote.down() {
                    anyhow::bail!("the remote `{}` cannot be used ({why})", self.remote.url());
                }
                self.skipped.push(key.short());
                continue;
            };
            self.named.insert(record.output.hash);
            self.named.extend(record.files.values().map(|f| f.hash));
        }
        Ok(())
    }

    /// The records listed now that were not before, marked as seen.
    fn new_records(&mut self) -> Result<Vec<Hash>> {
        let fresh: Vec<Hash> = remote_entries(self.remote)?
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| !self.seen.contains(key))
            .collect();
        self.seen.extend(fresh.iter().copied());
        Ok(fresh)
    }

    /// Lists the records again and adds the blobs of those written since: they are live, whatever they name.
    fn name_blobs_of_new_records(&mut self) -> Result<()> {
        let fresh = self.new_records()?;
        self.name_blobs_of(&fresh)
    }

    /// Lists the records once more, after the blobs went: one written meanwhile that names a blob this prune deleted
    /// (and that its writer has not uploaded again) is removed, so it is a miss rather than damage. How many.
    fn drop_new_records_naming(&mut self, deleted: &HashSet<Hash>) -> Result<usize> {
        if self.dry_run || deleted.is_empty() {
            return Ok(0);
        }
        let mut dropped = 0;
        for key in self.new_records()? {
            let Some(record) = self.cache.peek_remote(&key, None) else {
                continue;
            };
            let names =
                std::iter::once(&record.output.hash).chain(record.files.values().map(|f| &f.hash));
            let lost = names.filter(|h| deleted.contains(h)).any(|h| {
                matches!(
                    self.remote
                        .block_on(self.remote.head(&self.remote.blob_path(h))),
                    Err(Failure::NotFound)
                )
            });
            if lost {
                self.cache.delete_remote_record(&key)?;
                dropped += 1;
            }
        }
        Ok(dropped)
    }
}
