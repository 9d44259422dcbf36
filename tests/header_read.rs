//! `server.header_read_timeout_ms` over real sockets: an HTTP/1.1 connection must complete each
//! request head within it (counted from the connection's start or the end of its previous
//! response), however long the idle timeout; it never cuts a request in progress, and never
//! applies to HTTP/2.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEAD_MS: u64 = 400;

/// A gateway with `header_read_timeout_ms = 400`, `idle_timeout_ms = 10000` and everything
/// public; TLS with `cert`.
async fn gateway(cert: Option<(&std::path::Path, &std::path::Path)>) -> Gateway {
    let up = start_upstream().await;
    let toml = public_toml(
        up.addr,
        &format!("header_read_timeout_ms = {HEAD_MS}\nidle_timeout_ms = 10000"),
        cert,
    )
    .replace("timeout_secs = 2", "timeout_secs = 10");
    // The upstream task lives as long as the test's runtime.
    std::mem::forget(up);
    start_gateway(&toml).await
}

/// Closed by the header-read timeout: not before it, and well before the idle timeout.
fn assert_head_close(what: &str, took: Option<Duration>) {
    let took = took.unwrap_or_else(|| panic!("{what}: still open 5 s later"));
    assert!(
        took >= Duration::from_millis(HEAD_MS - 100) && took < Duration::from_millis(3000),
        "{what}: closed after {took:?}"
    );
}

/// `s`, sending nothing more, is closed by the header-read timeout counted from `since`.
async fn assert_closed_at_head_timeout(what: &str, s: &mut TcpStream, since: Instant) {
    let closed = closed_within(s, Duration::from_secs(5)).await;
    assert_head_close(what, closed.map(|_| since.elapsed()));
}

#[tokio::test]
async fn a_trickled_request_head_is_cut_off() {
    let gw = gateway(None).await;
    let t = Instant::now();
    let (mut rd, mut wr) = TcpStream::connect(gw.addr).await.unwrap().into_split();
    // A byte every 50 ms: the connection is never silent, the head never ends.
    let trickle = tokio::spawn(async move {
        for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .chain([b'a'; 200].iter())
        {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut out))
        .await
        .ok()
        .map(|_| t.elapsed());
    trickle.abort();
    assert_head_close("trickled head", closed);
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
}

#[tokio::test]
async fn a_keep_alive_connection_gets_the_header_read_timeout_after_each_response() {
    let gw = gateway(None).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut last = Instant::now();
    for i in 0..3 {
        if i > 0 {
            // Under the timeout between requests: kept.
            tokio::time::sleep(Duration::from_millis(HEAD_MS / 2)).await;
        }
        s.write_all(b"GET /_wxgate/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (head, _) = read_response(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "request {i}: {head}");
        last = Instant::now();
    }
    // Then nothing: closed at the header-read timeout, not the idle timeout (10 s).
    assert_closed_at_head_timeout("keep-alive", &mut s, last).await;
}

#[tokio::test]
async fn a_silent_new_connection_gets_the_header_read_timeout() {
    let gw = gateway(None).await;
    let t = Instant::now();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    assert_closed_at_head_timeout("silent", &mut s, t).await;
}

#[tokio::test]
async fn a_slow_answer_and_a_slow_upload_are_not_cut() {
    let gw = gateway(None).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    // The upstream takes 3x the header-read timeout to answer.
    s.write_all(b"GET /slow?ms=1200 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_response(&mut s).await;
    assert!(
        head.starts_with("HTTP/1.1 200") && body.ends_with("slow done"),
        "{head}{body}"
    );
    // A body sent over 1.2 s after its head, on the same connection.
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nab")
        .await
        .unwrap();
    for part in [&b"cd"[..], b"ef"] {
        tokio::time::sleep(Duration::from_millis(600)).await;
        s.write_all(part).await.unwrap();
    }
    let (head, body) = read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}{body}");
    assert!(
        body.contains("\"body_len\":6"),
        "the whole body went upstream: {head}{body}"
    );
}

#[tokio::test]
async fn http2_is_not_cut_by_the_header_read_timeout() {
    let (_dir, cert, key) = test_cert();
    let gw = gateway(Some((&cert, &key))).await;
    let (tls, proto) = tls_connect(gw.addr, &[b"h2"]).await;
    assert_eq!(proto.as_deref(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake::<_, BoxBody>(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let url = format!("https://localhost:{}/_wxgate/healthz", gw.addr.port());
    // Silent for 3x the header-read timeout before the first stream and between streams.
    for i in 0..2 {
        tokio::time::sleep(Duration::from_millis(HEAD_MS * 3)).await;
        sender
            .ready()
            .await
            .unwrap_or_else(|e| panic!("stream {i}: {e}"));
        let resp = sender
            .send_request(Request::get(&url).body(empty()).unwrap())
            .await
            .unwrap_or_else(|e| panic!("stream {i}: {e}"));
        assert_eq!(resp.status(), StatusCode::OK, "stream {i}");
    }
    assert!(!conn.is_finished());
}
