//! Any text as an experiment file: parsed, validated, its graph checked and its errors rendered, without panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("fuzz/experiment.toml");
    match pipeline::sweep::Study::from_text(path, text, &[]) {
        Ok(study) => assert!(!study.points.is_empty()),
        Err(diagnostics) => {
            let shown = diagnostics.render(false);
            assert!(!shown.is_empty());
        }
    }
});
