//! The HTTPS listener in process (`frontdoor::https::run_tls` over real
//! apps started with `server::AppServer`, workers through the built binary):
//! requests over TLS, `X-Forwarded-Proto`, the redirect for plain HTTP on
//! the TLS port, `421` when SNI and `Host` name different apps, and bad
//! input: truncated and random ClientHellos, garbage, a client stalling mid-
//! handshake (dropped after the bound, shortened here), thousands of failed
//! handshakes while another client keeps being served, with memory flat.
//! Waits poll for their condition with a deadline; nothing sleeps to
//! synchronise.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rip_server::cli::{self, Command};
use rip_server::config::ServeConfig;
use rip_server::config::hosts::HostName;
use rip_server::frontdoor::https::{TlsListener, run_tls};
use rip_server::frontdoor::{FrontDoor, Routes};
use rip_server::net::transport::UnixTransport;
use rip_server::server::{self, AppHandle, AppServer};
use rip_server::tls::resolver::{CertResolver, Served, system_clock};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

const STEP: Duration = Duration::from_secs(15);

struct Places {
    home: tempfile::TempDir,
    sockets: tempfile::TempDir,
}

impl Places {
    fn new() -> Places {
        Places {
            home: tempfile::tempdir().expect("a temporary RIP_HOME"),
            sockets: tempfile::Builder::new()
                .prefix("rt")
                .tempdir_in("/tmp")
                .expect("a short socket directory"),
        }
    }

    fn config(&self, name: &str) -> ServeConfig {
        let prefix = self.sockets.path().join(name);
        let args: Vec<String> = vec![
            "builtin:hello".into(),
            "w:1".into(),
            "http:0".into(),
            "--bind=127.0.0.1".into(),
            "--no-access-log".into(),
            format!("--socket-prefix={}", prefix.display()),
        ];
        let home = self.home.path().to_owned();
        let env = move |key: &str| (key == "RIP_HOME").then(|| home.display().to_string());
        let Command::Serve(config) = cli::parse(&args, &env).expect("a valid command line") else {
            panic!("not a serve command");
        };
        let mut config = *config;
        config.app_name = name.to_owned();
        config
    }
}

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rip-server"))
}

async fn start(config: &ServeConfig) -> (AppServer, AppHandle) {
    let program = server::preflight(config).await.expect("preflight");
    let app = AppServer::start(config, program, &exe(), vec![0])
        .await
        .unwrap_or_else(|e| panic!("{}", e.message()));
    let handle = app.handle();
    let joined = async {
        while handle.status().await.is_none_or(|s| s.workers < 1) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(STEP, joined).await.expect("the worker joined");
    (app, handle)
}

/// A certificate for the test names, its PEM (for the client's trust).
struct TestCert {
    cert_pem: String,
    key_pem: String,
}

fn test_cert() -> TestCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let names = ["localhost", "alpha.test", "beta.test", "127.0.0.1"]
        .map(String::from)
        .to_vec();
    let cert = rcgen::CertificateParams::new(names).unwrap().self_signed(&key).unwrap();
    TestCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn client_config(cert: &TestCert) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(rip_server::tls::resolver::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// An HTTPS listener on a free loopback port serving `routes`.
async fn listen_tls(
    config: &ServeConfig,
    routes: Routes<UnixTransport>,
    cert: &TestCert,
    handshake_timeout: Duration,
) -> (u16, watch::Sender<bool>) {
    let listener = rip_server::net::listen::bind_tcp(IpAddr::V4(Ipv4Addr::LOCALHOST), 0).expect("bind");
    let port = listener.local_addr().unwrap().port();
    let front_door = Arc::new(FrontDoor::with_routes(server::https_listener_config(config), routes, 1));
    let served = Served::from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes(), None).unwrap();
    let resolver = Arc::new(CertResolver::files(served, system_clock()));
    front_door.set_tls(Some(resolver.clone()));
    let tls = TlsListener::new(
        rip_server::tls::server_config(resolver).unwrap(),
        handshake_timeout,
        port,
    );
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let shutdown = async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    };
    tokio::spawn(run_tls(listener, front_door, tls, shutdown));
    (port, stop_tx)
}

async fn tls_connect(
    port: u16,
    client: &Arc<rustls::ClientConfig>,
    sni: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    timeout(STEP, TlsConnector::from(client.clone()).connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake")
}

/// One request, one `Content-Length` answer: (status, head, body).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, request: &str) -> (u16, String, String) {
    let reading = async {
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).into_owned();
                let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while received.len() < end + 4 + length {
                    let n = stream.read(&mut buf).await.expect("read");
                    assert!(n > 0, "closed mid-body");
                    received.extend_from_slice(&buf[..n]);
                }
                let body = String::from_utf8_lossy(&received[end + 4..end + 4 + length]).into_owned();
                return (status, head, body);
            }
            let n = stream.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before an answer: {:?}",
                String::from_utf8_lossy(&received)
            );
            received.extend_from_slice(&buf[..n]);
        }
    };
    timeout(STEP, reading).await.expect("an answer in time")
}

/// Reads until the server closes; fails if it does not within [`STEP`].
async fn closed_by_server(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let reading = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    };
    timeout(STEP, reading).await.expect("the server closed the connection");
    all
}

/// A real ClientHello, as a client's first flight.
fn client_hello(client: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(client.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_requests_redirects_and_421() {
    let places = Places::new();
    let (alpha_config, beta_config) = (places.config("alpha"), places.config("beta"));
    let (alpha, alpha_handle) = start(&alpha_config).await;
    let (beta, beta_handle) = start(&beta_config).await;
    let mut routes = Routes::new();
    routes.insert(HostName::parse("alpha.test").unwrap(), alpha_handle.proxy());
    routes.insert(HostName::parse("beta.test").unwrap(), beta_handle.proxy());
    routes.set_default(Some(alpha_handle.proxy()));
    let cert = test_cert();
    let client = client_config(&cert);
    let (port, stop) = listen_tls(&alpha_config, routes, &cert, Duration::from_secs(10)).await;

    // Over TLS: the same answers as plain HTTP, X-Forwarded-Proto https.
    let mut tls = tls_connect(port, &client, "alpha.test").await;
    let (status, _, body) = exchange(&mut tls, "GET /ping HTTP/1.1\r\nHost: alpha.test\r\n\r\n").await;
    assert_eq!((status, body.as_str()), (200, "pong"));
    let (status, _, body) = exchange(&mut tls, "GET /headers HTTP/1.1\r\nHost: alpha.test\r\n\r\n").await;
    assert_eq!(status, 200);
    let headers: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(headers["x-forwarded-proto"], "https", "{headers}");
    // /status names the certificate (and never its key).
    let (status, _, body) = exchange(&mut tls, "GET /status HTTP/1.1\r\nHost: alpha.test\r\n\r\n").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["tls"]["source"], "files", "{json}");
    assert!(
        json["tls"]["sans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "alpha.test")
    );
    assert!(!body.contains("PRIVATE"), "{body}");
    // SNI alpha.test, Host beta.test: another app, 421; beta itself never sees it.
    let (status, _, _) = exchange(&mut tls, "GET /ping HTTP/1.1\r\nHost: beta.test\r\n\r\n").await;
    assert_eq!(status, 421);
    // The hyper path too (a request the fast path hands over: chunked body).
    let (status, _, _) = exchange(
        &mut tls,
        "POST /echo HTTP/1.1\r\nHost: beta.test\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 421);
    let mut tls = tls_connect(port, &client, "beta.test").await;
    let (status, _, _) = exchange(&mut tls, "GET /ping HTTP/1.1\r\nHost: beta.test:443\r\n\r\n").await;
    assert_eq!(status, 200);
    assert_eq!(beta_handle.status().await.unwrap().counters.responses, 1);
    // No SNI (an IP address): the Host decides.
    let mut tls = tls_connect(port, &client, "127.0.0.1").await;
    let (status, _, _) = exchange(&mut tls, "GET /ping HTTP/1.1\r\nHost: beta.test\r\n\r\n").await;
    assert_eq!(status, 200);

    // Plain HTTP on the TLS port: the redirect, 301 for GET, 308 for POST.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (status, head, _) = exchange(&mut plain, "GET /a?b=1 HTTP/1.1\r\nHost: alpha.test\r\n\r\n").await;
    assert_eq!(status, 301);
    assert!(
        head.contains(&format!("location: https://alpha.test:{port}/a?b=1")),
        "{head}"
    );
    let (status, head, _) = exchange(
        &mut plain,
        "POST /a HTTP/1.1\r\nHost: alpha.test\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 308);
    let location = format!("location: https://alpha.test:{port}/a");
    assert!(head.lines().any(|line| line == location), "{head}");

    let _ = stop.send(true);
    for app in [&alpha, &beta] {
        app.handle().stop();
    }
    for app in [alpha, beta] {
        timeout(STEP, app.wait()).await.expect("stopped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_never_disturbs_other_clients() {
    let places = Places::new();
    let config = places.config("gamma");
    let (app, handle) = start(&config).await;
    let cert = test_cert();
    let client = client_config(&cert);
    let bound = Duration::from_millis(300);
    let (port, stop) = listen_tls(&config, Routes::every_host(handle.proxy()), &cert, bound).await;
    let hello = client_hello(&client);
    let ping = "GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n";

    // A well-behaved client on a kept-alive connection throughout.
    let mut good = tls_connect(port, &client, "localhost").await;
    assert_eq!(exchange(&mut good, ping).await.0, 200);

    // A client that stalls mid-handshake is dropped after the bound.
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stalled.write_all(&hello[..hello.len() / 2]).await.unwrap();
    assert!(closed_by_server(&mut stalled).await.is_empty());
    // One that sends nothing at all, too.
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    assert!(closed_by_server(&mut silent).await.is_empty());
    assert_eq!(exchange(&mut good, ping).await.0, 200);

    // Truncated, corrupted and random ClientHellos, and garbage: each
    // closed (TLS alerts at most), none answered with HTTP.
    let mut inputs: Vec<Vec<u8>> = vec![
        hello[..5].to_vec(),
        hello[..hello.len() - 1].to_vec(),
        vec![0x16, 0x03, 0x01, 0xff, 0xff, 0x01],
        vec![0x16, 0x03, 0x03, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef],
        vec![0x00; 64],
        b"\x80\x80\x80\x80".to_vec(),
    ];
    let mut corrupted = hello.clone();
    for b in corrupted.iter_mut().skip(9).step_by(7) {
        *b ^= 0x5a;
    }
    inputs.push(corrupted);
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..8 {
        let mut bytes = vec![0x16, 0x03, 0x01];
        for _ in 0..200 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.push(state as u8);
        }
        inputs.push(bytes);
    }
    for input in &inputs {
        let mut bad = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let _ = bad.write_all(input).await;
        let _ = bad.shutdown().await;
        let answer = closed_by_server(&mut bad).await;
        assert!(!answer.starts_with(b"HTTP/"), "{input:?} got {answer:?}");
    }
    assert_eq!(exchange(&mut good, ping).await.0, 200);

    // Thousands of failed handshakes, 32 at a time, while the good client
    // keeps being served; memory stays flat (generous bound: allocator noise).
    let failing = |n: usize| {
        let inputs = inputs.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..n {
                let input = inputs[i % inputs.len()].clone();
                tasks.spawn(async move {
                    let mut bad = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                    let _ = bad.write_all(&input).await;
                    let _ = bad.shutdown().await;
                    closed_by_server(&mut bad).await;
                });
                if tasks.len() >= 32 {
                    tasks.join_next().await.unwrap().unwrap();
                }
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
        }
    };
    failing(500).await;
    let before = rss_kib();
    let storm = tokio::spawn(failing(3000));
    let mut served = 0;
    while !storm.is_finished() {
        assert_eq!(exchange(&mut good, ping).await.0, 200);
        served += 1;
    }
    storm.await.unwrap();
    assert!(served > 0);
    assert_eq!(exchange(&mut good, ping).await.0, 200);
    let after = rss_kib();
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB over 3000 failed handshakes"
    );

    let _ = stop.send(true);
    app.handle().stop();
    timeout(STEP, app.wait()).await.expect("stopped");
}
