//! The gateway's login URLs and where a login returns to: pure functions of the settings and
//! the request, used by the endpoints and by the pipeline's "not logged in" answers.

use http::header::HOST;
use percent_encoding::utf8_percent_encode;

use crate::common::redirect::{safe_return, COMPONENT};
use crate::config::Settings;

/// `{prefix}/login?rd=...`
pub(crate) fn login_path(prefix: &str, rd: &str) -> String {
    format!("{prefix}/login?rd={}", utf8_percent_encode(rd, COMPONENT))
}

/// The 403 page's "switch account": `{prefix}/logout?rd=` the login that returns to `rd`, so
/// the session ends and a new login starts at once.
pub(crate) fn switch_account_path(prefix: &str, rd: &str) -> String {
    format!(
        "{prefix}/logout?rd={}",
        utf8_percent_encode(&login_path(prefix, rd), COMPONENT)
    )
}

/// `{public_url}{prefix}/login?rd=...`
pub(crate) fn login_url(settings: &Settings, rd: &str) -> String {
    format!(
        "{}{}",
        settings.public.origin,
        login_path(settings.prefix(), rd)
    )
}

/// Where to return after login for a request for `pq`: the path itself on public_url's
/// host, an absolute URL on a host of `access.redirect_hosts` (multi-site), else the path.
/// The host is `X-Forwarded-Host` from a trusted proxy (`trusted`), else `Host` /
/// `:authority`.
pub(crate) fn return_target(
    settings: &Settings,
    headers: &http::HeaderMap,
    authority: Option<&http::uri::Authority>,
    pq: &str,
    trusted: bool,
) -> String {
    let forwarded = |name: &str| {
        trusted
            .then(|| headers.get(name).and_then(|v| v.to_str().ok()))
            .flatten()
            .map(|v| v.split(',').next().unwrap_or("").trim())
            .filter(|v| !v.is_empty())
    };
    let host = forwarded("x-forwarded-host")
        .or_else(|| headers.get(HOST).and_then(|v| v.to_str().ok()))
        .or_else(|| authority.map(|a| a.as_str()));
    let Some(host) = host else {
        return pq.to_string();
    };
    let public = &settings.public;
    let proto = forwarded("x-forwarded-proto")
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or(public.url.scheme());
    let abs = format!("{proto}://{host}{pq}");
    let Ok(u) = url::Url::parse(&abs) else {
        return pq.to_string();
    };
    let on_public = u
        .host_str()
        .is_some_and(|h| h.eq_ignore_ascii_case(&public.host));
    if on_public {
        return pq.to_string();
    }
    let checked = safe_return(&abs, public, &settings.access.redirect_hosts);
    if checked == "/" {
        pq.to_string()
    } else {
        checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_path_encodes_rd_as_a_component() {
        assert_eq!(
            login_path("/_wxgate", "/a b?x=1&y=é"),
            "/_wxgate/login?rd=%2Fa%20b%3Fx%3D1%26y%3D%C3%A9"
        );
        assert_eq!(login_path("/_wxgate", "/"), "/_wxgate/login?rd=%2F");
    }

    #[test]
    fn switch_account_logs_out_into_a_login() {
        let p = switch_account_path("/_wxgate", "/a?b=1");
        assert_eq!(
            p,
            "/_wxgate/logout?rd=%2F_wxgate%2Flogin%3Frd%3D%252Fa%253Fb%253D1"
        );
        // What /logout reads back is the login path, which returns to `rd`.
        let rd = crate::common::http_util::query_param(p.split_once('?').map(|x| x.1), "rd");
        assert_eq!(
            rd.as_deref(),
            Some(login_path("/_wxgate", "/a?b=1").as_str())
        );
    }
}
