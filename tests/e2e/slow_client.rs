//! End to end, a client that reads its answer slowly: with the read-ahead
//! buffer (`--response-buffer-kb`) the worker is free once its answer fits
//! in it, whatever the client's pace; without one (0) the worker is paced by
//! the client. Both answers arrive whole.
//!
//! The answer is 16 MiB, far more than the kernel's socket buffers hold
//! (the slow client's receive buffer is 4 KiB), so only the front door's
//! own buffer can free the worker early.

use std::time::Duration;

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ANSWER: usize = 16 * 1024 * 1024;

/// Connects with a 4 KiB receive buffer and asks for the big answer,
/// reading nothing yet.
async fn slow_client(port: u16) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stream = socket.connect(([127, 0, 0, 1], port).into()).await.expect("connect");
    stream
        .write_all(format!("GET /bytes?n={ANSWER} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("write");
    stream
}

/// Reads the whole answer and returns its body length.
async fn read_all(stream: &mut TcpStream) -> usize {
    let mut out = Vec::with_capacity(ANSWER + 1024);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("data within 10 s")
            .expect("read");
        out.extend_from_slice(&buf[..n]);
        if let Some(at) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..at]).to_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            assert!(head.contains(&format!("content-length: {ANSWER}")), "{head}");
            if out.len() - (at + 4) >= ANSWER {
                return out.len() - (at + 4);
            }
        }
        if n == 0 {
            panic!("closed after {} bytes", out.len());
        }
    }
}

fn worker_state(status: &serde_json::Value) -> String {
    status["pool"][0]["state"]
        .as_str()
        .unwrap_or_else(|| panic!("no state for the pool's worker: {status}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_reader_does_not_hold_the_worker_when_its_answer_fits_the_buffer() {
    within(BUDGET, async {
        let server = Server::start(&["w:1", "--response-buffer-kb=32768"]).await;
        let mut slow = slow_client(server.port).await;
        // The worker writes its 16 MiB into the front door's buffer and is free.
        server
            .wait_status(
                "the worker idle while its answer is still unread",
                Duration::from_secs(10),
                |s| s["counters"]["responses"] == 1 && worker_state(s) == "idle",
            )
            .await;
        // The only worker serves someone else meanwhile.
        let other = tokio::time::timeout(Duration::from_secs(3), server.get("/ping"))
            .await
            .expect("another client is served while the slow one has not read");
        assert_eq!(other.status, 200);
        assert_eq!(read_all(&mut slow).await, ANSWER, "the slow client gets every byte");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_buffer_a_slow_reader_paces_the_worker_and_still_gets_everything() {
    within(BUDGET, async {
        let server = Server::start(&["w:1", "--response-buffer-kb=0"]).await;
        let mut slow = slow_client(server.port).await;
        server
            .wait_status("the worker answering the slow client", STEP, |s| {
                s["counters"]["responses"] == 1 && worker_state(s) == "busy"
            })
            .await;
        // Another client waits in the queue until the slow one reads.
        let port = server.port;
        let other = tokio::spawn(async move {
            let response = raw_exchange(
                port,
                b"GET /ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                Duration::from_secs(20),
            )
            .await;
            raw_status(&response.0)
        });
        server
            .wait_status("the second request queued", STEP, |s| s["queue"]["depth"] == 1)
            .await;
        // As long as the slow client reads nothing, the worker stays busy
        // writing and the other request stays queued (a worker not paced by
        // the client would have its 16 MiB out and be idle well within this).
        holds_for(
            "the worker paced by the unread client",
            Duration::from_millis(500),
            || async {
                let status = server.status().await;
                if worker_state(&status) != "busy" || status["queue"]["depth"] != 1 {
                    return Err(format!("{status}"));
                }
                if other.is_finished() {
                    return Err("the second request was answered".to_owned());
                }
                Ok(())
            },
        )
        .await;
        assert_eq!(read_all(&mut slow).await, ANSWER);
        assert_eq!(other.await.expect("join"), Some(200));
    })
    .await;
}
