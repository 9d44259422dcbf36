//! WeChat's four app kinds ([`Source`]) as the session record stores them, and a configured
//! app (appid and secret).

use crate::config::WechatApp;
use crate::session::Origin;

/// WeChat's byte in the session record ([`Origin::provider`]); version-2 records, from before
/// providers, are WeChat's too.
pub(crate) const RECORD_ID: u8 = 0;

/// Flag on the official account's kind byte of a login in flight: the consent
/// (`snsapi_userinfo`) round of `scope = "auto"`. Never in a session record: the session's kind
/// is the plain [`Source`].
pub(crate) const CONSENT_ROUND: u8 = 0x80;

/// A kind byte as the provider hands it around: the app kind, and whether it is the consent
/// round of `scope = "auto"`.
pub(crate) fn split_kind(kind: u8) -> (Option<Source>, bool) {
    (
        Source::from_u8(kind & !CONSENT_ROUND),
        kind & CONSENT_ROUND != 0,
    )
}

/// Which WeChat app a session came from: the provider's kind byte in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Source {
    Website = 0,
    OfficialAccount = 1,
    MobileApp = 2,
    MiniProgram = 3,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Website => "website",
            Source::OfficialAccount => "official_account",
            Source::MobileApp => "mobile_app",
            Source::MiniProgram => "mini_program",
        }
    }

    pub(crate) fn from_u8(b: u8) -> Option<Source> {
        Some(match b {
            0 => Source::Website,
            1 => Source::OfficialAccount,
            2 => Source::MobileApp,
            3 => Source::MiniProgram,
            _ => return None,
        })
    }
}

impl From<Source> for Origin {
    fn from(s: Source) -> Origin {
        Origin {
            provider: RECORD_ID,
            kind: s as u8,
        }
    }
}

/// One configured WeChat app.
pub(crate) struct App {
    pub(crate) appid: String,
    pub(crate) secret: String,
}

impl App {
    pub(crate) fn from_config(c: &Option<WechatApp>) -> Option<App> {
        c.as_ref().map(|c| App {
            appid: c.appid.clone(),
            secret: c.secret.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_round_trip_through_the_record_byte() {
        for s in [
            Source::Website,
            Source::OfficialAccount,
            Source::MobileApp,
            Source::MiniProgram,
        ] {
            let o = Origin::from(s);
            assert_eq!(o.provider, RECORD_ID);
            assert_eq!(Source::from_u8(o.kind), Some(s));
        }
        assert_eq!(Source::from_u8(4), None);
        let consent = Source::OfficialAccount as u8 | CONSENT_ROUND;
        assert_eq!(split_kind(consent), (Some(Source::OfficialAccount), true));
        assert_eq!(split_kind(1), (Some(Source::OfficialAccount), false));
        assert_eq!(split_kind(0x84), (None, true));
    }
}
