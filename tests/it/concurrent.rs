//! Two `pipeline run` processes on one cache at the same time: both finish, every entry stays intact, and a stage
//! both need is computed once while the other process waits for it.

use std::time::Duration;

use crate::support::*;

fn spawn(p: &Project, experiment: &str) -> Spawned {
    Spawned::start(p, &["run", experiment, "-v"])
}

/// (stdout, stderr) of a finished child, which must have succeeded.
fn finish(child: Spawned) -> (String, String) {
    let (code, stdout, stderr) = child.exit();
    assert_eq!(code, 0, "{stderr}");
    (stdout, stderr)
}

/// The manifest of the report a run printed the path of.
fn manifest(p: &Project, stdout: &str) -> Manifest {
    read_manifest(&p.path(stdout.lines().last().unwrap().trim()))
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
    first.wait_for("running model");
    let second = spawn(&p, "a.toml");
    let (out1, err1) = finish(first);
    let (out2, err2) = finish(second);
    let (m1, m2) = (manifest(&p, &out1), manifest(&p, &out2));
    for name in ["source", "tokens", "windows", "model", "music"] {
        let (s1, s2) = (stage_in(&m1, name), stage_in(&m2, name));
        let statuses = [s1.status, s2.status];
        assert!(
            statuses.contains(&Some(Status::Ran)) && statuses.contains(&Some(Status::Cached)),
            "{name}: {statuses:?}\n{err1}\n{err2}"
        );
        assert_eq!(s1.output_hash, s2.output_hash, "{name}");
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
    a.wait_for("running model");
    let b = spawn(&p, "b.toml");
    let (out_a, err_a) = finish(a);
    let (out_b, err_b) = finish(b);
    let (ma, mb) = (manifest(&p, &out_a), manifest(&p, &out_b));
    let trained: Vec<Option<Status>> = [&ma, &mb]
        .iter()
        .map(|m| stage_in(m, "model").status)
        .collect();
    assert!(
        trained.contains(&Some(Status::Ran)) && trained.contains(&Some(Status::Cached)),
        "{trained:?}\n{err_a}\n{err_b}"
    );
    assert_eq!(
        stage_in(&ma, "model").output_hash,
        stage_in(&mb, "model").output_hash
    );
    // Each sampled its own piece.
    assert_eq!(stage_in(&ma, "music").status, Some(Status::Ran));
    assert_eq!(stage_in(&mb, "music").status, Some(Status::Ran));
    assert_ne!(
        stage_in(&ma, "music").output_hash,
        stage_in(&mb, "music").output_hash
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

/// Ctrl-C stops a run that waits for another process's lock, at once, while the other goes on.
#[test]
fn ctrl_c_stops_a_run_waiting_for_another_process() {
    let p = project();
    let first = spawn(&p, "a.toml");
    first.wait_for("running model");
    let second = spawn(&p, "b.toml");
    second.wait_for("waiting model: another run is computing it");
    let asked = std::time::Instant::now();
    second.signal(libc::SIGINT);
    let (code, _, stderr) = second.exit();
    assert_eq!(code, 130, "{stderr}");
    assert!(
        !first.stderr.lock().unwrap().contains("ran model"),
        "the waiting run only stopped once the training it waited for was done"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "took {:?} to stop",
        asked.elapsed()
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    // The first run was not disturbed.
    let (_, err) = finish(first);
    assert!(err.contains("ran model"), "{err}");
}
