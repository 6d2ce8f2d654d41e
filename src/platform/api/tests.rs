//! The API against a [`FakeControl`] and a temporary `RIP_HOME`: every
//! endpoint's answer, authorisation before everything, nothing half done.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use http::HeaderMap;
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};

use super::*;
use crate::config::hosts::{HostName, add_host};
use crate::platform::apps::APPS_FILE;
use crate::platform::control::{FakeControl, LiveApp};

const SECRET: &str = "planted-secret-value-4f1c9e";
const HOST: &str = "127.0.0.1:3000";

pub(super) struct Harness {
    pub(super) tmp: tempfile::TempDir,
    pub(super) api: Api<FakeControl>,
}

fn token() -> PlatformToken {
    PlatformToken::parse(&"0123456789abcdef".repeat(4)).unwrap()
}

fn config(home: &Path) -> ApiConfig {
    ApiConfig {
        home: home.to_owned(),
        admin: HOST.parse().unwrap(),
        token: token(),
        default_workers: 2,
    }
}

impl Harness {
    pub(super) fn new() -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let api = Api::open(config(&tmp.path().join("home")), FakeControl::new(), Arc::default()).unwrap();
        Harness { tmp, api }
    }

    pub(super) fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    pub(super) fn apps_file(&self) -> PathBuf {
        self.home().join(APPS_FILE)
    }

    /// A directory with an entry, owned by us, writable by us only.
    pub(super) fn app_dir(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join(format!("app-{name}"));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("index.ts"), "export default () => 'hi'\n").unwrap();
        dir
    }

    /// What must not change when a request is refused: the file's bytes
    /// and the control's calls.
    pub(super) fn state(&self) -> (Option<Vec<u8>>, Vec<String>) {
        (fs::read(self.apps_file()).ok(), self.api.control().calls())
    }

    pub(super) async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, _, text) = self.raw(request(method, path, true, body.map(|b| b.to_string()))).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn raw(&self, request: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, String) {
        let response = self.api.handle(request).await;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// Deploys `name` with one host and the planted secret; asserts 201.
    async fn deploy(&self, name: &str) -> Value {
        let dir = self.app_dir(name);
        let (status, body) = self
            .call(
                "POST",
                "/api/apps",
                Some(
                    json!({"name": name, "directory": dir, "hosts": [format!("{name}.test")],
                            "env": {"SECRET_KEY": SECRET}}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }
}

fn request(method: &str, path: &str, with_token: bool, body: Option<String>) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(path).header("host", HOST);
    if with_token {
        builder = builder.header("authorization", format!("Bearer {}", token().as_str()));
    }
    builder.body(Full::new(Bytes::from(body.unwrap_or_default()))).unwrap()
}

/// Every endpoint that changes something, with a body it would accept.
fn mutations() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        (
            "POST",
            "/api/apps",
            Some(json!({"name": "other", "directory": "/nonexistent"})),
        ),
        ("PATCH", "/api/apps/blog", Some(json!({"workers": 5}))),
        ("DELETE", "/api/apps/blog", None),
        ("POST", "/api/apps/blog/start", None),
        ("POST", "/api/apps/blog/stop", None),
        ("POST", "/api/apps/blog/restart", None),
        ("POST", "/api/apps/blog/scale", Some(json!({"workers": 4}))),
    ]
}

#[tokio::test]
async fn health_is_open_and_says_platform() {
    let h = Harness::new();
    let (status, _, body) = h.raw(request("GET", "/health", false, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status":"ok","mode":"platform"})
    );
    let (status, _, _) = h.raw(request("POST", "/health", false, None)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn deploy_creates_starts_and_persists_the_app() {
    let h = Harness::new();
    let dir = h.app_dir("blog");
    let (status, app) = h
        .call(
            "POST",
            "/api/apps",
            Some(json!({"name": "blog", "directory": format!("{}/./", dir.display()),
                        "hosts": ["Blog.Test."], "env": {"SECRET_KEY": SECRET, "NODE_ENV": "production"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    assert_eq!(app["name"], "blog");
    assert_eq!(app["directory"], dir.display().to_string(), "stored tidy and absolute");
    assert_eq!(app["hosts"], json!(["blog.test"]), "hosts normalised like the registry");
    assert_eq!(app["workers"], 2, "the default worker count");
    assert_eq!(app["envKeys"], json!(["NODE_ENV", "SECRET_KEY"]));
    assert_eq!(app["status"], "running");
    assert_eq!(app["desired"], "running");
    assert!(app["startedAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{app}");
    assert_eq!(app["error"], Value::Null);
    assert_eq!(app["pool"].as_array().unwrap().len(), 2);
    assert!(app["pool"][0]["pid"].is_u64() && app["pool"][0]["state"].is_string());
    assert!(app["queue"]["depth"].is_u64() && app["counters"]["requests"].is_u64());
    assert_eq!(h.api.control().calls(), vec!["deploy blog"]);
    // Persisted (0600): a new API on the same home has it.
    assert_eq!(fs::metadata(h.apps_file()).unwrap().permissions().mode() & 0o777, 0o600);
    let again = Api::open(config(&h.home()), FakeControl::new(), Arc::default()).unwrap();
    let record = again.apps().get("blog").cloned().unwrap();
    assert_eq!(record.env.get("SECRET_KEY").map(String::as_str), Some(SECRET));
    assert_eq!(record.desired, crate::platform::apps::Desired::Running);
}

#[tokio::test]
async fn a_refused_deploy_says_why_and_changes_nothing() {
    let h = Harness::new();
    h.deploy("blog").await;
    let good = h.app_dir("shop");
    let empty = h.tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let open_dir = h.app_dir("open");
    fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let other = h.app_dir("other");
    add_host(&h.home(), &HostName::parse("claimed.test").unwrap(), &other).unwrap();
    let d = |dir: &Path| dir.display().to_string();
    let cases: Vec<(Value, StatusCode, String)> = vec![
        (json!("not an object"), StatusCode::BAD_REQUEST, "invalid body".into()),
        (json!({"name": "shop"}), StatusCode::BAD_REQUEST, "missing field".into()),
        (
            json!({"name": "shop", "directory": d(&good), "extra": 1}),
            StatusCode::BAD_REQUEST,
            "unknown field".into(),
        ),
        (
            json!({"name": "Shop", "directory": d(&good)}),
            StatusCode::BAD_REQUEST,
            "app name".into(),
        ),
        (
            json!({"name": "shop", "directory": d(&good), "workers": 0}),
            StatusCode::BAD_REQUEST,
            "workers 0".into(),
        ),
        (
            json!({"name": "shop", "directory": d(&good), "env": {"LD_PRELOAD": "/x.so"}}),
            StatusCode::BAD_REQUEST,
            "LD_PRELOAD".into(),
        ),
        (
            json!({"name": "shop", "directory": "relative/dir"}),
            StatusCode::BAD_REQUEST,
            "absolute".into(),
        ),
        (
            json!({"name": "shop", "directory": "/nonexistent/app"}),
            StatusCode::BAD_REQUEST,
            "does not exist".into(),
        ),
        (
            json!({"name": "shop", "directory": d(&empty)}),
            StatusCode::BAD_REQUEST,
            "no app entry".into(),
        ),
        (
            json!({"name": "shop", "directory": d(&open_dir)}),
            StatusCode::BAD_REQUEST,
            "other users can write".into(),
        ),
        (
            json!({"name": "shop", "directory": d(&good), "hosts": ["a b"]}),
            StatusCode::BAD_REQUEST,
            "not a valid host name".into(),
        ),
        (
            json!({"name": "blog", "directory": d(&good)}),
            StatusCode::CONFLICT,
            "exists".into(),
        ),
        (
            json!({"name": "shop", "directory": d(&good), "hosts": ["BLOG.test"]}),
            StatusCode::CONFLICT,
            "served by app \"blog\"".into(),
        ),
        (
            json!({"name": "shop", "directory": d(&good), "hosts": ["claimed.test"]}),
            StatusCode::CONFLICT,
            "host \"claimed.test\" is registered for".into(),
        ),
    ];
    for (body, expected, reason) in cases {
        let before = h.state();
        let (status, answer) = h.call("POST", "/api/apps", Some(body.clone())).await;
        assert_eq!(status, expected, "{body}: {answer}");
        let message = answer["error"].as_str().unwrap_or_else(|| panic!("{body}: {answer}"));
        assert!(message.contains(&reason), "{body}: {message}");
        assert_eq!(h.state(), before, "{body} changed something");
    }
    // A host registered for the app's own directory is its own.
    add_host(&h.home(), &HostName::parse("shop.test").unwrap(), &good).unwrap();
    let body = json!({"name": "shop", "directory": d(&good), "hosts": ["shop.test"]});
    assert_eq!(h.call("POST", "/api/apps", Some(body)).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn reads_list_show_and_404() {
    let h = Harness::new();
    assert_eq!(h.call("GET", "/api/apps", None).await, (StatusCode::OK, json!([])));
    h.deploy("blog").await;
    h.deploy("shop").await;
    let (status, list) = h.call("GET", "/api/apps", None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["blog", "shop"]);
    let (status, shop) = h.call("GET", "/api/apps/shop", None).await;
    assert_eq!((status, &shop["hosts"]), (StatusCode::OK, &json!(["shop.test"])));
    for path in ["/api/apps/nope", "/api/apps/nope/logs", "/api/apps/NOPE"] {
        assert_eq!(
            h.call("GET", path, None).await,
            (StatusCode::NOT_FOUND, json!({"error": "App not found"}))
        );
    }
    // HEAD where GET.
    let (status, _, _) = h.raw(request("HEAD", "/api/apps/shop", true, None)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_live_state_shows_the_controls_error_and_queue() {
    let h = Harness::new();
    h.deploy("blog").await;
    let mut live = LiveApp {
        status: crate::platform::control::AppStatus::Error,
        error: Some("entry failed to load".into()),
        ..LiveApp::default()
    };
    live.queue.depth = 7;
    h.api.control().set_live("blog", live);
    let (_, app) = h.call("GET", "/api/apps/blog", None).await;
    assert_eq!(
        (&app["status"], &app["error"]),
        (&json!("error"), &json!("entry failed to load"))
    );
    assert_eq!(app["queue"]["depth"], 7);
}

#[tokio::test]
async fn patch_changes_workers_hosts_and_the_whole_env() {
    let h = Harness::new();
    h.deploy("blog").await;
    h.deploy("shop").await;
    let body = json!({"workers": 3, "hosts": ["www.blog.test", "blog.test"], "env": {"ONLY": "x"}});
    let (status, app) = h.call("PATCH", "/api/apps/blog", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{app}");
    assert_eq!(app["workers"], 3);
    assert_eq!(app["hosts"], json!(["www.blog.test", "blog.test"]));
    assert_eq!(app["envKeys"], json!(["ONLY"]), "env replaces the whole map");
    assert_eq!(app["pool"].as_array().unwrap().len(), 3);
    assert_eq!(h.api.control().calls().last().unwrap(), "reconfigure blog");
    let record = h.api.apps().get("blog").cloned().unwrap();
    assert!(!record.env.contains_key("SECRET_KEY"));
    // An empty patch changes nothing but is fine.
    assert_eq!(
        h.call("PATCH", "/api/apps/blog", Some(json!({}))).await.0,
        StatusCode::OK
    );
    let cases = [
        ("/api/apps/nope", json!({"workers": 2}), StatusCode::NOT_FOUND),
        ("/api/apps/blog", json!({"workers": "many"}), StatusCode::BAD_REQUEST),
        ("/api/apps/blog", json!({"workers": 2000}), StatusCode::BAD_REQUEST),
        ("/api/apps/blog", json!({"name": "x"}), StatusCode::BAD_REQUEST),
        (
            "/api/apps/blog",
            json!({"env": {"RIP_APP": "x"}}),
            StatusCode::BAD_REQUEST,
        ),
        ("/api/apps/blog", json!({"hosts": ["host:80"]}), StatusCode::BAD_REQUEST),
        ("/api/apps/blog", json!({"hosts": ["shop.test"]}), StatusCode::CONFLICT),
    ];
    for (path, body, expected) in cases {
        let before = h.state();
        let (status, answer) = h.call("PATCH", path, Some(body.clone())).await;
        assert_eq!(status, expected, "{body}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
        assert_eq!(h.state(), before, "{body} changed something");
    }
}

#[tokio::test]
async fn delete_undeploys_and_forgets_the_logs() {
    let h = Harness::new();
    h.deploy("blog").await;
    h.api.logs().ring("blog").push("hello");
    let (status, body) = h.call("DELETE", "/api/apps/blog", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "undeployed"})));
    assert_eq!(h.api.control().calls(), vec!["deploy blog", "undeploy blog"]);
    assert!(h.api.logs().snapshot("blog").is_empty());
    assert_eq!(h.call("GET", "/api/apps/blog", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(h.call("DELETE", "/api/apps/blog", None).await.0, StatusCode::NOT_FOUND);
    let again = Api::open(config(&h.home()), FakeControl::new(), Arc::default()).unwrap();
    assert!(again.apps().is_empty(), "the deletion persists");
}

#[tokio::test]
async fn start_stop_restart_scale_answer_and_persist_the_desired_state() {
    let h = Harness::new();
    h.deploy("blog").await;
    let desired = |h: &Harness| {
        let api = Api::open(config(&h.home()), FakeControl::new(), Arc::default()).unwrap();
        let record = api.apps().get("blog").cloned().unwrap();
        (record.desired, record.workers)
    };
    use crate::platform::apps::Desired::{Running, Stopped};
    let (status, body) = h.call("POST", "/api/apps/blog/stop", None).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "stopped", "name": "blog"}))
    );
    assert_eq!(desired(&h), (Stopped, 2));
    assert_eq!(h.call("GET", "/api/apps/blog", None).await.1["status"], "stopped");
    // A stopped app is not restarted, and scaling it only keeps the count.
    let (status, body) = h.call("POST", "/api/apps/blog/restart", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = h
        .call("POST", "/api/apps/blog/scale", Some(json!({"workers": 4})))
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"status": "scaled", "name": "blog", "workers": 4})
        )
    );
    assert_eq!(desired(&h), (Stopped, 4));
    assert_eq!(h.api.control().calls(), vec!["deploy blog", "stop blog"]);
    let (status, body) = h.call("POST", "/api/apps/blog/start", None).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "started", "name": "blog"}))
    );
    assert_eq!(desired(&h), (Running, 4));
    assert_eq!(
        h.call("GET", "/api/apps/blog", None).await.1["pool"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let (status, body) = h.call("POST", "/api/apps/blog/restart", None).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"status": "restarted", "name": "blog"}))
    );
    let (status, _) = h
        .call("POST", "/api/apps/blog/scale", Some(json!({"workers": 1})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(desired(&h), (Running, 1));
    assert_eq!(
        h.api.control().calls(),
        vec!["deploy blog", "stop blog", "start blog", "restart blog", "scale blog 1"]
    );
    for (body, expected) in [
        (json!({"workers": 0}), "workers 0"),
        (json!({"by": 1}), "unknown field"),
        (json!({}), "missing field"),
    ] {
        let (status, answer) = h.call("POST", "/api/apps/blog/scale", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(answer["error"].as_str().unwrap().contains(expected), "{answer}");
    }
    for action in ["start", "stop", "restart", "scale"] {
        let path = format!("/api/apps/nope/{action}");
        let (status, body) = h.call("POST", &path, Some(json!({"workers": 1}))).await;
        assert_eq!(
            (status, body),
            (StatusCode::NOT_FOUND, json!({"error": "App not found"}))
        );
    }
}

#[tokio::test]
async fn logs_and_stats() {
    let h = Harness::new();
    h.deploy("blog").await;
    h.deploy("shop").await;
    h.api.logs().ring("blog").push("listening\nGET / 200\n");
    let (status, body) = h.call("GET", "/api/apps/blog/logs", None).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"lines": ["listening", "GET / 200"]}))
    );
    assert_eq!(h.call("GET", "/api/apps/shop/logs", None).await.1, json!({"lines": []}));
    h.call("POST", "/api/apps/shop/stop", None).await;
    let (status, stats) = h.call("GET", "/api/stats", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&stats["totalApps"], &stats["runningApps"]), (&json!(2), &json!(1)));
    assert!(stats["uptime"].as_f64().is_some_and(|u| u >= 0.0), "{stats}");
}

#[tokio::test]
async fn wrong_methods_are_405_and_unknown_api_paths_404() {
    let h = Harness::new();
    h.deploy("blog").await;
    let before = h.state();
    for (method, path, allow) in [
        ("PUT", "/api/apps", "GET, HEAD, POST"),
        ("POST", "/api/apps/blog", "GET, HEAD, PATCH, DELETE"),
        ("GET", "/api/apps/blog/start", "POST"),
        ("DELETE", "/api/stats", "GET, HEAD"),
        ("POST", "/api/apps/blog/logs", "GET, HEAD"),
    ] {
        let (status, headers, body) = h.raw(request(method, path, true, Some("{}".into()))).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(headers["allow"], allow, "{method} {path}");
        assert!(body.contains("\"error\""), "{body}");
    }
    for path in ["/api/nothing", "/api/apps/blog/reboot", "/api", "/elsewhere"] {
        let (status, body) = h.call("GET", path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(body["error"].is_string(), "{body}");
    }
    assert_eq!(h.state(), before);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let h = Harness::new();
    let big = format!("{{\"name\":\"{}\"}}", "a".repeat(MAX_BODY));
    let (status, _, _) = h.raw(request("POST", "/api/apps", true, Some(big))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn without_the_token_every_api_request_is_401_and_nothing_changes() {
    let h = Harness::new();
    h.deploy("blog").await;
    h.api.logs().ring("blog").push(SECRET);
    let before = h.state();
    let mut requests: Vec<(&str, &str, Option<Value>)> = vec![
        ("GET", "/api/apps", None),
        ("GET", "/api/apps/blog", None),
        ("GET", "/api/apps/blog/logs", None),
        ("GET", "/api/stats", None),
        ("GET", "/api/nothing", None),
    ];
    requests.extend(mutations());
    let wrong = format!("Bearer {}", "f".repeat(64));
    let wrong_cookie = format!("rip_platform={}", "f".repeat(64));
    for (method, path, body) in requests {
        let body = body.map(|b| b.to_string());
        let attempts = [
            request(method, path, false, body.clone()),
            {
                let mut r = request(method, path, false, body.clone());
                r.headers_mut().insert("authorization", wrong.parse().unwrap());
                r
            },
            {
                let mut r = request(method, path, false, body.clone());
                r.headers_mut().insert("cookie", wrong_cookie.parse().unwrap());
                r
            },
            {
                // The token in the query of an API path is not a credential.
                let query = format!("{path}?token={}", token().as_str());
                request(method, &query, false, body.clone())
            },
        ];
        for attempt in attempts {
            let (status, headers, text) = h.raw(attempt).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
            assert!(!text.contains(SECRET) && !text.contains("blog.test"), "{text}");
            assert_eq!(h.state(), before, "{method} {path} changed something");
        }
    }
    assert_eq!(h.api.apps().len(), 1);
}

#[tokio::test]
async fn env_values_never_appear_in_any_answer() {
    let h = Harness::new();
    let created = h.deploy("blog").await;
    let patched = h
        .call(
            "PATCH",
            "/api/apps/blog",
            Some(json!({"env": {"OTHER": SECRET, "SECRET_KEY": SECRET}})),
        )
        .await
        .1;
    let mut bodies = vec![created.to_string(), patched.to_string()];
    for path in ["/api/apps", "/api/apps/blog", "/api/stats", "/api/apps/blog/logs"] {
        bodies.push(h.call("GET", path, None).await.1.to_string());
    }
    bodies.push(h.raw(request("GET", "/", true, None)).await.2);
    for action in ["restart", "stop", "start"] {
        bodies.push(
            h.call("POST", &format!("/api/apps/blog/{action}"), None)
                .await
                .1
                .to_string(),
        );
    }
    for body in &bodies {
        assert!(!body.contains(SECRET), "an env value in {body}");
    }
    assert!(bodies[1].contains("OTHER"), "the keys are shown: {}", bodies[1]);
    assert!(!format!("{:?}", h.api.apps()).contains(SECRET));
}

/// Replaces the home by a file, so that saving fails (whoever runs the
/// test, root included), and gives back a guard that puts it back.
fn break_home(h: &Harness) -> impl Drop + '_ {
    struct Restore<'a>(&'a Harness);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let home = self.0.home();
            let _ = fs::remove_file(&home);
            fs::rename(self.0.tmp.path().join("home.saved"), &home).unwrap();
        }
    }
    fs::rename(h.home(), h.tmp.path().join("home.saved")).unwrap();
    fs::write(h.home(), "not a directory").unwrap();
    Restore(h)
}

#[tokio::test]
async fn a_failed_save_answers_500_and_changes_nothing() {
    let h = Harness::new();
    h.deploy("blog").await;
    let before = h.state();
    let apps_before = h.api.apps();
    let other = h.app_dir("other");
    for (method, path, body) in mutations() {
        let body = match (method, path) {
            ("POST", "/api/apps") => Some(json!({"name": "other", "directory": other})),
            _ => body,
        };
        let broken = break_home(&h);
        let (status, answer) = h.call(method, path, body).await;
        drop(broken);
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{method} {path}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("cannot save"), "{answer}");
        assert_eq!(h.state(), before, "{method} {path} changed something");
        assert_eq!(h.api.apps(), apps_before, "{method} {path} changed memory");
    }
}

#[tokio::test]
async fn a_failed_control_call_puts_the_file_back() {
    let h = Harness::new();
    h.deploy("blog").await;
    let dir = h.app_dir("shop");
    let cases = [
        (
            "deploy",
            ControlError::Refused("no Bun".into()),
            "POST",
            "/api/apps",
            Some(json!({"name": "shop", "directory": dir})),
        ),
        (
            "undeploy",
            ControlError::Failed("stuck".into()),
            "DELETE",
            "/api/apps/blog",
            None,
        ),
        (
            "stop",
            ControlError::Conflict("a roll is under way".into()),
            "POST",
            "/api/apps/blog/stop",
            None,
        ),
        (
            "restart",
            ControlError::Failed("spawn failed".into()),
            "POST",
            "/api/apps/blog/restart",
            None,
        ),
        (
            "scale",
            ControlError::Failed("x".into()),
            "POST",
            "/api/apps/blog/scale",
            Some(json!({"workers": 5})),
        ),
        (
            "reconfigure",
            ControlError::Failed("x".into()),
            "PATCH",
            "/api/apps/blog",
            Some(json!({"workers": 5})),
        ),
    ];
    for (operation, failure, method, path, body) in cases {
        let (file, _) = h.state();
        let apps = h.api.apps();
        h.api.control().fail_next(operation, failure.clone());
        let (status, answer) = h.call(method, path, body).await;
        assert_eq!(status.as_u16(), failure.status(), "{operation}: {answer}");
        assert_eq!(answer, json!({"error": failure.message()}));
        assert_eq!(h.state().0, file, "{operation}: the file was not put back");
        assert_eq!(h.api.apps(), apps, "{operation}: memory changed");
    }
}

#[test]
fn a_corrupt_apps_file_at_start_is_an_error_naming_it_and_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(APPS_FILE);
    fs::write(&path, "{\"schemaVersion\":1,\"apps\":[").unwrap();
    let err = Api::open(config(tmp.path()), FakeControl::new(), Arc::default()).unwrap_err();
    assert!(err.to_string().starts_with(&format!("{}: ", path.display())), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "{\"schemaVersion\":1,\"apps\":[");
}

#[tokio::test]
async fn restore_deploys_the_apps_kept_as_running() {
    let h = Harness::new();
    h.deploy("blog").await;
    h.deploy("shop").await;
    h.call("POST", "/api/apps/shop/stop", None).await;
    let control = FakeControl::new();
    control.fail_next("deploy", ControlError::Failed("port".into()));
    let api = Api::open(config(&h.home()), control, Arc::default()).unwrap();
    let failed = api.restore().await;
    assert_eq!(failed, vec![("blog".to_owned(), ControlError::Failed("port".into()))]);
    assert_eq!(api.control().calls(), vec!["deploy blog"], "the stopped app waits");
    assert_eq!(api.apps().len(), 2, "a failed restore keeps the app");
}

#[tokio::test]
async fn the_page_login_and_cross_site_checks() {
    let h = Harness::new();
    h.deploy("blog").await;
    // Not logged in: the open page names no app.
    let (status, headers, page) = h.raw(request("GET", "/", false, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(!page.contains("blog") && page.contains("Not logged in"), "{page}");
    let login = format!("/?token={}", token().as_str());
    let (status, headers, _) = h.raw(request("GET", &login, false, None)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/");
    assert_eq!(headers["cache-control"], "no-store");
    let cookie = headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let mut with_cookie = request("GET", "/", false, None);
    let pair = cookie.split(';').next().unwrap().to_owned();
    with_cookie.headers_mut().insert("cookie", pair.parse().unwrap());
    let (status, headers, page) = h.raw(with_cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["content-security-policy"],
        crate::platform::dashboard::CONTENT_SECURITY_POLICY
    );
    assert!(
        page.contains(r#"<script src="/dashboard.js" defer></script>"#),
        "{page}"
    );
    assert!(!page.contains(token().as_str()), "the page holds the token");
    // Cross-site and rebinding.
    let before = h.state();
    let mut cross = request("POST", "/api/apps/blog/stop", true, None);
    cross
        .headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    assert_eq!(h.raw(cross).await.0, StatusCode::FORBIDDEN);
    let mut rebound = request("GET", "/api/apps", true, None);
    rebound
        .headers_mut()
        .insert("host", "evil.example:3000".parse().unwrap());
    assert_eq!(h.raw(rebound).await.0, StatusCode::FORBIDDEN);
    assert_eq!(h.state(), before);
}

#[tokio::test]
async fn the_dashboard_and_its_files_need_the_credential() {
    let h = Harness::new();
    for path in ["/dashboard.js", "/dashboard.css"] {
        let (status, headers, body) = h.raw(request("GET", path, false, None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(!body.contains("fetch("), "{path}: {body}");
        assert!(headers.get("content-security-policy").is_none(), "{path}");
        let (status, headers, body) = h.raw(request("GET", path, true, None)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/"), "{path}");
        assert!(!body.is_empty());
        let (status, _, _) = h.raw(request("POST", path, true, None)).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
    }
    // The page: the dashboard with the token, how to log in without.
    let (_, _, page) = h.raw(request("GET", "/", true, None)).await;
    assert!(page.contains("/dashboard.js"), "{page}");
    let (_, headers, page) = h.raw(request("GET", "/", false, None)).await;
    assert!(
        !page.contains("/dashboard.js") && page.contains("Not logged in"),
        "{page}"
    );
    assert_eq!(
        headers["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
}
