//! The simulated network adapters: the front door's and the control plane's
//! listeners on turmoil TCP, and the [`Transport`] that reaches workers.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rip_server::net::listen::PollReadable;
use rip_server::net::listen::{Accept, Peer};
use rip_server::net::transport::Transport;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use turmoil::net::{TcpListener, TcpStream};

use crate::state::{SharedRef, lock, now_us};

/// The port every simulated worker listens on.
pub const WORKER_PORT: u16 = 9000;
/// The front door's port on `lb`.
pub const HTTP_PORT: u16 = 80;
/// The control plane's port on `lb` (the Unix control socket in production).
pub const CONTROL_PORT: u16 = 9999;
/// `Identity::socket_prefix` of the simulated server; workers join as `sim.<host>`.
pub const SOCKET_PREFIX: &str = "sim";

/// The worker address a process on `host` joins with.
pub fn worker_address(host: &str) -> String {
    format!("{SOCKET_PREFIX}.{host}")
}

/// The host behind a worker address (`sim.p3` → `p3`).
pub fn host_of(address: &str) -> io::Result<&str> {
    address
        .strip_prefix(SOCKET_PREFIX)
        .and_then(|rest| rest.strip_prefix('.'))
        .filter(|host| !host.is_empty())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("not a sim address: {address}")))
}

/// A simulated TCP listener for the front door (clients are never trusted)
/// or the control plane (trusted, as a same-user peer on the production Unix
/// socket is).
pub struct SimListener {
    listener: TcpListener,
    trusted: bool,
}

impl SimListener {
    /// The front door's public listener.
    pub async fn public(port: u16) -> io::Result<SimListener> {
        Self::bind(port, false).await
    }

    /// The control plane's listener.
    pub async fn control(port: u16) -> io::Result<SimListener> {
        Self::bind(port, true).await
    }

    async fn bind(port: u16, trusted: bool) -> io::Result<SimListener> {
        Ok(SimListener {
            listener: TcpListener::bind(("0.0.0.0", port)).await?,
            trusted,
        })
    }
}

/// An accepted client connection: turmoil's stream, plus waiting for
/// readability (a one-byte peek) for the front door's idle connections.
pub struct SimStream(TcpStream);

impl AsyncRead for SimStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl PollReadable for SimStream {
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        self.0.poll_peek(cx, &mut buf).map_ok(|_| ())
    }
}

impl Accept for SimListener {
    type Io = SimStream;

    async fn accept(&mut self) -> io::Result<(SimStream, Peer)> {
        let (stream, peer) = self.listener.accept().await?;
        Ok((
            SimStream(stream),
            Peer {
                ip: Some(peer.ip()),
                trusted: self.trusted,
            },
        ))
    }
}

/// Reaches a worker address `sim.<host>` over turmoil TCP at `<host>:9000`.
///
/// When it observes a run, it counts the connects in progress per host (the
/// harness partitions a link only when no connect is on its way) and traces
/// failed connects.
#[derive(Clone, Default)]
pub struct SimTransport {
    shared: Option<SharedRef>,
}

impl SimTransport {
    /// A transport that reports to the run's shared state.
    pub fn observed(shared: SharedRef) -> SimTransport {
        SimTransport { shared: Some(shared) }
    }
}

/// Counts a connect in progress until it ends, however it ends.
struct Connecting {
    shared: SharedRef,
    host: String,
}

impl Connecting {
    fn new(shared: SharedRef, host: String) -> Connecting {
        *lock(&shared).connecting.entry(host.clone()).or_insert(0) += 1;
        Connecting { shared, host }
    }
}

impl Drop for Connecting {
    fn drop(&mut self) {
        let mut s = lock(&self.shared);
        if let Some(n) = s.connecting.get_mut(&self.host) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Transport for SimTransport {
    type Stream = TcpStream;

    fn connect(&self, address: &str) -> impl Future<Output = io::Result<TcpStream>> + Send {
        let host = host_of(address).map(str::to_owned);
        let shared = self.shared.clone();
        async move {
            let host = host?;
            let _connecting = shared.clone().map(|s| Connecting::new(s, host.clone()));
            let result = TcpStream::connect((host.clone(), WORKER_PORT)).await;
            if let (Err(e), Some(shared)) = (&result, &shared) {
                let t = now_us();
                lock(shared).log(t, format!("lb: connect to {host} failed: {e}"));
            }
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_to_hosts() {
        assert_eq!(host_of("sim.p3").unwrap(), "p3");
        assert_eq!(worker_address("p12"), "sim.p12");
        assert!(host_of("sim.").is_err());
        assert!(host_of("simp3").is_err());
        assert!(host_of("/tmp/x.sock").is_err());
    }
}
