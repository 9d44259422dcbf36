//! The OAuth logins (website, official account, mobile app): code → access token → userinfo
//! (when the scope allows) → who logged in, refusing snapshot-page users.

use super::app::{App, Source};
use super::client::WechatClient;
use super::error::WechatError;
use crate::common::http_util::unix_now;
use crate::providers::provider::Identity;
use crate::session::Grant;

/// Code → token → userinfo (when the scope allows): the OAuth logins (website, official
/// account, mobile app). A token or userinfo answer with `is_snapshotuser: 1` (WeChat's
/// snapshot page: a virtual openid/unionid/profile) is [`WechatError::SnapshotUser`], so no
/// session is ever made for it. The identity carries the grant (the tokens) for revalidation.
pub(super) async fn oauth_identity(
    client: &WechatClient,
    app: &App,
    code: &str,
    source: Source,
) -> Result<Identity, WechatError> {
    let tok = client.exchange_code(&app.appid, &app.secret, code).await?;
    if tok.is_snapshotuser {
        return Err(WechatError::SnapshotUser);
    }
    let wants_info = tok.scope.contains("snsapi_userinfo") || tok.scope.contains("snsapi_login");
    let (nickname, avatar, info_union) = if wants_info {
        let info = client.userinfo(&tok.access_token, &tok.openid).await?;
        if info.is_snapshotuser {
            return Err(WechatError::SnapshotUser);
        }
        (info.nickname, info.headimgurl, info.unionid)
    } else {
        (String::new(), String::new(), None)
    };
    let now = unix_now();
    let grant = (!tok.refresh_token.is_empty()).then(|| Grant {
        access_expires_at: now + tok.expires_in.max(0) as u64,
        granted_at: now,
        access_token: tok.access_token,
        refresh_token: tok.refresh_token,
    });
    Ok(Identity {
        origin: source.into(),
        unionid: info_union.or(tok.unionid).filter(|u| !u.is_empty()),
        openid: tok.openid,
        appid: app.appid.clone(),
        nickname,
        avatar,
        grant,
    })
}
