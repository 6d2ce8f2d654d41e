//! The control socket: worker join/quit and the admin commands.
//!
//! One Unix socket, `<prefix>.ctl.sock`, mode 0600, speaking HTTP/1.1:
//!
//! | request | effect |
//! | --- | --- |
//! | `POST /worker` `{"op":"join",...}` / `{"op":"quit",...}` | a worker joins or leaves the pool |
//! | `GET /status` | the same JSON as the front door's `/status` |
//! | `POST /restart` | rolling restart (like SIGHUP) |
//! | `POST /stop` | graceful stop (like SIGTERM) |
//! | `POST /scale` `{"by":1}` or `{"to":4}` | change the worker count |
//!
//! Only processes of the server's own user may talk to it (the socket's mode
//! and a peer-credential check). Anything malformed gets a 4xx with
//! `{"ok":false,"error":...}` and changes nothing.

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::net::listen::{Accept, UnixAccept, serve_http1};
use crate::observe::status;
use crate::protocol::{self as proto, Reply};
use crate::runtime::{Admin, DriverHandle};

/// How long a client may take to send a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Called when a stop is requested through the control socket.
pub type OnStop = Arc<dyn Fn() + Send + Sync>;

/// What `/status` shows as `tls` (the certificate the server's HTTPS
/// listener serves now), once the server has one; empty for plain HTTP.
pub type TlsView = Arc<arc_swap::ArcSwapOption<Box<dyn Fn() -> status::TlsStatus + Send + Sync>>>;

/// Binds the control socket with mode 0600, replacing a stale socket file.
pub fn bind(path: &Path) -> io::Result<UnixAccept> {
    crate::net::unix_socket::bind_private(path).map(UnixAccept)
}

fn json_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

fn reply(status: StatusCode, reply: &Reply) -> Response<Full<Bytes>> {
    json_response(
        status,
        serde_json::to_string(reply).unwrap_or_else(|_| "{\"ok\":false}".into()),
    )
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    reply(status, &Reply::error(message))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleRequest {
    by: Option<i32>,
    to: Option<u32>,
}

async fn handle(
    driver: DriverHandle,
    on_stop: OnStop,
    tls: TlsView,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, proto::MAX_CONTROL_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body over {} bytes", proto::MAX_CONTROL_BODY),
            );
        }
    };
    match (&parts.method, parts.uri.path()) {
        (&Method::POST, proto::WORKER_PATH) => match proto::parse_worker_message(&body) {
            Err(message) => error(StatusCode::BAD_REQUEST, message),
            Ok(message) => {
                let answer = driver.worker_message(message).await;
                let status = if answer.ok {
                    StatusCode::OK
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                reply(status, &answer)
            }
        },
        (&Method::GET, "/status") => {
            let snapshot = driver.status().await;
            let tls = tls.load().as_ref().map(|view| view());
            json_response(
                StatusCode::OK,
                status::to_json_with_tls(snapshot.as_ref(), tls.as_ref()),
            )
        }
        (&Method::POST, "/restart") => admin(&driver, Admin::RollingRestart).await,
        (&Method::POST, "/stop") => {
            on_stop();
            reply(StatusCode::OK, &Reply::ok())
        }
        (&Method::POST, "/scale") => match serde_json::from_slice::<ScaleRequest>(&body) {
            Ok(ScaleRequest { by: Some(by), to: None }) if by != 0 && by.abs() <= 1024 => {
                admin(&driver, Admin::ScaleBy(by)).await
            }
            Ok(ScaleRequest { by: None, to: Some(to) }) if (1..=1024).contains(&to) => {
                admin(&driver, Admin::ScaleTo(to)).await
            }
            Ok(_) => error(
                StatusCode::BAD_REQUEST,
                "expected {\"by\": ±1..1024} or {\"to\": 1..1024}",
            ),
            Err(e) => error(StatusCode::BAD_REQUEST, format!("invalid scale request: {e}")),
        },
        (_, proto::WORKER_PATH | "/status" | "/restart" | "/stop" | "/scale") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} not allowed here", parts.method),
        ),
        (_, path) => error(StatusCode::NOT_FOUND, format!("unknown endpoint {path}")),
    }
}

async fn admin(driver: &DriverHandle, command: Admin) -> Response<Full<Bytes>> {
    match driver.admin(command).await {
        Ok(()) => reply(StatusCode::OK, &Reply::ok()),
        Err(message) => error(StatusCode::CONFLICT, message),
    }
}

/// Serves the control endpoint until `shutdown` resolves. Production passes
/// a [`UnixAccept`]; the simulation passes a simulated TCP listener.
pub async fn run<L: Accept>(listener: L, driver: DriverHandle, on_stop: OnStop, shutdown: impl Future<Output = ()>) {
    run_with_tls(listener, driver, on_stop, TlsView::default(), shutdown).await;
}

/// [`run`], with `/status` showing `tls` from `tls` once it holds a view.
pub async fn run_with_tls<L: Accept>(
    listener: L,
    driver: DriverHandle,
    on_stop: OnStop,
    tls: TlsView,
    shutdown: impl Future<Output = ()>,
) {
    serve_http1(
        listener,
        "control socket",
        HEADER_TIMEOUT,
        shutdown,
        move |request, peer| {
            let (driver, on_stop, tls) = (driver.clone(), on_stop.clone(), tls.clone());
            async move {
                if !peer.trusted {
                    return error(StatusCode::FORBIDDEN, "peer is not the server's user");
                }
                handle(driver, on_stop, tls, request).await
            }
        },
    )
    .await;
}

/// Sends one request to a control socket and returns the status and body
/// (used by `rip-server status|restart|stop|scale`).
pub async fn request(socket: &Path, method: Method, path: &str, body: Option<String>) -> io::Result<(u16, String)> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(io::Error::other)?;
    let response = sender.send_request(request).await.map_err(io::Error::other)?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(io::Error::other)?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}
