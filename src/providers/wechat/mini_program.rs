//! The mini program (`/miniprogram/login`): `wx.login()` code → `jscode2session`, then the
//! optional user data (`encryptedData`, `iv`) decrypted with the session key and checked.
//! The session key never leaves this function.

use super::app::{App, Source};
use super::client::WechatClient;
use super::crypto::{self, CryptoError};
use crate::common::error::ProviderFailure;
use crate::providers::provider::{Identity, JsonCredentials};

pub(super) async fn login(
    client: &WechatClient,
    app: &App,
    creds: JsonCredentials<'_>,
) -> Result<Identity, ProviderFailure> {
    let js = client
        .jscode2session(&app.appid, &app.secret, creds.code)
        .await?;
    let (mut nickname, mut avatar, mut data_union) = (String::new(), String::new(), None);
    if let Some((enc, iv)) = creds.user_data {
        let data = crypto::decrypt_and_verify(&js.session_key, enc, iv, &app.appid)?;
        if data.open_id.as_deref().is_some_and(|o| o != js.openid) {
            return Err(CryptoError::OtherUser.into());
        }
        nickname = data.nick_name.unwrap_or_default();
        avatar = data.avatar_url.unwrap_or_default();
        data_union = data.union_id;
    }
    Ok(Identity {
        origin: Source::MiniProgram.into(),
        openid: js.openid,
        unionid: js.unionid.or(data_union).filter(|u| !u.is_empty()),
        appid: app.appid.clone(),
        nickname,
        avatar,
        // jscode2session gives no OAuth grant: mini-program sessions are not revalidated.
        grant: None,
    })
}
