//! Shared test harness: a real upstream, the gateway (in process, on 127.0.0.1:0), clients.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

pub const SECRET: &str = "test-cookie-secret-0123456789abcdef";

/// The echo upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<std::sync::atomic::AtomicUsize>,
}

impl Upstream {
    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn full_box(b: impl Into<Bytes>) -> BoxBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// `n` bytes, streamed in 64 KiB chunks, content `i % 251`.
pub fn pattern_stream(n: usize) -> BoxBody {
    let chunks = (0..n).step_by(65536).map(move |start| {
        let end = (start + 65536).min(n);
        let v: Vec<u8> = (start..end).map(|i| (i % 251) as u8).collect();
        Ok::<_, std::io::Error>(Frame::data(Bytes::from(v)))
    });
    StreamBody::new(futures_util::stream::iter(chunks)).boxed()
}

pub fn pattern_sha(n: usize) -> String {
    let v: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    hex::encode(Sha256::digest(&v))
}

async fn upstream_handle(req: Request<Incoming>) -> Response<BoxBody> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let param = |k: &str| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.into_owned())
    };
    match path.as_str() {
        "/download" => {
            let n: usize = param("bytes").and_then(|s| s.parse().ok()).unwrap_or(0);
            Response::new(pattern_stream(n))
        }
        "/slow" => {
            let ms: u64 = param("ms").and_then(|s| s.parse().ok()).unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(full_box("slow done"))
        }
        "/hop" => Response::builder()
            .header("connection", "x-hop-secret, keep-alive")
            .header("x-hop-secret", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("trailer", "x-t")
            .header("upgrade", "h2c")
            .header("x-end-to-end", "kept")
            .body(full_box("hop"))
            .unwrap(),
        "/ws" => websocket_echo(req).await,
        _ => {
            let method = req.method().to_string();
            let uri = req.uri().to_string();
            let version = format!("{:?}", req.version());
            let headers: Vec<(String, String)> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut hasher = Sha256::new();
            let mut len = 0usize;
            let mut body = req.into_body();
            while let Some(f) = body.frame().await {
                match f {
                    Ok(f) => {
                        if let Some(d) = f.data_ref() {
                            len += d.len();
                            hasher.update(d);
                        }
                    }
                    Err(_) => break,
                }
            }
            let v = serde_json::json!({
                "method": method, "uri": uri, "version": version, "headers": headers,
                "body_len": len, "body_sha256": hex::encode(hasher.finalize()),
            });
            Response::builder()
                .header("content-type", "application/json")
                .body(full_box(v.to_string()))
                .unwrap()
        }
    }
}

async fn websocket_echo(mut req: Request<Incoming>) -> Response<BoxBody> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return Response::builder()
            .status(400)
            .body(full_box("no key"))
            .unwrap();
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() || msg.is_binary() {
                if ws.send(msg).await.is_err() {
                    break;
                }
            } else if msg.is_close() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .body(full_box(""))
        .unwrap()
}

pub async fn start_upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let h = h.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move { Ok::<_, Infallible>(upstream_handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Upstream { addr, hits }
}

/// A config with a website app (pointing at `api` for WeChat) and the given extra TOML.
pub fn config_toml(upstream: SocketAddr, api: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1"
{extra_server}
[upstream]
url = "http://{upstream}"
timeout_secs = 2
connect_timeout_ms = 500

[wechat]
api_base = "{api}"
open_base = "{api}"
timeout_ms = 2000

[wechat.website]
appid = "wx1000000000000001"
secret = "mock-website-secret-000000000000001"

[session]
cookie_secret = "{SECRET}"
{extra}
"#,
        extra_server = "",
    )
}

/// [`config_toml`] with every path public (no login in the way), `server_extra` lines in
/// `[server]`, and TLS with `cert` (certificate, key).
pub fn public_toml(
    upstream: SocketAddr,
    server_extra: &str,
    cert: Option<(&std::path::Path, &std::path::Path)>,
) -> String {
    let tls = cert
        .map(|(c, k)| {
            format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                c.display(),
                k.display()
            )
        })
        .unwrap_or_default();
    config_toml(
        upstream,
        "http://127.0.0.1:9",
        "[access]\npublic_paths = [\"/\"]\n",
    )
    .replace("[upstream]", &format!("{server_extra}\n{tls}[upstream]"))
}

/// One HTTP/1.1 response from a keep-alive connection, within 10 s: status line + headers, and
/// the body (Content-Length framed).
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> (String, String) {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut byte).await.unwrap();
            assert!(n > 0, "connection closed mid-response: {buf:?}");
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
        (head, String::from_utf8_lossy(&body).into_owned())
    })
    .await
    .expect("a whole response within 10 s")
}

/// Read until the peer closes (or resets); how long that took, or None after `limit`.
pub async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let t = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    let r = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    r.ok().map(|()| t.elapsed())
}

pub struct Gateway {
    pub addr: SocketAddr,
    pub running: Option<wxgate::server::Running>,
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    /// `GET /_wxgate/metrics` (it must answer 200): the Prometheus text.
    pub async fn metrics(&self) -> String {
        let r = send(
            &client(),
            get(&self.url("/_wxgate/metrics")).body(empty()).unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.text()
    }
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// Start the gateway from TOML on 127.0.0.1:0; `public_url` is rewritten to the real port.
pub async fn start_gateway(toml: &str) -> Gateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let toml = toml.replace(
        "public_url = \"http://127.0.0.1\"",
        &format!("public_url = \"http://127.0.0.1:{}\"", addr.port()),
    );
    let settings = wxgate::config::Config::from_toml(&toml).expect("test config");
    let running = wxgate::server::serve_on(listener, settings)
        .await
        .expect("gateway starts");
    Gateway {
        addr,
        running: Some(running),
    }
}

pub type HttpClient = Client<HttpConnector, BoxBody>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }
    /// The upstream echo's view of a request header (first value).
    pub fn echoed_header(&self, name: &str) -> Option<String> {
        let v = self.json();
        v["headers"]
            .as_array()?
            .iter()
            .find(|p| p[0].as_str() == Some(name))
            .map(|p| p[1].as_str().unwrap_or("").to_string())
    }
    pub fn echoed_headers(&self) -> Vec<(String, String)> {
        let v = self.json();
        v["headers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        (
                            p[0].as_str().unwrap().to_string(),
                            p[1].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    pub fn location(&self) -> String {
        self.headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
    /// `name=value` of each Set-Cookie.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
    pub fn cookie_value(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            let first = c.split(';').next()?;
            let (n, v) = first.split_once('=')?;
            (n == name).then(|| v.to_string())
        })
    }
}

pub async fn send(c: &HttpClient, req: Request<BoxBody>) -> Reply {
    let resp = tokio::time::timeout(Duration::from_secs(20), c.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// GET `url` as an API client (`Accept: application/json`) with `cookie`.
pub async fn api_get(url: String, cookie: &str) -> Reply {
    send(
        &client(),
        Request::get(url)
            .header("cookie", cookie)
            .header("accept", "application/json")
            .body(empty())
            .unwrap(),
    )
    .await
}

pub fn get(url: &str) -> http::request::Builder {
    Request::get(url)
}

pub fn empty() -> BoxBody {
    full_box(Bytes::new())
}

pub fn body(b: impl Into<Bytes>) -> BoxBody {
    full_box(b)
}

/// Write raw bytes on a fresh connection and read what comes back until close or timeout.
pub async fn raw(addr: SocketAddr, data: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(data).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A port nothing listens on.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// rustls client config that accepts any certificate (the tests' self-signed ones).
pub fn insecure_tls(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    #[derive(Debug)]
    struct Any(Arc<rustls::crypto::CryptoProvider>);
    impl ServerCertVerifier for Any {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Any(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// TLS connect; returns the stream and the negotiated ALPN protocol.
pub async fn tls_connect(
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Option<Vec<u8>>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let conn = tokio_rustls::TlsConnector::from(insecure_tls(alpn));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let s = conn.connect(name, tcp).await.expect("TLS handshake");
    let proto = s.get_ref().1.alpn_protocol().map(|p| p.to_vec());
    (s, proto)
}

/// Self-signed cert + key in a temp dir.
pub fn test_cert() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) =
        wxgate::server::tls::ensure_self_signed(dir.path(), &["localhost", "127.0.0.1"]).unwrap();
    (dir, c, k)
}

/// Collect a tracing-free binary run: path of the built binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_wxgate")
}

// ---- Sessions put straight into a gateway's store ----

/// A website session of `openid`, valid for an hour; change fields with `..`.
pub fn website_session<'a>(
    openid: &'a str,
    unionid: Option<&'a str>,
) -> wxgate::session::NewSession<'a> {
    wxgate::session::NewSession {
        openid,
        unionid,
        appid: "wx1000000000000001",
        origin: wxgate::providers::wechat::Source::Website.into(),
        nickname: "Tester",
        avatar: "",
        expires_at: wxgate::common::http_util::unix_now() + 3600,
    }
}

/// Store `n` under a new id in `app`'s store; the id, encoded (a cookie or bearer value).
pub async fn seed_session(
    app: &wxgate::pipeline::App,
    n: &wxgate::session::NewSession<'_>,
) -> String {
    use wxgate::session::SessionStore;
    let id = wxgate::session::SessionId::random();
    app.store
        .insert(id, wxgate::session::Session::new(n))
        .await
        .unwrap();
    id.encode()
}

// ---- WeChat login helpers (mock WeChat in process) ----

pub use wxgate::tools::mock::fixtures;

pub struct Env {
    pub up: Upstream,
    pub mock: wxgate::tools::mock::MockServer,
    pub gw: Gateway,
}

impl Env {
    /// The mock's call counts per WeChat endpoint (`GET /mock/calls`).
    pub async fn mock_calls(&self) -> serde_json::Value {
        self.mock_get("/mock/calls").await
    }

    /// `GET` one of the mock's JSON control paths (`/mock/calls`, `/mock/phone/calls`, …).
    pub async fn mock_get(&self, path: &str) -> serde_json::Value {
        send(
            &client(),
            get(&format!("{}{path}", self.mock.url()))
                .body(empty())
                .unwrap(),
        )
        .await
        .json()
    }

    /// `POST` to one of the mock's control paths (`/mock/revoke?user=…`, …); it must answer 200.
    pub async fn mock_post(&self, path_and_query: &str) -> serde_json::Value {
        let r = send(
            &client(),
            Request::post(format!("{}{path_and_query}", self.mock.url()))
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{path_and_query}: {}", r.text());
        r.json()
    }
}

pub const PC_UA: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36";
pub const WECHAT_UA: &str =
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN";

/// Every app kind, pointed at `mock`; `extra` is appended (sections of its own).
pub fn full_config(upstream: SocketAddr, mock: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1"

[upstream]
url = "http://{upstream}"
timeout_secs = 2

[wechat]
api_base = "{mock}"
open_base = "{mock}"
timeout_ms = 1000

{apps}[session]
cookie_secret = "{SECRET}"
{extra}
"#,
        apps = fixtures::apps_toml(),
    )
}

pub async fn start_mock(opts: wxgate::tools::mock::MockOptions) -> wxgate::tools::mock::MockServer {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    wxgate::tools::mock::start(l, opts).await.unwrap()
}

pub async fn env(extra: &str) -> Env {
    env_with(extra, wxgate::tools::mock::MockOptions::default()).await
}

pub async fn env_with(extra: &str, opts: wxgate::tools::mock::MockOptions) -> Env {
    let up = start_upstream().await;
    let mock = start_mock(opts).await;
    let gw = start_gateway(&full_config(up.addr, &mock.url(), extra)).await;
    Env { up, mock, gw }
}

/// A browser with its own cookie jar (only what the tests need: name=value per host-less jar).
#[derive(Default, Clone)]
pub struct Browser {
    pub ua: String,
    pub cookies: Vec<(String, String)>,
}

impl Browser {
    pub fn pc() -> Self {
        Browser {
            ua: PC_UA.into(),
            cookies: vec![],
        }
    }
    pub fn wechat() -> Self {
        Browser {
            ua: WECHAT_UA.into(),
            cookies: vec![],
        }
    }
    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
    fn absorb(&mut self, r: &Reply) {
        for sc in r.set_cookies() {
            let first = sc.split(';').next().unwrap_or("");
            if let Some((n, v)) = first.split_once('=') {
                let expired = sc.to_ascii_lowercase().contains("max-age=0");
                self.cookies.retain(|(k, _)| k != n);
                if !expired && !v.is_empty() {
                    self.cookies.push((n.to_string(), v.to_string()));
                }
            }
        }
    }
    /// A top-level navigation (GET, Accept: text/html), cookies sent and absorbed.
    pub async fn nav(&mut self, url: &str) -> Reply {
        let mut b = Request::get(url)
            .header("user-agent", &self.ua)
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .header("sec-fetch-mode", "navigate");
        if !self.cookies.is_empty() {
            b = b.header("cookie", self.cookie_header());
        }
        let r = send(&client(), b.body(empty()).unwrap()).await;
        self.absorb(&r);
        r
    }
}

pub fn html_unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// The href of `<a ... id="ID" ... href="...">` in a page.
pub fn find_link(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let h = tag.find("href=\"")? + 6;
    let end = tag[h..].find('"')? + h;
    Some(html_unescape(&tag[h..end]))
}

/// `state` from an authorize URL.
pub fn state_of(url: &str) -> String {
    let q = url.split('?').nth(1).unwrap().split('#').next().unwrap();
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

/// Browser login up to the callback URL WeChat sends back (not yet followed).
/// Returns (authorize URL, callback URL).
pub async fn to_callback(env: &Env, b: &mut Browser, rd: &str, user: &str) -> (String, String) {
    let login = env.gw.url(&format!(
        "/_wxgate/login?rd={}",
        url::form_urlencoded::byte_serialize(rd.as_bytes()).collect::<String>()
    ));
    let r = b.nav(&login).await;
    assert_eq!(r.status, StatusCode::FOUND, "login: {}", r.text());
    let authorize = r.location();
    let page_url = authorize.split('#').next().unwrap().to_string();
    let page = b.nav(&page_url).await;
    let cb = if page.status == StatusCode::FOUND {
        page.location() // snsapi_base answers silently
    } else {
        assert_eq!(page.status, StatusCode::OK, "mock page: {}", page.text());
        let link = if user == "deny" {
            find_link(&page.text(), "deny")
        } else {
            find_link(&page.text(), &format!("user-{user}"))
        }
        .unwrap_or_else(|| panic!("no link for {user} in {}", page.text()));
        let confirm = format!("{}{}", env.mock.url(), link);
        let r = b.nav(&confirm).await;
        assert_eq!(r.status, StatusCode::FOUND);
        r.location()
    };
    (authorize, cb)
}

/// Full browser login; returns the final redirect target.
pub async fn login(env: &Env, b: &mut Browser, rd: &str, user: &str) -> String {
    let (_, cb) = to_callback(env, b, rd, user).await;
    let r = b.nav(&cb).await;
    assert_eq!(
        r.status,
        StatusCode::FOUND,
        "callback: {} {}",
        r.status,
        r.text()
    );
    r.location()
}

/// GET `path` on the gateway as this browser; returns the upstream echo (or whatever came back).
pub async fn fetch(env: &Env, b: &mut Browser, path: &str) -> Reply {
    b.nav(&env.gw.url(path)).await
}

/// A TCP relay to `to` that holds every chunk a client sends for `delay` before passing it on:
/// WeChat's API, slow today (each request is late, also on a kept-alive connection).
pub async fn slow_relay(to: SocketAddr, delay: Duration) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((c, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(u) = tokio::net::TcpStream::connect(to).await else {
                    return;
                };
                let (mut cr, mut cw) = c.into_split();
                let (mut ur, mut uw) = u.into_split();
                let up = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n @ 1..) = cr.read(&mut buf).await {
                        tokio::time::sleep(delay).await;
                        if uw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let down = tokio::io::copy(&mut ur, &mut cw);
                let _ = tokio::join!(up, down);
            });
        }
    });
    addr
}

/// A gateway whose WeChat API calls each take `delay` longer (the browser pages are the mock's).
pub async fn slow_env(delay: Duration) -> Env {
    let up = start_upstream().await;
    let mock = start_mock(Default::default()).await;
    let relay = slow_relay(mock.addr(), delay).await;
    let toml = full_config(up.addr, &mock.url(), "").replacen(
        &format!("api_base = \"{}\"", mock.url()),
        &format!("api_base = \"http://{relay}\""),
        1,
    );
    assert!(toml.contains(&format!("http://{relay}")));
    let gw = start_gateway(&toml).await;
    Env { up, mock, gw }
}
