//! `pipeline listen`: the blind listening test page from report folders (every piece rendered with one SoundFont and
//! cut to one length), and `--results`: each source's preference rate from the exported answers.

use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use crate::runs::compare::{RunSummary, resolve};
use crate::runs::listen::{self, Clip, Piece, Preference};
use crate::stages::render::{Cut, Render, load_soundfont, midi_seconds, render_midi};

/// What `pipeline listen` is asked for.
pub struct Request<'a> {
    pub targets: &'a [String],
    pub reports_dir: &'a Path,
    /// Where the page goes (default: `listen.html` in the reports directory).
    pub out: Option<&'a Path>,
    /// Pairs per two sources.
    pub pairs: usize,
    /// The longest a clip is; all are cut to the shortest piece when one is shorter.
    pub seconds: f64,
    pub seed: u64,
    pub soundfont: Option<&'a Path>,
}

/// What was written.
pub struct Written {
    pub page: PathBuf,
    pub clips: usize,
    pub sources: Vec<String>,
    pub pairs: usize,
    pub seconds: f64,
}

/// Rendering rate of the clips: enough for a piano, and a page of a dozen clips stays near 10 MB.
const SAMPLE_RATE: u32 = 22_050;

fn pieces(req: &Request) -> Result<Vec<Piece>> {
    let dirs = resolve(req.targets, req.reports_dir).map_err(Error::Usage)?;
    let named = dirs.len() > 1;
    let mut pieces = Vec::new();
    for dir in &dirs {
        let run = RunSummary::read(dir, req.reports_dir).map_err(Error::Usage)?;
        pieces.extend(listen::pieces_of(dir, run.name(), named).map_err(Error::Usage)?);
    }
    let mut sources: Vec<&str> = pieces.iter().map(|p| p.source.as_str()).collect();
    sources.sort();
    sources.dedup();
    let usage = |m: String| Err(Error::Usage(anyhow::anyhow!(m)));
    match sources.len() {
        0 => usage(format!(
            "no pieces (generated.mid, held-out.mid) in {}; run an experiment with a `sample` stage first",
            req.targets.join(", ")
        )),
        1 => usage(format!(
            "only one source of pieces ({}): a listening test compares two or more; give another run, add a \
             `sample` stage fed by an `ngram` stage, or hold out files (`val_fraction`) for held-out excerpts",
            sources[0]
        )),
        _ => Ok(pieces),
    }
}

/// Every piece rendered with one SoundFont, mono, all cut to the same length.
fn clips(pieces: &[Piece], req: &Request) -> Result<(Vec<Clip>, f64)> {
    let soundfont = match req.soundfont {
        Some(p) => p.to_path_buf(),
        None => Render {
            soundfont: None,
            sample_rate: SAMPLE_RATE,
            gain: 1.0,
        }
        .find_soundfont(Path::new("."))
        .ok_or_else(|| {
            Error::environment(
                anyhow::anyhow!("no SoundFont to play the pieces with"),
                crate::stages::render::NO_SOUNDFONT,
            )
        })?,
    };
    let bytes = std::fs::read(&soundfont).map_err(|e| {
        Error::environment(
            anyhow::anyhow!("cannot read `{}`: {e}", soundfont.display()),
            "pass a SoundFont with `--soundfont`",
        )
    })?;
    let font = load_soundfont(&bytes, &soundfont)
        .map_err(|e| Error::environment(e, "pass a General MIDI .sf2 with `--soundfont`"))?;
    let mut midis = Vec::with_capacity(pieces.len());
    let mut seconds = req.seconds;
    for p in pieces {
        let mid = crate::paths::read_regular(&p.midi).map_err(|e| {
            Error::Usage(anyhow::anyhow!("cannot read `{}`: {e}", p.midi.display()))
        })?;
        let length = midi_seconds(&mid)
            .map_err(|e| Error::Usage(e.context(format!("`{}`", p.midi.display()))))?;
        if length <= 0.0 {
            return Err(Error::Usage(anyhow::anyhow!(
                "`{}` plays for no time; it cannot be listened to",
                p.midi.display()
            )));
        }
        seconds = seconds.min(length);
        midis.push(mid);
    }
    let mut clips: Vec<Clip> = Vec::with_capacity(pieces.len());
    for (p, mid) in pieces.iter().zip(&midis) {
        let wav = render_midi(&font, mid, SAMPLE_RATE, 1.0, Cut::MonoFirst(seconds))
            .map_err(Error::Failed)?;
        // Several runs of one experiment hold the same held-out excerpts: each once.
        if clips
            .iter()
            .any(|c| c.source == p.source && c.wav == wav.bytes)
        {
            continue;
        }
        let file = crate::paths::display_path("", &p.midi.display().to_string());
        clips.push(Clip {
            source: p.source.clone(),
            file,
            wav: wav.bytes,
        });
    }
    Ok((clips, seconds))
}

/// Writes the page.
pub fn write_page(req: &Request) -> Result<Written> {
    let pieces = pieces(req)?;
    let (clips, seconds) = clips(&pieces, req)?;
    let pairs = listen::pairs(&clips, req.pairs, req.seed);
    let html = listen::page(&clips, &pairs, req.seed, seconds);
    let page = req
        .out
        .map_or_else(|| req.reports_dir.join("listen.html"), Path::to_path_buf);
    if let Some(parent) = page.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            Error::environment(
                anyhow::anyhow!("cannot create `{}`: {e}", parent.display()),
                "pass a writable `--out`",
            )
        })?;
    }
    // A bare file name is in the current folder (the atomic write stages its file beside the target).
    let target = match page.parent() {
        Some(p) if !p.as_os_str().is_empty() => page.clone(),
        _ => Path::new(".").join(&page),
    };
    crate::paths::write_atomic(&target, &[html.as_bytes()], false)
        .map_err(|e| Error::environment(e, "pass a writable `--out`"))?;
    let mut sources: Vec<String> = clips.iter().map(|c| c.source.clone()).collect();
    sources.sort();
    sources.dedup();
    Ok(Written {
        page,
        clips: clips.len(),
        sources,
        pairs: pairs.len(),
        seconds,
    })
}

/// Each source's preference rate from an answers file.
pub fn results(path: &Path) -> Result<Vec<Preference>> {
    let answers = listen::read_answers(path).map_err(Error::Usage)?;
    Ok(listen::preferences(&answers))
}
