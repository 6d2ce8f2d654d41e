//! End to end, what is retried: a request a worker never took (a busy
//! reply, a failed connect) goes to another worker once; a request whose
//! worker died while running it is answered 502 and not retried, so one
//! request can never take down two workers (HAProxy's default
//! `retry-on conn-failure` makes the same choice). `--retry-sent` asks for
//! the retry anyway.

use crate::common::*;

/// The pids of a two-worker pool once both are ready.
async fn two_workers(server: &Server) -> (u32, u32) {
    let status = server.wait_workers(2).await;
    let pids: Vec<u32> = Server::pool_pids(&status).into_iter().collect();
    assert_eq!(pids.len(), 2, "{status}");
    (pids[0], pids[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_that_kills_its_worker_is_not_retried() {
    within(BUDGET, async {
        let server = Server::start(&["w:2"]).await;
        let (a, b) = two_workers(&server).await;
        let crash = server.get("/crash").await;
        assert_eq!(crash.status, 502, "{}", crash.text());
        assert_eq!(crash.reason().as_deref(), Some("upstream_error"));
        let status = server.ctl_status().await;
        assert_eq!(status["counters"]["retries"], 0, "{status}");
        // Exactly one of the two died; the other still serves.
        let dead: Vec<u32> = eventually("the crashed worker to be gone", STEP, || async {
            let dead: Vec<u32> = [a, b].into_iter().filter(|&p| !pid_alive(p)).collect();
            if dead.is_empty() {
                Err("both alive".to_owned())
            } else {
                Ok(dead)
            }
        })
        .await;
        assert_eq!(dead.len(), 1, "one request killed {dead:?}");
        let survivor = if dead[0] == a { b } else { a };
        assert!(pid_alive(survivor), "the other worker {survivor} must live");
        let status = server
            .wait_status("the crash counted", STEP, |v| v["worker_exits"]["crash"] == 1)
            .await;
        assert_eq!(status["illegal_transitions"], 0, "{status}");
        assert_eq!(server.get("/ping").await.status, 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_sent_retries_a_request_whose_worker_died_once() {
    within(BUDGET, async {
        let server = Server::start(&["w:2", "--retry-sent"]).await;
        let (a, b) = two_workers(&server).await;
        let crash = server.get("/crash").await;
        assert_eq!(crash.status, 502, "{}", crash.text());
        let status = server.ctl_status().await;
        assert_eq!(status["counters"]["retries"], 1, "{status}");
        eventually("both workers gone (the retry crashed the second)", STEP, || async {
            if !pid_alive(a) && !pid_alive(b) {
                Ok(())
            } else {
                Err(format!("alive: a {} b {}", pid_alive(a), pid_alive(b)))
            }
        })
        .await;
    })
    .await;
}
