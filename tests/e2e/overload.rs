//! End to end, overload: a full queue answers 503 at once, a long wait in the
//! queue answers 504 at the queue timeout, and a server whose workers cannot
//! boot answers 504 instead of hanging while it backs off crash-looping.

use std::time::Duration;

use crate::common::*;

/// Fires `n` concurrent GETs of `path`, each on its own connection.
async fn concurrent(port: u16, n: usize, path: &str) -> LoadReport {
    burst(port, n, 1, path, Duration::from_secs(20)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_503_queue_full_at_once() {
    within(BUDGET, async {
        // One worker, two places in the queue; the queue timeout is out of the way.
        let server = Server::start(&["w:1", "--max-queue=2", "--queue-timeout-ms=20000"]).await;
        let clock = Stopwatch::start();
        let report = concurrent(server.port, 10, "/sleep?ms=1000").await;
        let elapsed = clock.elapsed();

        assert_eq!(
            report.histogram(),
            [(200, 3), (503, 7)].into_iter().collect(),
            "1 in flight + 2 queued succeed, the other 7 are refused: {:?}",
            report.outcomes
        );
        for o in report.outcomes.iter().filter(|o| o.status == Some(503)) {
            assert_eq!(o.reason.as_deref(), Some("queue_full"), "{o:?}");
            let retry = o.retry_after.as_deref().expect("a 503 carries Retry-After");
            assert!(retry.parse::<u64>().is_ok(), "Retry-After: {retry:?}");
            assert!(
                o.millis < 900,
                "a queue_full 503 comes at once, not after {} ms",
                o.millis
            );
        }
        // The three accepted requests ran one after the other.
        let mut ok: Vec<u128> = report
            .outcomes
            .iter()
            .filter(|o| o.status == Some(200))
            .map(|o| o.millis)
            .collect();
        ok.sort();
        assert!(ok[2] >= 2900, "three 1 s requests on one worker: {ok:?}");
        assert!(elapsed < Duration::from_secs(10));

        let status = server.status().await;
        assert_eq!(status["counters"]["queue_full"], 7, "{status}");
        assert_eq!(status["queue"]["depth"], 0, "{status}");
        assert_eq!(status["queue"]["max"], 2, "{status}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_wait_in_the_queue_answers_504_queue_timeout() {
    within(BUDGET, async {
        let server = Server::start(&["w:1", "--queue-timeout-ms=300"]).await;
        let port = server.port;
        let first = tokio::spawn(async move {
            let clock = Stopwatch::start();
            let r = get(port, "/sleep?ms=1500").await;
            (r, clock.ms())
        });
        server
            .wait_status("the first request in flight", STEP, |s| s["inflight"] == 1)
            .await;
        let clock = Stopwatch::start();
        let report = concurrent(port, 3, "/ping").await;
        let waited = clock.ms();
        for o in &report.outcomes {
            assert_eq!(o.status, Some(504), "{o:?}");
            assert_eq!(o.reason.as_deref(), Some("queue_timeout"), "{o:?}");
            assert!(
                (250..1200).contains(&o.millis),
                "a queue timeout of 300 ms fired after {} ms",
                o.millis
            );
        }
        assert!(waited < 1300, "{waited} ms");
        let (r, ms) = first.await.expect("first request");
        assert_eq!(r.status, 200, "the request in flight is unaffected");
        assert!(ms >= 1500);
        // The queue is empty again and the worker serves.
        assert_eq!(server.get("/ping").await.status, 200);
        let status = server.status().await;
        assert_eq!(status["counters"]["queue_timeout"], 3, "{status}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_that_cannot_boot_give_504_and_a_visible_backoff() {
    within(BUDGET, async {
        let server = Server::builtin()
            .args(&["w:1", "--queue-timeout-ms=500"])
            .env("RIP_EXAMPLE_FAIL_BOOT", "1")
            .no_wait()
            .start()
            .await;

        // No worker ever registers: the request waits its queue timeout, then 504.
        let clock = Stopwatch::start();
        let r = request_within(
            server.port,
            http::Method::GET,
            "/ping",
            &[],
            bytes::Bytes::new(),
            Duration::from_secs(5),
        )
        .await
        .expect("an answer, not a hang");
        let ms = clock.ms();
        assert_eq!(r.status, 504, "{}", r.text());
        assert_eq!(r.reason().as_deref(), Some("queue_timeout"));
        assert!((400..3000).contains(&ms), "answered after {ms} ms");

        let first = server
            .wait_status("slot 0 in backoff", STEP, |s| {
                s["supervisor"]["slots"][0]["state"] == "backoff"
            })
            .await;
        let clock = Stopwatch::start();
        assert_eq!(first["status"], "degraded", "{first}");
        assert_eq!(first["workers"], 0, "{first}");
        let slot = |s: &serde_json::Value| s["supervisor"]["slots"][0].clone();
        let crashes = |s: &serde_json::Value| slot(s)["crashes"].as_u64().expect("slot 0 crashes");
        // While a backoff is pending, /status shows the delay in force.
        let backoff = |s: &serde_json::Value| {
            slot(s)["backoff_ms"]
                .as_u64()
                .unwrap_or_else(|| panic!("slot 0 in backoff shows no backoff_ms: {s}"))
        };
        let c1 = crashes(&first);
        assert!(c1 >= 1, "{first}");
        let b1 = backoff(&first);
        let second = server.wait_status("more crashes", STEP, |s| crashes(s) > c1).await;
        assert_eq!(second["status"], "degraded", "{second}");
        // The delay between attempts grows (crash-loop backoff, not a hot loop):
        // two crashes later the slot waits longer than after the first...
        let third = server
            .wait_status("two crashes more, in backoff", STEP, |s| {
                crashes(s) >= c1 + 2 && slot(s)["state"] == "backoff"
            })
            .await;
        let (c3, b3) = (crashes(&third), backoff(&third));
        assert!(
            b3 > b1 && b3 >= 200,
            "backoff after {c3} crashes is {b3} ms, after {c1} it was {b1} ms: {third}"
        );
        // ...and those two crashes took at least the backoff that preceded the
        // last one (half of it, for the clocks' granularity): no hot loop.
        let took = clock.elapsed();
        assert!(
            took >= Duration::from_millis(b3 / 4),
            "crashes {c1} to {c3} took only {took:?} with a {b3} ms backoff: the manager is not backing off ({third})"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_worker_costs_at_most_one_retry() {
    within(BUDGET, async {
        // Round robin, so that both workers are asked in turn afterwards.
        let server = Server::start(&["w:2", "--lb-policy=rr"]).await;
        let pool = Server::pool(&server.status().await);
        let sockets: Vec<std::path::PathBuf> = pool.iter().map(|p| p.3.clone().into()).collect();

        // Keep both workers busy behind the front door's back.
        let a = HeldRequest::hold(&sockets[0]).await;
        let b = HeldRequest::hold(&sockets[1]).await;

        // Both refuse with Rip-Worker-Busy: one retry, then 503 no_capacity.
        let clock = Stopwatch::start();
        let r = request_within(
            server.port,
            http::Method::GET,
            "/ping",
            &[],
            bytes::Bytes::new(),
            REQUEST_TIMEOUT,
        )
        .await
        .expect("GET /ping");
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.reason().as_deref(), Some("no_capacity"));
        assert!(r.header("retry-after").is_some());
        assert!(r.header("rip-worker-busy").is_none(), "{:?}", r.headers);
        assert!(clock.ms() < 1000, "refused at once, not after {} ms", clock.ms());
        let status = server.status().await;
        assert_eq!(status["counters"]["retries"], 1, "{status}");
        assert_eq!(status["counters"]["no_capacity"], 1, "{status}");

        assert_eq!(a.release().await, 200);
        assert_eq!(b.release().await, 200);
        let mut busy = 0;
        for socket in &sockets {
            let stats = unix_request(socket, http::Method::GET, "/stats", bytes::Bytes::new())
                .await
                .expect("stats")
                .json();
            busy += stats["busyRejections"].as_u64().expect("busyRejections");
        }
        assert_eq!(busy, 2, "the request was tried on two workers, no more");

        // The refusing workers were alive: both come back and serve again.
        let pids: std::collections::BTreeSet<u32> = pool.iter().map(|p| p.1).collect();
        let seen = eventually("both workers serving again", STEP, || async {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..6 {
                let who = get(server.port, "/whoami").await;
                if who.status == 200 {
                    seen.insert(who.json()["pid"].as_u64().expect("pid") as u32);
                }
            }
            if seen == pids {
                Ok(seen)
            } else {
                Err(format!("{seen:?} of {pids:?}"))
            }
        })
        .await;
        assert_eq!(seen.len(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_that_go_away_free_their_place() {
    within(BUDGET, async {
        let server = Server::start(&["w:1", "--queue-timeout-ms=10000"]).await;
        let port = server.port;
        // One request in flight and four queued; then every client leaves.
        let tasks: Vec<_> = (0..5)
            .map(|_| tokio::spawn(async move { get(port, "/sleep?ms=2000").await }))
            .collect();
        server
            .wait_status("one request in flight and four queued", STEP, |s| {
                s["inflight"] == 1 && s["queue"]["depth"] == 4
            })
            .await;
        for t in &tasks {
            t.abort(); // drops the client's connection
        }
        for t in tasks {
            let gone = t.await;
            assert!(
                gone.as_ref().is_err_and(|e| e.is_cancelled()),
                "the client gave up first: {gone:?}"
            );
        }
        // The queued requests left the queue without running; the one in
        // flight finishes on its worker, which then serves again.
        let status = server
            .wait_status("the queue to empty", STEP, |s| s["queue"]["depth"] == 0)
            .await;
        assert!(
            status["counters"]["client_gone"].as_u64().expect("client_gone") >= 4,
            "{status}"
        );
        let clock = Stopwatch::start();
        let r = server.get("/whoami").await;
        assert_eq!(r.status, 200);
        // At most the rest of the 2 s request in flight; each queued request
        // run anyway would add 2 s.
        assert!(clock.ms() < 3500, "the worker was held for {} ms", clock.ms());
        let status = server
            .wait_status("nothing in flight", STEP, |s| s["inflight"] == 0)
            .await;
        let stats = unix_request(
            std::path::Path::new(&Server::pool(&status)[0].3),
            http::Method::GET,
            "/stats",
            bytes::Bytes::new(),
        )
        .await
        .expect("stats")
        .json();
        assert_eq!(
            stats["served"], 2,
            "only the request in flight and /whoami ran: {stats}"
        );
        assert_eq!(status["counters"]["dispatched"], 2, "{status}");
    })
    .await;
}

/// Clients that send a request and hang up at once race the dispatch of
/// their request; none of those races may leave a worker busy for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_that_hang_up_at_once_never_wedge_a_worker() {
    within(Duration::from_secs(40), async {
        let server = Server::start(&["w:2", "--max-queue=64"]).await;
        for _ in 0..3 {
            let mut tasks = Vec::new();
            for _ in 0..100 {
                let port = server.port;
                tasks.push(tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .expect("connect");
                    s.write_all(b"GET /sleep?ms=2 HTTP/1.1\r\nHost: x\r\n\r\n")
                        .await
                        .expect("write the request");
                }));
            }
            for t in tasks {
                t.await.expect("a hang-up client");
            }
        }
        let status = server
            .wait_status("every worker idle again", Duration::from_secs(10), |s| {
                s["inflight"] == 0 && s["tracked"] == 0 && s["queue"]["depth"] == 0
            })
            .await;
        assert_eq!(status["routable"], 2, "{status}");
        // The races happened: the front door saw the hung-up requests.
        assert!(
            status["counters"]["requests"].as_u64().expect("requests") > 0,
            "no request reached the front door: {status}"
        );
        assert_eq!(server.get("/ping").await.status, 200);
    })
    .await;
}
