//! WeCom's answers: `cgi-bin/gettoken` and `cgi-bin/auth/getuserinfo`, read with serde. An
//! `errcode` other than 0 is an error whatever else the answer holds.

use serde::Deserialize;

use super::error::WecomError;

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    errcode: i64,
    access_token: Option<String>,
    expires_in: Option<u64>,
    userid: Option<String>,
    #[serde(rename = "UserId")]
    user_id_legacy: Option<String>,
    openid: Option<String>,
    #[serde(rename = "OpenId")]
    openid_legacy: Option<String>,
}

/// Longest id or token accepted from WeCom (real ones: userid ≤ 64, token 214 bytes).
const MAX_VALUE: usize = 1024;

fn read(body: &[u8]) -> Result<Raw, WecomError> {
    let raw: Raw = serde_json::from_slice(body).map_err(|_| WecomError::Garbage)?;
    if raw.errcode != 0 {
        return Err(WecomError::Api(raw.errcode));
    }
    Ok(raw)
}

fn usable(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty() && s.len() <= MAX_VALUE && !s.bytes().any(|b| b.is_ascii_control()))
}

/// The `errcode` of an answer, when it is JSON with one (for the metrics).
pub(super) fn errcode_of(body: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Code {
        errcode: i64,
    }
    serde_json::from_slice::<Code>(body).ok().map(|c| c.errcode)
}

/// `gettoken`: the corp access token and its lifetime in seconds.
pub(super) fn parse_token(body: &[u8]) -> Result<(String, u64), WecomError> {
    let raw = read(body)?;
    let token = usable(raw.access_token).ok_or(WecomError::Garbage)?;
    Ok((token, raw.expires_in.unwrap_or(7200)))
}

/// Who `auth/getuserinfo` says logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Person {
    /// A member of the corp: their userid.
    Member(String),
    /// Someone outside the corp: only an openid.
    NonMember(String),
}

pub(super) fn parse_userinfo(body: &[u8]) -> Result<Person, WecomError> {
    let raw = read(body)?;
    if let Some(u) = usable(raw.userid.or(raw.user_id_legacy)) {
        return Ok(Person::Member(u));
    }
    usable(raw.openid.or(raw.openid_legacy))
        .map(Person::NonMember)
        .ok_or(WecomError::Garbage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn answers() {
        assert_eq!(
            parse_token(br#"{"errcode":0,"errmsg":"ok","access_token":"AT","expires_in":7200}"#),
            Ok(("AT".into(), 7200))
        );
        assert_eq!(
            parse_token(br#"{"errcode":40001,"errmsg":"invalid credential"}"#),
            Err(WecomError::Api(40001))
        );
        assert_eq!(parse_token(b"<html>"), Err(WecomError::Garbage));
        assert_eq!(parse_token(br#"{"errcode":0}"#), Err(WecomError::Garbage));
        assert_eq!(
            parse_userinfo(br#"{"errcode":0,"errmsg":"ok","userid":"zhangsan","user_ticket":"T"}"#),
            Ok(Person::Member("zhangsan".into()))
        );
        assert_eq!(
            parse_userinfo(br#"{"errcode":0,"openid":"oX","external_userid":"wm"}"#),
            Ok(Person::NonMember("oX".into()))
        );
        assert_eq!(
            parse_userinfo(br#"{"errcode":0,"UserId":"lisi"}"#),
            Ok(Person::Member("lisi".into()))
        );
        assert_eq!(
            parse_userinfo(br#"{"errcode":60020,"errmsg":"not allow to access from your ip"}"#),
            Err(WecomError::Api(60020))
        );
        assert_eq!(
            parse_userinfo(br#"{"errcode":0,"userid":"a\nb"}"#),
            Err(WecomError::Garbage)
        );
        assert_eq!(
            parse_userinfo(br#"{"errcode":0}"#),
            Err(WecomError::Garbage)
        );
    }

    proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_token(&body);
            let _ = parse_userinfo(&body);
            let _ = errcode_of(&body);
        }

        #[test]
        fn any_userid_round_trips(u in "[A-Za-z0-9_.@-]{1,64}") {
            let body = serde_json::json!({"errcode": 0, "userid": u}).to_string();
            prop_assert_eq!(parse_userinfo(body.as_bytes()), Ok(Person::Member(u)));
        }
    }
}
