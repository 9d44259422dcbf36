//! TLS certificate reload without a restart, over real sockets: `Running::reload_tls` (what
//! SIGHUP calls) and the poll of the files on disk. New connections get the new certificate,
//! open ones keep theirs and keep serving, an invalid pair keeps the old certificate, and
//! requests under load do not fail while the certificate is swapped.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;

/// A self-signed certificate for `name`: (cert PEM, key PEM).
fn make_pair(name: &str) -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    (ck.cert.pem(), ck.key_pair.serialize_pem())
}

fn der_of(pem: &str) -> CertificateDer<'static> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
}

/// Replace the live files: to a temp name in the same directory, then renamed over (as certbot's
/// symlink swap does, the reader never sees half a file).
fn install(cert: &Path, key: &Path, pair: &(String, String)) {
    for (path, data) in [(cert, &pair.0), (key, &pair.1)] {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, data).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
}

async fn gateway(cert: &Path, key: &Path, poll: Duration) -> wxgate::server::Running {
    let up = start_upstream().await;
    let toml = config_toml(
        up.addr,
        "http://127.0.0.1:9",
        "[access]\npublic_paths = [\"/\"]\n",
    )
    .replace(
        "[upstream]",
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n\n[upstream]",
            cert.display(),
            key.display()
        ),
    );
    // The upstream task lives as long as the test's runtime.
    std::mem::forget(up);
    let listener = wxgate::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let settings = wxgate::config::Config::from_toml(&toml).expect("test config");
    let opts = wxgate::server::ServeOptions {
        tls_poll_interval: poll,
    };
    wxgate::server::serve_on_with(listener, settings, opts)
        .await
        .expect("gateway starts")
}

/// A keep-alive HTTP/1.1 connection over TLS and the certificate the server presented.
async fn open(
    addr: std::net::SocketAddr,
) -> Result<(CertificateDer<'static>, SendRequest<BoxBody>), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio_rustls::TlsConnector::from(insecure_tls(&[b"http/1.1"]));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let s = conn.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let peer = s
        .get_ref()
        .1
        .peer_certificates()
        .ok_or("no peer certificate")?[0]
        .clone();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok((peer, sender))
}

async fn peer_cert(addr: std::net::SocketAddr) -> CertificateDer<'static> {
    open(addr).await.expect("TLS connection").0
}

/// One request on the connection; Ok when the upstream answered 200 with its body.
async fn request(sender: &mut SendRequest<BoxBody>) -> Result<(), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let req = Request::get("/reload")
        .header("host", "localhost")
        .body(empty())
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if status != StatusCode::OK {
        return Err(format!("status {status}"));
    }
    Ok(())
}

/// The live cert and key paths, starting as `pair`.
fn live_files(pair: &(String, String)) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (dir, cert, key) = test_cert();
    install(&cert, &key, pair);
    (dir, cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_serves_new_certificate_to_new_connections_only() {
    let a = make_pair("a.example");
    let b = make_pair("b.example");
    let (_dir, cert, key) = live_files(&a);
    // No poll during this test: only the explicit reload changes the certificate.
    let running = gateway(&cert, &key, Duration::from_secs(3600)).await;
    assert!(running.has_tls());

    let (seen, mut old) = open(running.addr).await.unwrap();
    assert_eq!(seen, der_of(&a.0));
    request(&mut old).await.unwrap();

    install(&cert, &key, &b);
    // Nothing changes until the reload.
    assert_eq!(peer_cert(running.addr).await, der_of(&a.0));
    running.reload_tls().expect("reload with a valid pair");
    assert_eq!(peer_cert(running.addr).await, der_of(&b.0));
    // The connection opened before the reload keeps serving requests.
    for _ in 0..3 {
        request(&mut old).await.unwrap();
    }

    // A broken key: the reload fails, naming the key, and B stays.
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nnot base64\n").unwrap();
    let e = running.reload_tls().unwrap_err().to_string();
    assert!(e.contains("server.tls_key"), "{e}");
    assert_eq!(peer_cert(running.addr).await, der_of(&b.0));
    // The key of another certificate: parses, does not match.
    std::fs::write(&key, &a.1).unwrap();
    let e = running.reload_tls().unwrap_err().to_string();
    assert!(e.contains("do not match"), "{e}");
    assert_eq!(peer_cert(running.addr).await, der_of(&b.0));
    // A missing certificate file.
    std::fs::remove_file(&cert).unwrap();
    let e = running.reload_tls().unwrap_err().to_string();
    assert!(e.contains("server.tls_cert"), "{e}");
    assert_eq!(peer_cert(running.addr).await, der_of(&b.0));
    request(&mut old).await.unwrap();

    drop(old);
    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .expect("shutdown");
}

/// Poll until a new connection sees `want`, at most `limit`.
async fn wait_for(addr: std::net::SocketAddr, want: &CertificateDer<'static>, limit: Duration) {
    let start = Instant::now();
    while &peer_cert(addr).await != want {
        assert!(
            start.elapsed() < limit,
            "new connections still get the old certificate after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_changed_on_disk_are_picked_up_by_the_poll() {
    let a = make_pair("a.example");
    let b = make_pair("bb.example");
    let c = make_pair("ccc.example");
    let (_dir, cert, key) = live_files(&a);
    let poll = Duration::from_millis(100);
    let running = gateway(&cert, &key, poll).await;
    let (_, mut old) = open(running.addr).await.unwrap();

    // Written in place (not renamed), as a plain copy would.
    std::fs::write(&cert, &b.0).unwrap();
    std::fs::write(&key, &b.1).unwrap();
    wait_for(running.addr, &der_of(&b.0), Duration::from_secs(3)).await;
    request(&mut old).await.unwrap();

    // An invalid key on disk: several polls go by, B stays.
    std::fs::write(&key, "garbage").unwrap();
    tokio::time::sleep(poll * 5).await;
    assert_eq!(peer_cert(running.addr).await, der_of(&b.0));

    // A valid new pair: picked up without a signal.
    install(&cert, &key, &c);
    wait_for(running.addr, &der_of(&c.0), Duration::from_secs(3)).await;
    request(&mut old).await.unwrap();

    drop(old);
    // The poll task stops with the server.
    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_under_load_fail_no_request() {
    let pairs = [make_pair("a.example"), make_pair("b.example")];
    let (_dir, cert, key) = live_files(&pairs[0]);
    let running = gateway(&cert, &key, Duration::from_millis(50)).await;
    let addr = running.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));

    let mut tasks = Vec::new();
    // Keep-alive connections, each a loop of requests.
    for _ in 0..6 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let (_, mut s) = open(addr).await.unwrap();
            while !stop.load(Ordering::Relaxed) {
                match request(&mut s).await {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        failed.lock().unwrap().push(e);
                        0
                    }
                };
            }
        }));
    }
    // New connections (handshakes racing the swaps), one request each.
    for _ in 0..2 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = match open(addr).await {
                    Ok((_, mut s)) => request(&mut s).await,
                    Err(e) => Err(e),
                };
                match r {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        failed.lock().unwrap().push(e);
                        0
                    }
                };
            }
        }));
    }

    for i in 1..=8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let pair = &pairs[i % 2];
        install(&cert, &key, pair);
        running.reload_tls().expect("reload under load");
        assert_eq!(peer_cert(addr).await, der_of(&pair.0));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let failed = failed.lock().unwrap().clone();
    let ok = ok.load(Ordering::Relaxed);
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    assert!(ok > 100, "only {ok} requests ran");
    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .expect("shutdown");
}
