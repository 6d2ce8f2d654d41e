//! The end-to-end harness: a real `rip-server` process on an ephemeral TCP
//! port and its own socket prefix, plus small HTTP/1.1 clients (TCP, Unix
//! socket, raw bytes) and a load generator that records every outcome.
//!
//! Every wait is bounded, and no test sleeps to synchronise: waits poll for
//! their condition ([`eventually`], [`Server::wait_status`]), a "nothing
//! happens" check watches for the whole of its window ([`holds_for`]), and a
//! request is known to be in a worker's slot by its answer ([`HeldRequest`]).
//! A [`Server`] that goes out of scope is SIGKILLed together with every
//! worker process it was seen with. Every server and command gets its own
//! `RIP_HOME` in a temporary directory: the real home is never touched.

#![allow(dead_code)] // every e2e binary uses a different part of the harness

pub mod bun;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::{sleep, timeout};

/// How long one expected event (a start, a reply, a replacement) may take.
pub const STEP: Duration = Duration::from_secs(10);
/// Default per-request timeout of the clients.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rip-server")
}

/// The crate root (where `tests/workers/py_worker.py` lives).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// --- time ---------------------------------------------------------------------

/// Runs a whole test body, failing it if it takes longer than `limit`
/// (every e2e test is bounded; most take a few seconds).
pub async fn within<F: std::future::Future>(limit: Duration, body: F) -> F::Output {
    timeout(limit, body)
        .await
        .unwrap_or_else(|_| panic!("the test took longer than its {limit:?} budget"))
}

/// The usual budget of one e2e test.
pub const BUDGET: Duration = Duration::from_secs(45);

/// Measures elapsed wall time (the tests' only clock).
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch(Instant);

impl Stopwatch {
    #[allow(clippy::disallowed_methods)]
    pub fn start() -> Stopwatch {
        Stopwatch(Instant::now())
    }

    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }

    pub fn ms(&self) -> u128 {
        self.0.elapsed().as_millis()
    }
}

/// Polls `probe` every 50 ms until it yields `Ok`, or panics after `limit`
/// naming `what` and the last `Err` it gave.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let clock = Stopwatch::start();
    loop {
        let last = match probe().await {
            Ok(v) => return v,
            Err(why) => why,
        };
        if clock.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}; last: {last}");
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// Checks `probe` every 50 ms for the whole of `window`, panicking the first
/// time it yields `Err`, naming `what`. For "this does not happen" claims,
/// where there is no condition to wait for: the window is the claim, not a
/// synchronisation.
pub async fn holds_for<F, Fut>(what: &str, window: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let clock = Stopwatch::start();
    loop {
        if let Err(why) = probe().await {
            panic!("{what} stopped holding after {:?}: {why}", clock.elapsed());
        }
        if clock.elapsed() >= window {
            return;
        }
        sleep(Duration::from_millis(50)).await;
    }
}

// --- processes ----------------------------------------------------------------

/// `(state, ppid)` from `/proc/<pid>/stat`, if the process exists.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` is a live process (a zombie counts as dead).
pub fn pid_alive(pid: u32) -> bool {
    matches!(proc_stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// Live children of `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| matches!(proc_stat(pid), Some((s, ppid)) if ppid == parent && s != 'Z'))
        .collect()
}

/// Whether `pid` runs one of our worker programs (guards against pid reuse).
fn is_our_process(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let c = String::from_utf8_lossy(&c);
        c.contains("rip-server") || c.contains("py_worker")
    })
}

/// Sends `signal` (a name such as `TERM`) to `pid` through kill(1).
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {signal} {pid} failed");
}

/// A fresh directory for socket prefixes: short, under /tmp.
pub fn short_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rip")
        .tempdir_in("/tmp")
        .expect("temp dir")
}

/// A fresh, empty `RIP_HOME` (the contract's one home for state), so that no
/// test reads or writes the real `~/.rip-server`.
pub fn fresh_home() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rip-home")
        .tempdir()
        .expect("temp RIP_HOME")
}

/// Files in `prefix`'s directory whose names start with `<base name>.`.
pub fn files_with_prefix(prefix: &Path) -> Vec<PathBuf> {
    let dir = prefix.parent().expect("prefix has a directory");
    let base = format!("{}.", prefix.file_name().expect("prefix has a name").to_string_lossy());
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&base))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The output of a finished command.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `rip-server args...` to completion (killed after `limit`). Unless
/// `envs` names a `RIP_HOME`, the command gets a fresh empty one.
pub async fn run_cli(args: &[&str], envs: &[(&str, &str)], limit: Duration) -> Output {
    let home = fresh_home();
    let mut command = tokio::process::Command::new(bin());
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("PORT")
        .env("RIP_HOME", home.path())
        .kill_on_drop(true);
    for (k, v) in envs {
        command.env(k, v);
    }
    let child = command.spawn().expect("spawn rip-server");
    let out = timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("rip-server {args:?} did not finish within {limit:?}"))
        .expect("wait for rip-server");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Polls `flag` until it is set; false after `limit`.
async fn wait_flag(flag: &AtomicBool, limit: Duration) -> bool {
    let clock = Stopwatch::start();
    while !flag.load(Ordering::SeqCst) {
        if clock.elapsed() > limit {
            return false;
        }
        sleep(Duration::from_millis(10)).await;
    }
    true
}

// --- the server -----------------------------------------------------------------

/// How to start a server.
pub struct ServerBuilder {
    app: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    prefix: Option<PathBuf>,
    wait_ready: bool,
    exe: Option<PathBuf>,
}

impl ServerBuilder {
    /// Adds tokens and flags (`w:2`, `--max-queue=2`, ...).
    pub fn args(mut self, args: &[&str]) -> ServerBuilder {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> ServerBuilder {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Runs this copy of the binary instead of the one under test.
    pub fn exe(mut self, exe: &Path) -> ServerBuilder {
        self.exe = Some(exe.to_owned());
        self
    }

    /// Uses this socket prefix (the caller owns its directory) instead of a
    /// fresh one.
    pub fn prefix(mut self, prefix: &Path) -> ServerBuilder {
        self.prefix = Some(prefix.to_owned());
        self
    }

    /// Returns as soon as the start line is out, without waiting for the
    /// workers to register.
    pub fn no_wait(mut self) -> ServerBuilder {
        self.wait_ready = false;
        self
    }

    /// Spawns the server and waits for its start line (and, unless
    /// [`no_wait`](Self::no_wait), for every worker to register).
    pub async fn start(self) -> Server {
        let (dir, prefix) = match self.prefix {
            Some(p) => (None, p),
            None => {
                let dir = short_dir();
                let prefix = dir.path().join("s");
                (Some(dir), prefix)
            }
        };
        let home = fresh_home();
        let mut command = Command::new(self.exe.as_deref().unwrap_or(Path::new(bin())));
        command
            .arg(&self.app)
            .args(["http:0", &format!("--socket-prefix={}", prefix.display())])
            .args(&self.args)
            .current_dir(crate_dir())
            .env_remove("PORT")
            .env_remove("RIP_LOG")
            .env("RIP_HOME", home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.envs {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn rip-server");
        let pid = child.id();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout_closed = Arc::new(AtomicBool::new(false));
        let stderr_closed = Arc::new(AtomicBool::new(false));
        let (first_tx, first_rx) = tokio::sync::oneshot::channel::<String>();
        {
            let out = child.stdout.take().expect("stdout");
            let lines = stdout.clone();
            let closed = stdout_closed.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(out).lines();
                if let Some(Ok(first)) = reader.next() {
                    let _ = first_tx.send(first);
                }
                for line in reader.map_while(Result::ok) {
                    lines.lock().expect("stdout lock").push(line);
                }
                closed.store(true, Ordering::SeqCst);
            });
            let err = child.stderr.take().expect("stderr");
            let lines = stderr.clone();
            let closed = stderr_closed.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    lines.lock().expect("stderr lock").push(line);
                }
                closed.store(true, Ordering::SeqCst);
            });
        }
        let mut server = Server {
            child,
            pid,
            port: 0,
            prefix,
            start_line: String::new(),
            _dir: dir,
            home,
            stdout,
            stderr,
            stdout_closed,
            stderr_closed,
            seen: Mutex::new(BTreeSet::new()),
            exit: None,
            desired: self
                .args
                .iter()
                .find_map(|a| a.strip_prefix("w:")?.parse().ok())
                .unwrap_or(1),
        };
        let first = match timeout(STEP, first_rx).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => {
                // Stdout is closed; read stderr to its end before quoting it.
                let _ = server.wait_stderr_closed(STEP).await;
                panic!(
                    "rip-server exited before its start line; stderr:\n{}",
                    server.stderr_text()
                )
            }
            Err(_) => panic!("no start line within {STEP:?}; stderr:\n{}", server.stderr_text()),
        };
        // The port's digits: more may follow (`; metrics ... on http://...`).
        let port = first
            .split("http://localhost:")
            .nth(1)
            .and_then(|p| p.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("unexpected start line {first:?}"));
        server.port = port;
        server.start_line = first;
        if self.wait_ready {
            let n = server.desired;
            server.wait_workers(n).await;
        }
        server
    }
}

/// A running `rip-server`.
pub struct Server {
    child: Child,
    pub pid: u32,
    pub port: u16,
    pub prefix: PathBuf,
    pub start_line: String,
    _dir: Option<tempfile::TempDir>,
    /// The server's `RIP_HOME`.
    pub home: tempfile::TempDir,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Set by the reader threads once the server's stdout / stderr reached
    /// their end (the server and every worker sharing them exited).
    stdout_closed: Arc<AtomicBool>,
    stderr_closed: Arc<AtomicBool>,
    /// Every worker pid ever seen in `/status` (killed on drop if still alive).
    seen: Mutex<BTreeSet<u32>>,
    exit: Option<ExitStatus>,
    /// The worker count asked for with `w:N`.
    pub desired: u64,
}

impl Server {
    /// A builder for `rip-server <app> http:0 --socket-prefix=<fresh>`.
    pub fn app(app: &str) -> ServerBuilder {
        ServerBuilder {
            app: app.to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            prefix: None,
            wait_ready: true,
            exe: None,
        }
    }

    /// A builder for the built-in example app.
    pub fn builtin() -> ServerBuilder {
        Server::app("builtin:hello")
    }

    /// Starts the built-in app with `args` and waits until it is ready.
    pub async fn start(args: &[&str]) -> Server {
        Server::builtin().args(args).start().await
    }

    pub fn ctl_socket(&self) -> PathBuf {
        let mut p = self.prefix.clone().into_os_string();
        p.push(".ctl.sock");
        PathBuf::from(p)
    }

    pub fn prefix_arg(&self) -> String {
        format!("--socket-prefix={}", self.prefix.display())
    }

    /// Access-log lines printed so far (everything after the start line).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout lock").clone()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("stderr lock").join("\n")
    }

    /// Waits until the server's stdout has been read to its end (it and every
    /// worker sharing it exited); false after `limit`.
    pub async fn wait_stdout_closed(&self, limit: Duration) -> bool {
        wait_flag(&self.stdout_closed, limit).await
    }

    /// Waits until the server's stderr has been read to its end; false after `limit`.
    async fn wait_stderr_closed(&self, limit: Duration) -> bool {
        wait_flag(&self.stderr_closed, limit).await
    }

    /// Waits until a stderr line contains `needle` (the server's own report
    /// that something happened); returns that line.
    pub async fn wait_stderr_line(&self, needle: &str) -> String {
        eventually(&format!("a stderr line containing {needle:?}"), STEP, || async {
            let lines = self.stderr.lock().expect("stderr lock");
            match lines.iter().find(|l| l.contains(needle)) {
                Some(line) => Ok(line.clone()),
                None => Err(format!("{} lines, none matches", lines.len())),
            }
        })
        .await
    }

    /// Stops the server gracefully (SIGTERM), checks that it exits 0, and
    /// returns everything it printed on stdout after the start line. Once
    /// stdout is closed nothing more can come, so "exactly these lines"
    /// needs no waiting.
    pub async fn stop_and_read_stdout(&mut self) -> Vec<String> {
        self.signal("TERM");
        let exit = self
            .wait_exit(STEP)
            .await
            .unwrap_or_else(|| panic!("still running {STEP:?} after SIGTERM"));
        assert_eq!(exit.code(), Some(0), "exit status after SIGTERM: {exit:?}");
        assert!(
            self.wait_stdout_closed(STEP).await,
            "stdout still open {STEP:?} after the server exited (a worker kept it?)"
        );
        self.stdout_lines()
    }

    /// Waits until the workers have answered `more` requests beyond those
    /// answered so far (`/status` counter `responses`): load is flowing.
    pub async fn wait_for_traffic(&self, more: u64) -> Value {
        let responses = |s: &Value| s["counters"]["responses"].as_u64().expect("counters.responses");
        let start = responses(&self.status().await);
        self.wait_status(&format!("{more} more answered requests"), STEP, |s| {
            responses(s) >= start + more
        })
        .await
    }

    fn remember(&self, status: &Value) {
        let mut seen = self.seen.lock().expect("seen lock");
        for p in status["pool"].as_array().into_iter().flatten() {
            if let Some(pid) = p["pid"].as_u64() {
                seen.insert(pid as u32);
            }
        }
        for slot in status["supervisor"]["slots"].as_array().into_iter().flatten() {
            for p in slot["processes"].as_array().into_iter().flatten() {
                if let Some(pid) = p["pid"].as_u64() {
                    seen.insert(pid as u32);
                }
            }
        }
    }

    /// `GET /status` through the front door.
    pub async fn try_status(&self) -> Result<Value, String> {
        let r = request(self.port, Method::GET, "/status", &[], Bytes::new()).await?;
        if r.status != 200 {
            return Err(format!("/status answered {}", r.status));
        }
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
        self.remember(&v);
        Ok(v)
    }

    pub async fn status(&self) -> Value {
        self.try_status().await.expect("GET /status")
    }

    /// `GET /status` through the control socket.
    pub async fn ctl_status(&self) -> Value {
        let r = unix_request(&self.ctl_socket(), Method::GET, "/status", Bytes::new())
            .await
            .expect("control GET /status");
        assert_eq!(r.status, 200, "control /status: {}", r.text());
        let v: Value = serde_json::from_slice(&r.body).expect("control /status is JSON");
        self.remember(&v);
        v
    }

    /// Polls `/status` until `pred` holds (panics after `limit`).
    pub async fn wait_status(&self, what: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        eventually(what, limit, || async {
            let v = self.try_status().await?;
            if pred(&v) { Ok(v) } else { Err(v.to_string()) }
        })
        .await
    }

    /// Waits until exactly `n` workers are registered, every slot is ready
    /// and no handover is in progress.
    pub async fn wait_workers(&self, n: u64) -> Value {
        self.wait_status(&format!("{n} registered workers"), STEP, |v| {
            v["workers"] == n
                && v["pool"].as_array().is_some_and(|p| p.len() as u64 == n)
                && v["supervisor"]["slots"]
                    .as_array()
                    .is_some_and(|s| s.len() as u64 == n && s.iter().all(|s| s["state"] == "ready"))
        })
        .await
    }

    /// `(slot, pid, version, socket)` of every pool entry, by slot.
    pub fn pool(status: &Value) -> Vec<(u64, u32, u64, String)> {
        let mut pool: Vec<_> = status["pool"]
            .as_array()
            .expect("pool array")
            .iter()
            .map(|p| {
                (
                    p["slot"].as_u64().expect("slot"),
                    p["pid"].as_u64().expect("pid") as u32,
                    p["version"].as_u64().expect("version"),
                    p["socket"].as_str().expect("socket").to_owned(),
                )
            })
            .collect();
        pool.sort();
        pool
    }

    /// Worker pids in the pool.
    pub fn pool_pids(status: &Value) -> BTreeSet<u32> {
        Server::pool(status).into_iter().map(|p| p.1).collect()
    }

    pub fn signal(&self, signal: &str) {
        send_signal(self.pid, signal);
    }

    /// Waits for the server to exit; `None` if it is still running after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let clock = Stopwatch::start();
        loop {
            if let Some(status) = self.exit {
                return Some(status);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
                return Some(status);
            }
            if clock.elapsed() > limit {
                return None;
            }
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILLs the server (only the server: its workers must die on their own).
    pub fn kill_server_only(&mut self) {
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.exit = Some(status);
        }
    }

    /// GET `path` through the front door (panics on transport errors).
    pub async fn get(&self, path: &str) -> Resp {
        get(self.port, path).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let children = children_of(self.pid);
        let running = self.exit.is_none() && matches!(self.child.try_wait(), Ok(None));
        if running {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let mut leftovers: BTreeSet<u32> = children.into_iter().collect();
        leftovers.extend(self.seen.lock().map(|s| s.clone()).unwrap_or_default());
        for pid in leftovers {
            if pid_alive(pid) && is_our_process(pid) {
                let _ = Command::new("kill")
                    .args(["-s", "KILL", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if std::thread::panicking() {
            let stderr = self.stderr_text();
            let tail: Vec<&str> = stderr.lines().rev().take(60).collect();
            eprintln!(
                "--- rip-server (pid {}, port {}) stderr, last lines ---",
                self.pid, self.port
            );
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// The core never synthesized an answer (no 503/504/502 of its own): every
/// request it saw went to a worker. Checks the `/status` counters.
pub fn assert_no_synthesized_answers(status: &Value) {
    let counters = &status["counters"];
    for name in [
        "queue_full",
        "queue_timeout",
        "upstream_timeout",
        "upstream_error",
        "no_capacity",
    ] {
        assert_eq!(counters[name], 0, "counter {name}: {counters}");
    }
}

// --- HTTP clients -----------------------------------------------------------------

/// A response, fully read.
#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// The `Rip-Reason` header.
    pub fn reason(&self) -> Option<String> {
        self.header("rip-reason")
    }
}

type Sender = SendRequest<Full<Bytes>>;

async fn handshake_tcp(port: u16) -> Result<Sender, String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn send_on(sender: &mut Sender, req: Request<Full<Bytes>>) -> Result<Resp, String> {
    sender.ready().await.map_err(|e| format!("not ready: {e}"))?;
    let response = sender.send_request(req).await.map_err(|e| format!("send: {e}"))?;
    let (parts, body) = response.into_parts();
    // The status is part of the error: a peer may answer (413, say) and
    // reset the connection before its body is read.
    let status = parts.status.as_u16();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body after status {status}: {e}"))?
        .to_bytes();
    Ok(Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

fn build(method: Method, path: &str, headers: &[(&str, &str)], body: Bytes) -> Request<Full<Bytes>> {
    let mut req = Request::builder().method(method).uri(path).header("host", "localhost");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::new(body)).expect("request")
}

/// One request on a new TCP connection to the front door, with [`REQUEST_TIMEOUT`].
pub async fn request(
    port: u16,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Resp, String> {
    request_within(port, method, path, headers, body, REQUEST_TIMEOUT).await
}

/// [`request`] with another timeout.
pub async fn request_within(
    port: u16,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    limit: Duration,
) -> Result<Resp, String> {
    send_request(port, build(method, path, headers, body), limit).await
}

/// `request`, exactly as built (no `Host` added), on a new TCP connection
/// to `127.0.0.1:port`, answered within `limit`.
pub async fn send_request(port: u16, request: Request<Full<Bytes>>, limit: Duration) -> Result<Resp, String> {
    let what = format!("{} {}", request.method(), request.uri());
    timeout(limit, async {
        let mut sender = handshake_tcp(port).await?;
        send_on(&mut sender, request).await
    })
    .await
    .unwrap_or_else(|_| Err(format!("{what}: no answer within {limit:?}")))
}

/// GET `path` (panics on transport errors).
pub async fn get(port: u16, path: &str) -> Resp {
    request(port, Method::GET, path, &[], Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// One request over a Unix socket (worker or control socket).
pub async fn unix_request(socket: &Path, method: Method, path: &str, body: Bytes) -> Result<Resp, String> {
    let req = build(method, path, &[("content-type", "application/json")], body);
    timeout(REQUEST_TIMEOUT, async {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|e| format!("connect {}: {e}", socket.display()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        send_on(&mut sender, req).await
    })
    .await
    .unwrap_or_else(|_| Err(format!("{}: no answer", socket.display())))
}

/// A request that holds a worker's one request slot until it is released:
/// a chunked `POST /echo` sent straight to the worker's socket, its body left
/// open. The built-in app echoes as it reads, so once the first chunk comes
/// back the request is known to be in the slot, with no timing involved.
pub struct HeldRequest {
    stream: UnixStream,
    received: Vec<u8>,
}

/// The end of a chunked body on the wire.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

impl HeldRequest {
    /// Sends the request and returns once the worker has answered its head
    /// and echoed the first chunk (the slot is taken).
    pub async fn hold(socket: &Path) -> HeldRequest {
        let mut stream = UnixStream::connect(socket)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nHost: worker\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nheld\r\n")
            .await
            .expect("write the held request");
        let mut held = HeldRequest {
            stream,
            received: Vec::new(),
        };
        held.read_until("the echo of the first chunk", |r| {
            r.windows(4)
                .position(|w| w == b"\r\n\r\n")
                .is_some_and(|end| r[end..].windows(4).any(|w| w == b"held"))
        })
        .await;
        assert_eq!(
            raw_status(&held.received),
            Some(200),
            "the held request was not taken by {}: {:?}",
            socket.display(),
            String::from_utf8_lossy(&held.received)
        );
        held
    }

    /// Ends the body and reads the answer to its end; returns its status.
    pub async fn release(mut self) -> u16 {
        self.stream.write_all(LAST_CHUNK).await.expect("end the held body");
        self.read_until("the end of the echoed body", |r| r.ends_with(LAST_CHUNK))
            .await;
        raw_status(&self.received).expect("a status line")
    }

    async fn read_until(&mut self, what: &str, done: impl Fn(&[u8]) -> bool) {
        let mut buf = [0u8; 4096];
        while !done(&self.received) {
            let n = timeout(STEP, self.stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("held request: no {what} within {STEP:?}"))
                .expect("read the held request's answer");
            assert!(
                n > 0,
                "held request: the worker closed the connection before {what}: {:?}",
                String::from_utf8_lossy(&self.received)
            );
            self.received.extend_from_slice(&buf[..n]);
        }
    }
}

/// A keep-alive client to the front door that reconnects when its
/// connection has been closed between requests.
pub struct Client {
    port: u16,
    sender: Option<Sender>,
}

impl Client {
    pub fn new(port: u16) -> Client {
        Client { port, sender: None }
    }

    /// One GET on the kept-alive connection (a new one if it was closed).
    pub async fn get(&mut self, path: &str) -> Result<Resp, String> {
        let req = build(Method::GET, path, &[], Bytes::new());
        let result = timeout(REQUEST_TIMEOUT, async {
            let reuse = self.sender.take().filter(|s| !s.is_closed());
            let mut sender = match reuse {
                Some(s) => s,
                None => handshake_tcp(self.port).await?,
            };
            let r = send_on(&mut sender, req).await?;
            let close = r.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
            if !close {
                self.sender = Some(sender);
            }
            Ok(r)
        })
        .await;
        result.unwrap_or_else(|_| Err(format!("GET {path}: no answer within {REQUEST_TIMEOUT:?}")))
    }
}

/// Writes `bytes` on a new TCP connection, then reads until the server
/// closes it or `limit` passes. Returns what was read and whether the
/// connection was closed by the server.
pub async fn raw_exchange(port: u16, bytes: &[u8], limit: Duration) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    read_until_close(&mut stream, limit).await
}

/// Reads until EOF (or a reset) or `limit`; returns the bytes and whether
/// the peer closed.
pub async fn read_until_close(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let clock = Stopwatch::start();
    loop {
        let left = limit.saturating_sub(clock.elapsed());
        match timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// The status code of a raw HTTP/1.1 response, if it starts with one.
pub fn raw_status(response: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(response);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

// --- load -----------------------------------------------------------------------

/// One request's outcome under load.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Option<u16>,
    pub reason: Option<String>,
    pub retry_after: Option<String>,
    pub error: Option<String>,
    pub body: Bytes,
    pub millis: u128,
}

/// Every outcome of a load run.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub outcomes: Vec<Outcome>,
}

impl LoadReport {
    pub fn total(&self) -> usize {
        self.outcomes.len()
    }

    pub fn count(&self, status: u16) -> usize {
        self.outcomes.iter().filter(|o| o.status == Some(status)).count()
    }

    /// `status → count`, with transport errors under 0.
    pub fn histogram(&self) -> BTreeMap<u16, usize> {
        let mut h = BTreeMap::new();
        for o in &self.outcomes {
            *h.entry(o.status.unwrap_or(0)).or_default() += 1;
        }
        h
    }

    /// A short description of every outcome that is not a 200.
    pub fn failures(&self) -> Vec<String> {
        self.outcomes
            .iter()
            .filter(|o| o.status != Some(200))
            .map(|o| match (&o.status, &o.error) {
                (Some(s), _) => format!("{s} reason={:?} body={:?}", o.reason, o.body),
                (None, Some(e)) => format!("error: {e}"),
                (None, None) => "?".into(),
            })
            .collect()
    }

    pub fn assert_all_200(&self, what: &str) {
        let failures = self.failures();
        assert!(
            failures.is_empty(),
            "{what}: {} of {} requests failed: {:?} (histogram {:?})",
            failures.len(),
            self.total(),
            &failures[..failures.len().min(10)],
            self.histogram()
        );
    }
}

fn outcome(result: Result<Resp, String>, clock: Stopwatch) -> Outcome {
    let millis = clock.ms();
    match result {
        Ok(r) => Outcome {
            status: Some(r.status),
            reason: r.reason(),
            retry_after: r.header("retry-after"),
            error: None,
            body: r.body,
            millis,
        },
        Err(e) => Outcome {
            status: None,
            reason: None,
            retry_after: None,
            error: Some(e),
            body: Bytes::new(),
            millis,
        },
    }
}

/// `clients` tasks each send `per_client` GETs of `path` in sequence, each on
/// a new connection; the whole run is bounded by `limit`.
pub async fn burst(port: u16, clients: usize, per_client: usize, path: &str, limit: Duration) -> LoadReport {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let clock = Stopwatch::start();
                let r = request_within(port, Method::GET, &path, &[], Bytes::new(), REQUEST_TIMEOUT).await;
                outcomes.push(outcome(r, clock));
            }
            outcomes
        }));
    }
    let mut report = LoadReport::default();
    let all = timeout(limit, async {
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.extend(t.await.expect("load task"));
        }
        outcomes
    })
    .await
    .unwrap_or_else(|_| panic!("load on {path} did not finish within {limit:?}"));
    report.outcomes = all;
    report
}

/// Continuous load from `clients` keep-alive clients until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
}

impl Load {
    /// Starts `clients` clients, each sending GET `path` in a loop with
    /// `pause` between requests (at most 20 000 requests each).
    pub fn start(port: u16, clients: usize, path: &str, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                let path = path.to_owned();
                tokio::spawn(async move {
                    let mut client = Client::new(port);
                    let mut outcomes = Vec::new();
                    while !stop.load(Ordering::Relaxed) && outcomes.len() < 20_000 {
                        let clock = Stopwatch::start();
                        let r = client.get(&path).await;
                        outcomes.push(outcome(r, clock));
                        if !pause.is_zero() {
                            sleep(pause).await;
                        }
                    }
                    outcomes
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Stops the clients and returns every outcome.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = LoadReport::default();
        for t in self.tasks {
            let outcomes = timeout(REQUEST_TIMEOUT + Duration::from_secs(2), t)
                .await
                .expect("a load client did not stop")
                .expect("load task");
            report.outcomes.extend(outcomes);
        }
        report
    }
}

/// A Debian tool a test needs: found on `PATH`, else installed with
/// apt-get (Debian's `package`) when the tests run as root, else the test
/// fails saying what to install. Installs are one at a time (dpkg takes a
/// lock, and tests run in parallel).
pub fn debian_tool(program: &str, package: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    static INSTALLING: Mutex<()> = Mutex::new(());
    let on_path = || {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
            .map(|dir| dir.join(program))
            .find(|p| {
                p.metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    };
    if let Some(found) = on_path() {
        return found;
    }
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(found) = on_path() {
        return found;
    }
    if rustix::process::geteuid().is_root() {
        let installed = Command::new("sh")
            .args(["-c", &format!("apt-get update -qq && apt-get install -y -qq {package}")])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        if let Some(found) = on_path() {
            return found;
        }
        panic!("installing {package} with apt-get failed ({installed:?}); the test needs {program}");
    }
    panic!(
        "the test needs {program} (Debian: apt-get install -y {package}; the test installs it itself when run as root)"
    );
}
