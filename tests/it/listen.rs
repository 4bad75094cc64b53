//! The blind listening test: `pipeline listen` writes one self-contained page of clip pairs (the LSTM's pieces, the
//! n-gram floor's, held-out excerpts), played in headless Chromium from disk with no label in the DOM until every
//! pair is answered by mouse or keyboard; the exported answers give each source's preference rate with Wilson's
//! interval, checked against the formula worked by hand; bad input is a located error.

use crate::ngram::{floor_project, floor_toml};
use crate::support::*;

/// Wilson's 95 % score interval, written out here from its textbook formula (the binary uses statrs' quantile).
fn wilson(k: f64, n: f64) -> (f64, f64) {
    let z = 1.959_963_984_540_054_f64;
    let p = k / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The floor experiment with its LSTM's sample stage named so that no word of the page's own text can be mistaken
/// for it.
fn listening_project() -> Project {
    let p = floor_project();
    p.write(
        "exp.toml",
        floor_toml()
            .replace("[stages.music]", "[stages.lstm_pieces]")
            .replace("length = 30", "length = 60"),
    );
    p.pipeline(&["run", "exp.toml"]).ok();
    p
}

fn json(tab: &headless_chrome::Tab, expression: &str) -> serde_json::Value {
    let result = tab
        .evaluate(expression, true)
        .expect("the page runs the check");
    serde_json::from_str(
        result
            .value
            .expect("a value")
            .as_str()
            .expect("a JSON string"),
    )
    .unwrap()
}

#[test]
fn a_blind_listening_test_in_chromium_records_every_choice() {
    if !require("chromium") || !require("soundfont") {
        return;
    }
    let p = listening_project();
    let listen = p
        .pipeline(&[
            "listen",
            "floor",
            "--pairs",
            "2",
            "--seconds",
            "3",
            "--seed",
            "5",
            "--out",
            "listen.html",
        ])
        .ok();
    assert!(listen.stderr.contains("6 pairs of"), "{}", listen.stderr);
    assert!(
        listen.stderr.contains("held-out, lstm_pieces, floor_music")
            || listen.stderr.contains("3 sources"),
        "{}",
        listen.stderr
    );
    let page = p.path("listen.html");
    let html = std::fs::read_to_string(&page).unwrap();
    for label in ["lstm_pieces", "floor_music", "held-out", ".mid"] {
        assert!(
            !html.contains(label),
            "the page names `{label}` before the end"
        );
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page loads nothing from the network"
    );

    let browser = chromium(1200, 900);
    let tab = browser.new_tab().unwrap();
    tab.navigate_to(&format!("file://{}", page.display()))
        .unwrap();
    tab.wait_until_navigated().unwrap();
    let dom = || {
        json(&tab, "JSON.stringify(document.documentElement.outerHTML)")
            .as_str()
            .unwrap()
            .to_string()
    };
    // Both clips play for the length they were cut to.
    let duration = json(
        &tab,
        "new Promise(r => { const a = document.getElementById('second'); \
         const done = () => r(JSON.stringify(a.duration)); \
         if (a.readyState >= 1) done(); else a.addEventListener('loadedmetadata', done); })",
    );
    assert!(
        (duration.as_f64().unwrap() - 3.0).abs() < 0.05,
        "{duration}"
    );
    let mut made = Vec::new();
    for trial in 0..6 {
        let before = dom();
        for label in ["lstm_pieces", "floor_music", "held-out"] {
            assert!(
                !before.contains(label),
                "trial {}: the DOM names `{label}`",
                trial + 1
            );
        }
        assert!(before.contains(&format!("Pair {} of 6", trial + 1)));
        // Mouse and keyboard, both sides.
        match trial % 4 {
            0 => tab
                .find_element("#choose-first")
                .unwrap()
                .click()
                .map(|_| ())
                .unwrap(),
            1 => tab
                .find_element("#choose-second")
                .unwrap()
                .click()
                .map(|_| ())
                .unwrap(),
            2 => tab.press_key("a").map(|_| ()).unwrap(),
            _ => tab.press_key("ArrowRight").map(|_| ()).unwrap(),
        }
        made.push(if trial % 2 == 0 { "first" } else { "second" });
    }
    let answers = json(
        &tab,
        "JSON.stringify(document.getElementById('answers').textContent)",
    );
    let answers: serde_json::Value = serde_json::from_str(answers.as_str().unwrap()).unwrap();
    let trials = answers["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 6);
    for (t, chose) in trials.iter().zip(&made) {
        assert_eq!(t["chosen"], *chose, "{t}");
        assert_ne!(t["first"], t["second"], "a pair is two sources: {t}");
    }
    // Every two sources met twice; the labels are shown now.
    let after = dom();
    for label in ["lstm_pieces", "floor_music", "held-out"] {
        assert!(after.contains(label), "the results name `{label}`");
    }
    save_screenshot(&tab, "listen-results.png");

    // The summary from the exported answers, against the formula.
    p.write("answers.json", serde_json::to_vec_pretty(&answers).unwrap());
    let results = p.pipeline(&["listen", "--results", "answers.json"]).ok();
    for source in ["lstm_pieces", "floor_music", "held-out"] {
        let (mut k, mut n) = (0.0, 0.0);
        for t in trials {
            if t["first"] == source || t["second"] == source {
                n += 1.0;
                let chosen = &t[t["chosen"].as_str().unwrap()];
                k += f64::from(u8::from(chosen == source));
            }
        }
        let (lo, hi) = wilson(k, n);
        let line = results
            .stdout
            .lines()
            .find(|l| l.starts_with(source))
            .expect(source);
        assert!(
            line.contains(&format!("{lo:.3}–{hi:.3}")),
            "{line} vs {lo:.3}–{hi:.3}"
        );
        assert!(line.contains(&format!(" {n:>4} ")), "{line}: n = {n}");
    }
}

#[test]
fn listening_results_reproduce_wilson_intervals_by_hand() {
    let p = Project::new();
    // `a` chosen in 8 of its 10 pairs, `b` in 2 of 10.
    let trials: Vec<serde_json::Value> = (0..10)
        .map(|i| {
            serde_json::json!({"trial": i + 1, "first": "a", "second": "b", "first_file": "x.mid",
                               "second_file": "y.mid", "chosen": if i < 8 { "first" } else { "second" }})
        })
        .collect();
    p.write(
        "answers.json",
        serde_json::to_vec(&serde_json::json!({"format": "pipeline-listen-1", "seed": 1, "seconds": 15.0, "trials": trials}))
            .unwrap(),
    );
    let out = p.pipeline(&["listen", "--results", "answers.json"]).ok();
    // By hand, z = 1.96: 8 of 10 → centre 0.99207 / 1.38415 = 0.71674, half 0.22658 → 0.490–0.943; 2 of 10 is its
    // mirror image, 0.057–0.510.
    let a = out.stdout.lines().find(|l| l.starts_with("a ")).unwrap();
    let b = out.stdout.lines().find(|l| l.starts_with("b ")).unwrap();
    assert!(a.contains("8    10  0.800  0.490–0.943"), "{}", out.stdout);
    assert!(b.contains("2    10  0.200  0.057–0.510"), "{}", out.stdout);
    assert_eq!((wilson(8.0, 10.0).0 * 1000.0).round(), 490.0);
}

#[test]
fn bad_listening_input_gets_located_errors() {
    // No pieces: a run without a sample stage.
    let p = midi_project();
    p.pipeline(&["run", "exp.toml"]).ok();
    p.pipeline(&["listen", "test"]).fails_with(2, "no pieces");
    // One source only: nothing held out, no floor.
    let t = tiny_project();
    t.pipeline(&["run", "exp.toml"]).ok();
    t.pipeline(&["listen", "test"])
        .fails_with(2, "only one source of pieces");
    t.pipeline(&["listen", "no-such-run"])
        .fails_with(2, "`no-such-run` is neither a report folder");
    t.pipeline(&["listen"])
        .fails_with(2, "the following required arguments were not provided");
    // Answers that are not answers.
    t.write("bad.json", "{\"trials\": 3}");
    t.pipeline(&["listen", "--results", "bad.json"])
        .fails_with(2, "is not a listening test's answers");
    t.write(
        "odd.json",
        r#"{"format": "pipeline-listen-1", "seed": 1, "seconds": 1, "trials": [{"trial": 1, "first": "a",
            "second": "b", "first_file": "", "second_file": "", "chosen": "third"}]}"#,
    );
    t.pipeline(&["listen", "--results", "odd.json"])
        .fails_with(2, "trial 1 chose `third`");
    t.pipeline(&["listen", "--results", "missing.json"])
        .fails_with(2, "cannot read `missing.json`");
}
