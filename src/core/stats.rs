//! Counters the core keeps for `/status`, `/metrics` and the dashboard, so
//! each is counted once, where the decision is made.
//!
//! - [`Histogram`]: fixed buckets over microseconds, Prometheus style
//!   (cumulative `le` buckets when read, per-bucket counts when stored).
//! - [`IllegalTransitions`]: how many transitions a core state machine
//!   refused although the core itself chose them (each one is a bug).
//!
//! Imports nothing from the rest of the core: the balancer and the supervisor
//! import this module, never the reverse.

use std::fmt;

use serde::Serialize;

/// Upper bounds of the latency buckets, in microseconds: 100 µs, 250 µs,
/// 500 µs, 1 ms, 2.5 ms, 5 ms, 10 ms, 25 ms, 50 ms, 100 ms, 250 ms, 500 ms,
/// 1 s, 2.5 s, 5 s, 10 s, 30 s. One set for a sub-millisecond proxy hop and
/// a handler that takes seconds alike (1-2.5-5 steps, so every decade has
/// three buckets); 30 s is past every default timeout.
pub const LATENCY_BOUNDS_MICROS: [u64; 17] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];

/// A histogram with fixed buckets over values in microseconds.
///
/// A value `v` falls in the first bucket whose upper bound `b` has `v <= b`
/// (Prometheus `le`); values above the last bound are counted only in
/// [`Histogram::count`] (the `+Inf` bucket).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Histogram {
    /// Inclusive upper bounds, ascending, in microseconds.
    bounds_micros: &'static [u64],
    /// Observations per bucket (not cumulative); one entry per bound.
    counts: Vec<u64>,
    /// Every observation, including those above the last bound.
    count: u64,
    /// Sum of every observation, in microseconds (saturating).
    sum_micros: u64,
}

impl Histogram {
    /// An empty histogram over `bounds_micros` (ascending).
    pub fn new(bounds_micros: &'static [u64]) -> Histogram {
        debug_assert!(bounds_micros.windows(2).all(|w| w[0] < w[1]), "bounds must ascend");
        Histogram {
            bounds_micros,
            counts: vec![0; bounds_micros.len()],
            count: 0,
            sum_micros: 0,
        }
    }

    /// Records one value.
    pub fn observe(&mut self, micros: u64) {
        let bucket = self.bounds_micros.partition_point(|&b| b < micros);
        if let Some(c) = self.counts.get_mut(bucket) {
            *c += 1;
        }
        self.count += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// `(upper bound in µs, observations ≤ that bound)` for every bucket, in
    /// ascending order: the `le` series of a Prometheus histogram, without
    /// `+Inf` (which is [`Histogram::count`]).
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.bounds_micros
            .iter()
            .zip(&self.counts)
            .scan(0u64, |cumulative, (&bound, &n)| {
                *cumulative += n;
                Some((bound, *cumulative))
            })
    }

    /// `(upper bound in µs, observations in that bucket alone)` for every
    /// bucket, ascending, without `+Inf`: what an encoder that accumulates
    /// on its own wants (see `observe::metrics`).
    pub fn per_bucket(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.bounds_micros.iter().copied().zip(self.counts.iter().copied())
    }

    /// Observations in all, including those above the last bound.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the observations, in microseconds.
    pub fn sum_micros(&self) -> u64 {
        self.sum_micros
    }
}

impl Default for Histogram {
    /// An empty histogram over [`LATENCY_BOUNDS_MICROS`].
    fn default() -> Histogram {
        Histogram::new(&LATENCY_BOUNDS_MICROS)
    }
}

/// Transitions a core state machine refused although the core chose them.
///
/// The state machines (`supervisor::process`, `supervisor::slot`,
/// `balancer::worker`) return an error for an event their state does not
/// allow. Where the core itself picked the event, an error means its own
/// bookkeeping is inconsistent; release builds carry on (the transition is
/// skipped) and count it here. Inputs from outside that arrive too late to
/// matter (a quit from a process already told to stop) are not counted:
/// they are ignored by design.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IllegalTransitions(u64);

impl IllegalTransitions {
    /// Passes an allowed transition's value on; counts a refused one.
    pub(crate) fn count<T, E>(&mut self, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(_) => {
                self.0 += 1;
                None
            }
        }
    }

    /// Counts a transition the core's rules forbid but that went ahead (a
    /// dispatch to a worker that was not routable).
    pub(crate) fn note(&mut self) {
        self.0 += 1;
    }

    /// Like [`IllegalTransitions::count`], and debug builds stop at a
    /// refused transition (where the core has always asserted).
    pub(crate) fn count_and_assert<T, E: fmt::Display>(&mut self, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.0 += 1;
                debug_assert!(false, "{e}");
                None
            }
        }
    }

    /// How many were refused.
    pub(crate) fn total(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_inclusive_upper_bounds_and_cumulative() {
        let mut h = Histogram::default();
        for v in [0, 100, 101, 1_000, 7_000, 30_000_000, 30_000_001] {
            h.observe(v);
        }
        let b: Vec<(u64, u64)> = h.buckets().collect();
        assert_eq!(b.len(), LATENCY_BOUNDS_MICROS.len());
        assert_eq!(b[0], (100, 2), "0 and 100 µs are ≤ 100 µs");
        assert_eq!(b[1], (250, 3), "101 µs joins them");
        assert_eq!(b[3], (1_000, 4));
        assert_eq!(b[6], (10_000, 5), "7 ms is ≤ 10 ms");
        assert_eq!(b[16], (30_000_000, 6), "everything but the value above 30 s");
        assert_eq!(h.count(), 7, "+Inf counts all");
        assert_eq!(h.sum_micros(), 60_008_202);
        let alone: Vec<u64> = h.per_bucket().map(|(_, n)| n).collect();
        assert_eq!(alone.iter().sum::<u64>(), 6, "per bucket, the one above 30 s in none");
        assert_eq!(&alone[..2], &[2, 1]);
        assert_eq!(
            h.per_bucket().map(|(bound, _)| bound).collect::<Vec<_>>(),
            LATENCY_BOUNDS_MICROS
        );
    }

    #[test]
    fn the_default_buckets_cover_a_proxy_hop_and_a_slow_handler() {
        assert_eq!(LATENCY_BOUNDS_MICROS[0], 100, "100 µs: a proxied hello");
        assert_eq!(
            LATENCY_BOUNDS_MICROS[LATENCY_BOUNDS_MICROS.len() - 1],
            30_000_000,
            "30 s"
        );
        assert!(LATENCY_BOUNDS_MICROS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn sum_saturates_and_serialises() {
        let mut h = Histogram::new(&[10]);
        h.observe(u64::MAX);
        h.observe(5);
        assert_eq!(h.sum_micros(), u64::MAX);
        assert_eq!(h.buckets().collect::<Vec<_>>(), vec![(10, 1)]);
        let v = serde_json::to_value(&h).unwrap();
        assert_eq!(v["bounds_micros"], serde_json::json!([10]));
        assert_eq!(v["counts"], serde_json::json!([1]));
        assert_eq!(v["count"], 2);
    }

    #[test]
    fn illegal_transitions_are_counted() {
        let mut n = IllegalTransitions::default();
        assert_eq!(n.count(Ok::<u8, &str>(3)), Some(3));
        assert_eq!(n.count(Err::<u8, &str>("refused")), None);
        assert_eq!(n.total(), 1);
    }

    #[test]
    fn a_refused_transition_is_counted_before_a_debug_build_stops_at_it() {
        // Release builds carry on and report the count; the count must be
        // taken before the debug assertion, which the unwind lets us see.
        let mut n = IllegalTransitions::default();
        assert_eq!(n.count_and_assert(Ok::<u8, &str>(3)), Some(3));
        assert_eq!(n.total(), 0);
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            n.count_and_assert(Err::<u8, &str>("event x is illegal in state y"))
        }));
        assert_eq!(refused.is_err(), cfg!(debug_assertions), "only debug builds stop");
        if let Ok(value) = refused {
            assert_eq!(value, None);
        }
        assert_eq!(n.total(), 1);
    }
}
