//! `--hsts`: `Strict-Transport-Security` on HTTPS answers that lack it.
//!
//! Never for `localhost`, `*.localhost` or an IP address: a browser applies
//! HSTS to the host name on every port, so one dev server sending it for
//! `localhost` would force HTTPS on every other dev server of that machine
//! (and `includeSubDomains` on all of `*.localhost`) for a year. A worker's
//! own header passes unchanged.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue, Request, header};

use super::routes::route_key;

/// The header's value: one year, subdomains included.
pub const HSTS_VALUE: &str = "max-age=31536000; includeSubDomains";

/// Adds the header unless the answer has one.
pub fn add_hsts(headers: &mut HeaderMap) {
    if !headers.contains_key(header::STRICT_TRANSPORT_SECURITY) {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS_VALUE));
    }
}

/// Whether an answer for `host` (a `Host` value, port and all) may carry
/// HSTS: a real host name, not `localhost`, `*.localhost` or an IP address.
pub fn hsts_applies(host: Option<&[u8]>) -> bool {
    let Some(name) = host.and_then(route_key) else {
        return false;
    };
    let name: &str = &name;
    !(name == "localhost" || name.ends_with(".localhost") || name.starts_with('[') || name.parse::<IpAddr>().is_ok())
}

/// [`hsts_applies`] for a request hyper parsed (its target's authority
/// wins over `Host`, as for routing).
pub fn request_applies<B>(request: &Request<B>) -> bool {
    let host = match request.uri().authority() {
        Some(authority) => Some(authority.as_str().as_bytes()),
        None => request.headers().get(header::HOST).map(HeaderValue::as_bytes),
    };
    hsts_applies(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_for_localhost_or_addresses() {
        for host in [
            "localhost",
            "localhost:5700",
            "LOCALHOST.",
            "app.localhost",
            "a.b.localhost:1",
            "127.0.0.1",
            "127.0.0.1:5700",
            "[::1]:5700",
            "10.1.2.3",
            "",
        ] {
            assert!(!hsts_applies(Some(host.as_bytes())), "{host}");
        }
        assert!(!hsts_applies(None));
        for host in ["app.test", "app.test:5700", "example.com", "localhost.example.com"] {
            assert!(hsts_applies(Some(host.as_bytes())), "{host}");
        }
    }

    #[test]
    fn a_workers_own_header_is_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=5"));
        add_hsts(&mut headers);
        assert_eq!(headers[header::STRICT_TRANSPORT_SECURITY], "max-age=5");
        let mut headers = HeaderMap::new();
        add_hsts(&mut headers);
        assert_eq!(headers[header::STRICT_TRANSPORT_SECURITY], HSTS_VALUE);
    }
}
