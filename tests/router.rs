//! One front door, many apps, routed by host: the library the platform
//! runs (`server::AppServer`, `frontdoor::Routes`), in process, with real
//! worker processes started through the built binary.
//!
//! Each app is a `builtin:hello` under its own name and socket prefix (in a
//! short temporary directory), with `RIP_HOME` in a temporary directory.
//! Waits poll for their condition with a deadline; a held request is known
//! to be in its worker's slot by its echo, never by timing.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rip_server::cli::{self, Command};
use rip_server::config::ServeConfig;
use rip_server::config::hosts::HostName;
use rip_server::frontdoor::{FrontDoor, Routes};
use rip_server::net::transport::UnixTransport;
use rip_server::observe::status::StatusSnapshot;
use rip_server::server::{self, AppHandle, AppServer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;

/// How long one expected event (a start, a reply, a stop) may take.
const STEP: Duration = Duration::from_secs(15);

/// Temporary places the test owns: `RIP_HOME` and a short socket directory
/// (Unix socket paths are limited to about 100 bytes).
struct Places {
    home: tempfile::TempDir,
    sockets: tempfile::TempDir,
}

impl Places {
    fn new() -> Places {
        Places {
            home: tempfile::tempdir().expect("a temporary RIP_HOME"),
            sockets: tempfile::Builder::new()
                .prefix("rr")
                .tempdir_in("/tmp")
                .expect("a short socket directory"),
        }
    }

    /// The config of a `builtin:hello` app named `name`, built as the
    /// command line builds it (with `RIP_HOME` here) from `words`.
    fn config(&self, name: &str, words: &[&str]) -> ServeConfig {
        let prefix = self.sockets.path().join(name);
        let mut args: Vec<String> = ["builtin:hello", "http:0", "--bind=127.0.0.1", "--no-access-log"]
            .iter()
            .map(|w| (*w).to_owned())
            .collect();
        args.push(format!("--socket-prefix={}", prefix.display()));
        args.extend(words.iter().map(|w| (*w).to_owned()));
        let home = self.home.path().to_owned();
        let env = move |key: &str| (key == "RIP_HOME").then(|| home.display().to_string());
        let Command::Serve(config) = cli::parse(&args, &env).expect("a valid command line") else {
            panic!("{args:?} is not a serve command");
        };
        let mut config = *config;
        config.app_name = name.to_owned();
        config
    }
}

/// The built binary, through which workers start.
fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rip-server"))
}

/// Starts the app and waits until all its workers have joined.
async fn start(config: &ServeConfig, port: u16) -> (AppServer, AppHandle) {
    let program = server::preflight(config).await.expect("preflight");
    let app = AppServer::start(config, program, &exe(), vec![port])
        .await
        .unwrap_or_else(|e| panic!("{}: {}", config.app_name, e.message()));
    let handle = app.handle();
    let workers = config.workers as usize;
    status_until(&handle, "all workers joined", |s| s.workers == workers).await;
    (app, handle)
}

/// Polls the app's status until `done` holds; panics after [`STEP`].
async fn status_until(app: &AppHandle, what: &str, done: impl Fn(&StatusSnapshot) -> bool) -> StatusSnapshot {
    let polling = async {
        loop {
            if let Some(status) = app.status().await
                && done(&status)
            {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(STEP, polling)
        .await
        .unwrap_or_else(|_| panic!("{}: not {what} within {STEP:?}", app.name()))
}

/// Stops the apps and the listener, and waits for everything to end.
async fn stop_all(apps: Vec<AppServer>, listener: watch::Sender<bool>) {
    let _ = listener.send(true);
    for app in &apps {
        app.handle().stop();
    }
    for app in apps {
        let name = app.handle().name().to_owned();
        timeout(STEP, app.wait())
            .await
            .unwrap_or_else(|_| panic!("{name}: did not stop within {STEP:?}"));
    }
}

/// A listener on a free loopback port serving `routes`.
async fn listen(
    config: &ServeConfig,
    routes: Routes<UnixTransport>,
) -> (u16, Arc<FrontDoor<UnixTransport>>, watch::Sender<bool>) {
    let listener = rip_server::net::listen::bind_tcp(IpAddr::V4(Ipv4Addr::LOCALHOST), 0).expect("bind");
    let port = listener.local_addr().expect("local address").port();
    let front_door = Arc::new(FrontDoor::with_routes(server::listener_config(config), routes, 1));
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let shutdown = async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    };
    tokio::spawn(rip_server::frontdoor::run(listener, front_door.clone(), shutdown));
    (port, front_door, stop_tx)
}

/// A response as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Sends `request` on `stream` and reads one `Content-Length` response.
async fn exchange(stream: &mut TcpStream, request: &str) -> Answer {
    let reading = async {
        stream.write_all(request.as_bytes()).await.expect("write the request");
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).into_owned();
                let mut answer = Answer {
                    status: head
                        .split(' ')
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .expect("a status line"),
                    head,
                    body: String::new(),
                };
                let length: usize = answer
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("no Content-Length: {answer:?}"));
                while received.len() < end + 4 + length {
                    let n = stream.read(&mut buf).await.expect("read the body");
                    assert!(n > 0, "closed mid-body: {answer:?}");
                    received.extend_from_slice(&buf[..n]);
                }
                answer.body = String::from_utf8_lossy(&received[end + 4..end + 4 + length]).into_owned();
                return answer;
            }
            let n = stream.read(&mut buf).await.expect("read the head");
            assert!(
                n > 0,
                "closed before a response: {:?}",
                String::from_utf8_lossy(&received)
            );
            received.extend_from_slice(&buf[..n]);
        }
    };
    timeout(STEP, reading)
        .await
        .unwrap_or_else(|_| panic!("no answer to {request:?} within {STEP:?}"))
}

async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.expect("connect")
}

/// `GET path` with `Host: host` on a new connection.
async fn get(port: u16, host: &str, path: &str) -> Answer {
    exchange(
        &mut connect(port).await,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    )
    .await
}

/// Which app answered `/whoami`.
fn app_of(answer: &Answer) -> String {
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.json()["app"].as_str().expect("an app name").to_owned()
}

fn host(name: &str) -> HostName {
    HostName::parse(name).expect("a valid host name")
}

/// A request through the front door that holds its worker's one slot until
/// released: a chunked `POST /echo` whose body stays open. The built-in app
/// echoes as it reads, so the echo of the first chunk proves the request is
/// in the slot.
struct Held {
    stream: TcpStream,
    received: Vec<u8>,
}

impl Held {
    async fn hold(port: u16, host: &str) -> Held {
        let mut stream = connect(port).await;
        let head = format!("POST /echo HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nheld\r\n");
        stream.write_all(head.as_bytes()).await.expect("write the held request");
        let mut held = Held {
            stream,
            received: Vec::new(),
        };
        held.read_until("the echo of the first chunk", |r| {
            r.windows(4)
                .position(|w| w == b"\r\n\r\n")
                .is_some_and(|end| r[end..].windows(4).any(|w| w == b"held"))
        })
        .await;
        assert!(
            held.received.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&held.received)
        );
        held
    }

    async fn release(mut self) {
        self.stream.write_all(b"0\r\n\r\n").await.expect("end the held body");
        self.read_until("the end of the echo", |r| r.ends_with(b"0\r\n\r\n"))
            .await;
    }

    async fn read_until(&mut self, what: &str, done: impl Fn(&[u8]) -> bool) {
        let mut buf = [0u8; 4096];
        while !done(&self.received) {
            let n = timeout(STEP, self.stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("held request: no {what} within {STEP:?}"))
                .expect("read the held request's answer");
            assert!(n > 0, "held request closed before {what}");
            self.received.extend_from_slice(&buf[..n]);
        }
    }
}

/// Two apps behind one listener: `a.test` → alpha, `*.b.test` → beta.
struct TwoApps {
    _places: Places,
    alpha: AppHandle,
    beta: AppHandle,
    apps: Vec<AppServer>,
    port: u16,
    front_door: Arc<FrontDoor<UnixTransport>>,
    stop_listener: watch::Sender<bool>,
}

impl TwoApps {
    async fn start(alpha_words: &[&str]) -> TwoApps {
        let places = Places::new();
        let alpha_config = places.config("alpha", alpha_words);
        let beta_config = places.config("beta", &["w:1"]);
        // The port first: each app's `/status` names it.
        let listener_config = alpha_config.clone();
        let (port, front_door, stop_listener) = listen(&listener_config, Routes::new()).await;
        let (alpha_app, alpha) = start(&alpha_config, port).await;
        let (beta_app, beta) = start(&beta_config, port).await;
        let mut routes = Routes::new();
        routes.insert(host("a.test"), alpha.proxy());
        routes.insert(host("*.b.test"), beta.proxy());
        front_door.set_routes(routes);
        TwoApps {
            _places: places,
            alpha,
            beta,
            apps: vec![alpha_app, beta_app],
            port,
            front_door,
            stop_listener,
        }
    }

    async fn stop(self) {
        stop_all(self.apps, self.stop_listener).await;
    }
}

#[tokio::test]
async fn requests_reach_the_app_their_host_names() {
    let two = TwoApps::start(&["w:1"]).await;
    let port = two.port;

    // Fast path (origin form, bodyless).
    assert_eq!(app_of(&get(port, "a.test", "/whoami").await), "alpha");
    assert_eq!(app_of(&get(port, "x.b.test:8080", "/whoami").await), "beta");
    assert_eq!(
        app_of(&get(port, "A.Test.", "/whoami").await),
        "alpha",
        "lowercased, trailing dot dropped"
    );
    // hyper's path: an absolute-form target's authority is the host.
    let absolute = exchange(
        &mut connect(port).await,
        "GET http://y.b.test/whoami HTTP/1.1\r\nHost: a.test\r\n\r\n",
    )
    .await;
    assert_eq!(app_of(&absolute), "beta");
    // `/status` is the routed app's own.
    let status = get(port, "z.b.test", "/status").await;
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(status.json()["app"], "beta");
    assert_eq!(get(port, "a.test", "/server").await.body, "ok");

    // No route: 404, and no app counts the request.
    let before = (two.alpha.status().await.unwrap(), two.beta.status().await.unwrap());
    for (host, path) in [
        ("nope.test", "/whoami"),
        ("b.test", "/whoami"),
        ("a.x.b.test", "/whoami"),
        ("nope.test", "/status"),
    ] {
        let answer = get(port, host, path).await;
        assert_eq!(answer.status, 404, "{host}{path}: {answer:?}");
        assert_eq!(answer.body, "Host not found");
        assert!(
            answer
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/plain"))
        );
    }
    let hyper_404 = exchange(
        &mut connect(port).await,
        "GET http://nope.test/whoami HTTP/1.1\r\nHost: a.test\r\n\r\n",
    )
    .await;
    assert_eq!((hyper_404.status, hyper_404.body.as_str()), (404, "Host not found"));
    let after = (two.alpha.status().await.unwrap(), two.beta.status().await.unwrap());
    assert_eq!(
        before.0.counters.requests, after.0.counters.requests,
        "alpha counted a 404"
    );
    assert_eq!(
        before.1.counters.requests, after.1.counters.requests,
        "beta counted a 404"
    );
    two.stop().await;
}

#[tokio::test]
async fn a_full_queue_on_one_app_never_queues_another() {
    let two = TwoApps::start(&[
        "w:1",
        "--max-queue=2",
        "--queue-timeout-ms=60000",
        "--read-timeout-ms=60000",
    ])
    .await;
    let port = two.port;

    // alpha's only worker is held, and its queue filled.
    let held = Held::hold(port, "a.test").await;
    let queued: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { app_of(&get(port, "a.test", "/whoami").await) }))
        .collect();
    status_until(&two.alpha, "with a full queue", |s| s.queue.depth == 2).await;
    let refused = get(port, "a.test", "/whoami").await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.header("rip-reason"), Some("queue_full"));

    // beta answers at once, every time, and never queues.
    for _ in 0..20 {
        assert_eq!(app_of(&get(port, "w.b.test", "/whoami").await), "beta");
    }
    let beta = two.beta.status().await.expect("beta's status");
    assert_eq!(beta.queue.depth, 0);
    assert_eq!(beta.counters.queued, 0, "beta queued a request");
    assert!(beta.counters.requests >= 20);
    // ... while alpha was full the whole time.
    let alpha = two.alpha.status().await.expect("alpha's status");
    assert_eq!((alpha.queue.depth, alpha.inflight), (2, 1));
    assert_eq!(alpha.counters.queue_full, 1);

    held.release().await;
    for request in queued {
        assert_eq!(request.await.expect("a queued request"), "alpha");
    }
    two.stop().await;
}

#[tokio::test]
async fn a_new_route_table_takes_effect_for_the_next_request() {
    let two = TwoApps::start(&["w:1"]).await;
    let port = two.port;
    let mut conn = connect(port).await;
    let ask = |host: &str| format!("GET /whoami HTTP/1.1\r\nHost: {host}\r\n\r\n");

    assert_eq!(exchange(&mut conn, &ask("c.test")).await.status, 404);
    // Add a host at run time, on the same kept-alive connection.
    let mut routes = (*two.front_door.routes()).clone();
    routes.insert(host("c.test"), two.beta.proxy());
    two.front_door.set_routes(routes);
    assert_eq!(app_of(&exchange(&mut conn, &ask("c.test")).await), "beta");
    assert_eq!(app_of(&exchange(&mut conn, &ask("a.test")).await), "alpha");

    // Remove one, and give every other host a default app.
    let mut routes = (*two.front_door.routes()).clone();
    routes.remove(&host("a.test"));
    two.front_door.set_routes(routes.clone());
    assert_eq!(exchange(&mut conn, &ask("a.test")).await.status, 404);
    routes.set_default(Some(two.alpha.proxy()));
    two.front_door.set_routes(routes);
    assert_eq!(app_of(&exchange(&mut conn, &ask("a.test")).await), "alpha");
    assert_eq!(app_of(&exchange(&mut conn, &ask("anything.test")).await), "alpha");
    assert_eq!(app_of(&exchange(&mut conn, &ask("q.b.test")).await), "beta");
    two.stop().await;
}

#[tokio::test]
async fn a_stopped_app_ends_and_removes_its_control_socket() {
    let places = Places::new();
    let config = places.config("solo", &["w:2"]);
    let (port, front_door, stop_listener) = listen(&config, Routes::new()).await;
    let (app, handle) = start(&config, port).await;
    front_door.set_routes(Routes::every_host(handle.proxy()));
    assert_eq!(app_of(&get(port, "whatever", "/whoami").await), "solo");
    assert!(handle.control_socket().exists());

    handle.stop();
    assert!(handle.is_stopping());
    timeout(STEP, handle.stopped()).await.expect("stopped within a step");
    assert!(!handle.control_socket().exists(), "the control socket is removed");
    assert!(handle.status().await.is_none(), "no status once stopped");
    assert!(handle.admin(rip_server::runtime::Admin::ScaleBy(1)).await.is_err());
    stop_all(vec![app], stop_listener).await;
}
