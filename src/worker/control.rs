//! The worker's client for the control socket: `POST /worker` with a join or quit.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::protocol::{MAX_CONTROL_BODY, Reply, WORKER_PATH, WorkerMessage};

/// Pause between attempts while the control socket is not reachable.
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// Why one attempt failed.
#[derive(Debug)]
enum Failure {
    /// Worth another try: no control socket yet, connection trouble, a 5xx.
    Transient(String),
    /// The control server said no: retrying would not help.
    Refused(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Transient(why) | Failure::Refused(why) => f.write_str(why),
        }
    }
}

/// Sends `message` to the control socket at `control`, retrying transient
/// failures until `deadline` has passed; `Ok` once the reply is `{"ok":true}`.
pub(super) async fn send(control: &Path, message: &WorkerMessage, deadline: Duration) -> Result<(), String> {
    let body = serde_json::to_vec(message).map_err(|e| format!("cannot encode {message:?}: {e}"))?;
    let body = Bytes::from(body);
    let mut last = String::from("no attempt made");
    let attempts = async {
        loop {
            match attempt(control, body.clone()).await {
                Ok(()) => return Ok(()),
                Err(Failure::Refused(why)) => return Err(why),
                Err(Failure::Transient(why)) => {
                    tracing::debug!(control = %control.display(), %why, "control socket not ready, retrying");
                    last = why;
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        }
    };
    match tokio::time::timeout(deadline, attempts).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer from control socket {} within {deadline:?}: {last}",
            control.display()
        )),
    }
}

async fn attempt(control: &Path, body: Bytes) -> Result<(), Failure> {
    let transient = |what: &str, e: &dyn fmt::Display| Failure::Transient(format!("{what} {}: {e}", control.display()));
    let stream = UnixStream::connect(control)
        .await
        .map_err(|e| transient("connect", &e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| transient("handshake with", &e))?;
    let driver = tokio::spawn(connection);
    let request = Request::post(WORKER_PATH)
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| Failure::Refused(format!("cannot build control request: {e}")))?;
    let result = exchange(&mut sender, request).await;
    drop(sender);
    driver.abort();
    result.map_err(|failure| match failure {
        Failure::Transient(why) => Failure::Transient(format!("{}: {why}", control.display())),
        Failure::Refused(why) => Failure::Refused(format!("{}: {why}", control.display())),
    })
}

async fn exchange(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(), Failure> {
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| Failure::Transient(format!("request: {e}")))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_CONTROL_BODY)
        .collect()
        .await
        .map_err(|e| Failure::Transient(format!("reading reply: {e}")))?
        .to_bytes();
    let reply = serde_json::from_slice::<Reply>(&body);
    match (status, reply) {
        (status, Ok(Reply { ok: true, .. })) if status.is_success() => Ok(()),
        (status, reply) => {
            let why = match reply {
                Ok(Reply { error: Some(error), .. }) => format!("{status}: {error}"),
                _ => format!("{status}: {}", String::from_utf8_lossy(&body)),
            };
            if status.is_server_error() {
                Err(Failure::Transient(why))
            } else {
                Err(Failure::Refused(why))
            }
        }
    }
}
