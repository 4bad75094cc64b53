//! The `pipeline` binary: the allocator and its settings, then [`pipeline::main`].

// mimalloc keeps freed memory for reuse: training allocates and frees the same large tensors every step, and the
// system allocator returns them to the kernel each time (page faults and TLB shootdowns took ~10% of a step).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the enum's 16th entry in mimalloc.h; the -sys crate names only older ones).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // Never hand freed pages back to the kernel: a paper-size step frees and re-allocates ~3 GB, and re-faulting
    // (zeroing) those pages was a fifth of its time. A user's MIMALLOC_PURGE_DELAY still wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: called before any other thread exists; mi_option_set only stores the value.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
    pipeline::main()
}
