//! Benchmarks of the per-request work outside the balancer: the fast
//! path's codec (request head to worker request, response head), the hyper
//! path's header rewriting, the worker exchange's request encoding and
//! response parsing, synthesized replies, access-log lines and `/status`.
//!
//! Run with `cargo bench --bench hot_path` (add `-- --quick` for a shorter
//! run); `cargo test --benches` runs every benchmark once as a smoke test.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use rip_server::core::balancer::{Action, Balancer, BalancerConfig, RequestMeta, WorkerInfo};
use rip_server::core::{Answer, Pid, RequestId, Slot, Time, Version};
use rip_server::frontdoor::proxy::render_answer;
use rip_server::http::headers::{rewrite_request, rewrite_response};
use rip_server::observe::access_log::{Format, Record, format_record};
use rip_server::upstream::{RequestFraming, Upstream, encode_request};

/// Header maps cloned per timed batch: few enough to stay in cache, as a map
/// fresh from the parser is (`SmallInput` would prepare millions, cold).
const BATCH: u64 = 64;

fn header_map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(pairs.len());
    for &(name, value) in pairs {
        h.append(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    h
}

/// A browser's GET behind a TLS terminator: 11 headers, 12 with an id.
fn request_headers(with_id: bool) -> HeaderMap {
    let mut h = header_map(&[
        ("host", "app.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://app.example.com/dashboard"),
        (
            "cookie",
            "session=6f1c2a9e8b7d4c3f; theme=dark; _ga=GA1.1.123456789.1700000000",
        ),
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("x-forwarded-for", "203.0.113.7"),
        ("cache-control", "max-age=0"),
    ]);
    if with_id {
        h.insert(
            "x-request-id",
            HeaderValue::from_static("7b0e4c1a-3f2d-4e5b-9a8c-1d2e3f4a5b6c"),
        );
    }
    h
}

/// A worker's 200 with the internal and per-hop headers the front door drops.
fn response_headers() -> HeaderMap {
    header_map(&[
        ("content-type", "text/html; charset=utf-8"),
        ("content-length", "5120"),
        ("date", "Thu, 01 Jan 2026 00:00:00 GMT"),
        ("server", "rip-worker"),
        ("cache-control", "private, no-store"),
        ("etag", "\"5f3e-1a2b3c\""),
        ("vary", "Accept-Encoding"),
        ("set-cookie", "session=6f1c2a9e8b7d4c3f; Path=/; HttpOnly"),
        ("x-runtime", "0.004512"),
        ("connection", "keep-alive"),
        ("rip-worker-id", "3"),
    ])
}

fn headers(c: &mut Criterion) {
    let mut group = c.benchmark_group("headers");
    group.throughput(Throughput::Elements(1));
    let client = Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)));
    let mut next_id = 0u64;

    for with_id in [true, false] {
        let template = request_headers(with_id);
        // Sanity: the rewrite keeps or assigns the id and strips per-hop headers.
        let mut h = template.clone();
        let id = rewrite_request(&mut h, client, "https", 1, || "rip-1".into());
        assert_eq!(
            id,
            if with_id {
                "7b0e4c1a-3f2d-4e5b-9a8c-1d2e3f4a5b6c"
            } else {
                "rip-1"
            }
        );
        assert!(!h.contains_key("connection") && !h.contains_key("keep-alive"));
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 10.1.2.3");

        let name = if with_id { "request/client_id" } else { "request/new_id" };
        group.bench_function(name, |b| {
            b.iter_batched(
                || template.clone(),
                |mut h| {
                    let id = rewrite_request(
                        &mut h,
                        black_box(client),
                        "https",
                        black_box(1_767_225_600_123_456),
                        || {
                            next_id += 1;
                            format!("a1b2c3d4-{next_id:x}")
                        },
                    );
                    (h, id)
                },
                BatchSize::NumIterations(BATCH),
            );
        });
    }

    let template = response_headers();
    let mut h = template.clone();
    rewrite_response(&mut h);
    assert_eq!(h.len(), template.len() - 3, "date, connection, rip-worker-id");
    group.bench_function("response", |b| {
        b.iter_batched(
            || template.clone(),
            |mut h| {
                rewrite_response(&mut h);
                h
            },
            BatchSize::NumIterations(BATCH),
        );
    });
    group.finish();
}

fn answers(c: &mut Criterion) {
    let mut group = c.benchmark_group("render_answer");
    group.throughput(Throughput::Elements(1));
    let request_id = HeaderValue::from_static("7b0e4c1a-3f2d-4e5b-9a8c-1d2e3f4a5b6c");
    let answer = Answer::QueueFull;
    assert_eq!(render_answer(answer, &request_id).status(), 503);
    group.bench_function("503_queue_full", |b| {
        b.iter(|| render_answer(black_box(answer), &request_id));
    });
    group.finish();
}

fn access_log(c: &mut Criterion) {
    let mut group = c.benchmark_group("access_log");
    group.throughput(Throughput::Elements(1));
    let record = Record {
        t_micros: 1_767_225_600_123_456,
        method: "GET".into(),
        path: "/api/v1/orders?page=2&per_page=50".into(),
        status: 200,
        total_seconds: 0.004_812_3,
        worker_seconds: Some(0.004_501_7),
        length: Some(5120),
        reason: None,
        request_id: "7b0e4c1a-3f2d-4e5b-9a8c-1d2e3f4a5b6c".into(),
        worker_pid: Some(41_234),
    };
    for (name, format) in [("human", Format::Human), ("json", Format::Json)] {
        let mut out = String::with_capacity(256);
        format_record(&mut out, "shop", format, &record);
        assert!(out.contains("/api/v1/orders"), "{out}");
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                format_record(&mut out, "shop", black_box(format), black_box(&record));
                black_box(out.len())
            });
        });
    }
    group.finish();
}

/// A balancer with `workers` workers, a quarter of them busy, and some history.
fn busy_balancer(workers: u32) -> Balancer {
    let mut lb = Balancer::new(BalancerConfig {
        desired_workers: workers,
        ..BalancerConfig::default()
    });
    let now = Time::from_millis(1);
    for i in 0..workers {
        let info = WorkerInfo {
            pid: Pid(10_000 + i),
            slot: Slot(i),
            version: Version(1),
            socket: format!("/run/rip/shop/w{i}.sock"),
        };
        lb.handle_join(info, now).expect("fresh pid");
    }
    let mut id = 0;
    // History: every worker has served a few requests.
    for _ in 0..4 * workers {
        id += 1;
        lb.handle_request(RequestId(id), RequestMeta::GET, now);
        lb.handle_response_head(RequestId(id), now);
        lb.handle_complete(RequestId(id), true, now);
    }
    for _ in 0..workers / 4 {
        id += 1;
        lb.handle_request(RequestId(id), RequestMeta::GET, now);
    }
    while let Some(action) = lb.poll_action() {
        assert!(matches!(action, Action::Dispatch { .. }));
    }
    while lb.poll_worker_event().is_some() {}
    lb
}

fn status(c: &mut Criterion) {
    let mut group = c.benchmark_group("status");
    group.throughput(Throughput::Elements(1));
    let workers = 64;
    let lb = busy_balancer(workers);
    let json = serde_json::to_string(&lb.status()).expect("serializes");
    assert!(json.contains("/run/rip/shop/w63.sock"), "{json}");
    assert_eq!(lb.status().in_flight, workers as usize / 4);
    group.bench_function(BenchmarkId::new("json", workers), |b| {
        b.iter(|| serde_json::to_string(&black_box(&lb).status()).expect("serializes"));
    });
    // The snapshot alone, to split the figure above.
    group.bench_function(BenchmarkId::new("snapshot", workers), |b| {
        b.iter(|| black_box(&lb).status());
    });
    group.finish();
}

/// Serializing a request for a worker, and parsing a worker's response that
/// arrived whole in one read (the common case of `/ping`-sized answers).
fn worker_exchange(c: &mut Criterion) {
    let mut group = c.benchmark_group("upstream");
    group.throughput(Throughput::Elements(1));
    let mut request = http::Request::get("/dashboard?tab=2").body(()).expect("request");
    *request.headers_mut() = request_headers(true);
    rewrite_request(
        request.headers_mut(),
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "https",
        1,
        || "x".into(),
    );
    let (parts, ()) = request.into_parts();
    let wire = encode_request(&parts, RequestFraming::None, b"");
    assert!(wire.starts_with(b"GET /dashboard?tab=2 HTTP/1.1\r\n") && wire.ends_with(b"\r\n\r\n"));
    group.bench_function("encode_request/14_headers", |b| {
        b.iter(|| encode_request(black_box(&parts), RequestFraming::None, b""))
    });

    let mut response = Vec::new();
    response.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    for (name, value) in &response_headers() {
        response.extend_from_slice(name.as_str().as_bytes());
        response.extend_from_slice(b": ");
        response.extend_from_slice(value.as_bytes());
        response.extend_from_slice(b"\r\n");
    }
    response.extend_from_slice(b"\r\n");
    response.extend(std::iter::repeat_n(b'x', 5120));
    let (head, body) = Upstream::parse_buffered(&response).expect("a whole response");
    assert_eq!((head.status.as_u16(), body.len()), (200, 5120));
    assert!(!head.headers.contains_key("date") && !head.headers.contains_key("rip-worker-id"));
    group.bench_function("parse_response/11_headers_5k_body", |b| {
        b.iter(|| Upstream::parse_buffered(black_box(&response)))
    });
    group.finish();
}

/// The fast path: a browser-like request head parsed and rewritten into the
/// worker's request in one pass, and a response head written from a
/// worker's answer (compare with `headers/*` + `upstream/encode_request`,
/// the hyper path's equivalent).
fn fast_path_codec(c: &mut Criterion) {
    use rip_server::frontdoor::codec::{Framing, Head, Limits, Rewrite, parse_request, write_response_head};

    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    let mut head = b"GET /dashboard?tab=2 HTTP/1.1\r\n".to_vec();
    for (name, value) in &request_headers(true) {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    let limits = Limits {
        max_headers: 100,
        max_body: 64 * 1024,
    };
    let parse = |bytes: &[u8]| {
        let rewrite = Rewrite {
            client: Some("127.0.0.1"),
            scheme: "https",
            start_micros: 1_700_000_000_000_000,
            new_id: || "x".to_owned(),
        };
        parse_request(bytes, limits, rewrite)
    };
    assert!(matches!(parse(&head), Head::Complete(r) if r.head_len == head.len()));
    group.bench_function("parse_request/12_headers", |b| b.iter(|| parse(black_box(&head))));

    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.headers = response_headers();
    rewrite_response(&mut parts.headers);
    let mut out = Vec::with_capacity(1024);
    group.bench_function("write_response_head/after_rewrite", |b| {
        b.iter(|| {
            out.clear();
            write_response_head(&mut out, black_box(&parts), Framing::Length(5120), true, false);
            out.len()
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = fast_path_codec, headers, worker_exchange, answers, access_log, status
}
criterion_main!(benches);
