//! The crate's only `unsafe` code: one call into the C library that no safe
//! crate wraps, and one registration with tokio's event loop whose safe
//! form tokio has deprecated.

#![allow(unsafe_code)]

use std::io;
use std::os::unix::net::UnixStream;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Registers a Unix socket with the current runtime's event loop for
/// `interest` only (tokio's own streams always register both directions).
pub fn register_socket(socket: UnixStream, interest: Interest) -> io::Result<AsyncFd<UnixStream>> {
    // SAFETY: `UnixStream` owns its file descriptor. It stays open and
    // refers to the same file description until the stream is dropped, and
    // the stream is dropped only with (or taken out of) the `AsyncFd`;
    // `as_raw_fd` returns that same descriptor every time.
    unsafe { AsyncFd::register_with_interest(socket, interest) }.map_err(io::Error::from)
}

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
