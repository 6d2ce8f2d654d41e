//! End to end, the status snapshot: `/status` (front door and control
//! socket) carries the counters every reader shares: responses by class,
//! synthesized answers by reason, and the pool.

use crate::common::*;
use serde_json::Value;

fn count(status: &Value, group: &str, key: &str) -> u64 {
    status[group][key]
        .as_u64()
        .unwrap_or_else(|| panic!("/status has no {group}.{key}: {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_counts_responses_by_class_and_rejections_by_reason() {
    within(BUDGET, async {
        let server = Server::start(&["w:1", "--max-queue=0"]).await;
        for _ in 0..3 {
            assert_eq!(server.get("/ping").await.status, 200);
        }
        assert_eq!(server.get("/status/404").await.status, 404);
        // Hold the only worker, then ask again: with no queue, 503 at once.
        let port = server.port;
        let held = tokio::spawn(async move { get(port, "/hang").await });
        server
            .wait_status("the worker to be busy", STEP, |v| v["inflight"] == 1)
            .await;
        let refused = server.get("/ping").await;
        assert_eq!(refused.status, 503, "{}", refused.text());
        let reason = refused.reason().expect("a Rip-Reason on the 503");

        let status = server.ctl_status().await;
        assert_eq!(count(&status, "responses", "2xx"), 3, "{status}");
        assert_eq!(count(&status, "responses", "4xx"), 1, "{status}");
        assert_eq!(count(&status, "responses", "5xx"), 1, "{status}");
        assert_eq!(count(&status, "responses", "3xx"), 0, "{status}");
        assert_eq!(count(&status, "rejections", &reason), 1, "{status}");
        let total: u64 = status["rejections"]
            .as_object()
            .expect("rejections object")
            .values()
            .map(|v| v.as_u64().expect("a count"))
            .sum();
        assert_eq!(total, 1, "one rejection in all: {status}");
        // Every dispatched request waited (3 pings, the 404, the held one);
        // the refused one never did.
        assert_eq!(status["queue_wait"]["count"], 5, "{status}");
        assert_eq!(status["illegal_transitions"], 0, "{status}");
        assert_eq!(count(&status, "worker_exits", "crash"), 0, "{status}");
        held.abort();
    })
    .await;
}
