//! The channel that carries the driver's decisions to one request task.
//!
//! Every request gets one, so it must be cheap: a tokio unbounded channel
//! allocates a 32-slot block up front (about 3 KiB with our message size),
//! which showed up in the front door's profile. A request receives one
//! decision in the common case and a handful at most, so a small queue
//! behind an uncontended lock does the job with one small allocation.
//!
//! Semantics follow tokio's mpsc: [`DecisionRx::recv`] returns `None` once
//! the sender is gone and the queue is empty; after [`DecisionRx::close`],
//! sends fail and hand the decision back, and what was already queued can
//! still be taken with [`DecisionRx::try_recv`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use crate::core::{Answer, Pid};
use crate::upstream::Upstream;

/// What the driver tells a request task.
#[derive(Debug)]
pub enum Decision {
    /// Send the request to this worker, on `conn` if one is open.
    Dispatch {
        pid: Pid,
        attempt: u8,
        address: Arc<str>,
        conn: Option<Upstream>,
    },
    /// Reply with this synthesized answer.
    Answer(Answer),
}

#[derive(Default)]
struct State {
    queue: VecDeque<Decision>,
    waker: Option<Waker>,
    closed: bool,
    sender_gone: bool,
}

struct Shared(Mutex<State>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The driver's end.
pub struct DecisionTx(Arc<Shared>);

/// The request task's end.
pub struct DecisionRx(Arc<Shared>);

/// A new channel.
pub fn channel() -> (DecisionTx, DecisionRx) {
    let shared = Arc::new(Shared(Mutex::new(State::default())));
    (DecisionTx(shared.clone()), DecisionRx(shared))
}

impl DecisionTx {
    /// Queues a decision; gives it back if the receiver closed or is gone.
    pub fn send(&self, decision: Decision) -> Result<(), Decision> {
        let waker = {
            let mut state = self.0.lock();
            if state.closed {
                return Err(decision);
            }
            state.queue.push_back(decision);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl Drop for DecisionTx {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.0.lock();
            state.sender_gone = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl DecisionRx {
    /// The next decision; `None` once the driver dropped its end and
    /// nothing is queued.
    pub async fn recv(&mut self) -> Option<Decision> {
        std::future::poll_fn(|cx| {
            let mut state = self.0.lock();
            if let Some(decision) = state.queue.pop_front() {
                return Poll::Ready(Some(decision));
            }
            if state.sender_gone || state.closed {
                return Poll::Ready(None);
            }
            match &mut state.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// A queued decision, without waiting.
    pub fn try_recv(&mut self) -> Option<Decision> {
        self.0.lock().queue.pop_front()
    }

    /// Refuses further sends; queued decisions stay available to `try_recv`.
    pub fn close(&mut self) {
        self.0.lock().closed = true;
    }
}

impl Drop for DecisionRx {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Answer;

    #[tokio::test]
    async fn delivers_in_order_then_ends_when_the_sender_goes() {
        let (tx, mut rx) = channel();
        tx.send(Decision::Answer(Answer::QueueFull)).unwrap();
        tx.send(Decision::Answer(Answer::NoCapacity)).unwrap();
        drop(tx);
        assert!(matches!(rx.recv().await, Some(Decision::Answer(Answer::QueueFull))));
        assert!(matches!(rx.recv().await, Some(Decision::Answer(Answer::NoCapacity))));
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn close_refuses_sends_but_keeps_what_was_queued() {
        let (tx, mut rx) = channel();
        tx.send(Decision::Answer(Answer::QueueFull)).unwrap();
        rx.close();
        assert!(tx.send(Decision::Answer(Answer::NoCapacity)).is_err());
        assert!(matches!(rx.try_recv(), Some(Decision::Answer(Answer::QueueFull))));
        assert!(rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken() {
        let (tx, mut rx) = channel();
        let waiter = tokio::spawn(async move { rx.recv().await.is_some() });
        tokio::task::yield_now().await;
        tx.send(Decision::Answer(Answer::QueueFull)).unwrap();
        assert!(waiter.await.unwrap());
        // Sending to a dropped receiver fails.
        let (tx, rx) = channel();
        drop(rx);
        assert!(tx.send(Decision::Answer(Answer::QueueFull)).is_err());
    }
}
