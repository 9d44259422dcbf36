//! Helpers for the deploy recipe tests (issue 5): real nginx / Caddy processes killed on drop,
//! recipe templating with real ports, a small HTTP/1.1 client over TCP or TLS that connects
//! every host name to 127.0.0.1 (so `app.example.com:PORT` works without DNS), a browser with
//! a real cookie jar (Domain, Path, Secure, Max-Age), and the login walk through the mock.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The repository's `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

pub fn read_deploy(rel: &str) -> String {
    let p = deploy_dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn on_path(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    // nginx lives in /usr/sbin, which a non-login PATH may lack.
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(bin)).find(|p| p.is_file())
}

static INSTALL: Mutex<()> = Mutex::new(());

/// The path of `bin`, installing Debian package `pkg` when it is missing and we are root.
/// Never skips: without the binary (and without root to install it) the test fails.
pub fn require_binary(bin: &str, pkg: &str) -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = on_path(bin) {
        return p;
    }
    assert!(
        is_root(),
        "`{bin}` is not installed and this test is not running as root, so it cannot install it. \
         Install it first: `sudo apt-get install -y {pkg}` (Debian/Ubuntu)."
    );
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !apt(&["install", "-y", "--no-install-recommends", pkg]) {
        assert!(
            apt(&["update"]),
            "apt-get update failed while installing {pkg}"
        );
        assert!(
            apt(&["install", "-y", "--no-install-recommends", pkg]),
            "apt-get install -y {pkg} failed"
        );
    }
    on_path(bin).unwrap_or_else(|| panic!("installed {pkg} but `{bin}` is still not on PATH"))
}

/// A port that was free a moment ago (bind 127.0.0.1:0, read, release).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Replace every occurrence of `from` with `to`, failing when the recipe no longer has `from`
/// (the test would otherwise silently test something else).
pub fn subst(text: &mut String, from: &str, to: &str) {
    assert!(
        text.contains(from),
        "recipe no longer contains `{from}`; update the test templating"
    );
    *text = text.replace(from, to);
}

/// Drop every line that contains `needle` (at least one must).
pub fn drop_lines(text: &mut String, needle: &str) {
    assert!(
        text.contains(needle),
        "recipe no longer contains `{needle}`"
    );
    *text = text
        .lines()
        .filter(|l| !l.contains(needle))
        .map(|l| format!("{l}\n"))
        .collect();
}

/// A spawned server process: killed (and reaped) on drop.
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until every port accepts TCP connections; Err(log) when the process exits first.
pub async fn wait_ports(p: &mut Proc, ports: &[u16]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    for &port in ports {
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(format!(
                    "{} exited early ({status}):\n{}",
                    p.name,
                    p.log_text()
                ));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} does not listen on 127.0.0.1:{port} after 20 s:\n{}",
                p.name,
                p.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// nginx with a site config (a recipe, templated) included in its `http {}` block, running in
/// the foreground as a single process (`master_process off`: no workers to orphan, no privilege
/// drop to `nobody`), with pid, logs and temp paths inside its own temp dir.
pub struct Nginx {
    pub proc: Proc,
    pub ports: Vec<u16>,
    pub site: String,
    pub dir: tempfile::TempDir,
}

impl Nginx {
    /// Pick `nports` free ports, template the site with them and start nginx; when another
    /// test grabbed one of the ports in between, start over with new ones (three tries).
    pub async fn start(nports: usize, template: impl Fn(&[u16]) -> String) -> Nginx {
        let nginx = require_binary("nginx", "nginx");
        let mut last = String::new();
        for _ in 0..3 {
            let ports: Vec<u16> = (0..nports).map(|_| free_port()).collect();
            let site = template(&ports);
            match Self::try_start(&nginx, &site, &ports).await {
                Ok(n) => return n,
                Err(log) if log.contains("Address already in use") => last = log,
                Err(log) => panic!("nginx did not start:\n{log}\n--- site.conf ---\n{site}"),
            }
        }
        panic!("nginx could not bind its ports three times:\n{last}");
    }

    async fn try_start(nginx: &Path, site: &str, ports: &[u16]) -> Result<Nginx, String> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::write(dir.path().join("site.conf"), site).unwrap();
        let conf = format!(
            r#"worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/site.conf;
}}
"#
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let cmd = || {
            let mut c = Command::new(nginx);
            c.arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(dir.path().join("error.log"));
            c
        };
        let out = cmd().arg("-t").output().expect("run nginx -t");
        assert!(
            out.status.success(),
            "nginx -t rejects the recipe:\n{}\n--- site.conf ---\n{site}",
            String::from_utf8_lossy(&out.stderr)
        );
        let child = cmd()
            .arg("-g")
            .arg("daemon off; master_process off;")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let mut proc = Proc {
            name: "nginx",
            child,
            log: dir.path().join("error.log"),
        };
        wait_ports(&mut proc, ports).await?;
        Ok(Nginx {
            proc,
            ports: ports.to_vec(),
            site: site.to_string(),
            dir,
        })
    }

    pub fn error_log(&self) -> String {
        self.proc.log_text()
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------------------------

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The URL that was requested.
    pub url: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("{}: not JSON ({}): {}", self.url, self.status, self.text()))
    }
    /// Location, resolved against the request URL.
    pub fn location(&self) -> Option<String> {
        let l = self.header("location")?;
        Some(
            url::Url::parse(&self.url)
                .unwrap()
                .join(l)
                .unwrap()
                .to_string(),
        )
    }
    pub fn raw_location(&self) -> Option<&str> {
        self.header("location")
    }
    /// The echo upstream's view of the request it got: (name, value) pairs.
    pub fn echoed(&self) -> Vec<(String, String)> {
        let v = self.json();
        v["headers"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: not an echo: {}", self.url, self.text()))
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_string(),
                    p[1].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
    pub fn echoed_header(&self, name: &str) -> Option<String> {
        self.echoed()
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
    pub fn echoed_uri(&self) -> String {
        self.json()["uri"].as_str().unwrap_or_default().to_string()
    }
}

async fn connect(u: &url::Url) -> Box<dyn Io> {
    let port = u.port_or_known_default().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .unwrap_or_else(|_| panic!("connect {addr} timed out"))
        .unwrap_or_else(|e| panic!("connect {addr} ({u}): {e}"));
    if u.scheme() == "https" {
        let host = u.host_str().unwrap().to_string();
        let name = rustls::pki_types::ServerName::try_from(host).unwrap();
        let cfg = crate::common::insecure_tls(&[b"http/1.1"]);
        let tls = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
        )
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake");
        Box::new(tls)
    } else {
        Box::new(tcp)
    }
}

fn host_header(u: &url::Url) -> String {
    let host = u.host_str().unwrap();
    match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// Send `head` (a complete request head, CRLFs included) and `body` to the URL's port on
/// 127.0.0.1 and read the whole response (the request should say `Connection: close`).
pub async fn exchange(url: &str, head: &[u8], body: &[u8]) -> Resp {
    let u = url::Url::parse(url).unwrap_or_else(|e| panic!("bad URL {url}: {e}"));
    let work = async {
        let mut s = connect(&u).await;
        s.write_all(head).await.unwrap();
        s.write_all(body).await.unwrap();
        s.flush().await.unwrap();
        let mut out = Vec::new();
        // A TLS peer may close without close_notify: keep what was read.
        let mut buf = [0u8; 16384];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    };
    let raw = tokio::time::timeout(Duration::from_secs(20), work)
        .await
        .unwrap_or_else(|_| panic!("{url}: no complete response within 20 s"));
    parse_response(url, &raw)
}

fn parse_response(url: &str, raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "{url}: no response head in {:?}",
                String::from_utf8_lossy(raw)
            )
        });
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{url}: bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest[..len.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
        url: url.to_string(),
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size_s = String::from_utf8_lossy(&b[..nl]);
        let size = usize::from_str_radix(size_s.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        b = &b[nl + 2..];
        if size == 0 || b.len() < size {
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[(size + 2).min(b.len())..];
    }
    out
}

/// Open a WebSocket to `url` (ws:// or wss://, connected to 127.0.0.1) with `headers`, send
/// `msg` and return the echoed text.
pub async fn websocket_echo(url: &str, headers: &[(&str, &str)], msg: &str) -> String {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let u = url::Url::parse(url).unwrap();
    let mut http_like = u.clone();
    http_like
        .set_scheme(if u.scheme() == "wss" { "https" } else { "http" })
        .unwrap();
    let work = async {
        let stream = connect(&http_like).await;
        let mut req = url.into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        let (mut ws, resp) = tokio_tungstenite::client_async(req, stream)
            .await
            .unwrap_or_else(|e| panic!("WebSocket handshake with {url}: {e}"));
        assert_eq!(resp.status(), 101);
        ws.send(Message::Text(msg.to_string())).await.unwrap();
        loop {
            match ws.next().await.expect("echo").expect("echo frame") {
                Message::Text(t) => return t.to_string(),
                Message::Binary(b) => return String::from_utf8_lossy(&b).into_owned(),
                _ => continue,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .expect("WebSocket echo within 10 s")
}

/// A request with exactly these headers (names sent byte for byte, e.g. `X_WeChat_UnionId`),
/// plus Host, Connection: close and Content-Length.
pub async fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let u = url::Url::parse(url).unwrap();
    let mut head = format!(
        "{method} {}{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        u.path(),
        u.query().map(|q| format!("?{q}")).unwrap_or_default(),
        host_header(&u)
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    exchange(url, head.as_bytes(), body).await
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Resp {
    request("GET", url, headers, b"").await
}

// ---------------------------------------------------------------------------------------------
// Browser with a cookie jar
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub domain: String,
    pub host_only: bool,
    pub path: String,
    pub secure: bool,
}

pub const PC_UA: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36";

#[derive(Debug, Clone, Default)]
pub struct Browser {
    pub jar: Vec<Cookie>,
    /// Sent on every request (e.g. spoofed identity headers).
    pub extra: Vec<(String, String)>,
}

fn domain_match(host: &str, domain: &str) -> bool {
    host == domain || (host.ends_with(domain) && host[..host.len() - domain.len()].ends_with('.'))
}

fn path_match(req: &str, cookie: &str) -> bool {
    req == cookie
        || (req.starts_with(cookie)
            && (cookie.ends_with('/') || req[cookie.len()..].starts_with('/')))
}

impl Browser {
    pub fn new() -> Browser {
        Browser::default()
    }

    pub fn cookie(&self, name: &str) -> Option<&Cookie> {
        self.jar.iter().find(|c| c.name == name)
    }

    /// The Cookie header this browser sends to `url`.
    pub fn cookie_header(&self, url: &str) -> String {
        let u = url::Url::parse(url).unwrap();
        let host = u.host_str().unwrap().to_ascii_lowercase();
        self.jar
            .iter()
            .filter(|c| {
                if c.host_only {
                    c.domain == host
                } else {
                    domain_match(&host, &c.domain)
                }
            })
            .filter(|c| path_match(u.path(), &c.path))
            .filter(|c| !c.secure || u.scheme() == "https")
            .map(|c| format!("{}={}", c.name, c.value))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn absorb(&mut self, r: &Resp) {
        let u = url::Url::parse(&r.url).unwrap();
        let host = u.host_str().unwrap().to_ascii_lowercase();
        for sc in r.all("set-cookie") {
            let mut parts = sc.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim().to_string(), value.trim().to_string());
            let mut c = Cookie {
                name,
                value,
                domain: host.clone(),
                host_only: true,
                path: {
                    let p = u.path();
                    match p.rfind('/') {
                        Some(0) | None => "/".to_string(),
                        Some(i) => p[..i].to_string(),
                    }
                },
                secure: false,
            };
            let mut max_age: Option<i64> = None;
            for attr in parts {
                let (k, v) = attr
                    .split_once('=')
                    .map(|(k, v)| (k.trim(), v.trim()))
                    .unwrap_or((attr.trim(), ""));
                match k.to_ascii_lowercase().as_str() {
                    "domain" if !v.is_empty() => {
                        let d = v.trim_start_matches('.').to_ascii_lowercase();
                        // A browser ignores a cookie for a domain the host is not in.
                        assert!(
                            domain_match(&host, &d),
                            "{host} set a cookie for foreign domain {d}: {sc}"
                        );
                        c.domain = d;
                        c.host_only = false;
                    }
                    "path" if v.starts_with('/') => c.path = v.to_string(),
                    "secure" => c.secure = true,
                    "max-age" => max_age = v.parse().ok(),
                    _ => {}
                }
            }
            if c.secure && u.scheme() != "https" {
                continue; // browsers refuse Secure cookies from http origins
            }
            self.jar
                .retain(|o| !(o.name == c.name && o.domain == c.domain && o.path == c.path));
            if max_age.is_none_or(|m| m > 0) && !c.value.is_empty() {
                self.jar.push(c);
            }
        }
    }

    /// A request with this browser's cookies and extra headers; cookies absorbed.
    pub async fn send(&mut self, method: &str, url: &str, headers: &[(&str, &str)]) -> Resp {
        let cookie = self.cookie_header(url);
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        if !cookie.is_empty() {
            h.push(("Cookie", &cookie));
        }
        for (k, v) in &self.extra {
            h.push((k, v));
        }
        let r = request(method, url, &h, b"").await;
        self.absorb(&r);
        r
    }

    /// A top-level navigation (GET, Accept: text/html, Sec-Fetch-Mode: navigate).
    pub async fn nav(&mut self, url: &str) -> Resp {
        self.send(
            "GET",
            url,
            &[
                ("User-Agent", PC_UA),
                ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
                ("Sec-Fetch-Mode", "navigate"),
            ],
        )
        .await
    }

    /// An API call (Accept: application/json).
    pub async fn api(&mut self, url: &str) -> Resp {
        self.send(
            "GET",
            url,
            &[("User-Agent", PC_UA), ("Accept", "application/json")],
        )
        .await
    }

    /// Navigate and follow redirects while they stay off `stop_prefix`; returns every hop.
    pub async fn follow_until(&mut self, url: &str, stop_prefix: &str, max: usize) -> Vec<Resp> {
        let mut hops = Vec::new();
        let mut next = url.to_string();
        for _ in 0..max {
            let r = self.nav(&next).await;
            let loc = r.location();
            hops.push(r);
            match loc {
                Some(l)
                    if !l.starts_with(stop_prefix)
                        && (300..400).contains(&hops.last().unwrap().status) =>
                {
                    next = l
                }
                _ => return hops,
            }
        }
        panic!(
            "more than {max} redirects from {url}: {:?}",
            hops.iter().map(|h| h.url.clone()).collect::<Vec<_>>()
        );
    }
}

/// What a browser login through a deployment looked like.
pub struct LoginTrace {
    /// The WeChat (mock) authorize URL the browser was sent to.
    pub authorize: String,
    /// The callback URL WeChat (mock) sent the browser back to.
    pub callback: String,
    /// Where the callback redirected (absolute).
    pub landed: String,
    /// Every response from the first navigation to the authorize redirect.
    pub before: Vec<Resp>,
}

/// Navigate to `start` (a protected page, or a login URL) and complete the WeChat login as
/// `user` on the mock at `mock_url`. Asserts each step's status.
pub async fn login(b: &mut Browser, start: &str, mock_url: &str, user: &str) -> LoginTrace {
    let hops = b.follow_until(start, mock_url, 6).await;
    let last = hops.last().unwrap();
    assert_eq!(
        last.status,
        302,
        "{} should redirect to WeChat: {}",
        last.url,
        last.text()
    );
    let authorize = last.location().unwrap();
    assert!(
        authorize.starts_with(mock_url),
        "not sent to the mock WeChat: {authorize}"
    );
    let page_url = authorize.split('#').next().unwrap().to_string();
    let page = b.nav(&page_url).await;
    assert_eq!(page.status, 200, "mock authorize page: {}", page.text());
    let link = crate::common::find_link(&page.text(), &format!("user-{user}"))
        .unwrap_or_else(|| panic!("no user {user} on the mock page: {}", page.text()));
    let confirm = b.nav(&format!("{mock_url}{link}")).await;
    assert_eq!(confirm.status, 302, "mock confirm: {}", confirm.text());
    let callback = confirm.location().unwrap();
    let done = b.nav(&callback).await;
    assert_eq!(
        done.status,
        302,
        "callback {callback}: {} {}",
        done.status,
        done.text()
    );
    LoginTrace {
        authorize,
        callback,
        landed: done.location().unwrap(),
        before: hops,
    }
}

// ---------------------------------------------------------------------------------------------
// wxgate from a recipe's TOML
// ---------------------------------------------------------------------------------------------

/// Set `a.b.c` in a TOML table (creating tables on the way).
pub fn toml_set(t: &mut toml::Table, key: &str, v: impl Into<toml::Value>) {
    let mut cur = t;
    let parts: Vec<&str> = key.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap();
    }
    cur.insert(parts[parts.len() - 1].to_string(), v.into());
}

pub fn toml_get<'a>(t: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut cur = t;
    let parts: Vec<&str> = key.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = cur.get(*p)?.as_table()?;
    }
    cur.get(parts[parts.len() - 1])
}

/// A recipe's wxgate.toml made runnable against the mock: apps get the mock's appids, every
/// `*_file` secret is written to a temp file with the mock's secret (so the `_file` mechanism
/// itself is used), WeChat is the mock, and `overrides` run last.
pub fn recipe_config(
    rel: &str,
    mock_url: &str,
    secrets_dir: &Path,
    overrides: impl FnOnce(&mut toml::Table),
) -> (toml::Table, wxgate::config::Settings) {
    use wxgate::tools::mock::fixtures as fx;
    let text = read_deploy(rel);
    let mut t: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("{rel} is not TOML: {e}"));
    let apps = [
        ("website", fx::WEBSITE_APPID, fx::WEBSITE_SECRET),
        ("official_account", fx::OFFICIAL_APPID, fx::OFFICIAL_SECRET),
        ("mobile_app", fx::MOBILE_APPID, fx::MOBILE_SECRET),
        ("mini_program", fx::MINI_APPID, fx::MINI_SECRET),
    ];
    let write_secret = |t: &mut toml::Table, key: &str, value: &str| {
        let file_key = format!("{key}_file");
        if toml_get(t, &file_key).is_some() {
            let p = secrets_dir.join(file_key.replace('.', "_"));
            std::fs::write(&p, format!("{value}\n")).unwrap();
            toml_set(t, &file_key, p.display().to_string());
        } else {
            toml_set(t, key, value);
        }
    };
    for (name, appid, secret) in apps {
        if toml_get(&t, &format!("wechat.{name}")).is_some() {
            toml_set(&mut t, &format!("wechat.{name}.appid"), appid);
            write_secret(&mut t, &format!("wechat.{name}.secret"), secret);
        }
    }
    write_secret(&mut t, "session.cookie_secret", crate::common::SECRET);
    toml_set(&mut t, "wechat.api_base", mock_url);
    toml_set(&mut t, "wechat.open_base", mock_url);
    toml_set(&mut t, "wechat.timeout_ms", 2000);
    overrides(&mut t);
    let text = toml::to_string(&t).unwrap();
    let settings = wxgate::config::Config::from_toml(&text)
        .unwrap_or_else(|e| panic!("{rel} (templated) does not load: {e}\n{text}"));
    (t, settings)
}

/// wxgate in process on an already-bound listener.
pub async fn start_wxgate(
    listener: tokio::net::TcpListener,
    settings: wxgate::config::Settings,
) -> wxgate::server::Running {
    wxgate::server::serve_on(listener, settings)
        .await
        .expect("wxgate starts")
}

/// Headers whose name reads as an identity header (case-insensitive, `_` as `-`).
pub fn identity_like(headers: &[(String, String)]) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase().replace('_', "-");
            k.starts_with("x-wechat-") || k.starts_with("x-wecom-")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Spoofed identity headers a client might send, in every spelling.
pub const SPOOFS: &[(&str, &str)] = &[
    ("X-WeChat-OpenId", "spoof-openid"),
    ("X-WeChat-UnionId", "spoof-unionid"),
    ("x-wechat-appid", "spoof-appid"),
    ("X-WECHAT-SOURCE", "spoof-source"),
    ("X-WeChat-Nickname", "spoof-nick"),
    ("X-WeChat-Avatar", "spoof-avatar"),
    ("X-WeChat-Signature", "spoof-signature"),
    ("X_WeChat_UnionId", "spoof-underscore-unionid"),
    ("X_WECHAT_OPENID", "spoof-underscore-openid"),
    ("x-wechat_source", "spoof-mixed-source"),
    // Account linking's and WeCom's headers: an app that reads them must get them from the
    // gateway only.
    ("X-WeChat-UserId", "spoof-userid"),
    ("X-WeChat-Phone", "spoof-phone"),
    ("X-WeCom-UserId", "spoof-wecom-userid"),
    ("X-WeCom-CorpId", "spoof-wecom-corpid"),
    ("X-WeCom-OpenId", "spoof-wecom-openid"),
    ("X_WeCom_UserId", "spoof-underscore-wecom-userid"),
];

/// The upstream got no spoofed value under any identity-like name.
pub fn assert_no_spoof(r: &Resp) {
    let seen = r.echoed();
    for (k, v) in &seen {
        assert!(
            !v.contains("spoof"),
            "spoofed header reached the upstream: {k}: {v} (all: {seen:?})"
        );
        let norm = k.to_ascii_lowercase().replace('_', "-");
        if norm.starts_with("x-wechat-") || norm.starts_with("x-wecom-") {
            assert!(
                !k.contains('_'),
                "underscore identity header reached the upstream: {k}: {v}"
            );
        }
    }
}

/// Expected identity for `user` logged in through the website app (with the mock fixtures).
pub fn expected_identity(user: &str) -> BTreeMap<String, String> {
    use wxgate::tools::mock::fixtures as fx;
    let u = fx::user(user).unwrap();
    let mut m = BTreeMap::new();
    m.insert(
        "x-wechat-openid".to_string(),
        fx::openid(fx::WEBSITE_APPID, user),
    );
    if let Some(un) = u.unionid {
        m.insert("x-wechat-unionid".to_string(), un.to_string());
    }
    m.insert("x-wechat-appid".to_string(), fx::WEBSITE_APPID.to_string());
    m.insert("x-wechat-source".to_string(), "website".to_string());
    m.insert("x-wechat-avatar".to_string(), u.avatar.to_string());
    m.insert(
        "x-wechat-nickname".to_string(),
        wxgate::providers::wechat::headers::encode_nickname(u.nickname.as_bytes()),
    );
    m
}

/// The upstream's identity headers, names lowercased.
pub fn upstream_identity(r: &Resp) -> BTreeMap<String, String> {
    identity_like(&r.echoed())
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// The decoded value of query parameter `key` in `url`.
pub fn query_param(url: &str, key: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let v = u
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned());
    v
}

pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, wxgate::endpoints::COMPONENT).to_string()
}

/// The user id and phone [`link_session`] gives a session.
pub const LINKED_USER_ID: &str = "u-42";
pub const LINKED_PHONE: &str = "+8613800000000";

/// Give the session behind `b`'s `_wxgate` cookie account linking's user id and phone
/// ([`LINKED_USER_ID`], [`LINKED_PHONE`]), as a completed link would (the recipes must pass
/// X-WeChat-UserId and X-WeChat-Phone on).
pub async fn link_session(gw: &wxgate::server::Running, b: &Browser) {
    use wxgate::session::{SessionId, SessionStore};
    let cookie = b
        .jar
        .iter()
        .find(|c| c.name == "_wxgate")
        .expect("logged in");
    let id = SessionId::parse(&cookie.value).expect("a session id");
    let now = wxgate::common::http_util::unix_now();
    let s = gw
        .app
        .store
        .get(&id, now)
        .await
        .unwrap()
        .expect("a live session");
    gw.app
        .store
        .insert(id, s.with_link(Some(LINKED_USER_ID), Some(LINKED_PHONE)))
        .await
        .unwrap();
}

/// `b` (its session linked by [`link_session`], maybe sending spoofs) gets `url` through the
/// recipe, and the app sees `user`'s identity with the link's user id and phone, nothing
/// spoofed.
pub async fn assert_linked_identity(b: &mut Browser, url: &str, user: &str) {
    let r = b.nav(url).await;
    assert_eq!(r.status, 200, "{url}: {}", r.text());
    assert_no_spoof(&r);
    let mut want = expected_identity(user);
    want.insert("x-wechat-userid".into(), LINKED_USER_ID.into());
    want.insert("x-wechat-phone".into(), LINKED_PHONE.into());
    assert_eq!(upstream_identity(&r), want, "{url}: {:?}", r.echoed());
}
