//! The n-gram floor: an `ngram` stage beside a `train` stage on the same windows is reported in both (every order's
//! held-out loss, the training's `val_loss_vs_floor`, the floor's line in `loss.svg`, `compare`'s columns), samples
//! pieces of its own, agrees with an independent Kneser–Ney written in Python, and bad settings are located errors.

use crate::support::*;

/// Seeded melodies that wander a C major scale in steps and small leaps, with rhythm: `files` of them, 40 notes each.
pub fn corpus(p: &Project, files: usize) {
    let scale = [60u8, 62, 64, 65, 67, 69, 71, 72, 74, 76];
    let mut state = 7u64;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    for f in 0..files {
        let mut at = 4usize;
        let (mut tick, mut events) = (0u32, Vec::new());
        for _ in 0..40 {
            at = (at as i64 + [-2i64, -1, -1, 1, 1, 2][next(6) as usize]).clamp(0, 9) as usize;
            let len = [240u32, 240, 480, 960][next(4) as usize];
            events.extend(note(tick, 0, scale[at], len));
            tick += len;
        }
        p.midi(&format!("midi/{f:02}.mid"), &[events]);
    }
}

/// The MIDI stages of [`PIPELINE_TOML`] with timed tokens and files held out, a small `train` and its `sample`, and
/// the floor (`ngram`, order 4) with a `sample` of its own.
pub fn floor_toml() -> String {
    let midi = PIPELINE_TOML
        .replace("name = \"test\"", "name = \"floor\"")
        .replace(
            "inputs = [\"melody\"]\n",
            "inputs = [\"melody\"]\nscheme = \"timed\"\n",
        )
        .replace("seq_len = 4", "seq_len = 8")
        .replace("val_fraction = 0.0", "val_fraction = 0.25");
    format!("{midi}{FLOOR_STAGES}")
}

const FLOOR_STAGES: &str = r#"
[stages.model]
kind = "train"
inputs = ["windows"]
layers = 1
hidden = 16
dense = 0
input = "embedding"
embed_dim = 8
epochs = 3
batch_size = 16
optimizer = "adam"
learning_rate = 0.01
device = "cpu"

[stages.music]
kind = "sample"
inputs = ["model"]
length = 30
temperature = 1.0

[stages.floor]
kind = "ngram"
inputs = ["windows"]
order = 4

[stages.floor_music]
kind = "sample"
inputs = ["floor"]
length = 30
temperature = 1.0
count = 2
"#;

pub fn floor_project() -> Project {
    let p = Project::new();
    corpus(&p, 8);
    p.write("exp.toml", floor_toml());
    p
}

pub fn f64_of(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn the_floor_is_reported_beside_the_training_and_composes() {
    let p = floor_project();
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let floor = run.stage("floor").summary().clone();
    let orders = floor["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 4, "{floor}");
    for (i, o) in orders.iter().enumerate() {
        assert_eq!(o["order"], i + 1);
        let loss = f64_of(&o["val_loss"]);
        assert!(loss.is_finite() && loss > 0.0, "{o}");
        // Timed tokens: per onset is more than per token, and a quarter note's worth is given too.
        assert!(f64_of(&o["val_loss_per_onset"]) > loss, "{o}");
        let bits = f64_of(&o["val_bits_per_onset"]);
        assert!((bits - f64_of(&o["val_loss_per_onset"]) / std::f64::consts::LN_2).abs() < 1e-9);
        assert!(f64_of(&o["val_bits_per_quarter"]) > 0.0, "{o}");
    }
    // More context than a unigram helps on melodies that move in steps.
    assert!(
        f64_of(&orders[1]["val_loss"]) < f64_of(&orders[0]["val_loss"]),
        "{floor}"
    );
    assert_eq!(floor["val_loss"], orders[3]["val_loss"]);
    let ngram_csv = csv_rows(&run.report_file("ngram.csv"));
    assert_eq!(ngram_csv.len(), 5, "header and one row per order");
    assert_eq!(ngram_csv[0][..3], ["order", "ngrams", "val_loss"]);

    // The training is measured against it.
    let train = run.stage("model").summary().clone();
    let (best, floor_loss) = (f64_of(&train["best_val_loss"]), f64_of(&floor["val_loss"]));
    assert_eq!(f64_of(&train["floor_val_loss"]), floor_loss);
    assert_eq!(train["floor_order"], 4);
    assert!(
        (f64_of(&train["val_loss_vs_floor"]) - (best - floor_loss)).abs() < 1e-12,
        "{train}"
    );
    assert!(
        run.report_file("loss.svg")
            .contains("n-gram floor (order 4)")
    );
    // loss.csv gives every epoch in bits per onset and per quarter note.
    let losses = csv_rows(&run.report_file("loss.csv"));
    assert_eq!(
        losses[0][6..],
        ["val_bits_per_onset", "val_bits_per_quarter"]
    );
    let best_row = losses.iter().find(|r| r[5] == "1").expect("a best epoch");
    let bits: f64 = best_row[6].parse().unwrap();
    assert!(
        (bits - f64_of(&train["best_val_bits_per_onset"])).abs() < 1e-5,
        "{best_row:?}"
    );

    // compare carries both, in every format.
    let json = p.pipeline(&["compare", "--format", "json"]).ok();
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(f64_of(&rows[0]["floor_val_loss"]), floor_loss);
    assert!((f64_of(&rows[0]["val_loss_vs_floor"]) - (best - floor_loss)).abs() < 1e-12);
    let table = p.pipeline(&["compare"]).ok();
    assert!(
        table.stdout.contains("val_loss_vs_floor"),
        "{}",
        table.stdout
    );

    // The floor's pieces: the first sample stage keeps the plain names, the floor's are prefixed.
    assert!(run.report_file("generated.csv").lines().count() == 31);
    for piece in ["floor_music.generated", "floor_music.generated-2"] {
        let csv = run.report_file(&format!("{piece}.csv"));
        assert_eq!(csv.lines().count(), 31, "{piece}: header and 30 tokens");
        let midi =
            std::fs::read(run.report.as_ref().unwrap().join(format!("{piece}.mid"))).unwrap();
        assert!(
            pipeline::read_song("floor.mid", &midi).is_ok(),
            "{piece}.mid reads back"
        );
    }
    let metrics: serde_json::Value =
        serde_json::from_str(&run.report_file("floor_music.metrics.json")).unwrap();
    assert_eq!(metrics["generated"]["tokens"], 30);
    // The memorisation reference: the held-out files' own copy rates against the training files.
    let held = &metrics["held_out"];
    assert!(
        held["copy_rate_8"].is_f64() && held["copy_rate_8_onsets"].is_f64(),
        "{held}"
    );

    // bench music judges the training against the floor and the pieces' copying against the held-out files.
    let music = p.pipeline(&["bench", "music", "floor"]).ok();
    assert!(
        music.stdout.contains("below the n-gram floor (order 4)"),
        "{}",
        music.stdout
    );
    assert!(music.stdout.contains("(`floor_music`)"), "{}", music.stdout);
    assert!(
        music.stdout.contains("at most held-out"),
        "{}",
        music.stdout
    );

    // Cached like every stage.
    let again = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(again.stages("ran"), Vec::<String>::new());
    assert_eq!(
        again.stage("floor").summary()["val_loss"],
        floor["val_loss"]
    );
}

#[test]
fn the_floor_agrees_with_an_independent_kneser_ney() {
    if !require("python3") {
        return;
    }
    let python = find_on_path("python3").expect("probed");
    let p = floor_project();
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let bench = p
        .pipeline(&[
            "bench", "ngram", "exp.toml", "--order", "4", "--runs", "1", "--export", "kn",
        ])
        .ok();
    assert!(
        bench.stdout.contains("model in memory: "),
        "{}",
        bench.stdout
    );
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/kneser_ney.py");
    let csv = run.report.as_ref().unwrap().join("ngram.csv");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(p.path("kn"))
        .arg("--expect")
        .arg(&csv)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not just within 1 %: the same maths, so the same figures to the printed digits.
    let ours = csv_rows(&std::fs::read_to_string(&csv).unwrap());
    for row in &ours[1..] {
        let loss: f64 = row[2].parse().unwrap();
        assert!(
            stdout.contains(&format!("{:>5}  {loss:.4}", row[0])),
            "order {}: {stdout}",
            row[0]
        );
    }
}

#[test]
fn bad_ngram_settings_are_located_errors() {
    let p = floor_project();
    for order in ["0", "11"] {
        p.write(
            "bad.toml",
            floor_toml().replace("order = 4", &format!("order = {order}")),
        );
        p.pipeline(&["run", "bad.toml"])
            .fails_with(2, &format!("must be between 1 and 10, got {order}"))
            .fails_with(2, "bad.toml:");
    }
    p.write(
        "bad.toml",
        floor_toml().replace(
            "kind = \"ngram\"\ninputs = [\"windows\"]",
            "kind = \"ngram\"\ninputs = [\"vocab\"]",
        ),
    );
    p.pipeline(&["run", "bad.toml"]).fails_with(
        2,
        "needs training windows as input, but `vocab` (vocab) produces a vocabulary",
    );
    p.write(
        "bad.toml",
        floor_toml().replace("inputs = [\"floor\"]", "inputs = [\"windows\"]"),
    );
    p.pipeline(&["run", "bad.toml"])
        .fails_with(2, "needs a trained model or an n-gram model as input");
    // Nothing ran.
    assert!(!p.path("reports/floor").exists());
    p.pipeline(&["bench", "ngram", "exp.toml", "--order", "11"])
        .fails_with(2, "must be a whole number from 1 to 10");
}

/// `bench ngram --export` writes, beside the ids, what a reference implementation needs to train the same recipe and
/// check the same floor (`bench/torch_lm.py` reads it): the shape, the floor's held-out loss as `ngram.csv` has it, and
/// the train stage's parameters.
#[test]
fn the_export_carries_the_floor_and_the_train_stages_recipe() {
    let p = floor_project();
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    p.pipeline(&[
        "bench", "ngram", "exp.toml", "--order", "4", "--runs", "1", "--export", "lm",
    ])
    .ok();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("lm/meta.json")).unwrap()).unwrap();
    let ngram = csv_rows(&run.report_file("ngram.csv"));
    let order_4: f64 = ngram.iter().find(|r| r[0] == "4").unwrap()[2]
        .parse()
        .unwrap();
    let floor = meta["floor_val_loss"].as_f64().unwrap();
    assert!(
        (floor - order_4).abs() < 1e-4,
        "{floor} vs ngram.csv's {order_4}"
    );
    assert_eq!((&meta["order"], &meta["seq_len"]), (&4.into(), &8.into()));
    let vocab = csv_rows(&run.report_file("vocab.csv")).len() - 1;
    assert_eq!(meta["vocab"], vocab);
    let train = &meta["train"];
    assert_eq!(
        (
            &train["hidden"],
            &train["embed_dim"],
            &train["optimizer"],
            &train["learning_rate"],
            &train["batch_size"]
        ),
        (
            &16.into(),
            &8.into(),
            &"adam".into(),
            &0.01.into(),
            &16.into()
        )
    );
    // The ids are the windows' own: one line per file, every id inside the vocabulary.
    for name in ["train.txt", "validation.txt"] {
        let text = std::fs::read_to_string(p.path(&format!("lm/{name}"))).unwrap();
        assert!(!text.trim().is_empty(), "{name}");
        assert!(
            text.split_whitespace()
                .all(|id| id.parse::<usize>().unwrap() < vocab),
            "{name}"
        );
    }
}
