//! Listeners: what a server socket hands out ([`Accept`]), who is on the
//! other end ([`Peer`]), and the one accept loop every listener runs
//! ([`accept_until`]): the front door's TCP port and the control socket
//! today, HTTPS, metrics and inherited sockets as they come.

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
/// `shutdown` resolves; then returns (the listener is dropped, so the port
/// stops accepting). `what` names the listener in the warning a failed
/// accept logs.
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

/// A TCP listener on `ip:port` (port 0: any free port) with a deep backlog.
/// `::` listens on IPv4 too (dual stack), like `0.0.0.0` plus `[::]`.
pub fn bind_tcp(ip: IpAddr, port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let addr = SocketAddr::from((ip, port));
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    if ip.is_ipv6() && ip.is_unspecified() {
        // `--bind=::` means every interface, IPv4 included.
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    tokio::net::TcpListener::from_std(socket.into())
}
