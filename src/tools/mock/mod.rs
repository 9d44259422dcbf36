//! The mock WeChat platform: `wxgate mock-wechat --listen ADDR`, tests, and `wxgate dev`.
//!
//! One plain-HTTP listener serves the browser pages (`/connect/qrconnect`,
//! `/connect/oauth2/authorize`, `/connect/confirm`), the server-side APIs (`/sns/*`) and test
//! controls (`/mock/*`), and WeCom (`wecom.rs`). It behaves like WeChat where it hurts: API errors are HTTP 200
//! `{"errcode":N,"errmsg":"..."}` as `text/plain`, codes are single-use (40163) and expire
//! (42003), and one test user's nickname carries a raw control character inside the JSON string.
//!
//! State lives in memory, in bounded caches that forget entries after their lifetime (tickets
//! and codes: 10 minutes past expiry at most; access tokens: 2 hours; refresh tokens: 1 day).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use self::api::*;
use self::browser::*;
use self::control::*;
use self::grants::*;
pub(crate) use self::reply::html_escape;
use self::reply::*;
use self::state::*;

mod api;
pub mod banner;
mod browser;
mod control;
pub mod fixtures;
mod grants;
pub mod phone;
mod reply;
mod state;
#[cfg(test)]
mod tests;
mod wecom;

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
    let wecom = Arc::new(wecom::Wecom::new());
    let (tx, rx) = watch::channel(());
    let task = tokio::spawn(accept_loop(listener, state, wecom, rx));
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

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    wecom: Arc<wecom::Wecom>,
    rx: watch::Receiver<()>,
) {
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
        let wecom = wecom.clone();
        let builder = builder.clone();
        let mut rx = rx.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                let wecom = wecom.clone();
                async move { Ok::<_, Infallible>(handle(&state, &wecom, req).await) }
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
// Routing

async fn handle(state: &State, wecom: &wecom::Wecom, req: Request<Incoming>) -> Resp {
    if phone::handles(req.uri().path()) {
        return phone::handle(state, req).await;
    }
    let q = parse_query(req.uri().query());
    let path = req.uri().path();
    let method = req.method();
    let is_get = method == Method::GET || method == Method::HEAD;
    let is_get_or_post = is_get || method == Method::POST;

    // WeChat pattern-matches its login links: the parameters in another order, or without
    // `response_type=code`, get an error page, not a login.
    if matches!(path, "/connect/qrconnect" | "/connect/oauth2/authorize")
        && is_get
        && !browser::params_in_order(req.uri().query())
    {
        return wechat_oops_page(
            "参数错误，请检查链接参数及顺序",
            "the link's parameters must be appid, redirect_uri, response_type=code, scope, state, in this order",
        );
    }
    if let Some(r) = wecom::route(state, wecom, path, is_get, is_get_or_post, &q) {
        return r;
    }
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
        "/mock/revoke" if is_get_or_post => mock_revoke(state, &q),
        "/mock/expire" if is_get_or_post => mock_expire(state, &q),
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
             controls: POST /mock/code, POST /mock/fail, POST /mock/reset, GET /mock/calls, POST /mock/revoke, POST /mock/expire\n\
             WeCom: /wwlogin/sso/login, /connect/oauth2/authorize?...&agentid=, /cgi-bin/gettoken, /cgi-bin/auth/getuserinfo\n\
             WeCom controls: POST /mock/wecom/code?user=, /mock/wecom/expire, /mock/wecom/token_ttl?secs=, /mock/wecom/untrusted_ip?on=1|0, GET /mock/wecom/calls\n",
        ),
        "/connect/qrconnect" | "/connect/oauth2/authorize" | "/connect/confirm" | "/mock/code"
        | "/mock/fail" | "/mock/reset" | "/mock/calls" | "/mock/revoke" | "/mock/expire" | "/" => {
            respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "method not allowed")
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found"),
    }
}
