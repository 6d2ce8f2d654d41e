//! The only place the adapters read a clock.
//!
//! [`Clock::now`] turns tokio's monotonic clock into the core's [`Time`]
//! (microseconds since the clock was created). Under turmoil, tokio's clock
//! is the simulated one, so the same code is deterministic there.
//! [`wall_micros`] reads the wall clock for log lines and `X-Request-Start`.

use crate::core::Time;

/// Monotonic time since the server started, as the core's [`Time`].
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    /// A clock whose origin is now.
    #[allow(clippy::disallowed_methods)] // the one sanctioned monotonic clock read
    pub fn start() -> Clock {
        Clock {
            origin: tokio::time::Instant::now(),
        }
    }

    /// The current time.
    #[allow(clippy::disallowed_methods)] // the one sanctioned monotonic clock read
    pub fn now(&self) -> Time {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.origin);
        Time::from_micros(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
    }

    /// The tokio instant of a core [`Time`], for timers.
    pub fn instant(&self, time: Time) -> tokio::time::Instant {
        self.origin + std::time::Duration::from_micros(time.as_micros())
    }
}

/// Microseconds since the Unix epoch (wall clock), for logs and headers.
#[allow(clippy::disallowed_methods)] // wall time is only ever printed, never compared
pub fn wall_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Appends the current time as an HTTP date (`Sun, 06 Nov 1994 08:49:37
/// GMT`), rendered at most once a second per thread.
pub fn push_http_date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let secs = wall_micros() / 1_000_000;
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            *cache = (secs, httpdate::fmt_http_date(time));
        }
        out.extend_from_slice(cache.1.as_bytes());
    });
}

/// Formats wall-clock microseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339_millis(micros: u64) -> String {
    let secs = micros / 1_000_000;
    let millis = (micros / 1_000) % 1_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_rfc3339() {
        assert_eq!(super::rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339_millis(1_795_305_600_123_000), "2026-11-22T00:00:00.123Z");
    }
}
