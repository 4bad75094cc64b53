//! `pipeline cache verify | du | gc`: checking every entry of the cache, measuring it per stage kind, and removing
//! what recent reports no longer refer to.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use crate::cache::Cache;
use crate::fingerprint::Hash;
use crate::stages::StageKind;

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
                            .verify(k, &dir, Some(kind.report_files()))
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

/// Entry keys that the `keep` most recent runs of each experiment under `reports` refer to; and how many runs were
/// found in all.
fn referenced(reports: &Path, keep: usize) -> Result<(HashSet<String>, usize)> {
    // (experiment, run id) → the stage fingerprints of its manifests (a sweep run has one per point).
    let mut runs: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    if !reports.is_dir() {
        return Ok((HashSet::new(), 0));
    }
    for entry in walkdir::WalkDir::new(reports).max_depth(4) {
        let entry = entry.with_context(|| format!("cannot list `{}`", reports.display()))?;
        if entry.file_name() != "manifest.json" {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let text = |key: &str| manifest[key].as_str().unwrap_or_default().to_string();
        let keys = manifest["stages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["fingerprint"].as_str().map(str::to_string));
        runs.entry((text("experiment"), text("run_id")))
            .or_default()
            .extend(keys);
    }
    let found = runs.len();
    let mut per_experiment: BTreeMap<String, Vec<(String, Vec<String>)>> = BTreeMap::new();
    for ((experiment, run_id), keys) in runs {
        per_experiment
            .entry(experiment)
            .or_default()
            .push((run_id, keys));
    }
    let mut kept = HashSet::new();
    for runs in per_experiment.values_mut() {
        // Run ids start with the time they began, so they sort in time order.
        runs.sort_by(|a, b| b.0.cmp(&a.0));
        for (_, keys) in runs.iter().take(keep) {
            kept.extend(keys.iter().cloned());
        }
    }
    Ok((kept, found))
}

/// Leftovers in `tmp/` older than this are from crashed runs; younger ones may belong to a run going on now.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// Removes entries that none of the `keep` most recent runs of any experiment refers to, damaged entries, and stale
/// temporary data. With `dry_run`, only says what it would remove.
pub fn gc(cache: &Cache, reports: &Path, keep: usize, dry_run: bool) -> Result<String> {
    let (kept, runs) = referenced(reports, keep)?;
    anyhow::ensure!(
        runs > 0,
        "no reports found under `{}`, so nothing would be kept; pass the reports directory with `--reports-dir`, \
         or delete the cache directory to empty it",
        reports.display()
    );
    let (mut removed, mut removed_bytes, mut left, mut left_bytes) = (0usize, 0u64, 0usize, 0u64);
    let mut lines = String::new();
    for e in entries(cache)? {
        let referenced = e.key.as_ref().is_some_and(|k| kept.contains(&k.hex()));
        if referenced && e.kind.is_ok() {
            left += 1;
            left_bytes += e.bytes;
            continue;
        }
        let what = match &e.kind {
            Ok(kind) => format!("{kind}, not in the last {keep} run(s)"),
            Err(why) => format!("damaged: {why}"),
        };
        writeln!(lines, "  {} ({what}, {})", short(&e), human_bytes(e.bytes))?;
        if !dry_run {
            cache.discard(&e.dir)?;
        }
        removed += 1;
        removed_bytes += e.bytes;
    }
    let now = SystemTime::now();
    for item in std::fs::read_dir(cache.tmp_dir())? {
        let item = item?;
        let age = item
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default();
        if age < STALE_TMP {
            continue;
        }
        let bytes = size_of(&item.path());
        writeln!(
            lines,
            "  tmp/{} (left by an interrupted run, {})",
            item.file_name().to_string_lossy(),
            human_bytes(bytes)
        )?;
        if !dry_run {
            let path = item.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        removed += 1;
        removed_bytes += bytes;
    }
    if !dry_run {
        // Lock files nobody holds: recreated by the next run that computes that entry.
        if let Ok(locks) = std::fs::read_dir(cache.locks_dir()) {
            for lock in locks.filter_map(|l| l.ok()) {
                let unheld = std::fs::File::open(lock.path()).is_ok_and(|f| f.try_lock().is_ok());
                if unheld {
                    let _ = std::fs::remove_file(lock.path());
                }
            }
        }
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    Ok(format!(
        "{verb} {removed} item(s) ({}); {left} entries ({}) are referred to by the last {keep} run(s) of each of \
         the experiments in `{}`\n{lines}",
        human_bytes(removed_bytes),
        human_bytes(left_bytes),
        reports.display()
    ))
}
