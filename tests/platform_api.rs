//! The platform's API served on a real loopback port (port 0) with an
//! in-memory control, driven by a hyper client: the dashboard login and its
//! cookie, the bearer token, and the cross-site and DNS-rebinding refusals
//! as a browser or an attacker's page would meet them.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rip_server::platform::api::{self, Api, ApiConfig};
use rip_server::platform::control::FakeControl;
use rip_server::platform::token;
use serde_json::{Value, json};

/// A served API: its address, token and home, and the way to stop it.
struct Served {
    addr: SocketAddr,
    token: String,
    api: Arc<Api<FakeControl>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _home: tempfile::TempDir,
}

async fn serve() -> Served {
    let home = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The token file as the platform creates it on first start.
    let token = token::load_or_create(home.path()).unwrap();
    let config = ApiConfig {
        home: home.path().to_owned(),
        admin: addr,
        token: token.clone(),
        default_workers: 1,
    };
    let api = Arc::new(Api::open(config, FakeControl::new(), Arc::default()).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(api::run(listener, api.clone(), async move {
        let _ = stopped.await;
    }));
    Served {
        addr,
        token: token.as_str().to_owned(),
        api,
        stop: Some(stop),
        task,
        _home: home,
    }
}

/// One request on a fresh connection; `Host` is the API's address unless
/// `headers` names another.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, HeaderMap, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        request = request.header("host", addr.to_string());
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        sender.send_request(request.body(Full::new(Bytes::from(body))).unwrap()),
    )
    .await
    .expect("the API answers within 10 s")
    .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8(bytes.to_vec()).unwrap())
}

fn app_dir(parent: &Path) -> std::path::PathBuf {
    let dir = parent.join("blog");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("index.ts"), "export default () => 'hi'\n").unwrap();
    dir
}

async fn stop(mut served: Served) {
    served.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), served.task)
        .await
        .expect("the API stops within 10 s")
        .unwrap();
}

#[tokio::test]
async fn the_login_url_sets_a_cookie_that_then_drives_the_api() {
    let served = serve().await;
    let addr = served.addr;
    // Open: health and the page (which names nothing).
    let (status, _, body) = send(addr, "GET", "/health", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status":"ok","mode":"platform"})
    );
    let (status, _, _) = send(addr, "GET", "/api/apps", &[], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The login URL, as the start line prints it.
    let login = token::PlatformToken::parse(&served.token).unwrap().login_url(addr);
    let path = login.strip_prefix(&format!("http://{addr}")).unwrap();
    let (status, headers, _) = send(addr, "GET", path, &[], None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/");
    assert_eq!(headers["cache-control"], "no-store");
    let set_cookie = headers["set-cookie"].to_str().unwrap();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    // The cookie (what a browser sends back) works for reads and changes,
    // with the page's own Origin.
    let origin = format!("http://{addr}");
    let as_browser = [("cookie", cookie.as_str()), ("origin", origin.as_str())];
    let tmp = tempfile::tempdir().unwrap();
    let dir = app_dir(tmp.path());
    let (status, _, body) = send(
        addr,
        "POST",
        "/api/apps",
        &as_browser,
        Some(json!({"name": "blog", "directory": dir, "hosts": ["blog.test"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _, body) = send(addr, "GET", "/api/apps", &[("cookie", cookie.as_str())], None).await;
    assert_eq!(status, StatusCode::OK);
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["name"], "blog");
    // The page is the dashboard (its script fetches the apps with the cookie).
    let (_, _, page) = send(addr, "GET", "/", &[("cookie", cookie.as_str())], None).await;
    assert!(
        page.contains("/dashboard.js") && !page.contains(&served.token),
        "{page}"
    );
    // The bearer token works the same.
    let bearer = format!("Bearer {}", served.token);
    let (status, _, body) = send(addr, "POST", "/api/apps/blog/stop", &[("authorization", &bearer)], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "stopped", "name": "blog"})
    );
    assert_eq!(served.api.control().calls(), vec!["deploy blog", "stop blog"]);
    stop(served).await;
}

#[tokio::test]
async fn cross_site_requests_and_rebound_hosts_are_forbidden_and_change_nothing() {
    let served = serve().await;
    let addr = served.addr;
    let bearer = format!("Bearer {}", served.token);
    let tmp = tempfile::tempdir().unwrap();
    let dir = app_dir(tmp.path());
    let deploy = json!({"name": "blog", "directory": dir});
    // Another site's page posting with the browser's credential.
    let (status, _, body) = send(
        addr,
        "POST",
        "/api/apps",
        &[("authorization", &bearer), ("origin", "http://evil.example")],
        Some(deploy.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // DNS rebinding: the attacker's name resolved to 127.0.0.1.
    let evil_host = format!("evil.example:{}", addr.port());
    for host in ["evil.example", evil_host.as_str()] {
        let (status, _, _) = send(
            addr,
            "POST",
            "/api/apps",
            &[("authorization", &bearer), ("host", host)],
            Some(deploy.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{host}");
        let (status, _, _) = send(addr, "GET", "/health", &[("host", host)], None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{host}: even /health");
    }
    assert!(served.api.apps().is_empty());
    assert!(served.api.control().calls().is_empty());
    assert!(
        !served.api.config().home.join("apps.json").exists(),
        "nothing was saved"
    );
    // The same request from the API's own origin and host is served.
    let origin = format!("http://localhost:{}", addr.port());
    let host = format!("localhost:{}", addr.port());
    let (status, _, body) = send(
        addr,
        "POST",
        "/api/apps",
        &[("authorization", &bearer), ("origin", &origin), ("host", &host)],
        Some(deploy),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    stop(served).await;
}
