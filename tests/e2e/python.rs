//! End to end, a worker in another language: `tests/workers/py_worker.py`
//! run directly as the worker program serves, survives a rolling restart
//! under load without a failed request, and stops cleanly.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::*;

fn py_worker() -> String {
    crate_dir()
        .join("tests/workers/py_worker.py")
        .to_string_lossy()
        .into_owned()
}

fn python_available() -> bool {
    std::process::Command::new("python3")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_python_worker_serves_and_survives_a_rolling_restart() {
    assert!(python_available(), "python3 is needed for this test");
    within(BUDGET, async {
        let mut server = Server::app(&py_worker()).args(&["w:2"]).start().await;
        assert!(
            server
                .start_line
                .starts_with("rip-server: app workers with 2 workers on http://localhost:"),
            "{}",
            server.start_line
        );
        let r = server.get("/ping").await;
        assert_eq!((r.status, r.text().as_str()), (200, "pong from python"));
        let who = server.get("/whoami").await.json();
        assert_eq!(who["lang"], "python", "{who}");
        assert_eq!(who["app"], "workers", "{who}");
        assert_eq!(who["version"], 1, "{who}");
        let gen1 = server.status().await;
        let pids1 = Server::pool_pids(&gen1);
        assert!(pids1.contains(&(who["pid"].as_u64().expect("pid") as u32)), "{gen1}");
        // Internal headers from the Python worker are stripped too.
        assert!(r.header("rip-worker-id").is_none(), "{:?}", r.headers);
        assert_eq!(r.headers.get_all("date").iter().count(), 1, "{:?}", r.headers);

        // Concurrent requests: one at a time per worker, the rest queue.
        let report = burst(server.port, 8, 3, "/sleep?ms=30", Duration::from_secs(20)).await;
        report.assert_all_200("8 clients x 3 /sleep?ms=30 on 2 Python workers");

        // A rolling restart under light load.
        let load = Load::start(server.port, 2, "/ping", Duration::from_millis(5));
        server.wait_for_traffic(20).await;
        server.signal("HUP");
        let gen2 = server
            .wait_status("generation 2 serving alone", Duration::from_secs(20), |s| {
                let pool = Server::pool(s);
                s["supervisor"]["generation"] == 2
                    && s["supervisor"]["rolling"].is_null()
                    && pool.len() == 2
                    && pool.iter().all(|p| p.2 == 2 && !pids1.contains(&p.1))
            })
            .await;
        server.wait_for_traffic(20).await;
        let report = load.stop().await;
        assert!(report.total() > 20, "the load ran: {}", report.total());
        report.assert_all_200("/ping on Python workers during a rolling restart");
        let status = server.status().await;
        assert_no_synthesized_answers(&status);
        let who = server.get("/whoami").await.json();
        assert_eq!(who["version"], 2, "{who}");
        for pid in &pids1 {
            eventually("the old Python workers to exit", STEP, || async {
                if pid_alive(*pid) {
                    Err(format!("{pid} alive"))
                } else {
                    Ok(())
                }
            })
            .await;
        }

        // A graceful stop: the Python workers quit, the sockets go.
        server.signal("TERM");
        let exit = server.wait_exit(STEP).await.expect("the server exits");
        assert_eq!(exit.code(), Some(0));
        for pid in Server::pool_pids(&gen2) {
            assert!(!pid_alive(pid), "Python worker {pid} outlived the server");
        }
        assert_eq!(files_with_prefix(&server.prefix), Vec::<PathBuf>::new());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_workers_die_with_a_killed_server() {
    assert!(python_available(), "python3 is needed for this test");
    within(BUDGET, async {
        let mut server = Server::app(&py_worker()).args(&["w:2"]).start().await;
        let workers = Server::pool_pids(&server.status().await);
        server.kill_server_only();
        eventually(
            "the Python workers to die with the server",
            Duration::from_secs(2),
            || async {
                let alive: Vec<u32> = workers.iter().copied().filter(|p| pid_alive(*p)).collect();
                if alive.is_empty() {
                    Ok(())
                } else {
                    Err(format!("alive: {alive:?}"))
                }
            },
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_workers_recycle_without_a_failed_request() {
    assert!(python_available(), "python3 is needed for this test");
    within(BUDGET, async {
        let server = Server::app(&py_worker()).args(&["w:2", "r:5"]).start().await;
        let mut client = Client::new(server.port);
        for i in 0..60 {
            let r = client.get("/ping").await.unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!((r.status, r.text().as_str()), (200, "pong from python"), "request {i}");
        }
        let status = server.status().await;
        assert_no_synthesized_answers(&status);
        let restarts: u64 = status["supervisor"]["slots"]
            .as_array()
            .expect("slots")
            .iter()
            .map(|s| s["restarts"].as_u64().expect("slot restarts"))
            .sum();
        assert!(restarts >= 8, "60 requests at r:5: {restarts} restarts: {status}");
    })
    .await;
}
