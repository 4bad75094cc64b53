//! A corpus of 10,000 files is read with bounded memory, and a file that declares enormous lengths and counts cannot
//! make the tool allocate for them. (The only test in this binary, so the peak memory of children is its own.)

use crate::support::*;

/// Peak resident memory of the largest child process waited for so far, in bytes.
fn children_peak_rss() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    usage.ru_maxrss as u64 * 1024
}

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

    let run = p.pipeline(&["run", "exp.toml"]).ok();
    let rows = csv_rows(&run.report_file("ingest.csv"));
    assert_eq!(rows.len(), 1 + 10_001);
    let absurd_row = rows.iter().find(|r| r[0] == "absurd.mid").unwrap();
    assert_eq!(absurd_row[1], "repaired", "{absurd_row:?}");
    assert_eq!(
        absurd_row[2], "1",
        "the note before the bad meta event is kept"
    );
    assert_eq!(run.stage("source").summary()["files"], 10_001);
    let peak = children_peak_rss();
    assert!(peak < 600 << 20, "peak memory {} MiB", peak >> 20);
}
