//! The official account (browsers inside WeChat): `open.weixin.qq.com/connect/oauth2/authorize`
//! with the configured scope (`snsapi_userinfo` or `snsapi_base`).

use http::header::USER_AGENT;
use http::HeaderMap;
use percent_encoding::utf8_percent_encode;

use super::app::App;

/// A browser inside WeChat: its User-Agent says `MicroMessenger`.
pub(super) fn is_wechat_browser(headers: &HeaderMap) -> bool {
    headers
        .get(USER_AGENT)
        .map(|v| {
            v.as_bytes()
                .windows(b"micromessenger".len())
                .any(|w| w.eq_ignore_ascii_case(b"micromessenger"))
        })
        .unwrap_or(false)
}

/// The authorize URL, exactly as WeChat pattern-matches it.
pub(super) fn authorize_url(
    open_base: &str,
    app: &App,
    scope: &str,
    callback: &str,
    state: &str,
) -> String {
    let enc = utf8_percent_encode(callback, crate::common::redirect::COMPONENT);
    format!(
        "{open_base}/connect/oauth2/authorize?appid={}&redirect_uri={enc}&response_type=code&scope={scope}&state={state}&connect_redirect=1#wechat_redirect",
        app.appid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorize_url_exact() {
        let cb = "https://app.example.com/_wxgate/callback";
        let app = App {
            appid: "wxB".into(),
            secret: "s".into(),
        };
        assert_eq!(
            authorize_url("https://open.weixin.qq.com", &app, "snsapi_base", cb, "S2"),
            "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wxB&redirect_uri=https%3A%2F%2Fapp.example.com%2F_wxgate%2Fcallback&response_type=code&scope=snsapi_base&state=S2&connect_redirect=1#wechat_redirect"
        );
    }

    #[test]
    fn wechat_browser_by_user_agent() {
        let mut h = HeaderMap::new();
        assert!(!is_wechat_browser(&h));
        h.insert(
            USER_AGENT,
            "Mozilla/5.0 (iPhone) MicroMessenger/8.0.40"
                .parse()
                .unwrap(),
        );
        assert!(is_wechat_browser(&h));
        h.insert(USER_AGENT, "Mozilla/5.0 (Windows NT 10.0)".parse().unwrap());
        assert!(!is_wechat_browser(&h));
    }
}
