//! The API's paths: which endpoint a path names and which methods it takes.
//! Pure: the handlers live in `mod.rs` (reads) and `changes.rs` (changes).

use http::Method;

use crate::platform::dashboard::Asset;

/// An action on one app: `POST /api/apps/<name>/<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `start`.
    Start,
    /// `stop` (drain).
    Stop,
    /// `restart` (rolling).
    Restart,
    /// `scale` with `{"workers":N}`.
    Scale,
}

impl Action {
    fn from_segment(segment: &str) -> Option<Action> {
        match segment {
            "start" => Some(Action::Start),
            "stop" => Some(Action::Stop),
            "restart" => Some(Action::Restart),
            "scale" => Some(Action::Scale),
            _ => None,
        }
    }

    /// The `status` of the answer: `started`, `stopped`, `restarted`, `scaled`.
    pub fn done(self) -> &'static str {
        match self {
            Action::Start => "started",
            Action::Stop => "stopped",
            Action::Restart => "restarted",
            Action::Scale => "scaled",
        }
    }
}

/// The endpoint a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/health` (open).
    Health,
    /// `/`, the dashboard (or, not logged in, how to log in).
    Page,
    /// The dashboard's script or style sheet (`/dashboard.js`, `/dashboard.css`).
    Asset(Asset),
    /// `/api/stats`.
    Stats,
    /// `/api/apps`.
    Apps,
    /// `/api/apps/<name>`.
    App(&'a str),
    /// `/api/apps/<name>/logs`.
    Logs(&'a str),
    /// `/api/apps/<name>/<action>`.
    Action(&'a str, Action),
    /// Any other path under `/api/`.
    UnknownApi,
    /// Anything else.
    Unknown,
}

impl<'a> Route<'a> {
    /// The endpoint of `path` (without the query). The name segment is
    /// taken as it is: app names are `[a-z0-9-]`, so a name that needs
    /// percent-decoding names no app and gets `App not found`.
    pub fn parse(path: &'a str) -> Route<'a> {
        match path {
            "/health" => return Route::Health,
            "/" => return Route::Page,
            "/api/stats" => return Route::Stats,
            "/api/apps" => return Route::Apps,
            _ => {}
        }
        if let Some(asset) = Asset::at(path) {
            return Route::Asset(asset);
        }
        let Some(rest) = path.strip_prefix("/api/") else {
            return if path == "/api" {
                Route::UnknownApi
            } else {
                Route::Unknown
            };
        };
        let Some(under_apps) = rest.strip_prefix("apps/") else {
            return Route::UnknownApi;
        };
        let mut segments = under_apps.split('/');
        let name = segments.next().unwrap_or("");
        let action = segments.next();
        if name.is_empty() || segments.next().is_some() {
            return Route::UnknownApi;
        }
        match action {
            None => Route::App(name),
            Some("logs") => Route::Logs(name),
            Some(segment) => Action::from_segment(segment).map_or(Route::UnknownApi, |a| Route::Action(name, a)),
        }
    }

    /// The methods it answers (HEAD wherever GET), for `405` and `Allow`;
    /// empty for the unknown paths (they are `404`).
    pub fn methods(&self) -> &'static [Method] {
        const READ: &[Method] = &[Method::GET, Method::HEAD];
        match self {
            Route::Health | Route::Page | Route::Asset(_) | Route::Stats | Route::Logs(_) => READ,
            Route::Apps => &[Method::GET, Method::HEAD, Method::POST],
            Route::App(_) => &[Method::GET, Method::HEAD, Method::PATCH, Method::DELETE],
            Route::Action(..) => &[Method::POST],
            Route::UnknownApi | Route::Unknown => &[],
        }
    }

    /// Whether a request with `method` here reads a body (only the
    /// endpoints that take one do; the others never wait for it).
    pub fn takes_body(&self, method: &Method) -> bool {
        match self {
            Route::Apps => method == Method::POST,
            Route::App(_) => method == Method::PATCH,
            Route::Action(_, Action::Scale) => method == Method::POST,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_endpoints() {
        assert_eq!(Route::parse("/health"), Route::Health);
        assert_eq!(Route::parse("/"), Route::Page);
        assert_eq!(Route::parse("/dashboard.js"), Route::Asset(Asset::Script));
        assert_eq!(Route::parse("/dashboard.css"), Route::Asset(Asset::Style));
        assert_eq!(Route::parse("/api/stats"), Route::Stats);
        assert_eq!(Route::parse("/api/apps"), Route::Apps);
        assert_eq!(Route::parse("/api/apps/blog"), Route::App("blog"));
        assert_eq!(Route::parse("/api/apps/blog/logs"), Route::Logs("blog"));
        assert_eq!(
            Route::parse("/api/apps/blog/start"),
            Route::Action("blog", Action::Start)
        );
        assert_eq!(Route::parse("/api/apps/blog/stop"), Route::Action("blog", Action::Stop));
        assert_eq!(
            Route::parse("/api/apps/blog/restart"),
            Route::Action("blog", Action::Restart)
        );
        assert_eq!(
            Route::parse("/api/apps/blog/scale"),
            Route::Action("blog", Action::Scale)
        );
        for unknown in [
            "/api",
            "/api/",
            "/api/apps/",
            "/api/apps//start",
            "/api/apps/blog/",
            "/api/apps/blog/reboot",
            "/api/apps/blog/logs/x",
            "/api/nothing",
            "/api/stats/x",
            "/api/dashboard.js",
        ] {
            assert_eq!(Route::parse(unknown), Route::UnknownApi, "{unknown}");
        }
        for unknown in [
            "/index.html",
            "//api/apps",
            "/apix",
            "/health/",
            "/dashboard.js/",
            "/dashboard.css.map",
        ] {
            assert_eq!(Route::parse(unknown), Route::Unknown, "{unknown}");
        }
    }

    #[test]
    fn methods_and_bodies() {
        assert!(Route::Apps.methods().contains(&Method::POST));
        assert!(!Route::Stats.methods().contains(&Method::POST));
        assert_eq!(Route::Asset(Asset::Script).methods(), Route::Page.methods());
        assert!(Route::UnknownApi.methods().is_empty());
        assert!(Route::Apps.takes_body(&Method::POST));
        assert!(!Route::Apps.takes_body(&Method::GET));
        assert!(Route::App("a").takes_body(&Method::PATCH));
        assert!(!Route::App("a").takes_body(&Method::DELETE));
        assert!(Route::Action("a", Action::Scale).takes_body(&Method::POST));
        assert!(!Route::Action("a", Action::Restart).takes_body(&Method::POST));
    }
}
