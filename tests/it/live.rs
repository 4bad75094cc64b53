//! Following runs as they go: the live board on a real pseudo-terminal (`script` from util-linux), `pipeline ps`
//! from another process, the files a run keeps (`progress.json`, its lock, the cache's pointer) and what is left of
//! them after a kill.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// A project whose trainings take a few seconds each: a long melody, so an epoch has many batches.
fn slow_project(epochs: u32, sweep: &str) -> Project {
    let p = Project::new();
    // Validation windows come from held-out files: two files, one of them held out.
    for (name, step) in [("a", 7), ("b", 5)] {
        let keys: Vec<u8> = (0..600).map(|i| 55 + ((i * step) % 19) as u8).collect();
        p.midi(&format!("midi/{name}.mid"), &[melody(0, &keys)]);
    }
    let train = format!(
        "layers = 1\nhidden = 48\ndense = 16\ndropout = 0.1\ninput = \"embedding\"\nembed_dim = 8\n\
         epochs = {epochs}\nbatch_size = 8\nseed = 1"
    );
    let exp = experiment(&train, "length = 6\nseed = 3").replace(
        "seq_len = 4\nval_fraction = 0.0",
        "seq_len = 8\nval_fraction = 0.2",
    );
    p.write("exp.toml", exp + sweep);
    p
}

const ROWS: u16 = 50;
const COLS: u16 = 200;

/// What the terminal showed over time: the screen (as a terminal emulator, vt100, draws it) each time indicatif
/// is about to redraw the board (it moves the cursor up, `ESC [ n A`, over the last frame), and at the end.
fn screens(raw: &[u8]) -> Vec<String> {
    let size = |n: u16| std::num::NonZero::new(n).expect("not zero");
    let mut parser = vt100::Parser::new(size(ROWS), size(COLS), 0);
    let mut shots = Vec::new();
    let mut done = 0;
    for i in 0..raw.len() {
        let rest = &raw[i..];
        let digits = rest
            .iter()
            .skip(2)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if rest.starts_with(b"\x1b[") && digits > 0 && rest.get(2 + digits) == Some(&b'A') {
            parser.process(&raw[done..i]);
            done = i;
            shots.push(rows(parser.screen()));
        }
    }
    parser.process(&raw[done..]);
    shots.push(rows(parser.screen()));
    shots
}

/// The screen's rows, one line each (indicatif pads its lines to the full width, which `contents()` would take for
/// one wrapped line).
fn rows(screen: &vt100::Screen) -> String {
    screen.rows(0, COLS).collect::<Vec<_>>().join("\n")
}

/// `pipeline ARGS` under a pseudo-terminal of `script` (ROWS × COLS); its exit code and the screens it showed.
fn under_terminal(p: &Project, args: &str) -> (i32, Vec<String>) {
    let log = p.path("typescript");
    let command = format!(
        "stty rows {ROWS} cols {COLS}; {} {args}",
        env!("CARGO_BIN_EXE_pipeline")
    );
    let status = Command::new("script")
        .args(["-q", "-e", "-f", "-c", &command])
        .arg(&log)
        .current_dir(p.dir.path())
        .env_remove("PIPELINE_CACHE")
        .env_remove("PIPELINE_REPORTS")
        .env_remove("PIPELINE_REMOTE")
        .env("TERM", "xterm-256color")
        .stdin(std::process::Stdio::null())
        // Everything the terminal got is in the typescript; keep it off the test harness's stdout.
        .stdout(std::process::Stdio::null())
        .status()
        .expect("script runs");
    let raw = std::fs::read(&log).expect("script wrote the typescript");
    // The file starts with script's own `Script started on …` line, which the terminal never showed.
    let raw = raw
        .iter()
        .position(|&b| b == b'\n')
        .map_or(&raw[..], |i| &raw[i + 1..]);
    (status.code().unwrap_or(-1), screens(raw))
}

#[test]
fn the_live_board_shows_every_point_and_a_failure_while_the_others_run() {
    if !require("pty") {
        return;
    }
    // seq_len = 900 leaves no training windows: that point fails in `windows` at once, the others train on.
    let sweep = "\n[sweep]\n\"windows.seq_len\" = [6, 8, 900, 10]\n";
    let p = slow_project(60, sweep);
    let (code, screens) = under_terminal(&p, "run exp.toml -j 4 --keep-going");
    let last = screens.last().expect("at least one screen");
    assert_eq!(code, 1, "one point failed:\n{last}");
    let lines = |screen: &str| screen.lines().map(str::to_string).collect::<Vec<_>>();
    let all: Vec<String> = screens.iter().flat_map(|s| lines(s)).collect();
    for label in ["seq_len=6 ", "seq_len=8 ", "seq_len=10 "] {
        assert!(
            all.iter().any(|l| l.starts_with(label)
                && l.contains("  model  epoch ")
                && l.contains(" train ")
                && l.contains(" val ")
                && l.contains(" ETA ")),
            "a board line for {label} with its epoch, losses and ETA:\n{last}"
        );
    }
    // Said the moment it happened: a screen shows the failure above the board, the failed point's line on it, and
    // the other points still training (an epoch short of the last).
    let unfinished = |l: &str| {
        l.split("  model  epoch ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|k| k.split_once('/'))
            .is_some_and(|(k, n)| k.parse::<u32>().unwrap() < n.parse::<u32>().unwrap())
    };
    let during = screens.iter().find(|s| {
        s.contains("failed windows [seq_len=900]: no training windows")
            && s.lines().any(|l| {
                l.starts_with("seq_len=900") && l.contains("  windows  failed: no training windows")
            })
            && s.lines().filter(|l| unfinished(l)).count() >= 2
            && s.contains("4 points: ")
    });
    assert!(
        during.is_some(),
        "no screen shows the failure while the others train; the screens:\n{}",
        screens.join("\n-----\n")
    );
    // The run is over: nothing is left that says it runs.
    let dir = p.path("reports/test");
    let run = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(!run.join("progress.json").exists());
    assert!(!run.join("progress.lock").exists());
    assert_eq!(runs_pointers(&p.path("cache")), 0);
}

#[test]
fn without_a_terminal_the_lines_stay_plain() {
    let p = slow_project(3, "\n[sweep]\n\"windows.seq_len\" = [6, 8]\n");
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert!(!run.stderr.contains('\u{1b}'), "{}", run.stderr);
    assert!(!run.stderr.contains("points: "), "{}", run.stderr);
    assert!(
        run.stderr.contains("ran model [seq_len=6]"),
        "{}",
        run.stderr
    );
}

fn runs_pointers(cache: &Path) -> usize {
    std::fs::read_dir(cache.join("v1/runs")).map_or(0, |d| d.count())
}

/// Polls `pipeline ps` until `accept` takes its output.
#[track_caller]
fn ps_until(p: &Project, accept: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let ps = p.pipeline(&["ps"]).ok();
        if accept(&ps.stdout) {
            return ps.stdout;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "`pipeline ps` never showed it:\n{}",
            ps.stdout
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ps_follows_a_run_from_another_process_and_forgets_a_killed_one() {
    let p = slow_project(400, "");
    let quiet = p.pipeline(&["ps"]).ok();
    assert_eq!(quiet.stdout.trim(), "no runs in progress on `cache`");

    let run = Spawned::start(&p, &["run", "exp.toml"]);
    let out = ps_until(&p, |out| out.contains(" epoch ") && out.contains(" ETA "));
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("test ") && first.contains(&format!("pid {}", run.child.id())),
        "{out}"
    );
    let line = out.lines().nth(1).unwrap();
    assert!(line.starts_with("  test  model  epoch "), "{out}");
    assert!(
        line.contains("/400 [") && line.contains("]  train ") && line.contains("  val "),
        "{out}"
    );
    assert!(
        out.contains("1 point: 0 done, 1 running, 0 queued, 0 failed"),
        "{out}"
    );

    // The board in the report folder says the same, and the index marks the run as in progress.
    let dir: PathBuf = first.split("  ").last().unwrap().trim().into();
    let board: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("progress.json")).unwrap()).unwrap();
    assert_eq!(board["experiment"], "test");
    assert_eq!(board["pid"], run.child.id());
    let epoch = &board["points"][0]["epoch"];
    assert_eq!(epoch["stage"], "model");
    assert_eq!(epoch["epochs"], 400);
    assert!(epoch["train_loss"].as_f64().unwrap() > 0.0);
    let index = std::fs::read_to_string(p.path("reports/index.html")).unwrap();
    assert!(
        index.contains("<span class=\"badge\">in progress</span>")
            && index.contains("<meta http-equiv=\"refresh\""),
        "the index marks the run in progress and reloads itself:\n{index}"
    );
    // As the run goes, the page it rewrites shows the board's epochs.
    let started = Instant::now();
    while !std::fs::read_to_string(p.path("reports/index.html"))
        .unwrap()
        .contains("  model  epoch ")
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the index never showed the training's epoch"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Killed without a chance to clean up: `ps` sees the lock released and forgets the run.
    run.signal(libc::SIGKILL);
    let _ = run.exit();
    let out = ps_until(&p, |out| out.contains("no runs in progress"));
    assert_eq!(out.trim(), "no runs in progress on `cache`");
    assert_eq!(
        runs_pointers(&p.path("cache")),
        0,
        "the stale pointer is gone"
    );
}

/// Runs `pipeline ARGS`, failing the test if it has not ended within 30 s (instead of hanging the suite).
fn within_30s(p: &Project, args: &[&str]) -> std::process::Output {
    let mut child = p
        .command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!("`pipeline {}` hung", args.join(" "));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn fifos_in_a_report_folder_hang_nothing() {
    let p = midi_project();
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let report = run.report.clone().unwrap();
    for name in ["progress.json", "progress.lock", "loss.csv"] {
        let made = std::process::Command::new("mkfifo")
            .arg(report.join(name))
            .status()
            .unwrap();
        assert!(made.success());
    }
    // A pointer in the cache leads `ps` to that folder.
    let pointer = serde_json::json!({ "report_dir": std::fs::canonicalize(&report).unwrap() });
    p.write(
        "cache/v1/runs/1-2.json",
        serde_json::to_vec(&pointer).unwrap(),
    );
    for args in [&["ps"][..], &["run", "exp.toml"], &["compare"]] {
        let out = within_30s(&p, args);
        assert!(
            out.status.success(),
            "`pipeline {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
