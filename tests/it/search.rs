//! Random sweeps and pruned searches (`[sweep.prune]`, ASHA) through the real binary, on tiny models: draws are
//! deterministic, every epoch trains once, and the decisions are the same for any `--jobs`, on a re-run and after a
//! kill.

use std::collections::BTreeSet;

use crate::support::*;
use pipeline::SweepRecord;

/// `p` (a [`tiny_project_in`]) with a third file, held out for validation, the tiny model trained up to `epochs`,
/// and `extra` (a `[sweep]`) after the experiment.
pub fn with_validation(p: Project, epochs: u32, extra: &str) -> Project {
    p.midi(
        "midi/c.mid",
        &[melody(0, &[60, 62, 64, 65, 67, 65, 64, 62, 60, 62, 64, 65])],
    );
    let toml = experiment(TINY, "length = 5")
        .replace("val_fraction = 0.0", "val_fraction = 0.34")
        .replace("epochs = 3", &format!("epochs = {epochs}"));
    p.write("exp.toml", format!("{toml}\n{extra}"));
    p
}

/// The tiny project with validation, up to 9 epochs, and `sweep`.
fn project(sweep: &str) -> Project {
    with_validation(tiny_project(), 9, sweep)
}

const GRID_SEARCH: &str = "[sweep]\n\"model.learning_rate\" = [0.001, 0.01, 0.05]\n\"model.hidden\" = [4, 8, 16]\n\n\
                           [sweep.prune]\nmethod = \"asha\"\nmetric = \"val_loss\"\nmin_epochs = 1\nreduction = 3\n";

/// The sweep's folder, as the run printed it.
fn sweep_dir(p: &Project, run: &Run) -> std::path::PathBuf {
    p.path(run.stdout.lines().last().expect("a report path").trim())
}

fn sweep_record(p: &Project, run: &Run) -> SweepRecord {
    SweepRecord::read(&sweep_dir(p, run)).unwrap()
}

#[test]
fn random_sweeps_draw_the_same_trials_for_a_seed_within_their_bounds() {
    let sweep = |seed: u32| {
        format!(
            "[sweep]\nmode = \"random\"\ntrials = 5\nseed = {seed}\n\
             \"model.learning_rate\" = {{ log_uniform = [0.001, 0.1] }}\n\
             \"model.hidden\" = {{ int = [4, 16] }}\n\"model.dropout\" = {{ uniform = [0.0, 0.5] }}\n\
             \"model.optimizer\" = [\"adam\", \"rmsprop\"]\n"
        )
    };
    let p = project(&sweep(3));
    let once = p
        .pipeline(&["run", "exp.toml", "--set", "model.epochs=1"])
        .ok();
    let again = p
        .pipeline(&["run", "exp.toml", "--set", "model.epochs=1"])
        .ok();
    let (a, b) = (sweep_record(&p, &once), sweep_record(&p, &again));
    assert_eq!(a.mode.as_deref(), Some("random"));
    assert_eq!(a.points.len(), 5);
    let labels = |r: &SweepRecord| r.points.iter().map(|p| p.label.clone()).collect::<Vec<_>>();
    assert_eq!(
        labels(&a),
        labels(&b),
        "the same seed draws the same trials"
    );
    assert!(
        again.stderr.contains("nothing to do"),
        "and finds them cached: {}",
        again.stderr
    );
    let mut optimizers = BTreeSet::new();
    for point in &a.points {
        let lr: f64 = point.values["model.learning_rate"].parse().unwrap();
        let hidden: u32 = point.values["model.hidden"].parse().unwrap();
        let dropout: f64 = point.values["model.dropout"].parse().unwrap();
        assert!((0.001..=0.1).contains(&lr), "{lr}");
        assert!((4..=16).contains(&hidden), "{hidden}");
        assert!((0.0..=0.5).contains(&dropout), "{dropout}");
        optimizers.insert(point.values["model.optimizer"].clone());
        // The label rounds; the experiment trains with the exact value.
        let manifest = read_manifest(&sweep_dir(&p, &once).join(point.dir.as_ref().unwrap()));
        let used = stage_in(&manifest, "model").params["learning_rate"]
            .as_f64()
            .unwrap();
        assert_eq!(used, lr);
        let shown = point
            .label
            .split(',')
            .find_map(|kv| kv.strip_prefix("learning_rate="))
            .unwrap();
        let shown: f64 = shown.parse().unwrap();
        assert!((shown - lr).abs() / lr < 1e-3, "{shown} vs {lr}");
        assert!(point.label.len() < 80, "{}", point.label);
    }
    assert_eq!(
        optimizers.len(),
        2,
        "a list in random mode is a choice: {optimizers:?}"
    );
    p.write(
        "exp.toml",
        std::fs::read_to_string(p.path("exp.toml"))
            .unwrap()
            .replace("seed = 3", "seed = 4"),
    );
    let other = p
        .pipeline(&["run", "exp.toml", "--set", "model.epochs=1"])
        .ok();
    assert_ne!(
        labels(&sweep_record(&p, &other)),
        labels(&a),
        "another seed, other trials"
    );
}

/// The decisions of a search: every promotion and every trial's explanation.
fn decisions(record: &SweepRecord) -> (String, Vec<String>) {
    let search = record.search.as_ref().expect("a search record");
    (
        serde_json::to_string(&search.promotions).unwrap(),
        search
            .trials
            .iter()
            .map(|t| format!("{}: {}", t.label, t.explanation))
            .collect(),
    )
}

#[test]
fn a_pruned_search_trains_each_epoch_once_and_decides_the_same_with_any_jobs() {
    let p = project(GRID_SEARCH);
    let one = p.pipeline(&["run", "exp.toml", "--jobs", "1"]).ok();
    let three = p
        .pipeline(&["run", "exp.toml", "--jobs", "3", "--cache-dir", "other"])
        .ok();
    let (a, b) = (sweep_record(&p, &one), sweep_record(&p, &three));
    assert_eq!(decisions(&a), decisions(&b), "--jobs 3 decides as --jobs 1");
    let search = a.search.as_ref().unwrap();
    assert_eq!(search.rungs, [1, 3, 9]);
    // Nine trainings to epoch 1, three on to 3, one to 9: every epoch trained once.
    let mut reached = Vec::new();
    for point in &a.points {
        let manifest = read_manifest(&sweep_dir(&p, &one).join(point.dir.as_ref().unwrap()));
        let trial = manifest
            .trial
            .clone()
            .expect("every trial says how it ended");
        let epochs = manifest.train_summary().unwrap().epochs;
        reached.push(epochs);
        let explained = &trial.explanation;
        match epochs {
            9 => assert!(
                explained.starts_with("complete: 9 epochs, val_loss "),
                "{explained}"
            ),
            e => {
                assert!(
                    explained.starts_with(&format!("pruned at epoch {e}: val_loss ")),
                    "{explained}"
                );
                assert!(
                    explained.contains(" of 9 at rung 1 (kept: best 3)")
                        || explained.contains(" of 3 at rung 3 (kept: best 1)"),
                    "{explained}"
                );
                // A pruned trial stops at its training: it makes no music.
                assert_ne!(stage_in(&manifest, "music").status, Some(Status::Ran));
            }
        }
    }
    reached.sort();
    assert_eq!(reached, [1, 1, 1, 1, 1, 1, 3, 3, 9]);
    assert_eq!(search.epochs_trained, reached.iter().sum::<usize>());
    assert_eq!(
        b.search.as_ref().unwrap().epochs_trained,
        search.epochs_trained
    );
    let winner = search.winner.clone().unwrap();
    assert!(
        one.stderr
            .contains(&format!("trial {winner}: complete: 9 epochs")),
        "{}",
        one.stderr
    );

    // Again: the same decisions from the cache, nothing trained.
    let again = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(decisions(&sweep_record(&p, &again)), decisions(&a));
    assert_eq!(sweep_record(&p, &again).search.unwrap().epochs_trained, 0);
    assert!(again.stderr.contains("nothing to do"), "{}", again.stderr);

    // The index page marks the winner and says how the others ended; the sweep's chart names them.
    let index = std::fs::read_to_string(p.path("reports/index.html")).unwrap();
    assert!(index.contains("complete ★ best"), "{index}");
    assert!(
        index.contains("pruned at 1") && index.contains("rank 9 of 9 at rung 1"),
        "{index}"
    );
    let chart = std::fs::read_to_string(sweep_dir(&p, &again).join("loss.svg")).unwrap();
    assert!(
        chart.contains(&format!("{winner} (best)")) && chart.contains("(pruned at 3)"),
        "{chart}"
    );

    // compare: status and the ranking metric, best first.
    let table = p
        .pipeline(&[
            "compare",
            sweep_dir(&p, &again).to_str().unwrap(),
            "--format",
            "json",
        ])
        .ok()
        .stdout;
    let rows: serde_json::Value = serde_json::from_str(&table).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows[0]["run"], winner.as_str());
    assert_eq!(rows[0]["status"], "complete");
    let statuses: Vec<&str> = rows.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "pruned at 1").count(),
        6,
        "{statuses:?}"
    );
    let scores: Vec<f64> = rows[1..]
        .iter()
        .map(|r| r["search_val_loss"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] <= w[1]), "{scores:?}");
}

#[test]
fn a_killed_search_continues_to_the_decisions_of_an_uninterrupted_one() {
    let p = project(GRID_SEARCH);
    let whole = p
        .pipeline(&["run", "exp.toml", "--cache-dir", "whole"])
        .ok();
    let run = Spawned::start(&p, &["run", "exp.toml", "--jobs", "1"]);
    // Once a few trainings are in, kill it outright.
    for _ in 0..4 {
        run.wait_for("ran model");
    }
    run.signal(9);
    let (code, _, _) = run.exit();
    assert_eq!(code, -1, "killed");
    let resumed = p.pipeline(&["run", "exp.toml", "--jobs", "1"]).ok();
    assert_eq!(
        decisions(&sweep_record(&p, &resumed)),
        decisions(&sweep_record(&p, &whole))
    );
    let trained = sweep_record(&p, &resumed).search.unwrap().epochs_trained;
    assert!(
        trained < sweep_record(&p, &whole).search.unwrap().epochs_trained,
        "what the killed run trained is not trained again: {trained}"
    );
}

/// A trial whose training fails (here it diverges) fails the search: exit 1, the trial says why. By default nothing
/// new starts after it, as in any run; with `--keep-going` the other trials go on to the end, and it still exits 1.
#[test]
fn a_failed_trial_fails_the_search_and_keep_going_finishes_the_others() {
    let sweep = "[sweep]\n\"model.learning_rate\" = [1e30, 0.01, 0.02, 0.03]\n\n\
                 [sweep.prune]\nmethod = \"asha\"\nmetric = \"val_loss\"\nmin_epochs = 1\nreduction = 2\n";
    let p = project(sweep);
    let run = p.pipeline(&["run", "exp.toml"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("learning_rate=1e30: failed: "),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("not run (further): a trial failed and `--keep-going` was not given"),
        "{}",
        run.stderr
    );
    let p = project(sweep);
    let run = p.pipeline(&["run", "exp.toml", "--keep-going"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("learning_rate=1e30: failed: "),
        "{}",
        run.stderr
    );
    for lr in ["0.01", "0.02", "0.03"] {
        let line = format!("trial learning_rate={lr}: ");
        let fate = run.stderr.split(&line).nth(1).expect(&run.stderr);
        assert!(
            fate.starts_with("pruned") || fate.starts_with("complete"),
            "{}",
            run.stderr
        );
    }
}

/// A search's trials and rungs run on one scheduler: a stage every trial shares runs once, for all of them, and the
/// closing count counts each stage once, naming what the pruned trials never reached.
#[test]
fn a_search_runs_each_shared_stage_once_and_counts_each_stage_once() {
    let p = project(GRID_SEARCH);
    let run = p.pipeline(&["run", "exp.toml", "--jobs", "3"]).ok();
    let ran = |stage: &str| {
        run.stderr
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("ran {stage} ")))
            .collect::<Vec<_>>()
    };
    let source = ran("source");
    assert_eq!(source.len(), 1, "{}", run.stderr);
    assert!(source[0].contains("(shared by 9 points)"), "{}", source[0]);
    // Nine trainings to rung 1, three to rung 3, one to rung 9.
    assert_eq!(ran("model").len(), 13, "{}", run.stderr);
    assert_eq!(ran("music").len(), 1, "{}", run.stderr);
    // The six stages before training once, each trial's last training (9), the winner's music (1); the eight
    // pruned trials' music never ran.
    assert!(
        run.stderr
            .contains("16 of 24 stages ran (9 points), 0 cached, 8 not run (pruned trials)"),
        "{}",
        run.stderr
    );
}
