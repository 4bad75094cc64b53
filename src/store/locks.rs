//! Who may do what in the cache, with advisory file locks the kernel releases when a process dies: the claim on
//! computing an entry (`v1/locks/<key>.lock`, so two runs never compute one entry twice), the pins that keep a live
//! run's entries from `cache gc` (`v1/live/<pid>-….keys`), and `v1/gc.lock`, shared by runs and exclusive for gc.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use super::cache::{Cache, GC_LOCK, LIVE, LiveFile};
use crate::fingerprint::Hash;

/// An exclusive claim on computing one entry, shared by every process using the cache (an advisory file lock, which
/// the kernel releases if the process dies). Released when dropped.
pub struct Claim {
    _file: fs::File,
}

/// The shared or exclusive side of `gc.lock`, released when dropped.
pub struct GcGuard {
    _file: fs::File,
}

impl Cache {
    /// Keeps `key` from `cache gc` for as long as this process lives: call it before looking the entry up, claiming
    /// or resuming from it. The pin is written under the shared side of `gc.lock`, and gc holds the exclusive side
    /// from reading the live files until it has deleted, so a gc either sees the pin or has finished before it.
    ///
    /// Best effort: a cache this process cannot write (read-only, someone else's) gets no live file, and gc cannot
    /// delete from it through this process's permissions either.
    pub fn pin(&self, key: &Hash) {
        let _ = self.pin_under_lock(key);
    }

    fn pin_under_lock(&self, key: &Hash) -> Option<()> {
        let _shared = self.gc_lock(false)?;
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.is_none() {
            let path = self.root.join(LIVE).join(format!(
                "{}-{}.keys",
                std::process::id(),
                jiff::Timestamp::now().as_nanosecond()
            ));
            let file = fs::OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .ok()?;
            // Held until the process is done: gc reads a live file it cannot lock as a running process's.
            file.try_lock().ok()?;
            *live = Some(LiveFile { file, path });
        }
        let live = live.as_mut().expect("just made");
        writeln!(live.file, "{}", key.hex()).ok()
    }

    /// `gc.lock`, shared (runs looking up) or exclusive (gc deciding and deleting).
    pub(super) fn gc_lock(&self, exclusive: bool) -> Option<GcGuard> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(GC_LOCK))
            .ok()?;
        if exclusive {
            file.lock().ok()?;
        } else {
            file.lock_shared().ok()?;
        }
        Some(GcGuard { _file: file })
    }

    /// Holds `gc.lock` exclusively: no run pins or looks up anything meanwhile.
    pub(crate) fn exclusive_for_gc(&self) -> Result<GcGuard> {
        self.gc_lock(true).with_context(|| {
            format!(
                "cannot lock `{}` for garbage collection",
                self.root.join(GC_LOCK).display()
            )
        })
    }

    /// Every key a live process has pinned, and how many live processes there are; live files of processes that
    /// are gone are removed (unless `dry_run`).
    pub(crate) fn pinned(&self, dry_run: bool) -> Result<(HashSet<String>, usize)> {
        let mut keys = HashSet::new();
        let mut processes = 0;
        let dir = self.root.join(LIVE);
        for item in
            fs::read_dir(&dir).with_context(|| format!("cannot list `{}`", dir.display()))?
        {
            let path = item?.path();
            let Ok(file) = fs::File::open(&path) else {
                continue;
            };
            match file.try_lock() {
                // Its process is gone: the kernel released its lock.
                Ok(()) => {
                    if !dry_run {
                        let _ = fs::remove_file(&path);
                    }
                }
                Err(fs::TryLockError::WouldBlock) => {
                    processes += 1;
                    let text = fs::read_to_string(&path).unwrap_or_default();
                    keys.extend(text.lines().map(str::to_string));
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock `{}`", path.display()));
                }
            }
        }
        Ok((keys, processes))
    }

    /// Whether some process holds the claim on computing `key` (a training in progress).
    pub(crate) fn claimed(&self, hex: &str) -> bool {
        fs::File::open(self.locks_dir().join(format!("{hex}.lock")))
            .is_ok_and(|f| matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock)))
    }

    /// Removes lock files nobody holds. Each is unlinked while this process holds it, so a process that opened it
    /// before finds, once it gets the lock, that the path no longer names its file, and opens it anew.
    pub(crate) fn remove_free_locks(&self) {
        let Ok(locks) = fs::read_dir(self.locks_dir()) else {
            return;
        };
        for lock in locks.filter_map(|l| l.ok()) {
            if let Ok(f) = fs::File::open(lock.path())
                && f.try_lock().is_ok()
            {
                let _ = fs::remove_file(lock.path());
            }
        }
    }

    /// Claims the right to compute the entry `key`. Returns at once when no other process holds it; otherwise calls
    /// `waiting` and blocks until that process is done (it will usually have stored the entry by then).
    ///
    /// While it waits, Ctrl-C ends the wait with [`crate::interrupt::Interrupted`].
    pub fn claim(&self, key: &Hash, waiting: impl FnOnce()) -> Result<Claim> {
        let path = self.locks_dir().join(format!("{}.lock", key.hex()));
        let mut waiting = Some(waiting);
        loop {
            let file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("cannot create the lock file `{}`", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    if let Some(say) = waiting.take() {
                        say();
                    }
                    wait_for_lock(&file, &path)?;
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock `{}`", path.display()));
                }
            }
            // gc unlinks only lock files it holds; if that happened while we waited, ours is an orphan and
            // another process may already hold a new file at the path.
            if same_file(&file, &path) {
                return Ok(Claim { _file: file });
            }
        }
    }
}

/// Polls for an exclusive lock, so that Ctrl-C can end the wait (a blocking `flock` would not return).
fn wait_for_lock(file: &fs::File, path: &Path) -> Result<()> {
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) => {
                if crate::interrupt::requested() {
                    return Err(crate::interrupt::Interrupted.into());
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock `{}`", path.display()));
            }
        }
    }
}

/// Whether `path` still names the open `file` (same device and inode).
fn same_file(file: &fs::File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}
