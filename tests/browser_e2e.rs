//! End-to-end test of `wxgate dev` in a real headless browser: Debian's chromium, driven by
//! playwright-core from `tests/e2e/e2e.mjs`. Logs in as the mock user alice, walks the demo
//! site's account linking (first login → phone-binding page → back with `X-WeChat-UserId`),
//! checks the whoami page the demo upstream serves through the gateway, saves a screenshot to
//! `tests/e2e/artifacts/whoami.png`, logs out (the signed-out page), checks that `/` needs a
//! login again, and that alice's next login goes straight in to the same account. A second
//! gateway (`wxgate run` on the same mock, access rules that refuse everyone, upstream down)
//! shows the 403 and 502 pages; those, the signed-out page and the phone's "open in WeChat" page
//! are saved at 390×844 and 1280×800 as `tests/e2e/artifacts/<page>-<size>.png`. And `wxgate dev
//! --wecom`: a WeCom login through the mock WeCom SSO page (`tests/e2e/wecom.mjs`).
//!
//! Dependencies (chromium, `tests/e2e/node_modules`) are installed by
//! `scripts/install-test-deps.sh` when missing. This test never skips: without a browser it fails.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALL_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const E2E_TIMEOUT: Duration = Duration::from_secs(180);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Kills (and reaps) the child when dropped, so a failing assertion never leaks `wxgate dev`.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` with stdout and stderr echoed line by line (visible with `--nocapture`) and kept;
/// kills it after `timeout`. Returns the exit status (None on timeout) and the combined output.
fn run_with_timeout(
    mut cmd: Command,
    what: &str,
    timeout: Duration,
) -> (Option<ExitStatus>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let pump = |r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut kept = String::new();
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                println!("  | {line}");
                kept.push_str(&line);
                kept.push('\n');
            }
            kept
        })
    };
    let out = pump(Box::new(child.stdout.take().expect("piped stdout")));
    let err = pump(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    let mut output = out.join().unwrap_or_default();
    output.push_str(&err.join().unwrap_or_default());
    (status, output)
}

/// Chromium and playwright-core, installed by `scripts/install-test-deps.sh` when missing.
fn ensure_deps() {
    let playwright = root().join("tests/e2e/node_modules/playwright-core");
    let have = || Path::new(CHROMIUM).exists() && playwright.is_dir();
    if !have() {
        println!(
            "browser_e2e: {CHROMIUM} or {} missing: running scripts/install-test-deps.sh",
            playwright.display()
        );
        let mut cmd = Command::new("bash");
        cmd.arg(root().join("scripts/install-test-deps.sh"))
            .current_dir(root())
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1");
        let (status, output) =
            run_with_timeout(cmd, "scripts/install-test-deps.sh", INSTALL_TIMEOUT);
        assert!(
            status.is_some_and(|s| s.success()),
            "scripts/install-test-deps.sh failed ({status:?}); the browser test needs {CHROMIUM} \
             (Debian package chromium) and tests/e2e/node_modules (npm ci in tests/e2e):\n{output}"
        );
    }
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is still missing after scripts/install-test-deps.sh: install Debian's chromium"
    );
    assert!(
        playwright.is_dir(),
        "{} is still missing after scripts/install-test-deps.sh: run `npm ci` in tests/e2e",
        playwright.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "`node` is not runnable ({node:?}): the browser test needs Node.js >= 20 on PATH"
    );
}

/// Two distinct free loopback ports (bound together, then released).
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let ports = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    drop((a, b));
    ports
}

/// Accepts any server certificate: `wxgate dev`'s is self-signed.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One blocking HTTPS/1.1 `GET https://localhost:{port}{path}`; the raw response.
fn https_get(port: u16, path: &str) -> std::io::Result<String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    sock.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
    )?;
    tls.flush()?;
    let mut buf = Vec::new();
    match tls.read_to_end(&mut buf) {
        Ok(_) => {}
        // A peer that closes without close_notify: keep what arrived.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// `wxgate dev` on free ports, certificates in a temp dir; killed on drop.
struct Dev {
    child: KillOnDrop,
    port: u16,
    mock_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dev {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn start_dev(extra_args: &[&str]) -> Dev {
    let dir = tempfile::tempdir().expect("temp dir");
    let (port, mock_port) = free_ports();
    let log = dir.path().join("wxgate-dev.log");
    let out = File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let certs = dir.path().join("certs");
    let child = Command::new(env!("CARGO_BIN_EXE_wxgate"))
        .arg("dev")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--mock-listen")
        .arg(format!("127.0.0.1:{mock_port}"))
        .arg("--certs")
        .arg(&certs)
        .args(extra_args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start wxgate dev");
    let mut dev = Dev {
        child: KillOnDrop(child),
        port,
        mock_port,
        log,
        _dir: dir,
    };

    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Ok(Some(status)) = dev.child.0.try_wait() {
            panic!("wxgate dev exited early ({status}):\n{}", dev.log());
        }
        let last = match https_get(port, "/_wxgate/healthz") {
            Ok(resp) if resp.starts_with("HTTP/1.1 200") && resp.trim_end().ends_with("ok") => {
                break
            }
            Ok(resp) => resp,
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "wxgate dev did not answer https://localhost:{port}/_wxgate/healthz within {STARTUP_TIMEOUT:?} \
             (last: {last}):\n{}",
            dev.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    dev
}

/// A second gateway (`wxgate run`, plain HTTP) on the dev's mock WeChat whose access rules
/// refuse everyone and whose upstream is down: the 403 and 502 pages, for screenshots.
struct Refusing {
    _child: KillOnDrop,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn start_refusing(mock_port: u16) -> Refusing {
    let dir = tempfile::tempdir().expect("temp dir");
    let (port, closed) = free_ports();
    let cfg = dir.path().join("wxgate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://localhost:{port}\"\n\
             [upstream]\nurl = \"http://127.0.0.1:{closed}\"\n\
             [wechat]\napi_base = \"http://127.0.0.1:{mock_port}\"\nopen_base = \"http://localhost:{mock_port}\"\n\
             [wechat.website]\nappid = \"wx1000000000000001\"\nsecret = \"mock-website-secret-000000000000001\"\n\
             [session]\ncookie_secret = \"browser-e2e-refusing-gateway-secret-0123456789\"\n\
             [access]\nallow_openids = [\"oNobodyAtAll0000000000000000\"]\npublic_paths = [\"/public/\"]\n"
        ),
    )
    .expect("config");
    let log = dir.path().join("wxgate-run.log");
    let out = File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_wxgate"))
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start wxgate run");
    let r = Refusing {
        _child: KillOnDrop(child),
        port,
        log,
        _dir: dir,
    };
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the refusing gateway did not start:\n{}",
            std::fs::read_to_string(&r.log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(100));
    }
    r
}

#[test]
fn browser_login_whoami_logout() {
    ensure_deps();
    let dev = start_dev(&[]);
    let refusing = start_refusing(dev.mock_port);
    let gateway = format!("https://localhost:{}", dev.port);
    let mock = format!("http://localhost:{}", dev.mock_port);
    let refusing_url = format!("http://localhost:{}", refusing.port);
    println!("browser_e2e: wxgate dev up: gateway {gateway}, mock WeChat {mock}, refusing gateway {refusing_url}");

    let artifact = root().join("tests/e2e/artifacts/whoami.png");
    let _ = std::fs::remove_file(&artifact);
    let mut cmd = Command::new("node");
    cmd.arg(root().join("tests/e2e/e2e.mjs"))
        .arg(&gateway)
        .arg(&mock)
        .arg(&artifact)
        .arg(&refusing_url)
        .current_dir(root());
    let (status, output) = run_with_timeout(cmd, "node tests/e2e/e2e.mjs", E2E_TIMEOUT);
    assert!(
        status.is_some_and(|s| s.success()),
        "browser e2e failed ({}):\n{output}\n--- wxgate dev log ---\n{}",
        status.map_or_else(
            || format!("timed out after {E2E_TIMEOUT:?}"),
            |s| s.to_string()
        ),
        dev.log()
    );

    let png = std::fs::read(&artifact)
        .unwrap_or_else(|e| panic!("screenshot {}: {e}", artifact.display()));
    assert!(
        png.len() > 1000 && png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG screenshot ({} bytes)",
        artifact.display(),
        png.len()
    );
    println!("browser_e2e: screenshot {}", artifact.display());
    // The pages a user may be stuck on, at a phone's and a laptop's size.
    for page in ["403", "signed-out", "502", "open-in-wechat"] {
        for size in ["390x844", "1280x800"] {
            let shot = root().join(format!("tests/e2e/artifacts/{page}-{size}.png"));
            let png = std::fs::read(&shot)
                .unwrap_or_else(|e| panic!("screenshot {}: {e}", shot.display()));
            assert!(
                png.len() > 1000 && png.starts_with(b"\x89PNG\r\n\x1a\n"),
                "{} is not a PNG screenshot",
                shot.display()
            );
        }
    }
    let refused_log = std::fs::read_to_string(&refusing.log).unwrap_or_default();
    assert!(
        refused_log.contains("refused by the access rules"),
        "the refusing gateway logged no refusal:\n{refused_log}"
    );
}

/// `wxgate dev --wecom`: a PC browser chooses WeCom, logs in on the mock WeCom's SSO page and
/// the whoami page shows `x-wecom-userid` (`tests/e2e/wecom.mjs`).
#[test]
fn browser_wecom_login_whoami() {
    ensure_deps();
    let dev = start_dev(&["--wecom"]);
    let gateway = format!("https://localhost:{}", dev.port);
    let mock = format!("http://localhost:{}", dev.mock_port);
    let artifact = root().join("tests/e2e/artifacts/wecom-whoami.png");
    let _ = std::fs::remove_file(&artifact);
    let mut cmd = Command::new("node");
    cmd.arg(root().join("tests/e2e/wecom.mjs"))
        .arg(&gateway)
        .arg(&mock)
        .arg(&artifact)
        .current_dir(root());
    let (status, output) = run_with_timeout(cmd, "node tests/e2e/wecom.mjs", E2E_TIMEOUT);
    assert!(
        status.is_some_and(|s| s.success()) && output.contains("e2e-wecom: PASS"),
        "WeCom browser e2e failed ({status:?}):\n{output}\n--- wxgate dev log ---\n{}",
        dev.log()
    );
    let png = std::fs::read(&artifact).unwrap_or_default();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "no screenshot at {}",
        artifact.display()
    );
}
