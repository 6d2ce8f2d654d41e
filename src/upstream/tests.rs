//! The connection's unit tests: framing, reuse, malformed answers.

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
