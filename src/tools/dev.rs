//! `wxgate dev`: the whole demo in one command, no configuration: the mock WeChat platform,
//! a "whoami" upstream that shows the headers it received, and the gateway on
//! `https://localhost:8443` with a self-signed certificate generated into `certs/`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::tools::dev_link::{self, DemoSite};
use crate::tools::mock::html_escape as escape;
use crate::tools::mock::{self, fixtures};

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where the gateway listens.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Where the mock WeChat listens (browsers are sent there to "scan").
    #[arg(long, default_value = "127.0.0.1:8444")]
    pub mock_listen: SocketAddr,
    /// Directory for the self-signed certificate (created when missing).
    #[arg(long, default_value = "certs")]
    pub certs: PathBuf,
    /// Also log in with the mock WeCom (企业微信): PC browsers choose WeChat or WeCom.
    #[arg(long)]
    pub wecom: bool,
}

/// The demo's cookie secret, kept in `certs/` beside the certificate (mode 0600; git-ignored),
/// so the session snapshot written at Ctrl-C opens at the next start.
const DEV_SECRET: &str = "dev-cookie-secret";
/// The demo's session snapshot (`session.snapshot_path`), in `certs/` too: the demo keeps its
/// login across restarts.
const DEV_SNAPSHOT: &str = "dev-sessions.snapshot";

/// The demo's cookie secret from `dir`, made (random, 0600) when missing or unusable.
fn dev_secret(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join(DEV_SECRET);
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if s.len() >= 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(s.to_owned());
        }
    }
    let secret = {
        use rand::RngCore;
        let mut b = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut b);
        hex::encode(b)
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    opts.open(&path)
        .and_then(|mut f| f.write_all(secret.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

/// The demo configuration: every app kind, pointed at the mock; sessions snapshotted to
/// `snapshot` under `secret`; account linking through the demo upstream's site
/// (`dev_link.rs`) with `link_secret`.
pub fn dev_config(
    gateway: SocketAddr,
    mock_url: &str,
    upstream: SocketAddr,
    (cert, key): (&Path, &Path),
    secret: &str,
    snapshot: &Path,
    link_secret: &str,
) -> String {
    format!(
        r#"
[server]
listen = "{gateway}"
public_url = "https://localhost:{port}"
tls_cert = "{cert}"
tls_key = "{key}"

[upstream]
url = "http://{upstream}"

[wechat]
api_base = "{mock_url}"
open_base = "{mock_url}"

{apps}[session]
cookie_secret = "{secret}"
snapshot_path = "{snapshot}"

[access]
public_paths = ["/public/"]

[verification]
files = {{ "MP_verify_wxgatedemo.txt" = "wxgatedemo" }}

[link]
url = "http://{upstream}{hook}"
secret = "{link_secret}"
"#,
        hook = dev_link::HOOK_PATH,
        port = gateway.port(),
        cert = cert.display(),
        key = key.display(),
        snapshot = snapshot.display(),
        apps = fixtures::apps_toml(),
    )
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    crate::common::logging::init("text");
    let (cert, key) =
        crate::server::tls::ensure_self_signed(&args.certs, &["localhost", "127.0.0.1"])
            .with_context(|| {
                format!(
                    "creating a self-signed certificate in {}",
                    args.certs.display()
                )
            })?;

    let mock_listener = TcpListener::bind(args.mock_listen)
        .await
        .with_context(|| format!("mock WeChat cannot listen on {}", args.mock_listen))?;
    let mock_port = mock_listener.local_addr()?.port();
    let mock = mock::start(mock_listener, mock::MockOptions::default()).await?;
    // Browsers reach the mock by the same name they reach the gateway by.
    let mock_url = format!("http://localhost:{mock_port}");

    let upstream = TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream.local_addr()?;
    let link_secret = hex::encode(rand::random::<[u8; 32]>());
    let site = std::sync::Arc::new(DemoSite::new(&link_secret));
    tokio::spawn(serve_whoami(upstream, site));

    let secret = dev_secret(&args.certs)?;
    let snapshot = args.certs.join(DEV_SNAPSHOT);
    let mut toml = dev_config(
        args.listen,
        &mock_url,
        upstream_addr,
        (&cert, &key),
        &secret,
        &snapshot,
        &link_secret,
    );
    if args.wecom {
        // The login page on the browser's name for the mock; the API on its own address.
        toml.push_str(&fixtures::wecom_toml(&mock_url).replace(
            &format!("api_base = \"{mock_url}\""),
            &format!("api_base = \"{}\"", mock.url()),
        ));
    }
    let mut settings = Config::from_toml(&toml).context("dev configuration")?;
    settings.wechat.api_base = mock.url();
    let mut stop = crate::server::ShutdownSignal::install();
    let running = crate::server::serve(settings).await?;
    let url = format!("https://localhost:{}/", running.addr.port());

    let users: Vec<String> = fixtures::USERS
        .iter()
        .map(|u| {
            format!(
                "{} ({}{})",
                u.key,
                u.nickname.replace(|c: char| c.is_control(), ""),
                if u.unionid.is_none() {
                    ", no unionid"
                } else {
                    ""
                }
            )
        })
        .collect();
    println!();
    println!("  wxgate dev is running — 微信登录网关演示");
    println!();
    println!("  Open        {url}");
    println!(
        "              (self-signed certificate {}; accept it in the browser)",
        cert.display()
    );
    println!("  Mock WeChat {mock_url}  test users: {}", users.join(", "));
    println!("  Upstream    http://{upstream_addr}  (whoami: shows the headers it receives)");
    println!(
        "  Linking     first WeChat login → bind a phone (code {}) → back with X-WeChat-UserId",
        dev_link::CAPTCHA
    );
    println!("  In-WeChat flow: send a User-Agent containing MicroMessenger");
    if args.wecom {
        let people: Vec<&str> = fixtures::WECOM_PEOPLE.iter().map(|p| p.key).collect();
        println!(
            "  WeCom:       corp {} agent {}; people: {} (guest is not a member); in-app flow: a User-Agent containing wxwork",
            fixtures::WECOM_CORP_ID,
            fixtures::WECOM_AGENT_ID,
            people.join(", ")
        );
    }
    println!(
        "  App login:   curl -s -XPOST '{mock_url}/mock/code?appid={}&user=alice'  then POST {{\"code\":...}} to {url}_wxgate/app/login",
        fixtures::MOBILE_APPID
    );
    println!(
        "  Ctrl-C stops; sessions are kept in {} for the next start.",
        snapshot.display()
    );
    println!();
    stop.recv().await;
    running.shutdown().await;
    drop(mock);
    Ok(())
}

/// The demo upstream: a page listing what it received, X-WeChat-* first; and the demo site's
/// account linking (`site`: the `[link]` hook and the phone-binding page).
pub async fn serve_whoami(listener: TcpListener, site: std::sync::Arc<DemoSite>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let site = site.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let site = site.clone();
                async move {
                    Ok::<_, Infallible>(if DemoSite::serves(req.uri().path()) {
                        site.handle(req).await
                    } else {
                        whoami(&req)
                    })
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn whoami(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let mut ids = String::new();
    let mut rest = String::new();
    for (name, value) in req.headers() {
        let v = String::from_utf8_lossy(value.as_bytes());
        let row = if name.as_str() == "x-wechat-nickname" {
            let decoded = percent_encoding::percent_decode_str(&v)
                .decode_utf8_lossy()
                .into_owned();
            format!(
                "<tr><th>{}</th><td>{} <small>({})</small></td></tr>",
                escape(name.as_str()),
                escape(&v),
                escape(&decoded)
            )
        } else {
            format!(
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(name.as_str()),
                escape(&v)
            )
        };
        if name.as_str().starts_with("x-wechat-") || name.as_str().starts_with("x-wecom-") {
            ids.push_str(&row);
        } else {
            rest.push_str(&row);
        }
    }
    let who = req
        .headers()
        .get("x-wechat-nickname")
        .or_else(|| req.headers().get("x-wecom-userid"))
        .map(|v| {
            percent_encoding::percent_decode(v.as_bytes())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_else(|| "anonymous".into());
    let html = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>whoami</title>\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<style>body{{font-family:sans-serif;background:#f4f5f7;margin:0;color:#222}}\
main{{max-width:50rem;margin:2rem auto;background:#fff;border-radius:12px;padding:1.5rem;box-shadow:0 2px 12px #0001}}\
@media (max-width:40rem){{main{{margin:.75rem;padding:1rem}}h1{{font-size:1.4rem}}}}th{{text-align:left;padding-right:1rem}}\
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.3rem;font-family:monospace;word-break:break-all;font-size:.85rem}}th{{word-break:normal}}</style></head>\
<body><main><h1 id=\"who\">你好, {who}</h1><p>The upstream received <code>{method} {uri}</code> with these headers.</p>\
<h2>Identity (from wxgate)</h2><table id=\"identity\">{ids}</table><h2>Other headers</h2><table>{rest}</table>\
<p><a href=\"/_wxgate/userinfo\">/_wxgate/userinfo</a> · <a href=\"/_wxgate/logout\">退出登录 / Log out</a></p></main></body></html>",
        who = escape(&who),
        method = escape(req.method().as_str()),
        uri = escape(&req.uri().to_string()),
    );
    let mut r = Response::new(Full::new(Bytes::from(html)));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}
