//! The OAuth logins (website, official account, mobile app): code → access token → userinfo
//! (when the scope allows) → who logged in.

use super::app::{App, Source};
use super::client::WechatClient;
use super::error::WechatError;
use crate::providers::provider::Identity;

/// Code → token → userinfo (when the scope allows): the OAuth logins (website, official
/// account, mobile app).
pub(super) async fn oauth_identity(
    client: &WechatClient,
    app: &App,
    code: &str,
    source: Source,
) -> Result<Identity, WechatError> {
    let tok = client.exchange_code(&app.appid, &app.secret, code).await?;
    let wants_info = tok.scope.contains("snsapi_userinfo") || tok.scope.contains("snsapi_login");
    let (nickname, avatar, info_union) = if wants_info {
        let info = client.userinfo(&tok.access_token, &tok.openid).await?;
        (info.nickname, info.headimgurl, info.unionid)
    } else {
        (String::new(), String::new(), None)
    };
    Ok(Identity {
        origin: source.into(),
        unionid: info_union.or(tok.unionid).filter(|u| !u.is_empty()),
        openid: tok.openid,
        appid: app.appid.clone(),
        nickname,
        avatar,
    })
}
