//! `rip-server status` for people: the `/status` JSON as a summary, one line
//! per worker and the counters, in the manner of `passenger-status`.
//!
//! The JSON grows over time, so the renderer reads it loosely: a missing
//! field shows as `-` (or its section is left out), an unknown field is
//! ignored, and every number under `counters` is shown whatever its name
//! (nested objects, such as counts by class or reason, as `name: k=v ...`).

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Renders a `/status` document. Never fails: anything unexpected shows as `-`.
pub fn render(status: &Value) -> String {
    let mut out = String::new();
    let text = |key: &str| status.get(key).map(scalar).unwrap_or_else(|| "-".to_string());

    let mut summary: Vec<[String; 2]> = Vec::new();
    summary.push(["App".into(), text("app")]);
    let mut state = text("status");
    if status.get("stopping").and_then(Value::as_bool) == Some(true) {
        state.push_str(", stopping");
    }
    summary.push(["Status".into(), state]);
    summary.push(["Version".into(), text("version")]);
    summary.push([
        "Uptime".into(),
        status
            .get("uptime")
            .and_then(Value::as_f64)
            .map(duration)
            .unwrap_or_else(|| "-".into()),
    ]);
    summary.push([
        "Ports".into(),
        status.get("ports").map(ports).unwrap_or_else(|| "-".into()),
    ]);
    if let Some(replicas) = status.get("lb_replicas").and_then(Value::as_u64).filter(|&n| n > 1) {
        let accepted: Vec<String> = status
            .get("replicas")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|r| r.get("accepted").map_or_else(|| "-".into(), scalar))
                    .collect()
            })
            .unwrap_or_default();
        summary.push([
            "Replicas".into(),
            match accepted.is_empty() {
                true => format!("{replicas} front-door loops"),
                false => format!(
                    "{replicas} front-door loops, connections accepted {}",
                    accepted.join(" / ")
                ),
            },
        ]);
    }
    if let Some(tls) = status.get("tls").filter(|t| t.is_object()) {
        let field = |k: &str| tls.get(k).map(scalar).unwrap_or_else(|| "-".into());
        let renews = match tls.get("nextRenewal") {
            Some(Value::String(when)) => format!(", renews {}", super::one_line(when)),
            _ => String::new(),
        };
        summary.push([
            "TLS".into(),
            format!(
                "{} certificate for {} (issuer {}), expires {}{renews}",
                field("source"),
                field("sans"),
                field("issuer"),
                field("notAfter")
            ),
        ]);
    }
    let desired = status.pointer("/supervisor/desired").map(scalar);
    summary.push([
        "Workers".into(),
        match desired {
            Some(d) => format!("{} registered, {d} wanted", text("workers")),
            None => format!("{} registered", text("workers")),
        },
    ]);
    let depth = status.pointer("/queue/depth").map(scalar).unwrap_or_else(|| "-".into());
    let max = status.pointer("/queue/max").map(scalar).unwrap_or_else(|| "-".into());
    summary.push([
        "Queue".into(),
        format!("{depth} waiting (max {max}), {} in flight", text("inflight")),
    ]);
    if let Some(roll) = status.pointer("/supervisor/rolling").filter(|v| v.is_object()) {
        let field = |k: &str| roll.get(k).map(scalar).unwrap_or_else(|| "-".into());
        summary.push([
            "Restarting".into(),
            format!(
                "v{} -> v{}: {} of {} ready",
                field("from"),
                field("to"),
                field("ready"),
                field("total")
            ),
        ]);
    }
    if let Some(last) = status.pointer("/supervisor/last_roll/message").and_then(Value::as_str) {
        summary.push(["Last restart".into(), last.to_string()]);
    }
    for line in align(
        &summary
            .into_iter()
            .map(|[k, v]| [format!("{k}:"), v])
            .collect::<Vec<_>>(),
        "",
    ) {
        let _ = writeln!(out, "{line}");
    }

    let _ = writeln!(out, "\nWorkers:");
    let rows = worker_rows(status);
    if rows.len() == 1 {
        let _ = writeln!(out, "  (none)");
    } else {
        for line in align(&rows, "  ") {
            let _ = writeln!(out, "{line}");
        }
    }

    if let Some(counters) = status.get("counters").and_then(Value::as_object) {
        let _ = writeln!(out, "\nCounters:");
        for line in counter_lines(counters) {
            let _ = writeln!(out, "  {line}");
        }
    }

    let totals = totals(status);
    if !totals.is_empty() {
        let _ = writeln!(out, "\nTotals:");
        for line in align(&totals, "  ") {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// The shared counters of the snapshot, one line each: responses by class,
/// rejections by reason, worker exits by cause (only the non-zero ones, or
/// `none`), the queue wait and the illegal transitions.
fn totals(status: &Value) -> Vec<[String; 2]> {
    let mut rows = Vec::new();
    for (key, label) in [
        ("responses", "Responses"),
        ("rejections", "Rejections"),
        ("worker_exits", "Worker exits"),
    ] {
        let Some(by) = status.get(key).and_then(Value::as_object) else {
            continue;
        };
        let parts: Vec<String> = by
            .iter()
            .filter(|(_, n)| n.as_u64() != Some(0))
            .map(|(k, n)| format!("{k}={}", scalar(n)))
            .collect();
        let text = if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(" ")
        };
        rows.push([label.to_string(), text]);
    }
    if let Some(wait) = status.get("queue_wait") {
        let count = wait.get("count").and_then(Value::as_u64);
        let sum = wait.get("sum_micros").and_then(Value::as_u64);
        if let (Some(count), Some(sum)) = (count, sum) {
            let mean = if count == 0 {
                0.0
            } else {
                sum as f64 / count as f64 / 1000.0
            };
            rows.push(["Queue wait".into(), format!("{count} requests, mean {mean:.1} ms")]);
        }
    }
    if let Some(n) = status.get("illegal_transitions") {
        rows.push(["Illegal transitions".into(), scalar(n)]);
    }
    rows
}

/// The workers table: the registered workers (`pool`), then slots the
/// supervisor knows of that have no registered worker (starting, in backoff).
fn worker_rows(status: &Value) -> Vec<[String; 6]> {
    let mut rows = vec![[
        "PID".to_string(),
        "SLOT".to_string(),
        "VERSION".to_string(),
        "STATE".to_string(),
        "SERVED".to_string(),
        "AGE".to_string(),
    ]];
    let field = |w: &Value, k: &str| w.get(k).map(scalar).unwrap_or_else(|| "-".into());
    let pool = status
        .get("pool")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for w in &pool {
        rows.push([
            field(w, "pid"),
            field(w, "slot"),
            field(w, "version"),
            field(w, "state"),
            field(w, "served"),
            age(w),
        ]);
    }
    let registered: Vec<&Value> = pool.iter().filter_map(|w| w.get("pid")).collect();
    let slots = status.pointer("/supervisor/slots").and_then(Value::as_array);
    for slot in slots.into_iter().flatten() {
        let pid = slot.get("pid").filter(|p| !p.is_null());
        if pid.is_some_and(|p| registered.contains(&p)) {
            continue;
        }
        if slot.get("state").and_then(Value::as_str) == Some("empty") {
            continue;
        }
        rows.push([
            field(slot, "pid"),
            field(slot, "slot"),
            field(slot, "version"),
            field(slot, "state"),
            field(slot, "served"),
            age(slot),
        ]);
    }
    rows
}

/// A worker's age: `age` (seconds) or `age_ms`, when the status has it.
fn age(worker: &Value) -> String {
    if let Some(s) = worker.get("age").and_then(Value::as_f64) {
        return duration(s);
    }
    if let Some(ms) = worker.get("age_ms").and_then(Value::as_f64) {
        return duration(ms / 1000.0);
    }
    "-".to_string()
}

/// `name  value` lines for every number; a nested object on one line as
/// `name: k=v k=v`.
fn counter_lines(counters: &Map<String, Value>) -> Vec<String> {
    let mut flat: Vec<[String; 2]> = Vec::new();
    let mut nested = Vec::new();
    for (name, value) in counters {
        match value {
            Value::Object(inner) => {
                let parts: Vec<String> = inner.iter().map(|(k, v)| format!("{k}={}", scalar(v))).collect();
                nested.push(format!(
                    "{name}: {}",
                    if parts.is_empty() { "-".into() } else { parts.join(" ") }
                ));
            }
            other => flat.push([name.clone(), scalar(other)]),
        }
    }
    let mut lines = align(&flat, "");
    lines.extend(nested);
    lines
}

/// A JSON value as one short piece of text.
pub(super) fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => super::one_line(s),
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// `ports` as a list of numbers (`[5002]`) or by kind (`{"http":5002}`).
pub(super) fn ports(v: &Value) -> String {
    match v {
        Value::Object(by_kind) => by_kind
            .iter()
            .map(|(k, p)| format!("{k}:{}", scalar(p)))
            .collect::<Vec<_>>()
            .join(" "),
        Value::Array(list) if !list.is_empty() => list.iter().map(scalar).collect::<Vec<_>>().join(" "),
        _ => "-".to_string(),
    }
}

/// `45s`, `3m 07s`, `2h 05m`, `3d 04h`.
pub(super) fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "-".to_string();
    }
    let s = seconds as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Left-aligned columns two spaces apart, each line prefixed with `indent`,
/// trailing spaces trimmed.
pub(crate) fn align<const N: usize>(rows: &[[String; N]], indent: &str) -> Vec<String> {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = indent.to_string();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let _ = write!(line, "{cell:<w$}");
            }
            line.trim_end().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `/status` as the server printed it (two workers, one request
    /// served), plus fields a later version may add.
    fn sample() -> Value {
        serde_json::json!({
            "app": "hello",
            "counters": {
                "client_gone": 0, "dispatched": 1, "no_capacity": 0, "queue_full": 0,
                "queue_timeout": 0, "queued": 0, "requests": 1, "responses": 1,
                "retries": 0, "upstream_error": 0, "upstream_timeout": 0
            },
            "responses": {"1xx": 0, "2xx": 1, "3xx": 0, "4xx": 0, "5xx": 0},
            "rejections": {"no_capacity": 0, "queue_full": 0, "queue_timeout": 0, "upstream_error": 0, "upstream_timeout": 0},
            "worker_exits": {"crash": 2, "quit": 0, "recycled": 1},
            "queue_wait": {"bounds_micros": [1000], "counts": [1], "count": 1, "sum_micros": 250},
            "illegal_transitions": 0,
            "inflight": 0,
            "pool": [
                {"pid": 28904, "served": 0, "slot": 0, "socket": "/tmp/s.0.sock", "state": "idle", "version": 1, "age_ms": 125500},
                {"pid": 28905, "served": 1, "slot": 1, "socket": "/tmp/s.1.sock", "state": "busy", "version": 1}
            ],
            "ports": [41237],
            "queue": {"depth": 0, "max": 8192},
            "routable": 2,
            "status": "healthy",
            "stopping": false,
            "supervisor": {
                "desired": 3, "generation": 1, "last_roll": null, "recycling": 0, "rolling": null,
                "slots": [
                    {"pid": 28904, "slot": 0, "state": "ready", "version": 1, "served": 0},
                    {"pid": 28905, "slot": 1, "state": "ready", "version": 1, "served": 1},
                    {"pid": null, "slot": 2, "state": "backoff", "version": null, "served": null}
                ],
                "stopped": false, "stopping": false
            },
            "tracked": 0,
            "uptime": 3725.2,
            "version": 1,
            "workers": 2,
            "something_new": {"x": 1}
        })
    }

    #[test]
    fn renders_the_sample() {
        let want = "\
App:      hello
Status:   healthy
Version:  1
Uptime:   1h 02m
Ports:    41237
Workers:  2 registered, 3 wanted
Queue:    0 waiting (max 8192), 0 in flight

Workers:
  PID    SLOT  VERSION  STATE    SERVED  AGE
  28904  0     1        idle     0       2m 05s
  28905  1     1        busy     1       -
  -      2     -        backoff  -       -

Counters:
  client_gone       0
  dispatched        1
  no_capacity       0
  queue_full        0
  queue_timeout     0
  queued            0
  requests          1
  responses         1
  retries           0
  upstream_error    0
  upstream_timeout  0

Totals:
  Responses            2xx=1
  Rejections           none
  Worker exits         crash=2 recycled=1
  Queue wait           1 requests, mean 0.2 ms
  Illegal transitions  0
";
        assert_eq!(render(&sample()), want);
    }

    #[test]
    fn front_door_replicas_show_when_there_are_several() {
        let mut status = sample();
        status["lb_replicas"] = serde_json::json!(1);
        status["replicas"] = serde_json::json!([{"accepted": 3}]);
        assert!(!render(&status).contains("Replicas"));
        status["lb_replicas"] = serde_json::json!(2);
        status["replicas"] = serde_json::json!([{"accepted": 3}, {"accepted": 40}]);
        let text = render(&status);
        let line = text
            .lines()
            .find(|l| l.starts_with("Replicas:"))
            .expect("a Replicas line");
        assert!(
            line.ends_with(" 2 front-door loops, connections accepted 3 / 40"),
            "{text}"
        );
    }

    #[test]
    fn tolerates_missing_and_odd_fields() {
        let text = render(&serde_json::json!({}));
        assert!(text.starts_with("App:      -\n"), "{text}");
        assert!(text.contains("(none)"), "{text}");
        assert!(!text.contains("Counters"), "{text}");
        let text = render(&serde_json::json!({
            "app": "a\nb", "pool": "oops", "ports": {"http": 1, "https": 2}, "uptime": "soon",
            "stopping": true, "status": "degraded",
            "supervisor": {"rolling": {"from": 1, "to": 2, "ready": 1, "total": 4},
                           "last_roll": {"message": "completed: v0 -> v1"}}
        }));
        assert!(text.contains("App:           a\\nb\n"), "{text}");
        assert!(text.contains("Status:        degraded, stopping\n"), "{text}");
        assert!(text.contains("Ports:         http:1 https:2\n"), "{text}");
        assert!(text.contains("Uptime:        -\n"), "{text}");
        assert!(text.contains("Restarting:    v1 -> v2: 1 of 4 ready\n"), "{text}");
        assert!(text.contains("Last restart:  completed: v0 -> v1\n"), "{text}");
        assert!(render(&Value::Null).contains("App:"));
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0.4), "0s");
        assert_eq!(duration(59.9), "59s");
        assert_eq!(duration(61.0), "1m 01s");
        assert_eq!(duration(7322.0), "2h 02m");
        assert_eq!(duration(90_000.0), "1d 01h");
        assert_eq!(duration(-1.0), "-");
    }
}
