//! What the client connection loop and the fast path share about idleness:
//! how long a connection may idle before its buffers are freed, and the one
//! lazy timer both use for "this has lasted long enough".

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::Duration;

use tokio::time::Sleep;

/// How long a connection waits between requests before its HTTP buffers
/// are freed. Short enough that idle clients cost little, long enough that
/// a busy client never pays for rebuilding them.
pub const IDLE_GRACE: Duration = Duration::from_millis(250);

/// How long an idle keep-alive connection stays open once the server
/// stops: a request that arrives meanwhile is served (with `Connection:
/// close`) instead of meeting a connection closed under it. A client that
/// sends its next request at once (a load balancer, a busy client) thus
/// never loses one during a stop or a hitless upgrade; a client idle for
/// the whole linger sees the close when nothing is in flight.
pub const STOP_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// A timer for "the same thing has lasted `after`", where the thing is named
/// by a key that changes when it is replaced (an idle stretch, a request
/// head). Never reset on the hot path: a timer armed for an earlier key is
/// left to fire, and only then re-armed for the current one, so a busy
/// connection costs one timer per period, not one per request. The
/// measured span is therefore between `after` and twice that.
#[derive(Default)]
pub(crate) struct LazyTimer {
    armed: Option<Armed>,
}

struct Armed {
    timer: Pin<Box<Sleep>>,
    key: u64,
    /// The waker the timer last registered; while it still applies and the
    /// timer has not elapsed, polling it again would only re-register it.
    waker: Waker,
}

impl LazyTimer {
    /// Whether the thing named `key` has lasted `after`; arms the timer
    /// (registering `cx`) when it is not running.
    pub(crate) fn expired(&mut self, cx: &mut Context<'_>, key: u64, after: Duration) -> bool {
        if let Some(armed) = &mut self.armed {
            if !armed.timer.is_elapsed() && armed.waker.will_wake(cx.waker()) {
                return false;
            }
            if armed.timer.as_mut().poll(cx).is_pending() {
                armed.waker.clone_from(cx.waker());
                return false;
            }
            if armed.key == key {
                return true;
            }
        }
        let mut timer = Box::pin(tokio::time::sleep(after));
        let _ = timer.as_mut().poll(cx);
        self.armed = Some(Armed {
            timer,
            key,
            waker: cx.waker().clone(),
        });
        false
    }
}
