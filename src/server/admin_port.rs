//! The admin port (`--metrics-port` on `--admin-bind`), never the app's
//! port: what a scraper and an orchestrator ask of the process.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /metrics` | the Prometheus text format, or OpenMetrics when `Accept` asks (`observe::metrics`) |
//! | `GET /ready` | `200 ready` when every app has a registered worker and no stop has begun, else `503` |
//! | `GET /live` | `200 live` while the process answers (no app is asked) |
//!
//! Anything else is `404`, a method other than GET or HEAD `405`. The
//! port serves whoever can reach it, so it listens on loopback unless
//! `--admin-bind` says otherwise; it shows counts and states, never a
//! request's path or host, an environment value or a pid.
//!
//! [`run`] serves any [`MetricsSource`]: `rip-server <app>` passes an
//! [`AppSource`] (one app, and the drain flag of its signals); the
//! platform passes one that lists every app it runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;

use super::AppHandle;
use crate::net::listen::{Accept, serve_http1};
use crate::observe::metrics::{self, BuildInfo, Format};
use crate::observe::status::StatusSnapshot;

/// A client must send its request head within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin port reports, taken once per request.
pub struct Sample {
    /// Every app served, with its `app` label, as its driver sees it now.
    pub apps: Vec<(String, StatusSnapshot)>,
    /// A stop was asked for: `/ready` answers 503 from now on, while the
    /// server may still serve (`--drain-delay-ms`).
    pub draining: bool,
}

impl Sample {
    /// `/ready` (the contract's rule): not draining, and a worker is
    /// registered in an app that is not stopping. (A platform with one app
    /// in error still serves its other apps.)
    pub fn ready(&self) -> bool {
        !self.draining && self.apps.iter().any(|(_, s)| s.workers > 0 && !s.stopping)
    }

    /// Why `/ready` answers 503 (`None` when it answers 200).
    pub fn not_ready_because(&self) -> Option<String> {
        if self.draining {
            return Some("draining".to_owned());
        }
        if self.ready() {
            return None;
        }
        if self.apps.is_empty() {
            return Some("no app is running".to_owned());
        }
        let why: Vec<String> = self
            .apps
            .iter()
            .map(|(app, s)| match s.stopping {
                true => format!("{app}: stopping"),
                false => format!("{app}: no worker registered"),
            })
            .collect();
        Some(why.join("; "))
    }

    /// The `/metrics` text in `format`.
    pub fn metrics(&self, build: BuildInfo, format: Format) -> String {
        let apps: Vec<(&str, &StatusSnapshot)> = self.apps.iter().map(|(app, s)| (app.as_str(), s)).collect();
        metrics::encode(&apps, build, self.draining, format)
    }
}

/// Where the admin port gets its numbers: the apps' snapshots and the
/// drain flag.
pub trait MetricsSource: Send + Sync + 'static {
    /// Every app served now, and whether a stop has been asked for. Called
    /// once per request to `/metrics` or `/ready` (never per app request).
    fn sample(&self) -> Pin<Box<dyn Future<Output = Sample> + Send + '_>>;

    /// `rip_build_info`: this binary's version and build id.
    fn build(&self) -> BuildInfo {
        BuildInfo::current()
    }
}

/// Set once a stop was asked for with a drain delay (`--drain-delay-ms`):
/// `/ready` answers 503 while the app still serves. Cloning shares the flag.
#[derive(Clone, Debug, Default)]
pub struct DrainFlag(Arc<AtomicBool>);

impl DrainFlag {
    /// Raises the flag (it never comes down: the process is on its way out).
    pub fn raise(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The source of `rip-server <app>`: its one app, labelled with its name.
pub struct AppSource {
    pub app: AppHandle,
    pub draining: DrainFlag,
}

impl MetricsSource for AppSource {
    fn sample(&self) -> Pin<Box<dyn Future<Output = Sample> + Send + '_>> {
        Box::pin(async move {
            let apps = match self.app.status().await {
                Some(status) => vec![(self.app.name().to_owned(), status)],
                // The driver has stopped: nothing left to serve.
                None => Vec::new(),
            };
            Sample {
                apps,
                draining: self.draining.is_raised() || self.app.is_stopping(),
            }
        })
    }
}

/// Serves the admin port on `listener` until `shutdown` resolves.
pub async fn run<L: Accept>(listener: L, source: Arc<dyn MetricsSource>, shutdown: impl Future<Output = ()>) {
    serve_http1(
        listener,
        "metrics port",
        HEADER_TIMEOUT,
        shutdown,
        move |request, _peer| {
            let source = source.clone();
            async move { answer(source.as_ref(), &request).await }
        },
    )
    .await;
}

/// The answer to one request.
async fn answer<B>(source: &dyn MetricsSource, request: &Request<B>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if !matches!(path, "/metrics" | "/ready" | "/live") {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /ready or /live\n".into(),
        );
    }
    let head = request.method() == Method::HEAD;
    if request.method() != Method::GET && !head {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n".into());
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let response = match path {
        "/live" => text(StatusCode::OK, "live\n".into()),
        "/ready" => match source.sample().await.not_ready_because() {
            None => text(StatusCode::OK, "ready\n".into()),
            Some(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
        },
        _ => {
            let accept = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::negotiate(accept);
            let body = source.sample().await.metrics(source.build(), format);
            let mut response = text(StatusCode::OK, body);
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
            response
        }
    };
    if head {
        let (parts, body) = response.into_parts();
        let length = http_body::Body::size_hint(&body).exact().unwrap_or(0);
        let mut response = Response::from_parts(parts, Full::new(Bytes::new()));
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        return response;
    }
    response
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // A probe or a scrape must see the state now, never a cached answer.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source with fixed answers.
    struct Fixed {
        workers: usize,
        draining: bool,
    }

    impl MetricsSource for Fixed {
        fn sample(&self) -> Pin<Box<dyn Future<Output = Sample> + Send + '_>> {
            Box::pin(async move {
                let apps = (self.workers > 0 || !self.draining)
                    .then(|| ("app".to_owned(), fake_status(self.workers)))
                    .into_iter()
                    .collect();
                Sample {
                    apps,
                    draining: self.draining,
                }
            })
        }
    }

    fn fake_status(workers: usize) -> StatusSnapshot {
        let mut status = crate::observe::metrics::tests_support::snapshot("app");
        status.workers = workers;
        status
    }

    async fn ask(
        source: &dyn MetricsSource,
        method: Method,
        path: &str,
        accept: Option<&str>,
    ) -> (u16, String, String) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        let response = answer(source, &request.body(()).unwrap()).await;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, content_type, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn ready_needs_a_worker_and_no_drain_and_live_needs_nothing() {
        let serving = Fixed {
            workers: 2,
            draining: false,
        };
        assert_eq!(ask(&serving, Method::GET, "/ready", None).await.0, 200);
        let starting = Fixed {
            workers: 0,
            draining: false,
        };
        let (status, _, body) = ask(&starting, Method::GET, "/ready", None).await;
        assert_eq!((status, body.as_str()), (503, "not ready: app: no worker registered\n"));
        let draining = Fixed {
            workers: 2,
            draining: true,
        };
        let (status, _, body) = ask(&draining, Method::GET, "/ready", None).await;
        assert_eq!((status, body.as_str()), (503, "not ready: draining\n"));
        let gone = Fixed {
            workers: 0,
            draining: true,
        };
        assert_eq!(
            ask(&gone, Method::GET, "/live", None).await.0,
            200,
            "live while the process answers"
        );
    }

    #[tokio::test]
    async fn metrics_follow_the_accept_header_and_other_requests_are_refused() {
        let s = Fixed {
            workers: 1,
            draining: false,
        };
        let (status, content_type, body) = ask(&s, Method::GET, "/metrics", None).await;
        assert_eq!(
            (status, content_type.as_str()),
            (200, "text/plain; version=0.0.4; charset=utf-8")
        );
        assert!(
            body.contains("rip_http_responses_total{app=\"app\",code=\"2xx\"}"),
            "{body}"
        );
        let (_, content_type, body) = ask(&s, Method::GET, "/metrics", Some("application/openmetrics-text")).await;
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        assert!(body.ends_with("# EOF\n"));
        let (status, _, body) = ask(&s, Method::HEAD, "/metrics", None).await;
        assert_eq!((status, body.as_str()), (200, ""));
        assert_eq!(ask(&s, Method::POST, "/metrics", None).await.0, 405);
        assert_eq!(ask(&s, Method::GET, "/status", None).await.0, 404);
        assert_eq!(ask(&s, Method::GET, "/", None).await.0, 404);
    }
}
