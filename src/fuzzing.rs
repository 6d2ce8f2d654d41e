//! Fuzz bodies shared by the cargo-fuzz targets in `fuzz/` and by
//! `tests/fuzz_corpus.rs`, which replays the committed corpora on stable.
//! Each function panics when it finds a bug and returns normally otherwise.

use std::time::Duration;

use crate::core::balancer::{Action, Balancer, BalancerConfig, Policy, RequestMeta, WorkerInfo};
use crate::core::invariants::Observer;
use crate::core::{Pid, RequestId, Slot, Time, Version};

/// The control socket's payload parser never panics, and what it accepts
/// survives a round trip.
pub fn control_payload(data: &[u8]) {
    if let Ok(message) = crate::protocol::parse_worker_message(data) {
        let text = serde_json::to_vec(&message).expect("a parsed message serializes");
        let again = crate::protocol::parse_worker_message(&text).expect("a serialized message parses");
        assert_eq!(message, again);
    }
}

/// The CLI parser never panics, and every error is exactly one line.
pub fn cli_args(data: &[u8]) {
    let args: Vec<String> = data
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let env = |_: &str| None;
    if let Err(e) = crate::cli::parse(&args, &env) {
        let line = e.to_string();
        assert!(!line.contains('\n'), "multi-line error: {line:?}");
        assert!(line.starts_with("rip-server: "), "{line:?}");
    }
}

/// The parser of workers' responses (`upstream`) never panics, and a
/// response it accepts has a body consistent with its framing: exactly the
/// declared length when sized, and the connection is offered for reuse only
/// after a clean end. The first byte picks the request method (odd: HEAD).
pub fn worker_response(data: &[u8]) {
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;

    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let method = if pick % 2 == 1 {
        http::Method::HEAD
    } else {
        http::Method::GET
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let (ours, mut theirs) = tokio::io::duplex(data.len() + 1);
        theirs.write_all(data).await.expect("fits the duplex");
        drop(theirs);
        let conn = crate::upstream::Upstream::from_stream(ours);
        let Ok((_parts, mut body)) = conn.read_response(&method).await else {
            return;
        };
        let exact = http_body::Body::size_hint(&body).exact();
        let mut total = 0u64;
        let mut clean = true;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => total += frame.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => {
                    clean = false;
                    break;
                }
            }
        }
        if clean && let Some(n) = exact {
            assert_eq!(total, n, "a sized body yields exactly its length");
        }
        if !clean {
            assert!(body.take_conn().is_none(), "a broken body never offers its connection");
        }
    });
}

/// The fast path's request parser (`frontdoor::codec`) never panics, and a
/// head it takes becomes a well-formed worker request: httparse reads it back
/// whole with the same method and target, it carries exactly one
/// `X-Request-Start` and `X-Forwarded-Proto`, its only framing is our own
/// `Content-Length` matching the body the client declared, and no hop-by-hop
/// header of the client's gets through (so nothing can smuggle a second
/// request or re-frame the body past the front door).
pub fn request_head(data: &[u8]) {
    use crate::frontdoor::codec::{Head, Limits, Rewrite, parse_request};

    let limits = Limits {
        max_headers: 100,
        max_body: 64 * 1024,
    };
    let rewrite = Rewrite {
        client: Some("127.0.0.1"),
        scheme: "http",
        start_micros: 1,
        new_id: || "fuzz-1".to_owned(),
    };
    let Head::Complete(request) = parse_request(data, limits, rewrite) else {
        return;
    };
    assert!(request.head_len <= data.len());
    assert!(request.path.end <= request.head_len);
    let mut slots = [httparse::EMPTY_HEADER; 128];
    let mut again = httparse::Request::new(&mut slots);
    let parsed = again.parse(&request.wire).expect("the worker request parses");
    assert_eq!(parsed, httparse::Status::Complete(request.wire.len()), "one whole head");
    assert_eq!(again.method, Some(request.method.as_str()));
    assert_eq!(again.path.map(str::as_bytes), Some(&data[request.path.clone()]));
    let count = |name: &str| {
        again
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count()
    };
    assert_eq!(count("x-request-start"), 1);
    assert_eq!(count("x-forwarded-proto"), 1);
    for hop in [
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
        "proxy-connection",
    ] {
        assert_eq!(count(hop), 0, "{hop} got through");
    }
    let lengths: Vec<&[u8]> = again
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| h.value)
        .collect();
    match lengths.as_slice() {
        [] => assert_eq!(request.body_len, 0),
        [n] => assert_eq!(*n, request.body_len.to_string().as_bytes()),
        _ => panic!("several content-length headers"),
    }
}

/// A byte cursor that yields small numbers and then zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Drives a balancer with the events the bytes describe, checking the
/// shared invariants after every step and, at the end, that every request
/// ended exactly once.
pub fn core_events(data: &[u8]) {
    let mut bytes = Bytes(data);
    let max_queue = usize::from(bytes.next() % 6);
    // One byte picks the policy (low bits) and the retry setting (high bit),
    // so existing corpus entries keep every other setting.
    let policy_byte = bytes.next();
    let config = BalancerConfig {
        max_queue,
        queue_timeout: Duration::from_millis(2000),
        read_timeout: Duration::from_millis(5000),
        quarantine: Duration::from_millis(250),
        policy: match policy_byte % 3 {
            0 => Policy::Lifo,
            1 => Policy::RoundRobin,
            _ => Policy::LeastConnections,
        },
        max_requests_per_worker: match bytes.next() % 4 {
            0 => None,
            n => Some(u64::from(n) * 2),
        },
        desired_workers: u32::from(bytes.next() % 4) + 1,
        retry_after_send: policy_byte & 0x80 != 0,
    };
    let mut lb = Balancer::new(config);
    let mut observer = Observer::new(&lb);
    let mut now = Time::ZERO;
    let mut live: Vec<Pid> = Vec::new();
    let mut exchanges: Vec<(RequestId, bool)> = Vec::new();
    let mut requests: Vec<RequestId> = Vec::new();
    let (mut next_pid, mut next_request) = (1u32, 1u64);
    let mut steps = 0;
    let mut settling = false;
    loop {
        if bytes.is_empty() || steps > 400 {
            settling = true;
        }
        steps += 1;
        observer.before(&lb);
        let op = if settling {
            if exchanges.is_empty() { 11 } else { 5 }
        } else {
            bytes.next()
        };
        let pick = usize::from(bytes.next());
        match op % 12 {
            0 | 1 => {
                let id = RequestId(next_request);
                next_request += 1;
                let meta = RequestMeta {
                    idempotent: op & 16 != 0,
                    replayable: op & 32 != 0,
                };
                observer.on_request(id, meta, now);
                requests.push(id);
                lb.handle_request(id, meta, now);
            }
            2 => {
                let pid = Pid(next_pid);
                next_pid += 1;
                let info = WorkerInfo {
                    pid,
                    slot: Slot(pid.0 % 4),
                    version: Version(u64::from(op >> 6) + 1),
                    socket: String::new(),
                };
                lb.handle_join(info, now).expect("a fresh pid joins");
                live.push(pid);
            }
            3 if !live.is_empty() => {
                let pid = live.remove(pick % live.len());
                if op & 16 != 0 {
                    lb.handle_exit(pid, now)
                } else {
                    lb.handle_quit(pid, now)
                }
            }
            4 if !live.is_empty() => lb.handle_drain(live[pick % live.len()], now),
            5 if !exchanges.is_empty() => {
                let (id, head) = exchanges.remove(pick % exchanges.len());
                if !head {
                    observer.on_response_head(id);
                }
                lb.handle_complete(id, settling || op & 16 == 0, now);
            }
            6 if !exchanges.is_empty() => {
                let i = pick % exchanges.len();
                if !exchanges[i].1 {
                    exchanges[i].1 = true;
                    observer.on_response_head(exchanges[i].0);
                    lb.handle_response_head(exchanges[i].0, now);
                }
            }
            7..=9 if !exchanges.is_empty() => {
                let i = pick % exchanges.len();
                if !exchanges[i].1 {
                    let (id, _) = exchanges.remove(i);
                    match op % 12 {
                        7 => lb.handle_busy(id, now),
                        8 => lb.handle_connect_failed(id, now),
                        _ => {
                            observer.on_failed_after_send(id);
                            lb.handle_failed_after_send(id, now);
                        }
                    }
                }
            }
            10 if !requests.is_empty() => {
                let id = requests[pick % requests.len()];
                if observer.ending(id).is_none() {
                    observer.on_client_gone(id);
                }
                lb.handle_client_gone(id, now);
            }
            _ => {
                let step = if settling {
                    lb.poll_timeout().map_or(Duration::from_secs(10), |t| {
                        t.saturating_since(now).max(Duration::from_millis(1))
                    })
                } else {
                    Duration::from_millis(pick as u64 * 25)
                };
                now += step;
                lb.handle_timeout(now);
            }
        }
        while let Some(action) = lb.poll_action() {
            observer.on_action(&action, &lb, now);
            if let Action::Dispatch { request, .. } = action {
                exchanges.push((request, false));
            }
        }
        while lb.poll_worker_event().is_some() {}
        observer.note_queued(&lb);
        if let Err(e) = lb.check_invariants() {
            panic!("invariant broken at step {steps}: {e}");
        }
        if let Some(v) = observer.violations().first() {
            panic!("violation at step {steps}: {v}");
        }
        if settling && exchanges.is_empty() && lb.poll_timeout().is_none() {
            break;
        }
        assert!(steps < 10_000, "the balancer never settled");
    }
    observer.finish(true).expect("every request ends exactly once");
}

#[cfg(test)]
mod tests {
    #[test]
    fn bodies_accept_empty_and_simple_inputs() {
        super::control_payload(b"");
        super::control_payload(br#"{"op":"quit","app":"a","workerId":1}"#);
        super::cli_args(b"");
        super::cli_args(b"w:2\0--bogus");
        super::core_events(b"");
        super::core_events(&[3, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0, 11, 50, 5, 0]);
    }
}
