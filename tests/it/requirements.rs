//! One line that tells a new user what this machine could not test: which optional requirements are missing, which
//! tests skip because of it (each is also reported ignored, with its reason), and how to get them. It passes either way,
//! except that a requirement `PIPELINE_TEST_REQUIRE` names must be present.

use std::io::Write as _;

use crate::support::*;

#[test]
fn what_this_machine_cannot_test_is_said_in_one_line() {
    let missing: Vec<_> = REQUIREMENTS
        .iter()
        .filter(|(_, present, _, _)| !present())
        .collect();
    let required = required();
    for (name, _, _, how) in &missing {
        assert!(
            !required.iter().any(|r| r == name),
            "{name} is required here (PIPELINE_TEST_REQUIRE) but missing: {how}"
        );
    }
    let line = if missing.is_empty() {
        format!(
            "requirements: all {} present ({}); no test skips",
            REQUIREMENTS.len(),
            REQUIREMENTS
                .iter()
                .map(|r| r.0)
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        let parts: Vec<String> = missing
            .iter()
            .map(|(name, _, tests, how)| format!("{name} (skips {tests}; {how})"))
            .collect();
        format!(
            "requirements: {} of {} missing, so tests skip (reported ignored, and listed at the end): {}",
            missing.len(),
            REQUIREMENTS.len(),
            parts.join("; ")
        )
    };
    // Past the harness's capture, so it shows in a passing run.
    let _ = writeln!(std::io::stderr(), "{line}");
}
