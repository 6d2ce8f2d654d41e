//! Replies the front door synthesizes itself instead of relaying a worker's.
//!
//! One enum, rendered by the adapter (status, `Rip-Reason` header, body,
//! `Retry-After` on 503), after sozu's `DefaultAnswer`.

use std::fmt;

/// A reply synthesized by the front door, with its machine-readable reason.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// 503: every worker was busy and the queue was at `--max-queue`.
    QueueFull,
    /// 503: no worker could take the request and none is expected to
    /// (the queue bound is zero, or the server is stopping).
    NoCapacity,
    /// 504: the request waited in the queue past `--queue-timeout-ms`.
    QueueTimeout,
    /// 504: the worker sent no response head within `--read-timeout-ms`.
    UpstreamTimeout,
    /// 502: the worker failed (connection refused, reset, or died) and no
    /// retry was allowed or possible.
    UpstreamError,
}

impl Answer {
    /// Every answer, in a fixed order.
    pub const ALL: [Answer; 5] = [
        Answer::QueueFull,
        Answer::NoCapacity,
        Answer::QueueTimeout,
        Answer::UpstreamTimeout,
        Answer::UpstreamError,
    ];

    /// The HTTP status code.
    pub const fn status(self) -> u16 {
        match self {
            Answer::QueueFull | Answer::NoCapacity => 503,
            Answer::QueueTimeout | Answer::UpstreamTimeout => 504,
            Answer::UpstreamError => 502,
        }
    }

    /// The machine-readable reason (`Rip-Reason` header, access-log `reason`).
    pub const fn reason(self) -> &'static str {
        match self {
            Answer::QueueFull => "queue_full",
            Answer::NoCapacity => "no_capacity",
            Answer::QueueTimeout => "queue_timeout",
            Answer::UpstreamTimeout => "upstream_timeout",
            Answer::UpstreamError => "upstream_error",
        }
    }

    /// Seconds for `Retry-After`, present on every 503.
    pub const fn retry_after_secs(self) -> Option<u32> {
        match self {
            Answer::QueueFull | Answer::NoCapacity => Some(1),
            _ => None,
        }
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract's table: status, `Rip-Reason`, `Retry-After` on every
    /// 503 and on nothing else, and the log's `status reason` rendering.
    #[test]
    fn every_answer_has_the_contracts_status_reason_and_retry_after() {
        let table: Vec<(u16, &str, Option<u32>, String)> = Answer::ALL
            .iter()
            .map(|a| (a.status(), a.reason(), a.retry_after_secs(), a.to_string()))
            .collect();
        assert_eq!(
            table,
            vec![
                (503, "queue_full", Some(1), "503 queue_full".to_owned()),
                (503, "no_capacity", Some(1), "503 no_capacity".to_owned()),
                (504, "queue_timeout", None, "504 queue_timeout".to_owned()),
                (504, "upstream_timeout", None, "504 upstream_timeout".to_owned()),
                (502, "upstream_error", None, "502 upstream_error".to_owned()),
            ]
        );
    }
}
