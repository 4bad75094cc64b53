//! The remote cache: separate local caches share results through an object store — a real S3 server (moto, which
//! `.ci/run` starts; the `s3_` tests) through the same `s3://` code path users get, and a `file://` directory. What
//! comes back from the remote is checked like a local entry; an upload killed half-way is never visible; a remote
//! that fails is a warning (exit 3 with `--remote-required`); a training killed on one machine resumes on another.

use std::time::{Duration, Instant};

use crate::interrupt::{epochs_done, reference_run, training_project};
use crate::support::*;

/// `pipeline ARGS --remote URL` with the bucket's environment.
fn with_remote(p: &Project, args: &[&str], url: &str, env: &[(&'static str, String)]) -> Run {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--remote", url]);
    p.pipeline_with_env(&all, &env_refs(env))
}

/// The path and content of the record a `file://` remote at `remote` holds for `stage` of `run`.
fn remote_record(
    remote: &std::path::Path,
    run: &Run,
    stage: &str,
) -> (std::path::PathBuf, serde_json::Value) {
    let key = run.stage(stage).fingerprint.unwrap().to_string();
    let path = remote.join(format!("v1/entries/{key}/record.json"));
    let record = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    (path, record)
}

fn origins(run: &Run) -> Vec<String> {
    run.manifest()
        .stages
        .iter()
        .map(|s| {
            serde_json::to_value(s.origin)
                .unwrap()
                .as_str()
                .unwrap_or("none")
                .to_string()
        })
        .collect()
}

/// The summary line's request count: `…, N request(s)`.
fn requests(run: &Run) -> usize {
    run.stderr
        .lines()
        .find(|l| l.starts_with("remote `"))
        .and_then(|l| l.rsplit(", ").next())
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no remote summary line:\n{}", run.stderr))
}

/// Two caches, one remote: the second run computes nothing, fetches every result, and its results are the first's.
fn share_through(url: &str, env: &[(&'static str, String)]) {
    let p = tiny_project();
    let first = with_remote(&p, &["run", "exp.toml", "--cache-dir", "laptop"], url, env).ok();
    assert!(
        origins(&first).iter().all(|o| o == "computed"),
        "{:?}",
        origins(&first)
    );
    let second = with_remote(&p, &["run", "exp.toml", "--cache-dir", "cluster"], url, env).ok();
    assert!(second.stages("ran").is_empty(), "{}", second.stderr);
    assert!(
        origins(&second).iter().all(|o| o == "remote"),
        "{:?}",
        origins(&second)
    );
    assert!(
        second.stderr.contains("fetched model from the remote"),
        "{}",
        second.stderr
    );
    assert_eq!(second.weights(), first.weights());
    let midi =
        |run: &Run| std::fs::read(run.report.as_ref().unwrap().join("generated.mid")).unwrap();
    assert_eq!(midi(&second), midi(&first));
    // Everything is local now: a re-run asks the remote at most once per stage (whether it has the entry).
    let third = with_remote(&p, &["run", "exp.toml", "--cache-dir", "cluster"], url, env).ok();
    assert!(origins(&third).iter().all(|o| o == "local"));
    let stages = third.manifest().stages.len();
    assert!(
        requests(&third) <= stages,
        "{} requests for {stages} stages",
        requests(&third)
    );
    // `status` on a third machine says what the remote has, without downloading it.
    let status = with_remote(
        &p,
        &["status", "exp.toml", "--cache-dir", "fresh"],
        url,
        env,
    )
    .ok();
    assert_eq!(
        status.stdout.matches("cached (remote)").count(),
        stages,
        "{}",
        status.stdout
    );
    assert!(!p.path("fresh/v1/entries").read_dir().unwrap().any(|_| true));
}

#[test]
fn two_caches_share_results_through_a_file_remote() {
    let remote = tempfile::tempdir().unwrap();
    share_through(&format!("file://{}", remote.path().display()), &[]);
}

#[test]
fn s3_two_caches_share_results_through_a_bucket() {
    let Some(bucket) = Bucket::shared() else {
        return;
    };
    share_through(&bucket.url(), &bucket.env());
    let keys = bucket.keys();
    assert!(keys.iter().any(|k| k.ends_with("/record.json")), "{keys:?}");
    assert!(keys.iter().any(|k| k.contains("/v1/blobs/")), "{keys:?}");
    assert!(
        !keys.iter().any(|k| k.contains("/checkpoints/")),
        "finished trainings leave no checkpoint: {keys:?}"
    );
}

#[test]
fn a_damaged_or_truncated_remote_file_is_detected_discarded_and_recomputed() {
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().display());
    let p = tiny_project();
    let first = with_remote(&p, &["run", "exp.toml", "--cache-dir", "a"], &url, &[]).ok();
    // Damage the model's output blob (flip a byte) and truncate the sampled music's.
    let blob = |stage: &str| {
        let hash = first.stage(stage).output_hash.unwrap().to_string();
        remote.path().join("v1/blobs").join(hash)
    };
    let mut bytes = std::fs::read(blob("model")).unwrap();
    bytes[40] ^= 0x20;
    std::fs::write(blob("model"), bytes).unwrap();
    let bytes = std::fs::read(blob("music")).unwrap();
    std::fs::write(blob("music"), &bytes[..bytes.len() / 2]).unwrap();

    let second = with_remote(&p, &["run", "exp.toml", "--cache-dir", "b"], &url, &[]).ok();
    assert!(
        second.stderr.contains("the remote's copy was damaged"),
        "{}",
        second.stderr
    );
    assert_eq!(
        second.stages("ran"),
        ["model", "music"],
        "{}",
        second.stderr
    );
    assert_eq!(
        second.weights(),
        first.weights(),
        "recomputed, the same result"
    );
    // The recomputed entries went up again: a third cache finds everything intact remotely.
    let verify = with_remote(&p, &["cache", "verify", "--cache-dir", "c"], &url, &[]).ok();
    assert!(verify.stdout.contains(" 0 damaged"), "{}", verify.stdout);
    let third = with_remote(&p, &["run", "exp.toml", "--cache-dir", "c"], &url, &[]).ok();
    assert!(third.stages("ran").is_empty(), "{}", third.stderr);
}

#[test]
fn a_remote_record_naming_a_path_outside_the_entry_is_refused() {
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().display());
    let p = tiny_project();
    let first = with_remote(&p, &["run", "exp.toml", "--cache-dir", "a"], &url, &[]).ok();
    let key = first.stage("model").fingerprint.unwrap().to_string();
    let record_path = remote.path().join(format!("v1/entries/{key}/record.json"));
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    let files = record["files"].as_object_mut().unwrap();
    let (_, any) = files
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    files.insert("../../escape.txt".into(), any);
    std::fs::write(&record_path, serde_json::to_vec(&record).unwrap()).unwrap();
    let second = with_remote(&p, &["run", "exp.toml", "--cache-dir", "b"], &url, &[]).ok();
    assert!(
        second.stderr.contains("not a plain file name"),
        "{}",
        second.stderr
    );
    assert_eq!(second.stages("ran"), ["model"]);
    assert!(!p.path("escape.txt").exists() && !p.path("b/escape.txt").exists());
}

#[test]
fn s3_a_killed_run_never_leaves_a_visible_half_uploaded_entry() {
    let Some(bucket) = Bucket::shared() else {
        return;
    };
    let p = training_project();
    let env = bucket.env();
    let env_ref = env_refs(&env);
    let url = bucket.url();
    // Killed as each stage starts, while the uploads of the ones before are in flight.
    for round in 0..3 {
        let run = Spawned::start_with_env(
            &p,
            &[
                "run",
                "exp.toml",
                "--cache-dir",
                &format!("k{round}"),
                "-v",
                "--remote",
                &url,
            ],
            &env_ref,
        );
        for _ in 0..=round {
            run.wait_for("running ");
        }
        run.signal(libc::SIGKILL);
        run.exit();
        let verify = with_remote(&p, &["cache", "verify", "--cache-dir", "check"], &url, &env).ok();
        assert!(
            verify.stdout.contains(" 0 damaged"),
            "round {round}: {}",
            verify.stdout
        );
    }
    let done = with_remote(&p, &["run", "exp.toml", "--cache-dir", "last"], &url, &env).ok();
    let again = with_remote(&p, &["run", "exp.toml", "--cache-dir", "after"], &url, &env).ok();
    assert!(again.stages("ran").is_empty(), "{}", again.stderr);
    assert_eq!(again.weights(), done.weights());
}

#[test]
fn s3_two_concurrent_uploaders_of_one_entry_both_succeed_and_the_first_record_stays() {
    let Some(bucket) = Bucket::shared() else {
        return;
    };
    let p = tiny_project();
    let url = bucket.url();
    let env = bucket.env();
    let env_ref = env_refs(&env);
    let a = Spawned::start_with_env(
        &p,
        &["run", "exp.toml", "--cache-dir", "a", "--remote", &url],
        &env_ref,
    );
    let b = Spawned::start_with_env(
        &p,
        &["run", "exp.toml", "--cache-dir", "b", "--remote", &url],
        &env_ref,
    );
    let (code_a, _, err_a) = a.exit();
    let (code_b, _, err_b) = b.exit();
    assert_eq!((code_a, code_b), (0, 0), "{err_a}\n{err_b}");
    assert!(!err_a.contains("another result") && !err_b.contains("another result"));
    // Each remote record is byte for byte one of the two local ones: one writer's, never a mix. (Pulled into a third
    // cache, which keeps the record's bytes as the remote has them.)
    with_remote(&p, &["cache", "pull", "--cache-dir", "c"], &url, &env).ok();
    let records = bucket
        .keys()
        .into_iter()
        .filter(|k| k.ends_with("record.json"))
        .count();
    assert_eq!(
        records,
        a_stages(&p),
        "every stage's record is on the remote"
    );
    let record = |cache: &str, hex: &str| {
        std::fs::read(p.path(&format!(
            "{cache}/v1/entries/{}/{hex}/record.json",
            &hex[..2]
        )))
        .ok()
    };
    for shard in std::fs::read_dir(p.path("c/v1/entries")).unwrap() {
        for entry in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let hex = entry.unwrap().file_name().into_string().unwrap();
            let remote = record("c", &hex);
            assert!(
                remote == record("a", &hex) || remote == record("b", &hex),
                "{hex}: the remote record is neither writer's"
            );
        }
    }
}

/// How many stages the tiny experiment has that the remote keeps (all but audio, which it has none of).
fn a_stages(p: &Project) -> usize {
    p.pipeline(&["status", "exp.toml", "--cache-dir", "a"])
        .ok()
        .stdout
        .matches("cached")
        .count()
}

#[test]
fn s3_a_remote_that_disappears_mid_run_degrades_to_the_local_cache() {
    if !require("s3") {
        return;
    }
    let mut moto = Moto::start();
    let bucket = Bucket::on(&moto.endpoint);
    let env = bucket.env();
    let env_ref = env_refs(&env);
    let p = training_project();
    let url = bucket.url();
    let run = Spawned::start_with_env(
        &p,
        &[
            "run",
            "exp.toml",
            "--cache-dir",
            "c",
            "-v",
            "--remote",
            &url,
        ],
        &env_ref,
    );
    run.wait_for("running model");
    moto.stop();
    let (code, _, stderr) = run.exit();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr.matches("cannot be used").count(),
        1,
        "said once:\n{stderr}"
    );
    assert!(
        stderr.contains("continuing with the local cache only"),
        "{stderr}"
    );
    // The results are local; a run without the remote finds them.
    let local = p.pipeline(&["run", "exp.toml", "--cache-dir", "c"]).ok();
    assert!(local.stages("ran").is_empty(), "{}", local.stderr);

    // An unreachable remote from the start: a warning, or exit 3 with `--remote-required`.
    let warned = with_remote(&p, &["run", "exp.toml", "--cache-dir", "d"], &url, &env).ok();
    assert!(
        warned
            .stderr
            .contains("continuing with the local cache only"),
        "{}",
        warned.stderr
    );
    let mut args = vec!["run", "exp.toml", "--cache-dir", "e", "--remote-required"];
    args.extend(["--remote", &url]);
    let required = p.pipeline_with_env(&args, &env_ref);
    required.fails_with(3, "`--remote-required` is set");
    assert!(
        required.stages("ran").is_empty(),
        "nothing runs without the required remote"
    );
}

#[test]
fn s3_a_training_killed_on_one_machine_resumes_on_another() {
    let Some(bucket) = Bucket::shared() else {
        return;
    };
    let p = training_project();
    let url = bucket.url();
    let env = bucket.env();
    let env_ref = env_refs(&env);
    let reference = reference_run(&p);
    let run = Spawned::start_with_env(
        &p,
        &["run", "exp.toml", "--cache-dir", "one", "--remote", &url],
        &env_ref,
    );
    let started = Instant::now();
    // Each epoch's checkpoint goes up before the next epoch starts: three epochs in the live loss.csv means the
    // second one's is on the remote.
    while epochs_done(&p.path("reports")) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "training never got going"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    run.signal(libc::SIGKILL);
    run.exit();
    assert!(
        bucket.keys().iter().any(|k| k.contains("/checkpoints/")),
        "{:?}",
        bucket.keys()
    );
    let resumed = with_remote(&p, &["run", "exp.toml", "--cache-dir", "two"], &url, &env).ok();
    let from = resumed_after(&resumed.stderr);
    assert!(from >= 2, "resumed after {from} epochs");
    assert_eq!(resumed.weights(), reference.weights());
    assert_eq!(resumed.losses(), reference.losses());
    assert!(
        !bucket.keys().iter().any(|k| k.contains("/checkpoints/")),
        "cleared once stored"
    );
}

#[test]
fn s3_push_pull_du_and_gc_work_from_the_reports() {
    let Some(bucket) = Bucket::shared() else {
        return;
    };
    let p = tiny_project();
    let url = bucket.url();
    let env = bucket.env();
    // Computed without a remote, then pushed: what the report refers to goes up.
    let run = p.pipeline(&["run", "exp.toml", "--cache-dir", "a"]).ok();
    let stages = run.manifest().stages.len();
    let push = with_remote(
        &p,
        &["cache", "push", "--cache-dir", "a", "--experiment", "test"],
        &url,
        &env,
    )
    .ok();
    assert!(
        push.stdout.contains(&format!("pushed {stages} result(s)")),
        "{}",
        push.stdout
    );
    let again = with_remote(&p, &["cache", "push", "--cache-dir", "a"], &url, &env).ok();
    assert!(
        again.stdout.contains(&format!(
            "pushed 0 result(s) (0 B) to `{url}`; {stages} were there"
        )),
        "{}",
        again.stdout
    );
    with_remote(
        &p,
        &["cache", "push", "--cache-dir", "a", "--experiment", "nope"],
        &url,
        &env,
    )
    .fails_with(3, "no report of the experiment `nope`");
    // Pulled into another cache: everything the report names, then a run there computes nothing.
    let pull = with_remote(&p, &["cache", "pull", "--cache-dir", "b"], &url, &env).ok();
    assert!(
        pull.stdout.contains(&format!("pulled {stages} result(s)")),
        "{}",
        pull.stdout
    );
    let local = p.pipeline(&["run", "exp.toml", "--cache-dir", "b"]).ok();
    assert!(local.stages("ran").is_empty());
    let du = with_remote(&p, &["cache", "du", "--cache-dir", "b"], &url, &env).ok();
    assert!(
        du.stdout.contains("train ") && du.stdout.contains("blob(s)"),
        "{}",
        du.stdout
    );
    // gc marks from the reports: with them, nothing goes; with an empty reports folder it refuses; with another
    // experiment's reports and no grace, the entries go (dry run first).
    let kept = with_remote(
        &p,
        &["cache", "gc", "--cache-dir", "b", "--grace", "0s"],
        &url,
        &env,
    )
    .ok();
    assert!(kept.stdout.contains("removed 0 entries"), "{}", kept.stdout);
    std::fs::create_dir_all(p.path("empty")).unwrap();
    with_remote(
        &p,
        &["cache", "gc", "--cache-dir", "b", "--reports-dir", "empty"],
        &url,
        &env,
    )
    .fails_with(3, "nothing on the remote would be kept");
    // Other music: other fingerprints all the way (a fingerprint is content, not the experiment's name).
    let other = midi_project();
    other
        .pipeline(&[
            "run",
            "exp.toml",
            "--reports-dir",
            p.path("other").to_str().unwrap(),
        ])
        .ok();
    let args = [
        "cache",
        "gc",
        "--cache-dir",
        "b",
        "--reports-dir",
        "other",
        "--grace",
        "0s",
    ];
    let young = with_remote(
        &p,
        &["cache", "gc", "--cache-dir", "b", "--reports-dir", "other"],
        &url,
        &env,
    )
    .ok();
    assert!(
        young.stdout.contains("removed 0 entries"),
        "the default grace keeps young entries: {}",
        young.stdout
    );
    let mut dry: Vec<&str> = args.to_vec();
    dry.push("--dry-run");
    let dry = with_remote(&p, &dry, &url, &env).ok();
    assert!(
        dry.stdout
            .contains(&format!("would remove {stages} entries")),
        "{}",
        dry.stdout
    );
    let gone = with_remote(&p, &args, &url, &env).ok();
    assert!(
        gone.stdout.contains(&format!("removed {stages} entries")),
        "{}",
        gone.stdout
    );
    assert!(
        bucket.keys().is_empty(),
        "records and blobs gone: {:?}",
        bucket.keys()
    );
}

#[test]
fn the_push_policy_and_size_cap_decide_what_goes_up() {
    let p = tiny_project();
    let blobs = |dir: &std::path::Path| {
        std::fs::read_dir(dir.join("v1/entries"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let none = tempfile::tempdir().unwrap();
    let url = format!("file://{}", none.path().display());
    let run = p
        .pipeline(&[
            "run",
            "exp.toml",
            "--cache-dir",
            "a",
            "--remote",
            &url,
            "--push",
            "none",
        ])
        .ok();
    assert_eq!(blobs(none.path()), 0, "{}", run.stderr);
    // Only the kinds named.
    let some = tempfile::tempdir().unwrap();
    let url = format!("file://{}", some.path().display());
    p.pipeline(&[
        "run",
        "exp.toml",
        "--cache-dir",
        "a",
        "--remote",
        &url,
        "--push",
        "train,sample",
    ])
    .ok();
    let fresh = p
        .pipeline(&[
            "run",
            "exp.toml",
            "--cache-dir",
            "b",
            "--remote",
            &url,
            "--push",
            "none",
        ])
        .ok();
    assert_eq!(
        fresh.stages("ran"),
        ["source", "no_drums", "melody", "tokens", "vocab", "windows"]
    );
    assert_eq!(origins(&fresh)[6..], ["remote", "remote"]);
    // Nothing larger than the cap: the model (kilobytes) stays local, the small MIDI stages go up.
    let capped = tempfile::tempdir().unwrap();
    let url = format!("file://{}", capped.path().display());
    p.pipeline(&[
        "run",
        "exp.toml",
        "--cache-dir",
        "a",
        "--remote",
        &url,
        "--push-max",
        "2KB",
    ])
    .ok();
    let fresh = p
        .pipeline(&["run", "exp.toml", "--cache-dir", "c", "--remote", &url])
        .ok();
    assert!(
        fresh.stages("ran").contains(&"model".to_string()),
        "{}",
        fresh.stderr
    );
    assert!(
        origins(&fresh).contains(&"remote".to_string()),
        "{:?}",
        origins(&fresh)
    );
    // Bad values are refused with what to write instead.
    p.pipeline(&["run", "exp.toml", "--remote", &url, "--push", "trian"])
        .fails_with(2, "`trian` is not a stage kind");
    p.pipeline(&["run", "exp.toml", "--remote", &url, "--push-max", "lots"])
        .fails_with(2, "`lots` is not a size");
    p.pipeline(&["run", "exp.toml", "--remote", "ftp://host/x"])
        .fails_with(3, "is neither `s3://BUCKET/PREFIX` nor `file:///DIR`");
    p.pipeline(&["cache", "push", "--cache-dir", "a"])
        .fails_with(3, "no remote is set");
}

#[test]
fn s3_a_result_above_the_multipart_threshold_goes_up_in_parts_and_comes_back_whole() {
    let Some(bucket) = Bucket::shared() else {
        return;
    };
    let p = tiny_project();
    // A model of ~5 million parameters: its output is over 16 MiB, which goes up as a multipart upload.
    let big = TINY
        .replace("hidden = 16", "hidden = 1100")
        .replace("epochs = 3", "epochs = 1");
    p.write("exp.toml", experiment(&big, "length = 5\nseed = 3"));
    let url = bucket.url();
    let env = bucket.env();
    let first = with_remote(&p, &["run", "exp.toml", "--cache-dir", "a"], &url, &env).ok();
    let bytes = first.stage("model").output_bytes.unwrap();
    assert!(bytes > 16 << 20, "the model is only {bytes} bytes");
    let second = with_remote(&p, &["run", "exp.toml", "--cache-dir", "b"], &url, &env).ok();
    assert!(second.stages("ran").is_empty(), "{}", second.stderr);
    assert_eq!(second.weights(), first.weights());
}

#[test]
fn remote_du_saturates_crafted_sizes_instead_of_wrapping() {
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().display());
    let p = tiny_project();
    let first = with_remote(&p, &["run", "exp.toml", "--cache-dir", "a"], &url, &[]).ok();
    let (record_path, mut record) = remote_record(remote.path(), &first, "model");
    // Wrapping arithmetic would make this entry's size u64::MAX + 2 = 1 byte.
    record["output"]["bytes"] = serde_json::json!(u64::MAX);
    for file in record["files"].as_object_mut().unwrap().values_mut() {
        file["bytes"] = serde_json::json!(2);
    }
    std::fs::write(&record_path, serde_json::to_vec(&record).unwrap()).unwrap();
    let du = with_remote(&p, &["cache", "du", "--cache-dir", "a"], &url, &[]).ok();
    let train = du
        .stdout
        .lines()
        .find(|l| l.starts_with("train "))
        .expect(&du.stdout);
    assert!(train.contains("EiB"), "{train}");
}

#[test]
fn a_remote_output_of_the_wrong_kind_is_damage() {
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().display());
    let p = midi_project();
    let first = with_remote(&p, &["run", "exp.toml", "--cache-dir", "a"], &url, &[]).ok();
    // The vocab record names the tokens entry's output blob, correctly sized and hashed.
    let (_, tokens) = remote_record(remote.path(), &first, "tokens");
    let (vocab_path, mut vocab) = remote_record(remote.path(), &first, "vocab");
    vocab["output"] = tokens["output"].clone();
    std::fs::write(vocab_path, serde_json::to_vec(&vocab).unwrap()).unwrap();
    let verify = with_remote(&p, &["cache", "verify", "--cache-dir", "a"], &url, &[]);
    assert_eq!(verify.code, 1, "{}", verify.stdout);
    assert!(
        verify
            .stdout
            .contains("its output is tokens, where its stage kind makes a vocabulary"),
        "{}",
        verify.stdout
    );
    let fresh = with_remote(&p, &["run", "exp.toml", "--cache-dir", "b"], &url, &[]).ok();
    assert!(
        fresh.stages("ran").contains(&"vocab".to_string()),
        "{}",
        fresh.stderr
    );
}

/// The inode of a file: the same one before and after means it was never deleted and written again.
fn inode(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

#[test]
fn a_wrong_size_record_condemns_itself_never_the_blob_and_verify_changes_nothing() {
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().display());
    let p = tiny_project();
    let first = with_remote(&p, &["run", "exp.toml", "--cache-dir", "a"], &url, &[]).ok();
    let (record_path, mut record) = remote_record(remote.path(), &first, "tokens");
    let blob = remote
        .path()
        .join("v1/blobs")
        .join(record["output"]["hash"].as_str().unwrap());
    let blob_inode = inode(&blob);
    let size = record["output"]["bytes"].as_u64().unwrap();
    record["output"]["bytes"] = serde_json::json!(size + 1);
    std::fs::write(&record_path, serde_json::to_vec(&record).unwrap()).unwrap();

    // `cache verify --remote` reports the record and deletes nothing: neither the record nor the blob.
    let verify = with_remote(&p, &["cache", "verify", "--cache-dir", "v"], &url, &[]);
    assert_eq!(verify.code, 1, "{}", verify.stdout);
    assert!(
        verify.stdout.contains("is not the") && verify.stdout.contains(" 1 damaged"),
        "{}",
        verify.stdout
    );
    assert!(record_path.is_file(), "verify deleted the record");
    assert_eq!(inode(&blob), blob_inode, "verify deleted the blob");
    assert!(
        !p.path("v/v1/entries").exists()
            || p.path("v/v1/entries").read_dir().unwrap().next().is_none()
    );

    // A run condemns the record (recomputing the stage) but leaves the blob, which other records may name.
    let second = with_remote(&p, &["run", "exp.toml", "--cache-dir", "b"], &url, &[]).ok();
    assert!(
        second.stderr.contains("the remote's copy was damaged"),
        "{}",
        second.stderr
    );
    assert_eq!(second.stages("ran"), ["tokens"], "{}", second.stderr);
    assert_eq!(inode(&blob), blob_inode, "the run deleted a correct blob");
    let again = with_remote(&p, &["cache", "verify", "--cache-dir", "w"], &url, &[]).ok();
    assert!(again.stdout.contains(" 0 damaged"), "{}", again.stdout);
}

#[test]
fn a_huge_object_behind_a_small_record_is_read_no_further_than_the_record_says() {
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().display());
    let p = tiny_project();
    let first = with_remote(&p, &["run", "exp.toml", "--cache-dir", "a"], &url, &[]).ok();
    let (_, record) = remote_record(remote.path(), &first, "tokens");
    let blob = remote
        .path()
        .join("v1/blobs")
        .join(record["output"]["hash"].as_str().unwrap());
    // A sparse 64 GiB object in the blob's place: read whole into memory, it could never fit on this machine.
    let file = std::fs::OpenOptions::new().write(true).open(&blob).unwrap();
    file.set_len(64 << 30).unwrap();
    drop(file);
    let started = Instant::now();
    let second = with_remote(&p, &["run", "exp.toml", "--cache-dir", "b"], &url, &[]).ok();
    assert!(
        second.stderr.contains("is not the") && second.stderr.contains("bytes its record says"),
        "{}",
        second.stderr
    );
    assert_eq!(second.stages("ran"), ["tokens"], "{}", second.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    // Nothing of the download stays in the cache's staging folder.
    let staged: Vec<_> = std::fs::read_dir(p.path("b/v1/tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(staged.is_empty(), "{staged:?}");
}

#[test]
fn s3_a_bucket_that_does_not_exist_is_a_remote_that_cannot_be_used_not_a_miss() {
    let Some(bucket) = Bucket::shared() else {
        return;
    };
    let p = tiny_project();
    let env = bucket.env();
    let url = "s3://pipeline-no-such-bucket/team";
    let mut args = vec!["run", "exp.toml", "--cache-dir", "a", "--remote-required"];
    args.extend(["--remote", url]);
    let required = p.pipeline_with_env(&args, &env_refs(&env));
    required.fails_with(3, "`--remote-required` is set");
    assert!(
        required.stderr.contains("NoSuchBucket"),
        "{}",
        required.stderr
    );
    assert!(
        required.stages("ran").is_empty(),
        "nothing runs without the required remote:\n{}",
        required.stderr
    );
    // The remote's own hint, not the local cache's.
    assert!(
        required.stderr.contains("its bucket exists")
            && !required.stderr.contains("free some space"),
        "{}",
        required.stderr
    );
    // Without `--remote-required`: said once, and the run goes on with the local cache.
    let warned = with_remote(&p, &["run", "exp.toml", "--cache-dir", "b"], url, &env).ok();
    assert_eq!(
        warned.stderr.matches("cannot be used").count(),
        1,
        "{}",
        warned.stderr
    );
}

#[test]
fn an_unreadable_young_record_is_skipped_by_remote_gc_not_a_failure() {
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().display());
    let p = tiny_project();
    let first = with_remote(&p, &["run", "exp.toml", "--cache-dir", "a"], &url, &[]).ok();
    let (record_path, _) = remote_record(remote.path(), &first, "tokens");
    std::fs::write(&record_path, b"{ not a record").unwrap();
    // Every record is younger than the default grace (a week): the sweep reads them all to know their blobs.
    let gc = with_remote(
        &p,
        &[
            "cache",
            "gc",
            "--cache-dir",
            "a",
            "--reports-dir",
            "reports",
        ],
        &url,
        &[],
    )
    .ok();
    let short = &first.stage("tokens").fingerprint.unwrap().hex()[..12];
    assert!(
        gc.stdout.contains(&format!("skipped entry {short}")),
        "{}",
        gc.stdout
    );
    assert!(record_path.is_file(), "a young record stays");
    // Every other entry is intact and still there.
    let verify = with_remote(&p, &["cache", "verify", "--cache-dir", "c"], &url, &[]);
    assert!(verify.stdout.contains(" 1 damaged"), "{}", verify.stdout);
}

#[test]
fn a_stalled_remote_is_given_up_within_a_minute_and_never_holds_an_interrupt() {
    let p = tiny_project();
    let env = s3_env(&stalled_endpoint());
    let env_ref = env_refs(&env);
    let url = "s3://stalled/team";
    // Ctrl-C (SIGINT) and SIGTERM stop a run waiting on it at once.
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let run = Spawned::start_with_env(
            &p,
            &["run", "exp.toml", "--cache-dir", "a", "--remote", url],
            &env_ref,
        );
        std::thread::sleep(Duration::from_millis(1500));
        let sent = Instant::now();
        run.signal(signal);
        let (code, _, stderr) = run.exit();
        assert_eq!(code, 130, "{stderr}");
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "took {:?} after the signal:\n{stderr}",
            sent.elapsed()
        );
    }
    // Left alone, it is given up within the minute the README promises: said once, and with `--remote-required`
    // exit 3, running nothing.
    let started = Instant::now();
    let mut args = vec!["run", "exp.toml", "--cache-dir", "b", "--remote-required"];
    args.extend(["--remote", url]);
    let required = p.pipeline_with_env(&args, &env_ref);
    let took = started.elapsed();
    required.fails_with(3, "`--remote-required` is set");
    assert!(required.stages("ran").is_empty(), "{}", required.stderr);
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn s3_an_upload_cut_off_part_way_is_aborted_by_remote_gc() {
    let Some(bucket) = Bucket::shared() else {
        return;
    };
    let p = tiny_project();
    // A finished run for gc to mark from.
    let url = bucket.url();
    let env = bucket.env();
    with_remote(&p, &["run", "exp.toml", "--cache-dir", "a"], &url, &env).ok();
    // A model over 16 MiB goes up in parts; the remote stalls on every part, and the uploader is killed.
    let big = TINY
        .replace("hidden = 16", "hidden = 1100")
        .replace("epochs = 3", "epochs = 1");
    p.write("big.toml", experiment(&big, "length = 5\nseed = 3"));
    let stalling = s3_env(&holding_proxy(&bucket.endpoint, "partNumber="));
    let run = Spawned::start_with_env(
        &p,
        &["run", "big.toml", "--cache-dir", "b", "--remote", &url],
        &env_refs(&stalling),
    );
    let started = Instant::now();
    while !bucket.keys().iter().any(|k| k.contains("/v1/uploads/")) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no upload began"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    run.signal(libc::SIGKILL);
    run.exit();
    let unfinished = || {
        let (_, body) = http_request(
            &bucket.endpoint,
            "GET",
            &format!("/{}?uploads", bucket.name),
            b"",
        )
        .unwrap();
        String::from_utf8_lossy(&body).matches("<UploadId>").count()
    };
    assert_eq!(unfinished(), 1, "the killed upload is on the server");
    // Younger than the grace: kept (its writer may still be at it).
    let kept = with_remote(&p, &["cache", "gc", "--cache-dir", "a"], &url, &env).ok();
    assert!(
        kept.stdout.contains(", 0 unfinished upload(s)"),
        "{}",
        kept.stdout
    );
    assert_eq!(unfinished(), 1);
    let gc = with_remote(
        &p,
        &["cache", "gc", "--cache-dir", "a", "--grace", "0s"],
        &url,
        &env,
    )
    .ok();
    assert!(
        gc.stdout.contains(", 1 unfinished upload(s)"),
        "{}",
        gc.stdout
    );
    assert_eq!(unfinished(), 0, "aborted");
    assert!(
        !bucket.keys().iter().any(|k| k.contains("/v1/uploads/")),
        "{:?}",
        bucket.keys()
    );
}

#[test]
fn a_file_remote_s_staged_parts_left_by_a_killed_upload_are_removed_by_gc() {
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().display());
    let p = tiny_project();
    with_remote(&p, &["run", "exp.toml", "--cache-dir", "a"], &url, &[]).ok();
    // What object_store's file store stages a multipart upload as, left by a killed writer an hour ago.
    let staged = remote
        .path()
        .join(format!("v1/blobs/{}#3", "ab".repeat(32)));
    std::fs::write(&staged, vec![0u8; 1000]).unwrap();
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&staged)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let young = with_remote(
        &p,
        &["cache", "gc", "--cache-dir", "a", "--grace", "2h"],
        &url,
        &[],
    )
    .ok();
    assert!(
        young.stdout.contains(", 0 unfinished upload(s)"),
        "{}",
        young.stdout
    );
    assert!(staged.exists());
    let gc = with_remote(
        &p,
        &["cache", "gc", "--cache-dir", "a", "--grace", "30m"],
        &url,
        &[],
    )
    .ok();
    assert!(
        gc.stdout.contains(", 1 unfinished upload(s)"),
        "{}",
        gc.stdout
    );
    assert!(!staged.exists());
    let verify = with_remote(&p, &["cache", "verify", "--cache-dir", "c"], &url, &[]).ok();
    assert!(verify.stdout.contains(" 0 damaged"), "{}", verify.stdout);
}

#[test]
fn s3_remote_gc_beside_a_push_never_leaves_a_damaged_entry() {
    let Some(bucket) = Bucket::shared() else {
        return;
    };
    let p = midi_project();
    let url = bucket.url();
    let env = bucket.env();
    let first = with_remote(&p, &["run", "exp.toml", "--cache-dir", "a"], &url, &env).ok();
    // Reports to mark from that refer to none of it: everything of the first run is garbage to this gc.
    p.midi("other/x.mid", &[melody(0, &[50, 52, 53, 55, 57])]);
    p.write(
        "other.toml",
        PIPELINE_TOML.replace("path = \"midi\"", "path = \"other\""),
    );
    p.pipeline(&["run", "other.toml", "--reports-dir", "other-reports"])
        .ok();
    // The same results under other keys: `top = 2` keeps the same one instrument.
    // Another experiment (its own name, so its runs are not another file's under `test`).
    p.write(
        "exp2.toml",
        PIPELINE_TOML
            .replace("top = 1", "top = 2")
            .replace("name = \"test\"", "name = \"test2\""),
    );
    let shared = first.stage("vocab").output_hash.unwrap().to_string();
    // The gc's deletion of that shared blob (a bulk `POST ?delete`) is held for a while at the remote…
    let target = shared.clone();
    let (slow, held) = slow_proxy(
        &bucket.endpoint,
        move |line, body| {
            line.starts_with("POST")
                && line.contains("delete")
                && String::from_utf8_lossy(body).contains(&target)
        },
        Some(Duration::from_secs(3)),
    );
    let slow_env = s3_env(&slow);
    let gc = Spawned::start_with_env(
        &p,
        &[
            "cache",
            "gc",
            "--cache-dir",
            "a",
            "--reports-dir",
            "other-reports",
            "--grace",
            "0s",
            "--remote",
            &url,
        ],
        &env_refs(&slow_env),
    );
    let started = Instant::now();
    while held.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        if started.elapsed() > Duration::from_secs(60) {
            gc.signal(libc::SIGKILL);
            panic!("the gc never got to the blob: {:?}", gc.exit());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // …while another machine pushes entries naming it (found there, so not uploaded again).
    let pushed = with_remote(&p, &["run", "exp2.toml", "--cache-dir", "b"], &url, &env).ok();
    assert!(
        pushed.stderr.is_empty() || !pushed.stderr.contains("warning"),
        "{}",
        pushed.stderr
    );
    let (code, stdout, stderr) = gc.exit();
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("pushed while this gc ran"), "{stdout}");
    let verify = with_remote(&p, &["cache", "verify", "--cache-dir", "v"], &url, &env).ok();
    assert!(verify.stdout.contains(" 0 damaged"), "{}", verify.stdout);
    let again = with_remote(&p, &["run", "exp2.toml", "--cache-dir", "c"], &url, &env).ok();
    assert!(!again.stderr.contains("damaged"), "{}", again.stderr);
}

#[test]
fn s3_a_push_puts_back_a_blob_deleted_before_its_record_landed() {
    let Some(bucket) = Bucket::shared() else {
        return;
    };
    let p = midi_project();
    let url = bucket.url();
    let env = bucket.env();
    let local = p.pipeline(&["run", "exp.toml", "--cache-dir", "z"]).ok();
    let key = local.stage("vocab").fingerprint.unwrap().to_string();
    let blob = local.stage("vocab").output_hash.unwrap().to_string();
    // The vocabulary's record is held on its way to the remote; meanwhile its blob is deleted (as a gc that listed
    // the records before this push would).
    let (slow, held) = slow_proxy(
        &bucket.endpoint,
        move |line, _| line.starts_with("PUT") && line.contains(&format!("{key}/record.json")),
        Some(Duration::from_secs(2)),
    );
    let slow_env = s3_env(&slow);
    let run = Spawned::start_with_env(
        &p,
        &["run", "exp.toml", "--cache-dir", "a", "--remote", &url],
        &env_refs(&slow_env),
    );
    let started = Instant::now();
    while held.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the record never went up"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let blob_key = format!("team/v1/blobs/{blob}");
    assert!(bucket.keys().contains(&blob_key), "{:?}", bucket.keys());
    bucket.delete(&blob_key);
    let (code, _, stderr) = run.exit();
    assert_eq!(code, 0, "{stderr}");
    let verify = with_remote(&p, &["cache", "verify", "--cache-dir", "v"], &url, &env).ok();
    assert!(verify.stdout.contains(" 0 damaged"), "{}", verify.stdout);
}
