//! The front door: the public HTTP listener, routing each request by host
//! to one app.
//!
//! [`run`] accepts connections until `shutdown` resolves and serves each
//! (see [`client_conn`]): the common request shape with our own HTTP/1.1
//! codec ([`codec`], `fast_path`), anything else with hyper's HTTP/1.1
//! server (keep-alive, header limits, the refusals); the header timeout is
//! the connection loop's on both.
//!
//! Two levels:
//! - [`FrontDoor`]: one listener's shared state: its limits and scheme, the
//!   request ids, and the [`Routes`] table (an `ArcSwap`, replaced whole by
//!   whoever manages apps and hosts, read with one atomic load per request).
//! - [`AppProxy`]: one app as the front door sees it: its driver, the
//!   transport to its workers, its timeouts and access log. Every request
//!   routed to it is proxied to a worker chosen by that app's core (see
//!   [`proxy`]); apps share nothing below the listener, so a flood on one
//!   never queues a request of another.
//!
//! HTTPS ([`https::run_tls`]) serves TLS connections through the same
//! connection loop after the handshake; plain HTTP sent to the HTTPS port,
//! and every request to the HTTP port of an HTTPS-only server, gets the
//! redirect of [`redirect`]; `--hsts` is [`hsts`]. A TLS request whose
//! `Host` routes to another app than its SNI gets `421`.
//!
//! A request whose host no route matches gets `404 Host not found` and
//! touches no app. `/status` and `/server` are answered here, for the app
//! the request routes to (`/status` is that app's status). A single-app
//! server ([`FrontDoor::new`]) routes every host to its one app.
//!
//! May import: `config` (host names and matching), `core`, `http`, `net`,
//! `observe`, `os`, `protocol`, `runtime`, `tls`, `upstream`.

pub mod body;
pub mod client_conn;
pub mod codec;
mod fast_path;
pub mod hsts;
pub mod https;
pub mod idle;
pub mod proxy;
pub mod redirect;
pub mod routes;

use std::convert::Infallible;
use std::future::Future;

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::http::headers;
use crate::net::listen::Accept;
use crate::net::listen::accept_until;
use crate::net::transport::Transport;
use crate::observe::access_log::AccessLog;
use crate::os::clock::Clock;
use crate::runtime::DriverHandle;
use body::ResponseBody;
use client_conn::{ProbeState, Tracked};
pub use routes::{HOST_NOT_FOUND, Routes};

/// The body of the `421` a TLS request gets when its `Host` routes to
/// another app than the name it asked for with SNI.
pub const MISDIRECTED: &str = "Misdirected Request: this connection is for another host\n";

/// Front-door settings. The limits, the scheme and the header timeout are
/// the listener's; `connect_timeout`, `read_timeout` and `response_buffer`
/// are those of the one app [`FrontDoor::new`] serves (a routed front
/// door's apps carry their own [`ProxyConfig`]).
#[derive(Clone, Debug)]
pub struct FrontDoorConfig {
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub scheme: &'static str,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// A client must send its whole request head within this.
    pub header_timeout: Duration,
    /// Largest request body (413 above it).
    pub max_body: u64,
    /// Most header fields in a request (431 above it).
    pub max_headers: usize,
    /// Largest request head in bytes (431 above it).
    pub max_head_bytes: usize,
    /// Bytes of a streamed response read from the worker ahead of the
    /// client (see `body::RelayBody`); 0 reads only as fast as the client.
    pub response_buffer: usize,
    /// `--hsts`, on an HTTPS listener only (see [`hsts`]).
    pub hsts: bool,
}

impl Default for FrontDoorConfig {
    fn default() -> FrontDoorConfig {
        FrontDoorConfig {
            scheme: "http",
            connect_timeout: Duration::from_millis(200),
            read_timeout: Duration::from_millis(5000),
            header_timeout: Duration::from_secs(10),
            response_buffer: 1024 * 1024,
            max_body: 100 * 1024 * 1024,
            max_headers: 100,
            max_head_bytes: 64 * 1024,
            hsts: false,
        }
    }
}

impl FrontDoorConfig {
    /// The per-app part, for the app [`FrontDoor::new`] serves.
    pub fn proxy(&self) -> ProxyConfig {
        ProxyConfig {
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            response_buffer: self.response_buffer,
        }
    }
}

/// One app's settings at the front door.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Connecting to a worker's socket.
    pub connect_timeout: Duration,
    /// A worker's response head must come within this (504 after).
    pub read_timeout: Duration,
    /// Bytes of a streamed response read from the worker ahead of the client.
    pub response_buffer: usize,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        FrontDoorConfig::default().proxy()
    }
}

/// One app as the front door sees it: everything a request routed to it
/// needs, shared by all of them. Cheap to share ([`Arc`]); the same app may
/// sit behind several hosts and several listeners.
pub struct AppProxy<T: Transport> {
    config: ProxyConfig,
    transport: T,
    driver: DriverHandle,
    clock: Clock,
    access_log: Option<AccessLog>,
}

impl<T: Transport> AppProxy<T> {
    pub fn new(
        config: ProxyConfig,
        transport: T,
        driver: DriverHandle,
        clock: Clock,
        access_log: Option<AccessLog>,
    ) -> AppProxy<T> {
        AppProxy {
            config,
            transport,
            driver,
            clock,
            access_log,
        }
    }

    /// The app's driver.
    pub fn driver(&self) -> &DriverHandle {
        &self.driver
    }

    /// The same app for the request tasks of front-door replica `replica`
    /// (`--lb-replicas`), which run on that replica's event loop: its
    /// driver handle names the replica, so the worker connections its
    /// requests are handed are the ones that loop opened.
    pub fn for_replica(&self, replica: usize) -> AppProxy<T> {
        AppProxy {
            config: self.config.clone(),
            transport: self.transport.clone(),
            driver: self.driver.for_replica(replica),
            clock: self.clock,
            access_log: self.access_log.clone(),
        }
    }

    /// The app's status, as its `/status` answers it.
    async fn status_response(&self, tls: Option<&crate::observe::status::TlsStatus>) -> Response<ResponseBody> {
        let status = self.driver.status().await;
        let json = crate::observe::status::to_json_with_tls(status.as_ref(), tls);
        let mut response = Response::new(ResponseBody::full(json));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// One listener's shared state: settings, request ids and the route table.
pub struct FrontDoor<T: Transport> {
    config: FrontDoorConfig,
    routes: ArcSwap<Routes<T>>,
    id_prefix: String,
    next_id: AtomicU64,
    /// The certificates served, for `/status` (`None`: no HTTPS).
    tls: ArcSwapOption<crate::tls::resolver::CertResolver>,
}

impl<T: Transport> FrontDoor<T> {
    /// A front door for one app, serving it for every host name.
    pub fn new(
        config: FrontDoorConfig,
        transport: T,
        driver: DriverHandle,
        clock: Clock,
        access_log: Option<AccessLog>,
        id_seed: u64,
    ) -> FrontDoor<T> {
        let app = AppProxy::new(config.proxy(), transport, driver, clock, access_log);
        FrontDoor::with_routes(config, Routes::every_host(Arc::new(app)), id_seed)
    }

    /// A front door routing by host with `routes` (see [`FrontDoor::set_routes`]).
    pub fn with_routes(config: FrontDoorConfig, routes: Routes<T>, id_seed: u64) -> FrontDoor<T> {
        FrontDoor {
            config,
            routes: ArcSwap::from_pointee(routes),
            id_prefix: format!("{:08x}", (id_seed ^ (id_seed >> 32)) as u32),
            next_id: AtomicU64::new(1),
            tls: ArcSwapOption::empty(),
        }
    }

    /// Shows `resolver`'s certificate in `/status` (`tls`); set on every
    /// listener of a server that serves HTTPS, the plain one included.
    pub fn set_tls(&self, resolver: Option<Arc<crate::tls::resolver::CertResolver>>) {
        self.tls.store(resolver);
    }

    /// The listener's settings.
    pub fn config(&self) -> &FrontDoorConfig {
        &self.config
    }

    /// Whether a TLS request for `app` came on a connection whose SNI names
    /// another app (`421`). No SNI, or an SNI no route matches, is not.
    fn misdirected(&self, sni: Option<&str>, app: &Arc<AppProxy<T>>) -> bool {
        let Some(sni) = sni else { return false };
        self.routes
            .load()
            .route(Some(sni.as_bytes()))
            .is_some_and(|other| !Arc::ptr_eq(other, app))
    }

    /// The route table in force.
    pub fn routes(&self) -> Arc<Routes<T>> {
        self.routes.load_full()
    }

    /// Replaces the route table: the next request routes by `routes`
    /// (requests already routed finish where they are). No lock: readers
    /// never wait for a writer. Two writers that read, change and set the
    /// table must take turns themselves (the last one wins).
    pub fn set_routes(&self, routes: Routes<T>) {
        self.routes.store(Arc::new(routes));
    }

    /// The app a request for `host` (a `Host` header's raw value) goes to.
    fn route(&self, host: Option<&[u8]>) -> Option<Arc<AppProxy<T>>> {
        self.routes.load().route(host).cloned()
    }

    fn new_request_id(&self) -> String {
        let mut id = String::with_capacity(self.id_prefix.len() + 17);
        id.push_str(&self.id_prefix);
        id.push('-');
        headers::push_hex(&mut id, self.next_id.fetch_add(1, Ordering::Relaxed));
        id
    }

    async fn serve(
        self: Arc<Self>,
        request: Request<Incoming>,
        client: Option<IpAddr>,
        sni: Option<&str>,
    ) -> Response<ResponseBody> {
        // hyper checks its buffer limit only between reads, so a large head
        // sent in one write can pass it: enforce the limit here as well.
        let head_bytes = request.uri().path_and_query().map_or(0, |p| p.as_str().len())
            + request
                .headers()
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len() + 4)
                .sum::<usize>();
        if head_bytes > self.config.max_head_bytes {
            return proxy::plain(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request header fields too large\n",
            );
        }
        // An absolute-form target's authority wins over `Host` (RFC 9112, 3.2.2).
        let host = match request.uri().authority() {
            Some(authority) => Some(authority.as_str().as_bytes()),
            None => request.headers().get(header::HOST).map(HeaderValue::as_bytes),
        };
        let Some(app) = self.route(host) else {
            return proxy::plain(StatusCode::NOT_FOUND, HOST_NOT_FOUND);
        };
        if self.misdirected(sni, &app) {
            return proxy::plain(StatusCode::MISDIRECTED_REQUEST, MISDIRECTED);
        }
        match own_endpoint(request.method().as_str(), request.uri().path()) {
            Some(OwnEndpoint::Server) => return proxy::plain(StatusCode::OK, "ok"),
            Some(OwnEndpoint::Status) => {
                let tls = self.tls.load_full().map(|resolver| https::tls_status(&resolver.info()));
                return app.status_response(tls.as_ref()).await;
            }
            None => {}
        }
        self.proxy(app, request, client).await
    }
}

/// The front door's own endpoints, answered without a worker.
enum OwnEndpoint {
    Server,
    Status,
}

/// Which of the front door's own endpoints a request names, if any (`path`
/// without its query). The hyper path answers them; the fast path leaves
/// them to it (`codec`), so both decide here.
fn own_endpoint(method: &str, path: &str) -> Option<OwnEndpoint> {
    if method != "GET" && method != "HEAD" {
        return None;
    }
    match path {
        "/server" => Some(OwnEndpoint::Server),
        "/status" => Some(OwnEndpoint::Status),
        _ => None,
    }
}

/// The service hyper calls for each request on one connection.
struct ProxyService<T: Transport> {
    front_door: Arc<FrontDoor<T>>,
    client: Option<IpAddr>,
    /// The name a TLS client asked for (`None` on plain HTTP).
    sni: Option<Arc<str>>,
    state: Arc<ProbeState>,
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<Response<Tracked<ResponseBody>>, Infallible>> + Send>>;

impl<T: Transport> hyper::service::Service<Request<Incoming>> for ProxyService<T> {
    type Response = Response<Tracked<ResponseBody>>;
    type Error = Infallible;
    // Boxed: hyper keeps a slot the size of this future for the connection's
    // whole busy life (about 2 KB); a box per request costs less.
    type Future = ServiceFuture;

    fn call(&self, request: Request<Incoming>) -> ServiceFuture {
        let active = self.state.start_request();
        let front_door = self.front_door.clone();
        let client = self.client;
        let sni = self.sni.clone();
        let hsts = front_door.config.hsts && hsts::request_applies(&request);
        Box::pin(async move {
            let mut response = front_door.serve(request, client, sni.as_deref()).await;
            if hsts {
                hsts::add_hsts(response.headers_mut());
            }
            Ok(response.map(|body| Tracked::new(body, active)))
        })
    }
}

/// Accepts and serves client connections until `shutdown` resolves; then
/// stops accepting, asks open connections to close after their current
/// request (an idle one lingers for one more, see [`idle::STOP_LINGER`]),
/// and returns once every connection has closed.
pub async fn run<T: Transport, L: Accept>(
    listener: L,
    front_door: Arc<FrontDoor<T>>,
    shutdown: impl Future<Output = ()>,
) {
    let (closing_tx, closing_rx) = watch::channel(false);
    let connections = tokio_util::task::TaskTracker::new();
    accept_until(listener, "front door", shutdown, |io, peer| {
        let fd = front_door.clone();
        let closing = closing_rx.clone();
        let builder = http1_builder(&fd.config);
        connections.spawn(client_conn::serve(io, fd, peer.ip, None, builder, closing));
    })
    .await;
    let _ = closing_tx.send(true);
    connections.close();
    connections.wait().await;
}

/// hyper's HTTP/1 server as every client connection uses it.
fn http1_builder(config: &FrontDoorConfig) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    // No header_read_timeout here: client_conn enforces it (see there).
    builder
        .keep_alive(true)
        .max_headers(config.max_headers)
        .max_buf_size(config.max_head_bytes.max(8192))
        .writev(false);
    builder
}
