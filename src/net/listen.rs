//! Listeners: what a server socket hands out ([`Accept`]), who is on the
//! other end ([`Peer`]), and the one accept loop every listener runs
//! ([`accept_until`]): the front door's TCP ports, the control socket, the
//! metrics port; binding them ([`bind_tcp`], and [`bind_tcp_group`] for the
//! `SO_REUSEPORT` sockets of front-door replicas, whose stop takes what
//! waits in their queue: [`Draining`]).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

/// A stream that can say when it has something to read without reading it:
/// the idle connection loop waits on this with no buffer allocated.
pub trait PollReadable {
    /// Ready when bytes (or the end of the stream, or an error) can be read.
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl PollReadable for tokio::net::TcpStream {
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }
}

impl PollReadable for tokio::net::UnixStream {
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }
}

/// A listener connections can be accepted from.
pub trait Accept: Send + 'static {
    type Io: AsyncRead + AsyncWrite + PollReadable + Unpin + Send + 'static;
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, Peer)>> + Send;

    /// Called once as the listener stops, before it closes: hands the
    /// connections already waiting in the kernel's accept queue to `serve`,
    /// without waiting for more. By default none: a socket that other
    /// processes or sockets keep open loses nothing when this one closes,
    /// and one that closes for good resets what waited (the kernel's
    /// behaviour for a single listener).
    fn take_queued(&mut self, _serve: &mut dyn FnMut(Self::Io, Peer)) {}
}

/// Who is on the other end of an accepted connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The client's address, for `X-Forwarded-For`.
    pub ip: Option<IpAddr>,
    /// Whether the peer may use the control endpoints (same user on a Unix socket).
    pub trusted: bool,
}

impl Accept for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(tokio::net::TcpStream, Peer)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((
            stream,
            Peer {
                ip: Some(peer.ip()),
                trusted: false,
            },
        ))
    }
}

/// A Unix listener whose peers are trusted when they run as the server's
/// user (or root): the control socket.
#[derive(Debug)]
pub struct UnixAccept(pub tokio::net::UnixListener);

impl Accept for UnixAccept {
    type Io = tokio::net::UnixStream;

    async fn accept(&mut self) -> io::Result<(tokio::net::UnixStream, Peer)> {
        let (stream, _) = self.0.accept().await?;
        let own_uid = rustix::process::geteuid().as_raw();
        let trusted = stream
            .peer_cred()
            .is_ok_and(|cred| cred.uid() == own_uid || cred.uid() == 0);
        Ok((stream, Peer { ip: None, trusted }))
    }
}

/// How long to wait after a failed `accept` before the next one. A failure
/// is almost always the process being out of file descriptors: existing
/// connections keep working, new ones wait in the kernel's backlog, and
/// retrying at once would spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Accepts connections from `listener` and hands each to `serve` until
/// `shutdown` resolves; then hands over what is still queued if the
/// listener takes it ([`Accept::take_queued`]) and returns (the listener is
/// dropped, so the port stops accepting). `what` names the listener in the
/// warning a failed accept logs.
pub async fn accept_until<L: Accept>(
    mut listener: L,
    what: &'static str,
    shutdown: impl Future<Output = ()>,
    mut serve: impl FnMut(L::Io, Peer),
) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((io, peer)) => serve(io, peer),
            Err(e) => {
                tracing::warn!("{what}: accept failed: {e}");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
    listener.take_queued(&mut serve);
}

/// Serves a small HTTP/1.1 endpoint (a control socket, the platform's API,
/// the metrics port) on `listener` until `shutdown` resolves: each
/// connection with hyper, its request heads bounded by `header_timeout`,
/// each request answered by `answer` with the connection's [`Peer`].
/// Connections under way finish on their own.
pub async fn serve_http1<L, F, Fut>(
    listener: L,
    what: &'static str,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
    answer: F,
) where
    L: Accept,
    F: Fn(http::Request<hyper::body::Incoming>, Peer) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<http_body_util::Full<bytes::Bytes>>> + Send + 'static,
{
    accept_until(listener, what, shutdown, |stream, peer| {
        let answer = answer.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let answered = answer(request, peer);
                async move { Ok::<_, std::convert::Infallible>(answered.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    })
    .await;
}

/// The accept queue of every TCP listener we bind (the kernel caps it at
/// `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 4096;

/// A TCP listener on `ip:port` (port 0: any free port) with a deep backlog.
/// `::` listens on IPv4 too (dual stack), like `0.0.0.0` plus `[::]`.
pub fn bind_tcp(ip: IpAddr, port: u16) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::from_std(tcp_socket(SocketAddr::from((ip, port)), false)?)
}

/// `count` TCP listeners on the same `ip:port`, each with `SO_REUSEPORT`:
/// the kernel spreads new connections among them by a hash of the
/// client's address and port, so each can have an event loop of its own
/// that never wakes for another's connections. Port 0 picks one free port
/// for all of them. Plain `std` sockets (non-blocking), to be registered on
/// the event loop that serves each ([`tokio::net::TcpListener::from_std`]).
/// Only sockets of the same user may join the group.
pub fn bind_tcp_group(ip: IpAddr, port: u16, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let first = tcp_socket(SocketAddr::from((ip, port)), true)?;
    let bound = SocketAddr::from((ip, first.local_addr()?.port()));
    let mut group = Vec::with_capacity(count);
    group.push(first);
    for _ in 1..count {
        group.push(tcp_socket(bound, true)?);
    }
    Ok(group)
}

fn tcp_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    if addr.ip().is_ipv6() && addr.ip().is_unspecified() {
        // `--bind=::` means every interface, IPv4 included.
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// A TCP listener that closes for good while sockets beside it on the same
/// port go on (a member of a [`bind_tcp_group`]): when it stops it takes
/// the connections already waiting in its accept queue, which the kernel
/// would otherwise reset (they were handshaken with this socket and do not
/// move to its siblings). At most one backlog's worth, so a stop under a
/// steady flood still ends; a connection the kernel queues between the
/// last accept and the close is still reset (`net.ipv4.tcp_migrate_req=1`
/// moves those to a sibling, on Linux 5.14 and later).
#[derive(Debug)]
pub struct Draining(pub tokio::net::TcpListener);

impl Accept for Draining {
    type Io = tokio::net::TcpStream;

    fn accept(&mut self) -> impl Future<Output = io::Result<(tokio::net::TcpStream, Peer)>> + Send {
        Accept::accept(&mut self.0)
    }

    fn take_queued(&mut self, serve: &mut dyn FnMut(tokio::net::TcpStream, Peer)) {
        for _ in 0..LISTEN_BACKLOG {
            match accept_queued(&self.0) {
                Some(Ok((stream, peer))) => serve(stream, peer),
                // A connection reset while it waited: the next one may be fine.
                Some(Err(e)) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Some(Err(e)) => {
                    tracing::warn!("front door: taking the queued connections at stop: {e}");
                    return;
                }
                None => return,
            }
        }
    }
}

/// A connection waiting in `listener`'s accept queue, taken without
/// waiting; `None` when the queue is empty. Asks the kernel directly:
/// tokio learns of new connections only when its event loop next polls,
/// which a stopping loop may never do again.
pub fn accept_queued(listener: &tokio::net::TcpListener) -> Option<io::Result<(tokio::net::TcpStream, Peer)>> {
    let (socket, address) = match socket2::SockRef::from(listener).accept() {
        Ok(accepted) => accepted,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
        Err(e) => return Some(Err(e)),
    };
    let stream: std::net::TcpStream = socket.into();
    let registered = stream
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpStream::from_std(stream));
    Some(registered.map(|stream| {
        let _ = stream.set_nodelay(true);
        let peer = Peer {
            ip: address.as_socket().map(|a| a.ip()),
            trusted: false,
        };
        (stream, peer)
    }))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpStream};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// `n` clients connected to `port`, each having sent `hello`. The
    /// kernel finishes the handshake and queues them without any accept.
    fn queued_clients(port: u16, n: usize) -> Vec<TcpStream> {
        (0..n)
            .map(|_| {
                let mut client = TcpStream::connect((LOOPBACK, port)).expect("connect");
                // Bounded: a test that expects an answer never hangs.
                client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
                client.write_all(b"hello").expect("write");
                client
            })
            .collect()
    }

    /// Runs `listener`'s accept loop with the stop already asked for: only
    /// what it takes from its queue is served.
    async fn stop_at_once<L: Accept>(listener: L) -> Vec<L::Io> {
        let mut served = Vec::new();
        accept_until(listener, "test", std::future::ready(()), |io, _| served.push(io)).await;
        served
    }

    #[tokio::test]
    async fn a_draining_listener_serves_what_waited_in_its_queue_when_it_stops() {
        let listener = bind_tcp(LOOPBACK, 0).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut clients = queued_clients(port, 3);
        let served = stop_at_once(Draining(listener)).await;
        assert_eq!(served.len(), 3, "every queued connection is taken");
        for (mut server, client) in served.into_iter().zip(clients.iter_mut()) {
            let mut hello = [0u8; 5];
            server.read_exact(&mut hello).await.unwrap();
            assert_eq!(&hello, b"hello");
            server.write_all(b"served").await.unwrap();
            let mut answer = [0u8; 6];
            client.read_exact(&mut answer).unwrap();
            assert_eq!(&answer, b"served");
        }
    }

    #[tokio::test]
    async fn a_listener_that_does_not_drain_resets_its_queue_when_it_closes() {
        // The kernel's behaviour that `Draining` exists for.
        let listener = bind_tcp(LOOPBACK, 0).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut clients = queued_clients(port, 2);
        assert!(stop_at_once(listener).await.is_empty());
        for client in &mut clients {
            let mut byte = [0u8; 1];
            let read = client.read(&mut byte);
            assert!(
                matches!(&read, Err(e) if e.kind() == io::ErrorKind::ConnectionReset),
                "a connection left in a closed listener's queue is reset: {read:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_group_shares_one_port_and_the_kernel_spreads_connections_over_it() {
        let group = bind_tcp_group(LOOPBACK, 0, 2).unwrap();
        let port = group[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert!(group.iter().all(|l| l.local_addr().unwrap().port() == port));
        // A socket without SO_REUSEPORT cannot join the group.
        assert_eq!(bind_tcp(LOOPBACK, port).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        let listeners: Vec<_> = group
            .into_iter()
            .map(|l| tokio::net::TcpListener::from_std(l).unwrap())
            .collect();
        let _clients = queued_clients(port, 32);
        let mut taken = [0usize; 2];
        for (count, listener) in taken.iter_mut().zip(&listeners) {
            while let Some(accepted) = accept_queued(listener) {
                accepted.unwrap();
                *count += 1;
            }
        }
        assert_eq!(taken[0] + taken[1], 32, "{taken:?}");
        // 32 connections all on one socket of two: 1 in 2^31 by chance.
        assert!(
            taken.iter().all(|&n| n > 0),
            "one socket got every connection: {taken:?}"
        );
    }
}
