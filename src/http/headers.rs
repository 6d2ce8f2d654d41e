//! Header rewriting on the way in and on the way out.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::protocol::{WORKER_BUSY_HEADER, WORKER_ID_HEADER};

/// Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_REQUEST_START: HeaderName = HeaderName::from_static("x-request-start");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static RIP_WORKER_BUSY: HeaderName = HeaderName::from_static(WORKER_BUSY_HEADER);
static RIP_WORKER_ID: HeaderName = HeaderName::from_static(WORKER_ID_HEADER);

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == KEEP_ALIVE || name == PROXY_CONNECTION
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // The common case has none: one pass over the names instead of a hashed
    // removal per name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
}

/// Rewrites a client's request headers for the worker: drops hop-by-hop
/// headers, appends the client to `X-Forwarded-For`, sets
/// `X-Forwarded-Proto`, keeps or assigns `X-Request-Id`, and stamps
/// `X-Request-Start: t=<microseconds since the epoch>` so the app can see
/// its queue time. Returns the request id.
pub fn rewrite_request(
    headers: &mut HeaderMap,
    client: Option<IpAddr>,
    scheme: &'static str,
    start_micros: u64,
    new_id: impl FnOnce() -> String,
) -> HeaderValue {
    strip_hop_by_hop(headers);
    // The front door re-frames the body for the worker: the client's framing
    // headers go, so a worker can never see a Content-Length that disagrees
    // with a chunked body (request smuggling).
    if headers.remove(header::TRANSFER_ENCODING).is_some() {
        headers.remove(header::CONTENT_LENGTH);
    }
    if let Some(ip) = client {
        let mut value = String::with_capacity(48);
        for previous in headers.get_all(&X_FORWARDED_FOR) {
            if let Ok(s) = previous.to_str() {
                value.push_str(s);
                value.push_str(", ");
            }
        }
        let _ = write!(value, "{ip}");
        if let Ok(v) = shared_value(value) {
            headers.insert(&X_FORWARDED_FOR, v);
        }
    }
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    let id = match headers.get(&X_REQUEST_ID) {
        Some(v) if !v.is_empty() && v.len() <= 200 => v.clone(),
        _ => {
            let v = shared_value(new_id()).unwrap_or(HeaderValue::from_static("-"));
            headers.insert(&X_REQUEST_ID, v.clone());
            v
        }
    };
    let mut start = String::with_capacity(24);
    start.push_str("t=");
    push_decimal(&mut start, start_micros);
    if let Ok(v) = shared_value(start) {
        headers.insert(&X_REQUEST_START, v);
    }
    id
}

/// A header value that takes over the string's buffer instead of copying it.
fn shared_value(value: String) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(value))
}

/// Appends `n` in decimal (the formatting machinery is slow on this path).
pub fn push_decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    out.extend(format_digits(&mut digits, n, 10).iter().map(|&d| d as char));
}

/// Appends `n` in lowercase hexadecimal.
pub fn push_hex(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    out.extend(format_digits(&mut digits, n, 16).iter().map(|&d| d as char));
}

/// Appends every field of `headers` but those `skip` names, one
/// `name: value\r\n` line each (names as stored: lowercase).
pub fn push_fields(out: &mut Vec<u8>, headers: &HeaderMap, skip: impl Fn(&HeaderName) -> bool) {
    for (name, value) in headers {
        if !skip(name) {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Appends `n` in decimal to bytes.
pub fn push_decimal_bytes(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(format_digits(&mut digits, n, 10));
}

/// Appends `n` in lowercase hexadecimal to bytes.
pub fn push_hex_bytes(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(format_digits(&mut digits, n, 16));
}

/// Writes `n`'s digits at the end of `digits` (u64::MAX has 20 decimal
/// digits, fewer in any larger radix) and returns them.
fn format_digits(digits: &mut [u8; 20], mut n: u64, radix: u64) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n % radix) as usize];
        n /= radix;
        if n == 0 {
            break;
        }
    }
    &digits[i..]
}

/// Rewrites a worker's response headers for the client: drops hop-by-hop
/// headers, the internal `Rip-Worker-Busy` / `Rip-Worker-Id`, and the
/// worker's `Date` (the front door sets exactly one).
pub fn rewrite_response(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    headers.remove(&RIP_WORKER_BUSY);
    headers.remove(&RIP_WORKER_ID);
    headers.remove(header::DATE);
}

/// Whether a worker's response is its busy signal.
pub fn is_busy(headers: &HeaderMap) -> bool {
    headers.contains_key(&RIP_WORKER_BUSY)
}

/// The request id header name.
pub fn request_id_header() -> &'static HeaderName {
    &X_REQUEST_ID
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formatting_matches_std() {
        for n in [0u64, 1, 9, 10, 255, 4096, 1_700_000_000_000_000, u64::MAX] {
            let (mut d, mut h) = (String::new(), String::new());
            push_decimal(&mut d, n);
            push_hex(&mut h, n);
            assert_eq!(d, n.to_string());
            assert_eq!(h, format!("{n:x}"));
            let (mut d, mut h) = (Vec::new(), Vec::new());
            push_decimal_bytes(&mut d, n);
            push_hex_bytes(&mut h, n);
            assert_eq!(d, n.to_string().as_bytes());
            assert_eq!(h, format!("{n:x}").as_bytes());
        }
    }

    #[test]
    fn request_gets_forwarding_headers_and_keeps_a_client_id() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("x-request-id", HeaderValue::from_static("abc"));
        let id = rewrite_request(&mut h, Some("127.0.0.1".parse().unwrap()), "http", 42, || "new".into());
        assert_eq!(id, "abc");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-request-start"], "t=42");
        assert!(!h.contains_key("x-secret") && !h.contains_key(header::CONNECTION));
    }

    #[test]
    fn chunked_requests_lose_a_conflicting_content_length() {
        let mut h = HeaderMap::new();
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("4"));
        rewrite_request(&mut h, None, "http", 1, || "r".into());
        assert!(!h.contains_key(header::TRANSFER_ENCODING) && !h.contains_key(header::CONTENT_LENGTH));
    }

    #[test]
    fn request_without_id_gets_one() {
        let mut h = HeaderMap::new();
        let id = rewrite_request(&mut h, None, "https", 1, || "r-1".into());
        assert_eq!(id, "r-1");
        assert_eq!(h["x-request-id"], "r-1");
        assert!(!h.contains_key("x-forwarded-for"));
    }

    #[test]
    fn response_loses_internal_headers_and_date() {
        let mut h = HeaderMap::new();
        h.insert("rip-worker-id", HeaderValue::from_static("3"));
        h.insert("rip-worker-busy", HeaderValue::from_static("1"));
        h.insert(header::DATE, HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        rewrite_response(&mut h);
        assert_eq!(h.len(), 1);
    }
}
