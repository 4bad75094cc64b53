//! The remote cache's commands: `cache push` and `cache pull` (the results reports refer to), and `cache verify`,
//! `cache du` and `cache gc` when a remote is set. Listing the bucket happens here, never on a run's path.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::fingerprint::Hash;
use crate::stages::StageKind;
use crate::store::Cache;
use crate::store::remote::{Failure, Remote};

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

/// When an object was last written (the epoch for a time jiff cannot hold: then it is never young).
fn modified(meta: &object_store::ObjectMeta) -> jiff::Timestamp {
    jiff::Timestamp::from_second(meta.last_modified.timestamp())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Every entry key on the remote, with its record's age.
fn remote_entries(remote: &Remote) -> Result<Vec<(Hash, jiff::Timestamp)>> {
    let mut out = Vec::new();
    for meta in remote.list(&remote.entries_prefix())? {
        if let Some(key) = remote.key_of_record(&meta.location) {
            let at = modified(&meta);
            out.push((key, at));
        }
    }
    Ok(out)
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
    pub grace: Duration,
    pub dry_run: bool,
}

/// `cache gc` against the remote: a mark phase from the reports under `reports` (the last `keep` runs of each
/// experiment), then a sweep of the records nothing marks, then of the blobs no remaining record names, then of
/// stale checkpoints and unfinished uploads, never touching anything younger than `grace` (another machine may have
/// just made it).
///
/// Safe beside pushes: a push may write a new record naming an old blob at any moment. The records are listed again
/// just before the blobs go, and a blob a record written meanwhile names is kept; a record written after that
/// listing is checked once the blobs are gone, and one naming a blob this gc deleted is removed (a miss, computed and
/// pushed again later), unless its writer already uploaded the blob again (a push checks its blobs after writing
/// its record). Either way no entry is left damaged.
pub fn gc(cache: &Cache, reports: &Path, policy: RemoteGc) -> Result<String> {
    let remote = remote_of(cache)?;
    let (kept, runs) = crate::runs::manifest::referenced_keys(reports, policy.keep)?;
    anyhow::ensure!(
        runs > 0,
        "no reports found under `{}`, so nothing on the remote would be kept; name the reports whose results \
         to keep with `--reports-dir`",
        reports.display()
    );
    let now = jiff::Timestamp::now();
    let young = |at: jiff::Timestamp| {
        now.duration_since(at)
            .try_into()
            .map(|d: Duration| d < policy.grace)
            .unwrap_or(true)
    };
    let mut sweep = Sweep {
        cache,
        remote,
        dry_run: policy.dry_run,
        lines: String::new(),
        seen: HashSet::new(),
        named: HashSet::new(),
    };
    let mut removed = 0;
    let mut live: Vec<Hash> = Vec::new();
    for (key, at) in remote_entries(remote)? {
        if kept.contains(&key.hex()) || young(at) {
            sweep.seen.insert(key);
            live.push(key);
            continue;
        }
        writeln!(
            sweep.lines,
            "  entry {} (no kept report refers to it)",
            key.short()
        )?;
        removed += 1;
        if !policy.dry_run {
            cache.delete_remote_record(&key)?;
        }
    }
    sweep.name_blobs_of(&live)?;
    // Blobs are shared: one is garbage only when no remaining record names it.
    let candidates: Vec<_> = remote
        .list(&remote.blobs_prefix())?
        .into_iter()
        .filter(|meta| !young(modified(meta)))
        .filter_map(|meta| Some((remote.hash_of_blob(&meta.location)?, meta)))
        .filter(|(hash, _)| !sweep.named.contains(hash))
        .collect();
    // Records pushed since the first listing may name some of them.
    sweep.name_blobs_of_new_records()?;
    let (mut blobs, mut blob_bytes) = (0, 0u64);
    let mut deleted: HashSet<Hash> = HashSet::new();
    for (hash, meta) in candidates {
        if sweep.named.contains(&hash) {
            continue;
        }
        blobs += 1;
        blob_bytes = blob_bytes.saturating_add(meta.size);
        if !policy.dry_run {
            cache.delete_remote_object(&meta.location)?;
            deleted.insert(hash);
        }
    }
    let orphaned = sweep.drop_new_records_naming(&deleted)?;
    let mut checkpoints = 0;
    for meta in remote.list(&remote.checkpoints_prefix())? {
        if young(modified(&meta)) {
            continue;
        }
        checkpoints += 1;
        if !policy.dry_run {
            cache.delete_remote_object(&meta.location)?;
        }
    }
    // Uploads a killed writer or a dying remote left unfinished: their parts are kept (and billed) until aborted.
    let uploads = remote.abort_stale_uploads(policy.grace, policy.dry_run)?;
    let verb = if policy.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut out = format!(
        "remote `{}`: {verb} {removed} entr{} and {blobs} unreferenced blob(s) ({}), {checkpoints} stale \
         checkpoint(s), {uploads} unfinished upload(s); kept {} entries that the last {} run(s) of each \
         experiment in `{}` refer to or that are younger than {}\n",
        remote.url(),
        if removed == 1 { "y" } else { "ies" },
        human(blob_bytes),
        live.len(),
        policy.keep,
        reports.display(),
        jiff::SignedDuration::try_from(policy.grace)
            .map(|d| format!("{d:#}"))
            .unwrap_or_else(|_| format!("{:?}", policy.grace)),
    );
    if orphaned > 0 {
        writeln!(
            out,
            "removed {orphaned} entr{} pushed while this gc ran that named a blob it had deleted: a miss now, \
             computed and pushed again by the next run that needs it",
            if orphaned == 1 { "y" } else { "ies" }
        )?;
    }
    out.push_str(&sweep.lines);
    Ok(out)
}

/// What a remote gc knows as it goes: the records it has listed, the blobs they name, what it says.
struct Sweep<'a> {
    cache: &'a Cache,
    remote: &'a Remote,
    dry_run: bool,
    lines: String,
    /// Every live record key listed so far (a record this gc deleted that a push writes again is new).
    seen: HashSet<Hash>,
    /// Every blob a live record names.
    named: HashSet<Hash>,
}

impl Sweep<'_> {
    /// Adds the blobs `keys`' records name. A record that cannot be read is damaged (records are written whole):
    /// it is kept for `cache verify` to name and a run to discard, and the sweep goes on without it.
    fn name_blobs_of(&mut self, keys: &[Hash]) -> Result<()> {
        for key in keys {
            let Some(record) = self.cache.peek_remote(key, None) else {
                if let Some(why) = self.remote.down() {
                    anyhow::bail!("the remote `{}` cannot be used ({why})", self.remote.url());
                }
                writeln!(
                    self.lines,
                    "  skipped entry {}: its record cannot be read (`pipeline cache verify --remote …` says why)",
                    key.short()
                )?;
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

    /// Lists the records once more, after the blobs went: one written meanwhile that names a blob this gc deleted
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
