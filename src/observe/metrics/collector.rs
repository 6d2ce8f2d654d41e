//! The series of `/metrics`, written by the `prometheus-client` encoders:
//! one descriptor (`# HELP`, `# TYPE`) per metric, then its samples for
//! every app, as both formats require. Counters are named without `_total`
//! (the encoders add it).

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::{AppSeries, Exposition, SLOT_STATES};
use crate::core::stats::Histogram;

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let apps = &self.apps;
        let e = &mut encoder;

        counter(
            e,
            "rip_http_responses",
            "Responses sent to clients, by status class: the workers' answers and the synthesized ones.",
            |m| {
                each_app(apps, |a| {
                    a.responses
                        .iter()
                        .try_for_each(|&(code, n)| count(m, &[("app", a.app.as_str()), ("code", code)], n))
                })
            },
        )?;
        counter(
            e,
            "rip_rejections",
            "Answers rip-server synthesized instead of a worker's, by Rip-Reason.",
            |m| {
                each_app(apps, |a| {
                    a.rejections
                        .iter()
                        .try_for_each(|&(reason, n)| count(m, &[("app", a.app.as_str()), ("reason", reason)], n))
                })
            },
        )?;
        counter(e, "rip_requests", "Requests that reached the app's balancer.", |m| {
            each_app(apps, |a| count(m, &app_label(a), a.requests))
        })?;
        counter(
            e,
            "rip_retries",
            "Requests sent to a second worker after the first failed or was busy.",
            |m| each_app(apps, |a| count(m, &app_label(a), a.retries)),
        )?;
        counter(
            e,
            "rip_client_disconnects",
            "Requests whose client left before their answer.",
            |m| each_app(apps, |a| count(m, &app_label(a), a.client_disconnects)),
        )?;
        gauge(e, "rip_queue_current", "Requests waiting for a free worker now.", |m| {
            each_app(apps, |a| set(m, &app_label(a), a.queue_current))
        })?;
        gauge(
            e,
            "rip_queue_limit",
            "Requests that may wait (--max-queue); a full queue answers 503 queue_full.",
            |m| each_app(apps, |a| set(m, &app_label(a), a.queue_limit)),
        )?;
        gauge(e, "rip_requests_in_flight", "Requests a worker is running now.", |m| {
            each_app(apps, |a| set(m, &app_label(a), a.in_flight))
        })?;
        gauge(
            e,
            "rip_workers",
            "Worker processes by state: starting (not joined yet), idle, busy, stuck, quarantined, draining, leaving.",
            |m| {
                each_app(apps, |a| {
                    a.workers
                        .iter()
                        .try_for_each(|&(state, n)| set(m, &[("app", a.app.as_str()), ("state", state)], n))
                })
            },
        )?;
        gauge(e, "rip_workers_desired", "Workers wanted (w:N, scale).", |m| {
            each_app(apps, |a| set(m, &app_label(a), a.desired_workers))
        })?;
        gauge(
            e,
            "rip_app_ready",
            "1 when a worker is registered and no stop has begun.",
            |m| each_app(apps, |a| set(m, &app_label(a), u64::from(a.ready))),
        )?;
        counter(
            e,
            "rip_worker_requests",
            "Requests completed by the workers of each slot (RIP_WORKER_ID), across replacements.",
            |m| {
                each_app(apps, |a| {
                    a.served_by_slot.iter().enumerate().try_for_each(|(slot, &n)| {
                        let slot = slot.to_string();
                        count(m, &[("app", a.app.as_str()), ("slot", slot.as_str())], n)
                    })
                })
            },
        )?;
        gauge(
            e,
            "rip_worker_current_requests",
            "Requests the workers of each slot are running now.",
            |m| {
                each_app(apps, |a| {
                    a.slots.iter().try_for_each(|s| {
                        let slot = s.slot.to_string();
                        set(
                            m,
                            &[("app", a.app.as_str()), ("slot", slot.as_str())],
                            s.current_requests,
                        )
                    })
                })
            },
        )?;
        gauge(
            e,
            "rip_worker_slot_state",
            "1 for each slot's current state, 0 for the others.",
            |m| {
                each_app(apps, |a| {
                    a.slots.iter().try_for_each(|s| {
                        let slot = s.slot.to_string();
                        SLOT_STATES.iter().try_for_each(|&state| {
                            let labels = [("app", a.app.as_str()), ("slot", slot.as_str()), ("state", state)];
                            set(m, &labels, u64::from(s.state == state))
                        })
                    })
                })
            },
        )?;
        counter(
            e,
            "rip_accepted_connections",
            "Client connections each front-door replica accepted (--lb-replicas), HTTP and HTTPS together.",
            |m| {
                each_app(apps, |a| {
                    a.accepted_by_replica.iter().enumerate().try_for_each(|(replica, &n)| {
                        let replica = replica.to_string();
                        count(m, &[("app", a.app.as_str()), ("replica", replica.as_str())], n)
                    })
                })
            },
        )?;
        counter(e, "rip_worker_exits", "Worker processes that ended, by cause.", |m| {
            each_app(apps, |a| {
                a.exits
                    .iter()
                    .try_for_each(|&(cause, n)| count(m, &[("app", a.app.as_str()), ("cause", cause)], n))
            })
        })?;
        counter(
            e,
            "rip_worker_restarts",
            "Worker processes that ended and were replaced in their slot, by cause.",
            |m| {
                each_app(apps, |a| {
                    a.restarts()
                        .try_for_each(|(cause, n)| count(m, &[("app", a.app.as_str()), ("cause", cause)], n))
                })
            },
        )?;
        counter(
            e,
            "rip_illegal_transitions",
            "State transitions the core's own rules forbid (each one is a bug; 0 in a healthy server).",
            |m| each_app(apps, |a| count(m, &app_label(a), a.illegal_transitions)),
        )?;
        seconds(
            e,
            "rip_request_duration",
            "Time from a request's arrival to the end of its worker's response.",
            |m| each_app(apps, |a| histogram(m, &app_label(a), &a.request_duration)),
        )?;
        seconds(
            e,
            "rip_queue_wait",
            "Time from a request's arrival to its first dispatch to a worker.",
            |m| each_app(apps, |a| histogram(m, &app_label(a), &a.queue_wait)),
        )?;
        gauge(
            e,
            "rip_draining",
            "1 once a stop was asked for: /ready answers 503.",
            |m| m.encode_gauge(&u64::from(self.draining)),
        )?;
        let build = [
            ("version", self.build.version.as_str()),
            ("build", self.build.build.as_str()),
        ];
        e.encode_descriptor(
            "rip_build",
            "The running rip-server: its version and build id.",
            None,
            MetricType::Info,
        )?
        .encode_info(&build)
    }
}

type Labels<'a, const N: usize> = [(&'static str, &'a str); N];

fn app_label(a: &AppSeries) -> Labels<'_, 1> {
    [("app", a.app.as_str())]
}

fn each_app(apps: &[AppSeries], write: impl FnMut(&AppSeries) -> fmt::Result) -> fmt::Result {
    apps.iter().try_for_each(write)
}

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl FnOnce(&mut MetricEncoder) -> fmt::Result,
) -> fmt::Result {
    samples(&mut e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl FnOnce(&mut MetricEncoder) -> fmt::Result,
) -> fmt::Result {
    samples(&mut e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A histogram in seconds (`<name>_seconds`, with `# UNIT` in OpenMetrics).
fn seconds(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl FnOnce(&mut MetricEncoder) -> fmt::Result,
) -> fmt::Result {
    samples(&mut e.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?)
}

fn count(m: &mut MetricEncoder, labels: &impl EncodeLabelSet, n: u64) -> fmt::Result {
    m.encode_family(labels)?
        .encode_counter::<NoLabelSet, u64, u64>(&n, None)
}

fn set(m: &mut MetricEncoder, labels: &impl EncodeLabelSet, n: u64) -> fmt::Result {
    m.encode_family(labels)?.encode_gauge(&n)
}

const MICROS_PER_SECOND: f64 = 1_000_000.0;

/// The core's microsecond histogram in seconds: the encoder takes the count
/// of each bucket alone and the `+Inf` bucket last.
fn histogram(m: &mut MetricEncoder, labels: &impl EncodeLabelSet, h: &Histogram) -> fmt::Result {
    let mut buckets: Vec<(f64, u64)> = h
        .per_bucket()
        .map(|(bound, n)| (bound as f64 / MICROS_PER_SECOND, n))
        .collect();
    let below: u64 = buckets.iter().map(|&(_, n)| n).sum();
    buckets.push((f64::INFINITY, h.count().saturating_sub(below)));
    let sum = h.sum_micros() as f64 / MICROS_PER_SECOND;
    m.encode_family(labels)?
        .encode_histogram::<NoLabelSet>(sum, h.count(), &buckets, None)
}
