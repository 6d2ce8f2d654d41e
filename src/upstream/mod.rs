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

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;

use crate::http::headers::push_fields;
use crate::net::transport::Transport;

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
    buf: BytesMut,
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

/// How a request's body is framed on the way to the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFraming {
    /// No framing header: no body.
    None,
    /// `Content-Length: n`, body follows (buffered or streamed).
    Length(u64),
    /// `Transfer-Encoding: chunked`, body streamed.
    Chunked,
}

/// Serializes a request head for a worker, followed by `body` (the whole
/// body of a buffered request; empty for a streamed one). The client's
/// framing headers never pass: the front door writes its own.
pub fn encode_request(parts: &http::request::Parts, framing: RequestFraming, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    match parts.uri.path_and_query() {
        Some(pq) if !pq.as_str().is_empty() => out.extend_from_slice(pq.as_str().as_bytes()),
        _ => out.push(b'/'),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_headers(&parts.headers, &mut out);
    match framing {
        RequestFraming::None => {}
        RequestFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// The client's headers without its framing (ours is written instead).
fn write_headers(headers: &HeaderMap, out: &mut Vec<u8>) {
    push_fields(out, headers, |name| {
        name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING
    });
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

/// Where a response body's decoding stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decoder {
    /// This many bytes left.
    Length(u64),
    /// Chunked transfer coding.
    Chunked(ChunkState),
    /// Until the worker closes the connection.
    UntilClose,
    /// Ended.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailers,
}

/// A worker's response body, read from the connection as the client
/// consumes it. It owns the connection; [`WorkerBody::take_conn`] gives it
/// back once the body ended cleanly and the connection may be reused.
pub struct WorkerBody {
    conn: Option<Upstream>,
    decoder: Decoder,
    keep_alive: bool,
}

impl fmt::Debug for WorkerBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerBody").field("decoder", &self.decoder).finish()
    }
}

impl WorkerBody {
    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        matches!(self.decoder, Decoder::Done | Decoder::Length(0))
    }

    /// The whole rest of the body, if it is already buffered (a sized body
    /// that arrived with its head, the common case for small responses).
    /// The body is then done and its connection can be taken back at once.
    pub fn take_buffered(&mut self) -> Option<Bytes> {
        let Decoder::Length(left) = self.decoder else {
            return None;
        };
        let conn = self.conn.as_mut()?;
        let left = usize::try_from(left).ok()?;
        if conn.buf.len() < left {
            return None;
        }
        let bytes = conn.buf.split_to(left).freeze();
        self.decoder = Decoder::Done;
        Some(bytes)
    }

    /// The connection, if the body ended at a clean boundary and the worker
    /// keeps the connection open; `None` otherwise (the connection closes).
    pub fn take_conn(&mut self) -> Option<Upstream> {
        let reusable = self.keep_alive && self.is_done() && self.conn.as_ref().is_some_and(|c| c.buf.is_empty());
        if !reusable {
            return None;
        }
        let mut conn = self.conn.take()?;
        conn.rejoin().then_some(conn)
    }

    /// Reads the rest of the body, discarding it.
    pub async fn drain(&mut self) -> Result<(), UpstreamError> {
        while let Some(frame) = self.frame().await {
            frame?;
        }
        Ok(())
    }

    /// Decodes what is buffered: a data frame, the end, or `None` when more
    /// bytes are needed.
    fn decode(&mut self) -> Result<Option<Option<Bytes>>, UpstreamError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Some(None));
        };
        let buf = &mut conn.buf;
        loop {
            match self.decoder {
                Decoder::Done | Decoder::Length(0) => {
                    self.decoder = Decoder::Done;
                    return Ok(Some(None));
                }
                Decoder::Length(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.decoder = Decoder::Length(left - n as u64);
                    return Ok(Some(Some(buf.split_to(n).freeze())));
                }
                Decoder::UntilClose => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(Some(buf.split().freeze())));
                }
                Decoder::Chunked(ChunkState::Data(left)) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let left = left - n as u64;
                    self.decoder = Decoder::Chunked(if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    });
                    return Ok(Some(Some(buf.split_to(n).freeze())));
                }
                Decoder::Chunked(ChunkState::DataEnd) => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(UpstreamError::Malformed("chunk not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.decoder = Decoder::Chunked(ChunkState::Size);
                }
                Decoder::Chunked(ChunkState::Size) => {
                    let Some(line) = take_line(buf)? else { return Ok(None) };
                    let digits = line.split(|&b| b == b';').next().unwrap_or(&[]);
                    let digits = std::str::from_utf8(digits).map_err(|_| UpstreamError::Malformed("bad chunk size"))?;
                    let size = u64::from_str_radix(digits.trim_matches([' ', '\t']), 16)
                        .map_err(|_| UpstreamError::Malformed("bad chunk size"))?;
                    self.decoder = Decoder::Chunked(if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    });
                }
                Decoder::Chunked(ChunkState::Trailers) => {
                    let Some(line) = take_line(buf)? else { return Ok(None) };
                    if line.is_empty() {
                        self.decoder = Decoder::Done;
                        return Ok(Some(None));
                    }
                    // Trailer fields are dropped: the client already has its head.
                }
            }
        }
    }
}

/// Takes one CRLF-terminated line off the buffer (without the CRLF).
fn take_line(buf: &mut BytesMut) -> Result<Option<Bytes>, UpstreamError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(i) => {
            let line = buf.split_to(i).freeze();
            buf.advance(2);
            Ok(Some(line))
        }
        None if buf.len() > MAX_CHUNK_LINE => Err(UpstreamError::Malformed("chunk line too long")),
        None => Ok(None),
    }
}

impl Body for WorkerBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = &mut *self;
        loop {
            match this.decode() {
                Err(e) => {
                    this.conn = None;
                    this.decoder = Decoder::Done;
                    return Poll::Ready(Some(Err(e)));
                }
                Ok(Some(Some(data))) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Some(None)) => return Poll::Ready(None),
                Ok(None) => {}
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match conn.poll_read_more(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    if this.decoder == Decoder::UntilClose {
                        this.decoder = Decoder::Done;
                        this.keep_alive = false;
                        return Poll::Ready(None);
                    }
                    this.conn = None;
                    this.decoder = Decoder::Done;
                    return Poll::Ready(Some(Err(UpstreamError::Closed)));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    this.conn = None;
                    this.decoder = Decoder::Done;
                    return Poll::Ready(Some(Err(UpstreamError::Io(e))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            Decoder::Length(n) => SizeHint::with_exact(n),
            Decoder::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair(response: &'static [u8]) -> Upstream {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            b.write_all(response).await.unwrap();
            // Keep the peer open a little so "until close" bodies end by EOF.
            tokio::time::sleep(Duration::from_millis(20)).await;
        });
        Upstream::from_stream(a)
    }

    async fn read_all(conn: Upstream, method: Method) -> Result<(http::response::Parts, Vec<u8>, bool), UpstreamError> {
        let (parts, mut body) = conn.read_response(&method).await?;
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.extend_from_slice(&frame?.into_data().unwrap());
        }
        let reusable = body.take_conn().is_some();
        Ok((parts, out, reusable))
    }

    #[tokio::test]
    async fn content_length_body_and_reuse() {
        let conn = pair(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello").await;
        let (parts, body, reusable) = read_all(conn, Method::GET).await.unwrap();
        assert_eq!(parts.status, 200);
        assert_eq!(parts.headers["x-a"], "1");
        assert_eq!(parts.headers[header::CONTENT_LENGTH], "5");
        assert_eq!(body, b"hello");
        assert!(reusable);
    }

    #[tokio::test]
    async fn a_body_that_came_with_its_head_is_taken_whole() {
        let conn = pair(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
        let (_, mut body) = conn.read_response(&Method::GET).await.unwrap();
        // The duplex delivers the write in one piece.
        assert_eq!(body.take_buffered().as_deref(), Some(&b"hello"[..]));
        assert!(body.is_done());
        assert!(body.take_conn().is_some());
        let conn = pair(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n").await;
        let (_, mut body) = conn.read_response(&Method::GET).await.unwrap();
        assert!(body.take_buffered().is_none(), "only sized bodies are taken whole");
    }

    #[tokio::test]
    async fn chunked_body_with_extensions_and_trailers() {
        let conn = pair(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nx-trailer: y\r\n\r\n",
        )
        .await;
        let (parts, body, reusable) = read_all(conn, Method::GET).await.unwrap();
        assert!(parts.headers.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(body, b"hello!");
        assert!(reusable);
    }

    #[tokio::test]
    async fn close_delimited_body_is_not_reused() {
        let conn = pair(b"HTTP/1.1 200 OK\r\n\r\nuntil the end").await;
        let (_, body, reusable) = read_all(conn, Method::GET).await.unwrap();
        assert_eq!(body, b"until the end");
        assert!(!reusable);
    }

    #[tokio::test]
    async fn connection_close_and_http10_are_not_reused() {
        let conn = pair(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok").await;
        assert!(!read_all(conn, Method::GET).await.unwrap().2);
        let conn = pair(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        assert!(!read_all(conn, Method::GET).await.unwrap().2);
        let conn = pair(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok").await;
        assert!(read_all(conn, Method::GET).await.unwrap().2);
    }

    #[tokio::test]
    async fn informational_responses_are_skipped() {
        let conn = pair(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n").await;
        let (parts, body, _) = read_all(conn, Method::POST).await.unwrap();
        assert_eq!(parts.status, 201);
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn head_and_204_have_no_body() {
        let conn = pair(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n").await;
        let (parts, body, reusable) = read_all(conn, Method::HEAD).await.unwrap();
        assert_eq!(parts.headers[header::CONTENT_LENGTH], "10");
        assert!(body.is_empty());
        assert!(reusable);
    }

    #[tokio::test]
    async fn broken_responses_are_errors() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"[..],
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabXY",
            b"HTTP/1.1 200 OK\r\n",
        ] {
            let conn = pair(bad).await;
            assert!(
                read_all(conn, Method::GET).await.is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[tokio::test]
    async fn trailing_bytes_after_a_response_prevent_reuse() {
        let conn = pair(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA").await;
        let (_, body, reusable) = read_all(conn, Method::GET).await.unwrap();
        assert_eq!(body, b"ok");
        assert!(!reusable);
    }

    #[test]
    fn request_encoding_writes_its_own_framing() {
        let mut request = http::Request::post("/p?q=1").body(()).unwrap();
        request.headers_mut().insert("host", HeaderValue::from_static("x"));
        request
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        request
            .headers_mut()
            .insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        let (parts, ()) = request.into_parts();
        let wire = encode_request(&parts, RequestFraming::Length(3), b"abc");
        assert_eq!(
            &wire[..],
            b"POST /p?q=1 HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc"
        );
        let wire = encode_request(&parts, RequestFraming::Chunked, b"");
        assert_eq!(
            &wire[..],
            b"POST /p?q=1 HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }
}
