//! The window stage's memory grows with the token count, not with token count × `seq_len`: measured as the peak of
//! bytes live on the heap while the stage runs, with a counting allocator (this test binary's only test, so no other
//! test allocates at the same time).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use pipeline::artifact::{Artifact, IdFile, Vocabulary};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(live, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// A vocabulary of 150 ids over 20 files with `tokens` ids in all.
fn vocabulary(tokens: usize) -> Artifact {
    let files = (0..20)
        .map(|f| IdFile {
            origin: None,
            path: format!("song{f}.mid"),
            tempo: pipeline::artifact::DEFAULT_TEMPO,
            ids: (0..tokens / 20)
                .map(|i| ((i * 31 + f * 7) % 150) as u32)
                .collect(),
        })
        .collect();
    Artifact::Vocab(Vocabulary {
        programs: vec![0],
        scheme: pipeline::artifact::TokenScheme::Chord,
        tokens: (0..150).map(|i| format!("{i}")).collect(),
        counts: vec![1; 150],
        files,
    })
}

/// Peak heap bytes allocated by the window stage beyond what was live before it ran; the windows it made.
fn window_peak(tokens: usize, seq_len: u32) -> (usize, usize) {
    let vocab = vocabulary(tokens);
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let windows = pipeline::run_window(vocab, seq_len, 0.1).unwrap();
    let peak = PEAK.load(Ordering::SeqCst) - before;
    let set = windows.windows().unwrap();
    let count = set.count(pipeline::artifact::Split::Train)
        + set.count(pipeline::artifact::Split::Validation);
    (peak, count)
}

#[test]
fn window_memory_grows_with_tokens_not_with_seq_len() {
    let (short, short_windows) = window_peak(400_000, 16);
    let (long, long_windows) = window_peak(400_000, 1024);
    let (double, _) = window_peak(800_000, 16);
    println!(
        "peak bytes: 400k tokens, seq_len 16: {short}; seq_len 1024: {long}; 800k tokens: {double}"
    );
    assert!(short_windows > 390_000 && long_windows > 370_000);
    // Materialised windows would need seq_len × 4 bytes each: 1.5 GB at seq_len 1024.
    assert!(
        long < short + short / 10,
        "seq_len 1024 took {long} bytes at peak vs {short} at seq_len 16"
    );
    assert!(
        (short * 17 / 10..short * 23 / 10).contains(&double),
        "twice the tokens took {double} bytes at peak vs {short}"
    );
    // The ids themselves are 4 bytes each; the stage keeps them once (plus one copy while building).
    assert!(short < 400_000 * 4 * 3, "{short} bytes for 1.6 MB of ids");
}
