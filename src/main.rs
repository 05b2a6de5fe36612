//! Thin entry point: everything lives in the library.

fn main() -> std::process::ExitCode {
    // glibc gives every thread that allocates its own arena and keeps the memory; the blocking
    // pool would then hold RSS far above what is live. Two arenas keep RSS near the live set.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    auditkeeper::cli::main()
}
