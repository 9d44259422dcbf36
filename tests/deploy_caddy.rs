//! Issue 5: the Caddy forward_auth recipe (deploy/caddy/Caddyfile), run with the real Caddy
//! (installed from Debian's packages when missing) on a plain-HTTP site address with real
//! ports, the in-process gateway, mock WeChat and echo upstream.
//!
//! Run: `cargo test --test deploy_caddy`

mod common;
#[path = "deploy_support/mod.rs"]
mod deploy_support;

use std::process::{Command, Stdio};

use deploy_support::*;
use wxgate::tools::mock::{fixtures, MockOptions};

struct Caddy {
    proc: Proc,
    port: u16,
    _dir: tempfile::TempDir,
}

/// Caddy with the recipe: admin API and automatic HTTPS off, the site on http://HOST:PORT,
/// state (autosave, storage) inside a temp dir. Retries with new ports on a port race.
async fn start_caddy(wxgate: std::net::SocketAddr, app: std::net::SocketAddr) -> Caddy {
    let caddy = require_binary("caddy", "caddy");
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut conf = read_deploy("caddy/Caddyfile");
        subst(
            &mut conf,
            "\temail admin@example.com\n",
            &format!(
                "\tadmin off\n\tauto_https off\n\tstorage file_system {{\n\t\troot {}\n\t}}\n",
                dir.path().join("data").display()
            ),
        );
        subst(
            &mut conf,
            "\napp.example.com {\n",
            &format!("\nhttp://app.example.com:{port} {{\n"),
        );
        subst(&mut conf, "127.0.0.1:8443", &wxgate.to_string());
        subst(&mut conf, "127.0.0.1:8080", &app.to_string());
        let file = dir.path().join("Caddyfile");
        std::fs::write(&file, &conf).unwrap();

        let out = Command::new(&caddy)
            .args(["validate", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .output()
            .expect("run caddy validate");
        assert!(
            out.status.success(),
            "caddy validate rejects the recipe:\n{}\n--- Caddyfile ---\n{conf}",
            String::from_utf8_lossy(&out.stderr)
        );

        let log = dir.path().join("caddy.log");
        let child = Command::new(&caddy)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn caddy");
        let mut proc = Proc {
            name: "caddy",
            child,
            log,
        };
        match wait_ports(&mut proc, &[port]).await {
            Ok(()) => {
                return Caddy {
                    proc,
                    port,
                    _dir: dir,
                }
            }
            Err(log) if log.contains("address already in use") => last = log,
            Err(log) => panic!("caddy did not start:\n{log}\n--- Caddyfile ---\n{conf}"),
        }
    }
    panic!("caddy could not bind its port three times:\n{last}");
}

#[tokio::test]
async fn caddy_forward_auth_recipe() {
    let up = common::start_upstream().await;
    let mock = common::start_mock(MockOptions {
        redirect_domains: vec!["app.example.com".into()],
        ..MockOptions::default()
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let verify = tempfile::tempdir().unwrap();
    std::fs::write(verify.path().join("MP_verify_Caddy42.txt"), "Caddy42").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let wx_addr = listener.local_addr().unwrap();
    let dead = common::closed_port().await;

    let caddy = start_caddy(wx_addr, up.addr).await;
    let public = format!("http://app.example.com:{}", caddy.port);
    let (_, settings) = recipe_config("caddy/wxgate.toml", &mock.url(), tmp.path(), |t| {
        toml_set(t, "server.listen", wx_addr.to_string());
        toml_set(t, "server.public_url", public.clone());
        toml_set(t, "upstream.url", format!("http://{dead}"));
        toml_set(t, "verification.dir", verify.path().display().to_string());
    });
    let gw = start_wxgate(listener, settings).await;

    // 1. Browser → wxgate's login → WeChat (mock) → callback through Caddy → back, rd intact.
    let target = "/orders/42?tab=items&x=%2F&q=a+b";
    let mut b = Browser::new();
    let trace = login(&mut b, &format!("{public}{target}"), &mock.url(), "alice").await;
    assert_eq!(
        trace.before[0].location().unwrap(),
        format!("{public}/_wxgate/login?rd={}", enc(target)),
        "Caddy log:\n{}",
        caddy.proc.log_text()
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
    assert_eq!(trace.landed, format!("{public}{target}"));
    assert_eq!(up.hits(), 0, "the app saw nothing before the login");

    // 2. The app gets the identity copied from wxgate's 202 (and not wxgate's cookie).
    let r = b.nav(&trace.landed).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echoed_uri(), target);
    assert_eq!(upstream_identity(&r), expected_identity("alice"));
    assert_eq!(
        r.echoed_header("cookie").unwrap_or_default(),
        "",
        "{:?}",
        r.echoed()
    );
    let mut with_app_cookies = b.clone();
    for (i, name) in ["pre", "post"].iter().enumerate() {
        let c = Cookie {
            name: name.to_string(),
            value: "1".into(),
            domain: "app.example.com".into(),
            host_only: true,
            path: "/".into(),
            secure: false,
        };
        if i == 0 {
            with_app_cookies.jar.insert(0, c);
        } else {
            with_app_cookies.jar.push(c);
        }
    }
    let r = with_app_cookies.nav(&format!("{public}/c")).await;
    assert_eq!(r.echoed_header("cookie").as_deref(), Some("pre=1; post=1"));

    // 3. Spoofs never arrive: alice (has a unionid) and carol (has none) both send fakes.
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
    carol.extra = b.extra.clone();
    let r = carol.nav(&t.landed).await;
    assert_eq!(r.status, 200);
    assert_no_spoof(&r);
    assert_eq!(
        upstream_identity(&r),
        expected_identity("carol"),
        "{:?}",
        r.echoed()
    );
    // Account linking's headers come through from wxgate (the spoofs are still sent).
    link_session(&gw, &carol).await;
    assert_linked_identity(&mut carol, &t.landed, "carol").await;

    // 4. No session: API calls get wxgate's 401 JSON, XHR too; a spoof alone does not get in.
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
    let r = get(&format!("{public}/x"), SPOOFS).await;
    assert_eq!(r.status, 401);
    assert_eq!(up.hits(), hits);

    // 5. MP_verify_*.txt through Caddy, from wxgate, without login.
    let r = get(&format!("{public}/MP_verify_Caddy42.txt"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"Caddy42");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(up.hits(), hits);

    // 6. Logout through Caddy.
    let r = b.nav(&format!("{public}/_wxgate/logout")).await;
    assert_eq!(r.status, 200, "the signed-out page");
    b.extra.clear();
    let r = b.nav(&format!("{public}/x")).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.location().unwrap(),
        format!("{public}/_wxgate/login?rd=%2Fx")
    );
}
