//! The API's answers: JSON bodies and their headers, the error shapes of the
//! contract (`{"error": ...}`), an app's JSON ([`AppJson`]), the page that
//! says how to log in and the dashboard's files.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

use crate::platform::apps::{AppView, Desired};
use crate::platform::auth::WWW_AUTHENTICATE;
use crate::platform::control::{AppStatus, LiveApp};
use crate::platform::dashboard::{self, Asset};

/// Every answer of the API.
pub type Answer = Response<Full<Bytes>>;

/// An answer with `body` of `content_type` and the headers every answer
/// carries: nothing is cached (listings hold secrets), nothing is sniffed,
/// no page of ours is framed by another site, no referrer leaves.
pub fn answer(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// `value` as JSON.
pub fn json(status: StatusCode, value: &impl Serialize) -> Answer {
    match serde_json::to_vec(value) {
        Ok(body) => answer(status, "application/json", body),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render the answer: {e}"),
        ),
    }
}

/// `{"error": message}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Answer {
    #[derive(Serialize)]
    struct ErrorBody {
        error: String,
    }
    let body = serde_json::to_vec(&ErrorBody { error: message.into() }).unwrap_or_else(|_| b"{}".to_vec());
    answer(status, "application/json", body)
}

/// An error with a status given as a number (from `AppError::status`,
/// `ControlError::status`).
pub fn error_code(status: u16, message: impl Into<String>) -> Answer {
    error(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        message,
    )
}

/// `404 {"error":"App not found"}`.
pub fn app_not_found() -> Answer {
    error(StatusCode::NOT_FOUND, "App not found")
}

/// `401` with `WWW-Authenticate: Bearer`.
pub fn unauthorized() -> Answer {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "the platform's token is required (Authorization: Bearer <token>, or log in with the URL printed at start)",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(WWW_AUTHENTICATE));
    response
}

/// The login: `303` to `location`, setting the cookie.
pub fn login_redirect(set_cookie: &str, location: &'static str) -> Answer {
    let mut response = answer(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static(location));
    match HeaderValue::from_str(set_cookie) {
        Ok(cookie) => {
            headers.insert(header::SET_COOKIE, cookie);
        }
        // The token's characters are checked when it is read, so this
        // cannot happen; refuse rather than redirect without the cookie.
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "the token cannot be a cookie"),
    }
    response
}

/// `405` with `Allow`.
pub fn method_not_allowed(method: &Method, allowed: &[Method]) -> Answer {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed here"));
    let allow: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    if let Ok(value) = HeaderValue::from_str(&allow.join(", ")) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// An app as the API shows it: the record's view (environment keys, never
/// values) and how it runs now, flattened into one object. Field names are
/// the contract's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppJson {
    /// name, directory, hosts, workers, envKeys, desired, startedAt.
    #[serde(flatten)]
    pub view: AppView,
    /// status, error, version, pool, queue, counters (its `startedAt` is
    /// moved into the view, so the key appears once).
    #[serde(flatten)]
    pub live: LiveApp,
}

impl AppJson {
    /// An app's JSON from its view and its live state; without a live state
    /// (the control does not know it) it is `stopped` when stopped on
    /// purpose, else `deployed` (accepted, not running yet).
    pub fn new(mut view: AppView, live: Option<LiveApp>) -> AppJson {
        let mut live = live.unwrap_or_else(|| LiveApp {
            status: match view.desired {
                Desired::Running => AppStatus::Deployed,
                Desired::Stopped => AppStatus::Stopped,
            },
            ..LiveApp::default()
        });
        view.started_at = live.started_at.take().or(view.started_at);
        AppJson { view, live }
    }
}

/// The page at `/` for a browser that is not logged in: how to log in,
/// no app data. It never holds the token, and runs no script: the policy
/// forbids every source.
pub fn login_page() -> Answer {
    let html = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
                <title>rip-server platform</title></head><body>\n<h1>rip-server platform</h1>\n\
                <p>Not logged in: open the URL with <code>?token=</code> that the platform printed when it started.</p>\n\
                </body></html>\n";
    let mut response = answer(StatusCode::OK, "text/html; charset=utf-8", html);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    response
}

/// One of the dashboard's files, with the dashboard's policy.
pub fn asset(asset: Asset) -> Answer {
    let mut response = answer(StatusCode::OK, asset.content_type(), asset.body());
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(dashboard::CONTENT_SECURITY_POLICY),
    );
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;
    use crate::platform::apps::AppRecord;

    async fn text(response: Answer) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_login_page_runs_nothing_and_shows_nothing() {
        let response = login_page();
        assert_eq!(
            response.headers()[header::CONTENT_SECURITY_POLICY],
            "default-src 'none'; frame-ancestors 'none'"
        );
        let body = text(response).await;
        assert!(body.contains("Not logged in") && !body.contains("<script"), "{body}");
    }

    #[tokio::test]
    async fn the_dashboard_files_carry_its_policy() {
        for file in Asset::ALL {
            let response = asset(file);
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()[header::CONTENT_TYPE], file.content_type());
            assert_eq!(
                response.headers()[header::CONTENT_SECURITY_POLICY],
                dashboard::CONTENT_SECURITY_POLICY
            );
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
            assert_eq!(text(response).await, file.body());
        }
    }

    #[test]
    fn an_apps_json_has_each_contract_key_once_and_the_live_start_time_wins() {
        let record = AppRecord {
            name: "blog".into(),
            directory: "/srv/blog".into(),
            hosts: vec!["blog.test".into()],
            workers: 2,
            env: [("SECRET".to_string(), "hunter2".to_string())].into(),
            desired: Desired::Running,
            started_at: Some("2026-01-01T00:00:00.000Z".into()),
        };
        let keys = |app: &AppJson| -> Vec<String> {
            let value = serde_json::to_value(app).unwrap();
            let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        let expected = [
            "counters",
            "desired",
            "directory",
            "envKeys",
            "error",
            "hosts",
            "name",
            "pool",
            "queue",
            "startedAt",
            "status",
            "version",
            "workers",
        ];
        let stored = AppJson::new(record.view(), None);
        assert_eq!(keys(&stored), expected);
        let value = serde_json::to_value(&stored).unwrap();
        assert_eq!(value["startedAt"], "2026-01-01T00:00:00.000Z");
        assert_eq!(value["status"], "deployed");
        assert!(!value.to_string().contains("hunter2"));
        let live = LiveApp {
            started_at: Some("2026-02-02T00:00:00.000Z".into()),
            ..LiveApp::default()
        };
        let running = AppJson::new(record.view(), Some(live));
        assert_eq!(keys(&running), expected);
        assert_eq!(
            serde_json::to_value(&running).unwrap()["startedAt"],
            "2026-02-02T00:00:00.000Z"
        );
    }
}
