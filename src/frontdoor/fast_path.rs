//! The fast path: a connection served by our own HTTP/1.1 codec while its
//! requests have the common shape (see [`super::codec`]), handed to hyper
//! at the first request that does not.
//!
//! One request at a time, as hyper serves HTTP/1: read a head, read its
//! (small) body, route it by its `Host` to an app (or answer `404 Host not
//! found`), run it through that app's core and worker, write the reply,
//! and go on with the next. Pipelined bytes stay in the buffer for the next
//! round. While a request runs the client socket is still watched, so a
//! client that hangs up is noticed at once: the request is dropped, which
//! tells the driver (a queued request leaves the queue; a running exchange
//! finishes in a task of its own, see `proxy`).

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::io::poll_read_buf;

use super::body::{RelayBody, ResponseBody};
use super::codec::{self, Framing, Head, Limits, Rewrite, SimpleRequest};
use super::hsts::{add_hsts, hsts_applies};
use super::idle::{IDLE_GRACE, LazyTimer, STOP_LINGER};
use super::proxy::{BUFFER_BODY_LIMIT, Prepared, Reply};
use super::routes::HOST_NOT_FOUND;
use super::{AppProxy, FrontDoor, MISDIRECTED};
use crate::net::transport::Transport;
use crate::os::clock::wall_micros;

/// Bytes read per read call.
const READ_CHUNK: usize = 8 * 1024;
/// A body frame at most this big is copied next to its head or chunk line
/// (one write); a bigger one is written on its own.
const COALESCE_LIMIT: usize = 16 * 1024;

/// How the fast path ended.
pub enum Ended {
    /// The connection is done: the client closed it, asked for it to be
    /// closed, broke the protocol, timed out, or the server is stopping.
    Close,
    /// Nothing arrived for [`IDLE_GRACE`] and nothing is buffered.
    Idle,
    /// The buffer starts with a request the fast path does not take.
    Handover,
}

/// What waiting for bytes found.
enum Wait {
    Read,
    Closed,
    Idle,
    HeadTimeout,
    Stopping,
}

/// Serves requests on `io` until one is not for the fast path, or the
/// connection ends or idles. `buf` holds bytes already read (a partial head
/// carried over from hyper) and, on [`Ended::Handover`], the bytes hyper
/// must start from.
pub async fn serve<T: Transport, I>(
    front_door: &Arc<FrontDoor<T>>,
    client: Option<IpAddr>,
    sni: Option<&str>,
    io: &mut I,
    buf: &mut BytesMut,
    closing: &mut watch::Receiver<bool>,
) -> Ended
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let config = &front_door.config;
    let limits = Limits {
        max_headers: config.max_headers,
        max_body: BUFFER_BODY_LIMIT.min(config.max_body),
    };
    let header_timeout = config.header_timeout;
    // Keyed by the count of requests served: one timer per period, not per
    // request (see `LazyTimer`).
    let mut idle = LazyTimer::default();
    let mut head_timer = LazyTimer::default();
    let mut served: u64 = 0;
    let mut out = Vec::new();
    let stop = closing.clone();
    // Formatted once: `X-Forwarded-For` names it in every request.
    let client_text = client.map(|ip| ip.to_string());
    let mut stopping = pin!(closing.wait_for(|c| *c));
    // Armed when the stop begins while the connection waits for a request.
    let mut linger: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        // A whole head, and the body it announces.
        let mut request = loop {
            if !buf.is_empty() {
                let rewrite = Rewrite {
                    client: client_text.as_deref(),
                    scheme: config.scheme,
                    start_micros: wall_micros(),
                    new_id: || front_door.new_request_id(),
                };
                match codec::parse_request(buf, limits, rewrite) {
                    Head::Complete(request) => break request,
                    Head::Unsupported => return Ended::Handover,
                    // hyper answers an oversized head with 431.
                    Head::Partial if buf.len() >= config.max_head_bytes => return Ended::Handover,
                    Head::Partial => {}
                }
            }
            let waited = std::future::poll_fn(|cx| {
                if buf.is_empty() {
                    if linger.is_none() && stopping.as_mut().poll(cx).is_ready() {
                        linger = Some(Box::pin(tokio::time::sleep(STOP_LINGER)));
                    }
                    // Stopping: one more request is served if it comes soon.
                    let lingered = linger.as_mut().map(|timer| timer.as_mut().poll(cx).is_ready());
                    match lingered {
                        Some(true) => return Poll::Ready(Wait::Stopping),
                        Some(false) => {}
                        None if idle.expired(cx, served, IDLE_GRACE) => return Poll::Ready(Wait::Idle),
                        None => {}
                    }
                } else if head_timer.expired(cx, served, header_timeout) {
                    return Poll::Ready(Wait::HeadTimeout);
                }
                poll_read_more(io, buf, cx)
            })
            .await;
            match waited {
                Wait::Read => {}
                Wait::Idle => return Ended::Idle,
                Wait::HeadTimeout => {
                    tracing::debug!("request head not complete within the header timeout: connection closed");
                    return Ended::Close;
                }
                Wait::Closed | Wait::Stopping => return Ended::Close,
            }
        };
        let total = request.head_len + request.body_len;
        while buf.len() < total {
            buf.reserve(total - buf.len());
            if !matches!(std::future::poll_fn(|cx| poll_read_more(io, buf, cx)).await, Wait::Read) {
                return Ended::Close;
            }
        }
        let bytes = buf.split_to(total).freeze();
        let host = request.host.clone().map(|host| &bytes[host]);
        // HTTPS only (`config.hsts` is never set on a plain listener).
        let hsts = config.hsts && hsts_applies(host);
        let reply = match front_door.route(host) {
            Some(app) if front_door.misdirected(sni, &app) => {
                Reply::Plain(StatusCode::MISDIRECTED_REQUEST, MISDIRECTED)
            }
            Some(app) => {
                let prepared = prepare(&app, &mut request, &bytes);
                let reply = run(app, prepared, io, buf, config.max_head_bytes).await;
                let Some(reply) = reply else {
                    // The client hung up while its request ran.
                    return Ended::Close;
                };
                reply
            }
            None => Reply::Plain(StatusCode::NOT_FOUND, HOST_NOT_FOUND),
        };
        served += 1;
        let keep_alive = request.keep_alive && !*stop.borrow();
        match write_reply(io, &mut out, reply, &request, keep_alive, hsts).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return Ended::Close,
        }
        if !keep_alive {
            let _ = io.shutdown().await;
            return Ended::Close;
        }
        if out.capacity() > 64 * 1024 {
            out = Vec::new();
        }
    }
}

/// The request as [`AppProxy::run`] takes it: the worker-bound head (taken
/// from `request`) and the body in one buffer, the path shared with the
/// request's bytes.
fn prepare<T: Transport>(app: &AppProxy<T>, request: &mut SimpleRequest, bytes: &Bytes) -> Prepared {
    let mut wire = std::mem::take(&mut request.wire);
    wire.extend_from_slice(&bytes[request.head_len..]);
    Prepared::replayable(
        wire.into(),
        request.method.clone(),
        bytes.slice(request.path.clone()),
        request.request_id.clone(),
        request.start_micros,
        app.now(),
    )
}

/// Runs the request while watching the client: `None` if it hung up.
/// Bytes it sends meanwhile (a pipelined request) are kept in `buf`, up to
/// about one head's worth.
async fn run<T: Transport, I: AsyncRead + Unpin>(
    app: Arc<AppProxy<T>>,
    prepared: Prepared,
    io: &mut I,
    buf: &mut BytesMut,
    max_head: usize,
) -> Option<Reply> {
    let mut running = pin!(app.run(prepared));
    let mut watching = buf.len() < max_head;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(reply) = running.as_mut().poll(cx) {
            return Poll::Ready(Some(reply));
        }
        while watching {
            match poll_read_more(io, buf, cx) {
                Poll::Ready(Wait::Read) => watching = buf.len() < max_head,
                Poll::Ready(_) => return Poll::Ready(None),
                Poll::Pending => break,
            }
        }
        Poll::Pending
    })
    .await
}

/// Reads what is there into `buf`.
fn poll_read_more<I: AsyncRead + Unpin>(io: &mut I, buf: &mut BytesMut, cx: &mut Context<'_>) -> Poll<Wait> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_CHUNK);
    }
    match poll_read_buf(Pin::new(io), cx, buf) {
        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(Wait::Closed),
        Poll::Ready(Ok(_)) => Poll::Ready(Wait::Read),
        Poll::Pending => Poll::Pending,
    }
}

/// Writes the reply; `Ok(false)` when the connection cannot go on (a body
/// that ends with the connection, or a worker that failed mid-body).
async fn write_reply<I: AsyncWrite + Unpin>(
    io: &mut I,
    out: &mut Vec<u8>,
    reply: Reply,
    request: &SimpleRequest,
    keep_alive: bool,
    hsts: bool,
) -> io::Result<bool> {
    out.clear();
    let (mut parts, bytes) = match reply {
        Reply::Whole(parts, bytes) => (parts, bytes),
        Reply::Relay(mut parts, body) => {
            if hsts {
                add_hsts(&mut parts.headers);
            }
            return write_relay(io, out, parts, body, request, keep_alive).await;
        }
        synthesized @ (Reply::Answer(..) | Reply::Plain(..)) => {
            let (parts, body) = synthesized.into_response().into_parts();
            let ResponseBody::Full(bytes) = body else {
                unreachable!("synthesized replies are whole")
            };
            (parts, bytes.unwrap_or_default())
        }
    };
    if hsts {
        add_hsts(&mut parts.headers);
    }
    let framing = if codec::bodyless(&request.method, parts.status) {
        Framing::None
    } else {
        Framing::Length(bytes.len() as u64)
    };
    codec::write_response_head(out, &parts, framing, keep_alive, request.http10);
    if framing != Framing::None {
        out.extend_from_slice(&bytes);
    }
    io.write_all(out).await?;
    Ok(true)
}

/// Streams a worker's body to the client as it comes.
async fn write_relay<I: AsyncWrite + Unpin>(
    io: &mut I,
    out: &mut Vec<u8>,
    parts: http::response::Parts,
    mut body: RelayBody,
    request: &SimpleRequest,
    keep_alive: bool,
) -> io::Result<bool> {
    let declared = parts.headers.contains_key(http::header::CONTENT_LENGTH);
    let framing = if codec::bodyless(&request.method, parts.status) {
        Framing::None
    } else if let (true, Some(n)) = (declared, body.size_hint().exact()) {
        Framing::Length(n)
    } else if request.http10 {
        Framing::Close
    } else {
        Framing::Chunked
    };
    let keep_alive = keep_alive && framing != Framing::Close;
    codec::write_response_head(out, &parts, framing, keep_alive, request.http10);
    loop {
        // Flush what is pending before waiting: the client sees the head
        // (or the last frames) as soon as the worker pauses.
        let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
        let frame = match polled {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if !out.is_empty() {
                    io.write_all(out).await?;
                    out.clear();
                }
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        let data = match frame {
            None => break,
            // The worker failed mid-body: the client must see the answer
            // cut short, so the connection closes.
            Some(Err(_)) => {
                if !out.is_empty() {
                    io.write_all(out).await?;
                }
                return Ok(false);
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        if framing == Framing::None {
            continue;
        }
        if framing == Framing::Chunked {
            codec::push_chunk_size(out, data.len());
        }
        if data.len() <= COALESCE_LIMIT {
            out.extend_from_slice(&data);
        } else {
            if !out.is_empty() {
                io.write_all(out).await?;
                out.clear();
            }
            io.write_all(&data).await?;
        }
        if framing == Framing::Chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= COALESCE_LIMIT {
            io.write_all(out).await?;
            out.clear();
        }
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if !out.is_empty() {
        io.write_all(out).await?;
    }
    Ok(keep_alive)
}
