//! Issue 13: reload without a restart. `Running::reload` in process (what applies to new
//! requests, what survives), then `wxgate run` with SIGHUP (the config file re-read, an invalid
//! one kept out, restart-only keys named), and a reload under `wrk` load over TLS with a
//! logged-in cookie.

mod common;
mod proc_support;

use std::time::Duration;

use common::*;
use http::StatusCode;
use proc_support::*;
use wxgate::session::NewSession;

/// A session for `oOpenIdTest` straight into the gateway's store; the Cookie header value.
async fn session_cookie(running: &wxgate::server::Running) -> String {
    let n = NewSession {
        unionid: Some("oUnionTest"),
        avatar: "https://thirdwx.qlogo.cn/x/132",
        ..website_session("oOpenIdTest", None)
    };
    format!("_wxgate={}", seed_session(&running.app, &n).await)
}

/// The settings of `toml` as `start_gateway` rewrote them for the gateway on `addr`.
fn settings_for(addr: std::net::SocketAddr, toml: &str) -> wxgate::config::Settings {
    let toml = toml.replace(
        "public_url = \"http://127.0.0.1\"",
        &format!("public_url = \"http://127.0.0.1:{}\"", addr.port()),
    );
    wxgate::config::Config::from_toml(&toml).expect("test config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_rules_public_paths_and_upstream_to_new_requests_only() {
    let (up1, up2) = (start_upstream().await, start_upstream().await);
    let gw = start_gateway(&config_toml(up1.addr, "http://127.0.0.1:9", "")).await;
    let running = gw.running.as_ref().unwrap();
    let cookie = session_cookie(running).await;
    let mut conn = KeepAlive::open(gw.addr).await;
    assert_eq!(conn.get("/a", Some(&cookie)).await.0, StatusCode::OK);
    assert_eq!(
        conn.get("/pub/x", None).await.0,
        StatusCode::UNAUTHORIZED,
        "not public yet"
    );
    assert_eq!((up1.hits(), up2.hits()), (1, 0));

    // A long request in flight on the old upstream while the config changes.
    let slow_url = gw.url("/slow?ms=1500");
    let slow_cookie = cookie.clone();
    let slow = tokio::spawn(async move {
        let req = http::Request::get(slow_url)
            .header("cookie", slow_cookie)
            .body(empty())
            .unwrap();
        send(&client(), req).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let new = config_toml(
        up2.addr,
        "http://127.0.0.1:9",
        "[access]\nallow_openids = [\"oSomeoneElse\"]\npublic_paths = [\"/pub\"]\n",
    );
    let r = running.reload(settings_for(gw.addr, &new)).await.unwrap();
    assert_eq!(
        r.applied,
        [
            "access.allow_openids",
            "access.public_paths",
            "upstream.url"
        ]
    );
    assert!(r.restart.is_empty(), "{:?}", r.restart);

    // The same open connection, new rules: this user is no longer on the allow-list.
    let (status, body) = conn.get("/a", Some(&cookie)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // A public path now, served by the new upstream.
    let (status, body) = conn.get("/pub/x", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(up2.hits(), 1);
    // The request in flight finished on the upstream it started with.
    let r = slow.await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "slow done"));
    assert_eq!(up1.hits(), 2);
    gw.stop().await;
}

fn requests_2xx(metrics: &str, route: &str) -> u64 {
    let needle = format!("wxgate_requests_total{{route=\"{route}\",class=\"2xx\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .unwrap_or_else(|| panic!("no {needle} in:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_sessions_and_metrics_and_names_restart_only_keys() {
    let up = start_upstream().await;
    let toml = config_toml(up.addr, "http://127.0.0.1:9", "");
    let gw = start_gateway(&toml).await;
    let running = gw.running.as_ref().unwrap();
    let cookie = session_cookie(running).await;
    let mut conn = KeepAlive::open(gw.addr).await;
    for _ in 0..3 {
        assert_eq!(conn.get("/a", Some(&cookie)).await.0, StatusCode::OK);
    }
    let before = requests_2xx(&conn.get("/_wxgate/metrics", None).await.1, "proxy");
    assert_eq!(before, 3);

    let other_port = proc_support::free_port();
    let new = toml
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{other_port}\""),
        )
        .replace(
            "[server]",
            "[server]\nprefix = \"/_gw\"\nhsts_max_age_secs = 60",
        )
        .replace(SECRET, "another-cookie-secret-0123456789abcdef");
    let r = running.reload(settings_for(gw.addr, &new)).await.unwrap();
    assert_eq!(
        r.restart,
        ["server.listen", "server.prefix", "session.cookie_secret"]
    );
    assert_eq!(r.applied, ["server.hsts_max_age_secs"]);
    assert_eq!(running.current_app().settings().prefix(), "/_wxgate");

    // Same store (the session still works), counters not reset, old prefix still served.
    for _ in 0..2 {
        assert_eq!(conn.get("/a", Some(&cookie)).await.0, StatusCode::OK);
    }
    let after = requests_2xx(&conn.get("/_wxgate/metrics", None).await.1, "proxy");
    assert_eq!(after, 5);
    // The gateway runs in this process: this process must not listen on the new port.
    assert!(
        !proc_support::pid_listens_on(std::process::id(), other_port),
        "server.listen applied without a restart"
    );
    assert!(
        proc_support::pid_listens_on(std::process::id(), gw.addr.port()),
        "still on its port"
    );
    gw.stop().await;
}

/// `wxgate run` with the config in `dir`; plain HTTP.
fn write_config(path: &std::path::Path, upstream: std::net::SocketAddr, extra: &str) {
    std::fs::write(path, config_toml(upstream, "http://127.0.0.1:9", extra)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_config_file() {
    let up = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wxgate.toml");
    let slow_public = "[access]\npublic_paths = [\"/slow\"]\n";
    write_config(&cfg, up.addr, slow_public);
    let child = spawn_run(&cfg, &[("RUST_LOG", "info")]);
    let url = format!("http://{}/pub/x", child.addr);
    let get = |url: String| async move {
        send(
            &client(),
            http::Request::get(url)
                .header("accept", "application/json")
                .body(empty())
                .unwrap(),
        )
        .await
        .status
    };
    assert_eq!(get(url.clone()).await, StatusCode::UNAUTHORIZED);
    // Open across the reloads: a keep-alive connection, and a request in flight.
    let mut conn = KeepAlive::open(child.addr).await;
    assert_eq!(conn.get("/pub/x", None).await.0, StatusCode::UNAUTHORIZED);
    let slow_url = format!("http://{}/slow?ms=1500", child.addr);
    let slow = tokio::spawn(async move {
        send(
            &client(),
            http::Request::get(slow_url).body(empty()).unwrap(),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A public path, and restart-only keys.
    let other = free_port();
    std::fs::write(
        &cfg,
        config_toml(
            up.addr,
            "http://127.0.0.1:9",
            "[access]\npublic_paths = [\"/slow\", \"/pub\"]\n[log]\nformat = \"json\"\n",
        )
        .replace("127.0.0.1:0", &format!("127.0.0.1:{other}")),
    )
    .unwrap();
    child.signal("-HUP");
    child.wait_log("configuration reloaded", 1).await;
    assert_eq!(get(url.clone()).await, StatusCode::OK);
    assert_eq!(conn.get("/pub/x", None).await.0, StatusCode::OK);
    let r = slow.await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "slow done"));
    let log = child.log();
    assert!(
        log.contains("changed=access.public_paths"),
        "what changed is named:\n{log}"
    );
    for key in ["server.listen", "log.format"] {
        assert!(
            log.contains(&format!("{key} changed; takes effect after a restart")),
            "{key} named:\n{log}"
        );
    }
    assert!(child.listens_on(child.addr.port()), "still on its port");
    assert!(
        !child.listens_on(other),
        "server.listen applied without a restart"
    );

    // An invalid file: ERROR with the reason, the running config stays.
    std::fs::write(
        &cfg,
        config_toml(
            up.addr,
            "http://127.0.0.1:9",
            "[access]\npublic_paths = [\"pub\"]\n",
        ),
    )
    .unwrap();
    child.signal("-HUP");
    child.wait_log("config reload failed", 1).await;
    let log = child.log();
    let line = log
        .lines()
        .find(|l| l.contains("config reload failed"))
        .unwrap();
    assert!(
        line.contains("ERROR") && line.contains("access.public_paths"),
        "{line}"
    );
    assert_eq!(get(url.clone()).await, StatusCode::OK);
    assert_eq!(conn.get("/pub/x", None).await.0, StatusCode::OK);
    // A valid reload after the failure works, and nothing secret was logged.
    write_config(&cfg, up.addr, slow_public);
    child.signal("-HUP");
    child.wait_log("configuration reloaded", 2).await;
    assert_eq!(get(url).await, StatusCode::UNAUTHORIZED);
    assert_eq!(conn.get("/pub/x", None).await.0, StatusCode::UNAUTHORIZED);
    assert!(!child.log().contains(SECRET));
}

/// Write `pem` to `path` in one step (rename), as a deploy hook should.
fn install(path: &std::path::Path, pem: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, pem).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A browser login over TLS against the child on `addr` (mock WeChat in process); the session
/// cookie (`_wxgate=...`).
async fn tls_login(addr: std::net::SocketAddr, mock: &wxgate::tools::mock::MockServer) -> String {
    let nav = [
        ("user-agent", PC_UA),
        ("accept", "text/html"),
        ("sec-fetch-mode", "navigate"),
    ];
    let (status, headers, body, _) = tls_get(addr, "/_wxgate/login?rd=%2F", &nav).await;
    assert_eq!(status, StatusCode::FOUND, "{body}");
    let set = |h: &http::HeaderMap, name: &str| {
        h.get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
            .find(|c| c.starts_with(&format!("{name}=")))
    };
    let login_cookie = set(&headers, "_wxgate_login").expect("login cookie");
    let authorize = headers["location"].to_str().unwrap().to_string();
    let mut b = Browser::pc();
    let page = b.nav(authorize.split('#').next().unwrap()).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let link = find_link(&page.text(), "user-alice").expect("user link");
    let r = b.nav(&format!("{}{}", mock.url(), link)).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let callback = r.location();
    let path = &callback[callback.find("/_wxgate/").unwrap()..];
    let mut with_cookie = nav.to_vec();
    with_cookie.push(("cookie", &login_cookie));
    let (status, headers, body, _) = tls_get(addr, path, &with_cookie).await;
    assert_eq!(status, StatusCode::FOUND, "callback: {body}");
    set(&headers, "_wxgate").expect("session cookie")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_under_wrk_load_over_tls_fails_no_request() {
    assert!(
        have_wrk(),
        "wrk is not installed: run scripts/install-test-deps.sh"
    );
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("gw.crt"), dir.path().join("gw.key"));
    let a = rcgen::generate_simple_self_signed(vec!["a.example".to_string()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["b.example".to_string()]).unwrap();
    install(&cert, &a.cert.pem());
    install(&key, &a.key_pair.serialize_pem());
    let port = free_port();
    let config = |extra: &str| {
        full_config(up.addr, &mock.url(), extra)
            .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""))
            .replace(
                "public_url = \"http://127.0.0.1\"",
                &format!(
                    "public_url = \"https://127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
                    cert.display(),
                    key.display()
                ),
            )
    };
    let cfg = dir.path().join("wxgate.toml");
    std::fs::write(&cfg, config("")).unwrap();
    let child = spawn_run(&cfg, &[("RUST_LOG", "info")]);
    let addr = child.addr;
    let cookie = tls_login(addr, &mock).await;
    let (status, _, body, seen) = tls_get(addr, "/", &[("cookie", &cookie)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(seen, a.cert.der().to_vec());

    let url = format!("https://127.0.0.1:{port}/");
    let cookie_h = format!("Cookie: {cookie}");
    // Keep-alive connections, and one new TLS connection per request.
    let keep = start_wrk(&url, 16, 4, &[&cookie_h]);
    let fresh = start_wrk(&url, 2, 4, &[&cookie_h, "Connection: close"]);
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // Certificate renewal: new files, SIGHUP.
    install(&cert, &b.cert.pem());
    install(&key, &b.key_pair.serialize_pem());
    child.signal("-HUP");
    child.wait_log("SIGHUP: TLS files reloaded", 1).await;
    let (status, _, _, seen) = tls_get(addr, "/", &[("cookie", &cookie)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        seen,
        b.cert.der().to_vec(),
        "a new connection gets the new certificate"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    // A config change under the same load.
    std::fs::write(&cfg, config("[access]\npublic_paths = [\"/pub\"]\n")).unwrap();
    child.signal("-HUP");
    child.wait_log("configuration reloaded", 2).await;

    let (keep, fresh) = join_wrk(keep, fresh).await;
    println!(
        "wrk keep-alive: {} requests; wrk new connection per request: {} requests",
        keep.requests, fresh.requests
    );
    for (name, w) in [("keep-alive", &keep), ("new connections", &fresh)] {
        assert_eq!(
            (w.bad_status, w.socket_errors),
            (0, 0),
            "{name}: failed requests:\n{}",
            w.output
        );
        assert!(w.requests > 20, "{name}: too few requests:\n{}", w.output);
    }
    let log = child.log();
    assert!(log.contains("changed=access.public_paths"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}

#[tokio::test]
async fn a_live_session_refused_per_request_names_itself_and_can_switch_account() {
    // A session the access rules refuse on a request (rules changed since the login): the 403
    // page names it and offers a new login back to the same page; JSON carries the reason.
    let up = start_upstream().await;
    let gw = start_gateway(&config_toml(
        up.addr,
        "http://127.0.0.1:9",
        "[access]\nallow_openids = [\"oSomeoneElse\"]\n",
    ))
    .await;
    let cookie = session_cookie(gw.running.as_ref().unwrap()).await;
    let get = |path: &str, accept: &str| {
        http::Request::get(gw.url(path))
            .header("cookie", &cookie)
            .header("accept", accept)
            .body(empty())
            .unwrap()
    };
    let r = send(&client(), get("/a?b=1", "text/html")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let page = html_unescape(&r.text());
    assert!(
        page.contains("oOpenIdTest") && page.contains("oUnionTest"),
        "{page}"
    );
    assert!(
        page.contains("href=\"/_wxgate/logout?rd=%2F_wxgate%2Flogin%3Frd%3D%252Fa%253Fb%253D1\""),
        "{page}"
    );
    let r = send(&client(), get("/a", "application/json")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let v = r.json();
    assert_eq!(
        (
            v["error"].as_str(),
            v["reason"].as_str(),
            v["openid"].as_str()
        ),
        (Some("forbidden"), Some("not_allowed"), Some("oOpenIdTest"))
    );
    let r = send(&client(), get("/_wxgate/auth", "application/json")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["unionid"], "oUnionTest");
    assert_eq!(up.hits(), 0);
}
