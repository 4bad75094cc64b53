//! Two `pipeline run` processes on one cache at the same time: both finish, every entry stays intact, and a stage
//! both need is computed once while the other process waits for it.

mod common;

use std::process::{Child, Command, Stdio};

use common::*;

fn spawn(p: &Project, experiment: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(["run", experiment])
        .current_dir(p.dir.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// (stdout, stderr) of a finished child, which must have succeeded.
fn finish(child: Child) -> (String, String) {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// The manifest of the report a run printed the path of.
fn manifest(p: &Project, stdout: &str) -> serde_json::Value {
    read_manifest(&p.path(stdout.lines().last().unwrap().trim()))
}

/// Waits until some process has held one entry's lock for a while: the training is under way (the MIDI stages take
/// milliseconds), so a second process started now must meet it.
fn wait_for_training(p: &Project) {
    let held = || -> Option<std::path::PathBuf> {
        std::fs::read_dir(p.path("cache/v1/locks"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|path| {
                std::fs::File::open(path)
                    .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
            })
    };
    let started = std::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no training started"
        );
        if let Some(lock) = held() {
            std::thread::sleep(std::time::Duration::from_millis(150));
            let still = std::fs::File::open(&lock)
                .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)));
            if still {
                return;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Music enough for a training of a second or two.
fn project() -> Project {
    let p = Project::new();
    for f in 0..6u32 {
        let keys: Vec<u8> = (0..400u32)
            .map(|i| 50 + ((i * 3 + f * 5 + i / 7) % 20) as u8)
            .collect();
        p.midi(&format!("midi/{f}.mid"), &[melody(0, &keys)]);
    }
    let train = "layers = 1\nhidden = 16\ndense = 8\ndropout = 0.1\ninput = \"embedding\"\nembed_dim = 4\n\
                 epochs = 200\nbatch_size = 16\nseed = 3";
    p.write(
        "a.toml",
        experiment(train, "length = 20\nseed = 1").replace("name = \"test\"", "name = \"a\""),
    );
    // Shares every stage with `a` but the sampling.
    p.write(
        "b.toml",
        experiment(train, "length = 30\nseed = 2").replace("name = \"test\"", "name = \"b\""),
    );
    p
}

#[test]
fn two_runs_of_one_experiment_compute_each_stage_once() {
    let p = project();
    let first = spawn(&p, "a.toml");
    wait_for_training(&p);
    let second = spawn(&p, "a.toml");
    let (out1, err1) = finish(first);
    let (out2, err2) = finish(second);
    let (m1, m2) = (manifest(&p, &out1), manifest(&p, &out2));
    for name in ["source", "tokens", "windows", "model", "music"] {
        let (s1, s2) = (stage_in(&m1, name), stage_in(&m2, name));
        let statuses = [
            s1["status"].as_str().unwrap(),
            s2["status"].as_str().unwrap(),
        ];
        assert!(
            statuses.contains(&"ran") && statuses.contains(&"cached"),
            "{name}: {statuses:?}\n{err1}\n{err2}"
        );
        assert_eq!(s1["output_hash"], s2["output_hash"], "{name}");
    }
    let waited = [&err1, &err2]
        .iter()
        .filter(|e| e.contains("waiting model: another run is computing it"))
        .count();
    assert_eq!(waited, 1, "{err1}\n{err2}");
    assert!(
        p.pipeline(&["cache", "verify"])
            .ok()
            .stdout
            .contains(" 0 damaged")
    );
}

#[test]
fn two_experiments_sharing_stages_share_the_training() {
    let p = project();
    let a = spawn(&p, "a.toml");
    wait_for_training(&p);
    let b = spawn(&p, "b.toml");
    let (out_a, err_a) = finish(a);
    let (out_b, err_b) = finish(b);
    let (ma, mb) = (manifest(&p, &out_a), manifest(&p, &out_b));
    let trained: Vec<&str> = [&ma, &mb]
        .iter()
        .map(|m| stage_in(m, "model")["status"].as_str().unwrap())
        .collect();
    assert!(
        trained.contains(&"ran") && trained.contains(&"cached"),
        "{trained:?}\n{err_a}\n{err_b}"
    );
    assert_eq!(
        stage_in(&ma, "model")["output_hash"],
        stage_in(&mb, "model")["output_hash"]
    );
    // Each sampled its own piece.
    assert_eq!(stage_in(&ma, "music")["status"], "ran");
    assert_eq!(stage_in(&mb, "music")["status"], "ran");
    assert_ne!(
        stage_in(&ma, "music")["output_hash"],
        stage_in(&mb, "music")["output_hash"]
    );
    assert!(
        p.pipeline(&["cache", "verify"])
            .ok()
            .stdout
            .contains("9 intact, 0 damaged")
    );
    // Both runs are in the index.
    let index = std::fs::read_to_string(p.path("reports/index.html")).unwrap();
    assert!(index.contains("a/") && index.contains("b/"), "{index}");
}
