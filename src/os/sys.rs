//! The crate's only `unsafe` code: calls into the C library that no safe
//! crate wraps (`malloc_trim`, `close_range`), one registration with
//! tokio's event loop whose safe form tokio has deprecated, and taking
//! ownership of a listening socket handed over by number (systemd socket
//! activation, a hitless upgrade).

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};
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

/// Registers a descriptor this process owns (a pidfd, say) with the
/// current runtime's event loop for reading.
pub fn register_readable(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `OwnedFd` owns its descriptor: it stays open and refers to
    // the same file description until it is dropped, which happens only
    // with (or taken out of) the `AsyncFd`.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(io::Error::from)
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

/// Takes ownership of the listening TCP socket `fd` that this process was
/// handed at start (by systemd's socket activation or by the server it
/// upgrades), after checking that it is an open stream socket. Call it once
/// per descriptor number the hand-over names.
pub fn adopt_inherited_listener(fd: RawFd) -> io::Result<std::net::TcpListener> {
    if fd < 3 {
        return Err(io::Error::other(format!(
            "descriptor {fd} is a standard stream, not a listener"
        )));
    }
    // SAFETY: `fcntl(F_GETFD)` only reads the descriptor's flags; it fails
    // with EBADF when `fd` is not open, touching nothing.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::other(format!("descriptor {fd} is not open")));
    }
    // SAFETY: `fd` is open (checked above) and was handed to this process
    // to own: the hand-over protocols (sd_listen_fds(3), and ours in
    // `net::inherited`) give each listed descriptor to the process whose
    // pid they name, and each number is adopted once, so no other owner
    // closes it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let socket = socket2::Socket::from(owned);
    if socket.r#type()? != socket2::Type::STREAM {
        return Err(io::Error::other(format!("descriptor {fd} is not a stream socket")));
    }
    // `accept` on a socket that does not listen fails; say so now instead.
    if !socket.is_listener()? {
        return Err(io::Error::other(format!("descriptor {fd} is not listening")));
    }
    socket.set_cloexec(true)?;
    Ok(socket.into())
}

/// Closes every descriptor above the standard three. A worker calls it
/// first: a listening socket being handed to a new server (a hitless
/// upgrade dups it without close-on-exec for a moment) must never stay
/// open in a worker, where it would keep the port alive after the server.
pub fn close_inherited_descriptors() {
    // SAFETY: close_range(2) takes plain integers and only closes this
    // process's descriptors; at this point (the start of a worker, before
    // any other thread or descriptor exists) nothing holds them.
    let closed = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if closed == 0 {
        return;
    }
    // Kernels before 5.9: close what /proc lists.
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in open {
        // SAFETY: as above; a descriptor that was the directory listing's
        // own is already closed and the call fails harmlessly with EBADF.
        unsafe {
            libc::close(fd);
        }
    }
}
