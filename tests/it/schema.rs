//! `pipeline schema`: the JSON Schema of the experiment file. Every stage kind and every parameter the validator
//! takes is in it (the parameter lists are read from the validator's own "expected one of" message, so a parameter
//! added to a kind and forgotten by the schema fails here); the bundled experiments are valid against it (checked by
//! the `jsonschema` crate, as an editor would) and broken copies are not.

use std::collections::BTreeSet;

use crate::support::*;

fn schema(p: &Project) -> serde_json::Value {
    serde_json::from_str(&p.pipeline(&["schema"]).ok().stdout).expect("the schema is JSON")
}

fn repo(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The parameters the validator names for the stage `stage` of the baseline (from its unknown-field message).
fn validator_params(p: &Project, stage: &str) -> BTreeSet<String> {
    let baseline = repo("experiments/baseline.toml");
    let run = p.pipeline(&[
        "status",
        baseline.to_str().unwrap(),
        "--set",
        &format!("{stage}.no_such_parameter=1"),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let line = run.stderr.lines().next().unwrap();
    if line.contains("there are no fields") {
        return BTreeSet::new();
    }
    let listed = line
        .split("expected one of ")
        .nth(1)
        .or_else(|| line.split("expected ").nth(1))
        .unwrap_or_else(|| panic!("no parameter list in {line:?}"));
    // serde lists two fields as "`a` or `b`", more as "`a`, `b`, `c`".
    listed
        .split(" (key")
        .next()
        .unwrap()
        .replace("` or `", "`, `")
        .split(", ")
        .map(|f| f.trim_matches('`').to_string())
        .collect()
}

#[test]
fn every_stage_kind_and_parameter_is_in_the_schema() {
    let p = Project::new();
    let schema = schema(&p);
    let defs = &schema["$defs"];
    let baseline: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo("experiments/baseline.toml")).unwrap())
            .unwrap();
    let mut kinds = BTreeSet::new();
    for (stage, table) in baseline["stages"].as_table().unwrap() {
        let kind = table["kind"].as_str().unwrap();
        kinds.insert(kind.to_string());
        let props: BTreeSet<String> = defs[format!("stage_{kind}")]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no schema for kind `{kind}`"))
            .keys()
            .filter(|k| *k != "kind" && *k != "inputs")
            .cloned()
            .collect();
        assert_eq!(props, validator_params(&p, stage), "kind `{kind}`");
        for (name, prop) in defs[format!("stage_{kind}")]["properties"]
            .as_object()
            .unwrap()
        {
            assert!(
                prop.get("description").is_some() || prop.get("$ref").is_some(),
                "{kind}.{name} has no description"
            );
        }
    }
    // The baseline uses every kind there is: the schema's kinds are exactly those.
    let in_schema: BTreeSet<String> = defs
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|k| k.strip_prefix("stage_").map(str::to_string))
        .collect();
    assert_eq!(in_schema, kinds);
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}

/// Every experiment in `experiments/`.
const BUNDLED: [&str; 6] = ["baseline", "paper", "rhythm", "search", "bach", "quality"];

fn as_json(toml_text: &str) -> serde_json::Value {
    serde_json::to_value(toml::from_str::<toml::Table>(toml_text).unwrap()).unwrap()
}

#[test]
fn the_bundled_experiments_are_valid_and_broken_copies_are_not() {
    let p = Project::new();
    let schema = schema(&p);
    let validator = jsonschema::draft202012::new(&schema).expect("a valid draft 2020-12 schema");
    let mut on_disk: Vec<String> = std::fs::read_dir(repo("experiments"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
        .collect();
    on_disk.sort();
    let mut bundled = BUNDLED.to_vec();
    bundled.sort();
    assert_eq!(
        on_disk, bundled,
        "BUNDLED lists every experiment in experiments/"
    );
    for name in BUNDLED {
        let text = std::fs::read_to_string(repo(&format!("experiments/{name}.toml"))).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&as_json(&text))
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
    let baseline = std::fs::read_to_string(repo("experiments/baseline.toml")).unwrap();
    let broken = [
        (
            "an unknown parameter",
            baseline.replacen("seq_len", "seq_length", 1),
        ),
        (
            "a string where a number goes",
            baseline.replacen("seq_len = ", "seq_len = \"x\" #", 1),
        ),
        (
            "an unknown kind",
            baseline.replacen("kind = \"window\"", "kind = \"windows\"", 1),
        ),
        (
            "an unknown top-level key",
            format!("nmae = \"x\"\n{baseline}"),
        ),
        (
            "an enum value that is not one",
            baseline.replacen("optimizer = ", "optimizer = \"sgdd\" #", 1),
        ),
        (
            "a sweep mode that is not one",
            format!("{baseline}\n[sweep]\nmode = \"grd\"\n\"model.hidden\" = [8]\n"),
        ),
        (
            "a prune key that is not one",
            format!(
                "{baseline}\n[sweep]\n\"model.hidden\" = [8]\n[sweep.prune]\nmetric = \"val_loss\"\nrungs = 2\n"
            ),
        ),
        (
            "an unknown Slurm setting",
            format!("{baseline}\n[executor.slurm]\npartitoin = \"gpu\"\n"),
        ),
    ];
    for (what, text) in broken {
        assert_ne!(text, baseline, "{what}: the edit did not apply");
        assert!(
            !validator.is_valid(&as_json(&text)),
            "{what} passes the schema"
        );
    }
}

/// Whether `pipeline status` on the baseline with `--set stage.key=value` reports a problem with that key.
fn refused(p: &Project, stage: &str, key: &str, value: &str) -> bool {
    let baseline = repo("experiments/baseline.toml");
    let run = p.pipeline(&[
        "status",
        baseline.to_str().unwrap(),
        "--set",
        &format!("{stage}.{key}={value}"),
    ]);
    run.stderr
        .contains(&format!("(key `stages.{stage}.{key}`)"))
}

/// Every bound the schema gives a parameter is the validator's: the value at an inclusive bound passes, the value
/// just beyond it (or at an exclusive bound) is refused, naming the parameter.
#[test]
fn the_schema_ranges_are_the_validators() {
    let p = Project::new();
    let schema = schema(&p);
    let baseline: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo("experiments/baseline.toml")).unwrap())
            .unwrap();
    let mut probed = 0;
    for (stage, table) in baseline["stages"].as_table().unwrap() {
        let kind = table["kind"].as_str().unwrap();
        for (key, prop) in schema["$defs"][format!("stage_{kind}")]["properties"]
            .as_object()
            .unwrap()
        {
            let integer = prop["type"] == "integer";
            let text = |x: f64| {
                if integer {
                    format!("{}", x as i64)
                } else {
                    format!("{x:?}")
                }
            };
            let delta = |x: f64| {
                if integer {
                    1.0
                } else {
                    (x.abs() * 1e-6).max(1e-9)
                }
            };
            let mut check = |inside: f64, outside: f64| {
                assert!(
                    !refused(&p, stage, key, &text(inside)),
                    "{kind}.{key} = {} is refused",
                    text(inside)
                );
                assert!(
                    refused(&p, stage, key, &text(outside)),
                    "{kind}.{key} = {} passes",
                    text(outside)
                );
                probed += 1;
            };
            if let Some(min) = prop["minimum"].as_f64() {
                check(min, min - delta(min));
            }
            if let Some(max) = prop["maximum"].as_f64() {
                check(max, max + delta(max));
            }
            if let Some(e) = prop["exclusiveMinimum"].as_f64() {
                check(e + delta(e), e);
            }
            if let Some(e) = prop["exclusiveMaximum"].as_f64() {
                check(e - delta(e), e);
            }
            if let (Some(lo), Some(hi)) = (
                prop["items"]["minimum"].as_i64(),
                prop["items"]["maximum"].as_i64(),
            ) {
                assert!(
                    !refused(&p, stage, key, &format!("[{lo}, {hi}]")),
                    "{kind}.{key} = [{lo}, {hi}] is refused"
                );
                assert!(
                    refused(&p, stage, key, &format!("[{}, 0]", lo - 1)),
                    "{kind}.{key} below {lo} passes"
                );
                assert!(
                    refused(&p, stage, key, &format!("[0, {}]", hi + 1)),
                    "{kind}.{key} above {hi} passes"
                );
                probed += 1;
            }
        }
    }
    assert!(probed >= 30, "only {probed} bounds probed");
}

/// The schema the bundled experiments name in their `#:schema` line is the one `pipeline schema` prints.
#[test]
fn the_bundled_schema_file_is_the_current_schema() {
    let p = Project::new();
    let printed = p.pipeline(&["schema"]).ok().stdout;
    let committed = std::fs::read_to_string(repo("experiments/experiment.schema.json")).unwrap();
    assert!(
        committed == printed,
        "experiments/experiment.schema.json is stale: run `cargo run --release -- schema > experiments/experiment.schema.json`"
    );
    for name in BUNDLED {
        let text = std::fs::read_to_string(repo(&format!("experiments/{name}.toml"))).unwrap();
        assert_eq!(
            text.lines().next(),
            Some("#:schema ./experiment.schema.json"),
            "{name}.toml"
        );
    }
}

/// What an editor with Even Better TOML sees: the real `taplo` CLI, reading the `#:schema` line, passes the bundled
/// experiments and fails broken copies, naming the problem.
#[test]
fn taplo_checks_the_bundled_experiments_against_the_schema() {
    if !require("taplo") {
        return;
    }
    let taplo = taplo_path().unwrap();
    let p = Project::new();
    p.write(
        "experiment.schema.json",
        std::fs::read(repo("experiments/experiment.schema.json")).unwrap(),
    );
    let check = |file: &str| {
        std::process::Command::new(&taplo)
            .args(["check", file])
            .current_dir(p.dir.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    for name in BUNDLED {
        p.write(
            &format!("{name}.toml"),
            std::fs::read(repo(&format!("experiments/{name}.toml"))).unwrap(),
        );
        let out = check(&format!("{name}.toml"));
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let baseline = std::fs::read_to_string(repo("experiments/baseline.toml")).unwrap();
    for (what, text, says) in [
        (
            "unknown parameter",
            baseline.replacen("seq_len", "seq_length", 1),
            "seq_length",
        ),
        (
            "wrong type",
            baseline.replacen("seq_len = ", "seq_len = \"x\" #", 1),
            "\"x\"",
        ),
        (
            "out of range",
            baseline.replacen("seq_len = 32", "seq_len = 0", 1),
            "minimum",
        ),
    ] {
        p.write("broken.toml", &text);
        let out = check("broken.toml");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: taplo passed it");
        assert!(stderr.contains(says), "{what}: {stderr}");
    }
}

/// `experiments/bach.toml` in a checkout where `bench/bach_chorales.py` has not been run: the error names the script.
#[test]
fn the_bach_experiment_without_its_corpus_says_which_script_makes_it() {
    let p = Project::new();
    p.write(
        "experiments/bach.toml",
        std::fs::read(repo("experiments/bach.toml")).unwrap(),
    );
    let run = p.pipeline(&["status", "experiments/bach.toml"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("make the files first: `python3 bench/bach_chorales.py data/bach`"),
        "{}",
        run.stderr
    );
    std::fs::create_dir_all(p.path("data/bach")).unwrap();
    let run = p.pipeline(&["run", "experiments/bach.toml"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("no MIDI files")
            && run
                .stderr
                .contains("make them first: `python3 bench/bach_chorales.py data/bach`"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_manual_s_parameter_table_is_the_one_the_schema_makes() {
    let p = Project::new();
    let table = p.pipeline(&["schema", "--markdown"]).ok().stdout;
    assert!(table.contains("| `train` | training windows |"), "{table}");
    let readme = std::fs::read_to_string(repo("docs/src/reference/stages.md")).unwrap();
    let start = "(tests/it/schema.rs fails when this table differs from it). -->\n";
    let end = "<!-- End of the generated table. -->";
    let from = readme
        .find(start)
        .expect("the stage reference marks its generated table")
        + start.len();
    let to = from + readme[from..].find(end).expect("and its end");
    assert_eq!(
        &readme[from..to],
        table,
        "docs/src/reference/stages.md's parameter table is stale: paste `pipeline schema --markdown` between its markers"
    );
}
