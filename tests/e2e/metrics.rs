//! End to end, running beyond one machine: the admin port
//! (`--metrics-port`: `/metrics` scraped and parsed by a strict Prometheus
//! text parser, OpenMetrics on request, `/ready`, `/live`), the drain delay
//! after SIGTERM, and log lines a file or a log shipper can read.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::Method;

use crate::common::*;

// --- a strict parser of the text formats ------------------------------------------

/// One scrape, parsed: every sample by name and labels, every family's type.
#[derive(Debug)]
struct Scrape {
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    /// The value of `name{labels}` (exactly these labels).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples.get(&(name.to_owned(), labels)).copied()
    }

    /// Like [`Scrape::value`], panicking with the scrape when it is missing.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("{name}{labels:?} missing; have {:?}", self.names()))
    }

    fn names(&self) -> BTreeSet<&str> {
        self.samples.keys().map(|(n, _)| n.as_str()).collect()
    }

    /// Every sample of `name`.
    fn all(&self, name: &str) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, l), v)| (l, *v))
            .collect()
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to, given the declared types: the sample's
/// own name, or the name without a suffix its type adds.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>, openmetrics: bool) -> Option<&'a str> {
    if let Some(kind) = types.get(name) {
        // Prometheus 0.0.4: `# TYPE x_total counter` names the sample itself.
        if !openmetrics || kind == "gauge" {
            return Some(name);
        }
    }
    for (suffix, kinds) in [
        ("_total", &["counter"][..]),
        ("_info", &["info"][..]),
        ("_bucket", &["histogram"][..]),
        ("_sum", &["histogram"][..]),
        ("_count", &["histogram"][..]),
    ] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).is_some_and(|k| kinds.contains(&k.as_str()))
        {
            return Some(base);
        }
    }
    None
}

/// Parses `text` strictly: every line a comment or a sample of a declared
/// family, families contiguous, no series twice, histograms cumulative
/// with `+Inf` equal to `_count`; OpenMetrics ends with `# EOF`.
fn parse(text: &str, openmetrics: bool) -> Scrape {
    let mut scrape = Scrape {
        samples: BTreeMap::new(),
        types: BTreeMap::new(),
    };
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut eof = false;
    for line in text.lines() {
        assert!(!eof, "a line after # EOF: {line:?}");
        assert!(!line.contains('\x1b'), "an escape sequence: {line:?}");
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("EOF"), None, None) if openmetrics => eof = true,
                (Some("HELP"), Some(name), Some(_)) => assert!(valid_name(name), "{line:?}"),
                (Some("UNIT"), Some(name), Some(_)) if openmetrics => assert!(valid_name(name), "{line:?}"),
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(valid_name(name), "{line:?}");
                    let kinds: &[&str] = if openmetrics {
                        &["counter", "gauge", "histogram", "info", "unknown"]
                    } else {
                        &["counter", "gauge", "histogram", "untyped"]
                    };
                    assert!(kinds.contains(&kind), "unknown type: {line:?}");
                    assert!(!finished.contains(name), "family {name} declared twice");
                    if let Some(previous) = current.replace(name.to_owned()) {
                        finished.insert(previous);
                    }
                    scrape.types.insert(name.to_owned(), kind.to_owned());
                }
                _ => panic!("not a valid comment line: {line:?}"),
            }
            continue;
        }
        assert!(!line.is_empty(), "an empty line");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                (name, parse_labels(inner, line))
            }
        };
        assert!(valid_name(name), "bad metric name: {line:?}");
        let family = family_of(name, &scrape.types, openmetrics)
            .unwrap_or_else(|| panic!("a sample of no declared family: {line:?}"));
        assert_eq!(
            current.as_deref(),
            Some(family),
            "family {family} is not contiguous: {line:?}"
        );
        let key = (name.to_owned(), labels);
        assert!(scrape.samples.insert(key, value).is_none(), "a series twice: {line:?}");
    }
    assert_eq!(eof, openmetrics, "# EOF ends OpenMetrics, and only OpenMetrics");
    check_histograms(&scrape);
    scrape
}

/// `a="x",b="y\"z"` → labels; values may hold escaped `\\`, `\"`, `\n`.
fn parse_labels(inner: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = inner;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line:?}"));
        assert!(
            valid_name(key) && !key.contains(':'),
            "bad label name {key:?}: {line:?}"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("bad escape {other:?}: {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value: {line:?}"),
            }
        };
        assert!(
            labels.insert(key.to_owned(), value).is_none(),
            "label {key} twice: {line:?}"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

fn check_histograms(scrape: &Scrape) {
    for (family, kind) in &scrape.types {
        if kind != "histogram" {
            continue;
        }
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for (labels, value) in scrape.all(&format!("{family}_bucket")) {
            let mut rest = labels.clone();
            let le = rest
                .remove("le")
                .unwrap_or_else(|| panic!("{family}_bucket without le"));
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le")
            };
            series.entry(rest).or_default().push((le, value));
        }
        for (labels, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}{labels:?}: buckets not cumulative: {buckets:?}"
            );
            let (last_le, inf) = *buckets.last().expect("a bucket");
            assert_eq!(last_le, f64::INFINITY, "{family}{labels:?}: no +Inf bucket");
            let count = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>();
            assert_eq!(
                scrape.get(&format!("{family}_count"), &count),
                inf,
                "{family}{labels:?}"
            );
            assert!(scrape.value(&format!("{family}_sum"), &count).is_some(), "{family}_sum");
        }
    }
}

// --- helpers ----------------------------------------------------------------------

/// The metrics port from the start line (`...; metrics, /ready and /live on
/// http://127.0.0.1:<port>`).
fn metrics_port(server: &Server) -> u16 {
    server
        .start_line
        .split("/live on http://127.0.0.1:")
        .nth(1)
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in {:?}", server.start_line))
}

async fn scrape(port: u16, accept: Option<&str>) -> Resp {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
    request(port, Method::GET, "/metrics", &headers, Bytes::new())
        .await
        .unwrap_or_else(|e| panic!("GET /metrics: {e}"))
}

async fn prometheus(port: u16) -> Scrape {
    let r = scrape(port, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(&r.text(), false)
}

// --- tests ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_follow_the_traffic_sent_with_the_app_label() {
    within(BUDGET, async {
        let server = Server::start(&["w:2", "--metrics-port=0"]).await;
        let mp = metrics_port(&server);
        assert_ne!(mp, server.port, "never the app's port");
        for _ in 0..5 {
            assert_eq!(server.get("/ping").await.status, 200);
        }
        assert_eq!(server.get("/status/404").await.status, 404);
        let hello = [("app", "hello")];
        let m = eventually("6 responses counted", STEP, || async {
            let m = prometheus(mp).await;
            let sent = m.value("rip_http_responses_total", &[("app", "hello"), ("code", "2xx")]);
            if sent == Some(5.0) && m.value("rip_request_duration_seconds_count", &hello) == Some(6.0) {
                Ok(m)
            } else {
                Err(format!("2xx: {sent:?}"))
            }
        })
        .await;
        let with = |k: &'static str, v: &'static str| [("app", "hello"), (k, v)];
        assert_eq!(m.get("rip_http_responses_total", &with("code", "4xx")), 1.0);
        for code in ["1xx", "3xx", "5xx"] {
            assert_eq!(m.get("rip_http_responses_total", &with("code", code)), 0.0, "{code}");
        }
        for reason in [
            "queue_full",
            "queue_timeout",
            "upstream_timeout",
            "upstream_error",
            "no_capacity",
        ] {
            assert_eq!(m.get("rip_rejections_total", &with("reason", reason)), 0.0, "{reason}");
        }
        assert_eq!(m.get("rip_requests_total", &hello), 6.0);
        assert_eq!(m.get("rip_queue_current", &hello), 0.0);
        assert_eq!(m.get("rip_queue_limit", &hello), 8192.0);
        assert_eq!(m.get("rip_workers", &with("state", "idle")), 2.0);
        assert_eq!(m.get("rip_workers", &with("state", "busy")), 0.0);
        assert_eq!(m.get("rip_workers_desired", &hello), 2.0);
        assert_eq!(m.get("rip_app_ready", &hello), 1.0);
        assert_eq!(m.get("rip_retries_total", &hello), 0.0);
        for cause in ["crash", "recycled", "stuck", "rolling_restart", "scale_down"] {
            assert_eq!(m.get("rip_worker_exits_total", &with("cause", cause)), 0.0, "{cause}");
        }
        assert_eq!(m.get("rip_worker_restarts_total", &with("cause", "crash")), 0.0);
        assert_eq!(m.get("rip_queue_wait_seconds_count", &hello), 6.0);
        // Per slot: RIP_WORKER_ID, bounded; the requests add up, never a pid.
        let per_slot: f64 = m.all("rip_worker_requests_total").iter().map(|(_, v)| v).sum();
        assert_eq!(per_slot, 6.0);
        let slots: BTreeSet<&str> = m
            .all("rip_worker_slot_state")
            .iter()
            .map(|(l, _)| l["slot"].as_str())
            .collect();
        assert_eq!(slots, BTreeSet::from(["0", "1"]));
        assert_eq!(
            m.get(
                "rip_worker_slot_state",
                &[("app", "hello"), ("slot", "0"), ("state", "ready")]
            ),
            1.0
        );
        let labels: BTreeSet<&str> = m
            .samples
            .keys()
            .flat_map(|(_, l)| l.keys().map(String::as_str))
            .collect();
        let allowed = BTreeSet::from([
            "app", "code", "reason", "state", "cause", "slot", "replica", "le", "version", "build",
        ]);
        // One front-door replica (the default), which took the test's connections.
        assert_eq!(m.all("rip_accepted_connections_total").len(), 1);
        assert!(m.get("rip_accepted_connections_total", &[("app", "hello"), ("replica", "0")]) >= 1.0);
        assert!(labels.is_subset(&allowed), "unbounded labels: {labels:?}");
        let build: Vec<_> = m.all("rip_build_info");
        assert_eq!(build.len(), 1);
        assert_eq!(build[0].0["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(m.get("rip_draining", &[]), 0.0);

        // The app's own port serves the app, not the exposition.
        let app = server.get("/metrics").await;
        assert!(!app.text().contains("rip_http_responses_total"), "{}", app.text());
        // The admin port: /live, /ready, and nothing else.
        assert_eq!(get(mp, "/live").await.status, 200);
        let ready = get(mp, "/ready").await;
        assert_eq!((ready.status, ready.text().as_str()), (200, "ready\n"));
        assert_eq!(get(mp, "/status").await.status, 404);
        let post = request(mp, Method::POST, "/metrics", &[], Bytes::new())
            .await
            .expect("POST");
        assert_eq!(post.status, 405);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_worker_and_a_full_queue_show_in_the_metrics() {
    within(BUDGET, async {
        let server = Server::start(&["w:1", "--max-queue=1", "--queue-timeout-ms=20000", "--metrics-port=0"]).await;
        let mp = metrics_port(&server);
        let hello = [("app", "hello")];
        let slow = tokio::spawn({
            let port = server.port;
            async move { get(port, "/sleep?ms=2000").await.status }
        });
        let m = eventually("the slow request on its worker", STEP, || async {
            let m = prometheus(mp).await;
            match m.value("rip_requests_in_flight", &hello) {
                Some(1.0) => Ok(m),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert_eq!(m.get("rip_workers", &[("app", "hello"), ("state", "busy")]), 1.0);
        assert_eq!(
            m.get("rip_worker_current_requests", &[("app", "hello"), ("slot", "0")]),
            1.0
        );
        // One request waits in the queue's one place, the others are refused.
        let report = burst(server.port, 4, 1, "/ping", Duration::from_secs(20)).await;
        let refused = report.histogram().get(&503).copied().unwrap_or(0) as f64;
        assert!(refused >= 1.0, "{:?}", report.outcomes);
        assert!(
            report
                .outcomes
                .iter()
                .filter(|o| o.status == Some(503))
                .all(|o| o.reason.as_deref() == Some("queue_full"))
        );
        assert_eq!(slow.await.expect("slow request"), 200);
        let m = prometheus(mp).await;
        assert_eq!(
            m.get("rip_rejections_total", &[("app", "hello"), ("reason", "queue_full")]),
            refused
        );
        assert_eq!(
            m.get("rip_http_responses_total", &[("app", "hello"), ("code", "5xx")]),
            refused
        );
        assert_eq!(
            m.get("rip_http_responses_total", &[("app", "hello"), ("code", "2xx")]),
            5.0 - refused
        );
        assert_eq!(m.get("rip_queue_limit", &hello), 1.0);
        // The slow request, and the one queued behind it, took over 1 s
        // from arrival; only the queued one waited in the queue.
        let le = |name: &str, bound: &str| m.get(name, &[("app", "hello"), ("le", bound)]);
        let duration = "rip_request_duration_seconds_bucket";
        let accepted = 5.0 - refused;
        assert_eq!(
            le(duration, "+Inf") - le(duration, "1"),
            accepted,
            "{accepted} requests over 1 s"
        );
        assert_eq!(le(duration, "+Inf") - le(duration, "2.5"), 0.0);
        let wait = "rip_queue_wait_seconds_bucket";
        assert_eq!(
            le(wait, "+Inf") - le(wait, "1"),
            accepted - 1.0,
            "the queued one waited"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openmetrics_when_the_scraper_asks_for_it() {
    within(BUDGET, async {
        let server = Server::start(&["w:1", "--metrics-port=0"]).await;
        let mp = metrics_port(&server);
        assert_eq!(server.get("/ping").await.status, 200);
        let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let r = scrape(mp, Some(accept)).await;
        let content_type = r.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/openmetrics-text; version=1.0.0"),
            "{content_type}"
        );
        let text = r.text();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# UNIT rip_request_duration_seconds seconds\n"), "{text}");
        let m = parse(&text, true);
        assert_eq!(m.types.get("rip_http_responses").map(String::as_str), Some("counter"));
        assert_eq!(m.types.get("rip_build").map(String::as_str), Some("info"));
        eventually("the 2xx counter", STEP, || async {
            let m = parse(&scrape(mp, Some(accept)).await.text(), true);
            match m.value("rip_http_responses_total", &[("app", "hello"), ("code", "2xx")]) {
                Some(1.0) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        // Plain text for a scraper that asks for it.
        let plain = scrape(mp, Some("text/plain")).await;
        assert!(!plain.text().contains("# EOF"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drain_delay_flips_ready_keeps_serving_then_stops_gracefully() {
    within(BUDGET, async {
        let mut server = Server::start(&["w:2", "--metrics-port=0", "--drain-delay-ms=4000"]).await;
        let mp = metrics_port(&server);
        assert_eq!(get(mp, "/ready").await.status, 200);
        let clock = Stopwatch::start();
        server.signal("TERM");
        let not_ready = eventually("/ready to answer 503", STEP, || async {
            let r = get(mp, "/ready").await;
            if r.status == 503 {
                Ok(r.text())
            } else {
                Err(format!("{}", r.status))
            }
        })
        .await;
        assert_eq!(not_ready, "not ready: draining\n");
        // Still serving during the delay: the load balancer may not have
        // noticed yet.
        for _ in 0..3 {
            assert_eq!(server.get("/ping").await.status, 200);
        }
        assert_eq!(get(mp, "/live").await.status, 200, "live while draining");
        let m = prometheus(mp).await;
        assert_eq!(m.get("rip_draining", &[]), 1.0);
        assert_eq!(
            m.get("rip_app_ready", &[("app", "hello")]),
            1.0,
            "the app itself still serves"
        );
        assert!(
            clock.elapsed() < Duration::from_millis(3500),
            "the checks above took too long to prove anything: {:?}",
            clock.elapsed()
        );
        assert!(
            server.wait_exit(Duration::ZERO).await.is_none(),
            "stopped before the delay ended"
        );
        let exit = server
            .wait_exit(Duration::from_secs(4) + STEP)
            .await
            .expect("exits once the delay is over");
        assert_eq!(exit.code(), Some(0), "{exit:?}");
        assert!(
            clock.elapsed() >= Duration::from_millis(4000),
            "the graceful stop began before the delay: {:?}",
            clock.elapsed()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_sigterm_ends_the_drain_at_once() {
    within(BUDGET, async {
        let mut server = Server::start(&["w:1", "--metrics-port=0", "--drain-delay-ms=600000"]).await;
        let mp = metrics_port(&server);
        server.signal("TERM");
        eventually("/ready to answer 503", STEP, || async {
            match get(mp, "/ready").await.status {
                503 => Ok(()),
                other => Err(other.to_string()),
            }
        })
        .await;
        server.signal("TERM");
        let exit = server.wait_exit(STEP).await.expect("a second SIGTERM stops at once");
        assert_eq!(exit.code(), Some(0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_metrics_port_in_use_fails_the_start_naming_the_flag() {
    within(BUDGET, async {
        let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = busy.local_addr().expect("addr").port().to_string();
        let dir = short_dir();
        let prefix = format!("--socket-prefix={}", dir.path().join("s").display());
        let flag = format!("--metrics-port={port}");
        let out = run_cli(&["builtin:hello", "w:1", "http:0", &prefix, &flag], &[], STEP).await;
        assert_eq!(out.code, Some(1), "{out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{out:?}");
        assert!(
            lines[0].starts_with(&format!("rip-server: {flag} on 127.0.0.1: cannot listen:")),
            "{out:?}"
        );
        assert!(out.stdout.is_empty(), "no start line: {out:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_lines_in_a_file_carry_no_escape_sequences() {
    within(BUDGET, async {
        let dir = short_dir();
        let log = dir.path().join("log");
        let file = std::fs::File::create(&log).expect("log file");
        let home = fresh_home();
        // rip-server builtin:hello > log 2>&1
        let mut child = Command::new(bin())
            .args(["builtin:hello", "w:2", "http:0"])
            .arg(format!("--socket-prefix={}", dir.path().join("s").display()))
            .env("RIP_HOME", home.path())
            .env_remove("NO_COLOR")
            .env_remove("RIP_LOG")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup"))
            .stderr(file)
            .spawn()
            .expect("spawn");
        let pid = child.id();
        eventually("both workers joined", STEP, || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            match text.matches("worker joined").count() {
                2 => Ok(()),
                n => Err(format!("{n} joined: {text}")),
            }
        })
        .await;
        send_signal(pid, "TERM");
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        assert_eq!(status.code(), Some(0));
        let text = std::fs::read_to_string(&log).expect("log");
        assert!(text.contains("INFO"), "{text}");
        assert!(!text.contains('\x1b'), "ANSI escapes in a file:\n{text}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_logging_makes_every_server_line_of_stderr_json() {
    within(BUDGET, async {
        for switch in ["--json-logging", "--json"] {
            let mut server = Server::start(&["w:2", switch]).await;
            assert_eq!(server.get("/ping").await.status, 200);
            let access = server.stop_and_read_stdout().await;
            assert!(!access.is_empty(), "an access-log line");
            for line in access {
                serde_json::from_str::<serde_json::Value>(&line).unwrap_or_else(|e| panic!("{switch}: {e}: {line}"));
            }
            let stderr = server.stderr_text();
            let lines: Vec<&str> = stderr.lines().collect();
            assert!(lines.len() >= 4, "the server's and the workers' lines: {stderr}");
            for line in &lines {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{switch}: not JSON ({e}): {line:?}"));
                assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
            }
            assert!(lines.iter().any(|l| l.contains("worker joined")), "{stderr}");
            assert!(lines.iter().any(|l| l.contains("\"stopped\"")), "{stderr}");
        }
    })
    .await;
}

/// Runs the built-in app on a pseudo-terminal (util-linux `script`) until
/// its worker joined, stops it, and returns everything the terminal showed.
async fn on_a_terminal(no_color: Option<&str>) -> String {
    let script = "/usr/bin/script";
    if !std::path::Path::new(script).exists() {
        let status = Command::new("apt-get")
            .args(["install", "-y", "bsdutils"])
            .status()
            .expect("`script` (bsdutils) is missing and apt-get cannot run to install it");
        assert!(status.success(), "apt-get install bsdutils failed");
    }
    let dir = short_dir();
    let home = fresh_home();
    let command = format!(
        "exec {} builtin:hello w:1 http:0 --socket-prefix={}",
        bin(),
        dir.path().join("s").display()
    );
    let mut terminal = Command::new(script);
    terminal
        .args(["-qefc", &command, "/dev/null"])
        .env("RIP_HOME", home.path())
        .env_remove("RIP_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(value) = no_color {
        terminal.env("NO_COLOR", value);
    }
    let mut child = terminal.spawn().expect("spawn script");
    let script_pid = child.id();
    let mut out = child.stdout.take().expect("stdout");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let joined = within(STEP, async {
        while let Some(chunk) = rx.recv().await {
            seen.extend(chunk);
            if String::from_utf8_lossy(&seen).contains("worker joined") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        joined,
        "no `worker joined` on the terminal: {}",
        String::from_utf8_lossy(&seen)
    );
    let server = children_of(script_pid);
    assert_eq!(server.len(), 1, "the server under script: {server:?}");
    send_signal(server[0], "TERM");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    while let Some(chunk) = rx.recv().await {
        seen.extend(chunk);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn colour_on_a_terminal_unless_no_color_says_otherwise() {
    within(BUDGET, async {
        let coloured = on_a_terminal(None).await;
        assert!(coloured.contains("\x1b["), "a terminal gets colour: {coloured:?}");
        let plain = on_a_terminal(Some("1")).await;
        assert!(plain.contains("worker joined"), "{plain:?}");
        assert!(!plain.contains("\x1b["), "NO_COLOR=1 turns it off: {plain:?}");
    })
    .await;
}
