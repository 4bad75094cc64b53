//! Sweeps through the real binary: points, shared stages, resumption, failures, parallel jobs.

use std::path::PathBuf;

use crate::support::*;

const SWEEP: &str = "\n[sweep]\n\"model.hidden\" = [8, 12]\n\"windows.seq_len\" = [3, 4]\n";

fn sweep_project(sweep: &str) -> Project {
    let p = tiny_project();
    p.write("exp.toml", experiment(TINY, "length = 6\nseed = 3") + sweep);
    p
}

fn sweep_dir(p: &Project, run: &Run) -> PathBuf {
    p.path(run.stdout.lines().last().expect("the sweep folder").trim())
}

fn ran_lines(stderr: &str, stage: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.trim_start().starts_with(&format!("ran {stage} ")))
        .count()
}

#[test]
fn a_grid_sweep_runs_every_point_and_shares_common_stages() {
    let p = sweep_project(SWEEP);
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let dir = sweep_dir(&p, &run);
    let labels = [
        "hidden=8,seq_len=3",
        "hidden=8,seq_len=4",
        "hidden=12,seq_len=3",
        "hidden=12,seq_len=4",
    ];
    for label in labels {
        let m = read_manifest(&dir.join(label));
        assert_eq!(m.status, Some(RunStatus::Ok));
        assert_eq!(m.point.as_ref().expect("a sweep point").label, label);
        for s in ["source", "no_drums", "melody", "tokens", "vocab"] {
            assert_eq!(
                stage_in(&m, s).shared_by,
                4,
                "{s} is computed once for all points"
            );
        }
        assert_eq!(stage_in(&m, "windows").shared_by, 2);
        assert_eq!(stage_in(&m, "model").shared_by, 1);
        assert!(dir.join(label).join("generated.mid").is_file());
        assert!(dir.join(label).join("metrics.json").is_file());
    }
    for (s, n) in [
        ("source", 1),
        ("vocab", 1),
        ("windows", 2),
        ("model", 4),
        ("music", 4),
    ] {
        assert_eq!(
            ran_lines(&run.stderr, s),
            n,
            "`{s}` ran {n} times\n{}",
            run.stderr
        );
    }
    let summary = pipeline::SweepRecord::read(&dir).unwrap();
    assert_eq!(summary.points.len(), 4);
    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert!(
        csv.starts_with("run,model.hidden,windows.seq_len,epochs,"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 5);
    assert!(
        std::fs::read_to_string(dir.join("loss.svg"))
            .unwrap()
            .contains("<svg")
    );

    let again = p.pipeline(&["run", "exp.toml"]).ok();
    assert!(
        again
            .stderr
            .contains("nothing to do: all 15 stages cached (4 points)"),
        "{}",
        again.stderr
    );
}

#[test]
fn set_applies_to_every_point_and_a_changed_point_alone_reruns() {
    let p = sweep_project(SWEEP);
    p.pipeline(&["run", "exp.toml"]).ok();
    let run = p
        .pipeline(&["run", "exp.toml", "--set", "music.length=4"])
        .ok();
    let dir = sweep_dir(&p, &run);
    assert_eq!(ran_lines(&run.stderr, "music"), 4);
    assert_eq!(ran_lines(&run.stderr, "model"), 0);
    for label in ["hidden=8,seq_len=3", "hidden=12,seq_len=4"] {
        let csv = std::fs::read_to_string(dir.join(label).join("generated.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + 4);
    }
}

#[test]
fn zip_pairs_values_and_rejects_lists_of_different_lengths() {
    let p = sweep_project(
        "\n[sweep]\nmode = \"zip\"\n\"model.hidden\" = [8, 12]\n\"windows.seq_len\" = [3, 4]\n",
    );
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let dir = sweep_dir(&p, &run);
    assert!(dir.join("hidden=8,seq_len=3").is_dir() && dir.join("hidden=12,seq_len=4").is_dir());
    assert!(!dir.join("hidden=8,seq_len=4").exists());

    p.write(
        "exp.toml",
        experiment(TINY, "length = 6") + "\n[sweep]\nmode = \"zip\"\n\"model.hidden\" = [8, 12, 16]\n\"windows.seq_len\" = [3, 4]\n",
    );
    let bad = p.pipeline(&["run", "exp.toml"]);
    bad.fails_with(2, "with `mode = \"zip\"` every list needs the same length: `model.hidden` has 3 values, `windows.seq_len` has 2");
    assert!(
        bad.stderr.contains("exp.toml:"),
        "points at the file: {}",
        bad.stderr
    );
}

#[test]
fn bad_sweep_values_point_into_the_sweep_table() {
    let p = sweep_project("\n[sweep]\n\"model.hidden\" = [8, 0]\n\"windws.seq_len\" = [3]\n");
    let bad = p.pipeline(&["run", "exp.toml"]);
    bad.fails_with(2, "must be between 1 and 8192, got 0");
    assert!(
        bad.stderr.contains("there is no stage named `windws`"),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr.contains("\"model.hidden\" = [8, 0]"),
        "the snippet shows the sweep line: {}",
        bad.stderr
    );
}

#[test]
fn keep_going_finishes_the_other_points_and_fail_fast_stops() {
    // seq_len = 40 leaves no training windows in these short files: that point fails in `windows`.
    let sweep = "\n[sweep]\n\"windows.seq_len\" = [3, 40, 4]\n";
    let p = sweep_project(sweep);
    let run = p.pipeline(&["run", "exp.toml", "--keep-going"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("error: stage `windows` [seq_len=40] failed: no training windows"),
        "{}",
        run.stderr
    );
    let dir = sweep_dir(&p, &run);
    assert_eq!(
        read_manifest(&dir.join("seq_len=3")).status,
        Some(RunStatus::Ok)
    );
    assert_eq!(
        read_manifest(&dir.join("seq_len=4")).status,
        Some(RunStatus::Ok)
    );
    assert_eq!(
        read_manifest(&dir.join("seq_len=40")).status,
        Some(RunStatus::Failed)
    );
    let summary = std::fs::read_to_string(dir.join("sweep.json")).unwrap();
    assert!(summary.contains("no training windows"), "{summary}");

    let q = sweep_project(sweep);
    let run = q.pipeline(&["run", "exp.toml"]);
    assert_eq!(run.code, 1);
    let dir = sweep_dir(&q, &run);
    assert_ne!(
        read_manifest(&dir.join("seq_len=4")).status,
        Some(RunStatus::Ok),
        "fail-fast: the last point never finished"
    );
}

#[test]
fn parallel_jobs_give_the_same_results_as_one() {
    let p = sweep_project(SWEEP);
    let one = p.pipeline(&["run", "exp.toml", "--cache-dir", "c1"]).ok();
    let two = p
        .pipeline(&["run", "exp.toml", "--cache-dir", "c2", "--jobs", "3"])
        .ok();
    for label in ["hidden=8,seq_len=3", "hidden=12,seq_len=4"] {
        let a = read_manifest(&sweep_dir(&p, &one).join(label));
        let b = read_manifest(&sweep_dir(&p, &two).join(label));
        for s in ALL_STAGES.iter().chain(&["model", "music"]) {
            assert_eq!(
                stage_in(&a, s).output_hash,
                stage_in(&b, s).output_hash,
                "{label} {s}"
            );
        }
    }
    assert_eq!(
        ran_lines(&two.stderr, "source"),
        1,
        "shared stages still run once in parallel"
    );
}

#[test]
fn repeat_runs_each_point_with_successive_seeds() {
    let p = sweep_project("\n[sweep]\n\"model.hidden\" = [8]\nrepeat = 2\n");
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let dir = sweep_dir(&p, &run);
    let a = read_manifest(&dir.join("hidden=8,seed=1"));
    let b = read_manifest(&dir.join("hidden=8,seed=2"));
    assert_eq!(stage_in(&a, "model").params["seed"], 1);
    assert_eq!(stage_in(&b, "model").params["seed"], 2);
    assert_ne!(
        stage_in(&a, "model").output_hash,
        stage_in(&b, "model").output_hash
    );
}

#[test]
fn status_and_graph_describe_the_sweep() {
    let p = sweep_project(SWEEP);
    let graph = p.pipeline(&["graph", "exp.toml"]).ok().stdout;
    assert!(
        graph.contains(
            "sweep: 4 points (grid over model.hidden (2 values) × windows.seq_len (2 values))"
        ),
        "{graph}"
    );
    assert!(graph.contains("  vocab: shared by all points"), "{graph}");
    assert!(graph.contains("  windows: 2 variants"), "{graph}");
    assert!(graph.contains("  model: 4 variants"), "{graph}");
    let status = p.pipeline(&["status", "exp.toml"]).ok().stdout;
    assert!(status.contains("[hidden=12,seq_len=4]"), "{status}");
    assert_eq!(
        status.matches("would run: never ran").count(),
        4,
        "one per point for the first stage\n{status}"
    );
}

/// Two values that differ only in a character a folder name cannot hold would share one report folder: the second
/// gets its own (`~2`), and each keeps its own experiment.
#[test]
fn values_that_sanitize_to_one_label_get_distinct_folders() {
    let p = Project::new();
    p.midi("x/y/a.mid", &[melody(0, &[60, 62, 64, 65, 67, 69])]);
    p.midi("x_y/b.mid", &[melody(0, &[72, 71, 69, 67, 65, 64, 62])]);
    p.write(
        "exp.toml",
        PIPELINE_TOML.replace("path = \"midi\"", "path = \"x/y\"")
            + "\n[sweep]\n\"source.path\" = [\"x/y\", \"x_y\"]\n",
    );
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let dir = sweep_dir(&p, &run);
    let first = std::fs::read_to_string(dir.join("path=x_y/experiment.toml")).unwrap();
    let second = std::fs::read_to_string(dir.join("path=x_y~2/experiment.toml")).unwrap();
    assert!(first.contains("path = \"x/y\""), "{first}");
    assert!(second.contains("path = \"x_y\""), "{second}");
    assert_ne!(
        read_manifest(&dir.join("path=x_y")),
        read_manifest(&dir.join("path=x_y~2"))
    );
}

/// A sweep is planned point by point, each held until it runs: 10,000 points plan (every one in `graph`'s count);
/// more than 100,000 are refused from the lists' sizes alone, before any point is made, saying how to search such a
/// space. (Planning time is measured in the manual, not here.)
#[test]
fn a_sweep_of_ten_thousand_points_plans_and_one_over_the_limit_is_refused_up_front() {
    let values = |n: usize| {
        (0..n)
            .map(|i| (i + 2).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let p = sweep_project(&format!(
        "[sweep]\n\"model.hidden\" = [{}]\n\"model.seed\" = [{}]\n",
        values(100),
        values(100)
    ));
    let graph = p.pipeline(&["graph", "exp.toml"]).ok().stdout;
    assert!(
        graph.contains("sweep: 10000 points"),
        "{}",
        &graph[..graph.len().min(500)]
    );
    assert!(
        graph.contains("  model: 10000 variants"),
        "{}",
        &graph[..graph.len().min(500)]
    );
    let p = sweep_project(&format!(
        "[sweep]\n\"model.hidden\" = [{}]\n\"model.seed\" = [{}]\n\"model.dropout\" = [0.1, 0.2]\n",
        values(1000),
        values(1000)
    ));
    let refused = p.pipeline(&["graph", "exp.toml"]);
    refused.fails_with(
        2,
        "this sweep has 2000000 points (2000000 configurations: 1000 × 1000 × 2); a sweep may have at most 100000",
    );
    assert!(
        refused.stderr.contains("mode = \"random\""),
        "{}",
        refused.stderr
    );
    // Repeats count: 1,000 configurations run 101 times each are 101,000 points.
    let p = sweep_project(&format!(
        "[sweep]\nrepeat = 101\n\"model.hidden\" = [{}]\n",
        values(1000)
    ));
    p.pipeline(&["graph", "exp.toml"]).fails_with(
        2,
        "this sweep has 101000 points (1000 configurations: 1000, each repeated 101 times)",
    );
}
