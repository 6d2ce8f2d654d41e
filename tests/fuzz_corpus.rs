//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/*`) on stable,
//! so everything the fuzzers ever found stays fixed.

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut count = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let data = std::fs::read(&path).expect("corpus file");
        let result = std::panic::catch_unwind(|| body(&data));
        assert!(result.is_ok(), "{target}: {} fails", path.display());
        count += 1;
    }
    assert!(count > 0, "{target}: empty corpus");
}

#[test]
fn core_events_corpus() {
    replay("core_events", rip_server::fuzzing::core_events);
}

#[test]
fn control_payload_corpus() {
    replay("control_payload", rip_server::fuzzing::control_payload);
}

#[test]
fn cli_args_corpus() {
    replay("cli_args", rip_server::fuzzing::cli_args);
}

#[test]
fn worker_response_corpus() {
    replay("worker_response", rip_server::fuzzing::worker_response);
}

#[test]
fn request_head_corpus() {
    replay("request_head", rip_server::fuzzing::request_head);
}
