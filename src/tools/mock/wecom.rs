//! The mock WeCom (企业微信): `cgi-bin/gettoken` (wrong secret → 40001), `cgi-bin/auth/getuserinfo`
//! (single-use codes: 40029 when unknown, used or expired), WeCom's login page
//! `wwlogin/sso/login` and the in-app `connect/oauth2/authorize` (with `agentid`) as pages with
//! the employees and one non-member to pick, and test controls under `/mock/wecom/`:
//! `expire` (every token issued so far dies now: the next call with it gets 42001),
//! `token_ttl?secs=N` (lifetime of the next tokens), `untrusted_ip?on=1` (every API call gets
//! 60020), `code?user=KEY` (mint a code without the page), `calls` (counts).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use moka::sync::Cache;
use serde_json::json;

use super::fixtures::{self, WecomPerson};
use super::reply::*;
use super::state::{cache, random_alnum, State};

const CODE_TTL: Duration = Duration::from_secs(300);
const TOKEN_TTL: u64 = 7200;
const UNTRUSTED_IP: i64 = 60020;

struct Code {
    person: &'static WecomPerson,
    expires_at: Instant,
    used: AtomicBool,
}

struct Ticket {
    redirect_uri: String,
    state: String,
}

pub(super) struct Wecom {
    /// Token → when it was issued (tokens issued before `expired_before` are dead) and expires.
    tokens: Cache<String, (Instant, Instant)>,
    codes: Cache<String, Arc<Code>>,
    tickets: Cache<String, Arc<Ticket>>,
    /// `/mock/wecom/expire`: tokens issued before this are expired.
    expired_before: std::sync::Mutex<Option<Instant>>,
    token_ttl: AtomicU64,
    untrusted_ip: AtomicBool,
    gettoken: AtomicU64,
    getuserinfo: AtomicU64,
    pages: AtomicU64,
}

impl Wecom {
    pub(super) fn new() -> Wecom {
        Wecom {
            tokens: cache(Duration::from_secs(TOKEN_TTL)),
            codes: cache(CODE_TTL + Duration::from_secs(60)),
            tickets: cache(Duration::from_secs(600)),
            expired_before: std::sync::Mutex::new(None),
            token_ttl: AtomicU64::new(TOKEN_TTL),
            untrusted_ip: AtomicBool::new(false),
            gettoken: AtomicU64::new(0),
            getuserinfo: AtomicU64::new(0),
            pages: AtomicU64::new(0),
        }
    }

    fn mint_code(&self, person: &'static WecomPerson) -> String {
        let code = random_alnum(32);
        self.codes.insert(
            code.clone(),
            Arc::new(Code {
                person,
                expires_at: Instant::now() + CODE_TTL,
                used: AtomicBool::new(false),
            }),
        );
        code
    }

    fn token_alive(&self, token: &str) -> Result<(), ApiErr> {
        let (issued, expires) = self
            .tokens
            .get(token)
            .ok_or(ApiErr(40014, "invalid access_token"))?;
        let killed = *self
            .expired_before
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if Instant::now() >= expires || killed.is_some_and(|k| issued <= k) {
            return Err(ApiErr(42001, "access_token expired"));
        }
        Ok(())
    }
}

/// The mock WeCom's answer for this request, when the path is WeCom's.
pub(super) fn route(
    state: &State,
    w: &Wecom,
    path: &str,
    is_get: bool,
    is_get_or_post: bool,
    q: &Query,
) -> Option<Resp> {
    let r = match path {
        "/cgi-bin/gettoken" if is_get => gettoken(w, q),
        "/cgi-bin/auth/getuserinfo" if is_get => getuserinfo(w, q),
        "/wwlogin/sso/login" if is_get => login_page(state, w, q, true),
        // The in-app login is WeChat's authorize URL with an agentid.
        "/connect/oauth2/authorize" if is_get && q.contains_key("agentid") => {
            login_page(state, w, q, false)
        }
        "/wwlogin/confirm" if is_get => confirm(w, q),
        "/mock/wecom/expire" if is_get_or_post => {
            *w.expired_before.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            control_json(StatusCode::OK, json!({ "ok": true }))
        }
        "/mock/wecom/token_ttl" if is_get_or_post => {
            match param(q, "secs").and_then(|s| s.parse::<u64>().ok()) {
                Some(secs) => {
                    w.token_ttl.store(secs, Ordering::Relaxed);
                    control_json(StatusCode::OK, json!({ "ok": true, "secs": secs }))
                }
                None => control_error("secs must be a number of seconds"),
            }
        }
        "/mock/wecom/untrusted_ip" if is_get_or_post => {
            let on = param(q, "on") != Some("0");
            w.untrusted_ip.store(on, Ordering::Relaxed);
            control_json(StatusCode::OK, json!({ "ok": true, "untrusted_ip": on }))
        }
        "/mock/wecom/code" if is_get_or_post => {
            match param(q, "user").and_then(fixtures::wecom_person) {
                Some(p) => control_json(StatusCode::OK, json!({ "code": w.mint_code(p) })),
                None => control_error("unknown WeCom test user"),
            }
        }
        "/mock/wecom/calls" if is_get => {
            let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
            control_json(
                StatusCode::OK,
                json!({
                    "gettoken": g(&w.gettoken),
                    "getuserinfo": g(&w.getuserinfo),
                    "login_page": g(&w.pages),
                }),
            )
        }
        "/cgi-bin/gettoken"
        | "/cgi-bin/auth/getuserinfo"
        | "/wwlogin/sso/login"
        | "/wwlogin/confirm"
        | "/mock/wecom/expire"
        | "/mock/wecom/token_ttl"
        | "/mock/wecom/untrusted_ip"
        | "/mock/wecom/code"
        | "/mock/wecom/calls" => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed",
        ),
        _ => return None,
    };
    Some(r)
}

fn gettoken(w: &Wecom, q: &Query) -> Resp {
    w.gettoken.fetch_add(1, Ordering::Relaxed);
    if w.untrusted_ip.load(Ordering::Relaxed) {
        return api_error(UNTRUSTED_IP, "not allow to access from your ip");
    }
    if param(q, "corpid") != Some(fixtures::WECOM_CORP_ID) {
        return api_error(40013, "invalid corpid");
    }
    if param(q, "corpsecret") != Some(fixtures::WECOM_SECRET) {
        return api_error(40001, "invalid credential");
    }
    let ttl = w.token_ttl.load(Ordering::Relaxed);
    let token = random_alnum(64);
    let now = Instant::now();
    w.tokens
        .insert(token.clone(), (now, now + Duration::from_secs(ttl)));
    api_ok(
        json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": ttl}).to_string(),
    )
}

fn getuserinfo(w: &Wecom, q: &Query) -> Resp {
    w.getuserinfo.fetch_add(1, Ordering::Relaxed);
    if w.untrusted_ip.load(Ordering::Relaxed) {
        return api_error(UNTRUSTED_IP, "not allow to access from your ip");
    }
    let Some(token) = param(q, "access_token") else {
        return api_error(41001, "access_token missing");
    };
    if let Err(e) = w.token_alive(token) {
        return e.into();
    }
    let Some(code) = param(q, "code") else {
        return api_error(41008, "missing code");
    };
    let entry = match w.codes.get(code) {
        Some(e) if !e.used.swap(true, Ordering::AcqRel) && Instant::now() < e.expires_at => e,
        _ => return api_error(40029, "invalid code"),
    };
    let p = entry.person;
    let body = if p.member {
        json!({"errcode": 0, "errmsg": "ok", "userid": p.key, "user_ticket": random_alnum(40), "expires_in": 1800})
    } else {
        json!({"errcode": 0, "errmsg": "ok", "openid": fixtures::wecom_openid(p.key), "external_userid": format!("wm{}", p.key)})
    };
    api_ok(body.to_string())
}

/// Both login pages check the corp, the agent, the redirect domain (可信域名) and, in-app, the
/// scope; then list the people to pick.
fn login_page(state: &State, w: &Wecom, q: &Query, sso: bool) -> Resp {
    w.pages.fetch_add(1, Ordering::Relaxed);
    if sso && param(q, "login_type") != Some("CorpApp") {
        return wechat_error_page(40058, "login_type 参数错误", "login_type must be CorpApp");
    }
    if !sso && param(q, "scope") != Some("snsapi_base") {
        return wechat_error_page(10005, "Scope 参数错误", "invalid scope");
    }
    if param(q, "appid") != Some(fixtures::WECOM_CORP_ID) {
        return wechat_error_page(40013, "appid 参数错误", "invalid corpid");
    }
    if param(q, "agentid") != Some(fixtures::WECOM_AGENT_ID) {
        return wechat_error_page(40056, "agentid 参数错误", "invalid agentid");
    }
    let Some(redirect_uri) = param(q, "redirect_uri").filter(|u| state.redirect_allowed(u)) else {
        return wechat_error_page(
            50001,
            "redirect_uri 与可信域名不一致",
            "redirect_uri is not under the app's trusted domain",
        );
    };
    let ticket = random_alnum(32);
    w.tickets.insert(
        ticket.clone(),
        Arc::new(Ticket {
            redirect_uri: redirect_uri.to_string(),
            state: param(q, "state").unwrap_or_default().to_string(),
        }),
    );
    let mut people = String::new();
    for p in fixtures::WECOM_PEOPLE {
        let who = if p.member {
            format!("userid: {}", p.key)
        } else {
            format!("openid: {}", fixtures::wecom_openid(p.key))
        };
        people.push_str(&format!(
            "<li><a class=\"user\" id=\"user-{key}\" href=\"/wwlogin/confirm?ticket={ticket}&user={key}\">\
             {name}<small>{who}</small></a></li>\n",
            key = p.key,
            name = html_escape(p.name),
        ));
    }
    let (heading, sub) = if sso {
        (
            "企业微信登录",
            "WeCom login — 扫码登录模拟：选择一个成员 / pick an employee",
        )
    } else {
        (
            "企业微信授权",
            "WeCom in-app login — 选择一个成员 / pick an employee",
        )
    };
    let content = format!(
        "<h1>{heading} <small>(mock)</small></h1>\n<p class=\"sub\">{sub}</p>\n\
         <p class=\"sub\">corpid: {corp} · agentid: {agent}</p>\n<ul>\n{people}</ul>",
        corp = fixtures::WECOM_CORP_ID,
        agent = fixtures::WECOM_AGENT_ID,
    );
    html_page(
        StatusCode::OK,
        "企业微信登录 (mock) / WeCom login (mock)",
        &content,
    )
}

fn confirm(w: &Wecom, q: &Query) -> Resp {
    let Some(ticket) = param(q, "ticket").and_then(|t| w.tickets.get(t)) else {
        return html_page(
            StatusCode::BAD_REQUEST,
            "企业微信登录 (mock) - 已失效",
            "<h1 class=\"err\">二维码已失效</h1><p>Unknown or expired ticket: start the login again.</p>",
        );
    };
    let Some(person) = param(q, "user").and_then(fixtures::wecom_person) else {
        return html_page(
            StatusCode::BAD_REQUEST,
            "企业微信登录 (mock) - 用户不存在",
            "<h1 class=\"err\">用户不存在</h1><p>Unknown test user.</p>",
        );
    };
    let code = w.mint_code(person);
    match callback_location(&ticket.redirect_uri, Some(&code), &ticket.state) {
        Some(loc) => redirect(&loc),
        None => wechat_error_page(50001, "redirect_uri 参数错误", "invalid redirect_uri"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_single_use_and_tokens_die_on_expire() {
        let w = Wecom::new();
        let mut q = Query::new();
        q.insert("corpid".into(), fixtures::WECOM_CORP_ID.into());
        q.insert("corpsecret".into(), "wrong".into());
        let body = |r: Resp| {
            use http_body_util::BodyExt;
            let b = block_on(r.into_body().collect()).unwrap();
            serde_json::from_slice::<serde_json::Value>(&b.to_bytes()).unwrap()
        };
        assert_eq!(body(gettoken(&w, &q))["errcode"], 40001);
        q.insert("corpsecret".into(), fixtures::WECOM_SECRET.into());
        let t = body(gettoken(&w, &q));
        let token = t["access_token"].as_str().unwrap().to_string();
        let code = w.mint_code(fixtures::wecom_person("zhangsan").unwrap());
        let mut u = Query::new();
        u.insert("access_token".into(), token.clone());
        u.insert("code".into(), code);
        assert_eq!(body(getuserinfo(&w, &u))["userid"], "zhangsan");
        assert_eq!(body(getuserinfo(&w, &u))["errcode"], 40029);
        *w.expired_before.lock().unwrap() = Some(Instant::now());
        u.insert(
            "code".into(),
            w.mint_code(fixtures::wecom_person("guest").unwrap()),
        );
        assert_eq!(body(getuserinfo(&w, &u))["errcode"], 42001);
        assert_eq!(w.gettoken.load(Ordering::Relaxed), 2);
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
