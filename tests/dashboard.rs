//! The dashboard in a real headless browser, driven through the DevTools
//! protocol: the platform's API is served on a loopback port with an
//! in-memory control, two apps are deployed through it, and Chromium
//! (Debian's `chromium-headless-shell`, or `chromium`; `RIP_TEST_BROWSER`
//! names another) logs in with `/?token=`, shows the apps, follows a
//! counter between two polls, sends a button press to the API, shows what
//! apps supply as text, and says STALE once the API is gone. A second test
//! drives the dashboard of a real `rip-server platform` process running a
//! real app: its traffic, `+1 worker` and restart reach real worker
//! processes. Screenshots are saved under `CARGO_TARGET_TMPDIR` for review.
//!
//! A missing browser fails the test with what to install: it is never
//! skipped. The browser runs in a process group of its own (Debian's
//! launcher is a shell script that does not `exec`), killed by its id
//! when the test ends, however it ends.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::{env, fs, thread};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rip_server::platform::api::{self, Api, ApiConfig};
use rip_server::platform::control::{AppControl as _, AppStatus, FakeControl, LiveApp, LiveWorker};
use rip_server::platform::token;
use rustix::process::{Pid, Signal, kill_process_group};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any one wait may take (a cold browser start is the slowest).
const LIMIT: Duration = Duration::from_secs(30);
/// What an app could smuggle into the page if it were inserted as HTML.
const PAYLOAD: &str = "<img src=x onerror=window.__pwned=1>";
/// An environment value: it must never reach the page.
const ENV_VALUE: &str = "planted-env-value-7d41";

// --- the API, served on a runtime of its own ---------------------------------

/// The API on a loopback port, on its own thread and runtime: stopping it
/// drops the runtime, so the browser's keep-alive connections close too,
/// as when the platform process ends.
struct ApiServer {
    addr: SocketAddr,
    token: String,
    api: Arc<Api<FakeControl>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
    _home: tempfile::TempDir,
}

impl ApiServer {
    fn start() -> ApiServer {
        let home = tempfile::tempdir().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let token = token::load_or_create(home.path()).unwrap();
        let config = ApiConfig {
            home: home.path().to_owned(),
            admin: addr,
            token: token.clone(),
            default_workers: 1,
        };
        let api = Arc::new(Api::open(config, FakeControl::new(), Arc::default()).unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = api.clone();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                api::run(listener, served, async move {
                    let _ = stopped.await;
                })
                .await;
            });
            // Dropping the runtime ends every connection task still open.
            drop(runtime);
        });
        ApiServer {
            addr,
            token: token.as_str().to_owned(),
            api,
            stop: Some(stop),
            thread: Some(thread),
            _home: home,
        }
    }

    fn control(&self) -> &FakeControl {
        self.api.control()
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the API thread ends cleanly");
        }
    }

    /// One request with the bearer token, on a fresh connection.
    async fn call(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = timeout(LIMIT, sender.send_request(request))
            .await
            .expect("the API answers")
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Deploys an app from a fresh directory under `parent`; asserts 201.
    async fn deploy(&self, parent: &Path, name: &str, workers: u32, hosts: &[&str], env: Value) {
        let dir = parent.join(name);
        fs::create_dir(&dir).unwrap();
        // Owned by us and writable by us only, as the platform demands.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("index.ts"), "export default () => new Response('hi')\n").unwrap();
        let body = json!({"name": name, "directory": dir, "workers": workers, "hosts": hosts, "env": env});
        let (status, answer) = self.call("POST", "/api/apps", body).await;
        assert_eq!(status, StatusCode::CREATED, "deploy {name}: {answer}");
    }

    async fn live(&self, name: &str) -> LiveApp {
        self.control().live(name).await.expect("the control knows the app")
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// --- the browser ------------------------------------------------------------------

/// The browser binary: `RIP_TEST_BROWSER`, else `chromium-headless-shell`
/// or `chromium` on `PATH`. When there is none and the tests run as root
/// (as on a fresh CI machine), Debian's `chromium-headless-shell` is
/// installed first, so `cargo test --workspace` alone gets what it needs.
fn browser_binary() -> PathBuf {
    if let Some(named) = env::var_os("RIP_TEST_BROWSER") {
        return PathBuf::from(named);
    }
    if let Some(found) = browser_on_path() {
        return found;
    }
    let root = rustix::process::geteuid().is_root();
    if root {
        let installed = std::process::Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && apt-get install -y -qq chromium-headless-shell",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .status();
        if let Some(found) = browser_on_path() {
            return found;
        }
        panic!(
            "installing chromium-headless-shell with apt-get failed ({installed:?}); set RIP_TEST_BROWSER to a Chromium binary"
        );
    }
    panic!(
        "the dashboard test needs a headless Chromium and found none: install Debian's \
         chromium-headless-shell (`apt-get install -y chromium-headless-shell`, as root; the \
         tests do it themselves when run as root), or set RIP_TEST_BROWSER to a Chromium binary"
    );
}

fn browser_on_path() -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    ["chromium-headless-shell", "chromium"].iter().find_map(|name| {
        env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// A headless Chromium with the DevTools protocol on a port of its choice.
/// Dropping it kills its whole process group.
struct Browser {
    child: Child,
    devtools: String,
    stderr: Arc<Mutex<Vec<String>>>,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn launch() -> Browser {
        let binary = browser_binary();
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            // Whatever it writes besides the profile stays in the temporary
            // directory too.
            .env("HOME", profile.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (found, devtools) = tokio::sync::oneshot::channel::<String>();
        let pipe = child.stderr.take().unwrap();
        let lines = stderr.clone();
        // Reads stderr to its end (a full pipe would stall the browser),
        // keeping it for failure messages and handing over the DevTools URL.
        thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("DevTools listening on ")
                    && let Some(found) = found.take()
                {
                    let _ = found.send(url.trim().to_owned());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let mut browser = Browser {
            child,
            devtools: String::new(),
            stderr,
            _profile: profile,
        };
        match timeout(LIMIT, devtools).await {
            Ok(Ok(url)) => browser.devtools = url,
            _ => panic!(
                "{} printed no DevTools URL within {LIMIT:?}; its stderr:\n{}",
                binary.display(),
                browser.stderr.lock().unwrap().join("\n")
            ),
        }
        browser
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group is the browser's own (`process_group(0)`): its launcher
        // script, the browser and every helper process it started.
        let _ = kill_process_group(Pid::from_child(&self.child), Signal::KILL);
        let _ = self.child.wait();
    }
}

// --- a small DevTools protocol client ------------------------------------------------

/// One WebSocket to the browser, one page attached in flat mode: commands
/// carry the page's `sessionId`; events are kept for the error checks.
struct Cdp {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: Option<String>,
    events: Vec<Value>,
}

impl Cdp {
    /// A new blank page, attached, with the page, runtime and log events on.
    async fn open_page(devtools: &str) -> Cdp {
        let mut cdp = Cdp::connect(devtools).await;
        let target = cdp.send("Target.createTarget", json!({"url": "about:blank"})).await;
        let attached = cdp
            .send(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        cdp.session = Some(attached["sessionId"].as_str().expect("a session").to_owned());
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            cdp.send(domain, json!({})).await;
        }
        cdp
    }

    async fn connect(url: &str) -> Cdp {
        let (socket, _) = timeout(LIMIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("the DevTools socket accepts within the limit")
            .expect("the DevTools socket accepts");
        Cdp {
            socket,
            next_id: 0,
            session: None,
            events: Vec::new(),
        }
    }

    /// Sends a command and waits for its answer: its `result`, or its
    /// `error`. Events read meanwhile are kept.
    async fn try_send(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        self.socket.send(Message::text(message.to_string())).await.unwrap();
        let events = &mut self.events;
        let socket = &mut self.socket;
        let answer = timeout(LIMIT, async {
            loop {
                let frame = socket.next().await.expect("the browser keeps the socket open").unwrap();
                let Message::Text(text) = frame else { continue };
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if value["id"] == id {
                    return value;
                }
                if value.get("method").is_some() {
                    events.push(value);
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} within {LIMIT:?}"));
        match answer.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(answer["result"].clone()),
        }
    }

    async fn send(&mut self, method: &str, params: Value) -> Value {
        self.try_send(method, params)
            .await
            .unwrap_or_else(|e| panic!("{method} failed: {e}"))
    }

    /// Evaluates `expression` in the page (promises awaited): its value,
    /// or why it threw.
    async fn try_eval(&mut self, expression: &str) -> Result<Value, String> {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let result = self
            .try_send("Runtime.evaluate", params)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(exception.to_string());
        }
        Ok(result["result"]["value"].clone())
    }

    async fn eval(&mut self, expression: &str) -> Value {
        self.try_eval(expression)
            .await
            .unwrap_or_else(|e| panic!("{expression} threw: {e}"))
    }

    /// Evaluates `expression` every 50 ms until it is truthy; fails after
    /// [`LIMIT`] with the last value and the page's errors.
    async fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let mut last = Ok(Value::Null);
        let waited = timeout(LIMIT, async {
            loop {
                last = self.try_eval(expression).await;
                if let Ok(value) = &last
                    && truthy(value)
                {
                    return value.clone();
                }
                sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            panic!(
                "timed out after {LIMIT:?} waiting for {what} ({expression}); last: {last:?}; page errors: {:?}",
                self.errors()
            )
        })
    }

    async fn navigate(&mut self, url: &str) {
        let result = self.send("Page.navigate", json!({"url": url})).await;
        assert!(result.get("errorText").is_none(), "navigating to {url}: {result}");
    }

    /// The page's console errors, uncaught exceptions and error log
    /// entries (a refused script, a policy violation, a failed load) seen
    /// so far.
    fn errors(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for event in &self.events {
            let params = &event["params"];
            match event["method"].as_str() {
                Some("Runtime.exceptionThrown") => errors.push(format!("exception: {}", params["exceptionDetails"])),
                Some("Runtime.consoleAPICalled") if matches!(params["type"].as_str(), Some("error" | "assert")) => {
                    errors.push(format!("console.{}: {}", params["type"], params["args"]))
                }
                Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                    errors.push(format!("log: {} ({})", params["entry"]["text"], params["entry"]["url"]))
                }
                _ => {}
            }
        }
        errors
    }

    /// Saves a PNG of the whole page to `CARGO_TARGET_TMPDIR/<name>` and
    /// prints where.
    async fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self
            .send(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = decode_base64(shot["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        fs::write(&path, &png).unwrap();
        println!("dashboard screenshot: {}", path.display());
        path
    }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Standard base64 (the screenshot's encoding).
fn decode_base64(text: &str) -> Vec<u8> {
    let sextet = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut bits = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            bits |= sextet(c) << (18 - 6 * i);
        }
        let whole = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
        out.extend_from_slice(&whole[..chunk.len() - 1]);
    }
    out
}

// --- the test ----------------------------------------------------------------------------

/// A JavaScript expression: the text of `field` in app `app`'s card.
fn text_of(app: &str, field: &str) -> String {
    format!(r#"document.querySelector('section.app[data-app="{app}"] [data-field="{field}"]')?.textContent"#)
}

fn worker(pid: u32, state: &str, served: u64) -> LiveWorker {
    LiveWorker {
        pid,
        state: state.to_owned(),
        version: 1,
        served,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    // The browser first: without one the test fails before anything else.
    let browser = Browser::launch().await;
    let mut server = ApiServer::start();
    let apps_parent = tempfile::tempdir().unwrap();
    let env_key = "<b>bold-key</b>";
    server
        .deploy(
            apps_parent.path(),
            "alpha",
            2,
            &["alpha.test"],
            json!({env_key: ENV_VALUE, "PLAIN": ENV_VALUE}),
        )
        .await;
    server
        .deploy(
            apps_parent.path(),
            "beta",
            1,
            &["beta.test", "www.beta.test"],
            json!({}),
        )
        .await;
    // What the apps are doing, as a real control would report it.
    let mut alpha = server.live("alpha").await;
    alpha.pool = vec![worker(4101, "idle", 7), worker(4102, PAYLOAD, 3)];
    alpha.queue.depth = 3;
    alpha.queue.max = 64;
    alpha.counters.requests = 100;
    alpha.counters.server_errors = 2;
    server.control().set_live("alpha", alpha.clone());
    let mut beta = server.live("beta").await;
    beta.status = AppStatus::Error;
    beta.error = Some(format!("cannot start: {PAYLOAD}"));
    beta.pool.clear();
    server.control().set_live("beta", beta);
    server
        .api
        .logs()
        .ring("alpha")
        .push(&format!("listening on alpha.sock\n{PAYLOAD}\n"));

    let mut cdp = Cdp::open_page(&browser.devtools).await;
    cdp.send(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;

    // (a) The login URL: the cookie is set, the token leaves the address
    // bar, the page shows both apps, with no error.
    let origin = format!("http://{}", server.addr);
    cdp.navigate(&format!("{origin}/?token={}", server.token)).await;
    cdp.wait_for(
        "both apps on the page",
        "document.querySelectorAll('section.app').length === 2 && \
         document.getElementById('updated').textContent !== 'never'",
    )
    .await;
    assert_eq!(cdp.eval("location.href").await, json!(format!("{origin}/")));
    assert_eq!(cdp.eval("document.cookie").await, json!(""), "the cookie is HttpOnly");
    let html = cdp.eval("document.documentElement.outerHTML").await;
    let html = html.as_str().unwrap();
    assert!(!html.contains(&server.token), "the page holds the token");
    assert!(!html.contains(ENV_VALUE), "the page shows an env value");
    assert_eq!(
        cdp.eval("[...document.querySelectorAll('section.app')].map(s => s.dataset.app)")
            .await,
        json!(["alpha", "beta"])
    );
    assert_eq!(
        cdp.eval(&text_of("beta", "hosts")).await,
        json!("beta.test, www.beta.test")
    );
    assert_eq!(cdp.eval(&text_of("alpha", "queue")).await, json!("3 / 64"));
    assert_eq!(cdp.eval(&text_of("alpha", "requests")).await, json!("100"));
    assert_eq!(cdp.eval(&text_of("alpha", "version")).await, json!("1"));
    assert_eq!(cdp.eval(&text_of("beta", "status")).await, json!("error"));
    assert_eq!(
        cdp.eval("document.querySelectorAll('section.app[data-app=\"alpha\"] tbody tr').length")
            .await,
        json!(2)
    );
    assert_eq!(cdp.errors(), Vec::<String>::new(), "errors on the page");

    // The same page polling every 300 ms (`?poll=`): the login above
    // redirects to the bare `/`, which polls every 5 s.
    cdp.navigate(&format!("{origin}/?poll=300")).await;
    cdp.wait_for(
        "the page polling every 300 ms",
        "document.getElementById('poll-interval').textContent === '300 ms' && \
         document.querySelectorAll('section.app').length === 2",
    )
    .await;

    // (b) A counter changes between two polls: the totals follow, and the
    // rates computed from two polls become positive. A rate lasts one poll
    // (the next sees no change), so the page records every value it shows.
    cdp.wait_for("a first rate", &format!("{} === '0.00'", text_of("alpha", "rps")))
        .await;
    cdp.eval(
        r#"window.__rates = [];
        for (const field of ['rps', 'eps']) {
            const cell = document.querySelector(`section.app[data-app="alpha"] [data-field="${field}"]`);
            new MutationObserver(() => window.__rates.push(`${field} ${cell.textContent}`))
                .observe(cell, {childList: true, characterData: true, subtree: true});
        }
        true"#,
    )
    .await;
    alpha.counters.requests = 1000;
    alpha.counters.server_errors = 12;
    alpha.counters.restarts = 4;
    server.control().set_live("alpha", alpha.clone());
    cdp.wait_for(
        "the new counters",
        &format!(
            "{} === '1000' && {} === '4'",
            text_of("alpha", "requests"),
            text_of("alpha", "restarts"),
        ),
    )
    .await;
    cdp.wait_for(
        "positive rates",
        "['rps', 'eps'].every(f => window.__rates.some(r => r.startsWith(f + ' ') && parseFloat(r.slice(4)) > 0))",
    )
    .await;

    // (c) "+1 worker" reaches the API with the cookie (same origin, so the
    // Origin check passes), and the page shows the new pool.
    cdp.eval(r#"document.querySelector('section.app[data-app="alpha"] button[data-action="scale-up"]').click(); true"#)
        .await;
    let clicked = timeout(LIMIT, async {
        loop {
            if server.control().calls().iter().any(|c| c == "scale alpha 3") {
                return;
            }
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        clicked.is_ok(),
        "the click never reached the API; calls: {:?}; page errors: {:?}",
        server.control().calls(),
        cdp.errors()
    );
    cdp.wait_for(
        "three workers shown",
        &format!(
            "{} === '3 of 3' && document.getElementById('notice').textContent === 'alpha: scaled to 3 workers'",
            text_of("alpha", "workers")
        ),
    )
    .await;

    // (d) What apps supply is text: the markup shows as written, runs
    // nothing, adds no element.
    let log = cdp.eval(&text_of("alpha", "log")).await;
    assert!(log.as_str().unwrap().contains(PAYLOAD), "{log}");
    let error = cdp.eval(&text_of("beta", "error")).await;
    assert!(error.as_str().unwrap().contains(PAYLOAD), "{error}");
    let env_keys = cdp.eval(&text_of("alpha", "env")).await;
    assert!(env_keys.as_str().unwrap().contains(env_key), "{env_keys}");
    let states = cdp.eval(&text_of("alpha", "states")).await;
    assert!(states.as_str().unwrap().contains(PAYLOAD), "{states}");
    assert_eq!(
        cdp.eval("document.querySelectorAll('main img, main b').length").await,
        json!(0)
    );
    assert_eq!(cdp.eval("typeof window.__pwned").await, json!("undefined"));
    assert_eq!(cdp.errors(), Vec::<String>::new(), "errors on the page");
    assert_eq!(cdp.eval("document.getElementById('stale').hidden").await, json!(true));
    let live = cdp.screenshot("dashboard-screenshot.png").await;

    // (e) The API goes away: the page says STALE, visibly.
    server.stop();
    cdp.wait_for(
        "the stale banner",
        "!document.getElementById('stale').hidden && \
         getComputedStyle(document.getElementById('stale')).display !== 'none'",
    )
    .await;
    let reason = cdp.eval("document.getElementById('stale-reason').textContent").await;
    assert_eq!(reason, json!("cannot reach it"));
    // The last figures stay on the page.
    assert_eq!(cdp.eval(&text_of("alpha", "requests")).await, json!("1000"));

    // (f) Screenshots for review.
    let stale = cdp.screenshot("dashboard-stale-screenshot.png").await;
    assert!(fs::metadata(&live).unwrap().len() > 1000 && fs::metadata(&stale).unwrap().len() > 1000);
    // Only the button pressed reached the control.
    assert_eq!(
        server.control().calls(),
        ["deploy alpha", "deploy beta", "scale alpha 3"]
    );
    drop(browser);
}

// --- the dashboard of a real `rip-server platform` --------------------------

/// A `rip-server platform` process on a temporary home, its apps on a
/// variant of their own; killed (with its workers) on drop.
struct RealPlatform {
    child: Child,
    api: u16,
    http: u16,
    token: String,
    home: tempfile::TempDir,
}

impl RealPlatform {
    fn start() -> RealPlatform {
        let home = tempfile::tempdir().unwrap();
        let variant = format!("dash{}", std::process::id());
        let mut child = Command::new(env!("CARGO_BIN_EXE_rip-server"))
            .args([
                "platform",
                "http:0",
                "--api-port=0",
                &format!("--variant={variant}"),
                "w:1",
            ])
            .env("RIP_HOME", home.path())
            .env_remove("PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn rip-server platform");
        let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
        let out = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let (mut api, mut http, mut token) = (0, 0, String::new());
        while http == 0 {
            let line = lines_rx
                .recv_timeout(LIMIT)
                .expect("the platform prints its start lines");
            if let Some(url) = line.split("login: http://").nth(1) {
                let (addr, t) = url.split_once("/?token=").expect("a login URL");
                api = addr.rsplit(':').next().unwrap().parse().unwrap();
                token = t.to_owned();
            }
            if let Some(rest) = line.split("apps on http://localhost:").nth(1) {
                http = rest.split(' ').next().unwrap().parse().unwrap();
            }
        }
        thread::spawn(move || while lines_rx.recv().is_ok() {});
        RealPlatform {
            child,
            api,
            http,
            token,
            home,
        }
    }

    /// One request to `port` on a fresh connection.
    async fn request(
        port: u16,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Value,
    ) -> (StatusCode, Value) {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let body = if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(body.to_string())
        };
        let response = timeout(LIMIT, sender.send_request(request.body(Full::new(body)).unwrap()))
            .await
            .expect("an answer")
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let headers = [
            ("host", format!("127.0.0.1:{}", self.api)),
            ("authorization", format!("Bearer {}", self.token)),
        ];
        Self::request(self.api, method, path, &headers, body).await
    }

    /// Polls `GET /api/apps/<name>` until `pred` holds.
    async fn wait_app(&self, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        let found = timeout(LIMIT, async {
            loop {
                let (_, app) = self.call("GET", &format!("/api/apps/{name}"), Value::Null).await;
                if pred(&app) {
                    return app;
                }
                last = app;
                sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("timed out waiting for {what}; last: {last}"))
    }

    /// SIGTERM, and its exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        rustix::process::kill_process(Pid::from_raw(self.child.id() as i32).unwrap(), Signal::TERM).unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for RealPlatform {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The dashboard of a real platform process with a real app (a Python
/// worker): traffic sent to the app's host shows in its counter, `+1`
/// starts a second worker process, restart rolls the pool to version 2,
/// and the page goes stale when the platform stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_drives_a_real_platform() {
    let browser = Browser::launch().await;
    let mut platform = RealPlatform::start();
    let dir = platform.home.path().join("site");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    let worker = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workers/py_worker.py");
    fs::write(
        dir.join("index"),
        format!("#!/bin/sh\nexec python3 {}\n", worker.display()),
    )
    .unwrap();
    fs::set_permissions(dir.join("index"), fs::Permissions::from_mode(0o755)).unwrap();
    let (status, body) = platform
        .call(
            "POST",
            "/api/apps",
            json!({"name": "site", "directory": dir, "hosts": ["site.test"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    platform
        .wait_app("site", "one worker", |a| {
            a["pool"].as_array().is_some_and(|p| p.len() == 1)
        })
        .await;

    let mut cdp = Cdp::open_page(&browser.devtools).await;
    let origin = format!("http://127.0.0.1:{}", platform.api);
    cdp.navigate(&format!("{origin}/?token={}", platform.token)).await;
    cdp.navigate(&format!("{origin}/?poll=300")).await;
    cdp.wait_for(
        "the app with its one worker",
        &format!(
            "{} === '1 of 1' && {} === 'running'",
            text_of("site", "workers"),
            text_of("site", "status")
        ),
    )
    .await;

    // Real traffic to the app's host shows in its counter.
    for _ in 0..5 {
        let (status, _) = RealPlatform::request(
            platform.http,
            "GET",
            "/ping",
            &[("host", "site.test".to_owned())],
            Value::Null,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    cdp.wait_for("five requests", &format!("{} === '5'", text_of("site", "requests")))
        .await;

    // +1: a second worker process, shown by the page.
    cdp.eval(r#"document.querySelector('section.app[data-app="site"] button[data-action="scale-up"]').click(); true"#)
        .await;
    let app = platform
        .wait_app("site", "two workers", |a| {
            a["workers"] == 2 && a["pool"].as_array().is_some_and(|p| p.len() == 2)
        })
        .await;
    cdp.wait_for(
        "two workers shown",
        &format!("{} === '2 of 2'", text_of("site", "workers")),
    )
    .await;
    let before: Vec<Value> = app["pool"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].clone())
        .collect();

    // Restart: the pool rolls to version 2, new processes.
    cdp.eval(r#"document.querySelector('section.app[data-app="site"] button[data-action="restart"]').click(); true"#)
        .await;
    let app = platform
        .wait_app("site", "version 2 serving with two workers", |a| {
            a["version"] == 2
                && a["pool"]
                    .as_array()
                    .is_some_and(|p| p.len() == 2 && p.iter().all(|w| w["version"] == 2))
        })
        .await;
    assert!(
        app["pool"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| !before.contains(&w["pid"])),
        "{app}"
    );
    cdp.wait_for("version 2 shown", &format!("{} === '2'", text_of("site", "version")))
        .await;
    assert_eq!(cdp.errors(), Vec::<String>::new(), "errors on the page");
    cdp.screenshot("dashboard-real-platform-screenshot.png").await;

    // The platform stops: exit 0, and the page says so.
    assert_eq!(platform.terminate().code(), Some(0));
    cdp.wait_for("the stale banner", "!document.getElementById('stale').hidden")
        .await;
    drop(browser);
}
