//! How the front door reaches a worker: Unix sockets in production, turmoil
//! TCP in the simulation. The data path is generic over [`Transport`], so
//! the simulation runs the shipped code, not a copy.

use std::future::Future;
use std::io;
use std::path::Path;

use tokio::io::{AsyncRead, AsyncWrite};

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
    type Stream = tokio::net::UnixStream;

    fn connect(&self, address: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        let path = Path::new(address).to_owned();
        async move { tokio::net::UnixStream::connect(path).await }
    }
}
