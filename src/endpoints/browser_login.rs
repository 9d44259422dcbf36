//! Browser login: `/login` (pick the provider's login for this browser, remember the login in
//! flight, send the browser to the provider), `/callback` (state → code → session → back to
//! `rd`) and `/logout`.

use std::time::Duration;

use http::header::SET_COOKIE;
use http::{Request, Response};
use hyper::body::Incoming;

use super::callback_runs::{Answer, Outcome};
use super::context::Ctx;
use super::cookies::cookie_header;
use super::login::{finish, provider_failed, Finished, Via, MAX_CODE};
use super::login_state::{self, LoginCookie, LOGIN_TTL_SECS};
use super::urls;
use crate::common::audit::Action;
use crate::common::error::{GatewayError, LoginError};
use crate::common::http_util::{self, query_param, unix_now, Body};
use crate::common::redirect::safe_return;
use crate::providers::provider::LoginProvider;
use crate::providers::registry::BrowserLogin;
use crate::session::{PendingLogin, SessionStore};

/// `rd` from the query, checked (`/` when missing or not allowed).
fn return_to(cx: &Ctx<'_>, req: &Request<Incoming>) -> String {
    let rd = query_param(req.uri().query(), "rd").unwrap_or_else(|| "/".into());
    let s = cx.settings;
    safe_return(&rd, &s.public, &s.access.redirect_hosts)
}

pub(super) async fn login(
    cx: &Ctx<'_>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let s = cx.settings;
    let rd = return_to(cx, req);
    let via = query_param(req.uri().query(), "via");
    let (provider, origin) = match cx.providers.browser_login(req.headers(), via.as_deref()) {
        BrowserLogin::Start(p, origin) => (p, origin),
        BrowserLogin::Choose(providers) => {
            // Several providers log this browser in (WeChat and WeCom): the user picks.
            return Ok(super::choose_page::choose(s, &rd, &providers));
        }
        BrowserLogin::OpenInApp => {
            // A PC browser, and only an in-app login: scan to continue inside the app.
            return Ok(crate::common::pages::open_in_wechat(&urls::login_url(
                s, &rd,
            )));
        }
        BrowserLogin::PhoneOutsideApp => {
            // A phone outside WeChat: the link to open in WeChat, never a QR code of itself.
            return Ok(super::mobile_page::open_in_wechat_on_phone(
                &urls::login_url(s, &rd),
            ));
        }
        BrowserLogin::OpenOnComputer => {
            // WeChat on a phone, and only the website's QR login: the link to open on a
            // computer.
            return Ok(super::mobile_page::open_on_computer(&urls::login_url(
                s, &rd,
            )));
        }
        BrowserLogin::None => return Err(LoginError::AppNotConfigured.into()),
    };
    let cookie = LoginCookie::parse(crate::common::cookies::find_cookie(
        req.headers(),
        cx.login_cookie,
    ));
    start_round(cx, &cookie, provider, PendingLogin { rd, origin }).await
}

/// Send the browser to the provider for one login round: a fresh signed, single-use state
/// bound to the browser's login cookie, and the login in flight stored under its nonce.
async fn start_round(
    cx: &Ctx<'_>,
    cookie: &LoginCookie<'_>,
    provider: &dyn LoginProvider,
    pending: PendingLogin,
) -> Result<Response<Body>, GatewayError> {
    let s = cx.settings;
    let kind = pending.origin.kind;
    // Always a fresh binding, never the client's: a binding an attacker planted must not
    // sign this login. The browser's newest earlier bindings stay in the cookie, so a login
    // started in another tab can still finish.
    let binding = login_state::random_hex(16);
    let cookie_value = cookie.with_fresh(&binding);
    let (state, nonce) = cx.signer.issue(&binding, unix_now());
    cx.store
        .put_pending(&nonce, pending, Duration::from_secs(LOGIN_TTL_SECS))
        .await?;
    let url = provider.authorize_url(kind, &s.callback_url, &state);
    let mut r = http_util::redirect(&url);
    r.headers_mut().append(
        SET_COOKIE,
        cookie_header(
            s,
            cx.login_cookie,
            &cookie_value,
            s.prefix(),
            LOGIN_TTL_SECS as i64,
        ),
    );
    Ok(r)
}

pub(super) async fn callback(
    cx: &Ctx<'_>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    let q = req.uri().query();
    let state = query_param(q, "state")
        .filter(|s| !s.is_empty())
        .ok_or(LoginError::MissingState)?;
    let raw_cookie = crate::common::cookies::find_cookie(req.headers(), cx.login_cookie);
    let cookie = LoginCookie::parse(raw_cookie);
    // Verified: one of the bindings is this browser's.
    let nonce = cx.signer.verify_any(&state, &cookie.bindings, unix_now())?;
    // One run per state, in a task of its own: a second callback while the first is being
    // finished (WeChat calls twice, and the browser drops the first answer) gets its answer.
    let outcome = match cx.source.upgrade() {
        Some(source) => {
            let (q, raw, key) = (
                q.map(str::to_owned),
                raw_cookie.map(str::to_owned),
                nonce.to_owned(),
            );
            let (ip, credentials) = (cx.client_ip, cx.credentials);
            let run = async move {
                let cx = source.ctx(ip, credentials);
                let cookie = LoginCookie::parse(raw.as_deref());
                run_callback(&cx, q.as_deref(), &key, &cookie).await
            };
            cx.callback_runs.join_or_start(nonce, run).await
        }
        // The App is gone only once no request holds it: not while this one does.
        None => run_callback(cx, q, nonce, &cookie).await,
    };
    match outcome {
        Outcome::Answer(a) => Ok(a.response()),
        // The provider sometimes calls twice: the same browser that finished goes where it
        // meant to.
        Outcome::NoPending => match &cookie.completed {
            Some((done, rd)) if *done == nonce => {
                let s = cx.settings;
                Ok(http_util::redirect(&safe_return(
                    rd,
                    &s.public,
                    &s.access.redirect_hosts,
                )))
            }
            _ => Err(LoginError::StateUsed.into()),
        },
    }
}

/// A callback whose state checked out, as one run: its pending login taken, then finished.
/// Every outcome but "nothing pending" is an answer (errors as their pages), to be given to
/// each request for this state that waited.
async fn run_callback(
    cx: &Ctx<'_>,
    q: Option<&str>,
    nonce: &str,
    cookie: &LoginCookie<'_>,
) -> Outcome {
    let prefix = cx.settings.prefix();
    let pending = match cx.store.take_pending(nonce).await {
        Ok(Some(p)) => p,
        Ok(None) => return Outcome::NoPending,
        Err(e) => {
            let e = GatewayError::from(e);
            e.log();
            return Outcome::Answer(Answer::of(
                e.into_response(false, &urls::login_path(prefix, "/")),
            ));
        }
    };
    // From here on the target is known: "sign in again" returns there.
    let retry = urls::login_path(prefix, &pending.rd);
    let origin = pending.origin;
    let r = match finish_login(cx, q, nonce, cookie, pending).await {
        Ok(r) => r,
        Err(e) => {
            e.log();
            // The login's own failures (declined, bad code, ...); the provider's are audited
            // where they are counted (`provider_failed`), refusals with who it was.
            if matches!(e, GatewayError::Login(_)) {
                let source = cx.providers.kind_name(origin);
                super::audit::failed_login(cx, source, e.code());
            }
            e.into_response(false, &retry)
        }
    };
    Outcome::Answer(Answer::of(r))
}

/// The callback once its state checked out: code → session → redirect.
async fn finish_login(
    cx: &Ctx<'_>,
    q: Option<&str>,
    nonce: &str,
    login_cookie: &LoginCookie<'_>,
    pending: PendingLogin,
) -> Result<Response<Body>, GatewayError> {
    let origin = pending.origin;
    let provider = cx
        .providers
        .get(origin)
        .ok_or(LoginError::AppNotConfigured)?;
    let source = provider.kind_name(origin.kind);
    let Some(code) = query_param(q, "code").filter(|c| !c.is_empty()) else {
        cx.metrics.login(source, "refused");
        return Err(LoginError::Refused.into());
    };
    if code.len() > MAX_CODE {
        cx.metrics.login(source, "invalid_code");
        return Err(LoginError::BadCode.into());
    }
    if !provider.serves(origin.kind) {
        return Err(LoginError::AppNotConfigured.into());
    }
    let identity = provider
        .redeem_code(origin.kind, &code)
        .await
        .map_err(|e| provider_failed(cx, source, e))?;
    // scope = "auto": the silent round gave no unionid and the access rules need one: one
    // consent round, whose state is issued like the first (the consent round has none).
    if let Some(kind) = provider.consent_round(origin.kind) {
        if identity.unionid.is_none() && cx.access.needs_unionid(&identity.openid) {
            tracing::debug!(source, "silent login gave no unionid: asking for consent");
            let origin = crate::session::Origin { kind, ..origin };
            let next = PendingLogin {
                rd: pending.rd,
                origin,
            };
            return start_round(cx, login_cookie, provider, next).await;
        }
    }
    let (id, cookie) = match finish(cx, &identity, Via::Browser { rd: &pending.rd }).await? {
        Finished::Session(id, cookie, _) => (id, cookie),
        Finished::Answered(r) => return Ok(r),
    };
    let mut r = http_util::redirect(&pending.rd);
    r.headers_mut().append(SET_COOKIE, cookie);
    let done = login_cookie.completed_value(nonce, &pending.rd);
    let ttl = login_state::COMPLETED_TTL_SECS as i64;
    r.headers_mut().append(
        SET_COOKIE,
        cookie_header(
            cx.settings,
            cx.login_cookie,
            &done,
            cx.settings.prefix(),
            ttl,
        ),
    );
    tracing::info!(source, session = %id.fingerprint(), "login");
    Ok(r)
}

pub(super) async fn logout(
    cx: &Ctx<'_>,
    req: &Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    if let Some(a) = cx.authenticate().await? {
        cx.store.remove(&a.id).await?;
        super::audit::session_event(cx, Action::Logout, &a.session, "ok", "");
        tracing::info!(session = %a.id.fingerprint(), "logout");
    }
    let h = req.headers();
    let json = http_util::wants_json(h) || crate::common::cookies::bearer_token(h).is_some();
    let mut r = if json {
        // An app or a script: nothing to show, nowhere to go.
        http_util::json(http::StatusCode::OK, &serde_json::json!({"ok": true}))
    } else if query_param(req.uri().query(), "rd").is_some() {
        http_util::redirect(&return_to(cx, req))
    } else {
        // Never straight into a new login: inside WeChat it would sign the user back in.
        crate::common::pages::signed_out(&urls::login_path(cx.settings.prefix(), "/"))
    };
    // A browser's cookie is expired; a bearer client that sent none gets no Set-Cookie.
    if !json || crate::common::cookies::find_cookie(h, cx.session_cookie).is_some() {
        r.headers_mut().append(
            SET_COOKIE,
            cookie_header(cx.settings, cx.session_cookie, "", "/", 0),
        );
    }
    Ok(r)
}
