//! The official account (browsers inside WeChat): `open.weixin.qq.com/connect/oauth2/authorize`
//! with the configured scope (`snsapi_userinfo` or `snsapi_base`); with `scope = "auto"`, a
//! silent `snsapi_base` round first and at most one `snsapi_userinfo` round after it.

use crate::config::OfficialScope;

use percent_encoding::utf8_percent_encode;

use super::app::App;

/// The scope of an official-account login round: the configured one, `snsapi_base` for the
/// first round of `auto`, `snsapi_userinfo` for its consent round.
pub(super) fn round_scope(configured: OfficialScope, consent_round: bool) -> &'static str {
    match (configured, consent_round) {
        (_, true) | (OfficialScope::SnsapiUserinfo, false) => "snsapi_userinfo",
        (OfficialScope::SnsapiBase | OfficialScope::Auto, false) => "snsapi_base",
    }
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
    fn round_scopes() {
        use OfficialScope::*;
        assert_eq!(round_scope(SnsapiUserinfo, false), "snsapi_userinfo");
        assert_eq!(round_scope(SnsapiBase, false), "snsapi_base");
        assert_eq!(round_scope(Auto, false), "snsapi_base");
        assert_eq!(round_scope(Auto, true), "snsapi_userinfo");
    }

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
}
