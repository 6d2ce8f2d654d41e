//! One registered worker process and its state machine.

use std::fmt;

use super::super::{Pid, RequestId, Slot, Time, Version};

/// What the balancer knows about one worker process.
///
/// ```text
///                 join
///   (absent) ─────────────► Idle ◄──────────────────────────────┐
///                            │ on_dispatch                       │
///                            ▼                                   │
///                      Busy{head: false} ── on_head ──► Busy{head: true}
///                            │                                   │
///              on_read_timeout                         on_complete(clean)
///                            ▼                                   │
///                      Stuck ── on_complete(clean) ─────────────►┤
///                                                                │
///   Busy / Stuck ── on_complete(broken), on_refused ──► Quarantined{until}
///   Idle ── on_refused ──► Quarantined{until} ── on_quarantine_end ──►┘
/// ```
///
/// Orthogonal flags: `draining` (the supervisor wants it gone: no new
/// request) and `leaving` (it quit or exited: removed once nothing is in
/// flight). A worker is *routable* when it is `Idle`, neither draining nor
/// leaving, of the active version, and under its request budget; only
/// routable workers sit in the idle set.
#[derive(Clone, Debug)]
pub(crate) struct Worker {
    pub(crate) pid: Pid,
    pub(crate) slot: Slot,
    pub(crate) version: Version,
    pub(crate) socket: String,
    state: State,
    pub(crate) draining: bool,
    pub(crate) leaving: bool,
    /// Requests dispatched to it (attempts, not answers).
    pub(crate) dispatched: u64,
    /// Exchanges finished (clean or not).
    pub(crate) completed: u64,
    /// Whether it is in the idle set.
    pub(crate) in_idle_set: bool,
    /// Whether the supervisor was already told this draining worker is idle.
    pub(crate) idle_reported: bool,
    /// Connection refusals in a row (reset by a finished exchange).
    pub(crate) refusals: u32,
    /// Reported to the supervisor as unusable (refusing connections).
    pub(crate) unhealthy: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Busy { request: RequestId, head: bool },
    Stuck { request: RequestId },
    Quarantined { until: Time },
}

/// An event that the worker's current state does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IllegalTransition {
    pub(crate) event: &'static str,
    pub(crate) pid: Pid,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event {} is illegal for worker {:?}", self.event, self.pid)
    }
}

type Transition = Result<(), IllegalTransition>;

impl Worker {
    pub(crate) fn new(pid: Pid, slot: Slot, version: Version, socket: String) -> Worker {
        Worker {
            pid,
            slot,
            version,
            socket,
            state: State::Idle,
            draining: false,
            leaving: false,
            dispatched: 0,
            completed: 0,
            in_idle_set: false,
            idle_reported: false,
            refusals: 0,
            unhealthy: false,
        }
    }

    fn illegal(&self, event: &'static str) -> Transition {
        Err(IllegalTransition { event, pid: self.pid })
    }

    /// Idle → Busy.
    pub(crate) fn on_dispatch(&mut self, request: RequestId) -> Transition {
        match self.state {
            State::Idle => {
                self.state = State::Busy { request, head: false };
                self.dispatched += 1;
                Ok(())
            }
            _ => self.illegal("dispatch"),
        }
    }

    /// Busy{head: false} → Busy{head: true}.
    pub(crate) fn on_head(&mut self, request: RequestId) -> Transition {
        match self.state {
            State::Busy {
                request: r,
                head: false,
            } if r == request => {
                self.state = State::Busy { request, head: true };
                Ok(())
            }
            _ => self.illegal("response head"),
        }
    }

    /// Busy{head: false} → Stuck.
    pub(crate) fn on_read_timeout(&mut self, request: RequestId) -> Transition {
        match self.state {
            State::Busy {
                request: r,
                head: false,
            } if r == request => {
                self.state = State::Stuck { request };
                Ok(())
            }
            _ => self.illegal("read timeout"),
        }
    }

    /// Busy or Stuck → Idle (clean) or Quarantined (broken).
    pub(crate) fn on_complete(&mut self, request: RequestId, quarantine_until: Option<Time>) -> Transition {
        match self.state {
            State::Busy { request: r, .. } | State::Stuck { request: r } if r == request => {
                self.completed += 1;
                self.state = match quarantine_until {
                    None => State::Idle,
                    Some(until) => State::Quarantined { until },
                };
                Ok(())
            }
            _ => self.illegal("complete"),
        }
    }

    /// Busy (before any byte of a response) → Quarantined: the worker refused
    /// the connection or answered busy, so it did not take the request; or
    /// → Idle (`until` = None) when the request was never sent at all.
    pub(crate) fn on_refused(&mut self, request: RequestId, until: Option<Time>) -> Transition {
        match self.state {
            State::Busy {
                request: r,
                head: false,
            } if r == request => {
                // The attempt did not count against its budget.
                self.dispatched -= 1;
                self.state = match until {
                    Some(until) => State::Quarantined { until },
                    None => State::Idle,
                };
                Ok(())
            }
            _ => self.illegal("refused"),
        }
    }

    /// Quarantined → Idle once the quarantine has ended.
    pub(crate) fn on_quarantine_end(&mut self, now: Time) -> Transition {
        match self.state {
            State::Quarantined { until } if until <= now => {
                self.state = State::Idle;
                Ok(())
            }
            _ => self.illegal("quarantine end"),
        }
    }

    /// Whether it may take a request now: `Idle`, neither draining nor
    /// leaving, of the `active` version and under its request budget.
    pub(crate) fn routable(&self, active: Option<Version>, max_requests: Option<u64>) -> bool {
        self.is_idle()
            && !self.draining
            && !self.leaving
            && Some(self.version) == active
            && max_requests.is_none_or(|max| self.dispatched < max)
    }

    /// The request this worker is handling, if any.
    pub(crate) fn in_flight(&self) -> Option<RequestId> {
        match self.state {
            State::Busy { request, .. } | State::Stuck { request } => Some(request),
            State::Idle | State::Quarantined { .. } => None,
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    pub(crate) fn is_stuck(&self) -> bool {
        matches!(self.state, State::Stuck { .. })
    }

    pub(crate) fn quarantined_until(&self) -> Option<Time> {
        match self.state {
            State::Quarantined { until } => Some(until),
            _ => None,
        }
    }

    /// Counts toward the version-routing quorum: serving or able to serve soon.
    pub(crate) fn is_ready(&self) -> bool {
        !self.draining && !self.leaving && !self.is_stuck()
    }

    /// A short lowercase name of the state for `/status`.
    pub(crate) fn state_name(&self) -> &'static str {
        if self.leaving {
            return "leaving";
        }
        if self.draining {
            return "draining";
        }
        match self.state {
            State::Idle => "idle",
            State::Busy { .. } => "busy",
            State::Stuck { .. } => "stuck",
            State::Quarantined { .. } => "quarantined",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker() -> Worker {
        Worker::new(Pid(1), Slot(0), Version(1), "s".into())
    }

    #[test]
    fn walks_the_happy_path() {
        let mut w = worker();
        w.on_dispatch(RequestId(1)).unwrap();
        assert_eq!(w.in_flight(), Some(RequestId(1)));
        w.on_head(RequestId(1)).unwrap();
        w.on_complete(RequestId(1), None).unwrap();
        assert!(w.is_idle());
        assert_eq!((w.dispatched, w.completed), (1, 1));
    }

    #[test]
    fn rejects_illegal_moves() {
        let mut w = worker();
        assert!(w.on_head(RequestId(1)).is_err());
        assert!(w.on_complete(RequestId(1), None).is_err());
        w.on_dispatch(RequestId(1)).unwrap();
        assert!(
            w.on_dispatch(RequestId(2)).is_err(),
            "second request while one is in flight"
        );
        assert!(w.on_complete(RequestId(2), None).is_err(), "wrong request");
        w.on_head(RequestId(1)).unwrap();
        assert!(w.on_read_timeout(RequestId(1)).is_err(), "head already received");
        assert!(
            w.on_refused(RequestId(1), Some(Time::ZERO)).is_err(),
            "bytes already came back"
        );
    }

    #[test]
    fn stuck_worker_comes_back_when_it_finishes() {
        let mut w = worker();
        w.on_dispatch(RequestId(1)).unwrap();
        w.on_read_timeout(RequestId(1)).unwrap();
        assert!(w.is_stuck() && !w.is_ready());
        assert!(w.on_dispatch(RequestId(2)).is_err());
        w.on_complete(RequestId(1), None).unwrap();
        assert!(w.is_idle());
    }

    #[test]
    fn quarantine_ends_only_at_its_time() {
        let mut w = worker();
        w.on_dispatch(RequestId(1)).unwrap();
        w.on_refused(RequestId(1), Some(Time::from_millis(10))).unwrap();
        assert_eq!(w.dispatched, 0);
        assert!(w.on_quarantine_end(Time::from_millis(9)).is_err());
        w.on_quarantine_end(Time::from_millis(10)).unwrap();
        assert!(w.is_idle());
    }
}
