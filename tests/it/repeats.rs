//! Seed noise: a sweep with `repeat = N` folds, in `compare`, into one row per configuration — every figure its
//! mean ± 95 % interval (Student's t) with n and every seed's value — and configurations whose intervals overlap are
//! marked as not distinguishable; a pruned search refuses `repeat`.

use crate::ngram::{f64_of, floor_project, floor_toml};
use crate::support::*;

const SWEEP: &str = "\n[sweep]\n\"model.hidden\" = [4, 16]\nrepeat = 3\n";

#[test]
fn repeats_fold_into_one_row_per_configuration() {
    let p = floor_project();
    p.write("exp.toml", format!("{}{SWEEP}", floor_toml()));
    p.pipeline(&["run", "exp.toml", "-j", "2"]).ok();
    let json = p.pipeline(&["compare", "--format", "json"]).ok();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(rows.len(), 2, "{}", json.stdout);
    let t2 = 4.302_652_729_9; // Student's t at 0.975 with 2 degrees of freedom
    for row in &rows {
        assert_eq!(row["n"], 3, "{row}");
        assert_eq!(
            row["seeds"].as_str().unwrap().split(' ').count(),
            3,
            "{row}"
        );
        let cell = &row["best_val_loss"];
        let values: Vec<f64> = cell["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(f64_of)
            .collect();
        assert_eq!(values.len(), 3, "every seed's value is kept: {cell}");
        let mean = values.iter().sum::<f64>() / 3.0;
        let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
        assert!((f64_of(&cell["mean"]) - mean).abs() < 1e-12, "{cell}");
        assert!(
            (f64_of(&cell["ci95"]) - t2 * sd / 3f64.sqrt()).abs() < 1e-9,
            "{cell}"
        );
        assert!(
            values.iter().any(|&v| v != values[0]),
            "the seeds differ: {cell}"
        );
        // The floor does not depend on the seed: an interval of width 0.
        assert_eq!(f64_of(&row["floor_val_loss"]["ci95"]), 0.0, "{row}");
    }
    let verdicts: Vec<&str> = rows
        .iter()
        .map(|r| r["vs_lowest"].as_str().unwrap())
        .collect();
    assert_eq!(
        verdicts.iter().filter(|v| **v == "lowest").count(),
        1,
        "{verdicts:?}"
    );
    let (lo, other) = if verdicts[0] == "lowest" {
        (0, 1)
    } else {
        (1, 0)
    };
    let bound = |r: &serde_json::Value, sign: f64| {
        f64_of(&r["best_val_loss"]["mean"]) + sign * f64_of(&r["best_val_loss"]["ci95"])
    };
    let overlap = bound(&rows[other], -1.0) <= bound(&rows[lo], 1.0);
    assert_eq!(
        verdicts[other],
        if overlap { "overlaps lowest" } else { "above" }
    );

    let csv = p.pipeline(&["compare", "--format", "csv"]).ok();
    let lines = csv_rows(&csv.stdout);
    assert_eq!(lines.len(), 3, "{}", csv.stdout);
    for column in [
        "n",
        "best_val_loss",
        "best_val_loss_ci95",
        "val_loss_vs_floor_ci95",
        "vs_lowest",
    ] {
        assert!(
            lines[0].iter().any(|c| c == column),
            "no `{column}`: {:?}",
            lines[0]
        );
    }
    assert!(
        !lines[0].iter().any(|c| c == "model.seed"),
        "{:?}",
        lines[0]
    );
    // The index page: one mean curve in a band per configuration, and the folded table.
    let index = std::fs::read_to_string(p.path("reports/index.html")).unwrap();
    assert!(
        index.contains("hidden=4 (mean of 3 seeds)")
            && index.contains("hidden=16 (mean of 3 seeds)")
    );
    assert!(index.contains("<polygon"), "the bands are drawn");
    assert!(index.contains("<table class=\"runs seeds\">") && index.contains(" ± "));
    let table = p.pipeline(&["compare"]).ok();
    assert!(table.stdout.contains(" ± "), "{}", table.stdout);
    assert!(table.stdout.lines().count() == 3, "{}", table.stdout);
}

#[test]
fn a_pruned_search_refuses_repeat() {
    let p = floor_project();
    let pruned = format!(
        "{}{SWEEP}\n[sweep.prune]\nmethod = \"asha\"\nmetric = \"val_loss\"\nmin_epochs = 1\nreduction = 3\n",
        floor_toml()
    );
    p.write("exp.toml", pruned);
    p.pipeline(&["run", "exp.toml"])
        .fails_with(2, "`repeat = 3` cannot go with `[sweep.prune]`")
        .fails_with(2, "run the best configuration with `repeat`");
}

#[test]
fn repeat_alone_trains_one_configuration_with_several_seeds() {
    let p = floor_project();
    p.write(
        "exp.toml",
        format!("{}\n[sweep]\nrepeat = 2\n", floor_toml()),
    );
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert!(run.stderr.contains("2 points"), "{}", run.stderr);
    let json = p.pipeline(&["compare", "--format", "json"]).ok();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(rows.len(), 1, "{}", json.stdout);
    assert_eq!(rows[0]["n"], 2);
    assert_eq!(rows[0]["seeds"], "42 43");
    assert_eq!(rows[0]["vs_lowest"], "lowest");
    // Without `repeat`, an empty sweep is still an error.
    p.write(
        "exp.toml",
        format!("{}\n[sweep]\nrepeat = 1\n", floor_toml()),
    );
    p.pipeline(&["run", "exp.toml"])
        .fails_with(2, "`[sweep]` varies nothing");
}
