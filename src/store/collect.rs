//! What the cache holds and what collection removes from it: every entry checked ([`Cache::entries`]), sizes per
//! stage kind ([`Cache::usage`]) and [`Cache::prune`]. The store owns its layout, so these are the only code that
//! walks it; they return typed results, which the command line words.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use super::{Cache, Expect};
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
