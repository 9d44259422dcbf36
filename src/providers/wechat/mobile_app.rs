//! The mobile app (`/app/login`): the app's code from the WeChat SDK goes the OAuth way, like a
//! browser login's.

use super::app::{App, Source};
use super::client::WechatClient;
use super::oauth::oauth_identity;
use crate::common::error::ProviderFailure;
use crate::providers::provider::Identity;

/// Code → token → userinfo.
pub(super) async fn login(
    client: &WechatClient,
    app: &App,
    code: &str,
) -> Result<Identity, ProviderFailure> {
    Ok(oauth_identity(client, app, code, Source::MobileApp).await?)
}
