//! One client connection: our fast path or hyper while requests flow,
//! nothing while idle.
//!
//! hyper's HTTP/1 connection holds about 10 KB per connection (an 8 KiB
//! write buffer allocated up front, an 8 KiB read buffer from the first
//! read, its state) for as long as it lives, idle or not: 10,000 idle
//! keep-alive clients cost over 100 MB. nginx frees a keep-alive
//! connection's buffers while it waits; we do the same:
//!
//! ```text
//!   accept ──▶ Idle ──first byte──▶ Fast path ──idle for IDLE_GRACE──▶ Idle
//!               │  no buffers, just    │ our codec, one read buffer   ▲
//!               │  the socket          │                              │
//!               ▼                      │ a request it does not take   │
//!            closed after the          ▼ (bytes kept)                 │
//!            header timeout         Busy (hyper) ──idle for IDLE_GRACE┘
//!            or on shutdown            │ taken apart with into_parts()
//!                                      ▼ only between requests, with
//!                                   closed when    nothing unread or unflushed
//!                                   hyper is done
//! ```
//!
//! Under load the common request never leaves the fast path (see
//! `fast_path`); a connection hyper serves is watched through the few
//! relaxed atomics of the [`Probe`] it reads and writes through.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::BytesMut;
use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use super::idle::{IDLE_GRACE, LazyTimer, STOP_LINGER};
use super::{FrontDoor, ProxyService, fast_path};
use crate::net::listen::PollReadable;
use crate::net::transport::Transport;

/// Notified whenever an idle connection freed its HTTP buffers; the server
/// then hands the freed memory back to the system (see
/// [`crate::os::sys::release_free_memory`]), at most once a second.
pub fn buffers_freed() -> &'static tokio::sync::Notify {
    static FREED: tokio::sync::Notify = tokio::sync::Notify::const_new();
    &FREED
}

/// What the connection loop learns from hyper's reads and writes.
#[derive(Default)]
pub struct ProbeState {
    /// Requests handed to the service whose response is not done.
    active: AtomicUsize,
    /// Bytes arrived since the last response ended: a head may be half read.
    read_since_done: AtomicBool,
    /// hyper's last read found nothing to read.
    waiting: AtomicBool,
    /// Bytes written and not yet flushed.
    unflushed: AtomicBool,
    /// Bumped on every sign of activity, so a timer can tell "idle since".
    epoch: AtomicU64,
    /// Request heads completed so far, so a timer can tell "the same head".
    heads: AtomicU64,
}

impl ProbeState {
    fn touch(&self) {
        self.epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes of a request head arrived and the head is not complete yet.
    fn head_in_progress(&self) -> bool {
        self.active.load(Ordering::Relaxed) == 0 && self.read_since_done.load(Ordering::Relaxed)
    }

    /// hyper waits for the next request and holds nothing unread or unsent.
    fn is_idle(&self) -> bool {
        self.active.load(Ordering::Relaxed) == 0
            && !self.read_since_done.load(Ordering::Relaxed)
            && self.waiting.load(Ordering::Relaxed)
            && !self.unflushed.load(Ordering::Relaxed)
    }

    /// Marks a request as handed to the service until the guard drops
    /// (its response body was sent, or hyper gave up on it).
    pub fn start_request(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.heads.fetch_add(1, Ordering::Relaxed);
        self.waiting.store(false, Ordering::Relaxed);
        self.touch();
        ActiveGuard(self.clone())
    }
}

/// See [`ProbeState::start_request`].
pub struct ActiveGuard(Arc<ProbeState>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.read_since_done.store(false, Ordering::Relaxed);
        }
        self.0.touch();
    }
}

/// A response body that keeps its request counted as active until hyper
/// drops it (after its last byte, or on error).
pub struct Tracked<B> {
    body: B,
    _active: ActiveGuard,
}

impl<B> Tracked<B> {
    pub fn new(body: B, active: ActiveGuard) -> Tracked<B> {
        Tracked { body, _active: active }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client stream as hyper sees it: bytes read before hyper existed
/// come first, and every read and write is noted in the [`ProbeState`].
pub struct Probe<I> {
    inner: I,
    prefix: Bytes,
    state: Arc<ProbeState>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Probe<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            this.state.read_since_done.store(true, Ordering::Relaxed);
            this.state.waiting.store(false, Ordering::Relaxed);
            this.state.touch();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => {
                this.state.waiting.store(true, Ordering::Relaxed);
                Poll::Pending
            }
            ready => {
                if buf.filled().len() > before {
                    this.state.read_since_done.store(true, Ordering::Relaxed);
                }
                this.state.waiting.store(false, Ordering::Relaxed);
                this.state.touch();
                ready
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Probe<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.state.waiting.store(false, Ordering::Relaxed);
        self.state.touch();
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.state.unflushed.store(true, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(result, Poll::Ready(Ok(()))) {
            self.state.unflushed.store(false, Ordering::Relaxed);
        }
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How a busy phase ended.
enum Ended {
    /// hyper finished (the client closed, or `Connection: close`).
    Done,
    /// Idle for [`IDLE_GRACE`]: hand the stream back.
    Idle,
    /// A request head took longer than the header timeout.
    HeadTimeout,
}

/// Serves one client connection (plain TCP, or TLS after its handshake
/// with `sni` the name the client asked for) until it closes, the idle
/// timeout passes, or `closing` turns true (then a busy connection closes
/// after its current request, and an idle one after one more request if it
/// comes within [`STOP_LINGER`], else at the end of it). Requests go to the fast path
/// first; at the first one it does not take, hyper serves the connection
/// until it idles. The header timeout bounds both the wait for a request's
/// first byte and the time from its first byte to its last header line
/// (the latter between one and two timeouts for a head split across
/// packets while the connection serves others; see [`LazyTimer`]).
pub async fn serve<T, I>(
    mut io: I,
    front_door: Arc<FrontDoor<T>>,
    client: Option<IpAddr>,
    sni: Option<Arc<str>>,
    builder: http1::Builder,
    mut closing: watch::Receiver<bool>,
) where
    T: Transport,
    I: AsyncRead + AsyncWrite + PollReadable + Unpin + Send + 'static,
{
    let header_timeout = front_door.config.header_timeout;
    let mut prefix = Bytes::new();
    let mut idle_budget = header_timeout;
    loop {
        if prefix.is_empty() {
            // Idle: no HTTP state at all, only the socket.
            let readable = std::future::poll_fn(|cx| io.poll_readable(cx));
            tokio::pin!(readable);
            let stopping = tokio::select! {
                biased;
                _ = closing.wait_for(|c| *c) => true,
                ready = tokio::time::timeout(idle_budget, &mut readable) => match ready {
                    Ok(Ok(())) => false,
                    // The idle timeout, or the socket failed: close.
                    Ok(Err(_)) | Err(_) => return,
                },
            };
            // Stopping: a request that comes within the linger is still
            // served (the fast path answers it with `Connection: close`).
            if stopping && !matches!(tokio::time::timeout(STOP_LINGER, &mut readable).await, Ok(Ok(()))) {
                return;
            }
        }
        let mut buf = BytesMut::from(std::mem::take(&mut prefix));
        // Boxed: its state lives only while requests flow, not in every
        // idle connection's task.
        let ended = Box::pin(fast_path::serve(
            &front_door,
            client,
            sni.as_deref(),
            &mut io,
            &mut buf,
            &mut closing,
        ))
        .await;
        match ended {
            fast_path::Ended::Close => return,
            fast_path::Ended::Idle => {
                tracing::trace!("idle connection: HTTP buffers freed");
                buffers_freed().notify_one();
                idle_budget = header_timeout.saturating_sub(IDLE_GRACE);
                continue;
            }
            fast_path::Ended::Handover => prefix = buf.freeze(),
        }
        let state = Arc::new(ProbeState::default());
        let service = ProxyService {
            front_door: front_door.clone(),
            client,
            sni: sni.clone(),
            state: state.clone(),
        };
        let probe = Probe {
            inner: io,
            prefix: std::mem::take(&mut prefix),
            state: state.clone(),
        };
        let mut conn = builder.serve_connection(TokioIo::new(probe), service);
        let ended = {
            let mut closing_now = Box::pin(closing.wait_for(|c| *c));
            let mut shutting_down = false;
            // Keyed by the activity epoch: the idle stretch it times.
            let mut grace = LazyTimer::default();
            // Keyed by the count of heads done: the head it times. Our own
            // rather than hyper's, which allocates and registers a timer for
            // every request; this one is armed only when a head arrives in
            // pieces, which a busy client's heads almost never do.
            let mut head_timer = LazyTimer::default();
            std::future::poll_fn(|cx| {
                if !shutting_down && closing_now.as_mut().poll(cx).is_ready() {
                    shutting_down = true;
                    grace = LazyTimer::default();
                    Pin::new(&mut conn).graceful_shutdown();
                }
                if Pin::new(&mut conn).poll(cx).is_ready() {
                    return Poll::Ready(Ended::Done);
                }
                if state.head_in_progress()
                    && head_timer.expired(cx, state.heads.load(Ordering::Relaxed), header_timeout)
                {
                    return Poll::Ready(Ended::HeadTimeout);
                }
                if !shutting_down
                    && state.is_idle()
                    && grace.expired(cx, state.epoch.load(Ordering::Relaxed), IDLE_GRACE)
                {
                    return Poll::Ready(Ended::Idle);
                }
                Poll::Pending
            })
            .await
        };
        match ended {
            Ended::Done => return,
            Ended::HeadTimeout => {
                tracing::debug!("request head not complete within the header timeout: connection closed");
                return;
            }
            Ended::Idle => {}
        }
        tracing::trace!("idle connection: HTTP buffers freed");
        buffers_freed().notify_one();
        // Idle for the whole grace period: take the stream back from hyper
        // and free everything else.
        let parts = conn.into_parts();
        let probe = parts.io.into_inner();
        io = probe.inner;
        // Copied, never kept: even an empty `read_buf` can hold hyper's
        // whole 8 KiB read buffer alive.
        prefix = if parts.read_buf.is_empty() && probe.prefix.is_empty() {
            Bytes::new()
        } else {
            [parts.read_buf, probe.prefix].concat().into()
        };
        idle_budget = header_timeout.saturating_sub(IDLE_GRACE);
    }
}
