//! Login load generator for the benchmark (`bench/`): drives real browser logins through the
//! gateway against the mock WeChat platform, as fast as `--concurrency` workers allow.
//!
//! Per login (each one a fresh "browser", no cookies carried over):
//! 1. `POST {mock}/mock/code?appid=APPID&user=USER` — the mock mints a code (what the QR scan
//!    and "confirm" would do) and answers `{"code": ...}`;
//! 2. `GET {gateway}{prefix}/login?rd=/` — 302 to the mock's authorize URL (`state` in its query)
//!    and `Set-Cookie: {cookie}_login=...` (the login binding);
//! 3. `GET {gateway}{prefix}/callback?code=C&state=S` with the binding cookie — 302 and
//!    `Set-Cookie: {cookie}=<session>`: the gateway exchanged the code with the mock
//!    (access_token + userinfo) and created a session.
//!
//! The gateway may be `http://` or `https://` (any certificate accepted: the bench uses a
//! self-signed one). Every worker keeps one keep-alive HTTP/1.1 connection to the gateway and
//! one to the mock (hyper's connection-level client), reconnecting when one closes.
//!
//! ```text
//! cargo run --release --example login_load -- \
//!     --gateway https://127.0.0.1:18445 --mock http://127.0.0.1:18100 \
//!     --logins 100000 --concurrency 128 [--cookies-out FILE] [--mint-only]
//! ```
//! Prints `logins_ok=N logins_failed=N seconds=S logins_per_sec=R` and `last_cookie=VALUE` on
//! stdout; progress on stderr.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::Parser;
use http::header::{HeaderValue, COOKIE, HOST, LOCATION, SET_COOKIE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(about = "Drive real WeChat logins through wxgate against the mock, concurrently")]
struct Args {
    /// Gateway base URL, http:// or https:// (certificate not verified).
    #[arg(long)]
    gateway: String,
    /// Mock WeChat base URL (plain http).
    #[arg(long)]
    mock: String,
    /// Number of logins to perform.
    #[arg(long, default_value_t = 1)]
    logins: u64,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// The gateway's endpoint prefix.
    #[arg(long, default_value = "/_wxgate")]
    prefix: String,
    /// The gateway's session cookie name (the login cookie is `<name>_login`).
    #[arg(long, default_value = "_wxgate")]
    cookie: String,
    /// Mock website appid to mint codes for.
    #[arg(long, default_value = "wx1000000000000001")]
    appid: String,
    /// Mock test user.
    #[arg(long, default_value = "alice")]
    user: String,
    /// Write every session cookie value obtained, one per line.
    #[arg(long)]
    cookies_out: Option<PathBuf>,
    /// Only mint codes at the mock (measures the mock's capacity alone).
    #[arg(long)]
    mint_only: bool,
    /// Seconds between progress lines on stderr (0 = none).
    #[arg(long, default_value_t = 5)]
    progress_secs: u64,
}

/// Where a worker connects: scheme, address and what goes in `Host`.
#[derive(Clone)]
struct Target {
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    addr: String,
    host_header: HeaderValue,
    /// Base path, normally empty.
    base: String,
}

impl Target {
    fn parse(s: &str, tls: &tokio_rustls::TlsConnector) -> anyhow::Result<Target> {
        let u = url::Url::parse(s).with_context(|| format!("'{s}' is not a URL"))?;
        let host = u
            .host_str()
            .ok_or_else(|| anyhow!("'{s}' has no host"))?
            .to_string();
        let port = u
            .port_or_known_default()
            .ok_or_else(|| anyhow!("'{s}' has no port"))?;
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = match u.scheme() {
            "http" => None,
            "https" => {
                let name = ServerName::try_from(bare.clone())
                    .map_err(|e| anyhow!("bad TLS name '{bare}': {e}"))?;
                Some((tls.clone(), name))
            }
            other => bail!("unsupported scheme '{other}' in '{s}'"),
        };
        let host_header = match u.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        Ok(Target {
            tls,
            addr: format!("{bare}:{port}"),
            host_header: HeaderValue::from_str(&host_header)?,
            base: u.path().trim_end_matches('/').to_string(),
        })
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One keep-alive HTTP/1.1 connection, reopened on demand.
struct Conn {
    target: Target,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Conn {
    fn new(target: Target) -> Self {
        Conn {
            target,
            sender: None,
        }
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
        let tcp = TcpStream::connect(&self.target.addr)
            .await
            .with_context(|| format!("connect {}", self.target.addr))?;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Io> = match &self.target.tls {
            None => Box::new(tcp),
            Some((connector, name)) => Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .context("TLS handshake")?,
            ),
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn send(
        &mut self,
        method: Method,
        path_and_query: &str,
        cookie: Option<&str>,
    ) -> anyhow::Result<Reply> {
        let reusable = self.sender.as_ref().is_some_and(|s| !s.is_closed());
        if !reusable {
            self.sender = Some(self.connect().await?);
        }
        let sender = self.sender.as_mut().expect("connected above");
        if sender.ready().await.is_err() {
            self.sender = Some(self.connect().await?);
        }
        let sender = self.sender.as_mut().expect("connected above");
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.target.base, path_and_query))
            .header(HOST, self.target.host_header.clone())
            .header("user-agent", "wxgate-login-load")
            .body(Empty::<Bytes>::new())?;
        if let Some(c) = cookie {
            req.headers_mut().insert(COOKIE, HeaderValue::from_str(c)?);
        }
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(e.into());
            }
        };
        let (parts, body) = resp.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                self.sender = None;
                return Err(e.into());
            }
        };
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// The value of cookie `name` among the response's `Set-Cookie` headers.
fn set_cookie_value(h: &http::HeaderMap, name: &str) -> Option<String> {
    h.get_all(SET_COOKIE).iter().find_map(|v| {
        let s = v.to_str().ok()?;
        let first = s.split(';').next()?.trim();
        let (n, val) = first.split_once('=')?;
        (n.trim() == name && !val.is_empty()).then(|| val.trim().to_string())
    })
}

struct Worker {
    mock: Conn,
    gateway: Conn,
    args: Arc<Args>,
    login_cookie: String,
}

impl Worker {
    async fn mint(&mut self) -> anyhow::Result<String> {
        let a = &self.args;
        let r = self
            .mock
            .send(
                Method::POST,
                &format!("/mock/code?appid={}&user={}", a.appid, a.user),
                None,
            )
            .await
            .context("mint")?;
        if r.status != StatusCode::OK {
            bail!("mint: HTTP {}", r.status);
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body).context("mint: JSON")?;
        v["code"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("mint: no code in {}", String::from_utf8_lossy(&r.body)))
    }

    /// One full login; returns the session cookie value.
    async fn login(&mut self) -> anyhow::Result<String> {
        let code = self.mint().await?;
        let prefix = self.args.prefix.clone();
        let r = self
            .gateway
            .send(Method::GET, &format!("{prefix}/login?rd=%2F"), None)
            .await
            .context("/login")?;
        if r.status != StatusCode::FOUND {
            bail!("/login: HTTP {} (expected 302)", r.status);
        }
        let binding = set_cookie_value(&r.headers, &self.login_cookie)
            .ok_or_else(|| anyhow!("/login: no {} cookie", self.login_cookie))?;
        let location = r
            .headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("/login: no Location"))?;
        let loc = url::Url::parse(location)
            .with_context(|| format!("/login: bad Location {location}"))?;
        let state = loc
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| anyhow!("/login: no state in {location}"))?;
        let cb = format!(
            "{prefix}/callback?code={}&state={}",
            url::form_urlencoded::byte_serialize(code.as_bytes()).collect::<String>(),
            url::form_urlencoded::byte_serialize(state.as_bytes()).collect::<String>()
        );
        let cookie = format!("{}={binding}", self.login_cookie);
        let r = self
            .gateway
            .send(Method::GET, &cb, Some(&cookie))
            .await
            .context("/callback")?;
        if r.status != StatusCode::FOUND {
            bail!(
                "/callback: HTTP {} (expected 302): {}",
                r.status,
                String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
            );
        }
        set_cookie_value(&r.headers, &self.args.cookie)
            .ok_or_else(|| anyhow!("/callback: no {} cookie", self.args.cookie))
    }
}

/// Accepts any server certificate (the bench's is self-signed); signatures are still checked.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_connector() -> anyhow::Result<tokio_rustls::TlsConnector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let tls = tls_connector()?;
    let gateway = Target::parse(&args.gateway, &tls)?;
    let mock = Target::parse(&args.mock, &tls)?;
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let keep_cookies = args.cookies_out.is_some();
    let started = Instant::now();

    let progress = (args.progress_secs > 0).then(|| {
        let (ok, failed, total) = (ok.clone(), failed.clone(), args.logins);
        let every = Duration::from_secs(args.progress_secs);
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(every).await;
                let n = ok.load(Ordering::Relaxed);
                let rate = (n - last.1) as f64 / last.0.elapsed().as_secs_f64();
                eprintln!(
                    "login_load: {n}/{total} ok, {} failed, {rate:.0}/s now",
                    failed.load(Ordering::Relaxed)
                );
                last = (Instant::now(), n);
            }
        })
    });

    let workers = args.concurrency.max(1).min(args.logins.max(1) as usize);
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let mut w = Worker {
            mock: Conn::new(mock.clone()),
            gateway: Conn::new(gateway.clone()),
            login_cookie: format!("{}_login", args.cookie),
            args: args.clone(),
        };
        let (next, ok, failed) = (next.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut cookies = Vec::new();
            let mut last = None;
            while next.fetch_add(1, Ordering::Relaxed) < w.args.logins {
                let r = if w.args.mint_only {
                    w.mint().await
                } else {
                    w.login().await
                };
                match r {
                    Ok(c) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if keep_cookies {
                            cookies.push(c.clone());
                        }
                        last = Some(c);
                    }
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("login_load: login failed: {e:#}");
                        }
                    }
                }
            }
            (cookies, last)
        }));
    }
    let mut all = Vec::new();
    let mut last = None;
    for t in tasks {
        let (c, l) = t.await?;
        all.extend(c);
        if l.is_some() {
            last = l;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if let Some(p) = progress {
        p.abort();
    }
    if let Some(path) = &args.cookies_out {
        let mut s = String::with_capacity(all.len() * 33);
        for c in &all {
            s.push_str(c);
            s.push('\n');
        }
        std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))?;
    }
    let (n_ok, n_failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let what = if args.mint_only { "mints" } else { "logins" };
    println!(
        "{what}_ok={n_ok} {what}_failed={n_failed} seconds={secs:.3} {what}_per_sec={:.1} concurrency={workers}",
        n_ok as f64 / secs
    );
    if !args.mint_only {
        println!("last_cookie={}", last.as_deref().unwrap_or(""));
    }
    if n_ok == 0 {
        bail!("no {what} succeeded");
    }
    Ok(())
}
