//! Every validation problem exits with code 2 before anything runs, naming file, line, column and key, with a hint.
//! One table of (TOML, expected pieces of the message).

use crate::support::*;

const SOURCE: &str = "[stages.source]\nkind = \"midi_source\"\npath = \"midi\"\n";

/// A whole experiment up to a 2-epoch `train` stage (the window stage holding out `$val` of the files), then `$sweep`:
/// for the `[sweep]` cases, whose points must build.
macro_rules! trained {
    ($val:literal, $sweep:literal) => {
        concat!(
            "[stages]\n[stages.source]\nkind = \"midi_source\"\npath = \"midi\"\n",
            "[stages.melody]\nkind = \"extract_instrument\"\ninputs = [\"source\"]\n",
            "[stages.tokens]\nkind = \"tokenize\"\ninputs = [\"melody\"]\n",
            "[stages.vocab]\nkind = \"vocab\"\ninputs = [\"tokens\"]\n",
            "[stages.windows]\nkind = \"window\"\ninputs = [\"vocab\"]\nseq_len = 2\nval_fraction = ",
            $val,
            "\n[stages.model]\nkind = \"train\"\ninputs = [\"windows\"]\nepochs = 2\n",
            $sweep
        )
    };
}

/// (case, experiment text, `--set` arguments, pieces the error output must contain)
const CASES: &[(&str, &str, &[&str], &[&str])] = &[
    (
        "syntax error",
        "[stages.source\nkind = \"midi_source\"\n",
        &[],
        &["unclosed table", "exp.toml:1:15", "nothing was run"],
    ),
    (
        "unknown parameter",
        "[stages.source]\nkind = \"midi_source\"\npath = \"midi\"\n[stages.w]\nkind = \"window\"\ninputs = []\nseq_lne = 5\n",
        &[],
        &[
            "unknown field `seq_lne`",
            "key `stages.w.seq_lne`",
            "exp.toml:7:1",
            "did you mean `seq_len`?",
        ],
    ),
    (
        "a misspelt value of a few",
        "[stages.m]\nkind = \"train\"\ninputs = []\noptimizer = \"rmsporp\"\n",
        &[],
        &[
            "unknown variant `rmsporp`",
            "key `stages.m.optimizer`",
            "did you mean `rmsprop`?",
        ],
    ),
    (
        "wrong value type",
        "[stages.source]\nkind = \"midi_source\"\npath = 3\n",
        &[],
        &[
            "expected a string, found the number `3`",
            "key `stages.source.path`",
            "exp.toml:3:8",
        ],
    ),
    (
        "value out of range",
        "[stages.source]\nkind = \"midi_source\"\npath = \"midi\"\n[stages.vocab]\nkind = \"vocab\"\ninputs = [\"source\"]\n[stages.w]\nkind = \"window\"\ninputs = [\"vocab\"]\nseq_len = 0\n",
        &[],
        &[
            "must be between 1 and 1000000, got 0",
            "key `stages.w.seq_len`",
            "exp.toml:10:11",
            "help:",
        ],
    ),
    (
        "patience out of range",
        "[stages.m]\nkind = \"train\"\ninputs = []\npatience = 2000000\n",
        &[],
        &[
            "must be between 0 and 1000000, got 2000000",
            "key `stages.m.patience`",
            "exp.toml:7:12",
        ],
    ),
    (
        "nucleus out of range",
        "[stages.s]\nkind = \"sample\"\ninputs = []\ntop_p = 0\n",
        &[],
        &[
            "must be above 0 and at most 1, got 0",
            "key `stages.s.top_p`",
            "exp.toml:7:9",
        ],
    ),
    (
        "transposition the wrong way round",
        "[stages.a]\nkind = \"augment\"\ninputs = []\ntranspose = [3, -3]\n",
        &[],
        &[
            "must be [lo, hi] with -24 ≤ lo ≤ hi ≤ 24, got [3, -3]",
            "key `stages.a.transpose`",
            "exp.toml:7:13",
        ],
    ),
    (
        "grid out of range",
        "[stages.t]\nkind = \"tokenize\"\ninputs = []\nscheme = \"timed\"\ngrid = 0\n",
        &[],
        &[
            "must be between 1 and 96, got 0",
            "key `stages.t.grid`",
            "exp.toml:8:8",
        ],
    ),
    (
        "unknown tokenization scheme",
        "[stages.t]\nkind = \"tokenize\"\ninputs = []\nscheme = \"tsd\"\n",
        &[],
        &[
            "unknown variant `tsd`, expected one of `chord`, `timed`, `notes`",
            "key `stages.t.scheme`",
        ],
    ),
    (
        "too many pieces",
        "[stages.s]\nkind = \"sample\"\ninputs = []\ncount = 9\n",
        &[],
        &[
            "must be between 1 and 8, got 9",
            "key `stages.s.count`",
            "exp.toml:7:9",
        ],
    ),
    (
        "unknown training targets",
        "[stages.m]\nkind = \"train\"\ninputs = []\ntargets = \"every\"\n",
        &[],
        &[
            "unknown variant `every`, expected `last` or `all`",
            "key `stages.m.targets`",
        ],
    ),
    (
        "primer that is not there",
        "[stages.s]\nkind = \"sample\"\ninputs = []\nprimer = \"nope.mid\"\n",
        &[],
        &[
            "no file at",
            "nope.mid",
            "key `stages.s.primer`",
            "exp.toml:7:10",
            "a MIDI file to start from",
        ],
    ),
    (
        "distribution on a non-numeric parameter",
        trained!(
            0.3,
            "[sweep]\nmode = \"random\"\ntrials = 2\n\"tokens.scheme\" = { uniform = [0, 1] }\n"
        ),
        &[],
        &["key `stages.tokens.scheme`", "exp.toml:26:19"],
    ),
    (
        "no trials",
        trained!(
            0.3,
            "[sweep]\nmode = \"random\"\ntrials = 0\n\"model.hidden\" = { int = [4, 8] }\n"
        ),
        &[],
        &[
            "`trials` must be between 1 and 100000, got 0",
            "key `sweep.trials`",
        ],
    ),
    (
        "every bad setting of a sweep at once",
        trained!(
            0.3,
            "[sweep]\n\"model.hidden\" = [4, 8]\nmode = \"gird\"\nrepeat = \"2\"\nrepet = 2\n[sweep.prune]\nreduction = 1\n"
        ),
        &[],
        &[
            "unknown variant `gird`",
            "did you mean `grid`?",
            "expected a whole number (0 or more), found the string \"2\" (key `sweep.repeat`)",
            "`repet` is not a `stage.parameter` key",
            "did you mean `repeat`?",
            "`reduction` must be between 2 and 100, got 1",
            "the experiment has 4 problems",
        ],
    ),
    (
        "unknown pruning metric",
        trained!(
            0.3,
            "[sweep]\n\"model.hidden\" = [4, 8]\n[sweep.prune]\nmetric = \"val_los\"\n"
        ),
        &[],
        &[
            "unknown variant `val_los`",
            "key `sweep.prune.metric`",
            "val_loss_per_onset",
            "did you mean `val_loss`?",
        ],
    ),
    (
        "first rung above the maximum",
        trained!(
            0.3,
            "[sweep]\n\"model.hidden\" = [4, 8]\n[sweep.prune]\nmin_epochs = 5\n"
        ),
        &[],
        &[
            "`min_epochs = 5` is above `model.epochs = 2`",
            "key `sweep.prune.min_epochs`",
        ],
    ),
    (
        "pruning without a validation split",
        trained!(
            0.0,
            "[sweep]\n\"model.hidden\" = [4, 8]\n[sweep.prune]\nmetric = \"val_loss\"\n"
        ),
        &[],
        &["needs validation windows", "key `sweep.prune.metric`"],
    ),
    (
        "distribution outside random mode",
        trained!(0.3, "[sweep]\n\"model.hidden\" = { int = [4, 8] }\n"),
        &[],
        &["is a distribution, which only", "draws from"],
    ),
    (
        "fraction out of range",
        "[stages.w]\nkind = \"window\"\ninputs = []\nval_fraction = 1.5\n",
        &[],
        &[
            "must be at least 0 and below 1, got 1.5",
            "key `stages.w.val_fraction`",
            "exp.toml:7:16",
        ],
    ),
    (
        "out of range from --set",
        "",
        &["--set", "windows.seq_len=0"],
        &[
            "must be between 1 and 1000000, got 0",
            "command line:1:",
            "--set windows.seq_len=0",
        ],
    ),
    (
        "--set of a parameter without its stage",
        "",
        &["--set", "seq_len=64"],
        &[
            "unknown top-level key `seq_len`",
            "command line:1:7",
            "name its stage, `windows.seq_len`",
        ],
    ),
    (
        "--set of an unknown stage",
        "",
        &["--set", "windowz.seq_len=3"],
        &["no stage named `windowz`", "did you mean `windows`?"],
    ),
    (
        "unknown kind",
        "[stages.x]\nkind = \"windw\"\n",
        &[],
        &[
            "unknown stage kind `windw`",
            "key `stages.x.kind`",
            "exp.toml:5:8",
            "did you mean `window`?",
        ],
    ),
    (
        "missing kind",
        "[stages.x]\ninputs = [\"source\"]\n",
        &[],
        &[
            "stage `x` has no `kind`",
            "key `stages.x.kind`",
            "exp.toml:4:9",
        ],
    ),
    (
        "unknown input",
        "[stages.no_drums]\nkind = \"drop_drums\"\ninputs = [\"sorce\"]\n",
        &[],
        &[
            "there is no stage named `sorce`",
            "key `stages.no_drums.inputs`",
            "exp.toml:6:11",
            "did you mean `source`?",
        ],
    ),
    (
        "duplicate name",
        "[stages.source]\nkind = \"drop_drums\"\n",
        &[],
        &[
            "duplicate key",
            "exp.toml:4:9",
            "each stage needs its own name",
        ],
    ),
    (
        "input of the wrong kind",
        "[stages.windows]\nkind = \"window\"\ninputs = [\"source\"]\n",
        &[],
        &[
            "stage `windows` (window) needs a vocabulary as input, but `source` (midi_source) produces MIDI files",
            "exp.toml:6:11",
            "feed it from a stage of kind `vocab`",
        ],
    ),
    (
        "missing input",
        "[stages.tokens]\nkind = \"tokenize\"\n",
        &[],
        &[
            "stage `tokens` (tokenize) takes one input (instrument notes), but none is given",
            "`extract_instrument`",
        ],
    ),
    (
        "cycle",
        "[stages.a]\nkind = \"drop_drums\"\ninputs = [\"b\"]\n[stages.b]\nkind = \"drop_drums\"\ninputs = [\"a\"]\n",
        &[],
        &["the stages form a cycle: a -> b -> a", "exp.toml:4:9"],
    ),
    (
        "self loop",
        "[stages.a]\nkind = \"drop_drums\"\ninputs = [\"a\"]\n",
        &[],
        &["the stages form a cycle: a -> a"],
    ),
    (
        "unknown top-level key",
        "[stage.x]\nkind = \"vocab\"\n",
        &[],
        &["unknown top-level key `stage`", "did you mean `stages`?"],
    ),
    (
        "experiment name climbing out of the reports directory",
        "name = \"../../evil\"\n[stages.source]\nkind = \"midi_source\"\npath = \"midi\"\n",
        &[],
        &[
            "`../../evil` is not a usable experiment name",
            "key `name`",
            "exp.toml:1:8",
        ],
    ),
    (
        "experiment name from --set climbing out",
        "",
        &["--set", "name=../x"],
        &["`../x` is not a usable experiment name", "key `name`"],
    ),
    (
        "missing source directory",
        "",
        &["--set", "source.path=nowhere"],
        &[
            "`nowhere` does not exist",
            "key `stages.source.path`",
            "relative to the experiment file",
        ],
    ),
    (
        "missing source directory that a script makes",
        "",
        &[
            "--set",
            "source.path=nowhere",
            "--set",
            "source.setup=python3 make_corpus.py nowhere",
        ],
        &[
            "`nowhere` does not exist",
            "make the files first: `python3 make_corpus.py nowhere`",
        ],
    ),
    (
        "--set into a stage that is not a table",
        "[stages]\nsource = 1\n",
        &["--set", "source.path=x"],
        &[
            "stage `source` must be a table, not integer",
            "exp.toml:2:10",
            "key `stages.source`",
        ],
    ),
    (
        "a sweep over a stage that is not a table",
        "[stages]\nsource = 1\n[sweep]\n\"source.path\" = [\"a\", \"b\"]\n",
        &[],
        &[
            "stage `source` must be a table, not integer",
            "key `stages.source`",
        ],
    ),
];

#[test]
fn every_validation_problem_is_reported_with_location_key_and_exit_code_2() {
    let mut failures = Vec::new();
    for (case, snippet, set, expected) in CASES {
        let p = Project::new();
        p.midi("midi/a.mid", &[melody(0, &[60, 62, 64, 65, 67])]);
        // Snippets that declare `source` (or all of `[stages]`) replace the default one; others are appended to a valid pipeline.
        let text = if snippet.contains("[stages.source]\nkind = \"midi_source\"")
            || snippet.starts_with("[stages.source\n")
            || snippet.starts_with("[stages]\n")
        {
            snippet.to_string()
        } else if snippet.is_empty() {
            PIPELINE_TOML.to_string()
        } else {
            format!("{SOURCE}{snippet}")
        };
        p.write("exp.toml", &text);
        let mut args = vec!["run", "exp.toml"];
        args.extend_from_slice(set);
        let run = p.pipeline(&args);
        let missing: Vec<_> = expected
            .iter()
            .filter(|e| !run.stderr.contains(**e))
            .collect();
        if run.code != 2 || !missing.is_empty() || p.path("cache").exists() {
            failures.push(format!(
                "case `{case}`: exit {} (want 2), missing {missing:?}, cache created: {}\n{}",
                run.code,
                p.path("cache").exists(),
                run.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn all_problems_are_reported_together() {
    let p = Project::new();
    p.write(
        "exp.toml",
        "[stages.a]\nkind = \"windw\"\n[stages.b]\nkind = \"window\"\ninputs = [\"zz\"]\nseq_len = -1\n",
    );
    let run = p.pipeline(&["graph", "exp.toml"]);
    run.fails_with(2, "unknown stage kind `windw`");
    assert!(run.stderr.contains("no stage named `zz`"));
    assert!(
        run.stderr
            .contains("expected a whole number (0 or more), found the number `-1`")
    );
    assert!(
        run.stderr.contains("the experiment has 3 problems"),
        "{}",
        run.stderr
    );
}

/// serde stops at a table's first bad key; the user still hears of every one, in words, not Rust types.
#[test]
fn every_bad_key_of_one_stage_table_is_reported_at_once() {
    let p = Project::new();
    p.midi("midi/a.mid", &[melody(0, &[60, 62, 64])]);
    p.write(
        "exp.toml",
        format!(
            "{}hidden = \"x\"\noptimizer = \"adamx\"\nlearning_rat = 0.1\n",
            trained!("0", "")
        ),
    );
    let run = p.pipeline(&["graph", "exp.toml"]);
    run.fails_with(2, "the experiment has 3 problems");
    for piece in [
        "expected a whole number (0 or more), found the string \"x\" (key `stages.model.hidden`)",
        "unknown variant `adamx`",
        "did you mean `adam`?",
        "unknown field `learning_rat`",
        "did you mean `learning_rate`?",
    ] {
        assert!(
            run.stderr.contains(piece),
            "missing {piece:?}:\n{}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains("u32"), "{}", run.stderr);
}

/// A stage too broken to build (no `kind`) is one problem, not one more for every stage that reads from it.
#[test]
fn a_stage_without_a_kind_is_one_problem_not_a_cascade() {
    let p = Project::new();
    p.midi("midi/a.mid", &[melody(0, &[60, 62, 64])]);
    let text = trained!("0", "").replace("kind = \"window\"\n", "");
    p.write("exp.toml", &text);
    let run = p.pipeline(&["graph", "exp.toml"]);
    run.fails_with(2, "stage `windows` has no `kind`");
    assert!(
        run.stderr.contains("the experiment has 1 problem;")
            && !run.stderr.contains("no stage named"),
        "{}",
        run.stderr
    );
}

#[test]
fn graph_prints_text_and_dot() {
    let p = Project::new();
    p.midi("midi/a.mid", &[melody(0, &[60, 62])]);
    p.write("exp.toml", PIPELINE_TOML);
    let text = p.pipeline(&["graph", "exp.toml"]).ok().stdout;
    assert!(text.starts_with("test: 6 stages\n"), "{text}");
    assert!(
        text.contains("windows   window              <- vocab"),
        "{text}"
    );
    let dot = p
        .pipeline(&["graph", "exp.toml", "--format", "dot"])
        .ok()
        .stdout;
    assert!(dot.contains("digraph {"), "{dot}");
    assert_eq!(dot.matches(" -> ").count(), 5, "{dot}");
    assert!(dot.contains("label = \"windows\\lwindow\""), "{dot}");
}

#[test]
fn a_missing_experiment_file_is_a_clear_error() {
    let p = Project::new();
    let run = p.pipeline(&["run", "nope.toml"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("cannot read experiment file `nope.toml`"),
        "{}",
        run.stderr
    );
}

#[test]
fn bench_values_out_of_range_are_usage_errors_not_panics() {
    let p = Project::new();
    for (flag, value) in [
        ("--seq-len", "0"),
        ("--vocab", "0"),
        ("--layers", "0"),
        ("--layers", "17"),
        ("--batch", "0"),
        ("--steps", "0"),
        ("--hidden", "x"),
    ] {
        let run = p.pipeline(&["bench", "train", flag, value]);
        assert_eq!(run.code, 2, "{flag} {value}: {}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("`{value}` must be a whole number from")),
            "{flag} {value}: {}",
            run.stderr
        );
    }
}
