//! Killing the process (SIGKILL) mid-run never leaves a cache entry that a later run trusts: every entry in the
//! cache is complete and intact, and the next run finishes with exactly the results of an uninterrupted one.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Every entry directory holds a record whose hashes match its files. Returns how many there are.
fn assert_cache_intact(cache: &Path) -> usize {
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

fn output_hashes(run: &Run) -> Vec<serde_json::Value> {
    ALL_STAGES
        .iter()
        .map(|s| run.stage(s)["output_hash"].clone())
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

    let started = Instant::now();
    let reference = p
        .pipeline(&["run", "exp.toml", "--cache-dir", "reference"])
        .ok();
    let full = started.elapsed();
    let expected = output_hashes(&reference);

    for k in 1..=8u32 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .args(["run", "exp.toml", "--cache-dir", "interrupted"])
            .current_dir(p.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(
            full.mul_f64(f64::from(k) / 9.0)
                .max(Duration::from_millis(5)),
        );
        let _ = child.kill(); // SIGKILL: no cleanup runs
        child.wait().unwrap();
        let entries = assert_cache_intact(&p.path("interrupted"));
        if k == 1 {
            assert!(
                entries < ALL_STAGES.len(),
                "the first kill interrupted the run ({entries} entries)"
            );
        }
    }
    let resumed = p
        .pipeline(&["run", "exp.toml", "--cache-dir", "interrupted"])
        .ok();
    assert_eq!(output_hashes(&resumed), expected);
    assert_cache_intact(&p.path("interrupted"));
}
