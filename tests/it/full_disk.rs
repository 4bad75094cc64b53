//! A full disk or a read-only cache directory: a clear error, exit 3, and no half-written entry. Uses a real tiny
//! tmpfs, which needs root (CI runs as root and requires it: `mount` in PIPELINE_TEST_REQUIRE); elsewhere each test
//! says why it did not run.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// A tmpfs of `size` mounted at `dir` for the life of the value.
struct Mount(std::path::PathBuf);

impl Mount {
    /// `None` (the test skips, through [`require`]) where this process may not mount; a failed mount as root is a
    /// failure, not a skip.
    fn tmpfs(dir: &Path, size: &str) -> Option<Self> {
        if !require("mount") {
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("`mount` runs");
        assert!(
            status.success(),
            "mounting a tmpfs on `{}` failed",
            dir.display()
        );
        Some(Self(dir.to_path_buf()))
    }

    fn read_only(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Files of the cache that are neither directories nor lock files (empty markers).
fn data_files(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && !e.path().to_string_lossy().contains("/locks/"))
        .map(|e| e.path().display().to_string())
        .collect()
}

#[test]
fn a_full_disk_fails_clearly_and_leaves_no_partial_entry() {
    let p = Project::new();
    // About 300 KB of events: more than the 256 KiB disk holds once stored.
    for f in 0..8u32 {
        let keys: Vec<u8> = (0..2000u32)
            .map(|i| 40 + ((i * 7 + f) % 40) as u8)
            .collect();
        p.midi(&format!("midi/{f}.mid"), &[melody(0, &keys)]);
    }
    p.write("exp.toml", PIPELINE_TOML);
    let Some(_disk) = Mount::tmpfs(&p.path("cache"), "256k") else {
        return;
    };
    let run = p.pipeline(&["run", "exp.toml"]);
    run.fails_with(
        3,
        "failed: cannot store the result in the cache: cannot write",
    )
    .fails_with(3, "No space left on device")
    .fails_with(3, "hint: the cache directory `cache` could not be written");
    // What is there is whole: every entry verifies, and nothing is left in tmp/.
    let verify = p.pipeline(&["cache", "verify"]).ok();
    assert!(verify.stdout.contains(" 0 damaged"), "{}", verify.stdout);
    assert_eq!(data_files(&p.path("cache/v1/tmp")), Vec::<String>::new());
    // The disk filled before every stage was stored: fewer complete entries than stages.
    let records = data_files(&p.path("cache/v1/entries"))
        .into_iter()
        .filter(|f| f.ends_with("/record.json"))
        .count();
    assert!(
        records < ALL_STAGES.len(),
        "{records} entries stored, so the disk never filled"
    );
}

#[test]
fn a_read_only_cache_directory_fails_clearly() {
    let p = Project::new();
    p.midi("midi/a.mid", &[melody(0, &[60, 62, 64, 65, 67, 69])]);
    p.write("exp.toml", PIPELINE_TOML);
    let Some(disk) = Mount::tmpfs(&p.path("cache"), "1m") else {
        return;
    };
    disk.read_only();
    p.pipeline(&["run", "exp.toml"])
        .fails_with(3, "cannot create the cache directory `cache/v1/entries`")
        .fails_with(3, "Read-only file system")
        .fails_with(3, "hint: pass a writable directory with `--cache-dir`");
    assert!(
        p.path("reports").read_dir().is_err(),
        "nothing ran, no report"
    );
}

#[test]
fn a_read_only_cache_still_serves_what_it_holds() {
    let p = Project::new();
    p.midi("midi/a.mid", &[melody(0, &[60, 62, 64, 65, 67, 69])]);
    p.write("exp.toml", PIPELINE_TOML);
    let Some(disk) = Mount::tmpfs(&p.path("cache"), "4m") else {
        return;
    };
    let first = p.pipeline(&["run", "exp.toml"]).ok();
    disk.read_only();
    let again = p.pipeline(&["run", "exp.toml"]).ok();
    assert!(again.stages("ran").is_empty(), "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("cached, but the cache cannot record it"),
        "{}",
        again.stderr
    );
    assert_eq!(
        again.stage("windows").output_hash,
        first.stage("windows").output_hash
    );
}

#[test]
fn a_miss_in_a_read_only_cache_is_a_cache_failure_with_its_hint() {
    let p = Project::new();
    p.midi("midi/a.mid", &[melody(0, &[60, 62, 64, 65, 67, 69])]);
    p.write("exp.toml", PIPELINE_TOML);
    let Some(disk) = Mount::tmpfs(&p.path("cache"), "4m") else {
        return;
    };
    p.pipeline(&["run", "exp.toml"]).ok();
    disk.read_only();
    // The hits are served; the changed stage cannot be computed into this cache.
    let run = p.pipeline(&["run", "exp.toml", "--set", "windows.seq_len=3"]);
    run.fails_with(3, "Read-only file system")
        .fails_with(3, "hint: the cache directory `cache` could not be written")
        .fails_with(3, "make it writable");
    assert_eq!(run.stages("cached").len(), ALL_STAGES.len() - 1);
    assert_eq!(run.stages("failed"), ["windows"]);
}

#[test]
fn pulling_into_a_read_only_cache_is_exit_3_naming_the_cache() {
    let p = tiny_project();
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().display());
    p.pipeline(&["run", "exp.toml", "--cache-dir", "a", "--remote", &url])
        .ok();
    let Some(disk) = Mount::tmpfs(&p.path("b"), "4m") else {
        return;
    };
    // The cache's folders exist (a cache used before), then its disk turns read-only.
    p.pipeline(&["cache", "du", "--cache-dir", "b"]).ok();
    disk.read_only();
    let pull = p.pipeline(&["cache", "pull", "--cache-dir", "b", "--remote", &url]);
    pull.fails_with(3, "the local cache `b` cannot take what comes down")
        .fails_with(3, "Read-only file system");
    assert!(
        !pull.stderr.contains("does not have it") && !pull.stdout.contains("does not have it"),
        "{}{}",
        pull.stdout,
        pull.stderr
    );
}
