//! Bodies that stream between client and worker without being buffered.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::core::RequestId;
use crate::runtime::DriverHandle;
use crate::upstream::{BoxError, UpstreamError, WorkerBody};

/// What went wrong with a client's streamed body, if anything: the
/// exchange then fails through no fault of the worker.
#[derive(Debug, Default)]
pub struct ClientFault(AtomicU8);

/// The kinds of [`ClientFault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFault {
    /// Over the size limit: 413.
    TooLarge,
    /// Malformed (bad chunked encoding) or cut short: 400.
    Broken,
}

impl ClientFault {
    fn set(&self, fault: BodyFault) {
        let code = match fault {
            BodyFault::TooLarge => 1,
            BodyFault::Broken => 2,
        };
        let _ = self.0.compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The fault, once the body has failed.
    pub fn get(&self) -> Option<BodyFault> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(BodyFault::TooLarge),
            2 => Some(BodyFault::Broken),
            _ => None,
        }
    }
}

/// A client's request body with a size limit, checked while it streams.
pub struct LimitedBody {
    inner: Incoming,
    remaining: u64,
    fault: Arc<ClientFault>,
}

impl LimitedBody {
    pub fn new(inner: Incoming, limit: u64, fault: Arc<ClientFault>) -> LimitedBody {
        LimitedBody {
            inner,
            remaining: limit,
            fault,
        }
    }
}

/// The error of a body that went over its limit.
#[derive(Debug)]
pub struct TooLarge;

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body too large")
    }
}

impl std::error::Error for TooLarge {}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > self.remaining {
                        self.fault.set(BodyFault::TooLarge);
                        return Poll::Ready(Some(Err(Box::new(TooLarge))));
                    }
                    self.remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.fault.set(BodyFault::Broken);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Called once when a relayed response ends, with the bytes sent.
pub type OnEnd = Box<dyn FnOnce(u64) + Send>;

/// A worker's response body on its way to the client.
///
/// With a read-ahead buffer (`--response-buffer-kb`, 1 MiB by default) a
/// task of its own reads the worker's body into a queue bounded by that many
/// bytes, and reports the completion (handing the connection back) as soon
/// as the worker's last byte is in it: a client that reads slowly holds the
/// worker only while more than the buffer is still to come, as with nginx's
/// proxy buffering. Without one (0), the worker is read as the client reads
/// and released at its last byte.
///
/// Either way, if the client leaves first, the rest is drained (at most for
/// the drain limit) so the worker ends its write cleanly and the connection
/// can be reused.
pub struct RelayBody {
    source: Source,
    sent: u64,
    on_end: Option<OnEnd>,
}

enum Source {
    Direct {
        inner: Option<WorkerBody>,
        request: RequestId,
        driver: DriverHandle,
        drain_limit: Duration,
    },
    ReadAhead {
        rx: mpsc::UnboundedReceiver<Result<Chunk, UpstreamError>>,
        /// Bytes still to come, when the worker declared a length.
        remaining: Option<u64>,
        done: bool,
    },
}

/// A piece of a read-ahead body, holding its share of the buffer until the
/// client has it.
type Chunk = (Bytes, OwnedSemaphorePermit);

impl RelayBody {
    pub fn new(
        inner: WorkerBody,
        request: RequestId,
        driver: DriverHandle,
        drain_limit: Duration,
        on_end: OnEnd,
        read_ahead: usize,
    ) -> RelayBody {
        let source = if read_ahead == 0 {
            Source::Direct {
                inner: Some(inner),
                request,
                driver,
                drain_limit,
            }
        } else {
            let remaining = inner.size_hint().exact();
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(read_ahead_task(inner, tx, read_ahead, driver, request, drain_limit));
            Source::ReadAhead {
                rx,
                remaining,
                done: false,
            }
        };
        RelayBody {
            source,
            sent: 0,
            on_end: Some(on_end),
        }
    }

    fn ended(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end(self.sent);
        }
    }
}

/// Reads a worker's body ahead of the client into at most `limit` bytes,
/// then reports the completion; drains the rest if the client leaves.
async fn read_ahead_task(
    mut body: WorkerBody,
    tx: mpsc::UnboundedSender<Result<Chunk, UpstreamError>>,
    limit: usize,
    driver: DriverHandle,
    request: RequestId,
    drain_limit: Duration,
) {
    let budget = Arc::new(Semaphore::new(limit));
    loop {
        match body.frame().await {
            None => break,
            Some(Err(e)) => {
                let _ = tx.send(Err(e));
                driver.complete(request, false, None);
                return;
            }
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else { continue };
                // A piece larger than the whole buffer takes all of it.
                let share = u32::try_from(data.len().min(limit)).unwrap_or(u32::MAX);
                let permit = tokio::select! {
                    biased;
                    permit = budget.clone().acquire_many_owned(share) => permit.expect("never closed"),
                    () = tx.closed() => {
                        finish_unread(body, &driver, request, drain_limit).await;
                        return;
                    }
                };
                if tx.send(Ok((data, permit))).is_err() {
                    // The client left: finish reading so the worker is free.
                    finish_unread(body, &driver, request, drain_limit).await;
                    return;
                }
            }
        }
    }
    driver.complete(request, true, body.take_conn());
}

impl Body for RelayBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = &mut *self;
        let polled = match &mut this.source {
            Source::Direct {
                inner, request, driver, ..
            } => {
                let Some(body) = inner.as_mut() else {
                    return Poll::Ready(None);
                };
                let polled = Pin::new(&mut *body).poll_frame(cx);
                // Release the worker as soon as its last byte is in hand, not
                // when the client has read it.
                let finished = match &polled {
                    Poll::Ready(Some(Ok(_))) => body.is_done().then_some(true),
                    Poll::Ready(None) => Some(true),
                    Poll::Ready(Some(Err(_))) => Some(false),
                    Poll::Pending => None,
                };
                if let Some(clean) = finished {
                    let conn = inner.take().and_then(|mut b| if clean { b.take_conn() } else { None });
                    driver.complete(*request, clean, conn);
                }
                polled
            }
            Source::ReadAhead { rx, remaining, done } => {
                if *done {
                    return Poll::Ready(None);
                }
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(Ok((data, _permit)))) => {
                        if let Some(left) = remaining {
                            *left = left.saturating_sub(data.len() as u64);
                        }
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Poll::Ready(Some(Err(e))) => {
                        *done = true;
                        Poll::Ready(Some(Err(e)))
                    }
                    Poll::Ready(None) => {
                        *done = true;
                        Poll::Ready(None)
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
                if this.is_end_stream() {
                    this.ended();
                }
            }
            Poll::Ready(_) => this.ended(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Direct { inner, .. } => inner.as_ref().is_none_or(WorkerBody::is_done),
            Source::ReadAhead { remaining, done, .. } => *done || *remaining == Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Direct { inner, .. } => inner.as_ref().map_or(SizeHint::with_exact(0), Body::size_hint),
            Source::ReadAhead { remaining, done, .. } => match (done, remaining) {
                (true, _) => SizeHint::with_exact(0),
                (false, Some(n)) => SizeHint::with_exact(*n),
                (false, None) => SizeHint::default(),
            },
        }
    }
}

impl Drop for RelayBody {
    fn drop(&mut self) {
        // Logged with what the client got, however the response ended.
        self.ended();
        let Source::Direct {
            inner,
            request,
            driver,
            drain_limit,
        } = &mut self.source
        else {
            // A read-ahead task sees the queue close and finishes on its own.
            return;
        };
        let Some(inner) = inner.take() else {
            return;
        };
        // The client went away mid-body: drain the rest so the worker ends
        // its write cleanly, then report the completion.
        let (driver, request, limit) = (driver.clone(), *request, *drain_limit);
        tokio::spawn(async move { finish_unread(inner, &driver, request, limit).await });
    }
}

/// Ends an exchange nobody reads any more (client gone, read timeout): reads
/// the rest of the worker's body, at most for `limit`, so the worker finishes
/// its write, then reports the completion; the connection is reused only
/// after a clean end.
pub async fn finish_unread(mut body: WorkerBody, driver: &DriverHandle, request: RequestId, limit: Duration) {
    let clean = matches!(tokio::time::timeout(limit, body.drain()).await, Ok(Ok(())));
    driver.complete(request, clean, if clean { body.take_conn() } else { None });
}

/// What the front door sends a client.
pub enum ResponseBody {
    Full(Option<Bytes>),
    Relay(RelayBody),
}

impl ResponseBody {
    pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
        ResponseBody::Full(Some(bytes.into()))
    }

    pub fn empty() -> ResponseBody {
        ResponseBody::Full(None)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        match self.get_mut() {
            ResponseBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Relay(relay) => Pin::new(relay).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(bytes) => bytes.is_none(),
            ResponseBody::Relay(relay) => relay.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Relay(relay) => relay.size_hint(),
        }
    }
}
