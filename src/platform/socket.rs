//! The platform's own control socket, `/tmp/rip_<variant>.ctl.sock` (the
//! apps' are `/tmp/rip_<variant>_<app>.*`), named in its run file so that
//! `rip-server status|restart|stop` without an app path find the platform
//! as they find a server:
//!
//! | request | effect |
//! | --- | --- |
//! | `GET /status` | `{"mode":"platform","pid","ports",...}`, the totals and every app as `GET /api/apps` shows it |
//! | `POST /restart` | a rolling restart of every running app (like `SIGHUP`) |
//! | `POST /stop` | the graceful stop (like `SIGTERM`) |
//! | `POST /scale` | `400`: a platform scales one app at a time |
//!
//! Only processes of the platform's own user may talk to it (mode 0600 and
//! the peer-credential check, as on a server's control socket).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::sync::Notify;

use super::api::Api;
use super::live::RealControl;
use crate::config::control_socket_path;
use crate::config::defaults::{DEFAULT_VARIANT, SOCKET_DIR};
use crate::net::listen::{Accept, serve_http1};

/// The platform's socket prefix for `variant`: `/tmp/rip_platform` by
/// default (its apps' prefixes are `/tmp/rip_platform_<app>`).
pub fn socket_prefix(variant: &str) -> PathBuf {
    let variant = if variant == DEFAULT_VARIANT {
        "platform"
    } else {
        variant
    };
    PathBuf::from(format!("{SOCKET_DIR}/rip_{variant}"))
}

/// The control socket for `variant`.
pub fn control_socket(variant: &str) -> PathBuf {
    control_socket_path(&socket_prefix(variant))
}

/// Refuses a control socket another live platform accepts on (a stale
/// file is replaced when bound).
pub async fn claim(path: &Path) -> Result<(), String> {
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        return Err(format!(
            "{}: another platform with this variant is running (stop it, or use --variant)",
            path.display()
        ));
    }
    Ok(())
}

/// Removes the socket files a platform of this variant that died (SIGKILL,
/// a crash) left behind: `/tmp/rip_<variant>_<app>.*.sock` of every app
/// whose control socket nobody accepts on. Called once the platform's own
/// socket is claimed (so no live platform of this variant owns them); an
/// app that starts again would clear its own, but one that cannot start
/// (its directory is gone) would leave them for ever. Returns the files
/// removed; a file that is not ours is left and reported.
pub async fn sweep_stale_app_sockets(variant: &str) -> (Vec<PathBuf>, Vec<String>) {
    let prefix = socket_prefix(variant);
    let (Some(dir), Some(base)) = (prefix.parent(), prefix.file_name()) else {
        return (Vec::new(), Vec::new());
    };
    let start = format!("{}_", base.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (Vec::new(), Vec::new());
    };
    // By app prefix: the files, and whether its control socket answers.
    let mut by_app: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&start) else {
            continue;
        };
        let Some(app) = rest.strip_suffix(".sock").and_then(|r| r.split('.').next()) else {
            continue;
        };
        by_app
            .entry(dir.join(format!("{start}{app}")))
            .or_default()
            .push(entry.path());
    }
    let (mut removed, mut problems) = (Vec::new(), Vec::new());
    for (app_prefix, files) in by_app {
        if tokio::net::UnixStream::connect(control_socket_path(&app_prefix))
            .await
            .is_ok()
        {
            continue; // a live server uses this prefix
        }
        for file in files {
            match crate::net::unix_socket::remove_stale(&file) {
                Ok(()) => removed.push(file),
                Err(e) => problems.push(e.to_string()),
            }
        }
    }
    (removed, problems)
}

/// How long a client may take to send a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the socket's `/status` says besides the API's overview.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The real port of each listener (`http`, `api`).
    pub ports: BTreeMap<String, u16>,
    /// The dashboard's address, for people.
    pub dashboard: String,
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

fn refused(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({"ok": false, "error": message}))
}

async fn handle(
    api: &Api<RealControl>,
    identity: &Identity,
    stop: &Notify,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    match (request.method(), path) {
        (&Method::GET, "/status") => {
            let overview = api.overview().await;
            let mut body = serde_json::json!({
                "mode": "platform",
                "pid": std::process::id(),
                "ports": identity.ports,
                "dashboard": identity.dashboard,
            });
            if let (Some(body), Ok(serde_json::Value::Object(more))) =
                (body.as_object_mut(), serde_json::to_value(&overview))
            {
                body.extend(more);
            }
            json(StatusCode::OK, &body)
        }
        (&Method::POST, "/restart") => {
            let answers = api.restart_running().await;
            let restarted: Vec<&str> = answers
                .iter()
                .filter(|(_, answer)| answer.status().is_success())
                .map(|(name, _)| name.as_str())
                .collect();
            let failed: Vec<&str> = answers
                .iter()
                .filter(|(_, answer)| !answer.status().is_success())
                .map(|(name, _)| name.as_str())
                .collect();
            if failed.is_empty() {
                json(StatusCode::OK, &serde_json::json!({"ok": true, "restarted": restarted}))
            } else {
                refused(
                    StatusCode::CONFLICT,
                    &format!("not restarted: {} (see the API for why)", failed.join(", ")),
                )
            }
        }
        (&Method::POST, "/stop") => {
            stop.notify_one();
            json(StatusCode::OK, &serde_json::json!({"ok": true}))
        }
        (&Method::POST, "/scale") => refused(
            StatusCode::BAD_REQUEST,
            "a platform scales one app at a time: POST /api/apps/<name>/scale, or rip-server scale with that app's --socket-prefix",
        ),
        (_, "/status" | "/restart" | "/stop" | "/scale") => refused(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{} not allowed here", request.method()),
        ),
        (_, other) => refused(StatusCode::NOT_FOUND, &format!("unknown endpoint {other}")),
    }
}

/// Serves the socket until `shutdown` resolves; a `POST /stop` wakes `stop`.
pub async fn run<L: Accept>(
    listener: L,
    api: Arc<Api<RealControl>>,
    identity: Identity,
    stop: Arc<Notify>,
    shutdown: impl Future<Output = ()>,
) {
    let identity = Arc::new(identity);
    serve_http1(
        listener,
        "platform control socket",
        HEADER_TIMEOUT,
        shutdown,
        move |request, peer| {
            let (api, identity, stop) = (api.clone(), identity.clone(), stop.clone());
            async move {
                if !peer.trusted {
                    return refused(StatusCode::FORBIDDEN, "peer is not the platform's user");
                }
                handle(&api, &identity, &stop, request).await
            }
        },
    )
    .await;
}
