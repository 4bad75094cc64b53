//! Training and sampling through the real binary: tiny models on purpose-made MIDI, so the suite stays fast.

use std::collections::BTreeSet;

use crate::support::*;

/// `generated.mid`, read back with the same code that reads the corpus, gives exactly `generated.csv`.
fn assert_midi_matches_csv(run: &Run) {
    let report = run.report.as_ref().unwrap();
    let bytes = std::fs::read(report.join("generated.mid")).unwrap();
    let song = pipeline::read_song("generated.mid", &bytes).unwrap().song;
    let mut onsets: std::collections::BTreeMap<u64, BTreeSet<u8>> = Default::default();
    for e in &song.events {
        if let pipeline::artifact::Message::NoteOn { key, .. } = e.message {
            onsets.entry(e.tick).or_default().insert(key);
        }
    }
    let from_midi: Vec<String> = onsets.values().map(pipeline::token_for).collect();
    let from_csv: Vec<String> = csv_rows(&run.report_file("generated.csv"))[1..]
        .iter()
        .map(|r| r[1].clone())
        .collect();
    assert_eq!(from_midi, from_csv);
    let programs: Vec<_> = song
        .events
        .iter()
        .filter_map(|e| match e.message {
            pipeline::artifact::Message::ProgramChange { program } => Some(program),
            _ => None,
        })
        .collect();
    assert_eq!(programs, [0], "the extracted instrument's program");
}

#[test]
fn a_full_run_trains_samples_and_caches() {
    let p = tiny_project();
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let loss = csv_rows(&run.report_file("loss.csv"));
    assert_eq!(
        loss[0],
        [
            "epoch",
            "train_loss",
            "val_loss",
            "val_accuracy",
            "seconds",
            "best",
            "val_bits_per_onset",
            "val_bits_per_quarter"
        ]
    );
    assert_eq!(loss.len(), 1 + 3, "one row per epoch");
    assert!(
        loss[1..].iter().all(|r| r[5].is_empty()),
        "no best epoch without validation"
    );
    assert!(
        loss[1..].iter().all(|r| r[2].is_empty() && r[3].is_empty()),
        "no validation split: empty columns"
    );
    assert_eq!(csv_rows(&run.report_file("generated.csv")).len(), 1 + 20);
    assert_midi_matches_csv(&run);
    for f in [
        "model.safetensors",
        "model.json",
        "loss.csv",
        "generated.mid",
        "generated.csv",
    ] {
        assert!(run.report.as_ref().unwrap().join(f).is_file(), "{f}");
    }
    assert_eq!(run.manifest().device, "cpu");

    let again = p.pipeline(&["run", "exp.toml"]).ok();
    assert!(
        again.stages("ran").is_empty(),
        "a second run is fully cached"
    );
    assert_eq!(
        again.report_file("loss.csv"),
        run.report_file("loss.csv"),
        "cached runs still report the loss"
    );

    let hotter = p
        .pipeline(&["run", "exp.toml", "--set", "music.temperature=0.8"])
        .ok();
    assert_eq!(hotter.stages("ran"), ["music"]);
    let wider = p
        .pipeline(&["run", "exp.toml", "--set", "model.hidden=12"])
        .ok();
    assert_eq!(wider.stages("ran"), ["model", "music"]);
    assert_eq!(
        wider.stage("model").reason,
        "parameter `hidden` changed (16 → 12)"
    );
}

#[test]
fn the_same_seed_gives_the_same_weights_and_losses() {
    let p = tiny_project();
    let a = p.pipeline(&["run", "exp.toml"]).ok();
    let b = p.pipeline(&["run", "exp.toml", "--force", "model"]).ok();
    assert_eq!(
        b.stages("ran"),
        ["model", "music"],
        "--force re-runs its dependents too"
    );
    assert_eq!(
        a.stage("model").output_hash,
        b.stage("model").output_hash,
        "byte-identical output"
    );
    assert_eq!(a.weights(), b.weights());
    assert_eq!(a.losses(), b.losses());
    assert_eq!(
        a.report_file("generated.csv"),
        b.report_file("generated.csv")
    );
}

#[test]
fn raising_epochs_resumes_and_equals_one_longer_run() {
    let p = tiny_project();
    p.pipeline(&["run", "exp.toml"]).ok();
    let resumed = p
        .pipeline(&["run", "exp.toml", "--set", "model.epochs=5"])
        .ok();
    assert!(
        resumed
            .stderr
            .contains("resuming from the 3 epochs already trained"),
        "{}",
        resumed.stderr
    );
    assert_eq!(resumed.stage("model").summary()["resumed_from_epoch"], 3);

    let fresh = p
        .pipeline(&[
            "run",
            "exp.toml",
            "--set",
            "model.epochs=5",
            "--cache-dir",
            "fresh",
        ])
        .ok();
    assert!(fresh.stage("model").summary()["resumed_from_epoch"].is_null());
    assert_eq!(
        resumed.weights(),
        fresh.weights(),
        "resuming gives the weights of one uninterrupted run"
    );
    assert_eq!(resumed.losses(), fresh.losses());
    assert_eq!(resumed.losses().len(), 1 + 5);
    let seconds: Vec<f64> = csv_rows(&resumed.report_file("loss.csv"))[1..]
        .iter()
        .map(|r| r[4].parse().unwrap())
        .collect();
    assert!(
        seconds.iter().all(|&s| s > 0.0),
        "earlier epochs keep their timings: {seconds:?}"
    );
    assert_eq!(
        resumed.stage("model").output_hash,
        fresh.stage("model").output_hash
    );
}

/// One file of a 6-note period repeated 30 times, a small model trained on it with `extra` training parameters, and
/// greedy sampling: the project and the run, after checking that the generated tokens follow the period.
fn periodic_run(extra: &str) -> (Project, Run) {
    let p = Project::new();
    let period = [60u8, 64, 67, 72, 67, 64];
    let keys: Vec<u8> = period
        .iter()
        .copied()
        .cycle()
        .take(period.len() * 30)
        .collect();
    p.midi("midi/a.mid", &[melody(0, &keys)]);
    let train = format!(
        "layers = 1\nhidden = 32\ndense = 0\ndropout = 0.0\ninput = \"embedding\"\nembed_dim = 8\n\
         epochs = 25\nbatch_size = 16\noptimizer = \"adam\"\nlearning_rate = 0.01\nseed = 5\n{extra}"
    );
    p.write(
        "exp.toml",
        experiment(&train, "length = 24\nseed = 1").replace("seq_len = 4", "seq_len = 8"),
    );
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let tokens: Vec<String> = csv_rows(&run.report_file("generated.csv"))[1..]
        .iter()
        .map(|r| r[1].clone())
        .collect();
    let names = ["C4", "E4", "G4", "C5", "G4", "E4"];
    let start = (0..6)
        .find(|&s| (0..6).all(|i| tokens[i] == names[(s + i) % 6]))
        .unwrap_or_else(|| panic!("generated tokens do not follow the period: {tokens:?}"));
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(t, names[(start + i) % 6], "token {i} of {tokens:?}");
    }
    (p, run)
}

#[test]
fn the_model_learns_a_periodic_sequence_and_greedy_sampling_continues_it() {
    let (_project, run) = periodic_run("");
    let loss = csv_rows(&run.report_file("loss.csv"));
    let first: f64 = loss[1][1].parse().unwrap();
    let last: f64 = loss.last().unwrap()[1].parse().unwrap();
    // The sequence is fully determined by the last two tokens, so a perfect model's loss is 0; 0.05 means the
    // model gives the right next token about 95% probability on average (it starts near ln 4 ≈ 1.39).
    assert!(
        last < 0.05,
        "final training loss {last} (first epoch {first})"
    );
}

#[test]
fn asking_for_cuda_without_the_feature_fails_before_anything_runs() {
    let p = tiny_project();
    let run = p.pipeline(&["run", "exp.toml", "--set", "model.device=\"cuda\""]);
    if cfg!(feature = "cuda") {
        return; // a CUDA build accepts it
    }
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("needs CUDA, but this build has no CUDA support"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("cargo build --release --features cuda"),
        "{}",
        run.stderr
    );
    assert!(!p.path("cache").exists(), "nothing ran");
    let bad = p.pipeline(&["run", "exp.toml", "--set", "model.device=\"tpu\""]);
    bad.fails_with(2, "unknown device `tpu`");
}

#[test]
fn a_validation_split_fills_the_validation_columns() {
    let p = tiny_project();
    p.midi(
        "midi/c.mid",
        &[melody(0, &[60, 62, 64, 65, 67, 65, 64, 62, 60])],
    );
    p.write(
        "exp.toml",
        experiment(TINY, "length = 5").replace("val_fraction = 0.0", "val_fraction = 0.34"),
    );
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let loss = csv_rows(&run.report_file("loss.csv"));
    for row in &loss[1..] {
        let val: f64 = row[2].parse().unwrap();
        let acc: f64 = row[3].parse().unwrap();
        assert!(val.is_finite() && (0.0..=1.0).contains(&acc), "{row:?}");
    }
}

#[test]
fn a_diverging_loss_stops_naming_the_epoch_and_keeps_the_last_good_weights() {
    let p = tiny_project();
    let diverging = TINY.replace(
        "epochs = 3",
        "epochs = 3\noptimizer = \"sgd\"\nlearning_rate = 1e30",
    );
    p.write("exp.toml", experiment(&diverging, "length = 5"));
    let run = p.pipeline(&["run", "exp.toml"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("stage `model` failed: the training loss became"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("in epoch 1 (batch"), "{}", run.stderr);
    assert!(
        run.stderr.contains("try a lower `learning_rate`"),
        "{}",
        run.stderr
    );
    let kept = run
        .report
        .as_ref()
        .unwrap()
        .join("model.last-good.safetensors");
    assert!(kept.is_file(), "the last good weights are kept");
    assert_eq!(run.stages("not_run"), ["music"]);
    assert!(
        p.pipeline(&["status", "exp.toml"])
            .ok()
            .stdout
            .contains("model     would run"),
        "no entry was stored"
    );
}

#[test]
fn window_sampling_is_the_papers_and_stateful_the_default() {
    let p = tiny_project();
    let stateful = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(stateful.stage("music").params["mode"], "stateful");
    let window = p
        .pipeline(&["run", "exp.toml", "--set", "music.mode=\"window\""])
        .ok();
    assert_eq!(window.stages("ran"), ["music"]);
    assert_midi_matches_csv(&window);
    let bad = p.pipeline(&["run", "exp.toml", "--set", "music.mode=\"beam\""]);
    bad.fails_with(2, "unknown variant `beam`");
}

#[test]
fn the_benchmarks_run_and_report_their_figures() {
    let p = Project::new();
    for f in 0..2u32 {
        let keys: Vec<u8> = (0..150u32).map(|i| 48 + ((i * 3 + f) % 24) as u8).collect();
        p.midi(&format!("corpus/{f}.mid"), &[melody(0, &keys)]);
    }
    let prep = p
        .pipeline(&["bench", "prep", "--corpus", "corpus", "--runs", "2"])
        .ok();
    assert!(
        prep.stdout.contains("all MIDI stages, no cache: median"),
        "{}",
        prep.stdout
    );
    assert!(prep.stdout.contains("(300 tokens)"), "{}", prep.stdout);
    let train = p
        .pipeline(&[
            "bench",
            "train",
            "--layers",
            "1",
            "--hidden",
            "8",
            "--seq-len",
            "4",
            "--batch",
            "4",
            "--steps",
            "2",
        ])
        .ok();
    for piece in [
        "ms/step over 2 steps",
        "windows/s",
        "GFLOP/s of matrix products",
        "of this machine's sgemm",
    ] {
        assert!(train.stdout.contains(piece), "{piece}: {}", train.stdout);
    }
    let plain = p
        .pipeline(&[
            "bench",
            "train",
            "--hidden",
            "8",
            "--seq-len",
            "4",
            "--steps",
            "1",
            "--plain",
        ])
        .ok();
    assert!(plain.stdout.contains("plain LSTM"), "{}", plain.stdout);
    if !cfg!(feature = "cuda") {
        let cuda = p.pipeline(&["bench", "train", "--device", "cuda"]);
        assert_eq!(cuda.code, 2);
        assert!(cuda.stderr.contains("--features cuda"), "{}", cuda.stderr);
    }
}

/// The largest shape the parameter checks allow (16 layers of 8192 units) needs far more memory than this machine
/// has: the stage says how much, before allocating, instead of being killed.
#[test]
fn a_model_too_large_for_this_machine_fails_clearly_before_allocating() {
    let p = tiny_project();
    let run = p.pipeline(&[
        "run",
        "exp.toml",
        "--set",
        "model.hidden=8192",
        "--set",
        "model.layers=16",
    ]);
    run.fails_with(1, "training this model needs at least")
        .fails_with(
            1,
            "GiB of memory is free on cpu; lower `hidden`, `layers` or `batch_size`",
        );
}

/// A project with a held-out file unlike the training ones, so a model that fits the training files soon gets worse
/// on it; `train` is the tiny model with the given extra settings.
fn overfitting_project(train: &str) -> Project {
    let p = tiny_project();
    p.midi(
        "midi/c.mid",
        &[melody(0, &[60, 62, 64, 65, 67, 65, 64, 62, 60, 62, 64, 65])],
    );
    p.midi(
        "midi/d.mid",
        &[melody(0, &[61, 70, 63, 58, 66, 73, 59, 68, 61, 70, 63, 58])],
    );
    let settings = format!("{TINY}\nlearning_rate = 0.03\n{train}").replace("epochs = 3\n", "");
    p.write(
        "exp.toml",
        experiment(&settings, "length = 5").replace("val_fraction = 0.0", "val_fraction = 0.25"),
    );
    p
}

/// The `best` column of `loss.csv`: the epochs it marks.
fn marked_best(run: &Run) -> Vec<usize> {
    let rows = csv_rows(&run.report_file("loss.csv"));
    assert_eq!(rows[0][5], "best", "{rows:?}");
    rows[1..]
        .iter()
        .filter(|r| r[5] == "1")
        .map(|r| r[0].parse().unwrap())
        .collect()
}

#[test]
fn patience_stops_on_the_validation_loss_and_restore_best_stores_the_best_epoch() {
    let p = overfitting_project("epochs = 60\npatience = 3\nrestore_best = true");
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let summary = run.stage("model").summary().clone();
    let best = summary["best_epoch"].as_u64().expect("a best epoch") as usize;
    let epochs = summary["epochs"].as_u64().unwrap() as usize;
    assert_eq!(summary["stopped_early"], true, "{summary}");
    assert_eq!(epochs, best + 3, "stops `patience` epochs after the best");
    assert_eq!(run.losses().len(), 1 + epochs);
    assert_eq!(marked_best(&run), [best]);

    // The stored weights are the best epoch's: those of a training that ends there.
    let settings = format!("epochs = {best}");
    let q = overfitting_project(&settings);
    let short = q.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(short.stage("model").summary()["stopped_early"], false);
    assert_eq!(
        run.weights(),
        short.weights(),
        "restore_best keeps epoch {best}"
    );

    // Without restore_best, the last epoch's.
    let last = overfitting_project("epochs = 60\npatience = 3");
    let plain = last.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(plain.stage("model").summary()["epochs"], epochs as u64);
    assert_ne!(plain.weights(), run.weights());
    assert_eq!(plain.losses(), run.losses(), "the same epochs ran");
}

#[test]
fn raising_epochs_after_an_early_stop_gives_the_result_of_one_longer_run() {
    let p = overfitting_project("epochs = 60\npatience = 3\nrestore_best = true");
    let first = p.pipeline(&["run", "exp.toml"]).ok();
    let best = first.stage("model").summary()["best_epoch"]
        .as_u64()
        .unwrap();
    // Resumed from the stored (best) epoch; the epochs after it run again and stop at the same place.
    let resumed = p
        .pipeline(&["run", "exp.toml", "--set", "model.epochs=80"])
        .ok();
    assert!(
        resumed
            .stderr
            .contains(&format!("resuming from the {best} epochs already trained")),
        "{}",
        resumed.stderr
    );
    let fresh = p
        .pipeline(&[
            "run",
            "exp.toml",
            "--set",
            "model.epochs=80",
            "--cache-dir",
            "fresh",
        ])
        .ok();
    assert_eq!(resumed.weights(), fresh.weights());
    assert_eq!(resumed.losses(), fresh.losses());
    assert_eq!(resumed.losses(), first.losses());
    assert_eq!(
        resumed.stage("model").output_hash,
        fresh.stage("model").output_hash
    );
}

#[test]
fn patience_without_validation_windows_fails_and_says_what_to_set() {
    let p = tiny_project();
    p.write(
        "exp.toml",
        experiment(&format!("{TINY}\npatience = 2"), "length = 5"),
    );
    p.pipeline(&["run", "exp.toml"]).fails_with(
        1,
        "there are no validation windows; set `val_fraction` above 0",
    );
}

#[test]
fn changing_top_p_reruns_only_sampling_and_leaves_old_fingerprints_alone() {
    let p = tiny_project();
    let first = p.pipeline(&["run", "exp.toml"]).ok();
    // At its default of 1 the parameter is not in the fingerprint, so results from before it existed match.
    assert!(!first.stage("music").params.contains_key("top_p"));
    let again = p
        .pipeline(&[
            "run",
            "exp.toml",
            "--set",
            "music.top_p=0.5",
            "--set",
            "music.temperature=1.0",
        ])
        .ok();
    assert_eq!(again.stages("ran"), ["music"]);
    assert_eq!(again.stage("music").params["top_p"], 0.5);
}

/// Beats from a time token's text (`+3/4` → 0.75).
fn beats(text: &str) -> f64 {
    match text.split_once('/') {
        Some((n, d)) => n.parse::<f64>().unwrap() / d.parse::<f64>().unwrap(),
        None => text.parse().unwrap(),
    }
}

/// The keys a MIDI file of `run`'s report strikes, by tick.
fn struck(run: &Run, name: &str) -> std::collections::BTreeMap<u64, BTreeSet<u8>> {
    let bytes = std::fs::read(run.report.as_ref().unwrap().join(name)).unwrap();
    let song = pipeline::read_song(name, &bytes).unwrap().song;
    let mut onsets: std::collections::BTreeMap<u64, BTreeSet<u8>> = Default::default();
    for e in &song.events {
        if let pipeline::artifact::Message::NoteOn { key, .. } = e.message {
            onsets.entry(e.tick).or_default().insert(key);
        }
    }
    onsets
}

#[test]
fn timed_tokens_keep_rhythm_from_the_files_to_the_generated_midi() {
    let p = Project::new();
    // Quarter, eighth, eighth, dotted half, then a rest of one beat: a rhythm the paper's tokens cannot say.
    let rhythm: [(u32, u32); 4] = [(0, 480), (480, 240), (720, 240), (960, 1440)];
    let mut events = Vec::new();
    for bar in 0..6u32 {
        for (i, (at, len)) in rhythm.iter().enumerate() {
            events.extend(note(
                bar * 2880 + at,
                0,
                60 + 2 * i as u8 + bar as u8 % 3,
                *len,
            ));
        }
    }
    p.midi("midi/a.mid", &[events.clone()]);
    p.midi("midi/b.mid", &[events]);
    let toml = experiment(TINY, "length = 60\ntemperature = 1.0\nseed = 2")
        .replace(
            "[stages.tokens]\nkind = \"tokenize\"\ninputs = [\"melody\"]",
            "[stages.tokens]\nkind = \"tokenize\"\ninputs = [\"melody\"]\nscheme = \"timed\"",
        )
        .replace("epochs = 3", "epochs = 30");
    p.write("exp.toml", toml);
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let vocab = run.report_file("vocab.csv");
    for token in ["+1/2", "~1/2", "~3", "+4"] {
        assert!(vocab.contains(&format!(",{token},")), "{token} in\n{vocab}");
    }
    let tokens: Vec<String> = csv_rows(&run.report_file("generated.csv"))[1..]
        .iter()
        .map(|r| r[1].clone())
        .collect();
    // The sampler keeps the scheme's order: sound, duration, shift, sound, …
    let class = |t: &str| match t.chars().next() {
        Some('+') => 2,
        Some('~') => 1,
        _ => 0,
    };
    for pair in tokens.windows(2) {
        assert_eq!((class(&pair[0]) + 1) % 3, class(&pair[1]), "{tokens:?}");
    }
    // The MIDI file plays the onsets the tokens say, on the beat they say.
    let mut expected = Vec::new();
    let mut now = 0.0;
    for t in &tokens {
        if let Some(b) = t.strip_prefix('+') {
            now += beats(b);
        } else if !t.starts_with('~') {
            expected.push(((now * 480.0_f64).round() as u64, t.clone()));
        }
    }
    let played: Vec<(u64, String)> = struck(&run, "generated.mid")
        .iter()
        .map(|(tick, keys)| (*tick, pipeline::token_for(keys)))
        .collect();
    assert_eq!(played, expected);
    let metrics: serde_json::Value =
        serde_json::from_str(&run.report_file("metrics.json")).unwrap();
    assert!(
        metrics["corpus"]["distinct_iois"].as_u64().unwrap() >= 3,
        "{}",
        metrics["corpus"]
    );
}

#[test]
fn validation_loss_per_onset_compares_timed_with_chord_tokens() {
    let p = tiny_project();
    p.midi(
        "midi/c.mid",
        &[melody(0, &[60, 62, 64, 65, 67, 65, 64, 62, 60, 62, 64, 65])],
    );
    let chord = experiment(TINY, "length = 5").replace("val_fraction = 0.0", "val_fraction = 0.34");
    p.write("chord.toml", &chord);
    let timed = chord.replace(
        "[stages.tokens]\nkind = \"tokenize\"\ninputs = [\"melody\"]",
        "[stages.tokens]\nkind = \"tokenize\"\ninputs = [\"melody\"]\nscheme = \"timed\"",
    );
    p.write("timed.toml", &timed);
    let summary = |file: &str| {
        p.pipeline(&["run", file])
            .ok()
            .stage("model")
            .summary()
            .clone()
    };
    let chord = summary("chord.toml");
    // One token per onset: the two losses are one.
    assert_eq!(chord["final_val_loss_per_onset"], chord["final_val_loss"]);
    let best = chord["best_epoch"].as_u64().unwrap() as usize;
    let losses = csv_rows(
        &p.pipeline(&["run", "chord.toml"])
            .ok()
            .report_file("loss.csv"),
    );
    let best_loss: f64 = losses[best][2].parse().unwrap();
    assert!((chord["best_val_loss_per_onset"].as_f64().unwrap() - best_loss).abs() < 1e-5);
    // Three tokens per onset (after the first): about three times the per-token loss.
    let timed = summary("timed.toml");
    let ratio = timed["final_val_loss_per_onset"].as_f64().unwrap()
        / timed["final_val_loss"].as_f64().unwrap();
    assert!((2.5..=3.5).contains(&ratio), "{ratio}: {timed}");
    let best_ratio = timed["best_val_loss_per_onset"].as_f64().unwrap()
        / timed["final_val_loss_per_onset"].as_f64().unwrap();
    assert!(best_ratio <= 1.0 + 1e-9, "the best is no worse: {timed}");
    let table = p.pipeline(&["compare", "--format", "csv"]).ok().stdout;
    assert!(
        table.lines().next().unwrap().contains("val_loss_per_onset"),
        "{table}"
    );
}

#[test]
fn count_makes_several_pieces_and_the_first_is_the_single_piece() {
    let p = tiny_project();
    let one = p
        .pipeline(&["run", "exp.toml", "--set", "music.temperature=1.0"])
        .ok();
    let three = p
        .pipeline(&[
            "run",
            "exp.toml",
            "--set",
            "music.temperature=1.0",
            "--set",
            "music.count=3",
        ])
        .ok();
    assert_eq!(three.stages("ran"), ["music"]);
    assert_eq!(
        three.report_file("generated.csv"),
        one.report_file("generated.csv"),
        "piece 1 is what count = 1 makes"
    );
    for n in 2..=3 {
        for file in [
            format!("generated-{n}.mid"),
            format!("generated-{n}.csv"),
            format!("metrics-{n}.json"),
            format!("generated-{n}.svg"),
        ] {
            assert!(
                three.report.as_ref().unwrap().join(&file).is_file(),
                "{file}"
            );
        }
    }
    assert_ne!(
        three.report_file("generated-2.csv"),
        three.report_file("generated-3.csv")
    );
    assert!(
        !three
            .report
            .as_ref()
            .unwrap()
            .join("generated-4.mid")
            .exists()
    );
    // Its entry is trusted when read back: the same command is cached.
    let again = p
        .pipeline(&[
            "run",
            "exp.toml",
            "--set",
            "music.temperature=1.0",
            "--set",
            "music.count=3",
        ])
        .ok();
    assert!(again.stages("ran").is_empty(), "{}", again.stderr);
    assert_eq!(
        again.report_file("generated-3.csv"),
        three.report_file("generated-3.csv")
    );
}

/// The tempo `generated.mid` (or another report file) plays at, in µs per beat.
fn tempo_of(run: &Run, file: &str) -> u32 {
    let bytes = std::fs::read(run.report.as_ref().unwrap().join(file)).unwrap();
    pipeline::read_song(file, &bytes).unwrap().song.tempo
}

#[test]
fn pieces_play_at_the_first_tempo_of_the_file_they_start_from() {
    let p = Project::new();
    let mut a = melody(0, &[60, 62, 64, 65, 67, 65, 64, 62, 60, 62, 64, 65]);
    a.push(Ev::Tempo {
        tick: 0,
        micros: 666_667,
    });
    p.midi("midi/a.mid", &[a]);
    // A tempo track, as format 1 files have: its first tempo counts, not the later change.
    p.midi(
        "midi/b.mid",
        &[
            vec![
                Ev::Tempo {
                    tick: 0,
                    micros: 400_000,
                },
                Ev::Tempo {
                    tick: 960,
                    micros: 1_000_000,
                },
            ],
            melody(0, &[72, 71, 69, 67, 65, 64, 62, 60, 62, 64, 65, 67]),
        ],
    );
    p.write("exp.toml", experiment(TINY, "length = 20"));
    let mut seen = BTreeSet::new();
    for seed in 1..=12 {
        let run = p
            .pipeline(&["run", "exp.toml", "--set", &format!("music.seed={seed}")])
            .ok();
        let music = run.stage("music");
        let file = music.summary()["start_file"].as_str().unwrap().to_string();
        let expected = match file.as_str() {
            "a.mid" => 666_667,
            "b.mid" => 400_000,
            other => panic!("started from {other}"),
        };
        assert_eq!(tempo_of(&run, "generated.mid"), expected, "from {file}");
        let bpm = music.summary()["tempo_bpm"].as_f64().unwrap();
        assert!((bpm - 60e6 / f64::from(expected)).abs() < 1e-6, "{bpm}");
        seen.insert(file);
        if seen.len() == 2 {
            return;
        }
    }
    panic!("twelve seeds all started from {seen:?}");
}

#[test]
fn a_file_without_a_tempo_plays_at_120_bpm() {
    let p = tiny_project();
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(tempo_of(&run, "generated.mid"), 500_000);
}

#[test]
fn a_primer_starts_every_piece_and_its_unseen_tokens_are_named_and_skipped() {
    let p = tiny_project();
    // F#6 (90) is in no training file; the primer plays at 75 bpm.
    let mut primer = melody(0, &[64, 65, 90, 67, 65, 64, 62]);
    primer.push(Ev::Tempo {
        tick: 0,
        micros: 800_000,
    });
    p.midi("primer.mid", &[primer]);
    p.write(
        "exp.toml",
        experiment(
            TINY,
            "length = 20\ntemperature = 1.0\ncount = 2\nprimer = \"primer.mid\"",
        ),
    );
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert!(
        run.stderr.contains(
            "the primer `primer.mid`: 1 of its 7 onsets use 1 token(s) the model never saw (`F#6`) and were skipped"
        ),
        "{}",
        run.stderr
    );
    let music = run.stage("music");
    let summary = music.summary();
    assert_eq!(summary["start_file"], "primer.mid");
    assert_eq!(summary["primer"], true);
    // The first `seq_len = 4` known tokens.
    assert_eq!(summary["seed"], "E4 F4 G4 F4");
    assert!(music.warnings.iter().any(|w| w.contains("F#6")));
    for file in ["generated.mid", "generated-2.mid"] {
        assert_eq!(tempo_of(&run, file), 800_000, "{file}");
    }
    assert!(run.report_file("generated.svg").contains("primer"));
    assert_ne!(
        run.report_file("generated.csv"),
        run.report_file("generated-2.csv")
    );

    // The primer is an input: the same file is cached, an edited one re-runs sampling only and says why.
    let again = p.pipeline(&["run", "exp.toml"]).ok();
    assert!(again.stages("ran").is_empty(), "{}", again.stderr);
    p.midi("primer.mid", &[melody(0, &[60, 62, 64, 65, 67])]);
    let status = p.pipeline(&["status", "exp.toml"]).ok();
    assert!(status.stdout.contains("primer.mid"), "{}", status.stdout);
    let edited = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(edited.stages("ran"), ["music"]);
    assert_eq!(edited.stage("music").summary()["seed"], "C4 D4 E4 F4");
    assert_eq!(tempo_of(&edited, "generated.mid"), 500_000);
}

#[test]
fn a_primer_with_nothing_to_start_from_fails_and_says_why() {
    let p = tiny_project();
    p.write("not-midi.mid", "this is not a MIDI file");
    p.midi("drums.mid", &[melody(9, &[36, 38, 36, 38])]);
    // Every note is one the model never saw.
    p.midi("alien.mid", &[melody(0, &[100, 101, 102])]);
    for (file, needle) in [
        ("not-midi.mid", "cannot read the primer `not-midi.mid`"),
        (
            "drums.mid",
            "the primer `drums.mid` has no notes off the drum channel",
        ),
        (
            "alien.mid",
            "none of the primer `alien.mid`'s tokens is in the model's vocabulary",
        ),
    ] {
        p.write(
            "exp.toml",
            experiment(TINY, &format!("length = 5\nprimer = \"{file}\"")),
        );
        p.pipeline(&["run", "exp.toml"]).fails_with(1, needle);
    }
}

#[test]
fn bench_music_sums_up_the_pieces_and_judges_each_target() {
    let p = tiny_project();
    let run = p
        .pipeline(&[
            "run",
            "exp.toml",
            "--set",
            "music.count=3",
            "--set",
            "music.temperature=1.0",
        ])
        .ok();
    let dir = run.report.clone().unwrap();
    let bench = p.pipeline(&["bench", "music", dir.to_str().unwrap()]).ok();
    // The same table for the experiment's newest run, by name.
    let by_name = p.pipeline(&["bench", "music", "test"]).ok();
    let body = |text: &str| text.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&bench.stdout), body(&by_name.stdout));
    assert!(bench.stdout.contains("3 piece(s)"), "{}", bench.stdout);
    let metrics: Vec<serde_json::Value> = ["metrics.json", "metrics-2.json", "metrics-3.json"]
        .iter()
        .map(|f| serde_json::from_str(&run.report_file(f)).unwrap())
        .collect();
    let row = |name: &str| {
        bench
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} row in\n{}", bench.stdout))
            .to_string()
    };
    // Each metric's median, low and high over the three files, as the second column prints them.
    let summed_up = |name: &str| {
        let mut values: Vec<f64> = metrics
            .iter()
            .map(|m| m["generated"][name].as_f64().unwrap())
            .collect();
        values.sort_by(f64::total_cmp);
        let line = row(name);
        let printed: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .take(2)
            .flat_map(|c| c.trim_matches(['(', ')']).split('–'))
            .map(|x| x.parse().unwrap())
            .collect();
        let expected = [values[1], values[0], values[2]];
        assert!(
            printed
                .iter()
                .zip(expected)
                .all(|(a, b)| (a - b).abs() < 1e-3),
            "{line} vs {values:?}"
        );
        (values[1], line)
    };
    summed_up("mean_interval");
    // Copying (by runs of onsets, whatever the scheme) is judged against the held-out files' own copy rate: with
    // none held out, not judged.
    let (copies, line) = summed_up("copy_rate_8_onsets");
    let verdict = match metrics[0]["held_out"]["copy_rate_8_onsets"].as_f64() {
        Some(held_out) if copies <= held_out => "met",
        Some(_) => "missed",
        None => "at most held-out",
    };
    assert!(line.trim_end().ends_with(verdict), "{line}");
    // The interval histogram's distance from the held-out files' is judged against the shuffled reference's.
    let (distance, line) = summed_up("interval_distance");
    let shuffled = metrics[0]["shuffled"]["interval_distance"]
        .as_f64()
        .unwrap();
    let verdict = if distance < shuffled { "met" } else { "missed" };
    assert!(line.trim_end().ends_with(verdict), "{line}");
    // Interval steps are judged against the held-out and shuffled references of the first file.
    let line = row("mean_interval");
    assert!(line.contains("nearer held-out than shuffled is"), "{line}");
    assert!(
        line.trim_end().ends_with("met") || line.trim_end().ends_with("missed"),
        "{line}"
    );
    assert!(bench.stdout.contains("targets met: "), "{}", bench.stdout);
    p.pipeline(&["bench", "music", "no-such-experiment"])
        .fails_with(
            2,
            "`no-such-experiment` is neither a report folder nor an experiment",
        );
}

#[test]
fn a_loss_at_every_step_learns_the_periodic_sequence_too() {
    let (_project, run) = periodic_run("targets = \"all\"");
    assert_eq!(run.stage("model").params["targets"], "all");
    let loss = csv_rows(&run.report_file("loss.csv"));
    let last: f64 = loss.last().unwrap()[1].parse().unwrap();
    // A window's first step sees one token, which does not tell 67 after 64 from 60 after 64: half a bit of loss
    // there, none elsewhere, so the mean over the 8 steps ends near ln 2 / 2 / 8 ≈ 0.04 — far below the ln 4 ≈ 1.39
    // it starts near.
    assert!(last < 0.1, "final training loss {last}");
}

#[test]
fn epoch_windows_draws_that_many_each_epoch_and_resumes_as_one_longer_run() {
    let p = tiny_project();
    let plain = p.pipeline(&["run", "exp.toml"]).ok();
    let params = &plain.stage("model").params;
    assert!(
        params.get("targets").is_none() && params.get("epoch_windows").is_none(),
        "the defaults stay out of the fingerprint: {params:?}"
    );
    let all = plain.stage("model").summary()["train_windows"]
        .as_u64()
        .unwrap();
    assert_eq!(plain.stage("model").summary()["windows_per_epoch"], all);
    let set = [
        "--set",
        "model.epoch_windows=5",
        "--set",
        "model.targets=\"all\"",
    ];
    let args = |extra: &[&'static str]| {
        let mut a = vec!["run", "exp.toml"];
        a.extend(set);
        a.extend(extra);
        a
    };
    let short = p.pipeline(&args(&[])).ok();
    assert_eq!(short.stage("model").summary()["windows_per_epoch"], 5);
    assert_eq!(short.stage("model").summary()["train_windows"], all);
    let resumed = p.pipeline(&args(&["--set", "model.epochs=5"])).ok();
    assert_eq!(resumed.stage("model").summary()["resumed_from_epoch"], 3);
    let fresh = p
        .pipeline(&args(&["--set", "model.epochs=5", "--cache-dir", "fresh"]))
        .ok();
    assert_eq!(resumed.weights(), fresh.weights());
    assert_eq!(resumed.losses(), fresh.losses());
    assert_ne!(resumed.weights(), plain.weights());
}

#[test]
fn a_validation_loss_that_is_not_a_number_is_divergence_too() {
    // One batch an epoch: its loss is computed before the update that breaks the weights, so only validation sees it.
    let p = crate::ngram::floor_project();
    let text = crate::ngram::floor_toml()
        .replace("batch_size = 16", "batch_size = 100000")
        .replace(
            "optimizer = \"adam\"\nlearning_rate = 0.01",
            "optimizer = \"sgd\"\nlearning_rate = 1e30",
        );
    p.write("exp.toml", text);
    let run = p.pipeline(&["run", "exp.toml"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("stage `model` failed: the validation loss became NaN after epoch "),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(" are in `") && run.stderr.contains("model.last-good.safetensors"),
        "{}",
        run.stderr
    );
    assert!(
        run.report
            .as_ref()
            .unwrap()
            .join("model.last-good.safetensors")
            .is_file()
    );
    assert!(
        p.pipeline(&["status", "exp.toml"])
            .ok()
            .stdout
            .contains("model        would run"),
        "no entry was stored"
    );
}

/// The `notes` scheme end to end: two voices (a held bass under a moving melody) keep their octaves through
/// tokens, transposed copies, training and sampling; the sampler keeps the scheme's grammar, and the MIDI file plays
/// at each onset exactly the pitches the tokens say.
#[test]
fn notes_tokens_keep_the_voicing_from_the_files_to_the_generated_midi() {
    let p = Project::new();
    for (f, root) in [(0u8, 48u8), (1, 50)] {
        let mut bass = Vec::new();
        let mut tune = Vec::new();
        for bar in 0..8u32 {
            bass.extend(note(bar * 1920, 0, root + (bar % 2) as u8 * 5, 1920));
            for (i, step) in [0u8, 4, 7, 12].iter().enumerate() {
                tune.extend(note(bar * 1920 + i as u32 * 480, 1, root + 24 + step, 480));
            }
        }
        p.midi(&format!("midi/{f}.mid"), &[bass, tune]);
    }
    let toml = experiment(TINY, "length = 80\ntemperature = 1.0\nseed = 2")
        .replace(
            "[stages.tokens]\nkind = \"tokenize\"\ninputs = [\"melody\"]",
            "[stages.tokens]\nkind = \"tokenize\"\ninputs = [\"melody\"]\nscheme = \"notes\"\n\n\
             [stages.keys]\nkind = \"augment\"\ninputs = [\"tokens\"]\ntranspose = [-2, 2]",
        )
        .replace(
            "inputs = [\"tokens\"]\n\n[stages.windows]",
            "inputs = [\"keys\"]\n\n[stages.windows]",
        )
        .replace("epochs = 3", "epochs = 20");
    assert!(toml.contains("inputs = [\"keys\"]"), "{toml}");
    p.write("exp.toml", toml);
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let vocab = run.report_file("vocab.csv");
    for token in ["C3", "C5", "D3", "A#2", "~4", "~1", "+1"] {
        assert!(vocab.contains(&format!(",{token},")), "{token} in\n{vocab}");
    }
    // No chord tokens: every pitch keeps its octave.
    assert!(
        !vocab
            .lines()
            .skip(1)
            .any(|l| l.split(',').nth(1).is_some_and(|t| t.contains('.'))),
        "{vocab}"
    );
    let tokens: Vec<String> = csv_rows(&run.report_file("generated.csv"))[1..]
        .iter()
        .map(|r| r[1].clone())
        .collect();
    // The grammar: a pitch after a shift, pitches rising within an onset, a duration before every shift.
    let mut top: Option<u8> = None;
    for pair in tokens.windows(2) {
        let (a, b) = (pair[0].as_str(), pair[1].as_str());
        match b.chars().next() {
            Some('+') => assert!(a.starts_with('~'), "{a} {b} in {tokens:?}"),
            Some('~') => assert!(!a.starts_with('+') && !a.starts_with('~'), "{a} {b}"),
            _ => {
                let key = pipeline::parse_pitch_name(b).expect(b);
                if a.starts_with('+') {
                    top = None;
                }
                assert!(top.is_none_or(|t| key > t), "{a} {b} in {tokens:?}");
                top = Some(key);
            }
        }
    }
    // The MIDI file plays at each onset the pitches the tokens give it.
    let mut expected: std::collections::BTreeMap<u64, BTreeSet<u8>> = Default::default();
    let mut now = 0.0;
    for t in &tokens {
        if let Some(b) = t.strip_prefix('+') {
            now += beats(b);
        } else if !t.starts_with('~') {
            let tick = (now * 480.0_f64).round() as u64;
            expected
                .entry(tick)
                .or_default()
                .insert(pipeline::parse_pitch_name(t).unwrap());
        }
    }
    let played = struck(&run, "generated.mid");
    // The first onset may sit after the window's last shift: compare from the first tick on.
    let shift = |m: &std::collections::BTreeMap<u64, BTreeSet<u8>>| {
        let first = *m.keys().next().unwrap();
        m.iter()
            .map(|(t, k)| (t - first, k.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(shift(&played), shift(&expected));
    let metrics: serde_json::Value =
        serde_json::from_str(&run.report_file("metrics.json")).unwrap();
    assert!(
        metrics["corpus"]["polyphony"].as_f64().unwrap() > 1.2,
        "{}",
        metrics["corpus"]
    );
}
