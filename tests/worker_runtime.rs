//! The worker runtime (`rip_server::worker`) and the Python example worker,
//! over real Unix sockets against a fake control server.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rip_server::worker::builtin::Builtin;
use rip_server::worker::{self, Handler, WorkerBody, WorkerEnv};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

/// Every test finishes well within this.
const TEST_BUDGET: Duration = Duration::from_secs(30);
/// How long a single expected event may take.
const STEP: Duration = Duration::from_secs(10);

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rw")
        .tempdir_in("/tmp")
        .expect("temp dir")
}

// --- a fake control server ---------------------------------------------------

/// Records every JSON body posted to it and answers with a fixed status and body.
struct FakeControl {
    path: PathBuf,
    messages: mpsc::UnboundedReceiver<Value>,
    task: JoinHandle<()>,
}

impl FakeControl {
    async fn start(path: PathBuf) -> FakeControl {
        FakeControl::answering(path, StatusCode::OK, json!({"ok": true})).await
    }

    async fn answering(path: PathBuf, status: StatusCode, reply: Value) -> FakeControl {
        let listener = UnixListener::bind(&path).expect("bind control socket");
        let (tx, messages) = mpsc::unbounded_channel();
        let reply = Bytes::from(reply.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let reply = reply.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let tx = tx.clone();
                        let reply = reply.clone();
                        async move {
                            assert_eq!(req.method(), Method::POST);
                            assert_eq!(req.uri().path(), "/worker");
                            assert_eq!(req.headers()["host"], "localhost");
                            assert_eq!(req.headers()["content-type"], "application/json");
                            let body = req.into_body().collect().await?.to_bytes();
                            let value: Value = serde_json::from_slice(&body).expect("control body is JSON");
                            let _ = tx.send(value);
                            let mut response = Response::new(Full::new(reply));
                            *response.status_mut() = status;
                            Ok::<_, hyper::Error>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeControl { path, messages, task }
    }

    async fn next(&mut self) -> Value {
        timeout(STEP, self.messages.recv())
            .await
            .expect("a control message in time")
            .expect("control server running")
    }

    fn assert_silent(&mut self) {
        if let Ok(message) = self.messages.try_recv() {
            panic!("unexpected control message {message}");
        }
    }
}

impl Drop for FakeControl {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// --- a client for worker sockets ----------------------------------------------

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    fn is_busy(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE && self.headers.get("rip-worker-busy").is_some_and(|v| v == "1")
    }
}

/// One keep-alive HTTP/1.1 connection to a worker.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(socket: &Path) -> Conn {
        let stream = UnixStream::connect(socket).await.expect("connect to worker");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        Conn { sender }
    }

    async fn send(&mut self, method: Method, uri: &str, body: Bytes) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "worker")
            .body(Full::new(body))
            .expect("request");
        let exchange = async {
            self.sender.ready().await.expect("connection ready");
            let response = self.sender.send_request(request).await.expect("response");
            let (parts, body) = response.into_parts();
            let body = body.collect().await.expect("response body").to_bytes();
            Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        };
        timeout(STEP, exchange).await.expect("answer in time")
    }

    async fn get(&mut self, uri: &str) -> Reply {
        self.send(Method::GET, uri, Bytes::new()).await
    }
}

/// A GET on a fresh connection.
async fn get(socket: &Path, uri: &str) -> Reply {
    Conn::open(socket).await.get(uri).await
}

/// Waits until `path` exists (the worker is listening).
async fn wait_for_socket(path: &Path) {
    timeout(STEP, async {
        while !path.exists() {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("worker socket appears");
}

// --- the built-in app in-process ----------------------------------------------

fn env(dir: &Path, control: Option<&Path>) -> WorkerEnv {
    WorkerEnv {
        worker_id: 3,
        socket: dir.join("w.3.sock"),
        control_socket: control.map(Path::to_path_buf),
        app: "demo".to_owned(),
        app_dir: dir.to_path_buf(),
        entry: dir.join("index.rip"),
        version: 7,
        max_requests: None,
        hot_reload: "none".to_owned(),
    }
}

/// The built-in app plus one test route, `/gate`: it reports that it holds
/// the request slot, then answers only once the test opens the gate. So a
/// test knows a request is in flight, and keeps it there as long as it
/// needs, without timing anything.
#[derive(Clone)]
struct Gated {
    app: Builtin,
    /// One message each time a `/gate` request has the slot.
    entered: mpsc::UnboundedSender<()>,
    /// One permit lets one `/gate` request through.
    open: Arc<Semaphore>,
}

impl Handler for Gated {
    fn handle(&self, req: Request<Incoming>) -> impl Future<Output = Response<WorkerBody>> + Send {
        let this = self.clone();
        async move {
            if req.uri().path() != "/gate" {
                return this.app.handle(req).await;
            }
            let _ = this.entered.send(());
            this.open.acquire().await.expect("gate semaphore open").forget();
            worker::text(StatusCode::OK, "through the gate")
        }
    }
}

/// A worker running the built-in app (with `/gate`) on a task, stopped
/// through `stop`.
struct Running {
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    entered: mpsc::UnboundedReceiver<()>,
    open: Arc<Semaphore>,
}

fn spawn_builtin(env: WorkerEnv) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let socket = env.socket.clone();
    let (entered_tx, entered) = mpsc::unbounded_channel();
    let open = Arc::new(Semaphore::new(0));
    let handler = Gated {
        app: Builtin::new(&env),
        entered: entered_tx,
        open: open.clone(),
    };
    let task = tokio::spawn(worker::run(env, handler, async move {
        let _ = stopped.await;
    }));
    Running {
        socket,
        stop: Some(stop),
        task,
        entered,
        open,
    }
}

impl Running {
    /// Waits until a `/gate` request holds the worker's request slot.
    async fn gate_entered(&mut self) {
        timeout(STEP, self.entered.recv())
            .await
            .expect("a /gate request in flight in time")
            .expect("handler alive");
    }

    /// Lets one `/gate` request answer.
    fn open_gate(&self) {
        self.open.add_permits(1);
    }

    fn shutdown(&mut self) {
        let _ = self.stop.take().expect("not stopped yet").send(());
    }

    async fn finished(self) -> std::io::Result<()> {
        let Running { task, stop, .. } = self;
        let result = timeout(STEP, task)
            .await
            .expect("run returns in time")
            .expect("no panic");
        drop(stop);
        result
    }
}

async fn bounded(test: impl Future<Output = ()>) {
    timeout(TEST_BUDGET, test)
        .await
        .expect("test finished within its budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn builtin_joins_serves_and_answers_busy() {
    bounded(async {
        let dir = temp_dir();
        let mut control = FakeControl::start(dir.path().join("ctl.sock")).await;
        let mut running = spawn_builtin(env(dir.path(), Some(&control.path)));

        let join = control.next().await;
        assert_eq!(
            join,
            json!({"op": "join", "app": "demo", "workerId": 3, "pid": std::process::id(),
                   "socket": running.socket.to_str().unwrap(), "version": 7})
        );
        let meta = std::fs::metadata(&running.socket).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);

        let ping = get(&running.socket, "/ping").await;
        assert_eq!(ping.status, StatusCode::OK);
        assert_eq!(ping.text(), "pong");
        assert_eq!(ping.headers["rip-worker-id"], "3");

        // A second request while one is in flight: 503 at once, never queued.
        let socket = running.socket.clone();
        let held = tokio::spawn(async move { get(&socket, "/gate").await });
        running.gate_entered().await;
        let busy = get(&running.socket, "/ping").await;
        assert!(busy.is_busy(), "{} {:?}", busy.status, busy.headers);
        assert_eq!(busy.headers["rip-worker-id"], "3");
        assert!(
            !held.is_finished(),
            "the busy answer did not wait for the request in flight"
        );
        running.open_gate();
        let held = held.await.unwrap();
        assert_eq!(
            (held.status, held.text().as_str()),
            (StatusCode::OK, "through the gate")
        );

        let stats = get(&running.socket, "/stats").await.json();
        assert_eq!(stats, json!({"served": 2, "busyRejections": 1, "maxConcurrent": 2}));
        let whoami = get(&running.socket, "/whoami").await.json();
        assert_eq!(
            whoami,
            json!({"workerId": 3, "pid": std::process::id(), "version": 7, "app": "demo", "served": 3})
        );

        running.shutdown();
        let quit = control.next().await;
        assert_eq!(
            quit,
            json!({"op": "quit", "app": "demo", "workerId": 3, "pid": std::process::id()})
        );
        let socket = running.socket.clone();
        running.finished().await.expect("clean stop");
        assert!(!socket.exists(), "socket file removed");
        control.assert_silent();
    })
    .await;
}

#[tokio::test]
async fn builtin_routes() {
    bounded(async {
        let dir = temp_dir();
        let mut running = spawn_builtin(env(dir.path(), None));
        wait_for_socket(&running.socket).await;
        let mut conn = Conn::open(&running.socket).await;

        let hello = conn.get("/").await;
        assert_eq!(hello.status, StatusCode::OK);
        assert!(hello.text().contains("demo") && hello.text().contains('3') && hello.text().contains('7'));
        assert_eq!(conn.get("/status/418").await.status, StatusCode::IM_A_TEAPOT);
        let no_content = conn.get("/status/204").await;
        assert_eq!((no_content.status, no_content.body.len()), (StatusCode::NO_CONTENT, 0));
        assert_eq!(conn.get("/status/abc").await.status, StatusCode::BAD_REQUEST);
        let missing = conn.get("/nope").await;
        assert_eq!(
            (missing.status, missing.text().as_str()),
            (StatusCode::NOT_FOUND, "not found")
        );
        assert_eq!(conn.get("/sleep").await.status, StatusCode::BAD_REQUEST);
        let slept = conn.get("/sleep?ms=20").await;
        assert_eq!((slept.status, slept.text().as_str()), (StatusCode::OK, "slept 20"));
        let work = conn.get("/work?ms=30").await;
        assert_eq!((work.status, work.text().as_str()), (StatusCode::OK, "worked 30"));
        assert_eq!(conn.get("/echo").await.status, StatusCode::METHOD_NOT_ALLOWED);

        let request = Request::get("/headers")
            .header("host", "worker")
            .header("x-forwarded-for", "10.1.2.3")
            .header("x-request-id", "abc-123")
            .body(Full::new(Bytes::new()))
            .unwrap();
        conn.sender.ready().await.unwrap();
        let response = conn.sender.send_request(request).await.unwrap();
        let headers: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(headers["x-forwarded-for"], "10.1.2.3");
        assert_eq!(headers["x-request-id"], "abc-123");
        assert_eq!(headers["host"], "worker");

        // Streams both ways, byte for byte.
        let bytes = conn.get("/bytes?n=1000001").await;
        assert_eq!(bytes.status, StatusCode::OK);
        assert_eq!(bytes.headers["content-length"], "1000001");
        assert_eq!(bytes.body.len(), 1_000_001);
        let upload: Bytes = (0..8 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
        let echo = conn.send(Method::POST, "/echo", upload.clone()).await;
        assert_eq!(echo.status, StatusCode::OK);
        assert!(echo.body == upload, "echo returns the upload unchanged");

        running.shutdown();
        running.finished().await.expect("clean stop");
    })
    .await;
}

/// The front door's pattern: the next request, on any connection, follows the
/// end of the previous response at once. It must never find the slot taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slot_is_free_as_soon_as_a_response_has_ended() {
    bounded(async {
        let dir = temp_dir();
        let mut running = spawn_builtin(env(dir.path(), None));
        wait_for_socket(&running.socket).await;
        let mut conns = [Conn::open(&running.socket).await, Conn::open(&running.socket).await];
        for i in 0..200 {
            let conn = &mut conns[i % 2];
            let reply = match i % 4 {
                0 => conn.get("/ping").await,
                1 => conn.get("/bytes?n=200000").await,
                2 => conn.send(Method::POST, "/echo", Bytes::from(vec![b'e'; 100_000])).await,
                _ => conn.get("/status/204").await,
            };
            assert!(!reply.is_busy(), "request {i} found the slot taken");
        }
        let stats = get(&running.socket, "/stats").await.json();
        assert_eq!(stats, json!({"served": 200, "busyRejections": 0, "maxConcurrent": 1}));
        running.shutdown();
        running.finished().await.expect("clean stop");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_exchange_frees_the_slot() {
    bounded(async {
        let dir = temp_dir();
        let mut running = spawn_builtin(env(dir.path(), None));
        wait_for_socket(&running.socket).await;
        let socket = running.socket.clone();
        // The gate never opens: the handler would wait for good.
        let hang = tokio::spawn(async move { get(&socket, "/gate").await });
        running.gate_entered().await;
        assert!(get(&running.socket, "/ping").await.is_busy());
        hang.abort(); // the client gives up and closes its connection
        let freed = timeout(STEP, async {
            loop {
                if get(&running.socket, "/ping").await.status == StatusCode::OK {
                    return;
                }
                sleep(Duration::from_millis(20)).await; // the poll's interval
            }
        })
        .await;
        assert!(freed.is_ok(), "the slot came back after the client left");
        running.shutdown();
        running.finished().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn shutdown_quits_first_then_finishes_the_request_in_flight() {
    bounded(async {
        let dir = temp_dir();
        let mut control = FakeControl::start(dir.path().join("ctl.sock")).await;
        let mut running = spawn_builtin(env(dir.path(), Some(&control.path)));
        assert_eq!(control.next().await["op"], "join");

        let socket = running.socket.clone();
        let held = tokio::spawn(async move { get(&socket, "/gate").await });
        running.gate_entered().await;
        running.shutdown();
        let quit = control.next().await;
        assert_eq!(quit["op"], "quit");
        assert!(
            !held.is_finished(),
            "quit is sent before the request in flight finishes"
        );
        assert!(running.socket.exists(), "still listening while draining");
        running.open_gate();
        let held = held.await.unwrap();
        assert_eq!(
            (held.status, held.text().as_str()),
            (StatusCode::OK, "through the gate")
        );
        let socket = running.socket.clone();
        running.finished().await.expect("clean stop");
        assert!(!socket.exists(), "socket file removed");
        assert!(UnixStream::connect(&socket).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn max_requests_recycles_the_worker() {
    bounded(async {
        let dir = temp_dir();
        let mut control = FakeControl::start(dir.path().join("ctl.sock")).await;
        let mut env = env(dir.path(), Some(&control.path));
        env.max_requests = Some(3);
        let running = spawn_builtin(env);
        assert_eq!(control.next().await["op"], "join");

        let mut conn = Conn::open(&running.socket).await;
        for _ in 0..3 {
            assert_eq!(conn.get("/ping").await.text(), "pong");
        }
        let quit = control.next().await;
        assert_eq!(
            quit,
            json!({"op": "quit", "app": "demo", "workerId": 3, "pid": std::process::id()})
        );
        let socket = running.socket.clone();
        running.finished().await.expect("run returns after max_requests");
        assert!(!socket.exists(), "socket file removed");
    })
    .await;
}

#[tokio::test]
async fn join_waits_for_the_control_socket_and_a_stale_socket_is_replaced() {
    bounded(async {
        let dir = temp_dir();
        let control_path = dir.path().join("ctl.sock");
        let env = env(dir.path(), Some(&control_path));
        // A stale socket file left by a previous process.
        drop(std::os::unix::net::UnixListener::bind(&env.socket).unwrap());
        assert!(
            UnixStream::connect(&env.socket).await.is_err(),
            "nobody listens on the stale socket"
        );

        let mut running = spawn_builtin(env);
        // The worker replaced the stale socket with its own: it is up, and
        // trying to join a control socket that does not exist yet.
        timeout(STEP, async {
            while UnixStream::connect(&running.socket).await.is_err() {
                sleep(Duration::from_millis(10)).await; // the poll's interval
            }
        })
        .await
        .expect("the worker listening on the stale socket's path in time");
        // Not a synchronisation: the control socket coming up late is the
        // case under test; the worker must keep trying meanwhile.
        sleep(Duration::from_millis(300)).await;
        let mut control = FakeControl::start(control_path).await;
        assert_eq!(control.next().await["op"], "join");
        assert_eq!(get(&running.socket, "/ping").await.text(), "pong");
        running.shutdown();
        assert_eq!(control.next().await["op"], "quit");
        running.finished().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn a_refused_join_fails_the_run() {
    bounded(async {
        let dir = temp_dir();
        let control = FakeControl::answering(
            dir.path().join("ctl.sock"),
            StatusCode::FORBIDDEN,
            json!({"ok": false, "error": "unknown app"}),
        )
        .await;
        let running = spawn_builtin(env(dir.path(), Some(&control.path)));
        let socket = running.socket.clone();
        let error = running.finished().await.expect_err("join refused");
        assert!(error.to_string().contains("unknown app"), "{error}");
        assert!(!socket.exists(), "socket file removed");
    })
    .await;
}

#[test]
fn worker_env_from_variables() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).into())
    };
    let env = WorkerEnv::from_lookup(vars(&[
        ("RIP_WORKER_ID", "2"),
        ("RIP_SOCKET", "/tmp/x.2.sock"),
        ("RIP_CONTROL_SOCKET", "/tmp/x.ctl.sock"),
        ("RIP_APP", "x"),
        ("RIP_APP_DIR", "/srv/x"),
        ("RIP_ENTRY", "/srv/x/index.rip"),
        ("RIP_VERSION", "5"),
        ("RIP_MAX_REQUESTS", "100"),
        ("RIP_HOT_RELOAD", "module"),
    ]))
    .unwrap();
    assert_eq!(
        env,
        WorkerEnv {
            worker_id: 2,
            socket: "/tmp/x.2.sock".into(),
            control_socket: Some("/tmp/x.ctl.sock".into()),
            app: "x".into(),
            app_dir: "/srv/x".into(),
            entry: "/srv/x/index.rip".into(),
            version: 5,
            max_requests: Some(100),
            hot_reload: "module".into(),
        }
    );

    let minimal =
        WorkerEnv::from_lookup(vars(&[("RIP_WORKER_ID", "0"), ("RIP_SOCKET", "/s"), ("RIP_APP", "a")])).unwrap();
    assert_eq!(
        (minimal.control_socket, minimal.version, minimal.max_requests),
        (None, 0, None)
    );
    assert_eq!(minimal.hot_reload, "none");
    let unlimited = WorkerEnv::from_lookup(vars(&[
        ("RIP_WORKER_ID", "0"),
        ("RIP_SOCKET", "/s"),
        ("RIP_APP", "a"),
        ("RIP_MAX_REQUESTS", "0"),
    ]))
    .unwrap();
    assert_eq!(unlimited.max_requests, None);

    let error = |pairs| WorkerEnv::from_lookup(vars(pairs)).unwrap_err();
    assert!(error(&[("RIP_SOCKET", "/s"), ("RIP_APP", "a")]).contains("RIP_WORKER_ID"));
    assert!(error(&[("RIP_WORKER_ID", "0"), ("RIP_APP", "a")]).contains("RIP_SOCKET"));
    assert!(error(&[("RIP_WORKER_ID", "0"), ("RIP_SOCKET", "/s")]).contains("RIP_APP"));
    assert!(error(&[("RIP_WORKER_ID", "one"), ("RIP_SOCKET", "/s"), ("RIP_APP", "a")]).contains("RIP_WORKER_ID"));
    assert!(
        error(&[
            ("RIP_WORKER_ID", "0"),
            ("RIP_SOCKET", "/s"),
            ("RIP_APP", "a"),
            ("RIP_VERSION", "-1")
        ])
        .contains("RIP_VERSION")
    );
    assert!(
        error(&[
            ("RIP_WORKER_ID", "0"),
            ("RIP_SOCKET", "/s"),
            ("RIP_APP", "a"),
            ("RIP_HOT_RELOAD", "yes")
        ])
        .contains("RIP_HOT_RELOAD")
    );
}

// --- the Python worker ----------------------------------------------------------

/// Fails the test unless `python3` runs (CI checks for it before testing).
fn require_python() {
    let found = std::process::Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "python3 is needed to test tests/workers/py_worker.py");
}

/// The Python worker with its stdin and stdout piped, for its `/hold` route.
struct Python {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Python {
    fn spawn(dir: &Path, control: &Path) -> (Python, PathBuf) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workers/py_worker.py");
        let socket = dir.join("py.1.sock");
        let mut child = tokio::process::Command::new(script)
            .env("RIP_WORKER_ID", "1")
            .env("RIP_SOCKET", &socket)
            .env("RIP_CONTROL_SOCKET", control)
            .env("RIP_APP", "pyapp")
            .env("RIP_APP_DIR", dir)
            .env("RIP_ENTRY", dir.join("py_worker.py"))
            .env("RIP_VERSION", "4")
            .env("RIP_HOT_RELOAD", "none")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start tests/workers/py_worker.py");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        (Python { child, stdin, stdout }, socket)
    }

    /// Waits until a `/hold` request holds the worker's request slot.
    async fn holding(&mut self) {
        let line = timeout(STEP, self.stdout.next_line())
            .await
            .expect("a /hold request in flight in time")
            .expect("read the worker's stdout");
        assert_eq!(line.as_deref(), Some("holding"), "py_worker's stdout");
    }

    /// Lets the `/hold` request in flight answer.
    async fn release(&mut self) {
        self.stdin
            .write_all(b"release\n")
            .await
            .expect("write to py_worker's stdin");
        self.stdin.flush().await.expect("flush py_worker's stdin");
    }
}

fn terminate(child: &tokio::process::Child) {
    let pid = child.id().expect("child running");
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
}

/// Sends `raw` on a fresh connection and reads until the peer closes.
async fn raw_exchange(socket: &Path, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = UnixStream::connect(socket).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut answer = Vec::new();
    timeout(STEP, stream.read_to_end(&mut answer))
        .await
        .expect("answer in time")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn python_worker_follows_the_protocol() {
    require_python();
    bounded(async {
        let dir = temp_dir();
        let mut control = FakeControl::start(dir.path().join("ctl.sock")).await;
        let (mut python, socket) = Python::spawn(dir.path(), &control.path);
        let pid = python.child.id().unwrap();

        let join = control.next().await;
        assert_eq!(
            join,
            json!({"op": "join", "app": "pyapp", "workerId": 1, "pid": pid,
                   "socket": socket.to_str().unwrap(), "version": 4})
        );
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let mut conn = Conn::open(&socket).await;
        let ping = conn.get("/ping").await;
        assert_eq!(
            (ping.status, ping.text().as_str()),
            (StatusCode::OK, "pong from python")
        );
        assert_eq!(ping.headers["rip-worker-id"], "1");
        let whoami = conn.get("/whoami").await.json();
        assert_eq!(
            (&whoami["workerId"], &whoami["pid"], &whoami["version"], &whoami["lang"]),
            (&json!(1), &json!(pid), &json!(4), &json!("python"))
        );
        assert_eq!(conn.get("/nope").await.status, StatusCode::NOT_FOUND);
        let slept = conn.get("/sleep?ms=20").await;
        assert_eq!((slept.status, slept.text().as_str()), (StatusCode::OK, "slept 20"));
        let echo = conn
            .send(Method::POST, "/echo", Bytes::from_static(b"hello body"))
            .await;
        assert_eq!(echo.text(), "hello body");
        let chunked = raw_exchange(
            &socket,
            b"POST /echo HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
              5\r\nhello\r\n7\r\n chunks\r\n0\r\n\r\n",
        )
        .await;
        assert!(chunked.starts_with("HTTP/1.1 200"), "{chunked}");
        assert!(chunked.ends_with("\r\n\r\nhello chunks"), "{chunked}");

        // Busy: a second request while one is in flight.
        let held_socket = socket.clone();
        let held = tokio::spawn(async move { get(&held_socket, "/hold").await });
        python.holding().await;
        let busy = get(&socket, "/ping").await;
        assert!(busy.is_busy(), "{} {:?}", busy.status, busy.headers);
        assert!(
            !held.is_finished(),
            "the busy answer did not wait for the request in flight"
        );
        python.release().await;
        assert_eq!(held.await.unwrap().text(), "released");

        // SIGTERM with a request in flight: quit, finish it, exit 0.
        let held_socket = socket.clone();
        let held = tokio::spawn(async move { get(&held_socket, "/hold").await });
        python.holding().await;
        terminate(&python.child);
        let quit = control.next().await;
        assert_eq!(quit, json!({"op": "quit", "app": "pyapp", "workerId": 1, "pid": pid}));
        assert!(
            !held.is_finished(),
            "quit is sent before the request in flight finishes"
        );
        python.release().await;
        let held = held.await.unwrap();
        assert_eq!((held.status, held.text().as_str()), (StatusCode::OK, "released"));
        let status = timeout(STEP, python.child.wait())
            .await
            .expect("exits in time")
            .unwrap();
        assert!(status.success(), "{status}");
        assert!(!socket.exists(), "socket file removed");
    })
    .await;
}

/// The front door reading an answer must not wake the worker: a Unix socket
/// reports "writable" to its writer each time the peer reads, and a worker
/// registered for writability woke (and slept again) once per request for
/// nothing, the front door paying for the wake-up (docs/benchmarking.md).
/// Counted as the worker runtime's parks per request: one when it only
/// waits for the next request, two when each read of its answer wakes it.
#[test]
fn reading_an_answer_does_not_wake_the_worker() {
    use std::io::{BufRead, BufReader, Read, Write};

    const REQUESTS: u64 = 100;
    let dir = temp_dir();
    let socket = dir.path().join("w.0.sock");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let metrics = runtime.metrics();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let env = WorkerEnv::standalone(socket.clone(), "demo");
    let handler = Builtin::new(&env);
    let worker = std::thread::spawn(move || {
        runtime.block_on(worker::run(env, handler, async move {
            let _ = tokio::task::spawn_blocking(move || stopped.recv()).await;
        }))
    });
    // Up to STEP (10 s) for the socket to come up.
    let mut attempts = 0;
    let stream = loop {
        match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(stream) => break stream,
            Err(_) if attempts < 2000 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("worker socket never came up: {e}"),
        }
    };
    stream.set_read_timeout(Some(STEP)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut exchange = || {
        writer.write_all(b"GET /ping HTTP/1.1\r\nhost: worker\r\n\r\n").unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        reader.read_exact(&mut vec![0; length]).unwrap();
        // Time for a wake-up caused by that read to happen (and be counted)
        // before the next request wakes the worker anyway.
        std::thread::sleep(Duration::from_millis(2));
    };
    exchange();
    let parks_before = metrics.worker_park_count(0);
    for _ in 0..REQUESTS {
        exchange();
    }
    let parks = metrics.worker_park_count(0) - parks_before;
    stop.send(()).unwrap();
    worker.join().unwrap().unwrap();
    // Registered for both directions this is about 2 per request.
    assert!(
        parks <= REQUESTS * 3 / 2,
        "the worker parked {parks} times for {REQUESTS} requests: reading its answers wakes it"
    );
}
