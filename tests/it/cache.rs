//! Re-runs: what is cached, what runs again, and why — through the real binary.

use crate::support::*;

#[test]
fn the_first_run_executes_every_stage_and_the_second_none() {
    let p = midi_project();
    let first = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(first.stages("ran"), ALL_STAGES);
    for s in ALL_STAGES {
        assert_eq!(first.stage(s).reason, "never ran");
    }
    let second = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(second.stages("cached"), ALL_STAGES);
    assert!(second.stages("ran").is_empty());
    assert!(
        second.stderr.contains("nothing to do: all 6 stages cached"),
        "{}",
        second.stderr
    );
    assert_ne!(
        first.report, second.report,
        "every run gets its own report folder"
    );
    for s in ALL_STAGES {
        assert_eq!(first.stage(s).fingerprint, second.stage(s).fingerprint);
    }
}

#[test]
fn set_reruns_exactly_the_dependent_stages_and_says_why() {
    let p = midi_project();
    p.pipeline(&["run", "exp.toml"]).ok();
    let run = p
        .pipeline(&["run", "exp.toml", "--set", "windows.seq_len=3", "-v"])
        .ok();
    assert_eq!(run.stages("ran"), ["windows"]);
    assert_eq!(
        run.stage("windows").reason,
        "parameter `seq_len` changed (4 → 3)"
    );
    assert!(
        run.stderr
            .contains("windows: parameter `seq_len` changed (4 → 3)"),
        "-v explains on stderr: {}",
        run.stderr
    );
    assert!(
        run.report_file("experiment.toml").contains("seq_len = 3"),
        "the report keeps the file as run"
    );

    // Upstream: tokens, vocab and windows see a new input.
    let run = p
        .pipeline(&[
            "run",
            "exp.toml",
            "--set",
            "melody.top=2",
            "--set",
            "windows.seq_len=3",
        ])
        .ok();
    assert_eq!(
        run.stages("ran"),
        ["melody"],
        "a second program with no notes changes nothing downstream"
    );
    assert_eq!(
        run.stage("melody").reason,
        "parameter `top` changed (1 → 2)"
    );
}

#[test]
fn an_upstream_change_reruns_its_dependents_with_the_input_named() {
    let p = midi_project();
    p.midi(
        "midi/c.mid",
        &[[
            vec![Ev::Program {
                tick: 0,
                ch: 1,
                program: 40,
            }],
            melody(1, &[50, 52, 53, 55, 57, 59, 60, 62, 64]),
        ]
        .concat()],
    );
    p.pipeline(&["run", "exp.toml"]).ok();
    let run = p
        .pipeline(&["run", "exp.toml", "--set", "melody.top=2"])
        .ok();
    assert_eq!(run.stages("ran"), ["melody", "tokens", "vocab", "windows"]);
    assert_eq!(run.stage("tokens").reason, "input `melody` changed");
    assert_eq!(run.stage("windows").reason, "input `vocab` changed");
}

#[test]
fn key_order_formatting_and_comments_do_not_change_fingerprints() {
    let p = midi_project();
    let first = p.pipeline(&["run", "exp.toml"]).ok();
    let reordered = r#"
# the same experiment, written differently
[stages.windows]          # last stage first
seed = 42
val_fraction = 0.0
inputs = [ "vocab" ]
seq_len = 4
kind = "window"

[stages.vocab]
inputs = ["tokens"]
kind = "vocab"

[stages.tokens]
kind = 'tokenize'
inputs = ['melody']

[stages.melody]
kind = "extract_instrument"
inputs = ["no_drums"]
# top = 1 is the default

[stages.no_drums]
kind = "drop_drums"
inputs = ["source"]

[stages.source]
path = "midi"
kind = "midi_source"
"#;
    p.write("exp.toml", format!("name = \"test\"\n{reordered}"));
    let second = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(second.stages("cached").len(), 6, "{}", second.stderr);
    for s in ALL_STAGES {
        assert_eq!(
            first.stage(s).fingerprint,
            second.stage(s).fingerprint,
            "{s}"
        );
    }
}

#[test]
fn a_changed_byte_in_a_midi_file_reruns_the_source_and_only_what_it_changes() {
    let p = midi_project();
    p.pipeline(&["run", "exp.toml"]).ok();

    // The key byte of the last note-off: the source and drum removal see it, but the extracted notes (note-ons)
    // are byte-identical, so tokens, vocab and windows stay cached.
    let original = std::fs::read(p.path("midi/b.mid")).unwrap();
    let mut bytes = original.clone();
    let at = bytes
        .iter()
        .rposition(|&b| b == 59)
        .expect("the last note-off's key");
    bytes[at] = 58;
    p.write("midi/b.mid", &bytes);
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(run.stages("ran"), ["source", "no_drums", "melody"]);
    assert_eq!(run.stage("source").reason, "file `midi/b.mid` changed");
    assert_eq!(run.stage("no_drums").reason, "input `source` changed");

    // The key byte of the last note-on: everything downstream sees it.
    let mut bytes = original;
    let at = bytes
        .iter()
        .position(|&b| b == 59)
        .expect("the last note-on's key");
    bytes[at] = 58;
    p.write("midi/b.mid", &bytes);
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(run.stages("ran"), ALL_STAGES);
    assert!(
        run.report_file("vocab.csv").contains("A#3"),
        "the new note is in the vocabulary"
    );

    // A byte that changes only a track name: the source re-reads, its output is identical, the rest stays cached.
    let with_name = |name: &'static str| {
        smf_bytes(&[[
            vec![Ev::Name {
                tick: 0,
                text: name,
            }],
            melody(0, &[60, 62, 64, 65, 67, 69, 71, 72]),
        ]
        .concat()])
    };
    p.write("midi/a.mid", with_name("Piano"));
    p.pipeline(&["run", "exp.toml"]).ok();
    p.write("midi/a.mid", with_name("Pianp"));
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(run.stages("ran"), ["source"]);
    assert_eq!(
        run.stages("cached"),
        ["no_drums", "melody", "tokens", "vocab", "windows"]
    );
}

#[test]
fn added_and_removed_files_are_named() {
    let p = midi_project();
    p.pipeline(&["run", "exp.toml"]).ok();
    std::fs::remove_file(p.path("midi/a.mid")).unwrap();
    p.midi("midi/sub/d.midi", &[melody(0, &[60, 61, 62, 63, 64, 65])]);
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(
        run.stage("source").reason,
        "file `midi/sub/d.midi` added; file `midi/a.mid` removed"
    );
}

#[test]
fn status_tells_what_would_run_without_running_it() {
    let p = midi_project();
    let out = p.pipeline(&["status", "exp.toml"]).ok();
    assert!(
        out.stdout
            .lines()
            .next()
            .unwrap()
            .contains("would run: never ran"),
        "{}",
        out.stdout
    );
    assert!(!p.path("reports").exists(), "status writes no report");
    p.pipeline(&["run", "exp.toml"]).ok();
    let out = p.pipeline(&["status", "exp.toml"]).ok();
    assert_eq!(
        out.stdout.lines().filter(|l| l.ends_with("cached")).count(),
        6,
        "{}",
        out.stdout
    );
    let out = p
        .pipeline(&[
            "status",
            "exp.toml",
            "--set",
            "tokens.kind=\"tokenize\"",
            "--set",
            "windows.seed=1",
        ])
        .ok();
    let line = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_string()
    };
    assert!(line("vocab").ends_with("cached"));
    assert!(
        line("windows").contains("would run: parameter `seed` changed (42 → 1)"),
        "{}",
        out.stdout
    );
}

#[test]
fn force_reruns_a_stage_and_everything_downstream() {
    let p = midi_project();
    p.pipeline(&["run", "exp.toml"]).ok();
    let run = p.pipeline(&["run", "exp.toml", "--force", "tokens"]).ok();
    assert_eq!(run.stages("ran"), ["tokens", "vocab", "windows"]);
    assert_eq!(run.stage("tokens").reason, "forced with `--force`");
    assert_eq!(run.stage("vocab").reason, "input `tokens` was forced");
    let bad = p.pipeline(&["run", "exp.toml", "--force", "tokns"]);
    bad.fails_with(2, "did you mean `tokens`?");
}

#[test]
fn a_damaged_cache_entry_is_recomputed_not_used() {
    let p = midi_project();
    let first = p.pipeline(&["run", "exp.toml"]).ok();
    let key = first
        .stage("vocab")
        .fingerprint
        .expect("a fingerprint")
        .hex();
    let output = p.path(&format!("cache/v1/entries/{}/{key}/output.bin", &key[..2]));
    let mut bytes = std::fs::read(&output).unwrap();
    bytes[5] ^= 1;
    std::fs::write(&output, bytes).unwrap();
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(run.stages("ran"), ["vocab"]);
    assert!(
        run.stderr
            .contains("warning: vocab: the cached result was damaged"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stage("vocab").output_hash,
        first.stage("vocab").output_hash
    );
}

#[test]
fn cache_and_report_directories_can_be_moved() {
    let p = midi_project();
    let run = p
        .pipeline(&[
            "run",
            "exp.toml",
            "--cache-dir",
            "elsewhere/c",
            "--reports-dir",
            "out",
        ])
        .ok();
    assert!(p.path("elsewhere/c/v1/entries").is_dir());
    assert!(run.report.as_ref().unwrap().starts_with(p.path("out/test")));
    let files = [
        "experiment.toml",
        "manifest.json",
        "instruments.csv",
        "vocab.csv",
        "windows.csv",
    ];
    for f in files {
        assert!(run.report.as_ref().unwrap().join(f).is_file(), "{f}");
    }
    let m = run.manifest();
    assert_eq!(
        m.windows.expect("a window summary").train_windows,
        (8 - 4) + (9 - 4),
        "windows never cross files"
    );
    assert!(m.crates.contains_key("midly"), "{:?}", m.crates);
}

#[test]
fn cache_verify_finds_a_flipped_byte_and_du_counts_per_kind() {
    let p = midi_project();
    let first = p.pipeline(&["run", "exp.toml"]).ok();
    let verify = p.pipeline(&["cache", "verify"]).ok();
    assert_eq!(
        verify.stdout.lines().next().unwrap().split(':').nth(1),
        Some(" 6 intact, 0 damaged")
    );
    let du = p.pipeline(&["cache", "du"]).ok();
    let kinds: Vec<(String, String)> = du
        .stdout
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].to_string())
        })
        .collect();
    for kind in [
        "midi_source",
        "drop_drums",
        "extract_instrument",
        "tokenize",
        "vocab",
        "window",
    ] {
        assert!(
            kinds.contains(&(kind.into(), "1".into())),
            "{kind}: {}",
            du.stdout
        );
    }

    let key = first
        .stage("tokens")
        .fingerprint
        .expect("a fingerprint")
        .hex();
    let output = p.path(&format!("cache/v1/entries/{}/{key}/output.bin", &key[..2]));
    let mut bytes = std::fs::read(&output).unwrap();
    bytes[3] ^= 0x10;
    std::fs::write(&output, bytes).unwrap();
    let verify = p.pipeline(&["cache", "verify"]);
    assert_eq!(verify.code, 1, "{}", verify.stdout);
    assert!(
        verify.stdout.contains("5 intact, 1 damaged"),
        "{}",
        verify.stdout
    );
    assert!(
        verify.stdout.contains(&format!("damaged {}: ", &key[..12]))
            && verify
                .stdout
                .contains("output.bin` does not match its recorded hash"),
        "{}",
        verify.stdout
    );
}

#[test]
fn cache_gc_keeps_what_recent_runs_use() {
    let p = midi_project();
    // Two runs that differ in the windows only, then a third like the second.
    p.pipeline(&["run", "exp.toml"]).ok();
    p.pipeline(&["run", "exp.toml", "--set", "windows.seq_len=3"])
        .ok();
    let dry = p
        .pipeline(&["cache", "gc", "--keep", "1", "--grace", "0s", "--dry-run"])
        .ok();
    assert!(
        dry.stdout.starts_with("would remove 1 item(s)")
            && dry.stdout.contains("(window, not in the last 1 run(s)"),
        "{}",
        dry.stdout
    );
    assert!(
        p.pipeline(&["cache", "verify"])
            .ok()
            .stdout
            .contains("7 intact")
    );

    let gc = p
        .pipeline(&["cache", "gc", "--keep", "1", "--grace", "0s"])
        .ok();
    assert!(gc.stdout.starts_with("removed 1 item(s)"), "{}", gc.stdout);
    assert!(
        p.pipeline(&["cache", "verify"])
            .ok()
            .stdout
            .contains("6 intact")
    );
    // The kept run is still fully cached; the removed windows are recomputed when asked for again.
    let again = p
        .pipeline(&["run", "exp.toml", "--set", "windows.seq_len=3"])
        .ok();
    assert!(again.stages("ran").is_empty(), "{:?}", again.stages("ran"));
    let old = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(old.stages("ran"), ["windows"]);

    // Without reports nothing would be kept: refused.
    p.pipeline(&["cache", "gc", "--reports-dir", "nowhere"])
        .fails_with(3, "no reports found under `nowhere`");
}

#[test]
fn cache_gc_keeps_young_entries_and_collects_finished_checkpoints_and_job_folders() {
    let p = midi_project();
    p.pipeline(&["run", "exp.toml"]).ok();
    let second = p
        .pipeline(&["run", "exp.toml", "--set", "windows.seq_len=3"])
        .ok();
    // Within the default grace period of an hour nothing is collected, referenced or not.
    let gc = p.pipeline(&["cache", "gc", "--keep", "1"]).ok();
    assert!(gc.stdout.starts_with("removed 0 item(s)"), "{}", gc.stdout);

    // A checkpoint of a stage whose entry exists (it finished), one that no run refers to, and a job folder of each.
    let finished = second
        .stage("windows")
        .fingerprint
        .expect("a fingerprint")
        .hex();
    let forgotten = blake3::hash(b"a stage nobody runs").to_hex().to_string();
    for key in [&finished, &forgotten] {
        p.write(
            &format!("cache/v1/checkpoints/{key}.bin"),
            b"checkpoint bytes",
        );
        p.write(&format!("cache/v1/jobs/{key}/job.json"), b"{}");
    }
    let run = p
        .pipeline(&["cache", "gc", "--keep", "1", "--grace", "0s"])
        .ok();
    for what in [
        format!("checkpoint {} (its stage finished", &finished[..12]),
        format!(
            "checkpoint {} (no recent run refers to it",
            &forgotten[..12]
        ),
        format!("Slurm job folder {} (its stage finished", &finished[..12]),
        format!(
            "Slurm job folder {} (no recent run refers to it",
            &forgotten[..12]
        ),
    ] {
        assert!(run.stdout.contains(&what), "{what}:\n{}", run.stdout);
    }
    assert_eq!(
        std::fs::read_dir(p.path("cache/v1/checkpoints"))
            .unwrap()
            .count(),
        0
    );
    assert!(!p.path(&format!("cache/v1/jobs/{finished}")).exists());
}

/// `cache gc --keep 0` in a loop beside a sweep: the sweep succeeds, and a re-run right after is cached or
/// recomputes, never fails. gc sees every entry a live run has looked up or stored (its live file) and never
/// unlinks a lock file another process can take.
#[test]
fn cache_gc_in_a_loop_beside_a_running_sweep_never_breaks_it() {
    let p = tiny_project();
    // Long enough trainings (30 epochs) that gc runs several times while they go on, even on a loaded machine.
    let sweep = experiment(TINY, "length = 20\nseed = 3").replace("epochs = 3", "epochs = 30")
        + "\n[sweep]\n\"model.hidden\" = [8, 12, 16]\n\"windows.seq_len\" = [3, 4]\n";
    p.write("exp.toml", &sweep);
    // gc refuses to run without reports: give it an earlier run to keep nothing of.
    p.pipeline(&["run", "exp.toml", "--set", "music.length=5"])
        .ok();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc_loop = {
        let stop = stop.clone();
        let dir = p.dir.path().to_path_buf();
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipeline"))
                    .args(["cache", "gc", "--keep", "0", "--grace", "0s"])
                    .current_dir(&dir)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "gc failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                rounds += 1;
            }
            rounds
        })
    };
    let run = p.pipeline(&["run", "exp.toml", "--jobs", "2"]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let rounds = gc_loop.join().unwrap();
    assert_eq!(run.code, 0, "the sweep failed beside gc:\n{}", run.stderr);
    assert!(rounds >= 2, "gc ran {rounds} time(s) during the sweep");
    // Right after: gc may have removed what the sweep no longer uses, but never anything half.
    let again = p.pipeline(&["run", "exp.toml"]).ok();
    assert!(again.stderr.contains("6 points"), "{}", again.stderr);
    let verify = p.pipeline(&["cache", "verify"]).ok();
    assert!(verify.stdout.contains(" 0 damaged"), "{}", verify.stdout);
}

/// Every path under `dir` (files and folders), sorted.
fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn status_writes_nothing_and_creates_no_cache() {
    let p = midi_project();
    let status = p
        .pipeline(&["status", "exp.toml", "--cache-dir", "fresh"])
        .ok();
    assert!(
        status.stdout.contains("would run: never ran"),
        "{}",
        status.stdout
    );
    assert!(!p.path("fresh").exists(), "status created the cache folder");
    p.pipeline(&["run", "exp.toml"]).ok();
    let before = tree(&p.path("cache"));
    let status = p.pipeline(&["status", "exp.toml"]).ok();
    assert!(status.stdout.contains("cached"), "{}", status.stdout);
    assert_eq!(tree(&p.path("cache")), before);
}

#[test]
fn a_finished_run_leaves_no_live_file_behind() {
    let p = midi_project();
    for _ in 0..2 {
        p.pipeline(&["run", "exp.toml"]).ok();
        let left: Vec<_> = std::fs::read_dir(p.path("cache/v1/live"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

/// `cache gc --reports` removes the report folders of runs before the last N of each experiment — never a running
/// one, never a young one, never those kept — and the kept runs' files (linked from the removed ones) stay whole.
#[test]
fn cache_gc_reports_removes_old_run_folders_and_keeps_the_last_ones_whole() {
    let p = tiny_project();
    let mut reports = Vec::new();
    for _ in 0..4 {
        reports.push(p.pipeline(&["run", "exp.toml"]).ok().report.unwrap());
    }
    let kept_files: Vec<Vec<u8>> = ["generated.mid", "loss.csv"]
        .iter()
        .map(|f| std::fs::read(reports[3].join(f)).unwrap())
        .collect();
    // The oldest run looks as if it still ran: it stays.
    std::fs::write(reports[0].join("progress.json"), "{}").unwrap();

    let young = p
        .pipeline(&["cache", "gc", "--reports", "--keep", "2"])
        .ok();
    assert!(
        young.stdout.starts_with("removed 0 report folder(s)"),
        "younger than the default grace of an hour:\n{}",
        young.stdout
    );
    let dry = p
        .pipeline(&[
            "cache",
            "gc",
            "--reports",
            "--keep",
            "2",
            "--grace",
            "0s",
            "--dry-run",
        ])
        .ok();
    assert!(
        dry.stdout.starts_with("would remove 1 report folder(s)"),
        "{}",
        dry.stdout
    );
    assert!(reports.iter().all(|r| r.is_dir()));

    let gc = p
        .pipeline(&["cache", "gc", "--reports", "--keep", "2", "--grace", "0s"])
        .ok();
    assert!(
        gc.stdout.starts_with("removed 1 report folder(s)"),
        "{}",
        gc.stdout
    );
    assert!(
        gc.stdout
            .contains(reports[1].file_name().unwrap().to_str().unwrap())
    );
    assert!(reports[0].is_dir() && !reports[1].exists());
    assert!(reports[2].is_dir() && reports[3].is_dir());
    for (f, bytes) in ["generated.mid", "loss.csv"].iter().zip(&kept_files) {
        assert_eq!(&std::fs::read(reports[3].join(f)).unwrap(), bytes, "{f}");
    }
    let index = std::fs::read_to_string(p.path("reports/index.html")).unwrap();
    assert!(!index.contains(reports[1].file_name().unwrap().to_str().unwrap()));
    // Nothing outside the reports directory is touched, and the cache still serves the kept runs.
    let again = p.pipeline(&["run", "exp.toml"]).ok();
    assert!(again.stages("ran").is_empty(), "{:?}", again.stages("ran"));
}
