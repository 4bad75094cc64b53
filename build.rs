//! Records the versions of the crates that shape results (from Cargo.lock) for run manifests.

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let lock: toml::Table = lock.parse().unwrap_or_default();
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
    let mut found = Vec::new();
    for package in lock
        .get("package")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
    {
        let name = package
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let version = package
            .get("version")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        if wanted.contains(&name) {
            found.push(format!("{name}={version}"));
        }
    }
    found.sort();
    found.dedup();
    println!(
        "cargo:rustc-env=PIPELINE_CRATE_VERSIONS={}",
        found.join(",")
    );
}
