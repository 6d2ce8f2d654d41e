//! The word scanner (flag values after `=` or in the next word, `--`) and the
//! value parsers of flags, tokens and variables. Each parser returns what was
//! expected on failure; the caller names the word.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::CliError;
use crate::config::defaults::{
    MAX_DURATION_MS, MAX_LB_REPLICAS, MAX_QUEUE_LIMIT, MAX_SOCKET_PREFIX_LEN, MAX_THREADS, MAX_WORKERS, MIN_WORKERS,
};
use crate::config::{HotReload, LbPolicy, Protocol, auto_workers};

/// Walks the words, handing out flag values.
pub(super) struct Words<'a> {
    words: &'a [String],
    next: usize,
    /// After `--`, every word is an app path.
    pub(super) positional_only: bool,
}

impl<'a> Words<'a> {
    pub(super) fn new(words: &'a [String]) -> Words<'a> {
        Words {
            words,
            next: 0,
            positional_only: false,
        }
    }

    pub(super) fn next_word(&mut self) -> Option<&'a str> {
        let w = self.words.get(self.next)?;
        self.next += 1;
        Some(w.as_str())
    }

    /// The value of a flag whose value may be left out: after `=`, or the
    /// next word when it is one of `choices`; `None` for the flag alone.
    pub(super) fn optional_value(
        &mut self,
        name: &str,
        inline: Option<&'a str>,
        choices: &[&str],
    ) -> Result<Option<(&'a str, String)>, CliError> {
        match (inline, self.words.get(self.next)) {
            (Some(_), _) => self.value(name, inline).map(Some),
            (None, Some(next)) if choices.contains(&next.as_str()) => self.value(name, None).map(Some),
            (None, _) => Ok(None),
        }
    }

    /// The value of a flag: after `=`, or the next word.
    /// Returns the value and the word(s) to name in an error.
    pub(super) fn value(&mut self, name: &str, inline: Option<&'a str>) -> Result<(&'a str, String), CliError> {
        let missing = || CliError::new(name, format!("expected a value: {name}=<value> or {name} <value>"));
        match inline {
            Some("") => Err(CliError::new(format!("{name}="), "expected a value after '='")),
            Some(v) => Ok((v, format!("{name}={v}"))),
            None => match self.words.get(self.next) {
                Some(v) if !v.is_empty() && !v.starts_with("--") => {
                    self.next += 1;
                    Ok((v.as_str(), format!("{name} {v}")))
                }
                _ => Err(missing()),
            },
        }
    }
}

/// Splits `--name=value` into `("--name", Some("value"))`.
pub(super) fn split_flag(word: &str) -> (&str, Option<&str>) {
    match word.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (word, None),
    }
}

/// A decimal integer of ASCII digits only (no sign, no spaces).
pub(super) fn parse_digits(s: &str) -> Option<Result<u64, ()>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().map_err(|_| ()))
}

pub(super) fn parse_uint_in(s: &str, min: u64, max: u64, what: &str) -> Result<u64, String> {
    let expected = || format!("expected {what} in {min}..={max}");
    match parse_digits(s) {
        Some(Ok(n)) if (min..=max).contains(&n) => Ok(n),
        _ => Err(expected()),
    }
}

pub(super) fn parse_port(s: &str) -> Result<u16, String> {
    parse_uint_in(s, 0, u64::from(u16::MAX), "a port number").map(|n| n as u16)
}

/// An IP address to listen on; `[::1]` is taken as `::1`.
pub(super) fn parse_bind(s: &str) -> Result<IpAddr, String> {
    let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
    bare.parse().map_err(|_| {
        "expected an IP address to listen on, such as 127.0.0.1, 0.0.0.0, ::1 or :: (not a host name or a port)"
            .to_string()
    })
}

pub(super) fn parse_max_queue(s: &str) -> Result<usize, String> {
    parse_uint_in(s, 0, MAX_QUEUE_LIMIT as u64, "a non-negative integer").map(|n| n as usize)
}

pub(super) fn parse_ms(s: &str) -> Result<Duration, String> {
    parse_uint_in(s, 1, MAX_DURATION_MS, "a whole number of milliseconds").map(Duration::from_millis)
}

pub(super) fn parse_ms_or_zero(s: &str) -> Result<Duration, String> {
    parse_uint_in(s, 0, MAX_DURATION_MS, "a whole number of milliseconds").map(Duration::from_millis)
}

pub(super) fn parse_u32_in(s: &str, min: u32, max: u32, what: &str) -> Result<u32, String> {
    parse_uint_in(s, u64::from(min), u64::from(max), what).map(|n| n as u32)
}

pub(super) fn parse_max_reloads(s: &str) -> Result<u32, String> {
    parse_u32_in(s, 0, u32::MAX, "a non-negative integer")
}

pub(super) fn parse_hot_reload(s: &str) -> Result<HotReload, String> {
    HotReload::from_name(s).ok_or_else(|| "expected none, process or module".to_string())
}

pub(super) fn parse_lb_policy(s: &str) -> Result<LbPolicy, String> {
    LbPolicy::from_name(s).ok_or_else(|| "expected lifo, rr or lc".to_string())
}

pub(super) fn parse_protocol(s: &str) -> Result<Protocol, String> {
    Protocol::from_name(s).ok_or_else(|| "expected http, https or http+https".to_string())
}

pub(super) fn parse_variant(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        && s != "."
        && s != "..";
    if ok {
        Ok(s.to_string())
    } else {
        Err("expected a variant name of 1..=64 letters, digits, '.', '_' or '-'".to_string())
    }
}

pub(super) fn parse_workers(s: &str) -> Result<u32, String> {
    if s == "auto" {
        return Ok(auto_workers());
    }
    parse_u32_in(s, MIN_WORKERS, MAX_WORKERS, "a worker count")
        .map_err(|_| format!("expected a worker count {MIN_WORKERS}..={MAX_WORKERS} or auto"))
}

/// A path value made absolute (it need not exist).
pub(super) fn parse_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("expected a path".to_string());
    }
    std::path::absolute(s).map_err(|e| format!("expected a usable path ({e})"))
}

/// A socket prefix: absolute, not a directory, short enough for socket names.
pub(super) fn parse_socket_prefix(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() || s.ends_with('/') {
        return Err("expected a path prefix such as /tmp/rip_server_myapp (not a directory)".to_string());
    }
    let p = parse_path(s)?;
    check_prefix_len(&p)?;
    Ok(p)
}

pub(super) fn check_prefix_len(p: &Path) -> Result<(), String> {
    let len = p.as_os_str().len();
    if len > MAX_SOCKET_PREFIX_LEN {
        return Err(format!(
            "expected a socket prefix of at most {MAX_SOCKET_PREFIX_LEN} bytes (Unix socket paths are short), got {len}: {}; use a shorter --socket-prefix",
            p.display()
        ));
    }
    Ok(())
}

/// The parts of an `r:` token.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Recycle {
    pub(super) requests: Option<Option<u64>>,
    pub(super) age: Option<Option<Duration>>,
    pub(super) reloads: Option<u32>,
}

/// `r:<N>[,<S>s][,<R>r]`: parts in any order, each at most once; `N` and `S`
/// of 0 mean "never". `S` also takes `m` and `h` suffixes.
pub(super) fn parse_recycle(s: &str) -> Result<Recycle, String> {
    let expected = || {
        format!(
            "expected r:<requests>[,<seconds>s][,<reloads>r] (e.g. r:10000,3600s,10r; 0 = never; seconds up to {})",
            MAX_DURATION_MS / 1000
        )
    };
    let mut out = Recycle::default();
    for part in s.split(',') {
        let (digits, unit) = match part.as_bytes().last() {
            Some(b) if b.is_ascii_alphabetic() => (&part[..part.len() - 1], Some(*b)),
            _ => (part, None),
        };
        let n = match parse_digits(digits) {
            Some(Ok(n)) => n,
            _ => return Err(expected()),
        };
        match unit {
            None if out.requests.is_none() => out.requests = Some((n > 0).then_some(n)),
            Some(u @ (b's' | b'm' | b'h')) if out.age.is_none() => {
                let mult = match u {
                    b's' => 1,
                    b'm' => 60,
                    _ => 3600,
                };
                let secs = n.checked_mul(mult).filter(|s| *s <= MAX_DURATION_MS / 1000);
                let Some(secs) = secs else {
                    return Err(expected());
                };
                out.age = Some((secs > 0).then(|| Duration::from_secs(secs)));
            }
            Some(b'r') if out.reloads.is_none() => {
                out.reloads = Some(u32::try_from(n).map_err(|_| expected())?);
            }
            _ => return Err(expected()),
        }
    }
    Ok(out)
}

/// `0` or `1`.
pub(super) fn parse_switch(s: &str) -> Result<bool, String> {
    match s {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err("expected 0 (off) or 1 (on)".to_string()),
    }
}

/// Event-loop threads of the front door.
pub(super) fn parse_threads(s: &str) -> Result<usize, String> {
    parse_uint_in(s, 1, MAX_THREADS as u64, "a thread count").map(|n| n as usize)
}

/// `--lb-replicas` / `RIP_LB_REPLICAS`: 1..=64 front-door accept loops.
pub(super) fn parse_lb_replicas(s: &str) -> Result<usize, String> {
    parse_uint_in(s, 1, MAX_LB_REPLICAS as u64, "a replica count").map(|n| n as usize)
}

/// A log filter in tracing's `EnvFilter` syntax (`info`, `warn,rip_server=debug`).
pub(super) fn parse_log_filter(s: &str) -> Result<String, String> {
    match tracing_subscriber::EnvFilter::try_new(s) {
        Ok(_) => Ok(s.to_string()),
        Err(e) => Err(format!(
            "expected a log filter such as info, warn or info,rip_server=debug ({e})"
        )),
    }
}
