//! WeCom's two browser logins, URLs exactly as WeCom matches them: inside the WeCom app
//! `{open_base}/connect/oauth2/authorize` with `agentid`, on PCs `{login_base}/wwlogin/sso/login`.

use percent_encoding::utf8_percent_encode;

use crate::common::redirect::COMPONENT;

/// Inside the WeCom app (`wxwork` in the User-Agent): silent `snsapi_base`.
pub(super) fn in_app(
    open_base: &str,
    corp_id: &str,
    agent_id: &str,
    callback: &str,
    state: &str,
) -> String {
    let enc = utf8_percent_encode(callback, COMPONENT);
    format!(
        "{open_base}/connect/oauth2/authorize?appid={corp_id}&redirect_uri={enc}&response_type=code&scope=snsapi_base&state={state}&agentid={agent_id}#wechat_redirect"
    )
}

/// PC browsers: WeCom's login page (scan with WeCom, or the desktop app's one-click login).
pub(super) fn sso(
    login_base: &str,
    corp_id: &str,
    agent_id: &str,
    callback: &str,
    state: &str,
) -> String {
    let enc = utf8_percent_encode(callback, COMPONENT);
    format!(
        "{login_base}/wwlogin/sso/login?login_type=CorpApp&appid={corp_id}&agentid={agent_id}&redirect_uri={enc}&state={state}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_urls() {
        let cb = "https://app.example.com/_wxgate/callback";
        assert_eq!(
            in_app("https://open.weixin.qq.com", "ww01", "1000002", cb, "S1"),
            "https://open.weixin.qq.com/connect/oauth2/authorize?appid=ww01&redirect_uri=https%3A%2F%2Fapp.example.com%2F_wxgate%2Fcallback&response_type=code&scope=snsapi_base&state=S1&agentid=1000002#wechat_redirect"
        );
        assert_eq!(
            sso("https://login.work.weixin.qq.com", "ww01", "1000002", cb, "S1"),
            "https://login.work.weixin.qq.com/wwlogin/sso/login?login_type=CorpApp&appid=ww01&agentid=1000002&redirect_uri=https%3A%2F%2Fapp.example.com%2F_wxgate%2Fcallback&state=S1"
        );
    }
}
