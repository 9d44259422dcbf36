//! Issue 11 items 3, 5, 8, 10 and the login-binding part of 9: what an unauthenticated
//! client can make the login endpoints hold, how long a JSON login may take to arrive, one
//! answer for every bad `encryptedData`, the per-client login rate limit, and a fresh login
//! binding at every `/login`.

mod common;

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---- helpers ----

/// A `wxgate run` child process (killed on drop).
struct Child {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_run(config: &std::path::Path) -> Child {
    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env_remove("WXGATE_CONFIG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && line.contains("wxgate listening") {
                let rest = &line[line.find("addr").unwrap()..];
                let start = rest.find(|c: char| c.is_ascii_digit()).unwrap();
                let end = rest[start..]
                    .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                    .map(|e| start + e)
                    .unwrap_or(rest.len());
                let _ = tx.send(rest[start..end].parse::<SocketAddr>().unwrap());
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("wxgate did not start");
    Child { child, addr }
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

// ---- item 3: a 60 KB rd is not kept ----

/// 6 000 `/login?rd=<62 000 bytes>` to a separate gateway process: its RSS grows by under
/// 20 MB (the old code kept every rd for ten minutes: +377 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_rd_logins_do_not_grow_memory() {
    let up = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wxgate.toml");
    let toml = config_toml(
        up.addr,
        "http://127.0.0.1:9",
        "[access]\nlogin_rate_per_minute = 0\n",
    );
    std::fs::write(&cfg, toml).unwrap();
    let child = spawn_run(&cfg);
    let pid = child.child.id();
    let addr = child.addr;

    let rd = format!("%2F{}", "a".repeat(62_000 - 3));
    let request = format!(
        "GET /_wxgate/login?rd={rd} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {PC_UA}\r\nAccept: text/html\r\n\r\n"
    );
    assert!(request.len() < 64 * 1024);
    let run = |n: usize| {
        let request = request.clone();
        async move {
            let conns = 8;
            let mut tasks = Vec::new();
            for _ in 0..conns {
                let request = request.clone();
                tasks.push(tokio::spawn(async move {
                    let mut s = TcpStream::connect(addr).await.unwrap();
                    for _ in 0..n / conns {
                        s.write_all(request.as_bytes()).await.unwrap();
                        let (head, _) = read_response(&mut s).await;
                        assert!(head.starts_with("HTTP/1.1 302"), "{head}");
                        // The over-long rd came back as `/`... it is never stored.
                        assert!(!head.contains("aaaaaaaa"), "{head}");
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
    };
    // Warm up: buffers, allocator arenas, the cache's own structures.
    run(400).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = vm_rss_kib(pid);
    run(6_000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = vm_rss_kib(pid);
    let grown_mb = (after.saturating_sub(before)) as f64 / 1024.0;
    eprintln!("RSS {before} KiB -> {after} KiB (+{grown_mb:.1} MB)");
    assert!(grown_mb < 20.0, "RSS grew by {grown_mb:.1} MB");
}

/// The `rd` limit as seen over HTTP: 2048 bytes kept, 2049 become `/`.
#[tokio::test]
async fn rd_over_2048_bytes_becomes_root() {
    let env = env("").await;
    for (len, kept) in [(2048usize, true), (2049, false)] {
        let rd = format!("/{}", "b".repeat(len - 1));
        let mut b = Browser::pc();
        let (_, cb) = to_callback(&env, &mut b, &rd, "alice").await;
        let r = b.nav(&cb).await;
        assert_eq!(r.status, StatusCode::FOUND);
        assert_eq!(r.location() == rd, kept, "{len}");
        if !kept {
            assert_eq!(r.location(), "/");
        }
    }
    // /logout reads rd too.
    let r = Browser::pc()
        .nav(
            &env.gw
                .url(&format!("/_wxgate/logout?rd=/{}", "c".repeat(3000))),
        )
        .await;
    assert_eq!(r.location(), "/");
}

/// A WeChat `code` longer than any real one is refused before WeChat is asked.
#[tokio::test]
async fn overlong_codes_refused() {
    let env = env("").await;
    let mut b = Browser::pc();
    let (_, cb) = to_callback(&env, &mut b, "/", "alice").await;
    let (base, _) = cb.split_once("code=").unwrap();
    let state = state_of(&format!("x?{}", cb.split_once('?').unwrap().1));
    let long = format!("{base}code={}&state={state}", "A".repeat(4000));
    let r = b.nav(&long).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let r = send(
        &client(),
        Request::post(env.gw.url("/_wxgate/app/login"))
            .header("content-type", "application/json")
            .body(body(format!("{{\"code\":\"{}\"}}", "A".repeat(300))))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("too long"), "{}", r.text());
}

// ---- item 5: slow bodies ----

#[tokio::test]
async fn slow_json_login_body_gets_408_and_close() {
    let env = env("").await;
    // body_timeout_ms lives in [server]: start a second gateway with it set.
    let toml = full_config(env.up.addr, &env.mock.url(), "")
        .replace("[server]\n", "[server]\nbody_timeout_ms = 300\n");
    let gw = start_gateway(&toml).await;
    for path in ["/_wxgate/app/login", "/_wxgate/miniprogram/login"] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"co"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let t = Instant::now();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        let took = t.elapsed();
        let text = String::from_utf8_lossy(&out);
        assert!(read.is_ok(), "{path}: no answer and no close within 5 s");
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
        assert!(text.contains("\"error\":\"request_timeout\""), "{text}");
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_millis(2500),
            "{path}: {took:?}"
        );
    }
    // A body that arrives in time is read as before.
    let r = send(
        &client(),
        Request::post(gw.url("/_wxgate/app/login"))
            .header("content-type", "application/json")
            .body(body("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    gw.stop().await;
}

// ---- item 8: one answer for every bad encryptedData ----

const KEY: [u8; 16] = *b"0123456789abcdef";
const OPENID: &str = "oALICE0000000000000000000000";

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn b64d(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// WeChat's jscode2session with a session key the test knows (`js_code=shortkey`: a 12-byte
/// one).
async fn fixed_key_wechat() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let q = req.uri().query().unwrap_or("").to_string();
                    let key = if q.contains("js_code=shortkey") {
                        b64(&[7u8; 12])
                    } else {
                        b64(&KEY)
                    };
                    let body = format!("{{\"session_key\":\"{key}\",\"openid\":\"{OPENID}\"}}");
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(bytes::Bytes::from(body)))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn every_decrypt_failure_gives_the_same_answer() {
    let up = start_upstream().await;
    let wx = fixed_key_wechat().await;
    let gw = start_gateway(&full_config(up.addr, &format!("http://{wx}"), "")).await;
    let iv = *b"fedcba9876543210";
    let enc = |plain: &str| {
        wxgate::providers::wechat::crypto::encrypt_user_data(&KEY, &iv, plain.as_bytes())
    };
    let appid = fixtures::MINI_APPID;
    let good =
        format!(r#"{{"openId":"{OPENID}","nickName":"A","watermark":{{"appid":"{appid}"}}}}"#);

    // Bad padding: 31 bytes of plaintext end in one 0x01 padding byte; flipping the last
    // byte of the first ciphertext block turns it into 0x00.
    let mut ct = b64d(&enc(&"x".repeat(31)));
    ct[15] ^= 0x01;
    let bad_padding = b64(&ct);

    let cases: Vec<(&str, &str, String, String)> = vec![
        ("bad padding", "c", bad_padding, b64(&iv)),
        ("not JSON", "c", enc("this is not json"), b64(&iv)),
        ("JSON array", "c", enc("[1,2,3]"), b64(&iv)),
        ("bad base64", "c", "%%%not base64%%%".into(), b64(&iv)),
        ("bad iv base64", "c", enc(&good), "???".into()),
        ("iv length", "c", enc(&good), b64(&[1u8; 12])),
        ("ciphertext length", "c", b64(&[1u8; 20]), b64(&iv)),
        ("key length", "shortkey", enc(&good), b64(&iv)),
        (
            "watermark mismatch",
            "c",
            enc(&format!(
                r#"{{"openId":"{OPENID}","watermark":{{"appid":"wxOTHER"}}}}"#
            )),
            b64(&iv),
        ),
        (
            "watermark missing",
            "c",
            enc(&format!(r#"{{"openId":"{OPENID}"}}"#)),
            b64(&iv),
        ),
        (
            "another user",
            "c",
            enc(&format!(
                r#"{{"openId":"oBOB","watermark":{{"appid":"{appid}"}}}}"#
            )),
            b64(&iv),
        ),
    ];
    let post = |code: &str, data: &str, iv: &str| {
        let b = serde_json::json!({"code": code, "encryptedData": data, "iv": iv});
        let req = Request::post(gw.url("/_wxgate/miniprogram/login"))
            .header("content-type", "application/json")
            .body(body(b.to_string()))
            .unwrap();
        async move { send(&client(), req).await }
    };
    // The control: the same fake WeChat, good data, a session.
    let ok = post("c", &enc(&good), &b64(&iv)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());

    let mut first: Option<bytes::Bytes> = None;
    for (what, code, data, iv) in &cases {
        let r = post(code, data, iv).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.text());
        assert_eq!(r.json()["error"], "invalid_encrypted_data", "{what}");
        match &first {
            None => first = Some(r.body.clone()),
            Some(f) => assert_eq!(&r.body, f, "{what}: {}", r.text()),
        }
    }
    let text = String::from_utf8_lossy(first.as_ref().unwrap()).into_owned();
    for leak in [
        "padding",
        "watermark",
        "JSON",
        "base64",
        "16",
        "another user",
    ] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    gw.stop().await;
}

// ---- item 10: login rate limit ----

fn limited_config(env_up: SocketAddr, mock: &str, server: &str, per_minute: u32) -> String {
    full_config(
        env_up,
        mock,
        &format!("[access]\nlogin_rate_per_minute = {per_minute}\n"),
    )
    .replace("[server]\n", &format!("[server]\n{server}"))
}

async fn nav_with(gw: &Gateway, path: &str, extra: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(gw.url(path)).header("user-agent", PC_UA);
    if !extra.iter().any(|(k, _)| *k == "accept") {
        b = b.header("accept", "text/html");
    }
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    send(&client(), b.body(empty()).unwrap()).await
}

#[tokio::test]
async fn login_rate_limit_429_page_and_json() {
    let env = env("").await;
    let gw = start_gateway(&limited_config(env.up.addr, &env.mock.url(), "", 3)).await;
    for _ in 0..3 {
        assert_eq!(
            nav_with(&gw, "/_wxgate/login", &[]).await.status,
            StatusCode::FOUND
        );
    }
    let r = nav_with(&gw, "/_wxgate/login", &[]).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    // The callback counts in the same bucket; a JSON client gets JSON.
    let r = nav_with(
        &gw,
        "/_wxgate/callback?state=x&code=y",
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.json()["error"], "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
    // The JSON logins always answer JSON.
    for path in ["/_wxgate/app/login", "/_wxgate/miniprogram/login"] {
        let r = send(
            &client(),
            Request::post(gw.url(path))
                .header("content-type", "application/json")
                .body(body("{\"code\":\"x\"}"))
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert_eq!(r.json()["error"], "rate_limited");
    }
    // Other endpoints are not limited.
    let r = nav_with(&gw, "/_wxgate/healthz", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let m = gw.metrics().await;
    assert!(m.contains("wxgate_rate_limited_total 4"), "{m}");
    gw.stop().await;
}

#[tokio::test]
async fn rate_limit_per_forwarded_client_behind_trusted_proxy() {
    let env = env("").await;
    let gw = start_gateway(&limited_config(
        env.up.addr,
        &env.mock.url(),
        "trusted_proxies = [\"127.0.0.1/32\"]\n",
        2,
    ))
    .await;
    let from = |xff: &'static str| {
        let gw = &gw;
        async move {
            nav_with(gw, "/_wxgate/login", &[("x-forwarded-for", xff)])
                .await
                .status
        }
    };
    assert_eq!(from("1.1.1.1").await, StatusCode::FOUND);
    assert_eq!(from("1.1.1.1").await, StatusCode::FOUND);
    assert_eq!(from("1.1.1.1").await, StatusCode::TOO_MANY_REQUESTS);
    // A spoofed entry left of the proxy's does not change the client.
    assert_eq!(
        from("9.9.9.9, 1.1.1.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy has its own bucket.
    assert_eq!(from("2.2.2.2").await, StatusCode::FOUND);
    gw.stop().await;
}

#[tokio::test]
async fn rate_limit_ignores_xff_from_untrusted_peer() {
    let env = env("").await;
    let gw = start_gateway(&limited_config(env.up.addr, &env.mock.url(), "", 2)).await;
    let mut statuses = Vec::new();
    for xff in ["1.1.1.1", "2.2.2.2", "3.3.3.3"] {
        statuses.push(
            nav_with(&gw, "/_wxgate/login", &[("x-forwarded-for", xff)])
                .await
                .status,
        );
    }
    assert_eq!(
        statuses,
        [
            StatusCode::FOUND,
            StatusCode::FOUND,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    gw.stop().await;
}

// ---- item 9 (part): a fresh login binding at every /login ----

fn login_cookie_of(r: &Reply) -> String {
    r.cookie_value("_wxgate_login").expect("login cookie")
}

/// A binding the client already had (planted by an attacker, say) never signs a new login:
/// a callback presented with only that binding fails.
#[tokio::test]
async fn login_never_adopts_the_client_binding() {
    let env = env("").await;
    let planted = "0123456789abcdef0123456789abcdef".to_string();
    let mut b = Browser::pc();
    b.cookies.push(("_wxgate_login".into(), planted.clone()));
    let r = b.nav(&env.gw.url("/_wxgate/login?rd=/x")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let set = login_cookie_of(&r);
    assert!(!set.starts_with(&planted), "{set}");
    // Finish the WeChat part, then present only the planted binding at the callback.
    let page_url = r.location().split('#').next().unwrap().to_string();
    let page = b.nav(&page_url).await;
    let link = find_link(&page.text(), "user-alice").unwrap();
    let cb = b
        .nav(&format!("{}{}", env.mock.url(), link))
        .await
        .location();
    let mut attacker_view = Browser::pc();
    attacker_view
        .cookies
        .push(("_wxgate_login".into(), planted.clone()));
    let r = attacker_view.nav(&cb).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.text().contains("browser that started it"), "{}", r.text());
    // The browser itself finishes.
    let r = b.nav(&cb).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.location(), "/x");
}

/// Two tabs each start a login: both can finish, in either order.
#[tokio::test]
async fn two_tabs_can_both_finish_login() {
    let env = env("").await;
    let mut b = Browser::pc();
    let (_, cb1) = to_callback(&env, &mut b, "/one", "alice").await;
    let (_, cb2) = to_callback(&env, &mut b, "/two", "alice").await;
    let (_, cb3) = to_callback(&env, &mut b, "/three", "alice").await;
    // The first tab, whose binding is now the oldest of three.
    let r = b.nav(&cb1).await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::FOUND, "/one".into()),
        "{}",
        r.text()
    );
    let r = b.nav(&cb3).await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::FOUND, "/three".into()),
        "{}",
        r.text()
    );
    let r = b.nav(&cb2).await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::FOUND, "/two".into()),
        "{}",
        r.text()
    );
    // A fourth login pushes out the oldest binding.
    let mut b = Browser::pc();
    let (_, old) = to_callback(&env, &mut b, "/old", "alice").await;
    for i in 0..3 {
        to_callback(&env, &mut b, &format!("/n{i}"), "alice").await;
    }
    let r = b.nav(&old).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
}
