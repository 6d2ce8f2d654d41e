//! One client request, from arrival to the last byte of its response.
//!
//! The request task asks the driver for a decision, then polls the exchange
//! with the worker itself; if the client goes away (or the read timeout
//! answers first), the exchange moves to a task of its own, so a request a
//! worker is already running is never cancelled: the worker's slot is
//! released only when its exchange really ended.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{BodyFault, ClientFault, LimitedBody, RelayBody, ResponseBody, finish_unread};
use super::{AppProxy, FrontDoor};
use crate::core::balancer::RequestMeta;
use crate::core::{Answer, Pid, RequestId, Time};
use crate::http::headers;
use crate::net::transport::Transport;
use crate::observe::access_log::Record;
use crate::os::clock::wall_micros;
use crate::runtime::decision::DecisionRx;
use crate::runtime::{Decision, DriverHandle};
use crate::upstream::{RequestFraming, Upstream, UpstreamBody, WorkerBody, encode_request};

/// Bodies up to this size are read before dispatch, so a retry can resend
/// them and a slow uploader never holds a worker.
pub const BUFFER_BODY_LIMIT: u64 = 64 * 1024;

/// A request ready to go to a worker, its head serialized once.
enum Outgoing {
    /// Bodyless or buffered (head and body in `wire`): can be sent again.
    Replayable { wire: Bytes },
    /// Streams from the client: can be sent once.
    Streaming {
        wire: Bytes,
        body: UpstreamBody,
        framing: RequestFraming,
    },
    /// A streamed request already handed to an attempt.
    Spent,
}

impl Outgoing {
    fn take(&mut self) -> Outgoing {
        match self {
            Outgoing::Replayable { wire } => Outgoing::Replayable { wire: wire.clone() },
            _ => std::mem::replace(self, Outgoing::Spent),
        }
    }

    fn is_replayable(&self) -> bool {
        matches!(self, Outgoing::Replayable { .. })
    }

    fn wire(&self) -> &Bytes {
        static EMPTY: Bytes = Bytes::new();
        match self {
            Outgoing::Replayable { wire } | Outgoing::Streaming { wire, .. } => wire,
            Outgoing::Spent => &EMPTY,
        }
    }
}

/// One attempt at a worker (see [`PendingExchange`] for where it runs).
struct Attempt {
    id: RequestId,
    address: Arc<str>,
    conn: Option<Upstream>,
    request: Outgoing,
    method: Method,
    fault: Arc<ClientFault>,
}

/// How an exchange went, told to the request task.
enum Exchanged {
    /// The worker answered; its body owns the connection, returned at the end.
    Head(http::response::Parts, WorkerBody),
    /// The worker answered and its whole body is here: the completion was
    /// already reported and the worker is free.
    Whole(http::response::Parts, Bytes),
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
    rx: DecisionRx,
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
        while let Some(decision) = self.rx.try_recv() {
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

/// An exchange with a worker, polled inline by the request task.
type ExchangeFuture = Pin<Box<dyn Future<Output = Exchanged> + Send>>;

/// The exchange in progress, if any. It runs inside the request task (no
/// task of its own on the hot path), but a client that leaves or a read
/// timeout never cancels it: when this guard is dropped with the exchange
/// still running, the exchange moves to a task of its own, which finishes
/// it, drains an answer nobody reads, and reports the completion.
struct PendingExchange {
    future: Option<ExchangeFuture>,
    id: RequestId,
    driver: DriverHandle,
    drain_limit: Duration,
}

impl Drop for PendingExchange {
    fn drop(&mut self) {
        let Some(future) = self.future.take() else { return };
        let (driver, id, limit) = (self.driver.clone(), self.id, self.drain_limit);
        tokio::spawn(async move {
            if let Exchanged::Head(_, body) = future.await {
                finish_unread(body, &driver, id, limit).await;
            }
        });
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

/// How the front door answers a request, whichever codec serves the
/// connection (hyper's, or the fast path's in `fast_path`): each renders it.
pub enum Reply {
    /// A synthesized 502/503/504, with the request's id.
    Answer(Answer, HeaderValue),
    /// The front door's own refusal (413, 400).
    Plain(StatusCode, &'static str),
    /// The worker's whole answer, already in memory; the worker is free.
    Whole(http::response::Parts, Bytes),
    /// The worker's answer, its body still to come.
    Relay(http::response::Parts, RelayBody),
}

impl Reply {
    /// The reply as a hyper response.
    pub fn into_response(self) -> Response<ResponseBody> {
        match self {
            Reply::Answer(answer, request_id) => render_answer(answer, &request_id),
            Reply::Plain(status, text) => plain(status, text),
            Reply::Whole(parts, bytes) => Response::from_parts(parts, ResponseBody::full(bytes)),
            Reply::Relay(parts, body) => Response::from_parts(parts, ResponseBody::Relay(body)),
        }
    }
}

/// A request ready for [`FrontDoor::run`]: its head rewritten and
/// serialized for the worker, a small body with it.
pub struct Prepared {
    outgoing: Outgoing,
    /// Its method and path are the request's.
    ctx: LogCtx,
    fault: Arc<ClientFault>,
}

impl Prepared {
    /// A bodyless or fully buffered request whose worker-bound bytes
    /// (`wire`: head and body) were built by the fast path.
    pub fn replayable(
        wire: Bytes,
        method: Method,
        path: Bytes,
        request_id: HeaderValue,
        t_micros: u64,
        start: Time,
    ) -> Prepared {
        Prepared {
            outgoing: Outgoing::Replayable { wire },
            ctx: LogCtx {
                t_micros,
                start,
                method,
                path,
                request_id,
            },
            fault: Arc::new(ClientFault::default()),
        }
    }
}

/// What the access log and warnings need to know about a request. Cheap to
/// build: the path shares the request's own bytes, and without an access
/// log no clock is read for it.
struct LogCtx {
    t_micros: u64,
    start: Time,
    method: Method,
    /// The request target as the client sent it (origin form).
    path: Bytes,
    request_id: HeaderValue,
}

impl LogCtx {
    fn path(&self) -> &str {
        match std::str::from_utf8(&self.path) {
            Ok(path) if !path.is_empty() => path,
            _ => "/",
        }
    }
}

impl<T: Transport> FrontDoor<T> {
    /// Proxies one request hyper parsed to a worker.
    pub(super) async fn proxy(
        &self,
        app: Arc<AppProxy<T>>,
        request: Request<Incoming>,
        client: Option<IpAddr>,
    ) -> Response<ResponseBody> {
        match self.prepare(&app, request, client).await {
            Ok(prepared) => app.run(prepared).await.into_response(),
            Err(reply) => reply.into_response(),
        }
    }

    /// Rewrites a request hyper parsed for `app`'s worker and reads a small body.
    async fn prepare(
        &self,
        app: &AppProxy<T>,
        request: Request<Incoming>,
        client: Option<IpAddr>,
    ) -> Result<Prepared, Reply> {
        let start = app.now();
        let t_micros = wall_micros();
        let (mut parts, body) = request.into_parts();
        // Framing first: rewriting drops the client's framing headers.
        let declared = content_length(&parts.headers);
        let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
        let request_id = headers::rewrite_request(&mut parts.headers, client, self.config.scheme, t_micros, || {
            self.new_request_id()
        });
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(Bytes::new, |p| Bytes::copy_from_slice(p.as_str().as_bytes()));
        let ctx = LogCtx {
            t_micros,
            start,
            method: parts.method.clone(),
            path,
            request_id,
        };
        if declared.is_some_and(|n| n > self.config.max_body) {
            app.log(&ctx, 413, None, None, Some("body_too_large"));
            return Err(Reply::Plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n"));
        }
        let fault = Arc::new(ClientFault::default());
        let outgoing = if !chunked && declared.unwrap_or(0) <= BUFFER_BODY_LIMIT {
            let bytes = if declared.unwrap_or(0) == 0 {
                Bytes::new()
            } else {
                match body.collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(_) => {
                        app.log(&ctx, 400, None, None, Some("bad_body"));
                        return Err(Reply::Plain(
                            StatusCode::BAD_REQUEST,
                            "could not read the request body\n",
                        ));
                    }
                }
            };
            let framing = if declared.is_some() || !bytes.is_empty() {
                RequestFraming::Length(bytes.len() as u64)
            } else {
                RequestFraming::None
            };
            Outgoing::Replayable {
                wire: encode_request(&parts, framing, &bytes),
            }
        } else {
            let framing = match declared {
                Some(n) if !chunked => RequestFraming::Length(n),
                _ => RequestFraming::Chunked,
            };
            let limited = LimitedBody::new(body, self.config.max_body, fault.clone());
            Outgoing::Streaming {
                wire: encode_request(&parts, framing, &[]),
                body: limited.boxed(),
                framing,
            }
        };
        Ok(Prepared { outgoing, ctx, fault })
    }
}

impl<T: Transport> AppProxy<T> {
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
            method: ctx.method.to_string(),
            path: ctx.path().to_owned(),
            status,
            total_seconds: now.saturating_since(ctx.start).as_secs_f64(),
            worker_seconds: worker.map(|(_, t)| t.saturating_since(ctx.start).as_secs_f64()),
            length,
            reason,
            request_id: String::from_utf8_lossy(ctx.request_id.as_bytes()).into_owned(),
            worker_pid: worker.map(|(p, _)| p.0),
        });
    }

    /// The time, read only when the access log needs it.
    pub(super) fn now(&self) -> Time {
        if self.access_log.is_some() {
            self.clock.now()
        } else {
            Time::ZERO
        }
    }

    /// Takes a prepared request through the core (queue, dispatch, retry)
    /// and the worker exchange to the reply.
    pub(super) async fn run(self: Arc<Self>, prepared: Prepared) -> Reply {
        let Prepared {
            mut outgoing,
            ctx,
            fault,
        } = prepared;
        let method = &ctx.method;
        let now = || self.now();
        let meta = RequestMeta {
            idempotent: is_idempotent(method),
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
            future: None,
            id,
            driver: self.driver.clone(),
            drain_limit: self.config.read_timeout,
        };
        let mut worker: Option<(Pid, Time)> = None;
        let mut decisions_closed = false;
        loop {
            tokio::select! {
                biased;
                result = async { exchange.future.as_mut().expect("guarded").await }, if exchange.future.is_some() => {
                    exchange.future = None;
                    match result {
                        Exchanged::Head(response, body) => {
                            ticket.done = true;
                            let head_at = now();
                            let worker = worker.map(|(p, _)| (p, head_at));
                            return self.relay(response, body, id, &ctx, worker);
                        }
                        Exchanged::Whole(mut parts, bytes) => {
                            ticket.done = true;
                            let worker = worker.map(|(p, _)| (p, now()));
                            headers::rewrite_response(&mut parts.headers);
                            let length = Some(bytes.len() as u64);
                            self.log(&ctx, parts.status.as_u16(), worker, length, None);
                            return Reply::Whole(parts, bytes);
                        }
                        Exchanged::NotTaken(back) => {
                            if let Some(back) = back {
                                outgoing = back;
                            }
                        }
                        Exchanged::Failed => {
                            match fault.get() {
                                // Our limit cut the stream; the exchange told the driver.
                                Some(BodyFault::TooLarge) => {
                                    ticket.done = true;
                                    self.log(&ctx, 413, None, None, Some("body_too_large"));
                                    return Reply::Plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
                                }
                                // The client's own body was malformed or cut short.
                                Some(BodyFault::Broken) => {
                                    ticket.done = true;
                                    self.log(&ctx, 400, None, None, Some("bad_body"));
                                    return Reply::Plain(StatusCode::BAD_REQUEST, "malformed request body\n");
                                }
                                None => {}
                            }
                        }
                    }
                }
                decision = ticket.rx.recv(), if !decisions_closed => match decision {
                    Some(Decision::Dispatch { pid, attempt: _, address, conn }) => {
                        let request = outgoing.take();
                        if matches!(request, Outgoing::Spent) {
                            // Cannot happen: a streamed body is never retried.
                            self.driver.failed_after_send(id);
                            continue;
                        }
                        worker = Some((pid, now()));
                        let this = self.clone();
                        let fault = fault.clone();
                        let method = method.clone();
                        let attempt = Attempt { id, address, conn, request, method, fault };
                        exchange.future = Some(Box::pin(this.exchange(attempt)));
                    }
                    Some(Decision::Answer(answer)) => {
                        // A timed-out exchange goes on in its own task and reports its end.
                        ticket.done = true;
                        if answer == Answer::UpstreamTimeout {
                            tracing::warn!(
                                request = id.0,
                                request_id = %String::from_utf8_lossy(ctx.request_id.as_bytes()),
                                method = %ctx.method,
                                path = %ctx.path(),
                                pid = worker.map_or(0, |(p, _)| p.0),
                                "no response head within the read timeout: 504 sent; the worker is stuck on this request"
                            );
                        }
                        self.log(&ctx, answer.status(), None, None, Some(answer.reason()));
                        return Reply::Answer(answer, ctx.request_id);
                    }
                    None => {
                        // The driver closes the channel once the head was
                        // reported; the exchange's result is on its way.
                        decisions_closed = true;
                        if exchange.future.is_none() {
                            ticket.done = true;
                            self.log(&ctx, 503, None, None, Some("no_capacity"));
                            return Reply::Answer(Answer::NoCapacity, ctx.request_id);
                        }
                    }
                }
            }
        }
    }

    fn relay(
        &self,
        mut parts: http::response::Parts,
        body: WorkerBody,
        id: RequestId,
        ctx: &LogCtx,
        worker: Option<(Pid, Time)>,
    ) -> Reply {
        headers::rewrite_response(&mut parts.headers);
        let status = parts.status.as_u16();
        let on_end: super::body::OnEnd = match &self.access_log {
            Some(_) => {
                let this_log = self.access_log.clone();
                let clock = self.clock;
                let record = Record {
                    t_micros: ctx.t_micros,
                    method: ctx.method.to_string(),
                    path: ctx.path().to_owned(),
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
        let relay = RelayBody::new(
            body,
            id,
            self.driver.clone(),
            self.config.read_timeout,
            on_end,
            self.config.response_buffer,
        );
        Reply::Relay(parts, relay)
    }

    /// Runs one attempt against a worker and reports its outcome to the driver.
    async fn exchange(self: Arc<Self>, attempt: Attempt) -> Exchanged {
        let Attempt {
            id,
            address,
            conn,
            mut request,
            method,
            fault,
        } = attempt;
        let replayable = request.is_replayable();
        // What goes back to the request task when the worker never saw the
        // request: a streamed one (a replayable one was never taken from it).
        let give_back = |request: Outgoing| (!replayable).then_some(request);
        let mut conn = conn.and_then(|mut c| c.is_open().then_some(c));
        let (response, mut body) = loop {
            let fresh = conn.is_none();
            let mut upstream = match conn.take() {
                Some(c) => c,
                None => match Upstream::connect(&self.transport, &address, self.config.connect_timeout).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(request = id.0, %address, "worker connect failed: {e}");
                        self.driver.connect_failed(id);
                        return Exchanged::NotTaken(give_back(request));
                    }
                },
            };
            if let Err(e) = upstream.write_request(request.wire()).await {
                if !fresh {
                    // A kept-alive connection had closed: the worker cannot
                    // have run a request it did not fully receive. Once more
                    // on a new connection.
                    continue;
                }
                tracing::debug!(request = id.0, %address, "writing to a new worker connection failed: {e}");
                self.driver.connect_failed(id);
                return Exchanged::NotTaken(give_back(request));
            }
            if let Outgoing::Streaming { body, framing, .. } = std::mem::replace(&mut request, Outgoing::Spent) {
                upstream.start_body(body, framing);
            }
            match upstream.read_response(&method).await {
                Ok(response) => break response,
                Err(_) if fault.get().is_some() => {
                    // The client's body failed, not the worker: the request
                    // ends for the client and the worker is not to blame.
                    self.driver.client_gone(id);
                    self.driver.complete(id, true, None);
                    return Exchanged::Failed;
                }
                Err(e) => {
                    tracing::debug!(request = id.0, "worker failed after the request was sent: {e}");
                    self.driver.failed_after_send(id);
                    return Exchanged::Failed;
                }
            }
        };
        if headers::is_busy(&response.headers) {
            // The worker says it is busy: it did not run the request. A
            // streamed body may be partly consumed, so only a replayable
            // request can go elsewhere.
            let _ = tokio::time::timeout(Duration::from_secs(1), body.drain()).await;
            if replayable {
                self.driver.busy(id);
                return Exchanged::NotTaken(None);
            }
            self.driver.failed_after_send(id);
            return Exchanged::Failed;
        }
        if let Some(bytes) = body.take_buffered() {
            // One message instead of a head and a completion, and the worker
            // is free before the client has its first byte.
            self.driver
                .complete_whole(id, response.status.as_u16(), body.take_conn());
            return Exchanged::Whole(response, bytes);
        }
        self.driver.response_head(id, response.status.as_u16());
        Exchanged::Head(response, body)
    }
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}
