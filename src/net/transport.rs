//! How the front door reaches a worker: Unix sockets in production, turmoil
//! TCP in the simulation. The data path is generic over [`Transport`], so
//! the simulation runs the shipped code, not a copy.

use std::future::Future;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// Opens a byte stream to a worker, given the address it joined with.
pub trait Transport: Clone + Send + Sync + 'static {
    /// The stream to a worker.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Connects to `address` (a socket path for Unix, `host:port` in the simulation).
    fn connect(&self, address: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// Workers on Unix domain sockets.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnixTransport;

impl Transport for UnixTransport {
    type Stream = LeanUnixStream;

    fn connect(&self, address: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        let path = Path::new(address).to_owned();
        async move {
            let stream = tokio::net::UnixStream::connect(path).await?.into_std()?;
            LeanUnixStream::new(stream)
        }
    }
}

/// A Unix stream registered with the event loop for readability only: the
/// front door's connections to workers, and the built-in worker's
/// connections from the front door.
///
/// tokio registers a socket for both directions, and a Unix socket reports
/// "writable" every time its peer reads. Each request woke the front door
/// once more, for nothing, while the worker read the request, and woke the
/// worker once more while the front door read the response: one
/// `epoll_wait` and a context switch per request on each side, and the
/// reader paid for waking the other (see `docs/benchmarking.md`). Requests
/// and answers almost always fit the socket buffer, so writes are tried
/// directly; only when one would block is a duplicate of the socket
/// registered for writability, and it is dropped again at the next write
/// that goes through.
pub struct LeanUnixStream {
    socket: AsyncFd<UnixStream>,
    /// The writability registration, while a write is blocked.
    writable: Option<AsyncFd<UnixStream>>,
}

impl LeanUnixStream {
    /// Wraps a connected non-blocking socket.
    pub fn new(socket: UnixStream) -> io::Result<LeanUnixStream> {
        socket.set_nonblocking(true)?;
        Ok(LeanUnixStream {
            socket: crate::os::sys::register_socket(socket, Interest::READABLE)?,
            writable: None,
        })
    }
}

impl AsyncRead for LeanUnixStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.socket.poll_read_ready(cx))?;
            // Initialized (zeroed) rather than read into uninitialized
            // memory, which would take `unsafe`: at most 64 KiB a read.
            let room = buf.initialize_unfilled_to(buf.remaining().min(64 * 1024));
            let asked = room.len();
            match guard.try_io(|socket| socket.get_ref().read(room)) {
                Ok(Ok(n)) => {
                    if n < asked {
                        // Less than asked: the socket is drained, so the
                        // next read waits for a new event instead of
                        // finding out with one more system call (as
                        // tokio's own streams do).
                        guard.clear_ready();
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Would block: readiness cleared, poll again.
                Err(_) => {}
            }
        }
    }
}

impl AsyncWrite for LeanUnixStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            match self.socket.get_ref().write(data) {
                Ok(n) => {
                    self.writable = None;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if self.writable.is_none() {
                // Registering checks the current state, so no wake-up is
                // lost between the failed write and this.
                let twin = self.socket.get_ref().try_clone()?;
                self.writable = Some(crate::os::sys::register_socket(twin, Interest::WRITABLE)?);
            }
            let writable = self.writable.as_ref().expect("registered above");
            let mut guard = ready!(writable.poll_write_ready(cx))?;
            guard.clear_ready();
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.socket.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_write_that_blocks_completes_once_the_peer_reads() {
        let (ours, theirs) = UnixStream::pair().expect("pair");
        let mut stream = LeanUnixStream::new(ours).expect("register");
        // Far more than the socket buffer holds, read only after a pause.
        let data: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let reader = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut theirs = theirs;
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).expect("read");
            got
        });
        tokio::time::timeout(Duration::from_secs(10), stream.write_all(&data))
            .await
            .expect("the write finishes")
            .expect("write");
        assert!(
            stream.writable.is_none(),
            "the writability registration is gone once writes go through"
        );
        stream.shutdown().await.expect("shutdown");
        assert_eq!(reader.await.expect("reader"), data);
    }

    #[tokio::test]
    async fn reads_wake_for_bytes_that_come_after_a_drained_read() {
        let (ours, mut theirs) = UnixStream::pair().expect("pair");
        let mut stream = LeanUnixStream::new(ours).expect("register");
        theirs.write_all(b"first").expect("write");
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"first");
        let writer = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(30));
            theirs.write_all(b"second").expect("write");
            // Dropped: the end of the stream follows.
        });
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("woken for the later bytes")
            .expect("read");
        assert_eq!(&buf[..n], b"second");
        writer.await.expect("writer");
        assert_eq!(
            stream.read(&mut buf).await.expect("read"),
            0,
            "then the end of the stream"
        );
    }
}
