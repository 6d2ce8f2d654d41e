//! The response body wrapper that holds the worker's request slot until the
//! response has been sent to its end.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{Shared, WorkerBody};

/// Gives the request slot back exactly once: on [`SlotGuard::release`] or on drop.
#[derive(Debug)]
pub(super) struct SlotGuard {
    shared: Arc<Shared>,
    released: AtomicBool,
}

impl SlotGuard {
    pub(super) fn new(shared: Arc<Shared>) -> SlotGuard {
        SlotGuard {
            shared,
            released: AtomicBool::new(false),
        }
    }

    fn release(&self) {
        if !self.released.swap(true, Ordering::SeqCst) {
            self.shared.release();
        }
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.release();
    }
}

/// A response body that releases its [`SlotGuard`] as soon as it is known to
/// be finished: when the last frame is handed to hyper (so before the client
/// can see the end of the response and send the next request), on an error,
/// or when hyper drops it (the connection went away).
pub(super) struct SlotBody {
    inner: WorkerBody,
    guard: Option<SlotGuard>,
}

impl SlotBody {
    pub(super) fn new(inner: WorkerBody, guard: SlotGuard) -> SlotBody {
        let body = SlotBody {
            inner,
            guard: Some(guard),
        };
        body.release_if_ended();
        body
    }

    /// A body that holds no slot (the busy 503).
    pub(super) fn free(inner: WorkerBody) -> SlotBody {
        SlotBody { inner, guard: None }
    }

    fn release(&self) {
        if let Some(guard) = &self.guard {
            guard.release();
        }
    }

    fn release_if_ended(&self) {
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

impl Body for SlotBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => this.release_if_ended(),
            Poll::Ready(None | Some(Err(_))) => this.release(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let ended = self.inner.is_end_stream();
        if ended {
            self.release();
        }
        ended
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
