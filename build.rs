//! Records the versions of the crates that shape results (from Cargo.lock) for run manifests.
//!
//! This script has no dependencies on purpose: cargo unifies a build script's dependencies with the test-only
//! crates' build dependencies (headless_chrome generates its protocol with serde and toml), so any dependency here
//! got other features under `cargo test`, re-ran this script and recompiled the whole crate a second time. Cargo.lock
//! is machine-written, one `name = "…"` then one `version = "…"` line per `[[package]]`, which is all this reads.

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let wanted = [
        "midly",
        "blake3",
        "postcard",
        "rand",
        "rand_chacha",
        "candle-core",
        "candle-nn",
        "toml",
    ];
    let quoted = |line: &str, key: &str| -> Option<String> {
        let value = line.strip_prefix(key)?.trim().strip_prefix('=')?.trim();
        Some(value.strip_prefix('"')?.strip_suffix('"')?.to_string())
    };
    let mut found = Vec::new();
    let mut name: Option<String> = None;
    for line in lock.lines() {
        if line.trim() == "[[package]]" {
            name = None;
        } else if let Some(n) = quoted(line, "name") {
            name = Some(n);
        } else if let (Some(n), Some(version)) = (&name, quoted(line, "version"))
            && wanted.contains(&n.as_str())
        {
            found.push(format!("{n}={version}"));
        }
    }
    found.sort();
    found.dedup();
    println!(
        "cargo:rustc-env=PIPELINE_CRATE_VERSIONS={}",
        found.join(",")
    );
}
