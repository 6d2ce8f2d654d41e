//! End to end, failing workers: a read timeout answers 504 and the stuck
//! worker is replaced; a slow handler is not mistaken for a connect failure;
//! a worker that dies mid-request gives 502 and is replaced.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use http::Method;

fn slot0_pid(status: &serde_json::Value) -> Option<u32> {
    Server::pool(status).into_iter().find(|p| p.0 == 0).map(|p| p.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_timeout_answers_504_and_the_stuck_worker_is_replaced() {
    within(BUDGET, async {
        let server = Server::start(&["w:1", "--read-timeout-ms=300", "--stuck-grace-ms=500"]).await;
        let before = server.status().await;
        let old_pid = slot0_pid(&before).expect("slot 0 in the pool");

        let clock = Stopwatch::start();
        let r = request_within(
            server.port,
            Method::GET,
            "/hang",
            &[],
            Bytes::new(),
            Duration::from_secs(5),
        )
        .await
        .expect("an answer to /hang");
        let ms = clock.ms();
        assert_eq!(r.status, 504, "{}", r.text());
        assert_eq!(r.reason().as_deref(), Some("upstream_timeout"));
        assert!((280..2000).contains(&ms), "read timeout of 300 ms fired after {ms} ms");

        // The stuck worker gets no new request; after the grace it is killed and
        // replaced under the same slot.
        let after = server
            .wait_status("a new pid for slot 0", STEP, |s| {
                slot0_pid(s).is_some_and(|p| p != old_pid) && s["workers"] == 1
            })
            .await;
        eventually("the stuck pid to be gone", STEP, || async {
            if pid_alive(old_pid) {
                Err(format!("{old_pid} still alive"))
            } else {
                Ok(())
            }
        })
        .await;
        let r = server.get("/ping").await;
        assert_eq!((r.status, r.text().as_str()), (200, "pong"));
        assert_eq!(after["counters"]["upstream_timeout"], 1, "{after}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_during_a_stuck_worker_waits_for_its_replacement() {
    within(BUDGET, async {
        // While the only worker is stuck, a new request must neither go to it
        // (it would be refused busy) nor fail: it waits in the queue for the
        // replacement.
        let server = Server::start(&[
            "w:1",
            "--read-timeout-ms=300",
            "--stuck-grace-ms=300",
            "--queue-timeout-ms=8000",
        ])
        .await;
        let hang = get(server.port, "/hang").await;
        assert_eq!(hang.status, 504);
        let clock = Stopwatch::start();
        let r = server.get("/whoami").await;
        assert_eq!(r.status, 200, "{} (reason {:?})", r.text(), r.reason());
        assert!(clock.ms() < 8000);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_handlers_are_not_evicted_by_the_connect_timeout() {
    within(BUDGET, async {
        // Default connect timeout (200 ms); handlers that take 400 ms, one worker,
        // three at once: the second and third wait in the queue, not in a connect.
        let server = Server::start(&["w:1"]).await;
        let pid = slot0_pid(&server.status().await).expect("slot 0");
        let report = burst(server.port, 3, 1, "/sleep?ms=400", Duration::from_secs(10)).await;
        report.assert_all_200("three 400 ms handlers on one worker");
        let r = server.get("/work?ms=400").await;
        assert_eq!(r.status, 200);
        let status = server.status().await;
        assert_eq!(slot0_pid(&status), Some(pid), "the worker was not replaced");
        assert_eq!(status["counters"]["upstream_error"], 0, "{status}");
        assert_eq!(status["counters"]["upstream_timeout"], 0, "{status}");
        assert_eq!(status["counters"]["retries"], 0, "{status}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_that_dies_mid_request_gives_502_and_is_replaced() {
    within(BUDGET, async {
        let server = Server::start(&["w:1"]).await;
        let old_pid = slot0_pid(&server.status().await).expect("slot 0");

        let r = server.get("/crash").await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(r.reason().as_deref(), Some("upstream_error"));

        server
            .wait_status("a new pid for slot 0", STEP, |s| {
                slot0_pid(s).is_some_and(|p| p != old_pid) && s["workers"] == 1
            })
            .await;
        assert!(!pid_alive(old_pid));
        let r = server.get("/ping").await;
        assert_eq!((r.status, r.text().as_str()), (200, "pong"));
        let status = server.status().await;
        assert_eq!(status["counters"]["upstream_error"], 1, "{status}");
        // A request that reached its worker is never replayed (see retry::).
        assert_eq!(status["counters"]["retries"], 0, "{status}");
        assert_eq!(
            status["supervisor"]["slots"][0]["restarts"].as_u64(),
            Some(1),
            "one replacement for the one crash: {status}"
        );
    })
    .await;
}
