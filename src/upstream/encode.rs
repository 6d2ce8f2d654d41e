//! The request head a worker receives: the client's head with our own
//! framing (the client's framing headers never pass).

use bytes::Bytes;
use http::header::{self, HeaderMap};

use crate::http::headers::push_fields;

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
