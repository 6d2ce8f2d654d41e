//! The HTTPS listener: [`run_tls`] accepts TCP connections, looks at their
//! first bytes ([`crate::tls::sniff`]), and
//! - a TLS handshake: completes it within the handshake bound (10 s by
//!   default; a client that stalls is dropped), then serves the connection
//!   exactly as a plain one ([`client_conn::serve`]: fast path, hyper,
//!   single in-flight, queue, 503/504, access log, `/status`), with the SNI
//!   name for the `421` check and `X-Forwarded-Proto: https` from the
//!   front door's scheme;
//! - plain HTTP: answers with the redirect to HTTPS ([`redirect`]);
//! - anything else: closes it.
//!
//! Every connection is its own task: garbage, a failed handshake or a
//! stalled client never touches another connection.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{FrontDoor, client_conn, http1_builder, redirect};
use crate::net::listen::{Accept, PollReadable, accept_until};
use crate::net::transport::Transport;
use crate::observe::status::TlsStatus;
use crate::tls::info::TlsInfo;
use crate::tls::sniff::{FirstBytes, classify, sni_host};

/// What the HTTPS listener needs besides its front door.
#[derive(Clone)]
pub struct TlsListener {
    /// rustls's server side (see `tls::server_config`).
    pub acceptor: TlsAcceptor,
    /// A client must finish its handshake within this (from accept).
    pub handshake_timeout: Duration,
    /// The port Location headers name for plain HTTP sent to this port: this
    /// listener's own (its real port when it was bound to port 0).
    pub https_port: u16,
}

impl TlsListener {
    /// A listener serving with `config`.
    pub fn new(config: Arc<rustls::ServerConfig>, handshake_timeout: Duration, https_port: u16) -> TlsListener {
        TlsListener {
            acceptor: TlsAcceptor::from(config),
            handshake_timeout,
            https_port,
        }
    }
}

/// Accepts and serves HTTPS connections until `shutdown` resolves; then
/// stops accepting, asks open connections to close after their current
/// request and returns once they have (as [`super::run`] does for plain
/// HTTP).
pub async fn run_tls<T, L>(
    listener: L,
    front_door: Arc<FrontDoor<T>>,
    tls: TlsListener,
    shutdown: impl Future<Output = ()>,
) where
    T: Transport,
    L: Accept<Io = TcpStream>,
{
    let (closing_tx, closing_rx) = watch::channel(false);
    let connections = tokio_util::task::TaskTracker::new();
    accept_until(listener, "https", shutdown, |io, peer| {
        connections.spawn(serve_tls_conn(
            io,
            peer.ip,
            front_door.clone(),
            tls.clone(),
            closing_rx.clone(),
        ));
    })
    .await;
    let _ = closing_tx.send(true);
    connections.close();
    connections.wait().await;
}

/// One connection on the HTTPS port, from its first byte to its end.
pub async fn serve_tls_conn<T: Transport>(
    io: TcpStream,
    client: Option<IpAddr>,
    front_door: Arc<FrontDoor<T>>,
    tls: TlsListener,
    closing: watch::Receiver<bool>,
) {
    // One bound for the first byte and the whole handshake.
    let acceptor = tls.acceptor.clone();
    let opened = tokio::time::timeout(tls.handshake_timeout, async move {
        let mut first = [0u8; 8];
        let Ok(n) = io.peek(&mut first).await else {
            return Opened::Closed;
        };
        match classify(&first[..n]) {
            FirstBytes::Tls => match acceptor.accept(io).await {
                Ok(stream) => Opened::Tls(Box::new(stream)),
                Err(e) => {
                    tracing::debug!("https: handshake failed: {e}");
                    Opened::Closed
                }
            },
            FirstBytes::PlainHttp => Opened::PlainHttp(io),
            FirstBytes::Other | FirstBytes::Empty => Opened::Closed,
        }
    })
    .await;
    let stream = match opened {
        Ok(Opened::Tls(stream)) => *stream,
        Ok(Opened::PlainHttp(io)) => {
            let header_timeout = front_door.config.header_timeout;
            redirect::serve_redirect(io, tls.https_port, header_timeout, closing).await;
            return;
        }
        Ok(Opened::Closed) => return,
        Err(_) => {
            tracing::debug!("https: handshake not finished within the bound: connection dropped");
            return;
        }
    };
    let sni: Option<Arc<str>> = stream.get_ref().1.server_name().and_then(sni_host).map(Arc::from);
    let builder = http1_builder(&front_door.config);
    client_conn::serve(TlsIo(stream), front_door, client, sni, builder, closing).await;
}

/// How a connection on the HTTPS port opened.
enum Opened {
    Tls(Box<TlsStream<TcpStream>>),
    PlainHttp(TcpStream),
    Closed,
}

/// A TLS stream the idle connection loop can wait on without reading:
/// readable when rustls holds decrypted bytes already (a request that came
/// with the handshake's last flight), else when the socket is.
pub struct TlsIo<I>(pub TlsStream<I>);

impl<I: PollReadable + AsyncRead + AsyncWrite + Unpin> PollReadable for TlsIo<I> {
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (io, conn) = self.0.get_mut();
        match conn.process_new_packets() {
            Ok(state) if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() => {
                return Poll::Ready(Ok(()));
            }
            Ok(_) => {}
            // Let the read report it.
            Err(_) => return Poll::Ready(Ok(())),
        }
        io.poll_readable(cx)
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsIo<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsIo<I> {
    fn poll_write(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, data)
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// `/status`'s `tls`: the certificate served, never its key.
pub fn tls_status(info: &TlsInfo) -> TlsStatus {
    let cert = &info.certificate;
    TlsStatus {
        source: info.source.as_str(),
        subject: cert.subject.clone(),
        sans: cert.names.clone(),
        issuer: cert.issuer.clone(),
        serial: cert.serial_hex.clone(),
        not_after: rfc3339(cert.not_after),
        next_renewal: info.next_renewal.map(rfc3339),
    }
}

fn rfc3339(time: SystemTime) -> String {
    let micros = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    crate::os::clock::rfc3339_millis(micros)
}
