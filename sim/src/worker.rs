//! A simulated worker process: the worker protocol over turmoil TCP.
//!
//! It listens with hyper's HTTP/1.1 server on `:9000`, joins through
//! `POST /worker` on `lb:9999`, serves one request at a time (a concurrent
//! arrival gets `503` + `Rip-Worker-Busy: 1`), and on SIGTERM quits, finishes
//! its request and exits. Its knobs ([`WorkerBehavior`]) make it slow, hang,
//! crash mid-request or at boot, refuse connections, or join late. It counts
//! its own concurrency when a request reaches the handler, before the busy
//! check: a peak above 1 means the front door broke the single-inflight rule.

use std::convert::Infallible;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use turmoil::net::{TcpListener, TcpStream};

use crate::net::{CONTROL_PORT, WORKER_PORT, worker_address};
use crate::state::{Command, ProcState, SharedRef, WorkerBehavior, lock, now_us};

/// The app name the simulated server serves.
pub const APP: &str = "simapp";
/// Request header naming a request in the trace.
pub const TAG_HEADER: &str = "x-sim-tag";
/// Request header overriding the worker's service time (milliseconds).
pub const WORK_HEADER: &str = "x-sim-work-ms";
/// Response header naming the process that answered.
pub const PID_HEADER: &str = "x-sim-pid";

const POLL: Duration = Duration::from_millis(1);

/// What a process needs to start.
#[derive(Clone, Debug)]
pub struct ProcStart {
    pub pid: u32,
    pub slot: u32,
    pub version: u64,
    pub host: String,
    pub behavior: WorkerBehavior,
}

/// The software of pool host `index`: idles until the spawner assigns it a
/// process, then runs that process. A crash + bounce brings it back to idle.
pub async fn pool_host(shared: SharedRef, index: usize) -> turmoil::Result {
    loop {
        let start = {
            let mut s = lock(&shared);
            let t = now_us();
            let assigned = s.hosts[index].pid;
            let host = s.hosts[index].name.clone();
            match assigned.and_then(|pid| s.procs.get_mut(&pid)) {
                Some(p) if p.state == ProcState::Assigned => {
                    p.state = ProcState::Running;
                    let start = ProcStart {
                        pid: p.pid,
                        slot: p.slot,
                        version: p.version,
                        host,
                        behavior: p.behavior.clone(),
                    };
                    s.log(t, format!("pid {} starts on {}", start.pid, start.host));
                    Some(start)
                }
                _ => None,
            }
        };
        match start {
            Some(start) => {
                run_process(shared.clone(), start).await;
                // A process never returns on its own: it waits to be crashed.
                std::future::pending::<()>().await;
            }
            None => tokio::time::sleep(POLL).await,
        }
    }
}

fn command(shared: &SharedRef, command: Command) {
    lock(shared).commands.push_back(command);
}

fn log(shared: &SharedRef, message: impl std::fmt::Display) {
    let t = now_us();
    lock(shared).log(t, message);
}

/// Asks the test loop to crash this process's host; never returns.
async fn die<T>(shared: &SharedRef, pid: u32, why: &str) -> T {
    log(shared, format!("pid {pid} dies: {why}"));
    command(shared, Command::SelfCrash(pid));
    std::future::pending::<T>().await
}

/// Asks the test loop to end this process after a clean exit; never returns.
async fn exit<T>(shared: &SharedRef, pid: u32, why: &str) -> T {
    log(shared, format!("pid {pid} exits: {why}"));
    command(shared, Command::Exited(pid));
    std::future::pending::<T>().await
}

async fn run_process(shared: SharedRef, start: ProcStart) {
    let pid = start.pid;
    if !start.behavior.boot_delay.is_zero() {
        tokio::time::sleep(start.behavior.boot_delay).await;
    }
    if start.behavior.crash_at_boot {
        return die(&shared, pid, "crash at boot").await;
    }
    let listener = if start.behavior.refuse {
        None
    } else {
        match TcpListener::bind(("0.0.0.0", WORKER_PORT)).await {
            Ok(l) => Some(l),
            Err(e) => {
                let t = now_us();
                lock(&shared).violation(t, format!("harness: pid {pid} cannot listen: {e}"));
                die(&shared, pid, "cannot listen").await
            }
        }
    };
    let join = serde_json::json!({
        "op": "join",
        "app": APP,
        "workerId": start.slot,
        "pid": pid,
        "socket": worker_address(&start.host),
        "version": start.version,
    })
    .to_string();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match control_post(join.clone()).await {
            Ok((200, _)) => break,
            Ok((status, body)) => {
                log(&shared, format!("pid {pid} join refused: {status} {body}"));
                return exit(&shared, pid, "join refused").await;
            }
            Err(e) if attempts < 50 => {
                log(&shared, format!("pid {pid} join failed ({e}); retrying"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return die(&shared, pid, "cannot reach the control socket").await,
        }
    }
    {
        let t = now_us();
        let mut s = lock(&shared);
        if let Some(p) = s.procs.get_mut(&pid) {
            p.joined_at = Some(t);
        }
        s.log(t, format!("pid {pid} joined (slot {} v{})", start.slot, start.version));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(listener) = listener {
        let shared = shared.clone();
        let keep_alive = !start.behavior.close_after_response;
        tokio::spawn(accept_loop(shared, pid, listener, keep_alive, stop_rx));
    }
    // SIGTERM: quit, finish the request in flight, exit.
    loop {
        if lock(&shared).procs.get(&pid).is_some_and(|p| p.terminate) {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let _ = stop_tx.send(true);
    let quit = serde_json::json!({"op": "quit", "app": APP, "workerId": start.slot, "pid": pid}).to_string();
    match control_post(quit).await {
        Ok((status, body)) => log(&shared, format!("pid {pid} quit: {status} {body}")),
        Err(e) => log(&shared, format!("pid {pid} quit failed: {e}")),
    }
    loop {
        let idle = lock(&shared)
            .procs
            .get(&pid)
            .is_none_or(|p| p.current == 0 && p.live_conns == 0);
        if idle {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    exit::<()>(&shared, pid, "SIGTERM").await;
}

async fn accept_loop(
    shared: SharedRef,
    pid: u32,
    listener: TcpListener,
    keep_alive: bool,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        if let Some(p) = lock(&shared).procs.get_mut(&pid) {
            p.live_conns += 1;
            p.last_activity_us = now_us();
        }
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(serve_connection(shared, pid, stream, keep_alive, stop));
    }
}

/// Decrements the open-connection count however the connection ends.
struct ConnGuard {
    shared: SharedRef,
    pid: u32,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(p) = lock(&self.shared).procs.get_mut(&self.pid) {
            p.live_conns = p.live_conns.saturating_sub(1);
            p.last_activity_us = now_us();
        }
    }
}

async fn serve_connection(
    shared: SharedRef,
    pid: u32,
    stream: TcpStream,
    keep_alive: bool,
    mut stop: watch::Receiver<bool>,
) {
    let _guard = ConnGuard {
        shared: shared.clone(),
        pid,
    };
    let service = service_fn(move |request: Request<Incoming>| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, pid, request).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.auto_date_header(false).keep_alive(keep_alive);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        biased;
        _ = conn.as_mut() => {}
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

enum Action {
    Busy,
    Hang,
    Crash,
    Serve(Duration),
}

/// Ends the handler's count of the request, even if hyper drops the handler.
struct InFlight {
    shared: SharedRef,
    pid: u32,
    done: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(p) = lock(&self.shared).procs.get_mut(&self.pid) {
            p.current = p.current.saturating_sub(1);
            p.in_flight = None;
            p.last_activity_us = now_us();
        }
    }
}

async fn handle(shared: SharedRef, pid: u32, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let tag = request
        .headers()
        .get(TAG_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let work = request
        .headers()
        .get(WORK_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis);
    let action = {
        let t = now_us();
        let mut s = lock(&shared);
        s.received.entry(tag.clone()).or_default().push((pid, t));
        let Some(p) = s.procs.get_mut(&pid) else {
            return Response::new(Full::new(Bytes::new()));
        };
        p.current += 1;
        p.peak = p.peak.max(p.current);
        p.last_activity_us = t;
        p.received += 1;
        let nth = p.received;
        let action = if p.current > 1 {
            p.current -= 1;
            Action::Busy
        } else {
            p.in_flight = Some(tag.clone());
            let b = &p.behavior;
            if b.hang_on == Some(nth) || (b.hang_chance > 0.0 && p.rng.chance(b.hang_chance)) {
                Action::Hang
            } else if b.crash_on == Some(nth) || (b.crash_chance > 0.0 && p.rng.chance(b.crash_chance)) {
                Action::Crash
            } else {
                let service = b.service.clone();
                Action::Serve(work.unwrap_or_else(|| service.sample(&mut p.rng)))
            }
        };
        let what = match &action {
            Action::Busy => "busy: 503".to_owned(),
            Action::Hang => "will hang".to_owned(),
            Action::Crash => "will crash".to_owned(),
            Action::Serve(d) => format!("serves in {}ms", d.as_millis()),
        };
        s.log(t, format!("pid {pid} got {tag}: {what}"));
        action
    };
    if matches!(action, Action::Busy) {
        let mut response = Response::new(Full::new(Bytes::from_static(b"busy\n")));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response.headers_mut().insert(
            rip_server::protocol::WORKER_BUSY_HEADER,
            http::HeaderValue::from_static("1"),
        );
        return response;
    }
    let mut guard = InFlight {
        shared: shared.clone(),
        pid,
        done: false,
    };
    let _ = request.into_body().collect().await;
    match action {
        Action::Busy => unreachable!("answered above"),
        Action::Hang => std::future::pending::<()>().await,
        Action::Crash => die::<()>(&shared, pid, "crash mid-request").await,
        Action::Serve(d) => tokio::time::sleep(d).await,
    }
    {
        let t = now_us();
        let mut s = lock(&shared);
        if let Some(p) = s.procs.get_mut(&pid) {
            p.current = p.current.saturating_sub(1);
            p.in_flight = None;
            p.served += 1;
            p.last_activity_us = t;
        }
        guard.done = true;
        s.log(t, format!("pid {pid} answers {tag}"));
    }
    let mut response = Response::new(Full::new(Bytes::from(format!("ok {tag} from {pid}\n"))));
    response.headers_mut().insert(PID_HEADER, http::HeaderValue::from(pid));
    response
}

/// Sends one control message to `lb:9999`; returns the status and body.
pub async fn control_post(body: String) -> io::Result<(u16, String)> {
    let stream = TcpStream::connect(("lb", CONTROL_PORT)).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(rip_server::protocol::WORKER_PATH)
        .header(header::HOST, "lb")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(io::Error::other)?;
    let exchange = async {
        let response = sender.send_request(request).await.map_err(io::Error::other)?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(io::Error::other)?
            .to_bytes();
        Ok::<_, io::Error>((status, String::from_utf8_lossy(&bytes).into_owned()))
    };
    drive(conn, exchange).await
}

/// Runs a client exchange while driving its connection; the connection (and
/// its socket) is dropped when the exchange ends.
pub async fn drive<C, F, T>(conn: C, exchange: F) -> T
where
    C: std::future::Future,
    F: std::future::Future<Output = T>,
{
    tokio::pin!(conn);
    tokio::pin!(exchange);
    tokio::select! {
        biased;
        result = &mut exchange => result,
        _ = &mut conn => exchange.await,
    }
}
