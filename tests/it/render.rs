//! Audio: the render stage's WAV files are valid, as long as the music, not silent, louder where notes are dense;
//! changing only the SoundFont re-renders only the audio; without a SoundFont the run warns and goes on.
//! The rendering tests need a General MIDI SoundFont (`apt install timgm6mb-soundfont`; `.ci/run` installs it and
//! requires it); without one they say they skipped.

use std::path::PathBuf;

use crate::support::*;
use pipeline::render;

fn soundfont() -> Option<PathBuf> {
    require("soundfont").then(|| soundfont_path().expect("present"))
}

/// (sample rate, channels, bits, left/right samples as f64 in -1..1).
fn read_wav(bytes: &[u8]) -> (hound::WavSpec, Vec<f64>) {
    let reader = hound::WavReader::new(bytes).expect("a valid WAV file");
    let spec = reader.spec();
    let samples = reader
        .into_samples::<i16>()
        .map(|s| f64::from(s.unwrap()) / 32768.0)
        .collect();
    (spec, samples)
}

fn rms(samples: &[f64]) -> f64 {
    (samples.iter().map(|s| s * s).sum::<f64>() / samples.len().max(1) as f64).sqrt()
}

#[test]
fn rendered_audio_is_valid_as_long_as_the_music_and_louder_where_notes_are_dense() {
    let Some(path) = soundfont() else { return };
    let bytes = std::fs::read(&path).unwrap();
    let sf = render::load_soundfont(&bytes, &path).unwrap();
    // 500 tokens at half a beat, 120 bpm: 125 s, then 2 s for the last note's release.
    let tokens: Vec<String> = (0..500)
        .map(|i| ["C4", "E4", "G4", "B4", "0.4.7"][i % 5].to_string())
        .collect();
    let wav = render::render_tokens(&sf, &tokens, 0, 0.5, 500_000, 44_100, 1.0).unwrap();
    let (spec, samples) = read_wav(&wav.bytes);
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (44_100, 2, 16)
    );
    let seconds = samples.len() as f64 / 2.0 / 44_100.0;
    assert!((seconds - 127.0).abs() < 0.01, "{seconds} s");
    assert_eq!(wav.clipped, 0);
    assert!(rms(&samples) > 0.01, "not silent: rms {}", rms(&samples));

    // Four-note chords for 10 s, then single notes for 10 s: the chords are louder.
    let mut dense: Vec<String> = vec!["0.4.7.10".to_string(); 40];
    dense.extend(std::iter::repeat_n("C4".to_string(), 40));
    let wav = render::render_tokens(&sf, &dense, 0, 0.5, 500_000, 44_100, 1.0).unwrap();
    let (_, samples) = read_wav(&wav.bytes);
    let second = |s: f64| (s * 44_100.0 * 2.0) as usize;
    let (chords, singles) = (
        rms(&samples[second(1.0)..second(9.0)]),
        rms(&samples[second(11.0)..second(19.0)]),
    );
    assert!(
        chords > 1.5 * singles,
        "chords rms {chords} vs single notes {singles}"
    );
    // After the last note's release the tail fades out.
    let tail = rms(&samples[second(21.5)..]);
    assert!(tail < singles / 4.0, "tail {tail} vs {singles}");
}

fn project_with_audio() -> Project {
    let p = tiny_project();
    let text = experiment(TINY, "length = 40\ntemperature = 1.0\nstep = 0.5")
        + "\n[stages.audio]\nkind = \"render\"\ninputs = [\"music\"]\n";
    p.write("exp.toml", text);
    p
}

fn duration(path: &std::path::Path) -> f64 {
    let (spec, samples) = read_wav(&std::fs::read(path).unwrap());
    samples.len() as f64 / f64::from(spec.channels) / f64::from(spec.sample_rate)
}

#[test]
fn the_render_stage_writes_both_wavs_and_only_it_reruns_for_another_soundfont() {
    let p = project_with_audio();
    let Some(sf) = soundfont() else { return };
    let run = p
        .pipeline_with_env(
            &["run", "exp.toml"],
            &[("PIPELINE_SOUNDFONT", sf.to_str().unwrap())],
        )
        .ok();
    let report = run.report.clone().unwrap();
    // 40 tokens of a quarter second, and the seed window (seq_len 4), each plus 2 s of release.
    assert!((duration(&report.join("generated.wav")) - 12.0).abs() < 0.01);
    assert!((duration(&report.join("seed.wav")) - 3.0).abs() < 0.01);
    assert_eq!(
        run.stage("audio").summary()["soundfont"],
        sf.file_name().unwrap().to_str().unwrap()
    );

    // The same SoundFont with one byte of its text changed: a different file, so only the audio is rendered again.
    let mut bytes = std::fs::read(&sf).unwrap();
    let at = bytes
        .windows(4)
        .position(|w| w == b"INAM")
        .expect("a name chunk")
        + 8;
    bytes[at] ^= 0x01;
    p.write("other.sf2", &bytes);
    let other = p.path("other.sf2");
    let again = p
        .pipeline_with_env(
            &["run", "exp.toml"],
            &[("PIPELINE_SOUNDFONT", other.to_str().unwrap())],
        )
        .ok();
    assert_eq!(again.stages("ran"), ["audio"]);
    assert_eq!(again.stage("audio").summary()["soundfont"], "other.sf2");
}

#[test]
fn without_a_soundfont_the_run_warns_and_goes_on() {
    let p = project_with_audio();
    let empty = tempfile::tempdir().unwrap();
    let run = p
        .pipeline_with_env(
            &["run", "exp.toml"],
            &[
                ("PIPELINE_SOUNDFONT", ""),
                ("PIPELINE_SOUNDFONT_PATH", empty.path().to_str().unwrap()),
            ],
        )
        .ok();
    assert!(
        run.stderr.contains("warning: audio: no SoundFont found, so no audio: install one (Debian/Ubuntu: `apt install timgm6mb-soundfont`"),
        "{}",
        run.stderr
    );
    let report = run.report.clone().unwrap();
    assert!(!report.join("generated.wav").exists());
    assert!(report.join("generated.mid").exists() && report.join("generated.svg").exists());
}

#[test]
fn a_soundfont_that_does_not_exist_is_a_validation_error() {
    let p = project_with_audio();
    let text =
        std::fs::read_to_string(p.path("exp.toml")).unwrap() + "soundfont = \"nowhere.sf2\"\n";
    p.write("exp.toml", text);
    p.pipeline(&["run", "exp.toml"])
        .fails_with(2, "`nowhere.sf2` does not exist");
}

/// A piece longer than a WAV file can hold (2,000 tokens of 64 beats at 192 kHz: 18 hours, 46 GiB) is refused
/// with the numbers and what to lower, before anything that size is allocated.
#[test]
fn audio_beyond_what_a_wav_can_hold_is_refused_before_allocating() {
    let Some(path) = soundfont() else { return };
    let bytes = std::fs::read(&path).unwrap();
    let sf = render::load_soundfont(&bytes, &path).unwrap();
    let tokens = vec!["C4".to_string(); 2000];
    let err = render::render_tokens(&sf, &tokens, 0, 64.0, 500_000, 192_000, 1.0)
        .err()
        .expect("refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("beyond the 4 GiB a WAV file can hold") && text.contains("lower"),
        "{text}"
    );
}

/// Every piece gets its audio, named as its MIDI file is; and a cached re-run links the previous report's identical
/// files instead of copying them again, never linking into the cache.
#[test]
fn every_piece_is_rendered_and_a_re_run_links_the_previous_report_s_files() {
    use std::os::unix::fs::MetadataExt;
    let p = tiny_project();
    let text = experiment(
        TINY,
        "length = 40\ntemperature = 1.0\nstep = 0.5\ncount = 3",
    ) + "\n[stages.audio]\nkind = \"render\"\ninputs = [\"music\"]\n";
    p.write("exp.toml", text);
    let Some(sf) = soundfont() else { return };
    let env = [("PIPELINE_SOUNDFONT", sf.to_str().unwrap())];
    let first = p.pipeline_with_env(&["run", "exp.toml"], &env).ok();
    let report = first.report.clone().unwrap();
    for name in ["generated.wav", "generated-2.wav", "generated-3.wav"] {
        assert!(
            (duration(&report.join(name)) - 12.0).abs() < 0.01,
            "{name}: 40 tokens of a quarter second and the release"
        );
        let mid = name.replace(".wav", ".mid");
        assert!(report.join(mid).is_file());
    }
    assert!(!report.join("generated-4.wav").exists());
    assert_eq!(first.stage("audio").summary()["pieces"], 3);
    // The index plays every piece and gives every piece's metrics.
    let index = std::fs::read_to_string(p.path("reports/index.html")).unwrap();
    for piece in ["generated.wav", "generated-2.wav", "generated-3.wav"] {
        assert!(index.contains(piece), "the index lacks {piece}");
    }
    assert!(index.contains("(pieces 1–3)"), "every piece's metrics");

    let again = p.pipeline_with_env(&["run", "exp.toml"], &env).ok();
    let second = again.report.clone().unwrap();
    let a = std::fs::metadata(report.join("generated-2.wav")).unwrap();
    let b = std::fs::metadata(second.join("generated-2.wav")).unwrap();
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "one file, linked");
    // The cache's own copy stays apart: only the two reports share the bytes.
    assert_eq!(b.nlink(), 2);
    assert_eq!(
        std::fs::read(report.join("generated.mid")).unwrap(),
        std::fs::read(second.join("generated.mid")).unwrap()
    );
}
