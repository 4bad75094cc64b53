//! `render`: the generated piece and the seed window it grew from, as WAV files (44.1 kHz, 16-bit stereo by default)
//! played by rustysynth through a General MIDI SoundFont.
//!
//! The SoundFont's bytes are an input like the MIDI files of a source: changing only the SoundFont re-renders and
//! nothing else. It is found from the `soundfont` parameter, else `PIPELINE_SOUNDFONT`, else the places Linux
//! distributions install one (or those `PIPELINE_SOUNDFONT_PATH` lists); with none, the stage warns what to install
//! and the run goes on without audio.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use rustysynth::{MidiFile, MidiFileSequencer, SoundFont, Synthesizer, SynthesizerSettings};
use serde::{Deserialize, Serialize};

use super::kind::StageKind;
use super::real::Real;
use super::stage::{
    CheckContext, ExternalInputs, ParamProblem, Params, RunContext, Stage, StageOutput, params_of,
};
use crate::artifact::ReportFile;
use crate::artifact::{Artifact, Audio};
use crate::fingerprint::Hash;
use crate::music::midi;

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Render {
    /// A `.sf2` file, relative to the experiment file. Default: `$PIPELINE_SOUNDFONT`, then the system's.
    #[serde(default)]
    pub soundfont: Option<String>,
    /// Samples per second of the WAV file.
    #[serde(default = "d::sample_rate")]
    #[schemars(range(min = *SAMPLE_RATE.start(), max = *SAMPLE_RATE.end()))]
    pub sample_rate: u32,
    /// Multiplies the synthesizer's output (which leaves headroom for chords at 1).
    #[serde(default = "d::gain")]
    #[schemars(transform = GAIN.in_schema())]
    pub gain: f64,
}

mod d {
    pub fn sample_rate() -> u32 {
        44_100
    }
    pub fn gain() -> f64 {
        1.0
    }
}

/// Where distributions put a General MIDI SoundFont, in the order they are tried.
pub const SYSTEM_SOUNDFONTS: &[&str] = &[
    // Debian, Ubuntu: timgm6mb-soundfont (6 MB), the alternatives link, fluid-soundfont-gm (148 MB).
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    // Fedora (fluid-soundfont-gm), Arch (soundfont-fluid), openSUSE.
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    // FreeBSD ports and hand installs.
    "/usr/local/share/soundfonts/default.sf2",
];

/// The files tried when neither the parameter nor `PIPELINE_SOUNDFONT` names one: `PIPELINE_SOUNDFONT_PATH`
/// (`:`-separated files, or directories whose `.sf2` files are tried in name order) if set, else
/// [`SYSTEM_SOUNDFONTS`].
fn candidates() -> Vec<PathBuf> {
    let Some(list) = std::env::var_os("PIPELINE_SOUNDFONT_PATH") else {
        return SYSTEM_SOUNDFONTS.iter().map(PathBuf::from).collect();
    };
    let mut out = Vec::new();
    for entry in std::env::split_paths(&list) {
        if entry.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&entry)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("sf2")))
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(entry);
        }
    }
    out
}

/// What to do when no SoundFont is found.
pub const NO_SOUNDFONT: &str = "no SoundFont found, so no audio: install one (Debian/Ubuntu: `apt install \
    timgm6mb-soundfont`; Fedora: `dnf install fluid-soundfont-gm`; Arch: `pacman -S soundfont-fluid`), or set \
    `soundfont = \"path/to/file.sf2\"` in the render stage or `PIPELINE_SOUNDFONT`";

/// Seconds rendered after the last note ends, so its release and the reverb tail are heard.
const RELEASE_SECONDS: f64 = 2.0;

impl Render {
    /// The SoundFont to use: the parameter, the environment, or the first system one that exists.
    pub fn find_soundfont(&self, base_dir: &Path) -> Option<PathBuf> {
        if let Some(p) = &self.soundfont {
            return Some(base_dir.join(p));
        }
        if let Some(p) = std::env::var_os("PIPELINE_SOUNDFONT").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p));
        }
        candidates().into_iter().find(|p| p.is_file())
    }
}

/// `sample_rate`'s bounds, declared once for the schema and the check.
const SAMPLE_RATE: std::ops::RangeInclusive<u32> = 16_000..=192_000;
const GAIN: Real = Real::above(0.0).at_most(16.0);

impl Params for Render {
    fn check(&self, ctx: &CheckContext) -> Vec<ParamProblem> {
        let mut problems = Vec::new();
        if !SAMPLE_RATE.contains(&self.sample_rate) {
            problems.push(
                ParamProblem::new(
                    "sample_rate",
                    format!("`sample_rate = {}` is out of range", self.sample_rate),
                )
                .hint(format!(
                    "use {} to {} Hz; 44100 is CD quality",
                    SAMPLE_RATE.start(),
                    SAMPLE_RATE.end()
                )),
            );
        }
        problems.extend(
            GAIN.check("gain", self.gain)
                .map(|e| e.hint("1 keeps the synthesizer's level")),
        );
        if let Some(p) = &self.soundfont
            && !ctx.base_dir.join(p).is_file()
        {
            problems.push(
                ParamProblem::new("soundfont", format!("`{p}` does not exist"))
                    .hint("give a .sf2 file relative to the experiment file, or leave `soundfont` out to use the system's"),
            );
        }
        problems
    }
}

/// A rendered piece: WAV bytes, length in seconds, and how many samples had to be clipped.
pub struct Wav {
    pub bytes: Vec<u8>,
    pub seconds: f64,
    pub clipped: usize,
}

/// Plays `tokens` (as [`midi::write_tokens`] writes them) through `soundfont` into a 16-bit stereo WAV.
pub fn render_tokens(
    soundfont: &Arc<SoundFont>,
    tokens: &[String],
    program: u8,
    step: f64,
    tempo: u32,
    sample_rate: u32,
    gain: f64,
) -> anyhow::Result<Wav> {
    let mid = midi::write_tokens(tokens, program, step, tempo)?;
    render_midi(soundfont, &mid, sample_rate, gain, Cut::Stereo)
}

/// How [`render_midi`] writes a piece: whole and in stereo (the render stage), or mixed to mono and cut to its first
/// seconds (the clips of `pipeline listen`, all of one length).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cut {
    Stereo,
    MonoFirst(f64),
}

/// How long a MIDI file plays, in seconds (to its last event).
pub fn midi_seconds(mid: &[u8]) -> anyhow::Result<f64> {
    let file = MidiFile::new(&mut Cursor::new(mid))
        .map_err(|e| anyhow!("cannot play the MIDI file: {e}"))?;
    Ok(file.get_length())
}

/// Plays a MIDI file through `soundfont` into a 16-bit WAV.
pub fn render_midi(
    soundfont: &Arc<SoundFont>,
    mid: &[u8],
    sample_rate: u32,
    gain: f64,
    cut: Cut,
) -> anyhow::Result<Wav> {
    let midi_file = Arc::new(
        MidiFile::new(&mut Cursor::new(mid))
            .map_err(|e| anyhow!("cannot play the MIDI file: {e}"))?,
    );
    let settings = SynthesizerSettings::new(sample_rate as i32);
    let synthesizer = Synthesizer::new(soundfont, &settings)
        .map_err(|e| anyhow!("cannot start the synthesizer: {e}"))?;
    let mut sequencer = MidiFileSequencer::new(synthesizer);
    sequencer.play(&midi_file, false);
    let seconds = match cut {
        Cut::Stereo => midi_file.get_length() + RELEASE_SECONDS,
        Cut::MonoFirst(limit) => limit,
    };
    let frames = (seconds * f64::from(sample_rate)).round();
    // A RIFF WAV holds at most 4 GiB; refuse before allocating anything of that size.
    let bytes = frames * 4.0 + 44.0;
    if bytes.is_nan() || bytes > f64::from(u32::MAX) {
        anyhow::bail!(
            "the piece lasts {:.1} hours; as a 16-bit stereo WAV at {sample_rate} Hz it would take {:.0} GiB, \
             beyond the 4 GiB a WAV file can hold; lower the sample stage's `length` or `step`, or `sample_rate`",
            seconds / 3600.0,
            bytes / f64::from(1u32 << 30)
        );
    }
    let frames = frames as usize;
    let mut wav = Cursor::new(Vec::with_capacity(frames * 4 + 44));
    let mono = matches!(cut, Cut::MonoFirst(_));
    let spec = hound::WavSpec {
        channels: if mono { 1 } else { 2 },
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::new(&mut wav, spec)?;
    let mut clipped = 0;
    // One second at a time: bounded buffers, and Ctrl-C is noticed.
    let block = sample_rate as usize;
    let (mut left, mut right) = (vec![0f32; block], vec![0f32; block]);
    let mut done = 0;
    while done < frames {
        crate::interrupt::check()?;
        let n = block.min(frames - done);
        sequencer.render(&mut left[..n], &mut right[..n]);
        for (&l, &r) in left[..n].iter().zip(&right[..n]) {
            let both = [l, r];
            let mixed = [(l + r) / 2.0];
            for &v in if mono { &mixed[..] } else { &both[..] } {
                let scaled = f64::from(v) * gain * 32768.0;
                if !(-32768.0..=32767.0).contains(&scaled) {
                    clipped += 1;
                }
                writer.write_sample(scaled.clamp(-32768.0, 32767.0) as i16)?;
            }
        }
        done += n;
    }
    writer.finalize()?;
    Ok(Wav {
        bytes: wav.into_inner(),
        seconds: frames as f64 / f64::from(sample_rate),
        clipped,
    })
}

/// Reads a SoundFont, with an error that names the file.
pub fn load_soundfont(bytes: &[u8], path: &Path) -> anyhow::Result<Arc<SoundFont>> {
    SoundFont::new(&mut Cursor::new(bytes))
        .map(Arc::new)
        .map_err(|e| anyhow!("`{}` is not a usable SoundFont: {e}", path.display()))
}

impl Stage for Render {
    fn kind(&self) -> StageKind {
        StageKind::Render
    }

    /// Where the SoundFont is does not matter, only its bytes (an external input).
    fn params(&self) -> BTreeMap<String, serde_json::Value> {
        let mut p = params_of(self);
        p.remove("soundfont");
        p
    }

    fn external_inputs(&self, base_dir: &Path) -> anyhow::Result<ExternalInputs> {
        let Some(path) = self.find_soundfont(base_dir) else {
            return Ok(ExternalInputs::default());
        };
        let bytes = std::fs::read(&path)
            .with_context(|| format!("cannot read the SoundFont `{}`", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(ExternalInputs {
            display_root: path
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            files: BTreeMap::from([(name.clone(), Hash::of(&bytes))]),
            locations: BTreeMap::from([(name, path)]),
            unreadable: BTreeMap::new(),
        })
    }

    fn run(&self, ctx: &mut RunContext, inputs: &[&Artifact]) -> anyhow::Result<StageOutput> {
        let music = inputs[0].music()?;
        let Some((name, path)) = ctx.external.locations.iter().next() else {
            ctx.warn(NO_SOUNDFONT.to_string());
            return Ok(StageOutput {
                summary: serde_json::json!({ "soundfont": null }),
                files: Vec::new(),
                artifact: Artifact::Audio(Audio {
                    soundfont: None,
                    sample_rate: self.sample_rate,
                    generated_seconds: 0.0,
                    seed_seconds: 0.0,
                }),
            });
        };
        let bytes = ctx.external.read(name, path)?;
        let soundfont = load_soundfont(&bytes, path)?;
        let render = |tokens: &[String]| {
            render_tokens(
                &soundfont,
                tokens,
                music.program,
                music.step,
                music.tempo,
                self.sample_rate,
                self.gain,
            )
        };
        // Every piece, `generated.wav` for the first and `generated-n.wav` after it, as the MIDI files are named.
        let pieces: Vec<_> = std::iter::once(&music.tokens)
            .chain(&music.more)
            .map(|tokens| render(tokens))
            .collect::<anyhow::Result<_>>()?;
        let seed = render(&music.seed)?;
        let clipped = pieces.iter().map(|p| p.clipped).sum::<usize>() + seed.clipped;
        if clipped > 0 {
            ctx.warn(format!(
                "{clipped} samples were clipped at full scale; lower `gain` (now {})",
                self.gain
            ));
        }
        let generated_seconds = pieces[0].seconds;
        let summary = serde_json::json!({
            "soundfont": name,
            "sample_rate": self.sample_rate,
            "pieces": pieces.len(),
            "generated_seconds": generated_seconds,
            "seed_seconds": seed.seconds,
            "clipped_samples": clipped,
        });
        let seed_seconds = seed.seconds;
        let mut files: Vec<ReportFile> = pieces
            .into_iter()
            .enumerate()
            .map(|(i, piece)| ReportFile {
                name: crate::artifact::piece_file("generated", i + 1, "wav"),
                bytes: piece.bytes,
            })
            .collect();
        files.push(ReportFile {
            name: "seed.wav".into(),
            bytes: seed.bytes,
        });
        Ok(StageOutput {
            summary,
            files,
            artifact: Artifact::Audio(Audio {
                soundfont: Some(name.clone()),
                sample_rate: self.sample_rate,
                generated_seconds,
                seed_seconds,
            }),
        })
    }
}
