//! End to end, the control socket: every malformed or unauthorised request
//! gets a 4xx with `{"ok":false,"error":...}` and changes nothing.

use std::path::Path;

use crate::common::*;
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

/// Sends one control request and checks that it was refused with a 4xx and
/// the contract's error body; returns the status.
async fn refused(ctl: &Path, method: Method, path: &str, body: impl Into<Bytes>, what: &str) -> u16 {
    let r = unix_request(ctl, method, path, body.into())
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        (400..500).contains(&r.status),
        "{what}: expected a 4xx, got {} {}",
        r.status,
        r.text()
    );
    let v: Value =
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {}", r.text()));
    assert_eq!(v["ok"], false, "{what}: {v}");
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: no error message: {v}"
    );
    r.status
}

/// `(workers, desired, pool)`: what a refused control request must not change.
type Snapshot = (Value, Value, Vec<(u64, u32, u64, String)>);

/// The parts of `/status` a refused control request must not change.
fn pool_snapshot(status: &Value) -> Snapshot {
    (
        status["workers"].clone(),
        status["supervisor"]["desired"].clone(),
        Server::pool(status),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_control_requests_get_4xx_and_change_nothing() {
    within(BUDGET, async {
        let server = Server::start(&["w:2"]).await;
        let before = pool_snapshot(&server.status().await);
        let ctl = server.ctl_socket();
        let ctl = ctl.as_path();
        let prefix = server.prefix.display().to_string();
        let pid = std::process::id();
        let join = |extra: Value| {
            let mut msg = json!({"op": "join", "app": "hello", "workerId": 0, "pid": pid,
                "socket": format!("{prefix}.0.sock"), "version": 1});
            for (k, v) in extra.as_object().expect("object") {
                msg[k] = v.clone();
            }
            Bytes::from(msg.to_string())
        };

        let post = Method::POST;
        assert_eq!(refused(ctl, post.clone(), "/worker", "{", "truncated JSON").await, 400);
        assert_eq!(refused(ctl, post.clone(), "/worker", "", "empty body").await, 400);
        assert_eq!(
            refused(ctl, post.clone(), "/worker", "[1,2]", "a JSON array").await,
            400
        );
        refused(
            ctl,
            post.clone(),
            "/worker",
            r#"{"op":"dance","app":"hello","workerId":0}"#,
            "unknown op",
        )
        .await;
        refused(
            ctl,
            post.clone(),
            "/worker",
            join(json!({"workerId": "0"})),
            "workerId as a string",
        )
        .await;
        refused(
            ctl,
            post.clone(),
            "/worker",
            join(json!({"workerId": -1})),
            "negative workerId",
        )
        .await;
        refused(
            ctl,
            post.clone(),
            "/worker",
            join(json!({"pid": "x"})),
            "pid as a string",
        )
        .await;
        refused(
            ctl,
            post.clone(),
            "/worker",
            join(json!({"socket": 5})),
            "socket as a number",
        )
        .await;
        refused(
            ctl,
            post.clone(),
            "/worker",
            join(json!({"sneaky": true})),
            "unknown field",
        )
        .await;
        refused(
            ctl,
            post.clone(),
            "/worker",
            r#"{"op":"quit","app":"hello"}"#,
            "quit without workerId",
        )
        .await;
        let big = format!(
            r#"{{"op":"quit","app":"hello","workerId":0,"pad":"{}"}}"#,
            "x".repeat(70 * 1024)
        );
        assert_eq!(refused(ctl, post.clone(), "/worker", big, "a 70 KiB body").await, 413);

        // Well-formed but not acceptable.
        refused(
            ctl,
            post.clone(),
            "/worker",
            join(json!({"socket": "/tmp/evil.sock"})),
            "a socket outside the prefix",
        )
        .await;
        refused(
            ctl,
            post.clone(),
            "/worker",
            join(json!({"socket": format!("{prefix}.0.sock/../../evil.sock")})),
            "a socket escaping the prefix with ..",
        )
        .await;
        let not_a_socket = format!("{prefix}.7.sock");
        std::fs::write(&not_a_socket, b"plain file").expect("write file");
        refused(
            ctl,
            post.clone(),
            "/worker",
            join(json!({"workerId": 7, "socket": not_a_socket})),
            "a path under the prefix that is not a socket",
        )
        .await;
        refused(
            ctl,
            post.clone(),
            "/worker",
            join(json!({"workerId": 8, "socket": format!("{prefix}.8.sock")})),
            "a socket that does not exist",
        )
        .await;
        refused(
            ctl,
            post.clone(),
            "/worker",
            join(json!({"app": "other"})),
            "another app",
        )
        .await;
        refused(
            ctl,
            post.clone(),
            "/worker",
            r#"{"op":"quit","app":"hello","workerId":5}"#,
            "quit of an unknown slot",
        )
        .await;
        refused(
            ctl,
            post.clone(),
            "/worker",
            r#"{"op":"quit","app":"hello","workerId":0,"pid":4000000}"#,
            "quit of an unknown pid",
        )
        .await;
        refused(
            ctl,
            post.clone(),
            "/worker",
            r#"{"op":"quit","app":"other","workerId":0}"#,
            "quit for another app",
        )
        .await;

        // Admin endpoints.
        for body in [
            r#"{"by":0}"#,
            r#"{"to":0}"#,
            r#"{"to":100000}"#,
            r#"{"by":"x"}"#,
            r#"{"by":1,"to":2}"#,
            r#"{}"#,
            "not json",
        ] {
            assert_eq!(
                refused(ctl, post.clone(), "/scale", body, &format!("scale {body}")).await,
                400
            );
        }
        assert_eq!(refused(ctl, Method::GET, "/nope", "", "unknown endpoint").await, 404);
        refused(ctl, post.clone(), "/nope", "{}", "unknown endpoint (POST)").await;
        refused(ctl, Method::GET, "/worker", "", "GET /worker").await;
        refused(ctl, Method::GET, "/restart", "", "GET /restart").await;
        refused(ctl, Method::DELETE, "/status", "", "DELETE /status").await;

        // Nothing changed: same workers, same pids, still serving. No wait is
        // needed: the control socket answers only after the driver has applied
        // (or refused) a request, and /status is read from that same driver.
        let after = server.status().await;
        assert_eq!(pool_snapshot(&after), before, "{after}");
        assert_eq!(after["supervisor"]["generation"], 1, "{after}");
        let r = server.get("/ping").await;
        assert_eq!((r.status, r.text().as_str()), (200, "pong"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_join_from_a_process_the_manager_did_not_start_is_refused() {
    within(BUDGET, async {
        let server = Server::start(&["w:1"]).await;
        let before = pool_snapshot(&server.status().await);
        let prefix = server.prefix.display().to_string();
        // A real listening socket under the prefix, owned by the test.
        let impostor = format!("{prefix}.9.sock");
        let _listener = tokio::net::UnixListener::bind(&impostor).expect("bind impostor");
        let msg = json!({"op": "join", "app": "hello", "workerId": 9, "pid": std::process::id(),
            "socket": impostor, "version": 1});
        let r = unix_request(
            &server.ctl_socket(),
            Method::POST,
            "/worker",
            Bytes::from(msg.to_string()),
        )
        .await
        .expect("control request");
        let after = server.status().await;
        assert!(
            (400..500).contains(&r.status),
            "join from a stranger answered {} {}; pool now {}",
            r.status,
            r.text(),
            after["pool"]
        );
        assert_eq!(pool_snapshot(&after), before, "{after}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_join_cannot_take_over_a_live_slot() {
    within(BUDGET, async {
        let server = Server::start(&["w:1"]).await;
        let before = pool_snapshot(&server.status().await);
        let prefix = server.prefix.display().to_string();
        let other = format!("{prefix}.0.r.sock");
        let _listener = tokio::net::UnixListener::bind(&other).expect("bind");
        for version in [1, 2, 99] {
            let msg = json!({"op": "join", "app": "hello", "workerId": 0,
                "pid": std::process::id(), "socket": other, "version": version});
            refused(
                &server.ctl_socket(),
                Method::POST,
                "/worker",
                msg.to_string(),
                &format!("a second process for slot 0 at version {version}"),
            )
            .await;
        }
        assert_eq!(pool_snapshot(&server.status().await), before);
        assert_eq!(server.get("/ping").await.status, 200);
    })
    .await;
}
