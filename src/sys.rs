//! The crate's only `unsafe` code: one call into the C library that no safe
//! crate wraps.

#![allow(unsafe_code)]

/// Returns the heap's free pages to the operating system.
///
/// glibc keeps freed memory for reuse and gives back only the top of the
/// heap, so after a burst of connections went idle (each freeing about
/// 10 KB of HTTP buffers, see `frontdoor::client_conn`) the process would
/// keep its peak size for good. `malloc_trim(0)` releases every free page.
/// A no-op on other C libraries.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a plain integer, has no preconditions and
    // is thread-safe (it takes the allocator's own locks).
    unsafe {
        libc::malloc_trim(0);
    }
}
