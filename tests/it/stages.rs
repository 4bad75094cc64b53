//! The MIDI stages' exact semantics, checked through the real binary on purpose-made MIDI files.

use crate::support::*;

fn run_pipeline(p: &Project, set: &[&str]) -> Run {
    p.write("exp.toml", PIPELINE_TOML);
    let mut args = vec!["run", "exp.toml"];
    for s in set {
        args.extend(["--set", s]);
    }
    p.pipeline(&args).ok()
}

#[test]
fn drums_on_channel_10_are_removed_before_ranking() {
    let p = Project::new();
    // Ten drum hits on channel 10 (index 9) with no program change would rank as program 0 if they were kept.
    let drums: Vec<Ev> = (0..10).flat_map(|i| note(i * 240, 9, 36, 100)).collect();
    let piano = [
        vec![Ev::Program {
            tick: 0,
            ch: 0,
            program: 1,
        }],
        melody(0, &[60, 62, 64, 65, 67]),
    ]
    .concat();
    p.midi("midi/a.mid", &[drums, piano]);
    let run = run_pipeline(&p, &[]);
    assert_eq!(
        run.report_file("instruments.csv"),
        "rank,program,name,notes,kept\n1,1,Bright Acoustic Piano,5,true\n"
    );
    assert_eq!(run.stage("no_drums").summary()["events_removed"], 20);
}

#[test]
fn programs_rank_by_note_count_with_ties_to_the_lower_program() {
    let p = Project::new();
    let prog = |ch, program| Ev::Program {
        tick: 0,
        ch,
        program,
    };
    p.midi(
        "midi/a.mid",
        &[
            [vec![prog(0, 10)], melody(0, &[60, 61, 62])].concat(),
            [vec![prog(1, 5)], melody(1, &[70, 71, 72])].concat(),
            // No program change: program 0.
            melody(2, &[40, 41]),
            [vec![prog(3, 20)], melody(3, &[50, 51, 52, 53])].concat(),
        ],
    );
    // In another file, channel 0 plays two notes before its program change (program 0) and one after (program 10).
    p.midi(
        "midi/b.mid",
        &[[
            note(0, 0, 60, 10).to_vec(),
            note(480, 0, 62, 10).to_vec(),
            vec![Ev::Program {
                tick: 900,
                ch: 0,
                program: 10,
            }],
            note(960, 0, 64, 10).to_vec(),
        ]
        .concat()],
    );
    let run = run_pipeline(&p, &["melody.top=2", "windows.seq_len=2"]);
    // 10: 3 + 1 = 4 ties with 20: 4 → 10 first; 0: 2 + 2 = 4 ties too and comes first of all; 5: 3.
    assert_eq!(
        run.report_file("instruments.csv"),
        "rank,program,name,notes,kept\n\
         1,0,Acoustic Grand Piano,4,true\n\
         2,10,Music Box,4,true\n\
         3,20,Reed Organ,4,false\n\
         4,5,Electric Piano 2,3,false\n"
    );
    // Kept: program 0 (a: 40 41; b: 60 62) and program 10 (a: 60 61 62; b: 64).
    let tokens = run.stage("tokens").summary()["tokens"].as_u64().unwrap();
    assert_eq!(
        tokens,
        3 + 3,
        "a: three onsets (40+60 at 0, 41+61 at 480, 62 at 960); b: three notes"
    );
}

#[test]
fn notes_at_one_onset_become_chords_and_pitch_names_cover_the_midi_range() {
    let p = Project::new();
    let at = |tick, keys: &[u8]| {
        keys.iter()
            .flat_map(|&k| note(tick, 0, k, 100))
            .collect::<Vec<_>>()
    };
    let events = [
        at(0, &[64, 60, 67]),           // C4 E4 G4 → 0.4.7
        at(480, &[60, 72]),             // C4 C5 → 0
        at(960, &[0]),                  // lowest MIDI note
        at(1440, &[127]),               // highest
        at(1920, &[60]),                // C4 …
        note(1920, 1, 60, 50).to_vec(), // … doubled on another channel: still one pitch, a note
        at(2400, &[61]),
        at(2401, &[62, 71]), // one tick later is another onset: 2.11
    ]
    .concat();
    p.midi("midi/a.mid", &[events]);
    let run = run_pipeline(&p, &[]);
    assert_eq!(
        run.report_file("vocab.csv"),
        "id,token,count\n0,0,1\n1,0.4.7,1\n2,2.11,1\n3,C#4,1\n4,C-1,1\n5,C4,1\n6,G9,1\n"
    );
    assert_eq!(run.stage("tokens").summary()["chord_tokens"], 3);
}

#[test]
fn windows_never_cross_file_boundaries() {
    let p = Project::new();
    p.midi("midi/a.mid", &[melody(0, &[60, 61, 62, 63, 64, 65])]); // 6 tokens → 3 windows of 3
    p.midi("midi/b.mid", &[melody(0, &[60, 61, 62])]); // exactly seq_len → none
    p.midi("midi/c.mid", &[melody(0, &[60, 61, 62, 63])]); // 1
    let run = run_pipeline(&p, &["windows.seq_len=3"]);
    assert_eq!(
        run.report_file("windows.csv"),
        "file,split,tokens,windows\na.mid,train,6,3\nb.mid,train,3,0\nc.mid,train,4,1\n"
    );
    assert_eq!(run.manifest().windows.unwrap().train_windows, 4);
    assert_eq!(run.manifest().windows.unwrap().validation_windows, 0);
}

#[test]
fn too_long_windows_are_a_clear_error() {
    let p = Project::new();
    p.midi("midi/a.mid", &[melody(0, &[60, 61, 62])]);
    p.write("exp.toml", PIPELINE_TOML);
    let run = p.pipeline(&["run", "exp.toml", "--set", "windows.seq_len=50"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("stage `windows` failed: no training windows"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("lower `seq_len`"), "{}", run.stderr);
    assert_eq!(
        run.manifest().status,
        Some(RunStatus::Failed),
        "a failed run still writes its report"
    );
}

fn split_of(run: &Run) -> Vec<String> {
    csv_rows(&run.report_file("windows.csv"))[1..]
        .iter()
        .filter(|r| r[1] == "validation")
        .map(|r| r[0].clone())
        .collect()
}

#[test]
fn the_validation_split_holds_out_whole_files_chosen_by_the_seed() {
    let p = Project::new();
    for i in 0..10u8 {
        p.midi(
            &format!("midi/{i:02}.mid"),
            &[melody(0, &[60 + i, 62, 64, 65, 67, 69])],
        );
    }
    let run = run_pipeline(&p, &["windows.val_fraction=0.3"]);
    let held_out = split_of(&run);
    assert_eq!(held_out.len(), 3, "round(10 × 0.3) files");
    assert_eq!(
        run.manifest().windows.unwrap().validation_windows,
        3 * (6 - 4)
    );
    assert_eq!(run.manifest().windows.unwrap().train_windows, 7 * (6 - 4));

    let again = p
        .pipeline(&[
            "run",
            "exp.toml",
            "--set",
            "windows.val_fraction=0.3",
            "--force",
            "windows",
        ])
        .ok();
    assert_eq!(
        split_of(&again),
        held_out,
        "the same seed holds out the same files"
    );

    let others: Vec<Vec<String>> = (1..6)
        .map(|seed| {
            split_of(&run_pipeline(
                &p,
                &["windows.val_fraction=0.3", &format!("windows.seed={seed}")],
            ))
        })
        .collect();
    assert!(
        others.iter().any(|o| *o != held_out),
        "other seeds hold out other files"
    );

    let one = run_pipeline(&p, &["windows.val_fraction=0.01"]);
    assert_eq!(
        split_of(&one).len(),
        1,
        "at least one file when the fraction is above 0"
    );
}

#[test]
fn an_unparsable_file_is_skipped_with_a_warning_naming_it() {
    let p = Project::new();
    p.midi("midi/a.mid", &[melody(0, &[60, 62, 64, 65, 67])]);
    p.write("midi/broken.mid", b"MThd\x00\x00\x00\x06garbage");
    p.write("midi/notes.txt", b"not a MIDI file, and not named like one");
    let run = run_pipeline(&p, &[]);
    assert!(
        run.stderr
            .contains("warning: source: skipped `midi/broken.mid`:"),
        "{}",
        run.stderr
    );
    let skipped = run.manifest().skipped_files;
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].file, "broken.mid");
    assert_eq!(run.stage("source").summary()["files"], 1);
}

#[test]
fn zero_usable_files_is_an_error() {
    let p = Project::new();
    p.write("midi/broken.mid", b"RIFFnope");
    p.write("exp.toml", PIPELINE_TOML);
    let run = p.pipeline(&["run", "exp.toml"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("none of the 1 files at `midi` could be read as MIDI"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_glob_selects_files_relative_to_the_experiment() {
    let p = Project::new();
    p.midi("midi/keep/a.mid", &[melody(0, &[60, 62, 64, 65, 67])]);
    p.midi("midi/drop/b.mid", &[melody(0, &[70, 72, 74, 75, 77])]);
    p.write(
        "exp.toml",
        PIPELINE_TOML.replace("path = \"midi\"", "path = \"midi/keep/*.mid\""),
    );
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(run.stage("source").summary()["files"], 1);
    assert!(!run.report_file("vocab.csv").contains("A#4"));
}

#[test]
fn an_absolute_glob_selects_files() {
    let p = Project::new();
    p.midi("midi/keep/a.mid", &[melody(0, &[60, 62, 64, 65, 67])]);
    p.midi("midi/drop/b.mid", &[melody(0, &[70, 72, 74, 75, 77])]);
    let glob = format!("{}/midi/keep/*.mid", p.dir.path().display());
    p.write(
        "exp.toml",
        PIPELINE_TOML.replace("path = \"midi\"", &format!("path = \"{glob}\"")),
    );
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(run.stage("source").summary()["files"], 1);
    assert!(!run.report_file("vocab.csv").contains("A#4"));
}

#[test]
fn a_dangling_link_or_a_link_loop_is_one_skipped_entry() {
    let p = Project::new();
    p.midi("midi/a.mid", &[melody(0, &[60, 62, 64, 65, 67])]);
    std::os::unix::fs::symlink(p.path("nowhere.mid"), p.path("midi/gone.mid")).unwrap();
    std::os::unix::fs::symlink(p.path("midi"), p.path("midi/again")).unwrap();
    let run = run_pipeline(&p, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("skipped `midi/gone.mid`: cannot be read"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("skipped `midi/again`: a link back to"),
        "{}",
        run.stderr
    );
    let ingest = run.report_file("ingest.csv");
    assert!(
        ingest.contains("gone.mid,skipped,0,cannot be read"),
        "{ingest}"
    );
    assert!(ingest.contains("a.mid,read,5"), "{ingest}");
    assert_eq!(run.stage("source").summary()["files"], 1);
}

/// Windows are stored as ids and offsets: the output grows with the tokens, not with tokens × `seq_len`.
#[test]
fn window_storage_does_not_grow_with_seq_len() {
    let p = Project::new();
    for f in 0..4u8 {
        let keys: Vec<u8> = (0..600u32)
            .map(|i| 40 + ((i * 5 + u32::from(f)) % 30) as u8)
            .collect();
        p.midi(&format!("midi/{f}.mid"), &[melody(0, &keys)]);
    }
    let size = |seq_len: &str| {
        let run = run_pipeline(&p, &[&format!("windows.seq_len={seq_len}")]);
        let windows = run.manifest().windows.unwrap().train_windows;
        (run.stage("windows").output_bytes.unwrap(), windows)
    };
    let (short, short_windows) = size("2");
    let (long, long_windows) = size("200");
    assert_eq!(short_windows, 4 * (600 - 2));
    assert_eq!(long_windows, 4 * (600 - 200));
    // Materialized windows would take 2,392 × 2 versus 1,600 × 200 ids; the stored output is the same size.
    assert!(short.abs_diff(long) <= 8, "{short} vs {long} bytes");
    assert!(
        long < 4 * 600 * 4,
        "about one small integer per token: {long} bytes"
    );
}

/// `manifest.json` keeps its field names: every reader in the tool and in the tests goes through one type, so a
/// renamed field would pass them all; this reads the file as plain JSON.
#[test]
fn the_manifest_file_keeps_its_field_names() {
    let p = midi_project();
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let path = run.report.as_ref().unwrap().join("manifest.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&json),
        [
            "crates",
            "device",
            "experiment",
            "experiment_file",
            "experiment_path",
            "files",
            "finished",
            "overrides",
            "point",
            "run_id",
            "skipped_files",
            "stages",
            "started",
            "status",
            "tool",
            "windows"
        ]
    );
    assert_eq!(
        keys(&json["stages"][0]),
        [
            "error",
            "fingerprint",
            "kind",
            "name",
            "origin",
            "output_bytes",
            "output_hash",
            "params",
            "reason",
            "reasons",
            "seconds",
            "shared_by",
            "status",
            "summary",
            "warnings"
        ]
    );
    assert_eq!(
        keys(&json["windows"]),
        [
            "seq_len",
            "train_files",
            "train_windows",
            "validation_files",
            "validation_windows"
        ]
    );
    assert_eq!(json["status"], "ok");
    assert_eq!(json["stages"][0]["status"], "ran");
    assert_eq!(json["stages"][0]["kind"], "midi_source");
}

/// [`PIPELINE_TOML`] with an `augment` stage between `tokens` and `vocab`, over four melodies, one held out.
fn augmented_project(transpose: &str) -> Project {
    let p = midi_project();
    p.midi(
        "midi/c.mid",
        &[melody(0, &[60, 64, 67, 72, 67, 64, 60, 62])],
    );
    p.midi(
        "midi/d.mid",
        &[melody(0, &[65, 69, 72, 77, 72, 69, 65, 67])],
    );
    let toml = PIPELINE_TOML
        .replace(
            "[stages.vocab]\nkind = \"vocab\"\ninputs = [\"tokens\"]",
            &format!(
                "[stages.more]\nkind = \"augment\"\ninputs = [\"tokens\"]\ntranspose = {transpose}\n\n\
                 [stages.vocab]\nkind = \"vocab\"\ninputs = [\"more\"]"
            ),
        )
        .replace("val_fraction = 0.0", "val_fraction = 0.25");
    assert!(toml.contains("augment"));
    p.write("exp.toml", toml);
    p
}

#[test]
fn augment_transposes_and_a_held_out_file_never_trains_in_any_key() {
    let p = augmented_project("[-2, 3]");
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let rows = csv_rows(&run.report_file("windows.csv"));
    let col = |name: &str| rows[0].iter().position(|c| c == name).unwrap();
    let (file, split) = (col("file"), col("split"));
    let held: Vec<&Vec<String>> = rows[1..]
        .iter()
        .filter(|r| r[split] == "validation")
        .collect();
    assert_eq!(held.len(), 1, "one file held out, untransposed: {rows:?}");
    let source = held[0][file].clone();
    assert!(!source.contains('@'), "{source}");
    assert!(
        rows[1..]
            .iter()
            .all(|r| !r[file].starts_with(&format!("{source}@"))),
        "no copy of the held-out `{source}` in training or validation: {rows:?}"
    );
    // The three training files, each with its 5 copies.
    let training = rows[1..].iter().filter(|r| r[split] == "train").count();
    assert_eq!(training, 3 * 6, "{rows:?}");
    let windows = run.manifest().windows.unwrap();
    assert_eq!(windows.validation_files, 1);
    assert!(windows.train_windows_from_copies > 0);
    assert_eq!(
        windows.train_windows,
        windows.train_windows_from_copies + windows.train_windows_from_copies / 5,
        "each original has as many windows as each of its copies"
    );

    let table = p.pipeline(&["compare", "--format", "json"]).ok().stdout;
    let rows: serde_json::Value = serde_json::from_str(&table).unwrap();
    assert_eq!(
        rows[0]["copy_windows"], windows.train_windows_from_copies as u64,
        "compare says how many training windows came from copies"
    );

    // Changing the transposition re-runs augment and what follows, never the MIDI stages.
    let again = p
        .pipeline(&["run", "exp.toml", "--set", "more.transpose=[-1, 1]"])
        .ok();
    assert_eq!(again.stages("ran"), ["more", "vocab", "windows"]);
}

#[test]
fn without_augment_the_split_and_the_windows_are_what_they_were() {
    let p = augmented_project("[0, 0]");
    let with = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(
        with.manifest().windows.unwrap().train_windows_from_copies,
        0
    );
    let csv = with.report_file("windows.csv");
    // The same experiment without the stage cuts the same windows.
    let toml = std::fs::read_to_string(p.path("exp.toml")).unwrap();
    let plain = toml
        .replace(
            "[stages.more]\nkind = \"augment\"\ninputs = [\"tokens\"]\ntranspose = [0, 0]\n\n",
            "",
        )
        .replace("inputs = [\"more\"]", "inputs = [\"tokens\"]");
    p.write("plain.toml", plain);
    let without = p.pipeline(&["run", "plain.toml"]).ok();
    assert_eq!(without.report_file("windows.csv"), csv);
    assert_eq!(
        without.stage("windows").output_hash,
        with.stage("windows").output_hash
    );
}

#[test]
fn an_empty_corpus_folder_says_how_to_make_it_when_the_experiment_knows() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("midi")).unwrap();
    p.write("midi/README", "the corpus goes here");
    p.write("exp.toml", PIPELINE_TOML);
    let plain = p.pipeline(&["run", "exp.toml"]);
    let told = p.pipeline(&[
        "run",
        "exp.toml",
        "--set",
        "source.setup=python3 bench/bach_chorales.py midi",
    ]);
    for run in [&plain, &told] {
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(run.stderr.contains("no MIDI files"), "{}", run.stderr);
    }
    assert!(plain.stderr.contains("check `path`"), "{}", plain.stderr);
    assert!(
        told.stderr
            .contains("make them first: `python3 bench/bach_chorales.py midi`"),
        "{}",
        told.stderr
    );
    // The command only tells; it is not part of what the source stage's result depends on.
    p.midi("midi/a.mid", &[melody(0, &[60, 62, 64, 65, 67])]);
    p.pipeline(&["run", "exp.toml"]).ok();
    let again = p
        .pipeline(&["run", "exp.toml", "--set", "source.setup=anything"])
        .ok();
    assert_eq!(again.stages("cached"), ALL_STAGES, "{}", again.stderr);
}

#[test]
fn key_c_moves_each_file_to_c_major_or_a_minor_held_out_files_too() {
    let p = Project::new();
    // G major (tonic held long, F# the leading note) and E minor (D# the leading note, E held long); either one
    // alone could be held out, so both go through the same move.
    let with_lengths = |keys: &[(u8, u32)]| {
        let mut tick = 0;
        let mut events = Vec::new();
        for &(k, len) in keys {
            events.extend(note(tick, 0, k, len));
            tick += len;
        }
        events
    };
    p.midi(
        "midi/g.mid",
        &[with_lengths(&[
            (67, 960),
            (69, 240),
            (71, 240),
            (72, 240),
            (74, 480),
            (66, 240),
            (67, 960),
        ])],
    );
    p.midi(
        "midi/e.mid",
        &[with_lengths(&[
            (64, 960),
            (66, 240),
            (67, 240),
            (71, 480),
            (63, 240),
            (64, 960),
        ])],
    );
    let text = PIPELINE_TOML
        .replace(
            "[stages.vocab]\nkind = \"vocab\"\ninputs = [\"tokens\"]",
            "[stages.keys]\nkind = \"augment\"\ninputs = [\"tokens\"]\ntranspose = [0, 0]\nkey = \"c\"\n\n\
             [stages.vocab]\nkind = \"vocab\"\ninputs = [\"keys\"]",
        )
        .replace("val_fraction = 0.0", "val_fraction = 0.5");
    assert!(text.contains("key = \"c\""));
    p.write("exp.toml", &text);
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    // G major up a fourth to C major: G4 A4 B4 C5 D5 F#4 → C5 D5 E5 F5 G5 B4; E minor up a fourth to A minor:
    // E4 F#4 G4 B4 D#4 → A4 B4 C5 E5 G#4. No note of the files' own keys is left.
    let vocab: Vec<String> = csv_rows(&run.report_file("vocab.csv"))
        .into_iter()
        .skip(1)
        .map(|r| r[1].clone())
        .collect();
    assert_eq!(
        vocab,
        ["A4", "B4", "C5", "D5", "E5", "F5", "G#4", "G5"],
        "{vocab:?}"
    );
    let keys = run.stage("keys");
    let summary = keys.summary();
    assert_eq!(
        (
            &summary["in_major"],
            &summary["in_minor"],
            &summary["key_kept"]
        ),
        (&1.into(), &1.into(), &0.into())
    );
}
