//! `rip-server status` for a platform: its `/status` (from its control
//! socket) as a summary and one line per app, read as loosely as a
//! server's (`status_table`): a missing field shows as `-`.

use serde_json::Value;

use super::status_table::{align, duration, ports, scalar};

/// Renders a platform's `/status` (`"mode":"platform"`).
pub fn render(status: &Value) -> String {
    let text = |key: &str| status.get(key).map(scalar).unwrap_or_else(|| "-".to_string());
    let summary = vec![
        ["Platform".to_string(), format!("pid {}", text("pid"))],
        [
            "Uptime".to_string(),
            status
                .get("uptime")
                .and_then(Value::as_f64)
                .map(duration)
                .unwrap_or_else(|| "-".into()),
        ],
        [
            "Ports".to_string(),
            status.get("ports").map(ports).unwrap_or_else(|| "-".into()),
        ],
        ["Dashboard".to_string(), text("dashboard")],
        [
            "Apps".to_string(),
            format!(
                "{} deployed, {} running, {} stopped; {} workers",
                text("totalApps"),
                text("runningApps"),
                text("stoppedApps"),
                text("workers")
            ),
        ],
    ];
    let mut lines = align(&summary, "");
    let apps = status
        .get("apps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !apps.is_empty() {
        lines.push(String::new());
        let mut rows = vec![[
            "APP".to_string(),
            "STATUS".to_string(),
            "WORKERS".to_string(),
            "QUEUE".to_string(),
            "REQUESTS".to_string(),
            "HOSTS".to_string(),
        ]];
        for app in &apps {
            let field = |pointer: &str| app.pointer(pointer).map(scalar).unwrap_or_else(|| "-".into());
            let live = app.get("pool").and_then(Value::as_array).map_or(0, Vec::len);
            let mut status = field("/status");
            if let Some(error) = app.get("error").and_then(Value::as_str) {
                status = format!("{status}: {}", super::one_line(error));
            }
            rows.push([
                field("/name"),
                status,
                format!("{live}/{}", field("/workers")),
                field("/queue/depth"),
                field("/counters/requests"),
                field("/hosts"),
            ]);
        }
        lines.extend(align(&rows, ""));
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_platform_status_shows_its_ports_and_one_line_per_app_with_its_error() {
        let status = serde_json::json!({
            "mode": "platform", "pid": 42, "uptime": 75.0,
            "ports": {"api": 3000, "http": 5002}, "dashboard": "http://127.0.0.1:3000/",
            "totalApps": 2, "runningApps": 1, "stoppedApps": 0, "workers": 2,
            "apps": [
                {"name": "shop", "status": "running", "workers": 2, "hosts": ["shop.test", "www.shop.test"],
                 "pool": [{"pid": 1}, {"pid": 2}], "queue": {"depth": 0}, "counters": {"requests": 12}, "error": null},
                {"name": "gone", "status": "error", "workers": 1, "hosts": [], "pool": [],
                 "error": "directory /srv/gone: no such directory\nsecond line"}
            ]
        });
        let text = render(&status);
        insta::assert_snapshot!(text, @r"
        Platform   pid 42
        Uptime     1m 15s
        Ports      api:3000 http:5002
        Dashboard  http://127.0.0.1:3000/
        Apps       2 deployed, 1 running, 0 stopped; 2 workers

        APP   STATUS                                                      WORKERS  QUEUE  REQUESTS  HOSTS
        shop  running                                                     2/2      0      12        shop.test,www.shop.test
        gone  error: directory /srv/gone: no such directory\nsecond line  0/1      -      -
        ");
    }
}
