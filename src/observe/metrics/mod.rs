//! `GET /metrics`: the Prometheus exposition of one or more apps, built at
//! scrape time from their status snapshots.
//!
//! The request path pays nothing for it: the core already counts every
//! response, rejection, exit and latency bucket in its own state (the
//! counters `/status` shows), so there is no Prometheus metric to update
//! per request, no lock and no `Family` lookup. A scrape asks each app's
//! driver for a snapshot (one message per app per scrape), reads the
//! numbers ([`AppSeries`]) and writes them with the `prometheus-client`
//! encoders through a [`Collector`](prometheus_client::collector::Collector)
//! registered in a registry made for that scrape.
//!
//! Formats: OpenMetrics 1.0 when the scraper asks for it
//! (`Accept: application/openmetrics-text`), else the Prometheus text
//! format 0.0.4 ([`Format::negotiate`]).
//!
//! The series and their labels are listed in `docs/operations.md`
//! ("Metrics"); every label is bounded: `app`, `code` (a status class),
//! `reason` (a `Rip-Reason`), `state`, `cause`, `slot` (`RIP_WORKER_ID`).

mod collector;
mod series;

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod tests_support;

pub use series::{AppSeries, SLOT_STATES, SlotSeries, WORKER_STATES};

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;

use crate::observe::status::StatusSnapshot;

/// The OpenMetrics content type.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which text format a scrape gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4 (`text/plain`).
    Prometheus,
    /// OpenMetrics 1.0 (ends with `# EOF`).
    OpenMetrics,
}

impl Format {
    /// The format for a request's `Accept` header: OpenMetrics when the
    /// client accepts it at least as much as `text/plain` (Prometheus
    /// itself sends `application/openmetrics-text;version=1.0.0,...,
    /// text/plain;version=0.0.4;q=0.5,*/*;q=0.1`), else the Prometheus text
    /// format, which is also the answer to no `Accept` at all.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Prometheus;
        };
        let (mut openmetrics, mut plain) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => plain = plain.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= plain {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// `rip_build_info{version,build}`: what is running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildInfo {
    /// The package version (`rip-server --version`).
    pub version: String,
    /// The build id `/status` shows (see `observe::build`).
    pub build: String,
}

impl BuildInfo {
    /// This process's.
    pub fn current() -> BuildInfo {
        let build = super::build::current();
        BuildInfo {
            version: build.version.to_owned(),
            build: build.id.clone(),
        }
    }
}

/// Everything one scrape shows.
#[derive(Clone, Debug)]
pub struct Exposition {
    /// Each app, with its `app` label.
    pub apps: Vec<AppSeries>,
    pub build: BuildInfo,
    /// A stop was asked for and `/ready` answers 503 (`rip_draining`).
    pub draining: bool,
}

impl Exposition {
    /// The exposition of `apps` (each with the `app` label it carries).
    pub fn new(apps: &[(&str, &StatusSnapshot)], build: BuildInfo, draining: bool) -> Exposition {
        Exposition {
            apps: apps
                .iter()
                .map(|(app, status)| AppSeries::from_snapshot(app, status))
                .collect(),
            build,
            draining,
        }
    }

    /// The text of `/metrics` in `format`.
    pub fn encode(self, format: Format) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail, and every value is a number or a
        // label the encoders escape.
        let _ = match format {
            Format::Prometheus => prometheus_text::encode(&mut out, &registry),
            Format::OpenMetrics => text::encode(&mut out, &registry),
        };
        out
    }
}

/// The text of `/metrics` for `apps` in `format`: see [`Exposition`].
pub fn encode(apps: &[(&str, &StatusSnapshot)], build: BuildInfo, draining: bool, format: Format) -> String {
    Exposition::new(apps, build, draining).encode(format)
}
