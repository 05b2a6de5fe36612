//! Thin entry point: everything lives in the library.

fn main() -> std::process::ExitCode {
    // glibc gives every thread that allocates its own arena and keeps the memory; the blocking
    // pool would then hold RSS far above what is live. Two arenas keep RSS near the live set.
    // And a fixed mmap threshold: by default glibc raises it to the size of each big buffer
    // freed (a page of records, a sink batch), after which such buffers come from the heap and
    // leave it fragmented. Fixed, buffers of 1 MiB and more are mapped and unmapped whole, and
    // the heap is trimmed as it was at start: peak RSS across a 1M-record backlog fell from
    // 89-94 MB to 74-77 MB, end to end unchanged.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    auditkeeper::cli::main()
}
