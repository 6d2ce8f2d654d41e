//! Which app a request goes to, by the host it names.
//!
//! A [`Routes`] table holds host names (exact and `*.<parent>`, matched as
//! [`HostTable::lookup`] does: the exact name first, then the wildcard one
//! label up) and an optional default app for every other host. A
//! single-app server has only the default; the platform has only names,
//! and a host it does not know gets `404 Host not found`.
//!
//! The table is immutable once built: the front door keeps it in an
//! `ArcSwap` and a change builds a new one (cloning a table clones its
//! `Arc`s, not the apps). Routing a request costs one atomic load, one
//! normalisation of its `Host` value that borrows it in the usual case
//! (already lowercase, no IPv6 literal) and one map lookup or two; no
//! allocation.

use std::borrow::Cow;
use std::sync::Arc;

use super::AppProxy;
use crate::config::hosts::{HostName, HostTable, request_host};
use crate::net::transport::Transport;

/// The body of the answer to a request no route matches (`404`, text/plain).
pub const HOST_NOT_FOUND: &str = "Host not found";

/// Host names to apps, and the app for every other host.
pub struct Routes<T: Transport> {
    default: Option<Arc<AppProxy<T>>>,
    hosts: HostTable<Arc<AppProxy<T>>>,
}

impl<T: Transport> Clone for Routes<T> {
    fn clone(&self) -> Routes<T> {
        Routes {
            default: self.default.clone(),
            hosts: self.hosts.clone(),
        }
    }
}

impl<T: Transport> Default for Routes<T> {
    fn default() -> Routes<T> {
        Routes::new()
    }
}

impl<T: Transport> Routes<T> {
    /// No routes: every request gets `404 Host not found`.
    pub fn new() -> Routes<T> {
        Routes {
            default: None,
            hosts: HostTable::new(),
        }
    }

    /// `app` for every host (a server started with an app path).
    pub fn every_host(app: Arc<AppProxy<T>>) -> Routes<T> {
        Routes {
            default: Some(app),
            hosts: HostTable::new(),
        }
    }

    /// Sets (or with `None` removes) the app for hosts no name matches.
    pub fn set_default(&mut self, app: Option<Arc<AppProxy<T>>>) {
        self.default = app;
    }

    /// The app for hosts no name matches.
    pub fn default_app(&self) -> Option<&Arc<AppProxy<T>>> {
        self.default.as_ref()
    }

    /// Routes `host` (exact, or a wildcard `*.<parent>`) to `app`; returns
    /// the app it routed to before.
    pub fn insert(&mut self, host: HostName, app: Arc<AppProxy<T>>) -> Option<Arc<AppProxy<T>>> {
        self.hosts.insert(host, app)
    }

    /// Removes `host`'s own route (a wildcard's, for a wildcard).
    pub fn remove(&mut self, host: &HostName) -> Option<Arc<AppProxy<T>>> {
        self.hosts.remove(host)
    }

    /// The named routes.
    pub fn hosts(&self) -> &HostTable<Arc<AppProxy<T>>> {
        &self.hosts
    }

    /// The app for a request whose host is `host` (the raw value of its
    /// `Host` header, or its target's authority; `None` without either):
    /// the exact name, else the wildcard, else the default app.
    pub fn route(&self, host: Option<&[u8]>) -> Option<&Arc<AppProxy<T>>> {
        if self.hosts.is_empty() {
            return self.default.as_ref();
        }
        host.and_then(route_key)
            .and_then(|key| self.hosts.lookup(&key))
            .or(self.default.as_ref())
    }
}

/// What [`request_host`] makes of a `Host` value, borrowed from it when it
/// needs no change but cutting (a port, one trailing dot): the usual case,
/// so routing allocates nothing. Uppercase letters and IPv6 literals take
/// `request_host` itself.
pub fn route_key(value: &[u8]) -> Option<Cow<'_, str>> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    // Visible ASCII only: valid UTF-8.
    let text = std::str::from_utf8(value).ok()?;
    if value[0] == b'[' || value.iter().any(u8::is_ascii_uppercase) {
        return request_host(text).map(Cow::Owned);
    }
    let host = match text.split_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        Some(_) => return None,
        None => text,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then_some(Cow::Borrowed(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn route_key_borrows_the_usual_host() {
        assert!(matches!(route_key(b"a.test:8080"), Some(Cow::Borrowed("a.test"))));
        assert!(matches!(route_key(b"a.test."), Some(Cow::Borrowed("a.test"))));
        assert!(matches!(route_key(b"127.0.0.1:80"), Some(Cow::Borrowed("127.0.0.1"))));
        assert_eq!(route_key(b"A.Test").as_deref(), Some("a.test"));
        assert_eq!(route_key(b"[0:0::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(route_key(b"a.test:x"), None);
        assert_eq!(route_key(b""), None);
        assert_eq!(route_key(b":80"), None);
        assert_eq!(route_key(b"a b"), None);
    }

    proptest! {
        /// The borrowed shortcut and `request_host` never disagree.
        #[test]
        fn route_key_is_request_host(value in "[a-zA-Z0-9.:\\[\\]*_ -]{0,24}") {
            let expected = request_host(&value);
            prop_assert_eq!(route_key(value.as_bytes()).map(Cow::into_owned), expected);
        }

        #[test]
        fn route_key_is_request_host_for_any_bytes(value in proptest::collection::vec(any::<u8>(), 0..16)) {
            let expected = std::str::from_utf8(&value).ok().and_then(request_host);
            prop_assert_eq!(route_key(&value).map(Cow::into_owned), expected);
        }
    }
}
