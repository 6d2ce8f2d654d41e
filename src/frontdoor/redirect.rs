//! The redirect to HTTPS: what the HTTP port of an HTTPS-only server
//! answers to every request ([`run_redirect`]), and what plain HTTP sent to
//! the HTTPS port gets ([`serve_redirect`]).
//!
//! `Location: https://<host>[:<port>]<path>[?<query>]`: the request's host
//! without its port, the HTTPS port unless it is 443, the query only when
//! there is one. `301` for GET and HEAD, `308` for every other method (so a
//! POST is repeated as a POST). A request without a usable host gets `400`.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::config::hosts::request_host;
use crate::net::listen::{Accept, accept_until};

/// Where a request for `host` (a `Host` value) and `target` (path and
/// query) goes on HTTPS; `None` when `host` is not a host name or address.
pub fn location(host: &str, https_port: u16, path: &str, query: Option<&str>) -> Option<String> {
    let host = request_host(host)?;
    let usable = match host.strip_prefix('[') {
        // An IPv6 literal, canonical already.
        Some(_) => true,
        None => host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'),
    };
    if !usable {
        return None;
    }
    let mut out = String::with_capacity(16 + host.len() + path.len() + query.map_or(0, str::len));
    out.push_str("https://");
    out.push_str(&host);
    if https_port != 443 {
        out.push(':');
        out.push_str(&https_port.to_string());
    }
    out.push_str(if path.is_empty() { "/" } else { path });
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        out.push('?');
        out.push_str(query);
    }
    Some(out)
}

/// `301` for GET and HEAD, `308` otherwise.
pub fn status_for(method: &Method) -> StatusCode {
    if method == Method::GET || method == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    }
}

/// The redirect answer to `request`.
pub fn answer<B>(request: &Request<B>, https_port: u16) -> Response<Full<Bytes>> {
    let host = match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => request.headers().get(header::HOST).and_then(|v| v.to_str().ok()),
    };
    let target = host.and_then(|host| location(host, https_port, request.uri().path(), request.uri().query()));
    let mut response = match target.and_then(|t| HeaderValue::try_from(t).ok()) {
        Some(location) => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = status_for(request.method());
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        None => {
            let mut response = Response::new(Full::new(Bytes::from_static(
                b"a host name is needed to redirect to HTTPS\n",
            )));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            response
        }
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Answers every request on `io` with the redirect until the client closes,
/// a head takes longer than `header_timeout`, or `closing` turns true.
pub async fn serve_redirect<I>(io: I, https_port: u16, header_timeout: Duration, mut closing: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| async move {
        Ok::<_, Infallible>(answer(&request, https_port))
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    // The guard `wait_for` returns is not `Send`: drop it inside.
    let closed = async move {
        let _ = closing.wait_for(|c| *c).await;
    };
    tokio::select! {
        _ = conn.as_mut() => {}
        () = closed => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(header_timeout, conn).await;
        }
    }
}

/// The HTTP port of an HTTPS-only server: every request is redirected to
/// HTTPS on `https_port`, until `shutdown` resolves.
pub async fn run_redirect<L: Accept>(
    listener: L,
    https_port: u16,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let (closing_tx, closing_rx) = watch::channel(false);
    accept_until(listener, "http redirect", shutdown, |io, _peer| {
        tokio::spawn(serve_redirect(io, https_port, header_timeout, closing_rx.clone()));
    })
    .await;
    let _ = closing_tx.send(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_follow_the_contract() {
        assert_eq!(
            location("app.test:8080", 5700, "/a/b", Some("x=1")).unwrap(),
            "https://app.test:5700/a/b?x=1"
        );
        assert_eq!(location("App.Test", 443, "/a", None).unwrap(), "https://app.test/a");
        // `?` only with a query.
        assert_eq!(location("app.test", 443, "/a", Some("")).unwrap(), "https://app.test/a");
        assert_eq!(location("[::1]:80", 5700, "/", None).unwrap(), "https://[::1]:5700/");
        assert_eq!(
            location("127.0.0.1", 8443, "", None).unwrap(),
            "https://127.0.0.1:8443/"
        );
        for bad in ["", "a b", "evil.test/x", "user@evil.test", "a.test:x", "[zz]"] {
            assert_eq!(location(bad, 5700, "/", None), None, "{bad:?}");
        }
    }

    #[test]
    fn statuses_by_method() {
        assert_eq!(status_for(&Method::GET), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(status_for(&Method::HEAD), StatusCode::MOVED_PERMANENTLY);
        for method in [
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ] {
            assert_eq!(status_for(&method), StatusCode::PERMANENT_REDIRECT, "{method}");
        }
    }

    #[test]
    fn answer_without_a_host_is_400() {
        let request = Request::builder().uri("/x").body(()).unwrap();
        assert_eq!(answer(&request, 5700).status(), StatusCode::BAD_REQUEST);
        let request = Request::builder()
            .method(Method::POST)
            .uri("/x?q=1")
            .header("host", "app.test:5002")
            .body(())
            .unwrap();
        let response = answer(&request, 5700);
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(response.headers()[header::LOCATION], "https://app.test:5700/x?q=1");
    }
}
