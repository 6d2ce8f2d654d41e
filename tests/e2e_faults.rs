//! Faults under sustained load (issue 6): workers SIGKILLed at random.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

/// Workers killed with SIGKILL at random under load: only requests in
/// flight on a killed worker may fail, with 502 (never a hang, a reset of
/// another client's connection, or any other status); capacity returns; the
/// pool ends idle with every slot refilled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_worker_kills_under_load_cost_only_their_own_requests() {
    within(Duration::from_secs(45), async {
        let server = Server::start(&["w:4", "--max-queue=256"]).await;
        let load = Load::start(server.port, 8, "/sleep?ms=15", Duration::ZERO);
        let mut killed = BTreeSet::new();
        // A fixed pseudo-random order, so a failure replays.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let pids: Vec<u32> = Server::pool_pids(&server.status().await).into_iter().collect();
            if pids.is_empty() {
                continue;
            }
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let victim = pids[(seed % pids.len() as u64) as usize];
            send_signal(victim, "KILL");
            killed.insert(victim);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let report = load.stop().await;
        let histogram = report.histogram();
        // Nothing but successes and upstream errors, and no transport error.
        for (&status, &n) in &histogram {
            assert!(
                status == 200 || status == 502,
                "unexpected {status} ×{n}: {:?}",
                report.failures()
            );
        }
        let failed = report.count(502);
        assert!(
            failed <= killed.len(),
            "{failed} requests failed for {} kills: only a killed worker's own request may fail",
            killed.len()
        );
        assert!(report.count(200) > 100, "the load kept flowing: {histogram:?}");
        for o in report.outcomes.iter().filter(|o| o.status == Some(502)) {
            assert_eq!(o.reason.as_deref(), Some("upstream_error"), "{o:?}");
        }
        // Capacity returns: four fresh workers, all idle, none of them killed.
        let status = server
            .wait_status("all four slots refilled and idle", Duration::from_secs(10), |s| {
                s["workers"] == 4 && s["inflight"] == 0 && s["routable"] == 4 && s["tracked"] == 0
            })
            .await;
        assert!(Server::pool_pids(&status).is_disjoint(&killed), "{status}");
        assert_eq!(server.get("/ping").await.status, 200);
    })
    .await;
}
