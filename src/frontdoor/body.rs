//! Bodies that stream between client and worker without being buffered.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::core::RequestId;
use crate::driver::DriverHandle;
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

/// A worker's response body on its way to the client. When it ends, the
/// worker's connection goes back to the driver with the completion; if the
/// client leaves first, the rest is drained in the background so the worker
/// finishes its write and the connection can be reused.
pub struct RelayBody {
    inner: Option<WorkerBody>,
    request: RequestId,
    driver: DriverHandle,
    sent: u64,
    drain_limit: Duration,
    on_end: Option<OnEnd>,
}

impl RelayBody {
    pub fn new(
        inner: WorkerBody,
        request: RequestId,
        driver: DriverHandle,
        drain_limit: Duration,
        on_end: OnEnd,
    ) -> RelayBody {
        RelayBody {
            inner: Some(inner),
            request,
            driver,
            sent: 0,
            drain_limit,
            on_end: Some(on_end),
        }
    }

    fn finish(&mut self, clean: bool) {
        let conn = self
            .inner
            .take()
            .and_then(|mut body| if clean { body.take_conn() } else { None });
        self.driver.complete(self.request, clean, conn);
        if let Some(on_end) = self.on_end.take() {
            on_end(self.sent);
        }
    }
}

impl Body for RelayBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
                // Release the worker as soon as its last byte is in hand, not
                // when the client has read it: a slow reader never holds a worker.
                if self.inner.as_ref().is_some_and(WorkerBody::is_done) {
                    self.finish(true);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.finish(false);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.finish(true);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(WorkerBody::is_done)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or(SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for RelayBody {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        // The client went away mid-body: drain the rest so the worker ends
        // its write cleanly, then report the completion.
        let driver = self.driver.clone();
        let request = self.request;
        let limit = self.drain_limit;
        let on_end = self.on_end.take();
        let sent = self.sent;
        tokio::spawn(async move {
            finish_unread(inner, &driver, request, limit).await;
            if let Some(on_end) = on_end {
                on_end(sent);
            }
        });
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
