//! A worker's response body: decoded (length, chunked or until close) as
//! the client consumes it, straight from the connection.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::{MAX_CHUNK_LINE, Upstream, UpstreamError};

/// Where a response body's decoding stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decoder {
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
pub(super) enum ChunkState {
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
    pub(super) conn: Option<Upstream>,
    pub(super) decoder: Decoder,
    pub(super) keep_alive: bool,
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
