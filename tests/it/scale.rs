//! A corpus of 10,000 files is read with bounded memory, and a file that declares enormous lengths and counts cannot
//! make the tool allocate for them. The peak memory is the run's own (`wait4`), not that of every child of the test
//! binary, whose other tests start Chromium.

use crate::support::*;

#[test]
fn ten_thousand_files_and_absurd_declared_sizes() {
    let p = Project::new();
    for f in 0..10_000u32 {
        let keys: Vec<u8> = (0..40u32).map(|i| 48 + ((i * 5 + f) % 24) as u8).collect();
        p.midi(
            &format!("midi/{:02}/{f:05}.mid", f % 100),
            &[melody(0, &keys)],
        );
    }
    // A header claiming 65,535 tracks, a track claiming 4 GB, a meta event claiming 256 MB.
    let mut absurd = b"MThd\0\0\0\x06\0\x01\xff\xff\x01\xe0MTrk\xff\xff\xff\xf0".to_vec();
    absurd.extend_from_slice(&[
        0x00, 0x90, 60, 90, 0x60, 60, 0, 0x00, 0xff, 0x01, 0xff, 0xff, 0xff, 0x7f,
    ]);
    absurd.extend_from_slice(b"short text");
    p.write("midi/absurd.mid", &absurd);
    p.write("exp.toml", PIPELINE_TOML);

    let (run, peak) = p.pipeline_measured(&["run", "exp.toml"]);
    let run = run.ok();
    let rows = csv_rows(&run.report_file("ingest.csv"));
    assert_eq!(rows.len(), 1 + 10_001);
    let absurd_row = rows.iter().find(|r| r[0] == "absurd.mid").unwrap();
    assert_eq!(absurd_row[1], "repaired", "{absurd_row:?}");
    assert_eq!(
        absurd_row[2], "1",
        "the note before the bad meta event is kept"
    );
    assert_eq!(run.stage("source").summary()["files"], 10_001);
    eprintln!("peak memory of the run: {} MiB", peak >> 20);
    assert!(peak < 600 << 20, "peak memory {} MiB", peak >> 20);
}
