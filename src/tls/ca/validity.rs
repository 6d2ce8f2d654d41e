//! Certificate times: `SystemTime` to rcgen's dates and back, and the wall
//! clock the `ca` subcommands read. Everything else in the CA takes `now`
//! as a value, so tests choose the time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wall clock now (read through `os::clock`, the one place the crate
/// reads it).
pub fn wall_clock_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(crate::os::clock::wall_micros())
}

/// Sets the validity of `params` to `from..until`, to the second
/// (certificates hold whole seconds). rcgen's date type is
/// `time::OffsetDateTime`; it is built from rcgen's own epoch constructor
/// so that this crate needs no direct dependency on `time`. Times before
/// 1970 do not occur here and clamp to it.
pub(super) fn set_validity(params: &mut rcgen::CertificateParams, from: SystemTime, until: SystemTime) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let seconds = |t: SystemTime| Duration::from_secs(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs());
    params.not_before = epoch + seconds(from);
    params.not_after = epoch + seconds(until);
}

/// A certificate's time (seconds since the epoch, as x509-parser gives it).
pub(super) fn from_unix_seconds(seconds: i64) -> SystemTime {
    match u64::try_from(seconds) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()),
    }
}

/// Text for people: `2025-01-31T12:00:00Z`.
pub fn format_utc(time: SystemTime) -> String {
    let micros = time
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let with_millis = crate::os::clock::rfc3339_millis(micros - micros % 1_000_000);
    with_millis.replace(".000Z", "Z")
}
