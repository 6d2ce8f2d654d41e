//! The fast path's codec against the hyper path: for any request head the
//! fast path takes, the worker gets the same request (request line, and the
//! same header fields with the same values) as when hyper parsed it and
//! `rewrite_request` + `encode_request` rewrote it. Heads it does not take
//! must be ones it has a reason to leave to hyper.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use rip_server::frontdoor::codec::{Head, Limits, Rewrite, parse_request};
use rip_server::http::headers::rewrite_request;
use rip_server::upstream::{RequestFraming, encode_request};

const LIMITS: Limits = Limits {
    max_headers: 100,
    max_body: 64 * 1024,
};

/// Header names, the ones the codec acts on included, in any case.
fn name() -> impl Strategy<Value = String> {
    let known = prop::sample::select(vec![
        "host",
        "accept",
        "content-length",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-request-id",
        "x-request-start",
        "x-custom",
        "cookie",
    ]);
    (known, any::<u32>()).prop_map(|(name, mask)| {
        name.chars()
            .enumerate()
            .map(|(i, c)| {
                if mask >> (i % 32) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    })
}

fn value_for(name: &str) -> BoxedStrategy<String> {
    match name.to_ascii_lowercase().as_str() {
        "content-length" => prop_oneof![Just("0".to_owned()), Just("5".to_owned()), Just(" 3 ".to_owned())].boxed(),
        "connection" => prop::sample::select(vec!["close", "keep-alive", "Keep-Alive, close", "", "x-custom"])
            .prop_map(str::to_owned)
            .boxed(),
        "x-request-id" => prop_oneof![Just(String::new()), "[a-z0-9-]{1,12}", Just("x".repeat(201))].boxed(),
        _ => "[ -~]{0,16}".prop_map(|v| v.trim().to_owned()).boxed(),
    }
}

fn header() -> impl Strategy<Value = (String, String)> {
    name().prop_flat_map(|n| value_for(&n).prop_map(move |v| (n.clone(), v)))
}

fn head() -> impl Strategy<Value = (String, String, bool, Vec<(String, String)>)> {
    (
        prop::sample::select(vec![
            "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "PURGE",
        ]),
        "/[a-z0-9/?=&%.-]{0,24}",
        any::<bool>(),
        prop::collection::vec(header(), 0..8),
    )
        .prop_map(|(m, p, v10, h)| (m.to_owned(), p, v10, h))
}

/// The rewrite for a request from a Unix-socket peer (no address to forward).
fn no_client() -> Rewrite<'static, fn() -> String> {
    Rewrite {
        client: None,
        scheme: "http",
        start_micros: 1,
        new_id: String::new,
    }
}

fn render(method: &str, path: &str, http10: bool, headers: &[(String, String)]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.{}\r\n", if http10 { 0 } else { 1 });
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The request line and the header fields, sorted, of a worker-bound head.
fn fields(wire: &[u8]) -> (String, Vec<(String, String)>) {
    let text = std::str::from_utf8(wire).expect("ascii");
    let head = text.split("\r\n\r\n").next().unwrap();
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap().to_owned();
    let mut fields: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").expect("name: value");
            (n.to_owned(), v.to_owned())
        })
        .collect();
    fields.sort();
    (line, fields)
}

/// What the hyper path sends the worker for the same head.
fn via_hyper(bytes: &[u8], client: Option<IpAddr>, micros: u64) -> Vec<u8> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut slots);
    parsed.parse(bytes).unwrap();
    let mut map = HeaderMap::new();
    for h in parsed.headers.iter() {
        map.append(
            HeaderName::from_bytes(h.name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(h.value).unwrap(),
        );
    }
    let declared: Option<u64> = map
        .get(http::header::CONTENT_LENGTH)
        .map(|v| v.to_str().unwrap().trim().parse().unwrap());
    let (mut parts, ()) = http::Request::builder()
        .method(parsed.method.unwrap())
        .uri(parsed.path.unwrap())
        .body(())
        .unwrap()
        .into_parts();
    parts.headers = map;
    rewrite_request(&mut parts.headers, client, "http", micros, || "new-id".to_owned());
    let framing = match declared {
        Some(n) => RequestFraming::Length(n),
        None => RequestFraming::None,
    };
    encode_request(&parts, framing, &[]).to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_fast_path_sends_what_the_hyper_path_sends(
        (method, path, http10, headers) in head(),
        client in prop::option::of(prop_oneof![Just("10.1.2.3"), Just("::1")].prop_map(|s| s.parse::<IpAddr>().unwrap())),
        micros in any::<u64>(),
    ) {
        let bytes = render(&method, &path, http10, &headers);
        let client_text = client.map(|ip| ip.to_string());
        let rewrite = Rewrite { client: client_text.as_deref(), scheme: "http", start_micros: micros, new_id: || "new-id".to_owned() };
        let lower = |n: &str| n.to_ascii_lowercase();
        let lengths = headers.iter().filter(|(n, _)| lower(n) == "content-length").count();
        let foreign_connection = headers.iter().any(|(n, v)| {
            lower(n) == "connection"
                && v.split(',').map(str::trim).any(|t| !t.is_empty() && !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
        });
        match parse_request(&bytes, LIMITS, rewrite) {
            Head::Complete(request) => {
                prop_assert!(lengths <= 1 && !foreign_connection);
                prop_assert_eq!(request.head_len, bytes.len());
                prop_assert_eq!(&bytes[request.path.clone()], path.as_bytes());
                prop_assert_eq!(fields(&request.wire), fields(&via_hyper(&bytes, client, micros)));
                let close = headers.iter().any(|(n, v)| lower(n) == "connection" && v.to_ascii_lowercase().contains("close"));
                let keep = headers.iter().any(|(n, v)| lower(n) == "connection" && v.to_ascii_lowercase().contains("keep-alive"));
                prop_assert_eq!(request.keep_alive, !close && (!http10 || keep));
            }
            Head::Unsupported => prop_assert!(lengths > 1 || foreign_connection, "left to hyper without a reason"),
            Head::Partial => prop_assert!(false, "a whole head reported partial"),
        }
    }

    #[test]
    fn every_prefix_of_a_head_is_partial((method, path, http10, headers) in head(), cut in any::<prop::sample::Index>()) {
        let bytes = render(&method, &path, http10, &headers);
        let cut = cut.index(bytes.len());
        prop_assert!(matches!(parse_request(&bytes[..cut], LIMITS, no_client()), Head::Partial | Head::Unsupported));
    }
}

#[test]
fn requests_the_fast_path_leaves_to_hyper() {
    let unsupported = [
        "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 3\r\n\r\n",
        "GET / HTTP/1.1\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        "GET http://example.com/ HTTP/1.1\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\n\r\n",
        "GET /status HTTP/1.1\r\n\r\n",
        "HEAD /server?x HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\ncontent-length: 65537\r\n\r\n",
        "POST / HTTP/1.1\r\ncontent-length: -1\r\n\r\n",
        "POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nbad header\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
    ];
    for head in unsupported {
        assert!(
            matches!(parse_request(head.as_bytes(), LIMITS, no_client()), Head::Unsupported),
            "{head:?}"
        );
    }
    // POST /status is the app's, not the front door's.
    assert!(matches!(
        parse_request(b"POST /status HTTP/1.1\r\n\r\n", LIMITS, no_client()),
        Head::Complete(_)
    ));
}

#[test]
fn too_many_headers_go_to_hyper_for_its_431() {
    let mut head = String::from("GET / HTTP/1.1\r\n");
    for i in 0..10 {
        head.push_str(&format!("x-h{i}: v\r\n"));
    }
    head.push_str("\r\n");
    let limits = Limits {
        max_headers: 5,
        max_body: 0,
    };
    assert!(matches!(
        parse_request(head.as_bytes(), limits, no_client()),
        Head::Unsupported
    ));
}
