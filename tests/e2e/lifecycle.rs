//! End to end, the worker lifecycle: rolling restarts and recycling under
//! load without a failed request, graceful stop, SIGKILL without orphans,
//! and scaling by signal and by subcommand.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

/// Waits until generation `generation` serves alone: every slot ready, every
/// pool entry of that version with a pid not in `old`, no roll in progress.
async fn wait_generation(server: &Server, generation: u64, old: &BTreeSet<u32>, n: u64) -> Value {
    server
        .wait_status(
            &format!("generation {generation} serving alone"),
            Duration::from_secs(20),
            |s| {
                let pool = Server::pool(s);
                s["supervisor"]["generation"] == generation
                    && s["supervisor"]["rolling"].is_null()
                    && s["workers"] == n
                    && pool.len() as u64 == n
                    && pool.iter().all(|p| p.2 == generation && !old.contains(&p.1))
            },
        )
        .await
}

/// The socket files present are exactly the control socket and the pool's
/// worker sockets: nothing stale is left behind.
fn assert_socket_files_match(server: &Server, status: &Value) {
    let mut expected: Vec<PathBuf> = Server::pool(status).into_iter().map(|p| PathBuf::from(p.3)).collect();
    expected.push(server.ctl_socket());
    expected.sort();
    assert_eq!(files_with_prefix(&server.prefix), expected, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restarts_under_load_fail_no_request() {
    within(BUDGET, async {
        let server = Server::start(&["w:2"]).await;
        let gen1 = server.status().await;
        assert_eq!(gen1["supervisor"]["generation"], 1);
        let pids1 = Server::pool_pids(&gen1);

        let load = Load::start(server.port, 4, "/ping", Duration::from_millis(2));
        server.wait_for_traffic(50).await;

        // SIGHUP.
        server.signal("HUP");
        let gen2 = wait_generation(&server, 2, &pids1, 2).await;
        let pids2 = Server::pool_pids(&gen2);
        server.wait_for_traffic(50).await;

        // The restart subcommand.
        let out = run_cli(&["restart", &server.prefix_arg()], &[], STEP).await;
        assert_eq!(out.code, Some(0), "restart: {out:?}");
        wait_generation(&server, 3, &pids2, 2).await;
        server.wait_for_traffic(50).await;

        let report = load.stop().await;
        assert!(report.total() > 100, "the load ran: {} requests", report.total());
        report.assert_all_200("/ping during two rolling restarts");

        // The old generations are gone, and no stale socket is left.
        for pid in pids1.iter().chain(&pids2) {
            eventually("old workers to exit", STEP, || async {
                if pid_alive(*pid) {
                    Err(format!("{pid} alive"))
                } else {
                    Ok(())
                }
            })
            .await;
        }
        let status = server.status().await;
        assert_no_synthesized_answers(&status);
        assert_eq!(status["status"], "healthy");
        assert_eq!(status["version"], 3, "{status}");
        assert!(status["supervisor"]["last_roll"].is_object(), "last_roll: {status}");
        assert_socket_files_match(&server, &status);
        let who = server.get("/whoami").await.json();
        assert_eq!(who["version"], 3, "{who}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recycling_after_n_requests_fails_no_request() {
    within(BUDGET, async {
        let server = Server::start(&["w:2", "r:20"]).await;
        let mut pids_by_slot: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        let mut record = |body: &[u8]| {
            let who: Value = serde_json::from_slice(body).expect("whoami JSON");
            pids_by_slot
                .entry(who["workerId"].as_u64().expect("workerId"))
                .or_default()
                .insert(who["pid"].as_u64().expect("pid"));
        };

        // 100 sequential requests...
        let mut client = Client::new(server.port);
        for i in 0..100 {
            let r = client
                .get("/whoami")
                .await
                .unwrap_or_else(|e| panic!("sequential request {i}: {e}"));
            assert_eq!(r.status, 200, "sequential request {i}: {}", r.text());
            record(&r.body);
        }
        // ...and 100 from 4 concurrent clients.
        let report = burst(server.port, 4, 25, "/whoami", Duration::from_secs(30)).await;
        report.assert_all_200("concurrent /whoami with r:20");
        for o in &report.outcomes {
            record(&o.body);
        }

        assert_eq!(
            pids_by_slot.keys().copied().collect::<Vec<_>>(),
            vec![0, 1],
            "{pids_by_slot:?}"
        );
        for (slot, pids) in &pids_by_slot {
            assert!(pids.len() >= 2, "slot {slot} was never recycled: pids {pids:?}");
        }
        let status = server.status().await;
        assert_no_synthesized_answers(&status);
        let restarts: u64 = status["supervisor"]["slots"]
            .as_array()
            .expect("slots")
            .iter()
            .map(|s| s["restarts"].as_u64().expect("slot restarts"))
            .sum();
        assert!(
            restarts >= 4,
            "200 requests at r:20 over 2 slots: {restarts} restarts: {status}"
        );
        // No worker served more than its budget (served counts per process).
        for p in status["pool"].as_array().expect("pool") {
            assert!(p["served"].as_u64().expect("served") <= 20, "{p}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_in_flight_and_queued_requests_then_exits_clean() {
    within(BUDGET, async {
        let mut server = Server::start(&["w:1", "--queue-timeout-ms=5000"]).await;
        let worker = Server::pool_pids(&server.status().await);
        let port = server.port;
        let once = move |path: &'static str| async move {
            request_within(port, http::Method::GET, path, &[], bytes::Bytes::new(), REQUEST_TIMEOUT)
                .await
                .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        };
        let in_flight = tokio::spawn(once("/sleep?ms=800"));
        server
            .wait_status("one request in flight", STEP, |s| s["inflight"] == 1)
            .await;
        let queued = tokio::spawn(once("/sleep?ms=100"));
        server
            .wait_status("one request queued", STEP, |s| s["queue"]["depth"] == 1)
            .await;

        let clock = Stopwatch::start();
        server.signal("TERM");
        // New connections are refused at once (the listener closes).
        eventually(
            "the listener to close after SIGTERM",
            Duration::from_secs(2),
            || async {
                match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(_) => Err("a connection was still accepted".to_owned()),
                    Err(_) => Ok(()),
                }
            },
        )
        .await;
        let late = request_within(
            port,
            http::Method::GET,
            "/ping",
            &[],
            bytes::Bytes::new(),
            Duration::from_secs(2),
        )
        .await;
        assert!(late.is_err(), "a request after SIGTERM was served: {late:?}");

        let r = in_flight.await.expect("in-flight task");
        assert_eq!((r.status, r.text().as_str()), (200, "slept 800"));
        let r = queued.await.expect("queued task");
        assert_eq!((r.status, r.text().as_str()), (200, "slept 100"));

        let exit = server.wait_exit(STEP).await.expect("the server exits");
        assert_eq!(exit.code(), Some(0), "exit status {exit:?}");
        assert!(clock.elapsed() < Duration::from_secs(5), "{:?}", clock.elapsed());
        assert_eq!(
            files_with_prefix(&server.prefix),
            Vec::<PathBuf>::new(),
            "sockets left behind"
        );
        for pid in worker {
            assert!(!pid_alive(pid), "worker {pid} outlived the server");
        }
        assert!(
            server.wait_stdout_closed(STEP).await,
            "stdout still open after the server and its worker exited"
        );
        let last = server.stdout_lines();
        assert_eq!(last.len(), 2, "two access-log lines: {last:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_subcommand_and_sigint_stop_gracefully() {
    within(BUDGET, async {
        for how in ["stop", "INT"] {
            let mut server = Server::start(&["w:2"]).await;
            let workers = Server::pool_pids(&server.status().await);
            assert_eq!(server.get("/ping").await.status, 200);
            if how == "stop" {
                let out = run_cli(&["stop", &server.prefix_arg()], &[], STEP).await;
                assert_eq!(out.code, Some(0), "stop: {out:?}");
            } else {
                server.signal(how);
            }
            let exit = server.wait_exit(STEP).await.expect("the server exits");
            assert_eq!(exit.code(), Some(0), "{how}: exit status {exit:?}");
            assert_eq!(files_with_prefix(&server.prefix), Vec::<PathBuf>::new(), "{how}");
            for pid in workers {
                assert!(!pid_alive(pid), "{how}: worker {pid} outlived the server");
            }
            // Nobody answers on the control socket any more.
            let out = run_cli(&["status", &server.prefix_arg()], &[], STEP).await;
            assert_ne!(out.code, Some(0), "{how}: status after stop: {out:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_the_server_leaves_no_orphans_and_a_restart_cleans_up() {
    within(BUDGET, async {
        let dir = short_dir();
        let prefix = dir.path().join("k");
        let mut first = Server::builtin().args(&["w:2"]).prefix(&prefix).start().await;
        let workers = Server::pool_pids(&first.status().await);
        assert_eq!(workers.len(), 2);

        first.kill_server_only();
        eventually("the workers to die with the server", Duration::from_secs(2), || async {
            let alive: Vec<u32> = workers.iter().copied().filter(|p| pid_alive(*p)).collect();
            if alive.is_empty() {
                Ok(())
            } else {
                Err(format!("still alive: {alive:?}"))
            }
        })
        .await;
        // Socket files were left behind by the killed server.
        assert!(
            files_with_prefix(&prefix).contains(&first.ctl_socket()),
            "{:?}",
            files_with_prefix(&prefix)
        );

        // A new server on the same prefix removes the stale sockets and serves.
        let second = Server::builtin().args(&["w:2"]).prefix(&prefix).start().await;
        let r = second.get("/ping").await;
        assert_eq!((r.status, r.text().as_str()), (200, "pong"));
        let status = second.status().await;
        assert!(Server::pool_pids(&status).is_disjoint(&workers));
        assert_socket_files_match(&second, &status);
        drop(first);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scaling_by_signal_and_by_subcommand() {
    within(BUDGET, async {
        let server = Server::start(&["w:2"]).await;
        let desired = |s: &Value| s["supervisor"]["desired"].as_u64();

        server.signal("TTIN");
        let s = server.wait_workers(3).await;
        assert_eq!(desired(&s), Some(3));
        let three = Server::pool(&s);
        assert_eq!(three.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 1, 2]);

        server.signal("TTOU");
        let s = server.wait_workers(2).await;
        assert_eq!(desired(&s), Some(2));
        assert_eq!(
            Server::pool(&s).iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![0, 1],
            "the highest slot goes"
        );
        let removed = three[2].1;
        eventually("the removed worker to exit", STEP, || async {
            if pid_alive(removed) {
                Err("alive".to_owned())
            } else {
                Ok(())
            }
        })
        .await;

        let out = run_cli(&["scale", "+1", &server.prefix_arg()], &[], STEP).await;
        assert_eq!(out.code, Some(0), "scale +1: {out:?}");
        server.wait_workers(3).await;
        let out = run_cli(&["scale", "-1", &server.prefix_arg()], &[], STEP).await;
        assert_eq!(out.code, Some(0), "scale -1: {out:?}");
        server.wait_workers(2).await;
        let out = run_cli(&["scale", "4", &server.prefix_arg()], &[], STEP).await;
        assert_eq!(out.code, Some(0), "scale 4: {out:?}");
        server.wait_workers(4).await;
        let out = run_cli(&["scale", "1", &server.prefix_arg()], &[], STEP).await;
        assert_eq!(out.code, Some(0), "scale 1: {out:?}");
        let s = server.wait_workers(1).await;

        // The status subcommand's --json prints the same document.
        let out = run_cli(&["status", "--json", &server.prefix_arg()], &[], STEP).await;
        assert_eq!(out.code, Some(0), "status: {out:?}");
        let printed: Value = serde_json::from_str(&out.stdout).expect("status prints JSON");
        assert_eq!(printed["workers"], 1);
        assert_eq!(Server::pool_pids(&printed), Server::pool_pids(&s));
        assert_eq!(server.get("/ping").await.status, 200);
        // Scaling to zero or below is refused and changes nothing; SIGTTOU
        // at one worker leaves one.
        let out = run_cli(&["scale", "0", &server.prefix_arg()], &[], STEP).await;
        assert_ne!(out.code, Some(0), "scale 0: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
        let out = run_cli(&["scale", "-1", &server.prefix_arg()], &[], STEP).await;
        assert_ne!(out.code, Some(0), "scale -1 from one worker: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "one line naming the refusal: {out:?}");
        assert!(out.stderr.contains("refused"), "{out:?}");
        server.signal("TTOU");
        // The server reports the refusal once it has handled the signal.
        server.wait_stderr_line("cannot scale from 1 by -1").await;
        let s = server.status().await;
        assert_eq!(s["workers"], 1, "{s}");
        assert_eq!(s["supervisor"]["desired"], 1, "{s}");
        assert_eq!(server.get("/ping").await.status, 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stop_timeout_bounds_a_graceful_stop() {
    within(BUDGET, async {
        let mut server = Server::start(&["w:1", "--stop-timeout-ms=500", "--read-timeout-ms=20000"]).await;
        let workers = Server::pool_pids(&server.status().await);
        let port = server.port;
        let hang = tokio::spawn(async move {
            request_within(
                port,
                http::Method::GET,
                "/hang",
                &[],
                bytes::Bytes::new(),
                Duration::from_secs(30),
            )
            .await
        });
        server
            .wait_status("/hang in flight", STEP, |s| s["inflight"] == 1)
            .await;
        let clock = Stopwatch::start();
        server.signal("TERM");
        let exit = server.wait_exit(Duration::from_secs(5)).await;
        let took = clock.elapsed();
        assert!(
            exit.is_some(),
            "still running 5 s after SIGTERM with a 500 ms stop timeout"
        );
        assert_eq!(exit.and_then(|e| e.code()), Some(0));
        assert!(took < Duration::from_secs(3), "{took:?}");
        for pid in workers {
            assert!(!pid_alive(pid), "worker {pid} outlived the server");
        }
        assert_eq!(files_with_prefix(&server.prefix), Vec::<PathBuf>::new());
        // The client got an answer or a closed connection, not a hang.
        match hang.await.expect("task") {
            Ok(r) => assert_ne!(r.status, 200, "/hang cannot have been answered by the worker"),
            Err(e) => assert!(
                !e.contains("no answer within"),
                "the /hang client was left hanging after the server exited: {e}"
            ),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_while_an_old_worker_drains_keeps_the_new_workers_socket() {
    within(BUDGET, async {
        // Slow boots widen the window; a long request keeps generation 1 draining.
        let server = Server::builtin()
            .args(&["w:1", "--queue-timeout-ms=5000"])
            .env("RIP_EXAMPLE_BOOT_DELAY_MS", "700")
            .start()
            .await;
        let port = server.port;
        let long = tokio::spawn(async move { get(port, "/sleep?ms=4000").await });
        server
            .wait_status("the long request in flight", STEP, |s| s["inflight"] == 1)
            .await;

        server.signal("HUP");
        let gen2 = server
            .wait_status("generation 2 active", STEP, |s| {
                s["supervisor"]["rolling"].is_null() && Server::pool(s).iter().any(|p| p.2 == 2)
            })
            .await;
        let (_, gen2_pid, _, gen2_socket) = Server::pool(&gen2)
            .into_iter()
            .find(|p| p.2 == 2)
            .expect("a version 2 worker");
        assert!(
            std::path::Path::new(&gen2_socket).exists(),
            "{gen2_socket} missing before the second restart"
        );

        // A second restart while generation 1 still drains its long request.
        server.signal("HUP");
        let has_v3_booting = |s: &serde_json::Value| {
            s["supervisor"]["slots"].as_array().is_some_and(|slots| {
                slots.iter().any(|slot| {
                    slot["processes"]
                        .as_array()
                        .is_some_and(|ps| ps.iter().any(|p| p["version"] == 3 && p["state"] != "ready"))
                })
            })
        };
        let status = server
            .wait_status("a version 3 process booting", STEP, has_v3_booting)
            .await;
        assert!(
            Server::pool(&status).iter().any(|p| p.1 == gen2_pid),
            "the version 2 worker ({gen2_pid}) serves until version 3 is ready: {status}"
        );
        assert!(
            std::path::Path::new(&gen2_socket).exists(),
            "the live version 2 worker's socket {gen2_socket} was removed when version 3 was \
             spawned: {:?}; {status}",
            files_with_prefix(&server.prefix)
        );
        let r = server.get("/whoami").await;
        assert_eq!(r.status, 200, "{} {:?}", r.text(), r.reason());
        assert_eq!(r.json()["pid"], gen2_pid, "served by the version 2 worker");

        assert_eq!(long.await.expect("task").status, 200);
        server
            .wait_status("generation 3 serving alone", STEP, |s| {
                s["supervisor"]["rolling"].is_null() && Server::pool(s).iter().all(|p| p.2 == 3)
            })
            .await;
        assert_eq!(server.get("/ping").await.status, 200);
        let status = server.status().await;
        assert_no_synthesized_answers(&status);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recycling_by_age_fails_no_request() {
    within(BUDGET, async {
        let server = Server::start(&["w:2", "r:0,1s"]).await;
        let first = Server::pool_pids(&server.status().await);
        let load = Load::start(server.port, 3, "/whoami", Duration::from_millis(5));
        // Not a synchronisation: the load runs for a fixed span so that the
        // number of age recycles in it (bounded below and above) can be checked.
        tokio::time::sleep(Duration::from_millis(2600)).await;
        let report = load.stop().await;
        report.assert_all_200("/whoami while workers recycle every second");
        let pids: BTreeSet<u64> = report
            .outcomes
            .iter()
            .map(|o| {
                serde_json::from_slice::<Value>(&o.body).expect("JSON")["pid"]
                    .as_u64()
                    .expect("pid")
            })
            .collect();
        assert!(pids.len() >= 4, "2 slots recycled at 1 s over 2.6 s: pids {pids:?}");
        let status = server.status().await;
        assert_no_synthesized_answers(&status);
        assert!(Server::pool_pids(&status).is_disjoint(&first), "{status}");
        let restarts: u64 = status["supervisor"]["slots"]
            .as_array()
            .expect("slots")
            .iter()
            .map(|s| s["restarts"].as_u64().expect("slot restarts"))
            .sum();
        assert!((3..=8).contains(&restarts), "{restarts} restarts in 2.6 s: {status}");
    })
    .await;
}
