//! The platform's listeners for its apps' traffic and for scrapers, bound
//! before any app starts (a port in use, a missing certificate file or CA
//! stops the start with one line):
//!
//! - the apps' HTTP port (`http:`, `--bind`), which serves the apps, or
//!   only redirects to HTTPS with `protocol:https` (off with
//!   `--no-redirect-http`);
//! - the apps' HTTPS port (`https:<port>`, any HTTPS word), its
//!   certificates from `cert:`/`key:` or the dev CA (`https:smart` by
//!   default): by SNI, a leaf of its own for every host the platform
//!   routes (the apps' hosts and `hosts.json`), the default certificate
//!   for anything else; a request whose `Host` routes to another app than
//!   its SNI gets `421`;
//! - the metrics port (`--metrics-port` on `--admin-bind`): `/metrics` with
//!   every app's series under its `app` label, `/ready`, `/live`.
//!
//! Every front door gets the same route table ([`FrontDoors`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::hosts::HostName;
use crate::config::{Protocol, ServeConfig};
use crate::frontdoor::https::{TlsListener, run_tls};
use crate::frontdoor::redirect::run_redirect;
use crate::frontdoor::{FrontDoor, Routes};
use crate::net::listen::bind_tcp;
use crate::net::transport::UnixTransport;
use crate::os::clock::wall_micros;
use crate::server::{ServeError, https_listener_config, listener_config};
use crate::tls::{Certificates, TlsError};

/// The listeners, bound.
pub struct Bound {
    /// The apps' HTTP listener and its real port.
    pub http: Option<(TcpListener, u16)>,
    /// The apps' HTTPS listener and its real port.
    pub https: Option<(TcpListener, u16)>,
    /// Where HTTPS certificates come from.
    pub certificates: Option<Certificates>,
    /// The metrics port and its real address.
    pub metrics: Option<(TcpListener, SocketAddr)>,
}

/// Binds what `apps` (the apps' shared settings) asks for; the metrics
/// port on `admin_bind`.
pub fn bind(apps: &ServeConfig, admin_bind: IpAddr) -> Result<Bound, ServeError> {
    let certificates = match apps.protocol {
        Protocol::Http => None,
        Protocol::Https | Protocol::HttpAndHttps => Some(
            crate::tls::open(apps, crate::tls::resolver::system_clock()).map_err(|e| match e {
                TlsError::Usage(m) => ServeError::Usage(format!("rip-server: platform: {m}")),
                TlsError::Failed(m) => ServeError::Failed(format!("rip-server: platform: {m}")),
            })?,
        ),
    };
    let serves_http = match apps.protocol {
        Protocol::Http | Protocol::HttpAndHttps => true,
        Protocol::Https => apps.redirect_http,
    };
    let listen = |what: String, ip: IpAddr, port: u16| {
        let listener = bind_tcp(ip, port)
            .map_err(|e| ServeError::Failed(format!("rip-server: platform: {what} on {ip}: cannot listen: {e}")))?;
        let address = listener
            .local_addr()
            .map_err(|e| ServeError::Failed(format!("rip-server: platform: {what}: {e}")))?;
        Ok::<_, ServeError>((listener, address))
    };
    let http = match serves_http {
        true => Some(listen(format!("http:{}", apps.http_port), apps.bind, apps.http_port)?),
        false => None,
    };
    let https = match (apps.https_port, &certificates) {
        (Some(port), Some(_)) => Some(listen(format!("https:{port}"), apps.bind, port)?),
        _ => None,
    };
    let metrics = match apps.metrics_port {
        Some(port) => Some(listen(format!("--metrics-port={port}"), admin_bind, port)?),
        None => None,
    };
    Ok(Bound {
        http: http.map(|(l, a)| (l, a.port())),
        https: https.map(|(l, a)| (l, a.port())),
        certificates,
        metrics,
    })
}

/// The front doors of the apps' traffic, all routing by one table.
pub struct FrontDoors {
    /// The HTTP one (absent when HTTP only redirects, or is off).
    pub http: Option<Arc<FrontDoor<UnixTransport>>>,
    /// The HTTPS one.
    pub https: Option<Arc<FrontDoor<UnixTransport>>>,
    /// The certificates' resolver: its registered hosts follow the routes.
    pub certificates: Option<Certificates>,
}

impl FrontDoors {
    /// The front doors the listeners need (`has_http`, `has_https`), with
    /// no route yet.
    pub fn new(
        config: &ServeConfig,
        has_http: bool,
        has_https: bool,
        certificates: Option<Certificates>,
    ) -> FrontDoors {
        let seed = wall_micros() ^ u64::from(std::process::id());
        let resolver = certificates.as_ref().map(|c| c.resolver.clone());
        let redirecting = config.protocol == Protocol::Https;
        let http = (has_http && !redirecting).then(|| {
            let door = Arc::new(FrontDoor::with_routes(listener_config(config), Routes::new(), seed));
            door.set_tls(resolver.clone());
            door
        });
        let https = has_https.then(|| {
            let door = Arc::new(FrontDoor::with_routes(
                https_listener_config(config),
                Routes::new(),
                seed.rotate_left(17),
            ));
            door.set_tls(resolver.clone());
            door
        });
        FrontDoors {
            http,
            https,
            certificates,
        }
    }

    /// Routes `routes` on every front door, and gives each host of it a
    /// certificate of its own.
    pub fn set_routes(&self, routes: &Routes<UnixTransport>, hosts: Vec<HostName>) {
        for door in [&self.http, &self.https].into_iter().flatten() {
            door.set_routes(routes.clone());
        }
        if let Some(certificates) = &self.certificates {
            certificates.resolver.set_registered_hosts(hosts);
        }
    }
}

/// Serves the apps' listeners until `closing` resolves; returns the start
/// lines' addresses (`http://...`, `https://...`).
pub fn serve<F>(
    config: &ServeConfig,
    http: Option<(TcpListener, u16)>,
    https: Option<(TcpListener, u16)>,
    doors: &FrontDoors,
    closing: impl Fn() -> F,
) -> Result<Vec<String>, ServeError>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let host = display_host(config.bind);
    let mut lines = Vec::new();
    let https_port = https.as_ref().map(|(_, port)| *port);
    if let (Some((listener, port)), Some(door), Some(certificates)) = (https, &doors.https, &doors.certificates) {
        let server_config = crate::tls::server_config(certificates.resolver.clone())
            .map_err(|e| ServeError::Failed(format!("rip-server: platform: {e}")))?;
        let tls = TlsListener::new(server_config, config.tls_handshake_timeout, port);
        tokio::spawn(run_tls(listener, door.clone(), tls, closing()));
        lines.push(format!("https://{host}:{port}"));
    }
    if let Some((listener, port)) = http {
        match (&doors.http, doors.https.is_some()) {
            (Some(door), _) => {
                tokio::spawn(crate::frontdoor::run(listener, door.clone(), closing()));
            }
            (None, true) => {
                let to = https_port.unwrap_or_default();
                tokio::spawn(run_redirect(listener, to, config.header_timeout, closing()));
            }
            (None, false) => {}
        }
        lines.push(format!("http://{host}:{port}"));
    }
    Ok(lines)
}

/// The host of a start line's URL (`localhost` for every interface or
/// loopback).
pub fn display_host(bind: IpAddr) -> String {
    match bind {
        ip if ip.is_unspecified() || ip.is_loopback() => "localhost".to_owned(),
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}
