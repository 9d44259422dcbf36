//! The browser side: qrconnect / oauth2 authorize pages, the test-user pick, the redirect back.

use std::sync::Arc;

use http::StatusCode;

use super::fixtures::{self};
use super::reply::*;
use super::state::*;

/// The login link's parameters in the order WeChat expects them (`appid, redirect_uri,
/// response_type, scope, state`), with `response_type=code`; more may follow
/// (`connect_redirect`, `agentid`). A missing one is left to its own error page (10003 for
/// `redirect_uri`, ...).
pub(super) fn params_in_order(query: Option<&str>) -> bool {
    const ORDER: [&str; 5] = ["appid", "redirect_uri", "response_type", "scope", "state"];
    let mut last = None;
    let mut code = false;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let Some(i) = ORDER.iter().position(|o| *o == k) else {
            continue;
        };
        if last.is_some_and(|l| i <= l) {
            return false;
        }
        last = Some(i);
        code |= k == "response_type" && v == "code";
    }
    code
}

/// Validates what both authorize pages share; returns the app and the granted scope.
pub(super) fn check_authorize(
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

pub(super) fn qrconnect(state: &State, q: &Query) -> Resp {
    Calls::bump(&state.calls.qrconnect);
    let (app, scope, redirect_uri) = match check_authorize(state, q, AppKind::Website) {
        Ok(x) => x,
        Err(page) => return page.into(),
    };
    show_login(state, app, scope, redirect_uri, q)
}

pub(super) fn authorize(state: &State, q: &Query) -> Resp {
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

pub(super) fn show_login(
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

pub(super) fn confirm(state: &State, q: &Query) -> Resp {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_links_must_keep_wechats_parameter_order() {
        let good = "appid=wx1&redirect_uri=http%3A%2F%2Fa%2Fcb&response_type=code&scope=snsapi_login&state=S";
        assert!(params_in_order(Some(good)));
        assert!(params_in_order(Some(&format!("{good}&connect_redirect=1"))));
        assert!(params_in_order(Some(&format!("{good}&agentid=1000002"))));
        // A missing one is its own page's business (10003 for redirect_uri).
        assert!(params_in_order(Some(
            "appid=wx1&response_type=code&scope=snsapi_login&state=S"
        )));
        for bad in [
            "redirect_uri=http%3A%2F%2Fa%2Fcb&appid=wx1&response_type=code&scope=snsapi_login&state=S",
            "appid=wx1&redirect_uri=x&scope=snsapi_login&response_type=code&state=S",
            "appid=wx1&redirect_uri=x&response_type=token&scope=snsapi_login&state=S",
            "appid=wx1&redirect_uri=x&scope=snsapi_login&state=S",
            "appid=wx1&appid=wx1&redirect_uri=x&response_type=code&scope=snsapi_login&state=S",
            "",
        ] {
            assert!(!params_in_order(Some(bad)), "{bad}");
        }
        assert!(!params_in_order(None));
    }
}
