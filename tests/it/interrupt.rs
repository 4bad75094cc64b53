//! Killing the process (SIGKILL) mid-run never leaves a cache entry that a later run trusts: every entry in the
//! cache is complete and intact, and the next run finishes with exactly the results of an uninterrupted one.
//! Training continues from its last completed epoch after SIGKILL or Ctrl-C; Ctrl-C exits 130 and says what finished.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// Every entry directory holds a record whose hashes match its files. Returns how many there are.
pub(crate) fn assert_cache_intact(cache: &Path) -> usize {
    let mut count = 0;
    let entries = cache.join("v1/entries");
    let Ok(shards) = std::fs::read_dir(&entries) else {
        return 0;
    };
    for shard in shards {
        for entry in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let dir = entry.unwrap().path();
            let record: serde_json::Value = serde_json::from_slice(
                &std::fs::read(dir.join("record.json"))
                    .unwrap_or_else(|e| panic!("{}: no record: {e}", dir.display())),
            )
            .unwrap_or_else(|e| panic!("{}: unreadable record: {e}", dir.display()));
            let output = std::fs::read(dir.join("output.bin")).unwrap();
            assert_eq!(
                blake3::hash(&output).to_hex().as_str(),
                record["output"]["hash"].as_str().unwrap(),
                "{}",
                dir.display()
            );
            count += 1;
        }
    }
    count
}

fn output_hashes(run: &Run) -> Vec<Option<pipeline::Hash>> {
    ALL_STAGES
        .iter()
        .map(|s| run.stage(s).output_hash)
        .collect()
}

#[test]
fn sigkill_at_any_moment_leaves_no_trusted_partial_entry() {
    let p = Project::new();
    // Enough music that the run takes a while even in a debug build.
    for f in 0..60u32 {
        let keys: Vec<u8> = (0..1500u32)
            .map(|i| 40 + ((i * 7 + f * 3) % 40) as u8)
            .collect();
        p.midi(
            &format!("midi/{f:03}.mid"),
            &[melody(0, &keys), melody(1, &keys[..700])],
        );
    }
    p.write("exp.toml", PIPELINE_TOML);

    let reference = p
        .pipeline(&["run", "exp.toml", "--cache-dir", "reference"])
        .ok();
    let expected = output_hashes(&reference);

    // Each kill comes as the run starts the second stage it has to compute (`running`, which `-v` prints): the
    // first one is then done and the second in progress. Kills land at points the run itself announces, not after
    // sleeps that a faster machine or a cached stage outruns, and every round gets further.
    let mut entries = 0;
    let mut rounds = 0;
    while entries + 2 <= ALL_STAGES.len() {
        let run = Spawned::start(&p, &["run", "exp.toml", "--cache-dir", "interrupted", "-v"]);
        run.wait_for("running ");
        let stage = run.wait_for("running ");
        run.signal(libc::SIGKILL); // no cleanup runs
        let (_, _, stderr) = run.exit();
        let now = assert_cache_intact(&p.path("interrupted"));
        // The first stage is stored; later ones may have finished before the signal landed (a busy machine delays
        // this test's reading of the line, not the run).
        assert!(
            now > entries,
            "killed at `{stage}`: {entries} entries before, {now} after\n{stderr}"
        );
        entries = now;
        rounds += 1;
    }
    assert!(rounds >= 2, "{rounds} kills");
    let resumed = p
        .pipeline(&["run", "exp.toml", "--cache-dir", "interrupted"])
        .ok();
    assert_eq!(output_hashes(&resumed), expected);
    assert_cache_intact(&p.path("interrupted"));
}

/// Music for a training that takes a couple of seconds: ~40 epochs of ~50 ms.
pub(crate) fn training_project() -> Project {
    let p = Project::new();
    for f in 0..10u32 {
        let keys: Vec<u8> = (0..600u32)
            .map(|i| 48 + ((i * 5 + f * 7 + i / 9) % 24) as u8)
            .collect();
        p.midi(&format!("midi/{f:02}.mid"), &[melody(0, &keys)]);
    }
    let train = "layers = 1\nhidden = 16\ndense = 8\ndropout = 0.1\ninput = \"embedding\"\nembed_dim = 4\n\
                 epochs = 40\nbatch_size = 32\nseed = 1";
    p.write("exp.toml", experiment(train, "length = 20"));
    p
}

/// Rows of the live `loss.csv` of the (only) run under `reports`.
pub(crate) fn epochs_done(reports: &Path) -> usize {
    let Ok(runs) = std::fs::read_dir(reports.join("test")) else {
        return 0;
    };
    runs.filter_map(|r| std::fs::read_to_string(r.ok()?.path().join("loss.csv")).ok())
        .map(|text| text.lines().count().saturating_sub(1))
        .max()
        .unwrap_or(0)
}

/// Starts the training of `p` into the cache `live` and sends it `signal` once its live `loss.csv` shows two
/// epochs; what the stopped process printed.
fn stop_after_two_epochs(p: &Project, signal: i32) -> std::process::Output {
    let child = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(["run", "exp.toml", "--cache-dir", "live"])
        .current_dir(p.dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while epochs_done(&p.path("reports")) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "training never got going"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: signalling our own child process by its id.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    child.wait_with_output().unwrap()
}

/// The uninterrupted run of `p`'s experiment, into a cache and reports folder of its own: what a stopped and
/// resumed one must equal.
pub(crate) fn reference_run(p: &Project) -> Run {
    reference_run_with(p, &[])
}

/// [`reference_run`] with more arguments (`--set …`).
fn reference_run_with(p: &Project, more: &[&str]) -> Run {
    let mut args = vec![
        "run",
        "exp.toml",
        "--cache-dir",
        "reference",
        "--reports-dir",
        "ref-reports",
    ];
    args.extend_from_slice(more);
    p.pipeline(&args).ok()
}

/// Starts a training, sends `signal` once two epochs are done, checks what the stopped process left, then runs
/// again: the training continues from its checkpoint and ends exactly where an uninterrupted one does.
fn stop_training_and_resume(signal: i32) -> std::process::Output {
    let p = training_project();
    let reference = reference_run(&p);

    let stopped = stop_after_two_epochs(&p, signal);
    let done = epochs_done(&p.path("reports"));
    assert!(done < 40, "the signal came after training finished");
    assert_cache_intact(&p.path("live"));
    let checkpoints: Vec<_> = std::fs::read_dir(p.path("live/v1/checkpoints"))
        .unwrap()
        .collect();
    assert_eq!(checkpoints.len(), 1, "one training checkpoint");

    let resumed = p.pipeline(&["run", "exp.toml", "--cache-dir", "live"]).ok();
    let from = resumed_after(&resumed.stderr);
    assert!(from >= 2, "resumed from epoch {from}");
    assert_eq!(resumed.weights(), reference.weights());
    assert_eq!(resumed.losses(), reference.losses());
    assert_eq!(
        std::fs::read_dir(p.path("live/v1/checkpoints"))
            .unwrap()
            .count(),
        0,
        "the checkpoint is removed once the model is cached"
    );
    stopped
}

#[test]
fn ctrl_c_stops_cleanly_with_130_and_training_resumes_from_its_last_epoch() {
    let stopped = stop_training_and_resume(libc::SIGINT);
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(stopped.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(
            "interrupted: 6 stage(s) ran and 0 were cached before the stop; stopped during `model`"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("training resumes from its last completed epoch"),
        "{stderr}"
    );
}

#[test]
fn sigkill_mid_training_resumes_from_the_last_completed_epoch() {
    let stopped = stop_training_and_resume(libc::SIGKILL);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(stopped.status.signal(), Some(libc::SIGKILL));
}

/// A checkpoint names the training it belongs to: another training's, of the same shape, copied under this one's
/// key (a shared cache, a remote), is refused, and this training starts from scratch and ends where it should.
#[test]
fn another_trainings_checkpoint_under_this_key_is_never_resumed() {
    let p = training_project();
    // The other training: same shape, another seed. Its reference result and its key.
    let other = ["--set", "model.seed=2"];
    let reference = reference_run_with(&p, &other);
    let key = reference.stage("model").fingerprint.unwrap().hex();

    // Seed 1 killed after two epochs leaves its checkpoint; it is copied to where seed 2's would be.
    stop_after_two_epochs(&p, libc::SIGKILL);
    let dir = p.path("live/v1/checkpoints");
    let theirs = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&theirs, dir.join(format!("{key}.bin"))).unwrap();

    let mut args = vec!["run", "exp.toml", "--cache-dir", "live"];
    args.extend(other);
    let run = p.pipeline(&args).ok();
    assert!(!run.stderr.contains("resuming from the"), "{}", run.stderr);
    assert_eq!(run.weights(), reference.weights());
    assert_eq!(run.losses(), reference.losses());
}

/// With a learning-rate schedule and gradient clipping, a training killed mid-way and resumed ends exactly where an
/// uninterrupted one does (the schedule is a function of the epoch and the losses so far), and the settings change
/// the result.
#[test]
fn a_scheduled_clipped_training_resumes_bit_identically() {
    let p = training_project();
    let text = std::fs::read_to_string(p.path("exp.toml"))
        .unwrap()
        .replace(
            "epochs = 40",
            "epochs = 40\nlr_schedule = \"cosine\"\nwarmup = 2\nclip_norm = 0.5",
        );
    assert!(text.contains("cosine"));
    let plain = p
        .pipeline(&[
            "run",
            "exp.toml",
            "--cache-dir",
            "plain",
            "--reports-dir",
            "plain-reports",
        ])
        .ok();
    p.write("exp.toml", &text);
    let reference = reference_run(&p);
    assert_ne!(
        reference.weights(),
        plain.weights(),
        "the schedule made no difference"
    );
    stop_after_two_epochs(&p, libc::SIGKILL);
    let resumed = p.pipeline(&["run", "exp.toml", "--cache-dir", "live"]).ok();
    assert!(resumed_after(&resumed.stderr) >= 2);
    assert_eq!(resumed.weights(), reference.weights());
    assert_eq!(resumed.losses(), reference.losses());
    // The summary says where the schedule left the rate: the cosine's value for the 40th epoch after 2 of warm-up
    // (the default rate, 0.001, goes down to nearly 0); without a schedule, the rate as given.
    let rate = |run: &Run| {
        run.stage("model").summary()["final_learning_rate"]
            .as_f64()
            .unwrap()
    };
    let cosine = 0.001 * 0.5 * (1.0 + (std::f64::consts::PI * 37.0 / 38.0).cos());
    assert!(
        (rate(&resumed) - cosine).abs() < 1e-12,
        "{}",
        rate(&resumed)
    );
    assert_eq!(rate(&plain), 0.001);
}
