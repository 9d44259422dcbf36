//! The mock's answers: WeChat-style API errors, pages, query parsing.

use std::collections::HashMap;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use super::fixtures::{self, TestUser};
use super::state::*;

pub(super) type Resp = Response<Full<Bytes>>;

pub(super) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Resp {
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
pub(super) struct ApiErr(pub(super) i64, pub(super) &'static str);

impl From<ApiErr> for Resp {
    fn from(e: ApiErr) -> Resp {
        api_error(e.0, e.1)
    }
}

/// An authorize-page error: errcode, Chinese title, English text.
#[derive(Debug, Clone, Copy)]
pub(super) struct PageErr(
    pub(super) i64,
    pub(super) &'static str,
    pub(super) &'static str,
);

impl From<PageErr> for Resp {
    fn from(e: PageErr) -> Resp {
        wechat_error_page(e.0, e.1, e.2)
    }
}

/// WeChat style: HTTP 200, `text/plain`, `{"errcode":N,"errmsg":"... rid: ..."}`.
pub(super) fn api_error(code: i64, msg: &str) -> Resp {
    let rid: String = format!("{:x}-{}", unix_now(), random_alnum(8).to_ascii_lowercase());
    let body = json!({ "errcode": code, "errmsg": format!("{msg}, rid: {rid}") });
    respond(StatusCode::OK, "text/plain", body.to_string())
}

pub(super) fn api_ok(body: String) -> Resp {
    respond(StatusCode::OK, "application/json; encoding=utf-8", body)
}

pub(super) fn control_json(status: StatusCode, body: Value) -> Resp {
    respond(status, "application/json", body.to_string())
}

pub(super) fn control_error(msg: &str) -> Resp {
    control_json(StatusCode::BAD_REQUEST, json!({ "error": msg }))
}

pub(super) fn redirect(location: &str) -> Resp {
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
pub(crate) fn html_escape(s: &str) -> String {
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

pub(super) const STYLE: &str =
    "body{font-family:-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;\
background:#ededed;margin:0;color:#191919}main{max-width:420px;margin:40px auto;background:#fff;\
border-radius:8px;padding:24px}h1{font-size:20px;margin:0 0 8px}.sub{color:#888;font-size:13px}\
ul{list-style:none;padding:0}li{margin:10px 0}a.user{display:block;padding:12px;border-radius:6px;\
background:#07c160;color:#fff;text-decoration:none}a.user small{display:block;opacity:.8;\
font-size:11px;word-break:break-all}#deny{color:#576b95}.err{color:#fa5151}";

pub(super) fn html_page(status: StatusCode, title: &str, content: &str) -> Resp {
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\n<body><main>\n{content}\n</main></body></html>\n"
    );
    respond(status, "text/html; charset=utf-8", body)
}

/// WeChat shows its authorize errors as a normal (HTTP 200) page.
pub(super) fn wechat_error_page(errcode: i64, zh: &str, en: &str) -> Resp {
    let content = format!(
        "<h1 class=\"err\">{zh}</h1><p>{en}</p><p class=\"sub\">errcode: <span id=\"errcode\">{errcode}</span></p>"
    );
    html_page(
        StatusCode::OK,
        &format!("微信登录 (mock) - {errcode}"),
        &content,
    )
}

/// WeChat's page for a login link it does not recognise, which names no errcode.
pub(super) fn wechat_oops_page(zh: &str, en: &str) -> Resp {
    let content =
        format!("<h1 class=\"err\">Oops! Something went wrong:(</h1><p>{zh}</p><p>{en}</p>");
    html_page(StatusCode::OK, "微信登录 (mock)", &content)
}

pub(super) fn login_page(app: &App, ticket: &str, scope: &str) -> Resp {
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
pub(super) fn callback_location(
    redirect_uri: &str,
    code: Option<&str>,
    state: &str,
) -> Option<String> {
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
pub(super) fn userinfo_json(openid: &str, user: &TestUser) -> String {
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
    if super::fixtures::is_snapshot(user.key) {
        s.push_str(",\"is_snapshotuser\":1");
    }
    s.push('}');
    s
}

pub(super) type Query = HashMap<String, String>;

pub(super) fn parse_query(q: Option<&str>) -> Query {
    let mut out = Query::new();
    if let Some(q) = q {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
    }
    out
}

pub(super) fn param<'a>(q: &'a Query, key: &str) -> Option<&'a str> {
    q.get(key).map(String::as_str).filter(|s| !s.is_empty())
}
