//! The mini program's phone number: `getPhoneNumber`'s one-time code → `POST
//! wxa/business/getuserphonenumber?access_token=AT` (AT from [`StableToken`]); a stale token is
//! renewed once and the call retried once. WeChat's errors keep their meaning: the quota used
//! up (1400001) says so, a bad code is the client's 400.

use serde_json::{json, Value};

use super::app::App;
use super::client::WechatClient;
use super::error::WechatError;
use super::stable_token::StableToken;
use crate::common::error::{ErrorClass, ProviderError, ProviderFailure};
use crate::common::pages::Text;
use crate::providers::PhoneNumber;

/// errcodes that mean "this access token is no longer good".
fn stale_token(e: &WechatError) -> bool {
    matches!(
        e,
        WechatError::Api {
            code: 40001 | 42001 | 40014,
            ..
        }
    )
}

/// The phone call's failures, as the error mapping sees them.
#[derive(Debug, thiserror::Error)]
#[error("phone number: {0}")]
pub(crate) struct PhoneError(WechatError);

const QUOTA: i64 = 1_400_001;

impl PhoneError {
    fn errcode(&self) -> Option<i64> {
        match &self.0 {
            WechatError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl ProviderError for PhoneError {
    fn class(&self) -> ErrorClass {
        match self.errcode() {
            Some(QUOTA) => ErrorClass::Busy,
            Some(40029 | 40163 | 42003) => ErrorClass::InvalidInput,
            Some(40001 | 42001 | 40014) => ErrorClass::Upstream,
            _ => self.0.class(),
        }
    }

    fn code(&self) -> &'static str {
        match self.errcode() {
            Some(QUOTA) => "phone_quota_exhausted",
            Some(40029 | 40163 | 42003) => "invalid_code",
            _ => ProviderError::code(&self.0),
        }
    }

    #[rustfmt::skip]
    fn texts(&self) -> (Text<'static>, Text<'static>) {
        let t = |zh, en| Text { zh, en };
        match self.errcode() {
            Some(QUOTA) => (
                t("手机号额度已用完", "Phone-number quota used up"),
                t("小程序获取手机号的额度已用完，请稍后再试或联系网站。", "The mini program's quota of phone-number lookups is used up. Try again later or contact the site."),
            ),
            Some(40029 | 40163 | 42003) => (
                t("手机号授权码无效", "Invalid phone-number code"),
                t("getPhoneNumber 的授权码无效、已使用或已过期，请重新获取。", "The getPhoneNumber code is invalid, already used or expired; call getPhoneNumber again."),
            ),
            _ => self.0.texts(),
        }
    }

    fn log(&self) {
        if self.errcode() == Some(QUOTA) {
            tracing::error!("WeChat phone-number quota used up (errcode 1400001)");
        } else {
            ProviderError::log(&self.0);
        }
    }
}

/// `{"errcode":0,"phone_info":{"phoneNumber","purePhoneNumber","countryCode","watermark"}}`:
/// the number (digits checked) and the watermark's appid, when given.
fn parse_answer(
    body: &[u8],
    sensitive: &[&str],
) -> Result<(PhoneNumber, Option<String>), WechatError> {
    // The token and the code are taken out of WeChat's errmsg before it can be logged.
    let (map, _) = super::json::parse_object(body, sensitive)?;
    let info = map
        .get("phone_info")
        .and_then(Value::as_object)
        .ok_or(WechatError::Garbage)?;
    let text = |k: &str| match info.get(k) {
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let digits = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    let pure = text("purePhoneNumber").filter(|p| digits(p, 4, 20));
    let country = text("countryCode").filter(|c| digits(c, 1, 4));
    let (Some(pure_phone), Some(country_code)) = (pure, country) else {
        return Err(WechatError::Garbage);
    };
    let phone = text("phoneNumber")
        .filter(|p| !p.is_empty() && p.len() <= 32 && !p.chars().any(char::is_control))
        .unwrap_or_else(|| pure_phone.clone());
    let watermark = info
        .get("watermark")
        .and_then(|w| w.get("appid"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((
        PhoneNumber {
            phone,
            pure_phone,
            country_code,
        },
        watermark,
    ))
}

/// The answer for the mini program `appid`: a watermark naming another app is refused.
fn for_app(
    (n, watermark): (PhoneNumber, Option<String>),
    appid: &str,
) -> Result<PhoneNumber, WechatError> {
    if watermark.is_some_and(|w| w != appid) {
        return Err(WechatError::Garbage);
    }
    Ok(n)
}

async fn lookup(
    client: &WechatClient,
    app: &App,
    token: &str,
    code: &str,
) -> Result<PhoneNumber, WechatError> {
    let answer = client
        .post_json(
            "/wxa/business/getuserphonenumber",
            &[("access_token", token)],
            &json!({ "code": code }),
            &[token, code],
            parse_answer,
        )
        .await?;
    for_app(answer, &app.appid)
}

/// The phone number behind a `getPhoneNumber` code.
pub(super) async fn phone_number(
    client: &WechatClient,
    app: &App,
    tokens: &StableToken,
    code: &str,
) -> Result<PhoneNumber, ProviderFailure> {
    let wrap = |e| ProviderFailure::from(PhoneError(e));
    let token = tokens.get(client, app).await.map_err(wrap)?;
    match lookup(client, app, &token, code).await {
        Err(e) if stale_token(&e) => {
            let renewed = tokens.renew(client, app, &token).await.map_err(wrap)?;
            lookup(client, app, &renewed, code).await.map_err(wrap)
        }
        other => other.map_err(wrap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_phone(body: &[u8], appid: &str) -> Result<PhoneNumber, WechatError> {
        for_app(parse_answer(body, &[])?, appid)
    }

    #[test]
    fn errmsg_never_keeps_the_token_or_the_code() {
        let body = br#"{"errcode":40029,"errmsg":"invalid code CODE123, access_token TOKEN456 hint: [x]"}"#;
        let e = parse_answer(body, &["TOKEN456", "CODE123"]).unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(
            !text.contains("TOKEN456") && !text.contains("CODE123"),
            "{text}"
        );
        assert!(text.contains("***"), "{text}");
    }

    #[test]
    fn phone_answers() {
        let ok = br#"{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"13800000000","purePhoneNumber":"13800000000","countryCode":"86","watermark":{"timestamp":1,"appid":"wxA"}}}"#;
        let n = parse_phone(ok, "wxA").unwrap();
        assert_eq!(n.e164(), "+8613800000000");
        assert_eq!(n.phone, "13800000000");
        assert_eq!(parse_phone(ok, "wxB"), Err(WechatError::Garbage));
        assert!(parse_phone(ok, "").is_err());
        let quota = br#"{"errcode":1400001,"errmsg":"quota"}"#;
        let e = parse_phone(quota, "wxA").unwrap_err();
        assert_eq!(PhoneError(e.clone()).code(), "phone_quota_exhausted");
        assert_eq!(PhoneError(e).class(), ErrorClass::Busy);
        let bad = WechatError::Api {
            code: 40029,
            msg: String::new(),
        };
        assert_eq!(PhoneError(bad).class(), ErrorClass::InvalidInput);
        for body in [
            &br#"{"errcode":0}"#[..],
            br#"{"phone_info":{"purePhoneNumber":"12ab","countryCode":"86"}}"#,
            br#"{"phone_info":{"purePhoneNumber":"13800000000","countryCode":"+86"}}"#,
            b"",
        ] {
            assert!(parse_phone(body, "wxA").is_err());
        }
        assert!(stale_token(&WechatError::Api {
            code: 40001,
            msg: String::new()
        }));
        assert!(!stale_token(&WechatError::Timeout));
    }

    proptest! {
        #[test]
        fn any_answer_without_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_phone(&body, "wxA");
        }
    }
}
