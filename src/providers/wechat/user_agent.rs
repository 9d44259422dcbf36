//! Which browser a login comes from, by its User-Agent: inside WeChat (`MicroMessenger`) on a
//! phone or on a computer (`WindowsWechat`, `MacWechat`), inside WeCom (`wxwork`), a phone or
//! tablet browser outside both, or a PC.

/// What a User-Agent says about where the login page will be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BrowserKind {
    /// WeChat's built-in browser (`MicroMessenger`): the official account's login.
    WeChat,
    /// WeChat's built-in browser on Windows or macOS (`WindowsWechat`, `MacWechat`): the
    /// official account's login too, and, being on a computer, it can show a QR code to scan.
    WeChatDesktop,
    /// WeCom's built-in browser (`wxwork`; it also says `MicroMessenger`).
    WeCom,
    /// A phone or tablet browser outside WeChat (`Android`, `iPhone`, `iPad` or `Mobile`):
    /// it cannot scan a QR code on its own screen.
    Phone,
    /// Everything else: a desktop browser, which can show a QR code to scan.
    Pc,
}

impl BrowserKind {
    /// WeChat or WeCom: a browser in which WeChat's OAuth pages work.
    pub(crate) fn in_app(self) -> bool {
        matches!(
            self,
            BrowserKind::WeChat | BrowserKind::WeChatDesktop | BrowserKind::WeCom
        )
    }
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Classifies a User-Agent (any bytes; case-insensitive). iPadOS Safari's default
/// "desktop-class" User-Agent reads as a Mac and so as a PC: nothing in it says otherwise.
pub(crate) fn classify(ua: &[u8]) -> BrowserKind {
    if contains_ci(ua, b"wxwork") {
        BrowserKind::WeCom
    } else if contains_ci(ua, b"micromessenger") {
        if contains_ci(ua, b"windowswechat") || contains_ci(ua, b"macwechat") {
            BrowserKind::WeChatDesktop
        } else {
            BrowserKind::WeChat
        }
    } else if [&b"android"[..], b"iphone", b"ipad", b"mobile"]
        .iter()
        .any(|k| contains_ci(ua, k))
    {
        BrowserKind::Phone
    } else {
        BrowserKind::Pc
    }
}

/// [`classify`] for a request's headers (no User-Agent: a PC).
pub(crate) fn of_request(headers: &http::HeaderMap) -> BrowserKind {
    headers
        .get(http::header::USER_AGENT)
        .map_or(BrowserKind::Pc, |v| classify(v.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn real_user_agents() {
        use BrowserKind::*;
        for (ua, want) in [
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1", Phone),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36", Phone),
            ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1", Phone),
            ("Mozilla/5.0 (Linux; U; Android 13; zh-cn; V2227A) AppleWebKit/537.36 Chrome/98 Mobile Safari/537.36 VivoBrowser/17.6", Phone),
            ("Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0", Phone),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN", WeChat),
            ("Mozilla/5.0 (Linux; Android 14; V2227A; wv) AppleWebKit/537.36 Chrome/111 Mobile Safari/537.36 XWEB/1110005 MMWEBSDK/20231002 MicroMessenger/8.0.43.2480(0x28002B37) WeChat/arm64 Weixin NetType/WIFI", WeChat),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/81 Safari/537.36 MicroMessenger/7.0.20.1781(0x6700143B) NetType/WIFI MiniProgramEnv/Windows WindowsWechat/WMPF", WeChatDesktop),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) MicroMessenger/6.8.0(0x16080000) MacWechat/3.8.7(0x13080710) Reporter/5.0 XWEB/1288 Flue", WeChatDesktop),
            ("Mozilla/5.0 MicroMessenger/8.0", WeChat),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 wxwork/4.1.10 MicroMessenger/7.0.1 Language/zh", WeCom),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36", Pc),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.0 Safari/605.1.15", Pc),
            ("curl/8.5.0", Pc),
            ("", Pc),
        ] {
            assert_eq!(classify(ua.as_bytes()), want, "{ua}");
        }
        assert!(WeChat.in_app() && WeChatDesktop.in_app() && WeCom.in_app());
        assert!(!Phone.in_app() && !Pc.in_app());
    }

    #[test]
    fn request_without_user_agent_is_a_pc() {
        assert_eq!(of_request(&http::HeaderMap::new()), BrowserKind::Pc);
    }

    proptest! {
        #[test]
        fn never_panics(ua in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = classify(&ua);
        }

        #[test]
        fn keywords_decide(pre in "[ -~]{0,40}", post in "[ -~]{0,40}",
                           k in prop::sample::select(vec!["MicroMessenger", "micromessenger", "wxwork",
                               "WXWork", "Android", "iPhone", "IPAD", "Mobile"])) {
            let ua = format!("{pre}{k}{post}");
            let got = classify(ua.as_bytes());
            let lower = ua.to_ascii_lowercase();
            let want = if lower.contains("wxwork") {
                BrowserKind::WeCom
            } else if lower.contains("micromessenger") {
                if lower.contains("windowswechat") || lower.contains("macwechat") {
                    BrowserKind::WeChatDesktop
                } else {
                    BrowserKind::WeChat
                }
            } else {
                BrowserKind::Phone
            };
            prop_assert_eq!(got, want);
        }

        #[test]
        fn without_keywords_a_pc(ua in "[ -~]{0,80}") {
            let lower = ua.to_ascii_lowercase();
            prop_assume!(!["wxwork", "micromessenger", "android", "iphone", "ipad", "mobile"]
                .iter().any(|k| lower.contains(k)));
            prop_assert_eq!(classify(ua.as_bytes()), BrowserKind::Pc);
        }
    }
}
