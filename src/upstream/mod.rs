//! One HTTP/1.1 connection per worker, kept alive and reused.
//!
//! A small client of our own rather than hyper's: hyper's client runs every
//! connection as a background task fed through a channel, which cost about a
//! quarter of the front door's user-space CPU per request (measured with
//! perf, see `docs/benchmarking.md`). Here the exchange task writes the
//! request and parses the response head itself, and the response body reads
//! straight from the socket while the client consumes it. Parsing is
//! httparse's, the same parser hyper uses.
//!
//! The connection is *owned* by whoever holds the worker's single in-flight
//! slot: the driver hands it out with a dispatch and gets it back with the
//! completion, so ownership mirrors the single-inflight rule and no lock is
//! needed. A connection is reused only after a response that ended cleanly
//! at a known boundary.

mod body;
mod encode;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;

use crate::net::transport::Transport;

pub use body::WorkerBody;
use body::{ChunkState, Decoder};
pub use encode::{RequestFraming, encode_request};

/// The error type of bodies sent to workers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request body streamed to a worker.
pub type UpstreamBody = BoxBody<Bytes, BoxError>;

/// The largest response head accepted from a worker.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// The most headers accepted in a worker's response.
pub const MAX_RESPONSE_HEADERS: usize = 128;
/// The longest chunk-size or trailer line accepted from a worker.
const MAX_CHUNK_LINE: usize = 4096;
/// Read granularity.
const READ_CHUNK: usize = 8 * 1024;

/// Any stream to a worker.
trait WorkerIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> WorkerIo for T {}

type Stream = Box<dyn WorkerIo>;

/// An open connection to one worker.
pub struct Upstream {
    io: Io,
    /// Bytes read but not yet consumed.
    pub(in crate::upstream) buf: BytesMut,
}

/// The connection's stream. A streamed request body is written by a task of
/// its own while the response is read, as hyper does: a worker may answer
/// (an echo, an early error) before it has read the whole body, and waiting
/// for the body to finish first would deadlock once both socket buffers
/// fill.
enum Io {
    Whole(Stream),
    Split {
        read: ReadHalf<Stream>,
        pump: Pump,
    },
    /// Only while a method moves the stream between states.
    Gone,
}

/// The task writing a streamed request body.
enum Pump {
    Running(JoinHandle<Result<WriteHalf<Stream>, UpstreamError>>),
    Done(WriteHalf<Stream>),
    Failed,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Io::Split {
            pump: Pump::Running(task),
            ..
        } = &self.io
        {
            // Nobody needs the rest of the body: stop writing it.
            task.abort();
        }
    }
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
    Io(io::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Io(e) => write!(f, "connect failed: {e}"),
        }
    }
}

/// What went wrong talking to a worker after the connection was open.
#[derive(Debug)]
pub enum UpstreamError {
    Io(io::Error),
    /// The worker closed the connection before the response ended.
    Closed,
    /// The worker sent something that is not HTTP/1.x.
    Malformed(&'static str),
    /// The client's request body failed while it streamed to the worker.
    ClientBody(BoxError),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Io(e) => write!(f, "worker connection: {e}"),
            UpstreamError::Closed => f.write_str("worker closed the connection mid-response"),
            UpstreamError::Malformed(what) => write!(f, "malformed response from worker: {what}"),
            UpstreamError::ClientBody(e) => write!(f, "client body: {e}"),
        }
    }
}

impl std::error::Error for UpstreamError {}

impl From<io::Error> for UpstreamError {
    fn from(e: io::Error) -> Self {
        UpstreamError::Io(e)
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
        match tokio::time::timeout(timeout, transport.connect(address)).await {
            Err(_) => Err(ConnectError::Timeout),
            Ok(Err(e)) => Err(ConnectError::Io(e)),
            Ok(Ok(stream)) => Ok(Upstream::from_stream(stream)),
        }
    }

    /// A connection over any connected stream.
    pub fn from_stream(stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static) -> Upstream {
        Upstream {
            io: Io::Whole(Box::new(stream)),
            buf: BytesMut::new(),
        }
    }

    /// Parses a whole response to a GET already in memory, as
    /// `read_response` and `WorkerBody::take_buffered` do for one that
    /// arrived in one read (benchmarks); `None` if it is incomplete,
    /// malformed or not sized.
    #[doc(hidden)]
    pub fn parse_buffered(data: &[u8]) -> Option<(http::response::Parts, Bytes)> {
        let mut conn = Upstream {
            io: Io::Gone,
            buf: BytesMut::from(data),
        };
        let head = conn.parse_head().ok()??;
        if head.0.status.is_informational() {
            return None;
        }
        let (parts, mut body) = conn.into_response(head, &Method::GET);
        let bytes = body.take_buffered()?;
        Some((parts, bytes))
    }

    /// Whether a kept-alive connection still looks usable: the worker has
    /// not closed it and has sent nothing unasked. Never waits; after a
    /// response that was read to its end this costs no system call (tokio
    /// remembers the socket was drained).
    pub fn is_open(&mut self) -> bool {
        let Io::Whole(io) = &mut self.io else { return false };
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        self.buf.reserve(64);
        // Anything but "would block" (end of stream, bytes nobody asked
        // for, an error) means the connection is not reusable.
        tokio_util::io::poll_read_buf(Pin::new(io), &mut cx, &mut self.buf).is_pending()
    }

    /// Writes a serialized request (see [`encode_request`]).
    pub async fn write_request(&mut self, wire: &Bytes) -> io::Result<()> {
        let Io::Whole(io) = &mut self.io else {
            return Err(io::Error::other("connection is busy with a request body"));
        };
        io.write_all(wire).await?;
        io.flush().await
    }

    /// Starts streaming a client's body to the worker with the given
    /// framing, in a task of its own (see [`Io`]); its failure surfaces
    /// through the response's reads.
    pub fn start_body(&mut self, body: UpstreamBody, framing: RequestFraming) {
        let Io::Whole(io) = std::mem::replace(&mut self.io, Io::Gone) else {
            self.io = Io::Gone;
            return;
        };
        let (read, mut write) = tokio::io::split(io);
        let task = tokio::spawn(async move {
            write_body(&mut write, body, framing).await?;
            Ok(write)
        });
        self.io = Io::Split {
            read,
            pump: Pump::Running(task),
        };
    }

    /// Reads the response head; the body follows in the returned
    /// [`WorkerBody`], which owns the connection from then on. Informational
    /// (1xx) responses are skipped.
    pub async fn read_response(
        mut self,
        method: &Method,
    ) -> Result<(http::response::Parts, WorkerBody), UpstreamError> {
        loop {
            if let Some(head) = self.parse_head()? {
                // Informational (1xx) heads are skipped.
                if head.0.status.is_informational() {
                    continue;
                }
                return Ok(self.into_response(head, method));
            }
            if self.buf.len() >= MAX_RESPONSE_HEAD {
                return Err(UpstreamError::Malformed("response head too large"));
            }
            if self.read_more().await? == 0 {
                return Err(UpstreamError::Closed);
            }
        }
    }

    /// A parsed final (not 1xx) head, and the body that follows it on this
    /// connection.
    fn into_response(
        self,
        (mut parts, keep_alive, framing): (http::response::Parts, bool, Decoder),
        method: &Method,
    ) -> (http::response::Parts, WorkerBody) {
        let framing = if *method == Method::HEAD
            || parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED
        {
            Decoder::Length(0)
        } else {
            framing
        };
        // The front door re-frames the body for its client.
        parts.headers.remove(header::TRANSFER_ENCODING);
        if !matches!(framing, Decoder::Length(_)) {
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        let body = WorkerBody {
            conn: Some(self),
            decoder: framing,
            keep_alive,
        };
        (parts, body)
    }

    async fn read_more(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read_more(cx)).await
    }

    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.buf.reserve(READ_CHUNK);
        match &mut self.io {
            Io::Whole(io) => tokio_util::io::poll_read_buf(Pin::new(io), cx, &mut self.buf),
            Io::Split { read, pump } => {
                if let Pump::Running(task) = pump
                    && let Poll::Ready(result) = Pin::new(task).poll(cx)
                {
                    match result {
                        Ok(Ok(write)) => *pump = Pump::Done(write),
                        Ok(Err(e)) => {
                            *pump = Pump::Failed;
                            return Poll::Ready(Err(io::Error::other(e)));
                        }
                        Err(e) => {
                            *pump = Pump::Failed;
                            return Poll::Ready(Err(io::Error::other(e)));
                        }
                    }
                }
                tokio_util::io::poll_read_buf(Pin::new(read), cx, &mut self.buf)
            }
            Io::Gone => Poll::Ready(Err(io::Error::other("connection closed"))),
        }
    }

    /// Back to one stream once a streamed body was written in full; false
    /// if it is still being written or failed.
    fn rejoin(&mut self) -> bool {
        match std::mem::replace(&mut self.io, Io::Gone) {
            Io::Whole(io) => {
                self.io = Io::Whole(io);
                true
            }
            Io::Split { read, pump } => {
                let write = match pump {
                    Pump::Done(write) => Some(write),
                    Pump::Running(mut task) if task.is_finished() => {
                        let mut cx = Context::from_waker(Waker::noop());
                        match Pin::new(&mut task).poll(&mut cx) {
                            Poll::Ready(Ok(Ok(write))) => Some(write),
                            _ => None,
                        }
                    }
                    Pump::Running(task) => {
                        task.abort();
                        None
                    }
                    Pump::Failed => None,
                };
                match write {
                    Some(write) => {
                        self.io = Io::Whole(read.unsplit(write));
                        true
                    }
                    None => false,
                }
            }
            Io::Gone => false,
        }
    }

    /// Parses a complete head off the buffer, if one is there.
    #[allow(clippy::type_complexity)]
    fn parse_head(&mut self) -> Result<Option<(http::response::Parts, bool, Decoder)>, UpstreamError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        // Uninitialized slots: zeroing 128 of them cost more than the parse.
        let mut slots = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed =
            httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut response, &self.buf, &mut slots);
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(UpstreamError::Malformed("too many headers")),
            Err(_) => return Err(UpstreamError::Malformed("bad response head")),
        };
        let status = StatusCode::from_u16(response.code.unwrap_or(0))
            .map_err(|_| UpstreamError::Malformed("bad status code"))?;
        let version = if response.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        // Offsets first, so header values can share the head's bytes.
        let base = self.buf.as_ptr() as usize;
        let mut fields = Vec::with_capacity(response.headers.len());
        for h in response.headers.iter() {
            if dropped_from_worker(h.name.as_bytes()) {
                continue;
            }
            let name =
                HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| UpstreamError::Malformed("bad header name"))?;
            // An empty value may not point into the buffer at all.
            let start = if h.value.is_empty() {
                0
            } else {
                h.value.as_ptr() as usize - base
            };
            fields.push((name, start, h.value.len()));
        }
        let head = self.buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(fields.len());
        let mut keep_alive = version == Version::HTTP_11;
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut has_te = false;
        for (name, start, n) in fields {
            let value = HeaderValue::from_maybe_shared(head.slice(start..start + n))
                .map_err(|_| UpstreamError::Malformed("bad header value"))?;
            if name == header::CONNECTION {
                for token in value.to_str().unwrap_or("").split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case("keep-alive") && version == Version::HTTP_10 {
                        keep_alive = true;
                    }
                }
            } else if name == header::CONTENT_LENGTH {
                let n: u64 = value
                    .to_str()
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .ok_or(UpstreamError::Malformed("bad content-length"))?;
                if length.is_some_and(|m| m != n) {
                    return Err(UpstreamError::Malformed("conflicting content-length"));
                }
                length = Some(n);
            } else if name == header::TRANSFER_ENCODING {
                has_te = true;
                let last = value.to_str().unwrap_or("").rsplit(',').next().unwrap_or("").trim();
                chunked = last.eq_ignore_ascii_case("chunked");
            }
            headers.append(name, value);
        }
        let decoder = if has_te {
            // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3); a
            // final coding other than chunked is delimited by the close.
            if chunked {
                Decoder::Chunked(ChunkState::Size)
            } else {
                Decoder::UntilClose
            }
        } else if let Some(n) = length {
            Decoder::Length(n)
        } else {
            Decoder::UntilClose
        };
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = status;
        parts.version = version;
        parts.headers = headers;
        Ok(Some((parts, keep_alive, decoder)))
    }
}

/// Writes a client's body with the given framing.
async fn write_body(
    io: &mut (impl AsyncWrite + Unpin),
    mut body: UpstreamBody,
    framing: RequestFraming,
) -> Result<(), UpstreamError> {
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(UpstreamError::ClientBody)?;
        let Ok(data) = frame.into_data() else { continue };
        if data.is_empty() {
            continue;
        }
        if framing == RequestFraming::Chunked {
            let size = format!("{:x}\r\n", data.len());
            io.write_all(size.as_bytes()).await?;
            io.write_all(&data).await?;
            io.write_all(b"\r\n").await?;
        } else {
            io.write_all(&data).await?;
        }
    }
    if framing == RequestFraming::Chunked {
        io.write_all(b"0\r\n\r\n").await?;
    }
    io.flush().await?;
    Ok(())
}

/// Worker response headers no client ever sees, skipped while parsing
/// rather than removed afterwards: the front door's `Date` replaces the
/// worker's, and the worker id is internal (see `frontdoor::headers`).
fn dropped_from_worker(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"date") || name.eq_ignore_ascii_case(crate::protocol::WORKER_ID_HEADER.as_bytes())
}
