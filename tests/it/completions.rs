//! `pipeline completions bash|zsh|fish`: the scripts clap_complete writes from the same definitions clap parses.
//! The bash one is loaded into a real bash and asked to complete; zsh and fish are checked by what they declare
//! (and by the shells themselves where installed).

use std::process::Command;

use crate::support::*;

/// What bash offers after the words `line` (the last one being completed), with the script loaded.
fn bash_completes(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; _pipeline pipeline \
         '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_commands_subcommands_and_options() {
    let p = Project::new();
    let script = p.pipeline(&["completions", "bash"]).ok().stdout;
    p.write("pipeline.bash", &script);
    let path = p.path("pipeline.bash");
    assert_eq!(bash_completes(&path, &["pipeline", "ca"]), ["cache"]);
    let cache = bash_completes(&path, &["pipeline", "cache", ""]);
    for sub in ["verify", "du", "push", "pull", "gc"] {
        assert!(
            cache.contains(&sub.to_string()),
            "{sub} missing from {cache:?}"
        );
    }
    assert_eq!(
        bash_completes(&path, &["pipeline", "run", "--exe"]),
        ["--executor"]
    );
    assert!(
        bash_completes(&path, &["pipeline", "run", "--remote-r"])
            .contains(&"--remote-required".to_string())
    );
    assert_eq!(
        bash_completes(&path, &["pipeline", "run", "--executor", "sl"]),
        ["slurm"]
    );
}

#[test]
fn zsh_and_fish_scripts_declare_every_command() {
    let p = Project::new();
    for shell in ["zsh", "fish"] {
        let script = p.pipeline(&["completions", shell]).ok().stdout;
        for command in [
            "run",
            "status",
            "graph",
            "bench",
            "cache",
            "compare",
            "completions",
        ] {
            assert!(script.contains(command), "{shell}: {command} missing");
        }
        // Where the shell is installed, it must parse the script (`zsh -n`, `fish --no-execute`).
        if Command::new(shell).arg("--version").output().is_ok() {
            p.write(&format!("pipeline.{shell}"), &script);
            let flag = if shell == "zsh" { "-n" } else { "--no-execute" };
            let parsed = Command::new(shell)
                .arg(flag)
                .arg(p.path(&format!("pipeline.{shell}")))
                .output()
                .unwrap();
            assert!(
                parsed.status.success(),
                "{shell}: {}",
                String::from_utf8_lossy(&parsed.stderr)
            );
        }
    }
    p.pipeline(&["completions", "powershell"])
        .fails_with(2, "invalid value 'powershell'");
}

/// `pipeline completions bash | head -1` and the like: a reader that closes stdout early ends the program quietly,
/// never with a panic. The pipe's read end is closed before the program starts, so its first write fails.
#[test]
fn a_closed_stdout_ends_the_program_quietly() {
    let p = midi_project();
    for args in [
        &["completions", "bash"][..],
        &["graph", "exp.toml"][..],
        &["schema"][..],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_pipeline"))
            .args(args)
            .current_dir(p.path("."))
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}
