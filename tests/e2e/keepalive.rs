//! End to end, keep-alive client connections across the front door's idle
//! hand-over (`frontdoor::client_conn`): after `IDLE_GRACE` without traffic
//! a connection's HTTP state is freed and rebuilt on its next byte. Clients
//! must never notice: the same connection keeps working, a request split
//! across the idle period is still answered, and an idle connection still
//! closes after the header timeout.

use std::time::Duration;

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longer than the front door's idle grace period, twice over (the hand-over
/// happens between one and two grace periods into the silence). Every
/// `sleep(IDLE)` below is the silence under test, not a synchronisation:
/// nothing observable tells that the hand-over happened, by design.
const IDLE: Duration = Duration::from_millis(700);

/// Reads one response with a `content-length` body off `stream`.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .expect("read");
        assert!(n > 0, "the connection closed after {:?}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keep_alive_connection_works_after_idling() {
    within(BUDGET, async {
        let server = Server::start(&["w:1"]).await;
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
        for round in 0..3 {
            stream
                .write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await
                .expect("write");
            let response = read_response(&mut stream).await;
            assert!(response.starts_with("HTTP/1.1 200"), "round {round}: {response}");
            assert!(response.ends_with("pong"), "round {round}: {response}");
            tokio::time::sleep(IDLE).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_split_across_the_idle_hand_over_is_answered() {
    within(BUDGET, async {
        let server = Server::start(&["w:1"]).await;
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
        // A whole request and the start of the next one in one write.
        stream
            .write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\nPOST /echo?x=1 HTT")
            .await
            .expect("write");
        let first = read_response(&mut stream).await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        tokio::time::sleep(IDLE).await;
        stream
            .write_all(b"P/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
            .await
            .expect("write the rest");
        let second = read_response(&mut stream).await;
        assert!(second.starts_with("HTTP/1.1 200"), "{second}");
        assert!(second.ends_with("hello"), "the second request arrived whole: {second}");
        // And the connection goes on.
        stream
            .write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        assert!(read_response(&mut stream).await.ends_with("pong"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_keep_alive_connection_closes_after_the_header_timeout() {
    within(BUDGET, async {
        let server = Server::start(&["w:1", "--header-timeout-ms=1000"]).await;
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
        stream
            .write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        assert!(read_response(&mut stream).await.ends_with("pong"));
        let clock = Stopwatch::start();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("closed within 5 s")
            .unwrap_or(0);
        assert_eq!(n, 0, "closed without another response");
        let idle = clock.elapsed();
        assert!(
            idle >= Duration::from_millis(900) && idle < Duration::from_millis(2500),
            "an idle connection closed after {idle:?} with a 1 s header timeout"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_close_at_once_on_a_graceful_stop() {
    within(BUDGET, async {
        let mut server = Server::start(&["w:1"]).await;
        let mut idle = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
        idle.write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        assert!(read_response(&mut idle).await.ends_with("pong"));
        tokio::time::sleep(IDLE).await;
        server.signal("TERM");
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
            .await
            .expect("an idle connection closes when the server stops")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(
            server.wait_exit(Duration::from_secs(10)).await.is_some(),
            "server exits"
        );
    })
    .await;
}
