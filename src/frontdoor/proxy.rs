//! One client request, from arrival to the last byte of its response.
//!
//! The request task asks the driver for a decision, then runs the exchange
//! with the worker in a task of its own, so that a client that goes away
//! never cancels a request a worker is already running: the worker's slot is
//! released only when its exchange really ended.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::{mpsc, oneshot};

use super::FrontDoor;
use super::body::{BodyFault, ClientFault, LimitedBody, RelayBody, ResponseBody, drain, finish_unread};
use super::headers;
use crate::access_log::Record;
use crate::clock::wall_micros;
use crate::core::balancer::RequestMeta;
use crate::core::{Answer, Pid, RequestId, Time};
use crate::driver::{Decision, DriverHandle};
use crate::transport::Transport;
use crate::upstream::{SendError, Upstream, UpstreamBody};

/// Bodies up to this size are read before dispatch, so a retry can resend
/// them and a slow uploader never holds a worker.
pub const BUFFER_BODY_LIMIT: u64 = 64 * 1024;

/// A request ready to go to a worker.
enum Outgoing {
    /// Bodyless or buffered: can be sent again.
    Replayable { parts: http::request::Parts, body: Bytes },
    /// Streams from the client: can be sent once.
    Streaming(Request<UpstreamBody>),
}

impl Outgoing {
    fn build(&mut self) -> Option<Request<UpstreamBody>> {
        match self {
            Outgoing::Replayable { parts, body } => {
                let full = Full::new(body.clone()).map_err(|never| match never {}).boxed();
                Some(Request::from_parts(parts.clone(), full))
            }
            Outgoing::Streaming(_) => {
                let taken = std::mem::replace(
                    self,
                    Outgoing::Replayable {
                        parts: empty_parts(),
                        body: Bytes::new(),
                    },
                );
                match taken {
                    Outgoing::Streaming(req) => Some(req),
                    Outgoing::Replayable { .. } => None,
                }
            }
        }
    }

    fn is_replayable(&self) -> bool {
        matches!(self, Outgoing::Replayable { .. })
    }
}

fn empty_parts() -> http::request::Parts {
    Request::new(()).into_parts().0
}

/// One attempt at a worker, run in its own task.
struct Attempt {
    id: RequestId,
    address: Arc<str>,
    conn: Option<Upstream>,
    request: Request<UpstreamBody>,
    /// The request task keeps a copy to send again if the worker does not
    /// take this one (bodyless or buffered requests).
    replayable: bool,
    fault: Arc<ClientFault>,
    tx: oneshot::Sender<Exchanged>,
}

/// How an exchange went, told to the request task.
enum Exchanged {
    /// The worker answered; the connection comes along to be returned at the end.
    Head(Response<Incoming>, Upstream),
    /// The worker did not take the request; a streamed one comes back for
    /// the retry (a replayable one never left the request task).
    NotTaken(Option<Outgoing>),
    /// It failed after the request was sent; wait for the driver's verdict.
    Failed,
}

/// Reports the request's end to the driver if the client leaves early.
struct Ticket {
    id: RequestId,
    driver: DriverHandle,
    rx: mpsc::UnboundedReceiver<Decision>,
    done: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Close first, so no dispatch can slip in after the drain below and
        // be dropped unread (the driver then sees the send fail and undoes
        // it); a dispatch already waiting hands its connection back.
        self.rx.close();
        let mut unused = None;
        while let Ok(decision) = self.rx.try_recv() {
            if let Decision::Dispatch { conn, .. } = decision {
                unused = Some(conn);
            }
        }
        match unused {
            Some(conn) => self.driver.dispatch_unused(self.id, conn),
            None => self.driver.client_gone(self.id),
        }
    }
}

/// The receiver of a running exchange. If the request task is dropped (its
/// client left) while a response head sits unread in it, nobody else would
/// release the worker: drain that response and report the completion.
struct PendingExchange {
    rx: Option<oneshot::Receiver<Exchanged>>,
    id: RequestId,
    driver: DriverHandle,
    drain_limit: Duration,
}

impl Drop for PendingExchange {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else { return };
        // From now on the exchange task's send fails and it drains on its own.
        rx.close();
        if let Ok(Exchanged::Head(response, conn)) = rx.try_recv() {
            let (driver, id, limit) = (self.driver.clone(), self.id, self.drain_limit);
            tokio::spawn(async move { finish_unread(response.into_body(), Some(conn), &driver, id, limit).await });
        }
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Builds a synthesized reply.
pub fn render_answer(answer: Answer, request_id: &HeaderValue) -> Response<ResponseBody> {
    let status = StatusCode::from_u16(answer.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let text = format!("{} {}\n", status.canonical_reason().unwrap_or(""), answer.reason());
    let mut response = Response::new(ResponseBody::full(text));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert("rip-reason", HeaderValue::from_static(answer.reason()));
    h.insert(headers::request_id_header(), request_id.clone());
    if let Some(secs) = answer.retry_after_secs() {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// A plain reply for the front door's own errors (413 and friends).
pub fn plain(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

struct LogCtx {
    t_micros: u64,
    start: Time,
    method: String,
    path: String,
    request_id: HeaderValue,
}

impl<T: Transport> FrontDoor<T> {
    fn log(
        &self,
        ctx: &LogCtx,
        status: u16,
        worker: Option<(Pid, Time)>,
        length: Option<u64>,
        reason: Option<&'static str>,
    ) {
        let Some(log) = &self.access_log else { return };
        let now = self.clock.now();
        log.log(Record {
            t_micros: ctx.t_micros,
            method: ctx.method.clone(),
            path: ctx.path.clone(),
            status,
            total_seconds: now.saturating_since(ctx.start).as_secs_f64(),
            worker_seconds: worker.map(|(_, t)| t.saturating_since(ctx.start).as_secs_f64()),
            length,
            reason,
            request_id: String::from_utf8_lossy(ctx.request_id.as_bytes()).into_owned(),
            worker_pid: worker.map(|(p, _)| p.0),
        });
    }

    /// Proxies one request to a worker.
    pub(super) async fn proxy(
        self: Arc<Self>,
        request: Request<Incoming>,
        client: Option<IpAddr>,
    ) -> Response<ResponseBody> {
        let start = self.clock.now();
        let t_micros = wall_micros();
        let (mut parts, body) = request.into_parts();
        // Framing first: rewriting drops the client's framing headers.
        let declared = content_length(&parts.headers);
        let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
        let request_id = headers::rewrite_request(&mut parts.headers, client, self.config.scheme, t_micros, || {
            self.new_request_id()
        });
        let ctx = LogCtx {
            t_micros,
            start,
            method: parts.method.to_string(),
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            request_id: request_id.clone(),
        };
        if declared.is_some_and(|n| n > self.config.max_body) {
            self.log(&ctx, 413, None, None, Some("body_too_large"));
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
        }
        let fault = Arc::new(ClientFault::default());
        let mut outgoing = if !chunked && declared.unwrap_or(0) <= BUFFER_BODY_LIMIT {
            let bytes = if declared.unwrap_or(0) == 0 {
                Bytes::new()
            } else {
                match body.collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(_) => {
                        self.log(&ctx, 400, None, None, Some("bad_body"));
                        return plain(StatusCode::BAD_REQUEST, "could not read the request body\n");
                    }
                }
            };
            Outgoing::Replayable { parts, body: bytes }
        } else {
            let limited = LimitedBody::new(body, self.config.max_body, fault.clone());
            Outgoing::Streaming(Request::from_parts(parts, limited.boxed()))
        };
        let meta = RequestMeta {
            idempotent: match &outgoing {
                Outgoing::Replayable { parts, .. } => is_idempotent(&parts.method),
                Outgoing::Streaming(r) => is_idempotent(r.method()),
            },
            replayable: outgoing.is_replayable(),
        };
        let (id, rx) = self.driver.arrive(meta);
        let mut ticket = Ticket {
            id,
            driver: self.driver.clone(),
            rx,
            done: false,
        };
        let mut exchange = PendingExchange {
            rx: None,
            id,
            driver: self.driver.clone(),
            drain_limit: self.config.read_timeout,
        };
        let mut worker: Option<(Pid, Time)> = None;
        let mut decisions_closed = false;
        loop {
            tokio::select! {
                biased;
                result = async { exchange.rx.as_mut().expect("guarded").await }, if exchange.rx.is_some() => {
                    exchange.rx = None;
                    match result {
                        Ok(Exchanged::Head(response, conn)) => {
                            ticket.done = true;
                            let head_at = self.clock.now();
                            let worker = worker.map(|(p, _)| (p, head_at));
                            return self.relay(response, conn, id, &ctx, worker);
                        }
                        Ok(Exchanged::NotTaken(back)) => {
                            if let Some(back) = back {
                                outgoing = back;
                            }
                        }
                        Ok(Exchanged::Failed) | Err(_) => {
                            match fault.get() {
                                // Our limit cut the stream; the exchange told the driver.
                                Some(BodyFault::TooLarge) => {
                                    ticket.done = true;
                                    self.log(&ctx, 413, None, None, Some("body_too_large"));
                                    return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
                                }
                                // The client's own body was malformed or cut short.
                                Some(BodyFault::Broken) => {
                                    ticket.done = true;
                                    self.log(&ctx, 400, None, None, Some("bad_body"));
                                    return plain(StatusCode::BAD_REQUEST, "malformed request body\n");
                                }
                                None => {}
                            }
                        }
                    }
                }
                decision = ticket.rx.recv(), if !decisions_closed => match decision {
                    Some(Decision::Dispatch { pid, attempt: _, address, conn }) => {
                        let Some(request) = outgoing.build() else {
                            // Cannot happen: a streamed body is never retried.
                            self.driver.failed_after_send(id);
                            continue;
                        };
                        let replayable = outgoing.is_replayable();
                        let (tx, rx) = oneshot::channel();
                        exchange.rx = Some(rx);
                        worker = Some((pid, self.clock.now()));
                        let this = self.clone();
                        let fault = fault.clone();
                        let attempt = Attempt { id, address, conn, request, replayable, fault, tx };
                        tokio::spawn(this.exchange(attempt));
                    }
                    Some(Decision::Answer(answer)) => {
                        // A timed-out exchange goes on in its own task and reports its end.
                        ticket.done = true;
                        if answer == Answer::UpstreamTimeout {
                            tracing::warn!(
                                request = id.0,
                                request_id = %String::from_utf8_lossy(ctx.request_id.as_bytes()),
                                method = %ctx.method,
                                path = %ctx.path,
                                pid = worker.map_or(0, |(p, _)| p.0),
                                "no response head within the read timeout: 504 sent; the worker is stuck on this request"
                            );
                        }
                        self.log(&ctx, answer.status(), None, None, Some(answer.reason()));
                        return render_answer(answer, &ctx.request_id);
                    }
                    None => {
                        // The driver closes the channel once the head was
                        // reported; the exchange's result is on its way.
                        decisions_closed = true;
                        if exchange.rx.is_none() {
                            ticket.done = true;
                            self.log(&ctx, 503, None, None, Some("no_capacity"));
                            return render_answer(Answer::NoCapacity, &ctx.request_id);
                        }
                    }
                }
            }
        }
    }

    fn relay(
        &self,
        response: Response<Incoming>,
        conn: Upstream,
        id: RequestId,
        ctx: &LogCtx,
        worker: Option<(Pid, Time)>,
    ) -> Response<ResponseBody> {
        let (mut parts, body) = response.into_parts();
        headers::rewrite_response(&mut parts.headers);
        let status = parts.status.as_u16();
        let on_end: super::body::OnEnd = match &self.access_log {
            Some(_) => {
                let this_log = self.access_log.clone();
                let clock = self.clock;
                let record = Record {
                    t_micros: ctx.t_micros,
                    method: ctx.method.clone(),
                    path: ctx.path.clone(),
                    status,
                    total_seconds: 0.0,
                    worker_seconds: worker.map(|(_, t)| t.saturating_since(ctx.start).as_secs_f64()),
                    length: None,
                    reason: None,
                    request_id: String::from_utf8_lossy(ctx.request_id.as_bytes()).into_owned(),
                    worker_pid: worker.map(|(p, _)| p.0),
                };
                let start = ctx.start;
                Box::new(move |sent| {
                    if let Some(log) = this_log {
                        let mut record = record;
                        record.total_seconds = clock.now().saturating_since(start).as_secs_f64();
                        record.length = Some(sent);
                        log.log(record);
                    }
                })
            }
            None => Box::new(|_| {}),
        };
        let relay = RelayBody::new(body, conn, id, self.driver.clone(), self.config.read_timeout, on_end);
        Response::from_parts(parts, ResponseBody::Relay(relay))
    }

    /// Runs one attempt against a worker and reports its outcome to the driver.
    async fn exchange(self: Arc<Self>, attempt: Attempt) {
        let Attempt {
            id,
            address,
            conn,
            request,
            replayable,
            fault,
            tx,
        } = attempt;
        let give_back = |request: Request<UpstreamBody>| (!replayable).then(|| Outgoing::Streaming(request));
        let mut conn = match conn {
            Some(mut c) if c.is_open() => c.ready().await.then_some(c),
            _ => None,
        };
        let mut request = request;
        let response = loop {
            let fresh = conn.is_none();
            let mut upstream = match conn.take() {
                Some(c) => c,
                None => match Upstream::connect(&self.transport, &address, self.config.connect_timeout).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(request = id.0, %address, "worker connect failed: {e}");
                        self.driver.connect_failed(id);
                        let _ = tx.send(Exchanged::NotTaken(give_back(request)));
                        return;
                    }
                },
            };
            match upstream.send(request).await {
                Ok(response) => break (response, upstream),
                Err(SendError::Unsent(back)) if !fresh => {
                    // A kept-alive connection had closed; try once on a new one.
                    request = *back;
                }
                Err(SendError::Unsent(back)) => {
                    self.driver.connect_failed(id);
                    let _ = tx.send(Exchanged::NotTaken(give_back(*back)));
                    return;
                }
                Err(SendError::AfterSend(_)) if fault.get().is_some() => {
                    // The client's body failed, not the worker: the request
                    // ends for the client and the worker is not to blame.
                    self.driver.client_gone(id);
                    self.driver.complete(id, true, None);
                    let _ = tx.send(Exchanged::Failed);
                    return;
                }
                Err(SendError::AfterSend(e)) => {
                    tracing::debug!(request = id.0, "worker failed after the request was sent: {e}");
                    self.driver.failed_after_send(id);
                    let _ = tx.send(Exchanged::Failed);
                    return;
                }
            }
        };
        let (response, upstream) = response;
        if headers::is_busy(response.headers()) {
            // The worker says it is busy: it did not run the request. A
            // streamed body may be partly consumed, so only a replayable
            // request can go elsewhere.
            let _ = tokio::time::timeout(Duration::from_secs(1), drain(response.into_body())).await;
            if replayable {
                self.driver.busy(id);
                let _ = tx.send(Exchanged::NotTaken(None));
            } else {
                self.driver.failed_after_send(id);
                let _ = tx.send(Exchanged::Failed);
            }
            return;
        }
        self.driver.response_head(id);
        if let Err(Exchanged::Head(response, upstream)) = tx.send(Exchanged::Head(response, upstream)) {
            // Nobody waits for this response (read timeout, client gone):
            // read it to its end so the worker finishes, then free it.
            let limit = self.config.read_timeout;
            finish_unread(response.into_body(), Some(upstream), &self.driver, id, limit).await;
        }
    }
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}
