//! The built-in example app (`rip-server worker --builtin [--socket PATH]`),
//! used by the test suites to exercise the front door against a real worker.
//!
//! Routes (any method unless noted; plain text unless noted):
//!
//! | route | answer |
//! | --- | --- |
//! | `/ping` | `pong` |
//! | `/` | a hello naming the app, worker id and version |
//! | `/whoami` | JSON `workerId`, `pid`, `version`, `app`, `served` |
//! | `/sleep?ms=N` | `slept N` after N ms (timer) |
//! | `/work?ms=N` | `worked N` after N ms of busy CPU |
//! | `/hang` | never answers |
//! | `/crash` | the process exits with code 1 mid-request |
//! | `/status/<code>` | that status |
//! | `POST`/`PUT /echo` | the request body, streamed back |
//! | `/bytes?n=N` | N bytes, streamed in 64 KiB chunks |
//! | `/chunked?n=N` | the same with no declared length (chunked on the wire) |
//! | `/headers` | JSON object of the request headers |
//! | `/stats` | JSON `served`, `busyRejections`, `maxConcurrent` |
//! | anything else | 404 `not found` |
//!
//! Boot knobs for crash-loop and slow-boot tests: `RIP_EXAMPLE_FAIL_BOOT=1`
//! exits 1 before binding; `RIP_EXAMPLE_BOOT_DELAY_MS=N` waits N ms first.
//!
//! Benchmark knob: `RIP_WORKER_TCP=127.0.0.1:PORT` serves on that TCP address
//! instead of a Unix socket, standalone (slot 0, app `hello`, no join or quit,
//! `--socket` and `RIP_SOCKET` ignored), so a load generator can hit one
//! worker without a front door (see [`super::run_tcp`] and `docs/benchmarking.md`).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;

use super::{Handler, WorkerBody, WorkerEnv, WorkerStats};

/// Size of the chunks `/bytes` streams.
pub const CHUNK_SIZE: usize = 64 * 1024;

static CHUNK: [u8; CHUNK_SIZE] = [b'x'; CHUNK_SIZE];

/// The example app.
#[derive(Clone, Debug)]
pub struct Builtin {
    app: String,
    worker_id: u32,
    version: u64,
}

impl Builtin {
    /// The app as configured by `env`.
    pub fn new(env: &WorkerEnv) -> Builtin {
        Builtin {
            app: env.app.clone(),
            worker_id: env.worker_id,
            version: env.version,
        }
    }
}

impl Handler for Builtin {
    async fn handle(&self, req: Request<Incoming>) -> Response<WorkerBody> {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let served = WorkerStats::of(&req).map_or(0, WorkerStats::served);
        match path.as_str() {
            "/ping" => super::text(StatusCode::OK, "pong"),
            "/" => super::text(
                StatusCode::OK,
                format!(
                    "hello from {}, worker {}, version {}\n",
                    self.app, self.worker_id, self.version
                ),
            ),
            "/whoami" => super::json(
                StatusCode::OK,
                &json!({
                    "workerId": self.worker_id,
                    "pid": std::process::id(),
                    "version": self.version,
                    "app": self.app,
                    "served": served,
                }),
            ),
            "/sleep" => match query_number(&query, "ms") {
                Some(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    super::text(StatusCode::OK, format!("slept {ms}"))
                }
                None => bad_request("expected ?ms=<milliseconds>"),
            },
            "/work" => match query_number(&query, "ms") {
                Some(ms) => {
                    // On a blocking thread, so the runtime can still answer
                    // concurrent arrivals with a busy 503.
                    let _ = tokio::task::spawn_blocking(move || burn_cpu(ms)).await;
                    super::text(StatusCode::OK, format!("worked {ms}"))
                }
                None => bad_request("expected ?ms=<milliseconds>"),
            },
            "/hang" => std::future::pending().await,
            "/crash" => {
                tracing::warn!("/crash: exiting with code 1");
                std::process::exit(1)
            }
            "/echo" => echo(req),
            "/bytes" | "/chunked" => match query_number(&query, "n") {
                Some(n) => {
                    let sized = path == "/bytes";
                    let mut response = Response::new(Repeat { remaining: n, sized }.boxed_unsync());
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    response
                }
                None => bad_request("expected ?n=<bytes>"),
            },
            "/headers" => {
                let mut headers = BTreeMap::<String, String>::new();
                for (name, value) in req.headers() {
                    let value = String::from_utf8_lossy(value.as_bytes());
                    headers
                        .entry(name.as_str().to_owned())
                        .and_modify(|v| {
                            v.push_str(", ");
                            v.push_str(&value);
                        })
                        .or_insert_with(|| value.into_owned());
                }
                super::json(StatusCode::OK, &json!(headers))
            }
            "/stats" => {
                let (served, busy, max) =
                    WorkerStats::of(&req).map_or((0, 0, 0), |s| (s.served(), s.busy_rejections(), s.max_concurrent()));
                super::json(
                    StatusCode::OK,
                    &json!({"served": served, "busyRejections": busy, "maxConcurrent": max}),
                )
            }
            _ => match path.strip_prefix("/status/").map(str::parse::<u16>) {
                Some(Ok(code @ 200..=599)) => status(code),
                Some(_) => bad_request("expected /status/<200..599>"),
                None => super::text(StatusCode::NOT_FOUND, "not found"),
            },
        }
    }
}

/// Runs the built-in app as a worker process: from the `RIP_*` environment,
/// or standalone on `socket_override` (slot 0, app `hello`, no control socket).
pub fn main(socket_override: Option<PathBuf>) -> ExitCode {
    // The server's stderr, so the server's style: JSON under its
    // --json-logging, colour only on a terminal.
    crate::os::log_style::init(
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        std::env::var(crate::os::log_style::LOG_FORMAT_VAR).is_ok_and(|v| v == "json"),
    );
    if std::env::var_os("RIP_EXAMPLE_FAIL_BOOT").is_some_and(|v| v == "1") {
        eprintln!("rip-server worker: RIP_EXAMPLE_FAIL_BOOT=1, failing boot on purpose");
        return ExitCode::from(1);
    }
    let tcp = match std::env::var("RIP_WORKER_TCP") {
        Ok(addr) if !addr.is_empty() => match addr.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                eprintln!("rip-server worker: RIP_WORKER_TCP={addr:?} is not an address such as 127.0.0.1:9001");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let env = match (tcp, socket_override) {
        (Some(_), _) => WorkerEnv::standalone(PathBuf::new(), "hello"),
        (None, Some(socket)) => WorkerEnv::standalone(socket, "hello"),
        (None, None) => match WorkerEnv::from_env() {
            Ok(env) => env,
            Err(error) => {
                eprintln!("rip-server worker: {error}");
                return ExitCode::from(2);
            }
        },
    };
    let boot_delay = std::env::var("RIP_EXAMPLE_BOOT_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok());
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rip-server worker: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let handler = Builtin::new(&env);
    let result = runtime.block_on(async move {
        if let Some(ms) = boot_delay {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        match tcp {
            Some(addr) => {
                let listener = super::bind_tcp(addr).await?;
                super::run_tcp(env, listener, handler, super::termination()?).await
            }
            None => super::run_with_signals(env, handler).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rip-server worker: {error}");
            ExitCode::from(1)
        }
    }
}

fn query_number(query: &str, key: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

fn bad_request(why: &str) -> Response<WorkerBody> {
    super::text(StatusCode::BAD_REQUEST, why.to_owned())
}

fn status(code: u16) -> Response<WorkerBody> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if matches!(code, 204 | 304) {
        let mut response = Response::new(super::empty());
        *response.status_mut() = status;
        return response;
    }
    super::text(status, status.canonical_reason().unwrap_or("status").to_owned())
}

fn echo(req: Request<Incoming>) -> Response<WorkerBody> {
    if !matches!(*req.method(), Method::POST | Method::PUT) {
        let mut response = super::text(StatusCode::METHOD_NOT_ALLOWED, "use POST");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, PUT"));
        return response;
    }
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let mut response = Response::new(req.into_body().map_err(io::Error::other).boxed_unsync());
    if let Some(content_type) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    }
    response
}

/// Keeps one CPU busy for `ms` milliseconds.
fn burn_cpu(ms: u64) {
    // The example app measures its own busy loop; nothing observable depends on it.
    #[allow(clippy::disallowed_methods)]
    let start = std::time::Instant::now();
    let budget = Duration::from_millis(ms);
    let mut x = 0u64;
    while start.elapsed() < budget {
        for i in 0..10_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
    }
}

/// `remaining` bytes of `x`, in chunks of [`CHUNK_SIZE`].
struct Repeat {
    remaining: u64,
    /// Declares its length (else hyper sends it chunked).
    sized: bool,
}

impl Body for Repeat {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = usize::try_from(this.remaining).map_or(CHUNK_SIZE, |r| r.min(CHUNK_SIZE));
        this.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.sized {
            SizeHint::with_exact(self.remaining)
        } else {
            SizeHint::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// Sends one `GET` (closing the connection after it) and returns the whole answer.
    async fn get(addr: SocketAddr, target: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {target} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        answer
    }

    #[tokio::test]
    async fn tcp_mode_serves_one_request_at_a_time() {
        let env = WorkerEnv::standalone(PathBuf::new(), "hello");
        let listener = super::super::bind_tcp("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let handler = Builtin::new(&env);
        let worker = tokio::spawn(super::super::run_tcp(env, listener, handler, async move {
            let _ = stop_rx.await;
        }));

        let pong = get(addr, "/ping").await;
        assert!(pong.starts_with("HTTP/1.1 200"), "{pong}");
        assert!(pong.ends_with("pong"), "{pong}");

        let slow = tokio::spawn(get(addr, "/sleep?ms=300"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let busy = get(addr, "/ping").await;
        assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
        assert!(busy.to_ascii_lowercase().contains("rip-worker-busy: 1"), "{busy}");
        let slow = slow.await.expect("slow request");
        assert!(slow.ends_with("slept 300"), "{slow}");

        let _ = stop_tx.send(());
        worker.await.expect("worker task").expect("worker stops cleanly");
    }
}
