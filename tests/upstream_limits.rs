//! Limits toward the upstream and on requests, over real sockets: `upstream.max_connections`
//! under HTTP/2 fan-out, a response body that stalls, the header count on HTTP/1 and HTTP/2,
//! and `/metrics` on its own listener.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An upstream that counts its open connections (and the most at once). `/slow` answers after
/// 1.5 s; `/trickle` sends 8 chunks 400 ms apart; anything else answers at once.
struct Counting {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

async fn counting_upstream() -> Counting {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (o, m) = (open.clone(), most.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let now = o.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let body: BoxBody = match req.uri().path() {
                        "/slow" => {
                            tokio::time::sleep(Duration::from_millis(1500)).await;
                            body("slow done")
                        }
                        "/trickle" => {
                            let chunks = futures_util::stream::unfold(0, |i| async move {
                                if i == 8 {
                                    return None;
                                }
                                tokio::time::sleep(Duration::from_millis(400)).await;
                                Some((
                                    Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"x"))),
                                    i + 1,
                                ))
                            });
                            StreamBody::new(chunks).boxed()
                        }
                        _ => body("ok"),
                    };
                    Ok::<_, Infallible>(Response::new(body))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Counting { addr, open, most }
}

/// A TLS gateway, everything public, with extra `[server]` and `[upstream]` lines.
async fn tls_gateway(
    up: SocketAddr,
    server_extra: &str,
    upstream_extra: &str,
) -> (tempfile::TempDir, Gateway) {
    let (dir, cert, key) = test_cert();
    let toml = config_toml(
        up,
        "http://127.0.0.1:9",
        "[access]\npublic_paths = [\"/\"]\n",
    )
    .replace(
        "[upstream]\n",
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n{server_extra}\n[upstream]\n{upstream_extra}\n",
            cert.display(),
            key.display()
        ),
    );
    (dir, start_gateway(&toml).await)
}

async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<BoxBody> {
    let (tls, proto) = tls_connect(addr, &[b"h2"]).await;
    assert_eq!(proto.as_deref(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_fan_out_is_capped_at_upstream_max_connections_then_503() {
    let up = counting_upstream().await;
    let (_dir, gw) = tls_gateway(up.addr, "", "max_connections = 16").await;
    let gw = {
        // connect_timeout_ms is 500 in config_toml: the wait for a free connection.
        gw
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let sender = h2_client(gw.addr).await;
        for _ in 0..32 {
            let mut sender = sender.clone();
            let port = gw.addr.port();
            tasks.push(tokio::spawn(async move {
                let req = Request::get(format!("https://localhost:{port}/slow"))
                    .header("accept", "application/json")
                    .body(empty())
                    .unwrap();
                let t = Instant::now();
                let resp = sender.send_request(req).await.unwrap();
                let status = resp.status();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                (status, body, t.elapsed())
            }));
        }
    }
    let (mut ok, mut busy) = (0, 0);
    for t in tasks {
        let (status, body, took) = t.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["error"], "upstream_busy", "{v}");
                // Waited for a connection about connect_timeout_ms, no longer.
                assert!(took < Duration::from_secs(3), "503 after {took:?}");
            }
            other => panic!("unexpected {other}: {}", String::from_utf8_lossy(&body)),
        }
    }
    let most = up.most.load(Ordering::SeqCst);
    assert!(most <= 16, "the upstream saw {most} connections at once");
    assert!(ok >= 16, "{ok} answered, {busy} busy");
    assert!(
        busy > 0,
        "256 slow requests over 16 connections: some must be refused"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "no hang");
    // And the gateway serves again once the slow ones are done.
    let mut sender = h2_client(gw.addr).await;
    let resp = sender
        .send_request(
            Request::get(format!("https://localhost:{}/fast", gw.addr.port()))
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(up.open.load(Ordering::SeqCst) <= 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_of_one_worker_free_up_for_another() {
    let up = counting_upstream().await;
    let toml = config_toml(
        up.addr,
        "http://127.0.0.1:9",
        "[access]\npublic_paths = [\"/\"]\n",
    )
    .replace("[server]\n", "[server]\nworkers = 2\n")
    .replace("[upstream]\n", "[upstream]\nmax_connections = 2\n")
    .replace("connect_timeout_ms = 500", "connect_timeout_ms = 2500");
    let gw = start_gateway(&toml).await;
    // The acceptor deals connections to the two workers in turn: the 1st and 3rd go to one.
    let c1 = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let c2 = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let c3 = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let one = |s: tokio::net::TcpStream, path: &'static str| async move {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(conn);
        let resp = send
            .send_request(
                Request::get(path)
                    .header("host", "x")
                    .body(empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        resp.into_body().collect().await.unwrap();
        (status, send)
    };
    // Two requests at once on one worker: its two upstream connections, then idle in its pool.
    let (a, b) = tokio::join!(one(c1, "/slow"), one(c3, "/slow"));
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
    assert_eq!(up.most.load(Ordering::SeqCst), 2);
    // The other worker needs one: the first worker's reaper closes its idle ones.
    let t = Instant::now();
    let (status, _) = one(c2, "/fast").await;
    assert_eq!(status, StatusCode::OK, "after {:?}", t.elapsed());
    // Once the upstream has seen the closes (it may see the new connection first): two open
    // at most, the cap.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(up.open.load(Ordering::SeqCst) <= 2);
}

/// An upstream that answers `Content-Length: 100` with 5 bytes, then nothing. Reports when the
/// gateway closes the connection.
async fn stalling_upstream() -> (SocketAddr, tokio::sync::oneshot::Receiver<Instant>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
            .await
            .unwrap();
        // Wait for the gateway to close its end.
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = closed_tx.send(Instant::now());
    });
    (addr, closed_rx)
}

#[tokio::test]
async fn a_stalled_response_body_is_aborted_and_its_upstream_connection_closed() {
    let (up, closed) = stalling_upstream().await;
    let toml = config_toml(
        up,
        "http://127.0.0.1:9",
        "[access]\npublic_paths = [\"/\"]\n",
    )
    .replace("timeout_secs = 2", "timeout_secs = 1");
    let gw = start_gateway(&toml).await;
    let s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            Request::get("/big")
                .header("host", "x")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let t = Instant::now();
    let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
        .await
        .expect("the body still hangs after 5 s");
    assert!(
        body.is_err(),
        "a stalled body ends with an error, not a short body"
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(2500),
        "aborted after {took:?}"
    );
    let closed = tokio::time::timeout(Duration::from_secs(2), closed)
        .await
        .expect("upstream connection still open")
        .unwrap();
    assert!(closed.duration_since(t) < Duration::from_millis(2500));
}

#[tokio::test]
async fn a_slow_but_steady_response_body_is_not_cut() {
    let up = counting_upstream().await;
    let toml = config_toml(
        up.addr,
        "http://127.0.0.1:9",
        "[access]\npublic_paths = [\"/\"]\n",
    )
    .replace("timeout_secs = 2", "timeout_secs = 1");
    let gw = start_gateway(&toml).await;
    // 8 bytes over 3.2 s: longer than the limit in all, never silent for it.
    let r = send(&client(), get(&gw.url("/trickle")).body(empty()).unwrap()).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "xxxxxxxx"));
}

#[tokio::test]
async fn too_many_headers_refused_alike_on_http1_and_http2() {
    let up = start_upstream().await;
    let (_dir, gw) = tls_gateway(up.addr, "", "").await;

    // HTTP/1.1 over TLS: hyper's parser stops at 100 fields.
    let (mut tls, _) = tls_connect(gw.addr, &[b"http/1.1"]).await;
    let mut req = String::from("GET /echo HTTP/1.1\r\nHost: x\r\n");
    for i in 0..150 {
        req.push_str(&format!("x-h{i}: v\r\n"));
    }
    req.push_str("\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 431"), "HTTP/1.1: {out}");

    // HTTP/2: the same 150 fields, the same status.
    let mut sender = h2_client(gw.addr).await;
    let mut b = Request::get(format!("https://localhost:{}/echo", gw.addr.port()))
        .header("accept", "application/json");
    for i in 0..150 {
        b = b.header(format!("x-h{i}"), "v");
    }
    let resp = sender.send_request(b.body(empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    // The gateway's own answer (an upstream with an HTTP/1 parser would refuse them too, with
    // an empty 431, but they must not get that far).
    assert_eq!(
        status,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "{body}"
    );
    assert!(body.contains("\"too_many_headers\""), "HTTP/2: {body:?}");
    assert_eq!(up.hits(), 0, "nothing reached the upstream");

    // 90 fields and many cookie crumbs (HTTP/2 clients split Cookie) pass.
    let mut b = Request::get(format!("https://localhost:{}/echo", gw.addr.port()));
    for i in 0..90 {
        b = b.header(format!("x-h{i}"), "v");
    }
    for i in 0..40 {
        b = b.header("cookie", format!("c{i}=1"));
    }
    let resp = sender.send_request(b.body(empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn metrics_only_on_metrics_listen() {
    let up = start_upstream().await;
    let toml = config_toml(up.addr, "http://127.0.0.1:9", "")
        .replace("[upstream]", "metrics_listen = \"127.0.0.1:0\"\n[upstream]");
    let gw = start_gateway(&toml).await;
    let maddr = gw
        .running
        .as_ref()
        .unwrap()
        .metrics_addr
        .expect("metrics address");
    assert_ne!(maddr.port(), gw.addr.port());
    let c = client();
    let r = send(
        &c,
        get(&format!("http://{maddr}/metrics"))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("wxgate_requests_total"), "{}", r.text());
    let r = send(
        &c,
        get(&format!("http://{maddr}/_wxgate/healthz"))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "only /metrics there");
    let r = send(&c, get(&gw.url("/_wxgate/metrics")).body(empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "not on the serving port");
    let r = send(&c, get(&gw.url("/_wxgate/healthz")).body(empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
}
