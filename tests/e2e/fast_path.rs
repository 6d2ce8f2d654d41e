//! End to end, the front door's fast path (`frontdoor::fast_path`, our own
//! HTTP/1.1 codec for the common request) and its hand-over to hyper, over
//! raw TCP so every byte on the wire is checked: pipelining, HTTP/1.0,
//! framing of streamed answers, HEAD, a connection moving between the two
//! codecs, and a client hanging up while its request waits.

use std::time::Duration;

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client connection that reads whole responses, keeping any bytes past
/// the one it returns.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// One response: its head (lowercased) and its decoded body.
#[derive(Debug)]
struct Answer {
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            (n == name).then(|| v.trim())
        })
    }

    fn count(&self, name: &str) -> usize {
        self.head
            .lines()
            .filter(|l| l.split_once(':').is_some_and(|(n, _)| n == name))
            .count()
    }
}

impl Client {
    async fn connect(port: u16) -> Client {
        Client {
            stream: TcpStream::connect(("127.0.0.1", port)).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads more; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
            .await
            .expect("bytes within 10 s")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "closed {} bytes short", n - self.buf.len());
        }
        self.buf.drain(..n).collect()
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.buf.drain(..i + 2).collect()).expect("ascii");
                return line.trim_end().to_owned();
            }
            assert!(self.fill().await, "closed mid-line");
        }
    }

    /// Reads one response to a request with `method`.
    async fn response(&mut self, method: &str) -> Answer {
        let mut head = String::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                break;
            }
            let line = match line.split_once(':') {
                Some((n, v)) => format!("{}:{v}", n.to_ascii_lowercase()),
                None => line,
            };
            head.push_str(&line);
            head.push('\n');
        }
        let mut answer = Answer { head, body: Vec::new() };
        let status: u16 = answer.head[9..12].parse().expect("status");
        if method == "HEAD" || status == 204 || status == 304 {
            return answer;
        }
        if let Some(n) = answer.header("content-length") {
            answer.body = self.take(n.parse().expect("length")).await;
        } else if answer.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.line().await, 16).expect("chunk size");
                answer.body.extend(self.take(size).await);
                assert_eq!(self.take(2).await, b"\r\n");
                if size == 0 {
                    break;
                }
            }
        } else {
            while self.fill().await {}
            answer.body = std::mem::take(&mut self.buf);
        }
        answer
    }

    /// Whether the server closed the connection (and sent nothing more).
    async fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_requests_are_answered_in_order() {
    within(BUDGET, async {
        let server = Server::start(&["w:2"]).await;
        let mut client = Client::connect(server.port).await;
        client
            .send(
                b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n\
                  POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
                  GET /sleep?ms=20 HTTP/1.1\r\nHost: x\r\n\r\n\
                  HEAD /ping HTTP/1.1\r\nHost: x\r\n\r\n\
                  GET /status/404 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .await;
        let ping = client.response("GET").await;
        assert!(ping.head.starts_with("HTTP/1.1 200"), "{ping:?}");
        assert_eq!(ping.body, b"pong");
        assert_eq!(ping.count("date"), 1, "{ping:?}");
        assert_eq!(ping.count("rip-worker-id"), 0, "{ping:?}");
        assert_eq!(client.response("POST").await.body, b"hello");
        assert_eq!(client.response("GET").await.body, b"slept 20");
        let head = client.response("HEAD").await;
        assert!(head.head.starts_with("HTTP/1.1 200"), "{head:?}");
        assert_eq!(
            head.header("content-length"),
            Some("4"),
            "HEAD keeps the GET's length: {head:?}"
        );
        let last = client.response("GET").await;
        assert!(last.head.starts_with("HTTP/1.1 404"), "{last:?}");
        assert_eq!(last.header("connection"), Some("close"));
        assert!(client.closed().await, "Connection: close is honoured");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streamed_answers_are_framed_for_each_client_version() {
    within(BUDGET, async {
        let server = Server::start(&["w:1"]).await;
        let n = 300_000;
        // HTTP/1.1: a declared length passes through; an unknown one is chunked,
        // and the connection goes on either way.
        let mut client = Client::connect(server.port).await;
        client
            .send(
                format!("GET /bytes?n={n} HTTP/1.1\r\nHost: x\r\n\r\nGET /chunked?n={n} HTTP/1.1\r\nHost: x\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        let sized = client.response("GET").await;
        assert_eq!(sized.header("content-length"), Some("300000"), "{}", sized.head);
        assert_eq!(sized.body.len(), n);
        let chunked = client.response("GET").await;
        assert_eq!(chunked.header("transfer-encoding"), Some("chunked"), "{}", chunked.head);
        assert_eq!(chunked.body.len(), n);
        assert!(chunked.body.iter().all(|&b| b == b'x'));
        client.send(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(client.response("GET").await.body, b"pong");

        // HTTP/1.0 cannot take chunks: the body ends with the connection.
        let mut old = Client::connect(server.port).await;
        old.send(format!("GET /chunked?n={n} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes())
            .await;
        let answer = old.response("GET").await;
        assert_eq!(answer.header("transfer-encoding"), None, "{}", answer.head);
        assert_eq!(answer.header("connection"), Some("close"), "{}", answer.head);
        assert_eq!(answer.body.len(), n);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http10_connections_close_unless_kept_alive() {
    within(BUDGET, async {
        let server = Server::start(&["w:1"]).await;
        let mut plain = Client::connect(server.port).await;
        plain.send(b"GET /ping HTTP/1.0\r\n\r\n").await;
        let answer = plain.response("GET").await;
        assert!(answer.head.starts_with("HTTP/1.1 200"), "{answer:?}");
        assert_eq!(answer.body, b"pong");
        assert!(plain.closed().await, "HTTP/1.0 without keep-alive closes");

        let mut kept = Client::connect(server.port).await;
        for _ in 0..2 {
            kept.send(b"GET /ping HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").await;
            let answer = kept.response("GET").await;
            assert_eq!(answer.header("connection"), Some("keep-alive"), "{answer:?}");
            assert_eq!(answer.body, b"pong");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_moves_between_the_fast_path_and_hyper() {
    within(BUDGET, async {
        let server = Server::start(&["w:1"]).await;
        let mut client = Client::connect(server.port).await;
        // Fast path, then a chunked upload (hyper's), then more on hyper,
        // then back on the fast path after idling.
        client.send(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(client.response("GET").await.body, b"pong");
        client
            .send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        assert_eq!(client.response("POST").await.body, b"abc");
        let status = client.response("GET").await;
        assert!(String::from_utf8_lossy(&status.body).contains("\"workers\":1"), "{status:?}");
        // Not a synchronisation: idling past twice the front door's idle grace
        // (250 ms) is what hands the connection back to the fast path.
        tokio::time::sleep(Duration::from_millis(700)).await;
        // A head split across the hand-over back to the fast path.
        client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-").await;
        // Not a synchronisation: a client pausing mid-head is the case under test.
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.send(b"Length: 2\r\n\r\nok").await;
        assert_eq!(client.response("POST").await.body, b"ok");
        // Bad input on the fast path gets hyper's 400, and nothing breaks.
        let mut bad = Client::connect(server.port).await;
        bad.send(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n").await;
        let answer = bad.response("GET").await;
        assert!(answer.head.starts_with("HTTP/1.1 400"), "{answer:?}");
        client.send(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(client.response("GET").await.body, b"pong");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_hangs_up_leaves_the_queue_at_once() {
    within(BUDGET, async {
        let server = Server::start(&["w:1"]).await;
        let mut holder = Client::connect(server.port).await;
        holder.send(b"GET /sleep?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n").await;
        server
            .wait_status("the worker busy", Duration::from_secs(5), |s| {
                s["counters"]["dispatched"] == 1
            })
            .await;
        let mut leaver = Client::connect(server.port).await;
        leaver.send(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").await;
        server
            .wait_status("the request queued", Duration::from_secs(5), |s| {
                s["counters"]["queued"] == 1
            })
            .await;
        drop(leaver);
        // Noticed while the worker is still busy with the first request.
        let status = server
            .wait_status("the leaver noticed", Duration::from_millis(1000), |s| {
                s["counters"]["client_gone"] == 1
            })
            .await;
        assert_eq!(status["counters"]["dispatched"], 1, "{status}");
        assert_eq!(holder.response("GET").await.body, b"slept 1500");
    })
    .await;
}
