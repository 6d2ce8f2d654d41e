//! Time as a value: the core never reads a clock.
//!
//! [`Time`] counts microseconds from an origin the caller chooses (the adapter
//! uses the moment the server started; tests and simulations use zero). Its
//! `Debug` output is a plain number, so snapshots of traces are stable.

use std::fmt;
use std::ops::{Add, AddAssign};
use std::time::Duration;

/// A point in time, in microseconds since an origin chosen by the caller.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Time(u64);

impl Time {
    /// The origin.
    pub const ZERO: Time = Time(0);

    /// Builds a time from microseconds since the origin.
    pub const fn from_micros(micros: u64) -> Time {
        Time(micros)
    }

    /// Builds a time from milliseconds since the origin.
    pub const fn from_millis(millis: u64) -> Time {
        Time(millis * 1_000)
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// The time elapsed since `earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, rhs: Duration) -> Time {
        let micros = u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(micros))
    }
}

impl AddAssign<Duration> for Time {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Milliseconds with three decimals: readable in snapshots and logs.
        write!(f, "{}.{:03}ms", self.0 / 1_000, self.0 % 1_000)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_durations_and_saturates() {
        let t = Time::from_millis(5) + Duration::from_micros(250);
        assert_eq!(t.as_micros(), 5_250);
        assert_eq!(t.saturating_since(Time::from_millis(6)), Duration::ZERO);
        assert_eq!(format!("{t:?}"), "5.250ms");
        assert_eq!(
            (Time::from_micros(u64::MAX) + Duration::from_secs(1)).as_micros(),
            u64::MAX
        );
    }

    #[test]
    fn add_assign_elapsed_time_and_display_agree_with_add() {
        let mut t = Time::from_millis(5);
        t += Duration::from_micros(1_250);
        assert_eq!(t, Time::from_micros(6_250));
        assert_eq!(t.saturating_since(Time::from_millis(5)), Duration::from_micros(1_250));
        assert_eq!(t.to_string(), "6.250ms", "logs print the same as snapshots");
    }
}
