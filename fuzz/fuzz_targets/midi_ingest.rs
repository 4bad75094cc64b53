//! Any bytes through MIDI ingest and on to tokens: errors are fine, panics and unbounded allocation are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tokens) = pipeline::tokenize_bytes(data) {
        // Every token the stage emits must be a note or chord the MIDI writer can voice.
        let tokens = tokens.tokens().expect("the tokenize stage returns tokens");
        for file in &tokens.files {
            for token in &file.tokens {
                assert!(
                    pipeline::pitches_of(token).is_some(),
                    "{token}"
                );
            }
        }
    }
});
