//! A full disk or a read-only cache directory: a clear error, exit 3, and no half-written entry. Uses a real tiny
//! tmpfs, which needs root (CI runs as root); elsewhere the test says why it did not run.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// A tmpfs of `size` mounted at `dir` for the life of the value.
struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_path_buf()))
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
        eprintln!("skipped: mounting a tmpfs needs root");
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
    let entries = data_files(&p.path("cache/v1/entries"));
    assert!(
        entries.len() < 3 * ALL_STAGES.len(),
        "the disk filled before every stage was stored: {entries:?}"
    );
}

#[test]
fn a_read_only_cache_directory_fails_clearly() {
    let p = Project::new();
    p.midi("midi/a.mid", &[melody(0, &[60, 62, 64, 65, 67, 69])]);
    p.write("exp.toml", PIPELINE_TOML);
    let Some(disk) = Mount::tmpfs(&p.path("cache"), "1m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
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
        eprintln!("skipped: mounting a tmpfs needs root");
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
        again.stage("windows")["output_hash"],
        first.stage("windows")["output_hash"]
    );
}
