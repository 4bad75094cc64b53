//! Names, values and links cannot make the tool write outside its cache and reports directories.

use crate::support::*;

fn project() -> Project {
    let p = Project::new();
    p.midi("midi/a.mid", &[melody(0, &[60, 62, 64, 65, 67, 69])]);
    p
}

#[test]
fn a_symlink_out_of_the_reports_directory_is_refused() {
    let p = project();
    let outside = tempfile::tempdir().unwrap();
    p.write("exp.toml", PIPELINE_TOML);
    std::fs::create_dir_all(p.path("reports")).unwrap();
    std::os::unix::fs::symlink(outside.path(), p.path("reports/test")).unwrap();
    p.pipeline(&["run", "exp.toml"]).fails_with(
        3,
        "outside the reports directory `reports` (a symbolic link?); refusing to write there",
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn a_symlink_out_of_the_cache_directory_is_refused() {
    let p = project();
    let outside = tempfile::tempdir().unwrap();
    p.write("exp.toml", PIPELINE_TOML);
    std::fs::create_dir_all(p.path("cache/v1")).unwrap();
    std::os::unix::fs::symlink(outside.path(), p.path("cache/v1/entries")).unwrap();
    p.pipeline(&["run", "exp.toml"])
        .fails_with(3, "outside the cache directory `cache`");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn the_cache_and_reports_directories_themselves_may_be_links() {
    let p = project();
    let elsewhere = tempfile::tempdir().unwrap();
    p.write("exp.toml", PIPELINE_TOML);
    std::os::unix::fs::symlink(elsewhere.path(), p.path("cache")).unwrap();
    p.pipeline(&["run", "exp.toml"]).ok();
    assert!(elsewhere.path().join("v1/entries").is_dir());
}

#[test]
fn file_names_that_cannot_name_a_folder_are_made_safe() {
    let p = project();
    let exp = PIPELINE_TOML.replace("name = \"test\"\n", "");
    for (file, folder) in [
        ("my exp.toml", "my_exp"),
        ("..toml", "experiment"),
        (".hidden.toml", "hidden"),
    ] {
        p.write(file, &exp);
        let run = p.pipeline(&["run", file]).ok();
        let report = run.report.as_ref().unwrap();
        assert_eq!(
            report.parent().unwrap(),
            p.path("reports").join(folder),
            "{file}"
        );
    }
}

#[test]
fn ps_refuses_a_runs_folder_that_leads_out_of_the_cache_and_deletes_nothing_there() {
    let p = project();
    let victim = tempfile::tempdir().unwrap();
    std::fs::write(victim.path().join("package.json"), "{}").unwrap();
    std::fs::write(
        victim.path().join("1-2.json"),
        "{\"report_dir\": \"/nonexistent\"}",
    )
    .unwrap();
    std::fs::create_dir_all(p.path("c/v1")).unwrap();
    std::os::unix::fs::symlink(victim.path(), p.path("c/v1/runs")).unwrap();
    p.pipeline(&["ps", "--cache-dir", "c"])
        .fails_with(3, "outside the cache directory `c`");
    assert!(victim.path().join("package.json").is_file());
    assert!(victim.path().join("1-2.json").is_file());
}

#[test]
fn ps_removes_only_the_pointers_of_runs_that_are_gone() {
    let p = project();
    std::fs::create_dir_all(p.path("c/v1/runs")).unwrap();
    // A pointer of a killed run (its folder has no board), and files ps did not make.
    p.write(
        "c/v1/runs/123-456.json",
        "{\"report_dir\": \"/nonexistent\"}",
    );
    p.write("c/v1/runs/notes.json", "{}");
    p.write("c/v1/runs/789-1.json", "not a pointer");
    let ps = p.pipeline(&["ps", "--cache-dir", "c"]).ok();
    assert!(ps.stdout.contains("no runs in progress"), "{}", ps.stdout);
    assert!(
        !p.path("c/v1/runs/123-456.json").exists(),
        "the dead run's pointer is removed"
    );
    assert!(p.path("c/v1/runs/notes.json").is_file());
    assert!(p.path("c/v1/runs/789-1.json").is_file());
}

#[test]
fn a_linked_experiment_history_folder_is_never_written_through() {
    let p = project();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("model.json"), "precious").unwrap();
    p.write("exp.toml", PIPELINE_TOML);
    std::fs::create_dir_all(p.path("cache/v1/stages")).unwrap();
    std::os::unix::fs::symlink(outside.path(), p.path("cache/v1/stages/test")).unwrap();
    p.pipeline(&["run", "exp.toml"]).fails_with(
        3,
        "outside the cache directory `cache/v1/stages` (a symbolic link?)",
    );
    assert_eq!(
        std::fs::read_to_string(outside.path().join("model.json")).unwrap(),
        "precious"
    );
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        1,
        "nothing written beside it"
    );
}
