// mimalloc keeps freed memory for reuse: training allocates and frees the same large tensors every step, and the
// system allocator returns them to the kernel each time (page faults and TLB shootdowns took ~10% of a step).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    pipeline::cli::main()
}
