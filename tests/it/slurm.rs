//! The Slurm executor against a real one-node Slurm cluster (`.ci/slurm.sh up DIR`, then `SLURM_CONF`; `.ci/run` does
//! both): the same results as a local run, failures reported with job id and log, a cache the nodes cannot see
//! refused, interrupted runs resumed without submitting twice, Ctrl-C cancelling. Without a cluster each test says
//! why it did nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// Tests share the one cluster; the one that stops its controller takes it alone ([`cluster_alone`]).
static CLUSTER: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// The cluster, shared with the other tests, or `None` (the test skips) without one.
fn cluster() -> Option<std::sync::RwLockReadGuard<'static, ()>> {
    require("slurm").then(|| CLUSTER.read().unwrap_or_else(|e| e.into_inner()))
}

/// The cluster, with no other test using it.
fn cluster_alone() -> Option<std::sync::RwLockWriteGuard<'static, ()>> {
    require("slurm").then(|| CLUSTER.write().unwrap_or_else(|e| e.into_inner()))
}

fn project() -> Project {
    tiny_project_in(Project::new_in(
        &PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("slurm"),
    ))
}

/// `pipeline run exp.toml --executor slurm` with the cache in `cache`.
fn run_on_slurm(p: &Project, cache: &str) -> Run {
    p.pipeline(&[
        "run",
        "exp.toml",
        "--executor",
        "slurm",
        "--cache-dir",
        cache,
    ])
}

/// Entry keys in a cache.
fn entries(cache: &Path) -> BTreeSet<String> {
    walkdir::WalkDir::new(cache.join("v1/entries"))
        .min_depth(2)
        .max_depth(2)
        .into_iter()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The tiny project with [`RESOURCES`].
fn project_with_resources() -> Project {
    let p = project();
    p.write(
        "exp.toml",
        experiment(TINY, "length = 12\nseed = 3") + RESOURCES,
    );
    p
}

const RESOURCES: &str = "\n[executor.slurm]\npartition = \"debug\"\ntime = \"00:30:00\"\n\n\
                         [executor.slurm.train]\ncpus = 1\nmem = \"600M\"\n";

#[test]
fn a_sweep_through_slurm_gives_the_same_entries_and_reports_as_a_local_run() {
    let Some(_cluster) = cluster() else {
        return;
    };
    let p = project();
    let sweep = "\n[sweep]\n\"model.hidden\" = [8, 12]\n\"windows.seq_len\" = [3, 4]\n";
    p.write(
        "exp.toml",
        experiment(TINY, "length = 12\nseed = 3") + RESOURCES + sweep,
    );
    let local = p
        .pipeline(&[
            "run",
            "exp.toml",
            "--cache-dir",
            "local",
            "--reports-dir",
            "local-reports",
        ])
        .ok();
    let remote = p
        .pipeline(&[
            "run",
            "exp.toml",
            "--executor",
            "slurm",
            "-v",
            "--cache-dir",
            "remote",
        ])
        .ok();
    assert_eq!(entries(&p.path("local")), entries(&p.path("remote")));
    assert_eq!(entries(&p.path("local")).len(), 5 + 2 + 4 + 4);
    // The model's job got the train resources on top of the defaults.
    let model_sbatch = remote
        .stderr
        .lines()
        .find(|l| l.contains("sbatch") && l.contains("--job-name=pipeline-model"))
        .unwrap_or_else(|| panic!("no sbatch line for the model:\n{}", remote.stderr));
    for arg in [
        "--partition=debug",
        "--time=00:30:00",
        "--cpus-per-task=1",
        "--mem=600M",
    ] {
        assert!(model_sbatch.contains(arg), "{arg} in {model_sbatch}");
    }
    let dir = |run: &Run, p: &Project| p.path(run.stdout.lines().last().unwrap().trim());
    let (local_dir, remote_dir) = (dir(&local, &p), dir(&remote, &p));
    for point in [
        "hidden=8,seq_len=3",
        "hidden=8,seq_len=4",
        "hidden=12,seq_len=3",
        "hidden=12,seq_len=4",
    ] {
        for file in [
            "generated.mid",
            "generated.csv",
            "metrics.json",
            "model.safetensors",
            "vocab.csv",
            "windows.csv",
        ] {
            let a = std::fs::read(local_dir.join(point).join(file)).unwrap();
            let b = std::fs::read(remote_dir.join(point).join(file)).unwrap();
            assert!(a == b, "{point}/{file} differs");
        }
        let logs = std::fs::read_dir(remote_dir.join(point))
            .unwrap()
            .filter(|f| {
                f.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".slurm-")
            })
            .count();
        assert_eq!(logs, 8, "one Slurm log per stage in {point}");
    }
    // Everything is cached now: nothing is submitted.
    let again = run_on_slurm(&p, "remote").ok();
    assert!(!again.stderr.contains("queued"), "{}", again.stderr);
}

#[test]
fn a_stage_that_fails_on_the_node_is_reported_with_its_job_and_log() {
    let Some(_cluster) = cluster() else {
        return;
    };
    let p = project();
    let run = p.pipeline(&[
        "run",
        "exp.toml",
        "--executor",
        "slurm",
        "--set",
        "windows.seq_len=500",
    ]);
    run.fails_with(1, "stage `windows` failed: Slurm job ")
        .fails_with(
            1,
            "ended FAILED (exit code 1) without storing a result; the end of its log",
        )
        .fails_with(1, "no training windows: a window needs 501 tokens");
    let job = run
        .stderr
        .split("stage `windows` failed: Slurm job ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .to_string();
    let report = p.path(run.stdout.lines().last().unwrap().trim());
    let log = std::fs::read_to_string(report.join(format!("windows.slurm-{job}.log"))).unwrap();
    assert!(log.contains("no training windows"), "{log}");
}

#[test]
fn a_cache_directory_the_nodes_do_not_share_is_refused() {
    let Some(_cluster) = cluster() else {
        return;
    };
    // The harness mounts a tmpfs of its own over this directory for the jobs: a node-local disk.
    let Some(unshared) = unshared_dir() else {
        return;
    };
    let p = project();
    let private = tempfile::tempdir_in(unshared).unwrap();
    let cache = private.path().join("cache");
    p.pipeline(&["run", "exp.toml", "--executor", "slurm", "--cache-dir", cache.to_str().unwrap()])
        .fails_with(3, "is not shared with the Slurm nodes: a job wrote a file there and this machine does not see it")
        .fails_with(3, "hint: pass a `--cache-dir` on a filesystem the Slurm nodes share");
    assert!(entries(&cache).is_empty());
}

#[test]
fn with_a_remote_the_nodes_need_not_see_the_cache_directory() {
    let Some(_cluster) = cluster() else {
        return;
    };
    let Some(bucket) = Bucket::shared() else {
        return;
    };
    let Some(unshared) = unshared_dir() else {
        return;
    };
    let p = project();
    let local = p
        .pipeline(&["run", "exp.toml", "--cache-dir", "local"])
        .ok();
    // The cache lives where the jobs cannot see it (their node has its own tmpfs there); the remote is all they share.
    let private = tempfile::tempdir_in(unshared).unwrap();
    let cache = private.path().join("cache");
    let node_cache = private.path().join("node-cache");
    let url = bucket.url();
    let owned = bucket.env();
    let mut env = env_refs(&owned);
    env.push(("PIPELINE_NODE_CACHE", node_cache.to_str().unwrap()));
    let args = [
        "run",
        "exp.toml",
        "--executor",
        "slurm",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--remote",
        &url,
    ];
    let slurm = p.pipeline_with_env(&args, &env).ok();
    assert_eq!(
        slurm.stages("ran").len(),
        local.manifest().stages.len(),
        "{}",
        slurm.stderr
    );
    assert!(slurm.stderr.contains("Slurm job"), "{}", slurm.stderr);
    assert_eq!(
        slurm.weights(),
        local.weights(),
        "the same result as a local run"
    );
    // The submitter took every result from the remote into its own cache; this machine never saw the node's.
    assert_eq!(entries(&cache), entries(&p.path("local")));
    // The node's cache is on its own tmpfs: none of it shows here (else the test would not test a private disk).
    assert!(!node_cache.exists(), "the node's cache is the node's");
    let again = p.pipeline_with_env(&args, &env).ok();
    assert!(again.stages("ran").is_empty(), "{}", again.stderr);
}

/// The directory the cluster's node sees as a disk of its own (a tmpfs `.ci/slurm.sh` mounts over it for the jobs),
/// or `None` (the test skips, or fails where Slurm is required) without one.
fn unshared_dir() -> Option<std::ffi::OsString> {
    let unshared = std::env::var_os("PIPELINE_TEST_UNSHARED_DIR");
    available(
        "slurm",
        unshared.is_some(),
        "PIPELINE_TEST_UNSHARED_DIR is not set (`.ci/slurm.sh up` prints it)",
    )
    .then_some(unshared)
    .flatten()
}

/// A training long enough to interrupt and to outlast a killed submitter (several seconds).
fn slow_project() -> Project {
    let p = project();
    for f in 0..6u32 {
        let keys: Vec<u8> = (0..500u32)
            .map(|i| 50 + ((i * 3 + f * 5 + i / 7) % 20) as u8)
            .collect();
        p.midi(&format!("midi/long{f}.mid"), &[melody(0, &keys)]);
    }
    let train = "layers = 1\nhidden = 24\ndense = 8\ndropout = 0.1\ninput = \"embedding\"\nembed_dim = 4\n\
                 epochs = 1000\nbatch_size = 16\nseed = 3";
    p.write("exp.toml", experiment(train, "length = 10"));
    p
}

/// Starts `pipeline run --executor slurm` and returns it once a stderr line contains `needle`, with that line.
fn start_until(p: &Project, needle: &str) -> (Spawned, String) {
    let run = Spawned::start(p, &["run", "exp.toml", "--executor", "slurm"]);
    let line = run.wait_for(needle);
    (run, line)
}

fn job_of(line: &str) -> String {
    line.rsplit("Slurm job ")
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn job_state(job: &str) -> String {
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", job])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .find_map(|f| f.strip_prefix("JobState="))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_rerun_after_a_killed_submitter_waits_for_its_job_and_submits_only_what_is_missing() {
    let Some(_cluster) = cluster() else {
        return;
    };
    let p = slow_project();
    // Killed as soon as the model's job is queued: the job waits in Slurm's queue, then runs, without its submitter.
    let (run, line) = start_until(&p, "queued model: Slurm job");
    let job = job_of(&line);
    run.signal(libc::SIGKILL);
    run.exit();
    let state = job_state(&job);
    assert!(matches!(state.as_str(), "PENDING" | "RUNNING"), "{state}");

    let again = p.pipeline(&["run", "exp.toml", "--executor", "slurm"]).ok();
    assert!(
        again.stderr.contains(&format!(
            "waiting model: Slurm job {job}, submitted by an earlier run"
        )),
        "{}",
        again.stderr
    );
    let queued: Vec<&str> = again
        .stderr
        .lines()
        .filter(|l| l.contains("queued"))
        .collect();
    assert_eq!(queued.len(), 1, "only the sampling is new: {queued:?}");
    assert!(queued[0].contains("queued music"), "{queued:?}");
    assert_eq!(again.stage("model").status, Some(Status::Ran));
}

#[test]
fn ctrl_c_cancels_the_jobs_this_run_submitted() {
    let Some(_cluster) = cluster() else {
        return;
    };
    let p = slow_project();
    let (run, line) = start_until(&p, "running model: Slurm job");
    let job = job_of(&line);
    run.signal(libc::SIGINT);
    // All of stderr, read to its end after the exit.
    let (code, _, stderr) = run.exit();
    assert_eq!(code, 130, "{stderr}");
    assert!(
        stderr.contains(&format!("stopped model: cancelled Slurm job {job}")),
        "{stderr}"
    );
    let mut state = job_state(&job);
    for _ in 0..50 {
        if state == "CANCELLED" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        state = job_state(&job);
    }
    assert_eq!(state, "CANCELLED");
}

#[test]
fn executor_settings_are_checked() {
    let p = Project::new();
    p.midi("midi/a.mid", &[melody(0, &[60, 62, 64, 65, 67])]);
    p.write(
        "exp.toml",
        format!("{PIPELINE_TOML}\n[executor.slurm]\npartiton = \"gpu\"\n\n[executor.slurm.trian]\ncpus = 2\n"),
    );
    p.pipeline(&["run", "exp.toml"])
        .fails_with(2, "unknown field `partiton`")
        .fails_with(2, "did you mean `partition`?")
        .fails_with(2, "`trian` is not a stage kind")
        .fails_with(2, "did you mean `train`?");
}

/// The Slurm log of stage `stage` in a run's report folder.
fn job_log(p: &Project, run: &Run, stage: &str) -> String {
    let report = p.path(run.stdout.lines().last().unwrap().trim());
    let log = std::fs::read_dir(&report)
        .unwrap()
        .map(|f| f.unwrap().path())
        .find(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{stage}.slurm-"))
        })
        .unwrap_or_else(|| panic!("no Slurm log of `{stage}` in {}", report.display()));
    std::fs::read_to_string(log).unwrap()
}

/// `--force` reaches the node: the job recomputes the stage instead of finding it cached.
#[test]
fn force_recomputes_on_the_node() {
    let Some(_cluster) = cluster() else {
        return;
    };
    let p = project_with_resources();
    p.pipeline(&["run", "exp.toml", "--executor", "slurm"]).ok();
    let forced = p
        .pipeline(&["run", "exp.toml", "--executor", "slurm", "--force", "model"])
        .ok();
    assert_eq!(forced.stage("model").reason, "forced with `--force`");
    let log = job_log(&p, &forced, "model");
    assert!(
        log.contains("ran model"),
        "the node did not recompute:\n{log}"
    );
    assert!(!log.contains("cached model"), "{log}");
}

/// `device = "auto"` under Slurm means what the training's resources give it, decided by the submitter and
/// carried by the job: a node that would count as a GPU machine (`PIPELINE_AUTO_DEVICE=cuda` in the job's
/// environment only) computes the same fingerprint as the submitter, so the result is found and nothing is
/// trained twice. A GPU in the resources of a build without CUDA is refused before anything is submitted.
#[test]
fn auto_device_is_decided_once_for_submitter_and_node() {
    let Some(_cluster) = cluster() else {
        return;
    };
    let p = project();
    let gpu_node = RESOURCES.to_string() + "extra = [\"--export=ALL,PIPELINE_AUTO_DEVICE=cuda\"]\n";
    p.write(
        "exp.toml",
        experiment(TINY, "length = 12\nseed = 3").replace("device = \"cpu\"", "device = \"auto\"")
            + &gpu_node,
    );
    let first = p.pipeline(&["run", "exp.toml", "--executor", "slurm"]).ok();
    assert_eq!(
        first.stage("model").status,
        Some(Status::Ran),
        "{}",
        first.stderr
    );
    assert!(
        job_log(&p, &first, "model").contains("ran model"),
        "the node trained once"
    );
    let again = p.pipeline(&["run", "exp.toml", "--executor", "slurm"]).ok();
    assert!(again.stages("ran").is_empty(), "{}", again.stderr);
    assert!(
        !again.stderr.contains("queued"),
        "resubmitted:\n{}",
        again.stderr
    );

    let gpu = RESOURCES.replace("cpus = 1", "cpus = 1\ngres = \"gpu:1\"");
    p.write(
        "gpu.toml",
        experiment(TINY, "length = 12\nseed = 3").replace("device = \"cpu\"", "device = \"auto\"")
            + &gpu,
    );
    if !cfg!(feature = "cuda") {
        p.pipeline(&["run", "gpu.toml", "--executor", "slurm"])
            .fails_with(
                2,
                "the Slurm resources of `train` request a GPU, but this build has no CUDA support",
            );
    }
}

/// The test cluster's controller stopped (SIGTERM: it saves its state) for the life of the value, and started
/// again when dropped, even if the test fails.
struct ControllerDown(PathBuf);

impl ControllerDown {
    fn now() -> Self {
        let conf = PathBuf::from(std::env::var_os("SLURM_CONF").expect("SLURM_CONF is set"));
        let pid: i32 = std::fs::read_to_string(conf.with_file_name("slurmctld.pid"))
            .expect("`.ci/slurm.sh up` writes slurmctld.pid beside slurm.conf")
            .trim()
            .parse()
            .unwrap();
        // SAFETY: signalling the test cluster's controller, which the harness started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        // SAFETY: signal 0 only asks whether the process still exists.
        while unsafe { libc::kill(pid, 0) } == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        Self(conf)
    }
}

impl Drop for ControllerDown {
    fn drop(&mut self) {
        let started = Command::new("slurmctld").arg("-f").arg(&self.0).status();
        assert!(
            started.is_ok_and(|s| s.success()),
            "slurmctld did not start again"
        );
        while !slurm_up() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A controller restart while a job waits (Slurm's tools retry for about 18 s, then fail: connection refused;
/// here it is down for 25 s) is waited out: the run neither takes the silence for the end of its job nor submits it twice.
#[test]
fn a_controller_restart_during_a_job_is_waited_out() {
    let Some(_cluster) = cluster_alone() else {
        return;
    };
    let p = project_with_resources();
    let run = Spawned::start(&p, &["run", "exp.toml", "--executor", "slurm"]);
    run.wait_for("queued model: Slurm job");
    {
        let _down = ControllerDown::now();
        std::thread::sleep(Duration::from_secs(25));
    }
    let (code, _, stderr) = run.exit();
    assert_eq!(code, 0, "{stderr}");
    let queued = stderr
        .lines()
        .filter(|l| l.contains("queued model"))
        .count();
    assert_eq!(queued, 1, "{stderr}");
}

/// Two submitters of the same stage at once follow one job: the submission record is taken under a lock.
#[test]
fn two_submitters_at_once_submit_one_job() {
    let Some(_cluster) = cluster() else {
        return;
    };
    let p = project_with_resources();
    let a = Spawned::start(&p, &["run", "exp.toml", "--executor", "slurm"]);
    let b = Spawned::start(&p, &["run", "exp.toml", "--executor", "slurm"]);
    let (code_a, _, err_a) = a.exit();
    let (code_b, _, err_b) = b.exit();
    assert_eq!((code_a, code_b), (0, 0), "{err_a}\n{err_b}");
    for stage in ["source", "model", "music"] {
        let queued = [&err_a, &err_b]
            .iter()
            .flat_map(|e| e.lines())
            .filter(|l| l.contains(&format!("queued {stage}:")))
            .count();
        assert_eq!(
            queued, 1,
            "`{stage}` submitted {queued} times:\n{err_a}\n{err_b}"
        );
    }
}

#[test]
fn a_pruned_search_through_slurm_decides_as_a_local_one() {
    let Some(_cluster) = cluster() else {
        return;
    };
    let p = crate::search::with_validation(
        project(),
        4,
        &format!(
            "{RESOURCES}\n[sweep]\n\"model.learning_rate\" = [0.001, 0.02]\n\"model.hidden\" = [4, 8]\n\n\
             [sweep.prune]\nmin_epochs = 1\nreduction = 2\n"
        ),
    );
    let local = p
        .pipeline(&["run", "exp.toml", "--cache-dir", "local"])
        .ok();
    let slurm = run_on_slurm(&p, "shared-cache").ok();
    let record = |run: &Run| {
        pipeline::SweepRecord::read(&p.path(run.stdout.lines().last().unwrap().trim()))
            .unwrap()
            .search
            .unwrap()
    };
    let (a, b) = (record(&local), record(&slurm));
    assert_eq!(a.rungs, [1, 2, 4]);
    assert_eq!(a.promotions, b.promotions);
    let explained = |r: &pipeline::SearchRecord| {
        r.trials
            .iter()
            .map(|t| t.explanation.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(explained(&a), explained(&b));
    assert_eq!(a.epochs_trained, b.epochs_trained);
    assert!(
        slurm.stderr.contains(", Slurm job "),
        "the trainings ran as jobs: {}",
        slurm.stderr
    );
}
