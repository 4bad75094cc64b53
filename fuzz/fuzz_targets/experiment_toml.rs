//! Any text as an experiment file, with any `--set` arguments, through the same loading code as `pipeline run`:
//! overrides parsed, the file parsed, its sweep expanded, every point validated, its graph checked and errors
//! rendered, without panics. Every valid point's `experiment.toml` (what its report folder holds) must load again on
//! its own.
//!
//! Input layout: the experiment text, then optionally a NUL byte and NUL-separated `--set` arguments
//! (`model.layers=2\0source.path=x`), so the fuzzer mutates both.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (text, sets) = match input.split_once('\0') {
        Some((text, rest)) => (text, rest.split('\0').map(str::to_string).collect()),
        None => (input, Vec::new()),
    };
    let path = std::path::Path::new("fuzz/experiment.toml");
    let loaded = pipeline::Override::parse_all(&sets)
        .and_then(|o| pipeline::Study::from_text(path, text, &o));
    match loaded {
        Ok(study) => {
            assert!(!study.points.is_empty());
            for point in &study.points {
                let again =
                    pipeline::Experiment::from_text(path, &point.experiment.text_as_run(), &[]);
                if let Err(d) = again {
                    panic!(
                        "a valid point's experiment.toml does not load on its own:\n{}\n---\n{}",
                        point.experiment.text_as_run(),
                        d.render(false)
                    );
                }
            }
        }
        Err(diagnostics) => {
            let shown = diagnostics.render(false);
            assert!(!shown.is_empty());
        }
    }
});
