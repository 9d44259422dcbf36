//! The website app (PC browsers): QR-code login on `open.weixin.qq.com/connect/qrconnect`.

use percent_encoding::utf8_percent_encode;

use super::app::App;

/// The authorize URL, exactly as WeChat pattern-matches it (the scope is always
/// `snsapi_login`).
pub(super) fn authorize_url(open_base: &str, app: &App, callback: &str, state: &str) -> String {
    let enc = utf8_percent_encode(callback, crate::common::redirect::COMPONENT);
    format!(
        "{open_base}/connect/qrconnect?appid={}&redirect_uri={enc}&response_type=code&scope=snsapi_login&state={state}#wechat_redirect",
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
            appid: "wxA".into(),
            secret: "s".into(),
        };
        assert_eq!(
            authorize_url("https://open.weixin.qq.com", &app, cb, "S1"),
            "https://open.weixin.qq.com/connect/qrconnect?appid=wxA&redirect_uri=https%3A%2F%2Fapp.example.com%2F_wxgate%2Fcallback&response_type=code&scope=snsapi_login&state=S1#wechat_redirect"
        );
    }
}
