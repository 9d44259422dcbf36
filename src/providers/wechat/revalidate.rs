//! Re-checking a browser session's WeChat grant (`session.revalidate_secs`): `sns/auth` while
//! the access token is valid, `sns/oauth2/refresh_token` once it expired (or `sns/auth` says
//! 42001). Which errcodes end the session follows WeChat's table: 40001 / 40014 (the access
//! token is no good), 40030 / 42002 (the refresh token is invalid or expired) and 42007 (the
//! user changed their password: every token is void). Anything else (unreachable, busy,
//! garbage, other codes) says nothing about the grant: the session stays.

use super::client::WechatClient;
use super::error::WechatError;
use crate::common::http_util::unix_now;
use crate::providers::provider::Revalidation;
use crate::session::{Grant, Session};

/// An access token this close to its expiry is refreshed instead of checked.
const EARLY_SECS: u64 = 60;

/// The errcodes that mean the grant is gone.
pub(super) fn revokes(code: i64) -> bool {
    matches!(code, 40001 | 40014 | 40030 | 42002 | 42007)
}

fn verdict(e: &WechatError) -> Revalidation {
    match e {
        WechatError::Api { code, .. } if revokes(*code) => Revalidation::Revoked,
        _ => Revalidation::Unknown,
    }
}

pub(super) async fn revalidate(
    client: &WechatClient,
    session: &Session,
    grant: Grant,
) -> Revalidation {
    let openid = session.openid();
    if grant.access_expires_at > unix_now() + EARLY_SECS {
        match client.check_token(&grant.access_token, openid).await {
            Ok(()) => return Revalidation::Valid(None),
            // Expired before its time: refresh below.
            Err(WechatError::Api { code: 42001, .. }) => {}
            Err(e) => return verdict(&e),
        }
    }
    match client
        .refresh_token(session.appid(), &grant.refresh_token)
        .await
    {
        // A refresh that names another user is no grant for this session.
        Ok(tok) if tok.openid != openid => Revalidation::Revoked,
        Ok(tok) => {
            let now = unix_now();
            Revalidation::Valid(Some(Grant {
                access_expires_at: now + tok.expires_in.max(0) as u64,
                granted_at: now,
                refresh_token: if tok.refresh_token.is_empty() {
                    grant.refresh_token
                } else {
                    tok.refresh_token
                },
                access_token: tok.access_token,
            }))
        }
        Err(e) => verdict(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_codes_end_a_session() {
        for c in [40001, 40014, 40030, 42002, 42007] {
            assert!(revokes(c), "{c}");
        }
        for c in [-1, 45011, 42001, 40003, 40013, 48001, 0] {
            assert!(!revokes(c), "{c}");
        }
        let api = |code| WechatError::Api {
            code,
            msg: String::new(),
        };
        assert_eq!(verdict(&api(40030)), Revalidation::Revoked);
        assert_eq!(verdict(&api(-1)), Revalidation::Unknown);
        assert_eq!(verdict(&WechatError::Unreachable), Revalidation::Unknown);
        assert_eq!(verdict(&WechatError::Timeout), Revalidation::Unknown);
        assert_eq!(verdict(&WechatError::Status(502)), Revalidation::Unknown);
    }
}
