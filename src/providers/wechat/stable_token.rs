//! The mini program's API access token from `POST cgi-bin/stable_token`, cached in this
//! process: renewed a few minutes before WeChat says it expires, one renewal at a time however
//! many callers need it at once, and renewed once more when WeChat calls it stale (40001 /
//! 42001 / 40014) — with `force_refresh` only when the normal call hands back the stale one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::app::App;
use super::client::WechatClient;
use super::error::WechatError;

/// How long before WeChat's expiry the token is renewed (at most half its lifetime).
const RENEW_EARLY: Duration = Duration::from_secs(300);

#[derive(Clone)]
struct Cached {
    token: Arc<str>,
    renew_at: Instant,
}

/// One app's token, shared by every request of this process.
#[derive(Default)]
pub(crate) struct StableToken {
    cached: Mutex<Option<Cached>>,
    /// Held while one caller renews; the others wait and take its result.
    renewing: tokio::sync::Mutex<()>,
}

/// `{"access_token", "expires_in"}`.
fn parse(body: &[u8], sensitive: &[&str]) -> Result<(String, u64), WechatError> {
    let (map, _) = super::json::parse_object(body, sensitive)?;
    token_of(&map)
}

fn token_of(map: &Map<String, Value>) -> Result<(String, u64), WechatError> {
    let token = match map.get("access_token") {
        Some(Value::String(t)) if !t.trim().is_empty() && t.len() <= 1024 => t.clone(),
        _ => return Err(WechatError::Garbage),
    };
    let expires_in = match map.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .unwrap_or(7200);
    Ok((token, expires_in))
}

/// When a token WeChat gives for `expires_in` seconds is renewed. A lifetime beyond a day
/// (WeChat's is two hours) is taken as a day: an absurd answer cannot overflow the clock.
fn renew_at(now: Instant, expires_in: u64) -> Instant {
    let life = Duration::from_secs(expires_in.min(MAX_TOKEN_LIFE_SECS));
    now + life - RENEW_EARLY.min(life / 2)
}

/// The longest token lifetime believed (seconds).
const MAX_TOKEN_LIFE_SECS: u64 = 86_400;

impl StableToken {
    fn fresh(&self) -> Option<Arc<str>> {
        let c = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        c.as_ref()
            .filter(|c| Instant::now() < c.renew_at)
            .map(|c| c.token.clone())
    }

    async fn fetch(
        &self,
        client: &WechatClient,
        app: &App,
        force: bool,
    ) -> Result<Arc<str>, WechatError> {
        let mut body = json!({
            "grant_type": "client_credential",
            "appid": app.appid,
            "secret": app.secret,
        });
        if force {
            body["force_refresh"] = Value::Bool(true);
        }
        let (token, expires_in) = client
            .post_json("/cgi-bin/stable_token", &[], &body, &[&app.secret], parse)
            .await?;
        let token: Arc<str> = Arc::from(token);
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(Cached {
            token: token.clone(),
            renew_at: renew_at(Instant::now(), expires_in),
        });
        Ok(token)
    }

    /// The current token, renewed first when it is due.
    pub(crate) async fn get(
        &self,
        client: &WechatClient,
        app: &App,
    ) -> Result<Arc<str>, WechatError> {
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let _one = self.renewing.lock().await;
        if let Some(t) = self.fresh() {
            return Ok(t); // renewed while we waited
        }
        self.fetch(client, app, false).await
    }

    /// A token other than `stale`, which WeChat just refused.
    pub(crate) async fn renew(
        &self,
        client: &WechatClient,
        app: &App,
        stale: &str,
    ) -> Result<Arc<str>, WechatError> {
        let _one = self.renewing.lock().await;
        if let Some(t) = self.fresh().filter(|t| &**t != stale) {
            return Ok(t); // someone else renewed it already
        }
        let t = self.fetch(client, app, false).await?;
        if &*t != stale {
            return Ok(t);
        }
        self.fetch(client, app, true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(
            parse(br#"{"access_token":"AT","expires_in":7200}"#, &[]),
            Ok(("AT".into(), 7200))
        );
        assert_eq!(
            parse(br#"{"access_token":"AT","expires_in":"60"}"#, &[]),
            Ok(("AT".into(), 60))
        );
        assert_eq!(
            parse(br#"{"access_token":""}"#, &[]),
            Err(WechatError::Garbage)
        );
        assert!(matches!(
            parse(br#"{"errcode":40125,"errmsg":"invalid appsecret S"}"#, &["S"]),
            Err(WechatError::Api { code: 40125, ref msg }) if !msg.contains(" S")
        ));
        assert_eq!(parse(b"<html>", &[]), Err(WechatError::Garbage));
    }

    proptest::proptest! {
        #[test]
        fn any_answer_without_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse(&body, &["secret"]);
        }
    }

    #[test]
    fn renewed_early() {
        let now = Instant::now();
        assert_eq!(renew_at(now, 7200), now + Duration::from_secs(6900));
        assert_eq!(renew_at(now, 4), now + Duration::from_secs(2));
        assert_eq!(renew_at(now, 0), now);
        // An absurd lifetime does not overflow the clock: a day at most.
        assert_eq!(
            renew_at(now, u64::MAX),
            now + Duration::from_secs(86_400 - 300)
        );
    }
}
