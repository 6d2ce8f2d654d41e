//! The supervisor's knobs and the arithmetic they drive: the crash-loop
//! backoff delay and the served count at which recycling starts.

use std::time::Duration;

/// The supervisor's knobs. [`Default`] gives the documented defaults.
///
/// [`Supervisor::new`] sanitises a config: `workers` is at least 1,
/// `max_concurrent_spawns` at least 1 and `backoff_max` at least
/// `backoff_initial`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// Desired number of workers at start (default 1).
    pub workers: u32,
    /// Recycle a worker after this many requests (`r:N`); `None` = never.
    pub max_requests: Option<u64>,
    /// Recycle a worker after it has been ready this long (`r:…,Ss`); `None` = never.
    pub max_age: Option<Duration>,
    /// First crash-loop delay (default 100 ms).
    pub backoff_initial: Duration,
    /// Largest crash-loop delay (default 10 s).
    pub backoff_max: Duration,
    /// A worker that stays ready this long resets its slot's crash count (default 5 s).
    pub backoff_reset_after: Duration,
    /// A started worker must join within this, counted from the spawn request (default 30 s).
    pub ready_timeout: Duration,
    /// SIGTERM → SIGKILL escalation (default 10 s).
    pub stop_timeout: Duration,
    /// A worker reported stuck is killed after this (default 5 s).
    pub stuck_grace: Duration,
    /// Slots with a recycling handover in progress, at most (default 1; 0
    /// disables recycling, replacements for module reloads included).
    pub max_concurrent_recycles: u32,
    /// New-generation processes booting at once during a rolling restart (default 2).
    pub max_concurrent_spawns: u32,
    /// Module reloads a worker gets before a reload replaces it instead
    /// (`--max-reloads`): with `Some(n)`, the first `n - 1` reload bursts
    /// signal the worker and the `n`-th replaces it. `None` or `Some(0)`:
    /// never replaced for reloads (default `None`).
    pub max_reloads: Option<u32>,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            workers: 1,
            max_requests: None,
            max_age: None,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            backoff_reset_after: Duration::from_secs(5),
            ready_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(10),
            stuck_grace: Duration::from_secs(5),
            max_concurrent_recycles: 1,
            max_concurrent_spawns: 2,
            max_reloads: None,
        }
    }
}

impl SupervisorConfig {
    /// The wait after `crashes` consecutive crashes:
    /// `min(backoff_initial · 2^(crashes-1), backoff_max)`, zero for no crash.
    pub fn backoff_delay(&self, crashes: u32) -> Duration {
        if crashes == 0 {
            return Duration::ZERO;
        }
        let exp = crashes - 1;
        if exp >= 32 {
            return self.backoff_max;
        }
        self.backoff_initial
            .checked_mul(1u32 << exp)
            .map_or(self.backoff_max, |d| d.min(self.backoff_max))
    }

    /// The served count at which a replacement starts:
    /// `max(1, max_requests − max(1, max_requests/10))`.
    pub fn recycle_threshold(&self) -> Option<u64> {
        self.max_requests.map(|max| {
            let lead = (max / 10).max(1);
            max.saturating_sub(lead).max(1)
        })
    }

    /// Whether a worker that has had `reloads` module reloads is replaced
    /// by the next one instead of being signalled (see `max_reloads`).
    pub fn reload_replaces(&self, reloads: u32) -> bool {
        self.max_reloads
            .is_some_and(|max| max > 0 && reloads.saturating_add(1) >= max)
    }

    pub(super) fn sanitized(mut self) -> Self {
        self.workers = self.workers.max(1);
        self.max_concurrent_spawns = self.max_concurrent_spawns.max(1);
        self.backoff_max = self.backoff_max.max(self.backoff_initial);
        self
    }
}
