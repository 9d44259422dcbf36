//! Issue 11, items 4, 6 and part of 9: what the client sends cannot remove or forge the
//! gateway's headers, the gateway's credentials never reach the upstream, the upstream cannot set
//! the gateway's cookies, and the gateway's own answers carry their security headers. Raw
//! HTTP/1 bytes over TCP (names and repeats go out exactly as written), HTTP/2 over TLS where
//! the item is about HTTP/2 (split `Cookie` fields).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use wxgate::session::SessionId;

/// The upstream: echoes the request line and headers it got (as the common echo does: JSON
/// `headers` = `[[name, value], ...]`, in order, repeats kept); under `/set-cookie` it also tries
/// to set the gateway's cookies next to one of its own.
async fn start_echo() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let headers: Vec<(String, String)> = req
                        .headers()
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.to_string(),
                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                            )
                        })
                        .collect();
                    let body =
                        serde_json::json!({"uri": req.uri().to_string(), "headers": headers});
                    let mut b = Response::builder().header("content-type", "application/json");
                    if req.uri().path().starts_with("/set-cookie") {
                        b = b
                            .header(
                                "set-cookie",
                                "_wxgate=AAAAAAAAAAAAAAAAAAAAAA; Path=/; HttpOnly",
                            )
                            .header("set-cookie", "app_pref=1; Path=/")
                            .header("set-cookie", " _wxgate_login = fixed; Path=/_wxgate")
                            .header("set-cookie", "_wxgate_app=2")
                            // Nameless: browsers send it back as `_wxgate=BBB…`.
                            .header("set-cookie", "=_wxgate=BBBBBBBBBBBBBBBBBBBBBB; Path=/");
                    }
                    Ok::<_, Infallible>(
                        b.body(Full::new(bytes::Bytes::from(body.to_string())))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// A live session put straight into the gateway's store; returns its id.
async fn session(gw: &Gateway, openid: &str, unionid: Option<&str>) -> String {
    let app = &gw.running.as_ref().unwrap().app;
    seed_session(app, &website_session(openid, unionid)).await
}

/// A value in the session-id format that is no session.
fn stale_id() -> String {
    SessionId::random().encode()
}

const PUBLIC: &str = "[access]\npublic_paths = [\"/public/\"]\n";

async fn gateway(extra: &str) -> Gateway {
    let up = start_echo().await;
    start_gateway(&config_toml(up, "http://127.0.0.1:9", extra)).await
}

/// One raw HTTP/1.1 exchange, parsed.
struct RawReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawReply {
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// Every value of `name` the upstream received.
    fn upstream(&self, name: &str) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("not the upstream's echo: {} {}", self.status, self.body));
        v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p[0] == name)
            .map(|p| p[1].as_str().unwrap().to_string())
            .collect()
    }
    fn upstream_names(&self) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&self.body).unwrap();
        v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_str().unwrap().to_string())
            .collect()
    }
}

/// Send `head` (request line and header lines, without the blank line; `Connection: close` is
/// added unless the head has a Connection line) and read the whole answer.
async fn exchange(gw: &Gateway, head: &str) -> RawReply {
    let close = if head.to_ascii_lowercase().contains("\r\nconnection:") {
        ""
    } else {
        "Connection: close\r\n"
    };
    let out = raw(gw.addr, format!("{head}\r\n{close}\r\n").as_bytes()).await;
    let (h, body) = out
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer: {out:?}"));
    let mut lines = h.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    RawReply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Issue 11 item 4: `Connection` named the gateway's own headers, and they were removed after
/// the gateway added them: the upstream saw an identity-less user with no X-Forwarded-For.
#[tokio::test]
async fn connection_cannot_remove_the_gateways_headers() {
    let gw = gateway(PUBLIC).await;
    let sid = session(&gw, "oOpen1", Some("oUnion1")).await;
    let named = "x-wechat-unionid, X-WeChat-OpenId, x-wechat-source, x-wechat-appid, \
                 x-forwarded-for, x-forwarded-proto, x-forwarded-host, host, x-hop, close";
    for path in ["/private", "/public/x"] {
        let r = exchange(
            &gw,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: app.example.com\r\nCookie: _wxgate={sid}\r\n\
                 X-Hop: 1\r\nX-End: kept\r\nConnection: {named}"
            ),
        )
        .await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.upstream("host"), ["app.example.com"], "{path}");
        assert_eq!(r.upstream("x-forwarded-for"), ["127.0.0.1"], "{path}");
        assert_eq!(r.upstream("x-forwarded-proto"), ["http"], "{path}");
        assert_eq!(
            r.upstream("x-forwarded-host"),
            ["app.example.com"],
            "{path}"
        );
        // Still hop-by-hop: what Connection names (besides Host) does not go on.
        assert!(r.upstream("x-hop").is_empty(), "{path}");
        assert!(r.upstream("connection").is_empty(), "{path}");
        assert_eq!(r.upstream("x-end"), ["kept"], "{path}");
        if path == "/private" {
            assert_eq!(r.upstream("x-wechat-unionid"), ["oUnion1"]);
            assert_eq!(r.upstream("x-wechat-openid"), ["oOpen1"]);
            assert_eq!(r.upstream("x-wechat-source"), ["website"]);
            assert_eq!(r.upstream("x-wechat-appid"), ["wx1000000000000001"]);
        }
    }
}

/// DESIGN.md "Proxying": every `Proxy-*` header is hop-by-hop, not only the three the gateway
/// knew by name; and `Proxy` itself never reaches the upstream, where a CGI app (PHP behind
/// nginx's `fastcgi_params`) would take it for its `HTTP_PROXY` ("httpoxy").
#[tokio::test]
async fn proxy_headers_never_reach_the_upstream() {
    let gw = gateway(PUBLIC).await;
    let sid = session(&gw, "oOpen1", Some("oUnion1")).await;
    for path in ["/private", "/public/x"] {
        let r = exchange(
            &gw,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: app.example.com\r\nCookie: _wxgate={sid}\r\n\
                 Proxy: http://evil.example:8080\r\nProxy-Authorization: Basic eDp5\r\n\
                 Proxy-Connection: keep-alive\r\nProxy-Foo: 1\r\nProxyish: kept\r\nX-End: kept"
            ),
        )
        .await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let names = r.upstream_names();
        assert!(
            !names
                .iter()
                .any(|n| n == "proxy" || n.starts_with("proxy-")),
            "{path}: {names:?}"
        );
        assert_eq!(r.upstream("proxyish"), ["kept"], "{path}");
        assert_eq!(r.upstream("x-end"), ["kept"], "{path}");
    }
}

/// Issue 11 item 6: a gateway bearer token went upstream on public paths, and on protected
/// paths when a cookie authenticated the request.
#[tokio::test]
async fn gateway_bearer_tokens_never_reach_the_upstream() {
    let gw = gateway(PUBLIC).await;
    let sid = session(&gw, "oOpen1", Some("oUnion1")).await;
    let other = session(&gw, "oOpen2", Some("oUnion2")).await;
    let stale = stale_id();
    let cases = [
        // (path, cookie, Authorization)
        ("/public/x", None, format!("Bearer {sid}")),
        ("/public/x", None, format!("bearer {stale}")),
        ("/public/x", Some(&sid), format!("Bearer {other}")),
        ("/private", Some(&sid), format!("Bearer {other}")),
        ("/private", Some(&sid), format!("Bearer {stale}")),
        ("/private", None, format!("Bearer {sid}")),
    ];
    for (path, cookie, auth) in &cases {
        let cookie = cookie
            .map(|c| format!("Cookie: _wxgate={c}\r\n"))
            .unwrap_or_default();
        let r = exchange(
            &gw,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{cookie}Authorization: {auth}"),
        )
        .await;
        assert_eq!(r.status, 200, "{path} {auth}: {}", r.body);
        assert!(
            r.upstream("authorization").is_empty(),
            "gateway token reached the upstream on {path}: {}",
            r.body
        );
        if *path == "/private" {
            // The cookie's user when there is one, the token's otherwise.
            assert_eq!(r.upstream("x-wechat-openid"), ["oOpen1"], "{path} {auth}");
        }
    }
    // Anything else in Authorization is the application's: it passes.
    for auth in [
        "Basic dXNlcjpwYXNz",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig",
        "Bearer short",
    ] {
        for path in ["/public/x", "/private"] {
            let r = exchange(
                &gw,
                &format!(
                    "GET {path} HTTP/1.1\r\nHost: x\r\nCookie: _wxgate={sid}\r\nAuthorization: {auth}"
                ),
            )
            .await;
            assert_eq!(r.status, 200);
            assert_eq!(r.upstream("authorization"), [auth], "{path}");
        }
    }
    // Two Authorization lines: the gateway's goes, the other stays.
    let r = exchange(
        &gw,
        &format!(
            "GET /private HTTP/1.1\r\nHost: x\r\nCookie: _wxgate={sid}\r\n\
             Authorization: Basic dXNlcjpwYXNz\r\nAuthorization: Bearer {other}"
        ),
    )
    .await;
    assert_eq!(r.upstream("authorization"), ["Basic dXNlcjpwYXNz"]);
}

/// Issue 11 item 9: with two session cookies (a stale one first: another path or subdomain,
/// an old login) the first won and the user was sent to log in again.
#[tokio::test]
async fn a_stale_session_cookie_first_falls_back_to_the_live_one() {
    let gw = gateway("").await;
    let sid = session(&gw, "oOpen1", Some("oUnion1")).await;
    let s1 = stale_id();
    let s2 = stale_id();
    for cookies in [
        format!("Cookie: _wxgate={s1}; _wxgate={sid}"),
        format!("Cookie: _wxgate=not-an-id; _wxgate={s1}; a=1; _wxgate={sid}"),
        format!("Cookie: _wxgate={s1}\r\nCookie: a=1; _wxgate={sid}"),
    ] {
        let r = exchange(
            &gw,
            &format!("GET /private HTTP/1.1\r\nHost: x\r\n{cookies}"),
        )
        .await;
        assert_eq!(r.status, 200, "{cookies}: {}", r.body);
        assert_eq!(r.upstream("x-wechat-openid"), ["oOpen1"]);
        let others: Vec<&str> = if cookies.contains("a=1") {
            vec!["a=1"]
        } else {
            vec![]
        };
        assert_eq!(
            r.upstream("cookie"),
            others,
            "only the gateway's cookies are taken out"
        );
        // The gateway's own endpoints read it the same way.
        let r = exchange(
            &gw,
            &format!("GET /_wxgate/userinfo HTTP/1.1\r\nHost: x\r\n{cookies}"),
        )
        .await;
        assert_eq!(r.status, 200, "{cookies}: {}", r.body);
        assert!(r.body.contains("oOpen1"));
    }
    // Bounded: at most four session cookies are looked up per request.
    let many = format!("_wxgate={s1}; _wxgate={s2}; _wxgate={s1}; _wxgate={s2}; _wxgate={sid}");
    let r = exchange(
        &gw,
        &format!("GET /private HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nCookie: {many}"),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
}

/// Issue 11 item 9: `X-WeChat.UnionId`, `X-WeChat~UnionId`, `XWeChat-UnionId` and the WeCom
/// names were not taken for identity headers and reached the upstream.
#[tokio::test]
async fn identity_spoofs_with_any_separator_are_removed() {
    let gw = gateway(PUBLIC).await;
    let sid = session(&gw, "oOpen1", Some("oUnion1")).await;
    let spoofs = "X-WeChat.UnionId: evil1\r\nX-WeChat~UnionId: evil2\r\nXWeChat-UnionId: evil3\r\n\
                  X_WeChat_UnionId: evil4\r\nXWECHATOPENID: evil5\r\nX-We-Chat-Source: evil6\r\n\
                  X-WeCom-UserId: evil7\r\nX.WeCom.CorpId: evil8\r\nx_wecom_userid: evil9\r\n\
                  X-WeChat-Phone: evil10\r\nX-WeChat-UserId: evil11\r\nX-Request-Id: kept";
    for (path, cookie) in [
        ("/public/x", String::new()),
        ("/public/x", format!("Cookie: _wxgate={sid}\r\n")),
        ("/private", format!("Cookie: _wxgate={sid}\r\n")),
    ] {
        let r = exchange(
            &gw,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{cookie}{spoofs}"),
        )
        .await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(
            !r.body.contains("evil"),
            "a spoof reached the upstream on {path}: {}",
            r.body
        );
        assert_eq!(r.upstream("x-request-id"), ["kept"]);
        if path == "/private" {
            assert_eq!(r.upstream("x-wechat-unionid"), ["oUnion1"]);
            assert_eq!(r.upstream("x-wechat-source"), ["website"]);
        }
    }
}

/// Issue 11 item 9: an upstream `Set-Cookie: _wxgate=…` reached the browser (session fixation
/// through the upstream).
#[tokio::test]
async fn the_upstream_cannot_set_the_gateways_cookies() {
    let gw = gateway("[access]\npublic_paths = [\"/set-cookie/public\"]\n").await;
    let sid = session(&gw, "oOpen1", None).await;
    for (path, cookie) in [
        ("/set-cookie/public", String::new()),
        ("/set-cookie/private", format!("Cookie: _wxgate={sid}\r\n")),
    ] {
        let r = exchange(&gw, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{cookie}")).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(
            r.all("set-cookie"),
            ["app_pref=1; Path=/", "_wxgate_app=2"],
            "{path}"
        );
    }
}

/// Every header of DESIGN.md "Endpoints" on a gateway answer (`page`: also the CSP).
fn assert_gateway_answer(what: &str, h: &http::HeaderMap) {
    assert_eq!(
        h.get("cache-control").map(|v| v.to_str().unwrap()),
        Some("no-store"),
        "{what}"
    );
    assert_eq!(
        h.get("referrer-policy").map(|v| v.to_str().unwrap()),
        Some("no-referrer"),
        "{what}"
    );
    assert_eq!(
        h.get("x-content-type-options").map(|v| v.to_str().unwrap()),
        Some("nosniff"),
        "{what}"
    );
    let page = h
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/html"));
    if page {
        assert_eq!(
            h.get("content-security-policy")
                .map(|v| v.to_str().unwrap()),
            Some("frame-ancestors 'none'"),
            "{what}"
        );
    }
}

async fn fetch(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(gw.url(path));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(&client(), b.body(empty()).unwrap()).await
}

/// A request to the gateway (path, headers) and its expected status, and whether it is a page.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, StatusCode, bool);

/// Issue 11 item 9: the gateway's own answers (the callback URL holds the code) had no
/// Referrer-Policy, nosniff or frame-ancestors; upstream answers must stay as they are.
#[tokio::test]
async fn gateway_answers_carry_security_headers_upstream_answers_do_not() {
    let gw = gateway("[access]\npublic_paths = [\"/public/\"]\nrequire_unionid = true\n").await;
    let sid = session(&gw, "oOpen1", Some("oUnion1")).await;
    let no_union = session(&gw, "oOpen2", None).await;
    let cookie = format!("_wxgate={sid}");
    let no_union = format!("_wxgate={no_union}");
    let html = ("accept", "text/html");
    let pc = ("user-agent", PC_UA);
    let cases: Vec<Case> = vec![
        // (path, headers, status, is a page)
        (
            "/_wxgate/login?rd=%2F",
            vec![pc, html],
            StatusCode::FOUND,
            false,
        ),
        (
            "/_wxgate/callback?code=c&state=bad",
            vec![html],
            StatusCode::BAD_REQUEST,
            true,
        ),
        (
            "/_wxgate/callback",
            vec![html],
            StatusCode::BAD_REQUEST,
            true,
        ),
        ("/_wxgate/auth", vec![], StatusCode::UNAUTHORIZED, false),
        (
            "/_wxgate/auth",
            vec![("cookie", cookie.as_str())],
            StatusCode::ACCEPTED,
            false,
        ),
        ("/_wxgate/userinfo", vec![], StatusCode::UNAUTHORIZED, false),
        (
            "/_wxgate/userinfo",
            vec![("cookie", cookie.as_str())],
            StatusCode::OK,
            false,
        ),
        ("/_wxgate/healthz", vec![], StatusCode::OK, false),
        ("/_wxgate/readyz", vec![], StatusCode::OK, false),
        ("/_wxgate/metrics", vec![], StatusCode::OK, false),
        ("/_wxgate/nope", vec![html], StatusCode::NOT_FOUND, true),
        ("/_wxgate/logout", vec![html], StatusCode::OK, true),
        (
            "/_wxgate/logout?rd=%2F",
            vec![html],
            StatusCode::FOUND,
            false,
        ),
        (
            "/private",
            vec![("accept", "application/json")],
            StatusCode::UNAUTHORIZED,
            false,
        ),
        ("/private", vec![html], StatusCode::FOUND, false),
        (
            "/private",
            vec![html, ("cookie", no_union.as_str())],
            StatusCode::FORBIDDEN,
            true,
        ),
        (
            "/private",
            vec![("cookie", no_union.as_str())],
            StatusCode::FORBIDDEN,
            false,
        ),
    ];
    for (path, headers, status, page) in &cases {
        let r = fetch(&gw, path, headers).await;
        assert_eq!(r.status, *status, "{path}: {}", r.text());
        let what = format!("{path} {status}");
        assert_gateway_answer(&what, &r.headers);
        assert_eq!(
            r.headers.contains_key("content-security-policy"),
            *page,
            "{what}"
        );
    }
    // Proxied answers are the upstream's: nothing added, Cache-Control left alone.
    for (path, h) in [
        ("/public/x", vec![]),
        ("/private", vec![("cookie", cookie.as_str())]),
    ] {
        let r = fetch(&gw, path, &h).await;
        assert_eq!(r.status, StatusCode::OK);
        for name in [
            "cache-control",
            "referrer-policy",
            "x-content-type-options",
            "content-security-policy",
            "strict-transport-security",
        ] {
            assert!(
                !r.headers.contains_key(name),
                "{name} added to the upstream's answer on {path}"
            );
        }
    }

    // The gateway's 502 page.
    let dead = closed_port().await;
    let gw = start_gateway(&config_toml(dead, "http://127.0.0.1:9", "")).await;
    let sid = session(&gw, "oOpen1", None).await;
    let r = fetch(&gw, "/x", &[("cookie", &format!("_wxgate={sid}")), html]).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_gateway_answer("502", &r.headers);
    assert!(r.headers.contains_key("content-security-policy"));
}

/// A TLS gateway (h2 + http/1.1) in front of the echo upstream; `extra` goes in `[server]`.
async fn tls_gateway(server_extra: &str, extra: &str) -> (Gateway, tempfile::TempDir) {
    let up = start_echo().await;
    let (dir, cert, key) = test_cert();
    let toml = config_toml(up, "http://127.0.0.1:9", extra).replace(
        "[upstream]",
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n{server_extra}\n[upstream]",
            cert.display(),
            key.display()
        ),
    );
    (start_gateway(&toml).await, dir)
}

async fn h2_sender(gw: &Gateway) -> hyper::client::conn::http2::SendRequest<BoxBody> {
    let (tls, proto) = tls_connect(gw.addr, &[b"h2"]).await;
    assert_eq!(proto.as_deref(), Some(&b"h2"[..]));
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    sender
}

async fn h2_send(
    sender: &mut hyper::client::conn::http2::SendRequest<BoxBody>,
    req: Request<BoxBody>,
) -> (http::response::Parts, serde_json::Value) {
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (parts, v)
}

fn echoed(v: &serde_json::Value, name: &str) -> Vec<String> {
    v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0] == name)
        .map(|p| p[1].as_str().unwrap().to_string())
        .collect()
}

/// HTTP/2 splits `Cookie` into several fields: a stale session cookie in the first field and
/// the live one in a later field still authenticate; the gateway's credentials and the client's
/// forwarding headers still do not go upstream; HSTS is on every response, proxied ones too.
#[tokio::test]
async fn http2_split_cookies_bearer_forwarding_and_hsts() {
    let (gw, _dir) = tls_gateway("hsts_max_age_secs = 31536000", PUBLIC).await;
    let sid = session(&gw, "oOpen1", Some("oUnion1")).await;
    let mut h2 = h2_sender(&gw).await;
    let url = |p: &str| format!("https://app.example.com:{}{p}", gw.addr.port());
    let req = Request::get(url("/private"))
        .header("cookie", format!("_wxgate={}", stale_id()))
        .header("cookie", "a=1")
        .header("cookie", format!("_wxgate={sid}"))
        .header("authorization", format!("Bearer {}", stale_id()))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-for", "7.7.7.7")
        .header("forwarded", "for=6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .header("x-wechat.unionid", "evil")
        .body(empty())
        .unwrap();
    let (parts, v) = h2_send(&mut h2, req).await;
    assert_eq!(parts.status, StatusCode::OK, "{v}");
    assert_eq!(
        parts.headers["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(echoed(&v, "x-wechat-unionid"), ["oUnion1"]);
    assert_eq!(echoed(&v, "cookie"), ["a=1"]);
    assert!(echoed(&v, "authorization").is_empty());
    assert_eq!(echoed(&v, "x-forwarded-for"), ["127.0.0.1"]);
    assert!(echoed(&v, "forwarded").is_empty());
    assert!(echoed(&v, "x-real-ip").is_empty());
    assert!(!v.to_string().contains("evil"));

    // A gateway answer over HTTP/2: HSTS and the rest.
    let req = Request::get(url("/_wxgate/healthz")).body(empty()).unwrap();
    let (parts, _) = h2_send(&mut h2, req).await;
    assert_eq!(
        parts.headers["strict-transport-security"],
        "max-age=31536000"
    );
    assert_gateway_answer("h2 healthz", &parts.headers);
    // The upstream's Set-Cookie for the gateway's cookies: dropped over HTTP/2 as well.
    let req = Request::get(url("/set-cookie/x"))
        .header("cookie", format!("_wxgate={sid}"))
        .body(empty())
        .unwrap();
    let (parts, _) = h2_send(&mut h2, req).await;
    let set: Vec<_> = parts.headers.get_all("set-cookie").iter().collect();
    assert_eq!(set, ["app_pref=1; Path=/", "_wxgate_app=2"]);
    assert_eq!(
        parts.headers["strict-transport-security"],
        "max-age=31536000"
    );

    // HTTP/1.1 over TLS, a redirect to login: HSTS too.
    let (tls, _) = tls_connect(gw.addr, &[b"http/1.1"]).await;
    let (mut h1, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/private")
        .header("host", "localhost")
        .header("accept", "text/html")
        .body(empty())
        .unwrap();
    let resp = h1.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert_gateway_answer("h1 tls 302", resp.headers());
}

/// No HSTS without TLS (a plain listener behind a TLS ingress: the ingress's job), nor with
/// TLS and the default 0.
#[tokio::test]
async fn no_hsts_unless_tls_and_configured() {
    let up = start_echo().await;
    let toml = config_toml(up, "http://127.0.0.1:9", PUBLIC)
        .replace("[upstream]", "hsts_max_age_secs = 600\n[upstream]");
    let gw = start_gateway(&toml).await;
    for path in ["/public/x", "/_wxgate/healthz"] {
        let r = fetch(&gw, path, &[]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            !r.headers.contains_key("strict-transport-security"),
            "{path}"
        );
    }
    let (gw, _dir) = tls_gateway("", PUBLIC).await;
    let mut h2 = h2_sender(&gw).await;
    for path in ["/public/x", "/_wxgate/healthz"] {
        let req = Request::get(format!("https://localhost:{}{path}", gw.addr.port()))
            .body(empty())
            .unwrap();
        let (parts, _) = h2_send(&mut h2, req).await;
        assert_eq!(parts.status, StatusCode::OK);
        assert!(
            !parts.headers.contains_key("strict-transport-security"),
            "{path}"
        );
    }
}

/// Issue 11 item 9 (same class): an untrusted client's `Forwarded`, `X-Real-IP`, repeated
/// `X-Forwarded-For` and other `X-Forwarded-*` reached the upstream; a trusted proxy's pass.
#[tokio::test]
async fn client_forwarding_headers_only_from_trusted_proxies() {
    let gw = gateway(PUBLIC).await;
    let spoof = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\nForwarded: for=6.6.6.6;proto=https\r\n\
                 X-Real-IP: 6.6.6.6\r\nX-Forwarded-Port: 443\r\nX-Forwarded-Prefix: /evil\r\n\
                 True-Client-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example";
    let r = exchange(
        &gw,
        &format!("GET /public/x HTTP/1.1\r\nHost: app.example.com\r\n{spoof}"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(r.upstream("x-forwarded-proto"), ["http"]);
    assert_eq!(r.upstream("x-forwarded-host"), ["app.example.com"]);
    let names = r.upstream_names();
    for n in [
        "forwarded",
        "x-real-ip",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "true-client-ip",
    ] {
        assert!(
            !names.contains(&n.to_string()),
            "{n} from an untrusted client reached the upstream"
        );
    }

    let up = start_echo().await;
    let toml = config_toml(up, "http://127.0.0.1:9", PUBLIC).replace(
        "[upstream]",
        "trusted_proxies = [\"127.0.0.0/8\"]\n[upstream]",
    );
    let gw = start_gateway(&toml).await;
    let r = exchange(
        &gw,
        &format!("GET /public/x HTTP/1.1\r\nHost: app.example.com\r\n{spoof}"),
    )
    .await;
    assert_eq!(
        r.upstream("x-forwarded-for"),
        ["6.6.6.6, 7.7.7.7, 127.0.0.1"]
    );
    assert_eq!(r.upstream("forwarded"), ["for=6.6.6.6;proto=https"]);
    assert_eq!(r.upstream("x-real-ip"), ["6.6.6.6"]);
    assert_eq!(r.upstream("x-forwarded-prefix"), ["/evil"]);
}

/// Same class (found while fixing item 4): two `Host` lines went upstream as they were, the
/// gateway using the first (X-Forwarded-Host, return URLs) and an upstream free to use the
/// other. RFC 9112 3.2: 400.
#[tokio::test]
async fn two_host_lines_are_refused() {
    let gw = gateway(PUBLIC).await;
    let sid = session(&gw, "oOpen1", None).await;
    for (path, extra) in [
        ("/public/x", String::new()),
        ("/private", format!("\r\nCookie: _wxgate={sid}")),
    ] {
        let r = exchange(
            &gw,
            &format!("GET {path} HTTP/1.1\r\nHost: a.example\r\nAccept: application/json\r\nHost: b.example{extra}"),
        )
        .await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.body.contains("Host"), "{}", r.body);
    }
    let r = exchange(&gw, "GET /public/x HTTP/1.1\r\nHost: a.example").await;
    assert_eq!(r.status, 200);
}
