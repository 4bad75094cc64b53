//! A cache is untrusted input (a colleague's, a cluster's, a precomputed one): a crafted entry — file names that
//! climb out, an absolute name, a decodable output that would panic where it is used, bytes of an old format — is
//! discarded with a warning and recomputed. Nothing is written outside the cache and reports directories.

use std::path::{Path, PathBuf};

use crate::support::*;
use pipeline::artifact::Artifact;

/// The entry directory of a stage of the last run.
fn entry_dir(p: &Project, run: &Run, stage: &str) -> PathBuf {
    let hex = run.stage(stage).fingerprint.expect("a fingerprint").hex();
    p.path("cache/v1/entries").join(&hex[..2]).join(hex)
}

fn read_record(entry: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(entry.join("record.json")).unwrap()).unwrap()
}

fn write_record(entry: &Path, record: &serde_json::Value) {
    std::fs::write(
        entry.join("record.json"),
        serde_json::to_vec_pretty(record).unwrap(),
    )
    .unwrap();
}

fn file_record(bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({ "hash": blake3::hash(bytes).to_hex().to_string(), "bytes": bytes.len() })
}

/// Renames the entry's only report file to `name` in its record, with a file of matching content where the entry's
/// `files/` joined with `name` points.
fn rename_report_file(entry: &Path, name: &str, content: &[u8]) {
    let mut record = read_record(entry);
    let files = record["files"].as_object_mut().unwrap();
    files.clear();
    files.insert(name.to_string(), file_record(content));
    write_record(entry, &record);
    let target = entry.join("files").join(name);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(target, content).unwrap();
}

/// Replaces an entry's output with `bytes` and makes the record match them.
fn replace_output(entry: &Path, bytes: &[u8]) {
    std::fs::write(entry.join("output.bin"), bytes).unwrap();
    let mut record = read_record(entry);
    record["output"] = file_record(bytes);
    write_record(entry, &record);
}

#[test]
fn a_record_naming_a_file_outside_its_entry_is_damaged_and_recomputed() {
    let p = midi_project();
    let first = p.pipeline(&["run", "exp.toml"]).ok();
    let entry = entry_dir(&p, &first, "source");
    // From `reports/test/<run>/`, three levels up is the project directory.
    rename_report_file(&entry, "../../../escaped.csv", b"planted\n");

    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert!(
        !p.path("escaped.csv").exists(),
        "a cache entry wrote outside the reports directory"
    );
    assert!(
        run.stderr
            .contains("warning: source: the cached result was damaged"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("not a plain file name"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stages("ran"),
        ["source"],
        "only the damaged stage reruns"
    );
    // The recomputed entry is whole again.
    assert_eq!(
        p.pipeline(&["run", "exp.toml"]).ok().stages("ran"),
        Vec::<String>::new()
    );
}

#[test]
fn an_absolute_file_name_in_a_record_cannot_truncate_or_leave_the_cache() {
    let p = midi_project();
    let first = p.pipeline(&["run", "exp.toml"]).ok();
    let entry = entry_dir(&p, &first, "source");
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim.csv");
    // `files/` joined with an absolute name is that name: the copy's source and destination would be one file.
    rename_report_file(&entry, victim.to_str().unwrap(), b"precious data\n");

    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious data\n");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
    assert_eq!(run.stages("ran"), ["source"]);
}

#[test]
fn a_plain_name_the_stage_kind_never_makes_is_damaged() {
    let p = midi_project();
    let first = p.pipeline(&["run", "exp.toml"]).ok();
    let entry = entry_dir(&p, &first, "source");
    // Plain, but it would overwrite the report's own manifest.
    rename_report_file(&entry, "manifest.json", b"{}");
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert!(
        run.stderr.contains("its stage kind never makes"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stages("ran"), ["source"]);
    assert_eq!(run.manifest().experiment, "test");
}

#[test]
fn a_window_past_the_end_of_its_ids_is_damaged_not_a_panic() {
    let p = tiny_project();
    let first = p.pipeline(&["run", "exp.toml"]).ok();
    let entry = entry_dir(&p, &first, "windows");
    let Artifact::Windows(mut windows) =
        Artifact::from_bytes(&std::fs::read(entry.join("output.bin")).unwrap()).unwrap()
    else {
        panic!("the windows stage stores windows")
    };
    windows.files[0].offset = windows.ids.len() + 1000;
    replace_output(&entry, &Artifact::Windows(windows).to_bytes());

    let run = p.pipeline(&["run", "exp.toml", "--force", "model"]).ok();
    assert!(run.stderr.contains("past the end"), "{}", run.stderr);
    assert!(run.stages("ran").contains(&"windows".to_string()));
    assert!(run.stages("ran").contains(&"model".to_string()));
}

#[test]
fn a_stored_model_with_no_layers_is_damaged_not_a_panic() {
    let p = tiny_project();
    let first = p.pipeline(&["run", "exp.toml"]).ok();
    let entry = entry_dir(&p, &first, "model");
    let Artifact::Model(mut model) =
        Artifact::from_bytes(&std::fs::read(entry.join("output.bin")).unwrap()).unwrap()
    else {
        panic!("the train stage stores a model")
    };
    model.config.layers = 0;
    replace_output(&entry, &Artifact::Model(model).to_bytes());

    let run = p.pipeline(&["run", "exp.toml", "--force", "music"]).ok();
    assert!(run.stderr.contains("layers = 0"), "{}", run.stderr);
    assert_eq!(run.stages("ran"), ["model", "music"]);
}

#[test]
fn an_intact_entry_of_an_older_format_is_recomputed_not_a_failure() {
    let p = midi_project();
    let first = p.pipeline(&["run", "exp.toml"]).ok();
    let entry = entry_dir(&p, &first, "tokens");
    // Hashes match, but the bytes are no artifact this version can read.
    replace_output(&entry, b"\xff\xff\xff\xff an artifact from another version");
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert!(run.stderr.contains("cannot be decoded"), "{}", run.stderr);
    assert_eq!(run.stages("ran"), ["tokens"]);
    // `cache verify` agrees once something is damaged again.
    replace_output(&entry_dir(&p, &run, "tokens"), b"\xff\xff");
    let verify = p.pipeline(&["cache", "verify"]);
    assert_eq!(verify.code, 1, "{}", verify.stdout);
    assert!(
        verify.stdout.contains("cannot be decoded"),
        "{}",
        verify.stdout
    );
}

#[test]
fn a_record_claiming_another_fingerprint_is_damaged() {
    let p = midi_project();
    let first = p.pipeline(&["run", "exp.toml"]).ok();
    let entry = entry_dir(&p, &first, "vocab");
    let mut record = read_record(&entry);
    record["fingerprint"]["kind"] = "window".into();
    write_record(&entry, &record);
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert!(run.stderr.contains("another fingerprint"), "{}", run.stderr);
    assert_eq!(run.stages("ran"), ["vocab"]);
}

#[test]
fn an_output_of_the_wrong_kind_is_damage_locally_and_in_verify() {
    let p = midi_project();
    let first = p.pipeline(&["run", "exp.toml"]).ok();
    // The tokens stage's output filed under the vocab stage's key, with a record that matches the bytes.
    let tokens = std::fs::read(entry_dir(&p, &first, "tokens").join("output.bin")).unwrap();
    replace_output(&entry_dir(&p, &first, "vocab"), &tokens);
    let verify = p.pipeline(&["cache", "verify"]);
    assert_eq!(verify.code, 1, "{}", verify.stdout);
    assert!(
        verify
            .stdout
            .contains("its output is tokens, where its stage kind makes a vocabulary"),
        "{}",
        verify.stdout
    );
    let run = p.pipeline(&["run", "exp.toml"]).ok();
    assert!(
        run.stages("ran").contains(&"vocab".to_string()),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("its output is tokens"),
        "{}",
        run.stderr
    );
    p.pipeline(&["cache", "verify"]).ok();
}
