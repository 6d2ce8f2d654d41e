//! Hot reload, sans-IO: the reload mode an app runs with ([`ReloadMode`]) and
//! the debouncer ([`Debounce`]) that turns a burst of file-change
//! notifications into one reload.
//!
//! The file watcher lives outside the core; it only reports "something
//! changed" with the time. [`crate::core::node::Node`] feeds those reports to
//! a [`Debounce`] and, when a burst is over, starts a rolling restart
//! ([`ReloadMode::Process`]) or a module reload of the workers
//! ([`ReloadMode::Module`]). This module imports only [`Time`].

use std::time::Duration;

use serde::Serialize;

use super::Time;

/// How an app follows changes to its files (`--hot-reload`, `RIP_HOT_RELOAD`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadMode {
    /// Changes are ignored.
    #[default]
    None,
    /// Each burst of changes starts one rolling restart.
    Process,
    /// Each burst of changes asks the workers to load the new code in place
    /// (the module-reload signal), replacing those that cannot.
    Module,
}

impl std::fmt::Display for ReloadMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ReloadMode {
    /// Every mode, in a fixed order.
    pub const ALL: [ReloadMode; 3] = [ReloadMode::None, ReloadMode::Process, ReloadMode::Module];

    /// The name on the command line and in `RIP_HOT_RELOAD`: `none`,
    /// `process` or `module`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReloadMode::None => "none",
            ReloadMode::Process => "process",
            ReloadMode::Module => "module",
        }
    }

    /// The mode named `name` (exactly as [`ReloadMode::as_str`] spells it).
    pub fn from_name(name: &str) -> Option<ReloadMode> {
        ReloadMode::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// A burst is over once no change has come for this long.
pub const DEBOUNCE_QUIET: Duration = Duration::from_millis(200);

/// A burst is over at the latest this long after its first change, so a file
/// rewritten without pause still triggers a reload every `DEBOUNCE_MAX_WAIT`.
pub const DEBOUNCE_MAX_WAIT: Duration = Duration::from_secs(2);

/// Coalesces a burst of change notifications into one event, in the style
/// of quinn-proto: feed [`Debounce::handle_change`], sleep until
/// [`Debounce::poll_timeout`], then call [`Debounce::handle_timeout`], which
/// says whether the burst is over.
///
/// A burst starts with a change while none is pending and is over at
/// `min(last change + DEBOUNCE_QUIET, first change + DEBOUNCE_MAX_WAIT)`.
/// A change fed at or after that moment, before `handle_timeout` was called,
/// still joins the burst (it then ends at once or after a shorter wait); the
/// node avoids that by firing what is due before feeding a change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Debounce {
    /// The first and the latest change of the pending burst.
    burst: Option<(Time, Time)>,
}

impl Debounce {
    /// No burst pending.
    pub fn new() -> Debounce {
        Debounce::default()
    }

    /// A file changed at `now`.
    pub fn handle_change(&mut self, now: Time) {
        self.burst = Some(match self.burst {
            None => (now, now),
            Some((first, last)) => (first, last.max(now)),
        });
    }

    /// When the pending burst is over (`None`: no burst pending).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.burst
            .map(|(first, last)| (last + DEBOUNCE_QUIET).min(first + DEBOUNCE_MAX_WAIT))
    }

    /// True exactly once per burst: at the first call at or after its end.
    /// Early and extra calls return false.
    pub fn handle_timeout(&mut self, now: Time) -> bool {
        let due = self.poll_timeout().is_some_and(|t| t <= now);
        if due {
            self.burst = None;
        }
        due
    }

    /// Whether a burst is pending.
    pub fn is_pending(&self) -> bool {
        self.burst.is_some()
    }

    /// Forgets the pending burst.
    pub fn clear(&mut self) {
        self.burst = None;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    #[test]
    fn modes_round_trip_by_name_and_serialise_lowercase() {
        for mode in ReloadMode::ALL {
            assert_eq!(ReloadMode::from_name(mode.as_str()), Some(mode));
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
        }
        assert_eq!(ReloadMode::from_name("Module"), None);
        assert_eq!(ReloadMode::from_name(""), None);
        assert_eq!(ReloadMode::default(), ReloadMode::None);
    }

    #[test]
    fn one_change_fires_once_after_the_quiet_period() {
        let mut d = Debounce::new();
        assert_eq!(d.poll_timeout(), None);
        assert!(!d.handle_timeout(ms(10_000)), "nothing pending");
        d.handle_change(ms(1_000));
        assert_eq!(d.poll_timeout(), Some(ms(1_200)));
        assert!(!d.handle_timeout(ms(1_199)), "early");
        assert!(d.handle_timeout(ms(1_200)));
        assert!(!d.handle_timeout(ms(1_200)), "extra");
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn every_change_pushes_the_end_back_by_the_quiet_period() {
        let mut d = Debounce::new();
        for t in [0, 50, 100, 150] {
            d.handle_change(ms(t));
            assert!(!d.handle_timeout(ms(t)));
        }
        assert_eq!(d.poll_timeout(), Some(ms(350)));
        assert!(d.handle_timeout(ms(350)));
    }

    #[test]
    fn a_file_rewritten_forever_still_fires_every_max_wait() {
        let mut d = Debounce::new();
        let mut fired = Vec::new();
        for t in (0..=6_000).step_by(100) {
            if d.handle_timeout(ms(t)) {
                fired.push(t);
            }
            d.handle_change(ms(t));
        }
        assert_eq!(fired, vec![2_000, 4_000, 6_000]);
    }

    #[test]
    fn a_late_timeout_still_fires_once() {
        let mut d = Debounce::new();
        d.handle_change(ms(0));
        assert!(d.handle_timeout(ms(60_000)));
        assert!(!d.handle_timeout(ms(60_001)));
    }

    #[test]
    fn clear_forgets_the_burst() {
        let mut d = Debounce::new();
        d.handle_change(ms(0));
        assert!(d.is_pending());
        d.clear();
        assert!(!d.is_pending());
        assert!(!d.handle_timeout(ms(10_000)));
    }

    /// The bursts of sorted change times by the definition: a change joins
    /// the burst if it comes before the burst's end. Returns (first, last)
    /// of each burst.
    fn bursts(changes: &[u64]) -> Vec<(u64, u64)> {
        let quiet = DEBOUNCE_QUIET.as_millis() as u64;
        let cap = DEBOUNCE_MAX_WAIT.as_millis() as u64;
        let mut out: Vec<(u64, u64)> = Vec::new();
        let mut current: Option<(u64, u64)> = None;
        for &c in changes {
            current = match current {
                Some((first, last)) if c < (last + quiet).min(first + cap) => Some((first, c)),
                Some(done) => {
                    out.push(done);
                    Some((c, c))
                }
                None => Some((c, c)),
            };
        }
        out.extend(current);
        out
    }

    /// Drives a debouncer like the node does: before each change, fires
    /// every deadline up to it; then fires what is left. Returns the fire
    /// times.
    fn drive(changes: &[u64]) -> Vec<u64> {
        let mut d = Debounce::new();
        let mut fired = Vec::new();
        let mut fire_until = |d: &mut Debounce, until: Option<u64>| {
            while let Some(t) = d.poll_timeout() {
                let t = t.as_micros() / 1_000;
                if until.is_some_and(|u| t > u) {
                    break;
                }
                assert!(!d.handle_timeout(ms(t - 1)), "early fire at {}", t - 1);
                assert!(d.handle_timeout(ms(t)), "due at {t}");
                assert!(!d.handle_timeout(ms(t)), "twice at {t}");
                fired.push(t);
            }
        };
        for &c in changes {
            fire_until(&mut d, Some(c));
            d.handle_change(ms(c));
        }
        fire_until(&mut d, None);
        fired
    }

    proptest! {
        #[test]
        fn fires_once_per_burst_and_never_early(mut changes in prop::collection::vec(0u64..20_000, 0..60)) {
            changes.sort_unstable();
            let expected = bursts(&changes);
            let fired = drive(&changes);
            prop_assert_eq!(fired.len(), expected.len(), "fired {:?} for bursts {:?}", fired, expected);
            let quiet = DEBOUNCE_QUIET.as_millis() as u64;
            let cap = DEBOUNCE_MAX_WAIT.as_millis() as u64;
            for (&t, &(first, last)) in fired.iter().zip(&expected) {
                prop_assert!(t >= last + quiet || t >= first + cap, "fired at {} for {:?}", t, (first, last));
                prop_assert!(t <= (last + quiet).min(first + cap), "late at {} for {:?}", t, (first, last));
            }
        }

        #[test]
        fn changes_within_one_quiet_window_fire_once(start in 0u64..10_000, offsets in prop::collection::vec(0u64..200, 1..40)) {
            let mut changes: Vec<u64> = offsets.iter().map(|o| start + o).collect();
            changes.sort_unstable();
            prop_assert_eq!(drive(&changes).len(), 1);
        }
    }
}
