//! `midi_source`: the MIDI files under a directory or matching a glob, parsed, in sorted relative-path order.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::kind::StageKind;
use super::stage::{
    CheckContext, ExternalInputs, ParamProblem, Params, RunContext, Stage, StageOutput, csv_bytes,
    params_of,
};
use crate::artifact::ReportFile;
use crate::artifact::{Artifact, Message, MidiCorpus};
use crate::fingerprint::Hash;
use crate::music::ingest;

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MidiSource {
    /// A directory (searched recursively for `*.mid` / `*.midi`) or a glob, relative to the experiment file.
    pub path: String,
    /// How to make the files when `path` is missing or holds none (a script, a download), e.g.
    /// `"python3 bench/bach_chorales.py data/bach"`: the error says to run it. Not part of the fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<String>,
}

impl Params for MidiSource {
    fn check(&self, ctx: &CheckContext) -> Vec<ParamProblem> {
        let (root, glob) = split_glob(&self.path);
        let root = ctx.base_dir.join(root);
        if self.path.trim().is_empty() {
            return vec![ParamProblem::new("path", "`path` is empty").hint(
                "give a directory of MIDI files or a glob, relative to the experiment file",
            )];
        }
        if glob.is_some()
            && let Err(e) = globset::Glob::new(&self.path)
        {
            return vec![ParamProblem::new("path", format!("invalid glob: {e}"))];
        }
        let single_file = glob.is_none() && root.is_file();
        if !root.is_dir() && !single_file {
            return vec![
                ParamProblem::new(
                    "path",
                    format!(
                        "`{}` does not exist (looked in `{}`)",
                        self.path,
                        root.display()
                    ),
                )
                .hint(self.missing_hint()),
            ];
        }
        Vec::new()
    }
}

impl MidiSource {
    /// What to tell a user whose corpus is missing or empty.
    fn missing_hint(&self) -> String {
        match &self.setup {
            Some(command) => format!("make the files first: `{command}`"),
            None => "paths are relative to the experiment file's directory".into(),
        }
    }
}

/// Splits `data/**/*.mid` into the directory to walk (`data`) and the glob; `None` when there is no glob.
fn split_glob(path: &str) -> (PathBuf, Option<&str>) {
    let is_glob = |s: &str| s.contains(['*', '?', '[', '{']);
    if !is_glob(path) {
        return (PathBuf::from(path), None);
    }
    // `/data/**/*.mid` walks `/data`: the leading `/` is the root, not an empty first part.
    let mut root = if path.starts_with('/') {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    };
    for part in path.split('/') {
        if is_glob(part) {
            break;
        }
        root.push(part);
    }
    (root, Some(path))
}

/// `*.mid`, `*.midi`, `*.kar`, `*.rmi`, and any of them gzip-compressed (`*.mid.gz`), as Debian ships some.
fn is_midi(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    [".mid", ".midi", ".kar", ".rmi"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// `a/b.mid` for a path under `root`, always with `/`.
fn relative(path: &Path, root: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(readable_name(s)),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A file name as text. Bytes that are not UTF-8 (Latin-1 names from old archives) are written `\xE9` rather than
/// replaced by `�`, so two such names stay two files instead of one silently replacing the other.
fn readable_name(name: &std::ffi::OsStr) -> String {
    if let Some(s) = name.to_str() {
        return s.to_string();
    }
    let mut out = String::new();
    for chunk in name.as_encoded_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

impl MidiSource {
    /// Every selected file: relative path → absolute path, sorted by relative path; and the entries that cannot be
    /// read (a dangling link, a link loop), each with why.
    fn files(
        &self,
        base_dir: &Path,
    ) -> anyhow::Result<(BTreeMap<String, PathBuf>, BTreeMap<String, String>)> {
        let (root, glob) = split_glob(&self.path);
        let root = base_dir.join(root);
        let mut files = BTreeMap::new();
        let mut unreadable = BTreeMap::new();
        if root.is_file() {
            let name = root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.insert(name, root);
            return Ok((files, unreadable));
        }
        let matcher = match glob {
            Some(g) => Some(
                globset::GlobBuilder::new(g)
                    .literal_separator(true)
                    .build()?
                    .compile_matcher(),
            ),
            None => None,
        };
        // An absolute glob matches absolute paths; a relative one, paths as the user wrote them: relative to the
        // experiment's directory.
        let absolute = Path::new(&self.path).is_absolute();
        for entry in walkdir::WalkDir::new(&root).follow_links(true) {
            let entry = match entry {
                Ok(entry) => entry,
                // One bad link is one skipped entry, not a failed stage; the folder itself must be listable.
                Err(e) if e.depth() > 0 && e.path().is_some() => {
                    let path = e.path().expect("checked");
                    let why = match e.loop_ancestor() {
                        Some(a) => format!("a link back to `{}` (a loop)", a.display()),
                        None => format!(
                            "cannot be read: {}",
                            e.io_error().map_or(e.to_string(), ToString::to_string)
                        ),
                    };
                    unreadable.insert(relative(path, &root), why);
                    continue;
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot list MIDI files under `{}`", root.display())
                    });
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let path = entry.path();
            let selected = match &matcher {
                Some(m) if absolute => m.is_match(path),
                Some(m) => m.is_match(path.strip_prefix(base_dir).unwrap_or(path)),
                None => is_midi(path),
            };
            if selected {
                // Two paths can still read the same (a real `\xE9` in one name): number the later one.
                let rel = relative(path, &root);
                let mut key = rel.clone();
                let mut n = 1;
                while files.contains_key(&key) {
                    n += 1;
                    key = format!("{rel}~{n}");
                }
                files.insert(key, path.to_path_buf());
            }
        }
        Ok((files, unreadable))
    }
}

impl Stage for MidiSource {
    fn kind(&self) -> StageKind {
        StageKind::MidiSource
    }

    /// The path only says where to look; which files were found and their bytes are the real input, so moving the
    /// corpus (and editing `path` to follow it) keeps the cache.
    fn params(&self) -> BTreeMap<String, serde_json::Value> {
        let mut p = params_of(self);
        p.remove("path");
        p.remove("setup");
        p
    }

    fn external_inputs(&self, base_dir: &Path) -> anyhow::Result<ExternalInputs> {
        let (locations, unreadable) = self.files(base_dir)?;
        if locations.is_empty() {
            let fix = match &self.setup {
                Some(command) => format!("make them first: `{command}`"),
                None => "check `path` in the experiment".into(),
            };
            bail!(
                "no MIDI files (*.mid, *.midi, *.kar, *.rmi, optionally .gz) found at `{}`; {fix}",
                self.path
            );
        }
        let mut files = BTreeMap::new();
        for (rel, abs) in &locations {
            let bytes =
                std::fs::read(abs).with_context(|| format!("cannot read `{}`", abs.display()))?;
            files.insert(rel.clone(), Hash::of(&bytes));
        }
        let (root, _) = split_glob(&self.path);
        Ok(ExternalInputs {
            display_root: root.to_string_lossy().into_owned(),
            files,
            locations,
            unreadable,
        })
    }

    fn run(&self, ctx: &mut RunContext, _inputs: &[&Artifact]) -> anyhow::Result<StageOutput> {
        let bar = ctx.bar(ctx.external.locations.len() as u64, "files");
        let mut songs = Vec::new();
        let mut rows = Vec::new();
        for (rel, abs) in &ctx.external.locations {
            crate::interrupt::check()?;
            bar.set_message(rel.clone());
            let bytes = ctx.external.read(rel, abs)?;
            let shown = crate::paths::display_path(&ctx.external.display_root, rel);
            let row = match ingest::read_song(rel, &bytes) {
                Ok(read) => {
                    let notes = read
                        .song
                        .events
                        .iter()
                        .filter(|e| matches!(e.message, Message::NoteOn { .. }))
                        .count();
                    // Warn about what was lost or changed; unusual-but-legal findings go to ingest.csv only.
                    let mut problems = read.repairs.clone();
                    if notes == 0 {
                        problems.insert(0, "no notes".into());
                    }
                    if !problems.is_empty() {
                        ctx.warn(format!("`{shown}`: {}", problems.join("; ")));
                    }
                    songs.push(read.song);
                    let status = if read.repairs.is_empty() {
                        "read"
                    } else {
                        "repaired"
                    };
                    let detail = [problems, read.notes].concat().join("; ");
                    IngestRow {
                        file: rel.clone(),
                        status,
                        notes,
                        detail,
                    }
                }
                Err(e) => {
                    ctx.warn(format!("skipped `{shown}`: {e}"));
                    IngestRow {
                        file: rel.clone(),
                        status: "skipped",
                        notes: 0,
                        detail: e.to_string(),
                    }
                }
            };
            rows.push(row);
            bar.inc(1);
        }
        bar.finish_and_clear();
        for (rel, why) in &ctx.external.unreadable {
            let shown = crate::paths::display_path(&ctx.external.display_root, rel);
            ctx.warn(format!("skipped `{shown}`: {why}"));
            rows.push(IngestRow {
                file: rel.clone(),
                status: "skipped",
                notes: 0,
                detail: why.clone(),
            });
        }
        rows.sort_by(|a, b| a.file.cmp(&b.file));
        if songs.is_empty() {
            bail!(
                "none of the {} files at `{}` could be read as MIDI (see the warnings above)",
                rows.len(),
                self.path
            );
        }
        let events: usize = songs.iter().map(|s| s.events.len()).sum();
        let listed = |status: &str| -> Vec<FileNote> {
            rows.iter()
                .filter(|r| r.status == status)
                .map(|r| FileNote {
                    file: r.file.clone(),
                    reason: r.detail.clone(),
                })
                .collect()
        };
        let summary = SourceSummary {
            files: songs.len(),
            events,
            skipped_files: listed("skipped"),
            repaired_files: listed("repaired"),
        };
        Ok(StageOutput {
            summary: serde_json::to_value(summary)?,
            artifact: Artifact::Midi(MidiCorpus { files: songs }),
            files: vec![ReportFile {
                name: "ingest.csv".into(),
                bytes: csv_bytes(rows.iter())?,
            }],
        })
    }
}

/// What a `midi_source` stage reports in the run manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceSummary {
    /// Files read (repaired or not).
    pub files: usize,
    pub events: usize,
    #[serde(default)]
    pub skipped_files: Vec<FileNote>,
    #[serde(default)]
    pub repaired_files: Vec<FileNote>,
}

/// A file that was skipped or repaired, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileNote {
    pub file: String,
    pub reason: String,
}

/// One line of `ingest.csv`: what became of each file.
#[derive(Serialize)]
struct IngestRow {
    file: String,
    /// `read`, `repaired` or `skipped`.
    status: &'static str,
    /// Note-ons read.
    notes: usize,
    /// What was repaired or dropped, or why the file was skipped.
    detail: String,
}
