//! End to end, request limits at the front door (raw bytes over TCP): a
//! declared body over 100 MB is refused before it is sent, a malformed
//! request gets 400, an oversized head gets 431, and a client that does not
//! finish its head in time is cut off.

use std::time::Duration;

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declared_body_over_100_mb_is_refused_with_413_without_reading_it() {
    within(BUDGET, async {
        let server = Server::start(&["w:1"]).await;
        for length in ["104857601", "200000000", "10000000000"] {
            let head = format!(
                "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {length}\r\n\r\n"
            );
            let clock = Stopwatch::start();
            // Send the head only: the answer must come without the body.
            let mut stream = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
            stream.write_all(head.as_bytes()).await.expect("write head");
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("Content-Length {length}: no answer within 3 s without the body"))
                .expect("read");
            let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert_eq!(raw_status(&buf[..n]), Some(413), "Content-Length {length}: {reply:?}");
            assert!(clock.elapsed() < Duration::from_secs(2));
        }
        // The worker never saw those requests, and it still serves.
        let status = server.status().await;
        assert_eq!(status["counters"]["dispatched"], 0, "{status}");
        assert_eq!(server.get("/ping").await.status, 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_get_400() {
    within(BUDGET, async {
        let server = Server::start(&["w:1"]).await;
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET /ping HTTP/1.1\r\nHost: localhost\r\nBad Header Name: x\r\n\r\n",
            b"GET /ping HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n",
        ] {
            let (reply, closed) = raw_exchange(server.port, bad, Duration::from_secs(3)).await;
            assert_eq!(
                raw_status(&reply),
                Some(400),
                "{:?} answered {:?}",
                String::from_utf8_lossy(bad),
                String::from_utf8_lossy(&reply)
            );
            assert!(closed, "the connection is closed after a 400");
        }
        assert_eq!(server.get("/ping").await.status, 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_chunked_body_is_the_clients_fault() {
    within(BUDGET, async {
        let server = Server::start(&["w:1"]).await;
        let pid = Server::pool_pids(&server.status().await);
        let bad = b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\nhello\r\nzz\r\n";
        let (reply, _) = raw_exchange(server.port, bad, Duration::from_secs(3)).await;
        let status = server.status().await;
        assert_eq!(
            raw_status(&reply),
            Some(400),
            "{:?}; counters {}",
            String::from_utf8_lossy(&reply),
            status["counters"]
        );
        assert_eq!(status["counters"]["upstream_error"], 0, "{status}");
        assert_eq!(Server::pool_pids(&status), pid);
        assert_eq!(server.get("/ping").await.status, 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_70_kb_header_gets_431() {
    within(BUDGET, async {
        let server = Server::start(&["w:1"]).await;
        for kb in [70, 100] {
            let head = format!(
                "GET /ping HTTP/1.1\r\nHost: localhost\r\nX-Long: {}\r\n\r\n",
                "a".repeat(kb * 1024)
            );
            let (reply, _) = raw_exchange(server.port, head.as_bytes(), Duration::from_secs(3)).await;
            assert_eq!(
                raw_status(&reply),
                Some(431),
                "a {kb} KB header: {:?}",
                String::from_utf8_lossy(&reply[..reply.len().min(200)])
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_request_heads_get_431() {
    within(BUDGET, async {
        let server = Server::start(&["w:1"]).await;
        // More than 100 header fields.
        let mut many = String::from("GET /ping HTTP/1.1\r\nHost: localhost\r\n");
        for i in 0..120 {
            many.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        many.push_str("\r\n");
        // One header of 200 KB (70 KB: see a_70_kb_header_gets_431).
        let long = format!(
            "GET /ping HTTP/1.1\r\nHost: localhost\r\nX-Long: {}\r\n\r\n",
            "a".repeat(200 * 1024)
        );
        for (what, head) in [("120 headers", many), ("a 200 KB header", long)] {
            let (reply, _) = raw_exchange(server.port, head.as_bytes(), Duration::from_secs(3)).await;
            assert_eq!(
                raw_status(&reply),
                Some(431),
                "{what}: {:?}",
                String::from_utf8_lossy(&reply[..reply.len().min(200)])
            );
        }
        // 90 headers and a 30 KB header are fine.
        let mut ninety = String::from("GET /headers HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for i in 0..90 {
            ninety.push_str(&format!("X-H{i}: {i}\r\n"));
        }
        ninety.push_str(&format!("X-Long: {}\r\n\r\n", "b".repeat(30 * 1024)));
        let (reply, _) = raw_exchange(server.port, ninety.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(
            raw_status(&reply),
            Some(200),
            "{:?}",
            String::from_utf8_lossy(&reply[..reply.len().min(300)])
        );
        // Only the 90-header request reached a worker.
        let status = server.status().await;
        assert_eq!(status["counters"]["dispatched"].as_u64(), Some(1), "{status}");
    })
    .await;
}

/// Waits until the server closes `stream`, writing `trickle` (if any) every
/// 100 ms meanwhile; returns how long it took, or `None` after `limit`. The
/// 100 ms read timeout is the trickling client's pace (the behaviour under
/// test), not a synchronisation.
async fn cut_off_after(stream: &mut TcpStream, trickle: Option<&[u8]>, limit: Duration) -> Option<Duration> {
    let clock = Stopwatch::start();
    let mut buf = [0u8; 1024];
    while clock.elapsed() < limit {
        if let Some(bytes) = trickle
            && stream.write_all(bytes).await.is_err()
        {
            return Some(clock.elapsed());
        }
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(clock.elapsed()),
            Ok(Ok(_)) => {
                // A 408 or similar before the close is fine; keep reading.
            }
            Err(_) => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_does_not_finish_its_head_is_cut_off() {
    within(BUDGET, async {
        let server = Server::start(&["w:1", "--header-timeout-ms=500"]).await;
        let limit = Duration::from_secs(4);

        // Sends part of a head, then trickles header lines forever.
        let mut trickler = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
        trickler
            .write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .expect("write");
        // Sends a partial request line and stops.
        let mut partial = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
        partial.write_all(b"GET /pi").await.expect("write");
        // Connects and sends nothing at all.
        let mut silent = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");

        let (t, p, s) = tokio::join!(
            cut_off_after(&mut trickler, Some(b"X-Slow: 1\r\n"), limit),
            cut_off_after(&mut partial, None, limit),
            cut_off_after(&mut silent, None, limit),
        );
        for (what, cut) in [("trickling headers", t), ("a partial request line", p), ("silence", s)] {
            let cut = cut.unwrap_or_else(|| panic!("{what}: still connected after {limit:?}"));
            assert!(
                cut >= Duration::from_millis(400) && cut < Duration::from_secs(2),
                "{what}: cut off after {cut:?} with a 500 ms header timeout"
            );
        }
        // A normal client is unaffected.
        assert_eq!(server.get("/ping").await.status, 200);
    })
    .await;
}

/// Request smuggling: a body framed both by Content-Length and chunked
/// encoding, followed by a second request hidden in it. The front door reads
/// it as chunked (RFC 9112), re-frames it for the worker, closes the client
/// connection, and no worker ever sees the smuggled request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_smuggled_request_never_reaches_a_worker() {
    within(BUDGET, async {
        let server = Server::start(&["w:1"]).await;
        let status = server.status().await;
        let socket = status["pool"][0]["socket"]
            .as_str()
            .expect("a worker socket")
            .to_owned();
        let served = |v: &serde_json::Value| v["served"].as_u64().expect("served");
        let stats = |s: String| async move {
            let r = unix_request(
                std::path::Path::new(&s),
                http::Method::GET,
                "/stats",
                bytes::Bytes::new(),
            )
            .await
            .expect("worker /stats");
            r.json()
        };
        let before = served(&stats(socket.clone()).await);
        let attack = b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 44\r\n\
                       Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /crash HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let (reply, closed) = raw_exchange(server.port, attack, Duration::from_secs(3)).await;
        let text = String::from_utf8_lossy(&reply).into_owned();
        assert_eq!(raw_status(&reply), Some(200), "{text}");
        assert_eq!(text.matches("HTTP/1.1").count(), 1, "exactly one response: {text}");
        assert!(closed, "the connection closes after an ambiguous message");
        // The worker served the POST and the /stats probe, never the smuggled /crash.
        let after = served(&stats(socket.clone()).await);
        assert_eq!(after, before + 2, "the worker saw only the POST (and this probe)");
        assert_eq!(
            Server::pool_pids(&server.status().await),
            Server::pool_pids(&status),
            "no worker crashed"
        );
    })
    .await;
}
