//! One HTTP/1.1 connection per worker, kept alive and reused.
//!
//! hyper's low-level client connection, not its pooled client: the pooled
//! client retries on its own and has no per-host cap, and both decisions
//! belong to the core. The connection is *owned* by whoever holds the
//! worker's single in-flight slot: the driver hands it out with a dispatch
//! and gets it back with the completion, so ownership mirrors the
//! single-inflight rule and no lock is needed.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use crate::transport::Transport;

/// The error type of bodies sent to workers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request body on its way to a worker.
pub type UpstreamBody = BoxBody<Bytes, BoxError>;

/// An open connection to one worker.
pub struct Upstream {
    sender: http1::SendRequest<UpstreamBody>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Upstream")
    }
}

/// Why connecting failed.
#[derive(Debug)]
pub enum ConnectError {
    Timeout,
    Io(std::io::Error),
    Handshake(hyper::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Io(e) => write!(f, "connect failed: {e}"),
            ConnectError::Handshake(e) => write!(f, "handshake failed: {e}"),
        }
    }
}

impl Upstream {
    /// Connects to a worker; `timeout` covers only connecting, never the
    /// request (a handler that takes 300 ms is normal work, not a failure).
    pub async fn connect<T: Transport>(
        transport: &T,
        address: &str,
        timeout: Duration,
    ) -> Result<Upstream, ConnectError> {
        let stream = match tokio::time::timeout(timeout, transport.connect(address)).await {
            Err(_) => return Err(ConnectError::Timeout),
            Ok(Err(e)) => return Err(ConnectError::Io(e)),
            Ok(Ok(stream)) => stream,
        };
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(ConnectError::Handshake)?;
        tokio::spawn(async move {
            // Ends when the worker closes the connection or the sender is dropped.
            let _ = conn.await;
        });
        Ok(Upstream { sender })
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Waits until the connection can take a request (the previous
    /// response has been read to its end); false if it closed.
    pub async fn ready(&mut self) -> bool {
        self.sender.ready().await.is_ok()
    }

    /// Sends a request. When it comes back unsent (the connection had
    /// closed), `Err(Unsent(request))` returns it so the caller can send it on
    /// a fresh connection; otherwise the error happened after bytes left.
    pub async fn send(
        &mut self,
        request: http::Request<UpstreamBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, SendError> {
        match self.sender.try_send_request(request).await {
            Ok(response) => Ok(response),
            Err(mut e) => match e.take_message() {
                Some(request) => Err(SendError::Unsent(Box::new(request))),
                None => Err(SendError::AfterSend(e.into_error())),
            },
        }
    }
}

/// The outcome of a failed send.
#[derive(Debug)]
pub enum SendError {
    /// Nothing was written; here is the request back.
    Unsent(Box<http::Request<UpstreamBody>>),
    /// The request (or part of it) reached the worker before the failure.
    AfterSend(hyper::Error),
}
