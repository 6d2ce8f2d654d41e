//! End to end, `rip-server platform`: a real platform process (a temporary
//! `RIP_HOME`, `http:0 --api-port=0`, its own socket variant), apps
//! deployed through its API from directories whose `index` is a worker
//! program (a shell script that prints a line, then runs
//! `tests/workers/py_worker.py`), requests routed by their `Host` header.
//!
//! Covered: deploy and route by host (unknown host: `404 Host not found`),
//! the pool with pids in the API, a mutation without the token (401,
//! nothing changed), scale, a changed environment applied by a rolling
//! restart under a request loop with no failed request, the workers'
//! output in the app's logs; two apps on one port with one app's queue full
//! while the other never queues; a platform killed with SIGKILL and started
//! again with the same home brings its apps back; `rip-server add` while
//! the platform runs routes the new host.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use serde_json::{Value, json};
use tokio::time::timeout;

use crate::common::*;

/// A test's budget: a platform start, apps starting, a rolling restart.
const PLATFORM_BUDGET: Duration = Duration::from_secs(90);

/// A socket variant no other test (or run) uses, so that apps of the same
/// name in two platforms never share a socket prefix.
fn fresh_variant() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("t{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// An app directory (mode 0700) whose entry `index` prints one line naming
/// the worker and its `GREETING`, then becomes the Python worker.
fn app_dir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).expect("app dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod app dir");
    let worker = crate_dir().join("tests/workers/py_worker.py");
    let script = format!(
        "#!/bin/sh\necho \"worker $RIP_WORKER_ID v$RIP_VERSION of $RIP_APP GREETING=${{GREETING:-none}}\"\nexec python3 {}\n",
        worker.display()
    );
    let index = dir.join("index");
    std::fs::write(&index, script).expect("write index");
    std::fs::set_permissions(&index, std::fs::Permissions::from_mode(0o755)).expect("chmod index");
    dir.canonicalize().expect("canonical app dir")
}

/// A running `rip-server platform`.
struct Platform {
    child: Child,
    pid: u32,
    api: u16,
    http: u16,
    /// The apps' HTTPS port (0: none).
    https: u16,
    /// The metrics port (0: none).
    metrics: u16,
    token: String,
    home: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Worker pids seen in the API (killed on drop if still alive).
    seen: Mutex<BTreeSet<u32>>,
    exited: bool,
    /// Its socket files are `/tmp/rip_<variant>_<app>.*`.
    variant: String,
}

impl Platform {
    /// Starts a platform on `home` with `variant` and `args`, and waits for
    /// its start lines (the API's port, the token, the apps' port).
    async fn start(home: &Path, variant: &str, args: &[&str]) -> Platform {
        let mut child = Command::new(bin())
            .args(["platform", "http:0", "--api-port=0", &format!("--variant={variant}")])
            .args(args)
            .env_remove("PORT")
            .env_remove("RIP_LOG")
            .env("RIP_HOME", home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rip-server platform");
        let pid = child.id();
        let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().expect("stderr");
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                lines.lock().expect("stderr lock").push(line);
            }
        });
        let mut platform = Platform {
            child,
            pid,
            api: 0,
            http: 0,
            https: 0,
            metrics: 0,
            token: String::new(),
            home: home.to_path_buf(),
            stderr,
            seen: Mutex::new(BTreeSet::new()),
            exited: false,
            variant: variant.to_owned(),
        };
        let mut start_lines = Vec::new();
        while platform.http == 0 {
            let line = match timeout(STEP, lines_rx.recv()).await {
                Ok(Some(line)) => line,
                _ => panic!(
                    "no start lines within {STEP:?} (got {start_lines:?}); stderr:\n{}",
                    platform.stderr_text()
                ),
            };
            if let Some(url) = line.split("login: ").nth(1) {
                let (addr, token) = url
                    .strip_prefix("http://")
                    .and_then(|u| u.split_once("/?token="))
                    .unwrap_or_else(|| panic!("login line {line:?}"));
                platform.api = addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("API port");
                platform.token = token.to_owned();
            }
            if let Some(rest) = line.split("apps on https://localhost:").nth(1) {
                platform.https = rest.split(' ').next().and_then(|p| p.parse().ok()).expect("HTTPS port");
            }
            if let Some(rest) = line.split("/live on http://").nth(1) {
                platform.metrics = rest
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim().parse().ok())
                    .expect("metrics port");
            }
            if let Some(rest) = line.split("apps on http://localhost:").nth(1) {
                platform.http = rest.split(' ').next().and_then(|p| p.parse().ok()).expect("apps port");
            }
            start_lines.push(line);
        }
        assert!(platform.api != 0 && !platform.token.is_empty(), "{start_lines:?}");
        // The rest of stdout (access log lines) is drained, not kept.
        tokio::spawn(async move { while lines_rx.recv().await.is_some() {} });
        platform
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().expect("stderr lock").join("\n")
    }

    /// One API request, with the token unless `authorised` is false.
    async fn call(&self, method: Method, path: &str, body: Option<Value>, authorised: bool) -> Resp {
        let token = format!("Bearer {}", self.token);
        let mut headers = vec![("host", format!("127.0.0.1:{}", self.api))];
        if authorised {
            headers.push(("authorization", token));
        }
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        send(self.api, method.clone(), path, &headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    async fn api(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.call(method, path, body, true).await
    }

    /// `GET /api/apps/<name>`, remembering its worker pids.
    async fn app(&self, name: &str) -> Value {
        let r = self.api(Method::GET, &format!("/api/apps/{name}"), None).await;
        assert_eq!(r.status, 200, "GET app {name}: {}", r.text());
        let app = r.json();
        let mut seen = self.seen.lock().expect("seen lock");
        for w in app["pool"].as_array().into_iter().flatten() {
            if let Some(pid) = w["pid"].as_u64() {
                seen.insert(pid as u32);
            }
        }
        app
    }

    /// Polls the app until `pred` holds.
    async fn wait_app(&self, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        eventually(what, STEP, || async {
            let app = self.app(name).await;
            if pred(&app) { Ok(app) } else { Err(app.to_string()) }
        })
        .await
    }

    /// Waits until the app runs `n` workers of one version, every one idle or busy.
    async fn wait_running(&self, name: &str, n: usize) -> Value {
        self.wait_app(name, &format!("{name} running {n} workers"), |a| {
            a["status"] == "running" && a["pool"].as_array().is_some_and(|p| p.len() == n)
        })
        .await
    }

    /// Deploys `name` from `dir` with `hosts` and `workers`: 201.
    async fn deploy(&self, name: &str, dir: &Path, hosts: &[&str], workers: u32) -> Value {
        let body = json!({"name": name, "directory": dir, "hosts": hosts, "workers": workers});
        let r = self.api(Method::POST, "/api/apps", Some(body)).await;
        assert_eq!(r.status, 201, "deploy {name}: {}", r.text());
        r.json()
    }

    /// A request to the apps' port naming `host`.
    async fn to_host(&self, host: &str, path: &str) -> Result<Resp, String> {
        send(self.http, Method::GET, path, &[("host", host.to_owned())], Bytes::new()).await
    }

    /// A `GET` on its metrics port (`/metrics`, `/ready`, `/live`).
    async fn admin_get(&self, path: &str) -> Result<Resp, String> {
        send(
            self.metrics,
            Method::GET,
            path,
            &[("host", "localhost".to_owned())],
            Bytes::new(),
        )
        .await
    }

    /// Its socket files now: its apps' (`rip_<variant>_<app>.*`) and its
    /// own control socket (`rip_<variant>.ctl.sock`).
    fn socket_files(&self) -> Vec<PathBuf> {
        let apps = format!("rip_{}_", self.variant);
        let own = format!("rip_{}.", self.variant);
        std::fs::read_dir("/tmp")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with(&apps) || n.starts_with(&own)
                })
            })
            .collect()
    }

    /// SIGTERM: every app drains and stops, the platform exits 0 and leaves
    /// no socket file behind.
    async fn stop(self) {
        send_signal(self.pid, "TERM");
        self.wait_exit_0().await;
    }

    /// Waits for the platform to exit 0 (after SIGTERM or `rip-server
    /// stop`), with no socket file left.
    async fn wait_exit_0(mut self) {
        let clock = Stopwatch::start();
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status;
            }
            assert!(clock.elapsed() < STEP, "still running {STEP:?} after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.exited = true;
        assert_eq!(
            status.code(),
            Some(0),
            "exit status after SIGTERM; stderr:\n{}",
            self.stderr_text()
        );
        let left = self.socket_files();
        assert!(left.is_empty(), "socket files left after a graceful stop: {left:?}");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.exited = true;
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        let mut leftovers: BTreeSet<u32> = children_of(self.pid).into_iter().collect();
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        leftovers.extend(self.seen.lock().map(|s| s.clone()).unwrap_or_default());
        for pid in leftovers {
            if pid_alive(pid) {
                let _ = Command::new("kill")
                    .args(["-s", "KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        for file in self.socket_files() {
            let _ = std::fs::remove_file(file);
        }
        if std::thread::panicking() {
            let stderr = self.stderr_text();
            let tail: Vec<&str> = stderr.lines().rev().take(60).collect();
            eprintln!("--- rip-server platform (pid {}) stderr, last lines ---", self.pid);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// One request on a new connection to `127.0.0.1:port` with exactly these
/// headers (the harness's client always sends `Host: localhost`).
async fn send(port: u16, method: Method, path: &str, headers: &[(&str, String)], body: Bytes) -> Result<Resp, String> {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    if !body.is_empty() {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
    send_request(port, request, REQUEST_TIMEOUT).await
}

fn pids(app: &Value) -> BTreeSet<u64> {
    app["pool"]
        .as_array()
        .expect("pool")
        .iter()
        .map(|w| w["pid"].as_u64().expect("pid"))
        .collect()
}

/// Deploy, route by host, the pool in the API, no token → 401 and nothing
/// changed, scale, a changed environment by a rolling restart under a
/// request loop (no failed request), the workers' output in the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_route_scale_and_restart_with_a_new_environment() {
    within(PLATFORM_BUDGET, async {
        let place = fresh_home();
        let home = place.path().join("home");
        let dir = app_dir(place.path(), "site");
        let platform = Platform::start(&home, &fresh_variant(), &[]).await;

        let health = send(
            platform.api,
            Method::GET,
            "/health",
            &[("host", format!("127.0.0.1:{}", platform.api))],
            Bytes::new(),
        )
        .await
        .expect("GET /health");
        assert_eq!(health.json(), json!({"status": "ok", "mode": "platform"}));

        platform.deploy("a", &dir, &["a.test"], 1).await;
        let app = platform.wait_running("a", 1).await;
        assert!(pids(&app).iter().all(|&p| p > 0), "{app}");
        let who = platform.to_host("a.test", "/whoami").await.expect("GET a.test");
        assert_eq!(who.status, 200, "{}", who.text());
        assert_eq!(who.json()["app"], "a");
        assert!(pids(&app).contains(&who.json()["pid"].as_u64().unwrap()));
        let unknown = platform.to_host("zzz.test", "/whoami").await.expect("GET zzz.test");
        assert_eq!((unknown.status, unknown.text().as_str()), (404, "Host not found"));

        // Without the token: 401, and nothing changes.
        let before = platform.api(Method::GET, "/api/apps", None).await.json();
        let apps_file = std::fs::read(home.join("apps.json")).expect("apps.json");
        for (method, path, body) in [
            (Method::POST, "/api/apps", Some(json!({"name": "b", "directory": dir}))),
            (Method::POST, "/api/apps/a/scale", Some(json!({"workers": 3}))),
            (Method::POST, "/api/apps/a/stop", None),
            (Method::DELETE, "/api/apps/a", None),
        ] {
            let r = platform.call(method.clone(), path, body, false).await;
            assert_eq!(r.status, 401, "{method} {path} without the token: {}", r.text());
        }
        assert_eq!(std::fs::read(home.join("apps.json")).unwrap(), apps_file);
        let after = platform.api(Method::GET, "/api/apps", None).await.json();
        assert_eq!(after.as_array().map(Vec::len), Some(1), "{after}");
        assert_eq!(pids(&after[0]), pids(&before[0]), "the pool changed");
        assert_eq!(after[0]["status"], "running");

        // Scale up: the first worker is untouched.
        let first = pids(&app);
        let r = platform
            .api(Method::POST, "/api/apps/a/scale", Some(json!({"workers": 2})))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let scaled = platform.wait_running("a", 2).await;
        assert!(first.is_subset(&pids(&scaled)), "{first:?} / {scaled}");

        // A new environment, applied by a rolling restart under load.
        let r = platform
            .api(Method::PATCH, "/api/apps/a", Some(json!({"env": {"GREETING": "v2"}})))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["envKeys"], json!(["GREETING"]));
        assert!(!r.text().contains("v2"), "an environment value was shown: {}", r.text());
        let stop = Arc::new(AtomicBool::new(false));
        let looping = {
            let stop = stop.clone();
            let port = platform.http;
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let r = send(port, Method::GET, "/ping", &[("host", "a.test".into())], Bytes::new()).await;
                    outcomes.push(r.map(|r| r.status));
                }
                outcomes
            })
        };
        let old = platform.app("a").await["version"].as_u64().expect("version");
        let r = platform.api(Method::POST, "/api/apps/a/restart", None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["status"], "restarted");
        let restarted = platform
            .wait_app("a", "a rolled to a new version", |a| {
                let pool = a["pool"].as_array().cloned().unwrap_or_default();
                a["version"].as_u64() > Some(old)
                    && pool.len() == 2
                    && pool
                        .iter()
                        .all(|w| w["version"] == a["version"] && w["state"] != "draining")
            })
            .await;
        stop.store(true, Ordering::Relaxed);
        let outcomes = looping.await.expect("request loop");
        let failed: Vec<_> = outcomes.iter().filter(|o| !matches!(o, Ok(200))).collect();
        assert!(outcomes.len() > 5, "the loop sent only {} requests", outcomes.len());
        assert!(
            failed.is_empty(),
            "{} of {} failed: {failed:?}",
            failed.len(),
            outcomes.len()
        );
        assert!(pids(&restarted).is_disjoint(&pids(&scaled)), "{restarted}");

        // The workers' output: the new generation has the new environment.
        let version = restarted["version"].as_u64().unwrap();
        let logs = eventually("the new workers' lines in the logs", STEP, || async {
            let r = platform.api(Method::GET, "/api/apps/a/logs", None).await;
            let lines: Vec<String> = serde_json::from_value(r.json()["lines"].clone()).map_err(|e| e.to_string())?;
            let wanted = format!("v{version} of a GREETING=v2");
            if lines.iter().filter(|l| l.contains(&wanted)).count() >= 2 {
                Ok(lines)
            } else {
                Err(format!("{lines:?}"))
            }
        })
        .await;
        assert!(logs.iter().any(|l| l.contains("v1 of a GREETING=none")), "{logs:?}");
        assert!(
            platform.stderr_text().contains("a: worker 0 v1 of a GREETING=none"),
            "worker output is not on the platform's stderr"
        );
        let workers = pids(&platform.app("a").await);
        platform.stop().await;
        assert!(
            workers.iter().all(|&p| !pid_alive(p as u32)),
            "workers outlived the platform"
        );
    })
    .await;
}

/// Two apps on one port, routed by host: app A's queue full (its one
/// worker busy, the queue at its maximum, the next request refused) while
/// app B answers every request without queueing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_app_s_full_queue_never_queues_another() {
    within(PLATFORM_BUDGET, async {
        let place = fresh_home();
        let home = place.path().join("home");
        let dir_a = app_dir(place.path(), "alpha");
        let dir_b = app_dir(place.path(), "beta");
        let platform = Platform::start(&home, &fresh_variant(), &["--max-queue=2", "--queue-timeout-ms=30000"]).await;
        platform.deploy("a", &dir_a, &["a.test"], 1).await;
        platform.deploy("b", &dir_b, &["b.test"], 1).await;
        platform.wait_running("a", 1).await;
        platform.wait_running("b", 1).await;

        let port = platform.http;
        let slow = || {
            tokio::spawn(async move {
                send(
                    port,
                    Method::GET,
                    "/sleep?ms=20000",
                    &[("host", "a.test".into())],
                    Bytes::new(),
                )
                .await
            })
        };
        let _held = slow();
        platform
            .wait_app("a", "a's worker busy", |a| a["pool"][0]["state"] == "busy")
            .await;
        let _queued = [slow(), slow()];
        platform
            .wait_app("a", "a's queue full", |a| {
                a["queue"]["depth"] == 2 && a["queue"]["max"] == 2
            })
            .await;
        let refused = platform
            .to_host("a.test", "/ping")
            .await
            .expect("a request to a full queue");
        assert_eq!(refused.status, 503, "{}", refused.text());
        assert_eq!(refused.reason().as_deref(), Some("queue_full"));

        for _ in 0..20 {
            let r = platform.to_host("b.test", "/whoami").await.expect("GET b.test");
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json()["app"], "b");
        }
        let b = platform.to_host("b.test", "/status").await.expect("b's /status").json();
        assert_eq!(b["app"], "b");
        assert_eq!(b["counters"]["queued"], 0, "b queued a request: {b}");
        assert_eq!(b["queue"]["depth"], 0, "{b}");
        let a = platform.to_host("a.test", "/status").await.expect("a's /status").json();
        assert_eq!(a["queue"]["depth"], 2, "{a}");
        assert!(a["counters"]["queue_full"].as_u64() >= Some(1), "{a}");
        let b_api = platform.app("b").await;
        assert_eq!(b_api["queue"]["depth"], 0, "{b_api}");
    })
    .await;
}

/// A platform killed with SIGKILL and started again on the same home runs
/// the same apps again; `rip-server add` while it runs routes the new
/// host to the app whose directory it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_platform_comes_back_with_its_apps_and_follows_hosts_json() {
    within(PLATFORM_BUDGET, async {
        let place = fresh_home();
        let home = place.path().join("home");
        let dir = app_dir(place.path(), "site");
        let variant = fresh_variant();
        let mut first = Platform::start(&home, &variant, &[]).await;
        first.deploy("a", &dir, &["a.test"], 1).await;
        let before = pids(&first.wait_running("a", 1).await);
        first.kill();
        eventually("the killed platform's workers to die with it", STEP, || async {
            let alive: Vec<_> = before.iter().filter(|&&p| pid_alive(p as u32)).collect();
            if alive.is_empty() {
                Ok(())
            } else {
                Err(format!("{alive:?} alive"))
            }
        })
        .await;

        let second = Platform::start(&home, &variant, &[]).await;
        let app = second.wait_running("a", 1).await;
        assert_eq!(app["desired"], "running");
        assert!(pids(&app).is_disjoint(&before), "{app}");
        let who = second.to_host("a.test", "/whoami").await.expect("GET a.test");
        assert_eq!((who.status, who.json()["app"].clone()), (200, json!("a")));

        // `add` while the platform runs: the new host routes to the app.
        let missing = second.to_host("b.test", "/whoami").await.expect("GET b.test");
        assert_eq!(missing.status, 404);
        let home_text = home.to_string_lossy().into_owned();
        let out = run_cli(
            &["add", "b.test", dir.to_str().expect("UTF-8")],
            &[("RIP_HOME", &home_text)],
            STEP,
        )
        .await;
        assert_eq!(out.code, Some(0), "add: {}", out.stderr);
        eventually("b.test to reach app a", STEP, || async {
            let r = second.to_host("b.test", "/whoami").await?;
            if r.status == 200 && r.json()["app"] == "a" {
                Ok(())
            } else {
                Err(format!("{} {}", r.status, r.text()))
            }
        })
        .await;
        assert_eq!(second.home, home);
        second.stop().await;
    })
    .await;
}

/// A corrupt `apps.json` stops the start with one line naming it (exit 1,
/// the file kept byte for byte); so does a port in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_apps_file_or_a_taken_port_exits_1_with_one_line() {
    within(BUDGET, async {
        let place = fresh_home();
        let home = place.path().join("home");
        std::fs::create_dir(&home).expect("home");
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod home");
        let apps = home.join("apps.json");
        std::fs::write(&apps, b"{not json").expect("write apps.json");
        std::fs::set_permissions(&apps, std::fs::Permissions::from_mode(0o600)).expect("chmod apps.json");
        let home_text = home.to_string_lossy().into_owned();
        let envs = [("RIP_HOME", home_text.as_str())];
        let out = run_cli(&["platform", "http:0", "--api-port=0"], &envs, STEP).await;
        assert_eq!(out.code, Some(1), "{out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{:?}", out.stderr);
        assert!(out.stderr.contains(&apps.display().to_string()), "{:?}", out.stderr);
        assert_eq!(std::fs::read(&apps).unwrap(), b"{not json", "apps.json was changed");
        assert!(out.stdout.is_empty(), "{:?}", out.stdout);

        std::fs::remove_file(&apps).expect("remove apps.json");
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().unwrap().port();
        let flag = format!("--api-port={port}");
        let out = run_cli(&["platform", "http:0", &flag], &envs, STEP).await;
        assert_eq!(out.code, Some(1), "{out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{:?}", out.stderr);
        assert!(out.stderr.contains(&flag), "{:?}", out.stderr);
        assert!(!apps.exists(), "a failed start wrote apps.json");
    })
    .await;
}

/// `rip-server status|restart|stop` without an app path find the platform
/// through `$RIP_HOME/run/platform.json`; an app kept as running whose
/// directory is gone is named at start and shows `error`; a directory
/// `hosts.json` names and no app serves is deployed, at start and while
/// the platform runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_restart_and_stop_find_the_platform_and_hosts_json_directories_are_deployed() {
    within(PLATFORM_BUDGET, async {
        let place = fresh_home();
        let home = place.path().join("home");
        let home_text = home.to_string_lossy().into_owned();
        let envs = [("RIP_HOME", home_text.as_str())];
        let variant = fresh_variant();
        let gone = app_dir(place.path(), "gone");
        let blog = app_dir(place.path(), "blog");
        let late = app_dir(place.path(), "late");

        let mut first = Platform::start(&home, &variant, &[]).await;
        first.deploy("gone", &gone, &[], 1).await;
        first.wait_running("gone", 1).await;
        first.kill();
        std::fs::remove_dir_all(&gone).expect("remove the app's directory");
        let out = run_cli(&["add", "blog.test", blog.to_str().expect("UTF-8")], &envs, STEP).await;
        assert_eq!(out.code, Some(0), "add: {out:?}");

        let platform = Platform::start(&home, &variant, &[]).await;
        let failed = platform
            .wait_app("gone", "gone to show its error", |a| a["status"] == "error")
            .await;
        assert!(failed["error"].as_str().is_some_and(|e| e.contains("gone")), "{failed}");
        let stderr = platform.stderr_text();
        assert!(stderr.contains("app gone did not start"), "{stderr}");
        // The platform's default worker count (2).
        platform.wait_running("blog", 2).await;
        let who = platform.to_host("blog.test", "/whoami").await.expect("GET blog.test");
        assert_eq!((who.status, who.json()["app"].clone()), (200, json!("blog")));

        // status, for people and as JSON, through the run file.
        let run_file = home.join("run/platform.json");
        let run: Value = serde_json::from_slice(&std::fs::read(&run_file).expect("run file")).expect("JSON");
        assert_eq!(run["pid"], platform.pid);
        assert_eq!(run["ports"]["http"], platform.http);
        assert_eq!(run["ports"]["api"], platform.api);
        let out = run_cli(&["status"], &envs, STEP).await;
        assert_eq!(out.code, Some(0), "status: {out:?}");
        assert!(
            out.stdout.starts_with(&format!("Platform   pid {}", platform.pid)),
            "{}",
            out.stdout
        );
        for line in ["blog  running", "gone  error"] {
            assert!(out.stdout.contains(line), "{line:?} in:\n{}", out.stdout);
        }
        let out = run_cli(&["status", "--json"], &envs, STEP).await;
        assert_eq!(out.code, Some(0), "status --json: {out:?}");
        let status: Value = serde_json::from_str(&out.stdout).expect("status --json prints JSON");
        assert_eq!(
            (status["mode"].clone(), status["totalApps"].clone()),
            (json!("platform"), json!(2))
        );

        // restart: a rolling restart of every running app.
        let before = pids(&platform.app("blog").await);
        let out = run_cli(&["restart"], &envs, STEP).await;
        assert_eq!(out.code, Some(0), "restart: {out:?}");
        assert!(
            out.stdout.contains("accepted") && out.stdout.contains("blog"),
            "{out:?}"
        );
        platform
            .wait_app("blog", "blog's workers to be replaced", |a| {
                a["status"] == "running" && pids(a).len() == 2 && pids(a).is_disjoint(&before)
            })
            .await;
        // SIGHUP: the same rolling restart of every running app.
        let before = pids(&platform.app("blog").await);
        send_signal(platform.pid, "HUP");
        platform
            .wait_app("blog", "blog's workers to be replaced after SIGHUP", |a| {
                a["status"] == "running" && pids(a).len() == 2 && pids(a).is_disjoint(&before)
            })
            .await;
        assert_eq!(
            platform.app("gone").await["status"],
            "error",
            "an app in error is left alone"
        );

        // A directory added to hosts.json while the platform runs.
        let out = run_cli(&["add", "late.test", late.to_str().expect("UTF-8")], &envs, STEP).await;
        assert_eq!(out.code, Some(0), "add: {out:?}");
        eventually("late.test to be served by a new app", STEP, || async {
            let r = platform.to_host("late.test", "/whoami").await?;
            if r.status == 200 && r.json()["app"] == "late" {
                Ok(())
            } else {
                Err(format!("{} {}", r.status, r.text()))
            }
        })
        .await;
        platform.app("late").await;

        // stop: drains and exits 0; the run file and the sockets are gone.
        let out = run_cli(&["stop"], &envs, STEP).await;
        assert_eq!(out.code, Some(0), "stop: {out:?}");
        platform.wait_exit_0().await;
        assert!(!run_file.exists(), "the run file outlived the platform");
        let out = run_cli(&["status"], &envs, STEP).await;
        assert_eq!(out.code, Some(1), "status with nothing running: {out:?}");
    })
    .await;
}

/// The platform over HTTPS with the dev CA: each app's host gets its own
/// leaf by SNI (verified by curl against the root alone), a `Host` that
/// routes to another app than the SNI gets 421, and the metrics port
/// labels every app's series with its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_by_sni_for_each_app_and_metrics_by_app() {
    within(PLATFORM_BUDGET, async {
        let place = crate::https::home_with_ca().await;
        let home = place.path().to_path_buf();
        let variant = fresh_variant();
        let a = app_dir(place.path(), "site-a");
        let b = app_dir(place.path(), "site-b");
        let platform = Platform::start(&home, &variant, &["protocol:http+https", "https:0", "--metrics-port=0"]).await;
        assert!(platform.https != 0 && platform.metrics != 0, "start lines");
        platform.deploy("a", &a, &["a.test"], 1).await;
        platform.deploy("b", &b, &["b.test"], 1).await;
        platform.wait_running("a", 1).await;
        platform.wait_running("b", 1).await;

        let root = home.join("ca/root.crt").to_string_lossy().into_owned();
        let port = platform.https;
        for app in ["a", "b"] {
            let host = format!("{app}.test");
            let out = crate::https::curl(&[
                "--cacert",
                &root,
                "--resolve",
                &format!("{host}:{port}:127.0.0.1"),
                &format!("https://{host}:{port}/whoami"),
            ])
            .await;
            assert_eq!(out.code, Some(0), "curl {host}: {out:?}");
            assert!(out.stdout.starts_with("HTTP/1.1 200"), "{}", out.stdout);
            assert!(out.stdout.contains(&format!("\"app\": \"{app}\"")), "{}", out.stdout);
            assert!(
                home.join(format!("certs/{host}.crt")).is_file(),
                "a leaf of its own for {host}"
            );
        }
        // SNI a.test, Host b.test: another app → 421.
        let out = crate::https::curl(&[
            "--cacert",
            &root,
            "--resolve",
            &format!("a.test:{port}:127.0.0.1"),
            "-H",
            "Host: b.test",
            &format!("https://a.test:{port}/whoami"),
        ])
        .await;
        assert!(out.stdout.starts_with("HTTP/1.1 421"), "{out:?}");
        // The apps' HTTP port serves too (http+https).
        let who = platform.to_host("b.test", "/whoami").await.expect("GET b.test");
        assert_eq!(who.status, 200);

        // Metrics: every app under its own label; ready.
        let metrics = platform.admin_get("/metrics").await.expect("GET /metrics");
        assert_eq!(metrics.status, 200);
        let text = metrics.text();
        for app in ["a", "b"] {
            let series = format!("rip_http_responses_total{{app=\"{app}\",code=\"2xx\"}}");
            assert!(text.lines().any(|l| l.starts_with(&series)), "{series} in:\n{text}");
        }
        let ready = platform.admin_get("/ready").await.expect("GET /ready");
        assert_eq!(ready.status, 200, "{}", ready.text());
        platform.stop().await;
    })
    .await;
}

/// `--drain-delay-ms` on the platform: SIGTERM turns `/ready` to 503 at
/// once while the apps keep serving, then the platform stops and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_a_drain_delay_turns_ready_off_while_the_apps_serve() {
    within(PLATFORM_BUDGET, async {
        let place = fresh_home();
        let home = place.path().join("home");
        let dir = app_dir(place.path(), "site");
        let platform = Platform::start(&home, &fresh_variant(), &["--metrics-port=0", "--drain-delay-ms=3000"]).await;
        platform.deploy("a", &dir, &["a.test"], 1).await;
        platform.wait_running("a", 1).await;
        let ready = || async { platform.admin_get("/ready").await.map(|r| r.status) };
        assert_eq!(ready().await, Ok(200));

        send_signal(platform.pid, "TERM");
        eventually("/ready to answer 503", STEP, || async {
            match ready().await {
                Ok(503) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        // Still serving during the delay.
        let who = platform
            .to_host("a.test", "/whoami")
            .await
            .expect("GET a.test while draining");
        assert_eq!(who.status, 200);
        platform.wait_exit_0().await;
    })
    .await;
}
