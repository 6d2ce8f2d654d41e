//! End to end, the access log on stdout: one human line per request by
//! default, JSON with the contract's fields under `--json-logging` (with the
//! reason of synthesized answers), nothing but the start line under
//! `--no-access-log`.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use http::Method;
use serde_json::Value;

/// Waits until at least `n` access-log lines are out.
async fn log_lines(server: &Server, n: usize) -> Vec<String> {
    eventually(&format!("{n} access-log lines"), Duration::from_secs(3), || async {
        let lines = server.stdout_lines();
        if lines.len() >= n {
            Ok(lines)
        } else {
            Err(format!("{lines:?}"))
        }
    })
    .await
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("access-log line is not JSON ({e}): {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_access_log_has_the_contract_fields() {
    within(BUDGET, async {
        let mut server = Server::start(&[
            "w:1",
            "--json-logging",
            "--max-queue=1",
            "--read-timeout-ms=1000",
            "--stuck-grace-ms=200",
        ])
        .await;
        let r = request(
            server.port,
            Method::GET,
            "/ping?x=1",
            &[("x-request-id", "log-test-1")],
            Bytes::new(),
        )
        .await
        .expect("GET /ping");
        assert_eq!(r.status, 200);
        let lines = log_lines(&server, 1).await;
        let ping = lines
            .iter()
            .map(|l| parse(l))
            .find(|v| v["requestId"] == "log-test-1")
            .unwrap_or_else(|| panic!("no line for the request: {lines:?}"));
        for field in [
            "t",
            "app",
            "method",
            "path",
            "status",
            "totalSeconds",
            "workerSeconds",
            "length",
            "reason",
            "requestId",
        ] {
            assert!(ping.get(field).is_some(), "field {field} missing: {ping}");
        }
        assert_eq!(ping["app"], "hello");
        assert_eq!(ping["method"], "GET");
        assert_eq!(ping["path"], "/ping?x=1");
        assert_eq!(ping["status"], 200);
        assert_eq!(ping["length"], 4);
        assert!(ping["reason"].is_null(), "{ping}");
        let t = ping["t"].as_str().expect("t is a string");
        assert!(
            t.len() >= 20 && t.as_bytes()[10] == b'T' && t.ends_with('Z'),
            "t: {t:?}"
        );
        let total = ping["totalSeconds"].as_f64().expect("totalSeconds");
        let worker = ping["workerSeconds"].as_f64().expect("workerSeconds");
        assert!(
            (0.0..5.0).contains(&total) && (0.0..=total + 1e-6).contains(&worker),
            "{ping}"
        );

        // A full queue: 1 in flight, 1 queued, the third refused.
        let report = burst(server.port, 3, 1, "/sleep?ms=300", Duration::from_secs(10)).await;
        assert_eq!(report.count(503), 1, "{:?}", report.histogram());
        // A read timeout.
        let hang = server.get("/hang").await;
        assert_eq!(hang.status, 504);

        let lines = log_lines(&server, 5).await;
        let values: Vec<Value> = lines.iter().map(|l| parse(l)).collect();
        let full: Vec<&Value> = values.iter().filter(|v| v["status"] == 503).collect();
        assert_eq!(full.len(), 1, "{lines:?}");
        assert_eq!(full[0]["reason"], "queue_full", "{}", full[0]);
        assert_eq!(full[0]["path"], "/sleep?ms=300");
        assert!(full[0]["workerSeconds"].is_null(), "no worker answered: {}", full[0]);
        let timeout: Vec<&Value> = values.iter().filter(|v| v["status"] == 504).collect();
        assert_eq!(timeout.len(), 1, "{lines:?}");
        assert_eq!(timeout[0]["reason"], "upstream_timeout", "{}", timeout[0]);
        assert_eq!(timeout[0]["path"], "/hang");
        assert_eq!(values.iter().filter(|v| v["status"] == 200).count(), 3, "{lines:?}");
        // One line per request, nothing else on stdout (all of it is out once
        // the server has stopped).
        let all = server.stop_and_read_stdout().await;
        assert_eq!(all.len(), 5, "{all:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn human_access_log_has_one_line_per_request() {
    within(BUDGET, async {
        let mut server = Server::start(&["w:1"]).await;
        for path in ["/ping", "/status/404", "/whoami"] {
            server.get(path).await;
        }
        // The front door's own endpoints are not proxied requests.
        server.status().await;
        // Everything is out once the server has stopped.
        let lines = server.stop_and_read_stdout().await;
        let proxied: Vec<&String> = lines.iter().filter(|l| !l.contains(" /status ")).collect();
        assert_eq!(proxied.len(), 3, "{lines:?}");
        for (line, (path, status)) in proxied
            .iter()
            .zip([("/ping", "200"), ("/status/404", "404"), ("/whoami", "200")])
        {
            assert!(
                line.contains(" hello ") && line.contains(&format!("GET {path} {status}")),
                "{line:?}"
            );
            assert!(!line.starts_with('{'), "human, not JSON: {line:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_access_log_leaves_only_the_start_line() {
    within(BUDGET, async {
        let mut server = Server::start(&["w:1", "--no-access-log", "--max-queue=0"]).await;
        for _ in 0..5 {
            assert_eq!(server.get("/ping").await.status, 200);
        }
        let r = server.get("/status/500").await;
        assert_eq!(r.status, 500);
        // Everything is out once the server has stopped.
        assert_eq!(server.stop_and_read_stdout().await, Vec::<String>::new());
    })
    .await;
}

/// A server whose stdout and stderr readers are gone (the terminal or the
/// log collector that started it exited) still logs without failing and
/// stops on SIGTERM: a failed log write must not kill the task that was
/// logging (it once was the signal loop, and SIGTERM then did nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_log_readers_are_gone_still_stops_on_sigterm() {
    within(BUDGET, async {
        use std::io::BufRead as _;
        let home = fresh_home();
        let dir = short_dir();
        let mut child = std::process::Command::new(bin())
            .args(["builtin:hello", "w:1", "http:0"])
            .arg(format!("--socket-prefix={}", dir.path().join("s").display()))
            .env("RIP_HOME", home.path())
            .env_remove("RIP_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn rip-server");
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout");
        let start = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let mut reader = std::io::BufReader::new(stdout);
            let _ = reader.read_line(&mut line);
            (line, reader)
        });
        let (line, reader) = tokio::time::timeout(STEP, start)
            .await
            .expect("a start line")
            .expect("reader");
        let port: u16 = line
            .split("http://localhost:")
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("start line {line:?}"));
        // Both readers go away; the server goes on logging into the void.
        drop(reader);
        drop(child.stderr.take());
        let r = request(port, Method::GET, "/ping", &[], Bytes::new())
            .await
            .expect("a request");
        assert_eq!(r.status, 200);
        send_signal(pid, "TERM");
        let status = eventually("the server to exit after SIGTERM", STEP, || {
            let exited = child.try_wait().ok().flatten();
            async move { exited.ok_or_else(|| "still running".to_owned()) }
        })
        .await;
        assert_eq!(status.code(), Some(0));
    })
    .await;
}
