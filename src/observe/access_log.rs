//! The access log: one line per request, written by its own task so the
//! request path never waits on stdout.

use std::fmt::Write as _;
use std::io::Write as _;

use tokio::sync::mpsc;

use crate::os::clock::rfc3339_millis;

/// One request, as logged.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Wall-clock microseconds at arrival.
    pub t_micros: u64,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub total_seconds: f64,
    /// Time from dispatch to the worker's response head; None if no worker answered.
    pub worker_seconds: Option<f64>,
    pub length: Option<u64>,
    /// The synthesized answer's reason, if the front door answered itself.
    pub reason: Option<&'static str>,
    pub request_id: String,
    pub worker_pid: Option<u32>,
}

/// The log's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

/// Renders one record as a line (without the newline).
pub fn format_record(out: &mut String, app: &str, format: Format, r: &Record) {
    match format {
        Format::Json => {
            let value = serde_json::json!({
                "t": rfc3339_millis(r.t_micros),
                "app": app,
                "method": r.method,
                "path": r.path,
                "status": r.status,
                "totalSeconds": round6(r.total_seconds),
                "workerSeconds": r.worker_seconds.map(round6),
                "length": r.length,
                "reason": r.reason,
                "requestId": r.request_id,
                "workerPid": r.worker_pid,
            });
            let _ = write!(out, "{value}");
        }
        Format::Human => {
            let _ = write!(
                out,
                "{} {} {} {} {} {:.1}ms",
                rfc3339_millis(r.t_micros),
                app,
                r.method,
                r.path,
                r.status,
                r.total_seconds * 1000.0
            );
            if let Some(w) = r.worker_seconds {
                let _ = write!(out, " worker={:.1}ms", w * 1000.0);
            }
            match r.length {
                Some(n) => {
                    let _ = write!(out, " {n}b");
                }
                None => out.push_str(" -"),
            }
            if let Some(reason) = r.reason {
                let _ = write!(out, " reason={reason}");
            }
            let _ = write!(out, " id={}", r.request_id);
        }
    }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Records waiting for the writer; beyond this, lines are dropped (and
/// counted) rather than letting a blocked stdout slow requests or grow memory.
pub const LOG_QUEUE: usize = 65_536;

/// A handle that queues records for the writer task.
#[derive(Clone, Debug)]
pub struct AccessLog {
    tx: mpsc::Sender<Record>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl AccessLog {
    /// Starts the writer task on stdout.
    pub fn start(app: String, format: Format) -> AccessLog {
        let (tx, mut rx) = mpsc::channel::<Record>(LOG_QUEUE);
        tokio::spawn(async move {
            let mut line = String::with_capacity(256);
            let mut batch = Vec::with_capacity(64 * 1024);
            while let Some(record) = rx.recv().await {
                let mut next = Some(record);
                while let Some(r) = next {
                    line.clear();
                    format_record(&mut line, &app, format, &r);
                    batch.extend_from_slice(line.as_bytes());
                    batch.push(b'\n');
                    next = if batch.len() < 60 * 1024 {
                        rx.try_recv().ok()
                    } else {
                        None
                    };
                }
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(&batch);
                let _ = stdout.flush();
                batch.clear();
            }
        });
        AccessLog {
            tx,
            dropped: Default::default(),
        }
    }

    /// Queues a record; never blocks (drops the line if the writer is far behind).
    pub fn log(&self, record: Record) {
        if self.tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            t_micros: 1_795_305_600_000_000,
            method: "GET".into(),
            path: "/ping".into(),
            status: 503,
            total_seconds: 0.0012345,
            worker_seconds: None,
            length: Some(12),
            reason: Some("queue_full"),
            request_id: "r1".into(),
            worker_pid: None,
        }
    }

    #[test]
    fn json_has_the_contract_fields() {
        let mut out = String::new();
        format_record(&mut out, "app", Format::Json, &record());
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        for field in [
            "t",
            "app",
            "method",
            "path",
            "status",
            "totalSeconds",
            "workerSeconds",
            "length",
        ] {
            assert!(v.get(field).is_some(), "{field} missing in {out}");
        }
        assert_eq!(v["reason"], "queue_full");
        assert_eq!(v["t"], "2026-11-22T00:00:00.000Z");
    }

    #[test]
    fn human_line_is_one_line() {
        let mut out = String::new();
        format_record(&mut out, "app", Format::Human, &record());
        assert_eq!(
            out,
            "2026-11-22T00:00:00.000Z app GET /ping 503 1.2ms 12b reason=queue_full id=r1"
        );
    }
}
