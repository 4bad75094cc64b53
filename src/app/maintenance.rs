//! `pipeline cache verify | du | gc`: checking every entry of the cache, measuring it per stage kind, and removing
//! what recent reports no longer refer to.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::stages::StageKind;
use crate::store::collect::{PrunePolicy, Pruned, Removal};
use crate::store::{Cache, Expect};

/// Sizes as people read them (`5.70 MiB`).
fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

/// The stage kinds' expectations of their entries, for the store's checks.
fn kinds(name: &str) -> Option<Expect<'static>> {
    StageKind::from_name(name).map(|k| k.expect())
}

/// Re-hashes every entry. Returns the report and whether everything was intact.
pub fn verify(cache: &Cache) -> Result<(String, bool)> {
    let all = cache.entries(&kinds)?;
    let damaged: Vec<_> = all.iter().filter(|e| e.kind.is_err()).collect();
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
            writeln!(out, "damaged {}: {why}", e.short())?;
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
    let rows = cache.usage(&kinds)?;
    let total: u64 = rows.iter().map(|r| r.bytes).sum();
    let mut out = format!("{:<20} {:>8} {:>12}\n", "kind", "entries", "size");
    for r in &rows {
        writeln!(
            out,
            "{:<20} {:>8} {:>12}",
            r.kind,
            r.count,
            human_bytes(r.bytes)
        )?;
    }
    writeln!(out, "{:<20} {:>8} {:>12}", "total", "", human_bytes(total))?;
    Ok(out)
}

/// What `cache gc` keeps besides the recent runs' entries.
#[derive(Debug, Clone, Copy)]
pub struct GcPolicy {
    /// Runs per experiment whose entries are kept.
    pub keep: usize,
    /// Entries, checkpoints and job folders younger than this are kept (default [`PrunePolicy::DEFAULT_GRACE`]).
    pub grace: Option<Duration>,
    pub dry_run: bool,
}

/// Removes what the `keep` most recent runs of every experiment under `reports` do not refer to ([`Cache::prune`]
/// says what else it keeps and removes), and says what it removed. With `dry_run`, only says what it would remove.
pub fn gc(cache: &Cache, reports: &Path, policy: GcPolicy) -> Result<String> {
    let GcPolicy {
        keep,
        grace,
        dry_run,
    } = policy;
    let (kept, runs) = crate::runs::manifest::referenced_keys(reports, keep)?;
    anyhow::ensure!(
        runs > 0,
        "no reports found under `{}`, so nothing would be kept; pass the reports directory with `--reports-dir`, \
         or delete the cache directory to empty it",
        reports.display()
    );
    let grace = grace.unwrap_or(PrunePolicy::DEFAULT_GRACE);
    let removal = cache.prune(kept, PrunePolicy { grace, dry_run }, &kinds)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    Ok(format!(
        "{verb} {} item(s) ({}); kept {} entries ({}) that the last {keep} run(s) of each experiment in `{}` \
         refer to, that {} running process(es) use, or that are younger than {}\n{}",
        removal.removed.len(),
        human_bytes(removal.bytes()),
        removal.kept,
        human_bytes(removal.kept_bytes),
        reports.display(),
        removal.processes,
        jiff::SignedDuration::try_from(grace)
            .map(|d| format!("{d:#}"))
            .unwrap_or_else(|_| format!("{grace:?}")),
        lines(&removal, keep)
    ))
}

/// With `cache gc --reports`: removes the report folders of every run beyond the `keep` most recent of its
/// experiment that is older than `grace` and not running (or, with `dry_run`, says which it would), and says what it
/// removed. The cache's keep rule counts runs the same way, so this frees no cache entry a kept run needs.
pub fn prune_reports(
    reports: &Path,
    keep: usize,
    grace: Option<Duration>,
    dry_run: bool,
) -> Result<String> {
    let grace = grace.unwrap_or(PrunePolicy::DEFAULT_GRACE);
    let old = crate::runs::retention::old_runs(reports, keep, grace)?;
    if !dry_run {
        crate::runs::retention::remove(reports, &old)?;
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    let bytes: u64 = old.iter().map(|r| r.bytes).sum();
    let mut out = format!(
        "{verb} {} report folder(s) ({}) of runs before the last {keep} of each experiment in `{}`\n",
        old.len(),
        human_bytes(bytes),
        reports.display()
    );
    for run in &old {
        let _ = writeln!(out, "  {} ({})", run.dir.display(), human_bytes(run.bytes));
    }
    Ok(out)
}

/// One line per removed item, with why and its size.
fn lines(removal: &Removal, keep: usize) -> String {
    let mut out = String::new();
    for (what, bytes) in &removal.removed {
        let size = human_bytes(*bytes);
        let _ = match what {
            Pruned::Entry {
                name,
                kind: Ok(kind),
            } => {
                writeln!(
                    out,
                    "  {name} ({kind}, not in the last {keep} run(s), {size})"
                )
            }
            Pruned::Entry {
                name,
                kind: Err(why),
            } => writeln!(out, "  {name} (damaged: {why}, {size})"),
            Pruned::Progress { key, job, finished } => {
                let noun = if *job {
                    "Slurm job folder"
                } else {
                    "checkpoint"
                };
                let why = if *finished {
                    "its stage finished"
                } else {
                    "no recent run refers to it"
                };
                writeln!(out, "  {noun} {key} ({why}, {size})")
            }
            Pruned::Probe { name } => {
                writeln!(
                    out,
                    "  jobs/probes/{name} (a shared-cache check's marker, {size})"
                )
            }
            Pruned::Temporary { name } => {
                writeln!(out, "  tmp/{name} (left by an interrupted run, {size})")
            }
        };
    }
    out
}
