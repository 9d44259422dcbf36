//! The mock WeChat platform: `wxgate mock-wechat --listen ADDR`, tests, and `wxgate dev`.
//!
//! One plain-HTTP listener serves the browser pages (`/connect/qrconnect`,
//! `/connect/oauth2/authorize`, `/connect/confirm`), the server-side APIs (`/sns/*`) and test
//! controls (`/mock/*`). It behaves like WeChat where it hurts: API errors are HTTP 200
//! `{"errcode":N,"errmsg":"..."}` as `text/plain`, codes are single-use (40163) and expire
//! (42003), and one test user's nickname carries a raw control character inside the JSON string.
//!
//! State lives in memory, in bounded caches that forget entries after their lifetime (tickets
//! and codes: 10 minutes past expiry at most; access tokens: 2 hours; refresh tokens: 1 day).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use moka::sync::Cache;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use self::fixtures::TestUser;

/// Test apps and users shared by the mock, the tests and `wxgate dev`.
pub mod fixtures {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use sha2::{Digest, Sha256};

    pub const WEBSITE_APPID: &str = "wx1000000000000001";
    pub const WEBSITE_SECRET: &str = "mock-website-secret-000000000000001";
    pub const OFFICIAL_APPID: &str = "wx2000000000000002";
    pub const OFFICIAL_SECRET: &str = "mock-official-secret-00000000000002";
    pub const MOBILE_APPID: &str = "wx3000000000000003";
    pub const MOBILE_SECRET: &str = "mock-mobile-secret-0000000000000003";
    pub const MINI_APPID: &str = "wx4000000000000004";
    pub const MINI_SECRET: &str = "mock-mini-secret-00000000000000004";

    /// A test user. `key` is what tests and `/mock/code?user=` use.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct TestUser {
        pub key: &'static str,
        pub nickname: &'static str,
        pub unionid: Option<&'static str>,
        pub avatar: &'static str,
    }

    /// alice: emoji nickname; bob: Chinese nickname ending in a raw BEL (U+0007), which the mock
    /// emits unescaped inside the JSON string like real WeChat sometimes does; carol: no unionid.
    pub const USERS: &[TestUser] = &[
        TestUser {
            key: "alice",
            nickname: "Alice 🐼 小爱",
            unionid: Some("oUnionAlice00000000000000001"),
            avatar: "https://thirdwx.qlogo.cn/mmopen/vi_32/mockalice/132",
        },
        TestUser {
            key: "bob",
            nickname: "王小明\u{7}",
            unionid: Some("oUnionBob0000000000000000002"),
            avatar: "https://thirdwx.qlogo.cn/mmopen/vi_32/mockbob/132",
        },
        TestUser {
            key: "carol",
            nickname: "Carol",
            unionid: None,
            avatar: "https://thirdwx.qlogo.cn/mmopen/vi_32/mockcarol/132",
        },
    ];

    /// Deterministic openid for (app, user): 28 characters, starts with `o`, `[A-Za-z0-9_-]`.
    pub fn openid(appid: &str, user_key: &str) -> String {
        let mut h = Sha256::new();
        h.update(b"wxgate-mock-openid\0");
        h.update(appid.as_bytes());
        h.update(b"\0");
        h.update(user_key.as_bytes());
        let encoded = URL_SAFE_NO_PAD.encode(h.finalize());
        let mut out = String::with_capacity(28);
        out.push('o');
        out.push_str(&encoded[..27]);
        out
    }

    pub fn user(key: &str) -> Option<&'static TestUser> {
        USERS.iter().find(|u| u.key == key)
    }

    /// The four `[wechat.*]` app sections with the mock's credentials (for `dev` and tests).
    pub fn apps_toml() -> String {
        [
            ("website", WEBSITE_APPID, WEBSITE_SECRET),
            ("official_account", OFFICIAL_APPID, OFFICIAL_SECRET),
            ("mobile_app", MOBILE_APPID, MOBILE_SECRET),
            ("mini_program", MINI_APPID, MINI_SECRET),
        ]
        .iter()
        .map(|(name, appid, secret)| {
            format!("[wechat.{name}]\nappid = \"{appid}\"\nsecret = \"{secret}\"\n\n")
        })
        .collect()
    }
}

/// Mock settings.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Hosts (no port) accepted in `redirect_uri`; anything else gets the 10003 page.
    pub redirect_domains: Vec<String>,
    /// Lifetime of minted codes (overridable per code with `/mock/code?ttl_secs=`).
    pub code_ttl: Duration,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            redirect_domains: vec!["localhost".to_string(), "127.0.0.1".to_string()],
            code_ttl: Duration::from_secs(300),
        }
    }
}

/// A running mock. The server (listener and open connections) stops when this is dropped.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    _shutdown: watch::Sender<()>,
}

impl MockServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`: use as both `api_base` and `open_base`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the mock on `listener` in a background task until the returned [`MockServer`] drops.
pub async fn start(listener: TcpListener, opts: MockOptions) -> std::io::Result<MockServer> {
    let addr = listener.local_addr()?;
    let state = Arc::new(State::new(opts));
    let (tx, rx) = watch::channel(());
    let task = tokio::spawn(accept_loop(listener, state, rx));
    Ok(MockServer {
        addr,
        task,
        _shutdown: tx,
    })
}

/// Binds `listen` and serves forever (for the CLI). Prints nothing.
pub async fn run(listen: SocketAddr, opts: MockOptions) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let _server = start(listener, opts).await?;
    std::future::pending::<()>().await;
    Ok(())
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, rx: watch::Receiver<()>) {
    let builder = Arc::new(hyper_util::server::conn::auto::Builder::new(
        TokioExecutor::new(),
    ));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let builder = builder.clone();
        let mut rx = rx.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = rx.changed() => {}
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// State

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AppKind {
    Website,
    OfficialAccount,
    MobileApp,
    MiniProgram,
}

#[derive(Debug)]
struct App {
    appid: &'static str,
    secret: &'static str,
    kind: AppKind,
}

static APPS: [App; 4] = [
    App {
        appid: fixtures::WEBSITE_APPID,
        secret: fixtures::WEBSITE_SECRET,
        kind: AppKind::Website,
    },
    App {
        appid: fixtures::OFFICIAL_APPID,
        secret: fixtures::OFFICIAL_SECRET,
        kind: AppKind::OfficialAccount,
    },
    App {
        appid: fixtures::MOBILE_APPID,
        secret: fixtures::MOBILE_SECRET,
        kind: AppKind::MobileApp,
    },
    App {
        appid: fixtures::MINI_APPID,
        secret: fixtures::MINI_SECRET,
        kind: AppKind::MiniProgram,
    },
];

fn find_app(appid: &str) -> Option<&'static App> {
    APPS.iter().find(|a| a.appid == appid)
}

const SNSAPI_LOGIN: &str = "snsapi_login";
const SNSAPI_BASE: &str = "snsapi_base";
const SNSAPI_USERINFO: &str = "snsapi_userinfo";

fn scope_for(app: &App, requested: &str) -> Option<&'static str> {
    match (app.kind, requested) {
        (AppKind::Website, SNSAPI_LOGIN) => Some(SNSAPI_LOGIN),
        (AppKind::OfficialAccount, SNSAPI_BASE) => Some(SNSAPI_BASE),
        (AppKind::OfficialAccount, SNSAPI_USERINFO) => Some(SNSAPI_USERINFO),
        (AppKind::MobileApp, SNSAPI_USERINFO) => Some(SNSAPI_USERINFO),
        _ => None,
    }
}

struct Ticket {
    app: &'static App,
    redirect_uri: String,
    scope: &'static str,
    state: String,
}

struct CodeEntry {
    app: &'static App,
    user: &'static TestUser,
    scope: &'static str,
    expires_at: Instant,
    used: AtomicBool,
    /// Mini-program codes: the session_key jscode2session returns (fixed at mint time so the
    /// minted encryptedData decrypts with it).
    session_key: Option<String>,
    /// Mini-program codes: whether jscode2session includes the unionid (WeChat leaves it out
    /// in some cases; then only the encrypted user data carries it).
    unionid_in_response: bool,
}

struct TokenEntry {
    app: &'static App,
    user: &'static TestUser,
    scope: &'static str,
    openid: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailMode {
    Busy,
    RateLimit,
    Garbage,
    Status500,
    Slow,
    EmptyGbk,
}

impl FailMode {
    fn parse(s: &str) -> Option<FailMode> {
        Some(match s {
            "busy" => FailMode::Busy,
            "ratelimit" => FailMode::RateLimit,
            "garbage" => FailMode::Garbage,
            "status500" => FailMode::Status500,
            "slow" => FailMode::Slow,
            "empty_gbk" => FailMode::EmptyGbk,
            _ => return None,
        })
    }
}

struct Failure {
    mode: FailMode,
    remaining: u64,
    delay: Duration,
}

#[derive(Default)]
struct Calls {
    access_token: AtomicU64,
    refresh_token: AtomicU64,
    auth: AtomicU64,
    userinfo: AtomicU64,
    jscode2session: AtomicU64,
    qrconnect: AtomicU64,
    authorize: AtomicU64,
    confirm: AtomicU64,
    mock_code: AtomicU64,
}

impl Calls {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn to_json(&self) -> Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "access_token": g(&self.access_token),
            "refresh_token": g(&self.refresh_token),
            "auth": g(&self.auth),
            "userinfo": g(&self.userinfo),
            "jscode2session": g(&self.jscode2session),
            "qrconnect": g(&self.qrconnect),
            "authorize": g(&self.authorize),
            "confirm": g(&self.confirm),
            "mock_code": g(&self.mock_code),
        })
    }
}

const TICKET_TTL: Duration = Duration::from_secs(600);
const GRACE: Duration = Duration::from_secs(600);
const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(7200);
const REFRESH_TOKEN_TTL: Duration = Duration::from_secs(86_400);
const CAPACITY: u64 = 200_000;

struct State {
    redirect_domains: Vec<String>,
    code_ttl: Duration,
    max_code_ttl: Duration,
    tickets: Cache<String, Arc<Ticket>>,
    codes: Cache<String, Arc<CodeEntry>>,
    access_tokens: Cache<String, Arc<TokenEntry>>,
    refresh_tokens: Cache<String, Arc<TokenEntry>>,
    failure: Mutex<Option<Failure>>,
    calls: Calls,
}

/// Lower-case, without brackets or a `:port` suffix.
fn normalize_host(h: &str) -> String {
    let h = h.trim().to_ascii_lowercase();
    if let Some(inner) = h.strip_prefix('[') {
        // [v6] or [v6]:port
        return inner.split(']').next().unwrap_or_default().to_string();
    }
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host.to_string()
        }
        _ => h,
    }
}

impl State {
    fn new(opts: MockOptions) -> State {
        let max_code_ttl = opts.code_ttl.max(Duration::from_secs(600));
        State {
            redirect_domains: opts
                .redirect_domains
                .iter()
                .map(|d| normalize_host(d))
                .filter(|d| !d.is_empty())
                .collect(),
            code_ttl: opts.code_ttl,
            max_code_ttl,
            tickets: cache(TICKET_TTL),
            codes: cache(max_code_ttl + GRACE),
            access_tokens: cache(ACCESS_TOKEN_TTL),
            refresh_tokens: cache(REFRESH_TOKEN_TTL),
            failure: Mutex::new(None),
            calls: Calls::default(),
        }
    }

    fn redirect_allowed(&self, uri: &str) -> bool {
        let Ok(u) = url::Url::parse(uri) else {
            return false;
        };
        if !matches!(u.scheme(), "http" | "https") {
            return false;
        }
        let Some(host) = u.host_str() else {
            return false;
        };
        let host = normalize_host(host);
        self.redirect_domains.contains(&host)
    }

    fn mint_code(
        &self,
        app: &'static App,
        user: &'static TestUser,
        scope: &'static str,
        ttl: Option<Duration>,
        session_key: Option<(String, bool)>,
    ) -> String {
        let ttl = ttl.unwrap_or(self.code_ttl).min(self.max_code_ttl);
        let code = random_alnum(32);
        self.codes.insert(
            code.clone(),
            Arc::new(CodeEntry {
                app,
                user,
                scope,
                expires_at: Instant::now() + ttl,
                used: AtomicBool::new(false),
                unionid_in_response: session_key.as_ref().is_none_or(|(_, u)| *u),
                session_key: session_key.map(|(k, _)| k),
            }),
        );
        code
    }

    /// Single-use, expiring, bound to its app.
    fn take_code(&self, app: &App, code: &str) -> Result<Arc<CodeEntry>, ApiErr> {
        let entry = self
            .codes
            .get(code)
            .filter(|e| e.app.appid == app.appid)
            .ok_or(ApiErr(40029, "invalid code"))?;
        if entry.used.swap(true, Ordering::AcqRel) {
            return Err(ApiErr(40163, "code been used"));
        }
        if Instant::now() >= entry.expires_at {
            return Err(ApiErr(42003, "code expired"));
        }
        Ok(entry)
    }

    fn issue_tokens(&self, entry: TokenEntry, refresh_token: Option<String>) -> Value {
        let access_token = random_alnum(64);
        let refresh_token = refresh_token.unwrap_or_else(|| random_alnum(64));
        let entry = Arc::new(entry);
        let mut body = json!({
            "access_token": access_token,
            "expires_in": ACCESS_TOKEN_TTL.as_secs(),
            "refresh_token": refresh_token,
            "openid": entry.openid,
            "scope": entry.scope,
        });
        if entry.scope != SNSAPI_BASE {
            if let Some(u) = entry.user.unionid {
                body["unionid"] = Value::from(u);
            }
        }
        self.access_tokens.insert(access_token, entry.clone());
        self.refresh_tokens.insert(refresh_token, entry);
        body
    }

    fn take_failure(&self) -> Option<(FailMode, Duration)> {
        let mut guard = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        let f = guard.as_mut()?;
        let out = (f.mode, f.delay);
        f.remaining = f.remaining.saturating_sub(1);
        if f.remaining == 0 {
            *guard = None;
        }
        Some(out)
    }

    fn set_failure(&self, failure: Option<Failure>) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = failure;
    }
}

fn cache<V: Clone + Send + Sync + 'static>(ttl: Duration) -> Cache<String, V> {
    // LRU: at capacity the oldest entries go, new codes and tokens are always admitted
    // (moka's default TinyLFU may refuse a new entry, and a login benchmark fills the cache).
    Cache::builder()
        .max_capacity(CAPACITY)
        .time_to_live(ttl)
        .eviction_policy(moka::policy::EvictionPolicy::lru())
        .build()
}

fn random_alnum(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Responses

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// An API error before it becomes a response (kept small: `Result<_, Resp>` would be large).
#[derive(Debug, Clone, Copy)]
struct ApiErr(i64, &'static str);

impl From<ApiErr> for Resp {
    fn from(e: ApiErr) -> Resp {
        api_error(e.0, e.1)
    }
}

/// An authorize-page error: errcode, Chinese title, English text.
#[derive(Debug, Clone, Copy)]
struct PageErr(i64, &'static str, &'static str);

impl From<PageErr> for Resp {
    fn from(e: PageErr) -> Resp {
        wechat_error_page(e.0, e.1, e.2)
    }
}

/// WeChat style: HTTP 200, `text/plain`, `{"errcode":N,"errmsg":"... rid: ..."}`.
fn api_error(code: i64, msg: &str) -> Resp {
    let rid: String = format!("{:x}-{}", unix_now(), random_alnum(8).to_ascii_lowercase());
    let body = json!({ "errcode": code, "errmsg": format!("{msg}, rid: {rid}") });
    respond(StatusCode::OK, "text/plain", body.to_string())
}

fn api_ok(body: String) -> Resp {
    respond(StatusCode::OK, "application/json; encoding=utf-8", body)
}

fn control_json(status: StatusCode, body: Value) -> Resp {
    respond(status, "application/json", body.to_string())
}

fn control_error(msg: &str) -> Resp {
    control_json(StatusCode::BAD_REQUEST, json!({ "error": msg }))
}

fn redirect(location: &str) -> Resp {
    let mut r = respond(StatusCode::FOUND, "text/html; charset=utf-8", "");
    match header::HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => html_page(
            StatusCode::BAD_REQUEST,
            "错误 / Error",
            "<p>redirect_uri 无法使用 / unusable redirect_uri</p>",
        ),
    }
}

/// Escapes for HTML text and attributes; control characters are shown as control pictures.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if u32::from(c) < 0x20 => {
                out.push(char::from_u32(0x2400 + u32::from(c)).unwrap_or('\u{fffd}'))
            }
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;\
background:#ededed;margin:0;color:#191919}main{max-width:420px;margin:40px auto;background:#fff;\
border-radius:8px;padding:24px}h1{font-size:20px;margin:0 0 8px}.sub{color:#888;font-size:13px}\
ul{list-style:none;padding:0}li{margin:10px 0}a.user{display:block;padding:12px;border-radius:6px;\
background:#07c160;color:#fff;text-decoration:none}a.user small{display:block;opacity:.8;\
font-size:11px;word-break:break-all}#deny{color:#576b95}.err{color:#fa5151}";

fn html_page(status: StatusCode, title: &str, content: &str) -> Resp {
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\n<body><main>\n{content}\n</main></body></html>\n"
    );
    respond(status, "text/html; charset=utf-8", body)
}

/// WeChat shows its authorize errors as a normal (HTTP 200) page.
fn wechat_error_page(errcode: i64, zh: &str, en: &str) -> Resp {
    let content = format!(
        "<h1 class=\"err\">{zh}</h1><p>{en}</p><p class=\"sub\">errcode: <span id=\"errcode\">{errcode}</span></p>"
    );
    html_page(
        StatusCode::OK,
        &format!("微信登录 (mock) - {errcode}"),
        &content,
    )
}

fn login_page(app: &App, ticket: &str, scope: &str) -> Resp {
    let mut users = String::new();
    for u in fixtures::USERS {
        let openid = fixtures::openid(app.appid, u.key);
        let unionid = match (scope, u.unionid) {
            (SNSAPI_BASE, _) | (_, None) => "—",
            (_, Some(x)) => x,
        };
        users.push_str(&format!(
            "<li><a class=\"user\" id=\"user-{key}\" href=\"/connect/confirm?ticket={ticket}&user={key}\">\
             {nick}<small>openid: {openid} · unionid: {unionid}</small></a></li>\n",
            key = u.key,
            nick = html_escape(u.nickname),
        ));
    }
    let (heading, sub) = match app.kind {
        AppKind::Website => (
            "微信登录",
            "WeChat login — 扫码登录模拟：选择一个测试用户 / pick a test user",
        ),
        _ => (
            "微信授权",
            "WeChat authorization — 选择一个测试用户 / pick a test user",
        ),
    };
    let content = format!(
        "<h1>{heading} <small>(mock)</small></h1>\n<p class=\"sub\">{sub}</p>\n\
         <p class=\"sub\">appid: {appid} · scope: {scope}</p>\n<ul>\n{users}</ul>\n\
         <p><a id=\"deny\" href=\"/connect/confirm?ticket={ticket}&deny=1\">拒绝 / Deny</a></p>",
        appid = html_escape(app.appid),
        scope = html_escape(scope),
    );
    html_page(
        StatusCode::OK,
        "微信登录 (mock) / WeChat login (mock)",
        &content,
    )
}

/// `redirect_uri` + `code` (unless denied) + `state`, appended to any existing query.
fn callback_location(redirect_uri: &str, code: Option<&str>, state: &str) -> Option<String> {
    let mut u = url::Url::parse(redirect_uri).ok()?;
    {
        let mut q = u.query_pairs_mut();
        if let Some(code) = code {
            q.append_pair("code", code);
        }
        q.append_pair("state", state);
    }
    Some(u.to_string())
}

/// Userinfo JSON with the nickname emitted raw: only `"` and `\` escaped, control characters
/// left as they are (like real WeChat sometimes does).
fn userinfo_json(openid: &str, user: &TestUser) -> String {
    let mut nick = String::with_capacity(user.nickname.len() + 4);
    for c in user.nickname.chars() {
        if c == '"' || c == '\\' {
            nick.push('\\');
        }
        nick.push(c);
    }
    let mut s = format!(
        "{{\"openid\":{},\"nickname\":\"{}\",\"sex\":0,\"language\":\"\",\"city\":\"\",\
         \"province\":\"\",\"country\":\"\",\"headimgurl\":{},\"privilege\":[]",
        Value::from(openid),
        nick,
        Value::from(user.avatar),
    );
    if let Some(u) = user.unionid {
        s.push_str(",\"unionid\":");
        s.push_str(&Value::from(u).to_string());
    }
    s.push('}');
    s
}

// ---------------------------------------------------------------------------------------------
// Routing

type Query = HashMap<String, String>;

fn parse_query(q: Option<&str>) -> Query {
    let mut out = Query::new();
    if let Some(q) = q {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
    }
    out
}

fn param<'a>(q: &'a Query, key: &str) -> Option<&'a str> {
    q.get(key).map(String::as_str).filter(|s| !s.is_empty())
}

async fn handle(state: &State, req: Request<Incoming>) -> Resp {
    let q = parse_query(req.uri().query());
    let path = req.uri().path();
    let method = req.method();
    let is_get = method == Method::GET || method == Method::HEAD;
    let is_get_or_post = is_get || method == Method::POST;

    if let Some(endpoint) = path.strip_prefix("/sns/") {
        if !is_get_or_post {
            return respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "method not allowed",
            );
        }
        return sns(state, endpoint, &q).await;
    }
    match path {
        "/connect/qrconnect" if is_get => qrconnect(state, &q),
        "/connect/oauth2/authorize" if is_get => authorize(state, &q),
        "/connect/confirm" if is_get => confirm(state, &q),
        "/mock/code" if is_get_or_post => mock_code(state, &q),
        "/mock/fail" if is_get_or_post => mock_fail(state, &q),
        "/mock/reset" if is_get_or_post => {
            state.set_failure(None);
            control_json(StatusCode::OK, json!({ "ok": true }))
        }
        "/mock/calls" if is_get => control_json(StatusCode::OK, state.calls.to_json()),
        "/" if is_get => respond(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "wxgate mock WeChat platform\n\
             browser: /connect/qrconnect, /connect/oauth2/authorize\n\
             api: /sns/oauth2/access_token, /sns/oauth2/refresh_token, /sns/auth, /sns/userinfo, /sns/jscode2session\n\
             controls: POST /mock/code, POST /mock/fail, POST /mock/reset, GET /mock/calls\n",
        ),
        "/connect/qrconnect" | "/connect/oauth2/authorize" | "/connect/confirm" | "/mock/code"
        | "/mock/fail" | "/mock/reset" | "/mock/calls" | "/" => {
            respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "method not allowed")
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found"),
    }
}

/// Validates what both authorize pages share; returns the app and the granted scope.
fn check_authorize(
    state: &State,
    q: &Query,
    kind: AppKind,
) -> Result<(&'static App, &'static str, String), PageErr> {
    let app = param(q, "appid")
        .and_then(find_app)
        .filter(|a| a.kind == kind)
        .ok_or(PageErr(40013, "appid 参数错误", "invalid appid"))?;
    let redirect_uri = param(q, "redirect_uri")
        .filter(|u| state.redirect_allowed(u))
        .ok_or(PageErr(
            10003,
            "redirect_uri 参数错误",
            "redirect_uri is not under the registered domain",
        ))?;
    let scope = scope_for(app, param(q, "scope").unwrap_or_default()).ok_or(PageErr(
        10005,
        "Scope 参数错误或没有 Scope 权限",
        "invalid scope, or the app lacks that scope",
    ))?;
    Ok((app, scope, redirect_uri.to_string()))
}

fn qrconnect(state: &State, q: &Query) -> Resp {
    Calls::bump(&state.calls.qrconnect);
    let (app, scope, redirect_uri) = match check_authorize(state, q, AppKind::Website) {
        Ok(x) => x,
        Err(page) => return page.into(),
    };
    show_login(state, app, scope, redirect_uri, q)
}

fn authorize(state: &State, q: &Query) -> Resp {
    Calls::bump(&state.calls.authorize);
    let (app, scope, redirect_uri) = match check_authorize(state, q, AppKind::OfficialAccount) {
        Ok(x) => x,
        Err(page) => return page.into(),
    };
    let st = q.get("state").map(String::as_str).unwrap_or_default();
    if scope == SNSAPI_BASE {
        // Silent: straight back with a code for the first test user.
        let user = &fixtures::USERS[0];
        let code = state.mint_code(app, user, scope, None, None);
        return match callback_location(&redirect_uri, Some(&code), st) {
            Some(loc) => redirect(&loc),
            None => wechat_error_page(10003, "redirect_uri 参数错误", "invalid redirect_uri"),
        };
    }
    show_login(state, app, scope, redirect_uri, q)
}

fn show_login(
    state: &State,
    app: &'static App,
    scope: &'static str,
    redirect_uri: String,
    q: &Query,
) -> Resp {
    let ticket = random_alnum(32);
    state.tickets.insert(
        ticket.clone(),
        Arc::new(Ticket {
            app,
            redirect_uri,
            scope,
            state: q.get("state").cloned().unwrap_or_default(),
        }),
    );
    login_page(app, &ticket, scope)
}

fn confirm(state: &State, q: &Query) -> Resp {
    Calls::bump(&state.calls.confirm);
    let Some(ticket) = param(q, "ticket").and_then(|t| state.tickets.get(t)) else {
        return html_page(
            StatusCode::BAD_REQUEST,
            "微信登录 (mock) - 二维码已失效",
            "<h1 class=\"err\">二维码已失效</h1><p>Unknown or expired ticket: start the login again.</p>",
        );
    };
    let location = if param(q, "deny").is_some() {
        callback_location(&ticket.redirect_uri, None, &ticket.state)
    } else {
        let Some(user) = param(q, "user").and_then(fixtures::user) else {
            return html_page(
                StatusCode::BAD_REQUEST,
                "微信登录 (mock) - 用户不存在",
                "<h1 class=\"err\">用户不存在</h1><p>Unknown test user.</p>",
            );
        };
        let code = state.mint_code(ticket.app, user, ticket.scope, None, None);
        callback_location(&ticket.redirect_uri, Some(&code), &ticket.state)
    };
    match location {
        Some(loc) => redirect(&loc),
        None => wechat_error_page(10003, "redirect_uri 参数错误", "invalid redirect_uri"),
    }
}

async fn sns(state: &State, endpoint: &str, q: &Query) -> Resp {
    let (counter, handler): (&AtomicU64, fn(&State, &Query) -> Resp) = match endpoint {
        "oauth2/access_token" => (&state.calls.access_token, sns_access_token),
        "oauth2/refresh_token" => (&state.calls.refresh_token, sns_refresh_token),
        "auth" => (&state.calls.auth, sns_auth),
        "userinfo" => (&state.calls.userinfo, sns_userinfo),
        "jscode2session" => (&state.calls.jscode2session, sns_jscode2session),
        _ => return respond(StatusCode::NOT_FOUND, "text/plain", "not found"),
    };
    Calls::bump(counter);
    if let Some((mode, delay)) = state.take_failure() {
        match mode {
            FailMode::Busy => return api_error(-1, "system error"),
            FailMode::RateLimit => {
                return api_error(45011, "api minute-quota reach limit  mustslower  retry next minute")
            }
            FailMode::Garbage => {
                return respond(
                    StatusCode::OK,
                    "text/html",
                    "<html><head><title>502 Bad Gateway</title></head><body>\
                     <center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
                )
            }
            FailMode::Status500 => {
                return respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/html",
                    "<html><body><h1>500 Internal Server Error</h1></body></html>",
                )
            }
            FailMode::EmptyGbk => return respond(StatusCode::OK, "text/html; charset=gbk", ""),
            FailMode::Slow => tokio::time::sleep(delay).await,
        }
    }
    handler(state, q)
}

/// appid / secret checks shared by the code exchanges.
fn check_app(q: &Query) -> Result<&'static App, ApiErr> {
    let appid = param(q, "appid").ok_or(ApiErr(41002, "appid missing"))?;
    let app = find_app(appid).ok_or(ApiErr(40013, "invalid appid"))?;
    let secret = param(q, "secret").ok_or(ApiErr(41004, "appsecret missing"))?;
    if secret != app.secret {
        return Err(ApiErr(40125, "invalid appsecret"));
    }
    Ok(app)
}

fn check_grant(q: &Query, expected: &str) -> Result<(), ApiErr> {
    if param(q, "grant_type") == Some(expected) {
        Ok(())
    } else {
        Err(ApiErr(40002, "invalid grant_type"))
    }
}

fn sns_access_token(state: &State, q: &Query) -> Resp {
    sns_access_token_inner(state, q).unwrap_or_else(Resp::from)
}

fn sns_access_token_inner(state: &State, q: &Query) -> Result<Resp, ApiErr> {
    {
        let app = check_app(q)?;
        if app.kind == AppKind::MiniProgram {
            return Err(ApiErr(40013, "invalid appid, use jscode2session"));
        }
        let code = param(q, "code").ok_or(ApiErr(41008, "missing code"))?;
        check_grant(q, "authorization_code")?;
        let entry = state.take_code(app, code)?;
        let body = state.issue_tokens(
            TokenEntry {
                app,
                user: entry.user,
                scope: entry.scope,
                openid: fixtures::openid(app.appid, entry.user.key),
            },
            None,
        );
        Ok(api_ok(body.to_string()))
    }
}

fn sns_refresh_token(state: &State, q: &Query) -> Resp {
    sns_refresh_token_inner(state, q).unwrap_or_else(Resp::from)
}

fn sns_refresh_token_inner(state: &State, q: &Query) -> Result<Resp, ApiErr> {
    {
        let appid = param(q, "appid").ok_or(ApiErr(41002, "appid missing"))?;
        let app = find_app(appid).ok_or(ApiErr(40013, "invalid appid"))?;
        check_grant(q, "refresh_token")?;
        let rt = param(q, "refresh_token").ok_or(ApiErr(41003, "refresh_token missing"))?;
        let entry = state
            .refresh_tokens
            .get(rt)
            .filter(|e| e.app.appid == app.appid)
            .ok_or(ApiErr(40030, "invalid refresh_token"))?;
        let body = state.issue_tokens(
            TokenEntry {
                app: entry.app,
                user: entry.user,
                scope: entry.scope,
                openid: entry.openid.clone(),
            },
            Some(rt.to_string()),
        );
        Ok(api_ok(body.to_string()))
    }
}

fn check_access_token(state: &State, q: &Query) -> Result<Arc<TokenEntry>, ApiErr> {
    let token = param(q, "access_token").ok_or(ApiErr(41001, "access_token missing"))?;
    let entry = state.access_tokens.get(token).ok_or(ApiErr(
        40001,
        "invalid credential, access_token is invalid or not latest",
    ))?;
    let openid = param(q, "openid").ok_or(ApiErr(41009, "missing openid"))?;
    if openid != entry.openid {
        return Err(ApiErr(40003, "invalid openid"));
    }
    Ok(entry)
}

fn sns_auth(state: &State, q: &Query) -> Resp {
    match check_access_token(state, q) {
        Ok(_) => api_ok(json!({ "errcode": 0, "errmsg": "ok" }).to_string()),
        Err(e) => e.into(),
    }
}

fn sns_userinfo(state: &State, q: &Query) -> Resp {
    let entry = match check_access_token(state, q) {
        Ok(e) => e,
        Err(e) => return e.into(),
    };
    if entry.scope == SNSAPI_BASE {
        return api_error(48001, "api unauthorized");
    }
    api_ok(userinfo_json(&entry.openid, entry.user))
}

fn sns_jscode2session(state: &State, q: &Query) -> Resp {
    sns_jscode2session_inner(state, q).unwrap_or_else(Resp::from)
}

fn sns_jscode2session_inner(state: &State, q: &Query) -> Result<Resp, ApiErr> {
    {
        let app = check_app(q)?;
        if app.kind != AppKind::MiniProgram {
            return Err(ApiErr(40013, "invalid appid"));
        }
        let code = param(q, "js_code").ok_or(ApiErr(41008, "missing code"))?;
        check_grant(q, "authorization_code")?;
        let entry = state.take_code(app, code)?;
        let session_key = entry
            .session_key
            .clone()
            .unwrap_or_else(|| random_session_key().0);
        let mut body = json!({
            "session_key": session_key,
            "openid": fixtures::openid(app.appid, entry.user.key),
        });
        if let Some(u) = entry.user.unionid.filter(|_| entry.unionid_in_response) {
            body["unionid"] = Value::from(u);
        }
        Ok(api_ok(body.to_string()))
    }
}

/// A fresh session key: (base64, raw bytes).
fn random_session_key() -> (String, [u8; 16]) {
    use base64::Engine;
    let key: [u8; 16] = rand::thread_rng().gen();
    (base64::engine::general_purpose::STANDARD.encode(key), key)
}

fn mock_code(state: &State, q: &Query) -> Resp {
    Calls::bump(&state.calls.mock_code);
    let Some(app) = param(q, "appid").and_then(find_app) else {
        return control_error("unknown appid");
    };
    let Some(user) = param(q, "user").and_then(fixtures::user) else {
        return control_error("unknown user (alice, bob or carol)");
    };
    let ttl = match param(q, "ttl_secs").map(str::parse::<u64>) {
        None => None,
        Some(Ok(secs)) => Some(Duration::from_secs(secs)),
        Some(Err(_)) => return control_error("ttl_secs must be a non-negative integer"),
    };
    let openid = fixtures::openid(app.appid, user.key);
    match app.kind {
        AppKind::MiniProgram => {
            let (session_key, key) = random_session_key();
            let iv: [u8; 16] = rand::thread_rng().gen();
            let watermark_appid = param(q, "watermark_appid").unwrap_or(app.appid);
            let mut data = json!({
                "openId": openid,
                "nickName": user.nickname,
                "gender": 0,
                "language": "zh_CN",
                "city": "",
                "province": "",
                "country": "",
                "avatarUrl": user.avatar,
                "watermark": { "appid": watermark_appid, "timestamp": unix_now() },
            });
            if let Some(u) = user.unionid {
                data["unionId"] = Value::from(u);
            }
            let encrypted =
                crate::crypto::encrypt_user_data(&key, &iv, data.to_string().as_bytes());
            // `unionid=data` mints a code whose jscode2session answer lacks the unionid.
            let in_response = param(q, "unionid") != Some("data");
            let code = state.mint_code(
                app,
                user,
                SNSAPI_USERINFO,
                ttl,
                Some((session_key, in_response)),
            );
            use base64::Engine;
            control_json(
                StatusCode::OK,
                json!({
                    "code": code,
                    "openid": openid,
                    "encryptedData": encrypted,
                    "iv": base64::engine::general_purpose::STANDARD.encode(iv),
                }),
            )
        }
        kind => {
            let requested = match kind {
                AppKind::Website => SNSAPI_LOGIN,
                _ => param(q, "scope").unwrap_or(SNSAPI_USERINFO),
            };
            let Some(scope) = scope_for(app, requested) else {
                return control_error("scope not valid for this app");
            };
            let code = state.mint_code(app, user, scope, ttl, None);
            control_json(StatusCode::OK, json!({ "code": code, "openid": openid }))
        }
    }
}

fn mock_fail(state: &State, q: &Query) -> Resp {
    let Some(mode) = param(q, "mode").and_then(FailMode::parse) else {
        return control_error(
            "mode must be busy, ratelimit, garbage, status500, slow or empty_gbk",
        );
    };
    let count = match param(q, "count").map(str::parse::<u64>) {
        None => 1,
        Some(Ok(n)) => n,
        Some(Err(_)) => return control_error("count must be a non-negative integer"),
    };
    let delay = match param(q, "delay_ms").map(str::parse::<u64>) {
        None => Duration::from_millis(10_000),
        Some(Ok(ms)) => Duration::from_millis(ms.min(600_000)),
        Some(Err(_)) => return control_error("delay_ms must be a non-negative integer"),
    };
    state.set_failure((count > 0).then_some(Failure {
        mode,
        remaining: count,
        delay,
    }));
    control_json(StatusCode::OK, json!({ "ok": true }))
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn openids_are_deterministic_and_well_formed() {
        let apps = [WEBSITE_APPID, OFFICIAL_APPID, MOBILE_APPID, MINI_APPID];
        let mut seen = std::collections::HashSet::new();
        for app in apps {
            for u in USERS {
                let id = openid(app, u.key);
                assert_eq!(id, openid(app, u.key));
                assert_eq!(id.len(), 28, "{id}");
                assert!(id.starts_with('o'));
                assert!(id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
                assert!(seen.insert(id), "openids must differ per (app, user)");
            }
        }
    }

    #[test]
    fn users_fixture() {
        let alice = user("alice").unwrap();
        assert!(alice.nickname.chars().any(|c| c.len_utf8() == 4), "emoji");
        assert!(alice.unionid.is_some());
        let bob = user("bob").unwrap();
        assert!(bob.nickname.chars().any(|c| c.is_control()));
        assert!(bob.unionid.is_some());
        assert_eq!(user("carol").unwrap().unionid, None);
        assert!(user("mallory").is_none());
        for u in USERS {
            if let Some(id) = u.unionid {
                assert_eq!(id.len(), 28);
                assert!(id.starts_with('o'));
            }
        }
        let secrets = [WEBSITE_SECRET, OFFICIAL_SECRET, MOBILE_SECRET, MINI_SECRET];
        let distinct: std::collections::HashSet<_> = secrets.iter().collect();
        assert_eq!(distinct.len(), 4);
    }

    #[test]
    fn userinfo_json_keeps_control_character_raw() {
        let bob = user("bob").unwrap();
        let s = userinfo_json("oX", bob);
        assert!(s.contains("王小明\u{7}\""));
        assert!(
            serde_json::from_str::<Value>(&s).is_err(),
            "strict parsers reject it"
        );
        let v: Value = serde_json::from_str(&crate::wechat::sanitize_json(&s)).unwrap();
        assert_eq!(v["nickname"], bob.nickname);
        let alice = user("alice").unwrap();
        let v: Value = serde_json::from_str(&userinfo_json("oA", alice)).unwrap();
        assert_eq!(v["nickname"], alice.nickname);
        assert_eq!(v["unionid"], alice.unionid.unwrap());
    }

    #[test]
    fn hosts_and_redirects() {
        assert_eq!(normalize_host("LocalHost:8443"), "localhost");
        assert_eq!(normalize_host("[::1]:8443"), "::1");
        assert_eq!(normalize_host("::1"), "::1");
        let state = State::new(MockOptions::default());
        assert!(state.redirect_allowed("https://localhost:8443/_wxgate/callback"));
        assert!(state.redirect_allowed("http://127.0.0.1/cb?x=1"));
        assert!(!state.redirect_allowed("https://evil.example/cb"));
        assert!(!state.redirect_allowed("https://localhost.evil.example/cb"));
        assert!(!state.redirect_allowed("javascript:alert(1)"));
        assert!(!state.redirect_allowed("/relative"));
        assert_eq!(
            callback_location("https://localhost/cb", Some("C1"), "S1").as_deref(),
            Some("https://localhost/cb?code=C1&state=S1")
        );
        assert_eq!(
            callback_location("https://localhost/cb?a=1#frag", None, "a b&c").as_deref(),
            Some("https://localhost/cb?a=1&state=a+b%26c#frag")
        );
    }

    #[test]
    fn html_escape_works() {
        assert_eq!(
            html_escape("<a href=\"x\">&'\u{7}"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;␇"
        );
    }
}
