//! Client connections over real sockets: the idle timeout (before the first byte, a partial
//! HTTP/2 preface, between keep-alive requests, idle HTTP/2), the connection caps, and running
//! out of file descriptors.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use http::{Request, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const IDLE_MS: u64 = 1000;

/// A gateway with `idle_timeout_ms = 1000` and the given extra `[server]` lines; TLS when
/// `cert` is given.
async fn gateway(
    server_extra: &str,
    cert: Option<(&std::path::Path, &std::path::Path)>,
) -> Gateway {
    let up = start_upstream().await;
    let toml = public_toml(
        up.addr,
        &format!("idle_timeout_ms = {IDLE_MS}\n{server_extra}"),
        cert,
    );
    // The upstream task lives as long as the test's runtime.
    std::mem::forget(up);
    // As `start_gateway`, on a listener with the accept queue `wxgate run` has (the standard
    // 128 overflows when a thousand connections arrive at once).
    let listener = wxgate::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let toml = toml.replace(
        "public_url = \"http://127.0.0.1\"",
        &format!("public_url = \"http://127.0.0.1:{}\"", addr.port()),
    );
    let settings = wxgate::config::Config::from_toml(&toml).expect("test config");
    let running = wxgate::server::serve_on(listener, settings).await.unwrap();
    Gateway {
        addr,
        running: Some(running),
    }
}

/// `GET {prefix}/healthz` on a fresh plain connection; how long the answer took.
async fn healthz(addr: SocketAddr) -> Duration {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /_wxgate/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "healthz: {out}");
    t.elapsed()
}

/// Idle is at most `IDLE_MS` plus a second (the promise), and not much less than `IDLE_MS`.
fn assert_idle_close(what: &str, took: Option<Duration>) {
    let took = took.unwrap_or_else(|| panic!("{what}: still open after the idle timeout + 1 s"));
    assert!(
        took >= Duration::from_millis(IDLE_MS - 200),
        "{what}: closed too early, after {took:?}"
    );
}

fn limit() -> Duration {
    Duration::from_millis(IDLE_MS + 1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_are_closed_and_healthz_keeps_answering() {
    let (_dir, cert, key) = test_cert();
    let extra = "max_connections_per_ip = 5000\n";
    let plain = gateway(extra, None).await;
    let tls = gateway(extra, Some((&cert, &key))).await;

    // /healthz on a fresh connection every 100 ms while the idle connections are open.
    let stop = Arc::new(AtomicBool::new(false));
    let worst = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let poller = {
        let (stop, worst, addr) = (stop.clone(), worst.clone(), plain.addr);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let took = healthz(addr).await;
                worst.lock().unwrap().push(took);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let mut tasks = Vec::new();
    for i in 0..1000usize {
        let addr = plain.addr;
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            if i % 2 == 1 {
                s.write_all(if i % 4 == 1 { b"P" } else { b"G" })
                    .await
                    .unwrap();
            }
            let took = closed_within(&mut s, limit()).await;
            (format!("tcp #{i}"), took)
        }));
    }
    // TLS handshakes in batches: a thousand at once would mostly measure the handshake backlog.
    for batch in 0..10usize {
        let mut handshakes = Vec::new();
        for j in 0..100usize {
            let i = batch * 100 + j;
            let addr = tls.addr;
            handshakes.push(tokio::spawn(async move {
                let alpn: &[&[u8]] = if i % 3 == 0 { &[b"h2"] } else { &[b"http/1.1"] };
                let (mut s, _) = tls_connect(addr, alpn).await;
                if i % 2 == 1 {
                    s.write_all(if i % 4 == 1 { b"P" } else { b"G" })
                        .await
                        .unwrap();
                    s.flush().await.unwrap();
                }
                (i, s, Instant::now())
            }));
        }
        for h in handshakes {
            let (i, mut s, t0) = h.await.unwrap();
            tasks.push(tokio::spawn(async move {
                let took = closed_within(&mut s, limit().saturating_sub(t0.elapsed()))
                    .await
                    .map(|_| t0.elapsed());
                (format!("tls #{i}"), took)
            }));
        }
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let open = results.iter().filter(|(_, t)| t.is_none()).count();
    let slowest = results.iter().filter_map(|(_, t)| *t).max();
    eprintln!("idle connections: {open} still open, slowest close {slowest:?}");
    for (what, took) in results {
        assert_idle_close(&what, took);
    }
    stop.store(true, Ordering::Relaxed);
    poller.await.unwrap();
    let times = worst.lock().unwrap().clone();
    assert!(times.len() >= 10, "healthz polled {} times", times.len());
    let max = times.iter().max().unwrap();
    eprintln!("healthz: {} polls, slowest {max:?}", times.len());
    assert!(
        *max < Duration::from_millis(100),
        "healthz took up to {max:?} while idle connections were open"
    );
    plain.stop().await;
    tls.stop().await;
}

#[tokio::test]
async fn partial_http2_preface_is_closed_plain_and_tls() {
    let (_dir, cert, key) = test_cert();
    let plain = gateway("", None).await;
    let tls = gateway("", Some((&cert, &key))).await;
    let preface = b"PRI * HTTP/2.0\r\n";

    let mut s = TcpStream::connect(plain.addr).await.unwrap();
    s.write_all(preface).await.unwrap();
    assert_idle_close("plain", closed_within(&mut s, limit()).await);

    for alpn in [&[&b"h2"[..]][..], &[b"http/1.1"], &[]] {
        let (mut s, _) = tls_connect(tls.addr, alpn).await;
        s.write_all(preface).await.unwrap();
        s.flush().await.unwrap();
        assert_idle_close(
            &format!("TLS, ALPN {alpn:?}"),
            closed_within(&mut s, limit()).await,
        );
    }
}

#[tokio::test]
async fn silent_connection_is_closed_tcp_and_after_tls_handshake() {
    let (_dir, cert, key) = test_cert();
    let plain = gateway("", None).await;
    let tls = gateway("", Some((&cert, &key))).await;
    let mut s = TcpStream::connect(plain.addr).await.unwrap();
    assert_idle_close("tcp", closed_within(&mut s, limit()).await);
    let (mut s, _) = tls_connect(tls.addr, &[b"h2", b"http/1.1"]).await;
    assert_idle_close("tls", closed_within(&mut s, limit()).await);
}

#[tokio::test]
async fn keep_alive_connection_idle_between_requests_is_closed() {
    // header_read_timeout (10 s by default) would close it only much later.
    let gw = gateway("", None).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut last = Instant::now();
    for i in 0..3 {
        if i > 0 {
            // Busy for most of the idle timeout, but never idle for all of it.
            tokio::time::sleep(Duration::from_millis(IDLE_MS * 3 / 4)).await;
        }
        s.write_all(b"GET /_wxgate/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "request {i}");
        last = Instant::now();
    }
    let closed = closed_within(&mut s, limit()).await.map(|_| last.elapsed());
    assert_idle_close("keep-alive", closed);
}

#[tokio::test]
async fn http2_connection_without_streams_gets_goaway_then_close() {
    let (_dir, cert, key) = test_cert();
    let gw = gateway("", Some((&cert, &key))).await;
    let (tls, proto) = tls_connect(gw.addr, &[b"h2"]).await;
    assert_eq!(proto.as_deref(), Some(&b"h2"[..]));
    // The client's own PINGs (every 200 ms) do not keep the connection open.
    let (mut sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(200))
            .keep_alive_while_idle(true)
            .handshake::<_, BoxBody>(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let resp = sender
        .send_request(
            Request::get(format!(
                "https://localhost:{}/_wxgate/healthz",
                gw.addr.port()
            ))
            .body(empty())
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    drop(resp);
    let t = Instant::now();
    let ended = tokio::time::timeout(limit(), conn).await;
    let took = t.elapsed();
    let ended = ended.expect("idle HTTP/2 connection still open after the idle timeout + 1 s");
    assert!(
        ended.unwrap().is_ok(),
        "closed with GOAWAY, not reset: the connection future ends cleanly"
    );
    assert!(
        took >= Duration::from_millis(IDLE_MS - 200),
        "closed after {took:?}"
    );
    // After GOAWAY the client knows not to start a stream.
    assert!(sender.ready().await.is_err());
}

#[tokio::test]
async fn a_request_in_progress_is_not_cut_by_the_idle_timeout() {
    let up = start_upstream().await;
    let toml = config_toml(
        up.addr,
        "http://127.0.0.1:9",
        "[access]\npublic_paths = [\"/\"]\n",
    )
    .replace(
        "[upstream]",
        &format!("idle_timeout_ms = {IDLE_MS}\n[upstream]"),
    )
    .replace("timeout_secs = 2", "timeout_secs = 10");
    let gw = start_gateway(&toml).await;
    // Long polling: nothing moves for 2.5 idle timeouts.
    let r = send(
        &client(),
        get(&gw.url("/slow?ms=2500")).body(empty()).unwrap(),
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "slow done"));
}

#[tokio::test]
async fn websocket_with_traffic_stays_open_and_a_quiet_one_is_closed() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let gw = gateway("", None).await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{}/ws", gw.addr), tcp)
        .await
        .expect("WebSocket handshake");
    // Messages every 400 ms for 3 s: not idle.
    let mut last = Instant::now();
    for i in 0..8 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(2), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(m.into_text().unwrap().as_str(), format!("m{i}"));
        last = Instant::now();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Then quiet: closed after the idle timeout.
    let end = tokio::time::timeout(limit(), ws.next()).await;
    let took = last.elapsed();
    assert!(end.is_ok(), "quiet WebSocket still open after {took:?}");
    assert!(
        took >= Duration::from_millis(IDLE_MS - 200),
        "closed after {took:?}"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_a_response_is_cut_off() {
    let gw = gateway("", None).await;
    const N: usize = 24 << 20;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(format!("GET /download?bytes={N} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let mut got = s.read(&mut buf).await.unwrap();
    // Stop reading: the socket buffers fill, the gateway cannot send.
    tokio::time::sleep(Duration::from_millis(IDLE_MS * 3)).await;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
            if got > N {
                return;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "neither ended nor complete");
    assert!(
        got < N,
        "the whole response came through: the stalled client was not cut off"
    );
    // The gateway serves on.
    assert!(healthz(gw.addr).await < Duration::from_secs(1));
}

/// A TCP connection from `ip` (any 127.x address is loopback on Linux).
async fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    sock.connect(to).await.unwrap()
}

/// One keep-alive request on `s`: the status line, or None if the connection is closed.
async fn request_on<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> Option<String> {
    if s.write_all(b"GET /_wxgate/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return None;
    }
    let mut buf = vec![0u8; 1024];
    match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
        ),
        Ok(_) => None,
        Err(_) => panic!("no answer and not closed"),
    }
}

#[tokio::test]
async fn connections_over_the_caps_are_closed_at_once() {
    let up = start_upstream().await;
    let toml = config_toml(up.addr, "http://127.0.0.1:9", "").replace(
        "[upstream]",
        "max_connections = 3\nmax_connections_per_ip = 2\n[upstream]",
    );
    let gw = start_gateway(&toml).await;
    let ok = Some("HTTP/1.1 200 OK".to_string());

    let mut a1 = connect_from("127.0.0.1", gw.addr).await;
    let mut a2 = connect_from("127.0.0.1", gw.addr).await;
    assert_eq!(request_on(&mut a1).await, ok);
    assert_eq!(request_on(&mut a2).await, ok);
    // A third from the same IP: over max_connections_per_ip.
    let mut a3 = connect_from("127.0.0.1", gw.addr).await;
    let t = Instant::now();
    assert_eq!(request_on(&mut a3).await, None, "over the per-IP cap");
    assert!(t.elapsed() < Duration::from_millis(500), "closed at once");
    // Another IP gets the third slot; its second is over max_connections.
    let mut b1 = connect_from("127.0.0.2", gw.addr).await;
    assert_eq!(request_on(&mut b1).await, ok);
    let mut b2 = connect_from("127.0.0.2", gw.addr).await;
    assert_eq!(request_on(&mut b2).await, None, "over the total cap");
    // The ones admitted still serve.
    assert_eq!(request_on(&mut a1).await, ok);
    assert_eq!(request_on(&mut b1).await, ok);
    // A slot comes free when its connection closes.
    drop(a2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut a4 = connect_from("127.0.0.1", gw.addr).await;
    assert_eq!(request_on(&mut a4).await, ok);
}

// ---- out of file descriptors: the real binary under `prlimit --nofile=256` ----

struct Child {
    child: std::process::Child,
    log: Arc<Mutex<String>>,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) of `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here (0-based 11, 12).
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let hz = 100; // USER_HZ on Linux
    Duration::from_millis(ticks * 1000 / hz)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_then_serving_again_within_a_second() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        panic!("prlimit (util-linux) is needed for this test");
    }
    let up = start_upstream().await;
    let port = closed_port().await.port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wxgate.toml");
    let toml = config_toml(up.addr, "http://127.0.0.1:9", "")
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace("[upstream]", "workers = 1\n[upstream]");
    std::fs::write(&cfg, toml).unwrap();
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=256:256")
        .arg(bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let l2 = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut g = l2.lock().unwrap();
            g.push_str(&line);
            g.push('\n');
        }
    });
    let child = Child { child, log };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = Instant::now();
    loop {
        if let Ok(Ok(mut s)) =
            tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await
        {
            if request_on(&mut s).await.is_some() {
                break;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "wxgate did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // More idle connections than the gateway has descriptors: the rest wait in the backlog
    // (which holds at least 128).
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stuck = tokio::time::timeout(Duration::from_millis(500), async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        request_on(&mut s).await
    })
    .await;
    assert!(
        stuck.is_err(),
        "the gateway should be out of descriptors: {stuck:?}\n{}",
        child.log.lock().unwrap()
    );
    // Not spinning: CPU time over 2 s of failing accepts.
    let pid = child.child.id();
    let before = cpu_time(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_time(pid) - before;
    assert!(
        used < Duration::from_millis(500),
        "{used:?} of CPU in 2 s while out of descriptors"
    );

    drop(held);
    let t = Instant::now();
    loop {
        let answered = tokio::time::timeout(Duration::from_millis(300), async {
            let mut s = TcpStream::connect(addr).await.ok()?;
            request_on(&mut s).await
        })
        .await;
        if let Ok(Some(status)) = answered {
            assert_eq!(status, "HTTP/1.1 200 OK");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "not serving again a second after descriptors came free"
        );
    }
    assert!(t.elapsed() < Duration::from_secs(1));
    // One log line when accepting started failing (and at most one per few seconds after),
    // one when it worked again: not one per retry.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = child.log.lock().unwrap().clone();
    let failing =
        log.matches("accept failed").count() + log.matches("accept still failing").count();
    assert!(
        (1..=3).contains(&failing),
        "{failing} accept-failure lines:\n{log}"
    );
    assert!(log.contains("accepting connections again"), "{log}");
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_a_readable_400() {
    let (_dir, cert, key) = test_cert();
    let tls = gateway("", Some((&cert, &key))).await;
    for req in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"POST /_wxgate/app/login HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        // Only part of a request head: answered once the gateway stops waiting for the rest.
        b"GET / HT",
    ] {
        let mut s = TcpStream::connect(tls.addr).await.unwrap();
        s.write_all(req).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
            .await
            .expect("answered and closed within 5 s")
            .unwrap();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.contains("Connection: close"), "{out}");
        assert!(
            out.contains("this port speaks HTTPS") && out.contains("此端口仅支持 HTTPS"),
            "{out}"
        );
    }
    // TLS on the same port still works.
    let (mut s, _) = tls_connect(tls.addr, &[b"http/1.1"]).await;
    s.write_all(b"GET /_wxgate/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    tls.stop().await;
}
