//! The remote cache's commands: `cache push` and `cache pull` (the results reports refer to), and `cache verify`,
//! `cache du` and `cache gc` when a remote is set. Listing the bucket happens here, never on a run's path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::fingerprint::Hash;
use crate::stages::StageKind;
use crate::store::Cache;
use crate::store::collect::{RemotePrunePolicy, remote_entries};
use crate::store::remote::Remote;

fn remote_of(cache: &Cache) -> Result<&Remote> {
    cache
        .remote()
        .map(|r| r.as_ref())
        .context("no remote is set: pass `--remote s3://BUCKET/PREFIX` or `--remote file:///DIR` (or set `PIPELINE_REMOTE`)")
}

fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

/// The results the reports refer to, or an error saying there are none.
fn referenced(reports: &Path, experiment: Option<&str>) -> Result<Vec<(Hash, StageKind)>> {
    let (stages, manifests) = crate::runs::manifest::referenced_stages(reports, experiment)?;
    if manifests == 0 {
        match experiment {
            Some(e) => anyhow::bail!(
                "no report of the experiment `{e}` under `{}`; run it first, or pass `--reports-dir`",
                reports.display()
            ),
            None => anyhow::bail!(
                "no reports under `{}`; run an experiment first, or pass `--reports-dir`",
                reports.display()
            ),
        }
    }
    Ok(stages)
}

/// `cache push`: uploads every local result the reports refer to that the remote lacks. The second value: whether
/// everything went up.
pub fn push(cache: &Cache, reports: &Path, experiment: Option<&str>) -> Result<(String, bool)> {
    let remote = remote_of(cache)?;
    let wanted = referenced(reports, experiment)?;
    let mut out = String::new();
    let (mut absent, mut failed) = (0, 0);
    for (key, kind) in &wanted {
        let Some(record) = cache.peek(key, kind.expect()) else {
            absent += 1;
            continue;
        };
        if let Err(e) = cache.push_now(&record) {
            failed += 1;
            writeln!(out, "failed {} {}: {e}", kind.name(), key.short())?;
        }
    }
    let summary = remote.summary(Vec::new());
    if let Some(why) = &summary.down {
        anyhow::bail!("the remote `{}` cannot be used ({why})", remote.url());
    }
    let present = wanted.len() - absent - failed - summary.pushed_entries as usize;
    let mut head = format!(
        "pushed {} result(s) ({}) to `{}`; {present} were there already",
        summary.pushed_entries,
        human(summary.pushed_bytes),
        remote.url()
    );
    if absent > 0 {
        write!(head, "; {absent} are not in the local cache (gc'd?)")?;
    }
    Ok((format!("{head}\n{out}"), failed == 0))
}

/// `cache pull`: downloads every result the reports refer to that the local cache lacks.
pub fn pull(cache: &Cache, reports: &Path, experiment: Option<&str>) -> Result<(String, bool)> {
    let remote = remote_of(cache)?;
    let wanted = referenced(reports, experiment)?;
    let mut out = String::new();
    let (mut fetched, mut here, mut failed) = (0, 0, 0);
    for (key, kind) in &wanted {
        match cache.pull(key, kind.expect())? {
            Ok(true) => fetched += 1,
            Ok(false) => here += 1,
            Err(e) => {
                failed += 1;
                writeln!(out, "missing {} {}: {e}", kind.name(), key.short())?;
            }
        }
        if let Some(why) = remote.down() {
            anyhow::bail!("the remote `{}` cannot be used ({why})", remote.url());
        }
    }
    let bytes = remote.summary(Vec::new()).fetched_bytes;
    Ok((
        format!(
            "pulled {fetched} result(s) ({}) from `{}`; {here} were here already{}\n{out}",
            human(bytes),
            remote.url(),
            if failed > 0 {
                format!("; {failed} could not be pulled")
            } else {
                String::new()
            }
        ),
        failed == 0,
    ))
}

/// `cache verify` against the remote: downloads and re-hashes every entry, as a lookup would.
pub fn verify(cache: &Cache) -> Result<(String, bool)> {
    let remote = remote_of(cache)?;
    let entries = remote_entries(remote)?;
    let mut damaged = Vec::new();
    let mut bytes = 0;
    for (key, _) in &entries {
        match cache.verify_remote(key) {
            Ok((record, held)) => match StageKind::from_name(&record.fingerprint.kind) {
                Some(kind) if held != kind.output() => damaged.push((
                    *key,
                    format!(
                        "its output is {held}, where its stage kind makes {}",
                        kind.output()
                    ),
                )),
                Some(kind) => {
                    if let Some(name) = record
                        .files
                        .keys()
                        .find(|n| !kind.report_files().contains(&n.as_str()))
                    {
                        damaged.push((
                            *key,
                            format!("it names a file `{name}` its kind never makes"),
                        ));
                    } else {
                        bytes = record.bytes().saturating_add(bytes);
                    }
                }
                None => damaged.push((
                    *key,
                    format!("an unknown stage kind `{}`", record.fingerprint.kind),
                )),
            },
            Err(Some(problem)) => damaged.push((*key, problem)),
            Err(None) => anyhow::bail!(
                "the remote `{}` cannot be used ({})",
                remote.url(),
                remote.down().unwrap_or("unknown error")
            ),
        }
    }
    let mut out = format!(
        "checked {} entries on `{}` ({}): {} intact, {} damaged\n",
        entries.len(),
        remote.url(),
        human(bytes),
        entries.len() - damaged.len(),
        damaged.len()
    );
    for (key, why) in &damaged {
        writeln!(out, "damaged {}: {why}", key.short())?;
    }
    if !damaged.is_empty() {
        out.push_str(
            "A damaged remote entry is never used: the next run that needs it discards its record and recomputes \
             it.\n",
        );
    }
    Ok((out, damaged.is_empty()))
}

/// `cache du` against the remote: entries per stage kind (by their records), blobs and checkpoints.
pub fn du(cache: &Cache) -> Result<String> {
    let remote = remote_of(cache)?;
    let mut per_kind: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let entries = remote_entries(remote)?;
    for (key, _) in &entries {
        let (kind, bytes) = match cache.peek_remote(key, None) {
            Some(r) => (r.fingerprint.kind.clone(), r.bytes()),
            None => ("(unreadable)".into(), 0),
        };
        let slot = per_kind.entry(kind).or_default();
        slot.0 += 1;
        slot.1 = slot.1.saturating_add(bytes);
    }
    let blobs = remote.list(&remote.blobs_prefix())?;
    let stored: u64 = blobs
        .iter()
        .fold(0, |total, m| total.saturating_add(m.size));
    let mut out = format!(
        "remote `{}`\n{:<20} {:>8} {:>12}\n",
        remote.url(),
        "kind",
        "entries",
        "size"
    );
    for (kind, (n, bytes)) in &per_kind {
        writeln!(out, "{kind:<20} {n:>8} {:>12}", human(*bytes))?;
    }
    let checkpoints = remote.list(&remote.checkpoints_prefix())?;
    if !checkpoints.is_empty() {
        let size: u64 = checkpoints.iter().map(|m| m.size).sum();
        writeln!(
            out,
            "{:<20} {:>8} {:>12}",
            "(checkpoints)",
            checkpoints.len(),
            human(size)
        )?;
    }
    writeln!(
        out,
        "stored: {} blob(s), {} (identical files are stored once)",
        blobs.len(),
        human(stored)
    )?;
    Ok(out)
}

/// How `cache gc` treats the remote.
#[derive(Debug, Clone, Copy)]
pub struct RemoteGc {
    pub keep: usize,
    /// Default [`RemotePrunePolicy::DEFAULT_GRACE`].
    pub grace: Option<Duration>,
    pub dry_run: bool,
}

/// `cache gc` against the remote: keeps what the last `keep` runs of each experiment under `reports` refer to and
/// what is younger than the grace period, and removes the rest ([`Cache::prune_remote`] says how, safely beside
/// pushes). Says what it removed.
pub fn gc(cache: &Cache, reports: &Path, policy: RemoteGc) -> Result<String> {
    let remote = remote_of(cache)?;
    let (kept, runs) = crate::runs::manifest::referenced_keys(reports, policy.keep)?;
    anyhow::ensure!(
        runs > 0,
        "no reports found under `{}`, so nothing on the remote would be kept; name the reports whose results \
         to keep with `--reports-dir`",
        reports.display()
    );
    let grace = policy.grace.unwrap_or(RemotePrunePolicy::DEFAULT_GRACE);
    let dry_run = policy.dry_run;
    let r = cache.prune_remote(&kept, RemotePrunePolicy { grace, dry_run })?;
    let verb = if dry_run { "would remove" } else { "removed" };
    let entries = |n: usize| if n == 1 { "y" } else { "ies" };
    let mut out = format!(
        "remote `{}`: {verb} {} entr{} and {} unreferenced blob(s) ({}), {} stale checkpoint(s), {} unfinished \
         upload(s); kept {} entries that the last {} run(s) of each experiment in `{}` refer to or that are \
         younger than {}\n",
        remote.url(),
        r.entries.len(),
        entries(r.entries.len()),
        r.blobs,
        human(r.blob_bytes),
        r.checkpoints,
        r.uploads,
        r.kept,
        policy.keep,
        reports.display(),
        jiff::SignedDuration::try_from(grace)
            .map(|d| format!("{d:#}"))
            .unwrap_or_else(|_| format!("{grace:?}")),
    );
    if r.orphaned > 0 {
        writeln!(
            out,
            "removed {} entr{} pushed while this gc ran that named a blob it had deleted: a miss now, computed and \
             pushed again by the next run that needs it",
            r.orphaned,
            entries(r.orphaned)
        )?;
    }
    for key in &r.entries {
        writeln!(out, "  entry {key} (no kept report refers to it)")?;
    }
    for key in &r.skipped {
        writeln!(
            out,
            "  skipped entry {key}: its record cannot be read (`pipeline cache verify --remote …` says why)"
        )?;
    }
    Ok(out)
}
