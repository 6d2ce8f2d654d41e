//! Front-door replicas (`--lb-replicas=N`): N accept loops on one port,
//! each with its own `SO_REUSEPORT` socket and event loop, in front of one
//! driver. Every request is answered, connections land on more than one
//! replica, a worker still never sees two requests at once, and a graceful
//! stop finishes what every replica has in flight.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::Value;

use crate::common::*;

/// Each replica's accepted connections, from the control socket's
/// `/status` (which, unlike the front door's, adds no connection).
async fn accepted(server: &Server) -> Vec<u64> {
    let status = server.ctl_status().await;
    status["replicas"]
        .as_array()
        .unwrap_or_else(|| panic!("no replicas in /status: {status}"))
        .iter()
        .map(|r| r["accepted"].as_u64().expect("accepted"))
        .collect()
}

/// `/stats` of every worker, asked on its own socket.
async fn worker_stats(server: &Server) -> Vec<Value> {
    let mut all = Vec::new();
    for (_, _, _, socket) in Server::pool(&server.ctl_status().await) {
        let r = unix_request(Path::new(&socket), Method::GET, "/stats", Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("GET /stats on {socket}: {e}"));
        assert_eq!(r.status, 200, "{}", r.text());
        all.push(r.json());
    }
    all
}

/// Checks that no worker ever had two requests at once, and returns how
/// many they served in all.
async fn assert_single_in_flight(server: &Server) -> u64 {
    let mut served = 0;
    for stats in worker_stats(server).await {
        assert_eq!(stats["maxConcurrent"], 1, "a worker saw two requests at once: {stats}");
        assert_eq!(
            stats["busyRejections"], 0,
            "a worker had to refuse one as busy: {stats}"
        );
        served += stats["served"].as_u64().expect("served");
    }
    served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_the_port_and_keep_one_request_per_worker() {
    within(BUDGET, async {
        let server = Server::start(&["w:2", "--lb-replicas=2", "--queue-timeout-ms=15000"]).await;
        assert!(
            server.start_line.contains("(2 front-door replicas)"),
            "{}",
            server.start_line
        );
        let status = server.status().await;
        assert_eq!(status["lb_replicas"], 2, "{status}");
        assert_eq!(status["replicas"].as_array().map(Vec::len), Some(2), "{status}");
        let before = accepted(&server).await;

        // 24 clients x 10 requests, each on a connection of its own: the
        // kernel spreads them over both sockets.
        let report = burst(server.port, 24, 10, "/sleep?ms=2", Duration::from_secs(40)).await;
        assert_eq!(report.total(), 240);
        report.assert_all_200("24 clients x 10 /sleep?ms=2 over two replicas");
        let after = accepted(&server).await;
        let taken: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        assert_eq!(
            taken.iter().sum::<u64>(),
            240,
            "every connection counted once: {taken:?}"
        );
        // 240 connections all on one socket of two: 1 in 2^239 by chance.
        assert!(
            taken.iter().all(|&n| n > 0),
            "one replica took every connection: {taken:?}"
        );

        // Kept-alive clients: each connection stays on its replica, which
        // reuses its own connections to the workers.
        let mut clients = Vec::new();
        for _ in 0..12 {
            let port = server.port;
            clients.push(tokio::spawn(async move {
                let mut client = Client::new(port);
                let mut statuses = Vec::new();
                for _ in 0..10 {
                    statuses.push(client.get("/sleep?ms=1").await.map(|r| r.status));
                }
                statuses
            }));
        }
        for client in clients {
            for status in client.await.expect("client task") {
                assert_eq!(status, Ok(200));
            }
        }

        // One request per worker at a time, whichever loop it came through;
        // every request served exactly once.
        let served = assert_single_in_flight(&server).await;
        assert_eq!(served, 240 + 120, "the workers served every request exactly once");
        let status = server.ctl_status().await;
        assert_eq!(status["counters"]["retries"], 0, "{status}");
        assert_eq!(status["illegal_transitions"], 0, "{status}");
        assert_no_synthesized_answers(&status);
        assert_eq!(status["tracked"], 0, "{status}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_what_every_replica_has_in_flight_then_exits_zero() {
    within(BUDGET, async {
        let mut server = Server::start(&["w:2", "--lb-replicas=2", "--queue-timeout-ms=15000"]).await;
        let port = server.port;
        let baseline = accepted(&server).await;
        // Slow requests, each on a new connection, until both replicas
        // have one (a few suffice; 16 leave 1 in 2^15 to chance).
        let mut requests = Vec::new();
        for sent in 1..=16u64 {
            requests.push(tokio::spawn(async move {
                request_within(port, Method::GET, "/sleep?ms=600", &[], Bytes::new(), REQUEST_TIMEOUT).await
            }));
            let now = eventually("the request's connection to be accepted", STEP, || async {
                let now = accepted(&server).await;
                let taken: u64 = now.iter().zip(&baseline).map(|(a, b)| a - b).sum();
                if taken == sent {
                    Ok(now)
                } else {
                    Err(format!("{now:?}"))
                }
            })
            .await;
            if now.iter().zip(&baseline).all(|(a, b)| a > b) {
                break;
            }
        }
        let sent = requests.len();
        assert!(
            accepted(&server).await.iter().zip(&baseline).all(|(a, b)| a > b),
            "16 connections and one replica took them all"
        );
        // Every one of them reached the core (running or queued).
        eventually("the requests to reach the core", STEP, || async {
            let s = server.ctl_status().await;
            let known = s["inflight"].as_u64().unwrap_or(0) + s["queue"]["depth"].as_u64().unwrap_or(0);
            if known == sent as u64 {
                Ok(())
            } else {
                Err(s.to_string())
            }
        })
        .await;

        server.signal("TERM");
        // Both replicas' sockets close: nothing on the port accepts.
        eventually(
            "every listener to close after SIGTERM",
            Duration::from_secs(3),
            || async {
                match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(_) => Err("a connection was still accepted".to_owned()),
                    Err(_) => Ok(()),
                }
            },
        )
        .await;
        for request in requests {
            let r = request.await.expect("request task").expect("an answer");
            assert_eq!((r.status, r.text().as_str()), (200, "slept 600"));
        }
        let exit = server.wait_exit(STEP).await.expect("the server exits");
        assert_eq!(exit.code(), Some(0), "exit status {exit:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_https_port_has_replicas_too() {
    within(BUDGET, async {
        let server = Server::start(&[
            "w:2",
            "--lb-replicas=2",
            "protocol:http+https",
            "https:0",
            "https:quick",
        ])
        .await;
        let https_port: u16 = server
            .start_line
            .split("https://localhost:")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no HTTPS address in {:?}", server.start_line));
        let before = accepted(&server).await;
        // One curl, 40 requests, each on a new connection (the answer to
        // `Connection: close` closes it).
        let url = format!("https://localhost:{https_port}/ping");
        let mut args = vec!["-k", "-H", "Connection: close"];
        args.extend(std::iter::repeat_n(url.as_str(), 40));
        let out = crate::https::curl(&args).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        assert_eq!(out.stdout.matches("HTTP/1.1 200").count(), 40, "{}", out.stdout);
        let taken: Vec<u64> = accepted(&server)
            .await
            .iter()
            .zip(&before)
            .map(|(a, b)| a - b)
            .collect();
        assert_eq!(taken.iter().sum::<u64>(), 40, "{taken:?}");
        assert!(
            taken.iter().all(|&n| n > 0),
            "one replica took every connection: {taken:?}"
        );
        assert_eq!(assert_single_in_flight(&server).await, 40);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_replica_counts_exit_2_before_anything_starts() {
    within(BUDGET, async {
        for (args, envs, line) in [
            (
                vec!["builtin:hello", "--lb-replicas=0"],
                vec![],
                "rip-server: --lb-replicas=0: expected a replica count in 1..=64",
            ),
            (
                vec!["builtin:hello"],
                vec![("RIP_LB_REPLICAS", "65")],
                "rip-server: RIP_LB_REPLICAS=65: expected a replica count in 1..=64",
            ),
            (
                vec!["builtin:hello", "--lb-replicas=2"],
                vec![("RIP_THREADS", "2")],
                "rip-server: --lb-replicas=2: expected RIP_THREADS unset or 1 with it",
            ),
            (
                vec!["platform", "--lb-replicas=2"],
                vec![],
                "rip-server: --lb-replicas=2: not accepted by platform",
            ),
        ] {
            let out = run_cli(&args, &envs, STEP).await;
            assert_eq!(out.code, Some(2), "{args:?} {envs:?}: {out:?}");
            assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
            assert!(out.stderr.starts_with(line), "{out:?}");
            assert!(out.stdout.is_empty(), "{out:?}");
        }
    })
    .await;
}

/// A hitless upgrade of a server with replicas: the new server gets the
/// one socket handed over and shares it among its own replicas; the old
/// one's other socket takes its queue before it closes. Under keep-alive
/// and connection-per-request load nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigusr2_with_replicas_hands_over_without_a_failed_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::upgrade::{KillOnDrop, connection_per_request_load, copy_of_binary, run_file_pids};

    within(Duration::from_secs(90), async {
        let place = tempfile::tempdir().unwrap();
        let exe = copy_of_binary(place.path());
        let mut server = Server::builtin()
            .exe(&exe)
            .args(&["w:2", "--lb-replicas=2"])
            .start()
            .await;
        let port = server.port;
        let old_pid = server.pid;

        let keep_alive = Load::start(port, 4, "/ping", Duration::ZERO);
        let stop = Arc::new(AtomicBool::new(false));
        let fresh = connection_per_request_load(port, 4, stop.clone());
        server.wait_for_traffic(200).await;

        server.signal("USR2");
        // The new server: the old one's child with a run file of its own.
        let new_pid = eventually("the new server's run file", STEP, || async {
            run_file_pids(server.home.path())
                .into_iter()
                .find(|&p| p != old_pid)
                .ok_or_else(|| "none yet".to_owned())
        })
        .await;
        let _new_server = KillOnDrop(new_pid);
        let exit = server
            .wait_exit(Duration::from_secs(30))
            .await
            .expect("the old server exits");
        assert_eq!(exit.code(), Some(0), "the old server's exit");
        // The new server: two replicas, both accepting from the one socket.
        let status = eventually("both new replicas accepting", Duration::from_secs(30), || async {
            let status = request(port, Method::GET, "/status", &[], Bytes::new()).await?.json();
            let busy = status["replicas"]
                .as_array()
                .is_some_and(|r| r.len() == 2 && r.iter().all(|r| r["accepted"].as_u64() > Some(20)));
            if status["lb_replicas"] == 2 && busy {
                Ok(status)
            } else {
                Err(status.to_string())
            }
        })
        .await;
        assert_eq!(status["workers"], 2, "{status}");

        stop.store(true, Ordering::Relaxed);
        let report = keep_alive.stop().await;
        let mut failures: Vec<String> = report.failures();
        let mut fresh_ok = 0;
        for task in fresh {
            let (ok, failed) = task.await.expect("load task");
            fresh_ok += ok;
            failures.extend(failed);
        }
        assert!(
            failures.is_empty(),
            "{} requests failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(10)]
        );
        assert!(report.total() > 200 && fresh_ok > 200, "{} {fresh_ok}", report.total());
        send_signal(new_pid, "TERM");
        eventually("the new server to exit", STEP, || async {
            if pid_alive(new_pid) {
                Err("alive".to_owned())
            } else {
                Ok(())
            }
        })
        .await;
        assert_ne!(new_pid, old_pid);
    })
    .await;
}
