//! The cache itself: [`Cache`], its entries and records, and the layout constants every part of the store uses.
//! Claims, pins and the gc lock are in `locks.rs`, the remote's read-through and write-behind in `sync.rs`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::artifact::{Artifact, ArtifactKind, ReportFile};
use crate::fingerprint::{Fingerprint, Hash};

use super::remote::Remote;

/// Change this when the layout or the record format changes; old trees are then ignored, not misread.
pub(super) const LAYOUT: &str = "v1";
pub(super) const RECORD: &str = "record.json";
pub(super) const OUTPUT: &str = "output.bin";
pub(super) const FILES: &str = "files";
pub(super) const CHECKPOINTS: &str = "checkpoints";
pub(super) const LOCKS: &str = "locks";
pub(super) const JOBS: &str = "jobs";
pub(super) const LIVE: &str = "live";
/// Pointers to the report folders of runs in progress on this cache, for `pipeline ps`.
pub(super) const RUNS: &str = "runs";
pub(super) const GC_LOCK: &str = "gc.lock";

/// A file of an entry: its size and content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub hash: Hash,
    pub bytes: u64,
}

/// What an entry holds, written after everything else.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub key: Hash,
    pub fingerprint: Fingerprint,
    pub output: FileRecord,
    /// Report files by name.
    pub files: BTreeMap<String, FileRecord>,
    pub summary: serde_json::Value,
    pub warnings: Vec<String>,
    /// The stage that made it, and how long it took.
    pub stage: String,
    pub seconds: f64,
    pub created: String,
}

impl Record {
    /// The size of every file of the entry together (its output and report files).
    pub fn bytes(&self) -> u64 {
        // Sizes come from a record anyone may have written: saturate, never wrap (or panic in a debug build).
        self.files
            .values()
            .fold(self.output.bytes, |total, f| total.saturating_add(f.bytes))
    }
}

/// What an entry of a stage kind must hold: only the report files the kind makes, and an output of its kind. Read
/// back from a cache or a remote, anything else is damage.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    pub report_files: &'a [&'a str],
    pub output: ArtifactKind,
}

/// The result of looking a fingerprint up.
#[derive(Debug)]
pub enum Lookup {
    Hit(Box<Record>),
    /// Not here, but on the remote: downloaded, checked and installed locally.
    Fetched(Box<Record>),
    Miss,
    /// An entry exists but cannot be trusted; it has been removed.
    Damaged(String),
}

#[derive(Debug, Clone)]
pub struct Cache {
    pub(super) root: PathBuf,
    /// This process's live file, made on the first [`Cache::pin`] (commands that only read never make one); removed
    /// when the last handle on this cache goes (a crashed run's is left for gc).
    pub(super) live: Arc<Mutex<Option<LiveFile>>>,
    /// Where entries are also looked up and uploaded to, if anywhere.
    pub(super) remote: Option<Arc<Remote>>,
}

/// The folders of `v1/`.
pub(super) const FOLDERS: [&str; 8] = [
    "entries",
    "tmp",
    "stages",
    CHECKPOINTS,
    LOCKS,
    JOBS,
    LIVE,
    RUNS,
];

impl Cache {
    /// Opens (creating if needed) a cache directory.
    pub fn open(dir: &Path) -> Result<Self> {
        let root = dir.join(LAYOUT);
        for sub in FOLDERS {
            fs::create_dir_all(root.join(sub)).with_context(|| {
                format!(
                    "cannot create the cache directory `{}`",
                    root.join(sub).display()
                )
            })?;
            crate::paths::ensure_inside(dir, &root.join(sub), "the cache directory")?;
        }
        Ok(Self {
            root,
            live: Arc::default(),
            remote: None,
        })
    }

    /// Opens a cache directory for looking things up only (`pipeline status`): creates nothing, and a cache that does
    /// not exist yet is an empty one. Its folders must still lie inside it.
    pub fn open_existing(dir: &Path) -> Result<Self> {
        let root = dir.join(LAYOUT);
        if root.exists() {
            for sub in FOLDERS {
                if root.join(sub).exists() {
                    crate::paths::ensure_inside(dir, &root.join(sub), "the cache directory")?;
                }
            }
        }
        Ok(Self {
            root,
            live: Arc::default(),
            remote: None,
        })
    }

    /// This cache with a remote behind it.
    pub fn with_remote(mut self, remote: Remote) -> Self {
        self.remote = Some(Arc::new(remote));
        self
    }

    /// `<cache dir>/v1`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether an intact entry for `key` exists.
    pub(crate) fn has_entry(&self, key: &Hash) -> bool {
        self.verify(key, &self.entry_dir(key), None).is_ok()
    }

    pub(super) fn entry_dir(&self, key: &Hash) -> PathBuf {
        let hex = key.hex();
        self.root.join("entries").join(&hex[..2]).join(hex)
    }

    /// Where a report file of an entry lives.
    pub fn file_path(&self, key: &Hash, name: &str) -> PathBuf {
        self.entry_dir(key).join(FILES).join(name)
    }

    /// Finds a complete, intact entry. Every file is re-hashed (blake3 reads gigabytes per second; entries are
    /// small next to the work they save), so a damaged entry is never used.
    /// `report_files` are the names the stage kind may make (any other is damage).
    ///
    /// With a remote: a local hit the remote lacks is uploaded in the background (one HEAD when it has it); a local
    /// miss is looked up remotely (one GET of the record) and, if it is there, downloaded and checked.
    pub fn lookup(&self, key: &Hash, expect: Expect) -> Lookup {
        let dir = self.entry_dir(key);
        let local = if !dir.exists() {
            Lookup::Miss
        } else {
            match self.verify(key, &dir, Some(expect)) {
                Ok(record) => Lookup::Hit(Box::new(record)),
                Err(problem) => {
                    // Move it aside first so a concurrent reader never sees it half-deleted.
                    let _ = self.discard(&dir);
                    Lookup::Damaged(problem)
                }
            }
        };
        let Some(remote) = self.remote.clone() else {
            return local;
        };
        match local {
            Lookup::Hit(record) => {
                self.push(&record);
                Lookup::Hit(record)
            }
            Lookup::Miss => self.fetch(&remote, key, expect),
            Lookup::Damaged(problem) => match self.fetch(&remote, key, expect) {
                Lookup::Miss => Lookup::Damaged(problem),
                Lookup::Damaged(theirs) => Lookup::Damaged(format!("{problem}; {theirs}")),
                found => found,
            },
            fetched @ Lookup::Fetched(_) => fetched,
        }
    }

    /// Like [`Cache::lookup`], but changes nothing: a damaged entry is just not found.
    pub fn peek(&self, key: &Hash, expect: Expect) -> Option<Record> {
        self.verify(key, &self.entry_dir(key), Some(expect)).ok()
    }

    /// The entry's record, if everything in it checks out. With `expect`, its files must be among the kind's and
    /// its output of the kind's kind.
    pub(crate) fn verify(
        &self,
        key: &Hash,
        dir: &Path,
        expect: Option<Expect>,
    ) -> std::result::Result<Record, String> {
        let text = fs::read(dir.join(RECORD)).map_err(|e| format!("no readable record ({e})"))?;
        let record: Record =
            serde_json::from_slice(&text).map_err(|e| format!("unreadable record ({e})"))?;
        check_record(&record, key, expect.map(|e| e.report_files))?;
        let output = check_file(&dir.join(OUTPUT), &record.output)?;
        for (name, file) in &record.files {
            check_file(&dir.join(FILES).join(name), file)?;
        }
        check_artifact(&output, expect.map(|e| e.output))?;
        Ok(record)
    }

    /// Reads an entry's artifact, checking its hash again.
    pub fn load(&self, record: &Record) -> Result<Artifact> {
        let path = self.entry_dir(&record.key).join(OUTPUT);
        let bytes = fs::read(&path)
            .with_context(|| format!("cannot read cache entry `{}`", path.display()))?;
        if Hash::of(&bytes) != record.output.hash {
            let _ = self.discard(&self.entry_dir(&record.key));
            anyhow::bail!(
                "cache entry `{}` changed on disk after it was checked; it has been removed, run again",
                path.display()
            );
        }
        let artifact = Artifact::from_bytes(&bytes)
            .with_context(|| format!("cannot decode cache entry `{}`", path.display()))?;
        artifact
            .validate()
            .map_err(|e| anyhow::anyhow!("cache entry `{}` is invalid: {e}", path.display()))?;
        Ok(artifact)
    }

    /// Writes an entry atomically: everything goes to a temporary directory, the record last, then one rename.
    /// With `replace`, an existing entry for the same key is swapped out (`--force`).
    pub fn store(
        &self,
        fingerprint: &Fingerprint,
        output: &[u8],
        files: &[ReportFile],
        meta: EntryMeta,
        replace: bool,
    ) -> Result<Record> {
        let key = fingerprint.hash();
        let tmp = tempfile::Builder::new()
            .prefix("entry-")
            .tempdir_in(self.tmp_dir())
            .context("cannot create a temporary cache entry")?;
        let output_record = write_synced(&tmp.path().join(OUTPUT), output)?;
        let mut file_records = BTreeMap::new();
        if !files.is_empty() {
            fs::create_dir(tmp.path().join(FILES))?;
        }
        for f in files {
            file_records.insert(
                f.name.clone(),
                write_synced(&tmp.path().join(FILES).join(&f.name), &f.bytes)?,
            );
        }
        let record = Record {
            key,
            fingerprint: fingerprint.clone(),
            output: output_record,
            files: file_records,
            summary: meta.summary,
            warnings: meta.warnings,
            stage: meta.stage,
            seconds: meta.seconds,
            created: jiff::Timestamp::now().to_string(),
        };
        write_synced(
            &tmp.path().join(RECORD),
            &serde_json::to_vec_pretty(&record)?,
        )?;

        self.install(tmp, &key, replace)?;
        self.push(&record);
        Ok(record)
    }

    /// Moves a complete entry built in `tmp` into place for `key` in one rename. When an intact entry is there
    /// already, it stays (unless `replace`): whoever stored the same result first, theirs is as good as ours.
    pub(super) fn install(&self, tmp: tempfile::TempDir, key: &Hash, replace: bool) -> Result<()> {
        let key = *key;
        let dest = self.entry_dir(&key);
        fs::create_dir_all(dest.parent().expect("entries have a parent"))?;
        if dest.exists() {
            let intact = self.verify(&key, &dest, None).is_ok();
            if intact && !replace {
                return Ok(());
            }
            self.discard(&dest)?;
        }
        let tmp_path = tmp.keep();
        match fs::rename(&tmp_path, &dest) {
            Ok(()) => {}
            Err(_) if self.verify(&key, &dest, None).is_ok() => {
                let _ = fs::remove_dir_all(&tmp_path);
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp_path);
                return Err(e).with_context(|| {
                    format!("cannot move the cache entry into `{}`", dest.display())
                });
            }
        }
        sync_dir(dest.parent().expect("entries have a parent"));
        Ok(())
    }

    /// Every entry directory with the key its name gives (`None`: a name that is not a key).
    pub(crate) fn entry_dirs(&self) -> Result<Vec<(Option<Hash>, PathBuf)>> {
        let mut out = Vec::new();
        let entries = self.root.join("entries");
        for shard in fs::read_dir(&entries)
            .with_context(|| format!("cannot list `{}`", entries.display()))?
        {
            let shard = shard?.path();
            if !shard.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&shard)? {
                let dir = entry?.path();
                let key = dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| blake3::Hash::from_hex(n).ok())
                    .map(Hash);
                out.push((key, dir));
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(out)
    }

    /// In-progress or orphaned entries, removed entries on their way out, and half-written files of killed runs.
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub(crate) fn checkpoints_dir(&self) -> PathBuf {
        self.root.join(CHECKPOINTS)
    }

    pub(crate) fn locks_dir(&self) -> PathBuf {
        self.root.join(LOCKS)
    }

    /// Where the Slurm executor keeps what it knows of jobs: one folder per fingerprint (description, submitted
    /// job id, log) and the shared-cache probes. Absolute, since jobs run in other directories.
    /// Where runs in progress leave a pointer to their report folder (`pipeline ps` reads them).
    pub fn runs_dir(&self) -> PathBuf {
        self.root.join(RUNS)
    }

    /// [`Cache::runs_dir`] of the cache at `dir`, without opening (or creating) it.
    pub fn runs_dir_of(dir: &Path) -> PathBuf {
        dir.join(LAYOUT).join(RUNS)
    }

    pub fn jobs_dir(&self) -> Result<PathBuf> {
        Ok(std::path::absolute(&self.root)?.join(JOBS))
    }

    /// Removes an entry by renaming it into `tmp/` first, so it disappears in one step.
    pub(crate) fn discard(&self, dir: &Path) -> Result<()> {
        let trash = tempfile::Builder::new()
            .prefix("trash-")
            .tempdir_in(self.tmp_dir())?
            .keep();
        let target = trash.join("entry");
        fs::rename(dir, &target)
            .with_context(|| format!("cannot remove cache entry `{}`", dir.display()))?;
        let _ = fs::remove_dir_all(&trash);
        Ok(())
    }
}

/// What the executor knows about a stage run, besides its output.
pub struct EntryMeta {
    pub stage: String,
    pub summary: serde_json::Value,
    pub warnings: Vec<String>,
    pub seconds: f64,
}

/// What a record must be, wherever it was read from: its own fingerprint's, and naming only plain file names (with
/// `report_files`, only those).
pub(super) fn check_record(
    record: &Record,
    key: &Hash,
    report_files: Option<&[&str]>,
) -> std::result::Result<(), String> {
    if record.key != *key || record.fingerprint.hash() != *key {
        return Err("the record belongs to another fingerprint".into());
    }
    // The names become paths (in the entry, then in a report folder): one plain file name each, never a way
    // out of either directory.
    if let Some(name) = record.files.keys().find(|n| !plain_file_name(n)) {
        return Err(format!(
            "the record names a report file `{name}`, which is not a plain file name"
        ));
    }
    if let Some(name) = report_files
        .and_then(|allowed| record.files.keys().find(|n| !allowed.contains(&n.as_str())))
    {
        return Err(format!(
            "the record names a report file `{name}`, which its stage kind never makes"
        ));
    }
    Ok(())
}

/// Whether an entry's output bytes decode and validate, and (when `expected` says) are of the kind its stage makes:
/// intact bytes can still be an old format, a crafted value that would panic where it is used, or another stage's
/// output filed under this key. The kind it holds, when it checks out.
pub(super) fn check_artifact(
    output: &[u8],
    expected: Option<ArtifactKind>,
) -> std::result::Result<ArtifactKind, String> {
    let artifact =
        Artifact::from_bytes(output).map_err(|e| format!("its output cannot be decoded ({e})"))?;
    artifact
        .validate()
        .map_err(|e| format!("its output is invalid: {e}"))?;
    match expected {
        Some(kind) if artifact.kind() != kind => Err(format!(
            "its output is {}, where its stage kind makes {kind}",
            artifact.kind()
        )),
        _ => Ok(artifact.kind()),
    }
}

/// The file's bytes, if they match the record.
pub(super) fn check_file(
    path: &Path,
    expected: &FileRecord,
) -> std::result::Result<Vec<u8>, String> {
    // Only a regular file: a symlink planted in an entry could point anywhere.
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => {}
        Ok(_) => return Err(format!("`{}` is not a regular file", path.display())),
        Err(e) => return Err(format!("`{}` is unreadable ({e})", path.display())),
    }
    let bytes = fs::read(path).map_err(|e| format!("`{}` is unreadable ({e})", path.display()))?;
    if bytes.len() as u64 != expected.bytes || Hash::of(&bytes) != expected.hash {
        return Err(format!(
            "`{}` does not match its recorded hash",
            path.display()
        ));
    }
    Ok(bytes)
}

/// One normal path component: not empty, no separator, not `.` or `..`, nothing a platform reads specially.
pub fn plain_file_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(n)), None) if n == name
    ) && !name.contains(['/', '\\', '\0', ':'])
        && !name.starts_with('.')
}

pub(super) fn write_synced(path: &Path, bytes: &[u8]) -> Result<FileRecord> {
    let mut f =
        fs::File::create(path).with_context(|| format!("cannot write `{}`", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(FileRecord {
        hash: Hash::of(bytes),
        bytes: bytes.len() as u64,
    })
}

/// Makes a rename durable; best effort (not every filesystem supports syncing directories).
pub(super) fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A process's live file, held locked; unlinked, then closed, when the process is done with the cache.
#[derive(Debug)]
pub(super) struct LiveFile {
    pub(super) file: fs::File,
    pub(super) path: PathBuf,
}

impl Drop for LiveFile {
    fn drop(&mut self) {
        // Unlinked while still locked: a gc that opened it before reads it as a live process's, one after finds
        // nothing; either way nothing this process pinned is deleted while it runs.
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{MidiCorpus, Song};
    use crate::fingerprint::InputHash;

    fn fingerprint(n: u32) -> Fingerprint {
        Fingerprint {
            kind: "test".into(),
            version: n,
            params: BTreeMap::new(),
            inputs: vec![InputHash {
                stage: "x".into(),
                hash: Hash::of(b"x"),
            }],
            files: BTreeMap::new(),
            files_root: String::new(),
        }
    }

    fn meta() -> EntryMeta {
        EntryMeta {
            stage: "s".into(),
            summary: serde_json::json!({}),
            warnings: vec![],
            seconds: 0.0,
        }
    }

    /// What the tests' entries hold: MIDI files, and a report file `t.csv`.
    const MIDI_T: Expect = Expect {
        report_files: &["t.csv"],
        output: ArtifactKind::Midi,
    };

    fn artifact() -> Vec<u8> {
        Artifact::Midi(MidiCorpus {
            files: vec![Song {
                path: "a.mid".into(),
                ticks_per_beat: Some(480),
                tempo: crate::artifact::DEFAULT_TEMPO,
                events: vec![],
            }],
        })
        .to_bytes()
    }

    #[test]
    fn stored_entries_are_found_and_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let fp = fingerprint(1);
        let files = [ReportFile {
            name: "t.csv".into(),
            bytes: b"a,b\n".to_vec(),
        }];
        let record = cache
            .store(&fp, &artifact(), &files, meta(), false)
            .unwrap();
        let Lookup::Hit(found) = cache.lookup(&fp.hash(), MIDI_T) else {
            panic!("expected a hit")
        };
        assert_eq!(found.output, record.output);
        assert_eq!(cache.load(&found).unwrap().to_bytes(), artifact());
        assert_eq!(
            fs::read(cache.file_path(&fp.hash(), "t.csv")).unwrap(),
            b"a,b\n"
        );
        assert!(matches!(
            cache.lookup(&fingerprint(2).hash(), MIDI_T),
            Lookup::Miss
        ));
    }

    /// A crash before the record is written leaves a directory without a record: never a hit.
    #[test]
    fn an_entry_without_its_record_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let fp = fingerprint(1);
        cache.store(&fp, &artifact(), &[], meta(), false).unwrap();
        fs::remove_file(cache.entry_dir(&fp.hash()).join(RECORD)).unwrap();
        assert!(matches!(
            cache.lookup(&fp.hash(), MIDI_T),
            Lookup::Damaged(_)
        ));
        assert!(
            matches!(cache.lookup(&fp.hash(), MIDI_T), Lookup::Miss),
            "the damaged entry is removed"
        );
    }

    #[test]
    fn a_flipped_byte_or_a_truncated_output_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        for (i, damage) in [0usize, 1].into_iter().enumerate() {
            let fp = fingerprint(10 + i as u32);
            cache.store(&fp, &artifact(), &[], meta(), false).unwrap();
            let out = cache.entry_dir(&fp.hash()).join(OUTPUT);
            let mut bytes = fs::read(&out).unwrap();
            if damage == 0 {
                bytes[3] ^= 0x40;
            } else {
                bytes.truncate(bytes.len() / 2);
            }
            fs::write(&out, bytes).unwrap();
            assert!(matches!(
                cache.lookup(&fp.hash(), MIDI_T),
                Lookup::Damaged(_)
            ));
        }
    }

    #[test]
    fn replacing_an_entry_swaps_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let fp = fingerprint(1);
        let (old, new) = (
            artifact(),
            Artifact::Midi(MidiCorpus { files: vec![] }).to_bytes(),
        );
        cache.store(&fp, &old, &[], meta(), false).unwrap();
        cache.store(&fp, &new, &[], meta(), false).unwrap();
        assert_eq!(
            fs::read(cache.entry_dir(&fp.hash()).join(OUTPUT)).unwrap(),
            old
        );
        cache.store(&fp, &new, &[], meta(), true).unwrap();
        assert_eq!(
            fs::read(cache.entry_dir(&fp.hash()).join(OUTPUT)).unwrap(),
            new
        );
        assert!(matches!(cache.lookup(&fp.hash(), MIDI_T), Lookup::Hit(_)));
    }
}
