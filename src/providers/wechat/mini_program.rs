//! The mini program (`/miniprogram/login`): `wx.login()` code → `jscode2session`, then the
//! optional user data (`encryptedData`, `iv`) decrypted with the session key and checked.
//! The session key never leaves this function.
//!
//! Since 2022-11, `getUserProfile` / `getUserInfo` give every user the same placeholder
//! profile, "微信用户" and a grey avatar (the real one comes from the avatar/nickname filling
//! component, on the client). That is nobody's name: such a profile is taken as none, so the
//! upstream and the account-linking call get no nickname or avatar rather than a fake one.

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
        if is_placeholder_profile(&nickname) {
            nickname.clear();
            avatar.clear();
        }
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

/// The nickname every mini-program user has had from `getUserProfile` / `getUserInfo` since
/// 2022-11 (with a grey avatar).
const PLACEHOLDER_NICKNAME: &str = "微信用户";

/// A profile that is today's placeholder, not the user's.
fn is_placeholder_profile(nickname: &str) -> bool {
    nickname.trim() == PLACEHOLDER_NICKNAME
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_profile_is_no_profile() {
        assert!(is_placeholder_profile("微信用户"));
        assert!(is_placeholder_profile(" 微信用户 "));
        for real in ["Alice 🐼 小爱", "微信用户1", "", "王小明"] {
            assert!(!is_placeholder_profile(real), "{real}");
        }
    }
}
