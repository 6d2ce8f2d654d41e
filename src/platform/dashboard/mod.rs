//! The dashboard: the page a logged-in browser gets at `GET /` on the admin
//! address, its script and its style sheet, embedded in the binary (no
//! CDN, no external fetch: the machine may be offline).
//!
//! The page holds no data and no token. Its script polls `GET /api/apps`
//! and each app's `GET /api/apps/<name>/logs` with the login cookie
//! (every [`DEFAULT_POLL_MS`], or the `poll` query parameter:
//! `/?poll=500`, clamped to [`MIN_POLL_MS`]..=[`MAX_POLL_MS`]), turns two
//! polls of the counters into requests/s and 5xx/s, and drives the
//! buttons (start, stop, restart, ±1 worker) with same-origin `POST`s. A
//! poll that fails shows the `#stale` banner until one succeeds again.
//!
//! Everything an app supplies (hosts, environment keys, errors, worker
//! states, log lines) is inserted as text (`textContent`), never parsed as
//! HTML, and the [`CONTENT_SECURITY_POLICY`] makes that a rule the browser
//! enforces: scripts only from this origin, no inline script, and Trusted
//! Types with no policy, so any `innerHTML`-like write of a string throws.
//!
//! The files are served at [`Asset::path`]; they are not open: like every
//! path but `/health` and `/`, they need the cookie (the browser sends it
//! with the page's own subresource requests), so a browser that is not
//! logged in learns nothing, not even the script.
//!
//! Pure data: may import nothing (the API in `api/` serves it).

/// How often the page polls the API by default, in milliseconds.
pub const DEFAULT_POLL_MS: u32 = 5000;
/// The shortest poll interval `?poll=` may ask for (tests use it).
pub const MIN_POLL_MS: u32 = 100;
/// The longest poll interval `?poll=` may ask for.
pub const MAX_POLL_MS: u32 = 60_000;

/// The page's `Content-Security-Policy`: nothing by default; script, style
/// and fetches from this origin only; no inline script or style; no
/// framing, no `<base>`, no form posts elsewhere; and Trusted Types
/// required with no policy allowed, so no string ever becomes HTML.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; \
     require-trusted-types-for 'script'; trusted-types 'none'";

/// One of the dashboard's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asset {
    /// The HTML page, served at `/` to a logged-in browser.
    Page,
    /// `/dashboard.js`.
    Script,
    /// `/dashboard.css`.
    Style,
}

impl Asset {
    /// Every file.
    pub const ALL: [Asset; 3] = [Asset::Page, Asset::Script, Asset::Style];

    /// The asset served at `path`, other than the page (which `/` serves
    /// only when logged in, so the router decides).
    pub fn at(path: &str) -> Option<Asset> {
        match path {
            "/dashboard.js" => Some(Asset::Script),
            "/dashboard.css" => Some(Asset::Style),
            _ => None,
        }
    }

    /// Where it is served.
    pub fn path(self) -> &'static str {
        match self {
            Asset::Page => "/",
            Asset::Script => "/dashboard.js",
            Asset::Style => "/dashboard.css",
        }
    }

    /// Its `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Asset::Page => "text/html; charset=utf-8",
            Asset::Script => "text/javascript; charset=utf-8",
            Asset::Style => "text/css; charset=utf-8",
        }
    }

    /// Its bytes.
    pub fn body(self) -> &'static str {
        match self {
            Asset::Page => include_str!("page.html"),
            Asset::Script => include_str!("dashboard.js"),
            Asset::Style => include_str!("dashboard.css"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        let page = Asset::Page.body();
        assert!(page.contains(r#"<script src="/dashboard.js" defer></script>"#));
        assert!(page.contains(r#"<link rel="stylesheet" href="/dashboard.css">"#));
        // No inline script or style, nothing from elsewhere.
        assert_eq!(page.matches("<script").count(), 1, "one script, served by us");
        assert!(!page.contains("<style") && !page.contains(" style="), "no inline style");
        for asset in Asset::ALL {
            assert!(!asset.body().contains("http://") && !asset.body().contains("https://"));
            assert!(!asset.body().contains("//cdn"), "{asset:?}");
        }
    }

    #[test]
    fn the_script_writes_text_never_html() {
        let script = Asset::Script.body();
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "Function(",
        ] {
            assert!(!script.contains(sink), "the script uses {sink}");
        }
        assert!(script.contains("textContent"));
    }

    #[test]
    fn the_poll_bounds_are_the_scripts() {
        let script = Asset::Script.body();
        for (name, value) in [
            ("DEFAULT_POLL_MS", DEFAULT_POLL_MS),
            ("MIN_POLL_MS", MIN_POLL_MS),
            ("MAX_POLL_MS", MAX_POLL_MS),
        ] {
            assert!(script.contains(&format!("const {name} = {value};")), "{name}");
        }
    }

    #[test]
    fn assets_by_path() {
        for asset in [Asset::Script, Asset::Style] {
            assert_eq!(Asset::at(asset.path()), Some(asset));
        }
        assert_eq!(Asset::at("/"), None);
        assert_eq!(Asset::at("/dashboard.js/"), None);
        assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'none';"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }
}
