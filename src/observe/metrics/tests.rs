use std::collections::BTreeMap;

use super::tests_support::snapshot;
use super::*;

fn build() -> BuildInfo {
    BuildInfo {
        version: "1.2.3".into(),
        build: "abc".into(),
    }
}

/// `name{labels}` → value for every sample line; panics on a line that is
/// neither a comment nor `name[{labels}] value`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line:?}")),
        };
        assert!(
            out.insert(series.to_owned(), value).is_none(),
            "duplicate series: {line:?}"
        );
    }
    out
}

#[test]
fn prometheus_text_has_the_contract_series_for_every_app() {
    let (a, b) = (snapshot("api"), snapshot("web"));
    let text = encode(&[("api", &a), ("web", &b)], build(), false, Format::Prometheus);
    let s = samples(&text);
    for app in ["api", "web"] {
        let v = |series: &str| {
            let key = series.replace("APP", app);
            *s.get(&key).unwrap_or_else(|| panic!("{key} missing from:\n{text}"))
        };
        assert_eq!(v(r#"rip_http_responses_total{app="APP",code="2xx"}"#), 3.0);
        assert_eq!(v(r#"rip_http_responses_total{app="APP",code="4xx"}"#), 1.0);
        assert_eq!(v(r#"rip_http_responses_total{app="APP",code="1xx"}"#), 0.0);
        assert_eq!(v(r#"rip_rejections_total{app="APP",reason="queue_full"}"#), 1.0);
        assert_eq!(v(r#"rip_rejections_total{app="APP",reason="upstream_timeout"}"#), 0.0);
        assert_eq!(v(r#"rip_queue_current{app="APP"}"#), 3.0);
        assert_eq!(v(r#"rip_queue_limit{app="APP"}"#), 8192.0);
        assert_eq!(v(r#"rip_requests_total{app="APP"}"#), 6.0);
        assert_eq!(v(r#"rip_retries_total{app="APP"}"#), 2.0);
        assert_eq!(v(r#"rip_client_disconnects_total{app="APP"}"#), 1.0);
        assert_eq!(v(r#"rip_requests_in_flight{app="APP"}"#), 1.0);
        assert_eq!(v(r#"rip_workers{app="APP",state="busy"}"#), 1.0);
        assert_eq!(v(r#"rip_workers{app="APP",state="idle"}"#), 1.0);
        assert_eq!(v(r#"rip_workers{app="APP",state="quarantined"}"#), 0.0);
        assert_eq!(v(r#"rip_workers_desired{app="APP"}"#), 2.0);
        assert_eq!(v(r#"rip_app_ready{app="APP"}"#), 1.0);
        assert_eq!(v(r#"rip_worker_requests_total{app="APP",slot="0"}"#), 7.0);
        assert_eq!(v(r#"rip_worker_requests_total{app="APP",slot="1"}"#), 9.0);
        assert_eq!(v(r#"rip_worker_current_requests{app="APP",slot="0"}"#), 1.0);
        assert_eq!(v(r#"rip_worker_current_requests{app="APP",slot="1"}"#), 0.0);
        assert_eq!(v(r#"rip_worker_exits_total{app="APP",cause="crash"}"#), 1.0);
        assert_eq!(v(r#"rip_worker_exits_total{app="APP",cause="stop"}"#), 4.0);
        assert_eq!(v(r#"rip_worker_restarts_total{app="APP",cause="crash"}"#), 1.0);
        assert!(
            !s.contains_key(&format!(r#"rip_worker_restarts_total{{app="{app}",cause="stop"}}"#)),
            "a stop is not a restart"
        );
        assert_eq!(v(r#"rip_request_duration_seconds_count{app="APP"}"#), 3.0);
        assert_eq!(v(r#"rip_request_duration_seconds_bucket{app="APP",le="0.0001"}"#), 1.0);
        assert_eq!(v(r#"rip_request_duration_seconds_bucket{app="APP",le="0.001"}"#), 2.0);
        assert_eq!(v(r#"rip_request_duration_seconds_bucket{app="APP",le="30"}"#), 2.0);
        assert_eq!(v(r#"rip_request_duration_seconds_bucket{app="APP",le="+Inf"}"#), 3.0);
        assert!((v(r#"rip_request_duration_seconds_sum{app="APP"}"#) - 40.00098).abs() < 1e-9);
        assert_eq!(v(r#"rip_queue_wait_seconds_count{app="APP"}"#), 0.0);
        // Each slot is in exactly one state.
        for slot in ["0", "1"] {
            let states: f64 = SLOT_STATES
                .iter()
                .map(|st| {
                    v(&format!(
                        r#"rip_worker_slot_state{{app="APP",slot="{slot}",state="{st}"}}"#
                    ))
                })
                .sum();
            assert_eq!(states, 1.0, "slot {slot}");
        }
    }
    assert_eq!(s[r#"rip_build_info{version="1.2.3",build="abc"}"#], 1.0);
    assert_eq!(s["rip_draining"], 0.0);
    assert!(text.contains("# TYPE rip_http_responses_total counter\n"), "{text}");
    assert!(
        text.contains("# TYPE rip_request_duration_seconds histogram\n"),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "the 0.0.4 text format has no EOF marker");
    assert!(!text.contains("pid"), "no pid label");
}

#[test]
fn histogram_buckets_are_cumulative_and_end_at_the_count() {
    let a = snapshot("api");
    let text = encode(&[("api", &a)], build(), false, Format::Prometheus);
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("rip_request_duration_seconds_bucket"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert_eq!(
        buckets.len(),
        crate::core::stats::LATENCY_BOUNDS_MICROS.len() + 1,
        "+Inf too"
    );
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(buckets.last(), Some(&3.0));
}

#[test]
fn openmetrics_has_units_and_ends_with_eof() {
    let a = snapshot("api");
    let text = encode(&[("api", &a)], build(), true, Format::OpenMetrics);
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE rip_http_responses counter\n"), "{text}");
    assert!(text.contains("# UNIT rip_request_duration_seconds seconds\n"), "{text}");
    assert!(text.contains("# TYPE rip_build info\n"), "{text}");
    let s = samples(&text);
    assert_eq!(s[r#"rip_http_responses_total{app="api",code="2xx"}"#], 3.0);
    assert_eq!(s[r#"rip_build_info{version="1.2.3",build="abc"}"#], 1.0);
    assert_eq!(s["rip_draining"], 1.0);
}

#[test]
fn a_label_value_is_escaped_and_a_stopping_app_is_not_ready() {
    let mut a = snapshot("x");
    a.stopping = true;
    let text = encode(&[("we\"ird\\app\n", &a)], build(), false, Format::Prometheus);
    assert!(text.contains(r#"rip_app_ready{app="we\"ird\\app\n"} 0"#), "{text}");
    samples(&text);
}

#[test]
fn no_apps_still_gives_a_valid_exposition() {
    let text = encode(&[], build(), false, Format::OpenMetrics);
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(samples(&text).len(), 2, "build info and draining: {text}");
}

#[test]
fn the_format_follows_the_accept_header() {
    use Format::*;
    let prometheus_server = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    for (accept, format) in [
        (None, Prometheus),
        (Some(""), Prometheus),
        (Some("*/*"), Prometheus),
        (Some("text/plain"), Prometheus),
        (Some(prometheus_server), OpenMetrics),
        (Some("application/openmetrics-text"), OpenMetrics),
        (Some("Application/OpenMetrics-Text; version=1.0.0"), OpenMetrics),
        (Some("application/openmetrics-text;q=0"), Prometheus),
        (Some("text/plain, application/openmetrics-text;q=0.5"), Prometheus),
        (
            Some("text/plain;q=0.3, application/openmetrics-text;q=0.5"),
            OpenMetrics,
        ),
    ] {
        assert_eq!(Format::negotiate(accept), format, "{accept:?}");
    }
    assert_eq!(Prometheus.content_type(), "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        OpenMetrics
            .content_type()
            .starts_with("application/openmetrics-text; version=1.0.0")
    );
}

#[test]
fn each_front_door_replica_s_accepted_connections_are_a_counter() {
    let mut a = snapshot("api");
    a.lb_replicas = 2;
    a.replicas = vec![
        crate::observe::status::ReplicaStatus { accepted: 5 },
        crate::observe::status::ReplicaStatus { accepted: 8 },
    ];
    let b = snapshot("web");
    let text = encode(&[("api", &a), ("web", &b)], build(), false, Format::Prometheus);
    let s = samples(&text);
    assert_eq!(
        s.get(r#"rip_accepted_connections_total{app="api",replica="0"}"#),
        Some(&5.0),
        "{text}"
    );
    assert_eq!(
        s.get(r#"rip_accepted_connections_total{app="api",replica="1"}"#),
        Some(&8.0),
        "{text}"
    );
    // An app nobody counts accepts for (a platform app) has no sample.
    assert!(!text.contains(r#"rip_accepted_connections_total{app="web""#), "{text}");
}
