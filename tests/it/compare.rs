//! `pipeline compare`, the loss charts and `reports/index.html`, on report folders with known contents.

use std::path::Path;

use crate::support::*;

/// A report folder as `pipeline run` writes it, with the given train parameters and losses.
fn fake_run(
    p: &Project,
    dir: &str,
    hidden: u32,
    layers: u32,
    losses: &[(f64, f64)],
    copy_rate: f64,
) {
    let manifest = serde_json::json!({
        "experiment": "exp",
        "run_id": dir,
        "started": format!("2026-11-24T10:00:0{hidden}Z"),
        "status": "ok",
        "device": "cpu",
        "stages": [
            {"name": "windows", "kind": "window", "params": {"seq_len": 32, "seed": 42, "val_fraction": 0.1},
             "summary": {}},
            {"name": "model", "kind": "train", "params": {"hidden": hidden, "layers": layers, "seed": 42},
             "summary": {"seconds": 12.5}},
        ],
    });
    p.write(
        &format!("reports/exp/{dir}/manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    );
    let mut csv = String::from("epoch,train_loss,val_loss,val_accuracy,seconds\n");
    for (i, (t, v)) in losses.iter().enumerate() {
        csv.push_str(&format!("{},{t},{v},0.5,1.0\n", i + 1));
    }
    p.write(&format!("reports/exp/{dir}/loss.csv"), csv);
    let m = serde_json::json!({"tokens": 500, "unique_tokens": 40, "pitch_classes_used": 9, "pitch_class_entropy": 3.1,
        "chord_ratio": 0.25, "longest_repeat": 3, "copy_rate_8": copy_rate, "longest_copy": 12});
    let corpus = serde_json::json!({"tokens": 9000, "unique_tokens": 200, "pitch_classes_used": 12,
        "pitch_class_entropy": 3.5, "chord_ratio": 0.3, "longest_repeat": 8});
    p.write(
        &format!("reports/exp/{dir}/metrics.json"),
        serde_json::to_vec(&serde_json::json!({"generated": m, "corpus": corpus})).unwrap(),
    );
}

fn project() -> Project {
    let p = Project::new();
    fake_run(&p, "a", 8, 1, &[(3.0, 3.5), (2.0, 3.1), (1.5, 3.2)], 0.1);
    fake_run(&p, "b", 16, 1, &[(2.5, 3.0), (1.0, 2.9)], 0.9);
    p
}

#[test]
fn compare_prints_one_row_per_run_with_only_the_differing_parameters() {
    let p = project();
    // `--width 0`: every column (by default the table fits the terminal, or 160 characters).
    let out = p.pipeline(&["compare", "exp", "--width", "0"]).ok().stdout;
    let header = out.lines().next().unwrap();
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        columns[..4],
        ["run", "model.hidden", "epochs", "final_train_loss"],
        "{out}"
    );
    assert_eq!(out.lines().count(), 3);
    assert!(
        !header.contains("model.layers") && !header.contains("windows.seq_len"),
        "equal params are left out"
    );
    let csv = p
        .pipeline(&["compare", "exp", "--format", "csv"])
        .ok()
        .stdout;
    let rows = csv_rows(&csv);
    assert_eq!(rows.len(), 3);
    let col = |name: &str| {
        rows[0]
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    assert_eq!(rows[1][col("run")], "exp/a");
    assert_eq!(rows[1][col("model.hidden")], "8");
    assert_eq!(rows[1][col("epochs")], "3");
    assert_eq!(rows[1][col("final_train_loss")], "1.5000");
    assert_eq!(rows[1][col("best_val_loss")], "3.1000");
    assert_eq!(rows[1][col("final_val_loss")], "3.2000");
    assert_eq!(rows[2][col("best_train_loss")], "1.0000");
    assert_eq!(rows[2][col("train_seconds")], "12.5000");
    assert_eq!(rows[2][col("device")], "cpu");
    assert_eq!(rows[2][col("copy_rate_8")], "0.9000");
    assert_eq!(rows[2][col("longest_copy")], "12");
}

#[test]
fn compare_sorts_and_speaks_json() {
    let p = project();
    let json = p
        .pipeline(&[
            "compare",
            "--reports-dir",
            "reports",
            "--format",
            "json",
            "--sort",
            "best_val_loss",
        ])
        .ok()
        .stdout;
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        rows[0]["run"], "exp/b",
        "sorted by best validation loss, lowest first"
    );
    assert_eq!(rows[1]["model.hidden"], 8);
    let bad = p.pipeline(&["compare", "exp", "--sort", "nope"]);
    bad.fails_with(2, "no column `nope`");
    let missing = p.pipeline(&["compare", "nothing-here"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("neither a report folder nor an experiment"),
        "{}",
        missing.stderr
    );
}

#[test]
fn the_plot_is_a_valid_svg_with_one_curve_per_run() {
    let p = project();
    p.pipeline(&["compare", "exp", "--plot", "loss.svg"]).ok();
    let svg = std::fs::read_to_string(p.path("loss.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    // Each run is named once in the legend, by the parameter that differs.
    for label in ["hidden=8", "hidden=16"] {
        let n = doc
            .descendants()
            .filter(|n| n.is_text() && n.text().map(str::trim) == Some(label))
            .count();
        assert_eq!(n, 1, "legend entry {label}\n{svg}");
    }
    // One solid validation curve per run: a polyline through every epoch's point.
    let solid: Vec<usize> = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some("2"))
        .map(|n| {
            n.attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .count()
        })
        .filter(|&points| points >= 2)
        .collect();
    assert!(
        solid.contains(&3) && solid.contains(&2),
        "validation curves of 3 and 2 epochs: {solid:?}"
    );
}

#[test]
fn index_lists_every_run_and_its_links_resolve() {
    let p = tiny_project();
    p.pipeline(&["run", "exp.toml"]).ok();
    p.pipeline(&["run", "exp.toml", "--set", "model.hidden=12"])
        .ok();
    let reports = p.path("reports");
    let html = std::fs::read_to_string(reports.join("index.html")).unwrap();
    // The only script is the inline table sorter: nothing is fetched, so the page works from disk.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(!html.contains("<script src") && !html.contains("fetch("));
    let runs = html.matches("<tr class=\"run\">").count();
    assert_eq!(runs, 2, "{html}");
    assert_eq!(
        html.matches("<figure class=\"overlay\"><svg").count(),
        1,
        "one overlay chart"
    );
    assert!(
        !html.contains("http-equiv=\"refresh\""),
        "nothing in progress: no reloading"
    );
    assert!(
        html.contains("<th>model.hidden</th>"),
        "the differing parameter is a column"
    );
    let mut links = 0;
    for attr in ["href=\"", "src=\""] {
        for part in html.split(attr).skip(1) {
            let target = part.split('"').next().unwrap().replace("%20", " ");
            assert!(
                Path::new(&reports).join(&target).exists(),
                "broken link `{target}`"
            );
            links += 1;
        }
    }
    assert!(links > 10, "runs link their files: {links}");
    // The page is an ordinary file, readable as any other the user makes there (their umask decides), not private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let plain = reports.join("plain.txt");
        std::fs::write(&plain, "x").unwrap();
        assert_eq!(
            format!("{:o}", mode(&reports.join("index.html"))),
            format!("{:o}", mode(&plain))
        );
        std::fs::remove_file(plain).unwrap();
    }
    // A third run that computes nothing is a re-run of the first, not a third row.
    p.pipeline(&["run", "exp.toml"]).ok();
    let html = std::fs::read_to_string(reports.join("index.html")).unwrap();
    assert_eq!(html.matches("<tr class=\"run\">").count(), 2, "{html}");
    assert_eq!(
        html.matches("class=\"num reruns\" data-v=\"1\"").count(),
        1,
        "{html}"
    );
    assert!(html.contains("generated.mid") && html.contains("loss.svg"));
    // Each music metric stands beside the references made the same way (from the training files: this project
    // holds nothing out).
    let interval = html
        .split("<dt>mean interval</dt><dd>")
        .nth(1)
        .and_then(|rest| rest.split("</dd>").next())
        .expect("the mean interval is shown");
    for reference in ["training ", "shuffled ", "uniform "] {
        assert!(interval.contains(reference), "{interval}");
    }
}

/// A run reads again only its own experiment's folder for the index: another experiment's part is the one kept
/// from when that folder last changed, and is made again once it has.
#[test]
fn the_index_reads_again_only_the_experiment_that_changed() {
    let p = tiny_project();
    let text = std::fs::read_to_string(p.path("exp.toml")).unwrap();
    assert!(text.contains("name = \"test\""), "{text}");
    p.write(
        "other.toml",
        text.replace("name = \"test\"", "name = \"other\""),
    );
    p.pipeline(&["run", "exp.toml"]).ok();
    p.pipeline(&["run", "other.toml"]).ok();
    let index = || std::fs::read_to_string(p.path("reports/index.html")).unwrap();
    let html = index();
    assert!(html.contains("2 runs of 2 experiments"), "{html}");
    assert!(html.contains("<h2 id=\"test\">") && html.contains("<h2 id=\"other\">"));
    // `test`'s run folder, its manifest broken in place: the folder `reports/test` keeps its time.
    let test_runs: Vec<_> = std::fs::read_dir(p.path("reports/test"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(test_runs.len(), 1, "{test_runs:?}");
    std::fs::write(test_runs[0].join("manifest.json"), "not a manifest").unwrap();
    p.pipeline(&["run", "other.toml", "--set", "model.hidden=12"])
        .ok();
    let html = index();
    assert!(
        html.contains("3 runs of 2 experiments") && html.contains("<h2 id=\"test\">"),
        "a run of `other` read `test`'s folder again:\n{html}"
    );
    // Once `test`'s folder changes (its run removed), the next run reads it again.
    std::fs::remove_dir_all(&test_runs[0]).unwrap();
    p.pipeline(&["run", "other.toml"]).ok();
    let html = index();
    assert!(
        html.contains("3 runs of 1 experiment.") && !html.contains("<h2 id=\"test\">"),
        "{html}"
    );
}

/// A copied experiment that kept the original's `name` joins its runs: the run says so, once per switch of file.
#[test]
fn a_copy_that_keeps_the_name_is_warned_that_it_joins_the_original_s_runs() {
    let p = tiny_project();
    let text = std::fs::read_to_string(p.path("exp.toml")).unwrap();
    p.write("mine.toml", &text);
    let first = p.pipeline(&["run", "exp.toml"]).ok();
    assert!(!first.stderr.contains("warning: "), "{}", first.stderr);
    let copy = p.pipeline(&["run", "mine.toml"]).ok();
    assert!(
        copy.stderr
            .contains("warning: `mine.toml` writes its runs under")
            && copy.stderr.contains("exp.toml")
            && copy.stderr.contains("give this file a `name` of its own"),
        "{}",
        copy.stderr
    );
    let again = p.pipeline(&["run", "mine.toml"]).ok();
    assert!(!again.stderr.contains("another file"), "{}", again.stderr);
    // Without `name`, the file's stem names it: no shared folder, no warning.
    p.write("solo.toml", text.replace("name = \"test\"\n", ""));
    let solo = p.pipeline(&["run", "solo.toml"]).ok();
    assert!(!solo.stderr.contains("another file"), "{}", solo.stderr);
    assert!(p.path("reports/solo").is_dir());
}

/// Five runs of one experiment, four of them cached re-runs, are one row that counts the re-runs, in 160 characters
/// a line by default; the columns left out are named, `--width 0` and `--columns` bring them back.
#[test]
fn cached_re_runs_fold_into_one_row_that_fits_the_terminal() {
    let p = tiny_project();
    for _ in 0..5 {
        p.pipeline(&["run", "exp.toml"]).ok();
    }
    let fitted = p.pipeline(&["compare", "test"]).ok();
    let lines: Vec<&str> = fitted.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one row:\n{}", fitted.stdout);
    let widest = lines.iter().map(|l| l.chars().count()).max().unwrap();
    assert!(widest <= 160, "{widest} characters:\n{}", fitted.stdout);
    // Cells can be blank, so a column is read where its name starts.
    let cell = |name: &str| -> String {
        let header: Vec<char> = lines[0].chars().collect();
        let at = lines[0]
            .find(&format!(" {name}"))
            .map(|b| lines[0][..b + 1].chars().count())
            .unwrap_or_else(|| panic!("no `{name}` column:\n{}", fitted.stdout));
        assert!(header.len() > at);
        let row: String = lines[1].chars().skip(at).collect();
        row.split_whitespace().next().unwrap_or("").to_string()
    };
    assert_eq!(cell("reruns"), "4", "{}", fitted.stdout);
    assert!(
        cell("best_val_loss").parse::<f64>().is_ok(),
        "{}",
        fitted.stdout
    );
    assert!(
        fitted
            .stderr
            .contains("columns left out to fit 160 characters")
            && fitted.stderr.contains("--width 0"),
        "{}",
        fitted.stderr
    );

    let all = p.pipeline(&["compare", "test", "--width", "0"]).ok();
    assert!(
        all.stdout
            .lines()
            .next()
            .unwrap()
            .contains("interval_distance"),
        "{}",
        all.stdout
    );
    assert!(!all.stderr.contains("left out"), "{}", all.stderr);

    let picked = p
        .pipeline(&["compare", "test", "--columns", "best_val_loss,reruns"])
        .ok();
    let header: Vec<&str> = picked
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["best_val_loss", "reruns"], "{}", picked.stdout);
    let csv = p
        .pipeline(&[
            "compare",
            "test",
            "--format",
            "csv",
            "--columns",
            "run,reruns",
        ])
        .ok();
    assert_eq!(csv.stdout.lines().count(), 2, "{}", csv.stdout);
    assert!(csv.stdout.ends_with(",4\n"), "{}", csv.stdout);

    let wrong = p.pipeline(&["compare", "test", "--columns", "best_val_los"]);
    wrong.fails_with(2, "no column `best_val_los`");
    assert!(
        wrong.stderr.contains("did you mean `best_val_loss`?"),
        "{}",
        wrong.stderr
    );
}

/// A copy of an experiment pointed at another corpus shows it: `compare` adds a `source` column (file count and
/// content hash) when the runs' corpora differ, and an `experiment` column when the runs' experiments do.
#[test]
fn compare_shows_which_corpus_each_run_read_when_they_differ() {
    let p = tiny_project();
    p.pipeline(&["run", "exp.toml"]).ok();
    p.midi(
        "other/c.mid",
        &[melody(0, &[60, 64, 67, 72, 67, 64, 60, 64, 67, 72])],
    );
    p.midi(
        "other/d.mid",
        &[melody(0, &[62, 65, 69, 74, 69, 65, 62, 65, 69, 74])],
    );
    p.midi(
        "other/e.mid",
        &[melody(0, &[64, 67, 71, 76, 71, 67, 64, 67, 71, 76])],
    );
    let text = std::fs::read_to_string(p.path("exp.toml")).unwrap();
    p.write(
        "other.toml",
        text.replace("name = \"test\"\n", "")
            .replace("\"midi\"", "\"other\""),
    );
    p.pipeline(&["run", "other.toml"]).ok();
    let out = p.pipeline(&["compare", "--width", "0"]).ok().stdout;
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header[..3], ["run", "experiment", "source"], "{out}");
    assert!(
        out.contains("2 files ") && out.contains("3 files "),
        "{out}"
    );
    let same = p.pipeline(&["compare", "test", "--width", "0"]).ok().stdout;
    assert!(!same.lines().next().unwrap().contains("source"), "{same}");
}

/// Two runs that share their training and differ only in sampling drew the same loss curve: the chart draws it
/// once, and names no curve by a parameter that cannot change a loss.
#[test]
fn the_plot_draws_a_shared_training_once_and_never_labels_by_sampling() {
    let p = tiny_project();
    p.pipeline(&["run", "exp.toml"]).ok();
    p.pipeline(&["run", "exp.toml", "--set", "music.temperature=0.5"])
        .ok();
    p.pipeline(&["run", "exp.toml", "--set", "model.hidden=12"])
        .ok();
    p.pipeline(&["compare", "test", "--plot", "loss.svg"]).ok();
    let svg = std::fs::read_to_string(p.path("loss.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    let legend: Vec<&str> = doc
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text().map(str::trim))
        .filter(|t| t.contains('='))
        .collect();
    assert_eq!(legend.len(), 2, "one entry per training: {legend:?}");
    assert!(
        legend
            .iter()
            .all(|l| l.starts_with("hidden=") && !l.contains("temperature")),
        "{legend:?}"
    );
}
