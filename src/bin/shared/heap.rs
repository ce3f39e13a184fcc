//! What both binaries do to their process before anything else, and the library may not:
//! it forbids `unsafe`. Included by each binary with `#[path]`.

/// Keeps the heap to two malloc arenas. glibc gives each thread that allocates an arena
/// of its own, up to 8 per core, and a thread-per-connection process of 20 or 1,000
/// threads then holds a few dozen KiB of partly used heap per thread. Two arenas: on the
/// small hosts genp2p is for, threads seldom allocate at the same instant. Call before
/// the first thread starts.
pub fn small_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of glibc's allocator; called before any other
    // thread exists, it races with nothing.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
