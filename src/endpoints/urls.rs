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
}
