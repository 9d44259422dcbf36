//! Issue 11 item 1: path forms an upstream could resolve differently from the gateway. Raw
//! HTTP/1 bytes over TCP to a real gateway with `public_paths = ["/public/"]`; for each form,
//! without and with a session: 400 `bad_path`, or exactly the request-target the echo upstream
//! received, and whether it was served as public (no session needed) or protected.

mod common;

use common::*;

/// What the gateway must do with a path form.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// 400 `{"error":"bad_path"}` with or without a session; the upstream sees nothing.
    Bad,
    /// Served without a session; the upstream receives the target unchanged.
    Public,
    /// No session: 401 (302 for a navigation), upstream untouched. With one: the upstream
    /// receives the target unchanged.
    Protected,
    /// The gateway's own namespace: this status with or without a session, never upstream.
    Ours(u16),
}
use Expect::*;

const FORMS: &[(&str, Expect)] = &[
    // `..` / `.` segments behind `;parameters`, as Tomcat resolves them.
    ("/public/..;/private/secret", Bad),
    ("/public/..;x=1/private/secret", Bad),
    ("/public/.;/..;/private/secret", Bad),
    ("/public/..;jsessionid=1/private/secret", Bad),
    ("/public;x/..;/private/secret", Bad),
    ("/public/..;", Bad),
    ("/public/.;", Bad),
    ("/a/..;/b", Bad),
    ("/a/.;/b", Bad),
    ("/.;/private/secret", Bad),
    // Encoded dots, any case, with and without parameters.
    ("/a/%2e%2e;x/b", Bad),
    ("/public/%2e%2e;/private/secret", Bad),
    ("/public/%2E%2E/private/secret", Bad),
    ("/public/%2e%2E/private/secret", Bad),
    ("/public/.%2e/private/secret", Bad),
    ("/public/%2e./private/secret", Bad),
    ("/public/%2e/private/secret", Bad),
    ("/public/..%3b/private/secret", Bad),
    ("/public/%2e%2e%3Bx=1/private/secret", Bad),
    // Plain dot segments.
    ("/public/../private/secret", Bad),
    ("/public/./index.html", Bad),
    ("/public/x/..", Bad),
    // Other separators and dot spellings some upstream honours.
    ("/public/a%2f..%2fprivate", Bad),
    ("/public/a%2F..%2Fprivate", Bad),
    ("/public/%5c..%5cprivate", Bad),
    ("/public\\..\\private\\secret", Bad),
    ("/public/%c0%ae%c0%ae/private/secret", Bad),
    ("/public/%C0%AE./private/secret", Bad),
    ("/public/%e0%80%ae%e0%80%ae/private/secret", Bad),
    ("/public/%ef%bc%8e%ef%bc%8e/private/secret", Bad),
    ("/public/%EF%BC%8E/private/secret", Bad),
    ("/public/%u002e%u002e/private/secret", Bad),
    ("/public/x%00/y", Bad),
    ("/public/．．/private/secret", Bad),
    // Every path: the gateway's own prefix and verification-file names too.
    ("/_wxgate/..;/healthz", Bad),
    ("/_wxgate/%2e%2e/private", Bad),
    ("/x/..;/MP_verify_abc123.txt", Bad),
    // Public, forwarded unchanged.
    ("/public/index.html", Public),
    ("/public/", Public),
    ("/public/index.jsp;jsessionid=ABC123", Public),
    ("/public;jsessionid=1/index.jsp", Public),
    ("/public/x;", Public),
    ("/public/a;b=c/d;e", Public),
    (
        "/public/index.jsp;jsessionid=ABC123.node1?x=..;&y=%2e%2e",
        Public,
    ),
    ("/public/%E4%B8%AD%E6%96%87.png", Public),
    ("/public/a..b/..x/x..", Public),
    ("/public/.well-known/x", Public),
    ("/public/a%20b", Public),
    ("/public/中文.png", Public),
    // Passed unchanged, but never public: some upstream could read them as another path.
    ("/public/%252e%252e/private/secret", Protected),
    ("/public/%252e%252e;/private/secret", Protected),
    ("/public//private/secret", Protected),
    ("/public/%2fprivate", Protected),
    ("/public/a%5cb", Protected),
    ("/public/a%2ejs", Protected),
    ("/public/.../private", Protected),
    ("/public/..%20/private", Protected),
    ("/public/%c0%afprivate", Protected),
    ("/public/%ef%bc%8fprivate", Protected),
    ("/public/%zz", Protected),
    ("/public/a;x/;y/b", Protected),
    ("/PUBLIC/index.html", Protected),
    ("/%70ublic/index.html", Protected),
    ("/private/secret", Protected),
    ("/app;jsessionid=1/x", Protected),
    ("/private/secret;", Protected),
    ("/%5fwxgate/login", Protected),
    // The gateway's namespace, matched with `;parameters` cut: never the upstream's.
    ("/_wxgate/healthz", Ours(200)),
    ("/_wxgate;x/healthz", Ours(404)),
    ("/_wxgate;/login", Ours(404)),
    ("/_wxgate/healthz;x", Ours(404)),
];

/// Put a session straight into the running gateway's store; returns the Cookie header value.
async fn session_cookie(gw: &Gateway) -> String {
    let app = &gw.running.as_ref().unwrap().app;
    let n = website_session("oOpenIdTest", Some("oUnionTest"));
    format!("_wxgate={}", seed_session(app, &n).await)
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

async fn get(gw: &Gateway, target: &str, extra: &str) -> Answer {
    let req =
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n");
    let out = raw(gw.addr, req.as_bytes()).await;
    let status = out
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{target}: no status in {out:?}"));
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// The request-target the echo upstream received.
fn echoed_uri(a: &Answer, target: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&a.body)
        .unwrap_or_else(|_| panic!("{target}: not the upstream echo: {} {}", a.head, a.body));
    v["uri"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn path_form_table() {
    assert!(FORMS.len() >= 40);
    let up = start_upstream().await;
    let toml = config_toml(
        up.addr,
        "http://127.0.0.1:9",
        "[access]\npublic_paths = [\"/public/\"]\n",
    );
    let gw = start_gateway(&toml).await;
    let cookie = format!("Cookie: {}\r\n", session_cookie(&gw).await);
    let mut failures = Vec::new();
    for &(target, want) in FORMS {
        let before = up.hits();
        let anon = get(&gw, target, "").await;
        let anon_hits = up.hits() - before;
        let before = up.hits();
        let authed = get(&gw, target, &cookie).await;
        let authed_hits = up.hits() - before;
        let ok = match want {
            Bad => {
                [&anon, &authed]
                    .iter()
                    .all(|a| a.status == 400 && a.body.contains("\"bad_path\""))
                    && anon_hits + authed_hits == 0
            }
            Public => {
                anon.status == 200
                    && anon_hits == 1
                    && echoed_uri(&anon, target) == target
                    && authed.status == 200
                    && echoed_uri(&authed, target) == target
            }
            Protected => {
                anon.status == 401
                    && anon.body.contains("\"unauthenticated\"")
                    && anon_hits == 0
                    && authed.status == 200
                    && authed_hits == 1
                    && echoed_uri(&authed, target) == target
            }
            Ours(s) => anon.status == s && authed.status == s && anon_hits + authed_hits == 0,
        };
        if !ok {
            failures.push(format!(
                "{target} (want {want:?}): without session {} {}; with session {} {}",
                anon.status,
                &anon.body[..anon.body.len().min(200)],
                authed.status,
                &authed.body[..authed.body.len().min(200)],
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Navigations get pages: 400 page for a refused path, 302 to login for a protected one.
#[tokio::test]
async fn navigations_get_pages() {
    let up = start_upstream().await;
    let toml = config_toml(
        up.addr,
        "http://127.0.0.1:9",
        "[access]\npublic_paths = [\"/public/\"]\n",
    );
    let gw = start_gateway(&toml).await;
    let nav = "Accept: text/html\r\nSec-Fetch-Mode: navigate\r\n";
    let a = get(&gw, "/public/..;/private/secret", nav).await;
    assert_eq!(a.status, 400, "{} {}", a.head, a.body);
    assert!(a
        .head
        .to_ascii_lowercase()
        .contains("content-type: text/html"));
    assert!(a.body.contains("Bad address"), "{}", a.body);
    let a = get(&gw, "/public/%252e%252e/private/secret", nav).await;
    assert_eq!(a.status, 302, "{} {}", a.head, a.body);
    assert!(a.head.contains("/_wxgate/login?rd="), "{}", a.head);
    assert_eq!(up.hits(), 0);
}

/// Forward auth (`/auth`) never grants by path: `X-Original-URI` naming a public path with a
/// dot segment is still 401 without a session (and 202 with one: the decision is the
/// session's). Its login URL returns to `/`, not to the refused path.
#[tokio::test]
async fn forward_auth_ignores_public_paths_and_dot_segments() {
    let up = start_upstream().await;
    let toml = config_toml(
        up.addr,
        "http://127.0.0.1:9",
        "[access]\npublic_paths = [\"/public/\"]\n",
    );
    let gw = start_gateway(&toml).await;
    for uri in [
        "/public/..;/private/secret",
        "/public/%2e%2e;/private/secret",
        "/public/index.html",
    ] {
        let a = get(&gw, "/_wxgate/auth", &format!("X-Original-URI: {uri}\r\n")).await;
        assert_eq!(a.status, 401, "{uri}: {} {}", a.head, a.body);
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        let login = v["login_url"].as_str().unwrap();
        if uri.contains("..") || uri.contains("%2e") {
            assert!(login.ends_with("/_wxgate/login?rd=%2F"), "{uri}: {login}");
        } else {
            assert!(
                login.contains("rd=%2Fpublic%2Findex.html"),
                "{uri}: {login}"
            );
        }
    }
    let cookie = format!("Cookie: {}\r\n", session_cookie(&gw).await);
    let a = get(
        &gw,
        "/_wxgate/auth",
        &format!("{cookie}X-Original-URI: /public/..;/private/secret\r\n"),
    )
    .await;
    assert_eq!(a.status, 202, "{} {}", a.head, a.body);
    assert_eq!(up.hits(), 0);
}

/// The same rules over HTTP/2 (prior knowledge on the plain listener): `:path` is checked like
/// an HTTP/1 request-target.
#[tokio::test]
async fn http2_paths_follow_the_same_rules() {
    use http_body_util::BodyExt;
    let up = start_upstream().await;
    let toml = config_toml(
        up.addr,
        "http://127.0.0.1:9",
        "[access]\npublic_paths = [\"/public/\"]\n",
    );
    let gw = start_gateway(&toml).await;
    let c: hyper_util::client::legacy::Client<_, BoxBody> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    for (target, status) in [
        ("/public/..;/private/secret", 400),
        ("/public/%2e%2e;x/private/secret", 400),
        ("/public/.;/..;/private/secret", 400),
        ("/public;jsessionid=1/index.jsp", 200),
        ("/public/%252e%252e/private/secret", 401),
        ("/private/secret", 401),
    ] {
        let req = http::Request::get(gw.url(target)).body(empty()).unwrap();
        let resp = c.request(req).await.expect("h2 request");
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status().as_u16(), status, "{target}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        if status == 200 {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["uri"], target);
        }
        if status == 400 {
            assert!(String::from_utf8_lossy(&body).contains("bad_path"));
        }
    }
    assert_eq!(up.hits(), 1);
}
