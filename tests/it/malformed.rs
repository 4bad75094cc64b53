//! Odd and broken real-world MIDI files (`tests/fixtures/malformed`, described in its NOTES.txt): nothing panics,
//! nothing is lost silently, every file is read, repaired with a warning, or skipped with a reason, and the run
//! goes on and lists what happened in `ingest.csv`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::{Ev, Project, SummaryJson, csv_rows, melody, smf_bytes};
use pipeline::artifact::{Event, Message};
use pipeline::{Ingest, read_song};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/malformed");

fn read(rel: &str) -> Result<Ingest, String> {
    let bytes = std::fs::read(Path::new(FIXTURES).join(rel)).unwrap();
    read_song(rel, &bytes).map_err(|e| e.to_string())
}

fn original() -> Vec<Event> {
    read("crafted/original-train_filled_with_cash.mid")
        .unwrap()
        .song
        .events
}

fn note_ons(events: &[Event]) -> Vec<(u64, u8, u8)> {
    events
        .iter()
        .filter_map(|e| match e.message {
            Message::NoteOn { key, .. } => Some((e.tick, e.channel, key)),
            _ => None,
        })
        .collect()
}

/// Damage that loses no music: the events read equal the original file's exactly.
#[test]
fn repaired_copies_read_exactly_like_the_original() {
    let original = original();
    assert_eq!(note_ons(&original).len(), 941);
    for (file, said) in [
        ("crafted/crafted-alien-chunk.mid", None),
        ("crafted/crafted-missing-eot.mid", None),
        ("crafted/crafted-zero-length-track.mid", None),
        ("crafted/crafted-nonminimal-vlq.mid", None),
        ("crafted/crafted-riff-rmid.rmi", None),
        (
            "crafted/crafted-ntrks-too-large.mid",
            Some("the header declares 8 tracks; the file holds 5"),
        ),
        (
            "crafted/crafted-trailing-garbage.mid",
            Some("ignored 37 bytes after the last track"),
        ),
        (
            "crafted/crafted-track-length-short.mid",
            Some("track 2's length field is 9 bytes short: read on to the next track"),
        ),
    ] {
        let got = read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(got.song.events, original, "{file}");
        assert_eq!(got.repairs.first().map(String::as_str), said, "{file}");
    }
}

/// Data bytes above 127 (midly's lenient mode ends the track there, silently): clamped, the rest of the track kept.
#[test]
fn out_of_range_data_bytes_are_clamped_and_the_track_goes_on() {
    let got = read("crafted/crafted-velocity-ff.mid").unwrap();
    assert_eq!(note_ons(&got.song.events), note_ons(&original()));
    assert_eq!(
        got.repairs,
        ["track 2: 20 data bytes above 127 clamped to 127"]
    );
    let loud = got
        .song
        .events
        .iter()
        .filter(|e| matches!(e.message, Message::NoteOn { velocity: 127, .. }))
        .count();
    assert!(loud >= 20, "{loud} notes at velocity 127");

    // Real files with every velocity out of range: their notes are there (midly alone yields none).
    for (file, notes, pitches) in [
        ("debian/songwrite-son_lyre.mid", 5, 5),
        ("debian/songwrite-son_accordeon.mid", 10, 7),
    ] {
        let got = read(file).unwrap();
        let ons = note_ons(&got.song.events);
        assert_eq!(ons.len(), notes, "{file}");
        let distinct: std::collections::BTreeSet<u8> = ons.iter().map(|n| n.2).collect();
        assert_eq!(distinct.len(), pitches, "{file}: {distinct:?}");
        assert!(got.repairs[0].contains("clamped to 127"), "{file}");
    }
}

/// Valid but unusual layouts give the original's notes in the original's order.
#[test]
fn unusual_valid_files_keep_every_note() {
    let keys = |events: &[Event]| note_ons(events).iter().map(|n| n.2).collect::<Vec<_>>();
    let original = original();
    // Format 0 with running status: the same notes on the same ticks.
    let format0 = read("crafted/crafted-format0-running-status.mid").unwrap();
    let sorted = |mut v: Vec<(u64, u8, u8)>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(note_ons(&format0.song.events)),
        sorted(note_ons(&original))
    );
    // SMPTE divisions: other ticks, same notes.
    for file in [
        "crafted/crafted-smpte-25fps-40tpf.mid",
        "crafted/crafted-smpte-29.97drop-100tpf.mid",
    ] {
        let got = read(file).unwrap();
        assert_eq!(got.song.ticks_per_beat, None, "{file}");
        assert_eq!(note_ons(&got.song.events).len(), 941, "{file}");
    }
    // Format 2: the tracks are independent sequences, laid end to end; nothing dropped.
    let format2 = read("crafted/crafted-format2-header.mid").unwrap();
    assert_eq!(note_ons(&format2.song.events).len(), 941);
    assert_ne!(keys(&format2.song.events), keys(&original));
    // gzip, as Debian ships it.
    let gz = read("debian/pianobooster-05-ScarboroughFair.mid.gz").unwrap();
    assert_eq!(note_ons(&gz.song.events).len(), 1088);
    assert_eq!(gz.notes, ["gzip-compressed: decompressed"]);
    // Notes that never end are kept (tokens use onsets) and said.
    let hanging = read("crafted/crafted-hanging-notes.mid").unwrap();
    assert_eq!(note_ons(&hanging.song.events), note_ons(&original));
    assert!(
        hanging.notes[0].starts_with("270 notes never end"),
        "{:?}",
        hanging.notes
    );
}

#[test]
fn unreadable_files_say_why() {
    for (file, why) in [
        (
            "crafted/crafted-truncated-in-header.mid",
            "the file ends inside its header (10 bytes)",
        ),
        (
            "crafted/crafted-header-only.mid",
            "no track chunks (the header declares 5)",
        ),
    ] {
        assert_eq!(read(file).unwrap_err(), why, "{file}");
    }
    let not_midi = read_song("x.mid", b"hello, world").unwrap_err().to_string();
    assert_eq!(
        not_midi,
        "not a MIDI file: no `MThd` header (it starts with 68 65 6C 6C)"
    );
    // A truncated file keeps every complete event before the cut.
    let cut = read("crafted/crafted-truncated-mid-track.mid").unwrap();
    assert_eq!(note_ons(&cut.song.events).len(), 503);
    assert!(cut.repairs[0].starts_with("track 4 declares 2196 bytes but the file ends after 518"));
}

/// A gzip bomb is refused, not decompressed into memory.
#[test]
fn huge_gzip_is_refused() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..300 {
        gz.write_all(&zeros).unwrap();
    }
    let bytes = gz.finish().unwrap();
    assert!(bytes.len() < 1 << 20);
    let err = read_song("bomb.mid.gz", &bytes).unwrap_err().to_string();
    assert_eq!(
        err,
        "gzip-compressed and larger than 256 MiB once decompressed"
    );
}

/// The real binary over every fixture: the run succeeds, trains, and `ingest.csv` says what became of each file.
#[test]
fn a_run_over_every_fixture_reads_repairs_or_skips_each_file() {
    let p = Project::new();
    let walk = walkdir::WalkDir::new(FIXTURES);
    for entry in walk.into_iter().map(Result::unwrap) {
        if entry.file_type().is_file() {
            let rel = entry.path().strip_prefix(FIXTURES).unwrap();
            p.write(
                &format!("midi/{}", rel.display()),
                std::fs::read(entry.path()).unwrap(),
            );
        }
    }
    p.write(
        "exp.toml",
        crate::support::experiment(crate::support::TINY, "length = 20\ntemperature = 1.0"),
    );
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let rows = csv_rows(&run.report_file("ingest.csv"));
    assert_eq!(rows[0], ["file", "status", "notes", "detail"]);
    let status: BTreeMap<&str, &str> = rows[1..]
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    let expect = [
        ("crafted/crafted-header-only.mid", "skipped"),
        ("crafted/crafted-truncated-in-header.mid", "skipped"),
        ("crafted/crafted-velocity-ff.mid", "repaired"),
        ("crafted/crafted-track-length-short.mid", "repaired"),
        ("crafted/crafted-truncated-mid-track.mid", "repaired"),
        ("crafted/crafted-riff-rmid.rmi", "read"),
        ("crafted/crafted-no-notes.mid", "read"),
        ("debian/songwrite-son_lyre.mid", "repaired"),
        ("debian/pianobooster-05-ScarboroughFair.mid.gz", "read"),
        ("debian/crimson-default.mid", "read"),
    ];
    for (file, want) in expect {
        assert_eq!(status.get(file), Some(&want), "{file}: {status:?}");
    }
    // Every MIDI fixture is listed (29 files from NOTES.txt plus the original); no other file is.
    assert_eq!(status.len(), 30, "{status:?}");
    // One warning line per file with a problem, naming the file.
    for needle in [
        "warning: source: skipped `midi/crafted/crafted-header-only.mid`: no track chunks",
        "warning: source: `midi/crafted/crafted-velocity-ff.mid`: track 2: 20 data bytes above 127 clamped",
        "warning: source: `midi/crafted/crafted-no-notes.mid`: no notes",
        "warning: no_drums: 1 file(s) hold only drums and add nothing to train on: crafted/crafted-drums-only.mid",
    ] {
        assert!(run.stderr.contains(needle), "{needle}\n{}", run.stderr);
    }
    let source = run.stage("source");
    let summary = source.summary();
    assert_eq!(summary["skipped_files"].as_array().unwrap().len(), 2);
    assert_eq!(summary["repaired_files"].as_array().unwrap().len(), 7);
    assert_eq!(summary["files"], 28);
}

/// Text events that are not UTF-8 (Latin-1 and Shift-JIS names are common) do not matter to the music.
#[test]
fn non_utf8_text_events_are_harmless() {
    let events: &[u8] = &[
        0x00, 0xff, 0x03, 0x04, 0xe9, 0x74, 0xe9, 0x28, // track name "été(" in Latin-1
        0x00, 0xff, 0x01, 0x02, 0x82, 0xa0, // text: Shift-JIS "あ"
        0x00, 0x90, 60, 90, 0x60, 0x80, 60, 0, // a note
        0x00, 0xff, 0x2f, 0x00,
    ];
    let mut bytes = b"MThd\0\0\0\x06\0\0\0\x01\x01\xe0MTrk".to_vec();
    bytes.extend_from_slice(&(events.len() as u32).to_be_bytes());
    bytes.extend_from_slice(events);
    let got = read_song("latin1.mid", &bytes).unwrap();
    assert_eq!(note_ons(&got.song.events), [(0, 0, 60)]);
    assert!(got.repairs.is_empty() && got.notes.is_empty());
}

/// A one-track file at 480 ticks per beat holding `events`.
fn one_track(events: &[u8]) -> Vec<u8> {
    let mut bytes = b"MThd\0\0\0\x06\0\0\0\x01\x01\xe0MTrk".to_vec();
    bytes.extend_from_slice(&(events.len() as u32).to_be_bytes());
    bytes.extend_from_slice(events);
    bytes
}

/// A status byte of the wire (system common `F1`–`F6`, real-time `F8`–`FE`) where an event should start, as files
/// from the wild hold: skipped by its length with one warning per file, and every note after it kept. midly alone
/// drops the rest of the track there.
#[test]
fn system_common_and_real_time_bytes_inside_a_track_are_skipped() {
    const SCALE: [u8; 8] = [60, 62, 64, 65, 67, 69, 71, 72];
    // Each wire message with its data bytes; F6 and the real-time ones have none.
    let wire: &[&[u8]] = &[
        &[0xf1, 0x12],
        &[0xf2, 0x10, 0x02],
        &[0xf3, 0x05],
        &[0xf4],
        &[0xf5],
        &[0xf6],
        &[0xf8],
        &[0xf9],
        &[0xfa],
        &[0xfb],
        &[0xfc],
        &[0xfd],
        &[0xfe],
    ];
    // The scale: the first note with its status, the rest in running status, the status byte(s) before the first.
    let scale_after = |prefix: &[&[u8]]| {
        let mut ev = Vec::new();
        for msg in prefix {
            ev.push(0x00);
            ev.extend_from_slice(msg);
        }
        for (i, &k) in SCALE.iter().enumerate() {
            if i == 0 {
                ev.extend_from_slice(&[0x00, 0x90, k, 90]);
            } else {
                ev.extend_from_slice(&[0x00, k, 90]);
            }
            ev.extend_from_slice(&[0x83, 0x60, k, 0]); // 480 ticks later, note-on velocity 0 (running status)
        }
        ev.extend_from_slice(&[0x00, 0xff, 0x2f, 0x00]);
        one_track(&ev)
    };
    let expect: Vec<(u64, u8, u8)> = SCALE
        .iter()
        .enumerate()
        .map(|(i, &k)| (i as u64 * 480, 0, k))
        .collect();
    for msg in wire {
        let got = read_song("wire.mid", &scale_after(&[msg])).unwrap();
        assert_eq!(note_ons(&got.song.events), expect, "status {:02X}", msg[0]);
        assert_eq!(
            got.repairs,
            [
                "skipped 1 system common or real-time message(s) (status F1–FE), which belong on a MIDI \
              cable, not in a file"
            ],
            "status {:02X}",
            msg[0]
        );
    }
    let got = read_song("all.mid", &scale_after(wire)).unwrap();
    assert_eq!(note_ons(&got.song.events), expect);
    assert_eq!(
        got.repairs.len(),
        1,
        "one warning per file: {:?}",
        got.repairs
    );
    assert!(
        got.repairs[0].starts_with("skipped 13 "),
        "{:?}",
        got.repairs
    );

    // A real-time byte between two running-status notes leaves running status alone.
    let mut ev = vec![0x00, 0x90, 60, 90, 0x00, 0xf8, 0x00, 62, 90];
    ev.extend_from_slice(&[0x00, 0xff, 0x2f, 0x00]);
    let got = read_song("clock.mid", &one_track(&ev)).unwrap();
    assert_eq!(note_ons(&got.song.events), [(0, 0, 60), (0, 0, 62)]);
    // A system common byte cancels it: the data byte after it has no status and the rest cannot be read.
    let mut ev = vec![0x00, 0x90, 60, 90, 0x00, 0xf6, 0x00, 62, 90];
    ev.extend_from_slice(&[0x00, 0xff, 0x2f, 0x00]);
    let got = read_song("tune.mid", &one_track(&ev)).unwrap();
    assert_eq!(note_ons(&got.song.events), [(0, 0, 60)]);
    assert!(
        got.repairs.iter().any(|r| r.contains("dropped")),
        "{:?}",
        got.repairs
    );
}

/// Two file names that are not UTF-8 and would read the same with `�` for their odd bytes are two files: both are
/// read, each under its own name (`\xE9`, `\xE8`).
#[test]
fn non_utf8_file_names_that_look_alike_are_both_kept() {
    use std::os::unix::ffi::OsStrExt;
    let p = Project::new();
    p.write("exp.toml", crate::support::PIPELINE_TOML);
    std::fs::create_dir_all(p.path("midi")).unwrap();
    for (name, keys) in [
        (&b"caf\xe9.mid"[..], [60u8, 62, 64, 65, 67]),
        (&b"caf\xe8.mid"[..], [72u8, 71, 69, 67, 65]),
    ] {
        let path = p.path("midi").join(std::ffi::OsStr::from_bytes(name));
        std::fs::write(
            path,
            crate::support::smf_bytes(&[crate::support::melody(0, &keys)]),
        )
        .unwrap();
    }
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let ingest = run.report_file("ingest.csv");
    assert!(
        ingest.contains("caf\\xE8.mid") && ingest.contains("caf\\xE9.mid"),
        "{ingest}"
    );
    assert_eq!(
        csv_rows(&ingest).len(),
        3,
        "a header and two files:\n{ingest}"
    );
}

#[test]
fn the_first_playable_tempo_is_kept_and_a_zero_tempo_is_reported() {
    let bytes = smf_bytes(&[
        vec![
            Ev::Tempo { tick: 0, micros: 0 },
            Ev::Tempo {
                tick: 480,
                micros: 600_000,
            },
            Ev::Tempo {
                tick: 960,
                micros: 300_000,
            },
        ],
        melody(0, &[60, 62, 64]),
    ]);
    let read = read_song("zero.mid", &bytes).unwrap();
    assert_eq!(read.song.tempo, 600_000);
    assert!(
        read.repairs
            .iter()
            .any(|r| r.contains("1 tempo event(s) of 0 µs per beat")),
        "{:?}",
        read.repairs
    );
    let plain = read_song("plain.mid", &smf_bytes(&[melody(0, &[60])])).unwrap();
    assert_eq!(plain.song.tempo, pipeline::artifact::DEFAULT_TEMPO);
    assert!(plain.repairs.is_empty());
}
