//! The fast path's HTTP/1.1 codec: the common request shape parsed straight
//! into the bytes a worker gets, and response heads written straight from
//! the worker's answer.
//!
//! hyper builds a `HeaderMap` for every request, which we then rewrote and
//! serialized again for the worker; that round trip was most of the front
//! door's user-space time (see `docs/benchmarking.md`). Here httparse (the
//! parser hyper uses) reads the head, and the worker-bound head is written
//! in the same pass, with the same rewriting as
//! [`super::headers::rewrite_request`]: hop-by-hop headers dropped,
//! `X-Forwarded-For`/`-Proto`, `X-Request-Id` and `X-Request-Start` set,
//! the body re-framed with our own `Content-Length`. The `Host` value is
//! noted (where it sits in the head) for routing.
//!
//! Only requests whose every detail this codec knows are taken:
//! [`parse_request`] says [`Head::Unsupported`] for anything else (a
//! streamed or chunked body, `Expect`, `Upgrade`, `Connection` naming other
//! headers, an absolute URI, a malformed or oversized head, the front door's
//! own `/status` and `/server`), and the connection goes to hyper, which
//! handles or refuses it as before.

use std::ops::Range;

use http::{HeaderValue, Method, StatusCode, header};

use crate::http::headers::{push_decimal_bytes, push_fields, push_hex_bytes};
use crate::os::clock::push_http_date;

/// The most request headers the fast path parses (more go to hyper, which
/// applies `--max-headers`).
const MAX_FAST_HEADERS: usize = 64;

/// What the fast path may take.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most header fields (`--max-headers`).
    pub max_headers: usize,
    /// Largest body read before dispatch: the buffered-body limit or the
    /// body limit, whichever is smaller.
    pub max_body: u64,
}

/// How the worker-bound head is rewritten.
pub struct Rewrite<'a, F: FnOnce() -> String> {
    /// The client's address as text, appended to `X-Forwarded-For`.
    pub client: Option<&'a str>,
    /// `X-Forwarded-Proto`.
    pub scheme: &'a str,
    /// `X-Request-Start: t=<this>`.
    pub start_micros: u64,
    /// An id for a request that brings none.
    pub new_id: F,
}

/// A request the fast path takes.
#[derive(Debug)]
pub struct SimpleRequest {
    /// Bytes of the head, blank line included.
    pub head_len: usize,
    /// Bytes of the body that follow it.
    pub body_len: usize,
    pub method: Method,
    /// The request target within the head.
    pub path: Range<usize>,
    /// The value of its (first) `Host` header within the head, for routing.
    pub host: Option<Range<usize>>,
    /// An HTTP/1.0 request (a close-delimited body is its only unknown-length framing).
    pub http10: bool,
    /// The client wants the connection kept open.
    pub keep_alive: bool,
    /// The head as the worker gets it; the body is appended after it.
    pub wire: Vec<u8>,
    /// The request's id (the client's, or a new one).
    pub request_id: HeaderValue,
    /// When it arrived, as stamped in `X-Request-Start`.
    pub start_micros: u64,
}

/// What [`parse_request`] found.
#[derive(Debug)]
pub enum Head {
    Complete(SimpleRequest),
    /// More bytes are needed.
    Partial,
    /// Not for the fast path; hyper takes the connection from here.
    Unsupported,
}

/// The request headers the codec acts on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    ContentLength,
    Connection,
    /// Dropped: describes this hop only, or replaced by ours.
    Dropped,
    ForwardedFor,
    /// Passed on, and noted for routing.
    Host,
    RequestId,
    /// Framing or semantics this codec leaves to hyper.
    Unsupported,
    Other,
}

fn kind(name: &str) -> Kind {
    let is = |known: &str| name.eq_ignore_ascii_case(known);
    match name.len() {
        2 if is("te") => Kind::Dropped,
        4 if is("host") => Kind::Host,
        6 if is("expect") => Kind::Unsupported,
        7 if is("upgrade") => Kind::Unsupported,
        7 if is("trailer") => Kind::Dropped,
        10 if is("connection") => Kind::Connection,
        10 if is("keep-alive") => Kind::Dropped,
        12 if is("x-request-id") => Kind::RequestId,
        14 if is("content-length") => Kind::ContentLength,
        15 if is("x-forwarded-for") => Kind::ForwardedFor,
        15 if is("x-request-start") => Kind::Dropped,
        16 if is("proxy-connection") => Kind::Dropped,
        17 if is("transfer-encoding") => Kind::Unsupported,
        17 if is("x-forwarded-proto") => Kind::Dropped,
        19 if is("proxy-authorization") => Kind::Dropped,
        _ => Kind::Other,
    }
}

/// A value `HeaderValue::to_str` accepts (visible ASCII, space, tab), the
/// only ones the hyper path copies into `X-Forwarded-For`.
fn is_visible_ascii(value: &[u8]) -> bool {
    value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

fn parse_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Parses the request head at the start of `buf` and, when the fast path
/// takes it, writes the worker-bound head.
pub fn parse_request<F: FnOnce() -> String>(buf: &[u8], limits: Limits, rewrite: Rewrite<'_, F>) -> Head {
    let mut slots = [httparse::EMPTY_HEADER; MAX_FAST_HEADERS];
    let slots = &mut slots[..limits.max_headers.min(MAX_FAST_HEADERS)];
    let mut request = httparse::Request::new(slots);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Head::Partial,
        // Malformed or too many headers: hyper gives the 400 or 431.
        Err(_) => return Head::Unsupported,
    };
    let (Some(method), Some(path), Some(version)) = (request.method, request.path, request.version) else {
        return Head::Unsupported;
    };
    let without_query = path.split('?').next().unwrap_or(path);
    if !path.starts_with('/') || method == "CONNECT" || super::own_endpoint(method, without_query).is_some() {
        return Head::Unsupported;
    }
    let http10 = version == 0;
    let (mut close, mut keep) = (false, false);
    let mut content_length = None;
    let mut client_id: Option<&[u8]> = None;
    let mut host: Option<&[u8]> = None;
    for h in request.headers.iter() {
        match kind(h.name) {
            Kind::Unsupported => return Head::Unsupported,
            Kind::ContentLength => {
                if content_length.is_some() {
                    return Head::Unsupported;
                }
                match parse_length(h.value) {
                    Some(n) if n <= limits.max_body => content_length = Some(n),
                    _ => return Head::Unsupported,
                }
            }
            Kind::Connection => {
                for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        keep = true;
                    } else if !token.is_empty() {
                        // It names headers to drop: hyper's path does that.
                        return Head::Unsupported;
                    }
                }
            }
            Kind::RequestId => {
                client_id.get_or_insert(h.value);
            }
            Kind::Host => {
                host.get_or_insert(h.value);
            }
            Kind::Dropped | Kind::ForwardedFor | Kind::Other => {}
        }
    }
    // As `rewrite_request`: the client's id is kept when it is sane.
    let keep_id = client_id.is_some_and(|v| !v.is_empty() && v.len() <= 200);
    let request_id = match client_id {
        Some(v) if keep_id => match HeaderValue::from_bytes(v) {
            Ok(v) => v,
            Err(_) => return Head::Unsupported,
        },
        _ => match HeaderValue::from_maybe_shared(bytes::Bytes::from((rewrite.new_id)())) {
            Ok(v) => v,
            Err(_) => HeaderValue::from_static("-"),
        },
    };
    let body_len = content_length.unwrap_or(0);
    let mut wire = Vec::with_capacity(head_len + 160);
    wire.extend_from_slice(method.as_bytes());
    wire.push(b' ');
    wire.extend_from_slice(path.as_bytes());
    wire.extend_from_slice(b" HTTP/1.1\r\n");
    let mut previous_for = Vec::new();
    for h in request.headers.iter() {
        match kind(h.name) {
            Kind::ForwardedFor if rewrite.client.is_some() => {
                if is_visible_ascii(h.value) {
                    previous_for.extend_from_slice(h.value);
                    previous_for.extend_from_slice(b", ");
                }
                continue;
            }
            Kind::RequestId if !keep_id => continue,
            Kind::Other | Kind::Host | Kind::ForwardedFor | Kind::RequestId => {}
            _ => continue,
        }
        // Lowercased as copied, as hyper's path sends them (`push_fields`
        // takes a `HeaderMap`, whose names are lowercase already).
        wire.extend(h.name.bytes().map(|b| b.to_ascii_lowercase()));
        wire.extend_from_slice(b": ");
        wire.extend_from_slice(h.value);
        wire.extend_from_slice(b"\r\n");
    }
    if let Some(ip) = rewrite.client {
        wire.extend_from_slice(b"x-forwarded-for: ");
        wire.extend_from_slice(&previous_for);
        wire.extend_from_slice(ip.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"x-forwarded-proto: ");
    wire.extend_from_slice(rewrite.scheme.as_bytes());
    if !keep_id {
        wire.extend_from_slice(b"\r\nx-request-id: ");
        wire.extend_from_slice(request_id.as_bytes());
    }
    wire.extend_from_slice(b"\r\nx-request-start: t=");
    push_decimal_bytes(&mut wire, rewrite.start_micros);
    if let Some(n) = content_length {
        wire.extend_from_slice(b"\r\ncontent-length: ");
        push_decimal_bytes(&mut wire, n);
    }
    wire.extend_from_slice(b"\r\n\r\n");
    Head::Complete(SimpleRequest {
        head_len,
        body_len: usize::try_from(body_len).unwrap_or(usize::MAX),
        method: Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET),
        path: offset_in(buf, path.as_bytes()),
        host: host.map(|value| offset_in(buf, value)),
        http10,
        // `close` wins; HTTP/1.0 keeps the connection only when asked to.
        keep_alive: !close && (keep || !http10),
        wire,
        request_id,
        start_micros: rewrite.start_micros,
    })
}

/// Where `part` (a slice of `whole`) sits in it.
fn offset_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start..start + part.len()
}

/// How a response body is framed on the wire to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body may follow (HEAD, 1xx, 204, 304): no length is added; a
    /// `Content-Length` the worker sent stays, as the size a GET would get.
    None,
    /// `Content-Length: n`, written by us (a worker's own is dropped).
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 clients, length unknown).
    Chunked,
    /// The body ends when the connection closes (HTTP/1.0 clients, length unknown).
    Close,
}

/// Whether a response to `method` with `status` carries no body.
pub fn bodyless(method: &Method, status: StatusCode) -> bool {
    *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// Appends a response head: status line, the (already rewritten) headers,
/// one `Date`, the framing and the connection's fate.
pub fn write_response_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    framing: Framing,
    keep_alive: bool,
    http10: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // A body's length is ours, written below.
    push_fields(out, &parts.headers, |name| {
        name == header::CONTENT_LENGTH && framing != Framing::None
    });
    out.extend_from_slice(b"date: ");
    push_http_date(out);
    out.extend_from_slice(b"\r\n");
    match framing {
        Framing::None | Framing::Close => {}
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal_bytes(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a chunk's size line.
pub fn push_chunk_size(out: &mut Vec<u8>, len: usize) {
    push_hex_bytes(out, len as u64);
    out.extend_from_slice(b"\r\n");
}
