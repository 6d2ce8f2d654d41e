//! Who may use the platform's API and dashboard: one decision per request,
//! from plain inputs (sans-IO: no socket, no clock, no file).
//!
//! The rules, in the order they are applied:
//!
//! 1. **DNS rebinding**: the `Host` (or, in HTTP/2, the URI's authority)
//!    must name the admin listener: `localhost`, a loopback IP literal, or
//!    the admin address itself, with the admin port (80 when the `Host`
//!    has none). When the admin address is unspecified (`0.0.0.0`, `::`)
//!    any IP literal is accepted: a rebinding attack needs a name the
//!    attacker controls, and an IP literal is not one. Anything else: 403.
//! 2. **Cross-site requests**: an `Origin` header, when present, must be an
//!    origin of the admin listener by the same rules (`http` or `https`);
//!    `null` and every other site get 403.
//! 3. **Open paths**: `/health` (any method) and the dashboard page
//!    `GET|HEAD /` need no credential; the page holds no data and fetches
//!    everything from `/api/*` with the cookie.
//! 4. **Login**: `GET|HEAD /?token=<token>` with the right token answers a
//!    redirect to `/` that sets the cookie (Jupyter's convention: the start
//!    line prints this URL). The redirect drops the query, so the token
//!    leaves the address bar and the page never contains it. A wrong token
//!    is 401.
//! 5. **Everything else** needs `Authorization: Bearer <token>` or the
//!    cookie, compared in constant time: `/api/*` (reads included: listings
//!    and logs hold secrets), and also any path not listed above (deny by
//!    default, so a path the router normalises differently, `//api` or
//!    `/api/../x`, is never open by mistake). Without either: 401. The
//!    token is not accepted in the query of any other path: URLs end up in
//!    logs and histories.
//!
//! The cookie's value is the token itself, `HttpOnly; SameSite=Strict;
//! Path=/`. A value derived from the token would grant exactly the same
//! power (anyone holding it drives the whole API), so it would hide nothing;
//! the token survives a restart of the platform, so the dashboard stays
//! logged in across one (a per-run session secret would log it out); and
//! replacing the token file revokes both at once. `HttpOnly` keeps page
//! scripts from reading it, `SameSite=Strict` keeps other sites' pages from
//! sending it. There is no `Secure` attribute: the admin listener speaks
//! plain HTTP on loopback.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::token::PlatformToken;

/// The dashboard's cookie.
pub const COOKIE_NAME: &str = "rip_platform";
/// Where a successful login sends the browser.
pub const LOGIN_LOCATION: &str = "/";
/// The status of the login redirect (See Other: the next request is a
/// `GET /`, whatever the method of this one).
pub const LOGIN_STATUS: u16 = 303;
/// The `WWW-Authenticate` value of a 401.
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"rip-server platform\"";
/// The query parameter of the login URL.
pub const TOKEN_PARAM: &str = "token";

/// The parts of a request the decision needs, borrowed from wherever the
/// adapter keeps them. [`AuthRequest::from_parts`] builds one from `http`'s
/// types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthRequest<'a> {
    /// The method, as sent (`GET`).
    pub method: &'a str,
    /// The path, without the query (`/api/apps`).
    pub path: &'a str,
    /// The query, without the `?`.
    pub query: Option<&'a str>,
    /// The `Host` header or, failing that, the URI's authority. A value
    /// that cannot be ours (two `Host` headers, bytes that are not text)
    /// is given as `Some("")`.
    pub host: Option<&'a str>,
    /// The `Origin` header (`Some("")` when unreadable or repeated).
    pub origin: Option<&'a str>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// Every `Cookie` header (HTTP/2 may split cookies into several).
    pub cookies: Vec<&'a str>,
}

impl<'a> AuthRequest<'a> {
    /// The decision's inputs from a request's parts.
    pub fn from_parts(method: &'a http::Method, uri: &'a http::Uri, headers: &'a http::HeaderMap) -> AuthRequest<'a> {
        // One readable value, `Some("")` for several or unreadable ones,
        // `None` for none.
        let single = |name: http::header::HeaderName| -> Option<&'a str> {
            let mut values = headers.get_all(name).iter();
            let first = values.next()?;
            if values.next().is_some() {
                return Some("");
            }
            Some(first.to_str().unwrap_or(""))
        };
        AuthRequest {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query(),
            host: single(http::header::HOST).or_else(|| uri.authority().map(|a| a.as_str())),
            origin: single(http::header::ORIGIN),
            authorization: headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()),
            cookies: headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect(),
        }
    }
}

/// Why a request is refused with 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Host` header (and no authority in the URI).
    NoHost,
    /// The `Host` is not the admin listener (DNS rebinding).
    HostNotAdmin,
    /// The `Origin` is another site.
    CrossSiteOrigin,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::NoHost => "the request has no Host",
            Refusal::HostNotAdmin => "the Host is not this platform's admin address",
            Refusal::CrossSiteOrigin => "cross-site requests are refused",
        })
    }
}

/// What to do with a request.
#[derive(Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve it.
    Allow,
    /// 401 (with [`WWW_AUTHENTICATE`]): no credential, or a wrong one.
    Unauthorized,
    /// 403, and why.
    Forbidden(Refusal),
    /// A login: answer [`LOGIN_STATUS`] with `Location: location` and
    /// `Set-Cookie: set_cookie` (and `Cache-Control: no-store`,
    /// `Referrer-Policy: no-referrer`, so the URL with the token is neither
    /// cached nor sent on).
    LoginRedirect {
        /// The whole `Set-Cookie` value.
        set_cookie: String,
        /// The `Location` value.
        location: &'static str,
    },
}

// By hand: the cookie holds the token, and a test failure or a log line
// must not print it.
impl fmt::Debug for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow => f.write_str("Allow"),
            Decision::Unauthorized => f.write_str("Unauthorized"),
            Decision::Forbidden(why) => f.debug_tuple("Forbidden").field(why).finish(),
            Decision::LoginRedirect { location, .. } => f
                .debug_struct("LoginRedirect")
                .field("set_cookie", &"<redacted>")
                .field("location", location)
                .finish(),
        }
    }
}

impl Decision {
    /// The status to answer instead of serving, `None` for [`Decision::Allow`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Decision::Allow => None,
            Decision::Unauthorized => Some(401),
            Decision::Forbidden(_) => Some(403),
            Decision::LoginRedirect { .. } => Some(LOGIN_STATUS),
        }
    }
}

/// The `Set-Cookie` value that logs a browser in.
pub fn login_cookie(token: &PlatformToken) -> String {
    format!("{COOKIE_NAME}={}; HttpOnly; SameSite=Strict; Path=/", token.as_str())
}

/// The decision for `request` on the admin listener bound at `admin` (the
/// real address, after a port 0 was resolved), whose token is `token`.
pub fn authorize(request: &AuthRequest<'_>, token: &PlatformToken, admin: SocketAddr) -> Decision {
    match request.host {
        None => return Decision::Forbidden(Refusal::NoHost),
        Some(host) if !is_admin_authority(host, 80, admin) => return Decision::Forbidden(Refusal::HostNotAdmin),
        Some(_) => {}
    }
    if let Some(origin) = request.origin
        && !is_admin_origin(origin, admin)
    {
        return Decision::Forbidden(Refusal::CrossSiteOrigin);
    }
    let reads_page = matches!(request.method, "GET" | "HEAD");
    if request.path == "/health" {
        return Decision::Allow;
    }
    if request.path == "/" && reads_page {
        return match request.query.and_then(token_param) {
            None => Decision::Allow,
            Some(presented) if token.matches(presented.as_bytes()) => Decision::LoginRedirect {
                set_cookie: login_cookie(token),
                location: LOGIN_LOCATION,
            },
            Some(_) => Decision::Unauthorized,
        };
    }
    if has_credential(request, token) {
        Decision::Allow
    } else {
        Decision::Unauthorized
    }
}

/// Whether the request carries the token as a bearer credential or in the
/// dashboard's cookie. Every candidate is compared in constant time.
fn has_credential(request: &AuthRequest<'_>, token: &PlatformToken) -> bool {
    let bearer = request.authorization.and_then(bearer_credential);
    let mut found = bearer.is_some_and(|presented| token.matches(presented.as_bytes()));
    for header in &request.cookies {
        for pair in header.split(';') {
            if let Some((name, value)) = pair.trim_ascii().split_once('=')
                && name == COOKIE_NAME
            {
                found |= token.matches(value.as_bytes());
            }
        }
    }
    found
}

/// The credential of `Bearer <credential>` (the scheme in any case).
fn bearer_credential(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.trim_ascii().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim_start_matches(' '))
}

/// The value of the first `token=` parameter of a query.
fn token_param(query: &str) -> Option<&str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == TOKEN_PARAM)
        .map(|(_, value)| value)
}

/// Whether `authority` (`host[:port]`, as in a `Host` header) names the
/// admin listener; `default_port` is the port when none is given.
fn is_admin_authority(authority: &str, default_port: u16, admin: SocketAddr) -> bool {
    let Some((host, port)) = split_authority(authority, default_port) else {
        return false;
    };
    if port != admin.port() {
        return false;
    }
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    if host == "localhost" {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip == admin.ip() || admin.ip().is_unspecified(),
        Err(_) => false,
    }
}

/// The host and port of an authority: `name`, `name:80`, `1.2.3.4:80`,
/// `[::1]:80` (the brackets removed); `default_port` when it has none.
/// `None` when it is not an authority.
fn split_authority(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        // Only an IPv6 literal goes in brackets.
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<Ipv6Addr>().ok()?;
        let port = if after.is_empty() {
            None
        } else {
            Some(after.strip_prefix(':')?)
        };
        (inside, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let name_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
        if host.is_empty() || !host.bytes().all(name_byte) {
            return None;
        }
        (host, port)
    };
    let port = match port {
        None => default_port,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse().ok()?,
        Some(_) => return None,
    };
    Some((host, port))
}

/// Whether an `Origin` value (`scheme://host[:port]`) is the admin listener's.
fn is_admin_origin(origin: &str, admin: SocketAddr) -> bool {
    let (authority, default_port) = if let Some(rest) = origin.strip_prefix("http://") {
        (rest, 80)
    } else if let Some(rest) = origin.strip_prefix("https://") {
        (rest, 443)
    } else {
        return false; // `null`, another scheme, garbage
    };
    !authority.contains('/') && is_admin_authority(authority, default_port, admin)
}

#[cfg(test)]
mod tests;
