use proptest::prelude::*;

use super::*;

fn token() -> PlatformToken {
    PlatformToken::parse(&"0123456789abcdef".repeat(4)).unwrap()
}

fn t() -> String {
    token().as_str().to_owned()
}

fn admin() -> SocketAddr {
    "127.0.0.1:3000".parse().unwrap()
}

/// A request from the dashboard's own host, with no credential.
fn request<'a>(method: &'a str, path: &'a str) -> AuthRequest<'a> {
    AuthRequest {
        method,
        path,
        host: Some("127.0.0.1:3000"),
        ..AuthRequest::default()
    }
}

fn decide(request: &AuthRequest<'_>) -> Decision {
    authorize(request, &token(), admin())
}

#[test]
fn health_is_open_to_any_method_but_not_to_a_foreign_host() {
    for method in ["GET", "HEAD", "POST"] {
        assert_eq!(decide(&request(method, "/health")), Decision::Allow);
    }
    let rebound = AuthRequest {
        host: Some("evil.example:3000"),
        ..request("GET", "/health")
    };
    assert_eq!(decide(&rebound), Decision::Forbidden(Refusal::HostNotAdmin));
}

#[test]
fn the_dashboard_page_is_open_to_reads_only() {
    assert_eq!(decide(&request("GET", "/")), Decision::Allow);
    assert_eq!(decide(&request("HEAD", "/")), Decision::Allow);
    let other_query = AuthRequest {
        query: Some("refresh=1"),
        ..request("GET", "/")
    };
    assert_eq!(decide(&other_query), Decision::Allow);
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        assert_eq!(decide(&request(method, "/")), Decision::Unauthorized, "{method}");
    }
}

#[test]
fn the_login_url_sets_the_cookie_and_redirects_to_the_bare_page() {
    let t = t();
    for query in [format!("token={t}"), format!("a=1&token={t}&b=2")] {
        let login = AuthRequest {
            query: Some(&query),
            ..request("GET", "/")
        };
        let decision = decide(&login);
        assert_eq!(
            decision,
            Decision::LoginRedirect {
                set_cookie: format!("rip_platform={t}; HttpOnly; SameSite=Strict; Path=/"),
                location: "/",
            }
        );
        assert_eq!(decision.status(), Some(303));
        assert!(!format!("{decision:?}").contains(&t), "Debug shows the token");
    }
}

#[test]
fn a_wrong_or_misplaced_login_token_is_refused() {
    let t = t();
    let wrong = format!("token={}", "f".repeat(64));
    let short = format!("token={}", &t[..63]);
    let empty = "token=".to_owned();
    for query in [&wrong, &short, &empty] {
        let login = AuthRequest {
            query: Some(query),
            ..request("GET", "/")
        };
        assert_eq!(decide(&login), Decision::Unauthorized, "{query}");
    }
    // The token in a query counts only for the login itself.
    let query = format!("token={t}");
    for (method, path) in [("POST", "/"), ("GET", "/api/apps"), ("GET", "/index.html")] {
        let misplaced = AuthRequest {
            query: Some(&query),
            ..request(method, path)
        };
        assert_eq!(decide(&misplaced), Decision::Unauthorized, "{method} {path}");
    }
}

#[test]
fn every_api_request_reads_included_needs_the_token_or_the_cookie() {
    for (method, path) in [
        ("GET", "/api/apps"),
        ("GET", "/api/apps/blog/logs"),
        ("GET", "/api/stats"),
        ("POST", "/api/apps"),
        ("PATCH", "/api/apps/blog"),
        ("DELETE", "/api/apps/blog"),
    ] {
        let bare = request(method, path);
        assert_eq!(decide(&bare), Decision::Unauthorized, "{method} {path}");
        assert_eq!(decide(&bare).status(), Some(401));
    }
    let t = t();
    let good_bearers = [
        format!("Bearer {t}"),
        format!("bearer {t}"),
        format!("BEARER  {t}"),
        format!(" Bearer {t} "),
    ];
    for authorization in &good_bearers {
        let with = AuthRequest {
            authorization: Some(authorization),
            ..request("POST", "/api/apps")
        };
        assert_eq!(decide(&with), Decision::Allow, "{authorization}");
    }
    let bad_bearers = [
        format!("Bearer {}", "0".repeat(64)),
        format!("Bearer {}", &t[1..]),
        format!("Bearer {t}x"),
        format!("Basic {t}"),
        t.clone(),
        "Bearer".to_owned(),
        String::new(),
    ];
    for authorization in &bad_bearers {
        let with = AuthRequest {
            authorization: Some(authorization),
            ..request("GET", "/api/apps")
        };
        assert_eq!(decide(&with), Decision::Unauthorized, "{authorization}");
    }
}

#[test]
fn the_dashboard_cookie_is_a_credential_among_other_cookies() {
    let t = t();
    let good = [
        format!("rip_platform={t}"),
        format!("theme=dark; rip_platform={t}; lang=en"),
        format!("rip_platform=stale; rip_platform={t}"),
    ];
    for cookie in &good {
        let with = AuthRequest {
            cookies: vec![cookie],
            ..request("GET", "/api/apps")
        };
        assert_eq!(decide(&with), Decision::Allow, "{cookie}");
    }
    let split = ["theme=dark".to_owned(), format!("rip_platform={t}")];
    let with = AuthRequest {
        cookies: split.iter().map(String::as_str).collect(),
        ..request("GET", "/api/apps")
    };
    assert_eq!(decide(&with), Decision::Allow, "two Cookie headers");
    let bad = [
        format!("other={t}"),
        format!("rip_platformx={t}"),
        "rip_platform=".to_owned(),
        format!("rip_platform={}", "f".repeat(64)),
        format!("rip_platform=\"{t}\""),
    ];
    for cookie in &bad {
        let with = AuthRequest {
            cookies: vec![cookie],
            ..request("GET", "/api/apps")
        };
        assert_eq!(decide(&with), Decision::Unauthorized, "{cookie}");
    }
}

#[test]
fn paths_not_listed_as_open_need_a_credential() {
    for path in [
        "/api",
        "/api/",
        "//api/apps",
        "/API/apps",
        "/%61pi/apps",
        "/health/",
        "/health/../api/apps",
        "/./",
        "/index.html",
        "",
        "*",
    ] {
        assert_eq!(decide(&request("GET", path)), Decision::Unauthorized, "{path:?}");
    }
}

#[test]
fn a_host_that_is_not_the_admin_address_or_a_loopback_name_is_forbidden() {
    for host in [
        "127.0.0.1:3000",
        "localhost:3000",
        "LOCALHOST:3000",
        "localhost.:3000",
        "127.0.0.2:3000",
        "[::1]:3000",
    ] {
        let r = AuthRequest {
            host: Some(host),
            ..request("GET", "/health")
        };
        assert_eq!(decide(&r), Decision::Allow, "{host}");
    }
    for host in [
        "evil.example:3000",
        "evil.example",
        "localhost.evil.example:3000",
        "127.0.0.1.nip.io:3000",
        "localhost:3001",
        "localhost",
        "127.0.0.1",
        "10.0.0.5:3000",
        "[::1]",
        "::1:3000",
        "[::1]3000",
        "[localhost]:3000",
        "localhost:",
        "localhost:abc",
        "localhost:+3000",
        "localhost:99999",
        "localhost:3000:3000",
        "user@localhost:3000",
        "local host:3000",
        " localhost:3000",
        "",
    ] {
        let r = AuthRequest {
            host: Some(host),
            ..request("GET", "/health")
        };
        assert_eq!(decide(&r), Decision::Forbidden(Refusal::HostNotAdmin), "{host:?}");
        assert_eq!(decide(&r).status(), Some(403));
    }
    let none = AuthRequest {
        host: None,
        ..request("GET", "/health")
    };
    assert_eq!(decide(&none), Decision::Forbidden(Refusal::NoHost));
}

#[test]
fn the_host_check_follows_the_admin_address() {
    let t = token();
    let on = |admin: &str, host: &str| {
        let r = AuthRequest {
            host: Some(host),
            ..request("GET", "/health")
        };
        authorize(&r, &t, admin.parse().unwrap())
    };
    assert_eq!(on("10.0.0.5:3000", "10.0.0.5:3000"), Decision::Allow);
    assert_eq!(on("10.0.0.5:3000", "localhost:3000"), Decision::Allow);
    assert_eq!(
        on("10.0.0.5:3000", "10.0.0.6:3000"),
        Decision::Forbidden(Refusal::HostNotAdmin)
    );
    // Unspecified: any IP literal, still no name but localhost.
    assert_eq!(on("0.0.0.0:3000", "192.168.1.20:3000"), Decision::Allow);
    assert_eq!(on("[::]:3000", "[fd00::1]:3000"), Decision::Allow);
    assert_eq!(
        on("0.0.0.0:3000", "myhost.lan:3000"),
        Decision::Forbidden(Refusal::HostNotAdmin)
    );
    // Port 80: a Host without a port is right.
    assert_eq!(on("127.0.0.1:80", "localhost"), Decision::Allow);
    assert_eq!(on("[::1]:8080", "[::1]:8080"), Decision::Allow);
}

#[test]
fn a_cross_site_origin_is_forbidden_even_with_the_token() {
    let bearer = format!("Bearer {}", t());
    for origin in [
        "http://localhost:3000",
        "http://127.0.0.1:3000",
        "http://[::1]:3000",
        "https://localhost:3000",
    ] {
        let r = AuthRequest {
            origin: Some(origin),
            authorization: Some(&bearer),
            ..request("POST", "/api/apps")
        };
        assert_eq!(decide(&r), Decision::Allow, "{origin}");
    }
    for origin in [
        "null",
        "http://evil.example",
        "http://evil.example:3000",
        "http://localhost:3001",
        "http://localhost",
        "http://localhost:3000/",
        "http://localhost:3000/api",
        "ftp://localhost:3000",
        "localhost:3000",
        "",
    ] {
        let r = AuthRequest {
            origin: Some(origin),
            authorization: Some(&bearer),
            ..request("POST", "/api/apps")
        };
        assert_eq!(decide(&r), Decision::Forbidden(Refusal::CrossSiteOrigin), "{origin:?}");
        // The open paths too: another site's page learns nothing, not even health.
        let open = AuthRequest {
            origin: Some(origin),
            ..request("GET", "/health")
        };
        assert_eq!(
            decide(&open),
            Decision::Forbidden(Refusal::CrossSiteOrigin),
            "{origin:?}"
        );
    }
}

#[test]
fn decisions_map_to_statuses_and_refusals_to_one_line() {
    assert_eq!(Decision::Allow.status(), None);
    assert_eq!(Decision::Unauthorized.status(), Some(401));
    for why in [Refusal::NoHost, Refusal::HostNotAdmin, Refusal::CrossSiteOrigin] {
        assert_eq!(Decision::Forbidden(why).status(), Some(403));
        let line = why.to_string();
        assert!(!line.is_empty() && !line.contains('\n'));
    }
    assert_eq!(
        login_cookie(&token()),
        format!("rip_platform={}; HttpOnly; SameSite=Strict; Path=/", t())
    );
}

#[test]
fn from_parts_reads_the_headers_the_decision_needs() {
    let request = http::Request::builder()
        .method("PATCH")
        .uri("/api/apps/blog?x=1")
        .header("host", "localhost:3000")
        .header("origin", "http://localhost:3000")
        .header("authorization", "Bearer abc")
        .header("cookie", "a=1")
        .header("cookie", "rip_platform=xyz")
        .body(())
        .unwrap();
    let (parts, ()) = request.into_parts();
    let r = AuthRequest::from_parts(&parts.method, &parts.uri, &parts.headers);
    assert_eq!(
        r,
        AuthRequest {
            method: "PATCH",
            path: "/api/apps/blog",
            query: Some("x=1"),
            host: Some("localhost:3000"),
            origin: Some("http://localhost:3000"),
            authorization: Some("Bearer abc"),
            cookies: vec!["a=1", "rip_platform=xyz"],
        }
    );

    // HTTP/2: no Host header, the authority is in the URI.
    let uri: http::Uri = "http://127.0.0.1:3000/health".parse().unwrap();
    let headers = http::HeaderMap::new();
    let r = AuthRequest::from_parts(&http::Method::GET, &uri, &headers);
    assert_eq!(r.host, Some("127.0.0.1:3000"));
    assert_eq!(r.origin, None);

    // Two Host headers, or one that is not text: not ours.
    let mut headers = http::HeaderMap::new();
    headers.append("host", "localhost:3000".parse().unwrap());
    headers.append("host", "evil.example:3000".parse().unwrap());
    headers.append("origin", http::HeaderValue::from_bytes(b"http://\xff").unwrap());
    let uri: http::Uri = "/api/apps".parse().unwrap();
    let r = AuthRequest::from_parts(&http::Method::GET, &uri, &headers);
    assert_eq!(r.host, Some(""));
    assert_eq!(r.origin, Some(""));
    assert_eq!(
        authorize(&r, &token(), admin()),
        Decision::Forbidden(Refusal::HostNotAdmin)
    );
}

fn any_method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_owned()),
        Just("HEAD".to_owned()),
        Just("POST".to_owned()),
        Just("PATCH".to_owned()),
        Just("DELETE".to_owned()),
        "[A-Z]{1,8}",
    ]
}

fn any_host() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(Some("127.0.0.1:3000".to_owned())),
        Just(Some("localhost:3000".to_owned())),
        Just(Some("[::1]:3000".to_owned())),
        Just(Some("evil.example:3000".to_owned())),
        Just(None),
        ".{0,30}".prop_map(Some),
    ]
}

fn any_origin() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("http://localhost:3000".to_owned())),
        Just(Some("null".to_owned())),
        ".{0,30}".prop_map(Some),
    ]
}

/// Credentials of every shape but the right one: wrong tokens, the token
/// under another name or scheme, garbage. (The token's 64 characters
/// never come out of these patterns by chance; the test checks anyway.)
fn any_wrong_authorization() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        "[0-9a-f]{0,70}".prop_map(|s| Some(format!("Bearer {s}"))),
        Just(Some(format!("Basic {}", t()))),
        Just(Some(t())),
        ".{0,80}".prop_map(Some),
    ]
}

fn any_wrong_cookies() -> impl Strategy<Value = Vec<String>> {
    let one = prop_oneof![
        "[0-9a-f]{0,70}".prop_map(|s| format!("rip_platform={s}")),
        Just(format!("session={}", t())),
        Just(format!("rip_platform=\"{}\"", t())),
        ".{0,80}",
    ];
    proptest::collection::vec(one, 0..3)
}

/// What follows `/api`: the routes the API will have, and anything.
fn any_api_suffix() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("/".to_owned()),
        Just("/apps".to_owned()),
        Just("/apps/blog".to_owned()),
        Just("/apps/blog/logs".to_owned()),
        Just("/apps/blog/restart".to_owned()),
        Just("/stats".to_owned()),
        ".{0,40}",
    ]
}

fn any_query() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(format!("token={}", t()))),
        ".{0,40}".prop_map(Some),
    ]
}

/// An oracle written apart from the code under test: the request holds
/// the token as `Bearer <token>` (any whitespace, any case of the scheme)
/// or as a `rip_platform=<token>` cookie pair. It says yes to a superset of
/// what `authorize` accepts, so the properties below filter out no request
/// that `authorize` should refuse.
fn holds_the_credential(authorization: Option<&str>, cookies: &[String]) -> bool {
    let t = t();
    let bearer = authorization.is_some_and(|a| {
        let words: Vec<&str> = a.split_whitespace().collect();
        words.len() == 2 && words[0].eq_ignore_ascii_case("bearer") && words[1] == t
    });
    let pair = format!("rip_platform={t}");
    let cookie = cookies.iter().any(|c| c.split(';').any(|p| p.trim() == pair));
    bearer || cookie
}

proptest! {
    /// The guarantee: no request to `/api/*` without the token (as a bearer
    /// credential) or the cookie is ever served, whatever its method, host,
    /// origin, query (even one holding the token) or other headers.
    #[test]
    fn no_api_request_without_the_token_or_cookie_is_allowed(
        method in any_method(),
        suffix in any_api_suffix(),
        query in any_query(),
        host in any_host(),
        origin in any_origin(),
        authorization in any_wrong_authorization(),
        cookies in any_wrong_cookies(),
    ) {
        prop_assume!(!holds_the_credential(authorization.as_deref(), &cookies));
        let path = format!("/api{suffix}");
        let request = AuthRequest {
            method: &method,
            path: &path,
            query: query.as_deref(),
            host: host.as_deref(),
            origin: origin.as_deref(),
            authorization: authorization.as_deref(),
            cookies: cookies.iter().map(String::as_str).collect(),
        };
        let decision = authorize(&request, &token(), admin());
        prop_assert!(
            matches!(decision, Decision::Unauthorized | Decision::Forbidden(_)),
            "{request:?} -> {decision:?}"
        );
    }

    /// Deny by default: without a credential only `/health` and the page
    /// `GET|HEAD /` are served, whatever the path.
    #[test]
    fn without_a_credential_only_the_open_paths_are_served(
        method in any_method(),
        path in prop_oneof![Just("/".to_owned()), Just("/health".to_owned()), ".{0,40}"],
        host in any_host(),
        authorization in any_wrong_authorization(),
        cookies in any_wrong_cookies(),
    ) {
        prop_assume!(!holds_the_credential(authorization.as_deref(), &cookies));
        let request = AuthRequest {
            method: &method,
            path: &path,
            query: None,
            host: host.as_deref(),
            origin: None,
            authorization: authorization.as_deref(),
            cookies: cookies.iter().map(String::as_str).collect(),
        };
        if authorize(&request, &token(), admin()) == Decision::Allow {
            let open = path == "/health" || (path == "/" && (method == "GET" || method == "HEAD"));
            prop_assert!(open, "{request:?} was allowed");
        }
    }

    /// And the other way round: with the token, from the admin host and no
    /// foreign origin, every API request is served (so the guarantee above
    /// is not met by refusing everything).
    #[test]
    fn with_the_token_every_api_request_is_allowed(
        method in any_method(),
        suffix in any_api_suffix(),
        host in prop_oneof![Just("127.0.0.1:3000"), Just("localhost:3000"), Just("[::1]:3000")],
        use_cookie: bool,
    ) {
        let path = format!("/api{suffix}");
        let bearer = format!("Bearer {}", t());
        let cookie = format!("rip_platform={}", t());
        let request = AuthRequest {
            method: &method,
            path: &path,
            host: Some(host),
            authorization: (!use_cookie).then_some(bearer.as_str()),
            cookies: if use_cookie { vec![cookie.as_str()] } else { vec![] },
            ..AuthRequest::default()
        };
        prop_assert_eq!(authorize(&request, &token(), admin()), Decision::Allow);
    }
}
