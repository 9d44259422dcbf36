//! Issue 5: the nginx recipes in deploy/nginx/, run with the real nginx (installed from Debian's
//! packages when missing), real ports, the in-process gateway, mock WeChat and echo upstream.
//!
//! Run: `cargo test --test deploy_nginx`

mod common;
#[path = "deploy_support/mod.rs"]
mod deploy_support;

use std::net::SocketAddr;

use deploy_support::*;
use wxgate::tools::mock::{fixtures, MockOptions};

/// Cert for every host name the recipes use.
fn cert(dir: &std::path::Path) -> (String, String) {
    let (c, k) = wxgate::server::tls::ensure_self_signed(
        dir,
        &[
            "app.example.com",
            "auth.example.com",
            "a.example.com",
            "b.example.com",
            "localhost",
        ],
    )
    .unwrap();
    (c.display().to_string(), k.display().to_string())
}

/// The common TLS templating: `listen 443 ssl` → 127.0.0.1:PORT, IPv6 listeners dropped,
/// certificate paths, wxgate's address.
fn template_tls(site: &mut String, tls_port: u16, wxgate: SocketAddr, cert: &(String, String)) {
    subst(
        site,
        "listen 443 ssl http2;",
        &format!("listen 127.0.0.1:{tls_port} ssl http2;"),
    );
    drop_lines(site, "listen [::]:443");
    subst(site, "/etc/ssl/wxgate/fullchain.pem", &cert.0);
    subst(site, "/etc/ssl/wxgate/privkey.pem", &cert.1);
    subst(site, "server 127.0.0.1:8443;", &format!("server {wxgate};"));
}

fn mock_opts(hosts: &[&str]) -> MockOptions {
    MockOptions {
        redirect_domains: hosts.iter().map(|h| h.to_string()).collect(),
        ..MockOptions::default()
    }
}

fn verify_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("MP_verify_AbC123xyz.txt"), "AbC123xyz").unwrap();
    // Not a verification name: must never be served.
    std::fs::write(d.path().join("secret.txt"), "do not serve").unwrap();
    d
}

/// Recipe (a): nginx terminates TLS, everything goes through wxgate to the site.
#[tokio::test]
async fn proxy_recipe_full_login_through_nginx() {
    let up = common::start_upstream().await;
    let mock = common::start_mock(mock_opts(&["app.example.com"])).await;
    let tmp = tempfile::tempdir().unwrap();
    let cert = cert(tmp.path());
    let verify = verify_dir();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let wx_addr = listener.local_addr().unwrap();

    let nginx = Nginx::start(2, |p| {
        let mut site = read_deploy("nginx/proxy.conf");
        template_tls(&mut site, p[0], wx_addr, &cert);
        subst(
            &mut site,
            "listen 80;",
            &format!("listen 127.0.0.1:{};", p[1]),
        );
        drop_lines(&mut site, "listen [::]:80");
        site
    })
    .await;
    let (tls, plain) = (nginx.ports[0], nginx.ports[1]);
    let public = format!("https://app.example.com:{tls}");
    let (t, settings) = recipe_config("nginx/proxy.wxgate.toml", &mock.url(), tmp.path(), |t| {
        toml_set(t, "server.listen", wx_addr.to_string());
        toml_set(t, "server.public_url", public.clone());
        toml_set(t, "upstream.url", format!("http://{}", up.addr));
        toml_set(t, "verification.dir", verify.path().display().to_string());
    });
    // The recipe trusts nginx on loopback, and does not terminate TLS itself.
    let trusted = toml_get(&t, "server.trusted_proxies")
        .unwrap()
        .as_array()
        .unwrap();
    assert!(
        trusted.iter().any(|v| v.as_str() == Some("127.0.0.1/32")),
        "{trusted:?}"
    );
    assert!(toml_get(&t, "server.tls_cert").is_none());
    let _gw = start_wxgate(listener, settings).await;

    // 1. An anonymous browser is sent to the login, then to WeChat's QR page (the mock).
    let mut b = Browser::new();
    let target = "/orders/42?tab=items&x=%2F&q=a+b";
    let trace = login(&mut b, &format!("{public}{target}"), &mock.url(), "alice").await;
    assert_eq!(trace.before[0].status, 302);
    assert_eq!(
        trace.before[0].location().unwrap(),
        format!("{public}/_wxgate/login?rd={}", enc(target))
    );
    assert!(
        trace.authorize.starts_with(&format!(
            "{}/connect/qrconnect?appid={}&redirect_uri={}&response_type=code&scope=snsapi_login&state=",
            mock.url(),
            fixtures::WEBSITE_APPID,
            enc(&format!("{public}/_wxgate/callback"))
        )),
        "{}",
        trace.authorize
    );
    assert!(
        trace
            .callback
            .starts_with(&format!("{public}/_wxgate/callback?")),
        "{}",
        trace.callback
    );
    // 2. The callback (through nginx) lands back on the page, with a Secure session cookie.
    assert_eq!(trace.landed, format!("{public}{target}"));
    let c = b.cookie("_wxgate").expect("session cookie");
    assert!(c.secure && c.host_only && c.path == "/", "{c:?}");

    // 3. The site gets the identity, the original Host, and nginx's X-Forwarded-* (trusted).
    let hits_before = up.hits();
    b.extra = vec![("X-Forwarded-For".into(), "6.6.6.6".into())];
    let r = b.nav(&trace.landed).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echoed_uri(), target);
    assert_eq!(upstream_identity(&r), expected_identity("alice"));
    assert_eq!(
        r.echoed_header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(
        r.echoed_header("x-forwarded-host").as_deref(),
        Some("app.example.com")
    );
    assert_eq!(r.echoed_header("host").as_deref(), Some("app.example.com"));
    let xff = r.echoed_header("x-forwarded-for").unwrap();
    assert!(
        !xff.contains("6.6.6.6"),
        "nginx must replace the client's X-Forwarded-For: {xff}"
    );
    assert_eq!(
        xff, "127.0.0.1, 127.0.0.1",
        "client (via nginx), then nginx (via wxgate)"
    );
    assert!(
        r.echoed_header("cookie").is_none(),
        "wxgate's cookie is not sent to the site"
    );
    assert_eq!(up.hits(), hits_before + 1);
    b.extra.clear();

    // WebSockets pass through nginx and wxgate (the recipe's Upgrade/Connection map).
    let ws = public.replacen("https://", "wss://", 1);
    let cookie = b.cookie_header(&public);
    let echoed = websocket_echo(&format!("{ws}/ws"), &[("Cookie", &cookie)], "你好 ws").await;
    assert_eq!(echoed, "你好 ws");

    // 4. Spoofed identity headers never arrive: carol has no unionid, and sends one.
    let mut carol = Browser::new();
    let t = login(&mut carol, &format!("{public}/me"), &mock.url(), "carol").await;
    carol.extra = SPOOFS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let r = carol.nav(&t.landed).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_no_spoof(&r);
    assert_eq!(upstream_identity(&r), expected_identity("carol"));
    assert!(!upstream_identity(&r).contains_key("x-wechat-unionid"));
    // ... nor on public paths, where nobody is logged in.
    let mut anon = Browser::new();
    anon.extra = carol.extra.clone();
    let r = anon.nav(&format!("{public}/static/app.css")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_no_spoof(&r);
    assert!(
        upstream_identity(&r).is_empty(),
        "{:?}",
        upstream_identity(&r)
    );

    // 5. API calls without a session: 401 JSON, never the site.
    let hits = up.hits();
    let r = Browser::new()
        .api(&format!("{public}/api/orders?page=2"))
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"], "unauthenticated");
    assert_eq!(
        r.json()["login_url"],
        format!("{public}/_wxgate/login?rd={}", enc("/api/orders?page=2"))
    );
    let r = request(
        "POST",
        &format!("{public}/api/orders"),
        &[("Accept", "text/html")],
        b"{}",
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(up.hits(), hits);

    // 6. MP_verify_*.txt through nginx, served by wxgate: HTTPS and plain HTTP (no redirect).
    for base in [public.clone(), format!("http://app.example.com:{plain}")] {
        let r = get(&format!("{base}/MP_verify_AbC123xyz.txt"), &[]).await;
        assert_eq!(r.status, 200, "{base}: {}", r.text());
        assert_eq!(r.body, b"AbC123xyz");
        assert!(r.header("content-type").unwrap().starts_with("text/plain"));
        let r = get(
            &format!("{base}/secret.txt"),
            &[("Accept", "application/json")],
        )
        .await;
        assert_ne!(r.status, 200, "{base}/secret.txt must not be served");
        assert!(!r.text().contains("do not serve"));
    }
    // Everything else on port 80 goes to HTTPS.
    let r = get(&format!("http://app.example.com:{plain}/x?y=1"), &[]).await;
    assert_eq!(r.status, 301);
    assert_eq!(r.raw_location(), Some("https://app.example.com/x?y=1"));
    assert_eq!(up.hits(), hits, "nothing unauthenticated reached the site");

    // 7. Logout through nginx revokes the session.
    let r = b.nav(&format!("{public}/_wxgate/logout?rd=%2Fbye")).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.location().unwrap(), format!("{public}/bye"));
    let r = b.nav(&format!("{public}/orders/42")).await;
    assert_eq!(r.status, 302, "logged out: back to login");
}

/// Recipe (b): nginx serves the app and asks wxgate's /auth.
#[tokio::test]
async fn auth_request_recipe_full_login_through_nginx() {
    let up = common::start_upstream().await;
    let mock = common::start_mock(mock_opts(&["app.example.com"])).await;
    let tmp = tempfile::tempdir().unwrap();
    let cert = cert(tmp.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let wx_addr = listener.local_addr().unwrap();
    // wxgate's own upstream is a port nothing listens on: the app must be reached through
    // nginx only (and a request wxgate proxied would show up as a 502, not as a pass).
    let dead = common::closed_port().await;

    let nginx = Nginx::start(1, |p| {
        let mut site = read_deploy("nginx/auth_request.conf");
        template_tls(&mut site, p[0], wx_addr, &cert);
        subst(
            &mut site,
            "server 127.0.0.1:8080;",
            &format!("server {};", up.addr),
        );
        site
    })
    .await;
    let public = format!("https://app.example.com:{}", nginx.ports[0]);
    let (t, settings) = recipe_config(
        "nginx/auth_request.wxgate.toml",
        &mock.url(),
        tmp.path(),
        |t| {
            toml_set(t, "server.listen", wx_addr.to_string());
            toml_set(t, "server.public_url", public.clone());
            toml_set(t, "upstream.url", format!("http://{dead}"));
        },
    );
    assert_eq!(
        toml_get(&t, "server.prefix").and_then(|v| v.as_str()),
        Some("/_wxgate")
    );
    let gw = start_wxgate(listener, settings).await;

    // 1. Browser: nginx's auth check says 401, wxgate sends the browser to login, then WeChat.
    //    The target has `&`, `+` and `%2F` in its query: rd must survive exactly.
    let target = "/orders/42?tab=items&x=%2F&q=a+b";
    let mut b = Browser::new();
    let trace = login(&mut b, &format!("{public}{target}"), &mock.url(), "alice").await;
    assert_eq!(
        trace.before[0].location().unwrap(),
        format!("{public}/_wxgate/login?rd={}", enc(target))
    );
    assert!(
        trace.authorize.contains(&format!(
            "&redirect_uri={}&",
            enc(&format!("{public}/_wxgate/callback"))
        )),
        "{}",
        trace.authorize
    );
    assert!(
        trace.authorize.contains("/connect/qrconnect?"),
        "{}",
        trace.authorize
    );
    assert_eq!(trace.landed, format!("{public}{target}"));
    assert_eq!(up.hits(), 0, "the app saw nothing before the login");

    // 2. The app (proxied by nginx) gets the identity copied from wxgate's 202.
    let r = b.nav(&trace.landed).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echoed_uri(), target);
    assert_eq!(upstream_identity(&r), expected_identity("alice"));
    assert_eq!(
        r.echoed_header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    // wxgate's session cookie stays away from the app; the app's own cookies do not.
    assert_eq!(r.echoed_header("cookie"), None, "{:?}", r.echoed());
    for (before, after) in [(true, false), (false, true), (true, true)] {
        let mut c = b.clone();
        let mine = |name: &str| Cookie {
            name: name.into(),
            value: "1".into(),
            domain: "app.example.com".into(),
            host_only: true,
            path: "/".into(),
            secure: false,
        };
        if before {
            c.jar.insert(0, mine("pre"));
        }
        if after {
            c.jar.push(mine("post"));
        }
        let r = c.nav(&format!("{public}/cookies")).await;
        assert_eq!(r.status, 200);
        let want = [before.then_some("pre=1"), after.then_some("post=1")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
        assert_eq!(r.echoed_header("cookie").as_deref(), Some(want.as_str()));
    }
    // Other methods pass the check too (the subrequest carries the cookie).
    let r = b
        .send(
            "POST",
            &format!("{public}/form"),
            &[("Accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["method"], "POST");
    assert_eq!(upstream_identity(&r), expected_identity("alice"));

    // 3. Spoofs: alice sends a fake openid; carol (no unionid) sends a fake unionid.
    b.extra = SPOOFS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let r = b.nav(&format!("{public}/x")).await;
    assert_eq!(r.status, 200);
    assert_no_spoof(&r);
    assert_eq!(upstream_identity(&r), expected_identity("alice"));
    let mut carol = Browser::new();
    let t = login(&mut carol, &format!("{public}/me"), &mock.url(), "carol").await;
    assert_eq!(t.landed, format!("{public}/me"));
    carol.extra = b.extra.clone();
    let r = carol.nav(&t.landed).await;
    assert_eq!(r.status, 200);
    assert_no_spoof(&r);
    assert_eq!(upstream_identity(&r), expected_identity("carol"));
    // The raw bytes on the wire, mixed case and underscores, with a valid session.
    let head = format!(
        "GET /raw HTTP/1.1\r\nHost: app.example.com:{}\r\nConnection: close\r\nCookie: {}\r\n\
         X-WeChat-UnionId: spoof1\r\nX_WeChat_UnionId: spoof2\r\nx_wechat_unionid: spoof3\r\n\
         X-WECHAT-SIGNATURE: spoof4\r\nX-WeChat-OpenId: spoof5\r\n\r\n",
        nginx.ports[0],
        carol.cookie_header(&public)
    );
    let r = exchange(&public, head.as_bytes(), b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_no_spoof(&r);
    assert_eq!(upstream_identity(&r), expected_identity("carol"));

    // Account linking's headers come through from wxgate (and only from it: the spoofs are
    // still sent).
    link_session(&gw, &carol).await;
    assert_linked_identity(&mut carol, &t.landed, "carol").await;

    // 4. No session: API calls get wxgate's 401 JSON; the internal auth location is not public.
    let hits = up.hits();
    let r = Browser::new()
        .api(&format!("{public}/api/orders?a=1&b=2"))
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        r.json()["login_url"],
        format!("{public}/_wxgate/login?rd={}", enc("/api/orders?a=1&b=2"))
    );
    let r = request(
        "POST",
        &format!("{public}/api/orders"),
        &[("Content-Type", "application/json")],
        b"{\"x\":1}",
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
    let r = Browser::new()
        .send(
            "GET",
            &format!("{public}/page"),
            &[
                ("X-Requested-With", "XMLHttpRequest"),
                ("Accept", "text/html"),
            ],
        )
        .await;
    assert_eq!(r.status, 401, "XHR: {}", r.text());
    let r = b.nav(&format!("{public}/_wxgate/auth")).await;
    assert_eq!(
        r.status,
        404,
        "/_wxgate/auth is internal to nginx: {}",
        r.text()
    );
    // A bearer-less, cookie-less spoof does not get in either.
    let r = get(&format!("{public}/x"), SPOOFS).await;
    assert_eq!(r.status, 401);
    assert_eq!(up.hits(), hits);

    // 5. MP_verify_*.txt through nginx (the recipe's inline file), without login.
    let r = get(&format!("{public}/MP_verify_0123456789abcdef.txt"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"0123456789abcdef");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let r = get(
        &format!("{public}/MP_verify_unknown1.txt"),
        &[("Accept", "application/json")],
    )
    .await;
    assert_ne!(r.status, 200);
    assert_eq!(up.hits(), hits);

    // 6. wxgate's endpoints are routed: userinfo, logout (then the check fails again).
    let r = b.api(&format!("{public}/_wxgate/userinfo")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["openid"],
        fixtures::openid(fixtures::WEBSITE_APPID, "alice")
    );
    let r = b.nav(&format!("{public}/_wxgate/logout")).await;
    assert_eq!(r.status, 200, "the signed-out page");
    let r = b.nav(&format!("{public}/x")).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.location().unwrap(),
        format!("{public}/_wxgate/login?rd=%2Fx")
    );
    assert!(
        !nginx.error_log().contains("[emerg]") && !nginx.error_log().contains("[crit]"),
        "{}",
        nginx.error_log()
    );
}

/// One wxgate on auth.example.com, two sites (a., b.) on one nginx port: log in once.
#[tokio::test]
async fn multi_site_one_login_for_two_hosts() {
    let site_a = common::start_upstream().await;
    let site_b = common::start_upstream().await;
    let mock = common::start_mock(mock_opts(&["auth.example.com"])).await;
    let tmp = tempfile::tempdir().unwrap();
    let cert = cert(tmp.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let wx_addr = listener.local_addr().unwrap();
    let dead = common::closed_port().await;

    let nginx = Nginx::start(1, |p| {
        let mut site = read_deploy("nginx/multi-site.conf");
        template_tls(&mut site, p[0], wx_addr, &cert);
        subst(
            &mut site,
            "server 127.0.0.1:8080;",
            &format!("server {};", site_a.addr),
        );
        subst(
            &mut site,
            "server 127.0.0.1:8081;",
            &format!("server {};", site_b.addr),
        );
        subst(
            &mut site,
            "https://auth.example.com/",
            &format!("https://auth.example.com:{}/", p[0]),
        );
        site
    })
    .await;
    let port = nginx.ports[0];
    let auth = format!("https://auth.example.com:{port}");
    let a = format!("https://a.example.com:{port}");
    let b_site = format!("https://b.example.com:{port}");
    let (t, settings) = recipe_config(
        "nginx/multi-site.wxgate.toml",
        &mock.url(),
        tmp.path(),
        |t| {
            toml_set(t, "server.listen", wx_addr.to_string());
            toml_set(t, "server.public_url", auth.clone());
            toml_set(t, "upstream.url", format!("http://{dead}"));
        },
    );
    assert_eq!(
        toml_get(&t, "session.cookie_domain").and_then(|v| v.as_str()),
        Some(".example.com")
    );
    let gw = start_wxgate(listener, settings).await;

    // 1. Site a: not logged in → wxgate's login on the AUTH host, rd = the full a. URL.
    let mut br = Browser::new();
    let target = format!("{a}/dash?x=1&y=%2F");
    let trace = login(&mut br, &target, &mock.url(), "alice").await;
    assert_eq!(trace.before[0].status, 302, "{}", trace.before[0].text());
    let first = trace.before[0].location().unwrap();
    assert!(
        first.starts_with(&format!("{auth}/_wxgate/login?rd=")),
        "{first}"
    );
    assert_eq!(
        query_param(&first, "rd").as_deref(),
        Some(target.as_str()),
        "{first}"
    );
    assert!(
        trace.authorize.contains(&format!(
            "&redirect_uri={}&",
            enc(&format!("{auth}/_wxgate/callback"))
        )),
        "{}",
        trace.authorize
    );
    assert!(trace
        .callback
        .starts_with(&format!("{auth}/_wxgate/callback?")));
    assert_eq!(trace.landed, target, "back on site a, query intact");
    let c = br.cookie("_wxgate").expect("session cookie");
    assert_eq!(c.domain, "example.com");
    assert!(!c.host_only && c.secure, "{c:?}");

    // 2. Site a serves alice; site b does too, without another login.
    let r = br.nav(&target).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(upstream_identity(&r), expected_identity("alice"));
    assert_eq!(r.echoed_header("host").as_deref(), Some("a.example.com"));
    let r = br.nav(&format!("{b_site}/b/page")).await;
    assert_eq!(r.status, 200, "site b after logging in on a: {}", r.text());
    assert_eq!(upstream_identity(&r), expected_identity("alice"));
    assert_eq!(r.echoed_header("host").as_deref(), Some("b.example.com"));
    assert_eq!(
        r.echoed_header("cookie"),
        None,
        "the session cookie is not the app's"
    );
    assert_eq!(site_b.hits(), 1);
    // Spoofs are cleared on b as well.
    br.extra = SPOOFS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let r = br.nav(&format!("{b_site}/b/again")).await;
    assert_no_spoof(&r);
    // Account linking's headers reach both sites, from wxgate only.
    link_session(&gw, &br).await;
    for url in [format!("{b_site}/b/linked"), format!("{a}/a/linked")] {
        assert_linked_identity(&mut br, &url, "alice").await;
    }
    br.extra.clear();

    // 3. A fresh browser starting on b comes back to b.
    let mut other = Browser::new();
    let start = format!("{b_site}/cart?item=7&n=2");
    let trace = login(&mut other, &start, &mock.url(), "bob").await;
    assert_eq!(trace.landed, start);
    let r = other.nav(&start).await;
    assert_eq!(r.status, 200);
    assert_eq!(upstream_identity(&r), expected_identity("bob"));
    // API on a site without a session: 401 JSON.
    let r = Browser::new().api(&format!("{a}/api/me")).await;
    assert_eq!(r.status, 401, "{}", r.text());

    // 4. rd to a host that is not in redirect_hosts ends on the auth host's "/", not there.
    let mut third = Browser::new();
    let trace = login(
        &mut third,
        &format!(
            "{auth}/_wxgate/login?rd={}",
            enc(&format!("https://evil.example.net:{port}/steal"))
        ),
        &mock.url(),
        "carol",
    )
    .await;
    assert_eq!(trace.landed, format!("{auth}/"));
    let r = third.nav(&format!("{a}/")).await;
    assert_eq!(upstream_identity(&r), expected_identity("carol"));

    // 5. One logout (on the auth host) ends the session on every site.
    let r = br
        .nav(&format!(
            "{auth}/_wxgate/logout?rd={}",
            enc(&format!("{b_site}/bye"))
        ))
        .await;
    assert_eq!(r.status, 302);
    assert_eq!(r.location().unwrap(), format!("{b_site}/bye"));
    for site in [&a, &b_site] {
        let r = br.api(&format!("{site}/api/me")).await;
        assert_eq!(r.status, 401, "{site} after logout: {}", r.text());
    }
    // Stray /_wxgate/ requests on a site go to the auth host.
    let r = Browser::new().nav(&format!("{a}/_wxgate/login")).await;
    assert_eq!(r.status, 302);
    assert!(
        r.location()
            .unwrap()
            .starts_with(&format!("{auth}/_wxgate/login?rd=")),
        "{:?}",
        r.location()
    );
}

// ---- PHP-FPM: the auth_request recipe's fastcgi_param variant, against a FastCGI responder ----

/// A minimal FastCGI responder standing in for PHP-FPM: answers every request with the
/// params it received as JSON `{"params": [[name, value], ...]}` (what PHP puts in $_SERVER).
async fn start_fastcgi() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut params_raw = Vec::new();
                // The request id of the last record read (nginx uses one per connection).
                let id = loop {
                    let mut h = [0u8; 8];
                    if s.read_exact(&mut h).await.is_err() {
                        return;
                    }
                    let (ty, rid) = (h[1], u16::from_be_bytes([h[2], h[3]]));
                    let len = u16::from_be_bytes([h[4], h[5]]) as usize;
                    let mut body = vec![0u8; len + h[6] as usize];
                    if s.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    body.truncate(len);
                    match ty {
                        4 => params_raw.extend_from_slice(&body), // FCGI_PARAMS
                        5 if len == 0 => break rid,               // end of FCGI_STDIN
                        _ => {}
                    }
                };
                let mut params = Vec::new();
                let mut b = &params_raw[..];
                let read_len = |b: &mut &[u8]| -> usize {
                    if b[0] & 0x80 == 0 {
                        let n = b[0] as usize;
                        *b = &b[1..];
                        n
                    } else {
                        let n =
                            (u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff) as usize;
                        *b = &b[4..];
                        n
                    }
                };
                while !b.is_empty() {
                    let nl = read_len(&mut b);
                    let vl = read_len(&mut b);
                    let name = String::from_utf8_lossy(&b[..nl]).into_owned();
                    let value = String::from_utf8_lossy(&b[nl..nl + vl]).into_owned();
                    b = &b[nl + vl..];
                    params.push((name, value));
                }
                let json = serde_json::json!({ "params": params }).to_string();
                let out = format!("Status: 200 OK\r\nContent-Type: application/json\r\n\r\n{json}");
                let mut resp = Vec::new();
                let mut record = |ty: u8, data: &[u8]| {
                    resp.extend_from_slice(&[1, ty]);
                    resp.extend_from_slice(&id.to_be_bytes());
                    resp.extend_from_slice(&(data.len() as u16).to_be_bytes());
                    resp.extend_from_slice(&[0, 0]);
                    resp.extend_from_slice(data);
                };
                for chunk in out.as_bytes().chunks(60000) {
                    record(6, chunk); // FCGI_STDOUT
                }
                record(6, b"");
                record(3, &[0, 0, 0, 0, 0, 0, 0, 0]); // FCGI_END_REQUEST, request complete
                let _ = s.write_all(&resp).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

fn params_of(r: &Resp) -> Vec<(String, String)> {
    r.json()["params"]
        .as_array()
        .unwrap_or_else(|| panic!("not the FastCGI echo: {}", r.text()))
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The commented PHP-FPM lines of auth_request.conf, enabled in place of `proxy_pass http://app;`.
#[tokio::test]
async fn auth_request_recipe_php_fpm_variant() {
    let fcgi = start_fastcgi().await;
    let mock = common::start_mock(mock_opts(&["app.example.com"])).await;
    let tmp = tempfile::tempdir().unwrap();
    let cert = cert(tmp.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let wx_addr = listener.local_addr().unwrap();
    let dead = common::closed_port().await;
    let nginx = Nginx::start(1, |p| {
        let mut site = read_deploy("nginx/auth_request.conf");
        template_tls(&mut site, p[0], wx_addr, &cert);
        subst(
            &mut site,
            "server 127.0.0.1:8080;",
            &format!("server {dead};"),
        );
        // Enable the PHP-FPM block: uncomment it, drop proxy_pass from that location.
        let start = site
            .find("# A PHP-FPM site instead of proxy_pass")
            .expect("PHP-FPM variant in the recipe");
        let end = start
            + site[start..]
                .find("fastcgi_pass unix:")
                .expect("end of the PHP-FPM block");
        let block = site[start..end].replace("#   ", "");
        site.replace_range(start..end, &block);
        subst(&mut site, "        proxy_pass http://app;\n", "");
        subst(
            &mut site,
            "include fastcgi_params;",
            "include /etc/nginx/fastcgi_params;",
        );
        subst(
            &mut site,
            "fastcgi_pass unix:/run/php/php-fpm.sock;",
            &format!("fastcgi_pass {fcgi};"),
        );
        site
    })
    .await;
    let public = format!("https://app.example.com:{}", nginx.ports[0]);
    let (_, settings) = recipe_config(
        "nginx/auth_request.wxgate.toml",
        &mock.url(),
        tmp.path(),
        |t| {
            toml_set(t, "server.listen", wx_addr.to_string());
            toml_set(t, "server.public_url", public.clone());
            toml_set(t, "upstream.url", format!("http://{dead}"));
        },
    );
    let _gw = start_wxgate(listener, settings).await;

    for user in ["alice", "carol"] {
        let mut b = Browser::new();
        let trace = login(
            &mut b,
            &format!("{public}/index.php?a=1&b=2"),
            &mock.url(),
            user,
        )
        .await;
        assert_eq!(trace.landed, format!("{public}/index.php?a=1&b=2"));
        b.extra = SPOOFS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        b.jar.push(Cookie {
            name: "PHPSESSID".into(),
            value: "php1".into(),
            domain: "app.example.com".into(),
            host_only: true,
            path: "/".into(),
            secure: false,
        });
        let r = b.nav(&trace.landed).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let params = params_of(&r);
        // $_SERVER: exactly one value per identity variable, the gateway's, never a spoof.
        for (k, v) in &params {
            assert!(
                !v.contains("spoof"),
                "{user}: spoofed header reached PHP as {k}={v}"
            );
        }
        let want = expected_identity(user);
        for name in [
            "openid",
            "unionid",
            "appid",
            "source",
            "nickname",
            "avatar",
            "signature",
        ] {
            let var = format!("HTTP_X_WECHAT_{}", name.to_ascii_uppercase());
            let vals: Vec<&String> = params
                .iter()
                .filter(|(k, _)| *k == var)
                .map(|(_, v)| v)
                .collect();
            assert!(vals.len() <= 1, "{user}: {var} sent twice: {vals:?}");
            let got = vals.first().map(|v| v.as_str());
            assert_ne!(
                got,
                Some(""),
                "{user}: {var} is unset, not empty, when wxgate sent none"
            );
            assert_eq!(
                got,
                want.get(&format!("x-wechat-{name}")).map(|s| s.as_str()),
                "{user}: {var}"
            );
        }
        let cookies: Vec<&String> = params
            .iter()
            .filter(|(k, _)| k == "HTTP_COOKIE")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(
            cookies,
            vec!["PHPSESSID=php1"],
            "{user}: wxgate's cookie is kept from PHP"
        );
        assert!(params
            .iter()
            .any(|(k, v)| k == "QUERY_STRING" && v == "a=1&b=2"));
    }
}
