//! Test controls over the grants the mock issued (revalidation tests):
//! `/mock/revoke?user=KEY[&appid=A]` revokes a user's grants like a user who removed the app's
//! authorization in WeChat (their access tokens answer 40001, their refresh tokens 40030), and
//! `/mock/expire?user=KEY[&appid=A]` expires their access tokens early (`sns/auth` and
//! `sns/userinfo` answer 42001 "access_token expired"; the refresh token still works).

use std::sync::Arc;

use http::StatusCode;
use moka::sync::Cache;
use serde_json::json;

use super::fixtures;
use super::reply::*;
use super::state::*;

/// Access tokens expired early by `/mock/expire` (they answer 42001).
pub(super) struct Grants {
    expired: Cache<String, ()>,
}

impl Grants {
    pub(super) fn new() -> Grants {
        Grants {
            expired: cache(ACCESS_TOKEN_TTL),
        }
    }

    /// An access token `/mock/expire` expired.
    pub(super) fn is_expired(&self, token: &str) -> bool {
        self.expired.contains_key(token)
    }
}

/// The tokens in `tokens` that belong to `user` (and `appid`, when given).
fn tokens_of(
    tokens: &Cache<String, Arc<TokenEntry>>,
    user: &str,
    appid: Option<&str>,
) -> Vec<Arc<String>> {
    tokens
        .iter()
        .filter(|(_, e)| e.user.key == user && appid.is_none_or(|a| e.app.appid == a))
        .map(|(k, _)| k)
        .collect()
}

/// The user (and app) a control names; None when the user is unknown.
fn target(q: &Query) -> Option<(&'static str, Option<&str>)> {
    let user = param(q, "user").and_then(fixtures::user)?;
    Some((user.key, param(q, "appid")))
}

pub(super) fn mock_revoke(state: &State, q: &Query) -> Resp {
    let Some((user, appid)) = target(q) else {
        return control_error("unknown user");
    };
    let access = tokens_of(&state.access_tokens, user, appid);
    let refresh = tokens_of(&state.refresh_tokens, user, appid);
    for t in &access {
        state.access_tokens.invalidate(t.as_str());
        state.grants.expired.invalidate(t.as_str());
    }
    for t in &refresh {
        state.refresh_tokens.invalidate(t.as_str());
    }
    control_json(
        StatusCode::OK,
        json!({ "ok": true, "access_tokens": access.len(), "refresh_tokens": refresh.len() }),
    )
}

pub(super) fn mock_expire(state: &State, q: &Query) -> Resp {
    let Some((user, appid)) = target(q) else {
        return control_error("unknown user");
    };
    let access = tokens_of(&state.access_tokens, user, appid);
    for t in &access {
        state.access_tokens.invalidate(t.as_str());
        state.grants.expired.insert(t.to_string(), ());
    }
    control_json(
        StatusCode::OK,
        json!({ "ok": true, "access_tokens": access.len() }),
    )
}
