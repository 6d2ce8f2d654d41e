//! The platform's HTTP API and dashboard listener (the contract's "Platform
//! controller"): one hyper service on the admin address.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /health` (open) | `{"status":"ok","mode":"platform"}` |
//! | `GET /` (open) | logged in (cookie or token): the dashboard; else a page saying how to log in |
//! | `GET /?token=` | the login redirect that sets the cookie |
//! | `GET /dashboard.js`, `/dashboard.css` | the dashboard's files ([`crate::platform::dashboard`]) |
//! | `GET /api/apps` | every app ([`AppJson`]) |
//! | `POST /api/apps` | deploy and start: `201` with the app |
//! | `GET /api/apps/<name>` | the app |
//! | `PATCH /api/apps/<name>` | change `workers`, `hosts`, `env`: `200` with the app |
//! | `DELETE /api/apps/<name>` | undeploy: `{"status":"undeployed"}` |
//! | `POST /api/apps/<name>/start\|stop\|restart\|scale` | `{"status":"started\|stopped\|restarted\|scaled",...}` |
//! | `GET /api/apps/<name>/logs` | `{"lines":[...]}` |
//! | `GET /api/stats` | `{"totalApps","runningApps","uptime",...}` |
//!
//! Every request is first put to [`auth::authorize`] (token or cookie for
//! everything but `/health` and the page, `Origin` and `Host` checks for
//! all): a refused request is answered before its body is read, and
//! changes nothing. Errors are `{"error": ...}`: 400 a bad body, 404 no
//! such app (or path), 405 a method a path does not take, 409 a name or
//! host that exists, 413 a body over [`MAX_BODY`], 500 a failure of ours.
//!
//! State: the apps live in memory ([`Apps`]) and in `apps.json`
//! ([`AppsStore`]); the running apps are driven through an
//! [`AppControl`]. A change (`changes.rs`) runs alone (one lock), saves the
//! new apps first (a failed save answers 500 and changes nothing, not
//! even the running apps), then asks the control; if the control fails, the
//! old file is written back and its error answered. Memory takes the new
//! apps last, so nothing is ever half done.
//!
//! May import what `platform` may.

mod changes;
pub mod respond;
pub mod routes;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Body;
use serde::Serialize;

pub use self::respond::AppJson;
use self::respond::{Answer, app_not_found, error, json};
pub use self::routes::{Action, Route};
use super::apps::{AppRecord, Apps, AppsFileError, AppsStore};
use super::auth::{self, AuthRequest, Decision};
use super::control::{AppControl, AppStatus, ControlError};
use super::dashboard::Asset;
use super::logs::AppLogs;
use super::token::PlatformToken;
use crate::net::listen::{Accept, serve_http1};
use crate::os::clock::Clock;

/// The largest request body read (an app's environment fits many times).
pub const MAX_BODY: usize = 64 * 1024;
/// How long a connection may take to send a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The platform's totals (`GET /api/stats`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Apps deployed.
    pub total_apps: usize,
    /// Apps serving now.
    pub running_apps: usize,
    /// Apps stopped.
    pub stopped_apps: usize,
    /// Worker processes of every app.
    pub workers: usize,
    /// Requests every app has had.
    pub requests: u64,
    /// Seconds since the platform started.
    pub uptime: f64,
}

/// The totals and every app, read once.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// The totals.
    #[serde(flatten)]
    pub stats: Stats,
    /// Every app, as `GET /api/apps` shows it.
    pub apps: Vec<AppJson>,
}

/// What the API needs to know of the platform it serves.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `RIP_HOME`: `apps.json` and `hosts.json` are read there.
    pub home: PathBuf,
    /// The admin listener's real address (after a port 0 was resolved):
    /// the only `Host` and `Origin` accepted besides loopback names.
    pub admin: SocketAddr,
    /// The API token.
    pub token: PlatformToken,
    /// The worker count of an app deployed without one.
    pub default_workers: u32,
}

/// The API: its configuration, the apps (in memory and in `apps.json`),
/// the control that runs them and their logs. Shared by every connection
/// through an `Arc`.
pub struct Api<C> {
    config: ApiConfig,
    control: C,
    logs: Arc<AppLogs>,
    store: AppsStore,
    /// The apps as last committed; read under a short lock, replaced whole
    /// by a change.
    apps: Mutex<Apps>,
    /// Held for the whole of a change, so changes never interleave.
    changes: tokio::sync::Mutex<()>,
    /// Directories of `hosts.json` that could not be deployed, with why
    /// (each reason is reported once).
    adopt_refused: Mutex<BTreeMap<PathBuf, String>>,
    clock: Clock,
}

impl<C> fmt::Debug for Api<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("admin", &self.config.admin)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl<C: AppControl> Api<C> {
    /// Reads `apps.json` in `config.home` (none: no apps). A file that
    /// cannot be read or used is an error naming it, and is left as it is:
    /// the platform must not start and then save over it.
    pub fn open(config: ApiConfig, control: C, logs: Arc<AppLogs>) -> Result<Api<C>, AppsFileError> {
        let (store, apps) = AppsStore::open(&config.home)?;
        Ok(Api {
            config,
            control,
            logs,
            store,
            apps: Mutex::new(apps),
            changes: tokio::sync::Mutex::new(()),
            adopt_refused: Mutex::new(BTreeMap::new()),
            clock: Clock::start(),
        })
    }

    /// Brings back the desired state after a start of the platform: every
    /// app kept as running is deployed through the control (the stopped
    /// ones wait for a `start`). Returns the apps that failed, with why;
    /// they stay in `apps.json` as they were.
    pub async fn restore(&self) -> Vec<(String, ControlError)> {
        let _change = self.changes.lock().await;
        let apps = self.apps();
        let mut failed = Vec::new();
        for record in apps.iter().filter(|r| r.desired == super::apps::Desired::Running) {
            if let Err(e) = self.control.deploy(record).await {
                failed.push((record.name.clone(), e));
            }
        }
        failed
    }

    /// The apps now (a copy).
    pub fn apps(&self) -> Apps {
        self.lock_apps().clone()
    }

    /// The control.
    pub fn control(&self) -> &C {
        &self.control
    }

    /// The apps' logs.
    pub fn logs(&self) -> &Arc<AppLogs> {
        &self.logs
    }

    /// The configuration.
    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    fn lock_apps(&self) -> MutexGuard<'_, Apps> {
        // Only whole values are stored under this lock, so a poisoned one
        // still holds a consistent set of apps.
        self.apps.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_adopt_refused(&self) -> MutexGuard<'_, BTreeMap<PathBuf, String>> {
        self.adopt_refused
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, name: &str) -> Option<AppRecord> {
        self.lock_apps().get(name).cloned()
    }

    /// Answers one request: authorisation first, then the endpoint.
    pub async fn handle<B>(&self, request: Request<B>) -> Answer
    where
        B: Body<Data = Bytes> + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = request.into_parts();
        let who = AuthRequest::from_parts(&parts.method, &parts.uri, &parts.headers);
        match auth::authorize(&who, &self.config.token, self.config.admin) {
            Decision::Allow => {}
            Decision::Unauthorized => return respond::unauthorized(),
            Decision::Forbidden(why) => return error(StatusCode::FORBIDDEN, why.to_string()),
            Decision::LoginRedirect { set_cookie, location } => {
                return respond::login_redirect(&set_cookie, location);
            }
        }
        let route = Route::parse(parts.uri.path());
        let method = &parts.method;
        match route {
            Route::UnknownApi | Route::Unknown => return error(StatusCode::NOT_FOUND, "no such endpoint"),
            _ if !route.methods().contains(method) => return respond::method_not_allowed(method, route.methods()),
            _ => {}
        }
        let body = if route.takes_body(method) {
            match Limited::new(body, MAX_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return error(StatusCode::PAYLOAD_TOO_LARGE, format!("body over {MAX_BODY} bytes"));
                }
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}")),
            }
        } else {
            Bytes::new()
        };
        match (route, method) {
            (Route::Health, _) => json(StatusCode::OK, &serde_json::json!({"status": "ok", "mode": "platform"})),
            (Route::Page, _) => self.page(&who),
            (Route::Asset(asset), _) => respond::asset(asset),
            (Route::Stats, _) => self.stats().await,
            (Route::Apps, &Method::POST) => self.create(&body).await,
            (Route::Apps, _) => self.list().await,
            (Route::App(name), &Method::PATCH) => self.patch(name, &body).await,
            (Route::App(name), &Method::DELETE) => self.delete(name).await,
            (Route::App(name), _) => self.show(name).await,
            (Route::Logs(name), _) => self.app_logs(name),
            (Route::Action(name, action), _) => self.act(name, action, &body).await,
            (Route::UnknownApi | Route::Unknown, _) => error(StatusCode::NOT_FOUND, "no such endpoint"),
        }
    }

    /// An app's JSON with its live state.
    async fn app_json(&self, record: &AppRecord) -> AppJson {
        AppJson::new(record.view(), self.control.live(&record.name).await)
    }

    async fn list(&self) -> Answer {
        let apps = self.apps();
        let mut out = Vec::with_capacity(apps.len());
        for record in apps.iter() {
            out.push(self.app_json(record).await);
        }
        json(StatusCode::OK, &out)
    }

    async fn show(&self, name: &str) -> Answer {
        match self.record(name) {
            Some(record) => json(StatusCode::OK, &self.app_json(&record).await),
            None => app_not_found(),
        }
    }

    fn app_logs(&self, name: &str) -> Answer {
        if self.record(name).is_none() {
            return app_not_found();
        }
        json(StatusCode::OK, &serde_json::json!({"lines": self.logs.snapshot(name)}))
    }

    async fn stats(&self) -> Answer {
        json(StatusCode::OK, &self.overview().await.stats)
    }

    /// Every app's JSON and the totals (`GET /api/stats`; the platform's
    /// own `/status` on its control socket shows both).
    pub async fn overview(&self) -> Overview {
        let apps = self.apps();
        let mut overview = Overview {
            stats: Stats {
                total_apps: apps.len(),
                running_apps: 0,
                stopped_apps: 0,
                workers: 0,
                requests: 0,
                uptime: self.clock.now().as_micros() as f64 / 1e6,
            },
            apps: Vec::with_capacity(apps.len()),
        };
        for record in apps.iter() {
            let app = self.app_json(record).await;
            let stats = &mut overview.stats;
            match app.live.status {
                AppStatus::Running => stats.running_apps += 1,
                AppStatus::Stopped => stats.stopped_apps += 1,
                AppStatus::Deployed | AppStatus::Error => {}
            }
            stats.workers += app.live.pool.len();
            stats.requests += app.live.counters.requests;
            overview.apps.push(app);
        }
        overview
    }

    /// A rolling restart of every app serving now (the platform's
    /// `SIGHUP` and `rip-server restart`; an app stopped, or in error, is
    /// left as it is): each app's answer, by name.
    pub async fn restart_running(&self) -> Vec<(String, Answer)> {
        let mut running = Vec::new();
        for record in self.apps().iter() {
            if self
                .control
                .live(&record.name)
                .await
                .is_some_and(|live| live.status == AppStatus::Running)
            {
                running.push(record.name.clone());
            }
        }
        let mut answers = Vec::with_capacity(running.len());
        for name in running {
            let answer = self.act(&name, Action::Restart, b"").await;
            answers.push((name, answer));
        }
        answers
    }

    /// The page at `/`: the dashboard for a browser that is logged in
    /// (the same credential check as `/api/*`), else how to log in, so the
    /// open page shows nothing to anyone else. The dashboard itself holds
    /// no data: its script fetches `/api/*` with the cookie.
    fn page(&self, who: &AuthRequest<'_>) -> Answer {
        let as_api = AuthRequest {
            path: "/api/apps",
            query: None,
            ..who.clone()
        };
        if auth::authorize(&as_api, &self.config.token, self.config.admin) == Decision::Allow {
            respond::asset(Asset::Page)
        } else {
            respond::login_page()
        }
    }
}

/// Serves the API on `listener` until `shutdown` resolves (connections
/// under way finish on their own).
pub async fn run<L: Accept, C: AppControl>(listener: L, api: Arc<Api<C>>, shutdown: impl Future<Output = ()>) {
    serve_http1(
        listener,
        "platform API",
        HEADER_TIMEOUT,
        shutdown,
        move |request, _peer| {
            let api = api.clone();
            async move { api.handle(request).await }
        },
    )
    .await;
}

#[cfg(test)]
mod adopt_tests;
#[cfg(test)]
mod tests;
