//! Issue 2: the gateway as a reverse proxy, over real sockets.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::{Request, StatusCode};
use wxgate::session::NewSession;

/// Put a session straight into the running gateway's store; returns the Cookie header value.
async fn session_cookie(gw: &Gateway, unionid: Option<&str>) -> String {
    let app = &gw.running.as_ref().unwrap().app;
    let n = NewSession {
        nickname: "Tester 🐼",
        avatar: "https://thirdwx.qlogo.cn/x/132",
        ..website_session("oOpenIdTest", unionid)
    };
    format!("_wxgate={}", seed_session(app, &n).await)
}

async fn setup(extra: &str) -> (Upstream, Gateway, String) {
    let up = start_upstream().await;
    let gw = start_gateway(&config_toml(up.addr, "http://127.0.0.1:9", extra)).await;
    let cookie = session_cookie(&gw, Some("oUnionTest")).await;
    (up, gw, cookie)
}

#[tokio::test]
async fn path_and_query_kept_byte_for_byte() {
    let (_up, gw, cookie) = setup("").await;
    let target = "/a/b%2Fc;p=1/%E4%B8%AD/x..y/.z?x=1&y=%20+z&&=&q=%2F..&empty";
    let req = format!("GET {target} HTTP/1.1\r\nHost: app.example.com\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n");
    let out = raw(gw.addr, req.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["uri"], target);
    assert_eq!(v["method"], "GET");
}

#[tokio::test]
async fn upload_8mib_streamed_with_and_without_length() {
    let (_up, gw, cookie) = setup("").await;
    let c = client();
    let n = 8 * 1024 * 1024;
    // Chunked (no length known up front).
    let req = Request::post(gw.url("/upload"))
        .header("cookie", &cookie)
        .body(pattern_stream(n))
        .unwrap();
    let r = send(&c, req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["body_len"], n);
    assert_eq!(r.json()["body_sha256"], pattern_sha(n));
    // With Content-Length.
    let req = Request::put(gw.url("/upload"))
        .header("cookie", &cookie)
        .header("content-length", n.to_string())
        .body(pattern_stream(n))
        .unwrap();
    let r = send(&c, req).await;
    assert_eq!(r.json()["body_len"], n);
    assert_eq!(r.json()["body_sha256"], pattern_sha(n));
    assert_eq!(
        r.echoed_header("content-length").as_deref(),
        Some(n.to_string().as_str())
    );
}

#[tokio::test]
async fn download_8mib_streamed() {
    let (_up, gw, cookie) = setup("").await;
    let n = 8 * 1024 * 1024;
    let req = Request::get(gw.url(&format!("/download?bytes={n}")))
        .header("cookie", &cookie)
        .body(empty())
        .unwrap();
    let r = send(&client(), req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), n);
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(&r.body)), pattern_sha(n));
}

#[tokio::test]
async fn chunked_request_body() {
    let (_up, gw, cookie) = setup("").await;
    let req = format!(
        "POST /chunked HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    );
    let out = raw(gw.addr, req.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["body_len"], 11);
    use sha2::Digest;
    assert_eq!(
        v["body_sha256"],
        hex::encode(sha2::Sha256::digest(b"hello world"))
    );
    let te = v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p[0] == "transfer-encoding" && p[1] == "chunked");
    assert!(
        te,
        "the upstream request is re-framed as chunked, not buffered: {v}"
    );
}

#[tokio::test]
async fn hop_by_hop_removed_both_ways() {
    let (_up, gw, cookie) = setup("").await;
    let req = Request::get(gw.url("/echo"))
        .header("cookie", &cookie)
        .header("connection", "x-secret-hop")
        .header("x-secret-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic eHg6eXk=")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers, deflate")
        .header("trailer", "x-t")
        .header("upgrade", "h2c")
        .header("x-end-to-end", "kept")
        .body(empty())
        .unwrap();
    let r = send(&client(), req).await;
    let names: Vec<String> = r.echoed_headers().into_iter().map(|(k, _)| k).collect();
    for hop in [
        "x-secret-hop",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "trailer",
        "upgrade",
    ] {
        assert!(
            !names.contains(&hop.to_string()),
            "{hop} reached the upstream: {names:?}"
        );
    }
    assert_eq!(r.echoed_header("te").as_deref(), Some("trailers"));
    assert_eq!(r.echoed_header("x-end-to-end").as_deref(), Some("kept"));

    let req = Request::get(gw.url("/hop"))
        .header("cookie", &cookie)
        .body(empty())
        .unwrap();
    let r = send(&client(), req).await;
    for hop in [
        "x-hop-secret",
        "keep-alive",
        "proxy-authenticate",
        "trailer",
        "upgrade",
    ] {
        assert!(!r.headers.contains_key(hop), "{hop} reached the client");
    }
    assert_eq!(r.headers["x-end-to-end"], "kept");
}

/// Sites set raw UTF-8 cookie values and browsers send them back as they are: the session cookie
/// next to one is still found, and still kept from the upstream.
#[tokio::test]
async fn session_cookie_next_to_a_utf8_cookie() {
    let (_up, gw, cookie) = setup("").await;
    let mixed = format!("lang=中文; {cookie}; theme=dark");
    let req = Request::get(gw.url("/echo"))
        .header("accept", "application/json")
        .header(
            "cookie",
            http::HeaderValue::from_bytes(mixed.as_bytes()).unwrap(),
        )
        .body(empty())
        .unwrap();
    let r = send(&client(), req).await;
    assert_eq!(r.status, StatusCode::OK, "not authenticated: {}", r.text());
    assert_eq!(
        r.echoed_header("x-wechat-openid").as_deref(),
        Some("oOpenIdTest")
    );
    assert_eq!(
        r.echoed_header("cookie").as_deref(),
        Some("lang=中文; theme=dark")
    );
}

#[tokio::test]
async fn forwarded_headers_untrusted_peer() {
    let (_up, gw, cookie) = setup("").await;
    let req = Request::get(gw.url("/echo"))
        .header("cookie", &cookie)
        .header("host", "app.example.com")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .body(empty())
        .unwrap();
    let r = send(&client(), req).await;
    assert_eq!(
        r.echoed_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        r.echoed_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        r.echoed_header("x-forwarded-host").as_deref(),
        Some("app.example.com")
    );
    assert_eq!(
        r.echoed_header("host").as_deref(),
        Some("app.example.com"),
        "Host is kept"
    );
}

#[tokio::test]
async fn forwarded_headers_trusted_peer() {
    let (_up, gw, cookie) = setup("").await;
    drop(gw);
    let up = start_upstream().await;
    let toml = config_toml(up.addr, "http://127.0.0.1:9", "").replace(
        "[upstream]",
        "trusted_proxies = [\"127.0.0.0/8\"]\n[upstream]",
    );
    let gw = start_gateway(&toml).await;
    let cookie2 = session_cookie(&gw, None).await;
    let _ = cookie;
    let req = Request::get(gw.url("/echo"))
        .header("cookie", &cookie2)
        .header("host", "internal:8080")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .body(empty())
        .unwrap();
    let r = send(&client(), req).await;
    assert_eq!(
        r.echoed_header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(
        r.echoed_header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(
        r.echoed_header("x-forwarded-host").as_deref(),
        Some("app.example.com")
    );
    assert_eq!(r.echoed_header("host").as_deref(), Some("internal:8080"));
}

#[tokio::test]
async fn http2_over_alpn_and_http1_over_tls() {
    let up = start_upstream().await;
    let (_dir, cert, key) = test_cert();
    let toml = config_toml(up.addr, "http://127.0.0.1:9", "").replace(
        "[upstream]",
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n[upstream]",
            cert.display(),
            key.display()
        ),
    );
    let gw = start_gateway(&toml).await;
    let cookie = session_cookie(&gw, Some("u1")).await;

    let (tls, proto) = tls_connect(gw.addr, &[b"h2", b"http/1.1"]).await;
    assert_eq!(proto.as_deref(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("https://app.example.com:{}/h2?x=1", gw.addr.port()))
        .header("cookie", "a=1")
        .header("cookie", &cookie)
        .body(empty())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    use http_body_util::BodyExt;
    let v: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["uri"], "/h2?x=1");
    assert_eq!(v["version"], "HTTP/1.1");
    let hdr = |n: &str| {
        v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0] == n)
            .map(|p| p[1].as_str().unwrap().to_string())
    };
    assert_eq!(
        hdr("host").as_deref(),
        Some(format!("app.example.com:{}", gw.addr.port()).as_str())
    );
    assert_eq!(hdr("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(hdr("x-wechat-unionid").as_deref(), Some("u1"));
    assert_eq!(
        hdr("cookie").as_deref(),
        Some("a=1"),
        "gateway cookie removed, others joined"
    );

    let (tls, proto) = tls_connect(gw.addr, &[b"http/1.1"]).await;
    assert_eq!(proto.as_deref(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/h1")
        .header("host", "localhost")
        .header("cookie", &cookie)
        .body(empty())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn websocket_echo_through_gateway() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let (_up, gw, cookie) = setup("").await;
    let mut req = format!("ws://{}/ws", gw.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("websocket handshake");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    for msg in ["hello", "你好 🐼", &"x".repeat(100_000)] {
        ws.send(Message::text(msg)).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), msg);
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let back = ws.next().await.unwrap().unwrap();
    assert_eq!(back.into_data(), vec![0u8, 1, 2, 255]);
    ws.close(None).await.ok();
}

#[tokio::test]
async fn websocket_without_session_is_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let (up, gw, _cookie) = setup("").await;
    let req = format!("ws://{}/ws", gw.addr)
        .into_client_request()
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let err = tokio_tungstenite::client_async(req, tcp).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn upstream_unreachable_is_502() {
    let dead = closed_port().await;
    let gw = start_gateway(&config_toml(dead, "http://127.0.0.1:9", "")).await;
    let cookie = session_cookie(&gw, None).await;
    let req = Request::get(gw.url("/x"))
        .header("cookie", &cookie)
        .header("accept", "text/html")
        .body(empty())
        .unwrap();
    let r = send(&client(), req).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(r.text().contains("502"));
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    // Still serving.
    let r = send(
        &client(),
        Request::get(gw.url("/_wxgate/healthz"))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn upstream_timeout_is_504() {
    let up = start_upstream().await;
    let toml = config_toml(up.addr, "http://127.0.0.1:9", "")
        .replace("timeout_secs = 2", "timeout_secs = 1");
    let gw = start_gateway(&toml).await;
    let cookie = session_cookie(&gw, None).await;
    let t = Instant::now();
    let req = Request::get(gw.url("/slow?ms=5000"))
        .header("cookie", &cookie)
        .body(empty())
        .unwrap();
    let r = send(&client(), req).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_upstream() {
    let (_up, gw, cookie) = setup("[access]\npublic_paths = [\"/public/\"]\n").await;
    for (path, with_session) in [
        ("/public/x", false),
        ("/public/x", true),
        ("/private", true),
    ] {
        // Raw bytes, so names with `_` and odd case go out exactly as written.
        let cookie_line = if with_session {
            format!("Cookie: {cookie}\r\n")
        } else {
            String::new()
        };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\n{cookie_line}X-WeChat-UnionId: evil1\r\nX_WeChat_OpenId: evil2\r\nx-wechat-appid: evil3\r\nX_WECHAT_NICKNAME: evil4\r\nX-Wechat_Source: evil5\r\nx-wechat-signature: evil6\r\nX-WeChat-Anything: evil7\r\nConnection: close\r\n\r\n"
        );
        let out = raw(gw.addr, req.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{path}: {out}");
        assert!(
            !out.contains("evil"),
            "spoofed header reached the upstream on {path}: {out}"
        );
        if with_session && path == "/private" {
            assert!(out.contains("oUnionTest"), "real identity injected: {out}");
        }
    }
}

/// A public path is forwarded without identity, with or without a session, and counted as
/// `public`; a logged-in request elsewhere gets its identity and is counted as `proxy`.
#[tokio::test]
async fn public_and_logged_in_requests_forwarded_and_counted_apart() {
    let (_up, gw, cookie) = setup("[access]\npublic_paths = [\"/public/\"]\n").await;
    let c = client();
    for (path, with_session, identity) in [
        ("/public/a", false, false),
        ("/public/b", true, false),
        ("/private", true, true),
    ] {
        let mut req = Request::get(gw.url(path));
        if with_session {
            req = req.header("cookie", &cookie);
        }
        let r = send(&c, req.body(empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
        assert_eq!(
            r.text().contains("oUnionTest"),
            identity,
            "{path}: {}",
            r.text()
        );
    }
    let r = send(&c, Request::get(gw.url("/private")).body(empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let m = gw.metrics().await;
    for line in [
        "wxgate_requests_total{route=\"public\",class=\"2xx\"} 2\n",
        "wxgate_requests_total{route=\"proxy\",class=\"2xx\"} 1\n",
        "wxgate_requests_total{route=\"unauthenticated\",class=\"4xx\"} 1\n",
    ] {
        assert!(m.contains(line), "no {line} in:\n{m}");
    }
}

#[tokio::test]
async fn verification_files_and_traversal() {
    let up = start_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("MP_verify_fromDir123.txt"), b"fromDir123").unwrap();
    std::fs::write(dir.path().join("secret.txt"), b"TOPSECRET").unwrap();
    std::fs::write(dir.path().join("x_verify_abc.txt.bak"), b"TOPSECRET").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/MP_verify_sub1.txt"), b"TOPSECRET").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dir.path().join("MP_verify_link1.txt")).unwrap();
    let extra = format!(
        "[verification]\ndir = \"{}\"\nfiles = {{ \"MP_verify_inline42.txt\" = \"inline42\" }}\n",
        dir.path().display()
    );
    let gw = start_gateway(&config_toml(up.addr, "http://127.0.0.1:9", &extra)).await;
    let c = client();
    for (path, want) in [
        ("/MP_verify_inline42.txt", "inline42"),
        ("/MP_verify_fromDir123.txt", "fromDir123"),
    ] {
        let r = send(&c, Request::get(gw.url(path)).body(empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.text(), want);
        assert_eq!(r.headers["content-type"], "text/plain");
    }
    assert_eq!(up.hits(), 0, "verification files never hit the upstream");
    for path in [
        "/secret.txt",
        "/x_verify_abc.txt.bak",
        "/sub/MP_verify_sub1.txt",
        "/MP_verify_link1.txt",
        "/..%2fsecret.txt",
        "/%2e%2e/secret.txt",
        "/MP_verify_inline42.txt/..%2f..%2fsecret.txt",
        "/sub%2fMP_verify_sub1.txt",
        "/MP_verify_fromDir123.txt%00",
        "/MP_verify_../secret.txt",
        "//MP_verify_fromDir123.txt",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let out = raw(gw.addr, req.as_bytes()).await;
        assert!(!out.starts_with("HTTP/1.1 200"), "{path}: {out}");
        assert!(!out.contains("TOPSECRET"), "{path}");
    }
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_gateway_keeps_serving() {
    let (_up, gw, cookie) = setup("").await;
    let cases: Vec<Vec<u8>> = vec![
        b"GARBAGE\r\n\r\n".to_vec(),
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
        b"GET  HTTP/1.1\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
            .to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(200_000)
        )
        .into_bytes(),
        format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000)).into_bytes(),
        vec![0xff, 0xfe, 0x00, 0x01, b'\r', b'\n', b'\r', b'\n'],
    ];
    for case in cases {
        let out = raw(gw.addr, &case).await;
        let status: Option<u16> = out.get(9..12).and_then(|s| s.parse().ok());
        assert!(
            out.is_empty() || status.is_some_and(|s| (400..500).contains(&s)),
            "case {:?} got {:?}",
            String::from_utf8_lossy(&case[..case.len().min(60)]),
            &out[..out.len().min(200)]
        );
    }
    let req = Request::get(gw.url("/still"))
        .header("cookie", &cookie)
        .body(empty())
        .unwrap();
    assert_eq!(send(&client(), req).await.status, StatusCode::OK);
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let (_up, gw, _cookie) = setup("").await;
    let req = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let out = raw(gw.addr, req.as_bytes()).await;
    assert!(
        out.starts_with("HTTP/1.1 431"),
        "{}",
        &out[..out.len().min(100)]
    );
}

#[tokio::test]
async fn slow_header_client_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = start_upstream().await;
    let toml = config_toml(up.addr, "http://127.0.0.1:9", "")
        .replace("[upstream]", "header_read_timeout_ms = 300\n[upstream]");
    let gw = start_gateway(&toml).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buf = Vec::new();
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "connection was not closed");
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn slow_tls_handshake_is_cut_off() {
    use tokio::io::AsyncReadExt;
    let up = start_upstream().await;
    let (_dir, cert, key) = test_cert();
    let toml = config_toml(up.addr, "http://127.0.0.1:9", "").replace(
        "[upstream]",
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_handshake_timeout_ms = 300\n[upstream]",
            cert.display(),
            key.display()
        ),
    );
    let gw = start_gateway(&toml).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "silent TLS client was not dropped");
}

#[tokio::test]
async fn health_and_readiness() {
    let (_up, gw, _c) = setup("").await;
    let r = send(
        &client(),
        Request::get(gw.url("/_wxgate/healthz"))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "ok"));
    let r = send(
        &client(),
        Request::get(gw.url("/_wxgate/readyz"))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(gw.metrics().await.contains("wxgate_requests_total"));
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_request() {
    let (_up, mut gw, cookie) = setup("").await;
    let url = gw.url("/slow?ms=1500");
    let c = client();
    let inflight = tokio::spawn(async move {
        let req = Request::get(url)
            .header("cookie", &cookie)
            .body(empty())
            .unwrap();
        send(&c, req).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let running = gw.running.take().unwrap();
    let addr = gw.addr;
    let stopping = tokio::spawn(running.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown began"
    );
    let r = inflight.await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "slow done");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .unwrap()
        .unwrap();
}
