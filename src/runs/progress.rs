//! The files a run in progress keeps up to date, so other processes can follow it: `progress.json` in its report
//! folder (the [`Progress`] board), `progress.lock` beside it (held while the run lives, so a reader tells a live
//! run from one that was killed without trusting clocks or process ids), and a pointer in the cache's `runs/`
//! directory, through which `pipeline ps` finds every run on that cache whatever its reports directory. All three
//! go when the run ends; the manifest then says everything.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::exec::progress::Progress;
use crate::store::Cache;

pub const PROGRESS: &str = "progress.json";
const LOCK: &str = "progress.lock";
/// How often the board is rewritten at most while epochs stream in (state changes are written at once).
const EVERY: Duration = Duration::from_millis(500);

/// What the cache's pointer file says.
#[derive(Debug, Serialize, Deserialize)]
struct Pointer {
    report_dir: PathBuf,
}

/// The files of a live run; removed when dropped.
#[derive(Debug)]
pub struct LiveFiles {
    dir: PathBuf,
    /// Held (locked) for as long as the run lives.
    _lock: Option<fs::File>,
    pointer: Option<PathBuf>,
    last_write: Option<Instant>,
}

impl LiveFiles {
    /// Starts following a run whose report folder is `dir`. Best effort: a run whose cache or report folder cannot
    /// take these files runs all the same, only `ps` and the index cannot see it.
    pub fn start(dir: &Path, cache: &Cache, progress: &Progress) -> Self {
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))
            .ok()
            .filter(|f| f.try_lock().is_ok());
        let mut files = Self {
            dir: dir.to_path_buf(),
            _lock: lock,
            pointer: None,
            last_write: None,
        };
        // The board before the pointer: `ps` takes a pointer to a folder without one for a run that is gone.
        files.write(progress, true);
        files.pointer = std::path::absolute(dir).ok().and_then(|report_dir| {
            let path = cache.runs_dir().join(format!(
                "{}-{}.json",
                std::process::id(),
                jiff::Timestamp::now().as_nanosecond()
            ));
            let bytes = serde_json::to_vec(&Pointer { report_dir }).ok()?;
            crate::paths::write_atomic(&path, &[&bytes], false).ok()?;
            Some(path)
        });
        files
    }

    /// Rewrites `progress.json` (atomically), unless it was written less than half a second ago and `now` is false.
    pub fn write(&mut self, progress: &Progress, now: bool) {
        if !now && self.last_write.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        if let Ok(bytes) = serde_json::to_vec_pretty(progress) {
            let _ = crate::paths::write_atomic(&self.dir.join(PROGRESS), &[&bytes], false);
            self.last_write = Some(Instant::now());
        }
    }
}

impl Drop for LiveFiles {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.dir.join(PROGRESS));
        if let Some(p) = &self.pointer {
            let _ = fs::remove_file(p);
        }
        // Last: until here a reader sees the lock held and takes the run for a live one.
        let _ = fs::remove_file(self.dir.join(LOCK));
    }
}

/// A run's board read back from its report folder.
#[derive(Debug, Clone)]
pub struct Followed {
    pub dir: PathBuf,
    pub progress: Progress,
    /// Its process still runs (holds the lock); otherwise it was killed before it could clean up.
    pub alive: bool,
}

/// The board of the run in `dir`, if one is there. A file that does not parse is not a run's board (nothing read
/// back is trusted), so it reads as none.
pub fn read(dir: &Path) -> Option<Followed> {
    let bytes = crate::paths::read_regular(&dir.join(PROGRESS)).ok()?;
    let progress: Progress = serde_json::from_slice(&bytes).ok()?;
    let lock = dir.join(LOCK);
    let alive = crate::paths::is_regular(&lock)
        && fs::File::open(&lock)
            .is_ok_and(|f| matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock)));
    Some(Followed {
        dir: dir.to_path_buf(),
        progress,
        alive,
    })
}

/// Every live run on the cache at `cache_dir`, oldest first. Pointers whose run is gone (killed) are removed.
pub fn on_cache(cache_dir: &Path) -> Result<Vec<Followed>> {
    let dir = Cache::runs_dir_of(cache_dir);
    let mut runs = Vec::new();
    if !dir.exists() {
        return Ok(runs);
    }
    // `ps` removes the pointers of runs that are gone: never through a link that leads out of the cache.
    crate::paths::ensure_inside(cache_dir, &dir, "the cache directory")?;
    let items = match fs::read_dir(&dir) {
        Ok(items) => items,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(runs),
        Err(e) => return Err(e).with_context(|| format!("cannot list `{}`", dir.display())),
    };
    for item in items {
        let item = item?;
        let path = item.path();
        // Only plain files named as `LiveFiles::start` names pointers: anything else is not ours to read or remove.
        if !item.file_type().is_ok_and(|t| t.is_file()) || !is_pointer_name(&item.file_name()) {
            continue;
        }
        let Some(pointer) = crate::paths::read_regular(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Pointer>(&b).ok())
        else {
            continue;
        };
        match read(&pointer.report_dir) {
            Some(run) if run.alive => runs.push(run),
            // The run is gone (killed): nothing follows its pointer any more.
            _ => {
                let _ = fs::remove_file(&path);
            }
        }
    }
    runs.sort_by_key(|r| r.progress.started);
    Ok(runs)
}

/// `<pid>-<nanoseconds>.json`, as [`LiveFiles::start`] names a pointer.
fn is_pointer_name(name: &std::ffi::OsStr) -> bool {
    let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
        return false;
    };
    stem.split_once('-').is_some_and(|(pid, nanos)| {
        [pid, nanos]
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The folders under `dir` (a reports directory, an experiment's or a run's folder) with a run's board, live or
/// left by a killed run.
pub fn under(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .max_depth(3)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && e.file_name() == PROGRESS)
        .filter_map(|e| e.path().parent().map(Path::to_path_buf))
        .collect();
    out.sort();
    out
}
