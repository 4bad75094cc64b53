//! `pipeline cache verify | du | gc`: checking every entry of the cache, measuring it per stage kind, and removing
//! what recent reports no longer refer to.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use crate::fingerprint::Hash;
use crate::stages::StageKind;
use crate::store::Cache;

/// One entry as found on disk.
struct Entry {
    dir: PathBuf,
    key: Option<Hash>,
    /// Its stage kind, or why it cannot be trusted.
    kind: std::result::Result<String, String>,
    bytes: u64,
}

fn entries(cache: &Cache) -> Result<Vec<Entry>> {
    cache
        .entry_dirs()?
        .into_iter()
        .map(|(key, dir)| {
            let kind = match &key {
                Some(k) => cache.verify(k, &dir, None).and_then(|r| {
                    match StageKind::from_name(&r.fingerprint.kind) {
                        Some(kind) => cache
                            .verify(k, &dir, Some(kind.expect()))
                            .map(|_| r.fingerprint.kind),
                        None => Err(format!("an unknown stage kind `{}`", r.fingerprint.kind)),
                    }
                }),
                None => Err("its directory name is not an entry key".to_string()),
            };
            Ok(Entry {
                bytes: size_of(&dir),
                dir,
                key,
                kind,
            })
        })
        .collect()
}

/// Bytes of all files under `path`.
fn size_of(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Sizes as people read them (`5.70 MiB`).
fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

fn short(entry: &Entry) -> String {
    match &entry.key {
        Some(k) => k.short(),
        None => entry.dir.display().to_string(),
    }
}

/// Re-hashes every entry. Returns the report and whether everything was intact.
pub fn verify(cache: &Cache) -> Result<(String, bool)> {
    let all = entries(cache)?;
    let damaged: Vec<&Entry> = all.iter().filter(|e| e.kind.is_err()).collect();
    let total: u64 = all.iter().map(|e| e.bytes).sum();
    let mut out = format!(
        "checked {} entries ({}): {} intact, {} damaged\n",
        all.len(),
        human_bytes(total),
        all.len() - damaged.len(),
        damaged.len()
    );
    for e in &damaged {
        if let Err(why) = &e.kind {
            writeln!(out, "damaged {}: {why}", short(e))?;
        }
    }
    if !damaged.is_empty() {
        out.push_str(
            "A damaged entry is never used: the next run that needs it recomputes it. `pipeline cache gc` removes \
             them now.\n",
        );
    }
    Ok((out, damaged.is_empty()))
}

/// Sizes per stage kind, plus temporary data and checkpoints.
pub fn du(cache: &Cache) -> Result<String> {
    let mut per_kind: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for e in entries(cache)? {
        let kind = e.kind.unwrap_or_else(|_| "(damaged)".into());
        let slot = per_kind.entry(kind).or_default();
        slot.0 += 1;
        slot.1 += e.bytes;
    }
    let mut rows: Vec<(String, String, u64)> = per_kind
        .into_iter()
        .map(|(kind, (n, bytes))| (kind, n.to_string(), bytes))
        .collect();
    for (name, dir) in [
        ("(checkpoints)", cache.checkpoints_dir()),
        ("(temporary)", cache.tmp_dir()),
    ] {
        let count = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        if count > 0 {
            rows.push((name.into(), count.to_string(), size_of(&dir)));
        }
    }
    let total: u64 = rows.iter().map(|r| r.2).sum();
    let mut out = format!("{:<20} {:>8} {:>12}\n", "kind", "entries", "size");
    for (kind, n, bytes) in &rows {
        writeln!(out, "{kind:<20} {n:>8} {:>12}", human_bytes(*bytes))?;
    }
    writeln!(out, "{:<20} {:>8} {:>12}", "total", "", human_bytes(total))?;
    Ok(out)
}

/// Leftovers in `tmp/` older than this are from crashed runs; younger ones may belong to a run going on now.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// What `cache gc` keeps besides the recent runs' entries.
#[derive(Debug, Clone, Copy)]
pub struct GcPolicy {
    /// Runs per experiment whose entries are kept.
    pub keep: usize,
    /// Entries, checkpoints and job folders younger than this are kept: a run may have just made them.
    pub grace: Duration,
    pub dry_run: bool,
}

/// What gc removed (or would), line by line.
#[derive(Default)]
struct Tally {
    removed: usize,
    bytes: u64,
    lines: String,
}

impl Tally {
    /// Removes the file or folder at `path` (`what` ends inside an open parenthesis: the size closes it).
    fn remove(&mut self, what: String, path: &Path, dry_run: bool) -> Result<()> {
        let bytes = size_of(path);
        writeln!(self.lines, "  {what}, {})", human_bytes(bytes))?;
        if !dry_run {
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
        self.removed += 1;
        self.bytes += bytes;
        Ok(())
    }
}

/// Removes entries that none of the `keep` most recent runs of any experiment refers to and that no running process
/// uses, damaged entries, checkpoints and Slurm job folders of finished or forgotten stages, stale temporary data
/// and lock files nobody holds. Safe beside any number of runs (see [`Cache::pin`]). With `dry_run`, only says
/// what it would remove.
pub fn gc(cache: &Cache, reports: &Path, policy: GcPolicy) -> Result<String> {
    let GcPolicy {
        keep,
        grace,
        dry_run,
    } = policy;
    let (mut kept, runs) = crate::runs::manifest::referenced_keys(reports, keep)?;
    anyhow::ensure!(
        runs > 0,
        "no reports found under `{}`, so nothing would be kept; pass the reports directory with `--reports-dir`, \
         or delete the cache directory to empty it",
        reports.display()
    );
    // From here on no run pins anything until gc is done: what is pinned now is all that is in use.
    let _exclusive = cache.exclusive_for_gc()?;
    let (live, processes) = cache.pinned(dry_run)?;
    kept.extend(live);
    let now = SystemTime::now();
    let age_of = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
    };
    let young = |path: &Path| age_of(path).is_some_and(|a| a < grace);
    let stale = |path: &Path| age_of(path).unwrap_or_default() >= STALE_TMP.max(grace);
    let mut tally = Tally::default();
    let (mut left, mut left_bytes) = (0usize, 0u64);

    for e in entries(cache)? {
        let referenced = e.key.as_ref().is_some_and(|k| kept.contains(&k.hex()));
        if e.kind.is_ok() && (referenced || young(&e.dir.join("record.json"))) {
            left += 1;
            left_bytes += e.bytes;
            continue;
        }
        let what = match &e.kind {
            Ok(kind) => format!("{kind}, not in the last {keep} run(s)"),
            Err(why) => format!("damaged: {why}"),
        };
        writeln!(
            tally.lines,
            "  {} ({what}, {})",
            short(&e),
            human_bytes(e.bytes)
        )?;
        if !dry_run {
            // Renamed away in one step, so a reader never sees half an entry.
            cache.discard(&e.dir)?;
        }
        tally.removed += 1;
        tally.bytes += e.bytes;
    }

    // A checkpoint or Slurm job folder per fingerprint: dropped once its entry exists (the stage finished) or once
    // no recent run refers to it; kept while a process computes its stage, and while it is young.
    for (dir, noun) in [
        (cache.checkpoints_dir(), "checkpoint"),
        (cache.jobs_dir()?, "Slurm job folder"),
    ] {
        for item in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            let hex = name.strip_suffix(".bin").unwrap_or(&name);
            let Ok(key) = blake3::Hash::from_hex(hex).map(Hash) else {
                // `jobs/probes/`: markers of shared-cache checks that could not clean up after themselves.
                if name == "probes" {
                    for probe in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                        if stale(&probe.path()) {
                            let what = format!(
                                "jobs/probes/{} (a shared-cache check's marker",
                                probe.file_name().to_string_lossy()
                            );
                            tally.remove(what, &probe.path(), dry_run)?;
                        }
                    }
                }
                continue;
            };
            if cache.claimed(hex) || young(&path) {
                continue;
            }
            let why = if cache.has_entry(&key) {
                "its stage finished"
            } else if !kept.contains(hex) {
                "no recent run refers to it"
            } else {
                continue;
            };
            tally.remove(format!("{noun} {} ({why}", key.short()), &path, dry_run)?;
        }
    }

    for item in std::fs::read_dir(cache.tmp_dir())? {
        let path = item?.path();
        if stale(&path) {
            let what = format!(
                "tmp/{} (left by an interrupted run",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            tally.remove(what, &path, dry_run)?;
        }
    }
    if !dry_run {
        // Recreated by the next run that computes that entry.
        cache.remove_free_locks();
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    Ok(format!(
        "{verb} {} item(s) ({}); kept {left} entries ({}) that the last {keep} run(s) of each experiment in `{}` \
         refer to, that {processes} running process(es) use, or that are younger than {}\n{}",
        tally.removed,
        human_bytes(tally.bytes),
        human_bytes(left_bytes),
        reports.display(),
        jiff::SignedDuration::try_from(grace)
            .map(|d| format!("{d:#}"))
            .unwrap_or_else(|_| format!("{grace:?}")),
        tally.lines
    ))
}
