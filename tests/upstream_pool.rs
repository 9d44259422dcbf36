//! The upstream connection pool, seen from a real upstream that counts its connections:
//! keep-alive reuse, idle limit, connections the upstream closes, abandoned responses.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// An upstream that counts connections accepted and open. `close_after`: it closes each
/// connection this long after its first response (as an upstream's keep-alive timeout does,
/// without saying so in the response).
struct Counting {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

async fn counting_upstream(close_after: Option<Duration>) -> Counting {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (a, o) = (accepted.clone(), open.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            a.fetch_add(1, Ordering::SeqCst);
            o.fetch_add(1, Ordering::SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                let served = Arc::new(tokio::sync::Notify::new());
                let n = served.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let n = n.clone();
                    async move {
                        let q = req.uri().query().unwrap_or("").to_string();
                        if let Some(ms) = q.strip_prefix("sleep=") {
                            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
                        }
                        let body = if let Some(n) = q.strip_prefix("bytes=") {
                            Bytes::from(vec![b'x'; n.parse().unwrap()])
                        } else {
                            Bytes::from_static(b"ok\n")
                        };
                        n.notify_one();
                        Ok::<_, Infallible>(Response::new(Full::new(body)))
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc);
                match close_after {
                    None => {
                        let _ = conn.await;
                    }
                    Some(d) => {
                        tokio::pin!(conn);
                        tokio::select! {
                            _ = conn.as_mut() => {}
                            _ = async { served.notified().await; tokio::time::sleep(d).await } => {
                                conn.as_mut().graceful_shutdown();
                                let _ = conn.await;
                            }
                        }
                    }
                }
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Counting {
        addr,
        accepted,
        open,
    }
}

/// One worker (one pool), everything public (no session needed), the given upstream settings.
async fn gateway(up: SocketAddr, upstream_extra: &str) -> Gateway {
    let toml = config_toml(
        up,
        "http://127.0.0.1:9",
        "[access]\npublic_paths = [\"/\"]\n",
    )
    .replace("[server]\n", "[server]\nworkers = 1\n")
    .replace("[upstream]\n", &format!("[upstream]\n{upstream_extra}\n"));
    start_gateway(&toml).await
}

async fn get_ok(c: &HttpClient, url: &str) {
    let r = send(c, get(url).body(empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK, "{url}: {}", r.text());
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let up = counting_upstream(None).await;
    let gw = gateway(up.addr, "").await;
    let c = client();
    for i in 0..50 {
        get_ok(&c, &gw.url(&format!("/r{i}"))).await;
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    // Bodies of every size come back complete and give their connection back.
    for n in [0usize, 1, 16_384, 1 << 20] {
        let r = send(
            &c,
            get(&gw.url(&format!("/b?bytes={n}")))
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.body.len(), n);
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn concurrent_requests_open_connections_and_idle_ones_are_capped() {
    let up = counting_upstream(None).await;
    let gw = gateway(up.addr, "pool_max_idle = 2").await;
    let c = client();
    let url = gw.url("/slow?sleep=300");
    let all: Vec<_> = (0..6)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { get_ok(&c, &url).await })
        })
        .collect();
    for t in all {
        t.await.unwrap();
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 6);
    // Two stay for the next requests; the other four are closed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(up.open.load(Ordering::SeqCst), 2);
    get_ok(&c, &gw.url("/again")).await;
    assert_eq!(up.accepted.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn connections_the_upstream_closes_are_not_reused() {
    // The upstream drops every connection 50 ms after answering on it.
    let up = counting_upstream(Some(Duration::from_millis(50))).await;
    let gw = gateway(up.addr, "").await;
    let c = client();
    for i in 0..4 {
        get_ok(&c, &gw.url(&format!("/r{i}"))).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn abandoned_response_closes_its_upstream_connection() {
    let up = counting_upstream(None).await;
    let gw = gateway(up.addr, "").await;
    // A client reads the head of a 64 MiB answer (more than socket buffers hold) and goes away.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /big?bytes=67108864 HTTP/1.1\r\nHost: app\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf)
        .await
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    drop(s);
    // That connection is half-read: it must not serve the next request.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while up.open.load(Ordering::SeqCst) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "upstream connection left open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = client();
    get_ok(&c, &gw.url("/next")).await;
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

/// An upstream that answers the first request on each connection and, on the second, reads
/// it and closes the connection without a word: the keep-alive race, made to happen every time.
async fn closes_on_second_request() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                for answer in [true, false] {
                    // Read one request head (the tests send bodies of a few bytes at most).
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.clear();
                    if answer {
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                }
                // Second request read: close without answering.
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn keep_alive_race_replays_only_safe_requests() {
    let (addr, accepted) = closes_on_second_request().await;
    let gw = gateway(addr, "").await;
    let c = client();
    get_ok(&c, &gw.url("/first")).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // Idle for more than a pool tick: the upstream closes the connection as the next GET
    // arrives on it. The GET has no body and is idempotent: sent again on a new connection.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    get_ok(&c, &gw.url("/second")).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // A POST with a body in the same spot is not sent twice: the client gets the 502.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = send(
        &c,
        Request::post(gw.url("/third")).body(body("x=1")).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
